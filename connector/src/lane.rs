//! One command at a time per vehicle, in submission order, across every connector process
//! (docs/adr/005-one-command-per-vehicle.md).
//!
//! The order is the order of SOVD_COMMANDS: a command may start only when every command
//! requested earlier for the same vehicle has ended. Strict order gives mutual exclusion for
//! free: of a vehicle's unfinished commands only the earliest may run, so two connectors can
//! never drive one vehicle at once, whichever messages they were handed. No lease can go
//! stale, because the log, not a lock, says whose turn it is.
//!
//! Finding the earlier commands walks the vehicle's request subjects with direct gets from a
//! low watermark kept in the `sovd_vehicle_lanes` bucket: every request at or below it has
//! ended, so the walk stays a few steps long however long the vehicle's history is.

use async_nats::jetstream::kv;
use sovd_domain::{CommandId, Event, Vin};
use sovd_nats::kv::{Bucket, open_bucket};
use sovd_nats::{EventStore, ReadError, StreamName, Subject};
use tokio::sync::OnceCell;

/// Whether a command may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Mine,
    /// This earlier command for the same vehicle has not ended yet.
    Behind(CommandId),
}

/// The watermark is written once the walk passed this many ended commands, so a busy vehicle
/// costs one bucket write every few commands rather than one per command.
const WRITE_AFTER: u32 = 4;

pub struct Lanes {
    store: EventStore,
    bucket: OnceCell<kv::Store>,
}

impl Lanes {
    pub fn new(store: EventStore) -> Self {
        Self { store, bucket: OnceCell::new() }
    }

    /// The bucket as the process's start-up created it (with the deployment's replicas); a
    /// bare worker (tests) creates it with one replica.
    async fn bucket(&self) -> Result<&kv::Store, ReadError> {
        self.bucket
            .get_or_try_init(|| async {
                match self.store.jetstream().get_key_value(Bucket::VehicleLanes.name()).await {
                    Ok(bucket) => Ok(bucket),
                    Err(_) => open_bucket(self.store.jetstream(), Bucket::VehicleLanes, 1).await,
                }
            })
            .await
    }

    /// Whether the command stored at `sequence` on SOVD_COMMANDS for `vin` may run now.
    pub async fn turn(&self, vin: &Vin, sequence: u64) -> Result<Turn, ReadError> {
        let bucket = self.bucket().await?;
        let watermark = watermark(bucket, vin).await?.map_or(0, |(value, _)| value);
        let filter = Subject::commands_of(vin);
        // Every request at or below `cleared` has ended.
        let mut cleared = watermark;
        let mut passed = 0;
        let turn = loop {
            if cleared + 1 >= sequence {
                break Turn::Mine;
            }
            let next = match self.store.next_on_subject(StreamName::Commands, &filter, cleared + 1).await {
                Ok(Some(next)) if next.stream_sequence < sequence => next,
                Ok(_) => break Turn::Mine,
                // A request nobody can read was never run (the consumer terminates it); it
                // must not hold the vehicle up for good.
                Err(ReadError::Undecodable { sequence: bad, reason, .. }) => {
                    tracing::warn!(%vin, sequence = bad, %reason, "skipping an undecodable request in the vehicle's lane");
                    cleared = bad;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Event::CommandRequested(earlier) = &next.event
                && !self.ended(vin, earlier.command_id).await?
            {
                break Turn::Behind(earlier.command_id);
            }
            cleared = next.stream_sequence;
            passed += 1;
        };
        if turn == Turn::Mine {
            cleared = cleared.max(sequence - 1);
        }
        if passed >= WRITE_AFTER && cleared > watermark {
            raise(bucket, vin, cleared).await?;
        }
        Ok(turn)
    }

    async fn ended(&self, vin: &Vin, command_id: CommandId) -> Result<bool, ReadError> {
        let subject = Subject::response(vin, command_id);
        let last = self.store.last_on_subject(StreamName::Responses, subject.as_str()).await?;
        Ok(last.is_some_and(|l| l.event.is_terminal()))
    }
}

fn unavailable(e: impl std::fmt::Display) -> ReadError {
    ReadError::Unavailable(format!("bucket {}: {e}", Bucket::VehicleLanes.name()))
}

async fn watermark(bucket: &kv::Store, vin: &Vin) -> Result<Option<(u64, u64)>, ReadError> {
    let Some(entry) = bucket.entry(vin.as_str()).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let value = std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Some((value, entry.revision)))
}

/// Raises the vehicle's watermark to `to` unless someone raised it further. Losing the race
/// costs nothing: any connector's watermark is true, and the highest one wins.
async fn raise(bucket: &kv::Store, vin: &Vin, to: u64) -> Result<(), ReadError> {
    for _ in 0..3 {
        let written = match watermark(bucket, vin).await? {
            Some((current, _)) if current >= to => return Ok(()),
            Some((_, revision)) => bucket.update(vin.as_str(), to.to_string().into(), revision).await.is_ok(),
            None => bucket.create(vin.as_str(), to.to_string().into()).await.is_ok(),
        };
        if written {
            return Ok(());
        }
    }
    Ok(())
}
