//! Messages as the server stores them, whatever they hold: the archive copies streams
//! message by message (events and key-value entries alike) and a restore writes them back.
//! Nothing here decodes an event.

use std::collections::VecDeque;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ReadError;
use crate::kv::Bucket;
use crate::streams::StreamName;

/// One stored message: where it sits, when the server stored it, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMessage {
    pub sequence: u64,
    /// When the server stored it, in nanoseconds since the Unix epoch.
    pub published_ns: i128,
    pub subject: String,
    /// Every header value, in name order (a name may repeat).
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl RawMessage {
    pub fn published(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.published_ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// A stream's extent right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamExtent {
    pub messages: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// When its last message was stored (None when it is empty).
    pub last_time: Option<OffsetDateTime>,
    /// When the stream was created: a restore or a new cluster makes a new one.
    pub created: Option<OffsetDateTime>,
}

/// The streams a backup covers: every event stream, then every key-value bucket (sessions,
/// revocations, usernames, …) but the archive's own progress. The archive ships the event
/// streams only (see docs/adr/007-disaster-recovery.md).
pub fn protected_streams() -> Vec<String> {
    let events = StreamName::ALL.into_iter().map(|s| s.as_str().to_owned());
    events.chain(Bucket::ALL.into_iter().map(|b| b.stream_name())).collect()
}

fn unavailable(error: impl std::fmt::Display) -> ReadError {
    ReadError::Unavailable(error.to_string())
}

/// The extent of `stream`, or `None` when there is no such stream.
pub async fn extent(js: &jetstream::Context, stream: &str) -> Result<Option<StreamExtent>, ReadError> {
    let mut handle = match js.get_stream(stream).await {
        Ok(handle) => handle,
        Err(e)
            if matches!(e.kind(), GetStreamErrorKind::JetStream(ref js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(unavailable(format!("stream {stream}: {e}"))),
    };
    let info = handle.info().await.map_err(unavailable)?;
    let (state, created) = (info.state.clone(), info.created);
    Ok(Some(StreamExtent {
        created: Some(created),
        messages: state.messages,
        first_sequence: state.first_sequence,
        last_sequence: state.last_sequence,
        last_time: (state.messages > 0).then_some(state.last_timestamp),
    }))
}

/// Every message of `stream` from `start` on, in order, live: it keeps following new ones.
/// Each item also says how many messages were behind it when it was delivered.
pub async fn read_from(
    js: &jetstream::Context,
    stream: &str,
    start: u64,
) -> Result<impl Stream<Item = Result<(RawMessage, u64), ReadError>> + Send + use<>, ReadError> {
    let deliver_policy = match start {
        0 | 1 => consumer::DeliverPolicy::All,
        start_sequence => consumer::DeliverPolicy::ByStartSequence { start_sequence },
    };
    let consumer = js
        .get_stream_no_info(stream)
        .await
        .map_err(unavailable)?
        .create_consumer(consumer::pull::OrderedConfig { deliver_policy, ..Default::default() })
        .await
        .map_err(unavailable)?;
    let messages = consumer.messages().await.map_err(unavailable)?;
    let copies = messages.map(|message| {
        let message = message.map_err(unavailable)?;
        let info = message.info().map_err(unavailable)?;
        let (sequence, pending, published) = (info.stream_sequence, info.pending, info.published);
        let raw = RawMessage {
            sequence,
            published_ns: published.unix_timestamp_nanos(),
            subject: message.subject.to_string(),
            headers: message.headers.as_ref().map(header_pairs).unwrap_or_default(),
            payload: message.payload.clone(),
        };
        Ok((raw, pending))
    });
    // See `store::before`: a recreated consumer may start over from the first message.
    Ok(copies.filter(move |copy| std::future::ready(!crate::store::before(copy, start, |(m, _)| m.sequence))))
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.as_str().to_owned())))
        .collect();
    pairs.sort();
    pairs
}

/// Headers that steer a publish rather than describe the message. Their checks held when the
/// original was stored; a copy written back must not run them again (a de-duplication id
/// seen twice in two minutes would drop a message the original stream kept).
fn is_publish_control(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "nats-msg-id" || lower.starts_with("nats-expected-")
}

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error("stream {stream} is at sequence {found}, but the copy of sequence {expected} needs it at {previous}")]
    OutOfStep { stream: String, expected: u64, previous: u64, found: u64 },
    #[error("writing back to stream {stream}: {reason}")]
    Unavailable { stream: String, reason: String },
}

/// Appends copies of archived messages to `stream`, in order, with many acks in flight. Each
/// copy must land on its original sequence (the server checks that the stream sits just
/// before it), so a restored stream keeps every sequence number the projections and
/// clients know.
pub struct WriteBack {
    js: jetstream::Context,
    stream: String,
    window: usize,
    in_flight: VecDeque<(u64, jetstream::context::PublishAckFuture)>,
    last: u64,
}

impl WriteBack {
    /// `last` is the stream's last sequence now.
    pub fn new(js: jetstream::Context, stream: &str, last: u64) -> Self {
        Self { js, stream: stream.to_owned(), window: 512, in_flight: VecDeque::new(), last }
    }

    /// The stream's last sequence once everything sent so far is acknowledged.
    pub fn last_sequence(&self) -> u64 {
        self.last
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> WriteBackError {
        WriteBackError::Unavailable { stream: self.stream.clone(), reason: reason.to_string() }
    }

    pub async fn push(&mut self, message: &RawMessage) -> Result<(), WriteBackError> {
        let mut headers = HeaderMap::new();
        for (name, value) in message.headers.iter().filter(|(name, _)| !is_publish_control(name)) {
            headers.append(name.as_str(), value.as_str());
        }
        let publish = jetstream::message::PublishMessage::build().headers(headers).payload(message.payload.clone());
        let previous = self.last + self.in_flight.len() as u64;
        if message.sequence != previous + 1 {
            return Err(WriteBackError::OutOfStep {
                stream: self.stream.clone(),
                expected: message.sequence,
                previous: message.sequence.saturating_sub(1),
                found: previous,
            });
        }
        let publish = publish.expected_last_sequence(previous);
        let ack = self.js.send_publish(message.subject.clone(), publish).await.map_err(|e| self.unavailable(e))?;
        self.in_flight.push_back((message.sequence, ack));
        while self.in_flight.len() >= self.window {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), WriteBackError> {
        let Some((sequence, ack)) = self.in_flight.pop_front() else { return Ok(()) };
        match ack.await {
            Ok(ack) => {
                self.last = ack.sequence;
                Ok(())
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(WriteBackError::OutOfStep {
                stream: self.stream.clone(),
                expected: sequence,
                previous: sequence.saturating_sub(1),
                found: self.last,
            }),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Waits for every ack; returns the stream's last sequence.
    pub async fn finish(mut self) -> Result<u64, WriteBackError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(self.last)
    }
}
