//! Fleet reads.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use sovd_projections::queries::{self, VehicleFilter, VehicleView};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::state::SharedState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VehicleQuery {
    /// connected, disconnected or error.
    status: Option<String>,
    /// Part of the VIN, any case.
    search: Option<String>,
    /// 1 to 100 (default 50).
    limit: Option<i64>,
    /// Rows to skip (default 0).
    offset: Option<i64>,
}

pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_query(format!("limit must be between 1 and 100, got {limit}")));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_query(format!("offset must be 0 or more, got {offset}")));
    }
    Ok((limit, offset))
}

#[utoipa::path(get, path = "/api/v1/vehicles", tag = "vehicles", params(VehicleQuery),
    responses((status = 200, description = "vehicles by VIN; X-Total-Count has the total", body = [VehicleView]),
        (status = 400, description = "invalid query parameter", body = super::openapi::ErrorEnvelope),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 429, description = "too many requests", body = super::openapi::ErrorEnvelope)))]
pub async fn list(
    State(state): State<SharedState>,
    _caller: Caller,
    ApiQuery(query): ApiQuery<VehicleQuery>,
) -> Result<(HeaderMap, Json<Vec<VehicleView>>), ApiError> {
    let (limit, offset) = page(query.limit, query.offset)?;
    if let Some(status) = &query.status
        && !["connected", "disconnected", "error"].contains(&status.as_str())
    {
        return Err(ApiError::invalid_query(format!(
            "status must be connected, disconnected or error, got {status:?}"
        )));
    }
    let filter = VehicleFilter {
        status: query.status,
        search: query.search.map(|s| s.to_uppercase()).filter(|s| !s.is_empty()),
        limit,
        offset,
    };
    let (vehicles, total) = queries::list_vehicles(&state.pool, &filter).await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(total));
    Ok((headers, Json(vehicles)))
}

pub fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid_field(what, format!("must be a UUID, got {raw:?}")))
}

async fn find(state: &SharedState, vehicle_id: &str) -> Result<VehicleView, ApiError> {
    let id = parse_uuid(vehicle_id, "vehicle_id")?;
    queries::get_vehicle(&state.pool, id).await?.ok_or_else(|| ApiError::vehicle_not_found(id))
}

#[utoipa::path(get, path = "/api/v1/vehicles/{vehicle_id}", tag = "vehicles",
    params(("vehicle_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "the vehicle", body = VehicleView),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such vehicle", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "not a UUID", body = super::openapi::ErrorEnvelope)))]
pub async fn get(
    State(state): State<SharedState>,
    _caller: Caller,
    Path(vehicle_id): Path<String>,
) -> Result<Json<VehicleView>, ApiError> {
    Ok(Json(find(&state, &vehicle_id).await?))
}

#[utoipa::path(get, path = "/api/v1/vehicles/{vehicle_id}/status", tag = "vehicles",
    params(("vehicle_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "connectivity", body = super::openapi::VehicleStatus),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such vehicle", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "not a UUID", body = super::openapi::ErrorEnvelope)))]
pub async fn status(
    State(state): State<SharedState>,
    _caller: Caller,
    Path(vehicle_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let vehicle = find(&state, &vehicle_id).await?;
    let health = match (vehicle.connection_status.as_str(), vehicle.circuit_state.as_str()) {
        ("connected", "closed") => "ok",
        ("connected", _) => "degraded",
        _ => "unknown",
    };
    Ok(Json(json!({
        "connection_status": vehicle.connection_status,
        "last_seen_at": vehicle.last_seen_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        "health": health,
        "circuit_breaker": vehicle.circuit_state,
    })))
}
