//! A real S3-protocol server for tests: `s3s-fs` (installed by deploy/local/test) on a free
//! port, with credentials required, serving one bucket from a temporary directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
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

impl S3Server {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("sovd-s3-test-{}", uuid::Uuid::new_v4()));
        let bucket = "sovd-backup".to_owned();
        std::fs::create_dir_all(dir.join(&bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let (access_key, secret_key) = ("sovd-test-access".to_owned(), "sovd-test-secret-key-0123456789".to_owned());
        let bin = binary();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); run ./deploy/local/test, which installs it", bin.display())
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "s3s-fs on port {port} did not come up within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, dir, port, bucket, access_key, secret_key }
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
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
