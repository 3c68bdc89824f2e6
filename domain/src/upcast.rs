//! Upcasters: every event shape ever published stays readable. An old version is decoded
//! into its frozen struct here and turned into the current shape; nothing else in the system
//! sees old versions.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::catalogue::Operation;
use crate::codec::{CodecError, decode};
use crate::events::{AccountLocked, CommandFailed, CommandRequested, Event};
use crate::ids::{CommandId, UserId, VehicleId, Vin};

/// CommandRequested as written until schema version 2 added `timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct CommandRequestedV1 {
    pub command_id: CommandId,
    pub vehicle_id: VehicleId,
    pub vin: Vin,
    pub user_id: UserId,
    pub operation: Operation,
    pub requested_at: OffsetDateTime,
}

impl From<CommandRequestedV1> for CommandRequested {
    fn from(v1: CommandRequestedV1) -> Self {
        Self {
            command_id: v1.command_id,
            vehicle_id: v1.vehicle_id,
            vin: v1.vin,
            user_id: v1.user_id,
            operation: v1.operation,
            requested_at: v1.requested_at,
            timeout_ms: None,
        }
    }
}

/// CommandFailed as written until schema version 2 added `negative_response`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct CommandFailedV1 {
    pub command_id: CommandId,
    pub reason: String,
    pub completed_at: OffsetDateTime,
}

impl From<CommandFailedV1> for CommandFailed {
    fn from(v1: CommandFailedV1) -> Self {
        Self { command_id: v1.command_id, reason: v1.reason, completed_at: v1.completed_at, negative_response: None }
    }
}

/// AccountLocked as written until schema version 2 added `client_ip`: every lock held for
/// every client address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct AccountLockedV1 {
    pub username: String,
    pub user_id: Option<UserId>,
    pub until: OffsetDateTime,
    pub at: OffsetDateTime,
}

impl From<AccountLockedV1> for AccountLocked {
    fn from(v1: AccountLockedV1) -> Self {
        Self { username: v1.username, user_id: v1.user_id, until: v1.until, at: v1.at, client_ip: None }
    }
}

/// `Some` when (type, version) is an old shape this module upcasts.
pub fn decode_legacy(event_type: &str, version: u16, payload: &[u8]) -> Option<Result<Event, CodecError>> {
    match (event_type, version) {
        ("CommandRequested", 1) => Some(
            decode::<CommandRequestedV1>(event_type, version, payload).map(|v1| Event::CommandRequested(v1.into())),
        ),
        ("AccountLocked", 1) => {
            Some(decode::<AccountLockedV1>(event_type, version, payload).map(|v1| Event::AccountLocked(v1.into())))
        }
        ("CommandFailed", 1) => {
            Some(decode::<CommandFailedV1>(event_type, version, payload).map(|v1| Event::CommandFailed(v1.into())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::ids::EcuAddress;

    #[test]
    fn a_version_1_request_reads_as_the_current_shape_with_the_default_timeout() {
        let v1 = CommandRequestedV1 {
            command_id: CommandId::from_uuid(Uuid::from_u128(1)),
            vehicle_id: VehicleId::from_uuid(Uuid::from_u128(2)),
            vin: Vin::parse("1HGBH41JXMN109186").unwrap(),
            user_id: UserId::from_uuid(Uuid::from_u128(3)),
            operation: Operation::ReadDtc { ecu: EcuAddress::new(0x10) },
            requested_at: OffsetDateTime::UNIX_EPOCH,
        };
        let bytes = postcard::to_stdvec(&v1).unwrap();
        let Event::CommandRequested(current) = Event::decode("CommandRequested", 1, &bytes).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(current.timeout_ms, None);
        assert_eq!(current.command_id, v1.command_id);
        assert_eq!(current.operation, v1.operation);
        // And the current version is what gets written.
        assert_eq!(Event::CommandRequested(current).kind().version, 2);
    }

    #[test]
    fn a_version_1_failure_reads_as_the_current_shape_without_a_negative_response() {
        let v1 = CommandFailedV1 {
            command_id: CommandId::from_uuid(Uuid::from_u128(1)),
            reason: "vehicle unreachable".into(),
            completed_at: OffsetDateTime::UNIX_EPOCH,
        };
        let bytes = postcard::to_stdvec(&v1).unwrap();
        let Event::CommandFailed(current) = Event::decode("CommandFailed", 1, &bytes).unwrap() else {
            panic!("not a failure")
        };
        assert_eq!(current.reason, v1.reason);
        assert_eq!(current.negative_response, None);
        assert_eq!(Event::CommandFailed(current).kind().version, 2);
    }

    #[test]
    fn a_version_1_lock_reads_as_a_lock_for_every_client() {
        let v1 = AccountLockedV1 {
            username: "alice".into(),
            user_id: Some(UserId::from_uuid(Uuid::from_u128(3))),
            until: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(15),
            at: OffsetDateTime::UNIX_EPOCH,
        };
        let bytes = postcard::to_stdvec(&v1).unwrap();
        let Event::AccountLocked(current) = Event::decode("AccountLocked", 1, &bytes).unwrap() else {
            panic!("not a lock")
        };
        assert_eq!((current.username.as_str(), current.until, current.client_ip.as_deref()), ("alice", v1.until, None));
        assert_eq!(Event::AccountLocked(current).kind().version, 2);
    }
}
