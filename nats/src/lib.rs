//! sovd-nats: the event store on NATS JetStream.
//!
//! Owns subject names, stream and consumer definitions, the event envelope (headers +
//! postcard payload) and appends with optimistic concurrency. Depends on `sovd-domain` only;
//! it knows nothing about Postgres, HTTP or vehicles.

pub mod envelope;
pub mod error;
pub mod kv;
pub mod raw;
pub mod snapshot;
pub mod store;
pub mod streams;
pub mod subjects;
#[cfg(feature = "testing")]
pub mod testing;

pub use envelope::{EventMeta, StoredEvent};
pub use error::{AppendError, ReadError};
pub use store::{AppendOptions, Appended, EventStore, Start, Tail, TailEvent};
pub use streams::{StreamName, ensure_streams};
pub use subjects::{OpsKind, Subject};
