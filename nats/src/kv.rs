//! Key-value buckets (JetStream KV) for state that every replica must share at once:
//! refresh tokens, revocations, sign-in lockouts, username reservations, idempotency keys and
//! each vehicle's command watermark.
//! None of it is history; the events that matter are on the streams.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::error::ReadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// `<jti>` -> the refresh token's family, user and whether it was used.
    RefreshTokens,
    /// `family.<id>` or `user.<id>` -> when it was revoked (unix seconds).
    Revocations,
    /// `<username>` -> failed sign-ins and lock expiry.
    Lockouts,
    /// `<username>` -> user id; `create` makes usernames unique across replicas.
    Usernames,
    /// `<user_id>.<key>` -> command id for `Idempotency-Key`.
    Idempotency,
    /// `<vin>` -> the vehicle's low watermark on SOVD_COMMANDS: every command requested for it
    /// at or below that sequence has ended (see docs/adr/005-one-command-per-vehicle.md).
    VehicleLanes,
    /// `<stream>` -> how far `sovd archive` has shipped it (JSON). Read by `/metrics` for the
    /// archive lag; the archive itself is the truth, so this bucket is not backed up.
    Archive,
}

impl Bucket {
    pub const ALL: [Self; 6] = [
        Self::RefreshTokens,
        Self::Revocations,
        Self::Lockouts,
        Self::Usernames,
        Self::Idempotency,
        Self::VehicleLanes,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::RefreshTokens => "sovd_refresh_tokens",
            Self::Revocations => "sovd_revocations",
            Self::Lockouts => "sovd_lockouts",
            Self::Usernames => "sovd_usernames",
            Self::Idempotency => "sovd_idempotency",
            Self::VehicleLanes => "sovd_vehicle_lanes",
            Self::Archive => "sovd_archive",
        }
    }

    fn max_age(&self) -> Duration {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        match self {
            // Longer than the longest-lived token they describe.
            Self::RefreshTokens | Self::Revocations => 8 * DAY,
            Self::Lockouts | Self::Idempotency => DAY,
            // A lost watermark is only slower (the next command scans from the start), but
            // keeping it costs one small entry per vehicle.
            Self::Usernames | Self::VehicleLanes | Self::Archive => Duration::ZERO,
        }
    }

    /// The stream that holds the bucket.
    pub fn stream_name(&self) -> String {
        format!("KV_{}", self.name())
    }

    pub fn config(&self, replicas: usize) -> kv::Config {
        kv::Config {
            bucket: self.name().to_owned(),
            history: 1,
            max_age: self.max_age(),
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        }
    }
}

/// Opens one bucket, creating or updating it first.
pub async fn open_bucket(js: &jetstream::Context, bucket: Bucket, replicas: usize) -> Result<kv::Store, ReadError> {
    js.create_or_update_key_value(bucket.config(replicas))
        .await
        .map_err(|e| ReadError::Unavailable(format!("could not create bucket {}: {e}", bucket.name())))
}

/// Opens every bucket, creating or updating it first.
pub async fn ensure_buckets(js: &jetstream::Context, replicas: usize) -> Result<Vec<(Bucket, kv::Store)>, ReadError> {
    let mut stores = Vec::new();
    for bucket in Bucket::ALL {
        stores.push((bucket, open_bucket(js, bucket, replicas).await?));
    }
    Ok(stores)
}

/// All buckets, opened.
#[derive(Clone)]
pub struct Buckets {
    pub refresh_tokens: kv::Store,
    pub revocations: kv::Store,
    pub lockouts: kv::Store,
    pub usernames: kv::Store,
    pub idempotency: kv::Store,
    pub vehicle_lanes: kv::Store,
}

impl Buckets {
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, ReadError> {
        let mut stores = ensure_buckets(js, replicas).await?;
        let mut take = |wanted: Bucket| {
            let index = stores.iter().position(|(b, _)| *b == wanted);
            index
                .map(|i| stores.swap_remove(i).1)
                .ok_or_else(|| ReadError::Unavailable(format!("bucket {} missing", wanted.name())))
        };
        Ok(Self {
            refresh_tokens: take(Bucket::RefreshTokens)?,
            revocations: take(Bucket::Revocations)?,
            lockouts: take(Bucket::Lockouts)?,
            usernames: take(Bucket::Usernames)?,
            idempotency: take(Bucket::Idempotency)?,
            vehicle_lanes: take(Bucket::VehicleLanes)?,
        })
    }
}
