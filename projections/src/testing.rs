//! Test harness: a fresh, migrated database per test on the local Postgres
//! (`SOVD_TEST_DATABASE_URL`, written by deploy/local into .data/env).

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

fn admin_url() -> String {
    std::env::var("SOVD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://sovd:sovd@127.0.0.1:15432/postgres".to_owned())
}

/// Creates `sovd_test_<uuid>`, migrates it and returns a pool on it.
///
/// # Panics
/// When Postgres is not reachable: the test cannot run, and says how to fix it.
pub async fn fresh_database() -> (PgPool, String) {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Postgres at {admin} ({e}); run ./deploy/local/test"));
    let name = format!("sovd_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("SOVD_TEST_DATABASE_URL has no database part: {admin}"),
    };
    let pool =
        PgPoolOptions::new().max_connections(5).connect(&url).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    crate::migrate(&pool).await.unwrap_or_else(|e| panic!("migrate {name}: {e}"));
    (pool, url)
}
