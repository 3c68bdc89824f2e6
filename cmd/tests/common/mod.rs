//! The whole stack for API tests: a real nats-server, a fresh Postgres database, projector,
//! connector (simulated fleet) and gateway on a free port.

// Each test binary uses a different part of the harness.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod browser;
pub mod proxy;
pub mod s3;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sovd::config::{CommonArgs, ConnectorOptions, FleetOptions, NatsArgs, Transport};
use sovd::gateway::jwt::JwtKey;
use sovd::metrics::Metrics;
use sovd::{run, seed};
use sovd_nats::testing::NatsServer;
use tokio::sync::watch;

pub struct Stack {
    pub nats: NatsServer,
    /// Every database connection goes through it: `postgres.set_down(true)` cuts Postgres off.
    pub postgres: proxy::TcpProxy,
    pub base: String,
    pub http: reqwest::Client,
    pub deps: run::Deps,
    /// The in-process simulated vehicles, for injecting faults (none when connectors run as
    /// their own processes).
    fleet: Option<std::sync::Arc<sovd_connector::SimulatedFleet>>,
    pub settings: run::GatewaySettings,
    /// Through the proxy, as the gateway sees it.
    pub database_url: String,
    shutdown: watch::Receiver<bool>,
    _stop: watch::Sender<bool>,
}

fn clone_deps(deps: &run::Deps) -> run::Deps {
    run::Deps {
        nats: deps.nats.clone(),
        store: deps.store.clone(),
        pool: deps.pool.clone(),
        buckets: deps.buckets.clone(),
    }
}

/// A gateway on a free port; returns its base URL.
async fn spawn_gateway(
    deps: &run::Deps,
    settings: run::GatewaySettings,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let deps = clone_deps(deps);
    tokio::spawn(async move {
        run::serve_gateway(&deps, listener, settings, metrics, shutdown).await.unwrap();
    });
    base
}

pub const ENGINEER: (&str, &str) = ("engineer", "engineer123");
pub const ADMIN: (&str, &str) = ("admin", "admin123");
pub const VIN: &str = "1HGBH41JXMN109186";
pub const OFFLINE_VIN: &str = "WBADT43452G123456";

/// Test defaults: the contract's lockout, generous rate limits (tests sign in often).
pub fn test_settings() -> run::GatewaySettings {
    run::GatewaySettings {
        jwt: JwtKey::new(b"test-key-test-key-test-key-test-key"),
        lockout: sovd::lockouts::LockoutPolicy::default(),
        limits: sovd::gateway::ratelimit::RateLimits { login: 1000, submit: 1000, vehicles: 1000 },
        cors_origins: vec!["https://tools.example.com".into()],
        trusted_proxies: Default::default(),
        passwords: sovd::passwords::Passwords::new(4, Duration::from_secs(10)).unwrap(),
        ws_per_user: 20,
        http: Default::default(),
    }
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(test_settings()).await
    }

    pub async fn start_with(settings: run::GatewaySettings) -> Self {
        Self::start_inner(settings, true).await
    }

    /// Gateway and projector only: connectors and vehicles run as separate processes.
    pub async fn start_without_connector() -> Self {
        Self::start_inner(test_settings(), false).await
    }

    async fn start_inner(settings: run::GatewaySettings, connector: bool) -> Self {
        let nats = NatsServer::start().await;
        let (_, direct_url) = sovd_projections::testing::fresh_database().await;
        let url = url_parts(&direct_url);
        let postgres = proxy::TcpProxy::start(url.1.parse().unwrap()).await;
        let database_url = format!("{}{}{}", url.0, postgres.addr, url.2);
        let common = CommonArgs {
            nats: NatsArgs { nats_url: nats.url(), stream_replicas: 1 },
            database_url: database_url.clone(),
        };
        let (stop, shutdown) = watch::channel(false);
        let deps = run::connect(&common, "sovd-test", &shutdown).await.unwrap().unwrap();
        seed::seed_users(&deps.store, &deps.buckets).await.unwrap();
        let metrics = Metrics::new().unwrap();
        run::spawn_projector(&deps, &shutdown);
        let options = ConnectorOptions {
            connector_name: Some("test-connector".into()),
            transport: Transport::Embedded,
            fleet: FleetOptions { fleet_file: None, sim_vehicles: None, sim_chunk_delay_ms: Some(5), sim_seed: None },
            takeover_after_secs: 30,
            command_timeout_secs: 30,
            connector_concurrency: 64,
            queue_ttl_secs: 1,
            max_attempts: 3,
            breaker_threshold: 5,
            breaker_cooldown_secs: 30,
        };
        let fleet = match connector {
            true => run::spawn_connector(&deps.store, &options, &metrics, &shutdown).await.unwrap().1,
            false => None,
        };
        let base = spawn_gateway(&deps, settings.clone(), metrics, shutdown.clone()).await;
        let stack = Self {
            nats,
            postgres,
            base,
            http: reqwest::Client::new(),
            deps,
            fleet,
            settings,
            database_url,
            shutdown,
            _stop: stop,
        };
        let vehicles = if connector { 4 } else { 0 };
        stack
            .wait_until(|| async { stack.count("vehicles").await == vehicles && stack.count("users").await == 2 })
            .await;
        stack
    }

    /// `sovd <args>` from the test build, pointed at this stack's NATS and Postgres.
    pub fn cli(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sovd"));
        command.args(args).env("SOVD_NATS_URL", self.nats.url()).env("SOVD_DATABASE_URL", &self.database_url);
        command
    }

    /// A receiver that sees this stack's shutdown, for parts a test adds.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Stops the gateway, projector and connector, closes the database pool (waiting for
    /// what is in flight) and drains the NATS connection: nothing of this stack writes again.
    pub async fn stop(&self) {
        let _ = self._stop.send(true);
        self.deps.pool.close().await;
        let _ = self.deps.nats.drain().await;
    }

    /// After [`Self::stop`]: a new gateway and projector (no connector) on the same NATS and
    /// database, with fresh connections; this stack's helpers talk to them from now on.
    pub async fn serve_again(&mut self) {
        let common = CommonArgs {
            nats: NatsArgs { nats_url: self.nats.url(), stream_replicas: 1 },
            database_url: self.database_url.clone(),
        };
        let (stop, shutdown) = watch::channel(false);
        let deps = run::connect(&common, "sovd-test-again", &shutdown).await.unwrap().unwrap();
        run::spawn_projector(&deps, &shutdown);
        self.base = spawn_gateway(&deps, self.settings.clone(), Metrics::new().unwrap(), shutdown.clone()).await;
        (self.deps, self._stop, self.shutdown) = (deps, stop, shutdown);
    }

    /// The in-process simulated fleet.
    pub fn fleet(&self) -> &sovd_connector::SimulatedFleet {
        self.fleet.as_ref().expect("this stack runs its connector in process")
    }

    /// Rows in a read model (straight from Postgres: no sign-in, no rate limit used).
    async fn count(&self, table: &'static str) -> i64 {
        sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.deps.pool)
            .await
            .map_or(0, |(n,)| n)
    }

    /// A second gateway replica on the same NATS and Postgres; returns its base URL.
    pub async fn second_gateway(&self) -> String {
        spawn_gateway(&self.deps, self.settings.clone(), Metrics::new().unwrap(), self.shutdown.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http", "ws", 1))
    }

    pub async fn try_login(&self, (username, password): (&str, &str)) -> Result<String, reqwest::StatusCode> {
        let r = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .map_err(|_| reqwest::StatusCode::SERVICE_UNAVAILABLE)?;
        if r.status() != 200 {
            return Err(r.status());
        }
        let body: Value = r.json().await.map_err(|_| reqwest::StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn login(&self, who: (&str, &str)) -> String {
        self.wait_for(|| async { self.try_login(who).await.ok() }).await
    }

    /// Polls `probe` until it yields a value; fails the test after 15 s.
    pub async fn wait_for<T, F, Fut>(&self, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(Instant::now() < deadline, "condition not met within 15 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls `condition` until it holds; fails the test after 15 s.
    pub async fn wait_until<F, Fut>(&self, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self.wait_for(|| {
            let check = condition();
            async move { check.await.then_some(()) }
        })
        .await;
    }

    /// Waits until `/health/ready` answers `status`; returns its body.
    pub async fn wait_for_readiness(&self, status: u16) -> Value {
        self.wait_for(|| async {
            let r = self.http.get(self.url("/health/ready")).send().await.unwrap();
            let answered = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (answered == status).then_some(body)
        })
        .await
    }

    /// Waits until the read model shows the command `completed`.
    pub async fn wait_completed(&self, token: &str, command_id: &str) {
        self.wait_until(|| async {
            let c: Value = self.get(token, &format!("/api/v1/commands/{command_id}")).await.json().await.unwrap();
            c["status"] == "completed"
        })
        .await;
    }

    /// A sign-in attempt, whatever its answer.
    pub async fn login_as(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn submit(&self, token: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url("/api/v1/commands")).bearer_auth(token).json(&body).send().await.unwrap()
    }

    /// A signed-in request with a JSON body.
    pub async fn send(&self, method: reqwest::Method, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.http.request(method, self.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// Stored messages in SOVD_COMMANDS: proof that refused requests wrote nothing.
    pub async fn commands_in_log(&self) -> u64 {
        let mut stream = self.deps.store.jetstream().get_stream("SOVD_COMMANDS").await.unwrap();
        stream.info().await.unwrap().state.messages
    }
}

/// Splits `postgres://user:pw@host:port/db` into (`postgres://user:pw@`, `host:port`, `/db`).
fn url_parts(url: &str) -> (String, String, String) {
    let at = url.find('@').unwrap() + 1;
    let slash = at + url[at..].find('/').unwrap();
    (url[..at].to_owned(), url[at..slash].to_owned(), url[slash..].to_owned())
}

/// Asserts the error envelope: status, code, and that the message mentions `needle`.
pub async fn assert_envelope(response: reqwest::Response, status: u16, code: &str, needle: &str) {
    assert_eq!(response.status().as_u16(), status, "status");
    let request_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(needle), "message {message:?} should mention {needle:?}");
    assert_eq!(error["correlation_id"].as_str(), request_id.as_deref(), "correlation id is echoed");
    assert!(error["timestamp"].is_string() && error["path"].is_string(), "{body}");
}
