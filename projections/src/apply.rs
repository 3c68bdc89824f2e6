//! Events -> rows. Every statement is idempotent (upserts keyed by ids from the events), so
//! applying an event twice, or a batch again after a crash before its checkpoint, changes
//! nothing. Sequence holes are normal and never checked.

use sovd_domain::Event;
use sovd_domain::lifecycle::CommandStatus;
use sovd_nats::{StoredEvent, StreamName};
use sqlx::PgConnection;

use crate::ProjectionError;

/// A named read model and the streams it is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    Commands,
    Vehicles,
    Users,
    Audit,
}

impl Projection {
    pub const ALL: [Self; 4] = [Self::Commands, Self::Vehicles, Self::Users, Self::Audit];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Commands => "commands",
            Self::Vehicles => "vehicles",
            Self::Users => "users",
            Self::Audit => "audit",
        }
    }

    pub fn streams(&self) -> &'static [StreamName] {
        match self {
            Self::Commands => &[StreamName::Commands, StreamName::Responses],
            Self::Vehicles => &[StreamName::Fleet],
            Self::Users => &[StreamName::Iam],
            Self::Audit => &[StreamName::Commands, StreamName::Responses, StreamName::Fleet, StreamName::Iam],
        }
    }

    /// The tables this projection owns, for digests and rebuilds.
    pub fn tables(&self) -> &'static [&'static str] {
        match self {
            Self::Commands => &["commands", "responses"],
            Self::Vehicles => &["vehicles"],
            Self::Users => &["users"],
            Self::Audit => &["audit_log"],
        }
    }
}

/// Applies a batch and records its checkpoint in one transaction.
pub async fn apply_batch(
    pool: &sqlx::PgPool,
    projection: Projection,
    stream: StreamName,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    let Some(last) = events.iter().map(|e| e.stream_sequence).max() else {
        return Ok(());
    };
    let mut tx = pool.begin().await?;
    for stored in events {
        apply_event(&mut tx, projection, stored).await?;
    }
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, stream, last_sequence, updated_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (projection, stream) DO UPDATE
         SET last_sequence = GREATEST(projection_checkpoints.last_sequence, EXCLUDED.last_sequence),
             updated_at = now()",
    )
    .bind(projection.name())
    .bind(stream.as_str())
    .bind(i64::try_from(last).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The last sequence of `stream` applied to `projection` (0 = nothing yet).
pub async fn checkpoint(
    pool: &sqlx::PgPool,
    projection: Projection,
    stream: StreamName,
) -> Result<u64, ProjectionError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT last_sequence FROM projection_checkpoints WHERE projection = $1 AND stream = $2")
            .bind(projection.name())
            .bind(stream.as_str())
            .fetch_optional(pool)
            .await?;
    Ok(row.map_or(0, |(seq,)| u64::try_from(seq).unwrap_or(0)))
}

/// How the read model and the API show a negative response.
pub fn negative_response_json(nrc: sovd_domain::uds::Nrc) -> serde_json::Value {
    serde_json::json!({"code": format!("0x{:02X}", nrc.code()), "name": nrc.name()})
}

fn json(text: &str) -> Result<serde_json::Value, ProjectionError> {
    serde_json::from_str(text).map_err(|e| ProjectionError::BadJson(e.to_string()))
}

async fn upsert_status(
    conn: &mut PgConnection,
    command_id: uuid::Uuid,
    status: CommandStatus,
    error_message: Option<&str>,
    completed_at: Option<time::OffsetDateTime>,
    attempts: i32,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO commands (command_id, status, status_rank, error_message, completed_at, attempts)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (command_id) DO UPDATE SET
           status = CASE WHEN EXCLUDED.status_rank > commands.status_rank THEN EXCLUDED.status ELSE commands.status END,
           error_message = CASE WHEN EXCLUDED.status_rank > commands.status_rank THEN EXCLUDED.error_message
                                ELSE commands.error_message END,
           completed_at = COALESCE(commands.completed_at, EXCLUDED.completed_at),
           status_rank = GREATEST(commands.status_rank, EXCLUDED.status_rank),
           attempts = GREATEST(commands.attempts, EXCLUDED.attempts)",
    )
    .bind(command_id)
    .bind(status.as_str())
    .bind(i16::from(status.rank()))
    .bind(error_message)
    .bind(completed_at)
    .bind(attempts)
    .execute(conn)
    .await?;
    Ok(())
}

async fn apply_event(
    conn: &mut PgConnection,
    projection: Projection,
    stored: &StoredEvent,
) -> Result<(), ProjectionError> {
    match (projection, &stored.event) {
        (Projection::Commands, Event::CommandRequested(e)) => {
            sqlx::query(
                "INSERT INTO commands (command_id, user_id, vehicle_id, vin, command_name, command_params,
                                       correlation_id, status, status_rank, submitted_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8)
                 ON CONFLICT (command_id) DO UPDATE SET
                   user_id = EXCLUDED.user_id, vehicle_id = EXCLUDED.vehicle_id, vin = EXCLUDED.vin,
                   command_name = EXCLUDED.command_name, command_params = EXCLUDED.command_params,
                   correlation_id = EXCLUDED.correlation_id, submitted_at = EXCLUDED.submitted_at",
            )
            .bind(e.command_id.as_uuid())
            .bind(e.user_id.as_uuid())
            .bind(e.vehicle_id.as_uuid())
            .bind(e.vin.as_str())
            .bind(e.operation.name().as_str())
            .bind(e.operation.params_json())
            .bind(&stored.meta.correlation_id)
            .bind(e.requested_at)
            .execute(conn)
            .await?;
        }
        (Projection::Commands, Event::CommandDispatched(e)) => {
            let attempts = i32::try_from(e.attempt).unwrap_or(i32::MAX);
            upsert_status(conn, e.command_id.as_uuid(), CommandStatus::InProgress, None, None, attempts).await?;
        }
        (Projection::Commands, Event::ResponseChunk(e)) => {
            sqlx::query(
                "INSERT INTO responses (response_id, command_id, sequence_number, response_payload, is_final, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING",
            )
            .bind(e.response_id)
            .bind(e.command_id.as_uuid())
            .bind(i32::try_from(e.sequence_number).unwrap_or(i32::MAX))
            .bind(json(&e.payload_json)?)
            .bind(e.is_final)
            .bind(e.received_at)
            .execute(conn)
            .await?;
        }
        (Projection::Commands, Event::CommandQueued(e)) => {
            let id = e.command_id.as_uuid();
            upsert_status(conn, id, CommandStatus::Queued, Some(&e.reason), None, 0).await?;
        }
        (Projection::Commands, Event::CommandCompleted(e)) => {
            upsert_status(conn, e.command_id.as_uuid(), CommandStatus::Completed, None, Some(e.completed_at), 0)
                .await?;
        }
        (Projection::Commands, Event::CommandFailed(e)) => {
            let id = e.command_id.as_uuid();
            upsert_status(conn, id, CommandStatus::Failed, Some(&e.reason), Some(e.completed_at), 0).await?;
            if let Some(nrc) = e.negative_response {
                sqlx::query("UPDATE commands SET negative_response = $2 WHERE command_id = $1")
                    .bind(id)
                    .bind(negative_response_json(nrc))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        (Projection::Commands, Event::CommandTimedOut(e)) => {
            let message = format!("Vehicle connection timeout: no answer within {} ms", e.after_ms);
            let id = e.command_id.as_uuid();
            upsert_status(conn, id, CommandStatus::TimedOut, Some(&message), Some(e.completed_at), 0).await?;
        }
        (Projection::Commands, Event::CommandCancelled(e)) => {
            let id = e.command_id.as_uuid();
            upsert_status(conn, id, CommandStatus::Cancelled, Some("cancelled by user"), Some(e.completed_at), 0)
                .await?;
        }
        (Projection::Vehicles, Event::VehicleRegistered(e)) => {
            sqlx::query(
                "INSERT INTO vehicles (vehicle_id, vin, make, model, year, metadata, registered_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (vehicle_id) DO UPDATE SET
                   make = EXCLUDED.make, model = EXCLUDED.model, year = EXCLUDED.year, metadata = EXCLUDED.metadata",
            )
            .bind(e.vehicle_id.as_uuid())
            .bind(e.vin.as_str())
            .bind(&e.make)
            .bind(&e.model)
            .bind(i32::from(e.year))
            .bind(json(&e.metadata_json)?)
            .bind(e.registered_at)
            .execute(conn)
            .await?;
        }
        (Projection::Vehicles, Event::VehicleConnected(e)) => {
            sqlx::query("UPDATE vehicles SET connection_status = 'connected', last_seen_at = $2 WHERE vin = $1")
                .bind(e.vin.as_str())
                .bind(e.at)
                .execute(conn)
                .await?;
        }
        (Projection::Vehicles, Event::VehicleDisconnected(e)) => {
            sqlx::query("UPDATE vehicles SET connection_status = 'disconnected', last_seen_at = $2 WHERE vin = $1")
                .bind(e.vin.as_str())
                .bind(e.at)
                .execute(conn)
                .await?;
        }
        (Projection::Vehicles, Event::VehicleCircuitChanged(e)) => {
            sqlx::query("UPDATE vehicles SET circuit_state = $2 WHERE vin = $1")
                .bind(e.vin.as_str())
                .bind(&e.state)
                .execute(conn)
                .await?;
        }
        (Projection::Users, Event::UserCreated(e)) => {
            sqlx::query(
                "INSERT INTO users (user_id, username, role, email, password_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(e.user_id.as_uuid())
            .bind(&e.username)
            .bind(e.role.as_str())
            .bind(&e.email)
            .bind(&e.password_hash)
            .bind(e.created_at)
            .execute(conn)
            .await?;
        }
        (Projection::Users, Event::RoleChanged(e)) => {
            sqlx::query("UPDATE users SET role = $2 WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .bind(e.role.as_str())
                .execute(conn)
                .await?;
        }
        (Projection::Users, Event::PasswordChanged(e)) => {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .bind(&e.password_hash)
                .execute(conn)
                .await?;
        }
        (Projection::Users, Event::UserDeactivated(e)) => {
            sqlx::query("UPDATE users SET active = false WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .execute(conn)
                .await?;
        }
        (Projection::Users, Event::UserReactivated(e)) => {
            sqlx::query("UPDATE users SET active = true WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .execute(conn)
                .await?;
        }
        (Projection::Audit, _) => crate::audit::apply(conn, stored).await?,
        // Events of other projections, or ones this read model does not show yet.
        _ => {}
    }
    Ok(())
}
