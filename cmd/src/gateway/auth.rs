//! Sign-in. Tokens are HS256 JWTs: access 15 min, refresh 7 days (claims per the old contract).

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::ApiError;
use super::extract::{Caller, JsonObject};
use super::jwt::Claims;
use super::state::SharedState;

pub const ACCESS_TTL_SECS: i64 = 900;
const REFRESH_TTL_SECS: i64 = 7 * 24 * 3600;

/// Compared against when the user does not exist, so a miss costs as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0nE3vZ+1Pq2HkYl5q0Pj1l1pA9oM3m8m8f0bEwTQ6bY";

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

pub async fn login(State(state): State<SharedState>, body: JsonObject) -> Result<Json<Value>, ApiError> {
    body.only(&["username", "password"])?;
    let username = body.required_str("username")?.to_owned();
    let password = body.required_str("password")?.to_owned();
    let user = sovd_projections::queries::user_by_username(&state.pool, &username).await?;
    let hash = user.as_ref().map_or(DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
    // argon2 is deliberately slow: keep it off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|_| ApiError::internal())?;
    let Some(user) = user.filter(|_| matches) else {
        tracing::info!(username = %username, "login refused");
        return Err(ApiError::bad_credentials());
    };
    if !user.active {
        return Err(ApiError::inactive_account());
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = |token_type: &str, ttl: i64, jti: Option<String>| Claims {
        user_id: user.user_id.to_string(),
        username: user.username.clone(),
        role: user.role.clone(),
        exp: now + ttl,
        iat: now,
        token_type: token_type.to_owned(),
        jti,
    };
    let access = state.jwt.sign(&claims("access", ACCESS_TTL_SECS, Some(uuid::Uuid::now_v7().to_string())));
    let refresh = state.jwt.sign(&claims("refresh", REFRESH_TTL_SECS, Some(uuid::Uuid::now_v7().to_string())));
    tracing::info!(username = %user.username, user_id = %user.user_id, "login succeeded");
    Ok(Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": ACCESS_TTL_SECS,
    })))
}

pub async fn logout(caller: Caller) -> Json<Value> {
    tracing::info!(user_id = %caller.user_id, "logged out");
    Json(json!({"message": "logged out"}))
}

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

/// An argon2id PHC string for `password` (seeding and user management).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("engineer123").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("engineer123", &hash));
        assert!(!verify_password("engineer124", &hash));
        assert!(!verify_password("anything", DUMMY_HASH));
    }
}
