//! `sovd archive`: ships every new event of each event stream to object storage as
//! sequence-ranged segments, at least every `interval` (the RPO). Each stream has its own
//! loop around one step; the position is where the segments end, so a restart (or a crash
//! between writing a segment and its checkpoint) continues with no gap and no duplicate.
//! Segments and checkpoints are signed with the backup key.

use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use futures::{Stream, StreamExt};
use serde_json::json;
use sovd_domain::Event;
use sovd_domain::events::ArchiveFailed;
use sovd_nats::raw::{self, RawMessage};
use sovd_nats::{EventStore, OpsKind, ReadError, StreamName};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::layout::{self, Checkpoint};
use super::segment::{Segment, SegmentName};
use super::signing::Keys;
use super::storage::Storage;

#[derive(Debug, Clone, Copy)]
pub struct ArchiveSettings {
    /// The longest a stored event waits before it is shipped.
    pub interval: Duration,
    /// Segment size limits: a backlog ships in segments this big.
    pub max_messages: usize,
    pub max_bytes: usize,
    /// Replicas of the `sovd_archive` progress bucket.
    pub replicas: usize,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self { interval: Duration::from_secs(5), max_messages: 20_000, max_bytes: 8 << 20, replicas: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A segment was written.
    Shipped { messages: usize, last: u64 },
    /// Nothing new arrived while waiting.
    Idle,
}

type Reader = Pin<Box<dyn Stream<Item = Result<(RawMessage, u64), ReadError>> + Send>>;

/// The archive of one stream.
pub struct StreamArchiver {
    js: jetstream::Context,
    storage: Storage,
    keys: Keys,
    stream: String,
    settings: ArchiveSettings,
    position: u64,
    reader: Option<Reader>,
    /// When the stream being read was created, as seen when the read began.
    created: Option<OffsetDateTime>,
}

/// The archive's checkpoint of `stream`: how far it says it has shipped, and in which
/// segment; `None` unless `keys` signed it (with a warning when one is there). A checkpoint
/// can move the archiver past events and hold a restore to its word, so one from anyone else
/// counts as none: the same as its deletion, which is open to anyone who can write there.
pub async fn checkpoint(storage: &Storage, keys: &Keys, stream: &str) -> anyhow::Result<Option<Checkpoint>> {
    let key = layout::checkpoint_key(stream);
    let Some(bytes) = storage.get_optional(&key).await? else { return Ok(None) };
    let checkpoint: Checkpoint =
        serde_json::from_slice(&bytes).with_context(|| format!("object {key} is not an archive checkpoint"))?;
    match checkpoint.check_signature(stream, keys) {
        Ok(()) => Ok(Some(checkpoint)),
        Err(error) => {
            tracing::warn!(stream, error = %error, "ignoring the archive checkpoint; the segments decide");
            Ok(None)
        }
    }
}

/// Where the archive of `stream` ends: the last sequence shipped and its segment's key.
pub async fn archived_position(storage: &Storage, keys: &Keys, stream: &str) -> anyhow::Result<(u64, Option<String>)> {
    // A checkpoint whose segment is gone (a crash of a store that does not sync, say) says
    // nothing here: the segments decide, and the archiver ships the rest again. A restore
    // still holds the archive to the checkpoint's word (`restore::archive_after`).
    let hint = match checkpoint(storage, keys, stream).await? {
        Some(checkpoint) if !storage.exists(&checkpoint.segment).await? => None,
        hint => hint,
    };
    let prefix = layout::archive_prefix(stream);
    // Segments written after the checkpoint (a crash between the two) count as well.
    let later = match &hint {
        Some(checkpoint) => storage.list_after(&prefix, &checkpoint.segment).await?,
        None => storage.list(&prefix).await?,
    };
    let mut position = hint.as_ref().map_or((0, None), |c| (c.last_sequence, Some(c.segment.clone())));
    for (key, _) in later {
        if let Some(segment) = SegmentName::parse(stream, &key).filter(|s| s.last > position.0) {
            position = (segment.last, Some(segment.key));
        }
    }
    Ok(position)
}

impl StreamArchiver {
    pub async fn resume(
        js: jetstream::Context,
        storage: Storage,
        keys: Keys,
        stream: &str,
        settings: ArchiveSettings,
    ) -> anyhow::Result<Self> {
        let (position, _) = archived_position(&storage, &keys, stream).await?;
        tracing::info!(stream, position, location = storage.location(), key_id = keys.key_id(), "archive resumes");
        Ok(Self { js, storage, keys, stream: stream.to_owned(), settings, position, reader: None, created: None })
    }

    /// The last sequence shipped.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Waits up to `idle` for a new message, gathers what follows for up to the interval
    /// (or a full segment), and ships it as one segment.
    pub async fn try_ship_next(&mut self, idle: Duration) -> anyhow::Result<Outcome> {
        if self.reader.is_none() {
            // After a failure the last write's outcome is unknown (the store may have kept an
            // object whose answer was lost): the storage says where the archive ends.
            self.position = archived_position(&self.storage, &self.keys, &self.stream).await?.0;
            let extent = raw::extent(&self.js, &self.stream).await?.unwrap_or_default();
            self.created = extent.created;
            let end = extent.last_sequence;
            if end < self.position {
                anyhow::bail!(
                    "stream {} ends at sequence {end} but its archive at {}: the archive holds a history the stream \
                     no longer has (a restore that did not move it aside?); nothing is shipped until that is resolved",
                    self.stream,
                    self.position
                );
            }
            let reader = raw::read_from(&self.js, &self.stream, self.position + 1).await?;
            self.reader = Some(Box::pin(reader));
        }
        let result = self.gather_and_ship(idle).await;
        if result.is_err() {
            // Start over from the position: what was gathered is read again.
            self.reader = None;
        }
        result
    }

    async fn gather_and_ship(&mut self, idle: Duration) -> anyhow::Result<Outcome> {
        let reader = self.reader.as_mut().context("no reader")?;
        let first = match tokio::time::timeout(idle, reader.next()).await {
            Err(_) => return Ok(Outcome::Idle),
            Ok(None) => anyhow::bail!("the read of {} ended", self.stream),
            Ok(Some(message)) => message?,
        };
        let deadline = Instant::now() + self.settings.interval;
        let (mut messages, mut bytes, mut pending) = (Vec::new(), first.0.payload.len(), first.1);
        messages.push(first.0);
        while messages.len() < self.settings.max_messages && bytes < self.settings.max_bytes {
            // A backlog is drained at once; a trickle is gathered until the interval is up.
            let wait =
                if pending > 0 { Duration::from_secs(5) } else { deadline.saturating_duration_since(Instant::now()) };
            match tokio::time::timeout(wait, reader.next()).await {
                Err(_) => break,
                Ok(None) => anyhow::bail!("the read of {} ended", self.stream),
                Ok(Some(message)) => {
                    let (message, behind) = message?;
                    bytes += message.payload.len();
                    pending = behind;
                    messages.push(message);
                }
            }
            if pending == 0 && Instant::now() >= deadline {
                break;
            }
        }
        self.ship(messages).await
    }

    async fn ship(&mut self, messages: Vec<RawMessage>) -> anyhow::Result<Outcome> {
        let mut previous = self.position;
        for message in &messages {
            anyhow::ensure!(
                message.sequence > previous,
                "the read of {} gave sequence {} after {previous}: out of order, nothing shipped",
                self.stream,
                message.sequence
            );
            previous = message.sequence;
        }
        // Nothing but this archiver may have moved the archive, and the stream must be the
        // one the read began on (a restore or a new cluster makes a new one): otherwise two
        // histories would mix. Either way the next step starts over from the storage.
        let created = raw::extent(&self.js, &self.stream).await?.and_then(|e| e.created);
        anyhow::ensure!(
            created == self.created,
            "stream {} was created again since this read began (a restore or a new cluster); starting over",
            self.stream
        );
        let (stored, _) = archived_position(&self.storage, &self.keys, &self.stream).await?;
        anyhow::ensure!(
            stored == self.position,
            "the archive of {} moved from {} to {stored} under this archiver: is a second one writing to {}?",
            self.stream,
            self.position,
            self.storage.location()
        );
        let last = messages.last().map_or(self.position, |m| m.sequence);
        let count = messages.len();
        let segment = Segment { stream: self.stream.clone(), first: self.position + 1, last, messages };
        let (name, bytes) = segment.encode(&self.keys)?;
        self.storage.put(&name.key, bytes.into()).await?;
        // Shipped: the segment is the truth from here on, whatever happens to the checkpoint.
        self.position = last;
        tracing::debug!(stream = %self.stream, first = segment.first, last, messages = count, "segment shipped");
        let checkpoint = Checkpoint::signed(&self.stream, last, name.key, &self.keys);
        let hint = serde_json::to_vec(&checkpoint)?;
        if let Err(error) = self.storage.put(&layout::checkpoint_key(&self.stream), hint.into()).await {
            // Only slower: the next start lists the segments after the older checkpoint.
            tracing::warn!(stream = %self.stream, error = format!("{error:#}"), "could not update the archive checkpoint");
        }
        Ok(Outcome::Shipped { messages: count, last })
    }
}

/// Publishes each stream's archive position to the `sovd_archive` bucket, where `/metrics`
/// of any gateway reads the archive lag.
async fn publish_position(bucket: &jetstream::kv::Store, stream: &str, position: u64) {
    let value = json!({"last_sequence": position, "at": OffsetDateTime::now_utc().unix_timestamp()});
    if let Err(error) = bucket.put(stream, value.to_string().into()).await {
        tracing::debug!(error = %error, "could not publish the archive position");
    }
}

/// Archives every event stream until shutdown: one task per stream. A failure is recorded
/// once (ArchiveFailed on SOVD_OPS) and retried with backoff from the position.
pub async fn run(
    store: EventStore,
    storage: Storage,
    keys: Keys,
    settings: ArchiveSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let js = store.jetstream().clone();
    let bucket = sovd_nats::kv::open_bucket(&js, sovd_nats::kv::Bucket::Archive, settings.replicas).await?;
    let mut tasks = Vec::new();
    for stream in StreamName::ALL {
        let archiver =
            StreamArchiver::resume(js.clone(), storage.clone(), keys.clone(), stream.as_str(), settings).await?;
        tasks.push(tokio::spawn(archive_loop(archiver, store.clone(), bucket.clone(), shutdown.clone())));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

async fn archive_loop(
    mut archiver: StreamArchiver,
    store: EventStore,
    bucket: jetstream::kv::Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let stream = archiver.stream().to_owned();
    let location = archiver.storage.location().to_owned();
    let mut failing = false;
    let mut backoff = Duration::from_millis(500);
    publish_position(&bucket, &stream, archiver.position()).await;
    while !*shutdown.borrow() {
        let step = tokio::select! {
            step = archiver.try_ship_next(Duration::from_secs(1)) => step,
            _ = shutdown.changed() => break,
        };
        match step {
            Ok(outcome) => {
                if failing {
                    tracing::info!(stream, position = archiver.position(), "archive recovered");
                }
                failing = false;
                backoff = Duration::from_millis(500);
                if matches!(outcome, Outcome::Shipped { .. }) {
                    publish_position(&bucket, &stream, archiver.position()).await;
                }
            }
            Err(error) => {
                tracing::warn!(stream, error = format!("{error:#}"), "archive step failed");
                if !failing {
                    failing = true;
                    record_failure(&store, &stream, &location, &error).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn record_failure(store: &EventStore, stream: &str, location: &str, error: &anyhow::Error) {
    let event = Event::ArchiveFailed(ArchiveFailed {
        stream: stream.to_owned(),
        location: location.to_owned(),
        error: format!("{error:#}"),
        at: OffsetDateTime::now_utc(),
    });
    if let Err(e) = store.record_operation(OpsKind::Archive, &event, "system:archive").await {
        tracing::warn!(error = %e, "could not record the archive failure on SOVD_OPS");
    }
}
