//! Sign-in lockouts, shared by every gateway replica through the `sovd_lockouts` bucket.
//!
//! An attempt is counted before its password is checked, with a compare-and-set on the
//! name's record: of any number of concurrent guesses, at most `per_client` per client
//! address and `per_name` in all are ever let through to the password check in one lock
//! window. A guess that cannot get its count written is refused unchecked. A success takes
//! its own count back and clears its client's failures.
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
    failures: u32,
    locked_until: Option<i64>,
    last_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    /// When the name-wide window began (unix seconds).
    window_start: i64,
    /// Attempts in the window not (yet) known to have succeeded.
    failures: u32,
    /// The name is locked for every address until then.
    locked_until: Option<i64>,
    clients: BTreeMap<String, ClientCount>,
}

/// A lock that an attempt put in place, in force if its password turns out wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLock {
    pub until: OffsetDateTime,
    /// `None`: every address.
    pub client_ip: Option<String>,
}

/// The answer to "may this attempt check a password?".
#[derive(Debug)]
pub enum Admission {
    /// Counted as a failure until [`Lockouts::succeeded`] takes it back.
    Counted { lock: Option<NewLock> },
    /// Locked for this client until then: no password is checked.
    Locked { until: OffsetDateTime },
}

/// Compare-and-set rounds before an attempt is refused unchecked.
const MAX_ROUNDS: usize = 32;

#[derive(Clone)]
pub struct Lockouts {
    bucket: kv::Store,
    policy: LockoutPolicy,
}

impl Lockouts {
    pub fn new(bucket: kv::Store, policy: LockoutPolicy) -> Self {
        Self { bucket, policy }
    }

    /// Counts an attempt for `name` from `client_ip` before its password is checked.
    pub async fn admit(&self, name: &str, client_ip: &str) -> Result<Admission, LockoutError> {
        let key = key(name);
        for _ in 0..MAX_ROUNDS {
            let now = OffsetDateTime::now_utc();
            let (mut record, revision) = self.read(&key).await?;
            record.forget_expired(now.unix_timestamp(), &self.policy);
            if let Some(until) = record.locked_for(client_ip) {
                return Ok(Admission::Locked { until: at(until) });
            }
            let lock = record.count(client_ip, now.unix_timestamp(), &self.policy);
            if self.write(&key, &record, revision).await? {
                return Ok(Admission::Counted { lock });
            }
        }
        // Lost every race: counted as a failure by not checking the password at all.
        tracing::warn!(client_ip, "sign-in attempts for one name kept racing; refused unchecked");
        Ok(Admission::Locked { until: OffsetDateTime::now_utc() + self.policy.lock_for })
    }

    /// The password was right: take this attempt's count back and clear its client's
    /// failures (other addresses keep theirs).
    pub async fn succeeded(&self, name: &str, client_ip: &str) -> Result<(), LockoutError> {
        let key = key(name);
        for _ in 0..MAX_ROUNDS {
            let (mut record, revision) = self.read(&key).await?;
            if record.clients.remove(client_ip).is_none() {
                return Ok(());
            }
            record.failures = record.failures.saturating_sub(1);
            if self.write(&key, &record, revision).await? {
                return Ok(());
            }
        }
        Err(LockoutError::Unavailable("lockout record kept changing".into()))
    }

    /// Whether `name` is locked for anyone now (for the users page and the console).
    pub async fn is_locked(&self, name: &str) -> Result<bool, LockoutError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let (mut record, _) = self.read(&key(name)).await?;
        record.forget_expired(now, &self.policy);
        Ok(record.locked_until.is_some() || record.clients.values().any(|c| c.locked_until.is_some()))
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

impl Record {
    fn forget_expired(&mut self, now: i64, policy: &LockoutPolicy) {
        let window = i64::try_from(policy.lock_for.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(self.window_start) >= window {
            self.window_start = now;
            self.failures = 0;
        }
        if self.locked_until.is_some_and(|until| until <= now) {
            self.locked_until = None;
        }
        // A client's run of failures ends with its lock, or a window after its last attempt.
        self.clients.retain(|_, c| match c.locked_until {
            Some(until) => until > now,
            None => now.saturating_sub(c.last_at) < window,
        });
    }

    fn locked_for(&self, client_ip: &str) -> Option<i64> {
        let client = self.clients.get(client_ip).and_then(|c| c.locked_until);
        match (self.locked_until, client) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts one attempt; returns the lock it puts in place when it reaches a threshold.
    fn count(&mut self, client_ip: &str, now: i64, policy: &LockoutPolicy) -> Option<NewLock> {
        let until = now.saturating_add(i64::try_from(policy.lock_for.as_secs()).unwrap_or(i64::MAX));
        self.failures += 1;
        let client = self.clients.entry(client_ip.to_owned()).or_default();
        client.failures += 1;
        client.last_at = now;
        if self.failures >= policy.per_name.max(1) {
            self.locked_until = Some(until);
            return Some(NewLock { until: at(until), client_ip: None });
        }
        if client.failures >= policy.per_client.max(1) {
            client.locked_until = Some(until);
            return Some(NewLock { until: at(until), client_ip: Some(client_ip.to_owned()) });
        }
        None
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

    #[test]
    fn the_third_failure_in_a_row_from_one_address_locks_that_address_only() {
        let mut record = Record::default();
        assert_eq!(record.count("10.0.0.1", 100, &policy()), None);
        assert_eq!(record.count("10.0.0.1", 101, &policy()), None);
        let lock = record.count("10.0.0.1", 102, &policy()).unwrap();
        assert_eq!(lock.client_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(record.locked_for("10.0.0.1"), Some(1002));
        assert_eq!(record.locked_for("10.0.0.2"), None, "another address still signs in");
    }

    #[test]
    fn the_name_wide_budget_locks_every_address() {
        let mut record = Record::default();
        for (i, ip) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(record.count(ip, 100 + i as i64, &policy()), None);
        }
        let lock = record.count("e", 104, &policy()).unwrap();
        assert_eq!(lock.client_ip, None);
        assert_eq!(record.locked_for("z"), Some(1004));
    }

    #[test]
    fn locks_and_counts_run_out_with_the_window() {
        let mut record = Record::default();
        for t in 0..3 {
            record.count("a", t, &policy());
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
