//! `sovd restore`: a backup's snapshots, then the archive's segments after them (up to
//! `--until`), into a NATS that does not have the streams. Two phases, so a missing,
//! damaged or unsigned object stops it before anything is touched: first the manifest's
//! names and signature are checked and every object needed is fetched (into a work folder
//! of this run's own) and checked against its checksum and signature, then the streams are
//! written.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use async_nats::jetstream;
use futures::TryStreamExt;
use sovd_nats::raw::{self, WriteBack};
use sovd_nats::snapshot;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use super::archive::{archived_position, checkpoint};
use super::backup::list_backups;
use super::checksum::HashingWriter;
use super::layout::{self, Manifest, StreamBackup};
use super::names::event_stream;
use super::private_fs::{WorkDir, create_private_file};
use super::segment::{Segment, SegmentName};
use super::signing::Keys;
use super::storage::Storage;
use super::timeline::{Retired, retire_future};
pub use super::until::Until;
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// A backup id; the newest one that fits `until` when unset.
    pub backup_id: Option<String>,
    pub until: Option<Until>,
    /// Delete streams that exist and hold messages (they are refused otherwise).
    pub replace: bool,
    /// Check each restored stream's counts and sequences against the manifest and archive.
    pub verify: bool,
    /// Where the restore makes its work folder for fetched objects: a new, private one each
    /// run, removed afterwards; nothing else there is touched.
    pub work_dir: PathBuf,
    /// Replicas of every restored stream (a backup of a 3-node cluster restores into one
    /// node with 1).
    pub replicas: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredStream {
    pub stream: String,
    pub from_snapshot: u64,
    pub from_archive: u64,
    pub segments: u64,
    pub messages: u64,
    pub last_sequence: u64,
}

#[derive(Debug, Clone)]
pub struct Restored {
    pub backup: Manifest,
    pub streams: Vec<RestoredStream>,
    /// Backups and segments past the restored point, moved aside.
    pub retired: Retired,
}

impl Restored {
    pub fn messages(&self) -> u64 {
        self.streams.iter().map(|s| s.messages).sum()
    }

    pub fn segments(&self) -> u64 {
        self.streams.iter().map(|s| s.segments).sum()
    }
}

/// What phase one fetched for a stream.
struct Fetched {
    stream: String,
    snapshot: PathBuf,
    segments: Vec<(SegmentName, PathBuf)>,
}

/// The newest backup that `until` allows (or the one asked for).
pub fn choose_backup(manifests: Vec<Manifest>, options: &RestoreOptions, location: &str) -> anyhow::Result<Manifest> {
    if manifests.is_empty() {
        bail!("no backup in {location}: run `sovd backup` first (a backup without manifest.json is incomplete)");
    }
    if let Some(id) = &options.backup_id {
        return manifests
            .into_iter()
            .find(|m| &m.backup_id == id)
            .with_context(|| format!("no backup {id} in {location} (`sovd backup --list` shows them)"));
    }
    let fits = |manifest: &Manifest| match &options.until {
        None => true,
        // By what each snapshot may hold at most, so none brings events past the point.
        Some(until) => manifest.streams.iter().filter(|s| event_stream(&s.stream).is_some()).all(|s| {
            s.last_sequence_at_end == 0
                || until.allows(
                    &s.stream,
                    s.last_sequence_at_end,
                    s.last_time_at_end.unwrap_or(OffsetDateTime::UNIX_EPOCH),
                )
        }),
    };
    let oldest = manifests.first().map(|m| m.backup_id.clone()).unwrap_or_default();
    manifests.into_iter().rev().find(fits).with_context(|| {
        format!("every backup in {location} holds events after the --until point; the oldest is {oldest}")
    })
}

async fn download(storage: &Storage, key: &str, to: &Path) -> anyhow::Result<(String, u64)> {
    let file = create_private_file(to).await.with_context(|| format!("cannot write {}", to.display()))?;
    let mut out = HashingWriter::new(tokio::io::BufWriter::new(file));
    let mut body = storage
        .object_store()
        .get(&storage.path(key))
        .await
        .with_context(|| format!("object {key} is missing from {}", storage.location()))?
        .into_stream();
    while let Some(chunk) = body.try_next().await.with_context(|| format!("cannot read object {key}"))? {
        out.write_all(&chunk).await?;
    }
    let (mut file, sha256, bytes) = out.finish();
    file.flush().await?;
    Ok((sha256, bytes))
}

/// Phase one: every object the restore needs, fetched into `work` and checked (checksums
/// and signatures). Touches nothing.
async fn fetch(
    storage: &Storage,
    keys: &Keys,
    manifest: &Manifest,
    options: &RestoreOptions,
    work: &Path,
) -> anyhow::Result<Vec<Fetched>> {
    let mut plan = Vec::new();
    let mut total = manifest.bytes();
    for stream in &manifest.streams {
        let mut segments = Vec::new();
        if event_stream(&stream.stream).is_some() {
            segments =
                archive_after(storage, keys, &stream.stream, stream.last_sequence, options.until.as_ref()).await?;
            total += segments.iter().map(|(_, bytes)| bytes).sum::<u64>();
        }
        plan.push((stream, segments));
    }
    let progress = Progress::new("fetch", total, "bytes");
    let mut done = 0;
    let mut fetched = Vec::new();
    // Local files are named by position: nothing read from storage becomes a path.
    for (number, (stream, segments)) in plan.into_iter().enumerate() {
        let snapshot = work.join(format!("{number:02}.snap"));
        let (sha256, bytes) = download(storage, &stream.object, &snapshot).await?;
        if sha256 != stream.sha256 || bytes != stream.bytes {
            bail!(
                "object {} is damaged: {bytes} bytes with sha256 {sha256}, the manifest says {} bytes with sha256 {}",
                stream.object,
                stream.bytes,
                stream.sha256
            );
        }
        done += bytes;
        progress.set(done, total);
        let mut files = Vec::new();
        for (index, (name, size)) in segments.into_iter().enumerate() {
            let path = work.join(format!("{number:02}-{index:08}.seg"));
            download(storage, &name.key, &path).await?;
            Segment::check(&name, &tokio::fs::read(&path).await?, keys)?;
            done += size;
            progress.set(done, total);
            files.push((name, path));
        }
        fetched.push(Fetched { stream: stream.stream.clone(), snapshot, segments: files });
    }
    progress.finish(&format!("fetched and checked {done} bytes"));
    Ok(fetched)
}

/// The chain of segments that continues `stream` after `after`, up to `until`. A hole in
/// the chain, a chain that ends before the archive's checkpoint, or an object there that is
/// not a segment of the stream, is an error that names it.
async fn archive_after(
    storage: &Storage,
    keys: &Keys,
    stream: &str,
    after: u64,
    until: Option<&Until>,
) -> anyhow::Result<Vec<(SegmentName, u64)>> {
    let mut chain = Vec::new();
    let mut next = after + 1;
    let stop = match until {
        Some(Until::Sequences(map)) => map.get(stream).copied(),
        _ => None,
    };
    let checkpoint_key = layout::checkpoint_key(stream);
    for (key, meta) in storage.list(&layout::archive_prefix(stream)).await? {
        if key == checkpoint_key {
            continue;
        }
        let Some(segment) = SegmentName::parse(stream, &key) else {
            bail!(
                "the archive of {stream} holds {key:?}, which is not a segment sovd writes: remove it, or move it out \
                 of archive/, and run the restore again (nothing was touched)"
            );
        };
        if segment.last < next || stop.is_some_and(|stop| next > stop) {
            continue;
        }
        if segment.first > next {
            bail!(
                "the archive of {stream} is missing sequences {next}..{}: no object holds them (the next is {key})",
                segment.first - 1
            );
        }
        next = segment.last + 1;
        chain.push((segment, meta.size));
    }
    let claimed = checkpoint(storage, keys, stream).await?.map_or(0, |c| c.last_sequence);
    let archived = archived_position(storage, keys, stream).await?.0.max(claimed);
    if archived >= next && stop.is_none_or(|stop| stop >= next) {
        bail!(
            "the archive of {stream} reaches sequence {archived} by its checkpoint, but no object holds {next}..{archived}"
        );
    }
    Ok(chain)
}

/// Refuses (or, with `replace`, deletes) streams that are in the way.
async fn clear_the_way(js: &jetstream::Context, manifest: &Manifest, replace: bool) -> anyhow::Result<()> {
    let mut in_the_way = Vec::new();
    for stream in &manifest.streams {
        if let Some(extent) = raw::extent(js, &stream.stream).await? {
            in_the_way.push((stream.stream.clone(), extent.messages));
        }
    }
    let occupied: Vec<String> =
        in_the_way.iter().filter(|(_, messages)| *messages > 0).map(|(s, n)| format!("{s} ({n} messages)")).collect();
    if !occupied.is_empty() && !replace {
        bail!(
            "these streams exist and hold messages: {}. Restore refuses to touch them; stop every sovd process and \
             pass --replace to delete them first",
            occupied.join(", ")
        );
    }
    for (stream, messages) in in_the_way {
        tracing::warn!(stream, messages, "deleting the existing stream before restoring it");
        js.delete_stream(&stream).await.with_context(|| format!("cannot delete stream {stream}"))?;
    }
    Ok(())
}

/// A restored snapshot against its manifest: it holds at least what the server reported when
/// the snapshot began and nothing stored after it was complete; an event stream has no holes.
fn verify_snapshot(backup: &StreamBackup, messages: u64, last: u64) -> anyhow::Result<()> {
    let stream = &backup.stream;
    let (low, high) = (backup.last_sequence, backup.last_sequence_at_end.max(backup.last_sequence));
    if last < low || last > high {
        bail!("{stream} restored up to sequence {last}, the manifest says between {low} and {high}");
    }
    let events = event_stream(stream).is_some();
    if events && messages.checked_sub(backup.messages) != last.checked_sub(low) {
        bail!(
            "{stream} restored with {messages} messages up to {last}, the manifest says {} up to {low}: messages are \
             missing",
            backup.messages
        );
    }
    Ok(())
}

/// Phase two for one stream: its snapshot, then its segments.
async fn write_stream(
    client: &async_nats::Client,
    js: &jetstream::Context,
    keys: &Keys,
    manifest: &Manifest,
    fetched: &Fetched,
    options: &RestoreOptions,
) -> anyhow::Result<RestoredStream> {
    let backup = manifest.stream(&fetched.stream).context("stream not in the manifest")?;
    let progress = Progress::new(fetched.stream.clone(), backup.bytes, "bytes");
    let mut input = tokio::io::BufReader::new(tokio::fs::File::open(&fetched.snapshot).await?);
    let mut config = backup.config.clone();
    config["num_replicas"] = options.replicas.max(1).into();
    let state = snapshot::restore(client, &fetched.stream, &config, &backup.state, &mut input, |done| {
        progress.set(done, backup.bytes)
    })
    .await
    .with_context(|| format!("restoring {} from object {}", fetched.stream, backup.object))?;
    let restored_last = state["last_seq"].as_u64().unwrap_or_default();
    let restored_messages = state["messages"].as_u64().unwrap_or_default();
    if options.verify {
        verify_snapshot(backup, restored_messages, restored_last)?;
    }
    if let Some(Until::Sequences(map)) = &options.until
        && map.get(&fetched.stream).is_some_and(|until| restored_last > *until)
    {
        bail!(
            "backup {} holds {} up to sequence {restored_last}, past --until; choose an older one with --backup",
            manifest.backup_id,
            fetched.stream
        );
    }
    progress.finish(&format!("{}: {restored_messages} messages from the snapshot", fetched.stream));

    let mut writer = WriteBack::new(js.clone(), &fetched.stream, restored_last);
    let mut copied = 0u64;
    let replay = Progress::new(format!("{} archive", fetched.stream), fetched.segments.len() as u64, "segments");
    'segments: for (index, (name, path)) in fetched.segments.iter().enumerate() {
        let bytes = tokio::fs::read(path).await?;
        let segment = Segment::decode(name, &bytes, keys)?;
        // Segments of two archivers may overlap: what is already written is skipped.
        let written = restored_last + copied;
        for message in segment.messages.iter().filter(|m| m.sequence > written) {
            if let Some(until) = &options.until
                && !until.allows(&fetched.stream, message.sequence, message.published())
            {
                break 'segments;
            }
            writer.push(message).await.with_context(|| format!("replaying archive object {}", name.key))?;
            copied += 1;
        }
        replay.set(index as u64 + 1, fetched.segments.len() as u64);
    }
    let last_sequence = writer.finish().await?;
    replay.finish(&format!("{}: {copied} messages from {} archive segments", fetched.stream, fetched.segments.len()));
    let extent = raw::extent(js, &fetched.stream).await?.unwrap_or_default();
    if options.verify && (extent.messages, extent.last_sequence) != (restored_messages + copied, last_sequence) {
        bail!(
            "{} holds {} messages up to {} after the restore, expected {} up to {last_sequence}",
            fetched.stream,
            extent.messages,
            extent.last_sequence,
            restored_messages + copied
        );
    }
    Ok(RestoredStream {
        stream: fetched.stream.clone(),
        from_snapshot: restored_messages,
        from_archive: copied,
        segments: fetched.segments.len() as u64,
        messages: extent.messages,
        last_sequence: extent.last_sequence,
    })
}

/// Restores every stream of the chosen backup, then the archive after it, once every object
/// has been checked against `keys`.
pub async fn restore(
    client: &async_nats::Client,
    storage: &Storage,
    keys: &Keys,
    options: &RestoreOptions,
) -> anyhow::Result<Restored> {
    let manifest = choose_backup(list_backups(storage).await?, options, storage.location())?;
    // The names first, then the signature: a restore given --insecure-accept-unsigned still
    // never uses a name that is not one of ours.
    manifest.check_names()?;
    manifest.check_signature(keys)?;
    tracing::info!(backup = %manifest.backup_id, location = storage.location(), key_id = keys.key_id(), "restoring");
    let work = WorkDir::create(&options.work_dir)
        .with_context(|| format!("cannot make a work folder in {}", options.work_dir.display()))?;
    let fetched = fetch(storage, keys, &manifest, options, work.path()).await?;
    let js = jetstream::new(client.clone());
    clear_the_way(&js, &manifest, options.replace).await?;
    let mut streams = Vec::new();
    for stream in &fetched {
        streams.push(write_stream(client, &js, keys, &manifest, stream, options).await?);
    }
    drop(work);
    let label = format!("restore-{}", layout::new_backup_id(OffsetDateTime::now_utc()));
    let retired = retire_future(storage, keys, &manifest.backup_id, &streams, &label).await?;
    Ok(Restored { backup: manifest, streams, retired })
}
