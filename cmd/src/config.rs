//! One typed configuration per process: flags, each with a `SOVD_*` environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

/// A signing secret: parsed like a string, at least 32 bytes, never printed.
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
        let min = crate::gateway::jwt::MIN_KEY_BYTES;
        if s.len() < min {
            Err(format!("must be at least {min} bytes (for example: head -c 48 /dev/urandom | base64)"))
        } else {
            Ok(Self(s.to_owned()))
        }
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

// Parsed once at start-up; the size of the biggest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Each projection's checkpoint, its stream's last sequence, the lag, and every event set
    /// aside because it could not be applied.
    Status,
    /// Apply the events set aside again (after a fix); those that now apply leave the list.
    Retry {
        #[arg(value_parser = ["commands", "vehicles", "users", "audit"])]
        name: Option<String>,
    },
    /// Rebuild from sequence 1 into a shadow schema while the live tables keep serving,
    /// then switch over in one transaction. Every projection when no name is given.
    Rebuild {
        #[arg(value_parser = ["commands", "vehicles", "users", "audit"])]
        name: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// PostgreSQL URL of the read-model database (its password is never printed or logged).
    #[arg(
        long,
        env = "SOVD_DATABASE_URL",
        default_value = "postgres://sovd:sovd@127.0.0.1:15432/sovd",
        hide_env_values = true,
        hide_default_value = true
    )]
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
    /// NATS server URL (credentials in it are never printed or logged).
    #[arg(long, env = "SOVD_NATS_URL", default_value = "nats://127.0.0.1:14222", hide_env_values = true)]
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
    /// PostgreSQL URL of the read-model database (its password is never printed or logged).
    #[arg(
        long,
        env = "SOVD_DATABASE_URL",
        default_value = "postgres://sovd:sovd@127.0.0.1:15432/sovd",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address the HTTP server listens on.
    #[arg(long, env = "SOVD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// HMAC key for access and refresh tokens (32+ bytes). Required, except for `sovd dev` on a
    /// loopback address, which makes a random one for its own lifetime.
    #[arg(long, env = "SOVD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Failed sign-ins in a row from one client address that lock a name for that address.
    #[arg(long, env = "SOVD_LOCKOUT_THRESHOLD", default_value_t = 5)]
    pub lockout_threshold: u32,
    /// Failed sign-ins from all addresses within one lock window that lock a name for every
    /// address (bounds guessing from many addresses).
    #[arg(long, env = "SOVD_LOCKOUT_NAME_THRESHOLD", default_value_t = 50)]
    pub lockout_name_threshold: u32,
    /// Minutes a lock holds (and the length of the name-wide window).
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
    /// Proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the
    /// client; every other peer's header is ignored. None by default.
    #[arg(long, env = "SOVD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::gateway::client::Network>,
    /// Password hashes and checks run at once (each holds about 19 MiB); 0 = one per core.
    #[arg(long, env = "SOVD_PASSWORD_CHECKS", default_value_t = 0)]
    pub password_checks: usize,
    /// Open WebSockets per user on this replica.
    #[arg(long, env = "SOVD_WS_PER_USER", default_value_t = 20)]
    pub ws_per_user: usize,
    #[command(flatten)]
    pub http: HttpLimits,
    /// Browser origins allowed to call the API from other sites (comma-separated; none by default).
    #[arg(long, env = "SOVD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

/// What a slow or hostile client may hold of the HTTP server.
#[derive(Debug, Clone, Args)]
pub struct HttpLimits {
    /// Seconds a client has to send a request's headers (also the idle time allowed before the
    /// next request on a kept-alive connection).
    #[arg(long = "http-header-timeout-secs", env = "SOVD_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long = "http-body-timeout-secs", env = "SOVD_HTTP_BODY_TIMEOUT_SECS", default_value_t = 15)]
    pub body_timeout_secs: u64,
    /// Seconds a request may take in all, WebSockets and streamed answers excepted.
    #[arg(long = "http-request-timeout-secs", env = "SOVD_HTTP_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    pub request_timeout_secs: u64,
    /// Open connections at most; more wait in the kernel's backlog until one closes.
    #[arg(long = "http-max-connections", env = "SOVD_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { header_timeout_secs: 10, body_timeout_secs: 15, request_timeout_secs: 60, max_connections: 4096 }
    }
}

/// `url` (or a comma-separated list of them) with user and password (or token) replaced by
/// `***`, for logs and messages.
pub fn redact_url(urls: &str) -> String {
    urls.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
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
    /// Set a new password (from SOVD_NEW_PASSWORD or stdin); lifts any sign-in lock.
    ResetPassword { username: String },
    /// Lift every sign-in lock on a user (recorded in the audit trail).
    Unlock { username: String },
    /// Let a user do something beyond their role (vehicle-changes: run operations that change
    /// a vehicle).
    Grant {
        username: String,
        #[arg(value_parser = ["vehicle-changes"])]
        permission: String,
    },
    /// Take a granted permission back.
    Revoke {
        username: String,
        #[arg(value_parser = ["vehicle-changes"])]
        permission: String,
    },
    /// List users.
    List,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_and_keep_the_rest() {
        assert_eq!(redact_url("postgres://sovd:s3cret@db:5432/sovd"), "postgres://***@db:5432/sovd");
        assert_eq!(redact_url("nats://token@nats-1:4222"), "nats://***@nats-1:4222");
        assert_eq!(redact_url("nats://127.0.0.1:14222"), "nats://127.0.0.1:14222");
        assert_eq!(redact_url("nats://a:b@h1:4222,nats://c:d@h2"), "nats://***@h1:4222,nats://***@h2");
        assert_eq!(redact_url("http://host/path@x"), "http://host/path@x", "an @ after the host is not a credential");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
