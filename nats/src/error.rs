//! Errors callers branch on.

use sovd_domain::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended to the subject first (`Nats-Expected-Last-Subject-Sequence`).
    #[error("subject {subject} moved past sequence {expected}")]
    Conflict { subject: String, expected: u64 },
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("no stream accepts subject {0}")]
    NoStream(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl AppendError {
    /// Worth trying again as it is; a conflict needs a fresh decision first.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("undecodable message at {stream} sequence {sequence}: {reason}")]
    Undecodable { stream: String, sequence: u64, reason: String },
}

impl ReadError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
