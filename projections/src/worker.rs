//! A projection worker: a loop around one step. Each step reads what the stream has after
//! the checkpoint (up to a batch), applies it and the new checkpoint in one transaction.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use sovd_nats::{EventStore, ReadError, StoredEvent, StreamName};
use tokio::sync::watch;

use crate::ProjectionError;
use crate::apply::{Projection, apply_batch, checkpoint};

type EventStream = Pin<Box<dyn Stream<Item = Result<StoredEvent, ReadError>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied this many events.
    Processed(usize),
    /// Nothing new arrived within the idle wait.
    Idle,
}

pub struct ProjectionWorker {
    pool: sqlx::PgPool,
    store: EventStore,
    projection: Projection,
    stream: StreamName,
    events: Option<EventStream>,
    batch_size: usize,
    idle_wait: Duration,
    /// The last sequence this worker applied (0 = none yet).
    position: u64,
}

impl ProjectionWorker {
    pub fn new(pool: sqlx::PgPool, store: EventStore, projection: Projection, stream: StreamName) -> Self {
        Self {
            pool,
            store,
            projection,
            stream,
            events: None,
            batch_size: 1000,
            idle_wait: Duration::from_millis(500),
            position: 0,
        }
    }

    /// How long one step waits for a first event before it reports `Idle`.
    pub fn with_idle_wait(mut self, idle_wait: Duration) -> Self {
        self.idle_wait = idle_wait;
        self
    }

    /// Events per transaction at most.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The last stream sequence this worker applied, 0 before its first batch.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.projection.name(), self.stream.as_str())
    }

    async fn events(&mut self) -> Result<&mut EventStream, ProjectionError> {
        if self.events.is_none() {
            let from = checkpoint(&self.pool, self.projection, self.stream).await? + 1;
            let stream = self.store.ordered(self.stream, self.stream.subjects(), from).await?;
            self.events = Some(Box::pin(stream));
        }
        // Just filled above when it was empty.
        self.events.as_mut().ok_or_else(|| ProjectionError::Read(ReadError::Unavailable("no consumer".into())))
    }

    /// Applies the next batch, if any arrives within the idle wait.
    pub async fn try_process_next(&mut self) -> Result<Outcome, ProjectionError> {
        let result = self.step().await;
        if result.is_err() {
            // Start again from the Postgres checkpoint, the only truth about progress.
            self.events = None;
        }
        result
    }

    async fn step(&mut self) -> Result<Outcome, ProjectionError> {
        let idle_wait = self.idle_wait;
        let batch_size = self.batch_size;
        let events = self.events().await?;
        let first = match tokio::time::timeout(idle_wait, events.next()).await {
            Err(_) => return Ok(Outcome::Idle),
            Ok(None) => return Err(ReadError::Unavailable("event stream ended".into()).into()),
            Ok(Some(event)) => event?,
        };
        let mut batch = vec![first];
        // Take whatever else is already here, without waiting for more.
        while batch.len() < batch_size {
            match tokio::time::timeout(Duration::from_millis(1), events.next()).await {
                Ok(Some(event)) => batch.push(event?),
                Ok(None) | Err(_) => break,
            }
        }
        apply_batch(&self.pool, self.projection, self.stream, &batch).await?;
        self.position = batch.iter().map(|e| e.stream_sequence).max().unwrap_or(self.position);
        Ok(Outcome::Processed(batch.len()))
    }

    /// Runs until `shutdown` turns true; errors are logged and retried with backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let step = tokio::select! {
                step = self.try_process_next() => step,
                _ = shutdown.changed() => return,
            };
            match step {
                Ok(Outcome::Processed(n)) => {
                    tracing::debug!(projection = %self.name(), events = n, "applied batch");
                    backoff = Duration::from_millis(100);
                }
                Ok(Outcome::Idle) => {}
                Err(error) => {
                    tracing::warn!(projection = %self.name(), error = %error, "projection step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// One worker per (projection, stream).
pub fn all_workers(pool: &sqlx::PgPool, store: &EventStore) -> Vec<ProjectionWorker> {
    Projection::ALL
        .iter()
        .flat_map(|p| p.streams().iter().map(move |s| (*p, *s)))
        .map(|(p, s)| ProjectionWorker::new(pool.clone(), store.clone(), p, s))
        .collect()
}
