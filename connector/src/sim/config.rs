//! The simulated fleet's configuration file (`deploy/local/fleet.json`): the seed vehicles,
//! any number of generated ones, latency and fault rates, and the seed that makes it all
//! repeatable.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sovd_domain::Vin;
use uuid::Uuid;

use super::{SimConfig, stable_hash};

/// Fault rates, each a probability per request (0.0 to 1.0; their sum at most 1).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// The vehicle never answers; the connector's timeout ends the command.
    pub timeout: f64,
    /// The vehicle cannot be reached; nothing was executed.
    pub unreachable: f64,
    /// The vehicle executed the request but its answer is garbled.
    pub malformed: f64,
    /// The connection drops after half of the answer's chunks.
    pub drop_mid_stream: f64,
    /// Chance per second that a connected vehicle disconnects (not per request).
    pub disconnect_per_sec: f64,
    /// How long a vehicle that disconnected stays away before it reconnects.
    pub offline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    /// Delay before each answer chunk.
    pub base_ms: u64,
    /// Up to this much more or less, uniformly.
    pub jitter_ms: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self { base_ms: 50, jitter_ms: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VehicleConfig {
    pub vin: String,
    /// Derived from the VIN when not given.
    pub vehicle_id: Option<Uuid>,
    pub make: String,
    pub model: String,
    pub year: u16,
    #[serde(default = "yes")]
    pub connected: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    pub seed: u64,
    pub latency: Latency,
    pub faults: Faults,
    pub vehicles: Vec<VehicleConfig>,
    /// How many more vehicles to generate (VINs `SVDS0000000000001`, ...).
    pub generate: u32,
    /// Share of generated vehicles that start connected.
    pub generated_connected: f64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            latency: Latency::default(),
            faults: Faults::default(),
            vehicles: Vec::new(),
            generate: 0,
            generated_connected: 1.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read fleet file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("fleet file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The fleet file shipped in deploy/local, compiled in as the default.
const BUILTIN: &str = include_str!("../../../deploy/local/fleet.json");

impl FleetConfig {
    /// The shipped fleet: the four seed vehicles of the old system.
    pub fn builtin() -> Self {
        serde_json::from_str(BUILTIN).unwrap_or_default()
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|e| ConfigError::Invalid { path: path.display().to_string(), reason: e.to_string() })?;
        config.check().map_err(|reason| ConfigError::Invalid { path: path.display().to_string(), reason })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let f = &self.faults;
        for (name, rate) in [
            ("timeout", f.timeout),
            ("unreachable", f.unreachable),
            ("malformed", f.malformed),
            ("drop_mid_stream", f.drop_mid_stream),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("faults.{name} must be between 0 and 1, got {rate}"));
            }
        }
        if !(0.0..=1.0).contains(&f.disconnect_per_sec) {
            return Err(format!("faults.disconnect_per_sec must be between 0 and 1, got {}", f.disconnect_per_sec));
        }
        if f.timeout + f.unreachable + f.malformed + f.drop_mid_stream > 1.0 {
            return Err("the fault rates add up to more than 1".into());
        }
        for v in &self.vehicles {
            Vin::parse(&v.vin).map_err(|e| format!("vehicle {}: {e}", v.vin))?;
        }
        Ok(())
    }

    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            chunk_delay: Duration::from_millis(self.latency.base_ms),
            jitter: Duration::from_millis(self.latency.jitter_ms),
            faults: self.faults.clone(),
            seed: self.seed,
        }
    }

    /// Every vehicle: the listed ones, then the generated ones.
    pub fn all_vehicles(&self) -> Vec<VehicleConfig> {
        let mut all = self.vehicles.clone();
        let makes = [("Volkswagen", "ID.4"), ("Volvo", "EX30"), ("Renault", "Megane E-Tech"), ("Hyundai", "Ioniq 5")];
        for i in 1..=self.generate {
            let (make, model) = makes[i as usize % makes.len()];
            // Every n-th vehicle starts offline so that the share matches `generated_connected`.
            let position = f64::from(i - 1) / f64::from(self.generate.max(1));
            all.push(VehicleConfig {
                vin: format!("SVDS{i:013}"),
                vehicle_id: None,
                make: make.into(),
                model: model.into(),
                year: 2020 + (i % 6) as u16,
                connected: position < self.generated_connected,
            });
        }
        all
    }
}

impl VehicleConfig {
    /// The configured id, or one derived from the VIN (stable across restarts and processes).
    pub fn id(&self) -> Uuid {
        self.vehicle_id.unwrap_or_else(|| {
            let high = stable_hash(&self.vin);
            let low = stable_hash(&format!("{}#sovd", self.vin));
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&high.to_be_bytes());
            bytes[8..].copy_from_slice(&low.to_be_bytes());
            // RFC 9562 version 8 (custom) with the standard variant bits.
            bytes[6] = (bytes[6] & 0x0F) | 0x80;
            bytes[8] = (bytes[8] & 0x3F) | 0x80;
            Uuid::from_bytes(bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_fleet_is_the_shipped_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/fleet.json");
        assert_eq!(FleetConfig::builtin(), FleetConfig::load(&path).unwrap());
    }

    #[test]
    fn reads_the_shipped_fleet_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/fleet.json");
        let config = FleetConfig::load(&path).unwrap();
        assert_eq!(config.vehicles.len(), 4);
        assert!(config.vehicles.iter().any(|v| v.vin == "WBADT43452G123456" && !v.connected));
    }

    #[test]
    fn generates_valid_distinct_vehicles_with_stable_ids() {
        let config = FleetConfig { generate: 1000, generated_connected: 0.9, ..Default::default() };
        let all = config.all_vehicles();
        assert_eq!(all.len(), 1000);
        assert!(all.iter().all(|v| Vin::parse(&v.vin).is_ok()));
        let ids: std::collections::HashSet<_> = all.iter().map(VehicleConfig::id).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(all[0].id(), config.all_vehicles()[0].id());
        assert_eq!(all.iter().filter(|v| v.connected).count(), 900);
    }

    #[test]
    fn refuses_impossible_fault_rates_and_bad_vins_with_the_reason() {
        let bad = FleetConfig {
            faults: Faults { timeout: 0.8, unreachable: 0.5, ..Default::default() },
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().contains("more than 1"));
        let json = r#"{"vehicles": [{"vin": "nope", "make": "X", "model": "Y", "year": 2020}]}"#;
        let config: FleetConfig = serde_json::from_str(json).unwrap();
        assert!(config.check().unwrap_err().contains("vehicle nope"));
        assert!(serde_json::from_str::<FleetConfig>(r#"{"fautls": {}}"#).is_err(), "unknown keys are refused");
    }
}
