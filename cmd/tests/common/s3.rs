//! A real S3-protocol server for tests: `s3s-fs` (installed by deploy/local/test) on a free
//! port, with credentials required, serving one bucket from a temporary directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    child: Child,
    command: Vec<String>,
    dir: PathBuf,
    pub port: u16,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// The backup key of what is stored here (random, per server).
    pub backup_key: String,
}

fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SOVD_S3S_FS_BIN") {
        return PathBuf::from(bin);
    }
    let cached = std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache/sovd/s3s-fs-0.14.1/bin/s3s-fs"));
    match cached {
        Ok(path) if path.exists() => path,
        _ => PathBuf::from("s3s-fs"),
    }
}

fn spawn(command: &[String]) -> Child {
    Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}); run ./deploy/local/test, which installs it", command[0]))
}

impl S3Server {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("sovd-s3-test-{}", uuid::Uuid::new_v4()));
        let bucket = "sovd-backup".to_owned();
        std::fs::create_dir_all(dir.join(&bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let (access_key, secret_key) = ("sovd-test-access".to_owned(), "sovd-test-secret-key-0123456789".to_owned());
        let command = vec![
            binary().display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--access-key".into(),
            access_key.clone(),
            "--secret-key".into(),
            secret_key.clone(),
            dir.display().to_string(),
        ];
        let child = spawn(&command);
        let server = Self { child, command, dir, port, bucket, access_key, secret_key, backup_key: random_key() };
        server.wait_until_up().await;
        server
    }

    async fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "s3s-fs on port {} did not come up within 10 s", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (SIGKILL); what it stored stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again after [`Self::kill`]: same port, same objects.
    pub async fn restart(&mut self) {
        self.child = spawn(&self.command);
        self.wait_until_up().await;
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points `sovd backup | archive | restore` at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SOVD_BACKUP_URL".into(), format!("s3://{}/drill", self.bucket)),
            ("SOVD_S3_ENDPOINT".into(), self.endpoint()),
            ("SOVD_S3_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("SOVD_S3_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("SOVD_BACKUP_KEY".into(), self.backup_key.clone()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Storage settings from an environment like [`S3Server::env`] (or a `file://` URL alone).
pub fn storage_args(env: &[(String, String)]) -> sovd::dr::storage::StorageArgs {
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    sovd::dr::storage::StorageArgs {
        backup_url: get("SOVD_BACKUP_URL").unwrap_or_default(),
        s3_endpoint: get("SOVD_S3_ENDPOINT"),
        s3_region: "us-east-1".into(),
        s3_access_key_id: get("SOVD_S3_ACCESS_KEY_ID"),
        s3_secret_access_key: get("SOVD_S3_SECRET_ACCESS_KEY").map(sovd::config::Redacted),
    }
}

/// The environment for a local directory as storage, with a new random backup key.
pub fn local_env(dir: &std::path::Path) -> Vec<(String, String)> {
    vec![("SOVD_BACKUP_URL".into(), format!("file://{}", dir.display())), ("SOVD_BACKUP_KEY".into(), random_key())]
}

/// A new backup key: 64 random hex digits.
pub fn random_key() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The keys of an environment like [`local_env`] (its SOVD_BACKUP_KEY).
pub fn keys(env: &[(String, String)]) -> sovd::dr::signing::Keys {
    let key = env.iter().find(|(k, _)| k == "SOVD_BACKUP_KEY").map(|(_, v)| v.as_str()).expect("no SOVD_BACKUP_KEY");
    sovd::dr::signing::Keys::new(sovd::dr::signing::BackupKey::parse(key).unwrap())
}

/// New random keys, for tests that use the library directly.
pub fn random_keys() -> sovd::dr::signing::Keys {
    sovd::dr::signing::Keys::new(sovd::dr::signing::BackupKey::parse(&random_key()).unwrap())
}
