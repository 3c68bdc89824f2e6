//! `WS /ws/responses/{command_id}?token=&from_seq=`: a command's responses, live.
//!
//! Reads the command's response subject from the start (or after `from_seq`, the last
//! `stream_sequence` a reconnecting client saw), so a late subscriber misses nothing. Sends
//! the old contract's JSON events and closes after the terminal one.
//!
//! A socket lives only as long as its right to: it closes (1008) when its token expires, when
//! its sign-in is revoked or its user deactivated, and a user may hold only so many at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sovd_domain::Event;
use sovd_nats::{StoredEvent, StreamName, Subject};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::commands::load;
use super::extract::Caller;
use super::state::SharedState;

const POLICY_VIOLATION: u16 = 1008;
const INTERNAL_ERROR: u16 = 1011;
const NORMAL: u16 = 1000;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    from_seq: Option<u64>,
}

pub async fn responses(
    ws: WebSocketUpgrade,
    State(state): State<SharedState>,
    Path(command_id): Path<String>,
    Query(query): Query<WsQuery>,
) -> Response {
    ws.on_upgrade(move |socket| serve(socket, state, command_id, query))
}

/// Open sockets per user on this replica, against a cap.
pub struct SocketCounts {
    cap: usize,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One open socket of a user; closing it (dropping this) frees its place.
pub struct SocketPlace {
    user_id: Uuid,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl SocketCounts {
    pub fn new(cap: usize) -> Self {
        Self { cap, open: Arc::default() }
    }

    /// A place for one more socket of `user_id`, or `None` when the user holds `cap` already.
    pub fn open(&self, user_id: Uuid) -> Option<SocketPlace> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(user_id).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(SocketPlace { user_id, open: self.open.clone() })
    }
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

struct Gauge(prometheus::IntGauge);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

fn rfc3339(t: time::OffsetDateTime) -> Value {
    t.format(&Rfc3339).map(Value::String).unwrap_or(Value::Null)
}

/// The old contract's event for a stored event, or `None` for events clients never saw.
pub fn to_client_event(stored: &StoredEvent) -> Option<Value> {
    let seq = stored.stream_sequence;
    Some(match &stored.event {
        Event::ResponseChunk(c) => {
            let payload: Value = serde_json::from_str(&c.payload_json).unwrap_or(Value::String(c.payload_json.clone()));
            json!({
                "event": "response",
                "command_id": c.command_id.to_string(),
                "response_id": c.response_id,
                "response": payload,
                "response_payload": payload,
                "sequence_number": c.sequence_number,
                "is_final": c.is_final,
                "received_at": rfc3339(c.received_at),
                "stream_sequence": seq,
            })
        }
        Event::CommandCompleted(e) => json!({
            "event": "status", "command_id": e.command_id.to_string(), "status": "completed",
            "completed_at": rfc3339(e.completed_at), "stream_sequence": seq,
        }),
        Event::CommandFailed(e) => json!({
            "event": "error", "command_id": e.command_id.to_string(), "status": "failed",
            "completed_at": rfc3339(e.completed_at), "error_message": e.reason,
            "negative_response": e.negative_response.map(sovd_projections::apply::negative_response_json),
            "stream_sequence": seq,
        }),
        Event::CommandTimedOut(e) => json!({
            "event": "error", "command_id": e.command_id.to_string(), "status": "timed_out",
            "completed_at": rfc3339(e.completed_at),
            "error_message": format!("Vehicle connection timeout: no answer within {} ms", e.after_ms),
            "stream_sequence": seq,
        }),
        Event::CommandCancelled(e) => json!({
            "event": "status", "command_id": e.command_id.to_string(), "status": "cancelled",
            "completed_at": rfc3339(e.completed_at), "stream_sequence": seq,
        }),
        _ => return None,
    })
}

/// Time from now until `unix` seconds (zero when past).
fn until(unix: i64) -> Duration {
    let left = unix.saturating_sub(time::OffsetDateTime::now_utc().unix_timestamp());
    Duration::from_secs(u64::try_from(left).unwrap_or(0))
}

async fn serve(mut socket: WebSocket, state: SharedState, command_id: String, query: WsQuery) {
    state.metrics.websocket_connections_active.inc();
    let _gauge = Gauge(state.metrics.websocket_connections_active.clone());
    let Some(token) = query.token else {
        return close(socket, POLICY_VIOLATION, "missing token query parameter").await;
    };
    // Watch for revocations before the first check, so one that lands in between is seen.
    let mut revocations = state.sessions.revocations();
    let caller = match Caller::from_token(&state, &token).await {
        Ok(caller) => caller,
        Err(error) => return close(socket, POLICY_VIOLATION, &error.message).await,
    };
    let Some(_place) = state.sockets.open(caller.user_id) else {
        let reason = format!("too many open WebSockets for this user (at most {})", state.sockets.cap);
        return close(socket, POLICY_VIOLATION, &reason).await;
    };
    let command = match load(&state, &caller, &command_id).await {
        Ok(command) => command,
        Err(error) => return close(socket, POLICY_VIOLATION, &error.message).await,
    };
    let id = sovd_domain::CommandId::from_uuid(command.command_id);
    let start = query.from_seq.map_or(1, |seq| seq + 1);
    let mut events = match state.store.ordered(StreamName::Responses, &Subject::responses_of(id), start).await {
        Ok(events) => Box::pin(events),
        Err(error) => {
            tracing::warn!(command_id = %id, error = %error, "cannot read responses");
            return close(socket, INTERNAL_ERROR, "event store unavailable; reconnect with from_seq").await;
        }
    };
    let mut keepalive = tokio::time::interval(Duration::from_secs(20));
    keepalive.tick().await;
    let expires = tokio::time::sleep(until(caller.expires_at));
    tokio::pin!(expires);
    loop {
        tokio::select! {
            _ = &mut expires => return close(socket, POLICY_VIOLATION, "token expired").await,
            _ = revocations.changed() => {
                if let Err(error) = Caller::from_token(&state, &token).await {
                    return close(socket, POLICY_VIOLATION, &error.message).await;
                }
            }
            next = events.next() => {
                let stored = match next {
                    Some(Ok(stored)) => stored,
                    Some(Err(error)) => {
                        tracing::warn!(command_id = %id, error = %error, "response stream failed");
                        return close(socket, INTERNAL_ERROR, "event store unavailable; reconnect with from_seq").await;
                    }
                    None => return close(socket, INTERNAL_ERROR, "response stream ended").await,
                };
                if let Some(event) = to_client_event(&stored)
                    && socket.send(Message::Text(event.to_string().into())).await.is_err()
                {
                    return;
                }
                if stored.event.is_terminal() {
                    return close(socket, NORMAL, "command finished").await;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
            _ = keepalive.tick() => {
                // A deactivation may reach this replica through the account feed only.
                if let Err(error) = Caller::from_token(&state, &token).await {
                    return close(socket, POLICY_VIOLATION, &error.message).await;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
