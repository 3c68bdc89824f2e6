//! Assembling processes: connect to NATS and Postgres (waiting for them if they are not up
//! yet), then run the parts as sibling tasks until a shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sovd_connector::breaker::{BreakerConfig, BreakerHook, BreakerState};
use sovd_connector::consumer::{self, ConsumerConfig};
use sovd_connector::remote::RemoteFleet;
use sovd_connector::{CommandWorker, FleetConfig, SimulatedFleet, VehicleTransport, WorkerConfig};
use sovd_domain::events::VehicleCircuitChanged;
use sovd_domain::{Event, Vin};
use sovd_nats::{AppendOptions, EventMeta, EventStore, Subject};
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;

use crate::config::HttpLimits;
use crate::config::{
    CommonArgs, ConnectorArgs, ConnectorOptions, FleetOptions, GatewayArgs, NatsArgs, SimulatorArgs, Transport,
};
use crate::gateway::client::TrustedProxies;
use crate::gateway::jwt::JwtKey;
use crate::gateway::ratelimit::{RateLimiter, RateLimits};
use crate::gateway::sessions::Sessions;
use crate::gateway::{self, AppState};
use crate::lockouts::{LockoutPolicy, Lockouts};
use crate::metrics::Metrics;
use crate::passwords::Passwords;
use sovd_nats::kv::Buckets;

pub struct Deps {
    pub nats: async_nats::Client,
    pub store: EventStore,
    pub pool: sqlx::PgPool,
    pub buckets: Buckets,
}

/// Everything the gateway needs besides its dependencies, from `GatewayArgs`.
#[derive(Clone)]
pub struct GatewaySettings {
    pub jwt: JwtKey,
    pub lockout: LockoutPolicy,
    pub limits: RateLimits,
    pub cors_origins: Vec<String>,
    pub trusted_proxies: TrustedProxies,
    pub passwords: Passwords,
    pub ws_per_user: usize,
    pub http: HttpLimits,
}

impl GatewaySettings {
    pub fn from_args(args: &GatewayArgs, dev: bool) -> anyhow::Result<Self> {
        let passwords = match args.password_checks {
            0 => Passwords::per_core(),
            n => Passwords::new(n, Duration::from_secs(2)),
        }
        .context("cannot start the password-check threads")?;
        Ok(Self {
            jwt: jwt_key(args, dev)?,
            lockout: LockoutPolicy {
                per_client: args.lockout_threshold.max(1),
                per_name: args.lockout_name_threshold.max(args.lockout_threshold).max(1),
                lock_for: Duration::from_secs(args.lockout_minutes.max(1) * 60),
            },
            limits: RateLimits {
                login: args.rate_login_per_min,
                submit: args.rate_submit_per_min,
                vehicles: args.rate_vehicles_per_min,
            },
            cors_origins: args.cors_origins.clone(),
            trusted_proxies: TrustedProxies::new(args.trusted_proxies.clone()),
            passwords,
            ws_per_user: args.ws_per_user.max(1),
            http: args.http.clone(),
        })
    }
}

/// Retries `attempt` with backoff until it succeeds or shutdown is asked for.
pub async fn until_ok<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
    what: &str,
    shutdown: &watch::Receiver<bool>,
    mut attempt: impl FnMut() -> Fut,
) -> Option<T> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "waiting for {what}");
                let mut shutdown = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// NATS only, with every stream in place (for processes that never touch Postgres).
pub async fn connect_nats(
    args: &NatsArgs,
    name: &str,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<(async_nats::Client, EventStore)>> {
    let nats = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connect(&args.nats_url)
        .await
        .with_context(|| format!("bad NATS URL {}", crate::config::redact_url(&args.nats_url)))?;
    let store = EventStore::new(nats.clone());
    if until_ok("NATS JetStream", shutdown, || store.ensure_streams(args.stream_replicas)).await.is_none() {
        return Ok(None);
    }
    Ok(Some((nats, store)))
}

pub async fn connect(
    common: &CommonArgs,
    name: &str,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<Deps>> {
    let replicas = common.nats.stream_replicas;
    let Some((nats, store)) = connect_nats(&common.nats, name, shutdown).await? else {
        return Ok(None);
    };
    let js = store.jetstream().clone();
    let Some(buckets) = until_ok("NATS key-value buckets", shutdown, || Buckets::open(&js, replicas)).await else {
        return Ok(None);
    };
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(&common.database_url)
        .context("bad database URL")?;
    if until_ok("PostgreSQL", shutdown, || sovd_projections::migrate(&pool)).await.is_none() {
        return Ok(None);
    }
    tracing::info!(nats = %crate::config::redact_url(&common.nats.nats_url), "connected to NATS and PostgreSQL");
    Ok(Some(Deps { nats, store, pool, buckets }))
}

pub fn shutdown_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let signal_tx = tx.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        let _ = signal_tx.send(true);
    });
    (tx, rx)
}

pub fn spawn_projector(deps: &Deps, shutdown: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    sovd_projections::worker::all_workers(&deps.pool, &deps.store)
        .into_iter()
        .map(|worker| tokio::spawn(worker.run(shutdown.clone())))
        .collect()
}

/// The simulated fleet from the fleet file (or the built-in one) and the overriding flags,
/// registered and announced on SOVD_FLEET; its connectivity changes (drills, the disconnect
/// fault) are recorded there as they happen, until `shutdown`.
pub async fn simulated_fleet(
    store: &EventStore,
    options: &FleetOptions,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Arc<SimulatedFleet>> {
    let mut config = match &options.fleet_file {
        Some(path) => FleetConfig::load(path)?,
        None => FleetConfig::builtin(),
    };
    if let Some(count) = options.sim_vehicles {
        config.generate = count;
    }
    if let Some(delay) = options.sim_chunk_delay_ms {
        config.latency.base_ms = delay;
        config.latency.jitter_ms = config.latency.jitter_ms.min(delay);
    }
    if let Some(seed) = options.sim_seed {
        config.seed = seed;
    }
    let fleet = Arc::new(SimulatedFleet::new(config.sim_config()));
    sovd_connector::fleet::register(store, &fleet, &config.all_vehicles()).await?;
    tokio::spawn(sovd_connector::fleet::record_changes(store.clone(), fleet.clone(), shutdown.clone()));
    if config.faults.disconnect_per_sec > 0.0 {
        tokio::spawn(sovd_connector::fleet::drive_connectivity(fleet.clone(), shutdown.clone()));
    }
    Ok(fleet)
}

pub fn connector_name(options: &ConnectorOptions) -> String {
    options.connector_name.clone().unwrap_or_else(|| {
        let host =
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
        format!("{host}-{}", std::process::id())
    })
}

/// The connector: the shared command consumer, restarted until shutdown. With the embedded
/// transport it also returns the in-process fleet (tests inject faults through it).
pub async fn spawn_connector(
    store: &EventStore,
    options: &ConnectorOptions,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, Option<Arc<SimulatedFleet>>)> {
    Ok(match options.transport {
        Transport::Embedded => {
            let fleet = simulated_fleet(store, &options.fleet, shutdown).await?;
            (run_connector(store, fleet.clone(), options, metrics, shutdown), Some(fleet))
        }
        Transport::Nats => {
            let fleet = Arc::new(RemoteFleet::start(store, shutdown.clone()).await?);
            (run_connector(store, fleet, options, metrics, shutdown), None)
        }
    })
}

fn run_connector<T: VehicleTransport>(
    store: &EventStore,
    transport: Arc<T>,
    options: &ConnectorOptions,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let name = connector_name(options);
    let takeover_after = Duration::from_secs(options.takeover_after_secs.max(1));
    let worker_config = WorkerConfig {
        name: name.clone(),
        command_timeout: Duration::from_secs(options.command_timeout_secs),
        takeover_after,
        max_attempts: options.max_attempts.max(1),
        queue_ttl: Duration::from_secs(options.queue_ttl_secs),
        breaker: BreakerConfig {
            threshold: options.breaker_threshold.max(1),
            cooldown: Duration::from_secs(options.breaker_cooldown_secs),
        },
        ..Default::default()
    };
    let hook = breaker_hook(store.clone(), metrics.clone(), name);
    let worker = Arc::new(CommandWorker::with_breaker_hook(store.clone(), transport, worker_config, Some(hook)));
    let hook_metrics = metrics.clone();
    let config = ConsumerConfig {
        // A message comes back to the group when its connector stops acking for this long.
        ack_wait: takeover_after,
        concurrency: options.connector_concurrency,
        on_outcome: Some(Arc::new(move |status, elapsed| {
            hook_metrics.commands_executed_total.with_label_values(&[status.as_str()]).inc();
            hook_metrics.command_execution_duration_seconds.observe(elapsed.as_secs_f64());
        })),
        ..Default::default()
    };
    let js = store.jetstream().clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        // The consumer ends on errors (NATS gone); start it again until shutdown.
        while !*shutdown.borrow() {
            if let Err(error) = consumer::run(worker.clone(), js.clone(), config.clone(), shutdown.clone()).await {
                tracing::warn!(error = %error, "command consumer stopped; restarting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    })
}

/// A connector process needs NATS (its streams and its KV bucket), never Postgres.
pub async fn connect_connector(
    args: &ConnectorArgs,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<EventStore>> {
    let replicas = args.nats.stream_replicas;
    let Some((_, store)) = connect_nats(&args.nats, "sovd-connector", shutdown).await? else {
        return Ok(None);
    };
    let js = store.jetstream().clone();
    let lanes = || sovd_nats::kv::open_bucket(&js, sovd_nats::kv::Bucket::VehicleLanes, replicas);
    Ok(until_ok("NATS key-value buckets", shutdown, lanes).await.map(|_| store))
}

/// `sovd simulator`: the simulated fleet as its own process, serving its vehicles over NATS.
pub async fn run_simulator(args: SimulatorArgs) -> anyhow::Result<()> {
    let (_stop, shutdown) = shutdown_signal();
    let Some((client, store)) = connect_nats(&args.nats, "sovd-simulator", &shutdown).await? else {
        return Ok(());
    };
    let fleet = simulated_fleet(&store, &args.fleet, &shutdown).await?;
    sovd_connector::remote::serve(client, fleet, shutdown).await?;
    Ok(())
}

/// Every change of a vehicle's circuit: a metric, and an event so the fleet view shows it.
fn breaker_hook(store: EventStore, metrics: Metrics, connector: String) -> BreakerHook {
    Arc::new(move |vin: &Vin, state: BreakerState| {
        let value = match state {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        };
        metrics.vehicle_circuit_breaker_state.with_label_values(&[vin.as_str()]).set(value);
        tracing::warn!(vin = %vin, state = state.as_str(), "vehicle circuit breaker changed");
        let event = Event::VehicleCircuitChanged(VehicleCircuitChanged {
            vin: vin.clone(),
            state: state.as_str().to_owned(),
            connector: connector.clone(),
            at: time::OffsetDateTime::now_utc(),
        });
        let (store, subject) = (store.clone(), Subject::vehicle(vin));
        tokio::spawn(async move {
            let meta = EventMeta::new("circuit-breaker", "connector");
            if let Err(error) = store.append(&subject, &event, &meta, AppendOptions::default()).await {
                tracing::warn!(error = %error, "could not record a circuit breaker change");
            }
        });
    })
}

/// The token signing key. Never a constant: `sovd dev` on a loopback address without one makes
/// a random key that lives as long as the process (tokens die with it); anything reachable
/// from elsewhere must be given one.
pub fn jwt_key(args: &GatewayArgs, dev: bool) -> anyhow::Result<JwtKey> {
    match &args.jwt_secret {
        Some(secret) => Ok(JwtKey::new(secret.0.as_bytes())),
        None if dev && args.http_addr.ip().is_loopback() => {
            tracing::warn!(
                "SOVD_JWT_SECRET is not set; signing with a random key made for this process \
                 (sign-ins end when it stops; ./deploy/local/run keeps one in .data/env)"
            );
            JwtKey::random().context("cannot get random bytes for the token signing key")
        }
        None if dev => anyhow::bail!(
            "SOVD_JWT_SECRET must be set (32+ bytes) when sovd listens on {}, which is not a loopback address",
            args.http_addr
        ),
        None => anyhow::bail!("SOVD_JWT_SECRET must be set (32+ bytes) for the gateway"),
    }
}

pub async fn bind(args: &GatewayArgs) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (is the port taken? set SOVD_HTTP_ADDR)", args.http_addr))
}

pub async fn serve_gateway(
    deps: &Deps,
    listener: tokio::net::TcpListener,
    settings: GatewaySettings,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let sessions = Sessions::new(deps.buckets.clone(), settings.jwt.clone());
    tokio::spawn(sessions.clone().watch_revocations(shutdown.clone()));
    let directory = gateway::directory::Directory::new(deps.store.clone());
    tokio::spawn(directory.clone().follow(shutdown.clone()));
    let state = Arc::new(AppState {
        store: deps.store.clone(),
        nats: deps.nats.clone(),
        pool: deps.pool.clone(),
        buckets: deps.buckets.clone(),
        sessions,
        directory,
        lockouts: Lockouts::new(deps.buckets.lockouts.clone(), settings.lockout.clone()),
        passwords: settings.passwords.clone(),
        sockets: gateway::ws::SocketCounts::new(settings.ws_per_user),
        limiter: RateLimiter::new(settings.limits),
        metrics,
    });
    let addr = listener.local_addr().context("listener has no address")?;
    tracing::info!(url = %format!("http://{addr}/"), "gateway listening");
    let edge = gateway::Edge {
        cors_origins: settings.cors_origins.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
        deadlines: gateway::server::Deadlines::from_limits(&settings.http, gateway::MAX_BODY_BYTES),
    };
    gateway::server::serve(listener, gateway::router(state, &edge), &settings.http, shutdown).await;
    Ok(())
}
