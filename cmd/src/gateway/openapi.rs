//! The OpenAPI 3.1 document, generated from the handlers' annotations (`/openapi.json`), and
//! a page that renders it (`/docs`) without anything from outside the binary.

use axum::Json;
use axum::response::Response;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{audit, auth, commands, events, health, users, vehicles};
use sovd_projections::queries::{AuditEntry, CommandView, ResponseView, Stats, UserView, VehicleView};

/// Every error: `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// AUTH_001..006, VAL_101..107, VEH_301..303, USR_401..403, RATE_001, SYS_501..504, DB_201.
    code: String,
    /// What went wrong, naming the field or parameter when there is one.
    message: String,
    /// Also in the `X-Request-ID` header; quote it when reporting a problem.
    correlation_id: String,
    timestamp: String,
    path: String,
}

/// How any endpoint that takes a JSON body refuses a bad one.
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    #[response(status = 400, description = "malformed JSON")]
    BadJson(ErrorEnvelope),
    #[response(status = 413, description = "body over 64 KiB")]
    TooLarge(ErrorEnvelope),
    #[response(status = 415, description = "not application/json")]
    NotJson(ErrorEnvelope),
    #[response(status = 422, description = "a field is missing, of the wrong type or unknown (named)")]
    Invalid(ErrorEnvelope),
}

#[derive(Serialize, ToSchema)]
pub struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    /// Rotates: every refresh returns a new one, and the old one stops working.
    refresh_token: String,
    token_type: String,
    /// Seconds the access token lives (900).
    expires_in: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    user_id: uuid::Uuid,
    username: String,
    role: String,
    email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    message: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubmitRequest {
    /// ReadDTC, ClearDTC or ReadDataByID (see `GET /api/v1/operations`).
    command_name: String,
    /// The vehicle's UUID, or its 17-character VIN.
    vehicle_id: String,
    /// The operation's parameters; unknown ones are refused.
    #[schema(value_type = Object)]
    command_params: serde_json::Value,
    /// How long the vehicle may take, 1,000 to 300,000 ms (default: the connector's, 30 s).
    timeout_ms: Option<u32>,
    /// Required (`true`) for an operation that changes the vehicle (risk `change` in
    /// `GET /api/v1/operations`), which also needs the `vehicle-changes` permission.
    confirm: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct CommandPage {
    commands: Vec<CommandView>,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditEntry>,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
pub struct OperationParam {
    name: String,
    /// ecu_address, data_id, dtc_code, routine_id, status_mask, hex_data or choice.
    kind: String,
    required: bool,
    /// What to type, for people.
    format: String,
    /// The same rule as a regular expression, for clients that check before sending.
    pattern: String,
    /// For `choice` parameters, the words allowed.
    choices: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct OperationInfo {
    name: String,
    description: String,
    /// False for operations that change the vehicle: they are never run twice.
    idempotent: bool,
    params: Vec<OperationParam>,
}

#[derive(Serialize, ToSchema)]
pub struct VehicleStatus {
    connection_status: String,
    last_seen_at: Option<String>,
    /// ok, degraded (circuit breaker not closed) or unknown (not connected).
    health: String,
    /// closed, open or half_open.
    circuit_breaker: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreateUserRequest {
    username: String,
    password: String,
    /// viewer, engineer or admin.
    role: String,
    email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UpdateUserRequest {
    role: Option<String>,
    active: Option<bool>,
    /// The whole set the user should hold beyond the role: `vehicle-changes` runs operations
    /// that change a vehicle.
    permissions: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ResetPasswordRequest {
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sovd",
        description = "Send diagnostic requests to vehicles and watch the answers stream back. Live responses: \
                       `WS /ws/responses/{command_id}?token=<access token>&from_seq=<last stream_sequence>`.",
    ),
    paths(
        auth::login, auth::refresh, auth::logout, auth::me,
        commands::operations, commands::stats,
        vehicles::list, vehicles::get, vehicles::status,
        commands::submit, commands::list, commands::get, commands::responses, commands::cancel,
        audit::list, events::list,
        users::list, users::create, users::update, users::reset_password, users::unlock,
        health::live, health::ready,
    ),
    components(schemas(
        ErrorEnvelope, ErrorBody, LoginRequest, RefreshRequest, TokenResponse, Me, Message, SubmitRequest,
        CommandPage, AuditPage, OperationInfo, OperationParam, VehicleStatus, CreateUserRequest,
        UpdateUserRequest, ResetPasswordRequest, Health, VehicleView, CommandView, ResponseView, UserView,
        AuditEntry, Stats,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

pub async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

const DOCS_HTML: &str = include_str!("ui/docs.html");
const DOCS_JS: &str = include_str!("ui/docs.js");

pub async fn docs() -> Response {
    super::ui::asset(DOCS_HTML, "text/html; charset=utf-8")
}

pub async fn docs_js() -> Response {
    super::ui::asset(DOCS_JS, "text/javascript; charset=utf-8")
}
