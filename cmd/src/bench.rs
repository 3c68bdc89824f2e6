//! `sovd bench`: N concurrent clients each submit a command over HTTP and wait for its
//! terminal event on the WebSocket, the whole round trip a user waits for. Prints throughput
//! and latency percentiles from an HDR histogram.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// The read side against a large log instead of the API round trip.
    #[command(subcommand)]
    pub log: Option<crate::bench_log::LogBench>,
    /// Base URL of a running gateway.
    #[arg(long, env = "SOVD_BENCH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Commands in all.
    #[arg(long, default_value_t = 400)]
    pub commands: usize,
    /// Who submits; admins are exempt from the per-user submit limit (10/min for engineers).
    #[arg(long, default_value = "admin")]
    pub username: String,
    #[arg(
        long,
        env = "SOVD_BENCH_PASSWORD",
        default_value = "admin123",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub password: String,
    /// Operation each client submits.
    #[arg(long, default_value = "ReadDTC")]
    pub operation: String,
}

struct Shared {
    http: reqwest::Client,
    base: String,
    ws_base: String,
    token: String,
    vehicles: Vec<String>,
    operation: String,
    next: AtomicUsize,
    total: usize,
    failed: AtomicU64,
}

async fn login(http: &reqwest::Client, base: &str, args: &BenchArgs) -> anyhow::Result<String> {
    let answer: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": args.username, "password": args.password}))
        .send()
        .await
        .context("cannot reach the gateway")?
        .error_for_status()
        .context("login refused")?
        .json()
        .await?;
    answer["access_token"].as_str().map(str::to_owned).context("no access_token in login answer")
}

fn params(operation: &str) -> Value {
    match operation {
        "ReadDataByID" => json!({"ecuAddress": "0x10", "dataId": "0x010C"}),
        _ => json!({"ecuAddress": "0x10"}),
    }
}

/// One command, submit to terminal event. Returns the terminal status.
async fn one(shared: &Shared, index: usize) -> anyhow::Result<String> {
    let vehicle = &shared.vehicles[index % shared.vehicles.len()];
    let submitted: Value = shared
        .http
        .post(format!("{}/api/v1/commands", shared.base))
        .bearer_auth(&shared.token)
        .json(&json!({"command_name": shared.operation, "vehicle_id": vehicle, "command_params": params(&shared.operation)}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = submitted["command_id"].as_str().context("no command_id")?;
    let url = format!("{}/ws/responses/{id}?token={}", shared.ws_base, shared.token);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message? {
            let event: Value = serde_json::from_str(&text)?;
            if matches!(event["event"].as_str(), Some("status" | "error")) {
                return Ok(event["status"].as_str().unwrap_or("unknown").to_owned());
            }
        }
    }
    bail!("WebSocket closed before the terminal event")
}

async fn client(shared: Arc<Shared>) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap_or_else(|_| unreachable!());
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= shared.total {
            return histogram;
        }
        let started = Instant::now();
        match one(&shared, index).await {
            Ok(status) if status == "completed" => {
                let _ = histogram.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok(status) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(status, "command did not complete");
            }
            Err(error) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error, "bench request failed");
            }
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(log) = args.log {
        return crate::bench_log::run(log).await;
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let ws_base = base.replacen("http", "ws", 1);
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    let token = login(&http, &base, &args).await?;
    // Every connected vehicle, a page at a time (the API gives at most 100 per page).
    let mut vehicles = Vec::new();
    loop {
        let page: Vec<Value> = http
            .get(format!("{base}/api/v1/vehicles?status=connected&limit=100&offset={}", vehicles.len()))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let done = page.len() < 100;
        vehicles.extend(page.iter().filter_map(|v| v["vehicle_id"].as_str().map(str::to_owned)));
        if done {
            break;
        }
    }
    if vehicles.is_empty() {
        bail!("no connected vehicles to send commands to");
    }
    let shared = Arc::new(Shared {
        http,
        base,
        ws_base,
        token,
        vehicles,
        operation: args.operation.clone(),
        next: AtomicUsize::new(0),
        total: args.commands,
        failed: AtomicU64::new(0),
    });
    eprintln!(
        "sovd bench: {} clients, {} {} commands over {} vehicles against {}",
        args.clients,
        args.commands,
        args.operation,
        shared.vehicles.len(),
        args.url
    );
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients).map(|_| tokio::spawn(client(shared.clone()))).collect();
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let done = shared.next.load(Ordering::Relaxed).min(shared.total);
                eprint!("\r  {done}/{} started, {:.0} s", shared.total, started.elapsed().as_secs_f64());
            }
        })
    };
    let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for handle in clients {
        all.add(handle.await?)?;
    }
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let failed = shared.failed.load(Ordering::Relaxed);
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    eprintln!();
    println!("commands completed: {} (failed: {failed}) in {elapsed:.2} s", all.len());
    println!("throughput: {:.1} commands/s", all.len() as f64 / elapsed);
    println!(
        "latency submit->terminal: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        all.max() as f64 / 1000.0
    );
    if failed > 0 {
        bail!("{failed} commands failed");
    }
    Ok(())
}
