//! User management, shared by `sovd user ...` and `/api/v1/users`: every change is decided by
//! the user lifecycle in `sovd-domain` and appended to the user's subject, guarded by its last
//! sequence. Usernames are reserved in a KV bucket, so two replicas cannot create one twice.

use bytes::Bytes;
use sovd_domain::events::UserCreated;
use sovd_domain::users::{self, UserError, UserIntent, UserState, Username};
use sovd_domain::{Role, UserId};
use sovd_nats::kv::Buckets;
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, ReadError, StreamName, Subject};
use time::OffsetDateTime;
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

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

pub async fn create(
    store: &EventStore,
    buckets: &Buckets,
    actor: &Actor,
    username: &str,
    password: &str,
    role: Role,
    email: Option<String>,
) -> Result<(UserId, u64), AccountError> {
    let username = Username::parse(username)?;
    users::check_password(password)?;
    let user_id = UserId::from_uuid(Uuid::now_v7());
    reserve(buckets, &username, user_id).await?;
    let password = password.to_owned();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Unavailable(e.to_string()))?
        .map_err(AccountError::Unavailable)?;
    let created = UserCreated {
        user_id,
        username: username.as_str().to_owned(),
        role,
        email,
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
    actor: &Actor,
    user_id: UserId,
    password: &str,
) -> Result<u64, AccountError> {
    users::check_password(password)?;
    let password = password.to_owned();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Unavailable(e.to_string()))?
        .map_err(AccountError::Unavailable)?;
    change(store, actor, user_id, |by, at| UserIntent::SetPassword { password_hash, by, at }).await
}
