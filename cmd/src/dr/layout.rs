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
//! Segments are in `segment.rs`. Signatures are HMAC-SHA256 under the backup key
//! (`signing.rs`, ADR 009); names read back from storage are checked against what sovd owns
//! (`names.rs`).

use std::collections::BTreeSet;

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        let segment = format!("archive/SOVD_OPS/{:020}-{:020}-{}.seg", 1, 9, "0f".repeat(32));
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
