//! After a point-in-time restore the streams go on from an earlier point than the archive
//! and the newer backups reach. What those hold after the point belongs to a history that no
//! longer is: it is moved aside under `superseded/<label>/` (kept, never deleted), so the
//! archive continues the restored history without a clash and a later restore cannot pick
//! the abandoned one up.

use super::backup::list_backups;
use super::layout::{self, Checkpoint};
use super::names::event_stream;
use super::restore::RestoredStream;
use super::segment::{Segment, SegmentName};
use super::signing::Keys;
use super::storage::Storage;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retired {
    pub backups: Vec<String>,
    pub segments: usize,
}

fn aside(label: &str, key: &str) -> String {
    format!("superseded/{label}/{key}")
}

/// Moves aside every backup newer than `used` that holds events past a restored stream's
/// end, and every archive segment past it (a segment that straddles the end is replaced by
/// its part up to the end, signed with `keys`).
pub async fn retire_future(
    storage: &Storage,
    keys: &Keys,
    used: &str,
    restored: &[RestoredStream],
    label: &str,
) -> anyhow::Result<Retired> {
    let mut retired = Retired::default();
    let end_of = |stream: &str| restored.iter().find(|r| r.stream == stream).map(|r| r.last_sequence);
    for manifest in list_backups(storage).await? {
        let past_the_end = manifest.streams.iter().any(|s| {
            event_stream(&s.stream).is_some() && end_of(&s.stream).is_some_and(|end| s.last_sequence_at_end > end)
        });
        if manifest.backup_id.as_str() <= used || !past_the_end {
            continue;
        }
        // The manifest first: a backup without one no longer counts, whatever else remains.
        let manifest_key = layout::manifest_key(&manifest.backup_id);
        storage.rename(&manifest_key, &aside(label, &manifest_key)).await?;
        for (key, _) in storage.list(&format!("backups/{}/", manifest.backup_id)).await? {
            storage.rename(&key, &aside(label, &key)).await?;
        }
        retired.backups.push(manifest.backup_id);
    }
    for stream in restored.iter().filter(|s| event_stream(&s.stream).is_some()) {
        retired.segments += retire_segments(storage, keys, &stream.stream, stream.last_sequence, label).await?;
    }
    Ok(retired)
}

async fn retire_segments(storage: &Storage, keys: &Keys, stream: &str, end: u64, label: &str) -> anyhow::Result<usize> {
    let mut moved = 0;
    let mut last_kept: Option<String> = None;
    for (key, _) in storage.list(&layout::archive_prefix(stream)).await? {
        let Some(name) = SegmentName::parse(stream, &key) else { continue };
        if name.last <= end {
            last_kept = Some(key);
            continue;
        }
        if name.first <= end {
            let mut segment = Segment::decode(&name, &storage.get(&key).await?, keys)?;
            segment.messages.retain(|m| m.sequence <= end);
            segment.last = end;
            let (trimmed, bytes) = segment.encode(keys)?;
            storage.put(&trimmed.key, bytes.into()).await?;
            last_kept = Some(trimmed.key);
        }
        storage.rename(&key, &aside(label, &key)).await?;
        moved += 1;
    }
    if moved > 0 {
        match last_kept {
            Some(segment) => {
                let checkpoint = Checkpoint::signed(stream, end, segment, keys);
                storage.put(&layout::checkpoint_key(stream), serde_json::to_vec(&checkpoint)?.into()).await?;
            }
            // Nothing of the archive is left before the point: the segments decide from now on.
            None => storage.delete(&layout::checkpoint_key(stream)).await?,
        }
    }
    Ok(moved)
}
