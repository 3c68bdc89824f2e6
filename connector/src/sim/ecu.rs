//! One simulated ECU with UDS (ISO 14229) behaviour: DTC memory with status bits, data
//! identifiers (some writable), routines, diagnostic sessions and negative response codes.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sovd_domain::catalogue::{ResetType, RoutineAction, SessionType};
use sovd_domain::{DataId, DtcCode, HexData, Operation, RoutineId, StatusMask};

pub use sovd_domain::uds::Nrc;

/// ISO 14229 DTC status bits.
pub mod status {
    pub const TEST_FAILED: u8 = 0x01;
    pub const PENDING: u8 = 0x04;
    pub const CONFIRMED: u8 = 0x08;
    pub const TEST_FAILED_SINCE_LAST_CLEAR: u8 = 0x20;
    pub const WARNING_INDICATOR: u8 = 0x80;
}

#[derive(Debug, Clone)]
pub struct StoredDtc {
    pub code: DtcCode,
    pub description: &'static str,
    pub status: u8,
    /// Freeze frame recorded when the fault was detected.
    pub snapshot: Value,
}

impl StoredDtc {
    fn status_word(&self) -> &'static str {
        if self.status & status::CONFIRMED != 0 {
            "confirmed"
        } else if self.status & status::PENDING != 0 {
            "pending"
        } else {
            "stored"
        }
    }

    fn json(&self, ecu: &str) -> Value {
        json!({
            "dtcCode": self.code.to_string(),
            "description": self.description,
            "status": self.status_word(),
            "statusByte": format!("0x{:02X}", self.status),
            "ecuAddress": ecu,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Did {
    pub name: &'static str,
    pub value: Value,
    pub unit: Option<&'static str>,
    pub writable: bool,
}

#[derive(Debug, Clone)]
pub struct Routine {
    pub name: &'static str,
    /// Progress chunks a run reports.
    pub steps: u32,
    pub last_result: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Ecu {
    pub address: u8,
    pub name: &'static str,
    pub session: SessionType,
    pub dtcs: Vec<StoredDtc>,
    pub dids: BTreeMap<u16, Did>,
    pub routines: BTreeMap<u16, Routine>,
}

fn did(name: &'static str, value: Value, unit: Option<&'static str>, writable: bool) -> Did {
    Did { name, value, unit, writable }
}

impl Ecu {
    /// The engine ECU (0x10) as the old mock answered, with the two seed trouble codes.
    pub fn engine(vin: &str) -> Self {
        let dtcs = vec![
            StoredDtc {
                code: DtcCode::new(0x0420),
                description: "Catalyst System Efficiency Below Threshold",
                status: status::CONFIRMED | status::TEST_FAILED_SINCE_LAST_CLEAR | status::WARNING_INDICATOR,
                snapshot: json!({"engineRpm": 2150, "vehicleSpeedKmh": 88, "coolantTempC": 91, "odometerKm": 48213}),
            },
            StoredDtc {
                code: DtcCode::new(0x0171),
                description: "System Too Lean (Bank 1)",
                status: status::PENDING | status::TEST_FAILED,
                snapshot: json!({"engineRpm": 780, "vehicleSpeedKmh": 0, "coolantTempC": 84, "odometerKm": 48190}),
            },
        ];
        let dids = BTreeMap::from([
            (0xF190, did("VIN", json!(vin), None, false)),
            (0x010C, did("Engine RPM", json!(3250), Some("rpm"), false)),
            (0x010D, did("Vehicle Speed", json!(87), Some("km/h"), false)),
            (0x0105, did("Engine Coolant Temperature", json!(92), Some("°C"), false)),
            (0x015B, did("Battery State of Charge", json!(76), Some("%"), false)),
            (0xF18C, did("ECU Serial Number", json!("ENG-0000001"), None, false)),
            (0x0110, did("Idle Speed Target", json!("0x02EE"), None, true)),
        ]);
        let routines = BTreeMap::from([
            (0xFF00, Routine { name: "Erase Memory Self-Test", steps: 4, last_result: None }),
            (0x0203, Routine { name: "Injector Balance Test", steps: 3, last_result: None }),
        ]);
        Self { address: 0x10, name: "engine", session: SessionType::Default, dtcs, dids, routines }
    }

    pub fn transmission() -> Self {
        let dtcs = vec![StoredDtc {
            code: DtcCode::new(0x0700),
            description: "Transmission Control System Malfunction",
            status: status::PENDING,
            snapshot: json!({"gear": 3, "oilTempC": 97}),
        }];
        let dids = BTreeMap::from([
            (0x0122, did("Current Gear", json!(3), None, false)),
            (0x0123, did("Transmission Oil Temperature", json!(97), Some("°C"), false)),
            (0x0130, did("Shift Adaptation Value", json!("0x10"), None, true)),
        ]);
        let routines = BTreeMap::from([(0x0301, Routine { name: "Clutch Adaptation", steps: 5, last_result: None })]);
        Self { address: 0x18, name: "transmission", session: SessionType::Default, dtcs, dids, routines }
    }

    pub fn brakes() -> Self {
        let dids = BTreeMap::from([(0x0140, did("Brake Pad Wear", json!(35), Some("%"), false))]);
        Self {
            address: 0x28,
            name: "brakes",
            session: SessionType::Default,
            dtcs: Vec::new(),
            dids,
            routines: BTreeMap::new(),
        }
    }

    fn needs_extended(&self) -> Result<(), Nrc> {
        if self.session == SessionType::Default { Err(Nrc::SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION) } else { Ok(()) }
    }

    /// Runs one request and returns the chunks of the answer, or a negative response.
    pub fn handle(&mut self, operation: &Operation) -> Result<Vec<Value>, Nrc> {
        let ecu = format!("0x{:02X}", self.address);
        match operation {
            Operation::ReadDtc { .. } => Ok(self.read_dtcs(&ecu, None)),
            Operation::ReadDtcByStatusMask { mask, .. } => Ok(self.read_dtcs(&ecu, Some(*mask))),
            Operation::ClearDtc { dtc, .. } => {
                let before = self.dtcs.len();
                self.dtcs.retain(|d| dtc.is_some_and(|wanted| wanted != d.code));
                if dtc.is_some() && before == self.dtcs.len() {
                    return Err(Nrc::REQUEST_OUT_OF_RANGE);
                }
                Ok(vec![json!({"status": "success", "clearedCount": before - self.dtcs.len(), "ecuAddress": ecu})])
            }
            Operation::ReadDtcSnapshot { dtc, .. } => {
                let stored = self.dtcs.iter().find(|d| d.code == *dtc).ok_or(Nrc::REQUEST_OUT_OF_RANGE)?;
                Ok(vec![
                    json!({"dtcCode": dtc.to_string(), "record": "snapshot", "recordNumber": 1, "data": stored.snapshot}),
                    json!({"dtcCode": dtc.to_string(), "record": "extended", "occurrenceCounter": 3,
                           "agingCounter": 0, "statusByte": format!("0x{:02X}", stored.status)}),
                ])
            }
            Operation::ReadDataById { data_id, .. } => {
                let d = self.dids.get(&data_id.value()).ok_or(Nrc::REQUEST_OUT_OF_RANGE)?;
                Ok(vec![did_json(*data_id, d, &ecu)])
            }
            Operation::WriteDataById { data_id, data, .. } => self.write(*data_id, data, &ecu),
            Operation::RoutineControl { routine, action, .. } => self.routine(*routine, *action, &ecu),
            Operation::EcuReset { reset, .. } => {
                self.session = SessionType::Default;
                Ok(vec![json!({"status": "reset", "resetType": reset_name(*reset), "ecuAddress": ecu,
                               "session": "default"})])
            }
            Operation::DiagnosticSessionControl { session, .. } => {
                self.session = *session;
                Ok(vec![json!({"status": "sessionChanged", "session": session.as_str(), "ecuAddress": ecu,
                               "p2ServerMaxMs": 50, "p2StarServerMaxMs": 5000})])
            }
        }
    }

    fn read_dtcs(&self, ecu: &str, mask: Option<StatusMask>) -> Vec<Value> {
        let matching: Vec<&StoredDtc> =
            self.dtcs.iter().filter(|d| mask.is_none_or(|m| d.status & m.value() != 0)).collect();
        let mut chunks: Vec<Value> = matching.iter().map(|d| d.json(ecu)).collect();
        let mut summary = json!({"status": "complete", "totalDtcs": matching.len()});
        if let Some(mask) = mask {
            summary["statusMask"] = json!(mask.to_string());
        }
        chunks.push(summary);
        chunks
    }

    fn write(&mut self, data_id: DataId, data: &HexData, ecu: &str) -> Result<Vec<Value>, Nrc> {
        let did = self.dids.get(&data_id.value()).ok_or(Nrc::REQUEST_OUT_OF_RANGE)?;
        if !did.writable {
            return Err(Nrc::SECURITY_ACCESS_DENIED);
        }
        self.needs_extended()?;
        if let Some(did) = self.dids.get_mut(&data_id.value()) {
            did.value = json!(data.to_string());
        }
        Ok(vec![
            json!({"status": "written", "dataId": data_id.to_string(), "data": data.to_string(), "ecuAddress": ecu}),
        ])
    }

    fn routine(&mut self, id: RoutineId, action: RoutineAction, ecu: &str) -> Result<Vec<Value>, Nrc> {
        let in_extended = self.session != SessionType::Default;
        let routine = self.routines.get_mut(&id.value()).ok_or(Nrc::REQUEST_OUT_OF_RANGE)?;
        let header = json!({"routineId": id.to_string(), "routine": routine.name, "ecuAddress": ecu});
        match action {
            RoutineAction::Start => {
                if !in_extended {
                    return Err(Nrc::SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
                }
                let mut chunks = vec![merge(&header, json!({"status": "started"}))];
                for step in 1..=routine.steps {
                    let progress = step * 100 / routine.steps;
                    chunks.push(merge(&header, json!({"status": "running", "progress": progress})));
                }
                let result = json!({"status": "completed", "progress": 100, "result": "passed"});
                routine.last_result = Some(result.clone());
                chunks.push(merge(&header, result));
                Ok(chunks)
            }
            // A run completes within its command, so there is never one to stop.
            RoutineAction::Stop => Err(Nrc::REQUEST_SEQUENCE_ERROR),
            RoutineAction::Results => match &routine.last_result {
                Some(result) => Ok(vec![merge(&header, result.clone())]),
                None => Err(Nrc::REQUEST_SEQUENCE_ERROR),
            },
        }
    }
}

fn merge(base: &Value, extra: Value) -> Value {
    let mut out = base.clone();
    if let (Value::Object(out), Value::Object(extra)) = (&mut out, extra) {
        out.extend(extra);
    }
    out
}

fn did_json(id: DataId, d: &Did, ecu: &str) -> Value {
    let mut value = json!({"dataId": id.to_string(), "name": d.name, "value": d.value, "ecuAddress": ecu});
    if let Some(unit) = d.unit {
        value["unit"] = json!(unit);
    }
    value
}

fn reset_name(reset: ResetType) -> &'static str {
    reset.as_str()
}

#[cfg(test)]
#[path = "ecu_tests.rs"]
mod tests;
