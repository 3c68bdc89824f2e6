//! What is stored where, and in what shape.
//!
//! ```text
//! backups/<backup_id>/<STREAM>.snap        JetStream snapshot of one stream (opaque bytes)
//! backups/<backup_id>/manifest.json        written last: a backup without one does not exist
//! archive/<STREAM>/<first>-<last>-<sha256>.seg   the stream's messages first..=last (postcard, LZ4)
//! archive/<STREAM>/checkpoint.json         the last segment shipped (a hint; the segments are the truth)
//! ```
//! Sequences in segment names are zero-padded to 20 digits, so names sort in stream order;
//! each segment starts right after the one before (`first` = previous `last` + 1).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sovd_nats::raw::RawMessage;
use time::OffsetDateTime;

use super::checksum::sha256_hex;

pub const MANIFEST_FORMAT: u32 = 1;

/// One backup: what each stream looked like and where its snapshot is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub sovd_version: String,
    pub streams: Vec<StreamBackup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamBackup {
    pub stream: String,
    /// Key of the snapshot object.
    pub object: String,
    pub bytes: u64,
    pub sha256: String,
    /// Messages, first and last sequence when the snapshot began (the server's answer). The
    /// snapshot holds at least these: events stored while it was taken may be in it too.
    pub messages: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// The stream's last sequence and its time once the snapshot was complete: the snapshot
    /// holds nothing after these. A point-in-time restore picks a backup by them.
    pub last_sequence_at_end: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_time_at_end: Option<OffsetDateTime>,
    /// The stream configuration and state as JetStream reported them (JSON), which a restore
    /// hands back to the server.
    pub config: Value,
    pub state: Value,
}

impl Manifest {
    pub fn stream(&self, name: &str) -> Option<&StreamBackup> {
        self.streams.iter().find(|s| s.stream == name)
    }

    pub fn messages(&self) -> u64 {
        self.streams.iter().map(|s| s.messages).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.streams.iter().map(|s| s.bytes).sum()
    }
}

pub fn backups_prefix() -> &'static str {
    "backups/"
}

pub fn manifest_key(backup_id: &str) -> String {
    format!("backups/{backup_id}/manifest.json")
}

pub fn snapshot_key(backup_id: &str, stream: &str) -> String {
    format!("backups/{backup_id}/{stream}.snap")
}

/// The backup id of a key under `backups/`.
pub fn backup_of(key: &str) -> Option<&str> {
    key.strip_prefix("backups/")?.split('/').next().filter(|id| !id.is_empty())
}

/// A backup id that sorts by time, to the microsecond: `20261129T143005.123456Z-1a2b3c4d`.
pub fn new_backup_id(at: OffsetDateTime) -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z-{suffix}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

pub fn archive_prefix(stream: &str) -> String {
    format!("archive/{stream}/")
}

pub fn checkpoint_key(stream: &str) -> String {
    format!("archive/{stream}/checkpoint.json")
}

/// Where the archive of a stream has got to (a hint that spares listing every segment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub last_sequence: u64,
    pub segment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A segment as named in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    pub key: String,
    pub first: u64,
    pub last: u64,
    pub sha256: String,
}

impl SegmentName {
    pub fn new(stream: &str, first: u64, last: u64, sha256: &str) -> Self {
        Self {
            key: format!("archive/{stream}/{first:020}-{last:020}-{sha256}.seg"),
            first,
            last,
            sha256: sha256.into(),
        }
    }

    /// Parses a key under `archive/<stream>/`; other objects there (the checkpoint) are `None`.
    pub fn parse(key: &str) -> Option<Self> {
        let file = key.rsplit('/').next()?.strip_suffix(".seg")?;
        let mut parts = file.splitn(3, '-');
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        let sha256 = parts.next()?.to_owned();
        (sha256.len() == 64 && first <= last).then(|| Self { key: key.to_owned(), first, last, sha256 })
    }
}

/// The body of a segment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub stream: String,
    pub first: u64,
    pub last: u64,
    pub messages: Vec<RawMessage>,
}

impl Segment {
    /// The bytes to store (postcard, LZ4-compressed with its length in front) and the name
    /// they go under.
    pub fn encode(&self) -> anyhow::Result<(SegmentName, Vec<u8>)> {
        let bytes = lz4_flex::compress_prepend_size(&postcard::to_stdvec(self)?);
        Ok((SegmentName::new(&self.stream, self.first, self.last, &sha256_hex(&bytes)), bytes))
    }

    /// Checks the bytes against the name before trusting them.
    pub fn decode(name: &SegmentName, bytes: &[u8]) -> anyhow::Result<Self> {
        let digest = sha256_hex(bytes);
        anyhow::ensure!(
            digest == name.sha256,
            "archive object {} is damaged: its sha256 is {digest}, its name says {}",
            name.key,
            name.sha256
        );
        let unreadable = |e: &dyn std::fmt::Display| anyhow::anyhow!("archive object {} cannot be read: {e}", name.key);
        let plain = lz4_flex::decompress_size_prepended(bytes).map_err(|e| unreadable(&e))?;
        let segment: Self = postcard::from_bytes(&plain).map_err(|e| unreadable(&e))?;
        anyhow::ensure!(
            segment.first == name.first && segment.last == name.last,
            "archive object {} holds sequences {}..={}, not what its name says",
            name.key,
            segment.first,
            segment.last
        );
        Ok(segment)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(sequence: u64) -> RawMessage {
        RawMessage {
            sequence,
            published_ns: 1_764_000_000_000_000_000,
            subject: "sovd.cmd.X.Y".into(),
            headers: vec![("Sovd-Event-Type".into(), "CommandRequested".into())],
            payload: bytes::Bytes::from_static(b"\x01\x02"),
        }
    }

    #[test]
    fn a_segment_round_trips_and_its_name_sorts_in_stream_order() {
        let segment =
            Segment { stream: "SOVD_COMMANDS".into(), first: 9, last: 11, messages: vec![message(10), message(11)] };
        let (name, bytes) = segment.encode().unwrap();
        assert_eq!(SegmentName::parse(&name.key), Some(name.clone()));
        assert_eq!(Segment::decode(&name, &bytes).unwrap(), segment);
        let later = SegmentName::new("SOVD_COMMANDS", 12, 100, &name.sha256);
        assert!(name.key < later.key, "{} sorts before {}", name.key, later.key);
        assert_eq!(SegmentName::parse("archive/SOVD_COMMANDS/checkpoint.json"), None);
    }

    #[test]
    fn a_changed_byte_is_refused_with_the_object_named() {
        let segment = Segment { stream: "SOVD_FLEET".into(), first: 1, last: 1, messages: vec![message(1)] };
        let (name, mut bytes) = segment.encode().unwrap();
        let end = bytes.len() - 1;
        bytes[end] ^= 0xff;
        let error = Segment::decode(&name, &bytes).unwrap_err().to_string();
        assert!(error.contains(&name.key) && error.contains("damaged"), "{error}");
    }

    #[test]
    fn backup_ids_sort_by_time_and_keys_name_their_backup() {
        let earlier = new_backup_id(time::macros::datetime!(2026-11-29 09:05:03 UTC));
        let later = new_backup_id(time::macros::datetime!(2026-11-29 10:00:00 UTC));
        assert!(earlier.starts_with("20261129T090503.000000Z-") && earlier < later, "{earlier} {later}");
        assert_eq!(backup_of(&manifest_key(&earlier)), Some(earlier.as_str()));
        assert_eq!(backup_of("archive/SOVD_OPS/x.seg"), None);
    }
}
