//! What every handler can reach.

use std::sync::Arc;

use sovd_nats::EventStore;

use super::jwt::JwtKey;
use crate::metrics::Metrics;

pub struct AppState {
    pub store: EventStore,
    pub nats: async_nats::Client,
    pub pool: sqlx::PgPool,
    pub jwt: JwtKey,
    pub metrics: Metrics,
}

pub type SharedState = Arc<AppState>;
