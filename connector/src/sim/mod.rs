//! The simulated fleet (the embedded default transport): vehicles with several UDS ECUs,
//! latency with jitter, and injectable faults, all deterministic under a seed so a failing
//! test can be replayed. Each execution is counted, so tests can prove that a non-idempotent
//! operation ran once.

pub mod config;
pub mod ecu;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use serde_json::Value;
use sovd_domain::{Operation, OperationName, Vin};
use tokio::sync::Notify;

pub use config::{Faults, FleetConfig, Latency, VehicleConfig};
use ecu::Ecu;

use crate::transport::{Chunk, TransportError, VehicleTransport};

/// SplitMix64: a small, fast, seedable generator; the same seed gives the same faults.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// FNV-1a: a stable hash of a VIN, to give each vehicle its own random sequence.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3))
}

/// Per-fleet behaviour: latency and fault rates.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Delay before each answer chunk.
    pub chunk_delay: Duration,
    /// Up to this much more or less, uniformly.
    pub jitter: Duration,
    pub faults: Faults,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self { chunk_delay: Duration::from_millis(50), jitter: Duration::ZERO, faults: Faults::default(), seed: 1 }
    }
}

/// A fault to force on a vehicle's next request (tests and drills), ahead of the random ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Timeout,
    Unreachable,
    Malformed,
    DropMidStream,
}

#[derive(Debug)]
struct SimVehicle {
    connected: bool,
    /// Set while away after a disconnect fault: when it comes back.
    back_at: Option<Instant>,
    ecus: BTreeMap<u8, Ecu>,
    rng: Rng,
    forced: std::collections::VecDeque<Fault>,
}

#[derive(Debug)]
struct FleetState {
    vehicles: HashMap<Vin, SimVehicle>,
    executions: HashMap<(Vin, OperationName), u64>,
    /// Connectivity changes not yet recorded on SOVD_FLEET.
    changes: Vec<Connectivity>,
    /// Draws for disconnect faults, apart from each vehicle's request sequence.
    connectivity_rng: Rng,
}

/// A vehicle came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connectivity {
    pub vin: Vin,
    pub connected: bool,
    pub reason: String,
}

/// What one request will do, decided up front from the vehicle's random sequence.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    Answer(Vec<Value>),
    /// The vehicle never answers (the connector's timeout decides).
    Silence,
    Fail(TransportError),
    /// Chunks, then the connection drops.
    DropAfter(Vec<Value>),
}

/// A fleet of simulated vehicles shared by all commands of one connector process.
#[derive(Debug, Clone)]
pub struct SimulatedFleet {
    config: SimConfig,
    state: Arc<Mutex<FleetState>>,
    changed: Arc<Notify>,
}

impl SimulatedFleet {
    pub fn new(config: SimConfig) -> Self {
        let state = FleetState {
            vehicles: HashMap::new(),
            executions: HashMap::new(),
            changes: Vec::new(),
            connectivity_rng: Rng::new(config.seed ^ 0xC0FF_EE00_D15C_0000),
        };
        Self { config, state: Arc::new(Mutex::new(state)), changed: Arc::default() }
    }

    /// Adds a vehicle with an engine (0x10, with the two seed trouble codes), a transmission
    /// (0x18) and brakes (0x28).
    pub fn add_vehicle(&self, vin: Vin, connected: bool) {
        let seed = self.config.seed ^ stable_hash(vin.as_str());
        let ecus =
            BTreeMap::from([(0x10, Ecu::engine(vin.as_str())), (0x18, Ecu::transmission()), (0x28, Ecu::brakes())]);
        self.with_state(|s| {
            let vehicle =
                SimVehicle { connected, back_at: None, ecus, rng: Rng::new(seed), forced: Default::default() };
            s.vehicles.insert(vin, vehicle);
        });
    }

    /// The vehicle's next requests meet these faults, in order.
    pub fn inject(&self, vin: &Vin, faults: &[Fault]) {
        self.with_state(|s| {
            if let Some(v) = s.vehicles.get_mut(vin) {
                v.forced.extend(faults.iter().copied());
            }
        });
    }

    /// Connects or disconnects a vehicle (a drill, or a test); the change is recorded on
    /// SOVD_FLEET by whoever drains [`Self::take_changes`].
    pub fn set_connected(&self, vin: &Vin, connected: bool) {
        let reason = if connected { "vehicle came back" } else { "vehicle switched off" };
        self.with_state(|s| change(s, vin, connected, reason));
        self.changed.notify_one();
    }

    /// Connectivity changes since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<Connectivity> {
        self.with_state(|s| std::mem::take(&mut s.changes))
    }

    /// Resolves when there may be changes to take.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The disconnect fault, for `elapsed` of simulated time ending `now`: each connected
    /// vehicle drops with the configured chance per second and returns after the configured
    /// time away. Vehicles are visited in VIN order, so the same seed gives the same story.
    pub fn roll_connectivity(&self, elapsed: Duration, now: Instant) {
        let chance = self.config.faults.disconnect_per_sec * elapsed.as_secs_f64();
        let away = Duration::from_millis(self.config.faults.offline_ms);
        let changed = self.with_state(|s| {
            let mut vins: Vec<Vin> = s.vehicles.keys().cloned().collect();
            vins.sort();
            let before = s.changes.len();
            for vin in vins {
                let roll = s.connectivity_rng.unit();
                let Some(vehicle) = s.vehicles.get_mut(&vin) else { continue };
                match vehicle.back_at {
                    Some(back) if back <= now => {
                        vehicle.back_at = None;
                        change(s, &vin, true, "vehicle reconnected after a dropped connection");
                    }
                    None if vehicle.connected && roll < chance => {
                        vehicle.back_at = Some(now + away);
                        change(s, &vin, false, "connection to the vehicle dropped");
                    }
                    _ => {}
                }
            }
            s.changes.len() > before
        });
        if changed {
            self.changed.notify_one();
        }
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

    /// Every (vehicle, operation) that ran, with how often.
    pub fn all_executions(&self) -> Vec<((Vin, OperationName), u64)> {
        self.with_state(|s| s.executions.iter().map(|(key, count)| (key.clone(), *count)).collect())
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut FleetState) -> T) -> T {
        // A poisoned lock only means another task panicked mid-update; the data is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    fn plan(&self, vin: &Vin, operation: &Operation) -> (Plan, Duration) {
        let faults = self.config.faults.clone();
        let base = self.config.chunk_delay;
        let jitter = self.config.jitter;
        self.with_state(|s| {
            let Some(vehicle) = s.vehicles.get_mut(vin) else {
                return (Plan::Fail(TransportError::Unreachable(vin.clone())), Duration::ZERO);
            };
            if !vehicle.connected {
                return (Plan::Fail(TransportError::NotConnected(vin.clone())), Duration::ZERO);
            }
            // Draw both numbers every time, so forced faults do not shift the random sequence.
            let roll = vehicle.rng.unit();
            let spread = (vehicle.rng.unit() * 2.0 - 1.0) * jitter.as_secs_f64();
            let delay = Duration::from_secs_f64((base.as_secs_f64() + spread).max(0.0));
            let fault = vehicle.forced.pop_front().or_else(|| pick(roll, &faults));
            // Faults that strike before the request reaches the ECU leave it unexecuted.
            match fault {
                Some(Fault::Unreachable) => return (Plan::Fail(TransportError::Unreachable(vin.clone())), delay),
                Some(Fault::Timeout) => return (Plan::Silence, delay),
                _ => {}
            }
            let Some(ecu) = vehicle.ecus.get_mut(&operation.ecu().value()) else {
                return (Plan::Fail(TransportError::NoSuchEcu(operation.ecu().to_string())), delay);
            };
            let answer = ecu.handle(operation);
            *s.executions.entry((vin.clone(), operation.name())).or_default() += 1;
            let chunks = match answer {
                Ok(chunks) => chunks,
                Err(nrc) => return (Plan::Fail(TransportError::NegativeResponse(nrc)), delay),
            };
            match fault {
                Some(Fault::Malformed) => {
                    (Plan::Fail(TransportError::Malformed("checksum mismatch in the UDS answer".into())), delay)
                }
                Some(Fault::DropMidStream) if chunks.len() > 1 => {
                    let keep = chunks.len() / 2;
                    (Plan::DropAfter(chunks.into_iter().take(keep).collect()), delay)
                }
                Some(Fault::DropMidStream) => (Plan::Fail(TransportError::Dropped { after_chunks: 0 }), delay),
                _ => (Plan::Answer(chunks), delay),
            }
        })
    }
}

/// Records a change of connectivity (nothing when the vehicle already is so).
fn change(state: &mut FleetState, vin: &Vin, connected: bool, reason: &str) {
    let Some(vehicle) = state.vehicles.get_mut(vin) else { return };
    if vehicle.connected == connected {
        return;
    }
    vehicle.connected = connected;
    if connected {
        vehicle.back_at = None;
    }
    state.changes.push(Connectivity { vin: vin.clone(), connected, reason: reason.to_owned() });
}

/// Which fault, if any, a roll in [0, 1) lands on: the rates are consecutive bands.
fn pick(roll: f64, faults: &Faults) -> Option<Fault> {
    let bands = [
        (faults.unreachable, Fault::Unreachable),
        (faults.timeout, Fault::Timeout),
        (faults.malformed, Fault::Malformed),
        (faults.drop_mid_stream, Fault::DropMidStream),
    ];
    let mut edge = 0.0;
    for (rate, fault) in bands {
        edge += rate;
        if roll < edge {
            return Some(fault);
        }
    }
    None
}

impl VehicleTransport for SimulatedFleet {
    fn is_connected(&self, vin: &Vin) -> bool {
        SimulatedFleet::is_connected(self, vin)
    }

    fn execute(&self, vin: &Vin, operation: &Operation) -> BoxStream<'static, Result<Chunk, TransportError>> {
        let (plan, delay) = self.plan(vin, operation);
        let items: Vec<Result<Chunk, TransportError>> = match plan {
            Plan::Silence => return stream::pending().boxed(),
            Plan::Fail(error) => vec![Err(error)],
            Plan::Answer(payloads) => {
                let last = payloads.len().saturating_sub(1);
                payloads
                    .into_iter()
                    .enumerate()
                    .map(|(i, payload)| Ok(Chunk { payload, is_final: i == last }))
                    .collect()
            }
            Plan::DropAfter(payloads) => {
                let sent = payloads.len();
                let mut items: Vec<_> =
                    payloads.into_iter().map(|payload| Ok(Chunk { payload, is_final: false })).collect();
                items.push(Err(TransportError::Dropped { after_chunks: sent }));
                items
            }
        };
        stream::iter(items)
            .then(move |item| async move {
                tokio::time::sleep(delay).await;
                item
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sovd_domain::EcuAddress;

    fn vin() -> Vin {
        Vin::parse("1HGBH41JXMN109186").unwrap()
    }

    fn read() -> Operation {
        Operation::ReadDtc { ecu: EcuAddress::new(0x10) }
    }

    fn faulty(seed: u64) -> SimulatedFleet {
        let faults =
            Faults { timeout: 0.1, unreachable: 0.1, malformed: 0.1, drop_mid_stream: 0.1, ..Default::default() };
        let fleet =
            SimulatedFleet::new(SimConfig { chunk_delay: Duration::ZERO, jitter: Duration::ZERO, faults, seed });
        fleet.add_vehicle(vin(), true);
        fleet
    }

    fn outcomes(fleet: &SimulatedFleet, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| match fleet.plan(&vin(), &read()).0 {
                Plan::Answer(_) => "ok".to_owned(),
                Plan::Silence => "silence".to_owned(),
                Plan::Fail(e) => format!("{e:?}").split(['(', ' ', '{']).next().unwrap_or_default().to_owned(),
                Plan::DropAfter(_) => "drop".to_owned(),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
        let a = outcomes(&faulty(7), 200);
        assert_eq!(a, outcomes(&faulty(7), 200));
        assert_ne!(a, outcomes(&faulty(8), 200));
    }

    #[test]
    fn fault_rates_are_roughly_what_was_asked_for() {
        let runs = outcomes(&faulty(3), 4000);
        let share = |kind: &str| runs.iter().filter(|r| r.as_str() == kind).count() as f64 / 4000.0;
        for kind in ["silence", "Unreachable", "Malformed", "drop"] {
            assert!((0.07..0.13).contains(&share(kind)), "{kind}: {}", share(kind));
        }
        assert!((0.55..0.65).contains(&share("ok")));
    }

    fn flaky_links(seed: u64) -> SimulatedFleet {
        let faults = Faults { disconnect_per_sec: 0.05, offline_ms: 3000, ..Default::default() };
        let fleet = SimulatedFleet::new(SimConfig { faults, seed, ..Default::default() });
        for i in 0..100 {
            fleet.add_vehicle(Vin::parse(&format!("SVDS{i:013}")).unwrap(), true);
        }
        fleet
    }

    /// A minute of one-second ticks; every change as (second, vin, connected).
    fn a_minute_of(fleet: &SimulatedFleet) -> Vec<(u64, String, bool)> {
        let start = Instant::now();
        (1..=60)
            .flat_map(|second| {
                fleet.roll_connectivity(Duration::from_secs(1), start + Duration::from_secs(second));
                fleet.take_changes().into_iter().map(move |c| (second, c.vin.to_string(), c.connected))
            })
            .collect()
    }

    #[test]
    fn vehicles_drop_and_come_back_at_the_configured_rate_the_same_way_under_one_seed() {
        let story = a_minute_of(&flaky_links(9));
        assert_eq!(story, a_minute_of(&flaky_links(9)));
        assert_ne!(story, a_minute_of(&flaky_links(10)));
        let drops = story.iter().filter(|(_, _, connected)| !connected).count();
        // 100 vehicles x ~57 connected seconds each x 5 % per second, minus the time away.
        assert!((120..=330).contains(&drops), "{drops} drops");
        for (second, vin, _) in story.iter().filter(|(_, _, connected)| !connected) {
            let back = story.iter().find(|(s, v, c)| v == vin && *c && s > second);
            if let Some((back_at, _, _)) = back {
                assert_eq!(back_at - second, 3, "{vin} stays away for offline_ms");
            }
        }
    }

    #[test]
    fn switching_a_vehicle_off_is_a_change_to_record_once() {
        let fleet = SimulatedFleet::new(SimConfig::default());
        fleet.add_vehicle(vin(), true);
        fleet.set_connected(&vin(), false);
        fleet.set_connected(&vin(), false);
        let changes = fleet.take_changes();
        assert_eq!(changes.len(), 1);
        assert!(!changes[0].connected);
        assert!(fleet.take_changes().is_empty());
        assert!(!fleet.is_connected(&vin()));
    }

    #[test]
    fn an_unknown_ecu_and_an_offline_vehicle_say_so() {
        let fleet = SimulatedFleet::new(SimConfig::default());
        fleet.add_vehicle(vin(), false);
        assert_eq!(fleet.plan(&vin(), &read()).0, Plan::Fail(TransportError::NotConnected(vin())));
        fleet.set_connected(&vin(), true);
        let nowhere = Operation::ReadDtc { ecu: EcuAddress::new(0x42) };
        assert_eq!(fleet.plan(&vin(), &nowhere).0, Plan::Fail(TransportError::NoSuchEcu("0x42".into())));
        assert_eq!(fleet.executions(&vin(), OperationName::ReadDtc), 0, "nothing ran");
    }
}
