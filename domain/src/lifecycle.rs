//! The command lifecycle as a pure state machine.
//!
//! `decide(state, intent)` holds every rule and returns the events to record, or the reason
//! the intent is refused; `evolve(state, event)` only folds facts and never refuses. Nothing
//! else in the system decides a command's status.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::catalogue::Operation;
use crate::events::*;
use crate::ids::{CommandId, UserId};
use crate::uds::Nrc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Pending,
    /// Waiting for its vehicle to come online (up to a time limit).
    Queued,
    InProgress,
    Completed,
    Failed,
    TimedOut,
    Cancelled,
}

impl CommandStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Queued, Self::InProgress, Self::Completed, Self::Failed, Self::TimedOut, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::TimedOut | Self::Cancelled)
    }

    /// Order of progress; a status never moves to a lower rank. Read models use it to apply
    /// events from two streams in any order and still end in the right status.
    pub fn rank(&self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Queued => 1,
            Self::InProgress => 2,
            _ => 3,
        }
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What someone wants to happen to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandIntent {
    Submit(CommandRequested),
    RequestCancel {
        user_id: UserId,
        at: OffsetDateTime,
    },
    Dispatch {
        connector: String,
        at: OffsetDateTime,
    },
    RecordChunk {
        response_id: Uuid,
        payload_json: String,
        is_final: bool,
        at: OffsetDateTime,
    },
    /// The vehicle is offline: wait for it until `until`.
    Queue {
        reason: String,
        until: OffsetDateTime,
        at: OffsetDateTime,
    },
    /// One try failed; the command stays in progress for another.
    FailAttempt {
        reason: String,
        may_have_executed: bool,
        at: OffsetDateTime,
    },
    Complete {
        at: OffsetDateTime,
    },
    Fail {
        reason: String,
        at: OffsetDateTime,
    },
    /// The ECU answered with a negative response: a proper answer, and the command's end.
    Reject {
        nrc: Nrc,
        at: OffsetDateTime,
    },
    TimeOut {
        after_ms: u64,
        at: OffsetDateTime,
    },
    Cancel {
        at: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("command was already requested")]
    AlreadyRequested,
    #[error("command was never requested")]
    NotRequested,
    #[error("command already ended as {0}")]
    AlreadyTerminal(CommandStatus),
    #[error("command has not been dispatched to the vehicle")]
    NotDispatched,
    #[error("a non-idempotent operation was already dispatched (attempt {attempts}); it must not run again")]
    AlreadyDispatched { attempts: u32 },
    #[error("the final chunk was already recorded")]
    StreamClosed,
    #[error("only a pending command can be queued; this one is {0}")]
    NotPending(CommandStatus),
}

/// A command as far as its events tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandState {
    pub command_id: Option<CommandId>,
    pub status: Option<CommandStatus>,
    pub operation: Option<Operation>,
    /// How many times it was dispatched to a vehicle.
    pub attempts: u32,
    /// Sequence number the next response chunk gets.
    pub next_chunk: u32,
    pub final_chunk_recorded: bool,
    pub cancel_requested: bool,
    pub error_message: Option<String>,
    /// The last try failed before the request could reach the vehicle: even a
    /// non-idempotent operation may be dispatched again.
    pub retry_safe: bool,
    /// While queued for an offline vehicle: when it stops waiting.
    pub queued_until: Option<OffsetDateTime>,
    /// The ECU's refusal, when it ended that way.
    pub negative_response: Option<Nrc>,
}

impl CommandState {
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events.into_iter().fold(Self::default(), evolve)
    }
}

pub fn decide(state: &CommandState, intent: CommandIntent) -> Result<Vec<Event>, DomainError> {
    let Some(status) = state.status else {
        return match intent {
            CommandIntent::Submit(requested) => Ok(vec![Event::CommandRequested(requested)]),
            _ => Err(DomainError::NotRequested),
        };
    };
    if let CommandIntent::Submit(_) = intent {
        return Err(DomainError::AlreadyRequested);
    }
    if status.is_terminal() {
        return Err(DomainError::AlreadyTerminal(status));
    }
    let command_id = state.command_id.ok_or(DomainError::NotRequested)?;
    let dispatched = status == CommandStatus::InProgress;
    let event = match intent {
        CommandIntent::Submit(_) => return Err(DomainError::AlreadyRequested),
        CommandIntent::RequestCancel { user_id, at } => {
            Event::CommandCancelRequested(CommandCancelRequested { command_id, user_id, requested_at: at })
        }
        CommandIntent::Dispatch { connector, at } => {
            let idempotent = state.operation.as_ref().is_some_and(Operation::is_idempotent);
            if dispatched && !idempotent && !state.retry_safe {
                return Err(DomainError::AlreadyDispatched { attempts: state.attempts });
            }
            Event::CommandDispatched(CommandDispatched {
                command_id,
                attempt: state.attempts + 1,
                connector,
                dispatched_at: at,
            })
        }
        CommandIntent::RecordChunk { response_id, payload_json, is_final, at } => {
            if !dispatched {
                return Err(DomainError::NotDispatched);
            }
            if state.final_chunk_recorded {
                return Err(DomainError::StreamClosed);
            }
            Event::ResponseChunk(ResponseChunk {
                command_id,
                response_id,
                sequence_number: state.next_chunk,
                payload_json,
                is_final,
                received_at: at,
            })
        }
        CommandIntent::Queue { reason, until, at } => {
            if status != CommandStatus::Pending {
                return Err(DomainError::NotPending(status));
            }
            Event::CommandQueued(CommandQueued { command_id, reason, until, at })
        }
        CommandIntent::FailAttempt { reason, may_have_executed, at } => {
            if !dispatched {
                return Err(DomainError::NotDispatched);
            }
            Event::AttemptFailed(AttemptFailed { command_id, attempt: state.attempts, reason, may_have_executed, at })
        }
        CommandIntent::Complete { at } => {
            if !dispatched {
                return Err(DomainError::NotDispatched);
            }
            Event::CommandCompleted(CommandCompleted { command_id, completed_at: at })
        }
        CommandIntent::Fail { reason, at } => {
            Event::CommandFailed(CommandFailed { command_id, reason, completed_at: at, negative_response: None })
        }
        CommandIntent::Reject { nrc, at } => {
            if !dispatched {
                return Err(DomainError::NotDispatched);
            }
            Event::CommandFailed(CommandFailed {
                command_id,
                reason: format!("ECU answered with negative response {nrc}"),
                completed_at: at,
                negative_response: Some(nrc),
            })
        }
        CommandIntent::TimeOut { after_ms, at } => {
            if !dispatched {
                return Err(DomainError::NotDispatched);
            }
            Event::CommandTimedOut(CommandTimedOut { command_id, after_ms, completed_at: at })
        }
        CommandIntent::Cancel { at } => Event::CommandCancelled(CommandCancelled { command_id, completed_at: at }),
    };
    Ok(vec![event])
}

pub fn evolve(mut state: CommandState, event: &Event) -> CommandState {
    match event {
        Event::CommandRequested(e) => {
            state.command_id = Some(e.command_id);
            state.operation = Some(e.operation.clone());
            state.status.get_or_insert(CommandStatus::Pending);
        }
        Event::CommandCancelRequested(_) => state.cancel_requested = true,
        Event::CommandDispatched(e) => {
            state.command_id = Some(e.command_id);
            state.attempts = state.attempts.max(e.attempt);
            state.status = Some(CommandStatus::InProgress);
            state.retry_safe = false;
        }
        Event::AttemptFailed(e) => state.retry_safe = !e.may_have_executed,
        Event::CommandQueued(e) => {
            state.status = Some(CommandStatus::Queued);
            state.queued_until = Some(e.until);
        }
        Event::ResponseChunk(e) => {
            state.command_id = Some(e.command_id);
            state.status = Some(CommandStatus::InProgress);
            state.next_chunk = state.next_chunk.max(e.sequence_number + 1);
            state.final_chunk_recorded |= e.is_final;
        }
        Event::CommandCompleted(_) => state.status = Some(CommandStatus::Completed),
        Event::CommandFailed(e) => {
            state.status = Some(CommandStatus::Failed);
            state.error_message = Some(e.reason.clone());
            state.negative_response = e.negative_response;
        }
        Event::CommandTimedOut(e) => {
            state.status = Some(CommandStatus::TimedOut);
            state.error_message = Some(format!("vehicle did not answer within {} ms", e.after_ms));
        }
        Event::CommandCancelled(_) => state.status = Some(CommandStatus::Cancelled),
        // Events of other aggregates.
        _ => {}
    }
    state
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
