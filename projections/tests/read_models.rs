//! Read models against a real nats-server and a real Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use sovd_nats::testing::NatsServer;
use sovd_nats::{EventStore, StreamName};
use sovd_projections::apply::{Projection, apply_batch};
use sovd_projections::digest::projection_digest;
use sovd_projections::testing::fresh_database;
use sovd_projections::{audit, queries};

#[tokio::test]
async fn workers_build_command_vehicle_and_user_views_from_the_log() {
    let (_server, store, pool, id) = seeded().await;

    catch_up(&pool, &store).await;

    let command = queries::get_command(&pool, id.as_uuid()).await.unwrap().expect("command projected");
    assert_eq!(command.status, "completed");
    assert_eq!(command.command_name, "ReadDTC");
    assert_eq!(command.command_params, serde_json::json!({"ecuAddress": "0x10"}));
    assert!(command.completed_at.is_some());
    let responses = queries::list_responses(&pool, id.as_uuid()).await.unwrap();
    assert_eq!(responses.iter().map(|r| r.sequence_number).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(responses[2].is_final);
    let vehicle = queries::get_vehicle_by_vin(&pool, vin().as_str()).await.unwrap().unwrap();
    assert_eq!(vehicle.connection_status, "connected");
    let user = queries::user_by_username(&pool, "engineer").await.unwrap().unwrap();
    assert_eq!(user.role, "engineer");
}

#[tokio::test]
async fn applying_the_same_events_twice_leaves_identical_tables() {
    let (_server, store, pool, _) = seeded().await;

    catch_up(&pool, &store).await;
    let once = digests(&pool).await;
    for projection in Projection::ALL {
        for stream in projection.streams() {
            apply_batch(&pool, projection, *stream, &all_events(&store, *stream).await).await.unwrap();
        }
    }
    assert_eq!(digests(&pool).await, once);
    assert!(once[0].contains("commands:") && !once[0].contains("empty"), "{once:?}");
}

#[tokio::test]
async fn responses_applied_before_their_request_end_in_the_same_rows() {
    let server = NatsServer::start().await;
    let store = EventStore::new(server.client().await);
    store.ensure_streams(1).await.unwrap();
    seed(&store).await;
    let commands = all_events(&store, StreamName::Commands).await;
    let responses = all_events(&store, StreamName::Responses).await;

    let (in_order, _) = fresh_database().await;
    apply_batch(&in_order, Projection::Commands, StreamName::Commands, &commands).await.unwrap();
    apply_batch(&in_order, Projection::Commands, StreamName::Responses, &responses).await.unwrap();
    let (reversed, _) = fresh_database().await;
    apply_batch(&reversed, Projection::Commands, StreamName::Responses, &responses).await.unwrap();
    assert!(queries::list_commands(&reversed, &Default::default()).await.unwrap().is_empty(), "no request yet");
    apply_batch(&reversed, Projection::Commands, StreamName::Commands, &commands).await.unwrap();

    assert_eq!(
        projection_digest(&in_order, Projection::Commands).await.unwrap(),
        projection_digest(&reversed, Projection::Commands).await.unwrap()
    );
}

#[tokio::test]
async fn a_restarted_worker_resumes_after_its_checkpoint() {
    let (_server, store, pool, _) = seeded().await;
    catch_up(&pool, &store).await;
    let before = digests(&pool).await;
    let checkpoint =
        sovd_projections::apply::checkpoint(&pool, Projection::Commands, StreamName::Responses).await.unwrap();
    assert_eq!(checkpoint, 5, "dispatched + 3 chunks + completed");

    // A second command arrives while no worker runs; a fresh worker picks up only that.
    let second = seed(&store).await;
    catch_up(&pool, &store).await;
    assert_ne!(digests(&pool).await, before);
    assert_eq!(queries::get_command(&pool, second.as_uuid()).await.unwrap().unwrap().status, "completed");
    assert_eq!(
        queries::list_commands(&pool, &sovd_projections::queries::CommandFilter { limit: 10, ..Default::default() })
            .await
            .unwrap()
            .len(),
        2
    );
}

/// A fresh audit trail of the seeded events, and its rows' ids in chain order.
async fn audited() -> (NatsServer, sqlx::PgPool, Vec<i64>) {
    let (server, store, pool, _) = seeded().await;
    catch_up(&pool, &store).await;
    let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM audit_log ORDER BY id").fetch_all(&pool).await.unwrap();
    assert!(ids.len() >= 4, "the seed gives enough rows to tamper with: {ids:?}");
    (server, pool, ids.into_iter().map(|(id,)| id).collect())
}

async fn broken(pool: &sqlx::PgPool) -> audit::Break {
    match audit::verify(pool).await.unwrap() {
        audit::Verdict::Broken(b) => b,
        intact => panic!("tampering went unnoticed: {intact:?}"),
    }
}

#[tokio::test]
async fn the_audit_chain_verifies_and_names_a_changed_row() {
    let (_server, pool, ids) = audited().await;
    let audit::Verdict::Intact { rows, head } = audit::verify(&pool).await.unwrap() else { panic!("broken") };
    assert_eq!(rows, ids.len() as u64);
    assert_eq!(head.len(), 64);

    sqlx::query("UPDATE audit_log SET details = '{\"operation\": \"ClearDTC\"}' WHERE id = $1")
        .bind(ids[2])
        .execute(&pool)
        .await
        .unwrap();
    let b = broken(&pool).await;
    assert_eq!((b.id, b.changed), (ids[2], true));
    assert!(b.to_string().contains("was changed"), "{b}");
}

#[tokio::test]
async fn the_audit_chain_names_the_row_after_a_deleted_one() {
    let (_server, pool, ids) = audited().await;
    sqlx::query("DELETE FROM audit_log WHERE id = $1").bind(ids[1]).execute(&pool).await.unwrap();
    let b = broken(&pool).await;
    assert_eq!((b.id, b.changed, b.unlinked), (ids[2], false, true));
    assert!(b.to_string().contains("deleted"), "{b}");
}

#[tokio::test]
async fn the_audit_chain_notices_two_rows_swapped() {
    let (_server, pool, ids) = audited().await;
    // Swap the positions of two rows, hashes and all.
    let mut tx = pool.begin().await.unwrap();
    for (from, to) in [(ids[1], -1), (ids[2], ids[1]), (-1, ids[2])] {
        sqlx::query("UPDATE audit_log SET id = $2 WHERE id = $1").bind(from).bind(to).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let b = broken(&pool).await;
    assert_eq!((b.id, b.unlinked), (ids[1], true));
}

#[tokio::test]
async fn a_rebuilt_audit_trail_is_a_new_intact_chain_with_the_same_rows() {
    let (server, pool, _) = audited().await;
    let before = projection_digest(&pool, Projection::Audit).await.unwrap();
    sqlx::query("TRUNCATE audit_log").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = 'audit'").execute(&pool).await.unwrap();
    let store = EventStore::new(server.client().await);
    catch_up(&pool, &store).await;
    assert!(matches!(audit::verify(&pool).await.unwrap(), audit::Verdict::Intact { .. }));
    assert_eq!(projection_digest(&pool, Projection::Audit).await.unwrap(), before);
}

#[tokio::test]
async fn a_whole_batch_and_the_same_events_one_at_a_time_build_identical_rows() {
    let (_server, store, batched, _) = seeded().await;
    seed_outcomes(&store).await;
    let (one_by_one, _) = fresh_database().await;

    for projection in Projection::ALL {
        for &stream in projection.streams() {
            let events = all_events(&store, stream).await;
            apply_batch(&batched, projection, stream, &events).await.unwrap();
            for event in &events {
                apply_batch(&one_by_one, projection, stream, std::slice::from_ref(event)).await.unwrap();
            }
        }
    }

    assert_eq!(digests(&batched).await, digests(&one_by_one).await);
    let failed: (String, Option<serde_json::Value>, i32) =
        sqlx::query_as("SELECT status, negative_response, attempts FROM commands WHERE error_message = 'ECU refused'")
            .fetch_one(&batched)
            .await
            .unwrap();
    assert_eq!(failed, ("failed".into(), Some(serde_json::json!({"code": "0x31", "name": "requestOutOfRange"})), 2));
    for pool in [&batched, &one_by_one] {
        let verdict = audit::verify(pool).await.unwrap();
        assert!(matches!(verdict, audit::Verdict::Intact { rows, .. } if rows == 10), "{verdict:?}");
    }
}
