//! A circuit breaker per vehicle: after `threshold` consecutive transport failures the
//! vehicle is not contacted for `cooldown`; then one probe is let through, and its outcome
//! closes or reopens the circuit. Commands meanwhile fail fast, saying why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sovd_domain::Vin;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { threshold: 5, cooldown: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    state: BreakerState,
    open_until: Instant,
}

/// Called on every change of a vehicle's circuit (metrics, fleet events).
pub type BreakerHook = Arc<dyn Fn(&Vin, BreakerState) + Send + Sync>;

/// Why a command was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub failures: u32,
    pub retry_in: Duration,
}

pub struct Breakers {
    config: BreakerConfig,
    entries: Mutex<HashMap<Vin, Entry>>,
    hook: Option<BreakerHook>,
}

impl Breakers {
    pub fn new(config: BreakerConfig, hook: Option<BreakerHook>) -> Self {
        Self { config, entries: Mutex::default(), hook }
    }

    fn update<T>(&self, vin: &Vin, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(vin.clone()).or_insert(Entry {
            failures: 0,
            state: BreakerState::Closed,
            open_until: Instant::now(),
        });
        let before = entry.state;
        let result = f(entry);
        let after = entry.state;
        drop(entries);
        if before != after
            && let Some(hook) = &self.hook
        {
            hook(vin, after);
        }
        result
    }

    /// May a command go to this vehicle now? An open circuit whose cooldown has passed
    /// lets exactly one probe through.
    pub fn admit(&self, vin: &Vin, now: Instant) -> Result<(), Refused> {
        self.update(vin, |e| match e.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open if now >= e.open_until => {
                e.state = BreakerState::HalfOpen;
                Ok(())
            }
            BreakerState::Open => Err(Refused { failures: e.failures, retry_in: e.open_until - now }),
            BreakerState::HalfOpen => Err(Refused { failures: e.failures, retry_in: Duration::ZERO }),
        })
    }

    /// The vehicle answered (even with a negative response): the circuit closes.
    pub fn success(&self, vin: &Vin) {
        self.update(vin, |e| {
            e.failures = 0;
            e.state = BreakerState::Closed;
        });
    }

    /// A transport failure (no answer, unreachable, garbled, dropped).
    pub fn failure(&self, vin: &Vin, now: Instant) {
        let config = self.config;
        self.update(vin, |e| {
            e.failures += 1;
            if e.state == BreakerState::HalfOpen || e.failures >= config.threshold {
                e.state = BreakerState::Open;
                e.open_until = now + config.cooldown;
            }
        });
    }

    pub fn state(&self, vin: &Vin) -> BreakerState {
        self.update(vin, |e| e.state)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn vin() -> Vin {
        Vin::parse("1HGBH41JXMN109186").unwrap()
    }

    #[test]
    fn opens_after_five_failures_fails_fast_then_probes_and_closes() {
        let changes = Arc::new(AtomicUsize::new(0));
        let seen = changes.clone();
        let hook: BreakerHook = Arc::new(move |_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        let breakers = Breakers::new(BreakerConfig { threshold: 5, cooldown: Duration::from_secs(30) }, Some(hook));
        let t0 = Instant::now();
        for _ in 0..4 {
            breakers.failure(&vin(), t0);
        }
        assert_eq!(breakers.admit(&vin(), t0), Ok(()), "four failures keep it closed");
        breakers.failure(&vin(), t0);
        assert_eq!(breakers.state(&vin()), BreakerState::Open);
        let refused = breakers.admit(&vin(), t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!((refused.failures, refused.retry_in), (5, Duration::from_secs(20)));

        assert_eq!(breakers.admit(&vin(), t0 + Duration::from_secs(30)), Ok(()), "the probe goes through");
        assert_eq!(breakers.state(&vin()), BreakerState::HalfOpen);
        assert!(breakers.admit(&vin(), t0 + Duration::from_secs(31)).is_err(), "one probe at a time");
        breakers.success(&vin());
        assert_eq!(breakers.state(&vin()), BreakerState::Closed);
        assert_eq!(changes.load(Ordering::Relaxed), 3, "open, half-open, closed");
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cooldown() {
        let breakers = Breakers::new(BreakerConfig { threshold: 1, cooldown: Duration::from_secs(5) }, None);
        let t0 = Instant::now();
        breakers.failure(&vin(), t0);
        assert_eq!(breakers.admit(&vin(), t0 + Duration::from_secs(5)), Ok(()));
        breakers.failure(&vin(), t0 + Duration::from_secs(6));
        let refused = breakers.admit(&vin(), t0 + Duration::from_secs(7)).unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_secs(4));
    }
}
