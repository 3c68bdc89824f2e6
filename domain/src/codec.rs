//! Event <-> bytes. The payload is postcard; the type name and schema version travel beside it
//! (in NATS headers), because postcard is not self-describing. Every version ever published
//! stays decodable here: old versions are upcast to the current shape on read.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::events::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event type {event_type} has no schema version {version}")]
    UnsupportedVersion { event_type: String, version: u16 },
    #[error("malformed {event_type} v{version} payload: {reason}")]
    Malformed { event_type: String, version: u16, reason: String },
    #[error("could not encode {event_type}: {reason}")]
    Encode { event_type: &'static str, reason: String },
}

/// Type name and schema version of an event as written on the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind {
    pub event_type: &'static str,
    pub version: u16,
}

macro_rules! codec_table {
    ($($variant:ident = $version:literal),* $(,)?) => {
        /// Every event type name, for tooling and filters.
        pub const EVENT_TYPES: &[&str] = &[$(stringify!($variant)),*];

        impl Event {
            /// Type name and the schema version this code writes.
            pub fn kind(&self) -> EventKind {
                match self {
                    $(Self::$variant(_) => EventKind { event_type: stringify!($variant), version: $version },)*
                }
            }

            pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
                match self {
                    $(Self::$variant(e) => encode(stringify!($variant), e),)*
                }
            }

            /// Decodes any version ever written; older ones are upcast to the current shape.
            pub fn decode(event_type: &str, version: u16, payload: &[u8]) -> Result<Self, CodecError> {
                if let Some(upcast) = crate::upcast::decode_legacy(event_type, version, payload) {
                    return upcast;
                }
                match (event_type, version) {
                    $((stringify!($variant), $version) => decode(event_type, version, payload).map(Self::$variant),)*
                    _ if EVENT_TYPES.contains(&event_type) => Err(CodecError::UnsupportedVersion {
                        event_type: event_type.to_owned(),
                        version,
                    }),
                    _ => Err(CodecError::UnknownType(event_type.to_owned())),
                }
            }
        }
    };
}

codec_table!(
    CommandRequested = 2,
    CommandCancelRequested = 1,
    CommandDispatched = 1,
    ResponseChunk = 1,
    AttemptFailed = 1,
    CommandQueued = 1,
    CommandCompleted = 1,
    CommandFailed = 2,
    CommandTimedOut = 1,
    CommandCancelled = 1,
    VehicleRegistered = 1,
    VehicleConnected = 1,
    VehicleDisconnected = 1,
    VehicleCircuitChanged = 1,
    UserCreated = 1,
    RoleChanged = 1,
    PasswordChanged = 1,
    UserDeactivated = 1,
    UserReactivated = 1,
    LoginSucceeded = 1,
    LoginFailed = 1,
    AccountLocked = 2,
    LoggedOut = 1,
    RefreshTokenReused = 1,
    ProjectionRebuilt = 1,
    BackupCompleted = 1,
    BackupFailed = 1,
    ArchiveFailed = 1,
    RestoreCompleted = 1,
    AccountUnlocked = 1,
    PermissionGranted = 1,
    PermissionRevoked = 1,
);

fn encode<T: Serialize>(event_type: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|e| CodecError::Encode { event_type, reason: e.to_string() })
}

pub(crate) fn decode<T: DeserializeOwned>(event_type: &str, version: u16, payload: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(payload).map_err(|e| CodecError::Malformed {
        event_type: event_type.to_owned(),
        version,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Operation;
    use crate::ids::{CommandId, EcuAddress, UserId, VehicleId, Vin};
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn requested() -> Event {
        Event::CommandRequested(CommandRequested {
            command_id: CommandId::new(),
            vehicle_id: VehicleId::from_uuid(Uuid::nil()),
            vin: Vin::parse("1HGBH41JXMN109186").unwrap(),
            user_id: UserId::from_uuid(Uuid::nil()),
            operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
            requested_at: OffsetDateTime::UNIX_EPOCH,
            timeout_ms: None,
        })
    }

    #[test]
    fn refuses_unknown_type_and_unknown_version_with_distinct_errors() {
        assert!(matches!(Event::decode("Nope", 1, &[]), Err(CodecError::UnknownType(_))));
        assert!(matches!(
            Event::decode("CommandRequested", 99, &[]),
            Err(CodecError::UnsupportedVersion { version: 99, .. })
        ));
    }

    #[test]
    fn truncated_payload_is_malformed_not_a_panic() {
        let bytes = requested().encode().unwrap();
        let err = Event::decode("CommandRequested", 1, &bytes[..bytes.len() / 2]).unwrap_err();
        assert!(matches!(err, CodecError::Malformed { .. }));
    }

    #[test]
    fn encodes_and_decodes_a_request() {
        let event = requested();
        let kind = event.kind();
        assert_eq!(kind.event_type, "CommandRequested");
        let back = Event::decode(kind.event_type, kind.version, &event.encode().unwrap()).unwrap();
        assert_eq!(back, event);
    }
}
