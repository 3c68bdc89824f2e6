//! Submitting and reading diagnostic commands. Submitting appends CommandRequested and
//! nothing else: the gateway never talks to a vehicle and never writes Postgres.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sovd_domain::events::CommandRequested;
use sovd_domain::lifecycle::{self, CommandIntent, CommandState, CommandStatus};
use sovd_domain::{CommandId, Event, Operation, UserId, VehicleId, Vin};
use sovd_nats::{AppendOptions, EventMeta, StreamName, Subject};
use sovd_projections::queries::{self, CommandFilter, CommandView, ResponseView};
use time::OffsetDateTime;
use uuid::Uuid;

use super::csv;
use super::error::ApiError;
use super::extract::{ApiQuery, Caller, JsonObject};
use super::middleware::RequestId;
use super::state::SharedState;
use super::vehicles::parse_uuid;

/// The command as the API shows it, with where to watch it live.
fn command_json(view: &CommandView) -> Value {
    let mut view = view.clone();
    view.stream_url = format!("/ws/responses/{}", view.command_id);
    serde_json::to_value(view).unwrap_or_default()
}

/// Bounds of the per-command timeout a request may ask for (the default is the connector's).
const MIN_TIMEOUT_MS: u64 = 1_000;
const MAX_TIMEOUT_MS: u64 = 300_000;

/// What an `Idempotency-Key` remembers: the command it created and the request it came with.
#[derive(serde::Serialize, serde::Deserialize)]
struct IdempotencyRecord {
    command_id: Uuid,
    fingerprint: String,
}

fn idempotency_key(headers: &HeaderMap, user_id: Uuid) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let key = raw.to_str().unwrap_or_default();
    let ok = (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'",
        ));
    }
    Ok(Some(format!("{user_id}.{key}")))
}

fn fingerprint(body: &JsonObject) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::to_string(&body.0).unwrap_or_default();
    Sha256::digest(canonical.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The command an earlier request with the same key created, if any; a different request
/// under a used key is refused. `Ok(Some(id))` with the id this request must use.
async fn claim_key(state: &SharedState, key: &str, body: &JsonObject, fresh: CommandId) -> Result<CommandId, ApiError> {
    let record = IdempotencyRecord { command_id: fresh.as_uuid(), fingerprint: fingerprint(body) };
    let value = bytes::Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
    match state.buckets.idempotency.create(key, value).await {
        Ok(_) => Ok(fresh),
        Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
            let stored = state.buckets.idempotency.get(key).await.map_err(|_| ApiError::event_store_unavailable())?;
            let earlier: IdempotencyRecord =
                stored.and_then(|v| serde_json::from_slice(&v).ok()).ok_or_else(ApiError::event_store_unavailable)?;
            if earlier.fingerprint != record.fingerprint {
                return Err(ApiError::invalid_field(
                    "Idempotency-Key",
                    "was already used for a different request; use a new key for a new command",
                ));
            }
            Ok(CommandId::from_uuid(earlier.command_id))
        }
        Err(e) => {
            tracing::warn!(error = %e, "idempotency store unavailable");
            Err(ApiError::event_store_unavailable())
        }
    }
}

#[utoipa::path(post, path = "/api/v1/commands", tag = "commands",
    request_body = super::openapi::SubmitRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retrying with the same key returns the same command")),
    responses((status = 202, description = "accepted; watch it at stream_url", body = CommandView),
        (status = 400, description = "malformed JSON", body = super::openapi::ErrorEnvelope),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "viewers may not submit; an operation that changes the vehicle needs the vehicle-changes permission", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "unknown vehicle", body = super::openapi::ErrorEnvelope),
        (status = 413, description = "body over 64 KiB", body = super::openapi::ErrorEnvelope),
        (status = 415, description = "not application/json", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "invalid operation or parameters (the field is named), or a change to the vehicle without \"confirm\": true", body = super::openapi::ErrorEnvelope),
        (status = 429, description = "too many submissions", body = super::openapi::ErrorEnvelope),
        (status = 503, description = "NATS or Postgres unavailable", body = super::openapi::ErrorEnvelope)))]
pub async fn submit(
    State(state): State<SharedState>,
    caller: Caller,
    axum::Extension(request_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !caller.role.can_submit() {
        return Err(ApiError::forbidden("your role (viewer) may read but not submit commands"));
    }
    body.only(&["command_name", "vehicle_id", "command_params", "timeout_ms", "confirm"])?;
    let timeout_ms = match body.0.get("timeout_ms") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(ms) if (MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&ms) => u32::try_from(ms).ok(),
            _ => {
                return Err(ApiError::invalid_field(
                    "timeout_ms",
                    format!("must be a whole number of milliseconds from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}"),
                ));
            }
        },
    };
    let command_name = body.required_str("command_name")?;
    let vehicle_ref = body.required_str("vehicle_id")?;
    let params = match body.0.get("command_params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(ApiError::invalid_field("command_params", "must be a JSON object")),
    };
    let operation = Operation::parse(command_name, &params).map_err(|e| match e {
        sovd_domain::ParamError::UnknownOperation(_) => ApiError::unknown_operation(e),
        other => ApiError::invalid_params(other),
    })?;
    super::guard::vehicle_change(&caller, &operation, &body)?;
    // The old contract takes the vehicle's UUID; a VIN is accepted too.
    let vehicle = match Uuid::parse_str(vehicle_ref) {
        Ok(id) => queries::get_vehicle(&state.pool, id).await?,
        Err(_) => match Vin::parse(vehicle_ref) {
            Ok(vin) => queries::get_vehicle_by_vin(&state.pool, vin.as_str()).await?,
            Err(_) => {
                return Err(ApiError::invalid_field("vehicle_id", "must be a vehicle UUID or a 17-character VIN"));
            }
        },
    }
    .ok_or_else(|| ApiError::vehicle_not_found(vehicle_ref))?;
    let vin = Vin::parse(&vehicle.vin).map_err(|_| ApiError::internal())?;

    let mut command_id = CommandId::new();
    if let Some(key) = idempotency_key(&headers, caller.user_id)? {
        command_id = claim_key(&state, &key, &body, command_id).await?;
        // A retry: answer with the command the first request created.
        if let Ok(view) = load(&state, &caller, &command_id.to_string()).await {
            return Ok((StatusCode::ACCEPTED, Json(command_json(&view))));
        }
    }
    let requested = CommandRequested {
        command_id,
        vehicle_id: VehicleId::from_uuid(vehicle.vehicle_id),
        vin: vin.clone(),
        user_id: UserId::from_uuid(caller.user_id),
        operation,
        requested_at: OffsetDateTime::now_utc(),
        timeout_ms,
    };
    let events = lifecycle::decide(&CommandState::default(), CommandIntent::Submit(requested.clone()))
        .map_err(|_| ApiError::internal())?;
    let meta = EventMeta::new(request_id.0.clone(), format!("user:{}", caller.user_id));
    let started = std::time::Instant::now();
    for event in &events {
        state
            .store
            .append(&Subject::command(&vin, command_id), event, &meta, AppendOptions::msg_id(command_id.to_string()))
            .await?;
    }
    state.metrics.event_append_seconds.observe(started.elapsed().as_secs_f64());
    tracing::info!(command_id = %command_id, vin = %vin, operation = %requested.operation.name(), "command submitted");
    let view = view_from_request(&requested, &request_id.0);
    Ok((StatusCode::ACCEPTED, Json(command_json(&view))))
}

fn view_from_request(requested: &CommandRequested, correlation_id: &str) -> CommandView {
    CommandView {
        command_id: requested.command_id.as_uuid(),
        user_id: requested.user_id.as_uuid(),
        vehicle_id: requested.vehicle_id.as_uuid(),
        vin: requested.vin.to_string(),
        command_name: requested.operation.name().as_str().to_owned(),
        command_params: requested.operation.params_json(),
        status: CommandStatus::Pending.as_str().to_owned(),
        error_message: None,
        negative_response: None,
        attempts: 0,
        correlation_id: Some(correlation_id.to_owned()),
        submitted_at: requested.requested_at,
        completed_at: None,
        stream_url: String::new(),
    }
}

/// The command from the read model, or straight from the log when the projection has not
/// caught up yet (read-your-writes right after a submit).
pub(crate) async fn load(state: &SharedState, caller: &Caller, raw_id: &str) -> Result<CommandView, ApiError> {
    let id = parse_uuid(raw_id, "command_id")?;
    let view = match queries::get_command(&state.pool, id).await? {
        Some(view) => Some(view),
        None => {
            let filter = format!("sovd.cmd.*.{id}");
            state.store.read_filtered(StreamName::Commands, &filter).await?.into_iter().find_map(|stored| match stored
                .event
            {
                Event::CommandRequested(requested) => Some(view_from_request(&requested, &stored.meta.correlation_id)),
                _ => None,
            })
        }
    };
    // Someone else's command is reported as missing, not as forbidden: ids are not hints.
    view.filter(|v| caller.may_read_command_of(v.user_id)).ok_or_else(|| ApiError::command_not_found(id))
}

#[utoipa::path(get, path = "/api/v1/commands/{command_id}", tag = "commands",
    params(("command_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "the command", body = CommandView),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such command (or not yours)", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "not a UUID", body = super::openapi::ErrorEnvelope)))]
pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    Path(command_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(command_json(&load(&state, &caller, &command_id).await?)))
}

#[utoipa::path(get, path = "/api/v1/commands/{command_id}/responses", tag = "commands",
    params(("command_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "its response chunks, in order", body = [ResponseView]),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such command (or not yours)", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "not a UUID", body = super::openapi::ErrorEnvelope)))]
pub async fn responses(
    State(state): State<SharedState>,
    caller: Caller,
    Path(command_id): Path<String>,
) -> Result<Json<Vec<ResponseView>>, ApiError> {
    let view = load(&state, &caller, &command_id).await?;
    Ok(Json(queries::list_responses(&state.pool, view.command_id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CommandQuery {
    /// The vehicle's UUID.
    vehicle_id: Option<String>,
    /// pending, queued, in_progress, completed, failed, timed_out or cancelled.
    status: Option<String>,
    /// A user's UUID (admins and viewers; engineers see only their own).
    user_id: Option<String>,
    /// Submitted at or after (ISO 8601 date or date-time).
    start_date: Option<String>,
    /// Submitted at or before (ISO 8601 date or date-time).
    end_date: Option<String>,
    /// 1 to 100 (default 50).
    limit: Option<i64>,
    /// Rows to skip (default 0).
    offset: Option<i64>,
    /// `csv` for a spreadsheet export of up to 10,000 rows.
    format: Option<String>,
}

pub fn parse_time(raw: &Option<String>, field: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    raw.as_deref()
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339)
                .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
                .or_else(|_| {
                    time::Date::parse(s, &time::macros::format_description!("[year]-[month]-[day]"))
                        .map(|d| d.midnight().assume_utc())
                })
                .map_err(|_| {
                    ApiError::invalid_query(format!("{field} must be an ISO 8601 date or date-time, got {s:?}"))
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/api/v1/commands", tag = "commands", params(CommandQuery),
    responses((status = 200, description = "newest first; engineers see their own; X-Total-Count has the total", body = super::openapi::CommandPage),
        (status = 400, description = "invalid query parameter", body = super::openapi::ErrorEnvelope),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "engineers may list only their own", body = super::openapi::ErrorEnvelope)))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CommandQuery>,
) -> Result<Response, ApiError> {
    let (csv, limit, offset) = csv::listing(query.format.as_deref(), query.limit, query.offset)?;
    if let Some(status) = &query.status
        && CommandStatus::parse(status).is_none()
    {
        return Err(ApiError::invalid_query(format!(
            "status must be one of pending, queued, in_progress, completed, failed, timed_out, cancelled; got {status:?}"
        )));
    }
    let uuid_param = |raw: &Option<String>, field: &str| -> Result<Option<Uuid>, ApiError> {
        raw.as_deref()
            .map(|s| {
                Uuid::parse_str(s).map_err(|_| ApiError::invalid_query(format!("{field} must be a UUID, got {s:?}")))
            })
            .transpose()
    };
    let requested_user = uuid_param(&query.user_id, "user_id")?;
    let user_id = match caller.role {
        sovd_domain::Role::Engineer => {
            if requested_user.is_some_and(|u| u != caller.user_id) {
                return Err(ApiError::forbidden("engineers can list only their own commands"));
            }
            Some(caller.user_id)
        }
        _ => requested_user,
    };
    let filter = CommandFilter {
        vehicle_id: uuid_param(&query.vehicle_id, "vehicle_id")?,
        status: query.status,
        user_id,
        start: parse_time(&query.start_date, "start_date")?,
        end: parse_time(&query.end_date, "end_date")?,
        limit,
        offset,
    };
    let commands = queries::list_commands(&state.pool, &filter).await?;
    if csv {
        return Ok(csv::response("commands.csv", &commands_csv(&commands)));
    }
    let total = queries::count_commands(&state.pool, &filter).await?;
    let mut response = Json(json!({
        "commands": commands.iter().map(command_json).collect::<Vec<_>>(),
        "limit": limit,
        "offset": offset,
    }))
    .into_response();
    response.headers_mut().insert("x-total-count", HeaderValue::from(total));
    Ok(response)
}

fn rfc3339(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_default()
}

fn commands_csv(commands: &[CommandView]) -> String {
    csv::document(
        "command_id,submitted_at,completed_at,user_id,vehicle_id,vin,command_name,command_params,status,error_message",
        commands.iter().map(|c| {
            vec![
                c.command_id.to_string(),
                rfc3339(Some(c.submitted_at)),
                rfc3339(c.completed_at),
                c.user_id.to_string(),
                c.vehicle_id.to_string(),
                c.vin.clone(),
                c.command_name.clone(),
                c.command_params.to_string(),
                c.status.clone(),
                c.error_message.clone().unwrap_or_default(),
            ]
        }),
    )
}

#[utoipa::path(post, path = "/api/v1/commands/{command_id}/cancel", tag = "commands",
    params(("command_id" = uuid::Uuid, Path)),
    responses((status = 202, description = "cancellation requested; honoured between chunks", body = CommandView),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "viewers may not cancel", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such command (or not yours)", body = super::openapi::ErrorEnvelope),
        (status = 409, description = "already ended", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "not a UUID", body = super::openapi::ErrorEnvelope)))]
pub async fn cancel(
    State(state): State<SharedState>,
    caller: Caller,
    axum::Extension(request_id): axum::Extension<RequestId>,
    Path(command_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !caller.role.can_submit() {
        return Err(ApiError::forbidden("your role (viewer) may read but not cancel commands"));
    }
    let mut view = load(&state, &caller, &command_id).await?;
    let id = CommandId::from_uuid(view.command_id);
    let vin = Vin::parse(&view.vin).map_err(|_| ApiError::internal())?;
    // The log, not the read model, says whether it already ended.
    let last = state.store.last_on_subject(StreamName::Responses, &Subject::responses_of(id)).await?;
    let mut command_state =
        CommandState { command_id: Some(id), status: Some(CommandStatus::Pending), ..Default::default() };
    if let Some(last) = &last {
        command_state = lifecycle::evolve(command_state, &last.event);
    }
    let intent =
        CommandIntent::RequestCancel { user_id: UserId::from_uuid(caller.user_id), at: OffsetDateTime::now_utc() };
    let events = match lifecycle::decide(&command_state, intent) {
        Ok(events) => events,
        Err(lifecycle::DomainError::AlreadyTerminal(status)) => return Err(ApiError::command_finished(status)),
        Err(_) => return Err(ApiError::internal()),
    };
    let meta = EventMeta::new(request_id.0.clone(), format!("user:{}", caller.user_id));
    for event in &events {
        let options = AppendOptions::msg_id(format!("cancel-{id}"));
        state.store.append(&Subject::command(&vin, id), event, &meta, options).await?;
    }
    tracing::info!(command_id = %id, "cancellation requested");
    if let Some(status) = command_state.status {
        view.status = status.as_str().to_owned();
    }
    Ok((StatusCode::ACCEPTED, Json(command_json(&view))))
}

/// The operation catalogue, for clients that build their forms from it.
#[utoipa::path(get, path = "/api/v1/operations", tag = "commands",
    responses((status = 200, description = "the operation catalogue", body = [super::openapi::OperationInfo]),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope)))]
pub async fn operations(_caller: Caller) -> Json<Value> {
    let operations: Vec<Value> = sovd_domain::catalogue::CATALOGUE
        .iter()
        .map(|spec| {
            json!({
                "name": spec.name.as_str(),
                "description": spec.description,
                "idempotent": spec.idempotent,
                "risk": spec.name.highest_risk().as_str(),
                "params": spec.params.iter().map(|p| json!({
                    "name": p.name,
                    "kind": p.kind.name(),
                    "required": p.required,
                    "format": p.kind.format(),
                    "pattern": p.kind.pattern(),
                    "choices": p.kind.choices(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(Value::Array(operations))
}

/// The dashboard figures; engineers see their own commands.
#[utoipa::path(get, path = "/api/v1/stats", tag = "commands",
    responses((status = 200, description = "dashboard figures", body = queries::Stats),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope)))]
pub async fn stats(State(state): State<SharedState>, caller: Caller) -> Result<Json<queries::Stats>, ApiError> {
    let user = (caller.role == sovd_domain::Role::Engineer).then_some(caller.user_id);
    Ok(Json(queries::stats(&state.pool, user).await?))
}
