//! Sign-in, token refresh with rotation, sign-out, and who am I. Every sign-in attempt,
//! sign-out and refresh-token reuse is an event on the user's sessions subject.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sovd_domain::events::{AccountLocked, ClientInfo, LoggedOut, LoginFailed, LoginSucceeded, RefreshTokenReused};
use sovd_domain::text;
use sovd_domain::users::UserState;
use sovd_domain::{Event, UserId};
use sovd_nats::{AppendOptions, EventMeta, Subject};
use time::OffsetDateTime;

use super::client::ClientAddr;
use super::error::ApiError;
use super::extract::{Caller, JsonObject};
use super::middleware::RequestId;
use super::sessions::{Identity, SessionError, TokenPair};
use super::state::SharedState;
use crate::lockouts::{Admission, LockoutError, Outcome};
use crate::passwords::Busy;

/// Compared against when the user does not exist, so a miss costs as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0nE3vZ+1Pq2HkYl5q0Pj1l1pA9oM3m8m8f0bEwTQ6bY";

pub fn client_info(client: Option<ClientAddr>, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: client.map(|c| c.0.to_string()).unwrap_or_default(),
        // Header values are visible ASCII (to_str refuses the rest); capped for the log.
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().filter(|c| !text::is_forbidden(*c)).take(200).collect())
            .unwrap_or_default(),
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Unavailable(_) => {
                tracing::warn!(error = %error, "session store unavailable");
                ApiError::event_store_unavailable()
            }
            SessionError::Invalid(why) => ApiError::invalid_token(format!("refresh token: {why}")),
            SessionError::Reused { .. } => ApiError::invalid_token(error.to_string()),
        }
    }
}

impl From<LockoutError> for ApiError {
    fn from(error: LockoutError) -> Self {
        tracing::warn!(error = %error, "lockout store unavailable");
        ApiError::event_store_unavailable()
    }
}

impl From<Busy> for ApiError {
    fn from(_: Busy) -> Self {
        ApiError::busy("too many sign-ins at once; try again in a second", 1)
    }
}

/// Records a sessions event; a failure to record is logged, never shown to the user.
async fn record(state: &SharedState, subject: Subject, event: Event, correlation_id: &str, actor: String) {
    let meta = EventMeta::new(correlation_id.to_owned(), actor);
    if let Err(error) = state.store.append(&subject, &event, &meta, AppendOptions::default()).await {
        tracing::error!(error = %error, event = event.kind().event_type, "could not record sessions event");
    }
}

fn locked_error(until: OffsetDateTime) -> ApiError {
    let minutes = ((until - OffsetDateTime::now_utc()).whole_seconds().max(0) + 59) / 60;
    ApiError::locked(format!("too many failed sign-ins; try again in {minutes} minute(s)"))
}

/// Token answers are credentials: no cache may keep them.
fn no_store(tokens: TokenPair) -> Response {
    let mut response = Json(serde_json::to_value(tokens).unwrap_or_default()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The account a sign-in name belongs to, as its events say now.
async fn account_named(state: &SharedState, username: &str) -> Result<Option<UserState>, ApiError> {
    let Some(user_id) = crate::accounts::lookup(&state.buckets, username).await? else { return Ok(None) };
    Ok(state.directory.fresh(user_id.as_uuid()).await?)
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", security(()),
    request_body = super::openapi::LoginRequest,
    responses(super::openapi::BodyErrors, (status = 200, description = "signed in", body = super::openapi::TokenResponse),
        (status = 401, description = "wrong credentials (AUTH_001), deactivated or locked (AUTH_006)", body = super::openapi::ErrorEnvelope),
        (status = 429, description = "too many sign-ins from this address", body = super::openapi::ErrorEnvelope),
        (status = 503, description = "too many sign-ins at once (Retry-After)", body = super::openapi::ErrorEnvelope)))]
pub async fn login(
    State(state): State<SharedState>,
    client: Option<axum::Extension<ClientAddr>>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    body.only(&["username", "password"])?;
    let username = body.required_text("username", text::SIGN_IN_NAME_MAX)?.to_owned();
    let password = body.required_text("password", text::PASSWORD_MAX)?.to_owned();
    let client = client_info(client.map(|c| c.0), &headers);
    let now = OffsetDateTime::now_utc();
    // A turn first (a busy gateway answers 503 without counting anything), then the attempt
    // is counted as in flight before the password is checked: concurrency buys no guesses.
    let turn = state.passwords.turn().await?;
    match state.lockouts.admit(&username, &client.ip).await? {
        Admission::Admitted => {}
        // Names that match no user lock the same way, so the answer never tells which exist.
        Admission::Locked { until } => return Err(locked_error(until)),
        Admission::Busy => {
            return Err(ApiError::busy("sign-ins for this name are being checked; try again in a second", 1));
        }
    }
    let account = match account_named(&state, &username).await {
        Ok(account) => account,
        Err(error) => {
            let _ = state.lockouts.finish(&username, &client.ip, Outcome::Unchecked).await;
            return Err(error);
        }
    };
    let hash = account.as_ref().and_then(|a| a.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.to_owned());
    let matches = turn.verify(password, hash).await;
    let outcome = if matches { Outcome::Right } else { Outcome::Wrong };
    // The right password is not a guess, whatever happens next (a deactivated account).
    let lock = state.lockouts.finish(&username, &client.ip, outcome).await.unwrap_or_else(|error| {
        tracing::warn!(error = %error, "could not record how a sign-in ended; it counts as a failure in a minute");
        None
    });
    let user_id = account.as_ref().and_then(|a| a.user_id);
    let refusal = match &account {
        Some(a) if matches && !a.active => Some("account deactivated"),
        Some(_) if matches => None,
        Some(_) => Some("wrong password"),
        None => Some("unknown username"),
    };
    let subject = user_id.map_or_else(Subject::unknown_user_sessions, Subject::user_sessions);
    let actor = user_id.map_or_else(|| "anonymous".to_owned(), |id| format!("user:{id}"));
    if let Some(reason) = refusal {
        let failed = Event::LoginFailed(LoginFailed {
            username: username.clone(),
            user_id,
            reason: reason.to_owned(),
            client: client.clone(),
            at: now,
        });
        record(&state, subject.clone(), failed, &request_id.0, actor.clone()).await;
        tracing::info!(username = %username, reason, ip = %client.ip, "sign-in refused");
        if matches {
            return Err(ApiError::inactive_account());
        }
        if let Some(lock) = lock {
            let event = Event::AccountLocked(AccountLocked {
                username: username.clone(),
                user_id,
                until: lock.until,
                at: now,
                client_ip: lock.client_ip,
            });
            record(&state, subject, event, &request_id.0, "system".into()).await;
        }
        return Err(ApiError::bad_credentials());
    }
    let Some((account, user_id)) = account.zip(user_id) else { return Err(ApiError::bad_credentials()) };
    let identity = identity(user_id, &account)?;
    let tokens = state.sessions.issue(&identity).await?;
    let event = Event::LoginSucceeded(LoginSucceeded { user_id, username: identity.username.clone(), client, at: now });
    record(&state, subject, event, &request_id.0, actor).await;
    tracing::info!(username = %identity.username, user_id = %user_id, "signed in");
    Ok(no_store(tokens))
}

fn identity(user_id: UserId, account: &UserState) -> Result<Identity, ApiError> {
    let role = account.role.ok_or_else(ApiError::internal)?;
    let username = account.username.clone().unwrap_or_default();
    Ok(Identity { user_id: user_id.as_uuid(), username, role })
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", security(()),
    request_body = super::openapi::RefreshRequest,
    responses(super::openapi::BodyErrors, (status = 200, description = "a new token pair; the old refresh token stops working once the new one is used", body = super::openapi::TokenResponse),
        (status = 401, description = "invalid, expired, revoked or stolen refresh token", body = super::openapi::ErrorEnvelope)))]
pub async fn refresh(
    State(state): State<SharedState>,
    client: Option<axum::Extension<ClientAddr>>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    body.only(&["refresh_token"])?;
    let token = body.required_text("refresh_token", 4096)?;
    let redeemed = match state.sessions.redeem(token).await {
        Ok(redeemed) => redeemed,
        Err(SessionError::Reused { user_id, family }) => {
            let event = Event::RefreshTokenReused(RefreshTokenReused {
                user_id: UserId::from_uuid(user_id),
                family,
                client: client_info(client.map(|c| c.0), &headers),
                at: OffsetDateTime::now_utc(),
            });
            let subject = Subject::user_sessions(UserId::from_uuid(user_id));
            record(&state, subject, event, &request_id.0, "system".into()).await;
            tracing::warn!(user_id = %user_id, family = %family, "refresh token reused; family revoked");
            return Err(SessionError::Reused { user_id, family }.into());
        }
        Err(other) => return Err(other.into()),
    };
    // The account may have changed since sign-in: role and status as its events say now.
    let account = state.directory.fresh(redeemed.user_id).await?.ok_or_else(ApiError::inactive_account)?;
    if !account.active {
        return Err(ApiError::inactive_account());
    }
    let identity = identity(UserId::from_uuid(redeemed.user_id), &account)?;
    Ok(no_store(state.sessions.reissue(&identity, &redeemed)))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 200, description = "this sign-in's tokens no longer work", body = super::openapi::Message),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope)))]
pub async fn logout(
    State(state): State<SharedState>,
    caller: Caller,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Value>, ApiError> {
    if let Some(family) = caller.family {
        state.sessions.revoke_family(family).await?;
    }
    let user_id = UserId::from_uuid(caller.user_id);
    let event = Event::LoggedOut(LoggedOut { user_id, at: OffsetDateTime::now_utc() });
    record(&state, Subject::user_sessions(user_id), event, &request_id.0, format!("user:{user_id}")).await;
    tracing::info!(user_id = %caller.user_id, "signed out");
    Ok(Json(json!({"message": "signed out; this session's access and refresh tokens no longer work"})))
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, description = "the signed-in user", body = super::openapi::Me),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope)))]
pub async fn me(State(state): State<SharedState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let user = sovd_projections::queries::user_by_id(&state.pool, caller.user_id).await?;
    let email = user.and_then(|u| u.email);
    Ok(Json(json!({
        "user_id": caller.user_id,
        "username": caller.username,
        "role": caller.role.as_str(),
        "email": email,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_dummy_hash_matches_no_password() {
        let passwords = crate::passwords::Passwords::new(1, std::time::Duration::from_secs(5)).unwrap();
        assert!(!passwords.turn().await.unwrap().verify("anything".into(), DUMMY_HASH.into()).await);
        assert!(!passwords.turn().await.unwrap().verify(String::new(), DUMMY_HASH.into()).await);
    }
}
