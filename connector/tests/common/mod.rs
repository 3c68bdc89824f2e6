//! Helpers for the connector's tests: a real nats-server, a simulated fleet, submissions
//! and waiting for outcomes.

// Each test binary uses a different part of the helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sovd_connector::consumer::{self, ConsumerConfig};
use sovd_connector::{CommandWorker, SimConfig, SimulatedFleet, WorkerConfig};
use sovd_domain::events::CommandRequested;
use sovd_domain::{CommandId, Event, Operation, UserId, VehicleId, Vin};
use sovd_nats::testing::NatsServer;
use sovd_nats::{AppendOptions, EventMeta, EventStore, StoredEvent, StreamName, Subject};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

pub fn vin() -> Vin {
    Vin::parse("1HGBH41JXMN109186").unwrap()
}

pub fn other_vin() -> Vin {
    Vin::parse("5YJSA1E14HF123456").unwrap()
}

pub fn fleet(chunk_delay: Duration) -> Arc<SimulatedFleet> {
    let fleet = SimulatedFleet::new(SimConfig { chunk_delay, ..Default::default() });
    fleet.add_vehicle(vin(), true);
    fleet.add_vehicle(other_vin(), true);
    fleet.add_vehicle(Vin::parse("WBADT43452G123456").unwrap(), false);
    Arc::new(fleet)
}

pub async fn submit(store: &EventStore, vin: &Vin, operation: Operation) -> StoredEvent {
    submit_with_timeout(store, vin, operation, None).await
}

/// A request that asks for its own timeout.
pub async fn submit_with_timeout(
    store: &EventStore,
    vin: &Vin,
    operation: Operation,
    timeout_ms: Option<u32>,
) -> StoredEvent {
    let id = CommandId::new();
    let event = Event::CommandRequested(CommandRequested {
        command_id: id,
        vehicle_id: VehicleId::from_uuid(Uuid::nil()),
        vin: vin.clone(),
        user_id: UserId::from_uuid(Uuid::nil()),
        operation,
        requested_at: OffsetDateTime::now_utc(),
        timeout_ms,
    });
    let meta = EventMeta::new(format!("corr-{id}"), "user:test");
    let subject = Subject::command(vin, id);
    let appended = store.append(&subject, &event, &meta, AppendOptions::default()).await.unwrap();
    StoredEvent { stream_sequence: appended.sequence, subject: subject.to_string(), meta, event }
}

pub fn command_id(stored: &StoredEvent) -> CommandId {
    stored.event.command_id().unwrap()
}

/// Waits (with a deadline) until the command has a terminal event, then returns its log.
pub async fn wait_for_outcome(store: &EventStore, id: CommandId) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events: Vec<Event> = store
            .read_filtered(StreamName::Responses, &Subject::responses_of(id))
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.event)
            .collect();
        if events.iter().any(Event::is_terminal) {
            return events;
        }
        assert!(Instant::now() < deadline, "no outcome for {id} within 20 s; log so far: {events:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn started(server: &NatsServer) -> EventStore {
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    store
}

pub fn spawn_connector(
    store: &EventStore,
    fleet: Arc<SimulatedFleet>,
    name: &str,
    config: ConsumerConfig,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let worker_config =
        WorkerConfig { name: name.into(), takeover_after: Duration::from_secs(5), ..Default::default() };
    spawn_worker(store, fleet, worker_config, config, shutdown)
}

/// A connector with its own worker settings (retries, breaker, timeout).
pub fn spawn_worker(
    store: &EventStore,
    fleet: Arc<SimulatedFleet>,
    worker_config: WorkerConfig,
    config: ConsumerConfig,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let worker = Arc::new(CommandWorker::new(store.clone(), fleet, worker_config));
    let js = store.jetstream().clone();
    tokio::spawn(async move {
        consumer::run(worker, js, config, shutdown).await.unwrap();
    })
}

pub fn terminal_count(events: &[Event]) -> usize {
    events.iter().filter(|e| e.is_terminal()).count()
}

/// The sequence numbers of the response chunks in a command's log, in order.
pub fn chunk_numbers(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ResponseChunk(c) => Some(c.sequence_number),
            _ => None,
        })
        .collect()
}
