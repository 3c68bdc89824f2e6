//! The HTTP server loop: what a slow or hostile client may hold. A cap on open connections
//! (more wait in the kernel's backlog), a deadline for each request's headers that also ends
//! idle kept-alive connections, a deadline for the body, and one for the whole request. A
//! client that sends a byte at a time holds a connection for seconds, not forever.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use super::error::ApiError;
use crate::config::HttpLimits;

/// How long connections in flight get to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `limits` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, app: Router, limits: &HttpLimits, mut shutdown: watch::Receiver<bool>) {
    let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let open = Arc::new(Semaphore::new(max as usize));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(limits.header_timeout_secs.max(1)));
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit,
            _ = stopped(&mut shutdown) => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move { app.call(request.map(Body::new)).await }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped(&mut stop) => {
                    // Finish the request in flight, take no new one.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a place until it is done: wait for all places to come back.
    if tokio::time::timeout(DRAIN, open.acquire_many(max)).await.is_err() {
        tracing::warn!("connections still open after {} s; closing them", DRAIN.as_secs());
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Deadlines for one request, as a middleware: the body must arrive within `body`, the
/// answer must be under way within `request`.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub body: Duration,
    pub request: Duration,
    pub max_body: usize,
}

impl Deadlines {
    pub fn from_limits(limits: &HttpLimits, max_body: usize) -> Self {
        Self {
            body: Duration::from_secs(limits.body_timeout_secs.max(1)),
            request: Duration::from_secs(limits.request_timeout_secs.max(1)),
            max_body,
        }
    }
}

pub async fn deadlines(
    axum::extract::State(deadlines): axum::extract::State<Deadlines>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    // Every body sovd takes is small: read it whole, against the clock, before any handler.
    let bytes = match tokio::time::timeout(deadlines.body, axum::body::to_bytes(body, deadlines.max_body)).await {
        Err(_) => return ApiError::body_timeout(deadlines.body.as_secs()).into_response(),
        Ok(Err(_)) => return ApiError::body_too_large().into_response(),
        Ok(Ok(bytes)) => bytes,
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    match tokio::time::timeout(deadlines.request, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::request_timeout(deadlines.request.as_secs()).into_response(),
    }
}
