//! How far each projection has got: its checkpoint against the stream's last sequence.
//! `sovd projections status` prints it and `/metrics` exports it; the rate of the checkpoint
//! is the apply rate, because every projection reads every subject of its streams.

use sovd_nats::{EventStore, StreamName};

use crate::ProjectionError;
use crate::apply::{Projection, checkpoint};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub projection: Projection,
    pub stream: StreamName,
    /// The last stream sequence applied (0 = nothing yet).
    pub checkpoint: u64,
    /// The stream's last sequence now.
    pub last_sequence: u64,
}

impl Progress {
    /// Sequences not yet applied. Deleted messages would count too, and our streams deny deletes.
    pub fn lag(&self) -> u64 {
        self.last_sequence.saturating_sub(self.checkpoint)
    }
}

/// Every (projection, stream) pair, in a fixed order.
pub async fn progress(pool: &sqlx::PgPool, store: &EventStore) -> Result<Vec<Progress>, ProjectionError> {
    let mut last = std::collections::HashMap::new();
    for stream in StreamName::ALL {
        last.insert(stream, store.last_sequence(stream).await?);
    }
    let mut out = Vec::new();
    for projection in Projection::ALL {
        for &stream in projection.streams() {
            out.push(Progress {
                projection,
                stream,
                checkpoint: checkpoint(pool, projection, stream).await?,
                last_sequence: last.get(&stream).copied().unwrap_or(0),
            });
        }
    }
    Ok(out)
}
