//! Accounts as their events say they are, for the decisions that must not lag: whether a
//! token's user exists and is active (every request), and a user's role, status and password
//! at sign-in and refresh. The users read model in Postgres is for listing; it can lag or
//! stall, so nothing here reads it.
//!
//! Each replica follows the account subjects of SOVD_IAM into memory. A user it has not seen
//! yet (a replica that just started) is read straight from the log, one direct get per event.
//! Sign-in and refresh always read from the log, so a change appended a moment ago counts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use sovd_domain::UserId;
use sovd_domain::users::{self, UserState};
use sovd_nats::{EventStore, ReadError, StreamName, Subject};
use tokio::sync::watch;
use uuid::Uuid;

/// An account and the stream sequence of the last event folded into it.
#[derive(Debug, Clone)]
struct Known {
    state: UserState,
    sequence: u64,
}

pub struct Directory {
    store: EventStore,
    accounts: RwLock<HashMap<Uuid, Known>>,
}

impl Directory {
    pub fn new(store: EventStore) -> Arc<Self> {
        Arc::new(Self { store, accounts: RwLock::default() })
    }

    /// The account as last seen, or read from the log when this replica has not seen it.
    /// `None` when no such account exists.
    pub async fn account(&self, user_id: Uuid) -> Result<Option<UserState>, ReadError> {
        if let Some(known) = self.accounts.read().unwrap_or_else(|p| p.into_inner()).get(&user_id) {
            return Ok(Some(known.state.clone()));
        }
        self.fresh(user_id).await
    }

    /// The account as the log says it is now. `None` when no such account exists.
    pub async fn fresh(&self, user_id: Uuid) -> Result<Option<UserState>, ReadError> {
        let subject = Subject::user(UserId::from_uuid(user_id));
        let mut known = Known { state: UserState::default(), sequence: 0 };
        // An account has a handful of events: walk them with direct gets, no consumer.
        while let Some(stored) =
            self.store.next_on_subject(StreamName::Iam, subject.as_str(), known.sequence + 1).await?
        {
            known.state = users::evolve(known.state, &stored.event);
            known.sequence = stored.stream_sequence;
        }
        if known.state.user_id.is_none() {
            return Ok(None);
        }
        let state = known.state.clone();
        self.remember(user_id, known);
        Ok(Some(state))
    }

    /// Keeps the newer of what is known and `known` (the follower and direct reads race).
    fn remember(&self, user_id: Uuid, known: Known) {
        let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let newer = accounts.get(&user_id).is_none_or(|current| current.sequence < known.sequence);
        if newer {
            accounts.insert(user_id, known);
        }
    }

    /// Applies one account event from the follower, unless a direct read already covered it.
    fn apply(&self, sequence: u64, event: &sovd_domain::Event) {
        let Some(user_id) = users::account_of(event) else { return };
        let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let known = accounts.entry(user_id.as_uuid()).or_insert(Known { state: UserState::default(), sequence: 0 });
        if known.sequence < sequence {
            known.state = users::evolve(std::mem::take(&mut known.state), event);
            known.sequence = sequence;
        }
    }

    /// Follows every account subject into memory until shutdown (every replica runs one).
    pub async fn follow(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut next = 1;
        loop {
            let mut events = match self.store.ordered(StreamName::Iam, Subject::all_accounts(), next).await {
                Ok(events) => Box::pin(events),
                Err(error) => {
                    tracing::warn!(error = %error, "cannot follow accounts; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    _ = shutdown.changed() => return,
                };
                match event {
                    Some(Ok(stored)) => {
                        self.apply(stored.stream_sequence, &stored.event);
                        next = stored.stream_sequence + 1;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(error = %error, "account feed failed; reading again");
                        break;
                    }
                    None => break,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
