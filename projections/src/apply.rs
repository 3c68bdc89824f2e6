//! Events -> rows. Every statement is idempotent (upserts keyed by ids from the events), so
//! applying an event twice, or a batch again after a crash before its checkpoint, changes
//! nothing. Sequence holes are normal and never checked.

use sovd_domain::Event;
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

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn streams(&self) -> &'static [StreamName] {
        match self {
            Self::Commands => &[StreamName::Commands, StreamName::Responses],
            Self::Vehicles => &[StreamName::Fleet],
            Self::Users => &[StreamName::Iam],
            Self::Audit => {
                &[StreamName::Commands, StreamName::Responses, StreamName::Fleet, StreamName::Iam, StreamName::Ops]
            }
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

/// Applies a batch and records its checkpoint in one transaction. Events that cannot be
/// applied are set aside ([`crate::quarantine`]), so the checkpoint always moves on.
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
    crate::quarantine::apply_or_set_aside(&mut tx, projection, stream, events).await?;
    set_checkpoint(&mut tx, projection, stream, last).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves `projection`'s checkpoint on `stream` forward to `last` (never back).
pub async fn set_checkpoint(
    conn: &mut PgConnection,
    projection: Projection,
    stream: StreamName,
    last: u64,
) -> Result<(), ProjectionError> {
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
    .execute(conn)
    .await?;
    Ok(())
}

/// The last sequence of `stream` applied to `projection` (0 = nothing yet).
pub async fn checkpoint<'e>(
    db: impl sqlx::PgExecutor<'e>,
    projection: Projection,
    stream: StreamName,
) -> Result<u64, ProjectionError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT last_sequence FROM projection_checkpoints WHERE projection = $1 AND stream = $2")
            .bind(projection.name())
            .bind(stream.as_str())
            .fetch_optional(db)
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

/// Applies `events` inside the caller's transaction. Commands and the audit trail take a
/// batch in a few multi-row statements; vehicles and users, whose events are few, take one
/// statement per event.
pub async fn apply_events(
    conn: &mut PgConnection,
    projection: Projection,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    match projection {
        Projection::Commands => crate::commands::CommandRows::from_events(events)?.upsert(conn).await,
        Projection::Audit => crate::audit::AuditRows::from_events(events).append(conn).await,
        Projection::Vehicles | Projection::Users => {
            for stored in events {
                apply_one(conn, stored).await?;
            }
            Ok(())
        }
    }
}

async fn apply_one(conn: &mut PgConnection, stored: &StoredEvent) -> Result<(), ProjectionError> {
    match &stored.event {
        Event::VehicleRegistered(e) => {
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
        Event::VehicleConnected(e) => {
            sqlx::query("UPDATE vehicles SET connection_status = 'connected', last_seen_at = $2 WHERE vin = $1")
                .bind(e.vin.as_str())
                .bind(e.at)
                .execute(conn)
                .await?;
        }
        Event::VehicleDisconnected(e) => {
            sqlx::query("UPDATE vehicles SET connection_status = 'disconnected', last_seen_at = $2 WHERE vin = $1")
                .bind(e.vin.as_str())
                .bind(e.at)
                .execute(conn)
                .await?;
        }
        Event::VehicleCircuitChanged(e) => {
            sqlx::query("UPDATE vehicles SET circuit_state = $2 WHERE vin = $1")
                .bind(e.vin.as_str())
                .bind(&e.state)
                .execute(conn)
                .await?;
        }
        Event::UserCreated(e) => {
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
        Event::RoleChanged(e) => {
            sqlx::query("UPDATE users SET role = $2 WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .bind(e.role.as_str())
                .execute(conn)
                .await?;
        }
        Event::PasswordChanged(e) => {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .bind(&e.password_hash)
                .execute(conn)
                .await?;
        }
        Event::UserDeactivated(e) => {
            sqlx::query("UPDATE users SET active = false WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .execute(conn)
                .await?;
        }
        Event::UserReactivated(e) => {
            sqlx::query("UPDATE users SET active = true WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .execute(conn)
                .await?;
        }
        Event::PermissionGranted(e) => {
            sqlx::query(
                "UPDATE users SET permissions = array_append(array_remove(permissions, $2), $2) WHERE user_id = $1",
            )
            .bind(e.user_id.as_uuid())
            .bind(e.permission.as_str())
            .execute(conn)
            .await?;
        }
        Event::PermissionRevoked(e) => {
            sqlx::query("UPDATE users SET permissions = array_remove(permissions, $2) WHERE user_id = $1")
                .bind(e.user_id.as_uuid())
                .bind(e.permission.as_str())
                .execute(conn)
                .await?;
        }
        // Events of other projections, or ones this read model does not show yet.
        _ => {}
    }
    Ok(())
}
