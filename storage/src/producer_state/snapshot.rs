//! The bytes of a producer-state snapshot (`<20-digit offset>.snapshot` in the log directory:
//! the state as of that log offset, so recovery replays only the batches from it on).
//!
//! Layout, big-endian: `u32 magic | u16 version | u32 producer count | producers | u32 CRC-32C
//! of everything before it`; a producer is `i64 id | i16 epoch | i64 last timestamp | u8 batch
//! count | batches`, a batch `i32 first sequence | i32 last sequence | i64 first offset | i64
//! last offset`. A snapshot that fails its CRC or its lengths is refused whole (recovery then
//! uses an older one, or the log).

use std::collections::VecDeque;

use bytes::{Buf, BufMut};

use super::{BatchRange, ProducerEntry, ProducerStateManager, PRODUCER_BATCHES_RETAINED};

/// "SLPS": Sluice producer snapshot.
const SNAPSHOT_MAGIC: u32 = 0x534c_5053;
const SNAPSHOT_VERSION: u16 = 1;
const HEADER_BYTES: usize = 4 + 2 + 4;
const PRODUCER_BYTES: usize = 8 + 2 + 8 + 1;
const BATCH_BYTES: usize = 4 + 4 + 8 + 8;
const CRC_BYTES: usize = 4;

/// Why snapshot bytes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes end early, run long, or carry an impossible count.
    #[error("producer snapshot is malformed: {0}")]
    Malformed(&'static str),
    /// The stored CRC does not match the bytes.
    #[error("producer snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the file.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
}

/// Encodes the state (producers in id order, so equal states give equal bytes).
pub fn encode_snapshot(state: &ProducerStateManager) -> Vec<u8> {
    let mut producers: Vec<(i64, &ProducerEntry)> = state.producers().collect();
    producers.sort_unstable_by_key(|(id, _)| *id);
    let mut out = Vec::with_capacity(
        HEADER_BYTES
            + producers.len() * (PRODUCER_BYTES + PRODUCER_BATCHES_RETAINED * BATCH_BYTES)
            + CRC_BYTES,
    );
    out.put_u32(SNAPSHOT_MAGIC);
    out.put_u16(SNAPSHOT_VERSION);
    out.put_u32(u32::try_from(producers.len()).unwrap_or(u32::MAX));
    for (id, entry) in producers {
        out.put_i64(id);
        out.put_i16(entry.epoch);
        out.put_i64(entry.last_timestamp);
        // At most PRODUCER_BATCHES_RETAINED by the entry's invariant.
        out.put_u8(entry.batches.len().min(usize::from(u8::MAX)) as u8);
        for range in &entry.batches {
            out.put_i32(range.first_sequence);
            out.put_i32(range.last_sequence);
            out.put_i64(range.first_offset);
            out.put_i64(range.last_offset);
        }
    }
    let crc = crc32c::crc32c(&out);
    out.put_u32(crc);
    out
}

/// Decodes snapshot bytes into the producers they hold.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Vec<(i64, ProducerEntry)>, SnapshotError> {
    if bytes.len() < HEADER_BYTES + CRC_BYTES {
        return Err(SnapshotError::Malformed("shorter than its header"));
    }
    let (body, mut crc_bytes) = bytes.split_at(bytes.len() - CRC_BYTES);
    let stored = crc_bytes.get_u32();
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(SnapshotError::CrcMismatch { stored, computed });
    }
    let mut cursor = body;
    if cursor.get_u32() != SNAPSHOT_MAGIC {
        return Err(SnapshotError::Malformed("bad magic"));
    }
    if cursor.get_u16() != SNAPSHOT_VERSION {
        return Err(SnapshotError::Malformed("unknown version"));
    }
    let count = cursor.get_u32() as usize;
    if count > cursor.remaining() / PRODUCER_BYTES {
        return Err(SnapshotError::Malformed("producer count exceeds the bytes"));
    }
    let mut producers = Vec::with_capacity(count);
    for _ in 0..count {
        producers.push(decode_producer(&mut cursor)?);
    }
    if cursor.has_remaining() {
        return Err(SnapshotError::Malformed("bytes after the last producer"));
    }
    Ok(producers)
}

fn decode_producer(cursor: &mut &[u8]) -> Result<(i64, ProducerEntry), SnapshotError> {
    if cursor.remaining() < PRODUCER_BYTES {
        return Err(SnapshotError::Malformed("producer cut short"));
    }
    let id = cursor.get_i64();
    let epoch = cursor.get_i16();
    let last_timestamp = cursor.get_i64();
    let batch_count = usize::from(cursor.get_u8());
    if batch_count == 0 || batch_count > PRODUCER_BATCHES_RETAINED {
        return Err(SnapshotError::Malformed("batch count out of range"));
    }
    if cursor.remaining() < batch_count * BATCH_BYTES {
        return Err(SnapshotError::Malformed("batch cut short"));
    }
    let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED);
    for _ in 0..batch_count {
        batches.push_back(BatchRange {
            first_sequence: cursor.get_i32(),
            last_sequence: cursor.get_i32(),
            first_offset: cursor.get_i64(),
            last_offset: cursor.get_i64(),
        });
    }
    Ok((
        id,
        ProducerEntry {
            epoch,
            batches,
            last_timestamp,
        },
    ))
}
