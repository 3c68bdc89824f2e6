//! Submitting and reading diagnostic commands. Submitting appends CommandRequested and
//! nothing else: the gateway never talks to a vehicle and never writes Postgres.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sovd_domain::events::CommandRequested;
use sovd_domain::lifecycle::{self, CommandIntent, CommandState, CommandStatus};
use sovd_domain::{CommandId, Event, Operation, UserId, VehicleId, Vin};
use sovd_nats::{AppendOptions, EventMeta, StreamName, Subject};
use sovd_projections::queries::{self, CommandFilter, CommandView, ResponseView};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller, JsonObject};
use super::middleware::RequestId;
use super::state::SharedState;
use super::vehicles::{page, parse_uuid};

fn command_json(view: &CommandView) -> Value {
    let mut value = serde_json::to_value(view).unwrap_or_default();
    if let Value::Object(map) = &mut value {
        map.insert("stream_url".into(), Value::String(format!("/ws/responses/{}", view.command_id)));
    }
    value
}

pub async fn submit(
    State(state): State<SharedState>,
    caller: Caller,
    axum::Extension(request_id): axum::Extension<RequestId>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !caller.role.can_submit() {
        return Err(ApiError::forbidden("your role (viewer) may read but not submit commands"));
    }
    body.only(&["command_name", "vehicle_id", "command_params"])?;
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

    let command_id = CommandId::new();
    let requested = CommandRequested {
        command_id,
        vehicle_id: VehicleId::from_uuid(vehicle.vehicle_id),
        vin: vin.clone(),
        user_id: UserId::from_uuid(caller.user_id),
        operation,
        requested_at: OffsetDateTime::now_utc(),
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
        attempts: 0,
        correlation_id: Some(correlation_id.to_owned()),
        submitted_at: requested.requested_at,
        completed_at: None,
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

pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    Path(command_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(command_json(&load(&state, &caller, &command_id).await?)))
}

pub async fn responses(
    State(state): State<SharedState>,
    caller: Caller,
    Path(command_id): Path<String>,
) -> Result<Json<Vec<ResponseView>>, ApiError> {
    let view = load(&state, &caller, &command_id).await?;
    Ok(Json(queries::list_responses(&state.pool, view.command_id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandQuery {
    vehicle_id: Option<String>,
    status: Option<String>,
    user_id: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn parse_time(raw: &Option<String>, field: &str) -> Result<Option<OffsetDateTime>, ApiError> {
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

pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CommandQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = page(query.limit, query.offset)?;
    if let Some(status) = &query.status
        && CommandStatus::parse(status).is_none()
    {
        return Err(ApiError::invalid_query(format!(
            "status must be one of pending, in_progress, completed, failed, timed_out, cancelled; got {status:?}"
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
    Ok(Json(json!({
        "commands": commands.iter().map(command_json).collect::<Vec<_>>(),
        "limit": limit,
        "offset": offset,
    })))
}
