//! JetStream snapshots and restores against a real nats-server: what a backup writes brings
//! the stream back exactly, and a damaged or conflicting restore fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sovd_nats::snapshot::{SnapshotError, restore, snapshot};
use sovd_nats::testing::{NatsServer, append_requests};
use sovd_nats::{EventStore, StreamName};

async fn filled(server: &NatsServer, commands: usize) -> EventStore {
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    append_requests(&store, commands).await;
    store
}

#[tokio::test]
async fn a_snapshot_restores_the_stream_exactly_after_it_was_lost() {
    let server = NatsServer::start().await;
    let store = filled(&server, 3000).await;
    let client = server.client().await;
    let before = store.read_filtered(StreamName::Commands, "sovd.cmd.>").await.unwrap();

    let mut archive = Vec::new();
    let mut reported = Vec::new();
    let taken = snapshot(&client, "SOVD_COMMANDS", &mut archive, |b| reported.push(b)).await.unwrap();
    assert_eq!(taken.bytes, archive.len() as u64);
    assert_eq!(reported.last().copied(), Some(taken.bytes), "progress ends at the total");
    assert_eq!(taken.state["messages"], 3000);
    assert_eq!(taken.config["name"], "SOVD_COMMANDS");

    store.jetstream().delete_stream("SOVD_COMMANDS").await.unwrap();
    let state =
        restore(&client, "SOVD_COMMANDS", &taken.config, &taken.state, &mut archive.as_slice(), |_| {}).await.unwrap();
    assert_eq!((state["messages"].clone(), state["last_seq"].clone()), (3000.into(), taken.state["last_seq"].clone()));
    let after = store.read_filtered(StreamName::Commands, "sovd.cmd.>").await.unwrap();
    assert_eq!(after, before, "every event back, same sequence, same headers, same payload");
}

#[tokio::test]
async fn a_restore_refuses_an_existing_stream_and_a_truncated_snapshot() {
    let server = NatsServer::start().await;
    let store = filled(&server, 500).await;
    let client = server.client().await;
    let mut archive = Vec::new();
    let taken = snapshot(&client, "SOVD_COMMANDS", &mut archive, |_| {}).await.unwrap();

    let over = restore(&client, "SOVD_COMMANDS", &taken.config, &taken.state, &mut archive.as_slice(), |_| {}).await;
    assert!(matches!(&over, Err(SnapshotError::Refused { what: "restore", .. })), "{over:?}");

    store.jetstream().delete_stream("SOVD_COMMANDS").await.unwrap();
    let half = &archive[..archive.len() / 2];
    let broken = restore(&client, "SOVD_COMMANDS", &taken.config, &taken.state, &mut &*half, |_| {}).await;
    assert!(matches!(&broken, Err(SnapshotError::Refused { .. })), "a damaged snapshot is an error: {broken:?}");
    assert!(store.jetstream().get_stream("SOVD_COMMANDS").await.is_err(), "and leaves no partial stream behind");
}
