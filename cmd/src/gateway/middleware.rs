//! Per-request plumbing: the correlation id (taken from `X-Request-ID` or made), the error
//! envelope, security headers and one structured log line per request.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::Instrument;

use super::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The correlation id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A caller's id is kept when it is short and plain; anything else gets a fresh one, so
/// ids are safe in headers, logs and NATS headers.
fn usable_request_id(raw: Option<&HeaderValue>) -> Option<String> {
    let raw = raw?.to_str().ok()?;
    let ok = (1..=128).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| raw.to_owned())
}

pub fn envelope_body(error: &ApiError, correlation_id: &str, path: &str) -> serde_json::Value {
    json!({
        "error": {
            "code": error.code,
            "message": error.message,
            "correlation_id": correlation_id,
            "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            "path": path,
        }
    })
}

pub async fn per_request(mut request: Request, next: Next) -> Response {
    let correlation_id =
        usable_request_id(request.headers().get(&REQUEST_ID)).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    request.extensions_mut().insert(RequestId(correlation_id.clone()));
    let span = tracing::info_span!("http", correlation_id = %correlation_id, method = %method, path = %path);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;

    let error = response.extensions_mut().remove::<ApiError>().or_else(|| match response.status() {
        // Produced by the router itself rather than a handler.
        StatusCode::METHOD_NOT_ALLOWED => Some(ApiError::method_not_allowed()),
        StatusCode::PAYLOAD_TOO_LARGE => Some(ApiError::body_too_large()),
        _ => None,
    });
    if let Some(error) = error {
        let body = envelope_body(&error, &correlation_id, &path);
        let headers = response.headers().clone();
        response = (error.status, axum::Json(body)).into_response();
        for (name, value) in headers.iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        span.in_scope(|| tracing::info!(code = error.code, message = %error.message, "request refused"));
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        headers.insert(REQUEST_ID, value);
    }
    for (name, value) in [
        ("content-security-policy", "default-src 'self'; frame-ancestors 'none'"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("strict-transport-security", "max-age=31536000; includeSubDomains"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request served"
        );
    });
    response
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::route_not_found()
}
