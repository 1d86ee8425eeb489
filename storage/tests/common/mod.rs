//! Helpers shared by the partition log tests.
#![allow(dead_code, clippy::unwrap_used)]
// Helpers unwrap freely: a failure is a test failure.

pub mod compaction;

use std::{future::Future, path::Path};

use bytes::BytesMut;
use sluice_storage::{
    batch::{BatchBuilder, BatchHeader, Compression},
    Durability, FileSlice, LogConfig, PartitionLog, ReadSlice, WriteMode,
};

/// Both write modes; every log test runs in each.
pub const MODES: [WriteMode; 2] = [WriteMode::Buffered, WriteMode::Direct];

/// Runs a future on a fresh glommio executor.
pub fn run<T: 'static>(future: impl Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap()
        .run(future)
}

/// A config for tests: small segments and indexes so rolls and index entries happen often.
pub fn config(mode: WriteMode) -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 * 1024,
        index_interval_bytes: 512,
        batch_bytes_max: 1 << 20,
        write_mode: mode,
        durability: Durability::Interval {
            flush_bytes_max: 1 << 20,
            flush_ms_max: 1000,
        },
        tail_cache_bytes_max: 16 * 1024,
        read_handles_max: 4,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// One uncompressed batch of `records` records whose values are `value_len` bytes of `fill`,
/// timestamps from `timestamp_ms` up.
pub fn batch(records: usize, value_len: usize, fill: u8, timestamp_ms: i64) -> BytesMut {
    let mut builder = BatchBuilder::new(Compression::None);
    let value = vec![fill; value_len];
    for record in 0..records {
        builder.push(
            timestamp_ms + record as i64,
            Some(b"key"),
            Some(&value),
            &[],
        );
    }
    builder.build().unwrap()
}

/// Every batch of the log, read back from its start with `read_bytes`, as (header, bytes).
pub async fn read_all(log: &PartitionLog) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let bytes = log.read_bytes(offset, 64 * 1024, end).await.unwrap();
        assert!(
            !bytes.is_empty(),
            "read at {offset} below the end {end} returned nothing"
        );
        let mut position = 0;
        while position < bytes.len() {
            let header =
                sluice_storage::batch::validate_batch(&bytes[position..], 1 << 26).unwrap();
            let total = header.total_bytes();
            out.push((header, bytes[position..position + total].to_vec()));
            assert_eq!(header.base_offset, offset.max(header.base_offset));
            offset = header.last_offset() + 1;
            position += total;
        }
    }
    out
}

/// The bytes a `ReadSlice` stands for.
pub fn slice_bytes(slice: &ReadSlice) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    match slice {
        ReadSlice::Empty => Vec::new(),
        ReadSlice::Memory(pieces) => pieces.concat(),
        ReadSlice::File(file) => {
            let mut buffer = vec![0u8; file.len];
            file.file.read_exact_at(&mut buffer, file.position).unwrap();
            buffer
        }
    }
}

/// Names and contents of every `.log` file in `dir`, sorted by name.
pub fn log_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Paths of the `.log` files in `dir`, sorted.
pub fn log_paths(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    paths.sort();
    paths
}

/// The base offset a segment file (`<base>.log`) is named after.
pub fn segment_base(path: &Path) -> i64 {
    path.file_stem()
        .and_then(|stem| stem.to_str()?.parse().ok())
        .unwrap()
}

/// Checks a read of a deleted segment: it still returns every byte (`expected`) a while after
/// the deletion, since the space waits for it; once it is dropped, the space of every deleted
/// file is freed, as seen through `watchers`, descriptors of those files the log does not know
/// about.
pub async fn read_survives_then_space_frees(
    slice: FileSlice,
    expected: &[u8],
    watchers: &[std::fs::File],
) {
    glommio::timer::sleep(std::time::Duration::from_millis(500)).await;
    let after = slice_bytes(&ReadSlice::File(slice.clone()));
    assert_eq!(
        after, expected,
        "a read of a deleted segment returns every byte"
    );
    drop(slice);
    assert_space_freed(watchers).await;
}

/// Waits (at most 10 s) until the files behind `watchers`, descriptors of deleted files the
/// log does not know about, are cut to nothing: the log freed their space itself, since the
/// kernel would not while a watcher holds them.
pub async fn assert_space_freed(watchers: &[std::fs::File]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let held = || {
        watchers
            .iter()
            .any(|watcher| watcher.metadata().unwrap().len() > 0)
    };
    while held() && std::time::Instant::now() < deadline {
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!held(), "the deleted files' space is freed");
}
