//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use sovd_nats::EventStore;
use sovd_nats::kv::Buckets;

use super::ratelimit::RateLimiter;
use super::sessions::Sessions;
use crate::metrics::Metrics;

/// Sign-in policy.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// Failed sign-ins in a row that lock a name.
    pub lockout_threshold: u32,
    /// How long a locked name stays locked.
    pub lockout: Duration,
}

pub struct AppState {
    pub store: EventStore,
    pub nats: async_nats::Client,
    pub pool: sqlx::PgPool,
    pub buckets: Buckets,
    pub sessions: Arc<Sessions>,
    pub policy: AuthPolicy,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
}

pub type SharedState = Arc<AppState>;
