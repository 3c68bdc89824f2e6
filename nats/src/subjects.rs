//! Typed subject constructors. Every subject the system writes is built here, never by
//! `format!` elsewhere, so the scheme (docs/adr/001-subject-scheme.md) lives in one file.

use std::fmt;

use sovd_domain::{CommandId, UserId, Vin};

use crate::streams::StreamName;

/// A concrete subject one event is appended to (one aggregate, one subject).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    stream: StreamName,
    value: String,
}

impl Subject {
    /// Requests about one command: `sovd.cmd.<vin>.<command_id>`.
    pub fn command(vin: &Vin, command_id: CommandId) -> Self {
        Self { stream: StreamName::Commands, value: format!("sovd.cmd.{vin}.{command_id}") }
    }

    /// What happened to one command: `sovd.rsp.<vin>.<command_id>`.
    pub fn response(vin: &Vin, command_id: CommandId) -> Self {
        Self { stream: StreamName::Responses, value: format!("sovd.rsp.{vin}.{command_id}") }
    }

    /// One vehicle's registration and connectivity: `sovd.veh.<vin>`.
    pub fn vehicle(vin: &Vin) -> Self {
        Self { stream: StreamName::Fleet, value: format!("sovd.veh.{vin}") }
    }

    /// One user's account: `sovd.iam.<user_id>`.
    pub fn user(user_id: UserId) -> Self {
        Self { stream: StreamName::Iam, value: format!("sovd.iam.{user_id}") }
    }

    /// One user's sign-ins, sign-outs and token events: `sovd.iam.<user_id>.sessions`. Kept
    /// apart from the account subject so account changes never race with sign-ins.
    pub fn user_sessions(user_id: UserId) -> Self {
        Self { stream: StreamName::Iam, value: format!("sovd.iam.{user_id}.sessions") }
    }

    /// Sign-in attempts for names that match no user.
    pub fn unknown_user_sessions() -> Self {
        Self { stream: StreamName::Iam, value: "sovd.iam.unknown.sessions".to_owned() }
    }

    /// What operators did (rebuilds, backups, restores): `sovd.ops.<kind>`.
    pub fn ops(kind: OpsKind) -> Self {
        Self { stream: StreamName::Ops, value: format!("sovd.ops.{}", kind.as_str()) }
    }

    pub fn stream(&self) -> StreamName {
        self.stream
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Filter for every response event of one command, whatever the vehicle.
    pub fn responses_of(command_id: CommandId) -> String {
        format!("sovd.rsp.*.{command_id}")
    }

    /// Filter for every request about one vehicle's commands, in submission order.
    pub fn commands_of(vin: &Vin) -> String {
        format!("sovd.cmd.{vin}.*")
    }

    /// Filter for every account event (`sovd.iam.<user_id>`), without the sessions subjects.
    pub fn all_accounts() -> &'static str {
        "sovd.iam.*"
    }

    /// Filter for every command request.
    pub fn all_commands() -> &'static str {
        "sovd.cmd.>"
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// The kinds of operator action on SOVD_OPS, one subject each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpsKind {
    Projections,
    /// Completed backups only, so the last one is one direct get away.
    Backup,
    BackupFailure,
    Archive,
    Restore,
}

impl OpsKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Projections => "projections",
            Self::Backup => "backup",
            Self::BackupFailure => "backup-failure",
            Self::Archive => "archive",
            Self::Restore => "restore",
        }
    }
}

/// Splits `sovd.<kind>.<vin>.<command_id>` into its VIN and command id.
pub fn parse_command_subject(subject: &str) -> Option<(Vin, CommandId)> {
    let mut parts = subject.split('.');
    let (Some("sovd"), Some("cmd" | "rsp"), Some(vin), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some((Vin::parse(vin).ok()?, CommandId::parse(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_subjects_and_parses_them_back() {
        let vin = Vin::parse("1HGBH41JXMN109186").unwrap();
        let id = CommandId::new();
        let cmd = Subject::command(&vin, id);
        assert_eq!(cmd.as_str(), format!("sovd.cmd.1HGBH41JXMN109186.{id}"));
        assert_eq!(cmd.stream(), StreamName::Commands);
        assert_eq!(Subject::response(&vin, id).stream(), StreamName::Responses);
        assert_eq!(parse_command_subject(cmd.as_str()), Some((vin.clone(), id)));
        assert_eq!(parse_command_subject(Subject::vehicle(&vin).as_str()), None);
        assert_eq!(Subject::responses_of(id), format!("sovd.rsp.*.{id}"));
    }
}
