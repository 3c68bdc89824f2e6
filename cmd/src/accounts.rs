//! User management, shared by `sovd user ...` and `/api/v1/users`: every change is decided by
//! the user lifecycle in `sovd-domain` and appended to the user's subject, guarded by its last
//! sequence. Usernames are reserved in a KV bucket, so two replicas cannot create one twice.

use bytes::Bytes;
use sovd_domain::Event;
use sovd_domain::events::{AccountUnlocked, UserCreated};
use sovd_domain::users::{self, UserError, UserIntent, UserState, Username};
use sovd_domain::{Role, UserId};
use sovd_nats::kv::Buckets;
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, ReadError, StreamName, Subject};
use time::OffsetDateTime;

use crate::lockouts::Lockouts;
use crate::passwords::{Busy, HashError, Passwords};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Rule(#[from] UserError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("user store unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Who asks for a change: a signed-in admin, or the operator on the command line.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: UserId,
    pub correlation_id: String,
}

impl Actor {
    /// The operator at the console (`sovd user ...`).
    pub fn system() -> Self {
        Self { user_id: UserId::from_uuid(Uuid::nil()), correlation_id: format!("cli-{}", Uuid::now_v7()) }
    }

    fn meta(&self) -> EventMeta {
        let actor =
            if self.user_id.as_uuid().is_nil() { "system".to_owned() } else { format!("user:{}", self.user_id) };
        EventMeta::new(self.correlation_id.clone(), actor)
    }
}

impl From<HashError> for AccountError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy(busy) => Self::Busy(busy),
            HashError::Failed(why) => Self::Unavailable(why),
        }
    }
}

/// A new account's details, as given (checked by [`create`]).
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub role: Role,
    pub email: Option<&'a str>,
}

pub async fn create(
    store: &EventStore,
    buckets: &Buckets,
    passwords: &Passwords,
    actor: &Actor,
    account: NewAccount<'_>,
) -> Result<(UserId, u64), AccountError> {
    let username = Username::parse(account.username)?;
    users::check_password(account.password)?;
    let email = users::parse_email(account.email)?;
    let user_id = UserId::from_uuid(Uuid::now_v7());
    let password_hash = passwords.hash(account.password).await?;
    reserve(buckets, &username, user_id).await?;
    let created = UserCreated {
        user_id,
        username: username.as_str().to_owned(),
        role: account.role,
        email: email.map(|e| e.into_string()),
        password_hash,
        created_at: OffsetDateTime::now_utc(),
    };
    let mut sequence = 0;
    for event in users::decide(&UserState::default(), UserIntent::Create(created))? {
        sequence =
            store.append(&Subject::user(user_id), &event, &actor.meta(), AppendOptions::expect_last(0)).await?.sequence;
    }
    Ok((user_id, sequence))
}

/// Claims `username` for `user_id`; a name already claimed by another id is taken.
pub async fn reserve(buckets: &Buckets, username: &Username, user_id: UserId) -> Result<(), AccountError> {
    let value = Bytes::from(user_id.to_string());
    match buckets.usernames.create(username.as_str(), value).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
            match lookup(buckets, username.as_str()).await? {
                Some(owner) if owner == user_id => Ok(()),
                _ => Err(UserError::UsernameTaken.into()),
            }
        }
        Err(e) => Err(AccountError::Unavailable(e.to_string())),
    }
}

/// The user id a username belongs to.
pub async fn lookup(buckets: &Buckets, username: &str) -> Result<Option<UserId>, AccountError> {
    let Ok(username) = Username::parse(username) else { return Ok(None) };
    let value = buckets.usernames.get(username.as_str()).await.map_err(|e| AccountError::Unavailable(e.to_string()))?;
    Ok(value.and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| UserId::parse(s).ok())))
}

/// Applies one lifecycle intent to an existing user; returns the stream sequence written.
pub async fn change(
    store: &EventStore,
    actor: &Actor,
    user_id: UserId,
    intent: impl FnOnce(UserId, OffsetDateTime) -> UserIntent,
) -> Result<u64, AccountError> {
    let subject = Subject::user(user_id);
    let history = store.read_filtered(StreamName::Iam, subject.as_str()).await?;
    let state = UserState::replay(history.iter().map(|s| &s.event));
    let mut last = history.last().map_or(0, |s| s.stream_sequence);
    // A conflict means another admin changed the account meanwhile; the caller sees it and
    // may try again against the new state.
    for event in users::decide(&state, intent(actor.user_id, OffsetDateTime::now_utc()))? {
        last = store.append(&subject, &event, &actor.meta(), AppendOptions::expect_last(last)).await?.sequence;
    }
    Ok(last)
}

pub async fn set_password(
    store: &EventStore,
    passwords: &Passwords,
    actor: &Actor,
    user_id: UserId,
    password: &str,
) -> Result<u64, AccountError> {
    users::check_password(password)?;
    let password_hash = passwords.hash(password).await?;
    change(store, actor, user_id, |by, at| UserIntent::SetPassword { password_hash, by, at }).await
}

/// Lifts every sign-in lock on the account and records who did it and why. Returns whether a
/// lock or failed attempts were held (nothing is recorded when none were).
pub async fn unlock(
    store: &EventStore,
    lockouts: &Lockouts,
    actor: &Actor,
    user_id: UserId,
    username: &str,
    reason: &str,
) -> Result<bool, AccountError> {
    let held = lockouts.unlock(username).await.map_err(|e| AccountError::Unavailable(e.to_string()))?;
    if held {
        let event = Event::AccountUnlocked(AccountUnlocked {
            username: username.to_owned(),
            user_id: Some(user_id),
            by: actor.user_id,
            reason: reason.to_owned(),
            at: OffsetDateTime::now_utc(),
        });
        store.append(&Subject::user_sessions(user_id), &event, &actor.meta(), AppendOptions::default()).await?;
    }
    Ok(held)
}
