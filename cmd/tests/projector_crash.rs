//! The real `sovd projector` process, killed with SIGKILL at random points of a catch-up
//! while events keep arriving: once it has finished, every projection's tables equal a
//! build from scratch, and the audit chain is intact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::future::join_all;
use sovd_domain::events::*;
use sovd_domain::{CommandId, EcuAddress, Event, Operation, UserId, VehicleId, Vin};
use sovd_nats::testing::NatsServer;
use sovd_nats::{AppendOptions, EventMeta, EventStore, Subject};
use sovd_projections::apply::Projection;
use sovd_projections::digest::projection_digest;
use sovd_projections::testing::fresh_database;
use sovd_projections::worker::all_workers;
use sovd_projections::{Outcome, audit, status};
use time::OffsetDateTime;

/// xorshift64: random enough to pick kill points, and reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `commands` commands on a few vehicles, each requested, dispatched, answered and ended.
async fn load(store: &EventStore, commands: usize, rng: &mut Rng) {
    let vins: Vec<Vin> = ["1HGBH41JXMN109186", "WBADT43452G123456", "5YJ3E1EA7KF317000"]
        .iter()
        .map(|v| Vin::parse(v).unwrap())
        .collect();
    let user = UserId::from_uuid(uuid::Uuid::from_u128(7));
    let mut appends = Vec::new();
    for i in 0..commands {
        let vin = vins[i % vins.len()].clone();
        let id = CommandId::new();
        let now = OffsetDateTime::now_utc();
        let end = match rng.below(3) {
            0 => Event::CommandCompleted(CommandCompleted { command_id: id, completed_at: now }),
            1 => Event::CommandFailed(CommandFailed {
                command_id: id,
                reason: "ECU refused".into(),
                completed_at: now,
                negative_response: Some(sovd_domain::uds::Nrc(0x31)),
            }),
            _ => Event::CommandTimedOut(CommandTimedOut { command_id: id, after_ms: 30_000, completed_at: now }),
        };
        let events = vec![
            (
                Subject::command(&vin, id),
                Event::CommandRequested(CommandRequested {
                    command_id: id,
                    vehicle_id: VehicleId::from_uuid(uuid::Uuid::from_u128(i as u128 % 3)),
                    vin: vin.clone(),
                    user_id: user,
                    operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
                    requested_at: now,
                    timeout_ms: None,
                }),
            ),
            (
                Subject::response(&vin, id),
                Event::CommandDispatched(CommandDispatched {
                    command_id: id,
                    attempt: 1,
                    connector: "c".into(),
                    dispatched_at: now,
                }),
            ),
            (
                Subject::response(&vin, id),
                Event::ResponseChunk(ResponseChunk {
                    command_id: id,
                    response_id: uuid::Uuid::now_v7(),
                    sequence_number: 0,
                    payload_json: r#"{"dtcCode":"P0420"}"#.into(),
                    is_final: true,
                    received_at: now,
                }),
            ),
            (Subject::response(&vin, id), end),
        ];
        appends.push(async move {
            for (subject, event) in events {
                let meta = EventMeta::new(format!("corr-{id}"), "user:7");
                store.append(&subject, &event, &meta, AppendOptions::default()).await.unwrap();
            }
        });
        if appends.len() == 64 {
            join_all(appends.drain(..)).await;
        }
    }
    join_all(appends).await;
}

async fn applied(pool: &sqlx::PgPool) -> u64 {
    let (sum,): (Option<i64>,) =
        sqlx::query_as("SELECT sum(last_sequence)::bigint FROM projection_checkpoints").fetch_one(pool).await.unwrap();
    u64::try_from(sum.unwrap_or(0)).unwrap()
}

async fn digests(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for projection in Projection::ALL {
        out.push(projection_digest(pool, projection).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_at_random_points_ends_equal_to_a_build_from_scratch() {
    let seed = std::env::var("SOVD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() & 0xffff_ffff).unwrap() | 1);
    eprintln!("kill points from SOVD_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let nats = NatsServer::start().await;
    let store = EventStore::new(nats.client().await);
    store.ensure_streams(1).await.unwrap();
    let (pool, url) = fresh_database().await;
    load(&store, 600, &mut rng).await;

    let projector = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sovd"))
            .arg("projector")
            .env("SOVD_NATS_URL", nats.url())
            .env("SOVD_DATABASE_URL", &url)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    for _ in 0..5 {
        let total: u64 = status::progress(&pool, &store).await.unwrap().iter().map(|p| p.last_sequence).sum();
        let done = applied(&pool).await;
        let target = done + 1 + rng.below(total.saturating_sub(done).max(1));
        let mut process = projector();
        let deadline = Instant::now() + Duration::from_secs(30);
        while applied(&pool).await < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
        }
        process.start_kill().unwrap();
        process.wait().await.unwrap();
        kills += 1;
        // More events land while no projector runs.
        load(&store, 50 + rng.below(100) as usize, &mut rng).await;
    }

    let mut process = projector();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status::progress(&pool, &store).await.unwrap().iter().any(|p| p.lag() > 0) {
        assert!(Instant::now() < deadline, "the projector never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.start_kill().unwrap();
    process.wait().await.unwrap();

    let (scratch, _) = fresh_database().await;
    for worker in all_workers(&scratch, &store) {
        let mut worker = worker.with_idle_wait(Duration::from_millis(300));
        while worker.try_process_next().await.unwrap() != Outcome::Idle {}
    }
    assert_eq!(kills, 5);
    assert_eq!(digests(&pool).await, digests(&scratch).await, "seed {seed}");
    let verdict = audit::verify(&pool).await.unwrap();
    assert!(matches!(verdict, audit::Verdict::Intact { rows, .. } if rows > 1000), "{verdict:?}");
}
