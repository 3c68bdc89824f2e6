//! The audit trail: every event a person or the system caused, as one row each.

use serde_json::{Value, json};
use sovd_domain::Event;
use sovd_nats::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ProjectionError;

/// What the audit trail says about an event: action, target, vehicle and details.
/// `None` for events that are not actions (response chunks, connectivity changes).
pub fn describe(event: &Event) -> Option<(&'static str, String, Option<String>, Value)> {
    let command = |id: &sovd_domain::CommandId| format!("command:{id}");
    let user = |id: &sovd_domain::UserId| format!("user:{id}");
    Some(match event {
        Event::CommandRequested(e) => (
            "command_submitted",
            command(&e.command_id),
            Some(e.vin.to_string()),
            json!({"operation": e.operation.name().as_str(), "params": e.operation.params_json(), "vehicle_id": e.vehicle_id}),
        ),
        Event::CommandCancelRequested(e) => ("command_cancel_requested", command(&e.command_id), None, json!({})),
        Event::AttemptFailed(e) => (
            "command_attempt_failed",
            command(&e.command_id),
            None,
            json!({"attempt": e.attempt, "reason": e.reason, "may_have_executed": e.may_have_executed}),
        ),
        Event::CommandQueued(e) => (
            "command_queued",
            command(&e.command_id),
            None,
            json!({"reason": e.reason, "until": e.until.unix_timestamp()}),
        ),
        Event::CommandCompleted(e) => ("command_completed", command(&e.command_id), None, json!({})),
        Event::CommandFailed(e) => ("command_failed", command(&e.command_id), None, json!({"reason": e.reason})),
        Event::CommandTimedOut(e) => {
            ("command_timed_out", command(&e.command_id), None, json!({"after_ms": e.after_ms}))
        }
        Event::CommandCancelled(e) => ("command_cancelled", command(&e.command_id), None, json!({})),
        Event::VehicleRegistered(e) => (
            "vehicle_registered",
            format!("vehicle:{}", e.vin),
            Some(e.vin.to_string()),
            json!({"make": e.make, "model": e.model, "year": e.year}),
        ),
        Event::UserCreated(e) => {
            ("user_created", user(&e.user_id), None, json!({"username": e.username, "role": e.role.as_str()}))
        }
        Event::RoleChanged(e) => ("role_changed", user(&e.user_id), None, json!({"role": e.role.as_str()})),
        Event::PasswordChanged(e) => ("password_changed", user(&e.user_id), None, json!({})),
        Event::UserDeactivated(e) => ("user_deactivated", user(&e.user_id), None, json!({})),
        Event::UserReactivated(e) => ("user_reactivated", user(&e.user_id), None, json!({})),
        Event::LoginSucceeded(e) => (
            "login_succeeded",
            user(&e.user_id),
            None,
            json!({"username": e.username, "ip": e.client.ip, "user_agent": e.client.user_agent}),
        ),
        Event::LoginFailed(e) => (
            "login_failed",
            e.user_id.as_ref().map_or_else(|| format!("username:{}", e.username), user),
            None,
            json!({"username": e.username, "reason": e.reason, "ip": e.client.ip, "user_agent": e.client.user_agent}),
        ),
        Event::AccountLocked(e) => (
            "account_locked",
            e.user_id.as_ref().map_or_else(|| format!("username:{}", e.username), user),
            None,
            json!({"username": e.username, "until": e.until.unix_timestamp()}),
        ),
        Event::LoggedOut(e) => ("logged_out", user(&e.user_id), None, json!({})),
        Event::RefreshTokenReused(e) => (
            "refresh_token_reused",
            user(&e.user_id),
            None,
            json!({"family": e.family, "ip": e.client.ip, "user_agent": e.client.user_agent}),
        ),
        Event::VehicleCircuitChanged(e) => (
            "vehicle_circuit_changed",
            format!("vehicle:{}", e.vin),
            Some(e.vin.to_string()),
            json!({"state": e.state, "connector": e.connector}),
        ),
        Event::CommandDispatched(_)
        | Event::ResponseChunk(_)
        | Event::VehicleConnected(_)
        | Event::VehicleDisconnected(_) => {
            return None;
        }
    })
}

/// `user:<uuid>` actors point at a user; others (`system`, `connector:<name>`) do not.
fn actor_user(actor: &str) -> Option<Uuid> {
    actor.strip_prefix("user:").and_then(|id| Uuid::parse_str(id).ok())
}

pub async fn apply(conn: &mut PgConnection, stored: &StoredEvent) -> Result<(), ProjectionError> {
    let Some((action, target, vin, details)) = describe(&stored.event) else {
        return Ok(());
    };
    let vin =
        vin.or_else(|| sovd_nats::subjects::parse_command_subject(&stored.subject).map(|(vin, _)| vin.to_string()));
    let stream = stored.subject.split('.').nth(1).map_or("?", |kind| match kind {
        "cmd" => "SOVD_COMMANDS",
        "rsp" => "SOVD_RESPONSES",
        "veh" => "SOVD_FLEET",
        "iam" => "SOVD_IAM",
        _ => "SOVD_OPS",
    });
    sqlx::query(
        "INSERT INTO audit_log (occurred_at, actor, actor_user_id, action, target, vin, details, correlation_id,
                                stream, stream_sequence)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (stream, stream_sequence) DO NOTHING",
    )
    .bind(stored.meta.occurred_at)
    .bind(&stored.meta.actor)
    .bind(actor_user(&stored.meta.actor))
    .bind(action)
    .bind(target)
    .bind(vin)
    .bind(details)
    .bind(&stored.meta.correlation_id)
    .bind(stream)
    .bind(i64::try_from(stored.stream_sequence).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}
