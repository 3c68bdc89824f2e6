//! How the connector talks to a vehicle. The simulated fleet implements it today; UDS over
//! DoIP (ISO 13400) is the next implementation.

use futures::stream::BoxStream;
use serde_json::Value;
use sovd_domain::uds::Nrc;
use sovd_domain::{Operation, Vin};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("vehicle {0} is not connected")]
    NotConnected(Vin),
    #[error("vehicle {0} is unreachable")]
    Unreachable(Vin),
    #[error("ECU answered with negative response {0}")]
    NegativeResponse(Nrc),
    #[error("vehicle sent a malformed answer: {0}")]
    Malformed(String),
    #[error("the connection to the vehicle dropped after {after_chunks} chunk(s)")]
    Dropped { after_chunks: usize },
    #[error("the vehicle has no ECU at {0}")]
    NoSuchEcu(String),
}

impl TransportError {
    /// Worth trying again: the fault may be gone next time.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Malformed(_) | Self::Dropped { .. })
    }

    /// The vehicle or the link to it misbehaved (counts toward the circuit breaker). A
    /// negative response is a proper answer and does not.
    pub fn is_vehicle_fault(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Malformed(_) | Self::Dropped { .. })
    }

    /// The request may have reached the ECU. Only a failure that says it did not lets a
    /// non-idempotent operation be tried again.
    pub fn may_have_executed(&self) -> bool {
        !matches!(self, Self::Unreachable(_) | Self::NotConnected(_) | Self::NoSuchEcu(_))
    }
}

/// One answer chunk from the vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The answer as JSON, as the API shows it.
    pub payload: Value,
    /// The vehicle said this is its last chunk for the request.
    pub is_final: bool,
}

pub trait VehicleTransport: Send + Sync + 'static {
    /// Runs one operation on one vehicle and streams its answer chunks; the stream ends
    /// after the last chunk. Dropping the stream abandons the operation.
    fn execute(&self, vin: &Vin, operation: &Operation) -> BoxStream<'static, Result<Chunk, TransportError>>;

    /// Whether the vehicle is online now (commands for offline vehicles wait in a queue).
    fn is_connected(&self, vin: &Vin) -> bool;
}
