//! What is stored where, and in what shape.
//!
//! ```text
//! backups/<backup_id>/<STREAM>.snap        JetStream snapshot of one stream (opaque bytes)
//! backups/<backup_id>/manifest.json        written last: a backup without one does not exist;
//!                                          signed, and lists every snapshot's sha256
//! archive/<STREAM>/<first>-<last>-<sha256>.seg   the stream's messages first..=last (postcard, LZ4)
//!                                          behind a signature line
//! archive/<STREAM>/checkpoint.json         the last segment shipped (a hint; the segments are the truth)
//! ```
//! Sequences in segment names are zero-padded to 20 digits, so names sort in stream order;
//! each segment starts right after the one before (`first` = previous `last` + 1).
//! Signatures are HMAC-SHA256 under the backup key (`signing.rs`, ADR 009); names read back
//! from storage are checked against what sovd owns (`names.rs`).

use std::collections::BTreeSet;

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sovd_nats::raw::RawMessage;
use time::OffsetDateTime;

use super::checksum::sha256_hex;
use super::names;
use super::signing::{Keys, Purpose, Signature, SignatureError};

/// 2: signed. A manifest of format 1 has no signature.
pub const MANIFEST_FORMAT: u32 = 2;

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
    /// Over everything above (see [`Manifest::signed_content`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
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

    /// What the signature covers: the manifest without its signature, as JSON. Both sides
    /// make it from the parsed manifest; a backup checks that its own manifest, read back,
    /// verifies before it stores it.
    fn signed_content(&self) -> anyhow::Result<Vec<u8>> {
        Ok(serde_json::to_vec(&Self { signature: None, ..self.clone() })?)
    }

    pub fn sign(&mut self, keys: &Keys) -> anyhow::Result<()> {
        self.signature = Some(keys.sign(Purpose::Manifest, &[&self.signed_content()?]));
        Ok(())
    }

    pub fn check_signature(&self, keys: &Keys) -> Result<(), SignatureError> {
        let what = format!("backup {}", self.backup_id);
        let content = self.signed_content().map_err(|_| SignatureError::Mismatch { what: what.clone() })?;
        keys.check(&what, self.signature.as_ref(), Purpose::Manifest, &[&content])
    }

    /// Refuses a manifest that names anything sovd does not own, or in a shape sovd does not
    /// write: its names decide which streams a restore deletes and writes and which objects
    /// it reads. The message names the bad entry.
    pub fn check_names(&self) -> anyhow::Result<()> {
        let id = &self.backup_id;
        ensure!(names::is_backup_id(id), "backup {id:?} does not have the shape of a backup id");
        let mut seen = BTreeSet::new();
        for stream in &self.streams {
            let name = &stream.stream;
            if !names::is_protected(name) {
                bail!(
                    "backup {id} names stream {name:?}, which is not a stream sovd owns ({})",
                    names::protected_list()
                );
            }
            ensure!(seen.insert(name), "backup {id} names stream {name} twice");
            let expected = snapshot_key(id, name);
            ensure!(
                stream.object == expected,
                "backup {id} puts stream {name} in object {:?}; sovd writes it to {expected}",
                stream.object
            );
            ensure!(names::is_sha256_hex(&stream.sha256), "backup {id} gives {name} the sha256 {:?}", stream.sha256);
        }
        Ok(())
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
    /// Over the stream, the sequence, the segment and the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

impl Checkpoint {
    pub fn signed(stream: &str, last_sequence: u64, segment: String, keys: &Keys) -> Self {
        let mut checkpoint = Self { last_sequence, segment, at: OffsetDateTime::now_utc(), signature: None };
        checkpoint.signature = Some(keys.sign(Purpose::Checkpoint, &checkpoint.content(stream).each()));
        checkpoint
    }

    /// Whether this is the checkpoint of `stream` that one of `keys` signed.
    pub fn check_signature(&self, stream: &str, keys: &Keys) -> Result<(), SignatureError> {
        let what = format!("archive object {}", checkpoint_key(stream));
        keys.check(&what, self.signature.as_ref(), Purpose::Checkpoint, &self.content(stream).each())
    }

    fn content(&self, stream: &str) -> CheckpointContent {
        CheckpointContent {
            stream: stream.as_bytes().to_vec(),
            last_sequence: self.last_sequence.to_be_bytes(),
            segment: self.segment.as_bytes().to_vec(),
            at: self.at.unix_timestamp_nanos().to_be_bytes(),
        }
    }
}

/// The parts a checkpoint's signature covers.
struct CheckpointContent {
    stream: Vec<u8>,
    last_sequence: [u8; 8],
    segment: Vec<u8>,
    at: [u8; 16],
}

impl CheckpointContent {
    fn each(&self) -> [&[u8]; 4] {
        [&self.stream, &self.last_sequence, &self.segment, &self.at]
    }
}

/// A segment as named in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    pub key: String,
    pub stream: String,
    pub first: u64,
    pub last: u64,
    pub sha256: String,
}

impl SegmentName {
    pub fn new(stream: &str, first: u64, last: u64, sha256: &str) -> Self {
        Self {
            key: format!("archive/{stream}/{first:020}-{last:020}-{sha256}.seg"),
            stream: stream.to_owned(),
            first,
            last,
            sha256: sha256.into(),
        }
    }

    /// Parses a key of a segment of `stream`, exactly as [`SegmentName::new`] writes it (an
    /// event stream's name, 20-digit sequences, a sha256 in lowercase hex); anything else,
    /// the checkpoint included, is `None`.
    pub fn parse(stream: &str, key: &str) -> Option<Self> {
        names::event_stream(stream)?;
        let file = key.strip_prefix(&archive_prefix(stream))?.strip_suffix(".seg")?;
        let mut parts = file.splitn(3, '-');
        let (first, last, sha256) = (parts.next()?, parts.next()?, parts.next()?);
        let sequence = |digits: &str| {
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse::<u64>().ok())?
        };
        let (first, last) = (sequence(first)?, sequence(last)?);
        (names::is_sha256_hex(sha256) && first <= last).then(|| Self::new(stream, first, last, sha256))
    }
}

/// The first line of a signed segment: `sovd-segment-1 <key id> <mac>`.
const SEGMENT_SIGNATURE: &[u8] = b"sovd-segment-1 ";

/// The body of a segment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub stream: String,
    pub first: u64,
    pub last: u64,
    pub messages: Vec<RawMessage>,
}

impl Segment {
    /// The bytes to store and the name they go under: a signature line, then the body
    /// (postcard, LZ4-compressed with its length in front). The signature covers the stream,
    /// the sequences and the body, so a segment copied under another stream or range fails.
    pub fn encode(&self, keys: &Keys) -> anyhow::Result<(SegmentName, Vec<u8>)> {
        let body = lz4_flex::compress_prepend_size(&postcard::to_stdvec(self)?);
        let signature = keys.sign(Purpose::Segment, &signed_parts(&self.stream, self.first, self.last, &body).each());
        let mut bytes = SEGMENT_SIGNATURE.to_vec();
        bytes.extend_from_slice(format!("{} {}\n", signature.key_id, signature.mac).as_bytes());
        bytes.extend_from_slice(&body);
        Ok((SegmentName::new(&self.stream, self.first, self.last, &sha256_hex(&bytes)), bytes))
    }

    /// Checks the bytes against the name (damage) and the signature against the keys;
    /// returns the body. Touches nothing.
    pub fn check<'a>(name: &SegmentName, bytes: &'a [u8], keys: &Keys) -> anyhow::Result<&'a [u8]> {
        let digest = sha256_hex(bytes);
        anyhow::ensure!(
            digest == name.sha256,
            "archive object {} is damaged: its sha256 is {digest}, its name says {}",
            name.key,
            name.sha256
        );
        let what = format!("archive object {}", name.key);
        let (signature, body) =
            split_signature(bytes).ok_or_else(|| SignatureError::Mismatch { what: what.clone() })?;
        let parts = signed_parts(&name.stream, name.first, name.last, body);
        keys.check(&what, signature.as_ref(), Purpose::Segment, &parts.each())?;
        Ok(body)
    }

    /// [`Segment::check`], then the messages.
    pub fn decode(name: &SegmentName, bytes: &[u8], keys: &Keys) -> anyhow::Result<Self> {
        let body = Self::check(name, bytes, keys)?;
        let unreadable = |e: &dyn std::fmt::Display| anyhow::anyhow!("archive object {} cannot be read: {e}", name.key);
        let plain = lz4_flex::decompress_size_prepended(body).map_err(|e| unreadable(&e))?;
        let segment: Self = postcard::from_bytes(&plain).map_err(|e| unreadable(&e))?;
        anyhow::ensure!(
            segment.stream == name.stream && segment.first == name.first && segment.last == name.last,
            "archive object {} holds {} sequences {}..={}, not what its name says",
            name.key,
            segment.stream,
            segment.first,
            segment.last
        );
        Ok(segment)
    }
}

/// The parts a segment's signature covers.
struct SegmentParts<'a> {
    stream: &'a [u8],
    first: [u8; 8],
    last: [u8; 8],
    body: &'a [u8],
}

impl SegmentParts<'_> {
    fn each(&self) -> [&[u8]; 4] {
        [self.stream, &self.first, &self.last, self.body]
    }
}

fn signed_parts<'a>(stream: &'a str, first: u64, last: u64, body: &'a [u8]) -> SegmentParts<'a> {
    SegmentParts { stream: stream.as_bytes(), first: first.to_be_bytes(), last: last.to_be_bytes(), body }
}

/// The signature and the body of a segment's bytes; no signature when they begin with the
/// body (segments written before sovd signed them: LZ4's length prefix never spells the
/// signature line's start). `None` for a signature line that is not well formed.
fn split_signature(bytes: &[u8]) -> Option<(Option<Signature>, &[u8])> {
    let Some(rest) = bytes.strip_prefix(SEGMENT_SIGNATURE) else {
        return Some((None, bytes));
    };
    let end = rest.iter().take(128).position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&rest[..end]).ok()?;
    let (key_id, mac) = line.split_once(' ')?;
    Some((Some(Signature { key_id: key_id.to_owned(), mac: mac.to_owned() }), &rest[end + 1..]))
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

    fn keys(text: &str) -> Keys {
        Keys::new(crate::dr::signing::BackupKey::parse(&format!("{text:-<40}")).unwrap())
    }

    fn manifest() -> Manifest {
        let id = "20261129T090503.000000Z-1a2b3c4d".to_owned();
        let stream = |name: &str| StreamBackup {
            stream: name.into(),
            object: snapshot_key(&id, name),
            bytes: 10,
            sha256: "ab".repeat(32),
            messages: 3,
            first_sequence: 1,
            last_sequence: 3,
            last_sequence_at_end: 3,
            last_time_at_end: None,
            config: serde_json::json!({"name": name, "max_age": 0, "subjects": ["sovd.cmd.>"]}),
            state: serde_json::json!({"messages": 3, "first_seq": 1, "last_seq": 3}),
        };
        Manifest {
            format: MANIFEST_FORMAT,
            backup_id: id.clone(),
            started_at: time::macros::datetime!(2026-11-29 09:05:03 UTC),
            finished_at: time::macros::datetime!(2026-11-29 09:05:04.5 UTC),
            sovd_version: "0.1.0".into(),
            streams: vec![stream("SOVD_COMMANDS"), stream("KV_sovd_usernames")],
            signature: None,
        }
    }

    #[test]
    fn a_segment_round_trips_and_its_name_sorts_in_stream_order() {
        let keys = keys("one");
        let segment =
            Segment { stream: "SOVD_COMMANDS".into(), first: 9, last: 11, messages: vec![message(10), message(11)] };
        let (name, bytes) = segment.encode(&keys).unwrap();
        assert_eq!(SegmentName::parse("SOVD_COMMANDS", &name.key), Some(name.clone()));
        assert_eq!(Segment::decode(&name, &bytes, &keys).unwrap(), segment);
        let later = SegmentName::new("SOVD_COMMANDS", 12, 100, &name.sha256);
        assert!(name.key < later.key, "{} sorts before {}", name.key, later.key);
        assert_eq!(SegmentName::parse("SOVD_COMMANDS", "archive/SOVD_COMMANDS/checkpoint.json"), None);
    }

    #[test]
    fn a_segment_name_is_only_accepted_in_the_form_sovd_writes_for_its_own_stream() {
        let good = SegmentName::new("SOVD_OPS", 1, 20, &"0f".repeat(32));
        assert_eq!(SegmentName::parse("SOVD_OPS", &good.key), Some(good.clone()));
        assert_eq!(SegmentName::parse("SOVD_FLEET", &good.key), None, "another stream's folder");
        assert_eq!(SegmentName::parse("../x", &good.key.replace("SOVD_OPS", "../x")), None, "not a stream of ours");
        let sha = "0f".repeat(32);
        for key in [
            format!("archive/SOVD_OPS/nested/{:020}-{:020}-{sha}.seg", 1, 2),
            format!("archive/SOVD_OPS/1-2-{sha}.seg"),
            format!("archive/SOVD_OPS/{:020}-{:020}-{}.seg", 1, 2, "0F".repeat(32)),
            format!("archive/SOVD_OPS/{:020}-{:020}-{}.seg", 1, 2, "../".repeat(21) + "x"),
            format!("archive/SOVD_OPS/{:020}-{:020}-{sha}.seg", 3, 2),
            format!("archive/SOVD_OPS/+{:019}-{:020}-{sha}.seg", 1, 2),
        ] {
            assert_eq!(SegmentName::parse("SOVD_OPS", &key), None, "{key}");
        }
    }

    #[test]
    fn a_changed_byte_is_refused_with_the_object_named() {
        let keys = keys("one");
        let segment = Segment { stream: "SOVD_FLEET".into(), first: 1, last: 1, messages: vec![message(1)] };
        let (name, mut bytes) = segment.encode(&keys).unwrap();
        let end = bytes.len() - 1;
        bytes[end] ^= 0xff;
        let error = Segment::decode(&name, &bytes, &keys).unwrap_err().to_string();
        assert!(error.contains(&name.key) && error.contains("damaged"), "{error}");
    }

    #[test]
    fn a_segment_is_refused_unless_this_key_signed_it_for_its_stream_and_range() {
        let (ours, theirs) = (keys("ours"), keys("theirs"));
        let segment = Segment { stream: "SOVD_IAM".into(), first: 5, last: 5, messages: vec![message(5)] };

        let (name, planted) = segment.encode(&theirs).unwrap();
        let error = Segment::decode(&name, &planted, &ours).unwrap_err();
        assert!(matches!(error.downcast_ref::<SignatureError>(), Some(SignatureError::OtherKey { .. })), "{error:#}");

        // Ours, copied under another stream (with the name fixed up): the signature names the stream.
        let (name, bytes) = segment.encode(&ours).unwrap();
        let moved = SegmentName::new("SOVD_OPS", 5, 5, &name.sha256);
        let error = Segment::decode(&moved, &bytes, &ours).unwrap_err();
        assert!(matches!(error.downcast_ref::<SignatureError>(), Some(SignatureError::Mismatch { .. })), "{error:#}");

        // Written before segments were signed: the body alone.
        let unsigned = lz4_flex::compress_prepend_size(&postcard::to_stdvec(&segment).unwrap());
        let old = SegmentName::new("SOVD_IAM", 5, 5, &sha256_hex(&unsigned));
        let error = Segment::decode(&old, &unsigned, &ours).unwrap_err();
        assert!(matches!(error.downcast_ref::<SignatureError>(), Some(SignatureError::Unsigned { .. })), "{error:#}");
        assert_eq!(Segment::decode(&old, &unsigned, &ours.clone().accepting_unsigned()).unwrap(), segment);
    }

    #[test]
    fn a_signed_manifest_verifies_after_a_round_trip_through_its_file_and_not_after_a_change() {
        let keys = keys("one");
        let mut manifest = manifest();
        manifest.sign(&keys).unwrap();
        let read: Manifest = serde_json::from_slice(&serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
        assert_eq!(read.check_signature(&keys), Ok(()));

        let mut changed = read.clone();
        changed.streams[0].config["subjects"] = serde_json::json!(["sovd.>"]);
        assert!(matches!(changed.check_signature(&keys), Err(SignatureError::Mismatch { .. })));
        let mut stripped = read.clone();
        stripped.signature = None;
        assert!(matches!(stripped.check_signature(&keys), Err(SignatureError::Unsigned { .. })));
        let message = stripped.check_signature(&keys).unwrap_err().to_string();
        assert!(message.starts_with(&format!("backup {} is not signed", read.backup_id)), "{message}");
    }

    #[test]
    fn a_manifest_naming_anything_sovd_does_not_own_is_refused_with_the_entry_named() {
        assert!(manifest().check_names().is_ok());
        let mut escape = manifest();
        escape.streams[0].stream = "../x".into();
        escape.streams[0].object = snapshot_key(&escape.backup_id, "../x");
        let error = escape.check_names().unwrap_err().to_string();
        assert!(error.contains("\"../x\"") && error.contains("not a stream sovd owns"), "{error}");

        let mut elsewhere = manifest();
        elsewhere.streams[1].object = "archive/SOVD_IAM/checkpoint.json".into();
        let error = elsewhere.check_names().unwrap_err().to_string();
        assert!(error.contains("archive/SOVD_IAM/checkpoint.json"), "{error}");

        let mut twice = manifest();
        twice.streams[1] = twice.streams[0].clone();
        assert!(twice.check_names().unwrap_err().to_string().contains("twice"));

        let mut bad_id = manifest();
        bad_id.backup_id = "../../archive".into();
        assert!(bad_id.check_names().is_err());
    }

    #[test]
    fn a_checkpoint_verifies_for_its_own_stream_only() {
        let keys = keys("one");
        let segment = SegmentName::new("SOVD_OPS", 1, 9, &"0f".repeat(32)).key;
        let checkpoint = Checkpoint::signed("SOVD_OPS", 9, segment, &keys);
        let read: Checkpoint = serde_json::from_slice(&serde_json::to_vec(&checkpoint).unwrap()).unwrap();
        assert_eq!(read.check_signature("SOVD_OPS", &keys), Ok(()));
        assert!(matches!(read.check_signature("SOVD_IAM", &keys), Err(SignatureError::Mismatch { .. })));
        let raised = Checkpoint { last_sequence: 90, ..read };
        assert!(matches!(raised.check_signature("SOVD_OPS", &keys), Err(SignatureError::Mismatch { .. })));
    }

    #[test]
    fn backup_ids_sort_by_time_and_keys_name_their_backup() {
        let earlier = new_backup_id(time::macros::datetime!(2026-11-29 09:05:03 UTC));
        let later = new_backup_id(time::macros::datetime!(2026-11-29 10:00:00 UTC));
        assert!(earlier.starts_with("20261129T090503.000000Z-") && earlier < later, "{earlier} {later}");
        assert!(names::is_backup_id(&earlier));
        assert_eq!(backup_of(&manifest_key(&earlier)), Some(earlier.as_str()));
        assert_eq!(backup_of("archive/SOVD_OPS/x.seg"), None);
    }
}
