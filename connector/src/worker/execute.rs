//! Running a dispatched command: tries at the vehicle, retries with backoff for transient
//! faults, the circuit breaker, the deadline, and the one terminal event.

use std::time::Duration;

use futures::StreamExt;
use sovd_domain::events::CommandRequested;
use sovd_domain::lifecycle::{CommandIntent, CommandStatus};
use sovd_nats::EventMeta;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{CommandWorker, Handled, Log, Step, WorkerError};
use crate::breaker::BreakerState;
use crate::transport::{TransportError, VehicleTransport};

enum Attempt {
    /// The command ends with this (`None`: out of time).
    Ended(Option<CommandIntent>),
    Failed(TransportError),
    LostOwnership,
}

/// Exponential backoff with jitter: 200 ms, 400 ms, 800 ms ... up to 5 s, each between
/// half and all of it, so retries of many commands do not arrive together.
fn backoff(attempt: u32, command_id: sovd_domain::CommandId) -> Duration {
    let full =
        Duration::from_millis(200).saturating_mul(1 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(5));
    let spread =
        (command_id.as_uuid().as_u128() as u64 ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000;
    full / 2 + full / 2 * u32::try_from(spread).unwrap_or(0) / 1000
}

impl<T: VehicleTransport> CommandWorker<T> {
    pub(super) async fn execute(
        &self,
        request: &CommandRequested,
        mut log: Log,
        meta: &EventMeta,
    ) -> Result<Handled, WorkerError> {
        let started = tokio::time::Instant::now();
        let timeout = request.timeout_ms.map_or(self.config.command_timeout, |ms| Duration::from_millis(ms.into()));
        let deadline = started + timeout;
        let timed_out = || CommandIntent::TimeOut {
            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            at: OffsetDateTime::now_utc(),
        };
        let outcome = loop {
            let error = match self.attempt(request, &mut log, meta, deadline).await? {
                Attempt::Ended(intent) => break intent.unwrap_or_else(timed_out),
                Attempt::LostOwnership => return Ok(Handled::LostOwnership),
                Attempt::Failed(error) => error,
            };
            let now = OffsetDateTime::now_utc();
            if error.is_vehicle_fault() {
                self.breakers.failure(&request.vin, std::time::Instant::now());
            } else {
                self.breakers.success(&request.vin);
            }
            let safe_to_repeat = request.operation.is_idempotent() || !error.may_have_executed();
            let retry = error.is_transient()
                && safe_to_repeat
                && log.state.attempts < self.config.max_attempts
                && self.breakers.state(&request.vin) == BreakerState::Closed;
            if let TransportError::NegativeResponse(nrc) = error {
                break CommandIntent::Reject { nrc, at: now };
            }
            if !retry {
                let mut reason = error.to_string();
                if error.is_transient() && !safe_to_repeat {
                    reason.push_str(&format!(
                        "; not tried again because {} is not idempotent and may have run",
                        request.operation.name()
                    ));
                } else if error.is_transient() && log.state.attempts > 1 {
                    reason.push_str(&format!(" (after {} attempts)", log.state.attempts));
                }
                break CommandIntent::Fail { reason, at: now };
            }
            tracing::info!(
                command_id = %request.command_id,
                correlation_id = %meta.correlation_id,
                attempt = log.state.attempts,
                error = %error,
                "attempt failed; trying again"
            );
            let failed = CommandIntent::FailAttempt {
                reason: error.to_string(),
                may_have_executed: error.may_have_executed(),
                at: now,
            };
            if let Step::Conflict = self.record(&mut log, failed, meta).await? {
                return Ok(Handled::LostOwnership);
            }
            let pause = backoff(log.state.attempts, request.command_id);
            if tokio::time::Instant::now() + pause >= deadline {
                tokio::time::sleep_until(deadline).await;
                break timed_out();
            }
            tokio::time::sleep(pause).await;
            let dispatch =
                CommandIntent::Dispatch { connector: self.config.name.clone(), at: OffsetDateTime::now_utc() };
            if let Step::Conflict = self.record(&mut log, dispatch, meta).await? {
                return Ok(Handled::LostOwnership);
            }
        };
        if matches!(outcome, CommandIntent::Complete { .. }) {
            self.breakers.success(&request.vin);
        }
        if matches!(outcome, CommandIntent::TimeOut { .. }) {
            self.breakers.failure(&request.vin, std::time::Instant::now());
        }
        let status = match &outcome {
            CommandIntent::Complete { .. } => CommandStatus::Completed,
            CommandIntent::TimeOut { .. } => CommandStatus::TimedOut,
            CommandIntent::Cancel { .. } => CommandStatus::Cancelled,
            _ => CommandStatus::Failed,
        };
        match self.record(&mut log, outcome, meta).await? {
            Step::Appended => {
                tracing::info!(
                    command_id = %request.command_id,
                    correlation_id = %meta.correlation_id,
                    vin = %request.vin,
                    status = %status,
                    attempts = log.state.attempts,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "command finished"
                );
                Ok(Handled::Terminal(status))
            }
            Step::Conflict => Ok(Handled::LostOwnership),
        }
    }

    /// One try at the vehicle: streams its chunks into the log until it ends, fails, runs out
    /// of time (`Ended(None)`) or is cancelled.
    async fn attempt(
        &self,
        request: &CommandRequested,
        log: &mut Log,
        meta: &EventMeta,
        deadline: tokio::time::Instant,
    ) -> Result<Attempt, WorkerError> {
        let mut chunks = self.transport.execute(&request.vin, &request.operation);
        // A repeated try resumes after the chunks already recorded.
        let already_recorded = log.state.next_chunk;
        let mut index = 0u32;
        loop {
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Err(_) => return Ok(Attempt::Ended(None)),
                Ok(Some(Ok(chunk))) => {
                    let skip = index < already_recorded;
                    index += 1;
                    if skip {
                        continue;
                    }
                    let intent = CommandIntent::RecordChunk {
                        response_id: Uuid::now_v7(),
                        payload_json: chunk.payload.to_string(),
                        is_final: chunk.is_final,
                        at: OffsetDateTime::now_utc(),
                    };
                    if let Step::Conflict = self.record(log, intent, meta).await? {
                        return Ok(Attempt::LostOwnership);
                    }
                    // Honoured between chunks: what the vehicle sent is kept, nothing more is asked.
                    if !chunk.is_final && self.cancel_requested(request).await? {
                        return Ok(Attempt::Ended(Some(CommandIntent::Cancel { at: OffsetDateTime::now_utc() })));
                    }
                }
                Ok(Some(Err(error))) => return Ok(Attempt::Failed(error)),
                Ok(None) => return Ok(Attempt::Ended(Some(CommandIntent::Complete { at: OffsetDateTime::now_utc() }))),
            }
        }
    }
}
