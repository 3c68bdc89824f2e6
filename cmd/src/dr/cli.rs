//! The command lines: `sovd backup`, `sovd archive`, `sovd restore`. Each records what it did
//! on SOVD_OPS, so backups, archive failures and restores show in the audit trail. Each
//! needs the backup key (`SOVD_BACKUP_KEY`): backups and the archive are signed with it, and
//! a restore accepts nothing it did not sign.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sovd_domain::Event;
use sovd_domain::events::{BackupCompleted, BackupFailed, RestoreCompleted};
use sovd_nats::{EventStore, OpsKind};
use sovd_projections::apply::Projection;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;

use super::archive::{self, ArchiveSettings};
use super::backup;
use super::reconcile::reconcile;
use super::restore::{self, RestoreOptions, Until};
use super::signing::{BackupKey, Keys};
use super::storage::{Storage, StorageArgs};
use crate::config::{CommonArgs, NatsArgs, Redacted};
use crate::progress::{Progress, operator};
use crate::run;

/// The backup key. Taken as text of any length and checked after parsing: clap would echo a
/// value it refuses.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Secret that signs backups and archive segments, and that a restore checks them against
    /// (HMAC-SHA256; at least 32 bytes, e.g. from `openssl rand -base64 48`). Keep it outside
    /// the bucket, and prefer the environment variable to the flag (flags show in `ps`).
    #[arg(long, env = "SOVD_BACKUP_KEY", hide_env_values = true)]
    pub backup_key: Option<Redacted>,
    /// The key before a rotation: still accepted when checking, never used to sign.
    #[arg(long, env = "SOVD_BACKUP_KEY_PREVIOUS", hide_env_values = true)]
    pub backup_key_previous: Option<Redacted>,
}

impl KeyArgs {
    fn parse(text: &Redacted, name: &str) -> anyhow::Result<BackupKey> {
        BackupKey::parse(&text.0).map_err(|e| anyhow::anyhow!("{name}: {e}"))
    }

    pub fn keys(&self) -> anyhow::Result<Keys> {
        let key = self.backup_key.as_ref().context(
            "no backup key: set SOVD_BACKUP_KEY (at least 32 bytes, kept outside the bucket; see \
             docs/runbooks/disaster_recovery.md)",
        )?;
        let key = Self::parse(key, "SOVD_BACKUP_KEY")?;
        let previous =
            self.backup_key_previous.as_ref().map(|p| Self::parse(p, "SOVD_BACKUP_KEY_PREVIOUS")).transpose()?;
        Ok(Keys::new(key).with_previous(previous))
    }

    /// The keys, or for a process given none (`sovd dev`) a random key of its own, said
    /// loudly: what it archives then cannot be verified by any later restore.
    pub fn keys_or_random(&self) -> anyhow::Result<Keys> {
        if self.backup_key.is_some() {
            return self.keys();
        }
        let keys = Keys::new(BackupKey::random()?);
        tracing::warn!(
            key_id = keys.key_id(),
            "SOVD_BACKUP_KEY is not set: the archive signs with a random key of this process, so no later restore \
             can verify what it archives; set SOVD_BACKUP_KEY to keep it restorable"
        );
        Ok(keys)
    }
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Backups to keep; older ones, and archive segments no kept backup needs, are deleted.
    #[arg(long, env = "SOVD_BACKUP_KEEP", default_value_t = 7)]
    pub keep: usize,
    /// List the backups in storage, and whether each is signed with the key, instead of
    /// taking one (works without a key too).
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ArchiveOptions {
    /// Longest time an event waits before it is shipped to the archive (the RPO), in seconds.
    #[arg(long, env = "SOVD_ARCHIVE_INTERVAL_SECS", default_value_t = 5)]
    pub archive_interval_secs: u64,
    #[command(flatten)]
    pub keys: KeyArgs,
}

impl ArchiveOptions {
    pub fn settings(&self, replicas: usize) -> ArchiveSettings {
        ArchiveSettings {
            interval: Duration::from_secs(self.archive_interval_secs.max(1)),
            replicas,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub archive: ArchiveOptions,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Also restore backups and archive segments that carry no signature (made before sovd
    /// signed them), each with a warning. Insecure: anyone who could write to the bucket could
    /// have made them. Signed objects must still verify, and names must still be sovd's.
    #[arg(long)]
    pub insecure_accept_unsigned: bool,
    /// Restore this backup (`sovd backup --list`); default: the newest that fits --until.
    #[arg(long)]
    pub backup: Option<String>,
    /// Stop at this point: an RFC 3339 time (every stream), or STREAM:SEQUENCE[,…]
    /// (`commands:1200`; streams not named are restored in full).
    #[arg(long)]
    pub until: Option<Until>,
    /// Delete streams that exist and hold messages instead of refusing to start.
    #[arg(long)]
    pub replace: bool,
    /// Check every restored stream's message count and last sequence against the manifest
    /// and the archive (checksums are always checked).
    #[arg(long)]
    pub verify: bool,
    /// Leave the read models alone (rebuild them later with `sovd projections rebuild`).
    #[arg(long)]
    pub skip_projections: bool,
    /// Where the restore makes its work folder for fetched objects (default: the system's
    /// temporary folder): a new, private one each run, removed afterwards; nothing else there
    /// is touched.
    #[arg(long, env = "SOVD_RESTORE_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
}

async fn record(store: &EventStore, kind: OpsKind, event: Event) -> anyhow::Result<()> {
    store.record_operation(kind, &event, &operator()).await?;
    Ok(())
}

pub async fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let storage = Storage::open(&args.storage)?;
    if args.list {
        let keys = args.keys.backup_key.is_some().then(|| args.keys.keys()).transpose()?;
        for manifest in backup::list_backups(&storage).await? {
            let trust = match (&manifest.signature, &keys) {
                (None, _) => "UNSIGNED".to_owned(),
                (Some(signature), None) => format!("signed by key {}", signature.key_id),
                (Some(_), Some(keys)) => match manifest.check_signature(keys) {
                    Ok(()) => "signed with this key".to_owned(),
                    Err(_) => "NOT SIGNED WITH THIS KEY".to_owned(),
                },
            };
            println!(
                "{}  {} messages  {} bytes  {} streams  {trust}",
                manifest.backup_id,
                manifest.messages(),
                manifest.bytes(),
                manifest.streams.len()
            );
        }
        return Ok(());
    }
    let keys = args.keys.keys()?;
    let (_stop, shutdown) = run::shutdown_signal();
    let Some((client, store)) = run::connect_nats(&args.nats, "sovd-backup", &shutdown).await? else {
        return Ok(());
    };
    match backup::backup(&client, &storage, &keys).await {
        Ok(manifest) => {
            let pruned = backup::prune(&storage, &keys, args.keep).await?;
            println!(
                "backup {} to {}: {} streams, {} messages, {} bytes in {:.1} s; pruned {} old backups and {} archive \
                 segments",
                manifest.backup_id,
                storage.location(),
                manifest.streams.len(),
                manifest.messages(),
                manifest.bytes(),
                (manifest.finished_at - manifest.started_at).as_seconds_f64(),
                pruned.backups.len(),
                pruned.segments
            );
            let event = Event::BackupCompleted(BackupCompleted {
                backup_id: manifest.backup_id.clone(),
                location: storage.location().to_owned(),
                streams: manifest.streams.len() as u32,
                messages: manifest.messages(),
                bytes: manifest.bytes(),
                started_at: manifest.started_at,
                finished_at: manifest.finished_at,
            });
            record(&store, OpsKind::Backup, event).await.context("the backup is stored, but recording it failed")
        }
        Err(error) => {
            let event = Event::BackupFailed(BackupFailed {
                location: storage.location().to_owned(),
                error: format!("{error:#}"),
                at: OffsetDateTime::now_utc(),
            });
            if let Err(e) = record(&store, OpsKind::BackupFailure, event).await {
                tracing::warn!(error = %e, "could not record the failed backup on SOVD_OPS");
            }
            Err(error.context(format!("backup to {} failed; nothing was kept", storage.location())))
        }
    }
}

pub async fn run_archive(args: ArchiveArgs) -> anyhow::Result<()> {
    let storage = Storage::open(&args.storage)?;
    let keys = args.archive.keys.keys()?;
    let (_stop, shutdown) = run::shutdown_signal();
    let Some((_, store)) = run::connect_nats(&args.nats, "sovd-archive", &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(location = storage.location(), interval_secs = args.archive.archive_interval_secs, "archiving");
    archive::run(store, storage, keys, args.archive.settings(args.nats.stream_replicas), shutdown).await
}

pub async fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let started_at = OffsetDateTime::now_utc();
    let storage = Storage::open(&args.storage)?;
    let mut keys = args.keys.keys()?;
    if args.insecure_accept_unsigned {
        tracing::warn!(
            "--insecure-accept-unsigned: backups and segments without a signature are restored; anyone who could \
             write to the bucket could have made them"
        );
        keys = keys.accepting_unsigned();
    }
    let nats_url = &args.common.nats.nats_url;
    let client = async_nats::ConnectOptions::new()
        .name("sovd-restore")
        .connect(nats_url)
        .await
        .with_context(|| format!("cannot reach NATS at {}", crate::config::redact_url(nats_url)))?;
    let options = RestoreOptions {
        backup_id: args.backup.clone(),
        until: args.until.clone(),
        replace: args.replace,
        verify: args.verify,
        replicas: args.common.nats.stream_replicas,
        work_dir: args.work_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    let restored = restore::restore(&client, &storage, &keys, &options).await?;
    for stream in &restored.streams {
        println!(
            "{:<28} {:>10} from the snapshot  {:>10} from {:>5} archive segments  last sequence {}",
            stream.stream, stream.from_snapshot, stream.from_archive, stream.segments, stream.last_sequence
        );
    }
    if !restored.retired.backups.is_empty() || restored.retired.segments > 0 {
        println!(
            "moved aside (under superseded/ in {}), as they hold events past the restored point: backups {:?}, \
             {} archive segments",
            storage.location(),
            restored.retired.backups,
            restored.retired.segments
        );
    }
    let store = EventStore::new(client);
    // Current stream definitions (a backup from an older version may lack a setting).
    store.ensure_streams(args.common.nats.stream_replicas).await?;
    let reconciled = reconcile(&store, args.common.nats.stream_replicas).await?;
    println!(
        "key-value buckets: {} usernames checked, sessions of {} deactivated users revoked, refresh tokens withdrawn \
         (everyone signs in again)",
        reconciled.usernames, reconciled.deactivated
    );
    let digests = if args.skip_projections { Vec::new() } else { rebuild_projections(&args.common, &store).await? };
    let event = Event::RestoreCompleted(RestoreCompleted {
        backup_id: restored.backup.backup_id.clone(),
        location: storage.location().to_owned(),
        until: args.until.as_ref().map(Until::to_string),
        streams: restored.streams.len() as u32,
        messages: restored.messages(),
        segments: restored.segments(),
        digests,
        started_at,
        finished_at: OffsetDateTime::now_utc(),
    });
    record(&store, OpsKind::Restore, event).await.context("the restore is done, but recording it failed")?;
    println!(
        "restored backup {} and {} archive segments from {}: {} messages in {:.1} s",
        restored.backup.backup_id,
        restored.segments(),
        storage.location(),
        restored.messages(),
        (OffsetDateTime::now_utc() - started_at).as_seconds_f64()
    );
    Ok(())
}

/// Every read model built again from the restored log, side by side (each in its own shadow
/// schema, ADR 006); returns `name=digest` for each, in `Projection::ALL` order.
async fn rebuild_projections(common: &CommonArgs, store: &EventStore) -> anyhow::Result<Vec<String>> {
    let pool = PgPoolOptions::new().max_connections(8).connect(&common.database_url).await.context(
        "cannot reach the read-model database (SOVD_DATABASE_URL); pass --skip-projections to restore the streams only",
    )?;
    sovd_projections::migrate(&pool).await?;
    let progress = Progress::new("rebuild", 0, "sequences");
    let each = Mutex::new(vec![(0u64, 0u64); Projection::ALL.len()]);
    let rebuilds = Projection::ALL.into_iter().enumerate().map(|(index, projection)| {
        let (pool, progress, each) = (&pool, &progress, &each);
        async move {
            let report = |p: sovd_projections::rebuild::RebuildProgress| {
                if let Ok(mut each) = each.lock() {
                    each[index] = (p.done, p.total);
                    let (done, total) = each.iter().fold((0, 0), |(d, t), (pd, pt)| (d + pd, t + pt));
                    progress.set(done, total);
                }
            };
            sovd_projections::rebuild::rebuild(pool, store, projection, &report)
                .await
                .with_context(|| format!("rebuilding {} failed", projection.name()))
        }
    });
    let rebuilt = futures::future::try_join_all(rebuilds).await?;
    progress.finish("every read model rebuilt");
    let mut digests = Vec::new();
    for done in rebuilt {
        let name = done.projection.name();
        println!(
            "{name:<10} {:>9} rows from {:>9} events in {:>6.1} s  digest {}",
            done.rows, done.events, done.seconds, done.digest
        );
        digests.push(format!("{name}={}", done.digest));
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_process_given_no_key_signs_with_a_random_one_of_its_own() {
        let none = KeyArgs { backup_key: None, backup_key_previous: None };
        assert!(none.keys().is_err(), "backup, archive and restore need one");
        let (first, second) = (none.keys_or_random().unwrap(), none.keys_or_random().unwrap());
        assert_ne!(first.key_id(), second.key_id());
        let given = KeyArgs { backup_key: Some(Redacted("k".repeat(32))), backup_key_previous: None };
        assert_eq!(given.keys_or_random().unwrap().key_id(), given.keys().unwrap().key_id());
    }
}
