//! Stream definitions, created or updated idempotently at start-up.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::ReadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamName {
    Commands,
    Responses,
    Fleet,
    Iam,
    Ops,
}

impl StreamName {
    pub const ALL: [Self; 5] = [Self::Commands, Self::Responses, Self::Fleet, Self::Iam, Self::Ops];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Commands => "SOVD_COMMANDS",
            Self::Responses => "SOVD_RESPONSES",
            Self::Fleet => "SOVD_FLEET",
            Self::Iam => "SOVD_IAM",
            Self::Ops => "SOVD_OPS",
        }
    }

    /// The stream named `name` (`SOVD_IAM`), if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The stream an event subject belongs to (`sovd.cmd.…` is SOVD_COMMANDS).
    pub fn of_subject(subject: &str) -> Option<Self> {
        match subject.split('.').nth(1)? {
            "cmd" => Some(Self::Commands),
            "rsp" => Some(Self::Responses),
            "veh" => Some(Self::Fleet),
            "iam" => Some(Self::Iam),
            "ops" => Some(Self::Ops),
            _ => None,
        }
    }

    /// By its short name (`commands`) or its stream name (`SOVD_COMMANDS`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name) || s.as_str()["SOVD_".len()..].eq_ignore_ascii_case(name))
    }

    pub fn subjects(&self) -> &'static str {
        match self {
            Self::Commands => "sovd.cmd.>",
            Self::Responses => "sovd.rsp.>",
            Self::Fleet => "sovd.veh.>",
            Self::Iam => "sovd.iam.>",
            Self::Ops => "sovd.ops.>",
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Self::Commands => "diagnostic command requests and cancellations",
            Self::Responses => "dispatch, response chunks and the terminal outcome of each command",
            Self::Fleet => "vehicle registration and connectivity",
            Self::Iam => "users, roles and sign-ins",
            Self::Ops => "backups, restores and other operations",
        }
    }

    pub fn config(&self, replicas: usize) -> stream::Config {
        stream::Config {
            name: self.as_str().to_owned(),
            description: Some(self.description().to_owned()),
            subjects: vec![self.subjects().to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: replicas,
            // Retries of the same append within this window are recorded once.
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            deny_delete: true,
            deny_purge: false,
            ..Default::default()
        }
    }
}

/// Creates every SOVD stream, or updates it to the current definition.
pub async fn ensure_streams(js: &jetstream::Context, replicas: usize) -> Result<(), ReadError> {
    for name in StreamName::ALL {
        js.create_or_update_stream(name.config(replicas))
            .await
            .map_err(|e| ReadError::Unavailable(format!("could not create stream {}: {e}", name.as_str())))?;
    }
    Ok(())
}
