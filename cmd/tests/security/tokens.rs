//! Finding 1: anyone could mint admin tokens for a `sovd dev` install (a constant key, a fixed
//! seed admin id, and a token's user never checked).

use std::process::Stdio;
use std::time::Duration;

use sovd_domain::users::UserIntent;

use super::*;

#[tokio::test]
async fn a_token_for_a_user_that_does_not_exist_is_refused_even_when_well_signed() {
    let stack = Stack::start().await;
    let token = forged(&stack.settings.jwt, uuid::Uuid::now_v7(), "admin", now(), now() + 600);
    assert_envelope(stack.get(&token, "/api/v1/users").await, 401, "AUTH_003", "no such user").await;
    // The same forgery for a real user works: the refusal above is about the user.
    let real = forged(&stack.settings.jwt, admin_id().as_uuid(), "admin", now(), now() + 600);
    assert_eq!(stack.get(&real, "/api/v1/users").await.status(), 200);
}

#[tokio::test]
async fn a_token_of_a_deactivated_user_is_refused_even_if_no_revocation_reached_the_gateway() {
    let stack = Stack::start().await;
    // Deactivated straight in the log: no revocation entry is written, only the event.
    in_the_log(&stack, engineer_id(), |by, at| UserIntent::Deactivate { by, at }).await;
    let token = forged(&stack.settings.jwt, engineer_id().as_uuid(), "engineer", now(), now() + 600);
    stack.wait_until(|| async { stack.get(&token, "/api/v1/auth/me").await.status() == 401 }).await;
    assert_envelope(stack.get(&token, "/api/v1/auth/me").await, 401, "AUTH_006", "deactivated").await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let stack = Stack::start().await;
    let token = forged(&stack.settings.jwt, admin_id().as_uuid(), "admin", now() + 3600, now() + 7200);
    assert_envelope(stack.get(&token, "/api/v1/auth/me").await, 401, "AUTH_003", "future").await;
}

/// `sovd dev` pointed at this stack's NATS and Postgres, on `addr`, with no signing secret.
fn dev_without_secret(stack: &Stack, addr: &str) -> tokio::process::Command {
    let mut dev = stack.cli(&["dev", "--no-archive", "--http-addr", addr]);
    dev.env_remove("SOVD_JWT_SECRET").env("SOVD_SIM_CHUNK_DELAY_MS", "1").kill_on_drop(true);
    dev
}

#[tokio::test]
async fn sovd_dev_without_a_secret_signs_with_a_random_key_that_no_outsider_knows() {
    let stack = Stack::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut dev = dev_without_secret(&stack, &format!("127.0.0.1:{port}"));
    let mut child = dev.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    stack
        .wait_until(|| async {
            let r = stack.http.get(format!("{base}/health/ready")).send().await;
            r.is_ok_and(|r| r.status() == 200)
        })
        .await;
    // The key that used to be in the source, and the seed admin's fixed id.
    let old_key = sovd::gateway::jwt::JwtKey::new(b"sovd-development-key-not-for-production");
    let token = forged(&old_key, admin_id().as_uuid(), "admin", now(), now() + 600);
    let listed = stack.http.get(format!("{base}/api/v1/users")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(listed.status(), 401, "a token signed with the old constant key lists nothing");
    // Its own sign-ins work.
    let login = stack
        .http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "admin123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("random key made for this process"), "it says so: {log}");
}

#[tokio::test]
async fn nothing_listens_beyond_loopback_without_an_explicit_secret_of_32_bytes() {
    let stack = Stack::start().await;
    let mut dev = dev_without_secret(&stack, "0.0.0.0:0");
    let out = tokio::time::timeout(Duration::from_secs(30), dev.output()).await.unwrap().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SOVD_JWT_SECRET must be set") && err.contains("not a loopback"), "{err}");

    let short = stack.cli(&["gateway", "--jwt-secret", "only-twenty-bytes-xx"]).output().await.unwrap();
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 32 bytes"));
}
