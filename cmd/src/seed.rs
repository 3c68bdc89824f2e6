//! Seed users of the old system, appended as events once (the seed vehicles are the
//! simulated fleet's: deploy/local/fleet.json).
//! Each append expects an empty subject, so seeding again is a no-op.

use sovd_domain::events::UserCreated;
use sovd_domain::{Event, Role, UserId};
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, Subject};
use time::OffsetDateTime;
use uuid::Uuid;

pub const USERS: [(Uuid, &str, &str, Role); 2] = [
    (Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_00a1), "admin", "admin123", Role::Admin),
    (Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_00e1), "engineer", "engineer123", Role::Engineer),
];

async fn append_once(store: &EventStore, subject: &Subject, event: Event) -> Result<bool, AppendError> {
    let meta = EventMeta::new("seed", "system");
    match store.append(subject, &event, &meta, AppendOptions::expect_last(0)).await {
        Ok(_) => Ok(true),
        Err(AppendError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the seed users (`sovd dev` only: production users come from `sovd user add`).
pub async fn seed_users(store: &EventStore, buckets: &sovd_nats::kv::Buckets) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    for (id, username, password, role) in USERS {
        let user_id = UserId::from_uuid(id);
        let name = sovd_domain::users::Username::parse(username)?;
        crate::accounts::reserve(buckets, &name, user_id).await?;
        if store.last_on_subject(sovd_nats::StreamName::Iam, Subject::user(user_id).as_str()).await?.is_some() {
            continue;
        }
        let password_hash = crate::passwords::hash_now(password).map_err(anyhow::Error::msg)?;
        let event = Event::UserCreated(UserCreated {
            user_id,
            username: username.into(),
            role,
            email: Some(format!("{username}@sovd.local")),
            password_hash,
            created_at: now,
        });
        if append_once(store, &Subject::user(user_id), event).await? {
            tracing::info!(username, role = %role, "seeded user");
        }
    }
    Ok(())
}
