//! The audit trail: every event a person or the system caused, as one row each.

use serde_json::{Value, json};
use sovd_domain::Event;
use sovd_nats::StoredEvent;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ProjectionError;

/// The advisory lock that serialises appends to the audit chain.
const CHAIN_LOCK: i64 = 0x5077_a0d1;

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
        Event::PermissionGranted(e) => {
            ("permission_granted", user(&e.user_id), None, json!({"permission": e.permission.as_str()}))
        }
        Event::PermissionRevoked(e) => {
            ("permission_revoked", user(&e.user_id), None, json!({"permission": e.permission.as_str()}))
        }
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
            json!({"username": e.username, "until": e.until.unix_timestamp(), "client_ip": e.client_ip}),
        ),
        Event::AccountUnlocked(e) => (
            "account_unlocked",
            e.user_id.as_ref().map_or_else(|| format!("username:{}", e.username), user),
            None,
            json!({"username": e.username, "by": e.by, "reason": e.reason}),
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
        Event::ProjectionRebuilt(e) => (
            "projection_rebuilt",
            format!("projection:{}", e.projection),
            None,
            json!({"events": e.events, "rows": e.rows, "digest": e.digest,
                   "seconds": (e.finished_at - e.started_at).as_seconds_f64()}),
        ),
        Event::BackupCompleted(e) => (
            "backup_completed",
            format!("backup:{}", e.backup_id),
            None,
            json!({"location": e.location, "streams": e.streams, "messages": e.messages, "bytes": e.bytes,
                   "seconds": (e.finished_at - e.started_at).as_seconds_f64()}),
        ),
        Event::BackupFailed(e) => {
            ("backup_failed", "backup".to_owned(), None, json!({"location": e.location, "error": e.error}))
        }
        Event::ArchiveFailed(e) => {
            ("archive_failed", format!("stream:{}", e.stream), None, json!({"location": e.location, "error": e.error}))
        }
        Event::RestoreCompleted(e) => (
            "restore_completed",
            format!("backup:{}", e.backup_id),
            None,
            json!({"location": e.location, "until": e.until, "streams": e.streams, "messages": e.messages,
                   "segments": e.segments, "digests": e.digests,
                   "seconds": (e.finished_at - e.started_at).as_seconds_f64()}),
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

/// Holds the chain for the rest of the transaction. One chain: audit batches from every
/// stream and every projector process take turns.
pub async fn lock_chain(conn: &mut PgConnection) -> Result<(), ProjectionError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHAIN_LOCK).execute(conn).await?;
    Ok(())
}

/// Which stream an event came from, by its subject.
fn stream_of(subject: &str) -> &'static str {
    sovd_nats::StreamName::of_subject(subject).map_or("?", |s| s.as_str())
}

/// A batch of audit rows as column arrays, in stream order.
#[derive(Debug, Default)]
pub struct AuditRows {
    occurred_at: Vec<OffsetDateTime>,
    actor: Vec<String>,
    actor_user_id: Vec<Option<Uuid>>,
    action: Vec<&'static str>,
    target: Vec<String>,
    vin: Vec<Option<String>>,
    details: Vec<Value>,
    correlation_id: Vec<String>,
    stream: Vec<&'static str>,
    stream_sequence: Vec<i64>,
}

impl AuditRows {
    pub fn from_events(events: &[StoredEvent]) -> Self {
        let mut rows = Self::default();
        for stored in events {
            let Some((action, target, vin, details)) = describe(&stored.event) else {
                continue;
            };
            let vin = vin.or_else(|| {
                sovd_nats::subjects::parse_command_subject(&stored.subject).map(|(vin, _)| vin.to_string())
            });
            rows.occurred_at.push(stored.meta.occurred_at);
            rows.actor.push(stored.meta.actor.clone());
            rows.actor_user_id.push(actor_user(&stored.meta.actor));
            rows.action.push(action);
            rows.target.push(target);
            rows.vin.push(vin);
            rows.details.push(details);
            rows.correlation_id.push(stored.meta.correlation_id.clone());
            rows.stream.push(stream_of(&stored.subject));
            rows.stream_sequence.push(i64::try_from(stored.stream_sequence).unwrap_or(i64::MAX));
        }
        rows
    }

    pub fn len(&self) -> usize {
        self.action.len()
    }

    pub fn is_empty(&self) -> bool {
        self.action.is_empty()
    }

    /// Appends the rows not yet in the trail to the end of the chain, in one statement.
    pub async fn append(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.is_empty() {
            return Ok(());
        }
        lock_chain(conn).await?;
        self.bind(sqlx::query(
            "WITH head AS (SELECT COALESCE((SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1), '') AS hash),
             input AS (
               SELECT v.* FROM UNNEST($1::timestamptz[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                      $7::jsonb[], $8::text[], $9::text[], $10::int8[]) WITH ORDINALITY
                      AS v(occurred_at, actor, actor_user_id, action, target, vin, details, correlation_id, stream,
                           stream_sequence, n)
               WHERE NOT EXISTS (SELECT 1 FROM audit_log a
                                 WHERE a.stream = v.stream AND a.stream_sequence = v.stream_sequence)),
             chained AS (
               SELECT i.*, head.hash AS head,
                      audit_chain(head.hash, audit_row_text(i.occurred_at, i.actor, i.actor_user_id, i.action,
                                                            i.target, i.vin, i.details, i.correlation_id, i.stream,
                                                            i.stream_sequence))
                        OVER (ORDER BY i.n ROWS UNBOUNDED PRECEDING) AS row_hash
               FROM input i, head)
             INSERT INTO audit_log (occurred_at, actor, actor_user_id, action, target, vin, details, correlation_id,
                                    stream, stream_sequence, prev_hash, row_hash)
             SELECT occurred_at, actor, actor_user_id, action, target, vin, details, correlation_id, stream,
                    stream_sequence, COALESCE(lag(row_hash) OVER (ORDER BY n), head), row_hash
             FROM chained ORDER BY n",
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Plain inserts of the same rows, unchained and unchecked: the benchmark's limit.
    pub async fn insert_plain(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.bind(sqlx::query(
            "INSERT INTO audit_log (occurred_at, actor, actor_user_id, action, target, vin, details, correlation_id,
                                    stream, stream_sequence)
             SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                  $7::jsonb[], $8::text[], $9::text[], $10::int8[])",
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.occurred_at)
            .bind(&self.actor)
            .bind(&self.actor_user_id)
            .bind(&self.action)
            .bind(&self.target)
            .bind(&self.vin)
            .bind(&self.details)
            .bind(&self.correlation_id)
            .bind(&self.stream)
            .bind(&self.stream_sequence)
    }
}

/// What `sovd audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every row chains to the one before it; `head` is the last row's hash.
    Intact {
        rows: u64,
        head: String,
    },
    Broken(Break),
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Break {
    /// The first row that does not verify.
    pub id: i64,
    pub stream: String,
    pub stream_sequence: i64,
    /// Its content no longer matches its hash: the row was changed.
    pub changed: bool,
    /// It does not follow the row before it: a row was deleted or moved.
    pub unlinked: bool,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.changed {
            "was changed after it was written"
        } else {
            "does not follow the row before it: a row was deleted, inserted or moved before it"
        };
        write!(f, "audit row {} (from {} sequence {}) {what}", self.id, self.stream, self.stream_sequence)
    }
}

/// Walks the whole chain in the order it was written and reports the first row that breaks it.
pub async fn verify(pool: &sqlx::PgPool) -> Result<Verdict, ProjectionError> {
    let first_break: Option<Break> = sqlx::query_as(
        "SELECT id, stream, stream_sequence, changed, unlinked FROM (
           SELECT id, stream, stream_sequence,
                  row_hash IS DISTINCT FROM audit_row_hash(prev_hash, audit_row_text(occurred_at, actor, actor_user_id,
                      action, target, vin, details, correlation_id, stream, stream_sequence)) AS changed,
                  prev_hash IS DISTINCT FROM COALESCE(lag(row_hash) OVER (ORDER BY id), '') AS unlinked
           FROM audit_log) checked
         WHERE changed OR unlinked ORDER BY id LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    if let Some(broken) = first_break {
        return Ok(Verdict::Broken(broken));
    }
    let (rows, head): (i64, Option<String>) =
        sqlx::query_as("SELECT count(*), (SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1) FROM audit_log")
            .fetch_one(pool)
            .await?;
    Ok(Verdict::Intact { rows: u64::try_from(rows).unwrap_or(0), head: head.unwrap_or_default() })
}
