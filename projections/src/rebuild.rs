//! `sovd projections rebuild`: a projection built again from sequence 1 into a shadow
//! schema while the live tables keep serving, then swapped in within one transaction.
//!
//! 1. `sovd_rebuild_<name>` gets empty copies of the projection's tables (same columns,
//!    constraints and indexes, a sequence of its own) and of `projection_checkpoints`.
//! 2. The ordinary projection worker fills them through a pool whose `search_path` puts the
//!    shadow schema first, up to the streams' last sequences when the rebuild started.
//! 3. One transaction locks the live tables, applies what arrived meanwhile, drops the live
//!    tables, moves the shadow ones into `public` under the original index names, and
//!    carries the checkpoints over. Readers wait for that transaction, never see a half.

use std::collections::HashMap;
use std::time::Instant;

use sovd_nats::{EventStore, StreamName};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use crate::ProjectionError;
use crate::apply::{Projection, checkpoint, set_checkpoint};
use crate::worker::{Outcome, ProjectionWorker};

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebuilt {
    pub projection: Projection,
    /// Events read from the log.
    pub events: u64,
    /// Rows in the projection's tables after the switch.
    pub rows: u64,
    pub digest: String,
    pub seconds: f64,
}

/// How far a rebuild has got: sequences applied out of the streams' last sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    pub done: u64,
    pub total: u64,
}

fn shadow_schema(projection: Projection) -> String {
    format!("sovd_rebuild_{}", projection.name())
}

/// Rebuilds `projection` from the log and switches the live tables over to the result.
pub async fn rebuild(
    pool: &PgPool,
    store: &EventStore,
    projection: Projection,
    progress: &(dyn Fn(RebuildProgress) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    let started = Instant::now();
    let schema = shadow_schema(projection);
    create_shadow(pool, projection, &schema).await?;
    let options: PgConnectOptions =
        (*pool.connect_options()).clone().options([("search_path", format!("{schema},public"))]);
    let shadow = PgPoolOptions::new().max_connections(2).connect_with(options).await?;

    let mut targets = Vec::new();
    for &stream in projection.streams() {
        targets.push((stream, store.last_sequence(stream).await?));
    }
    let total = targets.iter().map(|(_, last)| last).sum();
    let mut events = 0;
    let mut finished = 0;
    for &(stream, target) in &targets {
        let mut worker = ProjectionWorker::new(shadow.clone(), store.clone(), projection, stream).with_batch_size(2000);
        while worker.position() < target {
            match worker.try_process_next().await? {
                Outcome::Processed(n) => events += n as u64,
                // Everything there was has been applied (the tail may be gone: a purge).
                Outcome::Idle => break,
            }
            progress(RebuildProgress { done: finished + worker.position().min(target), total });
        }
        finished += target;
    }

    let mut tx = shadow.begin().await?;
    events += switch_over(&mut tx, store, projection, &schema).await?;
    tx.commit().await?;
    shadow.close().await;
    progress(RebuildProgress { done: total, total });

    let mut rows = 0;
    for table in projection.tables() {
        let sql = format!("SELECT count(*) FROM public.{table}");
        let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?;
        rows += u64::try_from(count).unwrap_or(0);
    }
    let digest = crate::digest::projection_digest(pool, projection).await?;
    Ok(Rebuilt { projection, events, rows, digest, seconds: started.elapsed().as_secs_f64() })
}

/// Empty copies of the projection's tables and of the checkpoints in a fresh schema.
async fn create_shadow(pool: &PgPool, projection: Projection, schema: &str) -> Result<(), ProjectionError> {
    let mut conn = pool.acquire().await?;
    // Names below come from `Projection`, never from input.
    let run = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    run(format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")).execute(&mut *conn).await?;
    for table in projection.tables().iter().chain(&["projection_checkpoints"]) {
        run(format!("CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")).execute(&mut *conn).await?;
        // A serial column's copied default still draws from the live table's sequence, which
        // goes when the live table does: give the shadow one of its own.
        let serials: Vec<(String,)> = sqlx::query_as(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 AND column_default LIKE 'nextval(%'",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        for (column,) in serials {
            run(format!(
                "CREATE SEQUENCE {schema}.{table}_{column}_seq OWNED BY {schema}.{table}.{column};
                 ALTER TABLE {schema}.{table} ALTER {column} SET DEFAULT nextval('{schema}.{table}_{column}_seq')"
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Index name by what it indexes (its definition after `ON <table>`).
async fn indexes(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<HashMap<String, String>, ProjectionError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT regexp_replace(indexdef, '^.* ON \\S+ ', ''), indexname::text FROM pg_indexes
         WHERE schemaname = $1 AND tablename = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Inside `tx`: catch the shadow up to now, then put it in place of the live tables.
/// Returns the number of events applied here.
async fn switch_over(
    tx: &mut PgConnection,
    store: &EventStore,
    projection: Projection,
    schema: &str,
) -> Result<u64, ProjectionError> {
    let tables = projection.tables();
    // The audit chain's lock first, as every audit writer takes it, then the tables: taking
    // them the other way round could deadlock with a live audit batch.
    crate::audit::lock_chain(tx).await?;
    let live: Vec<String> = tables.iter().map(|t| format!("public.{t}")).collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live.join(", "))))
        .execute(&mut *tx)
        .await?;

    let mut applied = 0;
    for &stream in projection.streams() {
        applied += catch_up_in(tx, store, projection, stream).await?;
    }

    for table in tables {
        let names = indexes(tx, "public", table).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP TABLE public.{table}; ALTER TABLE {schema}.{table} SET SCHEMA public"
        )))
        .execute(&mut *tx)
        .await?;
        let moved = indexes(tx, "public", table).await?;
        for (shape, name) in names {
            match moved.get(&shape) {
                Some(now) if *now != name => {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER INDEX public.{now} RENAME TO {name}")))
                        .execute(&mut *tx)
                        .await?;
                }
                _ => {}
            }
        }
    }
    let sql = format!(
        "INSERT INTO public.projection_checkpoints SELECT * FROM {schema}.projection_checkpoints WHERE projection = $1
         ON CONFLICT (projection, stream) DO UPDATE SET last_sequence = EXCLUDED.last_sequence, updated_at = now()"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(projection.name()).execute(&mut *tx).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut *tx).await?;
    Ok(applied)
}

/// Applies, inside `tx`, the events of `stream` after the shadow's checkpoint.
async fn catch_up_in(
    tx: &mut PgConnection,
    store: &EventStore,
    projection: Projection,
    stream: StreamName,
) -> Result<u64, ProjectionError> {
    // The shadow's checkpoint: `projection_checkpoints` resolves to the shadow schema here.
    let from = checkpoint(&mut *tx, projection, stream).await? + 1;
    let last = store.last_sequence(stream).await?;
    let events = store.read_range(stream, stream.subjects(), from, last).await?;
    for batch in events.chunks(2000) {
        crate::quarantine::apply_or_set_aside(tx, projection, stream, batch).await?;
    }
    set_checkpoint(tx, projection, stream, last.max(from - 1)).await?;
    Ok(events.len() as u64)
}
