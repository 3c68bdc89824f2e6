//! Password hashing and checking, bounded. Each argon2 run holds about 19 MiB for as long as it
//! takes, so the number running at once is capped; a caller that cannot get a turn within a
//! short wait is told to come back (503 with `Retry-After`), and memory stays bounded under
//! any sign-in storm.

use std::sync::Arc;
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

#[derive(Clone)]
pub struct Passwords {
    turns: Arc<Semaphore>,
    wait: Duration,
}

/// A turn to run argon2 once.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl Passwords {
    /// At most `concurrency` hashes or checks at once; others wait up to `wait` for a turn.
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        Self { turns: Arc::new(Semaphore::new(concurrency.max(1))), wait }
    }

    /// One per core, a two-second wait: what a gateway uses by default.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()), Duration::from_secs(2))
    }

    pub async fn turn(&self) -> Result<Turn, Busy> {
        match tokio::time::timeout(self.wait, self.turns.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn { _permit: permit }),
            _ => Err(Busy),
        }
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let turn = self.turn().await?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            hash_now(&password)
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
        .map_err(HashError::Failed)
    }
}

impl Turn {
    /// Whether `password` matches `hash` (off the async workers: argon2 is slow on purpose).
    pub async fn verify(self, password: String, hash: String) -> bool {
        tokio::task::spawn_blocking(move || {
            let _turn = self;
            verify_now(&password, &hash)
        })
        .await
        .unwrap_or(false)
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
        let passwords = Passwords::new(2, Duration::from_secs(5));
        let hash = passwords.hash("engineer123").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.turn().await.unwrap().verify("engineer123".into(), hash.clone()).await);
        assert!(!passwords.turn().await.unwrap().verify("engineer124".into(), hash).await);
    }

    #[tokio::test]
    async fn no_turn_is_handed_out_beyond_the_cap_within_the_wait() {
        let passwords = Passwords::new(1, Duration::from_millis(50));
        let held = passwords.turn().await.unwrap();
        assert_eq!(passwords.turn().await.err(), Some(Busy));
        drop(held);
        assert!(passwords.turn().await.is_ok(), "a returned turn is handed out again");
    }
}
