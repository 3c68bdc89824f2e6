//! The connector against a real nats-server: commands in, exactly one outcome out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sovd_connector::consumer::ConsumerConfig;
use sovd_connector::{CommandWorker, Handled, WorkerConfig};
use sovd_domain::lifecycle::CommandStatus;
use sovd_domain::{DtcCode, EcuAddress, Event, Operation, OperationName, UserId, Vin};
use sovd_nats::testing::NatsServer;
use sovd_nats::{AppendOptions, EventMeta, EventStore, StoredEvent, StreamName, Subject};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

#[tokio::test]
async fn read_dtc_streams_three_chunks_then_completes() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let (_stop, shutdown) = watch::channel(false);
    let _connector =
        spawn_connector(&store, fleet(Duration::from_millis(5)), "c1", ConsumerConfig::default(), shutdown);

    let request = submit(&store, &vin(), Operation::ReadDtc { ecu: EcuAddress::new(0x10) }).await;
    let events = wait_for_outcome(&store, command_id(&request)).await;

    assert!(matches!(events[0], Event::CommandDispatched(ref d) if d.attempt == 1 && d.connector == "c1"));
    let chunks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ResponseChunk(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks.iter().map(|c| c.sequence_number).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(chunks[0].payload_json.contains("P0420"));
    assert_eq!(chunks.iter().map(|c| c.is_final).collect::<Vec<_>>(), vec![false, false, true]);
    assert!(matches!(events.last(), Some(Event::CommandCompleted(_))));
    assert_eq!(events.len(), 5);
}

#[tokio::test]
async fn a_command_for_an_offline_vehicle_waits_queued_and_runs_when_it_returns() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let fleet = fleet(Duration::ZERO);
    let (_stop, shutdown) = watch::channel(false);
    let _connector = spawn_connector(&store, fleet.clone(), "c1", ConsumerConfig::default(), shutdown);
    let offline = Vin::parse("WBADT43452G123456").unwrap();
    let request = submit(&store, &offline, Operation::ReadDtc { ecu: EcuAddress::new(0x10) }).await;
    let id = command_id(&request);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = store.read_filtered(StreamName::Responses, &Subject::responses_of(id)).await.unwrap();
        if let Some(Event::CommandQueued(q)) = log.last().map(|s| &s.event) {
            assert!(q.reason.contains("not connected"), "{}", q.reason);
            break;
        }
        assert!(Instant::now() < deadline, "never queued: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.set_connected(&offline, true);
    let events = wait_for_outcome(&store, id).await;
    assert!(matches!(events.last(), Some(Event::CommandCompleted(_))), "{events:?}");
}

#[tokio::test]
async fn a_queued_command_fails_when_its_vehicle_stays_offline_past_the_limit() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let (_stop, shutdown) = watch::channel(false);
    let config = WorkerConfig {
        queue_ttl: Duration::from_millis(500),
        queue_poll: Duration::from_millis(100),
        ..Default::default()
    };
    let _connector = spawn_worker(&store, fleet(Duration::ZERO), config, ConsumerConfig::default(), shutdown);
    let offline = Vin::parse("WBADT43452G123456").unwrap();
    let request = submit(&store, &offline, Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: None }).await;
    let events = wait_for_outcome(&store, command_id(&request)).await;
    assert!(matches!(events[0], Event::CommandQueued(_)), "{events:?}");
    match events.last() {
        Some(Event::CommandFailed(f)) => assert!(f.reason.contains("stayed offline"), "{}", f.reason),
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    assert!(!events.iter().any(|e| matches!(e, Event::CommandDispatched(_))), "never sent");
}

/// Where each command's events sit in SOVD_RESPONSES: (first dispatch, terminal).
async fn dispatch_and_end(store: &EventStore, id: sovd_domain::CommandId) -> (u64, u64) {
    let log = store.read_filtered(StreamName::Responses, &Subject::responses_of(id)).await.unwrap();
    let first = |wanted: fn(&Event) -> bool| log.iter().find(|s| wanted(&s.event)).unwrap().stream_sequence;
    (first(|e| matches!(e, Event::CommandDispatched(_))), first(Event::is_terminal))
}

#[tokio::test]
async fn a_vehicle_runs_one_command_at_a_time_in_submission_order_across_two_connectors() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let fleet = fleet(Duration::from_millis(10));
    let (_stop, shutdown) = watch::channel(false);
    let _a = spawn_connector(&store, fleet.clone(), "a", ConsumerConfig::default(), shutdown.clone());
    let _b = spawn_connector(&store, fleet.clone(), "b", ConsumerConfig::default(), shutdown);

    // Eight commands for one vehicle, submitted at once, and one for another vehicle.
    let operations = [
        Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
        Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: None },
        Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
        Operation::ReadDtc { ecu: EcuAddress::new(0x18) },
    ];
    let mut ids = Vec::new();
    for operation in operations.iter().cycle().take(8) {
        ids.push(command_id(&submit(&store, &vin(), operation.clone()).await));
    }
    let elsewhere = command_id(&submit(&store, &other_vin(), operations[0].clone()).await);

    let mut windows = Vec::new();
    for &id in &ids {
        let events = wait_for_outcome(&store, id).await;
        assert!(matches!(events.last(), Some(Event::CommandCompleted(_))), "{events:?}");
        windows.push(dispatch_and_end(&store, id).await);
    }
    for (i, pair) in windows.windows(2).enumerate() {
        let ((_, ended), (dispatched, _)) = (pair[0], pair[1]);
        assert!(
            dispatched > ended,
            "command {} started (seq {dispatched}) before command {i} ended (seq {ended})",
            i + 1
        );
    }
    // ClearDTC really ran between the reads: the read after it finds the memory empty.
    let third = wait_for_outcome(&store, ids[2]).await;
    let chunk = third.iter().find_map(|e| match e {
        Event::ResponseChunk(c) => Some(c.payload_json.clone()),
        _ => None,
    });
    assert!(!chunk.unwrap_or_default().contains("P0420"), "the read after the clear saw no old codes");
    // Waiting commands said why.
    let waited = store.read_filtered(StreamName::Responses, &Subject::responses_of(ids[7])).await.unwrap();
    assert!(
        waited
            .iter()
            .any(|s| matches!(&s.event, Event::CommandQueued(q) if q.reason.contains("one command at a time"))),
        "{waited:?}"
    );
    // Another vehicle does not wait for this one.
    let (other_dispatched, _) = dispatch_and_end(&store, elsewhere).await;
    assert!(other_dispatched < windows[7].0, "the other vehicle's command ran meanwhile");
}

#[tokio::test]
async fn two_workers_racing_on_one_command_write_exactly_one_outcome() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let fleet = fleet(Duration::from_millis(5));
    let a = CommandWorker::new(store.clone(), fleet.clone(), WorkerConfig { name: "a".into(), ..Default::default() });
    let b = CommandWorker::new(store.clone(), fleet.clone(), WorkerConfig { name: "b".into(), ..Default::default() });
    for operation in [
        Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
        Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: Some(DtcCode::new(0x0420)) },
    ] {
        let request = submit(&store, &vin(), operation).await;
        let (ra, rb) = tokio::join!(a.handle(&request), b.handle(&request));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let events = wait_for_outcome(&store, command_id(&request)).await;
        assert_eq!(terminal_count(&events), 1, "{events:?}");
        let writers = [ra, rb].iter().filter(|h| matches!(h, Handled::Terminal(_))).count();
        assert_eq!(writers, 1, "exactly one worker wrote the outcome: {ra:?} {rb:?}");
    }
    assert_eq!(fleet.executions(&vin(), OperationName::ClearDtc), 1, "ClearDTC must never run twice");
}

#[tokio::test]
async fn a_redelivered_command_is_not_run_twice_and_ends_once() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    // Chunks slower than ack_wait and no progress acks: the server redelivers every command
    // to the other connector while the first is still working on it. The second must see
    // a live owner (recent events) and leave the command alone.
    let fleet = fleet(Duration::from_millis(1500));
    let config = ConsumerConfig { ack_wait: Duration::from_secs(1), progress_acks: false, ..Default::default() };
    let (_stop, shutdown) = watch::channel(false);
    // Each connector has its own NATS connection, as two processes would.
    let second = EventStore::new(server.client().await);
    let _c1 = spawn_connector(&store, fleet.clone(), "c1", config.clone(), shutdown.clone());
    let _c2 = spawn_connector(&second, fleet.clone(), "c2", config, shutdown);

    let clear = submit(&store, &vin(), Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: None }).await;
    let read = submit(&store, &other_vin(), Operation::ReadDtc { ecu: EcuAddress::new(0x10) }).await;
    let clear_events = wait_for_outcome(&store, command_id(&clear)).await;
    let read_events = wait_for_outcome(&store, command_id(&read)).await;

    assert_eq!(terminal_count(&clear_events), 1, "{clear_events:?}");
    assert_eq!(terminal_count(&read_events), 1, "{read_events:?}");
    assert_eq!(fleet.executions(&vin(), OperationName::ClearDtc), 1, "ClearDTC must never run twice");
    // Whatever the interleaving, chunk numbers never repeat.
    let mut numbers = chunk_numbers(&read_events);
    let count = numbers.len();
    numbers.dedup();
    assert_eq!(numbers.len(), count, "{read_events:?}");
    assert_eq!(count, 3, "three chunks over 4.5 s, across several redeliveries");
    assert!(matches!(read_events.last(), Some(Event::CommandCompleted(_))));
}

/// Records what a connector that died after its first chunk would have left in the log.
async fn leave_half_done(store: &EventStore, request: &StoredEvent, chunks: u32) {
    let id = command_id(request);
    let subject = Subject::response(&vin(), id);
    let long_ago = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    let mut meta = EventMeta::caused_by(&request.meta, "connector:dead");
    meta.occurred_at = long_ago;
    let dispatched = Event::CommandDispatched(sovd_domain::events::CommandDispatched {
        command_id: id,
        attempt: 1,
        connector: "dead".into(),
        dispatched_at: long_ago,
    });
    store.append(&subject, &dispatched, &meta, AppendOptions::default()).await.unwrap();
    for sequence_number in 0..chunks {
        let chunk = Event::ResponseChunk(sovd_domain::events::ResponseChunk {
            command_id: id,
            response_id: Uuid::now_v7(),
            sequence_number,
            payload_json: "{\"from\":\"dead connector\"}".into(),
            is_final: false,
            received_at: long_ago,
        });
        let mut meta = meta.clone();
        meta.event_id = Uuid::now_v7();
        store.append(&subject, &chunk, &meta, AppendOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_command_whose_connector_died_resumes_after_the_recorded_chunks() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let worker = CommandWorker::new(store.clone(), fleet(Duration::ZERO), WorkerConfig::default());
    let request = submit(&store, &vin(), Operation::ReadDtc { ecu: EcuAddress::new(0x10) }).await;
    leave_half_done(&store, &request, 1).await;

    assert_eq!(worker.handle(&request).await.unwrap(), Handled::Terminal(CommandStatus::Completed));
    let events = wait_for_outcome(&store, command_id(&request)).await;
    let numbers = chunk_numbers(&events);
    assert_eq!(numbers, vec![0, 1, 2], "resumed after chunk 0 without repeating it");
    assert!(events.iter().any(|e| matches!(e, Event::CommandDispatched(d) if d.attempt == 2)));
}

#[tokio::test]
async fn a_clear_dtc_whose_connector_died_is_failed_as_unknown_and_not_run_again() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let fleet = fleet(Duration::ZERO);
    let worker = CommandWorker::new(store.clone(), fleet.clone(), WorkerConfig::default());
    let request = submit(&store, &vin(), Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: None }).await;
    leave_half_done(&store, &request, 0).await;

    assert_eq!(worker.handle(&request).await.unwrap(), Handled::Terminal(CommandStatus::Failed));
    let events = wait_for_outcome(&store, command_id(&request)).await;
    match events.last() {
        Some(Event::CommandFailed(f)) => assert!(f.reason.contains("outcome is unknown"), "{}", f.reason),
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    assert_eq!(fleet.executions(&vin(), OperationName::ClearDtc), 0);
}

async fn request_cancel(store: &EventStore, request: &StoredEvent) {
    let id = command_id(request);
    let Event::CommandRequested(r) = &request.event else { unreachable!() };
    let event = Event::CommandCancelRequested(sovd_domain::events::CommandCancelRequested {
        command_id: id,
        user_id: UserId::from_uuid(Uuid::nil()),
        requested_at: OffsetDateTime::now_utc(),
    });
    let meta = EventMeta::caused_by(&request.meta, "user:test");
    store.append(&Subject::command(&r.vin, id), &event, &meta, AppendOptions::default()).await.unwrap();
}

fn chunk_count(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::ResponseChunk(_))).count()
}

#[tokio::test]
async fn a_command_cancelled_before_any_connector_took_it_never_reaches_the_vehicle() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let fleet = fleet(Duration::ZERO);
    let request = submit(&store, &vin(), Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: None }).await;
    request_cancel(&store, &request).await;

    let (_stop, shutdown) = watch::channel(false);
    let _connector = spawn_connector(&store, fleet.clone(), "c1", ConsumerConfig::default(), shutdown);
    let events = wait_for_outcome(&store, command_id(&request)).await;

    assert!(matches!(events.last(), Some(Event::CommandCancelled(_))), "{events:?}");
    assert_eq!(terminal_count(&events), 1);
    assert!(!events.iter().any(|e| matches!(e, Event::CommandDispatched(_))));
    assert_eq!(fleet.executions(&vin(), OperationName::ClearDtc), 0);
}

#[tokio::test]
async fn a_running_command_is_cancelled_between_chunks_keeping_what_arrived() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let (_stop, shutdown) = watch::channel(false);
    let _connector =
        spawn_connector(&store, fleet(Duration::from_millis(300)), "c1", ConsumerConfig::default(), shutdown);
    let request = submit(&store, &vin(), Operation::ReadDtc { ecu: EcuAddress::new(0x10) }).await;
    let id = command_id(&request);

    // Wait for the first chunk, then cancel.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = store.read_filtered(StreamName::Responses, &Subject::responses_of(id)).await.unwrap();
        if log.iter().any(|s| matches!(s.event, Event::ResponseChunk(_))) {
            break;
        }
        assert!(Instant::now() < deadline, "no first chunk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    request_cancel(&store, &request).await;
    let events = wait_for_outcome(&store, id).await;

    assert!(matches!(events.last(), Some(Event::CommandCancelled(_))), "{events:?}");
    assert!((1..3).contains(&chunk_count(&events)), "kept the chunks that arrived, asked for no more: {events:?}");
}
