//! Extractors that turn every malformed input into an [`ApiError`] naming the problem.

use std::collections::BTreeSet;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::ApiError;
use super::jwt::JwtError;
use super::state::SharedState;
use sovd_domain::Role;
use sovd_domain::text;
use sovd_domain::users::Permission;

/// A JSON object body: Content-Type checked, size limited by the router, parsed once.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large()
            } else {
                ApiError::bad_json(rejection.body_text())
            }
        })?;
        let map = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ApiError::bad_json("expected a JSON object")),
            Err(e) => return Err(ApiError::bad_json(e)),
        };
        // No string anywhere in a body may carry what Postgres cannot store or a log line
        // must not show: refused here, before any handler sees it.
        if let Some(path) = forbidden_text(&map, "") {
            return Err(ApiError::invalid_field(&path, sovd_domain::text::TextError::ControlCharacter));
        }
        Ok(Self(map))
    }
}

/// The path of the first key or string value in `map` holding a forbidden character.
fn forbidden_text(map: &Map<String, Value>, prefix: &str) -> Option<String> {
    fn walk(value: &Value, path: String) -> Option<String> {
        match value {
            Value::String(s) => s.chars().any(text::is_forbidden).then_some(path),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| walk(v, format!("{path}[{i}]"))),
            Value::Object(map) => forbidden_text(map, &path),
            _ => None,
        }
    }
    map.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if key.chars().any(text::is_forbidden) {
            return Some(if prefix.is_empty() { "(a field name)".to_owned() } else { prefix.to_owned() });
        }
        walk(value, path)
    })
}

impl JsonObject {
    /// Refuses fields the endpoint does not know, naming the first.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(ApiError::invalid_field(unknown, "unknown field")),
            None => Ok(()),
        }
    }

    pub fn required_str(&self, field: &str) -> Result<&str, ApiError> {
        match self.0.get(field) {
            Some(Value::String(s)) => Ok(s),
            Some(Value::Null) | None => Err(ApiError::invalid_field(field, "is required")),
            Some(_) => Err(ApiError::invalid_field(field, "must be a string")),
        }
    }

    /// A required, non-empty string of at most `max_bytes` (control characters are refused
    /// for every field on parsing).
    pub fn required_text(&self, field: &str, max_bytes: usize) -> Result<&str, ApiError> {
        let value = self.required_str(field)?;
        text::check_required(value, max_bytes).map_err(|e| ApiError::invalid_field(field, e))?;
        Ok(value)
    }
}

/// Query string parsed into `T`; a bad value is a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        check_query(&parts.uri)?;
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::invalid_query(rejection.body_text()))
    }
}

/// Every query parameter, decoded, is short plain text: a filter with a NUL byte or a
/// megabyte of text is refused before it reaches a parser or the database.
pub fn check_query(uri: &axum::http::Uri) -> Result<(), ApiError> {
    let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(uri) else {
        return Err(ApiError::invalid_query("the query string is not valid URL encoding"));
    };
    for (name, value) in &pairs {
        text::check(name, text::FILTER_MAX).map_err(|e| ApiError::invalid_query(format!("a parameter name {e}")))?;
        text::check(value, text::FILTER_MAX).map_err(|e| ApiError::invalid_query(format!("{name} {e}")))?;
    }
    Ok(())
}

/// The signed-in caller, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    /// The sign-in (refresh-token family) the token belongs to.
    pub family: Option<Uuid>,
    /// When the token expires (unix seconds).
    pub expires_at: i64,
    /// Granted beyond the role.
    pub permissions: BTreeSet<Permission>,
}

impl Caller {
    /// Checks the token (signature, expiry, type, revocation) and that its user exists and
    /// is active now, as the account's events say.
    pub async fn from_token(state: &SharedState, token: &str) -> Result<Self, ApiError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = state.sessions.jwt().verify(token, now).map_err(|e| match e {
            JwtError::Expired => ApiError::expired_token(),
            other => ApiError::invalid_token(other),
        })?;
        if claims.token_type != "access" {
            return Err(ApiError::invalid_token("not an access token"));
        }
        let user_id = Uuid::parse_str(&claims.user_id).map_err(|_| ApiError::invalid_token("bad user_id claim"))?;
        let role = Role::parse(&claims.role).ok_or_else(|| ApiError::invalid_token("unknown role"))?;
        if state.sessions.is_revoked(&claims) {
            return Err(ApiError::invalid_token("this session was signed out or revoked"));
        }
        let account = state.directory.account(user_id).await?;
        let Some(account) = account else { return Err(ApiError::invalid_token("no such user")) };
        if !account.active {
            return Err(ApiError::inactive_account());
        }
        let family = claims.fam.as_deref().and_then(|f| Uuid::parse_str(f).ok());
        // The role as the account says it is now (a changed role also revokes the token).
        let role = account.role.unwrap_or(role);
        let permissions = account.permissions;
        Ok(Self { user_id, username: claims.username, role, family, expires_at: claims.exp, permissions })
    }

    /// Whether the caller may do what `permission` guards (admins may do everything).
    pub fn holds(&self, permission: Permission) -> bool {
        self.role == Role::Admin || self.permissions.contains(&permission)
    }

    /// Engineers see their own commands only; viewers and admins see all.
    pub fn may_read_command_of(&self, owner: Uuid) -> bool {
        self.role != Role::Engineer || self.user_id == owner
    }
}

/// An admin; anyone else gets 403.
pub struct Admin(pub Caller);

impl FromRequestParts<SharedState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != Role::Admin {
            return Err(ApiError::forbidden("only admins may do this"));
        }
        Ok(Self(caller))
    }
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(ApiError::missing_token)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(ApiError::missing_token)?;
        let caller = Self::from_token(state, token.trim()).await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}
