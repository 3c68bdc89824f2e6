//! Every failure the API can answer, mapped to HTTP in one place. The envelope
//! (`{"error":{code,message,correlation_id,timestamp,path}}`) is completed by the request
//! middleware, which knows the correlation id and path; causes are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sovd_nats::{AppendError, ReadError};
use sovd_projections::ProjectionError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header, when the client may try again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_credentials() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTH_001", "invalid username or password")
    }
    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTH_002", "missing bearer token in the Authorization header")
    }
    pub fn invalid_token(why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTH_003", format!("invalid token: {why}"))
    }
    pub fn expired_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTH_004", "token has expired; log in again")
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AUTH_005", message)
    }
    pub fn inactive_account() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTH_006", "this account is deactivated")
    }
    pub fn locked(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTH_006", message)
    }
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_001",
            format!("too many requests; try again in {retry_after_secs} s"),
        )
    }
    pub fn command_finished(status: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::CONFLICT, "VEH_303", format!("command already ended as {status}"))
    }
    pub fn user_not_found(id: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "USR_401", format!("user {id} not found"))
    }
    pub fn username_taken() -> Self {
        Self::new(StatusCode::CONFLICT, "USR_402", "username: is taken")
    }
    pub fn user_change_refused(why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::CONFLICT, "USR_403", why.to_string())
    }
    pub fn bad_json(why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "VAL_101",
            format!("request body is not valid JSON for this endpoint: {why}"),
        )
    }
    pub fn unsupported_media_type() -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "VAL_102", "Content-Type must be application/json")
    }
    pub fn invalid_field(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "VAL_103", format!("{field}: {why}"))
    }
    pub fn invalid_query(why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VAL_104", format!("invalid query parameter: {why}"))
    }
    pub fn unknown_operation(why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "VAL_105", format!("command_name: {why}"))
    }
    pub fn invalid_params(why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "VAL_106", why.to_string())
    }
    pub fn body_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "VAL_107", "request body is larger than 64 KiB")
    }
    pub fn vehicle_not_found(id: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "VEH_301", format!("vehicle {id} not found"))
    }
    pub fn command_not_found(id: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "VEH_302", format!("command {id} not found"))
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYS_501",
            "internal error; quote the correlation id when reporting it",
        )
    }
    pub fn event_store_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "SYS_502", "event store (NATS) is unavailable; try again shortly")
    }
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "SYS_504", "no such endpoint")
    }
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "SYS_503", "method not allowed on this endpoint")
    }
    /// Too much at once: the request was not taken; `Retry-After` says when to come back.
    pub fn busy(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "SYS_505", message).with_retry_after(retry_after_secs)
    }
    pub fn body_timeout(secs: u64) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "VAL_108", format!("the request body did not arrive within {secs} s"))
    }
    /// The handler was stopped: whatever it was doing may or may not have happened.
    pub fn request_timeout(secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SYS_506",
            format!(
                "the request did not finish within {secs} s and was stopped; its outcome is unknown \
                 (look the result up before sending it again)"
            ),
        )
    }
    pub fn database_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "DB_201", "database is unavailable; try again shortly")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl From<crate::accounts::AccountError> for ApiError {
    fn from(error: crate::accounts::AccountError) -> Self {
        use sovd_domain::users::UserError;
        match error {
            crate::accounts::AccountError::Rule(rule) => match rule {
                UserError::BadUsername => Self::invalid_field("username", rule),
                UserError::WeakPassword => Self::invalid_field("password", rule),
                UserError::BadPassword(why) => Self::invalid_field("password", why),
                UserError::BadEmail(why) => Self::invalid_field("email", why),
                UserError::UsernameTaken => Self::username_taken(),
                UserError::NotFound => Self::user_not_found("(unknown)"),
                other => Self::user_change_refused(other),
            },
            crate::accounts::AccountError::Append(e) => match e {
                AppendError::Conflict { .. } => {
                    Self::user_change_refused("the account changed meanwhile; reload and try again")
                }
                other => other.into(),
            },
            crate::accounts::AccountError::Read(e) => e.into(),
            crate::accounts::AccountError::Busy(busy) => busy.into(),
            crate::accounts::AccountError::Unavailable(why) => {
                tracing::warn!(error = %why, "account store unavailable");
                Self::event_store_unavailable()
            }
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        match &error {
            ProjectionError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_),
            ) => {
                tracing::warn!(error = %error, "database unavailable");
                Self::database_unavailable()
            }
            _ => {
                tracing::error!(error = %error, "database query failed");
                Self::internal()
            }
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> Self {
        tracing::warn!(error = %error, "append failed");
        match error {
            AppendError::Unavailable(_) | AppendError::NoStream(_) => Self::event_store_unavailable(),
            _ => Self::internal(),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        tracing::warn!(error = %error, "event store read failed");
        match error {
            ReadError::Unavailable(_) => Self::event_store_unavailable(),
            ReadError::Undecodable { .. } => Self::internal(),
        }
    }
}
