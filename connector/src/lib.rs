//! sovd-connector: executes diagnostic commands against vehicles.
//!
//! Owns the vehicle transport trait, the simulated fleet (the embedded default) and the
//! command worker that turns CommandRequested into dispatch, response chunks and exactly one
//! terminal event. Depends on `sovd-domain` and `sovd-nats`; never on projections or HTTP.

pub mod breaker;
pub mod consumer;
pub mod fleet;
pub mod lane;
pub mod remote;
pub mod sim;
pub mod transport;
pub mod worker;

pub use sim::{FleetConfig, SimConfig, SimulatedFleet};
pub use transport::{TransportError, VehicleTransport};
pub use worker::{CommandWorker, Handled, WorkerConfig};
