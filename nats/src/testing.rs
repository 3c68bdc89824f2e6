//! Test harness: a real nats-server with JetStream, started per test on a free port with its
//! own store directory, stopped and removed on drop.
//!
//! The binary comes from `SOVD_NATS_SERVER_BIN` (set by `deploy/local/test`), else
//! `.data/bin/nats-server` in the workspace, else `nats-server` on the PATH.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
    pub port: u16,
}

fn server_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SOVD_NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.data/bin/nats-server");
    if local.exists() { local } else { PathBuf::from("nats-server") }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn spawn(config: &std::path::Path) -> Child {
    let bin = server_binary();
    Command::new(&bin).arg("-c").arg(config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
        panic!("cannot start {} ({e}); run ./deploy/local/test, which installs nats-server", bin.display())
    })
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// When the binary is missing or the server does not come up within 10 s: the test
    /// cannot run, and says how to fix it.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("sovd-nats-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let port = free_port();
        let config = dir.join("nats.conf");
        let conf = format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            dir.join("js").display()
        );
        std::fs::write(&config, conf).unwrap_or_else(|e| panic!("cannot write nats config: {e}"));
        let child = spawn(&config);
        let server = Self { child, dir, config, port };
        server.wait_until_up().await;
        server
    }

    async fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while async_nats::connect(self.url()).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server on port {} did not come up within 10 s", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again after [`Self::kill`], same port and same data.
    pub async fn restart(&mut self) {
        self.child = spawn(&self.config);
        self.wait_until_up().await;
    }

    /// Loses everything: SIGKILL, the store directory deleted, then an empty server on the
    /// same port (a disaster drill).
    pub async fn lose_data(&mut self) {
        self.kill();
        let store = self.dir.join("js");
        std::fs::remove_dir_all(&store).unwrap_or_else(|e| panic!("cannot delete {}: {e}", store.display()));
        self.restart().await;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap_or_else(|e| panic!("connect to test nats-server: {e}"))
    }

    /// Stops the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Appends `count` ReadDTC requests for one vehicle, 50 in flight at a time, in order;
/// returns their command ids in stream order.
///
/// # Panics
/// When an append fails: the test cannot go on.
pub async fn append_requests(store: &crate::EventStore, count: usize) -> Vec<sovd_domain::CommandId> {
    use sovd_domain::events::CommandRequested;
    use sovd_domain::{CommandId, EcuAddress, Event, Operation, UserId, VehicleId, Vin};
    let vin = Vin::parse("1HGBH41JXMN109186").unwrap_or_else(|e| panic!("test VIN: {e}"));
    let mut ids = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(50) {
        let appends = batch.iter().map(|_| {
            let vin = vin.clone();
            async move {
                let id = CommandId::new();
                let event = Event::CommandRequested(CommandRequested {
                    command_id: id,
                    vehicle_id: VehicleId::from_uuid(uuid::Uuid::nil()),
                    vin: vin.clone(),
                    user_id: UserId::from_uuid(uuid::Uuid::nil()),
                    operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
                    requested_at: time::OffsetDateTime::now_utc(),
                    timeout_ms: None,
                });
                let meta = crate::EventMeta::new(format!("corr-{id}"), "user:test");
                let subject = crate::Subject::command(&vin, id);
                store
                    .append(&subject, &event, &meta, crate::AppendOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("append a test request: {e}"));
                id
            }
        });
        ids.extend(futures::future::join_all(appends).await);
    }
    ids
}
