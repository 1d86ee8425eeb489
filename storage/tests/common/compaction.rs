//! Helpers of the compaction tests: keyed batches, a model of what a log holds, and scans.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sluice_storage::{
    batch::{decode_records, BatchBuilder, Compression},
    CleanerConfig, CleanupPolicy, LogCleaner, LogConfig, PartitionLog, WriteMode,
};

use super::{config, read_all};

/// One record as a test writes and reads it: key and value (`None` is a tombstone).
pub type KeyValue = (Vec<u8>, Option<Vec<u8>>);

/// A record found in the log: (offset, key, value).
pub type Found = (i64, Option<Bytes>, Option<Bytes>);

/// Wall clock in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A compacted log config with small segments, so a few hundred records span many.
pub fn compact_config(mode: WriteMode) -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes_max: 4096,
        ..config(mode)
    }
}

/// A cleaner that never waits on its I/O budget, with an offset map of `map_bytes_max`.
pub fn cleaner(map_bytes_max: usize) -> LogCleaner {
    LogCleaner::new(CleanerConfig {
        io_bytes_per_second_max: 1 << 40,
        offset_map_bytes_max: map_bytes_max,
        backoff_ms: 1_000,
    })
    .unwrap()
}

/// One batch holding `records`, timestamps from `timestamp_ms` up.
pub fn keyed_batch(records: &[KeyValue], compression: Compression, timestamp_ms: i64) -> BytesMut {
    let mut builder = BatchBuilder::new(compression);
    for (index, (key, value)) in records.iter().enumerate() {
        builder.push(
            timestamp_ms + index as i64,
            Some(key),
            value.as_deref(),
            &[("origin", Some(b"test"))],
        );
    }
    builder.build().unwrap()
}

/// Rolls the active segment (as if `segment_ms_max` had passed), so everything written so far
/// is in closed, cleanable segments.
pub async fn roll(log: &PartitionLog) {
    log.maintenance(now_ms() + 400 * 24 * 60 * 60 * 1000)
        .await
        .unwrap();
}

/// Every record of the log, in offset order, read through the public read path.
pub async fn scan(log: &PartitionLog) -> Vec<Found> {
    let mut out = Vec::new();
    for (_, bytes) in read_all(log).await {
        for record in decode_records(&bytes).unwrap() {
            out.push((record.offset, record.key, record.value));
        }
    }
    out
}

/// The records a log written as `model` (offset -> record) holds once everything below
/// `cleaned_end` is compacted: the newest record of each key below it, and everything from it
/// on; tombstones only when `keep_tombstones`.
pub fn expected(
    model: &BTreeMap<i64, KeyValue>,
    cleaned_end: i64,
    keep_tombstones: bool,
) -> Vec<Found> {
    let mut newest: BTreeMap<&[u8], i64> = BTreeMap::new();
    for (offset, (key, _)) in model.range(..cleaned_end) {
        newest.insert(key, *offset);
    }
    model
        .iter()
        .filter(|(offset, (key, value))| {
            **offset >= cleaned_end
                || (newest.get(key.as_slice()) == Some(*offset)
                    && (keep_tombstones || value.is_some()))
        })
        .map(|(offset, (key, value))| {
            (
                *offset,
                Some(Bytes::copy_from_slice(key)),
                value.as_deref().map(Bytes::copy_from_slice),
            )
        })
        .collect()
}

/// Appends `batches` (each a list of records) and returns the model: offset -> record.
pub async fn write_model(
    log: &PartitionLog,
    batches: &[(Vec<KeyValue>, bool)],
) -> BTreeMap<i64, KeyValue> {
    let mut model = BTreeMap::new();
    for (records, zstd) in batches {
        let codec = if *zstd {
            Compression::Zstd
        } else {
            Compression::None
        };
        let info = log
            .append(keyed_batch(records, codec, now_ms()), 3)
            .await
            .unwrap();
        for (index, record) in records.iter().enumerate() {
            model.insert(info.base_offset + index as i64, record.clone());
        }
    }
    model
}
