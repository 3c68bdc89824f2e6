//! Appending to and reading from the log.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream::DirectGetErrorKind};
use futures::StreamExt;
use sovd_domain::Event;

use crate::envelope::{self, EventMeta, StoredEvent};
use crate::error::{AppendError, ReadError};
use crate::streams::StreamName;
use crate::subjects::{OpsKind, Subject};

/// Concurrency and de-duplication for one append.
#[derive(Debug, Clone, Default)]
pub struct AppendOptions {
    /// `Nats-Msg-Id`: a retry with the same id inside the duplicate window is stored once.
    /// Defaults to the event id.
    pub msg_id: Option<String>,
    /// `Nats-Expected-Last-Subject-Sequence`: the append fails with
    /// [`AppendError::Conflict`] unless the subject's last event has this sequence
    /// (0 = the subject must be empty).
    pub expected_last_subject_sequence: Option<u64>,
}

impl AppendOptions {
    pub fn expect_last(sequence: u64) -> Self {
        Self { expected_last_subject_sequence: Some(sequence), ..Self::default() }
    }

    pub fn msg_id(id: impl Into<String>) -> Self {
        Self { msg_id: Some(id.into()), ..Self::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub sequence: u64,
    /// The stream had already stored this message id; nothing new was written.
    pub duplicate: bool,
}

/// The event store: a JetStream context plus the envelope.
#[derive(Clone)]
pub struct EventStore {
    js: jetstream::Context,
}

impl EventStore {
    pub fn new(client: async_nats::Client) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(5));
        Self { js }
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub async fn ensure_streams(&self, replicas: usize) -> Result<(), ReadError> {
        crate::streams::ensure_streams(&self.js, replicas).await
    }

    /// Appends one event and waits until the server has stored it.
    pub async fn append(
        &self,
        subject: &Subject,
        event: &Event,
        meta: &EventMeta,
        options: AppendOptions,
    ) -> Result<Appended, AppendError> {
        let (headers, payload) = envelope::encode(event, meta)?;
        let msg_id = options.msg_id.unwrap_or_else(|| meta.event_id.to_string());
        let mut publish =
            jetstream::message::PublishMessage::build().headers(headers).payload(payload).message_id(msg_id);
        if let Some(expected) = options.expected_last_subject_sequence {
            publish = publish.expected_last_subject_sequence(expected);
        }
        let classify = |err: jetstream::context::PublishError| match err.kind() {
            PublishErrorKind::WrongLastSequence => AppendError::Conflict {
                subject: subject.to_string(),
                expected: options.expected_last_subject_sequence.unwrap_or_default(),
            },
            PublishErrorKind::StreamNotFound => AppendError::NoStream(subject.to_string()),
            _ => AppendError::Unavailable(err.to_string()),
        };
        let ack =
            self.js.send_publish(subject.to_string(), publish).await.map_err(classify)?.await.map_err(classify)?;
        Ok(Appended { sequence: ack.sequence, duplicate: ack.duplicate })
    }

    /// Records what an operator or an operations worker did (`actor`) on SOVD_OPS, as its
    /// own correlation.
    pub async fn record_operation(&self, kind: OpsKind, event: &Event, actor: &str) -> Result<Appended, AppendError> {
        let meta = EventMeta::new(uuid::Uuid::now_v7().to_string(), actor);
        self.append(&Subject::ops(kind), event, &meta, AppendOptions::default()).await
    }

    /// The last event on a subject, or `None` when the subject is empty.
    pub async fn last_on_subject(&self, stream: StreamName, subject: &str) -> Result<Option<StoredEvent>, ReadError> {
        let handle = self.stream_handle(stream).await?;
        decode_direct(stream, handle.direct_get_last_for_subject(subject).await)
    }

    /// The first event at or after `from_sequence` on the subjects matching `filter` (which
    /// may hold wildcards), or `None` when there is none. One direct get: cheap enough to
    /// walk a few events of one aggregate without a consumer.
    pub async fn next_on_subject(
        &self,
        stream: StreamName,
        filter: &str,
        from_sequence: u64,
    ) -> Result<Option<StoredEvent>, ReadError> {
        let handle = self.stream_handle(stream).await?;
        decode_direct(stream, handle.direct_get_next_for_subject(filter, Some(from_sequence.max(1))).await)
    }

    async fn stream_handle(&self, stream: StreamName) -> Result<jetstream::stream::Stream<()>, ReadError> {
        self.js.get_stream_no_info(stream.as_str()).await.map_err(|e| ReadError::Unavailable(e.to_string()))
    }

    /// The stream's last sequence (0 when it has never held a message).
    pub async fn last_sequence(&self, stream: StreamName) -> Result<u64, ReadError> {
        let extent = crate::raw::extent(&self.js, stream.as_str()).await?;
        extent
            .map(|e| e.last_sequence)
            .ok_or_else(|| ReadError::Unavailable(format!("stream {} does not exist", stream.as_str())))
    }

    /// Every event on the subjects matching `filter`, in stream order, up to the last one
    /// stored when the call started.
    pub async fn read_filtered(&self, stream: StreamName, filter: &str) -> Result<Vec<StoredEvent>, ReadError> {
        let Some(last) = self.last_on_subject(stream, filter).await? else {
            return Ok(Vec::new());
        };
        self.read_range(stream, filter, 1, last.stream_sequence).await
    }

    /// The events on the subjects matching `filter` with sequences from `from` through `to`.
    /// `to` must be a sequence the filter matches (or the stream's last), or this waits for it.
    pub async fn read_range(
        &self,
        stream: StreamName,
        filter: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        let mut events = Vec::new();
        if from > to {
            return Ok(events);
        }
        let mut messages = self.ordered(stream, filter, from).await?;
        while let Some(stored) = messages.next().await {
            let stored = stored?;
            let done = stored.stream_sequence >= to;
            events.push(stored);
            if done {
                break;
            }
        }
        Ok(events)
    }

    /// A live, ordered read of the subjects matching `filter` from `start_sequence` on.
    /// It keeps following new events until dropped.
    pub async fn ordered(
        &self,
        stream: StreamName,
        filter: &str,
        start_sequence: u64,
    ) -> Result<impl futures::Stream<Item = Result<StoredEvent, ReadError>> + use<>, ReadError> {
        let consumer = self.ordered_consumer(stream, filter, Start::Sequence(start_sequence)).await?;
        let messages = consumer.messages().await.map_err(|e| ReadError::Unavailable(e.to_string()))?;
        let events = messages.map(move |message| decode_message(stream, message).map(|tail| tail.stored));
        Ok(events.filter(move |event| std::future::ready(!before(event, start_sequence, |e| e.stream_sequence))))
    }

    async fn ordered_consumer(
        &self,
        stream: StreamName,
        filter: &str,
        start: Start,
    ) -> Result<consumer::Consumer<consumer::pull::OrderedConfig>, ReadError> {
        let deliver_policy = match start {
            Start::Sequence(start_sequence) if start_sequence > 1 => {
                consumer::DeliverPolicy::ByStartSequence { start_sequence }
            }
            Start::Sequence(_) => consumer::DeliverPolicy::All,
            Start::Time(start_time) => consumer::DeliverPolicy::ByStartTime { start_time },
        };
        self.stream_handle(stream)
            .await?
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| ReadError::Unavailable(e.to_string()))
    }
}

/// A consumer's message as an event, with the version it was stored in and what is pending.
fn decode_message(
    stream: StreamName,
    message: Result<jetstream::Message, consumer::pull::OrderedError>,
) -> Result<TailEvent, ReadError> {
    let message = message.map_err(|e| ReadError::Unavailable(e.to_string()))?;
    let (sequence, pending) = message.info().map(|i| (i.stream_sequence, i.pending)).unwrap_or_default();
    let undecodable = |reason: String| ReadError::Undecodable { stream: stream.as_str().to_owned(), sequence, reason };
    let schema_version = envelope::stored_version(message.headers.as_ref())
        .ok_or_else(|| undecodable("missing Sovd-Schema-Version header".into()))?;
    let (meta, event) =
        envelope::decode(message.headers.as_ref(), &message.payload).map_err(|e| undecodable(e.to_string()))?;
    let stored = StoredEvent { stream_sequence: sequence, subject: message.subject.to_string(), meta, event };
    Ok(TailEvent { stored, schema_version, pending })
}

/// Where a [`EventStore::tail`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Sequence(u64),
    /// The first event the server stored at or after this time.
    Time(time::OffsetDateTime),
}

/// An event as a reader of the whole log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailEvent {
    pub stored: StoredEvent,
    /// The schema version it was written in (the event itself is upcast to the current one).
    pub schema_version: u16,
    /// Matching events behind this one at the moment it was delivered.
    pub pending: u64,
}

/// An ordered read for analysts and tools: how many matching events there were when it
/// opened, and the events, which keep coming as new ones are appended.
pub struct Tail {
    pub pending: u64,
    pub events: std::pin::Pin<Box<dyn futures::Stream<Item = Result<TailEvent, ReadError>> + Send>>,
}

impl EventStore {
    /// Every event on the subjects matching `filter` from `start` on, live.
    pub async fn tail(&self, stream: StreamName, filter: &str, start: Start) -> Result<Tail, ReadError> {
        let unavailable = |e: &dyn std::fmt::Display| ReadError::Unavailable(e.to_string());
        let mut consumer = self.ordered_consumer(stream, filter, start).await?;
        let pending = consumer.info().await.map_err(|e| unavailable(&e))?.num_pending;
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let first = match start {
            Start::Sequence(sequence) => sequence,
            Start::Time(_) => 0,
        };
        let events = messages
            .map(move |message| decode_message(stream, message))
            .filter(move |event| std::future::ready(!before(event, first, |e| e.stored.stream_sequence)));
        Ok(Tail { pending, events: Box::pin(events) })
    }
}

/// True for a message before the sequence a read started at. An ordered consumer that
/// must be recreated before it delivered anything (a missed heartbeat under load) starts
/// again from the stream's first message, whatever start it was created with (async-nats
/// 0.51 `recreate_consumer_stream`); such early messages are dropped here, so a read from
/// sequence N never yields anything before N.
pub(crate) fn before<T, E>(item: &Result<T, E>, start: u64, sequence: impl Fn(&T) -> u64) -> bool {
    matches!(item, Ok(value) if sequence(value) < start)
}

/// A direct get's answer as a stored event; "no message" is `None`.
fn decode_direct(
    stream: StreamName,
    answer: Result<jetstream::message::StreamMessage, jetstream::stream::DirectGetError>,
) -> Result<Option<StoredEvent>, ReadError> {
    let message = match answer {
        Ok(message) => message,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Unavailable(e.to_string())),
    };
    let (meta, event) = envelope::decode(Some(&message.headers), &message.payload).map_err(|e| {
        ReadError::Undecodable { stream: stream.as_str().to_owned(), sequence: message.sequence, reason: e.to_string() }
    })?;
    Ok(Some(StoredEvent { stream_sequence: message.sequence, subject: message.subject.to_string(), meta, event }))
}
