//! Events: facts in the past tense. A published shape never changes in place; a change is a
//! new schema version with an upcaster in [`crate::codec`].

use serde::{Deserialize, Serialize};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::catalogue::Operation;
use crate::ids::{CommandId, UserId, VehicleId, Vin};
use crate::uds::Nrc;
use crate::users::Permission;
use crate::vehicle::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequested {
    pub command_id: CommandId,
    pub vehicle_id: VehicleId,
    pub vin: Vin,
    pub user_id: UserId,
    pub operation: Operation,
    pub requested_at: OffsetDateTime,
    /// How long the vehicle may take, when the request asked for other than the default.
    /// Added in schema version 2; version 1 events read as `None`.
    pub timeout_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCancelRequested {
    pub command_id: CommandId,
    pub user_id: UserId,
    pub requested_at: OffsetDateTime,
}

/// Recorded before the vehicle is asked anything, so a redelivery can decide from the log
/// whether the operation may already have run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandDispatched {
    pub command_id: CommandId,
    pub attempt: u32,
    pub connector: String,
    pub dispatched_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseChunk {
    pub command_id: CommandId,
    pub response_id: Uuid,
    pub sequence_number: u32,
    /// The chunk as JSON text: postcard is not self-describing, so free-form JSON travels as text.
    pub payload_json: String,
    pub is_final: bool,
    pub received_at: OffsetDateTime,
}

/// The vehicle was offline: the command waits for it until `until`, then fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandQueued {
    pub command_id: CommandId,
    pub reason: String,
    pub until: OffsetDateTime,
    pub at: OffsetDateTime,
}

/// One try at the vehicle failed; another may follow. `may_have_executed` says whether the
/// request could have reached the ECU, which decides whether a non-idempotent operation may
/// be tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptFailed {
    pub command_id: CommandId,
    pub attempt: u32,
    pub reason: String,
    pub may_have_executed: bool,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCompleted {
    pub command_id: CommandId,
    pub completed_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFailed {
    pub command_id: CommandId,
    pub reason: String,
    pub completed_at: OffsetDateTime,
    /// The ECU's negative response, when that is why it failed (schema version 2).
    pub negative_response: Option<Nrc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandTimedOut {
    pub command_id: CommandId,
    pub after_ms: u64,
    pub completed_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCancelled {
    pub command_id: CommandId,
    pub completed_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VehicleRegistered {
    pub vehicle_id: VehicleId,
    pub vin: Vin,
    pub make: String,
    pub model: String,
    pub year: u16,
    pub metadata_json: String,
    pub registered_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VehicleConnected {
    pub vin: Vin,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VehicleDisconnected {
    pub vin: Vin,
    pub reason: String,
    pub at: OffsetDateTime,
}

/// A connector's circuit breaker for the vehicle changed: `closed`, `open` or `half_open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VehicleCircuitChanged {
    pub vin: Vin,
    pub state: String,
    pub connector: String,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    pub email: Option<String>,
    /// PHC string (argon2id); never the password.
    pub password_hash: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChanged {
    pub user_id: UserId,
    pub role: Role,
    pub changed_by: UserId,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChanged {
    pub user_id: UserId,
    /// PHC string (argon2id); never the password.
    pub password_hash: String,
    pub changed_by: UserId,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeactivated {
    pub user_id: UserId,
    pub changed_by: UserId,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReactivated {
    pub user_id: UserId,
    pub changed_by: UserId,
    pub at: OffsetDateTime,
}

/// An admin let a user do something beyond their role (see [`crate::users::Permission`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionGranted {
    pub user_id: UserId,
    pub permission: Permission,
    pub changed_by: UserId,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionRevoked {
    pub user_id: UserId,
    pub permission: Permission,
    pub changed_by: UserId,
    pub at: OffsetDateTime,
}

/// Where a sign-in came from, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSucceeded {
    pub user_id: UserId,
    pub username: String,
    pub client: ClientInfo,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailed {
    /// As typed; the user may not exist.
    pub username: String,
    pub user_id: Option<UserId>,
    pub reason: String,
    pub client: ClientInfo,
    pub at: OffsetDateTime,
}

/// Too many failed sign-ins: the name is locked for one client address, or for every client
/// when the name-wide budget is spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLocked {
    pub username: String,
    pub user_id: Option<UserId>,
    pub until: OffsetDateTime,
    pub at: OffsetDateTime,
    /// The client address the lock holds for; `None` for every address. Added in schema
    /// version 2; version 1 locks held for every address.
    pub client_ip: Option<String>,
}

/// A sign-in lock was lifted before it ran out: by an admin, or by a password reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUnlocked {
    pub username: String,
    pub user_id: Option<UserId>,
    /// Who lifted it (the nil id for the operator at the console).
    pub by: UserId,
    /// `unlock` or `password reset`.
    pub reason: String,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOut {
    pub user_id: UserId,
    pub at: OffsetDateTime,
}

/// A refresh token was presented a second time: its whole family was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenReused {
    pub user_id: UserId,
    pub family: Uuid,
    pub client: ClientInfo,
    pub at: OffsetDateTime,
}

/// An operator rebuilt a read model from the log (`sovd projections rebuild`) and switched
/// the API over to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionRebuilt {
    pub projection: String,
    /// Events read from the log to build it.
    pub events: u64,
    /// Rows in its tables after the switch.
    pub rows: u64,
    /// `sovd_projections::digest` of its tables after the switch.
    pub digest: String,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
}

/// `sovd backup` stored a snapshot of every stream, with its manifest, in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCompleted {
    pub backup_id: String,
    /// The object store location, without credentials.
    pub location: String,
    pub streams: u32,
    /// Messages in the snapshots.
    pub messages: u64,
    /// Bytes written to object storage.
    pub bytes: u64,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
}

/// `sovd backup` did not finish; nothing it wrote counts as a backup (it has no manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailed {
    pub location: String,
    pub error: String,
    pub at: OffsetDateTime,
}

/// The archive could not ship a stream's new events; it keeps trying from its checkpoint.
/// Recorded once when failures start, not for every retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveFailed {
    pub stream: String,
    pub location: String,
    pub error: String,
    pub at: OffsetDateTime,
}

/// `sovd restore` brought the streams back from a backup and the archive, and rebuilt the
/// read models from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCompleted {
    pub backup_id: String,
    pub location: String,
    /// The point in time or sequences asked for (`--until`), if any.
    pub until: Option<String>,
    pub streams: u32,
    /// Messages in the restored streams.
    pub messages: u64,
    /// Archive segments applied after the snapshots.
    pub segments: u64,
    /// `projection=digest` for every read model rebuilt.
    pub digests: Vec<String>,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
}

/// Every event the system records, in its current shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    CommandRequested(CommandRequested),
    CommandCancelRequested(CommandCancelRequested),
    CommandDispatched(CommandDispatched),
    ResponseChunk(ResponseChunk),
    AttemptFailed(AttemptFailed),
    CommandQueued(CommandQueued),
    CommandCompleted(CommandCompleted),
    CommandFailed(CommandFailed),
    CommandTimedOut(CommandTimedOut),
    CommandCancelled(CommandCancelled),
    VehicleRegistered(VehicleRegistered),
    VehicleConnected(VehicleConnected),
    VehicleDisconnected(VehicleDisconnected),
    VehicleCircuitChanged(VehicleCircuitChanged),
    UserCreated(UserCreated),
    RoleChanged(RoleChanged),
    PasswordChanged(PasswordChanged),
    UserDeactivated(UserDeactivated),
    UserReactivated(UserReactivated),
    LoginSucceeded(LoginSucceeded),
    LoginFailed(LoginFailed),
    AccountLocked(AccountLocked),
    AccountUnlocked(AccountUnlocked),
    PermissionGranted(PermissionGranted),
    PermissionRevoked(PermissionRevoked),
    LoggedOut(LoggedOut),
    RefreshTokenReused(RefreshTokenReused),
    ProjectionRebuilt(ProjectionRebuilt),
    BackupCompleted(BackupCompleted),
    BackupFailed(BackupFailed),
    ArchiveFailed(ArchiveFailed),
    RestoreCompleted(RestoreCompleted),
}

impl Event {
    /// The command this event belongs to, if it is part of a command's life.
    pub fn command_id(&self) -> Option<CommandId> {
        match self {
            Self::CommandRequested(e) => Some(e.command_id),
            Self::CommandCancelRequested(e) => Some(e.command_id),
            Self::CommandDispatched(e) => Some(e.command_id),
            Self::ResponseChunk(e) => Some(e.command_id),
            Self::AttemptFailed(e) => Some(e.command_id),
            Self::CommandQueued(e) => Some(e.command_id),
            Self::CommandCompleted(e) => Some(e.command_id),
            Self::CommandFailed(e) => Some(e.command_id),
            Self::CommandTimedOut(e) => Some(e.command_id),
            Self::CommandCancelled(e) => Some(e.command_id),
            _ => None,
        }
    }

    /// True for the events that end a command's life.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::CommandCompleted(_) | Self::CommandFailed(_) | Self::CommandTimedOut(_) | Self::CommandCancelled(_)
        )
    }
}
