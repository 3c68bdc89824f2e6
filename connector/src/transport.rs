//! How the connector talks to a vehicle. The simulated fleet implements it today; UDS over
//! DoIP (ISO 13400) is the next implementation.

use futures::stream::BoxStream;
use serde_json::Value;
use sovd_domain::{Operation, Vin};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("vehicle {0} is not connected")]
    NotConnected(Vin),
    #[error("vehicle {0} is unreachable")]
    Unreachable(Vin),
    #[error("ECU answered with negative response 0x{code:02X} ({name})")]
    NegativeResponse { code: u8, name: &'static str },
    #[error("vehicle sent a malformed answer: {0}")]
    Malformed(String),
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
}
