//! User management for admins: `/api/v1/users`. The same operations as `sovd user ...`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;

use sovd_domain::users::{Permission, UserIntent};
use sovd_domain::{Role, UserId};
use sovd_projections::queries::{self, UserView};

use super::error::ApiError;
use super::extract::{Admin, JsonObject};
use super::middleware::RequestId;
use super::state::SharedState;
use super::vehicles::parse_uuid;
use crate::accounts::{self, Actor};

/// Lets the admin's next read show the change (the users view is a projection).
async fn settle(state: &SharedState, sequence: u64) {
    use sovd_projections::apply::Projection;
    let waited = queries::wait_for_checkpoint(
        &state.pool,
        Projection::Users,
        sovd_nats::StreamName::Iam,
        sequence,
        std::time::Duration::from_secs(2),
    )
    .await;
    if !matches!(waited, Ok(true)) {
        tracing::warn!(sequence, "users view did not catch up within 2 s");
    }
}

fn actor(admin: &Admin, request_id: &RequestId) -> Actor {
    Actor { user_id: UserId::from_uuid(admin.0.user_id), correlation_id: request_id.0.clone() }
}

fn role_field(body: &JsonObject) -> Result<Option<Role>, ApiError> {
    match body.0.get("role") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Role::parse(s).map(Some).ok_or_else(|| ApiError::invalid_field("role", "must be viewer, engineer or admin"))
        }
        Some(_) => Err(ApiError::invalid_field("role", "must be a string")),
    }
}

/// `permissions`: the whole set the user should hold, e.g. `["vehicle-changes"]`.
fn permissions_field(body: &JsonObject) -> Result<Option<BTreeSet<Permission>>, ApiError> {
    let known = || Permission::ALL.iter().map(Permission::as_str).collect::<Vec<_>>().join(", ");
    match body.0.get("permissions") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(Permission::parse)
                    .ok_or_else(|| ApiError::invalid_field("permissions", format!("each must be one of: {}", known())))
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid_field("permissions", "must be a list")),
    }
}

async fn existing(state: &SharedState, raw_id: &str) -> Result<UserView, ApiError> {
    let id = parse_uuid(raw_id, "user_id")?;
    queries::get_user(&state.pool, id).await?.ok_or_else(|| ApiError::user_not_found(id))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "every user", body = [UserView]),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "admins only", body = super::openapi::ErrorEnvelope)))]
pub async fn list(State(state): State<SharedState>, _admin: Admin) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(queries::list_users(&state.pool).await?))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = super::openapi::CreateUserRequest,
    responses(super::openapi::BodyErrors, (status = 201, description = "created", body = UserView),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "admins only", body = super::openapi::ErrorEnvelope),
        (status = 409, description = "username taken", body = super::openapi::ErrorEnvelope)))]
pub async fn create(
    State(state): State<SharedState>,
    admin: Admin,
    axum::Extension(request_id): axum::Extension<RequestId>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["username", "password", "role", "email"])?;
    let username = body.required_str("username")?;
    let password = body.required_str("password")?;
    let role = role_field(&body)?.ok_or_else(|| ApiError::invalid_field("role", "is required"))?;
    let email = match body.0.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.as_str()),
        Some(_) => return Err(ApiError::invalid_field("email", "must be a string")),
    };
    let actor = actor(&admin, &request_id);
    let account = accounts::NewAccount { username, password, role, email };
    let (user_id, sequence) = accounts::create(&state.store, &state.buckets, &state.passwords, &actor, account).await?;
    settle(&state, sequence).await;
    tracing::info!(user_id = %user_id, username, role = %role, "user created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "user_id": user_id, "username": username, "role": role.as_str(), "email": email, "active": true,
            "created_at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).ok(),
        })),
    ))
}

#[utoipa::path(patch, path = "/api/v1/users/{user_id}", tag = "users", request_body = super::openapi::UpdateUserRequest,
    params(("user_id" = uuid::Uuid, Path)),
    responses(super::openapi::BodyErrors, (status = 200, description = "changed; the user's sessions end", body = UserView),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "admins only", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such user", body = super::openapi::ErrorEnvelope),
        (status = 409, description = "refused (for example your own account)", body = super::openapi::ErrorEnvelope)))]
pub async fn update(
    State(state): State<SharedState>,
    admin: Admin,
    axum::Extension(request_id): axum::Extension<RequestId>,
    Path(user_id): Path<String>,
    body: JsonObject,
) -> Result<Json<UserView>, ApiError> {
    body.only(&["role", "active", "permissions"])?;
    let mut user = existing(&state, &user_id).await?;
    let id = UserId::from_uuid(user.user_id);
    let actor = actor(&admin, &request_id);
    let role = role_field(&body)?;
    let active = match body.0.get("active") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::invalid_field("active", "must be true or false")),
    };
    let permissions = permissions_field(&body)?;
    if role.is_none() && active.is_none() && permissions.is_none() {
        return Err(ApiError::invalid_field("role", "give role, active and/or permissions"));
    }
    if let Some(role) = role.filter(|r| r.as_str() != user.role) {
        let sequence =
            accounts::change(&state.store, &actor, id, |by, at| UserIntent::SetRole { role, by, at }).await?;
        settle(&state, sequence).await;
        user.role = role.as_str().to_owned();
    }
    if let Some(active) = active.filter(|a| *a != user.active) {
        let intent =
            move |by, at| if active { UserIntent::Reactivate { by, at } } else { UserIntent::Deactivate { by, at } };
        let sequence = accounts::change(&state.store, &actor, id, intent).await?;
        settle(&state, sequence).await;
        user.active = active;
    }
    if let Some(wanted) = permissions {
        let held: BTreeSet<Permission> = user.permissions.iter().filter_map(|p| Permission::parse(p)).collect();
        for permission in wanted.difference(&held) {
            let permission = *permission;
            let sequence =
                accounts::change(&state.store, &actor, id, |by, at| UserIntent::Grant { permission, by, at }).await?;
            settle(&state, sequence).await;
        }
        for permission in held.difference(&wanted) {
            let permission = *permission;
            let sequence =
                accounts::change(&state.store, &actor, id, |by, at| UserIntent::Revoke { permission, by, at }).await?;
            settle(&state, sequence).await;
        }
        user.permissions = wanted.iter().map(|p| p.as_str().to_owned()).collect();
    }
    // Tokens carry the role; make a role or status change take effect now, not at the next
    // refresh. Permissions are not in tokens: every request reads them from the account.
    if role.is_some() || active.is_some() {
        state.sessions.revoke_user(user.user_id).await?;
    }
    Ok(Json(user))
}

#[utoipa::path(post, path = "/api/v1/users/{user_id}/reset-password", tag = "users",
    request_body = super::openapi::ResetPasswordRequest, params(("user_id" = uuid::Uuid, Path)),
    responses(super::openapi::BodyErrors, (status = 200, description = "reset; the user's sessions end", body = super::openapi::Message),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "admins only", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such user", body = super::openapi::ErrorEnvelope)))]
pub async fn reset_password(
    State(state): State<SharedState>,
    admin: Admin,
    axum::Extension(request_id): axum::Extension<RequestId>,
    Path(user_id): Path<String>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    body.only(&["password"])?;
    let password = body.required_str("password")?;
    let user = existing(&state, &user_id).await?;
    let (actor, id) = (actor(&admin, &request_id), UserId::from_uuid(user.user_id));
    accounts::set_password(&state.store, &state.passwords, &actor, id, password).await?;
    state.sessions.revoke_user(user.user_id).await?;
    // A forgotten password is the usual reason for a lock: the new one works at once.
    accounts::unlock(&state.store, &state.lockouts, &actor, id, &user.username, "password reset").await?;
    Ok(Json(json!({"message": format!("password of {} reset; their sessions were signed out", user.username)})))
}

#[utoipa::path(post, path = "/api/v1/users/{user_id}/unlock", tag = "users",
    params(("user_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "every sign-in lock on the user is lifted (recorded in the audit trail)", body = super::openapi::Message),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "admins only", body = super::openapi::ErrorEnvelope),
        (status = 404, description = "no such user", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "not a UUID", body = super::openapi::ErrorEnvelope)))]
pub async fn unlock(
    State(state): State<SharedState>,
    admin: Admin,
    axum::Extension(request_id): axum::Extension<RequestId>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = existing(&state, &user_id).await?;
    let actor = actor(&admin, &request_id);
    let id = UserId::from_uuid(user.user_id);
    let held = accounts::unlock(&state.store, &state.lockouts, &actor, id, &user.username, "unlock").await?;
    tracing::info!(user_id = %user.user_id, held, "sign-in lock lifted");
    let message = if held {
        format!("{} may sign in again from every address", user.username)
    } else {
        format!("{} was not locked", user.username)
    };
    Ok(Json(json!({ "message": message })))
}
