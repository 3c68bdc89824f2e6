//! The command worker: one CommandRequested in, dispatch + chunks + exactly one terminal
//! event out. Every append to the command's response subject is guarded by
//! `Nats-Expected-Last-Subject-Sequence`, so two connectors that see the same command can
//! never both write its outcome: the loser gets a conflict, re-reads the log and decides again.

use std::sync::Arc;
use std::time::Duration;

use sovd_domain::Event;
use sovd_domain::events::CommandRequested;
use sovd_domain::lifecycle::{self, CommandIntent, CommandState, CommandStatus, DomainError};
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, ReadError, StoredEvent, StreamName, Subject};
use time::OffsetDateTime;

use crate::breaker::{BreakerConfig, BreakerHook, BreakerState, Breakers};
use crate::lane::Lanes;
use crate::transport::VehicleTransport;

mod execute;
mod waiting;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this connector in the log (`connector:<name>`).
    pub name: String,
    /// How long a vehicle may take for one command before it is recorded as timed out.
    pub command_timeout: Duration,
    /// How often to re-read and decide again after losing an append race.
    pub max_conflicts: u32,
    /// A redelivered command whose last event is younger than this still has a live owner:
    /// leave it alone. Older means the owner is gone and this worker takes over.
    pub takeover_after: Duration,
    /// Tries per command for transient faults (the first included).
    pub max_attempts: u32,
    /// How long a command for an offline vehicle waits for it before it fails.
    pub queue_ttl: Duration,
    /// How often a queued command looks again whether its vehicle is back.
    pub queue_poll: Duration,
    /// How often a command waiting behind an earlier one for the same vehicle looks again.
    pub lane_poll: Duration,
    pub breaker: BreakerConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: "connector".into(),
            command_timeout: Duration::from_secs(30),
            max_conflicts: 8,
            takeover_after: Duration::from_secs(30),
            max_attempts: 3,
            queue_ttl: Duration::from_secs(300),
            queue_poll: Duration::from_secs(1),
            lane_poll: Duration::from_millis(200),
            breaker: BreakerConfig::default(),
        }
    }
}

/// What became of a command message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// This worker wrote the command's terminal event: ack the message.
    Terminal(CommandStatus),
    /// The command had ended before (a redelivery): ack the message.
    AlreadyEnded(CommandStatus),
    /// Another connector took the command over mid-run: leave the message to it.
    LostOwnership,
    /// Nothing to do for this event: ack it.
    Ignored,
    /// Another connector is still working on it: ask again later.
    Busy,
    /// Queued for an offline vehicle, or behind an earlier command for the same vehicle:
    /// look again after this long.
    Waiting(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("refused by the command lifecycle: {0}")]
    Domain(#[from] DomainError),
    #[error("gave up after {0} append conflicts")]
    TooManyConflicts(u32),
}

impl WorkerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Append(e) => e.is_retryable(),
            Self::Read(e) => e.is_retryable(),
            Self::TooManyConflicts(_) => true,
            Self::Domain(_) => false,
        }
    }
}

/// The command's response subject as this worker last saw it.
struct Log {
    subject: Subject,
    state: CommandState,
    last_sequence: u64,
    last_written_at: Option<OffsetDateTime>,
}

enum Step {
    Appended,
    Conflict,
}

pub struct CommandWorker<T> {
    store: EventStore,
    transport: Arc<T>,
    config: WorkerConfig,
    breakers: Breakers,
    lanes: Lanes,
}

impl<T: VehicleTransport> CommandWorker<T> {
    pub fn new(store: EventStore, transport: Arc<T>, config: WorkerConfig) -> Self {
        Self::with_breaker_hook(store, transport, config, None)
    }

    /// `hook` hears every change of a vehicle's circuit breaker.
    pub fn with_breaker_hook(
        store: EventStore,
        transport: Arc<T>,
        config: WorkerConfig,
        hook: Option<BreakerHook>,
    ) -> Self {
        let breakers = Breakers::new(config.breaker, hook);
        let lanes = Lanes::new(store.clone());
        Self { store, transport, config, breakers, lanes }
    }

    pub fn breaker_state(&self, vin: &sovd_domain::Vin) -> BreakerState {
        self.breakers.state(vin)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Handles one event from SOVD_COMMANDS.
    pub async fn handle(&self, stored: &StoredEvent) -> Result<Handled, WorkerError> {
        match &stored.event {
            Event::CommandRequested(request) => self.handle_request(stored, request).await,
            Event::CommandCancelRequested(_) => self.handle_cancel(stored).await,
            _ => Ok(Handled::Ignored),
        }
    }

    /// Whether someone asked to cancel the command (its request subject ends in a cancel).
    async fn cancel_requested(&self, request: &CommandRequested) -> Result<bool, WorkerError> {
        let subject = Subject::command(&request.vin, request.command_id);
        let last = self.store.last_on_subject(StreamName::Commands, subject.as_str()).await?;
        Ok(last.is_some_and(|l| matches!(l.event, Event::CommandCancelRequested(_))))
    }

    /// A cancel request: a command nobody runs is cancelled here; a running one is cancelled
    /// by its worker between two chunks.
    async fn handle_cancel(&self, stored: &StoredEvent) -> Result<Handled, WorkerError> {
        let Some((vin, command_id)) = sovd_nats::subjects::parse_command_subject(&stored.subject) else {
            return Ok(Handled::Ignored);
        };
        let request_subject = Subject::command(&vin, command_id);
        let history = self.store.read_filtered(StreamName::Commands, request_subject.as_str()).await?;
        let Some(requested) = history.iter().find(|s| matches!(s.event, Event::CommandRequested(_))) else {
            return Ok(Handled::Ignored);
        };
        let Event::CommandRequested(request) = &requested.event else { return Ok(Handled::Ignored) };
        for _ in 0..self.config.max_conflicts {
            let mut log = self.read_log(requested, request).await?;
            if let Some(status) = log.state.status.filter(CommandStatus::is_terminal) {
                return Ok(Handled::AlreadyEnded(status));
            }
            let running = log.state.status == Some(CommandStatus::InProgress);
            let owner_alive =
                log.last_written_at.is_some_and(|at| OffsetDateTime::now_utc() - at < self.config.takeover_after);
            if running && owner_alive {
                return Ok(Handled::Ignored);
            }
            match self.record(&mut log, CommandIntent::Cancel { at: OffsetDateTime::now_utc() }, &stored.meta).await? {
                Step::Appended => return Ok(Handled::Terminal(CommandStatus::Cancelled)),
                Step::Conflict => continue,
            }
        }
        Err(WorkerError::TooManyConflicts(self.config.max_conflicts))
    }

    async fn read_log(&self, stored: &StoredEvent, request: &CommandRequested) -> Result<Log, WorkerError> {
        let subject = Subject::response(&request.vin, request.command_id);
        let requested = lifecycle::evolve(CommandState::default(), &stored.event);
        // The common case, a fresh command, costs one direct get; only a redelivery of a
        // command that already has events replays its whole (short) response subject.
        let Some(last) = self.store.last_on_subject(StreamName::Responses, subject.as_str()).await? else {
            return Ok(Log { subject, state: requested, last_sequence: 0, last_written_at: None });
        };
        let history = self.store.read_filtered(StreamName::Responses, subject.as_str()).await?;
        let state = history.iter().fold(requested, |state, e| lifecycle::evolve(state, &e.event));
        let newest = history.last().unwrap_or(&last);
        Ok(Log {
            subject,
            state,
            last_sequence: newest.stream_sequence,
            last_written_at: Some(newest.meta.occurred_at),
        })
    }

    /// Decides `intent` against the log and appends the result, guarded by the sequence read.
    async fn record(&self, log: &mut Log, intent: CommandIntent, meta: &EventMeta) -> Result<Step, WorkerError> {
        for event in lifecycle::decide(&log.state, intent)? {
            let meta = EventMeta::caused_by(meta, format!("connector:{}", self.config.name));
            match self.store.append(&log.subject, &event, &meta, AppendOptions::expect_last(log.last_sequence)).await {
                Ok(appended) => {
                    log.last_sequence = appended.sequence;
                    log.state = lifecycle::evolve(std::mem::take(&mut log.state), &event);
                }
                Err(AppendError::Conflict { .. }) => return Ok(Step::Conflict),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Step::Appended)
    }

    async fn handle_request(&self, stored: &StoredEvent, request: &CommandRequested) -> Result<Handled, WorkerError> {
        let meta = &stored.meta;
        for _ in 0..self.config.max_conflicts {
            let mut log = self.read_log(stored, request).await?;
            if let Some(status) = log.state.status.filter(CommandStatus::is_terminal) {
                return Ok(Handled::AlreadyEnded(status));
            }
            if let Some(handled) = self.wait_for_turn(stored, request, &mut log).await? {
                return Ok(handled);
            }
            if let Some(handled) = self.queue_if_offline(request, &mut log, meta).await? {
                return Ok(handled);
            }
            if let (Some(written), Some(CommandStatus::InProgress)) = (log.last_written_at, log.state.status) {
                let age = OffsetDateTime::now_utc() - written;
                if age < self.config.takeover_after {
                    return Ok(Handled::Busy);
                }
                tracing::warn!(
                    command_id = %request.command_id,
                    correlation_id = %meta.correlation_id,
                    silent_for_ms = age.whole_milliseconds() as i64,
                    "taking over a command whose connector went silent"
                );
            }
            if matches!(log.state.status, Some(CommandStatus::Pending | CommandStatus::Queued))
                && let Err(refused) = self.breakers.admit(&request.vin, std::time::Instant::now())
            {
                let reason = format!(
                    "circuit breaker open for vehicle {} after {} consecutive failures; not sent (next try allowed in {} s)",
                    request.vin,
                    refused.failures,
                    refused.retry_in.as_secs()
                );
                return match self
                    .record(&mut log, CommandIntent::Fail { reason, at: OffsetDateTime::now_utc() }, meta)
                    .await?
                {
                    Step::Appended => Ok(Handled::Terminal(CommandStatus::Failed)),
                    Step::Conflict => continue,
                };
            }
            if self.cancel_requested(request).await? {
                let cancel = CommandIntent::Cancel { at: OffsetDateTime::now_utc() };
                return match self.record(&mut log, cancel, meta).await? {
                    Step::Appended => Ok(Handled::Terminal(CommandStatus::Cancelled)),
                    Step::Conflict => continue,
                };
            }
            let dispatch =
                CommandIntent::Dispatch { connector: self.config.name.clone(), at: OffsetDateTime::now_utc() };
            let step = match self.record(&mut log, dispatch, meta).await {
                Err(WorkerError::Domain(DomainError::AlreadyDispatched { attempts })) => {
                    // A non-idempotent operation may already have run: never run it again,
                    // and say so instead of guessing the outcome.
                    let reason = format!(
                        "{} was dispatched to the vehicle (attempt {attempts}) but its connector stopped before \
                         reporting; the outcome is unknown and it was not run again because it is not idempotent",
                        request.operation.name()
                    );
                    let fail = CommandIntent::Fail { reason, at: OffsetDateTime::now_utc() };
                    match self.record(&mut log, fail, meta).await? {
                        Step::Appended => return Ok(Handled::Terminal(CommandStatus::Failed)),
                        Step::Conflict => continue,
                    }
                }
                other => other?,
            };
            match step {
                Step::Conflict => continue,
                Step::Appended => return self.execute(request, log, meta).await,
            }
        }
        Err(WorkerError::TooManyConflicts(self.config.max_conflicts))
    }
}
