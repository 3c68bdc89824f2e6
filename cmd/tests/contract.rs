//! The old system's contract (SEED_CONTRACT.md), row by row, and who may call what.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

fn has_fields(value: &Value, fields: &[&str]) {
    for field in fields {
        assert!(value.get(field).is_some(), "missing {field:?} in {value}");
    }
}

const VEHICLE: &[&str] =
    &["vehicle_id", "vin", "make", "model", "year", "connection_status", "last_seen_at", "metadata"];
const COMMAND: &[&str] = &[
    "command_id",
    "user_id",
    "vehicle_id",
    "command_name",
    "command_params",
    "status",
    "error_message",
    "submitted_at",
    "completed_at",
];
const RESPONSE: &[&str] =
    &["response_id", "command_id", "response_payload", "sequence_number", "is_final", "received_at"];

#[tokio::test]
async fn every_row_of_the_old_contract_answers_with_its_status_and_field_names() {
    let stack = Stack::start().await;

    // POST /auth/login
    let login: Value = stack.login_as("engineer", "engineer123").await.json().await.unwrap();
    has_fields(&login, &["access_token", "refresh_token", "token_type", "expires_in"]);
    assert_eq!((login["token_type"].as_str(), login["expires_in"].as_i64()), (Some("bearer"), Some(900)));
    let token = login["access_token"].as_str().unwrap().to_owned();

    // POST /auth/refresh
    let refreshed = stack
        .http
        .post(stack.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    has_fields(&refreshed.json().await.unwrap(), &["access_token", "token_type", "expires_in"]);

    // GET /auth/me
    let me: Value = stack.get(&token, "/api/v1/auth/me").await.json().await.unwrap();
    has_fields(&me, &["user_id", "username", "role", "email"]);

    // GET /vehicles, /vehicles/{id}, /vehicles/{id}/status
    let vehicles = stack.get(&token, "/api/v1/vehicles?status=connected&search=1HGB&limit=10&offset=0").await;
    assert_eq!(vehicles.status(), 200);
    let vehicles: Vec<Value> = vehicles.json().await.unwrap();
    has_fields(&vehicles[0], VEHICLE);
    let id = vehicles[0]["vehicle_id"].as_str().unwrap();
    has_fields(&stack.get(&token, &format!("/api/v1/vehicles/{id}")).await.json().await.unwrap(), VEHICLE);
    let status: Value = stack.get(&token, &format!("/api/v1/vehicles/{id}/status")).await.json().await.unwrap();
    has_fields(&status, &["connection_status", "last_seen_at", "health"]);
    let missing = stack.get(&token, "/api/v1/vehicles/00000000-0000-4000-8000-000000000000").await;
    assert_envelope(missing, 404, "VEH_301", "not found").await;

    // POST /commands: 202 (not the old 201) with stream_url; by vehicle UUID as the contract says
    let body = json!({"command_name": "ReadDTC", "vehicle_id": id, "command_params": {"ecuAddress": "0x10"}});
    let submitted = stack.submit(&token, body).await;
    assert_eq!(submitted.status(), 202);
    let command: Value = submitted.json().await.unwrap();
    has_fields(&command, COMMAND);
    has_fields(&command, &["stream_url"]);
    let command_id = command["command_id"].as_str().unwrap().to_owned();

    // WS: response events, then the status event, then close
    let url = stack.ws_url(&format!("/ws/responses/{command_id}?token={token}"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut events = Vec::new();
    while let Some(Ok(message)) = socket.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            events.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    has_fields(&events[0], &["event", "command_id", "response_id", "response", "sequence_number", "is_final"]);
    has_fields(events.last().unwrap(), &["event", "command_id", "status", "completed_at"]);

    // GET /commands/{id}, /commands/{id}/responses, /commands
    let fetched: Value = stack.get(&token, &format!("/api/v1/commands/{command_id}")).await.json().await.unwrap();
    has_fields(&fetched, COMMAND);
    let responses: Vec<Value> = stack
        .wait_for(|| async {
            let r: Vec<Value> =
                stack.get(&token, &format!("/api/v1/commands/{command_id}/responses")).await.json().await.ok()?;
            (r.len() == 3).then_some(r)
        })
        .await;
    has_fields(&responses[0], RESPONSE);
    stack.wait_completed(&token, &command_id).await;
    let listed: Value = stack
        .get(&token, &format!("/api/v1/commands?vehicle_id={id}&status=completed&start_date=2020-01-01&end_date=2100-01-01T00:00:00Z&limit=5&offset=0"))
        .await
        .json()
        .await
        .unwrap();
    has_fields(&listed, &["commands", "limit", "offset"]);
    has_fields(&listed["commands"][0], COMMAND);
    let unknown = stack.get(&token, "/api/v1/commands/00000000-0000-4000-8000-000000000000").await;
    assert_envelope(unknown, 404, "VEH_302", "not found").await;

    // POST /auth/logout
    let out = stack.http.post(stack.url("/api/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(out.status(), 200);
    has_fields(&out.json().await.unwrap(), &["message"]);

    // Health and metrics
    assert_eq!(
        stack.http.get(stack.url("/health/live")).send().await.unwrap().json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let ready: Value = stack.http.get(stack.url("/health/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    has_fields(&ready["checks"], &["nats", "postgres"]);
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "commands_executed_total",
        "command_execution_duration_seconds",
        "websocket_connections_active",
        "vehicle_connections_active",
    ] {
        assert!(metrics.contains(name), "metric {name} missing");
    }
    assert!(metrics.contains("vehicle_connections_active 3"), "three seed vehicles are connected");
}

struct Fixture {
    viewer_id: String,
    admins_command: String,
    vehicle: String,
}

async fn status_of(stack: &Stack, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> u16 {
    let mut request = stack.http.request(method.parse().unwrap(), stack.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn ws_close(stack: &Stack, token: Option<&str>, command: &str) -> u16 {
    let url = stack.ws_url(&format!("/ws/responses/{command}?token={}", token.unwrap_or("")));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    while let Some(Ok(message)) = socket.next().await {
        if let tokio_tungstenite::tungstenite::Message::Close(frame) = message {
            return frame.map_or(0, |f| u16::from(f.code));
        }
    }
    0
}

#[tokio::test]
async fn every_role_against_every_endpoint() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let engineer = stack.login(ENGINEER).await;
    let created: Value = stack
        .http
        .post(stack.url("/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "val", "password": "val-pass-123", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer = stack.login(("val", "val-pass-123")).await;
    let vehicles: Vec<Value> = stack.get(&admin, "/api/v1/vehicles").await.json().await.unwrap();
    let submit = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    let command: Value = stack.submit(&admin, submit.clone()).await.json().await.unwrap();
    let f = Fixture {
        viewer_id: created["user_id"].as_str().unwrap().to_owned(),
        admins_command: command["command_id"].as_str().unwrap().to_owned(),
        vehicle: vehicles[0]["vehicle_id"].as_str().unwrap().to_owned(),
    };
    let admin_id = stack.get(&admin, "/api/v1/auth/me").await.json::<Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.wait_completed(&admin, &f.admins_command).await;
    let own: Value = stack.submit(&engineer, submit.clone()).await.json().await.unwrap();
    let own = own["command_id"].as_str().unwrap().to_owned();
    stack.wait_completed(&engineer, &own).await;
    // An operation that changes the vehicle (docs/adr/010-roles-and-vehicle-changes.md).
    let reset = json!({"command_name": "ECUReset", "vehicle_id": VIN,
        "command_params": {"ecuAddress": "0x10", "resetType": "soft"}});
    let mut confirmed_reset = reset.clone();
    confirmed_reset["confirm"] = json!(true);

    // (method, path, body, [anonymous, viewer, engineer, admin]); docs/adr/010 is the prose.
    let cmd = &f.admins_command;
    let matrix: Vec<(&str, String, Option<Value>, [u16; 4])> = vec![
        ("GET", "/api/v1/auth/me".into(), None, [401, 200, 200, 200]),
        ("GET", "/api/v1/operations".into(), None, [401, 200, 200, 200]),
        ("GET", "/api/v1/stats".into(), None, [401, 200, 200, 200]),
        ("GET", "/api/v1/vehicles".into(), None, [401, 200, 200, 200]),
        ("GET", format!("/api/v1/vehicles/{}", f.vehicle), None, [401, 200, 200, 200]),
        ("GET", format!("/api/v1/vehicles/{}/status", f.vehicle), None, [401, 200, 200, 200]),
        ("POST", "/api/v1/commands".into(), Some(submit.clone()), [401, 403, 202, 202]),
        ("POST", "/api/v1/commands".into(), Some(reset), [401, 403, 403, 422]),
        ("POST", "/api/v1/commands".into(), Some(confirmed_reset), [401, 403, 403, 202]),
        ("GET", "/api/v1/commands".into(), None, [401, 200, 200, 200]),
        ("GET", format!("/api/v1/commands?user_id={admin_id}"), None, [401, 200, 403, 200]),
        ("GET", format!("/api/v1/commands/{cmd}"), None, [401, 200, 404, 200]),
        ("GET", format!("/api/v1/commands/{cmd}/responses"), None, [401, 200, 404, 200]),
        ("POST", format!("/api/v1/commands/{cmd}/cancel"), None, [401, 403, 404, 409]),
        ("GET", format!("/api/v1/commands/{own}"), None, [401, 200, 200, 200]),
        ("GET", format!("/api/v1/commands/{own}/responses"), None, [401, 200, 200, 200]),
        ("POST", format!("/api/v1/commands/{own}/cancel"), None, [401, 403, 409, 409]),
        ("GET", "/api/v1/events?from=1m".into(), None, [401, 403, 403, 200]),
        ("GET", "/api/v1/audit".into(), None, [401, 403, 403, 200]),
        ("GET", "/api/v1/users".into(), None, [401, 403, 403, 200]),
        (
            "POST",
            "/api/v1/users".into(),
            Some(json!({"username": "No Good", "password": "x", "role": "viewer"})),
            [401, 403, 403, 422],
        ),
        ("PATCH", format!("/api/v1/users/{}", f.viewer_id), Some(json!({})), [401, 403, 403, 422]),
        (
            "POST",
            format!("/api/v1/users/{}/reset-password", f.viewer_id),
            Some(json!({"password": "short"})),
            [401, 403, 403, 422],
        ),
        ("POST", format!("/api/v1/users/{}/unlock", f.viewer_id), None, [401, 403, 403, 200]),
        ("GET", "/health/live".into(), None, [200, 200, 200, 200]),
        ("GET", "/health/ready".into(), None, [200, 200, 200, 200]),
        ("GET", "/metrics".into(), None, [200, 200, 200, 200]),
        ("GET", "/openapi.json".into(), None, [200, 200, 200, 200]),
    ];
    let callers = [None, Some(viewer.as_str()), Some(engineer.as_str()), Some(admin.as_str())];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &matrix {
        for (caller, want) in callers.iter().zip(expected) {
            let got = status_of(&stack, *caller, method, path, body.clone()).await;
            if got != *want {
                let who =
                    ["anonymous", "viewer", "engineer", "admin"][callers.iter().position(|c| c == caller).unwrap()];
                wrong.push(format!("{method} {path} as {who}: expected {want}, got {got}"));
            }
        }
    }
    // The live stream: normal close after the end for those who may read it, 1008 otherwise.
    let ws = [
        ws_close(&stack, None, cmd).await,
        ws_close(&stack, Some(&viewer), cmd).await,
        ws_close(&stack, Some(&engineer), cmd).await,
        ws_close(&stack, Some(&admin), cmd).await,
    ];
    if ws != [1008, 1000, 1008, 1000] {
        wrong.push(format!("WS /ws/responses: expected [1008, 1000, 1008, 1000], got {ws:?}"));
    }
    let ws_own = [
        ws_close(&stack, None, &own).await,
        ws_close(&stack, Some(&viewer), &own).await,
        ws_close(&stack, Some(&engineer), &own).await,
        ws_close(&stack, Some(&admin), &own).await,
    ];
    if ws_own != [1008, 1000, 1000, 1000] {
        wrong.push(format!("WS /ws/responses (engineer's own): expected [1008, 1000, 1000, 1000], got {ws_own:?}"));
    }
    assert!(wrong.is_empty(), "authorization matrix:\n{}", wrong.join("\n"));
}
