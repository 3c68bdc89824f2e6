//! How a replayed event is written: one JSON object per line (JSON Lines, NDJSON) or one
//! CSV row. The shape is documented in docs/user-guides/analyst_guide.md; times are RFC 3339
//! in UTC, ids are strings, and `data` holds the event in its current schema version
//! whatever version it was written in (`schema_version` says which).

use serde_json::{Value, json};
use sovd_domain::Event;
use sovd_nats::{StreamName, TailEvent};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::gateway::csv::field;

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The envelope and the event as one JSON object.
pub fn json(event: &TailEvent) -> Value {
    let stored = &event.stored;
    let meta = &stored.meta;
    json!({
        "stream": StreamName::of_subject(&stored.subject).map_or("?", |s| s.as_str()),
        "sequence": stored.stream_sequence,
        "subject": stored.subject,
        "event_type": stored.event.kind().event_type,
        "schema_version": event.schema_version,
        "event_id": meta.event_id,
        "occurred_at": rfc3339(meta.occurred_at),
        "actor": meta.actor,
        "correlation_id": meta.correlation_id,
        "causation_id": meta.causation_id,
        "data": data(&stored.event),
    })
}

/// One JSON line, newline included.
pub fn json_line(event: &TailEvent) -> String {
    let mut line = json(event).to_string();
    line.push('\n');
    line
}

pub const CSV_HEADER: &str =
    "stream,sequence,occurred_at,event_type,schema_version,actor,correlation_id,vin,command_id,subject,data\n";

/// One CSV row, newline included; `data` is the JSON object as text.
pub fn csv_line(event: &TailEvent) -> String {
    let stored = &event.stored;
    let subject = sovd_nats::subjects::parse_command_subject(&stored.subject);
    let vin = match &stored.event {
        Event::VehicleRegistered(e) => Some(e.vin.to_string()),
        Event::VehicleConnected(e) => Some(e.vin.to_string()),
        Event::VehicleDisconnected(e) => Some(e.vin.to_string()),
        Event::VehicleCircuitChanged(e) => Some(e.vin.to_string()),
        _ => subject.as_ref().map(|(vin, _)| vin.to_string()),
    };
    let cells = [
        StreamName::of_subject(&stored.subject).map_or("?", |s| s.as_str()).to_owned(),
        stored.stream_sequence.to_string(),
        rfc3339(stored.meta.occurred_at),
        stored.event.kind().event_type.to_owned(),
        event.schema_version.to_string(),
        stored.meta.actor.clone(),
        stored.meta.correlation_id.clone(),
        vin.unwrap_or_default(),
        stored.event.command_id().map(|id| id.to_string()).unwrap_or_default(),
        stored.subject.clone(),
        data(&stored.event).to_string(),
    ];
    let mut line = cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// The event's own fields. Password hashes are never written out.
pub fn data(event: &Event) -> Value {
    let t = rfc3339;
    match event {
        Event::CommandRequested(e) => json!({
            "command_id": e.command_id, "vehicle_id": e.vehicle_id, "vin": e.vin.as_str(), "user_id": e.user_id,
            "operation": e.operation.name().as_str(), "params": e.operation.params_json(),
            "requested_at": t(e.requested_at), "timeout_ms": e.timeout_ms,
        }),
        Event::CommandCancelRequested(e) => {
            json!({"command_id": e.command_id, "user_id": e.user_id, "requested_at": t(e.requested_at)})
        }
        Event::CommandDispatched(e) => json!({
            "command_id": e.command_id, "attempt": e.attempt, "connector": e.connector,
            "dispatched_at": t(e.dispatched_at),
        }),
        Event::ResponseChunk(e) => json!({
            "command_id": e.command_id, "response_id": e.response_id, "sequence_number": e.sequence_number,
            "payload": serde_json::from_str::<Value>(&e.payload_json).unwrap_or(Value::String(e.payload_json.clone())),
            "is_final": e.is_final, "received_at": t(e.received_at),
        }),
        Event::AttemptFailed(e) => json!({
            "command_id": e.command_id, "attempt": e.attempt, "reason": e.reason,
            "may_have_executed": e.may_have_executed, "at": t(e.at),
        }),
        Event::CommandQueued(e) => {
            json!({"command_id": e.command_id, "reason": e.reason, "until": t(e.until), "at": t(e.at)})
        }
        Event::CommandCompleted(e) => json!({"command_id": e.command_id, "completed_at": t(e.completed_at)}),
        Event::CommandFailed(e) => json!({
            "command_id": e.command_id, "reason": e.reason, "completed_at": t(e.completed_at),
            "negative_response": e.negative_response.map(sovd_projections::apply::negative_response_json),
        }),
        Event::CommandTimedOut(e) => {
            json!({"command_id": e.command_id, "after_ms": e.after_ms, "completed_at": t(e.completed_at)})
        }
        Event::CommandCancelled(e) => json!({"command_id": e.command_id, "completed_at": t(e.completed_at)}),
        Event::VehicleRegistered(e) => json!({
            "vehicle_id": e.vehicle_id, "vin": e.vin.as_str(), "make": e.make, "model": e.model, "year": e.year,
            "metadata": serde_json::from_str::<Value>(&e.metadata_json).unwrap_or(Value::Null),
            "registered_at": t(e.registered_at),
        }),
        Event::VehicleConnected(e) => json!({"vin": e.vin.as_str(), "at": t(e.at)}),
        Event::VehicleDisconnected(e) => json!({"vin": e.vin.as_str(), "reason": e.reason, "at": t(e.at)}),
        Event::VehicleCircuitChanged(e) => {
            json!({"vin": e.vin.as_str(), "state": e.state, "connector": e.connector, "at": t(e.at)})
        }
        Event::UserCreated(e) => json!({
            "user_id": e.user_id, "username": e.username, "role": e.role.as_str(), "email": e.email,
            "created_at": t(e.created_at),
        }),
        Event::RoleChanged(e) => {
            json!({"user_id": e.user_id, "role": e.role.as_str(), "changed_by": e.changed_by, "at": t(e.at)})
        }
        Event::PasswordChanged(e) => json!({"user_id": e.user_id, "changed_by": e.changed_by, "at": t(e.at)}),
        Event::UserDeactivated(e) => json!({"user_id": e.user_id, "changed_by": e.changed_by, "at": t(e.at)}),
        Event::UserReactivated(e) => json!({"user_id": e.user_id, "changed_by": e.changed_by, "at": t(e.at)}),
        Event::PermissionGranted(e) => json!({
            "user_id": e.user_id, "permission": e.permission.as_str(), "changed_by": e.changed_by, "at": t(e.at),
        }),
        Event::PermissionRevoked(e) => json!({
            "user_id": e.user_id, "permission": e.permission.as_str(), "changed_by": e.changed_by, "at": t(e.at),
        }),
        Event::LoginSucceeded(e) => json!({
            "user_id": e.user_id, "username": e.username, "ip": e.client.ip, "user_agent": e.client.user_agent,
            "at": t(e.at),
        }),
        Event::LoginFailed(e) => json!({
            "username": e.username, "user_id": e.user_id, "reason": e.reason, "ip": e.client.ip,
            "user_agent": e.client.user_agent, "at": t(e.at),
        }),
        Event::AccountLocked(e) => json!({
            "username": e.username, "user_id": e.user_id, "until": t(e.until), "client_ip": e.client_ip, "at": t(e.at),
        }),
        Event::AccountUnlocked(e) => json!({
            "username": e.username, "user_id": e.user_id, "by": e.by, "reason": e.reason, "at": t(e.at),
        }),
        Event::LoggedOut(e) => json!({"user_id": e.user_id, "at": t(e.at)}),
        Event::RefreshTokenReused(e) => json!({
            "user_id": e.user_id, "family": e.family, "ip": e.client.ip, "user_agent": e.client.user_agent,
            "at": t(e.at),
        }),
        Event::ProjectionRebuilt(e) => json!({
            "projection": e.projection, "events": e.events, "rows": e.rows, "digest": e.digest,
            "started_at": t(e.started_at), "finished_at": t(e.finished_at),
        }),
        Event::BackupCompleted(e) => json!({
            "backup_id": e.backup_id, "location": e.location, "streams": e.streams, "messages": e.messages,
            "bytes": e.bytes, "started_at": t(e.started_at), "finished_at": t(e.finished_at),
        }),
        Event::BackupFailed(e) => json!({"location": e.location, "error": e.error, "at": t(e.at)}),
        Event::ArchiveFailed(e) => {
            json!({"stream": e.stream, "location": e.location, "error": e.error, "at": t(e.at)})
        }
        Event::RestoreCompleted(e) => json!({
            "backup_id": e.backup_id, "location": e.location, "until": e.until, "streams": e.streams,
            "messages": e.messages, "segments": e.segments, "digests": e.digests,
            "started_at": t(e.started_at), "finished_at": t(e.finished_at),
        }),
    }
}
