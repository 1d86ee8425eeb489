//! Reading a partition replica's log straight from its segment files, to compare replicas byte
//! for byte. Reading a live broker's files is safe for this: every published batch is in the
//! file (buffered mode: in the page cache; direct mode: written before it is published), and a
//! batch still being written at the end is simply not whole yet, so parsing stops before it.

use std::path::Path;

use bytes::Bytes;
use sluice_storage::batch::BatchIter;

/// Largest batch the parser accepts, bytes (far above anything the tests write).
const BATCH_BYTES_MAX: usize = 64 << 20;

/// One record batch as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Epoch of the leader that appended it.
    pub leader_epoch: i32,
    /// The whole batch, exactly as in the file.
    pub bytes: Bytes,
}

/// Every whole, CRC-valid batch of the partition directory `dir`, segment by segment in offset
/// order, up to the first byte that is not a whole batch (the preallocated zero tail of a
/// direct-mode segment, or a batch being written). Empty when the directory does not exist.
pub fn read_batches(dir: &Path) -> Vec<StoredBatch> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut segments: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    // Segment files are named by their zero-padded base offset, so names sort by offset.
    segments.sort();
    let mut batches = Vec::new();
    for segment in segments {
        let Ok(content) = std::fs::read(&segment) else {
            continue;
        };
        let content = Bytes::from(content);
        for item in BatchIter::new(&content, BATCH_BYTES_MAX) {
            let Ok((header, batch)) = item else {
                break;
            };
            batches.push(StoredBatch {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                leader_epoch: header.partition_leader_epoch,
                bytes: content.slice_ref(batch),
            });
        }
    }
    batches
}

/// The batches that end below `offset`.
pub fn below(batches: &[StoredBatch], offset: i64) -> Vec<StoredBatch> {
    batches
        .iter()
        .filter(|batch| batch.last_offset < offset)
        .cloned()
        .collect()
}

/// The log end offset the batches imply when they are contiguous from offset 0: one past the
/// last offset of the longest gap-free prefix.
pub fn contiguous_end(batches: &[StoredBatch]) -> i64 {
    let mut end = 0;
    for batch in batches {
        if batch.base_offset != end {
            break;
        }
        end = batch.last_offset + 1;
    }
    end
}

/// The number of leading batches two replicas hold byte for byte alike.
pub fn common_prefix(left: &[StoredBatch], right: &[StoredBatch]) -> usize {
    left.iter()
        .zip(right)
        .take_while(|(one, other)| one.bytes == other.bytes)
        .count()
}
