//! Finding 11: `sovd gateway --help` printed the database and NATS passwords from the
//! environment, and the NATS URL was logged with its credentials.

use std::process::Stdio;

use super::*;

const MARK: &str = "Pa55w0rdMarker";

#[tokio::test]
async fn no_help_page_shows_a_secret_from_the_environment() {
    let subcommands: &[&[&str]] = &[
        &["dev"],
        &["gateway"],
        &["connector"],
        &["projector"],
        &["simulator"],
        &["bench"],
        &["watch"],
        &["user", "list"],
        &["audit", "verify"],
        &["projections", "status"],
        &["replay"],
        &["backup"],
        &["archive"],
        &["restore"],
    ];
    for args in subcommands {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sovd"));
        command.args(*args).arg("--help");
        for var in [
            "SOVD_DATABASE_URL",
            "SOVD_NATS_URL",
            "SOVD_JWT_SECRET",
            "SOVD_BACKUP_KEY",
            "SOVD_BACKUP_KEY_PREVIOUS",
            "SOVD_S3_SECRET_ACCESS_KEY",
            "SOVD_BENCH_PASSWORD",
            "SOVD_TOKEN",
        ] {
            command.env(var, format!("x://user:{MARK}{MARK}{MARK}@host/db"));
        }
        let help = command.output().await.unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{args:?}");
        assert!(!text.contains(MARK), "sovd {args:?} --help shows a secret:\n{text}");
    }
}

#[tokio::test]
async fn the_nats_url_is_logged_without_its_credentials() {
    let stack = Stack::start().await;
    let url = stack.nats.url().replacen("nats://", &format!("nats://sovd:{MARK}@"), 1);
    let mut projector = stack.cli(&["projector"]);
    projector.env("SOVD_NATS_URL", &url).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = projector.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let mut log = String::new();
    let connected = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push_str(&line);
            log.push('\n');
            if line.contains("connected to NATS") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(connected, Ok(true), "{log}");
    child.start_kill().unwrap();
    assert!(!log.contains(MARK), "{log}");
    assert!(log.contains("***@"), "the URL is there, redacted: {log}");
}
