//! The security suite: one test (or more) per finding of the outside probe (issue 12), each
//! written to fail on the code before its fix, against the real stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod changes;
mod http_edge;
mod input;
mod lockout;
mod projections;
mod refresh;
mod secrets;
mod tokens;
mod websocket;

use std::net::IpAddr;

use serde_json::{Value, json};
use sovd::gateway::jwt::Claims;
use sovd_nats::{StreamName, Subject};

use common::*;

/// A client whose connections come from `ip` (any 127.x.y.z reaches the loopback listener).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

pub async fn login_from(stack: &Stack, client: &reqwest::Client, who: (&str, &str)) -> reqwest::Response {
    client
        .post(stack.url("/api/v1/auth/login"))
        .json(&json!({"username": who.0, "password": who.1}))
        .send()
        .await
        .unwrap()
}

/// Every event on a user's sessions subject (sign-ins, failures, locks, unlocks).
pub async fn session_events(stack: &Stack, user_id: sovd_domain::UserId) -> Vec<sovd_domain::Event> {
    let subject = Subject::user_sessions(user_id);
    let events = stack.deps.store.read_filtered(StreamName::Iam, subject.as_str()).await.unwrap();
    events.into_iter().map(|e| e.event).collect()
}

/// Passwords the gateway actually checked for a user: its wrong-password failures and its
/// successful sign-ins.
pub async fn passwords_checked(stack: &Stack, user_id: sovd_domain::UserId) -> usize {
    session_events(stack, user_id)
        .await
        .iter()
        .filter(|e| match e {
            sovd_domain::Event::LoginFailed(f) => f.reason == "wrong password",
            sovd_domain::Event::LoginSucceeded(_) => true,
            _ => false,
        })
        .count()
}

pub fn engineer_id() -> sovd_domain::UserId {
    sovd_domain::UserId::from_uuid(sovd::seed::USERS[1].0)
}

pub fn admin_id() -> sovd_domain::UserId {
    sovd_domain::UserId::from_uuid(sovd::seed::USERS[0].0)
}

/// An access token for `user_id` signed with `key`, as an attacker holding the key would make.
pub fn forged(key: &sovd::gateway::jwt::JwtKey, user_id: uuid::Uuid, role: &str, iat: i64, exp: i64) -> String {
    key.sign(&Claims {
        user_id: user_id.to_string(),
        username: "admin".into(),
        role: role.into(),
        exp,
        iat,
        token_type: "access".into(),
        jti: Some(uuid::Uuid::now_v7().to_string()),
        fam: None,
    })
}

/// An account change appended straight to the log, as the console or another replica would:
/// no revocation entry is written, only the event.
pub async fn in_the_log(
    stack: &Stack,
    user_id: sovd_domain::UserId,
    intent: impl FnOnce(sovd_domain::UserId, time::OffsetDateTime) -> sovd_domain::users::UserIntent,
) {
    sovd::accounts::change(&stack.deps.store, &sovd::accounts::Actor::system(), user_id, intent).await.unwrap();
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The error envelope's code of a response.
pub async fn code_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}
