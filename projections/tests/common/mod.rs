//! Helpers shared by the projection tests: seed events on a real nats-server, catch up,
//! and compare digests.

#![allow(dead_code)]

use sovd_domain::events::*;
use sovd_domain::{CommandId, EcuAddress, Event, Operation, Role, UserId, VehicleId, Vin};
use sovd_nats::testing::NatsServer;
use sovd_nats::{AppendOptions, EventMeta, EventStore, StreamName, Subject};
use sovd_projections::Outcome;
use sovd_projections::apply::Projection;
use sovd_projections::digest::projection_digest;
use sovd_projections::testing::fresh_database;
use sovd_projections::worker::all_workers;
use time::OffsetDateTime;
use uuid::Uuid;

pub fn vin() -> Vin {
    Vin::parse("1HGBH41JXMN109186").unwrap()
}

pub const VEHICLE: Uuid = Uuid::from_u128(0x11);
pub const USER: Uuid = Uuid::from_u128(0x22);

pub async fn append(store: &EventStore, subject: &Subject, event: Event) {
    store.append(subject, &event, &EventMeta::new("corr-test", "test"), AppendOptions::default()).await.unwrap();
}

/// A vehicle, a user, and one ReadDTC command that completed with three chunks.
pub async fn seed(store: &EventStore) -> CommandId {
    let now = OffsetDateTime::now_utc();
    let id = CommandId::new();
    let vehicle = Subject::vehicle(&vin());
    append(
        store,
        &vehicle,
        Event::VehicleRegistered(VehicleRegistered {
            vehicle_id: VehicleId::from_uuid(VEHICLE),
            vin: vin(),
            make: "Tesla".into(),
            model: "Model 3".into(),
            year: 2023,
            metadata_json: "{}".into(),
            registered_at: now,
        }),
    )
    .await;
    append(store, &vehicle, Event::VehicleConnected(VehicleConnected { vin: vin(), at: now })).await;
    append(
        store,
        &Subject::user(UserId::from_uuid(USER)),
        Event::UserCreated(UserCreated {
            user_id: UserId::from_uuid(USER),
            username: "engineer".into(),
            role: Role::Engineer,
            email: None,
            password_hash: "$argon2id$test".into(),
            created_at: now,
        }),
    )
    .await;
    append(
        store,
        &Subject::command(&vin(), id),
        Event::CommandRequested(CommandRequested {
            command_id: id,
            vehicle_id: VehicleId::from_uuid(VEHICLE),
            vin: vin(),
            user_id: UserId::from_uuid(USER),
            operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
            requested_at: now,
            timeout_ms: None,
        }),
    )
    .await;
    let rsp = Subject::response(&vin(), id);
    append(
        store,
        &rsp,
        Event::CommandDispatched(CommandDispatched {
            command_id: id,
            attempt: 1,
            connector: "t".into(),
            dispatched_at: now,
        }),
    )
    .await;
    for seq in 0..3u32 {
        append(
            store,
            &rsp,
            Event::ResponseChunk(ResponseChunk {
                command_id: id,
                response_id: Uuid::now_v7(),
                sequence_number: seq,
                payload_json: format!("{{\"chunk\":{seq}}}"),
                is_final: seq == 2,
                received_at: now,
            }),
        )
        .await;
    }
    append(store, &rsp, Event::CommandCompleted(CommandCompleted { command_id: id, completed_at: now })).await;
    id
}

/// A nats-server with the seed events, and a fresh database.
pub async fn seeded() -> (NatsServer, EventStore, sqlx::PgPool, CommandId) {
    let server = NatsServer::start().await;
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    let (pool, _) = fresh_database().await;
    let id = seed(&store).await;
    (server, store, pool, id)
}

pub async fn catch_up(pool: &sqlx::PgPool, store: &EventStore) {
    for worker in all_workers(pool, store) {
        let mut worker = worker.with_idle_wait(std::time::Duration::from_millis(200));
        while worker.try_process_next().await.unwrap() != Outcome::Idle {}
    }
}

pub async fn all_events(store: &EventStore, stream: StreamName) -> Vec<sovd_nats::StoredEvent> {
    store.read_filtered(stream, stream.subjects()).await.unwrap()
}

pub async fn digests(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for projection in Projection::ALL {
        out.push(projection_digest(pool, projection).await.unwrap());
    }
    out
}

/// Every kind of status a command can go through, several of them on one command.
pub async fn seed_outcomes(store: &EventStore) {
    let now = OffsetDateTime::now_utc();
    for outcome in 0..3 {
        let id = CommandId::new();
        let rsp = Subject::response(&vin(), id);
        let dispatched = |attempt| {
            Event::CommandDispatched(CommandDispatched {
                command_id: id,
                attempt,
                connector: "t".into(),
                dispatched_at: now,
            })
        };
        let queued = CommandQueued { command_id: id, reason: "vehicle offline".into(), until: now, at: now };
        append(store, &rsp, Event::CommandQueued(queued)).await;
        append(store, &rsp, dispatched(1)).await;
        append(store, &rsp, dispatched(2)).await;
        let end = match outcome {
            0 => Event::CommandFailed(CommandFailed {
                command_id: id,
                reason: "ECU refused".into(),
                completed_at: now,
                negative_response: Some(sovd_domain::uds::Nrc(0x31)),
            }),
            1 => Event::CommandTimedOut(CommandTimedOut { command_id: id, after_ms: 30_000, completed_at: now }),
            _ => Event::CommandCancelled(CommandCancelled { command_id: id, completed_at: now }),
        };
        append(store, &rsp, end).await;
        // A late redelivery of an earlier status must not move the command back.
        append(store, &rsp, dispatched(1)).await;
    }
}
