//! The HTTP API and WebSocket: the only door for people.

pub mod auth;
pub mod commands;
pub mod error;
pub mod extract;
pub mod health;
pub mod jwt;
pub mod middleware;
pub mod state;
pub mod vehicles;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use state::{AppState, SharedState};

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole API; tests call it without a socket.
pub fn router(state: SharedState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/vehicles", get(vehicles::list))
        .route("/vehicles/{vehicle_id}", get(vehicles::get))
        .route("/vehicles/{vehicle_id}/status", get(vehicles::status))
        .route("/commands", post(commands::submit).get(commands::list))
        .route("/commands/{command_id}", get(commands::get))
        .route("/commands/{command_id}/responses", get(commands::responses));
    Router::new()
        .nest("/api/v1", api)
        .route("/ws/responses/{command_id}", get(ws::responses))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(middleware::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(middleware::per_request))
        .with_state(state)
}
