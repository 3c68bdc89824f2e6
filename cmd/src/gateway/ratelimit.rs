//! Request rate limits per the old contract: sign-in per client IP, command submission and
//! vehicle listing per user, admins exempt. Sign-in is keyed by the client address as
//! [`super::client`] resolves it (behind trusted proxies, the forwarded address). Fixed
//! one-minute windows, held per replica (a deployment with N gateways allows up to N times
//! the limit; see docs/architecture.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sovd_domain::Role;

use super::client::ClientAddr;
use super::error::ApiError;
use super::extract::Caller;
use super::state::SharedState;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Login,
    Submit,
    Vehicles,
}

/// Requests per minute for each class.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub login: u32,
    pub submit: u32,
    pub vehicles: u32,
}

impl RateLimits {
    fn of(&self, class: Class) -> u32 {
        match class {
            Class::Login => self.login,
            Class::Submit => self.submit,
            Class::Vehicles => self.vehicles,
        }
    }
}

pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub retry_after: Duration,
}

pub struct RateLimiter {
    limits: RateLimits,
    windows: Mutex<HashMap<(Class, String), (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self { limits, windows: Mutex::default() }
    }

    pub fn check(&self, class: Class, key: &str, now: Instant) -> Decision {
        let limit = self.limits.of(class);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (started, _)| now.duration_since(*started) < WINDOW);
        }
        let (started, count) = windows.entry((class, key.to_owned())).or_insert((now, 0));
        if now.duration_since(*started) >= WINDOW {
            *started = now;
            *count = 0;
        }
        let retry_after = WINDOW.saturating_sub(now.duration_since(*started));
        if *count >= limit {
            return Decision { allowed: false, limit, remaining: 0, retry_after };
        }
        *count += 1;
        Decision { allowed: true, limit, remaining: limit - *count, retry_after }
    }
}

async fn limited(state: SharedState, class: Class, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let key = match class {
        Class::Login => parts.extensions.get::<ClientAddr>().map(|c| c.0.to_string()),
        Class::Submit | Class::Vehicles => match Caller::from_request_parts(&mut parts, &state).await {
            Ok(caller) if caller.role == Role::Admin => None,
            Ok(caller) => Some(caller.user_id.to_string()),
            // Unauthenticated: the handler answers 401.
            Err(_) => None,
        },
    };
    let request = Request::from_parts(parts, body);
    let Some(key) = key else { return next.run(request).await };
    let decision = state.limiter.check(class, &key, Instant::now());
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let secs = decision.retry_after.as_secs().max(1);
        let mut response = ApiError::rate_limited(secs).into_response();
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        response
    };
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(decision.limit));
    headers.insert(HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(decision.remaining));
    response
}

pub async fn login(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    limited(state, Class::Login, request, next).await
}

pub async fn submit(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    limited(state, Class::Submit, request, next).await
}

pub async fn vehicles(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    limited(state, Class::Vehicles, request, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_until_the_window_ends() {
        let limiter = RateLimiter::new(RateLimits { login: 2, submit: 10, vehicles: 100 });
        let start = Instant::now();
        assert!(limiter.check(Class::Login, "1.2.3.4", start).allowed);
        let second = limiter.check(Class::Login, "1.2.3.4", start);
        assert!(second.allowed && second.remaining == 0);
        let third = limiter.check(Class::Login, "1.2.3.4", start + Duration::from_secs(10));
        assert!(!third.allowed);
        assert_eq!(third.retry_after, Duration::from_secs(50));
        assert!(limiter.check(Class::Login, "5.6.7.8", start).allowed, "other clients are not affected");
        assert!(limiter.check(Class::Login, "1.2.3.4", start + WINDOW).allowed, "a new window starts");
    }
}
