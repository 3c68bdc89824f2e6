//! Read queries the gateway uses. Row types serialize to the API shapes of the old contract.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ProjectionError;

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VehicleView {
    pub vehicle_id: Uuid,
    pub vin: String,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub connection_status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Value,
    /// The connector's circuit breaker for this vehicle: closed, open or half_open.
    pub circuit_state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandView {
    pub command_id: Uuid,
    pub user_id: Uuid,
    pub vehicle_id: Uuid,
    pub vin: String,
    pub command_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub command_params: Value,
    pub status: String,
    pub error_message: Option<String>,
    /// The ECU's refusal when it ended the command: `{"code": "0x31", "name": "requestOutOfRange"}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub negative_response: Option<Value>,
    pub attempts: i32,
    pub correlation_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Where to watch it live (`WS /ws/responses/{command_id}`); filled in by the gateway.
    #[sqlx(skip)]
    pub stream_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResponseView {
    pub response_id: Uuid,
    pub command_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub response_payload: Value,
    pub sequence_number: i32,
    pub is_final: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: Uuid,
    pub username: String,
    pub role: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub active: bool,
}

#[derive(Debug, Clone, Default)]
pub struct VehicleFilter {
    pub status: Option<String>,
    /// VIN substring, case-insensitive.
    pub search: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct CommandFilter {
    pub vehicle_id: Option<Uuid>,
    pub status: Option<String>,
    pub user_id: Option<Uuid>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
    pub limit: i64,
    pub offset: i64,
}

const VEHICLE_COLUMNS: &str =
    "vehicle_id, vin, make, model, year, connection_status, last_seen_at, metadata, circuit_state";
const COMMAND_COLUMNS: &str = "command_id, user_id, vehicle_id, vin, command_name, command_params, status, \
     error_message, negative_response, attempts, correlation_id, submitted_at, completed_at";

/// Vehicles matching the filter, and how many match in all.
pub async fn list_vehicles(
    pool: &sqlx::PgPool,
    filter: &VehicleFilter,
) -> Result<(Vec<VehicleView>, i64), ProjectionError> {
    let pattern = filter
        .search
        .as_ref()
        .map(|s| format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let where_clause = "WHERE ($1::text IS NULL OR connection_status = $1) AND ($2::text IS NULL OR vin ILIKE $2)";
    let rows = sqlx::query_as::<_, VehicleView>(sqlx::AssertSqlSafe(format!(
        "SELECT {VEHICLE_COLUMNS} FROM vehicles {where_clause} ORDER BY vin LIMIT $3 OFFSET $4"
    )))
    .bind(&filter.status)
    .bind(&pattern)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM vehicles {where_clause}")))
        .bind(&filter.status)
        .bind(&pattern)
        .fetch_one(pool)
        .await?;
    Ok((rows, total))
}

pub async fn get_vehicle(pool: &sqlx::PgPool, vehicle_id: Uuid) -> Result<Option<VehicleView>, ProjectionError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {VEHICLE_COLUMNS} FROM vehicles WHERE vehicle_id = $1")))
        .bind(vehicle_id)
        .fetch_optional(pool)
        .await?)
}

pub async fn get_vehicle_by_vin(pool: &sqlx::PgPool, vin: &str) -> Result<Option<VehicleView>, ProjectionError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {VEHICLE_COLUMNS} FROM vehicles WHERE vin = $1")))
        .bind(vin)
        .fetch_optional(pool)
        .await?)
}

/// A command once its request has been projected (status events alone are not enough).
pub async fn get_command(pool: &sqlx::PgPool, command_id: Uuid) -> Result<Option<CommandView>, ProjectionError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE command_id = $1 AND submitted_at IS NOT NULL"
    )))
    .bind(command_id)
    .fetch_optional(pool)
    .await?)
}

/// The filter of `CommandFilter` ($1 vehicle, $2 status, $3 user, $4 from, $5 to); a
/// command appears only once its request has been projected.
const COMMAND_WHERE: &str = "WHERE submitted_at IS NOT NULL
           AND ($1::uuid IS NULL OR vehicle_id = $1)
           AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR user_id = $3)
           AND ($4::timestamptz IS NULL OR submitted_at >= $4)
           AND ($5::timestamptz IS NULL OR submitted_at <= $5)";

/// Newest first.
pub async fn list_commands(pool: &sqlx::PgPool, filter: &CommandFilter) -> Result<Vec<CommandView>, ProjectionError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COMMAND_COLUMNS} FROM commands {COMMAND_WHERE}
         ORDER BY submitted_at DESC, command_id DESC
         LIMIT $6 OFFSET $7"
    )))
    .bind(filter.vehicle_id)
    .bind(&filter.status)
    .bind(filter.user_id)
    .bind(filter.start)
    .bind(filter.end)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(pool)
    .await?)
}

pub async fn list_responses(pool: &sqlx::PgPool, command_id: Uuid) -> Result<Vec<ResponseView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT response_id, command_id, response_payload, sequence_number, is_final, received_at
         FROM responses WHERE command_id = $1 ORDER BY sequence_number",
    )
    .bind(command_id)
    .fetch_all(pool)
    .await?)
}

pub async fn user_by_username(pool: &sqlx::PgPool, username: &str) -> Result<Option<UserRow>, ProjectionError> {
    Ok(sqlx::query_as("SELECT user_id, username, role, email, password_hash, active FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?)
}

pub async fn user_by_id(pool: &sqlx::PgPool, user_id: Uuid) -> Result<Option<UserRow>, ProjectionError> {
    Ok(sqlx::query_as("SELECT user_id, username, role, email, password_hash, active FROM users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?)
}

/// Cheap round trip for readiness checks.
pub async fn ping(pool: &sqlx::PgPool) -> Result<(), ProjectionError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// How many commands match the filter (for `X-Total-Count`).
pub async fn count_commands(pool: &sqlx::PgPool, filter: &CommandFilter) -> Result<i64, ProjectionError> {
    let (total,): (i64,) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM commands {COMMAND_WHERE}")))
            .bind(filter.vehicle_id)
            .bind(&filter.status)
            .bind(filter.user_id)
            .bind(filter.start)
            .bind(filter.end)
            .fetch_one(pool)
            .await?;
    Ok(total)
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub user_id: Uuid,
    pub username: String,
    pub role: String,
    pub email: Option<String>,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Granted beyond the role, e.g. `vehicle-changes`.
    pub permissions: Vec<String>,
}

pub async fn list_users(pool: &sqlx::PgPool) -> Result<Vec<UserView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT user_id, username, role, email, active, created_at, permissions FROM users ORDER BY username",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn get_user(pool: &sqlx::PgPool, user_id: Uuid) -> Result<Option<UserView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT user_id, username, role, email, active, created_at, permissions FROM users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?)
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub actor: String,
    /// The actor's username when the actor is a user.
    pub actor_name: Option<String>,
    pub action: String,
    pub target: String,
    pub vin: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
    pub correlation_id: String,
    pub stream: String,
    pub stream_sequence: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// Username, or an actor string such as `system`.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub vin: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

const AUDIT_WHERE: &str = "WHERE ($1::timestamptz IS NULL OR a.occurred_at >= $1)
       AND ($2::timestamptz IS NULL OR a.occurred_at <= $2)
       AND ($3::text IS NULL OR u.username = $3 OR a.actor = $3)
       AND ($4::text IS NULL OR a.action = $4)
       AND ($5::text IS NULL OR a.vin = $5)";

/// Newest first, and how many match in all.
pub async fn list_audit(pool: &sqlx::PgPool, filter: &AuditFilter) -> Result<(Vec<AuditEntry>, i64), ProjectionError> {
    let from = "FROM audit_log a LEFT JOIN users u ON u.user_id = a.actor_user_id";
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT a.id, a.occurred_at, a.actor, u.username AS actor_name, a.action, a.target, a.vin, a.details,
                a.correlation_id, a.stream, a.stream_sequence
         {from} {AUDIT_WHERE} ORDER BY a.occurred_at DESC, a.id DESC LIMIT $6 OFFSET $7"
    )))
    .bind(filter.from)
    .bind(filter.to)
    .bind(&filter.actor)
    .bind(&filter.action)
    .bind(&filter.vin)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) {from} {AUDIT_WHERE}")))
        .bind(filter.from)
        .bind(filter.to)
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(&filter.vin)
        .fetch_one(pool)
        .await?;
    Ok((rows, total))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub vehicles_connected: i64,
    pub vehicles_total: i64,
    pub commands_last_hour: i64,
    /// Completed / ended in the last hour; `None` when nothing ended.
    pub success_rate_last_hour: Option<f64>,
    pub recent_commands: Vec<CommandView>,
}

/// The dashboard; `user_id` limits the command figures to one user (engineers).
pub async fn stats(pool: &sqlx::PgPool, user_id: Option<Uuid>) -> Result<Stats, ProjectionError> {
    let (vehicles_connected, vehicles_total): (i64, i64) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE connection_status = 'connected'), count(*) FROM vehicles")
            .fetch_one(pool)
            .await?;
    let (commands_last_hour, ended, completed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status_rank = 3), count(*) FILTER (WHERE status = 'completed')
         FROM commands
         WHERE submitted_at >= now() - interval '1 hour' AND ($1::uuid IS NULL OR user_id = $1)",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;
    let recent_commands = list_commands(pool, &CommandFilter { user_id, limit: 10, ..Default::default() }).await?;
    Ok(Stats {
        vehicles_connected,
        vehicles_total,
        commands_last_hour,
        success_rate_last_hour: (ended > 0).then(|| completed as f64 / ended as f64),
        recent_commands,
    })
}

/// Waits (up to `timeout`) until `projection` has applied `stream` up to `sequence`, so a
/// caller can read its own write. Returns whether it got there.
pub async fn wait_for_checkpoint(
    pool: &sqlx::PgPool,
    projection: crate::apply::Projection,
    stream: sovd_nats::StreamName,
    sequence: u64,
    timeout: std::time::Duration,
) -> Result<bool, ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if crate::apply::checkpoint(pool, projection, stream).await? >= sequence {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
