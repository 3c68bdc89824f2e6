//! What every handler can reach.

use std::sync::Arc;

use sovd_nats::EventStore;
use sovd_nats::kv::Buckets;

use super::directory::Directory;
use super::ratelimit::RateLimiter;
use super::sessions::Sessions;
use super::ws::SocketCounts;
use crate::lockouts::Lockouts;
use crate::metrics::Metrics;
use crate::passwords::Passwords;

pub struct AppState {
    pub store: EventStore,
    pub nats: async_nats::Client,
    pub pool: sqlx::PgPool,
    pub buckets: Buckets,
    pub sessions: Arc<Sessions>,
    pub directory: Arc<Directory>,
    pub lockouts: Lockouts,
    pub passwords: Passwords,
    pub sockets: SocketCounts,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
}

pub type SharedState = Arc<AppState>;
