//! `sovd backup`: a JetStream snapshot of every protected stream, streamed into object
//! storage with its checksum, then the manifest, signed (last: a backup without one does not
//! exist), then old backups and the archive segments no kept backup needs are pruned.

use std::collections::BTreeSet;

use anyhow::Context;
use sovd_nats::raw::{self, protected_streams};
use sovd_nats::snapshot;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use super::checksum::HashingWriter;
use super::layout::{self, Manifest, StreamBackup};
use super::segment::SegmentName;
use super::signing::Keys;
use super::storage::Storage;
use crate::progress::Progress;

/// Snapshots every protected stream into `storage`; returns the manifest written, signed
/// with `keys`.
pub async fn backup(client: &async_nats::Client, storage: &Storage, keys: &Keys) -> anyhow::Result<Manifest> {
    let js = async_nats::jetstream::new(client.clone());
    let started_at = OffsetDateTime::now_utc();
    let backup_id = layout::new_backup_id(started_at);
    let mut streams = Vec::new();
    for name in protected_streams() {
        if raw::extent(&js, &name).await?.is_none() {
            tracing::info!(stream = %name, "no such stream; nothing to back up");
            continue;
        }
        let key = layout::snapshot_key(&backup_id, &name);
        let progress = Progress::new(name.clone(), 0, "bytes");
        let upload = storage.upload(&key)?;
        let mut out = HashingWriter::new(upload);
        let taken = snapshot::snapshot(client, &name, &mut out, |bytes| progress.set(bytes, bytes))
            .await
            .with_context(|| format!("snapshot of {} failed", name))?;
        let at_end = raw::extent(&js, &name).await?.unwrap_or_default();
        let (mut upload, sha256, bytes) = out.finish();
        upload.shutdown().await.with_context(|| format!("cannot write object {key} to {}", storage.location()))?;
        storage.finish_upload(&key)?;
        let state = &taken.state;
        let number = |field: &str| state[field].as_u64().unwrap_or_default();
        progress.finish(&format!("{}: {} messages, {bytes} bytes", name, number("messages")));
        streams.push(StreamBackup {
            stream: name.clone(),
            object: key,
            bytes,
            sha256,
            messages: number("messages"),
            first_sequence: number("first_seq"),
            last_sequence: number("last_seq"),
            last_sequence_at_end: at_end.last_sequence,
            last_time_at_end: at_end.last_time,
            config: taken.config,
            state: taken.state,
        });
    }
    let mut manifest = Manifest {
        format: layout::MANIFEST_FORMAT,
        backup_id: backup_id.clone(),
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        sovd_version: env!("CARGO_PKG_VERSION").to_owned(),
        streams,
        signature: None,
    };
    manifest.sign(keys)?;
    let bytes = serde_json::to_vec_pretty(&manifest)?;
    // The signature covers the manifest as a restore will parse it: a backup that could not
    // be verified later is not stored as one.
    let read_back: Manifest = serde_json::from_slice(&bytes)?;
    read_back.check_signature(keys).context("the manifest does not verify once read back; the backup is not kept")?;
    storage.put(&layout::manifest_key(&backup_id), bytes.into()).await?;
    Ok(manifest)
}

/// Every complete backup (one with a manifest), oldest first.
pub async fn list_backups(storage: &Storage) -> anyhow::Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    for (key, _) in storage.list(layout::backups_prefix()).await? {
        if key.ends_with("/manifest.json") {
            let bytes = storage.get(&key).await?;
            let manifest: Manifest =
                serde_json::from_slice(&bytes).with_context(|| format!("object {key} is not a sovd manifest"))?;
            anyhow::ensure!(
                layout::backup_of(&key) == Some(manifest.backup_id.as_str()),
                "object {key} is not a sovd manifest: it says it is backup {:?}",
                manifest.backup_id
            );
            manifests.push(manifest);
        }
    }
    manifests.sort_by(|a, b| (a.started_at, &a.backup_id).cmp(&(b.started_at, &b.backup_id)));
    Ok(manifests)
}

/// What a prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub backups: Vec<String>,
    pub objects: usize,
    pub segments: usize,
}

/// Keeps the newest `keep` backups signed with `keys`; deletes older ones (signed or not),
/// unfinished ones older than the newest kept, and archive segments that end at or before
/// what the oldest kept backup holds (a restore starts from a backup, so it never needs
/// them). Backups that do not verify count for nothing: planted ones cannot push the real
/// ones out, and newer ones are left for a person to look at.
pub async fn prune(storage: &Storage, keys: &Keys, keep: usize) -> anyhow::Result<Pruned> {
    let manifests = list_backups(storage).await?;
    let complete: BTreeSet<&str> = manifests.iter().map(|m| m.backup_id.as_str()).collect();
    let verified = manifests.iter().filter(|m| match m.check_names().and_then(|()| Ok(m.check_signature(keys)?)) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(backup = %m.backup_id, error = format!("{error:#}"), "a backup that does not verify is not counted");
            false
        }
    });
    let kept: Vec<&Manifest> = verified.rev().take(keep.max(1)).collect();
    let (Some(oldest_kept), Some(newest)) = (kept.last(), kept.first()) else {
        return Ok(Pruned::default());
    };
    let mut pruned = Pruned::default();
    for (key, _) in storage.list(layout::backups_prefix()).await? {
        let Some(id) = layout::backup_of(&key) else { continue };
        let old = id < oldest_kept.backup_id.as_str();
        let unfinished = !complete.contains(id) && id < newest.backup_id.as_str();
        if old || unfinished {
            storage.delete(&key).await?;
            pruned.objects += 1;
            if pruned.backups.last().map(String::as_str) != Some(id) {
                pruned.backups.push(id.to_owned());
            }
        }
    }
    for stream in &oldest_kept.streams {
        let segments: Vec<SegmentName> = storage
            .list(&layout::archive_prefix(&stream.stream))
            .await?
            .iter()
            .filter_map(|(key, _)| SegmentName::parse(&stream.stream, key))
            .collect();
        // The newest segment stays whatever it holds: the archive's checkpoint points at it.
        let newest = segments.iter().map(|s| s.last).max();
        for segment in segments.iter().filter(|s| s.last <= stream.last_sequence && Some(s.last) != newest) {
            storage.delete(&segment.key).await?;
            pruned.segments += 1;
        }
    }
    Ok(pruned)
}
