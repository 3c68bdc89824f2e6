//! How recoverable the system is right now, read at scrape time so any gateway reports it
//! whichever process backs up or archives: when the last backup finished, and how old the
//! oldest event not yet in the archive is (0 when everything is shipped).

use serde_json::Value;
use sovd_domain::Event;
use sovd_nats::kv::Bucket;
use sovd_nats::{EventStore, StreamName};
use time::OffsetDateTime;

/// When the last backup finished, from its BackupCompleted event on SOVD_OPS.
pub async fn last_backup(store: &EventStore) -> Option<OffsetDateTime> {
    let last = store.last_on_subject(StreamName::Ops, "sovd.ops.backup").await.ok()??;
    match last.event {
        Event::BackupCompleted(done) => Some(done.finished_at),
        _ => None,
    }
}

/// Seconds the oldest event of `stream` that the archive has not shipped has waited.
pub async fn archive_lag(store: &EventStore, stream: StreamName, now: OffsetDateTime) -> Option<f64> {
    let js = store.jetstream();
    let position = match js.get_key_value(Bucket::Archive.name()).await {
        Ok(bucket) => match bucket.get(stream.as_str()).await.ok().flatten() {
            Some(value) => serde_json::from_slice::<Value>(&value).ok()?["last_sequence"].as_u64().unwrap_or(0),
            None => 0,
        },
        // No archive has ever run here: everything is waiting.
        Err(_) => 0,
    };
    let handle = js.get_stream_no_info(stream.as_str()).await.ok()?;
    match handle.direct_get_next_for_subject(stream.subjects(), Some(position + 1)).await {
        Ok(oldest) => Some((now - oldest.time).as_seconds_f64().max(0.0)),
        Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => Some(0.0),
        Err(_) => None,
    }
}
