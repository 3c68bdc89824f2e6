//! `sovd projections rebuild` against a real nats-server and a real Postgres: rebuilt while
//! events keep arriving and readers keep reading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sovd_nats::EventStore;
use sovd_nats::testing::NatsServer;
use sovd_projections::apply::Projection;
use sovd_projections::rebuild::{RebuildProgress, rebuild};
use sovd_projections::testing::fresh_database;
use sovd_projections::worker::all_workers;
use sovd_projections::{audit, status};
use tokio::sync::watch;

async fn index_names(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn wait_until_current(pool: &sqlx::PgPool, store: &EventStore) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let progress = status::progress(pool, store).await.unwrap();
        if progress.iter().all(|p| p.lag() == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "live projections never caught up: {progress:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_load_equals_a_build_from_scratch_and_readers_never_see_less() {
    let server = NatsServer::start().await;
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    let (pool, _) = fresh_database().await;
    for _ in 0..20 {
        seed(&store).await;
    }
    seed_outcomes(&store).await;
    let indexes_before = index_names(&pool).await;

    // The live system: projection workers, a client appending, a reader reading.
    let (stop, shutdown) = watch::channel(false);
    let live: Vec<_> = all_workers(&pool, &store).into_iter().map(|w| tokio::spawn(w.run(shutdown.clone()))).collect();
    let load = {
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut appended = 0;
            while !*shutdown.borrow() {
                seed(&store).await;
                appended += 1;
            }
            appended
        })
    };
    let reader = {
        let (pool, shutdown) = (pool.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !*shutdown.borrow() {
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM commands").fetch_one(&pool).await.unwrap();
                seen.push(count);
            }
            seen
        })
    };

    let mut rebuilt = Vec::new();
    let mut progress = Vec::new();
    for projection in Projection::ALL {
        let reports = Arc::new(Mutex::new(Vec::<RebuildProgress>::new()));
        let sink = reports.clone();
        let report = move |p| sink.lock().unwrap().push(p);
        rebuilt.push(rebuild(&pool, &store, projection, &report).await.unwrap());
        progress.push(reports.lock().unwrap().clone());
    }
    stop.send(true).unwrap();
    let appended = load.await.unwrap();
    let seen = reader.await.unwrap();
    for task in live {
        task.await.unwrap();
    }

    assert!(appended > 0, "the load ran during the rebuild");
    let drop = seen.windows(2).find(|w| w[0] > w[1]);
    assert!(drop.is_none(), "a reader saw the command count go down: {drop:?} in {} reads", seen.len());
    for reports in &progress {
        assert!(reports.windows(2).all(|w| w[0].done <= w[1].done && w[1].done <= w[1].total), "{reports:?}");
        assert!(reports.last().is_some_and(|p| p.done == p.total && p.total > 0), "ends at 100 %: {reports:?}");
    }
    assert!(rebuilt.iter().all(|r| r.events > 0 && r.rows > 0), "{rebuilt:?}");

    // Whatever the live workers add after the switch lands in the rebuilt tables.
    let restarted: Vec<_> = {
        let (stop, shutdown) = watch::channel(false);
        let tasks: Vec<_> =
            all_workers(&pool, &store).into_iter().map(|w| tokio::spawn(w.run(shutdown.clone()))).collect();
        seed(&store).await;
        wait_until_current(&pool, &store).await;
        stop.send(true).unwrap();
        tasks
    };
    for task in restarted {
        task.await.unwrap();
    }

    let (scratch, _) = fresh_database().await;
    catch_up(&scratch, &store).await;
    assert_eq!(digests(&pool).await, digests(&scratch).await, "rebuilt tables equal a build from scratch");
    assert_eq!(index_names(&pool).await, indexes_before, "the swapped-in tables keep the index names");
    let verdict = audit::verify(&pool).await.unwrap();
    assert!(matches!(verdict, audit::Verdict::Intact { .. }), "{verdict:?}");
    let schemas: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'sovd_rebuild_%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(schemas, 0, "no shadow schema is left behind");
}
