//! `sovd replay` and `GET /api/v1/events` against a real stack: what an analyst gets back
//! is the log, complete, in order, filtered as asked, in every schema version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sovd_domain::events::{CommandDispatched, CommandFailed, VehicleRegistered};
use sovd_domain::upcast::{CommandFailedV1, CommandRequestedV1};
use sovd_domain::{CommandId, EcuAddress, Event, EventKind, Operation, UserId, VehicleId, Vin};
use sovd_nats::{AppendOptions, EventMeta, StreamName, Subject};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt, BufReader};

fn command(name: &str, vin: &str) -> Value {
    json!({"command_name": name, "vehicle_id": vin, "command_params": {"ecuAddress": "0x10"}})
}

async fn submitted(stack: &Stack, token: &str, body: Value) -> String {
    let answer: Value = stack.submit(token, body).await.json().await.unwrap();
    answer["command_id"].as_str().unwrap().to_owned()
}

/// Runs `sovd replay` with `args`; returns its stdout lines, failing on a non-zero exit.
async fn replay(stack: &Stack, args: &[&str]) -> Vec<String> {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    let output = stack.cli(&all).output().await.unwrap();
    assert!(output.status.success(), "sovd {all:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect()
}

async fn replay_json(stack: &Stack, args: &[&str]) -> Vec<Value> {
    replay(stack, args).await.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `sovd replay` with `args` fails; returns its stderr.
async fn replay_refused(stack: &Stack, args: &[&str]) -> String {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    let output = stack.cli(&all).output().await.unwrap();
    assert!(!output.status.success(), "sovd {all:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn types(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["event_type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn replay_writes_every_event_once_in_time_order_and_it_parses_back_to_the_log() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    for name in ["ReadDTC", "ClearDTC"] {
        let id = submitted(&stack, &token, command(name, VIN)).await;
        stack.wait_completed(&token, &id).await;
    }
    let dir = std::env::temp_dir().join(format!("sovd-replay-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("all.jsonl");

    assert!(replay(&stack, &["--output", file.to_str().unwrap()]).await.is_empty(), "nothing on stdout");
    let lines: Vec<Value> =
        std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    let mut logged = Vec::new();
    for stream in StreamName::ALL {
        logged.extend(stack.deps.store.read_filtered(stream, stream.subjects()).await.unwrap());
    }
    let keys = |it: &mut dyn Iterator<Item = (String, u64)>| it.collect::<BTreeSet<_>>();
    assert_eq!(
        keys(&mut lines.iter().map(|l| (l["stream"].as_str().unwrap().to_owned(), l["sequence"].as_u64().unwrap()))),
        keys(
            &mut logged
                .iter()
                .map(|e| (StreamName::of_subject(&e.subject).unwrap().as_str().to_owned(), e.stream_sequence))
        ),
        "every event of every stream, once"
    );
    assert_eq!(lines.len(), logged.len());
    for stored in &logged {
        let stream = StreamName::of_subject(&stored.subject).unwrap().as_str();
        let line = lines.iter().find(|l| l["stream"] == stream && l["sequence"] == stored.stream_sequence).unwrap();
        assert_eq!(line["event_type"], stored.event.kind().event_type);
        assert_eq!(line["schema_version"], stored.event.kind().version);
        assert_eq!(line["event_id"], stored.meta.event_id.to_string());
        assert_eq!(line["actor"], stored.meta.actor);
        assert_eq!(line["correlation_id"], stored.meta.correlation_id);
        let at = OffsetDateTime::parse(line["occurred_at"].as_str().unwrap(), &Rfc3339).unwrap();
        assert_eq!(at, stored.meta.occurred_at, "to the nanosecond");
        if let Some(id) = stored.event.command_id() {
            assert_eq!(line["data"]["command_id"], id.to_string());
        }
        assert!(!line["data"].to_string().contains("argon2"), "password hashes never leave: {line}");
    }
    let times: Vec<OffsetDateTime> =
        lines.iter().map(|l| OffsetDateTime::parse(l["occurred_at"].as_str().unwrap(), &Rfc3339).unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "merged across streams in time order");

    let csv = replay(&stack, &["--format", "csv", "--stream", "commands"]).await;
    assert!(csv[0].starts_with("stream,sequence,occurred_at,event_type"), "{csv:?}");
    assert_eq!(csv.len(), 1 + 2, "a header and the two requests: {csv:?}");
    assert!(csv[1..].iter().all(|row| row.starts_with("SOVD_COMMANDS,") && row.contains(",CommandRequested,2,")));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn filters_pick_a_vehicle_an_operation_a_type_a_user_and_a_command() {
    let stack = Stack::start().await;
    let engineer = stack.login(ENGINEER).await;
    let admin = stack.login(ADMIN).await;
    let read = submitted(&stack, &engineer, command("ReadDTC", VIN)).await;
    let clear = submitted(&stack, &admin, command("ClearDTC", VIN)).await;
    let waiting = submitted(&stack, &engineer, command("ReadDTC", OFFLINE_VIN)).await;
    stack.wait_completed(&engineer, &read).await;
    stack.wait_completed(&admin, &clear).await;

    let offline = replay_json(&stack, &["--vehicle", OFFLINE_VIN]).await;
    assert!(offline.iter().all(|l| l["subject"].as_str().unwrap().contains(OFFLINE_VIN)), "{offline:?}");
    for wanted in ["VehicleRegistered", "CommandRequested", "CommandQueued"] {
        assert!(types(&offline).contains(&wanted), "{wanted} in {:?}", types(&offline));
    }

    let clears = replay_json(&stack, &["--operation", "cleardtc"]).await;
    assert!(clears.iter().all(|l| l["data"]["command_id"] == clear.as_str()), "{clears:?}");
    assert_eq!(types(&clears).first(), Some(&"CommandRequested"));
    assert_eq!(types(&clears).last(), Some(&"CommandCompleted"));

    let by_admin = replay_json(&stack, &["--user", "admin"]).await;
    assert!(types(&by_admin).contains(&"LoginSucceeded"));
    assert!(by_admin.iter().any(|l| l["data"]["command_id"] == clear.as_str()));
    assert!(
        !by_admin
            .iter()
            .any(|l| l["data"]["command_id"] == read.as_str() || l["data"]["command_id"] == waiting.as_str())
    );

    let completed = replay_json(&stack, &["--type", "CommandCompleted"]).await;
    assert_eq!(completed.len(), 2, "{completed:?}");
    let one = replay_json(&stack, &["--command-id", &read]).await;
    assert!(!one.is_empty() && one.iter().all(|l| l["data"]["command_id"] == read.as_str()));
    assert!(replay_json(&stack, &["--from", "2099-01-01"]).await.is_empty());
    assert_eq!(replay_json(&stack, &["--to", "2001-01-01"]).await, Vec::<Value>::new());

    assert!(replay_refused(&stack, &["--type", "CommandExploded"]).await.contains("CommandCompleted"));
    assert!(replay_refused(&stack, &["--vehicle", "short"]).await.contains("vehicle"));
    assert!(replay_refused(&stack, &["--user", "nobody"]).await.contains("no user \"nobody\""));
    assert!(replay_refused(&stack, &["--from", "last tuesday"]).await.contains("RFC 3339"));
}

#[tokio::test]
async fn as_of_shows_each_command_as_it_stood_at_that_moment() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let first = submitted(&stack, &token, command("ReadDTC", VIN)).await;
    stack.wait_completed(&token, &first).await;
    let between = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    let second = submitted(&stack, &token, command("ClearDTC", VIN)).await;
    stack.wait_completed(&token, &second).await;

    let then = replay_json(&stack, &["--as-of", &between]).await;
    assert_eq!(then.len(), 1, "{then:?}");
    assert_eq!((then[0]["command_id"].as_str().unwrap(), then[0]["status"].as_str().unwrap()), (&*first, "completed"));
    let requested = replay_json(&stack, &["--command-id", &first, "--type", "CommandRequested"]).await;
    let at_request = requested[0]["occurred_at"].as_str().unwrap().to_owned();
    let at_start = replay_json(&stack, &["--as-of", &at_request, "--command-id", &first]).await;
    assert_eq!(at_start[0]["status"], "pending", "{at_start:?}");

    let now = replay_json(&stack, &["--as-of", "0s"]).await;
    assert_eq!(now.len(), 2);
    assert_eq!(now[1]["operation"], "ClearDTC");
    let csv = replay(&stack, &["--as-of", "0s", "--format", "csv"]).await;
    assert!(csv[0].starts_with("command_id,vin,operation,user_id,status"));
    assert!(csv[2].contains(",ClearDTC,") && csv[2].contains(",completed,"), "{csv:?}");
}

#[tokio::test]
async fn follow_keeps_printing_events_as_they_are_appended() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let mut tail = stack
        .cli(&["replay", "--follow", "--type", "CommandCompleted"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let id = submitted(&stack, &token, command("ReadDTC", VIN)).await;
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await.unwrap().unwrap().unwrap();
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (line["event_type"].as_str(), line["data"]["command_id"].as_str()),
        (Some("CommandCompleted"), Some(&*id))
    );
    tail.kill().await.unwrap();
}

#[tokio::test]
async fn admins_export_events_over_http_as_ndjson_and_bad_filters_get_the_envelope() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let engineer = stack.login(ENGINEER).await;
    let id = submitted(&stack, &engineer, command("ReadDTC", VIN)).await;
    stack.wait_completed(&engineer, &id).await;

    let answer = stack.get(&admin, &format!("/api/v1/events?command_id={id}")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = answer.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(types(&lines).first(), Some(&"CommandRequested"));
    assert_eq!(types(&lines).last(), Some(&"CommandCompleted"));
    assert!(lines.iter().all(|l| l["data"]["command_id"] == id.as_str()));

    assert_envelope(stack.get(&engineer, "/api/v1/events").await, 403, "AUTH_005", "admins").await;
    assert_envelope(stack.get(&admin, "/api/v1/events?type=Nope").await, 400, "VAL_104", "type").await;
    assert_envelope(stack.get(&admin, "/api/v1/events?vehicle=short").await, 400, "VAL_104", "vehicle").await;
    assert_envelope(stack.get(&admin, "/api/v1/events?bogus=1").await, 400, "VAL_104", "bogus").await;
}

/// Appends an event in an old schema version, encoded as it was written then.
async fn append_v1(stack: &Stack, subject: &Subject, event_type: &'static str, payload: Vec<u8>) {
    let meta = EventMeta::new("corr-v1", "user:legacy");
    let headers = sovd_nats::envelope::headers(EventKind { event_type, version: 1 }, &meta).unwrap();
    let js = stack.deps.store.jetstream();
    js.publish_with_headers(subject.to_string(), headers, payload.into()).await.unwrap().await.unwrap();
}

#[tokio::test]
async fn a_log_holding_v1_and_v2_events_projects_replays_and_rebuilds_the_same() {
    let stack = Stack::start_without_connector().await;
    let token = stack.login(ENGINEER).await;
    let me: Value = stack.get(&token, "/api/v1/auth/me").await.json().await.unwrap();
    let user = UserId::parse(me["user_id"].as_str().unwrap()).unwrap();
    // No connector here registers vehicles: register one as it would.
    let vin = Vin::parse(VIN).unwrap();
    let vehicle = VehicleId::from_uuid(uuid::Uuid::now_v7());
    let now = OffsetDateTime::now_utc();
    let registered = VehicleRegistered {
        vehicle_id: vehicle,
        vin: vin.clone(),
        make: "Tesla".into(),
        model: "Model 3".into(),
        year: 2023,
        metadata_json: "{}".into(),
        registered_at: now,
    };
    let meta = EventMeta::new("corr-fleet", "system");
    let event = Event::VehicleRegistered(registered);
    stack.deps.store.append(&Subject::vehicle(&vin), &event, &meta, AppendOptions::default()).await.unwrap();
    stack
        .wait_until(|| async {
            let found: Value = stack.get(&token, &format!("/api/v1/vehicles?search={VIN}")).await.json().await.unwrap();
            found.as_array().is_some_and(|v| !v.is_empty())
        })
        .await;

    // Written by an old release: a version 1 request and a version 1 failure.
    let old = CommandId::new();
    let v1 = CommandRequestedV1 {
        command_id: old,
        vehicle_id: vehicle,
        vin: vin.clone(),
        user_id: user,
        operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
        requested_at: now,
    };
    append_v1(&stack, &Subject::command(&vin, old), "CommandRequested", postcard::to_stdvec(&v1).unwrap()).await;
    let failed = CommandFailedV1 { command_id: old, reason: "ECU busy".into(), completed_at: now };
    append_v1(&stack, &Subject::response(&vin, old), "CommandFailed", postcard::to_stdvec(&failed).unwrap()).await;
    // Written by this release: the request through the API, the refusal with its NRC.
    let mut body = command("ReadDTC", VIN);
    body["timeout_ms"] = json!(5000);
    let new = CommandId::parse(&submitted(&stack, &token, body).await).unwrap();
    let meta = || EventMeta::new("corr-v2", "connector:test");
    let store = &stack.deps.store;
    let rsp = Subject::response(&vin, new);
    let dispatched = CommandDispatched { command_id: new, attempt: 1, connector: "test".into(), dispatched_at: now };
    store.append(&rsp, &Event::CommandDispatched(dispatched), &meta(), AppendOptions::default()).await.unwrap();
    let refused = CommandFailed {
        command_id: new,
        reason: "ECU refused".into(),
        completed_at: now,
        negative_response: Some(sovd_domain::uds::Nrc(0x22)),
    };
    store.append(&rsp, &Event::CommandFailed(refused), &meta(), AppendOptions::default()).await.unwrap();

    let read = |id: CommandId| {
        let (stack, token) = (&stack, &token);
        async move { stack.get(token, &format!("/api/v1/commands/{id}")).await.json::<Value>().await.unwrap() }
    };
    stack.wait_until(|| async { read(old).await["status"] == "failed" && read(new).await["status"] == "failed" }).await;
    let (old_view, new_view) = (read(old).await, read(new).await);
    assert_eq!(old_view["error_message"], "ECU busy");
    assert_eq!(old_view["negative_response"], Value::Null);
    assert_eq!(new_view["negative_response"], json!({"code": "0x22", "name": "conditionsNotCorrect"}));

    let lines = replay_json(&stack, &["--stream", "commands,responses"]).await;
    let line = |id: CommandId, kind: &str| {
        lines.iter().find(|l| l["data"]["command_id"] == id.to_string() && l["event_type"] == kind).unwrap().clone()
    };
    let old_request = line(old, "CommandRequested");
    assert_eq!(
        (old_request["schema_version"].clone(), old_request["data"]["timeout_ms"].clone()),
        (json!(1), Value::Null)
    );
    let new_request = line(new, "CommandRequested");
    assert_eq!(
        (new_request["schema_version"].clone(), new_request["data"]["timeout_ms"].clone()),
        (json!(2), json!(5000))
    );
    assert_eq!(line(old, "CommandFailed")["schema_version"], 1);
    assert_eq!(line(old, "CommandFailed")["data"]["negative_response"], Value::Null);
    assert_eq!(line(new, "CommandFailed")["data"]["negative_response"]["code"], "0x22");

    let rebuilt = stack.cli(&["projections", "rebuild", "commands"]).output().await.unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    assert_eq!((read(old).await, read(new).await), (old_view, new_view), "a rebuild reads both versions the same");
}
