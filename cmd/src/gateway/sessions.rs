//! Sessions shared by every gateway replica through NATS KV: refresh tokens that rotate on
//! every use (a reused one revokes its whole family), revocations (logout, deactivation) that
//! every replica learns at once through a KV watch, and sign-in lockouts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sovd_domain::Role;
use sovd_nats::kv::Buckets;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use super::jwt::{Claims, JwtKey};

pub const ACCESS_TTL_SECS: i64 = 900;
pub const REFRESH_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefreshRecord {
    user_id: Uuid,
    family: Uuid,
    used: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LockoutRecord {
    failures: u32,
    locked_until: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("refresh token is not valid: {0}")]
    Invalid(&'static str),
    #[error("refresh token was already used; every session of that sign-in is now revoked")]
    Reused { user_id: Uuid, family: Uuid },
}

fn unavailable(e: impl std::fmt::Display) -> SessionError {
    SessionError::Unavailable(e.to_string())
}

pub struct Sessions {
    buckets: Buckets,
    jwt: JwtKey,
    /// `family.<id>` / `user.<id>` -> revoked at (unix seconds), mirrored from the KV bucket.
    revoked: RwLock<HashMap<String, i64>>,
}

impl Sessions {
    pub fn new(buckets: Buckets, jwt: JwtKey) -> Arc<Self> {
        Arc::new(Self { buckets, jwt, revoked: RwLock::default() })
    }

    pub fn jwt(&self) -> &JwtKey {
        &self.jwt
    }

    /// Access and refresh token for a new sign-in (new family) or a rotation (same family).
    pub async fn issue(&self, who: &Identity, family: Option<Uuid>) -> Result<TokenPair, SessionError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let family = family.unwrap_or_else(Uuid::now_v7);
        let jti = Uuid::now_v7();
        let claims = |token_type: &str, ttl: i64, jti: Uuid| Claims {
            user_id: who.user_id.to_string(),
            username: who.username.clone(),
            role: who.role.as_str().to_owned(),
            exp: now + ttl,
            iat: now,
            token_type: token_type.to_owned(),
            jti: Some(jti.to_string()),
            fam: Some(family.to_string()),
        };
        let record = RefreshRecord { user_id: who.user_id, family, used: false };
        let value = serde_json::to_vec(&record).map_err(unavailable)?;
        self.buckets.refresh_tokens.put(jti.to_string(), Bytes::from(value)).await.map_err(unavailable)?;
        Ok(TokenPair {
            access_token: self.jwt.sign(&claims("access", ACCESS_TTL_SECS, Uuid::now_v7())),
            refresh_token: self.jwt.sign(&claims("refresh", REFRESH_TTL_SECS, jti)),
            token_type: "bearer",
            expires_in: ACCESS_TTL_SECS,
        })
    }

    /// Checks a refresh token and marks it used. Returns the user id and family to issue the
    /// next pair in. A token used before revokes its family.
    pub async fn redeem(&self, refresh_token: &str) -> Result<(Uuid, Uuid), SessionError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims =
            self.jwt.verify(refresh_token, now).map_err(|_| SessionError::Invalid("bad signature or expired"))?;
        if claims.token_type != "refresh" {
            return Err(SessionError::Invalid("not a refresh token"));
        }
        let jti = claims.jti.clone().ok_or(SessionError::Invalid("no token id"))?;
        let entry = self.buckets.refresh_tokens.entry(jti.as_str()).await.map_err(unavailable)?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Err(SessionError::Invalid("unknown token"));
        };
        let mut record: RefreshRecord =
            serde_json::from_slice(&entry.value).map_err(|_| SessionError::Invalid("unreadable token record"))?;
        if self.is_revoked(&claims) {
            return Err(SessionError::Invalid("session was revoked"));
        }
        if record.used {
            self.revoke_family(record.family).await?;
            return Err(SessionError::Reused { user_id: record.user_id, family: record.family });
        }
        record.used = true;
        let value = Bytes::from(serde_json::to_vec(&record).map_err(unavailable)?);
        // Compare-and-set: of two concurrent uses of one token, exactly one wins.
        if self.buckets.refresh_tokens.update(jti.as_str(), value, entry.revision).await.is_err() {
            self.revoke_family(record.family).await?;
            return Err(SessionError::Reused { user_id: record.user_id, family: record.family });
        }
        Ok((record.user_id, record.family))
    }

    async fn revoke(&self, key: String) -> Result<(), SessionError> {
        let at = put_revocation(&self.buckets, &key).await?;
        self.revoked.write().unwrap_or_else(|p| p.into_inner()).insert(key, at);
        Ok(())
    }

    pub async fn revoke_family(&self, family: Uuid) -> Result<(), SessionError> {
        self.revoke(format!("family.{family}")).await
    }

    /// Every token of the user issued up to now stops working (deactivation, role change).
    pub async fn revoke_user(&self, user_id: Uuid) -> Result<(), SessionError> {
        self.revoke(format!("user.{user_id}")).await
    }

    pub fn is_revoked(&self, claims: &Claims) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        let family = claims.fam.as_ref().is_some_and(|f| revoked.contains_key(&format!("family.{f}")));
        let user = revoked.get(&format!("user.{}", claims.user_id)).is_some_and(|at| claims.iat <= *at);
        family || user
    }

    /// Mirrors the revocation bucket into memory until shutdown (every replica runs one).
    pub async fn watch_revocations(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let mut updates = match self.buckets.revocations.watch_with_history(">").await {
                Ok(updates) => updates,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot watch revocations; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            loop {
                let entry = tokio::select! {
                    entry = updates.next() => entry,
                    _ = shutdown.changed() => return,
                };
                let Some(Ok(entry)) = entry else { break };
                let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
                match entry.operation {
                    kv::Operation::Put => {
                        let at =
                            std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse().ok()).unwrap_or(i64::MAX);
                        revoked.insert(entry.key, at);
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        revoked.remove(&entry.key);
                    }
                }
            }
        }
    }

    /// When the name is locked out, until when.
    pub async fn locked_until(&self, username: &str) -> Result<Option<OffsetDateTime>, SessionError> {
        let Some(key) = lockout_key(username) else { return Ok(None) };
        let entry = self.buckets.lockouts.entry(key).await.map_err(unavailable)?;
        let record: LockoutRecord = entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| serde_json::from_slice(&e.value).ok())
            .unwrap_or_default();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        Ok(record.locked_until.filter(|until| *until > now).and_then(|u| OffsetDateTime::from_unix_timestamp(u).ok()))
    }

    /// Counts a failed sign-in; returns the lock expiry when this failure locked the name.
    pub async fn record_failure(
        &self,
        username: &str,
        threshold: u32,
        lock_for: Duration,
    ) -> Result<Option<OffsetDateTime>, SessionError> {
        let Some(key) = lockout_key(username) else { return Ok(None) };
        let now = OffsetDateTime::now_utc();
        for _ in 0..10 {
            let entry = self.buckets.lockouts.entry(key.as_str()).await.map_err(unavailable)?;
            let live = entry.filter(|e| e.operation == kv::Operation::Put);
            let mut record: LockoutRecord =
                live.as_ref().and_then(|e| serde_json::from_slice(&e.value).ok()).unwrap_or_default();
            if record.locked_until.is_some_and(|until| until <= now.unix_timestamp()) {
                record = LockoutRecord::default();
            }
            record.failures += 1;
            let newly_locked = record.failures >= threshold && record.locked_until.is_none();
            if newly_locked {
                record.locked_until = Some((now + lock_for).unix_timestamp());
            }
            let value = Bytes::from(serde_json::to_vec(&record).map_err(unavailable)?);
            let written = match &live {
                Some(e) => self.buckets.lockouts.update(key.as_str(), value, e.revision).await.is_ok(),
                None => self.buckets.lockouts.create(key.as_str(), value).await.is_ok(),
            };
            if written {
                return Ok(newly_locked.then_some(now + lock_for));
            }
        }
        Err(SessionError::Unavailable("lockout counter kept changing under us".into()))
    }

    pub async fn clear_failures(&self, username: &str) -> Result<(), SessionError> {
        if let Some(key) = lockout_key(username) {
            self.buckets.lockouts.delete(key).await.map_err(unavailable)?;
        }
        Ok(())
    }
}

async fn put_revocation(buckets: &Buckets, key: &str) -> Result<i64, SessionError> {
    let at = OffsetDateTime::now_utc().unix_timestamp();
    buckets.revocations.put(key, Bytes::from(at.to_string())).await.map_err(unavailable)?;
    Ok(at)
}

/// Ends every session of a user from outside a gateway (`sovd user deactivate`); gateways
/// learn it through their revocation watch.
pub async fn revoke_user_sessions(buckets: &Buckets, user_id: Uuid) -> Result<(), SessionError> {
    put_revocation(buckets, &format!("user.{user_id}")).await.map(|_| ())
}

/// KV keys take `[-/_=.a-zA-Z0-9]`; other names are hex-encoded so any typed name counts.
fn lockout_key(username: &str) -> Option<String> {
    if username.is_empty() || username.len() > 64 {
        return None;
    }
    Some(username.bytes().map(|b| format!("{b:02x}")).collect())
}
