//! `GET /api/v1/events` for admins: the event log, filtered like `sovd replay`, as a
//! streamed NDJSON answer (one JSON object per line, written as it is read).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use super::error::ApiError;
use super::extract::{Admin, ApiQuery};
use super::state::SharedState;
use crate::replay::{FilterError, RawFilter, Replay, record};

#[utoipa::path(get, path = "/api/v1/events", tag = "audit", params(RawFilter),
    responses((status = 200, description = "application/x-ndjson: one event per line, in time order across streams, \
                                           each decoded to its current schema version", content_type = "application/x-ndjson"),
        (status = 400, description = "invalid filter", body = super::openapi::ErrorEnvelope),
        (status = 401, description = "no or bad token", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "admins only", body = super::openapi::ErrorEnvelope),
        (status = 503, description = "NATS is unavailable", body = super::openapi::ErrorEnvelope)))]
pub async fn list(
    State(state): State<SharedState>,
    Admin(caller): Admin,
    ApiQuery(query): ApiQuery<RawFilter>,
) -> Result<Response, ApiError> {
    let filter = query.resolve(&state.store, OffsetDateTime::now_utc()).await.map_err(|e| match e {
        FilterError::Invalid { field, message } => ApiError::invalid_query(format!("{field}: {message}")),
        FilterError::Read(read) => read.into(),
    })?;
    let replay = Replay::open(&state.store, filter, false).await?;
    tracing::info!(user = %caller.user_id, total = replay.total, "event export started");
    let lines = futures::stream::unfold(replay, |mut replay| async move {
        let line = match replay.next().await? {
            Ok(event) => Ok(Bytes::from(record::json_line(&event))),
            // Headers are gone by now: end the body early, which the client sees as a broken
            // transfer rather than a silently short answer.
            Err(error) => Err(std::io::Error::other(error.to_string())),
        };
        Some((line, replay))
    });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}
