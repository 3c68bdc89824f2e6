//! Sign-in, token refresh with rotation, sign-out, and who am I. Every sign-in attempt,
//! sign-out and refresh-token reuse is an event on the user's sessions subject.

use std::net::SocketAddr;

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use sovd_domain::events::{AccountLocked, ClientInfo, LoggedOut, LoginFailed, LoginSucceeded, RefreshTokenReused};
use sovd_domain::{Event, Role, UserId};
use sovd_nats::{AppendOptions, EventMeta, Subject};
use time::OffsetDateTime;

use super::error::ApiError;
use super::extract::{Caller, JsonObject};
use super::middleware::RequestId;
use super::sessions::{Identity, SessionError};
use super::state::SharedState;

/// Compared against when the user does not exist, so a miss costs as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0nE3vZ+1Pq2HkYl5q0Pj1l1pA9oM3m8m8f0bEwTQ6bY";

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

pub fn client_info(peer: Option<SocketAddr>, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect())
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

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", security(()),
    request_body = super::openapi::LoginRequest,
    responses(super::openapi::BodyErrors, (status = 200, description = "signed in", body = super::openapi::TokenResponse),
        (status = 401, description = "wrong credentials (AUTH_001), deactivated or locked (AUTH_006)", body = super::openapi::ErrorEnvelope),
        (status = 429, description = "too many sign-ins from this address", body = super::openapi::ErrorEnvelope)))]
pub async fn login(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    body.only(&["username", "password"])?;
    let username = body.required_str("username")?.to_owned();
    let password = body.required_str("password")?.to_owned();
    let client = client_info(Some(peer), &headers);
    let now = OffsetDateTime::now_utc();
    // Names that match no user lock the same way, so the answer never tells which exist.
    if let Some(until) = state.sessions.locked_until(&username).await? {
        return Err(locked_error(until));
    }
    let user = sovd_projections::queries::user_by_username(&state.pool, &username).await?;
    let hash = user.as_ref().map_or(DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
    // argon2 is deliberately slow: keep it off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|_| ApiError::internal())?;
    let user_id = user.as_ref().map(|u| UserId::from_uuid(u.user_id));
    let refusal = match &user {
        Some(u) if matches && !u.active => Some("account deactivated"),
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
        if reason == "account deactivated" {
            return Err(ApiError::inactive_account());
        }
        let locked =
            state.sessions.record_failure(&username, state.policy.lockout_threshold, state.policy.lockout).await?;
        if let Some(until) = locked {
            let event = Event::AccountLocked(AccountLocked { username: username.clone(), user_id, until, at: now });
            record(&state, subject, event, &request_id.0, "system".into()).await;
        }
        return Err(ApiError::bad_credentials());
    }
    let Some(user) = user else { return Err(ApiError::bad_credentials()) };
    state.sessions.clear_failures(&username).await?;
    let role = Role::parse(&user.role).ok_or_else(ApiError::internal)?;
    let identity = Identity { user_id: user.user_id, username: user.username.clone(), role };
    let tokens = state.sessions.issue(&identity, None).await?;
    let event = Event::LoginSucceeded(LoginSucceeded {
        user_id: UserId::from_uuid(user.user_id),
        username: user.username.clone(),
        client,
        at: now,
    });
    record(&state, subject, event, &request_id.0, actor).await;
    tracing::info!(username = %user.username, user_id = %user.user_id, "signed in");
    Ok(Json(serde_json::to_value(tokens).unwrap_or_default()))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", security(()),
    request_body = super::openapi::RefreshRequest,
    responses(super::openapi::BodyErrors, (status = 200, description = "a new token pair; the old refresh token stops working", body = super::openapi::TokenResponse),
        (status = 401, description = "invalid, expired, revoked or reused refresh token", body = super::openapi::ErrorEnvelope)))]
pub async fn refresh(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    body.only(&["refresh_token"])?;
    let token = body.required_str("refresh_token")?;
    let (user_id, family) = match state.sessions.redeem(token).await {
        Ok(redeemed) => redeemed,
        Err(SessionError::Reused { user_id, family }) => {
            let event = Event::RefreshTokenReused(RefreshTokenReused {
                user_id: UserId::from_uuid(user_id),
                family,
                client: client_info(Some(peer), &headers),
                at: OffsetDateTime::now_utc(),
            });
            let subject = Subject::user_sessions(UserId::from_uuid(user_id));
            record(&state, subject, event, &request_id.0, "system".into()).await;
            tracing::warn!(user_id = %user_id, family = %family, "refresh token reused; family revoked");
            return Err(SessionError::Reused { user_id, family }.into());
        }
        Err(other) => return Err(other.into()),
    };
    // The account may have changed since sign-in: take role and status from now.
    let user =
        sovd_projections::queries::user_by_id(&state.pool, user_id).await?.ok_or_else(ApiError::inactive_account)?;
    if !user.active {
        return Err(ApiError::inactive_account());
    }
    let role = Role::parse(&user.role).ok_or_else(ApiError::internal)?;
    let identity = Identity { user_id, username: user.username, role };
    let tokens = state.sessions.issue(&identity, Some(family)).await?;
    Ok(Json(serde_json::to_value(tokens).unwrap_or_default()))
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

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = crate::accounts::hash_password("engineer123").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("engineer123", &hash));
        assert!(!verify_password("engineer124", &hash));
        assert!(!verify_password("anything", DUMMY_HASH));
    }
}
