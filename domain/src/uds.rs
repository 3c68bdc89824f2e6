//! UDS (ISO 14229-1) terms the log records: negative response codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A UDS negative response code: the ECU understood the request and refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nrc(pub u8);

impl Nrc {
    pub const GENERAL_REJECT: Self = Self(0x10);
    pub const SERVICE_NOT_SUPPORTED: Self = Self(0x11);
    pub const CONDITIONS_NOT_CORRECT: Self = Self(0x22);
    pub const REQUEST_SEQUENCE_ERROR: Self = Self(0x24);
    pub const REQUEST_OUT_OF_RANGE: Self = Self(0x31);
    pub const SECURITY_ACCESS_DENIED: Self = Self(0x33);
    pub const SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION: Self = Self(0x7F);

    pub fn code(&self) -> u8 {
        self.0
    }

    /// The name ISO 14229-1 gives the code.
    pub fn name(&self) -> &'static str {
        match self.0 {
            0x10 => "generalReject",
            0x11 => "serviceNotSupported",
            0x12 => "subFunctionNotSupported",
            0x13 => "incorrectMessageLengthOrInvalidFormat",
            0x14 => "responseTooLong",
            0x21 => "busyRepeatRequest",
            0x22 => "conditionsNotCorrect",
            0x24 => "requestSequenceError",
            0x25 => "noResponseFromSubnetComponent",
            0x26 => "failurePreventsExecutionOfRequestedAction",
            0x31 => "requestOutOfRange",
            0x33 => "securityAccessDenied",
            0x35 => "invalidKey",
            0x36 => "exceedNumberOfAttempts",
            0x37 => "requiredTimeDelayNotExpired",
            0x70 => "uploadDownloadNotAccepted",
            0x71 => "transferDataSuspended",
            0x72 => "generalProgrammingFailure",
            0x73 => "wrongBlockSequenceCounter",
            0x78 => "requestCorrectlyReceivedResponsePending",
            0x7E => "subFunctionNotSupportedInActiveSession",
            0x7F => "serviceNotSupportedInActiveSession",
            _ => "unknown",
        }
    }
}

/// `0x31 (requestOutOfRange)`.
impl fmt::Display for Nrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} ({})", self.0, self.name())
    }
}
