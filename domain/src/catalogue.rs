//! The operation catalogue: which diagnostic operations exist, their parameters and rules.
//!
//! One table ([`CATALOGUE`]) drives validation here and, later, the forms in the UI, so the
//! browser and the server can never disagree about what a valid request is.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{DataId, DtcCode, EcuAddress, IdError};

/// The kind of value a parameter holds; each kind has one parser in [`crate::ids`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    EcuAddress,
    DataId,
    DtcCode,
}

impl ParamKind {
    /// The format a user must type, as shown in error messages and form hints.
    pub fn format(&self) -> &'static str {
        match self {
            Self::EcuAddress => "0x followed by 2 hex digits, e.g. 0x10",
            Self::DataId => "0x followed by 4 hex digits, e.g. 0x010C",
            Self::DtcCode => "P followed by 4 hex digits, e.g. P0420",
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
    /// Safe to execute twice (a redelivered command may run again); false means the
    /// connector must never run it a second time.
    pub idempotent: bool,
}

const ECU: ParamSpec = ParamSpec { name: "ecuAddress", kind: ParamKind::EcuAddress, required: true };

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
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationName {
    #[serde(rename = "ReadDTC")]
    ReadDtc,
    #[serde(rename = "ClearDTC")]
    ClearDtc,
    #[serde(rename = "ReadDataByID")]
    ReadDataById,
}

impl OperationName {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ReadDtc => "ReadDTC",
            Self::ClearDtc => "ClearDTC",
            Self::ReadDataById => "ReadDataByID",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParamError> {
        CATALOGUE
            .iter()
            .map(|spec| spec.name)
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
    #[error("unknown operation {0:?}; known operations: ReadDTC, ClearDTC, ReadDataByID")]
    UnknownOperation(String),
    #[error("command_params.{field}: unknown parameter for {operation}")]
    UnknownParameter { operation: OperationName, field: String },
    #[error("command_params.{field}: required by {operation}")]
    MissingParameter { operation: OperationName, field: &'static str },
    #[error("command_params.{field}: must be a string ({format})")]
    NotAString { field: &'static str, format: &'static str },
    #[error("command_params.{field}: {source}")]
    Invalid { field: &'static str, source: IdError },
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

/// A validated diagnostic operation with typed parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    ReadDtc { ecu: EcuAddress },
    ClearDtc { ecu: EcuAddress, dtc: Option<DtcCode> },
    ReadDataById { ecu: EcuAddress, data_id: DataId },
}

enum ParsedParam {
    Ecu(EcuAddress),
    Data(DataId),
    Dtc(DtcCode),
}

impl Operation {
    /// Validates `command_params` for the named operation against the catalogue.
    pub fn parse(name: &str, params: &Map<String, Value>) -> Result<Self, ParamError> {
        let operation = OperationName::parse(name)?;
        let spec = operation.spec();
        if let Some(unknown) = params.keys().find(|k| !spec.params.iter().any(|p| p.name == k.as_str())) {
            return Err(ParamError::UnknownParameter { operation, field: unknown.clone() });
        }
        let mut ecu = None;
        let mut data_id = None;
        let mut dtc = None;
        for param in spec.params {
            let Some(value) = params.get(param.name).filter(|v| !v.is_null()) else {
                if param.required {
                    return Err(ParamError::MissingParameter { operation, field: param.name });
                }
                continue;
            };
            let raw =
                value.as_str().ok_or(ParamError::NotAString { field: param.name, format: param.kind.format() })?;
            let invalid = |source| ParamError::Invalid { field: param.name, source };
            match parse_kind(param.kind, raw).map_err(invalid)? {
                ParsedParam::Ecu(v) => ecu = Some(v),
                ParsedParam::Data(v) => data_id = Some(v),
                ParsedParam::Dtc(v) => dtc = Some(v),
            }
        }
        let ecu = ecu.ok_or(ParamError::MissingParameter { operation, field: "ecuAddress" })?;
        Ok(match operation {
            OperationName::ReadDtc => Self::ReadDtc { ecu },
            OperationName::ClearDtc => Self::ClearDtc { ecu, dtc },
            OperationName::ReadDataById => Self::ReadDataById {
                ecu,
                data_id: data_id.ok_or(ParamError::MissingParameter { operation, field: "dataId" })?,
            },
        })
    }

    pub fn name(&self) -> OperationName {
        match self {
            Self::ReadDtc { .. } => OperationName::ReadDtc,
            Self::ClearDtc { .. } => OperationName::ClearDtc,
            Self::ReadDataById { .. } => OperationName::ReadDataById,
        }
    }

    pub fn ecu(&self) -> EcuAddress {
        match self {
            Self::ReadDtc { ecu } | Self::ClearDtc { ecu, .. } | Self::ReadDataById { ecu, .. } => *ecu,
        }
    }

    pub fn is_idempotent(&self) -> bool {
        self.name().spec().idempotent
    }

    /// The parameters as the API shows them (`command_params`).
    pub fn params_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("ecuAddress".into(), Value::String(self.ecu().to_string()));
        match self {
            Self::ReadDtc { .. } => {}
            Self::ClearDtc { dtc, .. } => {
                if let Some(dtc) = dtc {
                    map.insert("dtcCode".into(), Value::String(dtc.to_string()));
                }
            }
            Self::ReadDataById { data_id, .. } => {
                map.insert("dataId".into(), Value::String(data_id.to_string()));
            }
        }
        Value::Object(map)
    }
}

fn parse_kind(kind: ParamKind, raw: &str) -> Result<ParsedParam, IdError> {
    Ok(match kind {
        ParamKind::EcuAddress => ParsedParam::Ecu(EcuAddress::parse(raw)?),
        ParamKind::DataId => ParsedParam::Data(DataId::parse(raw)?),
        ParamKind::DtcCode => ParsedParam::Dtc(DtcCode::parse(raw)?),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn every_name_has_a_spec() {
        for name in [OperationName::ReadDtc, OperationName::ClearDtc, OperationName::ReadDataById] {
            assert_eq!(name.spec().name, name);
            assert_eq!(OperationName::parse(name.as_str()), Ok(name));
        }
    }

    #[test]
    fn parses_each_operation_from_the_contract() {
        assert_eq!(
            Operation::parse("ReadDTC", &params(json!({"ecuAddress": "0x10"}))),
            Ok(Operation::ReadDtc { ecu: EcuAddress::new(0x10) })
        );
        assert_eq!(
            Operation::parse("ClearDTC", &params(json!({"ecuAddress": "0x10", "dtcCode": "P0420"}))),
            Ok(Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: Some(DtcCode::new(0x0420)) })
        );
        assert_eq!(
            Operation::parse("ClearDTC", &params(json!({"ecuAddress": "0x10"}))),
            Ok(Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: None })
        );
        assert_eq!(
            Operation::parse("ReadDataByID", &params(json!({"ecuAddress": "0x10", "dataId": "0x010C"}))),
            Ok(Operation::ReadDataById { ecu: EcuAddress::new(0x10), data_id: DataId::new(0x010C) })
        );
    }

    #[test]
    fn rejects_unknown_operation() {
        let err = Operation::parse("FlashECU", &Map::new()).unwrap_err();
        assert_eq!(err, ParamError::UnknownOperation("FlashECU".into()));
        assert_eq!(err.field(), "command_name");
    }

    #[test]
    fn rejects_unknown_parameter_and_names_it() {
        let err = Operation::parse("ReadDTC", &params(json!({"ecuAddress": "0x10", "force": "yes"}))).unwrap_err();
        assert_eq!(err.field(), "command_params.force");
        assert!(err.to_string().contains("unknown parameter"));
    }

    #[test]
    fn rejects_missing_required_parameter_and_names_it() {
        let err = Operation::parse("ReadDataByID", &params(json!({"ecuAddress": "0x10"}))).unwrap_err();
        assert_eq!(err, ParamError::MissingParameter { operation: OperationName::ReadDataById, field: "dataId" });
        let err = Operation::parse("ReadDTC", &Map::new()).unwrap_err();
        assert_eq!(err.field(), "command_params.ecuAddress");
    }

    #[test]
    fn rejects_malformed_values_and_says_why() {
        let err = Operation::parse("ReadDTC", &params(json!({"ecuAddress": "16"}))).unwrap_err();
        assert_eq!(err.field(), "command_params.ecuAddress");
        assert!(err.to_string().contains("2 hex digits"), "{err}");
        let err = Operation::parse("ClearDTC", &params(json!({"ecuAddress": "0x10", "dtcCode": "X1"}))).unwrap_err();
        assert_eq!(err.field(), "command_params.dtcCode");
        let err = Operation::parse("ReadDTC", &params(json!({"ecuAddress": 16}))).unwrap_err();
        assert!(matches!(err, ParamError::NotAString { field: "ecuAddress", .. }));
    }

    #[test]
    fn params_json_round_trips_through_parse() {
        let op = Operation::ClearDtc { ecu: EcuAddress::new(0x18), dtc: Some(DtcCode::new(0x0171)) };
        let Value::Object(map) = op.params_json() else { panic!("object expected") };
        assert_eq!(Operation::parse("ClearDTC", &map), Ok(op));
    }

    #[test]
    fn clear_dtc_is_the_only_non_idempotent_operation_so_far() {
        assert!(!Operation::ClearDtc { ecu: EcuAddress::new(1), dtc: None }.is_idempotent());
        assert!(Operation::ReadDtc { ecu: EcuAddress::new(1) }.is_idempotent());
    }
}
