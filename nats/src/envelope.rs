//! The envelope: what routing and tooling need travels in headers, the event itself as a
//! postcard payload. Tools can filter by type, actor or correlation id without decoding.

use async_nats::HeaderMap;
use bytes::Bytes;
use sovd_domain::{CodecError, Event, EventKind};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

pub const EVENT_TYPE: &str = "Sovd-Event-Type";
pub const SCHEMA_VERSION: &str = "Sovd-Schema-Version";
pub const EVENT_ID: &str = "Sovd-Event-Id";
pub const CORRELATION_ID: &str = "Sovd-Correlation-Id";
pub const CAUSATION_ID: &str = "Sovd-Causation-Id";
pub const ACTOR: &str = "Sovd-Actor";
pub const OCCURRED_AT: &str = "Sovd-Occurred-At";
pub const TRACEPARENT: &str = "traceparent";

/// Facts about an event that are not part of the event itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub event_id: Uuid,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// `user:<id>`, `connector:<name>` or `system`.
    pub actor: String,
    pub occurred_at: OffsetDateTime,
    pub traceparent: Option<String>,
}

impl EventMeta {
    pub fn new(correlation_id: impl Into<String>, actor: impl Into<String>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            correlation_id: correlation_id.into(),
            causation_id: None,
            actor: actor.into(),
            occurred_at: OffsetDateTime::now_utc(),
            traceparent: None,
        }
    }

    /// Meta for an event caused by `cause`: same correlation, causation = the cause's id.
    pub fn caused_by(cause: &EventMeta, actor: impl Into<String>) -> Self {
        Self {
            causation_id: Some(cause.event_id.to_string()),
            traceparent: cause.traceparent.clone(),
            ..Self::new(cause.correlation_id.clone(), actor)
        }
    }
}

/// An event as read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub stream_sequence: u64,
    pub subject: String,
    pub meta: EventMeta,
    pub event: Event,
}

pub fn encode(event: &Event, meta: &EventMeta) -> Result<(HeaderMap, Bytes), CodecError> {
    let kind = event.kind();
    Ok((headers(kind, meta)?, Bytes::from(event.encode()?)))
}

/// The headers of an event of `kind`. Tools that write a payload they encoded themselves (an
/// older schema version, in tests of the upcasters) use this with it.
pub fn headers(kind: EventKind, meta: &EventMeta) -> Result<HeaderMap, CodecError> {
    let mut headers = HeaderMap::new();
    headers.insert(EVENT_TYPE, kind.event_type);
    headers.insert(SCHEMA_VERSION, kind.version.to_string().as_str());
    headers.insert(EVENT_ID, meta.event_id.to_string().as_str());
    headers.insert(CORRELATION_ID, meta.correlation_id.as_str());
    if let Some(causation) = &meta.causation_id {
        headers.insert(CAUSATION_ID, causation.as_str());
    }
    headers.insert(ACTOR, meta.actor.as_str());
    let occurred = meta
        .occurred_at
        .format(&Rfc3339)
        .map_err(|e| CodecError::Encode { event_type: kind.event_type, reason: format!("occurred_at: {e}") })?;
    headers.insert(OCCURRED_AT, occurred.as_str());
    if let Some(traceparent) = &meta.traceparent {
        headers.insert(TRACEPARENT, traceparent.as_str());
    }
    Ok(headers)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str())
}

/// The schema version an event was written in, from its headers.
pub fn stored_version(headers: Option<&HeaderMap>) -> Option<u16> {
    headers.and_then(|h| header(h, SCHEMA_VERSION)).and_then(|v| v.parse().ok())
}

pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<(EventMeta, Event), CodecError> {
    let empty = HeaderMap::new();
    let headers = headers.unwrap_or(&empty);
    let malformed = |reason: &str| CodecError::Malformed {
        event_type: header(headers, EVENT_TYPE).unwrap_or("?").to_owned(),
        version: 0,
        reason: reason.to_owned(),
    };
    let event_type = header(headers, EVENT_TYPE).ok_or_else(|| malformed("missing Sovd-Event-Type header"))?;
    let version = header(headers, SCHEMA_VERSION)
        .and_then(|v| v.parse::<u16>().ok())
        .ok_or_else(|| malformed("missing or bad Sovd-Schema-Version header"))?;
    let event_id = header(headers, EVENT_ID)
        .and_then(|v| Uuid::parse_str(v).ok())
        .ok_or_else(|| malformed("missing or bad Sovd-Event-Id header"))?;
    let occurred_at = header(headers, OCCURRED_AT)
        .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
        .ok_or_else(|| malformed("missing or bad Sovd-Occurred-At header"))?;
    let event = Event::decode(event_type, version, payload)?;
    let meta = EventMeta {
        event_id,
        correlation_id: header(headers, CORRELATION_ID).unwrap_or_default().to_owned(),
        causation_id: header(headers, CAUSATION_ID).map(str::to_owned),
        actor: header(headers, ACTOR).unwrap_or("unknown").to_owned(),
        occurred_at,
        traceparent: header(headers, TRACEPARENT).map(str::to_owned),
    };
    Ok((meta, event))
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
