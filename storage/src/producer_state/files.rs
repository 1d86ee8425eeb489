//! Producer-state snapshot files and the rebuild of the state from a snapshot and the log.
//! Synchronous file work: the log runs it on glommio's blocking thread pool.
//!
//! A snapshot `<20-digit offset>.snapshot` holds the state as of that offset (every batch below
//! it applied). The log writes one when it rolls (at the new segment's base, after sealing the
//! old one) and when it closes cleanly (at the log end), so recovery replays at most the active
//! segment's batch headers. A crash between a roll and its snapshot only makes recovery start
//! from an older snapshot and replay more.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use super::{decode_snapshot, ProducerStateManager};
use crate::{
    checkpoint,
    error::StorageError,
    recovery::remove_file,
    segment::{parse_segment_name, segment_path, HeaderReader},
};

/// Extension of producer-state snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Snapshots kept per log: the newest, and one older in case the newest is unreadable.
pub(crate) const SNAPSHOTS_RETAINED: usize = 2;

/// A segment as the rebuild reads it: path, base offset, bytes of whole batches.
pub(crate) type SegmentFile = (PathBuf, i64, u64);

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|source| StorageError::io("list log directory", dir, source))?;
    let mut offsets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::io("list log directory", dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((offset, SNAPSHOT_SUFFIX)) = parse_segment_name(&name) {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Writes the snapshot at `offset` (atomically) and removes all but the newest
/// `SNAPSHOTS_RETAINED`.
pub(crate) fn write_snapshot(dir: &Path, offset: i64, bytes: &[u8]) -> Result<(), StorageError> {
    let path = segment_path(dir, offset, SNAPSHOT_SUFFIX);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    checkpoint::atomic_write(dir, &name, bytes)
        .map_err(|source| StorageError::io("write producer snapshot", &path, source))?;
    let offsets = list_snapshots(dir)?;
    let excess = offsets.len().saturating_sub(SNAPSHOTS_RETAINED);
    for old in &offsets[..excess] {
        remove_file(&segment_path(dir, *old, SNAPSHOT_SUFFIX))?;
    }
    Ok(())
}

/// Removes the snapshots outside `[start, end]`: past the end they describe batches that are
/// gone; below the start, the batches between them and the log start cannot be replayed.
pub(crate) fn remove_snapshots_outside(
    dir: &Path,
    start: i64,
    end: i64,
) -> Result<(), StorageError> {
    for offset in list_snapshots(dir)? {
        if offset < start || offset > end {
            remove_file(&segment_path(dir, offset, SNAPSHOT_SUFFIX))?;
        }
    }
    Ok(())
}

/// What a rebuild started from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerRebuild {
    /// The snapshot loaded, if any (its offset).
    pub snapshot_offset: Option<i64>,
    /// Batch headers read from the log after it.
    pub batches_replayed: u64,
}

/// Rebuilds the producer state of a log whose segments are `segments` (in order, the last
/// ending at the log end): the newest readable snapshot within the log, then every batch header
/// from its offset on. Unreadable snapshots are removed.
pub(crate) fn rebuild(
    dir: &Path,
    segments: &[SegmentFile],
    log_end: i64,
    gaps_allowed: bool,
    expiration_ms: u64,
) -> Result<(ProducerStateManager, ProducerRebuild), StorageError> {
    let log_start = segments.first().map_or(log_end, |(_, base, _)| *base);
    remove_snapshots_outside(dir, log_start, log_end)?;
    let mut state = ProducerStateManager::new(expiration_ms);
    let mut summary = ProducerRebuild::default();
    for offset in list_snapshots(dir)?.into_iter().rev() {
        let path = segment_path(dir, offset, SNAPSHOT_SUFFIX);
        let decoded = std::fs::read(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| decode_snapshot(&bytes).map_err(|error| error.to_string()));
        match decoded {
            Ok(producers) => {
                state.load(producers);
                summary.snapshot_offset = Some(offset);
                break;
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "producer snapshot unreadable; removing it");
                remove_file(&path)?;
            }
        }
    }
    let from = summary.snapshot_offset.unwrap_or(log_start);
    for (at, (path, base, size)) in segments.iter().enumerate() {
        let next_base = segments.get(at + 1).map_or(i64::MAX, |(_, next, _)| *next);
        if next_base <= from {
            continue;
        }
        summary.batches_replayed +=
            replay_segment(path, *base, *size, from, gaps_allowed, &mut state)?;
    }
    Ok((state, summary))
}

/// Records every producer batch of one segment whose last offset is at or past `from`.
fn replay_segment(
    path: &Path,
    base: i64,
    size: u64,
    from: i64,
    gaps_allowed: bool,
    state: &mut ProducerStateManager,
) -> Result<u64, StorageError> {
    let file = File::open(path)
        .map_err(|source| StorageError::io("open segment for producer state", path, source))?;
    let mut reader = HeaderReader::new(&file, path, size).allowing_gaps(gaps_allowed);
    let (mut position, mut expected, mut replayed) = (0u64, base, 0u64);
    while position < size {
        let header = reader.header_at(position, expected)?;
        if header.last_offset() >= from {
            state.record_headers([&header]);
            replayed += 1;
        }
        position += header.total_bytes() as u64;
        expected = header.last_offset() + 1;
    }
    Ok(replayed)
}
