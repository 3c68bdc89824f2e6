//! The HTTP API, WebSocket and web UI: the only door for people.

pub mod audit;
pub mod auth;
pub mod client;
pub mod commands;
pub mod csv;
pub mod directory;
pub mod error;
pub mod events;
pub mod extract;
pub mod guard;
pub mod health;
pub mod jwt;
pub mod middleware;
pub mod openapi;
pub mod ratelimit;
pub mod server;
pub mod sessions;
pub mod state;
pub mod ui;
pub mod users;
pub mod vehicles;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::routing::{get, patch, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use state::{AppState, SharedState};

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Browsers on these origins may call the API (none by default: the UI is same-origin).
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PATCH])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-total-count"),
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            axum::http::header::RETRY_AFTER,
        ])
}

/// What the router needs to know about the edge it sits on.
#[derive(Debug, Clone)]
pub struct Edge {
    pub cors_origins: Vec<String>,
    pub trusted_proxies: client::TrustedProxies,
    pub deadlines: server::Deadlines,
}

/// The whole API and UI; tests call it without a socket.
pub fn router(state: SharedState, edge: &Edge) -> Router {
    use axum::middleware::from_fn_with_state as limit;
    let api = Router::new()
        .route("/auth/login", post(auth::login).route_layer(limit(state.clone(), ratelimit::login)))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/operations", get(commands::operations))
        .route("/stats", get(commands::stats))
        .route("/vehicles", get(vehicles::list).route_layer(limit(state.clone(), ratelimit::vehicles)))
        .route("/vehicles/{vehicle_id}", get(vehicles::get))
        .route("/vehicles/{vehicle_id}/status", get(vehicles::status))
        .route(
            "/commands",
            post(commands::submit).route_layer(limit(state.clone(), ratelimit::submit)).get(commands::list),
        )
        .route("/commands/{command_id}", get(commands::get))
        .route("/commands/{command_id}/responses", get(commands::responses))
        .route("/commands/{command_id}/cancel", post(commands::cancel))
        .route("/audit", get(audit::list))
        .route("/events", get(events::list))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{user_id}", patch(users::update))
        .route("/users/{user_id}/reset-password", post(users::reset_password))
        .route("/users/{user_id}/unlock", post(users::unlock));
    Router::new()
        .nest("/api/v1", api)
        .route("/ws/responses/{command_id}", get(ws::responses))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::spec))
        .route("/docs", get(openapi::docs))
        .route("/ui/docs.js", get(openapi::docs_js))
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/app.css", get(ui::app_css))
        .fallback(middleware::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(edge.deadlines, server::deadlines))
        .layer(cors(&edge.cors_origins))
        .layer(axum::middleware::from_fn_with_state(edge.trusted_proxies.clone(), client::resolve))
        .layer(axum::middleware::from_fn(middleware::per_request))
        .with_state(state)
}
