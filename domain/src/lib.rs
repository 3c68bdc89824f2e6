//! sovd-domain: identifiers, the diagnostic operation catalogue, events and the command lifecycle.
//!
//! Pure data and rules. It must not depend on tokio, async-nats, sqlx, axum or any other
//! crate that does I/O; everything here is testable with plain function calls.

pub mod catalogue;
pub mod codec;
pub mod events;
pub mod ids;
pub mod lifecycle;
pub mod risk;
pub mod text;
pub mod uds;
pub mod upcast;
pub mod users;
pub mod vehicle;

pub use catalogue::{Operation, OperationName, ParamError};
pub use codec::{CodecError, EventKind};
pub use events::Event;
pub use ids::{
    CommandId, DataId, DtcCode, EcuAddress, HexData, IdError, RoutineId, StatusMask, UserId, VehicleId, Vin,
};
pub use lifecycle::{CommandIntent, CommandState, CommandStatus, DomainError};
pub use vehicle::{ConnectionStatus, Role};
