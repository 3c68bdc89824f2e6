//! After a restore, the key-value buckets are as old as the backup while the event streams
//! reach the last archived segment. What must agree with the log is put back from it:
//! usernames of users created since the backup, and revoked sessions of users deactivated
//! since. Refresh tokens cannot be checked against the log (logouts and reuse revocations
//! since the backup are not in the snapshot), so they are all withdrawn: after a restore,
//! everyone signs in again.

use std::collections::BTreeMap;

use anyhow::Context;
use sovd_domain::users::Username;
use sovd_domain::{Event, UserId};
use sovd_nats::kv::{Bucket, Buckets};
use sovd_nats::{EventStore, StreamName};

use crate::accounts;
use crate::gateway::sessions::revoke_user_sessions;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub usernames: usize,
    pub deactivated: usize,
}

pub async fn reconcile(store: &EventStore, replicas: usize) -> anyhow::Result<Reconciled> {
    let js = store.jetstream();
    let buckets = Buckets::open(js, replicas).await?;
    let events = store.read_filtered(StreamName::Iam, "sovd.iam.*").await?;
    let mut active: BTreeMap<UserId, bool> = BTreeMap::new();
    let mut reconciled = Reconciled::default();
    for stored in &events {
        match &stored.event {
            Event::UserCreated(created) => {
                let username = Username::parse(&created.username)
                    .map_err(|e| anyhow::anyhow!("user {} in the log: {e}", created.user_id))?;
                accounts::reserve(&buckets, &username, created.user_id)
                    .await
                    .with_context(|| format!("cannot put username {} back", created.username))?;
                reconciled.usernames += 1;
                active.insert(created.user_id, true);
            }
            Event::UserDeactivated(e) => {
                active.insert(e.user_id, false);
            }
            Event::UserReactivated(e) => {
                active.insert(e.user_id, true);
            }
            _ => {}
        }
    }
    for (user_id, _) in active.iter().filter(|(_, active)| !**active) {
        revoke_user_sessions(&buckets, user_id.as_uuid()).await?;
        reconciled.deactivated += 1;
    }
    let tokens = js.get_stream(Bucket::RefreshTokens.stream_name()).await?;
    tokens.purge().await.context("cannot withdraw the refresh tokens")?;
    Ok(reconciled)
}
