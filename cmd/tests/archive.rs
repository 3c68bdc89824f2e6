//! The archive and backups against a real nats-server and a real S3-protocol server: a
//! restart or a storage outage leaves no gap and no duplicate, an outage is recorded once,
//! backups are pruned to the last N, and a restore stops at the point in time asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::s3::{S3Server, local_env, random_keys, storage_args};
use sovd::dr::archive::{self, ArchiveSettings, Outcome, StreamArchiver, archived_position};
use sovd::dr::backup;
use sovd::dr::layout;
use sovd::dr::restore::{self, RestoreOptions, Until};
use sovd::dr::segment::{Segment, SegmentName};
use sovd::dr::signing::Keys;
use sovd::dr::storage::Storage;
use sovd_domain::Event;
use sovd_nats::testing::{NatsServer, append_requests};
use sovd_nats::{EventStore, StreamName};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

async fn store(server: &NatsServer) -> EventStore {
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    store
}

/// Storage in a fresh temporary directory (the caller removes it).
fn local_storage(name: &str) -> (Storage, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sovd-{name}-{}", Uuid::new_v4()));
    (Storage::open(&storage_args(&local_env(&dir))).unwrap(), dir)
}

/// Every archived sequence of `stream`, in segment order, checked against the segment names
/// and signatures.
async fn archived_sequences(storage: &Storage, keys: &Keys, stream: &str) -> Vec<u64> {
    let mut sequences = Vec::new();
    let mut next = 1;
    for (key, _) in storage.list(&layout::archive_prefix(stream)).await.unwrap() {
        let Some(name) = SegmentName::parse(stream, &key) else { continue };
        assert_eq!(name.first, next, "segment {key} starts right after the one before");
        next = name.last + 1;
        let segment = Segment::decode(&name, &storage.get(&key).await.unwrap(), keys).unwrap();
        sequences.extend(segment.messages.iter().map(|m| m.sequence));
    }
    sequences
}

async fn ship_until(archiver: &mut StreamArchiver, last: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while archiver.position() < last {
        assert!(Instant::now() < deadline, "the archive did not reach {last} within 15 s");
        archiver.try_ship_next(Duration::from_millis(200)).await.unwrap();
    }
}

fn settings() -> ArchiveSettings {
    ArchiveSettings { interval: Duration::from_millis(100), max_messages: 40, ..Default::default() }
}

#[tokio::test]
async fn a_restarted_archive_continues_where_its_segments_end() {
    let nats = NatsServer::start().await;
    let store = store(&nats).await;
    let s3 = S3Server::start().await;
    let storage = Storage::open(&storage_args(&s3.env())).unwrap();
    let keys = random_keys();
    let js = store.jetstream().clone();

    append_requests(&store, 100).await;
    let mut archiver =
        StreamArchiver::resume(js.clone(), storage.clone(), keys.clone(), "SOVD_COMMANDS", settings()).await.unwrap();
    ship_until(&mut archiver, 100).await;
    drop(archiver);

    append_requests(&store, 50).await;
    let mut archiver =
        StreamArchiver::resume(js.clone(), storage.clone(), keys.clone(), "SOVD_COMMANDS", settings()).await.unwrap();
    assert_eq!(archiver.position(), 100, "a restart resumes at the last archived sequence");
    ship_until(&mut archiver, 150).await;
    // Nothing new: the step says so instead of writing an empty segment.
    assert_eq!(archiver.try_ship_next(Duration::from_millis(50)).await.unwrap(), Outcome::Idle);
    assert_eq!(archived_sequences(&storage, &keys, "SOVD_COMMANDS").await, (1..=150).collect::<Vec<_>>());
    drop(archiver);

    // The newest segment is lost while its checkpoint survives (a store that did not sync):
    // the segments decide, and what was lost is shipped again.
    let segments = storage.list(&layout::archive_prefix("SOVD_COMMANDS")).await.unwrap();
    let newest =
        segments.iter().filter_map(|(k, _)| SegmentName::parse("SOVD_COMMANDS", k)).max_by_key(|s| s.last).unwrap();
    storage.delete(&newest.key).await.unwrap();
    let mut archiver =
        StreamArchiver::resume(js.clone(), storage.clone(), keys.clone(), "SOVD_COMMANDS", settings()).await.unwrap();
    assert_eq!(archiver.position(), newest.first - 1);
    ship_until(&mut archiver, 150).await;
    assert_eq!(archived_sequences(&storage, &keys, "SOVD_COMMANDS").await, (1..=150).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_storage_outage_is_recorded_once_and_the_archive_catches_up_without_a_gap() {
    let nats = NatsServer::start().await;
    let store = store(&nats).await;
    let mut s3 = S3Server::start().await;
    let storage = Storage::open(&storage_args(&s3.env())).unwrap();
    let keys = random_keys();
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(archive::run(store.clone(), storage.clone(), keys.clone(), settings(), shutdown));

    append_requests(&store, 30).await;
    wait_archived(&storage, &keys, 30).await;
    s3.kill();
    append_requests(&store, 60).await;
    // SOVD_COMMANDS fails, and so does SOVD_OPS, which now holds that ArchiveFailed event.
    wait_for_failures(&store, &["SOVD_COMMANDS", "SOVD_OPS"]).await;

    s3.restart().await;
    wait_archived(&storage, &keys, 90).await;
    assert_eq!(archived_sequences(&storage, &keys, "SOVD_COMMANDS").await, (1..=90).collect::<Vec<_>>());
    let failures = wait_for_failures(&store, &["SOVD_COMMANDS", "SOVD_OPS"]).await;
    assert_eq!(failures.len(), 2, "one ArchiveFailed per failing stream, not one per retry: {failures:?}");
    // The stream that recorded the failures is archived whole as well.
    let ops = store.last_sequence(StreamName::Ops).await.unwrap();
    wait_archived_stream(&storage, &keys, "SOVD_OPS", ops).await;
    assert_eq!(archived_sequences(&storage, &keys, "SOVD_OPS").await, (1..=ops).collect::<Vec<_>>());
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
}

async fn wait_archived(storage: &Storage, keys: &Keys, last: u64) {
    wait_archived_stream(storage, keys, "SOVD_COMMANDS", last).await;
}

async fn wait_archived_stream(storage: &Storage, keys: &Keys, stream: &str, last: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while archived_position(storage, keys, stream).await.map(|p| p.0).unwrap_or(0) < last {
        assert!(Instant::now() < deadline, "the archive did not reach {last} within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ArchiveFailed events on SOVD_OPS (as `STREAM: error`), once each of `streams` has one.
async fn wait_for_failures(store: &EventStore, streams: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let failures: Vec<String> = store
            .read_filtered(StreamName::Ops, "sovd.ops.archive")
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.event {
                Event::ArchiveFailed(failed) => Some(format!("{}: {}", failed.stream, failed.error)),
                _ => None,
            })
            .collect();
        if streams.iter().all(|s| failures.iter().any(|f| f.starts_with(&format!("{s}:")))) {
            return failures;
        }
        assert!(Instant::now() < deadline, "no ArchiveFailed for each of {streams:?} within 60 s: {failures:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn backups_are_pruned_to_the_newest_n_with_the_segments_they_make_unnecessary() {
    let nats = NatsServer::start().await;
    let store = store(&nats).await;
    let (storage, dir) = local_storage("prune");
    let keys = random_keys();
    let client = nats.client().await;
    let mut archiver =
        StreamArchiver::resume(store.jetstream().clone(), storage.clone(), keys.clone(), "SOVD_COMMANDS", settings())
            .await
            .unwrap();

    let mut ids = Vec::new();
    for round in 1..=3u64 {
        append_requests(&store, 20).await;
        ship_until(&mut archiver, round * 20).await;
        ids.push(backup::backup(&client, &storage, &keys).await.unwrap().backup_id);
    }
    let pruned = backup::prune(&storage, &keys, 2).await.unwrap();
    assert_eq!(pruned.backups, vec![ids[0].clone()], "the oldest backup goes");
    let kept: Vec<String> = backup::list_backups(&storage).await.unwrap().into_iter().map(|m| m.backup_id).collect();
    assert_eq!(kept, ids[1..].to_vec());
    let left = storage.list(&layout::archive_prefix("SOVD_COMMANDS")).await.unwrap();
    let segments: Vec<SegmentName> = left.iter().filter_map(|(k, _)| SegmentName::parse("SOVD_COMMANDS", k)).collect();
    assert!(segments.iter().all(|s| s.last > 40), "segments the oldest kept backup holds are gone: {segments:?}");
    assert!(segments.iter().any(|s| s.last == 60), "the newer ones stay");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_restore_into_a_new_server_stops_at_the_time_or_sequence_asked_for() {
    let nats = NatsServer::start().await;
    let store = store(&nats).await;
    let (storage, dir) = local_storage("pitr");
    let keys = random_keys();
    let mut archiver =
        StreamArchiver::resume(store.jetstream().clone(), storage.clone(), keys.clone(), "SOVD_COMMANDS", settings())
            .await
            .unwrap();

    append_requests(&store, 10).await;
    backup::backup(&nats.client().await, &storage, &keys).await.unwrap();
    let kept = append_requests(&store, 25).await;
    // The server stamps each message when it stores it: later appends are after this.
    let point = OffsetDateTime::now_utc();
    append_requests(&store, 15).await;
    ship_until(&mut archiver, 50).await;

    let options = |until: Until| RestoreOptions {
        backup_id: None,
        until: Some(until),
        replace: false,
        verify: true,
        replicas: 1,
        work_dir: dir.join(format!("work-{}", Uuid::new_v4())),
    };
    // By sequence first: a restore moves aside what lies past its point, so the later
    // (earlier-reaching) restore by time still finds everything it needs.
    let target = NatsServer::start().await;
    let restored = restore::restore(&target.client().await, &storage, &keys, &options("commands:42".parse().unwrap()))
        .await
        .unwrap();
    let commands = restored.streams.iter().find(|s| s.stream == "SOVD_COMMANDS").unwrap();
    assert_eq!((commands.messages, commands.last_sequence), (42, 42));

    let again = NatsServer::start().await;
    let restored =
        restore::restore(&again.client().await, &storage, &keys, &options(Until::Time(point))).await.unwrap();
    let commands = restored.streams.iter().find(|s| s.stream == "SOVD_COMMANDS").unwrap();
    assert_eq!((commands.from_snapshot, commands.from_archive, commands.last_sequence), (10, 25, 35));
    let back = EventStore::new(again.client().await).read_filtered(StreamName::Commands, "sovd.cmd.>").await.unwrap();
    assert_eq!(back.last().and_then(|e| e.event.command_id()), kept.last().copied(), "the last event before the point");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn after_a_point_in_time_restore_the_archive_continues_the_restored_history() {
    let old = NatsServer::start().await;
    let store_old = store(&old).await;
    let (storage, dir) = local_storage("timeline");
    let keys = random_keys();
    let mut archiver = StreamArchiver::resume(
        store_old.jetstream().clone(),
        storage.clone(),
        keys.clone(),
        "SOVD_COMMANDS",
        settings(),
    )
    .await
    .unwrap();
    append_requests(&store_old, 10).await;
    let first = backup::backup(&old.client().await, &storage, &keys).await.unwrap().backup_id;
    append_requests(&store_old, 20).await;
    ship_until(&mut archiver, 30).await;
    let second = backup::backup(&old.client().await, &storage, &keys).await.unwrap().backup_id;

    let new = NatsServer::start().await;
    let options = RestoreOptions {
        backup_id: None,
        until: Some("commands:20".parse().unwrap()),
        replace: false,
        verify: true,
        replicas: 1,
        work_dir: dir.join("work"),
    };
    let restored = restore::restore(&new.client().await, &storage, &keys, &options).await.unwrap();
    assert_eq!(restored.backup.backup_id, first, "the newest backup before the point");
    assert_eq!(restored.retired.backups, vec![second.clone()], "the backup past the point is moved aside");
    let listed: Vec<String> = backup::list_backups(&storage).await.unwrap().into_iter().map(|m| m.backup_id).collect();
    assert_eq!(listed, vec![first]);
    assert!(
        storage.list("superseded/").await.unwrap().iter().any(|(k, _)| k.ends_with(&layout::manifest_key(&second)))
    );

    // The restored stream goes on; its archive continues from 20 with the new events.
    let store_new = EventStore::new(new.client().await);
    let mut archiver = StreamArchiver::resume(
        store_new.jetstream().clone(),
        storage.clone(),
        keys.clone(),
        "SOVD_COMMANDS",
        settings(),
    )
    .await
    .unwrap();
    assert_eq!(archiver.position(), 20);
    let fresh = append_requests(&store_new, 5).await;
    ship_until(&mut archiver, 25).await;
    assert_eq!(archived_sequences(&storage, &keys, "SOVD_COMMANDS").await, (1..=25).collect::<Vec<_>>());
    let (key, _) = storage
        .list(&layout::archive_prefix("SOVD_COMMANDS"))
        .await
        .unwrap()
        .into_iter()
        .rfind(|(k, _)| k.ends_with(".seg"))
        .unwrap();
    let last =
        Segment::decode(&SegmentName::parse("SOVD_COMMANDS", &key).unwrap(), &storage.get(&key).await.unwrap(), &keys)
            .unwrap();
    let shipped: Vec<String> =
        last.messages.iter().map(|m| String::from_utf8_lossy(m.subject.as_bytes()).into_owned()).collect();
    assert!(fresh.iter().all(|id| shipped.iter().any(|s| s.ends_with(&id.to_string()))), "the new events are archived");

    // An archive that holds more than its stream refuses to ship rather than mix histories.
    let empty = NatsServer::start().await;
    let store_empty = store(&empty).await;
    let mut confused = StreamArchiver::resume(
        store_empty.jetstream().clone(),
        storage.clone(),
        keys.clone(),
        "SOVD_COMMANDS",
        settings(),
    )
    .await
    .unwrap();
    let error = confused.try_ship_next(Duration::from_millis(50)).await.unwrap_err().to_string();
    assert!(error.contains("ends at sequence 0 but its archive at 25"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_second_archiver_on_the_same_storage_is_refused_and_leaves_no_gap_or_overlap() {
    let nats = NatsServer::start().await;
    let store = store(&nats).await;
    let (storage, dir) = local_storage("two");
    let keys = random_keys();
    let js = store.jetstream().clone();
    let mut first =
        StreamArchiver::resume(js.clone(), storage.clone(), keys.clone(), "SOVD_COMMANDS", settings()).await.unwrap();
    let mut second =
        StreamArchiver::resume(js.clone(), storage.clone(), keys.clone(), "SOVD_COMMANDS", settings()).await.unwrap();

    // Both are reading when the events arrive; the first ships them.
    assert_eq!(second.try_ship_next(Duration::from_millis(50)).await.unwrap(), Outcome::Idle);
    append_requests(&store, 20).await;
    ship_until(&mut first, 20).await;
    let error = second.try_ship_next(Duration::from_secs(5)).await.unwrap_err().to_string();
    assert!(error.contains("is a second one writing"), "{error}");
    // Its next step starts from what is in storage.
    append_requests(&store, 10).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while second.position() < 30 {
        assert!(Instant::now() < deadline, "the second archiver did not catch up");
        second.try_ship_next(Duration::from_millis(200)).await.unwrap();
    }
    assert_eq!(archived_sequences(&storage, &keys, "SOVD_COMMANDS").await, (1..=30).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(dir);
}
