//! `sovd bench catch-up` and `sovd bench replay`: the read side against a large log, each
//! beside the limit this machine sets.
//!
//! Both first make sure the log holds `--events` events: an empty NATS gets a generated
//! log (250,000 ReadDTC commands for 1M events: request, dispatch, one chunk, completion).
//! - catch-up: every projection from sequence 1 into a fresh database until no lag, beside
//!   the same rows copied by plain 1,000-row INSERT … SELECT statements (no upsert, no
//!   client, no JSON): what Postgres accepts at best.
//! - replay: the whole log to JSON Lines through `sovd replay`'s code, beside bare ordered
//!   consumers that only count the same messages.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::consumer;
use clap::{Args, Subcommand};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sovd_domain::events::{CommandCompleted, CommandDispatched, CommandRequested, ResponseChunk};
use sovd_domain::{CommandId, EcuAddress, Event, Operation, UserId, VehicleId, Vin};
use sovd_nats::{EventMeta, EventStore, StreamName, Subject};
use sovd_projections::apply::Projection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::config::CommonArgs;
use crate::progress::Progress;
use crate::replay::{Filter, Replay, record};
use crate::run;

#[derive(Debug, Clone, Subcommand)]
pub enum LogBench {
    /// Projection catch-up from sequence 1, beside plain batched inserts of the same rows.
    CatchUp(LogBenchArgs),
    /// Replay of every stream to JSON Lines, beside a bare ordered consumer.
    Replay(LogBenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LogBenchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Events the log must hold; an empty log gets them generated.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
}

pub async fn run(bench: LogBench) -> anyhow::Result<()> {
    let (_stop, shutdown) = run::shutdown_signal();
    let args = match &bench {
        LogBench::CatchUp(args) | LogBench::Replay(args) => args,
    };
    let Some((_, store)) = run::connect_nats(&args.common.nats, "sovd-bench", &shutdown).await? else {
        return Ok(());
    };
    let events = ensure_log(&store, args.events).await?;
    match bench {
        LogBench::CatchUp(args) => catch_up(&store, &args.common.database_url, events).await,
        LogBench::Replay(_) => replay(&store, events).await,
    }
}

async fn log_size(store: &EventStore) -> anyhow::Result<u64> {
    let mut total = 0;
    for stream in StreamName::ALL {
        total += store.last_sequence(stream).await?;
    }
    Ok(total)
}

/// The log's size, after generating `wanted` events into an empty one (operators' events on
/// SOVD_OPS, such as the record of a backup taken first, do not count as content).
async fn ensure_log(store: &EventStore, wanted: u64) -> anyhow::Result<u64> {
    let total = log_size(store).await?;
    if total >= wanted {
        return Ok(total);
    }
    let held = total - store.last_sequence(StreamName::Ops).await?;
    if held > 0 {
        bail!("the log holds {held} events, fewer than {wanted}: run against an empty NATS (./deploy/local/bench-log)");
    }
    let commands = wanted.div_ceil(4);
    let progress = Progress::new("generate", commands * 4, "events");
    let js = store.jetstream();
    let vins: Vec<Vin> = (0..1000)
        .map(|i| Vin::parse(&format!("SVDBENCH{i:09}")).map_err(anyhow::Error::msg))
        .collect::<Result<_, _>>()?;
    let user = UserId::from_uuid(uuid::Uuid::from_u128(1));
    let mut acks = FuturesUnordered::new();
    let mut sent = 0u64;
    for i in 0..commands {
        let vin = &vins[(i % 1000) as usize];
        let id = CommandId::new();
        let now = OffsetDateTime::now_utc();
        let request = Event::CommandRequested(CommandRequested {
            command_id: id,
            vehicle_id: VehicleId::from_uuid(uuid::Uuid::from_u128(u128::from(i % 1000))),
            vin: vin.clone(),
            user_id: user,
            operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
            requested_at: now,
            timeout_ms: None,
        });
        let dispatched = Event::CommandDispatched(CommandDispatched {
            command_id: id,
            attempt: 1,
            connector: "bench".into(),
            dispatched_at: now,
        });
        let chunk = Event::ResponseChunk(ResponseChunk {
            command_id: id,
            response_id: uuid::Uuid::now_v7(),
            sequence_number: 0,
            payload_json: r#"{"dtcCode":"P0420","status":"0x2F","description":"Catalyst efficiency below threshold"}"#
                .into(),
            is_final: true,
            received_at: now,
        });
        let completed = Event::CommandCompleted(CommandCompleted { command_id: id, completed_at: now });
        let request_meta = EventMeta::new(format!("bench-{id}"), format!("user:{user}"));
        let cmd = Subject::command(vin, id);
        let rsp = Subject::response(vin, id);
        for (subject, event) in [(&cmd, request), (&rsp, dispatched), (&rsp, chunk), (&rsp, completed)] {
            let meta = EventMeta::caused_by(&request_meta, "connector:bench");
            let meta = if subject == &cmd { request_meta.clone() } else { meta };
            let (headers, payload) = sovd_nats::envelope::encode(&event, &meta)?;
            acks.push(js.publish_with_headers(subject.to_string(), headers, payload).await?.into_future());
            sent += 1;
            while acks.len() >= 4096 {
                if let Some(ack) = acks.next().await {
                    ack?;
                }
            }
        }
        if i.is_multiple_of(1000) {
            progress.set(sent, commands * 4);
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    progress.finish(&format!("generated {sent} events"));
    log_size(store).await
}

async fn catch_up(store: &EventStore, database_url: &str, events: u64) -> anyhow::Result<()> {
    let name = format!("sovd_bench_{}", std::process::id());
    let (base, _) = database_url.rsplit_once('/').context("SOVD_DATABASE_URL has no database part")?;
    let mut admin = PgConnection::connect(database_url).await.context("cannot reach Postgres")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let pool = PgPoolOptions::new().max_connections(12).connect(&format!("{base}/{name}")).await?;
    let outcome = measure_catch_up(store, &pool, events).await;
    pool.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}"))).execute(&mut admin).await?;
    outcome
}

async fn measure_catch_up(store: &EventStore, pool: &sqlx::PgPool, events: u64) -> anyhow::Result<()> {
    sovd_projections::migrate(pool).await?;
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let workers: Vec<_> = sovd_projections::worker::all_workers(pool, store)
        .into_iter()
        .map(|w| tokio::spawn(w.run(shutdown.clone())))
        .collect();
    let progress = Progress::new("catch-up", 0, "sequences");
    loop {
        let rows = sovd_projections::status::progress(pool, store).await?;
        let (done, total) = rows.iter().fold((0, 0), |(d, t), p| (d + p.checkpoint, t + p.last_sequence));
        progress.set(done, total);
        if done >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up = started.elapsed();
    let _ = stop.send(true);
    for worker in workers {
        let _ = worker.await;
    }
    progress.finish(&format!("caught up in {:.1} s", catch_up.as_secs_f64()));

    let mut rows = 0;
    let mut limit = Duration::ZERO;
    let tables: Vec<&str> = Projection::ALL.iter().flat_map(|p| p.tables().iter().copied()).collect();
    for table in tables {
        let (copied, took) = plain_inserts(pool, table).await?;
        rows += copied;
        limit += took;
    }
    let rate = |d: Duration| events as f64 / d.as_secs_f64().max(f64::EPSILON);
    println!("| what | time | events/s |");
    println!("|---|---|---|");
    println!(
        "| catch-up, all projections, {events} events, {rows} rows | {:.1} s | {:.0} |",
        catch_up.as_secs_f64(),
        rate(catch_up)
    );
    println!(
        "| limit: plain 1,000-row INSERT … SELECT of the same {rows} rows | {:.1} s | {:.0} |",
        limit.as_secs_f64(),
        rate(limit)
    );
    Ok(())
}

/// Copies `table`'s rows into an empty twin (same columns and indexes) by plain
/// 1,000-row INSERT … SELECT statements, each its own transaction. Returns rows and time.
async fn plain_inserts(pool: &sqlx::PgPool, table: &str) -> anyhow::Result<(u64, Duration)> {
    // Table names come from `Projection::tables`.
    let sql = |s: String| sqlx::raw_sql(sqlx::AssertSqlSafe(s));
    sql(format!(
        "CREATE TABLE bench_src_{table} AS SELECT row_number() OVER () AS bench_n, t.* FROM {table} t;
         CREATE INDEX ON bench_src_{table} (bench_n);
         CREATE TABLE bench_copy_{table} (LIKE {table} INCLUDING ALL)"
    ))
    .execute(pool)
    .await?;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    let columns = columns.join(", ");
    let rows: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(pool).await?;
    let progress = Progress::new(format!("limit {table}"), u64::try_from(rows)?, "rows");
    let started = Instant::now();
    for from in (0..rows).step_by(1000) {
        sql(format!(
            "INSERT INTO bench_copy_{table} ({columns}) SELECT {columns} FROM bench_src_{table}
             WHERE bench_n > {from} AND bench_n <= {}",
            from + 1000
        ))
        .execute(pool)
        .await?;
        progress.set(u64::try_from(from)?, u64::try_from(rows)?);
    }
    let took = started.elapsed();
    progress.finish(&format!("{table}: {rows} rows in {:.1} s", took.as_secs_f64()));
    Ok((u64::try_from(rows)?, took))
}

async fn replay(store: &EventStore, events: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut replay = Replay::open(store, Filter::default(), false).await?;
    let progress = Progress::new("replay", replay.total, "events");
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::io::sink());
    let mut written = 0u64;
    while let Some(event) = replay.next().await {
        out.write_all(record::json_line(&event?).as_bytes()).await?;
        written += 1;
        if written.is_multiple_of(10_000) {
            progress.set(written, replay.total);
        }
    }
    out.flush().await?;
    let replayed = started.elapsed();
    progress.finish(&format!("replayed {written} events"));

    let started = Instant::now();
    let mut counted = 0u64;
    let bare = Progress::new("bare", events, "messages");
    for stream in StreamName::ALL {
        let handle = store.jetstream().get_stream(stream.as_str()).await?;
        let mut consumer = handle
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        if consumer.info().await?.num_pending == 0 {
            continue;
        }
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            counted += 1;
            if counted.is_multiple_of(10_000) {
                bare.set(counted, events);
            }
            if message.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending == 0 {
                break;
            }
        }
    }
    let limit = started.elapsed();
    bare.finish(&format!("read {counted} messages"));
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(f64::EPSILON);
    println!("| what | time | events/s |");
    println!("|---|---|---|");
    println!(
        "| sovd replay, every stream to JSON Lines, {written} events | {:.1} s | {:.0} |",
        replayed.as_secs_f64(),
        rate(written, replayed)
    );
    println!(
        "| limit: bare ordered consumers, {counted} messages counted | {:.1} s | {:.0} |",
        limit.as_secs_f64(),
        rate(counted, limit)
    );
    Ok(())
}
