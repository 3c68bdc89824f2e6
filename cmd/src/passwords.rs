//! Password hashing and checking, bounded. Each argon2 run holds about 19 MiB for as long as it
//! takes, so the number running at once is capped; a caller that cannot get a turn within a
//! short wait is told to come back (503 with `Retry-After`), and memory stays bounded under
//! any sign-in storm.
//!
//! The runs happen on a fixed set of threads of their own, one per turn. Not on tokio's
//! blocking pool: the allocator keeps a freed 19 MiB block in the arena of the thread that
//! used it, so argon2 spread over hundreds of blocking threads grows resident memory by
//! 19 MiB per thread that ever ran it, whatever the cap on runs at once.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// No turn came within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Busy;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("could not hash the password: {0}")]
    Failed(String),
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Passwords {
    turns: Arc<Semaphore>,
    wait: Duration,
    jobs: SyncSender<Job>,
}

/// A turn to run argon2 once, on one of the pool's threads.
pub struct Turn {
    permit: OwnedSemaphorePermit,
    jobs: SyncSender<Job>,
}

impl Passwords {
    /// At most `concurrency` hashes or checks at once, each on a thread of the pool's own;
    /// others wait up to `wait` for a turn. The threads end when the last clone is dropped.
    pub fn new(concurrency: usize, wait: Duration) -> std::io::Result<Self> {
        let concurrency = concurrency.max(1);
        // Never full: a job is only sent with a turn, and there are as many turns as slots.
        let (jobs, queue) = mpsc::sync_channel::<Job>(concurrency);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..concurrency {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("argon2-{n}")).spawn(move || {
                loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Self { turns: Arc::new(Semaphore::new(concurrency)), wait, jobs })
    }

    /// One per core, a two-second wait: what a gateway uses by default.
    pub fn per_core() -> std::io::Result<Self> {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()), Duration::from_secs(2))
    }

    pub async fn turn(&self) -> Result<Turn, Busy> {
        match tokio::time::timeout(self.wait, self.turns.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn { permit, jobs: self.jobs.clone() }),
            _ => Err(Busy),
        }
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_owned();
        let hashed = self.turn().await?.run(move || hash_now(&password)).await;
        hashed.ok_or(Busy)?.map_err(HashError::Failed)
    }
}

impl Turn {
    /// Runs `work` on the pool; the turn is handed back when it is done. `None` only when
    /// the pool is gone.
    async fn run<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let permit = self.permit;
        let job: Job = Box::new(move || {
            let _ = done.send(work());
            drop(permit);
        });
        match self.jobs.try_send(job) {
            Ok(()) => result.await.ok(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        }
    }

    /// Whether `password` matches `hash` (off the async workers: argon2 is slow on purpose).
    pub async fn verify(self, password: String, hash: String) -> bool {
        self.run(move || verify_now(&password, &hash)).await.unwrap_or(false)
    }
}

/// An argon2id PHC string for `password`, on this thread.
pub fn hash_now(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new(2, Duration::from_secs(5)).unwrap();
        let hash = passwords.hash("engineer123").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.turn().await.unwrap().verify("engineer123".into(), hash.clone()).await);
        assert!(!passwords.turn().await.unwrap().verify("engineer124".into(), hash).await);
    }

    #[tokio::test]
    async fn no_turn_is_handed_out_beyond_the_cap_within_the_wait() {
        let passwords = Passwords::new(1, Duration::from_millis(50)).unwrap();
        let held = passwords.turn().await.unwrap();
        assert_eq!(passwords.turn().await.err(), Some(Busy));
        drop(held);
        assert!(passwords.turn().await.is_ok(), "a returned turn is handed out again");
    }
}
