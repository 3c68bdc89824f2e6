//! The operation catalogue: which diagnostic operations exist, their parameters and rules.
//!
//! One table ([`CATALOGUE`]) drives validation here and the forms in the UI (through
//! `GET /api/v1/operations`), so the browser and the server never disagree about what a valid
//! request is. Operations follow UDS (ISO 14229) services.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{DataId, DtcCode, EcuAddress, HexData, IdError, RoutineId, StatusMask};

/// The kind of value a parameter holds; each kind has one parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    EcuAddress,
    DataId,
    DtcCode,
    RoutineId,
    StatusMask,
    HexData,
    /// One of a fixed list of words.
    Choice(&'static [&'static str]),
}

impl ParamKind {
    /// The format a user must type, as shown in error messages and form hints.
    pub fn format(&self) -> String {
        match self {
            Self::EcuAddress => "0x followed by 2 hex digits, e.g. 0x10".into(),
            Self::DataId => "0x followed by 4 hex digits, e.g. 0x010C".into(),
            Self::DtcCode => "P followed by 4 hex digits, e.g. P0420".into(),
            Self::RoutineId => "0x followed by 4 hex digits, e.g. 0xFF00".into(),
            Self::StatusMask => "0x followed by 2 hex digits (ISO 14229 status bits), e.g. 0x08 = confirmed".into(),
            Self::HexData => "0x followed by 1 to 64 bytes in hex, e.g. 0x0A1B".into(),
            Self::Choice(words) => format!("one of {}", words.join(", ")),
        }
    }

    /// A regular expression for the same rule, for clients that check before sending.
    pub fn pattern(&self) -> String {
        match self {
            Self::EcuAddress | Self::StatusMask => "^0x[0-9A-Fa-f]{2}$".into(),
            Self::DataId | Self::RoutineId => "^0x[0-9A-Fa-f]{4}$".into(),
            Self::DtcCode => "^P[0-9A-Fa-f]{4}$".into(),
            Self::HexData => "^0x([0-9A-Fa-f]{2}){1,64}$".into(),
            Self::Choice(words) => format!("^({})$", words.join("|")),
        }
    }

    /// The name clients see (`ecu_address`, ..., `choice`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::EcuAddress => "ecu_address",
            Self::DataId => "data_id",
            Self::DtcCode => "dtc_code",
            Self::RoutineId => "routine_id",
            Self::StatusMask => "status_mask",
            Self::HexData => "hex_data",
            Self::Choice(_) => "choice",
        }
    }

    pub fn choices(&self) -> Option<&'static [&'static str]> {
        match self {
            Self::Choice(words) => Some(words),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct OperationSpec {
    pub name: OperationName,
    pub description: &'static str,
    pub params: &'static [ParamSpec],
    /// Safe to execute twice (a redelivered command may run again). False when any form of
    /// the operation changes the vehicle; the connector never runs such a command twice.
    pub idempotent: bool,
}

const ECU: ParamSpec = ParamSpec { name: "ecuAddress", kind: ParamKind::EcuAddress, required: true };
const ROUTINE_ACTIONS: &[&str] = &["start", "stop", "results"];
const RESET_TYPES: &[&str] = &["hard", "keyOffOn", "soft"];
const SESSIONS: &[&str] = &["default", "programming", "extended"];

pub const CATALOGUE: &[OperationSpec] = &[
    OperationSpec {
        name: OperationName::ReadDtc,
        description: "Read the diagnostic trouble codes stored in one ECU",
        params: &[ECU],
        idempotent: true,
    },
    OperationSpec {
        name: OperationName::ClearDtc,
        description: "Clear one or all diagnostic trouble codes in one ECU",
        params: &[ECU, ParamSpec { name: "dtcCode", kind: ParamKind::DtcCode, required: false }],
        idempotent: false,
    },
    OperationSpec {
        name: OperationName::ReadDataById,
        description: "Read one data identifier (for example 0x010C engine RPM) from one ECU",
        params: &[ECU, ParamSpec { name: "dataId", kind: ParamKind::DataId, required: true }],
        idempotent: true,
    },
    OperationSpec {
        name: OperationName::WriteDataById,
        description: "Write one data identifier in one ECU (needs the extended session)",
        params: &[
            ECU,
            ParamSpec { name: "dataId", kind: ParamKind::DataId, required: true },
            ParamSpec { name: "data", kind: ParamKind::HexData, required: true },
        ],
        idempotent: false,
    },
    OperationSpec {
        name: OperationName::RoutineControl,
        description: "Start or stop a routine in one ECU, or ask for its results (start needs the extended session)",
        params: &[
            ECU,
            ParamSpec { name: "routineId", kind: ParamKind::RoutineId, required: true },
            ParamSpec { name: "action", kind: ParamKind::Choice(ROUTINE_ACTIONS), required: true },
        ],
        idempotent: false,
    },
    OperationSpec {
        name: OperationName::EcuReset,
        description: "Reset one ECU (it returns to the default session)",
        params: &[ECU, ParamSpec { name: "resetType", kind: ParamKind::Choice(RESET_TYPES), required: true }],
        idempotent: false,
    },
    OperationSpec {
        name: OperationName::DiagnosticSessionControl,
        description: "Switch one ECU to the default, programming or extended diagnostic session",
        params: &[ECU, ParamSpec { name: "session", kind: ParamKind::Choice(SESSIONS), required: true }],
        idempotent: true,
    },
    OperationSpec {
        name: OperationName::ReadDtcByStatusMask,
        description: "Read the trouble codes whose ISO 14229 status matches a mask (0x08 confirmed, 0x04 pending)",
        params: &[ECU, ParamSpec { name: "statusMask", kind: ParamKind::StatusMask, required: true }],
        idempotent: true,
    },
    OperationSpec {
        name: OperationName::ReadDtcSnapshot,
        description: "Read the snapshot (freeze frame) and extended data of one trouble code",
        params: &[ECU, ParamSpec { name: "dtcCode", kind: ParamKind::DtcCode, required: true }],
        idempotent: true,
    },
];

macro_rules! operation_names {
    ($($variant:ident => $name:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum OperationName {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl OperationName {
            pub const ALL: &[Self] = &[$(Self::$variant),*];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

operation_names!(
    ReadDtc => "ReadDTC",
    ClearDtc => "ClearDTC",
    ReadDataById => "ReadDataByID",
    WriteDataById => "WriteDataByID",
    RoutineControl => "RoutineControl",
    EcuReset => "ECUReset",
    DiagnosticSessionControl => "DiagnosticSessionControl",
    ReadDtcByStatusMask => "ReadDTCByStatusMask",
    ReadDtcSnapshot => "ReadDTCSnapshot",
);

impl OperationName {
    pub fn parse(raw: &str) -> Result<Self, ParamError> {
        Self::ALL
            .iter()
            .copied()
            .find(|name| name.as_str() == raw)
            .ok_or_else(|| ParamError::UnknownOperation(raw.to_owned()))
    }

    pub fn spec(&self) -> &'static OperationSpec {
        // Every name has exactly one entry; the test `every_name_has_a_spec` holds us to it.
        CATALOGUE.iter().find(|spec| spec.name == *self).unwrap_or(&CATALOGUE[0])
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request does not describe a valid operation. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown operation {0:?}; known operations: {known}", known = known_operations())]
    UnknownOperation(String),
    #[error("command_params.{field}: unknown parameter for {operation}")]
    UnknownParameter { operation: OperationName, field: String },
    #[error("command_params.{field}: required by {operation}")]
    MissingParameter { operation: OperationName, field: &'static str },
    #[error("command_params.{field}: must be a string ({format})")]
    NotAString { field: &'static str, format: String },
    #[error("command_params.{field}: {source}")]
    Invalid { field: &'static str, source: IdError },
}

fn known_operations() -> String {
    OperationName::ALL.iter().map(OperationName::as_str).collect::<Vec<_>>().join(", ")
}

impl ParamError {
    /// The request field the error is about, for the error envelope.
    pub fn field(&self) -> String {
        match self {
            Self::UnknownOperation(_) => "command_name".to_owned(),
            Self::UnknownParameter { field, .. } => format!("command_params.{field}"),
            Self::MissingParameter { field, .. } | Self::NotAString { field, .. } | Self::Invalid { field, .. } => {
                format!("command_params.{field}")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutineAction {
    Start,
    Stop,
    Results,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResetType {
    Hard,
    KeyOffOn,
    Soft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionType {
    Default,
    Programming,
    Extended,
}

macro_rules! words {
    ($ty:ident: $($variant:ident => $word:literal),*) => {
        impl $ty {
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)*
                }
            }

            fn parse(raw: &str) -> Option<Self> {
                match raw {
                    $($word => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

words!(RoutineAction: Start => "start", Stop => "stop", Results => "results");
words!(ResetType: Hard => "hard", KeyOffOn => "keyOffOn", Soft => "soft");
words!(SessionType: Default => "default", Programming => "programming", Extended => "extended");

/// A validated diagnostic operation with typed parameters. New variants go at the end:
/// the position is what postcard stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    ReadDtc { ecu: EcuAddress },
    ClearDtc { ecu: EcuAddress, dtc: Option<DtcCode> },
    ReadDataById { ecu: EcuAddress, data_id: DataId },
    WriteDataById { ecu: EcuAddress, data_id: DataId, data: HexData },
    RoutineControl { ecu: EcuAddress, routine: RoutineId, action: RoutineAction },
    EcuReset { ecu: EcuAddress, reset: ResetType },
    DiagnosticSessionControl { ecu: EcuAddress, session: SessionType },
    ReadDtcByStatusMask { ecu: EcuAddress, mask: StatusMask },
    ReadDtcSnapshot { ecu: EcuAddress, dtc: DtcCode },
}

/// Parameters checked against their kinds, by name.
struct Parsed<'a> {
    operation: OperationName,
    values: HashMap<&'static str, &'a str>,
}

impl Parsed<'_> {
    fn raw(&self, field: &'static str) -> Result<&str, ParamError> {
        self.values.get(field).copied().ok_or(ParamError::MissingParameter { operation: self.operation, field })
    }

    fn get<T>(&self, field: &'static str, parse: impl Fn(&str) -> Result<T, IdError>) -> Result<T, ParamError> {
        parse(self.raw(field)?).map_err(|source| ParamError::Invalid { field, source })
    }

    fn optional<T>(
        &self,
        field: &'static str,
        parse: impl Fn(&str) -> Result<T, IdError>,
    ) -> Result<Option<T>, ParamError> {
        if self.values.contains_key(field) { self.get(field, parse).map(Some) } else { Ok(None) }
    }

    fn word<T>(
        &self,
        field: &'static str,
        words: &'static [&'static str],
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, ParamError> {
        let raw = self.raw(field)?;
        parse(raw).ok_or_else(|| ParamError::Invalid {
            field,
            source: IdError::Choice { allowed: words.join(", "), got: raw.to_owned() },
        })
    }
}

impl Operation {
    /// Validates `command_params` for the named operation against the catalogue.
    pub fn parse(name: &str, params: &Map<String, Value>) -> Result<Self, ParamError> {
        let operation = OperationName::parse(name)?;
        let spec = operation.spec();
        if let Some(unknown) = params.keys().find(|k| !spec.params.iter().any(|p| p.name == k.as_str())) {
            return Err(ParamError::UnknownParameter { operation, field: unknown.clone() });
        }
        let mut values = HashMap::new();
        for param in spec.params {
            match params.get(param.name).filter(|v| !v.is_null()) {
                Some(Value::String(s)) => {
                    values.insert(param.name, s.as_str());
                }
                Some(_) => return Err(ParamError::NotAString { field: param.name, format: param.kind.format() }),
                None if param.required => return Err(ParamError::MissingParameter { operation, field: param.name }),
                None => {}
            }
        }
        let p = Parsed { operation, values };
        let ecu = p.get("ecuAddress", EcuAddress::parse)?;
        Ok(match operation {
            OperationName::ReadDtc => Self::ReadDtc { ecu },
            OperationName::ClearDtc => Self::ClearDtc { ecu, dtc: p.optional("dtcCode", DtcCode::parse)? },
            OperationName::ReadDataById => Self::ReadDataById { ecu, data_id: p.get("dataId", DataId::parse)? },
            OperationName::WriteDataById => Self::WriteDataById {
                ecu,
                data_id: p.get("dataId", DataId::parse)?,
                data: p.get("data", HexData::parse)?,
            },
            OperationName::RoutineControl => Self::RoutineControl {
                ecu,
                routine: p.get("routineId", RoutineId::parse)?,
                action: p.word("action", ROUTINE_ACTIONS, RoutineAction::parse)?,
            },
            OperationName::EcuReset => {
                Self::EcuReset { ecu, reset: p.word("resetType", RESET_TYPES, ResetType::parse)? }
            }
            OperationName::DiagnosticSessionControl => {
                Self::DiagnosticSessionControl { ecu, session: p.word("session", SESSIONS, SessionType::parse)? }
            }
            OperationName::ReadDtcByStatusMask => {
                Self::ReadDtcByStatusMask { ecu, mask: p.get("statusMask", StatusMask::parse)? }
            }
            OperationName::ReadDtcSnapshot => Self::ReadDtcSnapshot { ecu, dtc: p.get("dtcCode", DtcCode::parse)? },
        })
    }

    pub fn name(&self) -> OperationName {
        match self {
            Self::ReadDtc { .. } => OperationName::ReadDtc,
            Self::ClearDtc { .. } => OperationName::ClearDtc,
            Self::ReadDataById { .. } => OperationName::ReadDataById,
            Self::WriteDataById { .. } => OperationName::WriteDataById,
            Self::RoutineControl { .. } => OperationName::RoutineControl,
            Self::EcuReset { .. } => OperationName::EcuReset,
            Self::DiagnosticSessionControl { .. } => OperationName::DiagnosticSessionControl,
            Self::ReadDtcByStatusMask { .. } => OperationName::ReadDtcByStatusMask,
            Self::ReadDtcSnapshot { .. } => OperationName::ReadDtcSnapshot,
        }
    }

    pub fn ecu(&self) -> EcuAddress {
        match self {
            Self::ReadDtc { ecu }
            | Self::ClearDtc { ecu, .. }
            | Self::ReadDataById { ecu, .. }
            | Self::WriteDataById { ecu, .. }
            | Self::RoutineControl { ecu, .. }
            | Self::EcuReset { ecu, .. }
            | Self::DiagnosticSessionControl { ecu, .. }
            | Self::ReadDtcByStatusMask { ecu, .. }
            | Self::ReadDtcSnapshot { ecu, .. } => *ecu,
        }
    }

    /// Safe to run twice. Stopping a routine or asking for its results is; starting is not.
    pub fn is_idempotent(&self) -> bool {
        match self {
            Self::RoutineControl { action, .. } => *action != RoutineAction::Start,
            other => other.name().spec().idempotent,
        }
    }

    /// The parameters as the API shows them (`command_params`).
    pub fn params_json(&self) -> Value {
        let mut map = Map::new();
        let mut put = |k: &str, v: String| {
            map.insert(k.to_owned(), Value::String(v));
        };
        put("ecuAddress", self.ecu().to_string());
        match self {
            Self::ReadDtc { .. } => {}
            Self::ClearDtc { dtc, .. } => {
                if let Some(dtc) = dtc {
                    put("dtcCode", dtc.to_string());
                }
            }
            Self::ReadDataById { data_id, .. } => put("dataId", data_id.to_string()),
            Self::WriteDataById { data_id, data, .. } => {
                put("dataId", data_id.to_string());
                put("data", data.to_string());
            }
            Self::RoutineControl { routine, action, .. } => {
                put("routineId", routine.to_string());
                put("action", action.as_str().to_owned());
            }
            Self::EcuReset { reset, .. } => put("resetType", reset.as_str().to_owned()),
            Self::DiagnosticSessionControl { session, .. } => put("session", session.as_str().to_owned()),
            Self::ReadDtcByStatusMask { mask, .. } => put("statusMask", mask.to_string()),
            Self::ReadDtcSnapshot { dtc, .. } => put("dtcCode", dtc.to_string()),
        }
        Value::Object(map)
    }
}

#[cfg(test)]
#[path = "catalogue_tests.rs"]
mod tests;
