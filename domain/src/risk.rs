//! How much an operation can change a vehicle, and so who may run it and how
//! (docs/adr/010-roles-and-vehicle-changes.md).
//!
//! - `Read`: looks, changes nothing.
//! - `Service`: the everyday workshop changes that a diagnosis expects (clearing fault codes,
//!   the extended session, stopping a routine); any engineer.
//! - `Change`: alters how the vehicle behaves or what it holds (writing data, resetting an ECU,
//!   starting a routine, the programming session): only with the `vehicle-changes` permission
//!   (admins hold it), and only when the request confirms it.

use serde::{Deserialize, Serialize};

use crate::catalogue::{Operation, OperationName, RoutineAction, SessionType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Risk {
    Read,
    Service,
    Change,
}

impl Risk {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Service => "service",
            Self::Change => "change",
        }
    }
}

impl Operation {
    pub fn risk(&self) -> Risk {
        match self {
            Self::ReadDtc { .. }
            | Self::ReadDataById { .. }
            | Self::ReadDtcByStatusMask { .. }
            | Self::ReadDtcSnapshot { .. } => Risk::Read,
            Self::ClearDtc { .. } => Risk::Service,
            Self::WriteDataById { .. } | Self::EcuReset { .. } => Risk::Change,
            Self::RoutineControl { action, .. } => match action {
                RoutineAction::Results => Risk::Read,
                RoutineAction::Stop => Risk::Service,
                RoutineAction::Start => Risk::Change,
            },
            Self::DiagnosticSessionControl { session, .. } => match session {
                SessionType::Default => Risk::Read,
                SessionType::Extended => Risk::Service,
                SessionType::Programming => Risk::Change,
            },
        }
    }
}

impl OperationName {
    /// The highest risk any form of the operation has (what the catalogue shows).
    pub fn highest_risk(&self) -> Risk {
        match self {
            Self::ReadDtc | Self::ReadDataById | Self::ReadDtcByStatusMask | Self::ReadDtcSnapshot => Risk::Read,
            Self::ClearDtc => Risk::Service,
            Self::WriteDataById | Self::EcuReset | Self::RoutineControl | Self::DiagnosticSessionControl => {
                Risk::Change
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn op(name: &str, params: Value) -> Operation {
        let Value::Object(map) = params else { unreachable!() };
        Operation::parse(name, &map).unwrap()
    }

    #[test]
    fn reads_are_read_and_what_rewrites_or_resets_a_vehicle_is_a_change() {
        assert_eq!(op("ReadDTC", json!({"ecuAddress": "0x10"})).risk(), Risk::Read);
        assert_eq!(op("ClearDTC", json!({"ecuAddress": "0x10"})).risk(), Risk::Service);
        assert_eq!(op("ECUReset", json!({"ecuAddress": "0x10", "resetType": "soft"})).risk(), Risk::Change);
        let write = json!({"ecuAddress": "0x10", "dataId": "0xF190", "data": "0x0102"});
        assert_eq!(op("WriteDataByID", write).risk(), Risk::Change);
    }

    #[test]
    fn routines_and_sessions_depend_on_what_is_asked() {
        let routine =
            |action: &str| op("RoutineControl", json!({"ecuAddress": "0x10", "routineId": "0xFF00", "action": action}));
        assert_eq!(routine("start").risk(), Risk::Change);
        assert_eq!(routine("stop").risk(), Risk::Service);
        assert_eq!(routine("results").risk(), Risk::Read);
        let session = |s: &str| op("DiagnosticSessionControl", json!({"ecuAddress": "0x10", "session": s}));
        assert_eq!(session("programming").risk(), Risk::Change);
        assert_eq!(session("extended").risk(), Risk::Service);
        assert_eq!(session("default").risk(), Risk::Read);
    }

    #[test]
    fn the_catalogue_shows_the_highest_risk_of_every_operation() {
        for name in OperationName::ALL {
            assert!(name.highest_risk() >= Risk::Read);
        }
        assert_eq!(OperationName::EcuReset.highest_risk(), Risk::Change);
    }
}
