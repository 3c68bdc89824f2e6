//! The API a user sees, end to end through real NATS and Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Reads a response WebSocket to its end: the JSON events and the close code.
async fn read_ws(url: &str) -> (Vec<Value>, Option<u16>) {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut events = Vec::new();
    while let Some(message) = socket.next().await {
        match message.unwrap() {
            Message::Text(text) => events.push(serde_json::from_str(&text).unwrap()),
            Message::Close(frame) => return (events, frame.map(|f| u16::from(f.code))),
            _ => {}
        }
    }
    (events, None)
}

fn read_dtc() -> Value {
    json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}})
}

#[tokio::test]
async fn an_engineer_submits_read_dtc_watches_three_chunks_and_finds_it_completed() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;

    let submitted = stack.submit(&token, read_dtc()).await;
    assert_eq!(submitted.status(), 202);
    let command: Value = submitted.json().await.unwrap();
    assert_eq!(command["status"], "pending");
    let id = command["command_id"].as_str().unwrap().to_owned();
    assert_eq!(command["stream_url"], format!("/ws/responses/{id}"));
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let (events, close) = read_ws(&stack.ws_url(&format!("/ws/responses/{id}?token={token}"))).await;
    let chunks: Vec<&Value> = events.iter().filter(|e| e["event"] == "response").collect();
    assert_eq!(chunks.len(), 3, "{events:?}");
    assert_eq!(chunks[0]["response"]["dtcCode"], "P0420");
    assert_eq!(chunks[0]["response_payload"], chunks[0]["response"], "old clients read response_payload");
    assert_eq!(chunks[2]["is_final"], true);
    assert_eq!(events.last().unwrap()["event"], "status");
    assert_eq!(events.last().unwrap()["status"], "completed");
    assert_eq!(close, Some(1000));

    let listed: Value = stack
        .wait_for(|| async {
            let listed: Value = stack.get(&token, "/api/v1/commands").await.json().await.unwrap();
            (listed["commands"][0]["status"] == "completed").then_some(listed)
        })
        .await;
    assert_eq!(listed["commands"][0]["command_id"], id.as_str());
    assert_eq!(listed["limit"], 50);
    let responses: Vec<Value> =
        stack.get(&token, &format!("/api/v1/commands/{id}/responses")).await.json().await.unwrap();
    assert_eq!(responses.iter().map(|r| r["sequence_number"].as_i64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[tokio::test]
async fn a_late_subscriber_gets_every_chunk_and_can_resume_from_a_sequence() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let command: Value = stack.submit(&token, read_dtc()).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap().to_owned();
    stack.wait_completed(&token, &id).await;

    let url = stack.ws_url(&format!("/ws/responses/{id}?token={token}"));
    let (events, _) = read_ws(&url).await;
    assert_eq!(events.iter().filter(|e| e["event"] == "response").count(), 3, "joined after the end, missed nothing");

    let after_first = events[0]["stream_sequence"].as_u64().unwrap();
    let (resumed, _) = read_ws(&format!("{url}&from_seq={after_first}")).await;
    assert_eq!(resumed.iter().filter(|e| e["event"] == "response").count(), 2);
    assert_eq!(resumed[0]["sequence_number"], 1);
}

#[tokio::test]
async fn a_command_for_a_disconnected_vehicle_fails_with_a_reason_on_the_websocket() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let body = json!({"command_name": "ReadDTC", "vehicle_id": OFFLINE_VIN, "command_params": {"ecuAddress": "0x10"}});
    let command: Value = stack.submit(&token, body).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap();
    let (events, _) = read_ws(&stack.ws_url(&format!("/ws/responses/{id}?token={token}"))).await;
    let last = events.last().unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["status"], "failed");
    assert!(last["error_message"].as_str().unwrap().contains("stayed offline"), "{last}");
}

#[tokio::test]
async fn bad_requests_get_the_envelope_and_append_nothing() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let before = stack.commands_in_log().await;
    let post = |body: &'static str, content_type: &'static str| {
        stack
            .http
            .post(stack.url("/api/v1/commands"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    assert_envelope(post("{not json", "application/json").await.unwrap(), 400, "VAL_101", "not valid JSON").await;
    assert_envelope(post("{}", "text/plain").await.unwrap(), 415, "VAL_102", "application/json").await;
    let unknown_vehicle = json!({"command_name": "ReadDTC", "vehicle_id": "00000000-0000-4000-8000-000000000000", "command_params": {"ecuAddress": "0x10"}});
    assert_envelope(stack.submit(&token, unknown_vehicle).await, 404, "VEH_301", "not found").await;
    let unknown_op = json!({"command_name": "FlashECU", "vehicle_id": VIN, "command_params": {}});
    assert_envelope(stack.submit(&token, unknown_op).await, 422, "VAL_105", "FlashECU").await;
    let bad_param = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "16"}});
    assert_envelope(stack.submit(&token, bad_param).await, 422, "VAL_106", "command_params.ecuAddress").await;
    let extra_param =
        json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10", "x": "1"}});
    assert_envelope(stack.submit(&token, extra_param).await, 422, "VAL_106", "command_params.x").await;
    let missing = json!({"command_name": "ReadDataByID", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    assert_envelope(stack.submit(&token, missing).await, 422, "VAL_106", "dataId").await;
    let wrong_type = json!({"command_name": 5, "vehicle_id": VIN});
    assert_envelope(stack.submit(&token, wrong_type).await, 422, "VAL_103", "command_name").await;
    let huge = format!(r#"{{"command_name":"ReadDTC","vehicle_id":"{VIN}","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let response = stack
        .http
        .post(stack.url("/api/v1/commands"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 413, "VAL_107", "64 KiB").await;

    assert_eq!(stack.commands_in_log().await, before, "refused requests appended nothing");
}

#[tokio::test]
async fn routing_and_auth_errors_use_the_envelope_and_echo_the_request_id() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    assert_envelope(stack.get(&token, "/api/v1/nope").await, 404, "SYS_504", "no such endpoint").await;
    let delete = stack.http.delete(stack.url("/api/v1/vehicles")).bearer_auth(&token).send().await.unwrap();
    assert_envelope(delete, 405, "SYS_503", "not allowed").await;
    let anonymous = stack.http.get(stack.url("/api/v1/vehicles")).send().await.unwrap();
    assert_envelope(anonymous, 401, "AUTH_002", "bearer").await;
    assert_envelope(stack.get("garbage", "/api/v1/vehicles").await, 401, "AUTH_003", "invalid token").await;
    let bad_login = stack
        .http
        .post(stack.url("/api/v1/auth/login"))
        .json(&json!({"username": "engineer", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_envelope(bad_login, 401, "AUTH_001", "invalid username or password").await;
    assert_envelope(stack.get(&token, "/api/v1/vehicles?limit=0").await, 400, "VAL_104", "limit").await;

    let traced = stack.http.get(stack.url("/health/live")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(traced.headers()["x-request-id"], "trace-42");
    assert_eq!(traced.headers()["x-content-type-options"], "nosniff");

    let (_, close) = read_ws(&stack.ws_url("/ws/responses/01a21512-bc4b-707c-b5d5-ef55ae923786?token=garbage")).await;
    assert_eq!(close, Some(1008), "a bad token closes the WebSocket with 1008");
}

#[tokio::test]
async fn an_engineer_cannot_read_another_users_command() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let engineer = stack.login(ENGINEER).await;
    let command: Value = stack.submit(&admin, read_dtc()).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap();

    assert_envelope(stack.get(&engineer, &format!("/api/v1/commands/{id}")).await, 404, "VEH_302", id).await;
    assert_envelope(stack.get(&engineer, &format!("/api/v1/commands/{id}/responses")).await, 404, "VEH_302", id).await;
    let (_, close) = read_ws(&stack.ws_url(&format!("/ws/responses/{id}?token={engineer}"))).await;
    assert_eq!(close, Some(1008));
    assert_eq!(stack.get(&admin, &format!("/api/v1/commands/{id}")).await.status(), 200);
}

#[tokio::test]
async fn vehicles_filter_by_status_and_vin_and_report_the_total() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let connected = stack.get(&token, "/api/v1/vehicles?status=connected").await;
    assert_eq!(connected.headers()["x-total-count"], "3");
    let vehicles: Vec<Value> = connected.json().await.unwrap();
    assert!(vehicles.iter().all(|v| v["connection_status"] == "connected"));
    let found: Vec<Value> = stack.get(&token, "/api/v1/vehicles?search=wbadt").await.json().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["make"], "BMW");
    let id = found[0]["vehicle_id"].as_str().unwrap();
    let status: Value = stack.get(&token, &format!("/api/v1/vehicles/{id}/status")).await.json().await.unwrap();
    assert_eq!(status["connection_status"], "disconnected");
    let me: Value = stack.get(&token, "/api/v1/auth/me").await.json().await.unwrap();
    assert_eq!(me["role"], "engineer");
}

#[tokio::test]
async fn when_nats_goes_away_the_api_says_so_and_recovers_by_itself() {
    let mut stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    stack.nats.kill();

    let ready = stack.wait_for_readiness(503).await;
    assert!(ready["checks"]["nats"].as_str().unwrap().starts_with("unavailable"), "{ready}");
    assert_eq!(ready["checks"]["postgres"], "ok");
    assert_envelope(stack.submit(&token, read_dtc()).await, 503, "SYS_502", "NATS").await;

    stack.nats.restart().await;
    stack.wait_for_readiness(200).await;
    let command: Value = stack.submit(&token, read_dtc()).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap();
    let (events, _) = read_ws(&stack.ws_url(&format!("/ws/responses/{id}?token={token}"))).await;
    assert_eq!(events.last().unwrap()["status"], "completed", "{events:?}");
}

#[tokio::test]
async fn when_postgres_goes_away_reads_say_so_and_recover_by_themselves() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    stack.postgres.set_down(true);

    let ready = stack.wait_for_readiness(503).await;
    assert!(ready["checks"]["postgres"].as_str().unwrap().starts_with("unavailable"), "{ready}");
    assert_eq!(ready["checks"]["nats"], "ok");
    assert_envelope(stack.get(&token, "/api/v1/vehicles").await, 503, "DB_201", "database").await;

    stack.postgres.set_down(false);
    stack.wait_for_readiness(200).await;
    let command: Value = stack.submit(&token, read_dtc()).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap().to_owned();
    stack.wait_completed(&token, &id).await;
}

#[tokio::test]
async fn a_vehicle_that_keeps_failing_shows_its_open_circuit_in_status_and_metrics() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let vin = sovd_domain::Vin::parse(VIN).unwrap();
    stack.fleet().inject(&vin, &[sovd_connector::sim::Fault::Unreachable; 5]);
    // Three tries for the first command, two for the second: five failures in a row.
    for _ in 0..2 {
        let command: Value = stack.submit(&admin, read_dtc()).await.json().await.unwrap();
        let id = command["command_id"].as_str().unwrap().to_owned();
        let (events, _) = read_ws(&stack.ws_url(&format!("/ws/responses/{id}?token={admin}"))).await;
        assert_eq!(events.last().unwrap()["status"], "failed", "{events:?}");
    }
    let vehicles: Vec<Value> = stack.get(&admin, &format!("/api/v1/vehicles?search={VIN}")).await.json().await.unwrap();
    let id = vehicles[0]["vehicle_id"].as_str().unwrap().to_owned();
    let status: Value = stack
        .wait_for(|| async {
            let s: Value = stack.get(&admin, &format!("/api/v1/vehicles/{id}/status")).await.json().await.ok()?;
            (s["circuit_breaker"] == "open").then_some(s)
        })
        .await;
    assert_eq!(status["health"], "degraded");
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("vehicle_circuit_breaker_state{{vin=\"{VIN}\"}} 1")), "{metrics}");

    let command: Value = stack.submit(&admin, read_dtc()).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap().to_owned();
    let (events, _) = read_ws(&stack.ws_url(&format!("/ws/responses/{id}?token={admin}"))).await;
    assert!(events.last().unwrap()["error_message"].as_str().unwrap().contains("circuit breaker open"), "{events:?}");
}

#[tokio::test]
async fn a_vehicle_that_drops_off_and_returns_is_an_event_and_shows_in_status_and_metrics() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let vin = sovd_domain::Vin::parse(VIN).unwrap();
    let vehicles: Vec<Value> = stack.get(&admin, &format!("/api/v1/vehicles?search={VIN}")).await.json().await.unwrap();
    let id = vehicles[0]["vehicle_id"].as_str().unwrap().to_owned();
    let connections = || async {
        let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics.lines().find_map(|l| l.strip_prefix("vehicle_connections_active ")?.parse::<i64>().ok())
    };
    let status_is = |wanted: &'static str| {
        let (stack, admin, id) = (&stack, &admin, &id);
        async move {
            let s: Value = stack.get(admin, &format!("/api/v1/vehicles/{id}/status")).await.json().await.unwrap();
            s["connection_status"] == wanted
        }
    };
    assert_eq!(connections().await, Some(3));

    stack.fleet().set_connected(&vin, false);
    stack.wait_until(|| status_is("disconnected")).await;
    assert_eq!(connections().await, Some(2));
    let fleet_log =
        stack.deps.store.read_filtered(sovd_nats::StreamName::Fleet, &format!("sovd.veh.{VIN}")).await.unwrap();
    assert!(
        matches!(&fleet_log.last().unwrap().event, sovd_domain::Event::VehicleDisconnected(d) if d.reason.contains("switched off")),
        "the change is an event on SOVD_FLEET"
    );

    stack.fleet().set_connected(&vin, true);
    stack.wait_until(|| status_is("connected")).await;
    assert_eq!(connections().await, Some(3));
}

#[tokio::test]
async fn an_ecu_refusal_is_a_typed_failure_with_the_code_and_its_name_in_the_api_and_the_stream() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let body = json!({"command_name": "ReadDataByID", "vehicle_id": VIN,
                      "command_params": {"ecuAddress": "0x10", "dataId": "0xBEEF"}});
    let command: Value = stack.submit(&token, body).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap().to_owned();
    let (events, _) = read_ws(&stack.ws_url(&format!("/ws/responses/{id}?token={token}"))).await;
    let last = events.last().unwrap();
    assert_eq!(last["status"], "failed", "{events:?}");
    assert_eq!(last["negative_response"], json!({"code": "0x31", "name": "requestOutOfRange"}));
    let shown: Value = stack
        .wait_for(|| async {
            let c: Value = stack.get(&token, &format!("/api/v1/commands/{id}")).await.json().await.ok()?;
            (c["status"] == "failed").then_some(c)
        })
        .await;
    assert_eq!(shown["negative_response"], json!({"code": "0x31", "name": "requestOutOfRange"}));
    assert!(shown["error_message"].as_str().unwrap().contains("requestOutOfRange"));
}

#[tokio::test]
async fn operators_see_each_projection_catch_up_in_metrics_and_in_projections_status() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let command: Value = stack.submit(&token, read_dtc()).await.json().await.unwrap();
    stack.wait_completed(&token, command["command_id"].as_str().unwrap()).await;
    let lag_line = r#"projection_lag{projection="commands",stream="SOVD_RESPONSES"} "#;
    let metrics = stack
        .wait_for(|| async {
            let m = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
            m.contains(&format!("{lag_line}0")).then_some(m)
        })
        .await;
    let checkpoint = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"projection_checkpoint{projection="commands",stream="SOVD_RESPONSES"} "#))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(checkpoint >= 5, "dispatch, three chunks and the outcome were applied: {checkpoint}");

    let status = stack.cli(&["projections", "status"]).output().await.unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let table = String::from_utf8_lossy(&status.stdout);
    let row = table.lines().find(|l| l.starts_with("commands") && l.contains("SOVD_RESPONSES")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2].parse::<u64>().unwrap(), cells[3].parse::<u64>().unwrap(), "caught up: {row}");
    assert_eq!(cells[4], "0");
    let (progress, set_aside) = table.split_once("\n\n").unwrap();
    assert_eq!(progress.lines().count(), 1 + 2 + 1 + 1 + 5, "a header and every (projection, stream): {table}");
    assert_eq!(set_aside.trim(), "no events set aside");
}

#[tokio::test]
async fn an_operator_rebuilds_a_projection_while_the_api_serves_and_the_audit_trail_records_it() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let command: Value = stack.submit(&admin, read_dtc()).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap().to_owned();
    stack.wait_completed(&admin, &id).await;
    let before: Value = stack.get(&admin, &format!("/api/v1/commands/{id}")).await.json().await.unwrap();

    let rebuilt = stack.cli(&["projections", "rebuild", "commands"]).output().await.unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    let summary = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(summary.starts_with("commands: rebuilt from ") && summary.contains("switched over"), "{summary}");

    let after: Value = stack.get(&admin, &format!("/api/v1/commands/{id}")).await.json().await.unwrap();
    assert_eq!(after, before, "the rebuilt read model answers exactly as the old one did");
    let entry: Value = stack
        .wait_for(|| async {
            let page: Value = stack.get(&admin, "/api/v1/audit?action=projection_rebuilt").await.json().await.ok()?;
            page["entries"].get(0).cloned()
        })
        .await;
    assert_eq!(entry["target"], "projection:commands", "{entry}");
    assert!(entry["actor"].as_str().unwrap().starts_with("operator:"), "{entry}");
    assert!(entry["details"]["rows"].as_u64().unwrap() >= 4, "{entry}");

    let unknown = stack.cli(&["projections", "rebuild", "nonsense"]).output().await.unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("commands, vehicles, users, audit"));
}
