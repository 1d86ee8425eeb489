//! Log compaction (`cleanup.policy=compact`): the cleaner keeps the newest record of every key
//! and drops the rest, as Kafka's `LogCleaner` does.
//!
//! What a reader of a compacted log can rely on:
//! - Every record that is the newest of its key (and every record without a key, written before
//!   the log became compacted) survives, at its original offset, with its original timestamp,
//!   headers and bytes.
//! - A tombstone (a record with a null value) survives at least `delete_retention_ms` after the
//!   cleaning that removed the older records of its key; then it goes too.
//! - Offsets never move. Where the cleaner removed whole batches the log has gaps; a fetch at an
//!   offset inside a gap returns the next surviving batch. Every segment still ends at the
//!   offset where the next one starts (the last batch of a cleaned segment is kept, if need be
//!   as an empty batch), so only the inside of a segment has gaps.
//! - The active segment is never cleaned, nor anything at or past the caller's bound (the
//!   high watermark) or younger than `min_compaction_lag_ms`.
//! - A SIGKILL at any moment of a cleaning leaves either the old segments or the cleaned one
//!   (see [`swap`]); nothing that was newest for its key is ever lost.
//!
//! One cleaning ("round") of a log: read the dirty part (from the cleaner checkpoint to the end
//! of the cleanable range) and build the key -> newest offset map, within a memory budget (a
//! log with more dirty keys is cleaned over several rounds); then rewrite every cleanable
//! segment from the log start, in groups of segments that fit in one segment, each group into
//! `<base>.log.cleaned`, swapped in as soon as it is written; finally record how far the log
//! is clean in `cleaner-offset-checkpoint`. Each shard runs one [`LogCleaner`] over the logs it
//! owns, at a lower priority than appends and within a bytes-per-second budget.

pub(crate) mod checkpoint;
mod cleaner;
#[doc(hidden)]
pub mod crash_point;
mod filter;
mod io;
mod offset_map;
pub(crate) mod plan;
pub(crate) mod swap;
mod throttle;

use std::path::PathBuf;

pub(crate) use checkpoint::CleaningState;
pub use cleaner::{CleanStats, LogCleaner};
pub use plan::Cleanability;
pub(crate) use swap::finish_interrupted_swap;

use crate::{
    batch::{decode_records, BatchIter},
    error::StorageError,
    segment::Segment,
    PartitionLog,
};

/// A cleaned segment, written and fsynced, ready to replace the segments it was made from.
#[derive(Debug)]
pub(crate) struct CleanedSegment {
    /// The segment as it will be once swapped in (final path, indexes).
    pub segment: Segment,
    /// Where the cleaned file is now (`<base>.log.cleaned`).
    pub cleaned_path: PathBuf,
    /// (base offset, size) of every segment it replaces, in order, as they were read.
    pub replaces: Vec<(i64, u64)>,
}

/// Refuses an append to a compacted log that holds a record without a key (Kafka: "Compacted
/// topic cannot accept message without key"). Batches are validated first (CRC included), so
/// a corrupt batch is reported as such; a batch whose records cannot be decoded is refused,
/// since its keys cannot be checked.
pub(crate) fn require_keys(batches: &[u8], batch_bytes_max: usize) -> Result<(), StorageError> {
    let mut iter = BatchIter::new(batches, batch_bytes_max);
    loop {
        let position = iter.position();
        let Some(next) = iter.next() else {
            return Ok(());
        };
        let (header, batch) = next.map_err(|source| StorageError::Batch { position, source })?;
        if header.is_control() {
            continue;
        }
        let records =
            decode_records(batch).map_err(|source| StorageError::Batch { position, source })?;
        if let Some(keyless) = records.iter().find(|record| record.key.is_none()) {
            return Err(StorageError::MissingKey {
                position,
                offset_delta: keyless.offset - header.base_offset,
            });
        }
    }
}

impl PartitionLog {
    /// How much this log would gain from a cleaning of the records below `upper_offset` (the
    /// high watermark) at `now_ms`; `None` when the log is not compacted, is closed, or has
    /// nothing cleanable.
    pub fn cleanability(&self, upper_offset: i64, now_ms: i64) -> Option<Cleanability> {
        if !self.compacted() {
            return None;
        }
        let view = self.cleaning_view().ok()?;
        let range = plan::clean_range(&view, upper_offset, now_ms);
        plan::cleanability(&view, &range, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Compression};

    // Proves keyless records are refused with their position, keyed ones (tombstones too)
    // pass, and a corrupt batch is reported as a bad batch rather than a missing key.
    #[test]
    fn keys_are_required() {
        let mut keyed = BatchBuilder::new(Compression::Zstd);
        keyed.push(1, Some(b"a"), Some(b"1"), &[]);
        keyed.push(2, Some(b"b"), None, &[]);
        let mut keyless = BatchBuilder::new(Compression::None);
        keyless.push(3, Some(b"c"), Some(b"3"), &[]);
        keyless.push(4, None, Some(b"4"), &[]);
        let keyed = keyed.build().unwrap();
        let mut both = keyed.clone();
        both.extend_from_slice(&keyless.build().unwrap());
        require_keys(&keyed, 1 << 20).unwrap();
        match require_keys(&both, 1 << 20) {
            Err(StorageError::MissingKey {
                position,
                offset_delta,
            }) => {
                assert_eq!(position, keyed.len());
                assert_eq!(offset_delta, 1);
            }
            other => panic!("expected MissingKey, got {other:?}"),
        }
        let mut corrupt = keyed.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(matches!(
            require_keys(&corrupt, 1 << 20),
            Err(StorageError::Batch { .. })
        ));
    }
}
