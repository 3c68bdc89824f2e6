//! Read queries the gateway uses. Row types serialize to the API shapes of the old contract.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ProjectionError;

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct VehicleView {
    pub vehicle_id: Uuid,
    pub vin: String,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub connection_status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CommandView {
    pub command_id: Uuid,
    pub user_id: Uuid,
    pub vehicle_id: Uuid,
    pub vin: String,
    pub command_name: String,
    pub command_params: Value,
    pub status: String,
    pub error_message: Option<String>,
    pub attempts: i32,
    pub correlation_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ResponseView {
    pub response_id: Uuid,
    pub command_id: Uuid,
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

const VEHICLE_COLUMNS: &str = "vehicle_id, vin, make, model, year, connection_status, last_seen_at, metadata";
const COMMAND_COLUMNS: &str = "command_id, user_id, vehicle_id, vin, command_name, command_params, status, \
     error_message, attempts, correlation_id, submitted_at, completed_at";

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

/// Newest first.
pub async fn list_commands(pool: &sqlx::PgPool, filter: &CommandFilter) -> Result<Vec<CommandView>, ProjectionError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COMMAND_COLUMNS} FROM commands
         WHERE submitted_at IS NOT NULL
           AND ($1::uuid IS NULL OR vehicle_id = $1)
           AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR user_id = $3)
           AND ($4::timestamptz IS NULL OR submitted_at >= $4)
           AND ($5::timestamptz IS NULL OR submitted_at <= $5)
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
