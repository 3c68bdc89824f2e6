//! Finding 7: a WebSocket was authorised once and never again (it outlived logout,
//! deactivation and its token), and one user could open any number.

use std::time::Duration;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use sovd_domain::users::UserIntent;

use super::*;

/// A command that stays open: the vehicle will not answer for a while.
async fn running_command(stack: &Stack, token: &str) -> String {
    let vin = sovd_domain::Vin::parse(VIN).unwrap();
    stack.fleet().inject(&vin, &[sovd_connector::sim::Fault::Timeout; 3]);
    let body = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    let command: Value = stack.submit(token, body).await.json().await.unwrap();
    command["command_id"].as_str().unwrap().to_owned()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(stack: &Stack, command_id: &str, token: &str) -> Socket {
    let url = stack.ws_url(&format!("/ws/responses/{command_id}?token={token}"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The close code and reason the server ends the socket with (within 10 s: well inside the
/// 20 s keepalive re-check, so each test proves its own path).
async fn closed(socket: &mut Socket) -> (u16, String) {
    closed_within(socket, Duration::from_secs(10)).await
}

async fn closed_within(socket: &mut Socket, within: Duration) -> (u16, String) {
    let wait = async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(Some(frame))) = message {
                return (u16::from(frame.code), frame.reason.to_string());
            }
        }
        (0, "ended without a close frame".to_owned())
    };
    tokio::time::timeout(within, wait).await.expect("the server closed the socket")
}

#[tokio::test]
async fn a_socket_closes_when_its_sign_in_is_logged_out() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let id = running_command(&stack, &token).await;
    let mut socket = open(&stack, &id, &token).await;
    let out = stack.http.post(stack.url("/api/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(out.status(), 200);
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("revoked"), "{reason}");
}

#[tokio::test]
async fn a_socket_closes_when_its_user_is_deactivated() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let id = running_command(&stack, &token).await;
    let mut socket = open(&stack, &id, &token).await;
    let admin = stack.login(ADMIN).await;
    let path = format!("/api/v1/users/{}", engineer_id());
    assert_eq!(stack.send(reqwest::Method::PATCH, &admin, &path, json!({"active": false})).await.status(), 200);
    assert_eq!(closed(&mut socket).await.0, 1008);
}

#[tokio::test]
async fn a_socket_closes_when_its_user_is_deactivated_even_if_no_revocation_is_written() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let id = running_command(&stack, &token).await;
    let mut socket = open(&stack, &id, &token).await;
    // Straight in the log: only the account feed tells the gateway.
    in_the_log(&stack, engineer_id(), |by, at| UserIntent::Deactivate { by, at }).await;
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(30)).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("deactivated"), "{reason}");
}

#[tokio::test]
async fn a_socket_closes_when_its_token_expires() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let id = running_command(&stack, &token).await;
    let short_lived = forged(&stack.settings.jwt, engineer_id().as_uuid(), "engineer", now(), now() + 2);
    let mut socket = open(&stack, &id, &short_lived).await;
    assert_eq!(closed(&mut socket).await, (1008, "token expired".to_owned()));
}

#[tokio::test]
async fn a_user_may_hold_only_so_many_sockets() {
    let mut settings = test_settings();
    settings.ws_per_user = 2;
    let stack = Stack::start_with(settings).await;
    let token = stack.login(ENGINEER).await;
    let id = running_command(&stack, &token).await;
    let _first = open(&stack, &id, &token).await;
    let mut second = open(&stack, &id, &token).await;
    let mut third = open(&stack, &id, &token).await;
    let (code, reason) = closed(&mut third).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("too many open WebSockets"), "{reason}");
    // Closing one frees its place.
    second.close(None).await.unwrap();
    let _ = closed(&mut second).await;
    stack
        .wait_until(|| async {
            let mut retry = open(&stack, &id, &token).await;
            // Still open after a moment: it was let in.
            tokio::time::timeout(Duration::from_millis(300), retry.next()).await.is_err()
        })
        .await;
}
