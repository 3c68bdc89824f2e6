//! One typed configuration per process: flags, each with a `SOVD_*` environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

/// A secret: parsed like a string, never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 16 { Err("must be at least 16 characters".into()) } else { Ok(Self(s.to_owned())) }
    }
}

/// A credential of any length (an S3 secret key): parsed like a string, never printed.
#[derive(Clone)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Redacted {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[derive(Debug, Parser)]
#[command(name = "sovd", version, about = "Cloud-to-vehicle diagnostics on an event log")]
pub struct Cli {
    /// Log format: text for people, json for log pipelines.
    #[arg(long, env = "SOVD_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gateway, connector (simulated fleet) and projector in one process, with seed data.
    Dev(DevArgs),
    /// The HTTP API and WebSocket.
    Gateway(GatewayArgs),
    /// Executes commands against vehicles (the simulated fleet).
    Connector(ConnectorArgs),
    /// Builds the Postgres read models from the event streams.
    Projector(CommonArgs),
    /// Load test: concurrent clients submit commands and wait for their outcome.
    Bench(crate::bench::BenchArgs),
    /// Print a command's live events (the WebSocket) until it ends.
    Watch(crate::watch::WatchArgs),
    /// Manage user accounts (each change is an event on SOVD_IAM).
    User(UserArgs),
    /// The simulated fleet as its own process, served over NATS to `sovd connector --transport nats`.
    Simulator(SimulatorArgs),
    /// The audit trail: verify its hash chain.
    Audit(AuditArgs),
    /// The read models: how far each projection has got.
    Projections(ProjectionsArgs),
    /// The event log for analysts: filtered, as JSON Lines or CSV, optionally followed live,
    /// or every command's state at a moment (--as-of).
    Replay(crate::replay_cli::ReplayArgs),
    /// Snapshot every stream into object storage (a manifest with checksums); keeps the last N.
    Backup(crate::dr::cli::BackupArgs),
    /// Ship new events of every stream to object storage as they arrive (part of `sovd dev`).
    Archive(crate::dr::cli::ArchiveArgs),
    /// Bring the streams back from the latest backup and the archive (optionally up to a
    /// point in time), then rebuild every read model.
    Restore(crate::dr::cli::RestoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ProjectionsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub action: ProjectionsAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectionsAction {
    /// Each projection's checkpoint, its stream's last sequence, and the lag.
    Status,
    /// Rebuild from sequence 1 into a shadow schema while the live tables keep serving,
    /// then switch over in one transaction. Every projection when no name is given.
    Rebuild {
        #[arg(value_parser = ["commands", "vehicles", "users", "audit"])]
        name: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// PostgreSQL URL of the read-model database.
    #[arg(long, env = "SOVD_DATABASE_URL", default_value = "postgres://sovd:sovd@127.0.0.1:15432/sovd")]
    pub database_url: String,
    #[command(subcommand)]
    pub action: AuditAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditAction {
    /// Check every row's hash and its link to the row before; name the first that fails.
    Verify,
}

/// How to reach NATS; every process has these.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL.
    #[arg(long, env = "SOVD_NATS_URL", default_value = "nats://127.0.0.1:14222")]
    pub nats_url: String,
    /// JetStream replicas per stream (3 in production clusters).
    #[arg(long, env = "SOVD_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
}

#[derive(Debug, Clone, Args)]
pub struct SimulatorArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub fleet: FleetOptions,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// PostgreSQL URL of the read-model database.
    #[arg(long, env = "SOVD_DATABASE_URL", default_value = "postgres://sovd:sovd@127.0.0.1:15432/sovd")]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address the HTTP server listens on.
    #[arg(long, env = "SOVD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// HMAC key for access and refresh tokens (16+ characters). Required outside `sovd dev`.
    #[arg(long, env = "SOVD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Failed sign-ins in a row that lock a username.
    #[arg(long, env = "SOVD_LOCKOUT_THRESHOLD", default_value_t = 5)]
    pub lockout_threshold: u32,
    /// Minutes a locked username stays locked.
    #[arg(long, env = "SOVD_LOCKOUT_MINUTES", default_value_t = 15)]
    pub lockout_minutes: u64,
    /// Sign-in attempts per minute per client IP.
    #[arg(long, env = "SOVD_RATE_LOGIN_PER_MIN", default_value_t = 5)]
    pub rate_login_per_min: u32,
    /// Command submissions per minute per user (admins are exempt).
    #[arg(long, env = "SOVD_RATE_SUBMIT_PER_MIN", default_value_t = 10)]
    pub rate_submit_per_min: u32,
    /// Vehicle list requests per minute per user (admins are exempt).
    #[arg(long, env = "SOVD_RATE_VEHICLES_PER_MIN", default_value_t = 100)]
    pub rate_vehicles_per_min: u32,
    /// Browser origins allowed to call the API from other sites (comma-separated; none by default).
    #[arg(long, env = "SOVD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

/// The simulated fleet: which vehicles, how they answer, which faults.
#[derive(Debug, Clone, Args)]
pub struct FleetOptions {
    /// The simulated fleet: vehicles, latency, faults and seed (JSON; see deploy/local/fleet.json,
    /// which is also the built-in default).
    #[arg(long, env = "SOVD_FLEET_FILE")]
    pub fleet_file: Option<std::path::PathBuf>,
    /// Generate this many simulated vehicles on top of the fleet file's (benchmarks use 1,000+).
    #[arg(long, env = "SOVD_SIM_VEHICLES")]
    pub sim_vehicles: Option<u32>,
    /// Override the fleet file's delay before each answer chunk, in milliseconds.
    #[arg(long, env = "SOVD_SIM_CHUNK_DELAY_MS")]
    pub sim_chunk_delay_ms: Option<u64>,
    /// Override the fleet file's seed (faults and jitter repeat under the same seed).
    #[arg(long, env = "SOVD_SIM_SEED")]
    pub sim_seed: Option<u64>,
}

/// How a connector reaches vehicles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// A simulated fleet inside this process (one connector; `sovd dev`).
    Embedded,
    /// Vehicles served over NATS by `sovd simulator`, shared by any number of connectors.
    Nats,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectorOptions {
    /// Name of this connector in the log; defaults to host name and process id.
    #[arg(long, env = "SOVD_CONNECTOR_NAME")]
    pub connector_name: Option<String>,
    /// Where the vehicles are.
    #[arg(long, env = "SOVD_TRANSPORT", value_enum, default_value = "embedded")]
    pub transport: Transport,
    #[command(flatten)]
    pub fleet: FleetOptions,
    /// Seconds without a word from a connector before its unfinished commands go to another.
    #[arg(long, env = "SOVD_TAKEOVER_AFTER_SECS", default_value_t = 30)]
    pub takeover_after_secs: u64,
    /// Seconds a vehicle may take for one command before it times out.
    #[arg(long, env = "SOVD_COMMAND_TIMEOUT_SECS", default_value_t = 30)]
    pub command_timeout_secs: u64,
    /// Commands this process runs at once.
    #[arg(long, env = "SOVD_CONNECTOR_CONCURRENCY", default_value_t = 512)]
    pub connector_concurrency: usize,
    /// Seconds a command for an offline vehicle waits for it (status `queued`) before it fails.
    #[arg(long, env = "SOVD_QUEUE_TTL_SECS", default_value_t = 300)]
    pub queue_ttl_secs: u64,
    /// Tries per command for transient faults (the first included).
    #[arg(long, env = "SOVD_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Consecutive failures that open a vehicle's circuit breaker.
    #[arg(long, env = "SOVD_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,
    /// Seconds an open circuit waits before it lets a probe through.
    #[arg(long, env = "SOVD_BREAKER_COOLDOWN_SECS", default_value_t = 30)]
    pub breaker_cooldown_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectorArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub connector: ConnectorOptions,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub connector: ConnectorOptions,
    #[command(flatten)]
    pub storage: crate::dr::storage::StorageArgs,
    #[command(flatten)]
    pub archive: crate::dr::cli::ArchiveOptions,
    /// Do not run the archive in this process.
    #[arg(long, env = "SOVD_NO_ARCHIVE")]
    pub no_archive: bool,
}

#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserAction {
    /// Create a user. The password is read from SOVD_NEW_PASSWORD or asked for on stdin.
    Add {
        username: String,
        /// viewer, engineer or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        email: Option<String>,
    },
    /// Change a user's role.
    SetRole { username: String, role: String },
    /// Stop a user from signing in; their sessions end.
    Deactivate { username: String },
    /// Let a deactivated user sign in again.
    Reactivate { username: String },
    /// Set a new password (from SOVD_NEW_PASSWORD or stdin).
    ResetPassword { username: String },
    /// List users.
    List,
}
