//! A restore does not trust the bucket: names it did not write, objects the backup key did not
//! sign, and planted events are refused before anything is touched; its work folder is its
//! own; what it keeps on a local disk is private; the key never shows
//! (docs/adr/009-authenticated-backups.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::s3::{local_env, random_key, random_keys, storage_args};
use futures::TryStreamExt;
use sovd::dr::archive::{ArchiveSettings, StreamArchiver};
use sovd::dr::backup;
use sovd::dr::checksum::sha256_hex;
use sovd::dr::layout::{self, Checkpoint, Manifest};
use sovd::dr::restore::{self, RestoreOptions};
use sovd::dr::segment::{Segment, SegmentName};
use sovd::dr::signing::Keys;
use sovd::dr::storage::Storage;
use sovd_nats::EventStore;
use sovd_nats::testing::{NatsServer, append_requests};
use uuid::Uuid;

const COMMANDS: &str = "SOVD_COMMANDS";

/// A NATS with the streams, backed up to a fresh local directory and archived there.
struct Source {
    nats: NatsServer,
    store: EventStore,
    storage: Storage,
    keys: Keys,
    dir: PathBuf,
}

impl Source {
    async fn start(name: &str) -> Self {
        let nats = NatsServer::start().await;
        let store = EventStore::new(nats.client().await);
        store.ensure_streams(1).await.unwrap();
        let dir = std::env::temp_dir().join(format!("sovd-{name}-{}", Uuid::new_v4()));
        let storage = Storage::open(&storage_args(&local_env(&dir))).unwrap();
        Self { nats, store, storage, keys: random_keys(), dir }
    }

    /// Appends `count` commands and takes a backup; returns its id.
    async fn backup_after(&self, count: usize) -> String {
        append_requests(&self.store, count).await;
        backup::backup(&self.nats.client().await, &self.storage, &self.keys).await.unwrap().backup_id
    }

    /// Appends `count` commands and archives SOVD_COMMANDS up to `last`.
    async fn archive_after(&self, count: usize, last: u64) {
        append_requests(&self.store, count).await;
        let settings = ArchiveSettings { interval: Duration::from_millis(100), ..Default::default() };
        let js = self.store.jetstream().clone();
        let mut archiver =
            StreamArchiver::resume(js, self.storage.clone(), self.keys.clone(), COMMANDS, settings).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while archiver.position() < last {
            assert!(Instant::now() < deadline, "the archive did not reach {last} within 15 s");
            archiver.try_ship_next(Duration::from_millis(200)).await.unwrap();
        }
    }

    async fn manifest(&self, id: &str) -> Manifest {
        serde_json::from_slice(&self.storage.get(&layout::manifest_key(id)).await.unwrap()).unwrap()
    }

    async fn put_manifest(&self, manifest: &Manifest) {
        let bytes = serde_json::to_vec_pretty(manifest).unwrap();
        self.storage.put(&layout::manifest_key(&manifest.backup_id), bytes.into()).await.unwrap();
    }

    async fn segments(&self) -> Vec<SegmentName> {
        let listed = self.storage.list(&layout::archive_prefix(COMMANDS)).await.unwrap();
        listed.iter().filter_map(|(key, _)| SegmentName::parse(COMMANDS, key)).collect()
    }

    /// Restores into a new, empty NATS with `keys`; the error chain as text when refused.
    async fn restore_into(&self, target: &NatsServer, keys: &Keys, work_dir: &Path) -> Result<u64, String> {
        let options = RestoreOptions {
            backup_id: None,
            until: None,
            replace: false,
            verify: true,
            replicas: 1,
            work_dir: work_dir.to_owned(),
        };
        match restore::restore(&target.client().await, &self.storage, keys, &options).await {
            Ok(restored) => Ok(restored.messages()),
            Err(error) => Err(format!("{error:#}")),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn streams_of(server: &NatsServer) -> Vec<String> {
    let js = async_nats::jetstream::new(server.client().await);
    js.stream_names().try_collect().await.unwrap()
}

/// Every file and folder under `dir`, `dir` included.
fn everything_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_owned()];
    let mut index = 0;
    while index < found.len() {
        if found[index].is_dir() {
            for entry in std::fs::read_dir(&found[index]).unwrap() {
                found.push(entry.unwrap().path());
            }
        }
        index += 1;
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_manifest_naming_a_stream_sovd_does_not_own_refuses_the_restore_before_anything_is_written() {
    let source = Source::start("names").await;
    let id = source.backup_after(10).await;
    // Signed again with the key: the names are checked whatever the signature says (a leaked
    // key, or a restore that accepts unsigned backups).
    let mut manifest = source.manifest(&id).await;
    let commands = manifest.streams.iter_mut().find(|s| s.stream == COMMANDS).unwrap();
    commands.stream = "../escape".into();
    manifest.sign(&source.keys).unwrap();
    source.put_manifest(&manifest).await;
    let work = source.dir.join("work");
    std::fs::create_dir(&work).unwrap();

    let target = NatsServer::start().await;
    let refused = source.restore_into(&target, &source.keys, &work).await.unwrap_err();
    assert!(refused.contains("\"../escape\"") && refused.contains("not a stream sovd owns"), "{refused}");
    let escaped: Vec<PathBuf> =
        everything_under(&source.dir).into_iter().filter(|p| p.to_string_lossy().contains("escape")).collect();
    assert!(escaped.is_empty(), "nothing is written under the name: {escaped:?}");
    assert!(streams_of(&target).await.is_empty(), "nothing was restored");
}

#[tokio::test]
async fn an_object_in_a_streams_archive_that_is_not_one_of_its_segments_refuses_the_restore_by_name() {
    let source = Source::start("stray").await;
    source.backup_after(5).await;
    source.archive_after(5, 10).await;
    let segment = source.segments().await.pop().unwrap();
    let file = segment.key.rsplit('/').next().unwrap();
    let stray = format!("archive/{COMMANDS}/nested/{file}");
    source.storage.put(&stray, source.storage.get(&segment.key).await.unwrap()).await.unwrap();

    let target = NatsServer::start().await;
    let refused = source.restore_into(&target, &source.keys, &source.dir.join("work")).await.unwrap_err();
    assert!(refused.contains(&stray) && refused.contains("not a segment sovd writes"), "{refused}");
    assert!(streams_of(&target).await.is_empty(), "nothing was restored");
}

#[tokio::test]
async fn a_backup_signed_with_another_key_is_refused_by_name_before_anything_is_touched() {
    let source = Source::start("other-key").await;
    let id = source.backup_after(10).await;

    let target = NatsServer::start().await;
    let refused = source.restore_into(&target, &random_keys(), &source.dir.join("work")).await.unwrap_err();
    assert!(refused.contains(&format!("backup {id} is not signed with this key")), "{refused}");
    assert!(streams_of(&target).await.is_empty(), "nothing was restored");
}

#[tokio::test]
async fn events_planted_in_a_backup_by_whoever_can_write_to_the_bucket_are_refused() {
    let source = Source::start("planted").await;
    let id = source.backup_after(10).await;
    // The attacker's own system, with the events they want restored, backed up with their key.
    let theirs = Source::start("attacker").await;
    let their_id = theirs.backup_after(25).await;
    let their_manifest = theirs.manifest(&their_id).await;
    let planted = their_manifest.stream(COMMANDS).unwrap().clone();
    let snapshot = theirs.storage.get(&planted.object).await.unwrap();
    // Copied over ours, with the manifest's entry made to match (all but the signature).
    let mut manifest = source.manifest(&id).await;
    let ours = manifest.streams.iter_mut().find(|s| s.stream == COMMANDS).unwrap();
    source.storage.put(&ours.object, snapshot).await.unwrap();
    *ours = layout::StreamBackup { object: ours.object.clone(), ..planted };
    source.put_manifest(&manifest).await;

    let target = NatsServer::start().await;
    let refused = source.restore_into(&target, &source.keys, &source.dir.join("work")).await.unwrap_err();
    assert!(refused.contains(&format!("backup {id} is not signed with this key")), "{refused}");
    assert!(refused.contains("does not match its content"), "{refused}");
    assert!(streams_of(&target).await.is_empty(), "nothing was restored");
}

#[tokio::test]
async fn a_segment_planted_after_the_archive_is_refused_whether_unsigned_or_signed_with_another_key() {
    let source = Source::start("planted-segment").await;
    source.backup_after(5).await;
    source.archive_after(5, 10).await;
    let last = source.segments().await.pop().unwrap();
    let real = Segment::decode(&last, &source.storage.get(&last.key).await.unwrap(), &source.keys).unwrap();
    let mut message = real.messages.last().unwrap().clone();
    message.sequence = 11;
    let forged = Segment { stream: COMMANDS.into(), first: 11, last: 11, messages: vec![message] };
    let target = NatsServer::start().await;

    let (name, bytes) = forged.encode(&random_keys()).unwrap();
    source.storage.put(&name.key, bytes.into()).await.unwrap();
    let refused = source.restore_into(&target, &source.keys, &source.dir.join("work")).await.unwrap_err();
    assert!(refused.contains(&format!("archive object {} is not signed with this key", name.key)), "{refused}");
    source.storage.delete(&name.key).await.unwrap();

    // As segments were written before they were signed: the body alone.
    let bytes = lz4_flex::compress_prepend_size(&postcard::to_stdvec(&forged).unwrap());
    let name = SegmentName::new(COMMANDS, 11, 11, &sha256_hex(&bytes));
    source.storage.put(&name.key, bytes.into()).await.unwrap();
    let refused = source.restore_into(&target, &source.keys, &source.dir.join("work")).await.unwrap_err();
    assert!(refused.contains(&format!("archive object {} is not signed", name.key)), "{refused}");
    assert!(streams_of(&target).await.is_empty(), "nothing was restored");
}

#[tokio::test]
async fn a_backup_made_before_signing_is_refused_unless_the_restore_accepts_unsigned_insecurely() {
    let source = Source::start("unsigned").await;
    let id = source.backup_after(10).await;
    let mut manifest = source.manifest(&id).await;
    (manifest.format, manifest.signature) = (1, None);
    source.put_manifest(&manifest).await;

    let target = NatsServer::start().await;
    let refused = source.restore_into(&target, &source.keys, &source.dir.join("work")).await.unwrap_err();
    assert!(refused.contains(&format!("backup {id} is not signed")), "{refused}");
    assert!(streams_of(&target).await.is_empty(), "nothing was restored");

    let accepting = source.keys.clone().accepting_unsigned();
    let restored = source.restore_into(&target, &accepting, &source.dir.join("work")).await.unwrap();
    assert!(restored >= 10, "restored {restored} messages");
    let events = EventStore::new(target.client().await);
    assert_eq!(events.last_sequence(sovd_nats::StreamName::Commands).await.unwrap(), 10);
}

#[tokio::test]
async fn a_forged_checkpoint_neither_moves_the_archiver_nor_holds_a_restore_to_its_word() {
    let source = Source::start("checkpoint").await;
    source.backup_after(5).await;
    source.archive_after(5, 10).await;
    let segment = source.segments().await.pop().unwrap().key;
    let (js, storage, keys) = (source.store.jetstream(), &source.storage, &source.keys);
    let resume =
        || StreamArchiver::resume(js.clone(), storage.clone(), keys.clone(), COMMANDS, ArchiveSettings::default());
    let put_checkpoint = |checkpoint: Checkpoint| async move {
        let bytes = serde_json::to_vec(&checkpoint).unwrap();
        storage.put(&layout::checkpoint_key(COMMANDS), bytes.into()).await.unwrap();
    };

    // A claim of events that were never shipped would have the archiver skip them.
    let at = time::OffsetDateTime::now_utc();
    let unsigned = Checkpoint { last_sequence: 1000, segment: segment.clone(), at, signature: None };
    put_checkpoint(unsigned).await;
    assert_eq!(resume().await.unwrap().position(), 10, "an unsigned checkpoint does not move the archiver");
    put_checkpoint(Checkpoint::signed(COMMANDS, 1000, segment, &random_keys())).await;
    assert_eq!(resume().await.unwrap().position(), 10, "nor does one signed with another key");

    // Believed, it would refuse every restore for the events 11..1000 no segment holds.
    let target = NatsServer::start().await;
    let restored = source.restore_into(&target, &source.keys, &source.dir.join("work")).await;
    assert!(restored.is_ok(), "{restored:?}");
    let events = EventStore::new(target.client().await);
    assert_eq!(events.last_sequence(sovd_nats::StreamName::Commands).await.unwrap(), 10);
}

#[tokio::test]
async fn a_restore_leaves_what_was_in_its_work_dir_and_removes_only_the_folder_it_made() {
    let source = Source::start("work-dir").await;
    source.backup_after(10).await;
    source.archive_after(5, 15).await;
    let work = source.dir.join("work");
    std::fs::create_dir_all(work.join("keep")).unwrap();
    std::fs::write(work.join("notes.txt"), "mine").unwrap();
    let untouched = |work: &Path| {
        assert_eq!(std::fs::read_to_string(work.join("notes.txt")).unwrap(), "mine");
        assert!(work.join("keep").is_dir());
        assert_eq!(std::fs::read_dir(work).unwrap().count(), 2, "nothing of the restore is left");
    };

    let target = NatsServer::start().await;
    let restored = source.restore_into(&target, &source.keys, &work).await;
    assert!(restored.is_ok(), "{restored:?}");
    untouched(&work);
    // A restore that fails after fetching (the streams are there now) leaves it as well.
    let refused = source.restore_into(&target, &source.keys, &work).await.unwrap_err();
    assert!(refused.contains("hold messages"), "{refused}");
    untouched(&work);
}

#[tokio::test]
async fn backups_and_the_archive_in_a_local_directory_are_private_to_their_owner() {
    let source = Source::start("modes").await;
    source.backup_after(10).await;
    source.archive_after(10, 20).await;
    source.backup_after(5).await;
    // A point-in-time restore moves what lies past its point aside and writes a trimmed segment.
    let target = NatsServer::start().await;
    let options = RestoreOptions {
        backup_id: None,
        until: Some("commands:15".parse().unwrap()),
        replace: false,
        verify: true,
        replicas: 1,
        work_dir: source.dir.join("work"),
    };
    restore::restore(&target.client().await, &source.storage, &source.keys, &options).await.unwrap();
    assert!(!source.storage.list("superseded/").await.unwrap().is_empty(), "something was moved aside");

    let everything = everything_under(&source.dir);
    assert!(everything.len() > 10, "{everything:?}");
    for path in everything {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{} is {:o}", path.display(), mode(&path));
    }
}

#[tokio::test]
async fn the_backup_key_is_required_and_never_printed() {
    let dir = std::env::temp_dir().join(format!("sovd-key-cli-{}", Uuid::new_v4()));
    let sovd = |args: &[&str], key: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sovd"));
        command
            .args(args)
            .env("SOVD_BACKUP_URL", format!("file://{}", dir.display()))
            .env("SOVD_NATS_URL", "nats://127.0.0.1:1")
            .env_remove("SOVD_BACKUP_KEY")
            .env_remove("SOVD_BACKUP_KEY_PREVIOUS");
        if let Some(key) = key {
            command.env("SOVD_BACKUP_KEY", key).env("SOVD_BACKUP_KEY_PREVIOUS", key);
        }
        let output = command.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status.success(), text(&output.stdout) + &text(&output.stderr))
    };
    let secret = random_key();
    for command in ["backup", "archive", "restore", "dev"] {
        let (_, help) = sovd(&[command, "--help"], Some(&secret));
        assert!(help.contains("SOVD_BACKUP_KEY") && !help.contains(&secret), "{command} --help: {help}");
    }
    let (ok, missing) = sovd(&["backup"], None);
    assert!(!ok && missing.contains("no backup key: set SOVD_BACKUP_KEY"), "{missing}");
    let short = "too-short-but-secret-value";
    let (ok, refused) = sovd(&["backup"], Some(short));
    assert!(!ok && refused.contains("at least 32 bytes") && !refused.contains(short), "{refused}");
    let _ = std::fs::remove_dir_all(dir);
}
