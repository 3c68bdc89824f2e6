//! `GET /api/v1/audit` for admins: who did what, filterable, as JSON or CSV.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sovd_projections::queries::{self, AuditFilter};

use super::commands::parse_time;
use super::csv;
use super::error::ApiError;
use super::extract::{Admin, ApiQuery};
use super::state::SharedState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// At or after (ISO 8601).
    from: Option<String>,
    /// At or before (ISO 8601).
    to: Option<String>,
    /// A username, or `system`.
    actor: Option<String>,
    /// For example login_failed, command_submitted, user_created.
    action: Option<String>,
    /// A VIN.
    vehicle: Option<String>,
    /// 1 to 100 (default 50).
    limit: Option<i64>,
    /// Rows to skip (default 0).
    offset: Option<i64>,
    /// json (default) or csv.
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "newest first; X-Total-Count has the total; format=csv for a file", body = super::openapi::AuditPage),
        (status = 400, description = "invalid query parameter", body = super::openapi::ErrorEnvelope),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "admins only", body = super::openapi::ErrorEnvelope)))]
pub async fn list(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let (csv, limit, offset) = csv::listing(query.format.as_deref(), query.limit, query.offset)?;
    let filter = AuditFilter {
        from: parse_time(&query.from, "from")?,
        to: parse_time(&query.to, "to")?,
        actor: query.actor.filter(|a| !a.is_empty()),
        action: query.action.filter(|a| !a.is_empty()),
        vin: query.vehicle.filter(|v| !v.is_empty()).map(|v| v.to_uppercase()),
        limit,
        offset,
    };
    let (entries, total) = queries::list_audit(&state.pool, &filter).await?;
    if csv {
        let header = "occurred_at,actor,actor_name,action,target,vin,details,correlation_id,stream,stream_sequence";
        let rows = entries.iter().map(|e| {
            vec![
                e.occurred_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                e.actor.clone(),
                e.actor_name.clone().unwrap_or_default(),
                e.action.clone(),
                e.target.clone(),
                e.vin.clone().unwrap_or_default(),
                e.details.to_string(),
                e.correlation_id.clone(),
                e.stream.clone(),
                e.stream_sequence.to_string(),
            ]
        });
        return Ok(csv::response("audit.csv", &csv::document(header, rows)));
    }
    let mut response = Json(json!({"entries": entries, "limit": limit, "offset": offset})).into_response();
    response.headers_mut().insert("x-total-count", HeaderValue::from(total));
    Ok(response)
}
