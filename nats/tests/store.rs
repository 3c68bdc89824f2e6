//! The event store against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sovd_domain::events::*;
use sovd_domain::{CommandId, EcuAddress, Event, Operation, UserId, VehicleId, Vin};
use sovd_nats::testing::NatsServer;
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, StreamName, Subject};
use time::OffsetDateTime;
use uuid::Uuid;

fn vin() -> Vin {
    Vin::parse("1HGBH41JXMN109186").unwrap()
}

fn requested(command_id: CommandId) -> Event {
    Event::CommandRequested(CommandRequested {
        command_id,
        vehicle_id: VehicleId::from_uuid(Uuid::nil()),
        vin: vin(),
        user_id: UserId::from_uuid(Uuid::nil()),
        operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
        requested_at: OffsetDateTime::UNIX_EPOCH,
        timeout_ms: None,
    })
}

fn completed(command_id: CommandId) -> Event {
    Event::CommandCompleted(CommandCompleted { command_id, completed_at: OffsetDateTime::now_utc() })
}

async fn store(server: &NatsServer) -> EventStore {
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    store
}

#[tokio::test]
async fn creating_streams_twice_is_harmless_and_creates_all_five() {
    let server = NatsServer::start().await;
    let store = store(&server).await;
    store.ensure_streams(1).await.unwrap();
    for name in StreamName::ALL {
        let mut stream = store.jetstream().get_stream(name.as_str()).await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.subjects, vec![name.subjects().to_owned()]);
    }
}

#[tokio::test]
async fn appended_events_read_back_in_order_with_their_meta() {
    let server = NatsServer::start().await;
    let store = store(&server).await;
    let id = CommandId::new();
    let subject = Subject::command(&vin(), id);
    let meta = EventMeta::new("corr-1", "user:test");
    let first = store.append(&subject, &requested(id), &meta, AppendOptions::default()).await.unwrap();
    assert!(!first.duplicate);
    let events = store.read_filtered(StreamName::Commands, subject.as_str()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].meta, meta);
    assert_eq!(events[0].event, requested(id));
    assert_eq!(events[0].stream_sequence, first.sequence);
}

#[tokio::test]
async fn the_same_msg_id_is_stored_once() {
    let server = NatsServer::start().await;
    let store = store(&server).await;
    let id = CommandId::new();
    let subject = Subject::command(&vin(), id);
    let event = requested(id);
    let a =
        store.append(&subject, &event, &EventMeta::new("c", "t"), AppendOptions::msg_id(id.to_string())).await.unwrap();
    let b =
        store.append(&subject, &event, &EventMeta::new("c", "t"), AppendOptions::msg_id(id.to_string())).await.unwrap();
    assert_eq!(a.sequence, b.sequence);
    assert!(b.duplicate);
    assert_eq!(store.read_filtered(StreamName::Commands, subject.as_str()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_expected_sequence_is_a_conflict_and_writes_nothing() {
    let server = NatsServer::start().await;
    let store = store(&server).await;
    let id = CommandId::new();
    let subject = Subject::response(&vin(), id);
    let meta = || EventMeta::new("c", "connector:a");
    store.append(&subject, &completed(id), &meta(), AppendOptions::expect_last(0)).await.unwrap();
    let err = store.append(&subject, &completed(id), &meta(), AppendOptions::expect_last(0)).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { expected: 0, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(store.read_filtered(StreamName::Responses, subject.as_str()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn last_on_subject_is_none_for_an_empty_subject_and_the_newest_otherwise() {
    let server = NatsServer::start().await;
    let store = store(&server).await;
    let id = CommandId::new();
    let subject = Subject::response(&vin(), id);
    assert!(store.last_on_subject(StreamName::Responses, subject.as_str()).await.unwrap().is_none());
    let appended =
        store.append(&subject, &completed(id), &EventMeta::new("c", "t"), AppendOptions::default()).await.unwrap();
    let last = store.last_on_subject(StreamName::Responses, &Subject::responses_of(id)).await.unwrap().unwrap();
    assert_eq!(last.stream_sequence, appended.sequence);
    assert!(last.event.is_terminal());
}

#[tokio::test]
async fn a_stopped_server_is_reported_as_unavailable_and_retryable() {
    let mut server = NatsServer::start().await;
    let store = store(&server).await;
    server.kill();
    let id = CommandId::new();
    let err = store
        .append(&Subject::command(&vin(), id), &requested(id), &EventMeta::new("c", "t"), AppendOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

/// An ordered read from sequence N whose consumer is lost before it delivered anything is
/// recreated by async-nats from the stream's first message; the reads drop what lies before N.
#[tokio::test]
async fn a_read_from_a_sequence_never_goes_back_when_its_consumer_is_recreated() {
    use futures::{StreamExt, TryStreamExt};
    let server = NatsServer::start().await;
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    let append = || async {
        let id = CommandId::new();
        let meta = EventMeta::new("corr", "user:test");
        store.append(&Subject::command(&vin(), id), &requested(id), &meta, AppendOptions::default()).await.unwrap()
    };
    for _ in 0..5 {
        append().await;
    }
    let mut events = store.ordered(StreamName::Commands, "sovd.cmd.>", 6).await.unwrap();
    let mut copies = sovd_nats::raw::read_from(store.jetstream(), "SOVD_COMMANDS", 6).await.unwrap();
    let stream = store.jetstream().get_stream("SOVD_COMMANDS").await.unwrap();
    let consumers: Vec<String> = stream.consumer_names().try_collect().await.unwrap();
    assert_eq!(consumers.len(), 2, "{consumers:?}");
    for name in consumers {
        stream.delete_consumer(&name).await.unwrap();
    }
    assert_eq!(append().await.sequence, 6);
    let wait = std::time::Duration::from_secs(30);
    let event = tokio::time::timeout(wait, events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(event.stream_sequence, 6, "the read resumes where it started, not at the first event");
    let (copy, _) = tokio::time::timeout(wait, copies.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(copy.sequence, 6);
}
