//! The disaster-recovery drill: load through the API, back up, keep loading, lose NATS's
//! data directory and the Postgres database, restore from object storage (a local directory,
//! then a real S3-protocol server) and find every accepted command back, in the same state,
//! with the same audit rows; and the ways a restore must refuse to start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::s3::{S3Server, keys, local_env, storage_args};
use common::{ADMIN, ENGINEER, Stack};
use futures::future::join_all;
use serde_json::{Value, json};
use sovd::dr::archive::{self, ArchiveSettings, archived_position};
use sovd::dr::signing::Keys;
use sovd::dr::storage::Storage;
use sovd_nats::StreamName;
use sovd_projections::apply::Projection;
use sovd_projections::digest::projection_digest;
use sqlx::{Connection, PgConnection};

/// Runs `sovd <args>` against the stack with the storage environment; returns stdout, or
/// the exit code and stderr when it failed.
async fn sovd(stack: &Stack, args: &[&str], env: &[(String, String)]) -> Result<String, (i32, String)> {
    let output = stack.cli(args).envs(env.iter().cloned()).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() { Ok(stdout) } else { Err((output.status.code().unwrap_or(-1), stderr)) }
}

/// Submits `count` commands spread over every vehicle (the offline one's fail after the
/// queue TTL); returns their ids.
async fn load(stack: &Stack, token: &str, count: usize) -> Vec<String> {
    let vehicles: Value = stack.get(token, "/api/v1/vehicles").await.json().await.unwrap();
    let vins: Vec<String> =
        vehicles.as_array().unwrap().iter().map(|v| v["vin"].as_str().unwrap().to_owned()).collect();
    let submits = (0..count).map(|i| {
        let body = json!({"command_name": "ReadDTC", "vehicle_id": vins[i % vins.len()], "command_params": {"ecuAddress": "0x10"}});
        async move {
            let response = stack.submit(token, body).await;
            assert_eq!(response.status(), 202);
            response.json::<Value>().await.unwrap()["command_id"].as_str().unwrap().to_owned()
        }
    });
    join_all(submits).await
}

/// Every command's status, from the read model.
async fn statuses(pool: &sqlx::PgPool) -> BTreeMap<String, String> {
    let rows: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT command_id, status FROM commands").fetch_all(pool).await.unwrap();
    rows.into_iter().map(|(id, status)| (id.to_string(), status)).collect()
}

async fn digests(pool: &sqlx::PgPool) -> Vec<String> {
    let mut all = Vec::new();
    for projection in Projection::ALL {
        all.push(format!("{}={}", projection.name(), projection_digest(pool, projection).await.unwrap()));
    }
    all
}

/// Everything quiet: every command ended, every projection and the archive at each stream's end.
async fn settled(stack: &Stack, storage: &Storage, keys: &Keys) -> bool {
    let open: (i64,) =
        sqlx::query_as("SELECT count(*) FROM commands WHERE status IN ('pending', 'queued', 'in_progress')")
            .fetch_one(&stack.deps.pool)
            .await
            .unwrap();
    if open.0 > 0 {
        return false;
    }
    let progress = sovd_projections::status::progress(&stack.deps.pool, &stack.deps.store).await.unwrap();
    if progress.iter().any(|p| p.lag() > 0) {
        return false;
    }
    for stream in StreamName::ALL {
        let last = stack.deps.store.last_sequence(stream).await.unwrap();
        if archived_position(storage, keys, stream.as_str()).await.unwrap().0 != last {
            return false;
        }
    }
    true
}

/// Drops the stack's database and creates it again, empty.
async fn lose_database(stack: &Stack) {
    let admin = std::env::var("SOVD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://sovd:sovd@127.0.0.1:15432/postgres".to_owned());
    let name = stack.database_url.rsplit('/').next().unwrap().to_owned();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut conn).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
}

async fn drill(env: Vec<(String, String)>) {
    let stack = Stack::start().await;
    let storage = Storage::open(&storage_args(&env)).unwrap();
    let keys = keys(&env);
    let settings = ArchiveSettings { interval: Duration::from_millis(300), ..Default::default() };
    tokio::spawn(archive::run(
        stack.deps.store.clone(),
        storage.clone(),
        keys.clone(),
        settings,
        stack.shutdown_signal(),
    ));
    let engineer = stack.login(ENGINEER).await;
    let admin = stack.login(ADMIN).await;

    let mut accepted = load(&stack, &engineer, 40).await;
    let backed_up = sovd(&stack, &["backup"], &env).await.unwrap();
    assert!(backed_up.contains("backup ") && backed_up.contains(storage.location()), "{backed_up}");
    accepted.extend(load(&stack, &engineer, 40).await);
    // A user created after the backup can still sign in after the restore.
    let created = stack
        .send(
            reqwest::Method::POST,
            &admin,
            "/api/v1/users",
            json!({"username": "dana", "password": "dana-password-1", "role": "engineer"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    stack.wait_until(|| settled(&stack, &storage, &keys)).await;
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let gauge = |name: &str| {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    assert!(gauge("backup_last_success_timestamp_seconds") > 1.7e9, "the backup shows in the metrics");
    assert_eq!(gauge("archive_lag_seconds{stream=\"SOVD_COMMANDS\"}"), 0.0, "everything is archived");

    let before_statuses = statuses(&stack.deps.pool).await;
    let before_digests = digests(&stack.deps.pool).await;
    for id in &accepted {
        assert!(before_statuses.contains_key(id), "command {id} is in the read model before the loss");
    }
    stack.stop().await;
    let mut stack = stack;
    stack.nats.lose_data().await;
    lose_database(&stack).await;

    let restored = sovd(&stack, &["restore", "--verify"], &env)
        .await
        .unwrap_or_else(|(code, err)| panic!("restore exited {code}: {err}"));
    assert!(restored.contains("restored backup"), "{restored}");

    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    assert_eq!(statuses(&pool).await, before_statuses, "every command back, in the same state");
    assert_eq!(digests(&pool).await, before_digests, "every read model equal to before the loss");
    let verified = sovd(&stack, &["audit", "verify"], &env).await;
    assert!(verified.is_ok(), "the audit chain of the rebuilt trail holds: {verified:?}");

    // The restored system serves: the user created after the backup signs in and sees the
    // history; the restore itself is in the audit trail.
    stack.serve_again().await;
    stack.login(("dana", "dana-password-1")).await;
    let admin = stack.login(ADMIN).await;
    let page = stack.get(&admin, "/api/v1/commands?limit=1").await;
    let total = page.headers()["x-total-count"].to_str().unwrap().to_owned();
    assert_eq!(total, accepted.len().to_string(), "the history lists every accepted command");
    for action in ["backup_completed", "restore_completed"] {
        stack
            .wait_until(|| async {
                let audit: Value =
                    stack.get(&admin, &format!("/api/v1/audit?action={action}")).await.json().await.unwrap();
                audit.to_string().contains(action)
            })
            .await;
    }
}

#[tokio::test]
async fn the_drill_restores_everything_from_a_local_directory() {
    let dir = std::env::temp_dir().join(format!("sovd-drill-{}", uuid::Uuid::new_v4()));
    drill(local_env(&dir)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_drill_restores_everything_from_an_s3_server() {
    let s3 = S3Server::start().await;
    drill(s3.env()).await;
}

#[tokio::test]
async fn a_restore_refuses_live_streams_and_names_a_damaged_or_missing_object_before_touching_anything() {
    let dir = std::env::temp_dir().join(format!("sovd-refusal-{}", uuid::Uuid::new_v4()));
    let env = local_env(&dir);
    let stack = Stack::start().await;
    let storage = Storage::open(&storage_args(&env)).unwrap();
    let keys = keys(&env);
    let settings = ArchiveSettings { interval: Duration::from_millis(200), ..Default::default() };
    tokio::spawn(archive::run(
        stack.deps.store.clone(),
        storage.clone(),
        keys.clone(),
        settings,
        stack.shutdown_signal(),
    ));
    let engineer = stack.login(ENGINEER).await;
    load(&stack, &engineer, 5).await;
    sovd(&stack, &["backup"], &env).await.unwrap();
    load(&stack, &engineer, 5).await;
    stack.wait_until(|| settled(&stack, &storage, &keys)).await;
    let commands = stack.commands_in_log().await;

    let (code, refused) = sovd(&stack, &["restore"], &env).await.unwrap_err();
    assert_ne!(code, 0);
    assert!(refused.contains("hold messages") && refused.contains("--replace"), "{refused}");

    let snapshot =
        std::fs::read_dir(dir.join("backups")).unwrap().next().unwrap().unwrap().path().join("SOVD_COMMANDS.snap");
    let original = std::fs::read(&snapshot).unwrap();
    let mut damaged = original.clone();
    damaged[original.len() / 2] ^= 0xff;
    std::fs::write(&snapshot, &damaged).unwrap();
    let (_, error) = sovd(&stack, &["restore", "--replace"], &env).await.unwrap_err();
    assert!(error.contains("SOVD_COMMANDS.snap is damaged"), "{error}");
    std::fs::write(&snapshot, &original).unwrap();

    let segments = dir.join("archive/SOVD_COMMANDS");
    for entry in std::fs::read_dir(&segments).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (_, error) = sovd(&stack, &["restore", "--replace"], &env).await.unwrap_err();
    assert!(error.contains("archive of SOVD_COMMANDS") && error.contains("no object holds"), "{error}");
    assert_eq!(stack.commands_in_log().await, commands, "the refused restores touched nothing");
    let _ = std::fs::remove_dir_all(dir);
}
