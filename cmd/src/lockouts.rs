//! Sign-in lockouts, shared by every gateway replica through the `sovd_lockouts` bucket.
//!
//! An attempt is counted as in flight before its password is checked, with a compare-and-set
//! on the name's record, and only as many are let through as could still fail before the lock
//! (failures plus attempts in flight stay under the threshold): of any number of concurrent
//! guesses, at most `per_client` per client address and `per_name` in all are ever checked
//! in one lock window. The others are told to come back (unchecked, not counted), and an
//! attempt that cannot get its count written is refused unchecked. A right password ends its
//! address's run of failures; an attempt whose end is never reported counts as a failure.
//!
//! Keying by name *and* client address means an outsider who guesses from elsewhere locks
//! only themselves out; the name-wide budget (ten times larger by default) bounds what a
//! distributed guesser gets, at the price that one who spends it locks the name for everyone
//! until the window ends or an admin unlocks it (docs/adr/008-sign-in-defences.md).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How many failures lock what, for how long.
#[derive(Debug, Clone)]
pub struct LockoutPolicy {
    /// Failed sign-ins in a row from one client address that lock the name for that address.
    pub per_client: u32,
    /// Failed sign-ins from all addresses within one window that lock the name for everyone.
    pub per_name: u32,
    /// How long a lock holds, and the length of the name-wide window.
    pub lock_for: Duration,
}

impl Default for LockoutPolicy {
    /// The gateway's defaults: 5 per address, 50 per name, 15 minutes.
    fn default() -> Self {
        Self { per_client: 5, per_name: 50, lock_for: Duration::from_secs(15 * 60) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockoutError {
    #[error("lockout store unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> LockoutError {
    LockoutError::Unavailable(e.to_string())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ClientCount {
    /// Wrong passwords in a row.
    failures: u32,
    /// When each attempt now being checked began (unix seconds).
    pending: Vec<i64>,
    locked_until: Option<i64>,
    last_at: i64,
}

impl ClientCount {
    fn is_empty(&self) -> bool {
        self.failures == 0 && self.pending.is_empty() && self.locked_until.is_none()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    /// When the name-wide window began (unix seconds).
    window_start: i64,
    /// Wrong passwords in the window, from every address.
    failures: u32,
    /// The name is locked for every address until then.
    locked_until: Option<i64>,
    clients: BTreeMap<String, ClientCount>,
}

/// A lock that a wrong password put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLock {
    pub until: OffsetDateTime,
    /// `None`: every address.
    pub client_ip: Option<String>,
}

/// The answer to "may this attempt check a password?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted as in flight: report how it ended with [`Lockouts::finish`].
    Admitted,
    /// Locked for this client until then: no password is checked.
    Locked { until: OffsetDateTime },
    /// As many attempts as may still fail are being checked right now (or the count could
    /// not be written): no password is checked; try again in a moment.
    Busy,
}

/// How an admitted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Right,
    Wrong,
    /// The password was never checked (the account could not be read).
    Unchecked,
}

/// Compare-and-set rounds before an attempt is refused unchecked.
const MAX_ROUNDS: usize = 32;
/// An attempt whose end was never reported (a gateway died mid-check) counts as a failure
/// after this long.
const PENDING_SECS: i64 = 60;

#[derive(Clone)]
pub struct Lockouts {
    bucket: kv::Store,
    policy: LockoutPolicy,
}

impl Lockouts {
    pub fn new(bucket: kv::Store, policy: LockoutPolicy) -> Self {
        Self { bucket, policy }
    }

    /// Counts an attempt for `name` from `client_ip` as in flight, before its password is
    /// checked; at most as many are let through as could still fail before the lock.
    pub async fn admit(&self, name: &str, client_ip: &str) -> Result<Admission, LockoutError> {
        let key = key(name);
        for _ in 0..MAX_ROUNDS {
            let (mut record, revision) = self.read(&key).await?;
            let admission = record.admit(client_ip, now(), &self.policy);
            if admission != Admission::Admitted || self.write(&key, &record, revision).await? {
                return Ok(admission);
            }
        }
        tracing::warn!(client_ip, "sign-in attempts for one name kept racing; refused unchecked");
        Ok(Admission::Busy)
    }

    /// Records how an admitted attempt ended; returns the lock a wrong password put in place.
    /// When the record cannot be written the attempt stays in flight and counts as a failure
    /// once [`PENDING_SECS`] have passed.
    pub async fn finish(&self, name: &str, client_ip: &str, outcome: Outcome) -> Result<Option<NewLock>, LockoutError> {
        let key = key(name);
        for _ in 0..MAX_ROUNDS {
            let (mut record, revision) = self.read(&key).await?;
            let lock = record.finish(client_ip, now(), outcome, &self.policy);
            if self.write(&key, &record, revision).await? {
                return Ok(lock.map(|(until, client_ip)| NewLock { until: at(until), client_ip }));
            }
        }
        Err(LockoutError::Unavailable("lockout record kept changing".into()))
    }

    /// Lifts every lock on `name` and forgets its failures. Returns whether anything was held.
    pub async fn unlock(&self, name: &str) -> Result<bool, LockoutError> {
        let key = key(name);
        let held = self.bucket.entry(key.as_str()).await.map_err(unavailable)?;
        let held = held.is_some_and(|e| e.operation == kv::Operation::Put);
        if held {
            self.bucket.purge(key.as_str()).await.map_err(unavailable)?;
        }
        Ok(held)
    }

    async fn read(&self, key: &str) -> Result<(Record, Option<u64>), LockoutError> {
        let entry = self.bucket.entry(key).await.map_err(unavailable)?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                (serde_json::from_slice(&e.value).unwrap_or_default(), Some(e.revision))
            }
            // Never written, or purged: the next write must still be a compare-and-set.
            Some(e) => (Record::default(), Some(e.revision)),
            None => (Record::default(), None),
        })
    }

    /// Writes `record` if nobody wrote since `revision`; `false` when someone did.
    async fn write(&self, key: &str, record: &Record, revision: Option<u64>) -> Result<bool, LockoutError> {
        let value = Bytes::from(serde_json::to_vec(record).map_err(unavailable)?);
        let written = match revision {
            Some(revision) => self.bucket.update(key, value, revision).await.is_ok(),
            None => self.bucket.create(key, value).await.is_ok(),
        };
        Ok(written)
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Record {
    fn admit(&mut self, client_ip: &str, now: i64, policy: &LockoutPolicy) -> Admission {
        self.forget_expired(now, policy);
        if let Some(until) = self.locked_for(client_ip) {
            return Admission::Locked { until: at(until) };
        }
        let in_flight: usize = self.clients.values().map(|c| c.pending.len()).sum();
        let client = self.clients.get(client_ip);
        let client_load = client.map_or(0, |c| c.failures as usize + c.pending.len());
        let name_load = self.failures as usize + in_flight;
        if client_load >= policy.per_client.max(1) as usize || name_load >= policy.per_name.max(1) as usize {
            return Admission::Busy;
        }
        let client = self.clients.entry(client_ip.to_owned()).or_default();
        client.pending.push(now);
        client.last_at = now;
        Admission::Admitted
    }

    /// Returns the lock (until, address or every address) a wrong password put in place.
    fn finish(
        &mut self,
        client_ip: &str,
        now: i64,
        outcome: Outcome,
        policy: &LockoutPolicy,
    ) -> Option<(i64, Option<String>)> {
        self.forget_expired(now, policy);
        let client = self.clients.entry(client_ip.to_owned()).or_default();
        if !client.pending.is_empty() {
            client.pending.remove(0);
        }
        client.last_at = now;
        match outcome {
            Outcome::Wrong => {}
            Outcome::Right | Outcome::Unchecked => {
                // The right password from this address ends its run of failures.
                if outcome == Outcome::Right {
                    client.failures = 0;
                    client.locked_until = None;
                }
                if client.is_empty() {
                    self.clients.remove(client_ip);
                }
                return None;
            }
        }
        client.failures += 1;
        self.failures += 1;
        self.apply_thresholds(client_ip, now, policy)
    }

    fn apply_thresholds(&mut self, client_ip: &str, now: i64, policy: &LockoutPolicy) -> Option<(i64, Option<String>)> {
        let until = now.saturating_add(secs(policy.lock_for));
        if self.failures >= policy.per_name.max(1) && self.locked_until.is_none() {
            self.locked_until = Some(until);
            return Some((until, None));
        }
        let client = self.clients.get_mut(client_ip)?;
        if client.failures >= policy.per_client.max(1) && client.locked_until.is_none() {
            client.locked_until = Some(until);
            return Some((until, Some(client_ip.to_owned())));
        }
        None
    }

    fn forget_expired(&mut self, now: i64, policy: &LockoutPolicy) {
        let window = secs(policy.lock_for);
        if now.saturating_sub(self.window_start) >= window {
            self.window_start = now;
            self.failures = 0;
        }
        if self.locked_until.is_some_and(|until| until <= now) {
            self.locked_until = None;
        }
        // Attempts whose end never came count as failures (a lost race is never a free guess).
        let abandoned: Vec<(String, u32)> = self
            .clients
            .iter_mut()
            .filter_map(|(ip, c)| {
                let before = c.pending.len();
                c.pending.retain(|started| now.saturating_sub(*started) < PENDING_SECS);
                let gone = u32::try_from(before - c.pending.len()).unwrap_or(u32::MAX);
                (gone > 0).then(|| (ip.clone(), gone))
            })
            .collect();
        for (ip, gone) in abandoned {
            if let Some(client) = self.clients.get_mut(&ip) {
                client.failures += gone;
            }
            self.failures += gone;
            self.apply_thresholds(&ip, now, policy);
        }
        // A client's run of failures ends with its lock, or a window after its last attempt.
        self.clients.retain(|_, c| {
            if c.locked_until.is_some_and(|until| until <= now) {
                *c = ClientCount { last_at: c.last_at, ..ClientCount::default() };
            }
            let recent = now.saturating_sub(c.last_at) < window;
            !c.pending.is_empty() || c.locked_until.is_some() || (c.failures > 0 && recent)
        });
    }

    fn locked_for(&self, client_ip: &str) -> Option<i64> {
        let client = self.clients.get(client_ip).and_then(|c| c.locked_until);
        match (self.locked_until, client) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// KV keys take `[-/_=.a-zA-Z0-9]`; names are hex-encoded so any typed name has its own key.
/// Names are capped at the edge (64 bytes), so keys stay short.
fn key(name: &str) -> String {
    let mut key = String::with_capacity(name.len() * 2 + 1);
    key.push('n');
    for b in name.bytes() {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy { per_client: 3, per_name: 5, lock_for: Duration::from_secs(900) }
    }

    fn fail(record: &mut Record, ip: &str, now: i64) -> Option<(i64, Option<String>)> {
        assert_eq!(record.admit(ip, now, &policy()), Admission::Admitted);
        record.finish(ip, now, Outcome::Wrong, &policy())
    }

    #[test]
    fn the_third_failure_in_a_row_from_one_address_locks_that_address_only() {
        let mut record = Record::default();
        assert_eq!(fail(&mut record, "10.0.0.1", 100), None);
        assert_eq!(fail(&mut record, "10.0.0.1", 101), None);
        assert_eq!(fail(&mut record, "10.0.0.1", 102), Some((1002, Some("10.0.0.1".into()))));
        assert_eq!(record.admit("10.0.0.1", 103, &policy()), Admission::Locked { until: at(1002) });
        assert_eq!(record.admit("10.0.0.2", 103, &policy()), Admission::Admitted, "another address still signs in");
    }

    #[test]
    fn no_more_attempts_are_let_through_at_once_than_could_still_fail() {
        let mut record = Record::default();
        let admitted = (0..10).filter(|_| record.admit("a", 100, &policy()) == Admission::Admitted).count();
        assert_eq!(admitted, 3, "the rest are told to come back, unchecked");
        assert_eq!(record.admit("a", 100, &policy()), Admission::Busy);
        // All three right: the address is clear again.
        for _ in 0..3 {
            assert_eq!(record.finish("a", 101, Outcome::Right, &policy()), None);
        }
        assert_eq!(record.admit("a", 102, &policy()), Admission::Admitted);
    }

    #[test]
    fn the_name_wide_budget_locks_every_address() {
        let mut record = Record::default();
        for (i, ip) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(fail(&mut record, ip, 100 + i as i64), None);
        }
        assert_eq!(fail(&mut record, "e", 104), Some((1004, None)));
        assert_eq!(record.admit("z", 105, &policy()), Admission::Locked { until: at(1004) });
    }

    #[test]
    fn an_attempt_whose_end_never_came_counts_as_a_failure() {
        let mut record = Record::default();
        for _ in 0..3 {
            assert_eq!(record.admit("a", 100, &policy()), Admission::Admitted);
        }
        assert_eq!(
            record.admit("a", 100 + PENDING_SECS, &policy()),
            Admission::Locked { until: at(1000 + PENDING_SECS) }
        );
    }

    #[test]
    fn locks_and_counts_run_out_with_the_window() {
        let mut record = Record::default();
        for t in 0..3 {
            fail(&mut record, "a", t);
        }
        record.forget_expired(902, &policy());
        assert_eq!(record.locked_for("a"), None);
        assert_eq!(record.failures, 0);
        assert!(record.clients.is_empty());
    }

    #[test]
    fn names_that_differ_in_any_byte_have_different_keys() {
        assert_ne!(key("admin"), key("Admin"));
        assert_eq!(key("ab"), "n6162");
        assert!(key("ä\u{0}").bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
