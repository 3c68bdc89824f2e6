//! The simulated fleet: vehicles that answer like the old system's mock, with state.
//!
//! ReadDTC streams one chunk per stored DTC and a summary; ClearDTC really clears;
//! ReadDataByID answers RPM, speed and coolant temperature. Each execution is counted so tests
//! can prove a non-idempotent operation ran once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use serde_json::{Value, json};
use sovd_domain::{DtcCode, Operation, OperationName, Vin};

use crate::transport::{Chunk, TransportError, VehicleTransport};

#[derive(Debug, Clone)]
pub struct StoredDtc {
    pub code: DtcCode,
    pub description: &'static str,
    pub status: &'static str,
}

fn default_dtcs() -> Vec<StoredDtc> {
    vec![
        StoredDtc {
            code: DtcCode::new(0x0420),
            description: "Catalyst System Efficiency Below Threshold",
            status: "confirmed",
        },
        StoredDtc { code: DtcCode::new(0x0171), description: "System Too Lean (Bank 1)", status: "pending" },
    ]
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Delay before each answer chunk.
    pub chunk_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self { chunk_delay: Duration::from_millis(50) }
    }
}

#[derive(Debug)]
struct SimVehicle {
    connected: bool,
    dtcs: Vec<StoredDtc>,
}

#[derive(Debug, Default)]
struct FleetState {
    vehicles: HashMap<Vin, SimVehicle>,
    executions: HashMap<(Vin, OperationName), u64>,
}

/// A fleet of simulated vehicles shared by all commands of one connector process.
#[derive(Debug, Clone)]
pub struct SimulatedFleet {
    config: SimConfig,
    state: Arc<Mutex<FleetState>>,
}

impl SimulatedFleet {
    pub fn new(config: SimConfig) -> Self {
        Self { config, state: Arc::default() }
    }

    /// Adds a vehicle with the default DTC memory (P0420 confirmed, P0171 pending).
    pub fn add_vehicle(&self, vin: Vin, connected: bool) {
        self.with_state(|s| {
            s.vehicles.insert(vin, SimVehicle { connected, dtcs: default_dtcs() });
        });
    }

    pub fn is_connected(&self, vin: &Vin) -> bool {
        self.with_state(|s| s.vehicles.get(vin).is_some_and(|v| v.connected))
    }

    pub fn vins(&self) -> Vec<(Vin, bool)> {
        self.with_state(|s| s.vehicles.iter().map(|(vin, v)| (vin.clone(), v.connected)).collect())
    }

    /// How many times `operation` really ran on `vin`.
    pub fn executions(&self, vin: &Vin, operation: OperationName) -> u64 {
        self.with_state(|s| s.executions.get(&(vin.clone(), operation)).copied().unwrap_or(0))
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut FleetState) -> T) -> T {
        // A poisoned lock only means another task panicked mid-update; the data is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Runs the operation against the vehicle's state and returns every chunk it answers.
    fn run(&self, vin: &Vin, operation: &Operation) -> Result<Vec<Value>, TransportError> {
        self.with_state(|s| {
            let vehicle = s.vehicles.get_mut(vin).ok_or_else(|| TransportError::Unreachable(vin.clone()))?;
            if !vehicle.connected {
                return Err(TransportError::NotConnected(vin.clone()));
            }
            let ecu = operation.ecu().to_string();
            let chunks = match operation {
                Operation::ReadDtc { .. } => {
                    let mut chunks: Vec<Value> = vehicle
                        .dtcs
                        .iter()
                        .map(|d| {
                            json!({"dtcCode": d.code.to_string(), "description": d.description,
                                   "status": d.status, "ecuAddress": ecu})
                        })
                        .collect();
                    chunks.push(json!({"status": "complete", "totalDtcs": vehicle.dtcs.len()}));
                    chunks
                }
                Operation::ClearDtc { dtc, .. } => {
                    let before = vehicle.dtcs.len();
                    vehicle.dtcs.retain(|d| dtc.is_some_and(|wanted| wanted != d.code));
                    vec![json!({"status": "success", "clearedCount": before - vehicle.dtcs.len(), "ecuAddress": ecu})]
                }
                Operation::ReadDataById { data_id, .. } => {
                    let (name, value, unit) = match data_id.value() {
                        0x010C => ("Engine RPM", json!(3250), "rpm"),
                        0x010D => ("Vehicle Speed", json!(87), "km/h"),
                        0x0105 => ("Engine Coolant Temperature", json!(92), "°C"),
                        _ => return Err(TransportError::NegativeResponse { code: 0x31, name: "requestOutOfRange" }),
                    };
                    vec![json!({"dataId": data_id.to_string(), "name": name, "value": value, "unit": unit,
                                "ecuAddress": ecu})]
                }
            };
            *s.executions.entry((vin.clone(), operation.name())).or_default() += 1;
            Ok(chunks)
        })
    }
}

impl VehicleTransport for SimulatedFleet {
    fn execute(&self, vin: &Vin, operation: &Operation) -> BoxStream<'static, Result<Chunk, TransportError>> {
        let delay = self.config.chunk_delay;
        let chunks = match self.run(vin, operation) {
            Ok(payloads) => {
                let last = payloads.len().saturating_sub(1);
                payloads
                    .into_iter()
                    .enumerate()
                    .map(|(i, payload)| Ok(Chunk { payload, is_final: i == last }))
                    .collect::<Vec<_>>()
            }
            Err(e) => vec![Err(e)],
        };
        stream::iter(chunks)
            .then(move |chunk| async move {
                tokio::time::sleep(delay).await;
                chunk
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sovd_domain::{DataId, EcuAddress};

    fn vin() -> Vin {
        Vin::parse("1HGBH41JXMN109186").unwrap()
    }

    fn fleet() -> SimulatedFleet {
        let fleet = SimulatedFleet::new(SimConfig { chunk_delay: Duration::ZERO });
        fleet.add_vehicle(vin(), true);
        fleet
    }

    #[test]
    fn read_dtc_answers_like_the_old_mock_in_three_chunks() {
        let chunks = fleet().run(&vin(), &Operation::ReadDtc { ecu: EcuAddress::new(0x10) }).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0]["dtcCode"], "P0420");
        assert_eq!(chunks[0]["status"], "confirmed");
        assert_eq!(chunks[1]["dtcCode"], "P0171");
        assert_eq!(chunks[2], json!({"status": "complete", "totalDtcs": 2}));
    }

    #[test]
    fn clear_dtc_really_clears_and_is_counted() {
        let fleet = fleet();
        let ecu = EcuAddress::new(0x10);
        let cleared = fleet.run(&vin(), &Operation::ClearDtc { ecu, dtc: Some(DtcCode::new(0x0420)) }).unwrap();
        assert_eq!(cleared[0]["clearedCount"], 1);
        let after = fleet.run(&vin(), &Operation::ReadDtc { ecu }).unwrap();
        assert_eq!(after.last().unwrap()["totalDtcs"], 1);
        assert_eq!(fleet.executions(&vin(), OperationName::ClearDtc), 1);
    }

    #[test]
    fn unknown_data_id_is_a_negative_response_and_offline_vehicle_is_not_connected() {
        let fleet = fleet();
        let op = Operation::ReadDataById { ecu: EcuAddress::new(0x10), data_id: DataId::new(0xBEEF) };
        assert_eq!(
            fleet.run(&vin(), &op),
            Err(TransportError::NegativeResponse { code: 0x31, name: "requestOutOfRange" })
        );
        let offline = Vin::parse("WBADT43452G123456").unwrap();
        fleet.add_vehicle(offline.clone(), false);
        assert_eq!(
            fleet.run(&offline, &Operation::ReadDtc { ecu: EcuAddress::new(0x10) }),
            Err(TransportError::NotConnected(offline))
        );
    }
}
