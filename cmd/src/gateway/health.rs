//! Liveness, readiness (which dependency is down) and metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::state::SharedState;

#[utoipa::path(get, path = "/health/live", tag = "health", security(()),
    responses((status = 200, description = "the process runs", body = super::openapi::Health)))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn check_nats(state: &SharedState) -> Result<(), String> {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err("unavailable: not connected".into());
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.jetstream().query_account()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("unavailable: {e}")),
        Err(_) => Err("unavailable: no answer within 2 s".into()),
    }
}

async fn check_postgres(state: &SharedState) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), sovd_projections::queries::ping(&state.pool)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("unavailable: {e}")),
        Err(_) => Err("unavailable: no answer within 2 s".into()),
    }
}

#[utoipa::path(get, path = "/health/ready", tag = "health", security(()),
    responses((status = 200, description = "NATS and Postgres answer", body = Object),
        (status = 503, description = "a dependency is down; checks says which", body = Object)))]
pub async fn ready(State(state): State<SharedState>) -> (StatusCode, Json<Value>) {
    let (nats, postgres) = tokio::join!(check_nats(&state), check_postgres(&state));
    let ok = nats.is_ok() && postgres.is_ok();
    let show = |r: Result<(), String>| r.map_or_else(Value::String, |()| Value::String("ok".into()));
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": {"nats": show(nats), "postgres": show(postgres)},
    });
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

pub async fn metrics(State(state): State<SharedState>) -> String {
    if let Ok((_, connected)) = sovd_projections::queries::list_vehicles(
        &state.pool,
        &sovd_projections::queries::VehicleFilter { status: Some("connected".into()), limit: 1, ..Default::default() },
    )
    .await
    {
        state.metrics.vehicle_connections_active.set(connected);
    }
    // Read at scrape time from Postgres and NATS, so it is right whichever process projects.
    if let Ok(progress) = sovd_projections::status::progress(&state.pool, &state.store).await {
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for p in progress {
            let labels = [p.projection.name(), p.stream.as_str()];
            state.metrics.projection_checkpoint.with_label_values(&labels).set(as_gauge(p.checkpoint));
            state.metrics.projection_lag.with_label_values(&labels).set(as_gauge(p.lag()));
        }
    }
    if let Ok(counts) = sovd_projections::quarantine::counts(&state.pool).await {
        for projection in sovd_projections::apply::Projection::ALL {
            let count = counts.iter().find(|(name, _)| name == projection.name()).map_or(0, |(_, n)| *n);
            state.metrics.projection_quarantined_events.with_label_values(&[projection.name()]).set(count);
        }
    }
    if let Some(at) = crate::dr::status::last_backup(&state.store).await {
        state.metrics.backup_last_success_timestamp_seconds.set(at.unix_timestamp());
    }
    let now = time::OffsetDateTime::now_utc();
    for stream in sovd_nats::StreamName::ALL {
        if let Some(lag) = crate::dr::status::archive_lag(&state.store, stream, now).await {
            state.metrics.archive_lag_seconds.with_label_values(&[stream.as_str()]).set(lag);
        }
    }
    state.metrics.render()
}
