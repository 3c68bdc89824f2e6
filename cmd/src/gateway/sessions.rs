//! Sessions shared by every gateway replica through NATS KV: refresh tokens that rotate on
//! every use, revocations (logout, deactivation) that every replica learns at once through a
//! KV watch.
//!
//! Rotation is lenient in one way only (docs/adr/008-sign-in-defences.md): a refresh token
//! used again while the token it was exchanged for has never been used answers with that
//! same successor, so a client that never stores the rotated token (the original web UI)
//! and concurrent refreshes of one token keep their session. A token whose successor has
//! been used is a stolen one: the whole sign-in is revoked.

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
    /// The refresh token this one was exchanged for (absent in records written before
    /// lenient rotation: their reuse revokes, as it did then).
    #[serde(default)]
    successor: Option<Successor>,
}

/// Enough of a successor token to sign it again, identically where the account is unchanged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Successor {
    jti: Uuid,
    iat: i64,
}

/// A redeemed refresh token: whose it is, and the refresh token to hand out next.
#[derive(Debug, Clone, Copy)]
pub struct Redeemed {
    pub user_id: Uuid,
    pub family: Uuid,
    successor: Successor,
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
    /// Bumped on every revocation this replica learns of: open WebSockets check themselves.
    changes: watch::Sender<u64>,
}

impl Sessions {
    pub fn new(buckets: Buckets, jwt: JwtKey) -> Arc<Self> {
        Arc::new(Self { buckets, jwt, revoked: RwLock::default(), changes: watch::Sender::new(0) })
    }

    pub fn jwt(&self) -> &JwtKey {
        &self.jwt
    }

    /// Changes whenever a revocation arrives (the value means nothing).
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Access and refresh token for a new sign-in.
    pub async fn issue(&self, who: &Identity) -> Result<TokenPair, SessionError> {
        let refresh = Successor { jti: Uuid::now_v7(), iat: OffsetDateTime::now_utc().unix_timestamp() };
        let family = Uuid::now_v7();
        self.store_unused(who.user_id, family, refresh.jti).await?;
        Ok(self.pair(who, family, refresh))
    }

    /// Access token and the redeemed token's successor (for a rotation, or a repeat of one).
    pub fn reissue(&self, who: &Identity, redeemed: &Redeemed) -> TokenPair {
        self.pair(who, redeemed.family, redeemed.successor)
    }

    fn pair(&self, who: &Identity, family: Uuid, refresh: Successor) -> TokenPair {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = |token_type: &str, iat: i64, ttl: i64, jti: Uuid| Claims {
            user_id: who.user_id.to_string(),
            username: who.username.clone(),
            role: who.role.as_str().to_owned(),
            exp: iat + ttl,
            iat,
            token_type: token_type.to_owned(),
            jti: Some(jti.to_string()),
            fam: Some(family.to_string()),
        };
        TokenPair {
            access_token: self.jwt.sign(&claims("access", now, ACCESS_TTL_SECS, Uuid::now_v7())),
            refresh_token: self.jwt.sign(&claims("refresh", refresh.iat, REFRESH_TTL_SECS, refresh.jti)),
            token_type: "bearer",
            expires_in: ACCESS_TTL_SECS,
        }
    }

    async fn store_unused(&self, user_id: Uuid, family: Uuid, jti: Uuid) -> Result<(), SessionError> {
        let record = RefreshRecord { user_id, family, used: false, successor: None };
        let value = serde_json::to_vec(&record).map_err(unavailable)?;
        self.buckets.refresh_tokens.put(jti.to_string(), Bytes::from(value)).await.map_err(unavailable)?;
        Ok(())
    }

    /// Checks a refresh token and exchanges it for its successor: a new one on first use; the
    /// same one again while that successor is unused; a revoked sign-in once it was used.
    pub async fn redeem(&self, refresh_token: &str) -> Result<Redeemed, SessionError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims =
            self.jwt.verify(refresh_token, now).map_err(|_| SessionError::Invalid("bad signature or expired"))?;
        if claims.token_type != "refresh" {
            return Err(SessionError::Invalid("not a refresh token"));
        }
        let jti = claims.jti.clone().ok_or(SessionError::Invalid("no token id"))?;
        if self.is_revoked(&claims) {
            return Err(SessionError::Invalid("session was revoked"));
        }
        // Two rounds: a lost compare-and-set means a concurrent use won; read what it wrote.
        for _ in 0..2 {
            let (mut record, revision) = self.record(&jti).await?;
            if record.used {
                return self.repeat(&record).await;
            }
            let successor = Successor { jti: Uuid::now_v7(), iat: now };
            self.store_unused(record.user_id, record.family, successor.jti).await?;
            record.used = true;
            record.successor = Some(successor);
            let value = Bytes::from(serde_json::to_vec(&record).map_err(unavailable)?);
            if self.buckets.refresh_tokens.update(jti.as_str(), value, revision).await.is_ok() {
                return Ok(Redeemed { user_id: record.user_id, family: record.family, successor });
            }
            // The successor written above is never handed out; it expires with the bucket.
        }
        Err(SessionError::Unavailable("refresh token record kept changing".into()))
    }

    async fn record(&self, jti: &str) -> Result<(RefreshRecord, u64), SessionError> {
        let entry = self.buckets.refresh_tokens.entry(jti).await.map_err(unavailable)?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Err(SessionError::Invalid("unknown token"));
        };
        let record =
            serde_json::from_slice(&entry.value).map_err(|_| SessionError::Invalid("unreadable token record"))?;
        Ok((record, entry.revision))
    }

    /// A used token presented again: its unused successor once more, or theft.
    async fn repeat(&self, record: &RefreshRecord) -> Result<Redeemed, SessionError> {
        let reused = SessionError::Reused { user_id: record.user_id, family: record.family };
        let Some(successor) = record.successor else {
            self.revoke_family(record.family).await?;
            return Err(reused);
        };
        let successor_unused = match self.record(&successor.jti.to_string()).await {
            Ok((next, _)) => !next.used,
            Err(SessionError::Invalid(_)) => false,
            Err(other) => return Err(other),
        };
        if !successor_unused {
            self.revoke_family(record.family).await?;
            return Err(reused);
        }
        Ok(Redeemed { user_id: record.user_id, family: record.family, successor })
    }

    async fn revoke(&self, key: String) -> Result<(), SessionError> {
        let at = put_revocation(&self.buckets, &key).await?;
        self.revoked.write().unwrap_or_else(|p| p.into_inner()).insert(key, at);
        self.changes.send_modify(|n| *n += 1);
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
                {
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
                self.changes.send_modify(|n| *n += 1);
            }
        }
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
