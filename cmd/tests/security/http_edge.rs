//! Findings 6, 13 and 14: slow clients held connections forever, the sign-in limit had no
//! trusted-proxy setting, and token answers could be cached.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

fn tight() -> sovd::run::GatewaySettings {
    let mut settings = test_settings();
    settings.http = sovd::config::HttpLimits {
        header_timeout_secs: 1,
        body_timeout_secs: 1,
        request_timeout_secs: 30,
        max_connections: 3,
    };
    settings
}

async fn connect(stack: &Stack) -> TcpStream {
    TcpStream::connect(stack.base.trim_start_matches("http://")).await.unwrap()
}

/// Reads until the server closes the connection; what it sent, and whether it closed within
/// `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    read.ok().map(|_| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    let stack = Stack::start_with(tight()).await;
    let mut slow = connect(&stack).await;
    let started = Instant::now();
    // One byte, then nothing: the headers never complete.
    slow.write_all(b"G").await.unwrap();
    let closed = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the server closes a connection whose headers do not arrive");
    assert!(started.elapsed() < Duration::from_secs(10));
    // An idle kept-alive connection goes the same way.
    let mut idle = connect(&stack).await;
    idle.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(10)).await.expect("closed after idling");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let stack = Stack::start_with(tight()).await;
    let mut slow = connect(&stack).await;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user";
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(10)).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("VAL_108"), "the envelope names it: {answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let stack = Stack::start_with(tight()).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(&stack).await;
        // A request in progress keeps its place (its headers are not complete yet).
        stream.write_all(b"GET /health/live HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    let url = stack.url("/health/live");
    assert!(client.get(&url).send().await.is_err(), "a fourth connection is not served while three are open");
    drop(held);
    stack.wait_until(|| async { client.get(&url).send().await.is_ok_and(|r| r.status() == 200) }).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_sign_in_limit() {
    let mut settings = test_settings();
    settings.limits = sovd::gateway::ratelimit::RateLimits { login: 2, submit: 100, vehicles: 100 };
    settings.trusted_proxies = sovd::gateway::client::TrustedProxies::new(vec!["127.0.0.1".parse().unwrap()]);
    let stack = Stack::start_with(settings).await;
    let login = |forwarded: &'static str| {
        stack
            .http
            .post(stack.url("/api/v1/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"username": "nobody", "password": "wrong-password"}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(login("198.51.100.1").await.unwrap().status(), 401);
    }
    assert_eq!(login("198.51.100.1").await.unwrap().status(), 429, "that client's limit is spent");
    assert_eq!(login("198.51.100.2").await.unwrap().status(), 401, "another client behind the proxy is not");

    // From a peer that is not a trusted proxy the header is ignored: one bucket for all.
    let direct = client_from("127.0.0.9");
    let send = |forwarded: &'static str| {
        direct
            .post(stack.url("/api/v1/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"username": "nobody", "password": "wrong-password"}))
            .send()
    };
    assert_eq!(send("203.0.113.1").await.unwrap().status(), 401);
    assert_eq!(send("203.0.113.2").await.unwrap().status(), 401);
    assert_eq!(send("203.0.113.3").await.unwrap().status(), 429);
}

#[tokio::test]
async fn token_answers_are_never_cached() {
    let stack = Stack::start().await;
    let login = stack.login_as("engineer", "engineer123").await;
    assert_eq!(login.headers()["cache-control"], "no-store");
    let body: Value = login.json().await.unwrap();
    let refreshed = stack
        .http
        .post(stack.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": body["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    assert_eq!(refreshed.headers()["cache-control"], "no-store");
}
