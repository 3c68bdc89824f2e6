//! Scale-out and failover with real processes: one `sovd simulator` holds the vehicles, two
//! `sovd connector --transport nats` processes share the work, and one of them is killed
//! with SIGKILL while it is streaming answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sovd_connector::remote::Executions;
use sovd_domain::{Event, OperationName};
use sovd_nats::{StoredEvent, StreamName};
use tokio::process::Child;

fn sovd(stack: &Stack, args: &[&str]) -> Child {
    stack
        .cli(args)
        // Neither the simulator nor a connector touches Postgres.
        .env("SOVD_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn connector(stack: &Stack, name: &str) -> Child {
    sovd(stack, &["connector", "--transport", "nats", "--connector-name", name, "--takeover-after-secs", "2"])
}

/// Every response event, grouped by command, in stream order.
async fn responses(stack: &Stack) -> HashMap<String, Vec<StoredEvent>> {
    let mut by_command: HashMap<String, Vec<StoredEvent>> = HashMap::new();
    for stored in stack.deps.store.read_filtered(StreamName::Responses, "sovd.rsp.>").await.unwrap() {
        let id = stored.subject.rsplit('.').next().unwrap().to_owned();
        by_command.entry(id).or_default().push(stored);
    }
    by_command
}

fn dispatched_by(log: &[StoredEvent], connector: &str) -> bool {
    log.iter().any(|s| matches!(&s.event, Event::CommandDispatched(d) if d.connector == connector))
}

fn ended(log: &[StoredEvent]) -> bool {
    log.iter().any(|s| s.event.is_terminal())
}

#[tokio::test]
async fn a_connector_killed_mid_stream_is_taken_over_every_command_ends_once_and_nothing_runs_twice() {
    let stack = Stack::start_without_connector().await;
    let _simulator = sovd(&stack, &["simulator", "--sim-vehicles", "24", "--sim-chunk-delay-ms", "120"]);
    let mut a = connector(&stack, "a");
    let _b = connector(&stack, "b");
    let admin = stack.login(ADMIN).await;
    let connected: Vec<Value> = stack
        .wait_for(|| async {
            let r = stack.get(&admin, "/api/v1/vehicles?status=connected&limit=100").await;
            let vehicles: Vec<Value> = r.json().await.ok()?;
            (vehicles.len() >= 20).then_some(vehicles)
        })
        .await;

    // Per vehicle: the extended session, a six-chunk routine (not idempotent), a clear (not
    // idempotent) and a read.
    let steps = [
        ("DiagnosticSessionControl", json!({"ecuAddress": "0x10", "session": "extended"})),
        ("RoutineControl", json!({"ecuAddress": "0x10", "routineId": "0xFF00", "action": "start"})),
        ("ClearDTC", json!({"ecuAddress": "0x10"})),
        ("ReadDTC", json!({"ecuAddress": "0x10"})),
    ];
    let mut plan: Vec<(String, String, &str)> = Vec::new();
    for vehicle in &connected {
        let vin = vehicle["vin"].as_str().unwrap().to_owned();
        for (name, params) in &steps {
            let body = json!({"command_name": name, "vehicle_id": vin, "command_params": params, "confirm": true});
            let answer: Value = stack.submit(&admin, body).await.json().await.unwrap();
            plan.push((answer["command_id"].as_str().unwrap().to_owned(), vin.clone(), *name));
        }
    }

    // Kill connector a while a routine it started is streaming its progress.
    let routine_ids: Vec<&String> =
        plan.iter().filter(|(_, _, n)| *n == "RoutineControl").map(|(id, _, _)| id).collect();
    stack
        .wait_until(|| async {
            let logs = responses(&stack).await;
            routine_ids.iter().any(|id| {
                logs.get(*id).is_some_and(|log| {
                    dispatched_by(log, "a")
                        && !ended(log)
                        && log.iter().any(|s| matches!(s.event, Event::ResponseChunk(_)))
                })
            })
        })
        .await;
    a.start_kill().unwrap();
    a.wait().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(90);
    let logs = loop {
        let logs = responses(&stack).await;
        if plan.iter().all(|(id, _, _)| logs.get(id).is_some_and(|log| ended(log))) {
            break logs;
        }
        assert!(Instant::now() < deadline, "not every command ended within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let executions: Vec<Executions> = {
        let answer = stack.deps.nats.request("sovd.sim.executions", "".into()).await.unwrap();
        serde_json::from_slice(&answer.payload).unwrap()
    };
    let ran = |vin: &str, operation: OperationName| {
        executions.iter().find(|e| e.vin.as_str() == vin && e.operation == operation).map_or(0, |e| e.count)
    };

    let mut taken_over = Vec::new();
    for (id, vin, name) in &plan {
        let log = &logs[id];
        let terminals: Vec<_> = log.iter().filter(|s| s.event.is_terminal()).collect();
        assert_eq!(terminals.len(), 1, "{name} {id} on {vin} has exactly one terminal event: {log:?}");
        let status = match &terminals[0].event {
            Event::CommandCompleted(_) => "completed",
            Event::CommandFailed(_) => "failed",
            Event::CommandTimedOut(_) => "timeout",
            _ => "cancelled",
        };
        if dispatched_by(log, "a") && terminals[0].meta.actor == "connector:b" {
            taken_over.push((*name, status));
        }
        // The read model agrees with the log.
        stack
            .wait_until(|| async {
                let shown: Value = stack.get(&admin, &format!("/api/v1/commands/{id}")).await.json().await.unwrap();
                shown["status"] == status
            })
            .await;
        let operation = match *name {
            "RoutineControl" => OperationName::RoutineControl,
            "ClearDTC" => OperationName::ClearDtc,
            _ => continue,
        };
        let count = ran(vin, operation);
        assert!(count <= 1, "{name} ran {count} times on {vin}");
        if status == "completed" {
            assert_eq!(count, 1, "a completed {name} ran once on {vin}");
        }
    }
    // The routine a was streaming when it died was not started again: its outcome is unknown.
    assert!(taken_over.contains(&("RoutineControl", "failed")), "taken over: {taken_over:?}");

    // One vehicle, one command at a time, in submission order, across both connectors; and
    // the read after a completed clear finds the memory empty, whichever connector ran it.
    for steps in plan.chunks(4) {
        let span = |id: &str| {
            let log = &logs[id];
            let first = log.iter().find(|s| matches!(s.event, Event::CommandDispatched(_)));
            (first.map(|s| s.stream_sequence), log.iter().find(|s| s.event.is_terminal()).unwrap().stream_sequence)
        };
        for pair in steps.windows(2) {
            let (_, earlier_end) = span(&pair[0].0);
            if let (Some(next_start), _) = span(&pair[1].0) {
                assert!(next_start > earlier_end, "{} started before {} ended", pair[1].0, pair[0].0);
            }
        }
        let clear_completed = logs[&steps[2].0].iter().any(|s| matches!(s.event, Event::CommandCompleted(_)));
        let second_read = &logs[&steps[3].0];
        let read_completed = second_read.iter().any(|s| matches!(s.event, Event::CommandCompleted(_)));
        if clear_completed && read_completed {
            let codes = second_read
                .iter()
                .any(|s| matches!(&s.event, Event::ResponseChunk(c) if c.payload_json.contains("P0")));
            assert!(!codes, "the read after a completed clear on {} found no codes", steps[0].1);
        }
    }
}
