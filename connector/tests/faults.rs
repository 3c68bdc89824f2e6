//! Every fault kind end to end through the real pipeline (real nats-server): retries for
//! transient faults only, never a second run of a non-idempotent operation that may have
//! run, per-command timeouts, negative responses, and the circuit breaker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sovd_connector::breaker::BreakerConfig;
use sovd_connector::consumer::ConsumerConfig;
use sovd_connector::sim::Fault;
use sovd_connector::{SimulatedFleet, WorkerConfig};
use sovd_domain::{DataId, EcuAddress, Event, Operation, OperationName};
use sovd_nats::EventStore;
use sovd_nats::testing::NatsServer;
use tokio::sync::watch;

const ECU: EcuAddress = EcuAddress::new(0x10);

struct Rig {
    _server: NatsServer,
    store: EventStore,
    fleet: Arc<SimulatedFleet>,
    _stop: watch::Sender<bool>,
}

async fn rig(config: WorkerConfig) -> Rig {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let fleet = fleet(Duration::from_millis(2));
    let (stop, shutdown) = watch::channel(false);
    spawn_worker(&store, fleet.clone(), config, ConsumerConfig::default(), shutdown);
    Rig { _server: server, store, fleet, _stop: stop }
}

fn attempts_failed(events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::AttemptFailed(a) => Some((a.reason.clone(), a.may_have_executed)),
            _ => None,
        })
        .collect()
}

fn failure(events: &[Event]) -> String {
    match events.last() {
        Some(Event::CommandFailed(f)) => f.reason.clone(),
        other => panic!("expected CommandFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn transient_faults_are_retried_and_the_command_completes() {
    let r = rig(WorkerConfig::default()).await;
    r.fleet.inject(&vin(), &[Fault::Unreachable, Fault::Malformed]);
    let request = submit(&r.store, &vin(), Operation::ReadDtc { ecu: ECU }).await;
    let events = wait_for_outcome(&r.store, command_id(&request)).await;

    assert!(matches!(events.last(), Some(Event::CommandCompleted(_))), "{events:?}");
    let failed = attempts_failed(&events);
    assert_eq!(failed.len(), 2);
    assert!(failed[0].0.contains("unreachable") && !failed[0].1, "{failed:?}");
    assert!(failed[1].0.contains("malformed") && failed[1].1, "{failed:?}");
    let dispatches = events.iter().filter(|e| matches!(e, Event::CommandDispatched(_))).count();
    assert_eq!(dispatches, 3);
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_without_repeating_chunks() {
    let r = rig(WorkerConfig::default()).await;
    r.fleet.inject(&vin(), &[Fault::DropMidStream]);
    let request = submit(&r.store, &vin(), Operation::ReadDtc { ecu: ECU }).await;
    let events = wait_for_outcome(&r.store, command_id(&request)).await;
    let numbers = chunk_numbers(&events);
    assert_eq!(numbers, vec![0, 1, 2], "{events:?}");
    assert!(matches!(events.last(), Some(Event::CommandCompleted(_))));
}

#[tokio::test]
async fn a_non_idempotent_operation_is_retried_only_when_it_cannot_have_run() {
    let r = rig(WorkerConfig::default()).await;
    // Unreachable: the request never left; trying again is safe.
    r.fleet.inject(&vin(), &[Fault::Unreachable]);
    let first = submit(&r.store, &vin(), Operation::ClearDtc { ecu: ECU, dtc: None }).await;
    let events = wait_for_outcome(&r.store, command_id(&first)).await;
    assert!(matches!(events.last(), Some(Event::CommandCompleted(_))), "{events:?}");
    assert_eq!(r.fleet.executions(&vin(), OperationName::ClearDtc), 1);

    // Garbled answer: it ran. It is never run again, and the failure says so.
    r.fleet.inject(&vin(), &[Fault::Malformed]);
    let second = submit(&r.store, &vin(), Operation::ClearDtc { ecu: ECU, dtc: None }).await;
    let events = wait_for_outcome(&r.store, command_id(&second)).await;
    assert!(failure(&events).contains("not idempotent and may have run"), "{events:?}");
    assert_eq!(r.fleet.executions(&vin(), OperationName::ClearDtc), 2, "ran once for each command, never twice");
}

#[tokio::test]
async fn a_vehicle_that_never_answers_times_out_after_the_requested_time() {
    let r = rig(WorkerConfig::default()).await;
    r.fleet.inject(&vin(), &[Fault::Timeout]);
    let started = Instant::now();
    let request = submit_with_timeout(&r.store, &vin(), Operation::ReadDtc { ecu: ECU }, Some(1_000)).await;
    let events = wait_for_outcome(&r.store, command_id(&request)).await;
    match events.last() {
        Some(Event::CommandTimedOut(t)) => assert_eq!(t.after_ms, 1_000),
        other => panic!("expected CommandTimedOut, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the request's 1 s, not the 30 s default");
}

#[tokio::test]
async fn a_negative_response_fails_at_once_with_its_code_and_name() {
    let r = rig(WorkerConfig::default()).await;
    let request = submit(&r.store, &vin(), Operation::ReadDataById { ecu: ECU, data_id: DataId::new(0xBEEF) }).await;
    let events = wait_for_outcome(&r.store, command_id(&request)).await;
    assert!(failure(&events).contains("0x31 (requestOutOfRange)"), "{events:?}");
    let typed = events.iter().find_map(|e| match e {
        Event::CommandFailed(f) => f.negative_response,
        _ => None,
    });
    assert_eq!(typed, Some(sovd_domain::uds::Nrc::REQUEST_OUT_OF_RANGE), "the code is a field, not only text");
    assert!(attempts_failed(&events).is_empty(), "a proper answer is not retried");
}

#[tokio::test]
async fn the_breaker_opens_after_five_failures_fails_fast_and_closes_after_a_good_probe() {
    let config = WorkerConfig {
        max_attempts: 1,
        breaker: BreakerConfig { threshold: 5, cooldown: Duration::from_secs(1) },
        ..Default::default()
    };
    let r = rig(config).await;
    r.fleet.inject(&vin(), &[Fault::Unreachable; 5]);
    for _ in 0..5 {
        let request = submit(&r.store, &vin(), Operation::ReadDtc { ecu: ECU }).await;
        assert!(failure(&wait_for_outcome(&r.store, command_id(&request)).await).contains("unreachable"));
    }
    let before = r.fleet.executions(&vin(), OperationName::ReadDtc);
    let fast = submit(&r.store, &vin(), Operation::ReadDtc { ecu: ECU }).await;
    let events = wait_for_outcome(&r.store, command_id(&fast)).await;
    assert!(failure(&events).contains("circuit breaker open"), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::CommandDispatched(_))), "never sent");
    assert_eq!(r.fleet.executions(&vin(), OperationName::ReadDtc), before);
    // Another vehicle is not affected.
    let other = submit(&r.store, &other_vin(), Operation::ReadDtc { ecu: ECU }).await;
    assert!(matches!(wait_for_outcome(&r.store, command_id(&other)).await.last(), Some(Event::CommandCompleted(_))));

    // After the cooldown, a probe goes through, succeeds and closes the circuit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = submit(&r.store, &vin(), Operation::ReadDtc { ecu: ECU }).await;
        let events = wait_for_outcome(&r.store, command_id(&probe)).await;
        if matches!(events.last(), Some(Event::CommandCompleted(_))) {
            break;
        }
        assert!(Instant::now() < deadline, "the circuit never closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = submit(&r.store, &vin(), Operation::ReadDtc { ecu: ECU }).await;
    assert!(matches!(wait_for_outcome(&r.store, command_id(&after)).await.last(), Some(Event::CommandCompleted(_))));
}
