//! Recovery from damaged files: flipped bytes, torn and zero-filled tails, missing or garbled
//! indexes, and corruption inside closed segments, under both recovery policies and write modes.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Mutex, Once},
};

use common::*;
use sluice_storage::{
    batch::{validate_batch, BatchHeader},
    LogConfig, PartitionLog, RecoveryPolicy, StorageError, WriteMode,
};

/// Where one batch lives on disk.
#[derive(Debug, Clone)]
struct Placed {
    file: PathBuf,
    position: u64,
    header: BatchHeader,
    bytes: Vec<u8>,
}

/// Every batch of the log in `dir`, read straight from the segment files.
fn layout(dir: &Path) -> Vec<Placed> {
    let mut placed = Vec::new();
    for file in log_paths(dir) {
        let data = std::fs::read(&file).unwrap();
        let mut position = 0;
        while position < data.len() {
            let header = validate_batch(&data[position..], 1 << 26).unwrap();
            let total = header.total_bytes();
            placed.push(Placed {
                file: file.clone(),
                position: position as u64,
                header,
                bytes: data[position..position + total].to_vec(),
            });
            position += total;
        }
    }
    placed
}

fn policy_config(mode: WriteMode, recovery: RecoveryPolicy) -> LogConfig {
    LogConfig {
        recovery,
        ..config(mode)
    }
}

/// Writes `count` batches (epoch rising every 20 batches), closes the log, returns the layout.
fn build(dir: &Path, mode: WriteMode, count: usize) -> Vec<Placed> {
    let path = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&path, config(mode)).await.unwrap();
        for i in 0..count {
            log.append(
                batch(3, 700 + i * 13, i as u8, i as i64 * 10),
                (i / 20) as i32,
            )
            .await
            .unwrap();
        }
        log.close().await.unwrap();
    });
    layout(dir)
}

/// Makes the next open scan everything: no clean marker, no recovery point.
fn forget_clean_state(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(".clean_shutdown"));
    let _ = std::fs::remove_file(dir.join("recovery-point-offset-checkpoint"));
}

fn flip_byte(file: &Path, position: u64) {
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut byte = [0u8];
    handle.read_exact_at(&mut byte, position).unwrap();
    handle.write_all_at(&[byte[0] ^ 0x5a], position).unwrap();
}

/// Opens with `recovery`; on success returns (log end, batches read back, segment count) after
/// checking an append continues at the end.
fn reopen(
    dir: &Path,
    mode: WriteMode,
    recovery: RecoveryPolicy,
) -> Result<(i64, Vec<Vec<u8>>, usize), StorageError> {
    let path = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&path, policy_config(mode, recovery)).await?;
        let end = log.log_end_offset();
        let batches = read_all(&log)
            .await
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        let segments = log.segment_count();
        let info = log.append(batch(1, 10, 0, 0), 99).await.unwrap();
        assert_eq!(info.base_offset, end);
        log.truncate_to(end).await.unwrap();
        log.close().await.unwrap();
        Ok((end, batches, segments))
    })
}

fn bytes_of(placed: &[Placed]) -> Vec<Vec<u8>> {
    placed.iter().map(|batch| batch.bytes.clone()).collect()
}

fn assert_corrupt_at(
    result: Result<(i64, Vec<Vec<u8>>, usize), StorageError>,
    file: &Path,
    at: u64,
) {
    match result {
        Err(StorageError::Corrupt { path, position, .. }) => {
            assert_eq!(path, file);
            assert_eq!(position, at);
        }
        other => panic!("expected Corrupt at {} {at}, got {other:?}", file.display()),
    }
}

// Proves a flipped byte in the last batch makes Refuse fail with that file and position, and
// TruncateTail cut the log exactly before that batch (then accept appends there).
#[test]
fn flipped_byte_in_tail_refuses_or_truncates() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let placed = build(dir.path(), mode, 30);
        let last = placed.last().unwrap().clone();
        flip_byte(&last.file, last.position + last.bytes.len() as u64 - 3);
        forget_clean_state(dir.path());
        assert_corrupt_at(
            reopen(dir.path(), mode, RecoveryPolicy::Refuse),
            &last.file,
            last.position,
        );
        let (end, batches, _) = reopen(dir.path(), mode, RecoveryPolicy::TruncateTail).unwrap();
        assert_eq!(end, last.header.base_offset);
        assert_eq!(batches, bytes_of(&placed[..placed.len() - 1]));
        assert_eq!(std::fs::metadata(&last.file).unwrap().len(), last.position);
    }
}

// Proves a batch torn in the middle (file cut mid-batch) is refused or cut off whole.
#[test]
fn torn_batch_refuses_or_truncates() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let placed = build(dir.path(), mode, 30);
        let last = placed.last().unwrap().clone();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&last.file)
            .unwrap();
        file.set_len(last.position + last.bytes.len() as u64 / 2)
            .unwrap();
        forget_clean_state(dir.path());
        assert_corrupt_at(
            reopen(dir.path(), mode, RecoveryPolicy::Refuse),
            &last.file,
            last.position,
        );
        let (end, batches, _) = reopen(dir.path(), mode, RecoveryPolicy::TruncateTail).unwrap();
        assert_eq!(end, last.header.base_offset);
        assert_eq!(batches, bytes_of(&placed[..placed.len() - 1]));
    }
}

// Proves a zero-filled tail (what direct mode's padding and preallocation leave after a crash)
// is the end of the log under both policies, whether it follows the last batch or replaced it.
#[test]
fn zero_filled_tail_is_the_end() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let placed = build(dir.path(), mode, 30);
        let last = placed.last().unwrap().clone();
        let length = last.position + last.bytes.len() as u64;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&last.file)
            .unwrap();
        file.write_all(&vec![0u8; 10_000]).unwrap();
        forget_clean_state(dir.path());
        for policy in [RecoveryPolicy::Refuse, RecoveryPolicy::TruncateTail] {
            let (end, batches, _) = reopen(dir.path(), mode, policy).unwrap();
            assert_eq!(end, last.header.last_offset() + 1);
            assert_eq!(batches, bytes_of(&placed));
            assert_eq!(std::fs::metadata(&last.file).unwrap().len(), length);
            forget_clean_state(dir.path());
        }
        // A fresh log, because the reopens above may have rolled a new (empty) segment.
        let dir = tempfile::tempdir().unwrap();
        let placed = build(dir.path(), mode, 30);
        let last = placed.last().unwrap().clone();
        let zeros = vec![0u8; last.bytes.len()];
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&last.file)
            .unwrap();
        file.write_all_at(&zeros, last.position).unwrap();
        forget_clean_state(dir.path());
        let (end, batches, _) = reopen(dir.path(), mode, RecoveryPolicy::Refuse).unwrap();
        assert_eq!(end, last.header.base_offset);
        assert_eq!(batches, bytes_of(&placed[..placed.len() - 1]));
    }
}

// Proves missing, garbled and subtly wrong index files are detected at a clean open and rebuilt
// from the log: every read and timestamp lookup still answers from the real batches.
#[test]
fn bad_indexes_are_rebuilt() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let placed = build(dir.path(), mode, 80);
        let logs = log_paths(dir.path());
        assert!(logs.len() >= 4);
        std::fs::remove_file(logs[0].with_extension("index")).unwrap();
        std::fs::write(logs[1].with_extension("index"), [9u8; 24]).unwrap();
        let mut index = std::fs::read(logs[2].with_extension("index")).unwrap();
        assert!(index.len() >= 8, "segment 2 should have index entries");
        let at = index.len() - 8;
        index[at + 3] = index[at + 3].wrapping_add(1);
        std::fs::write(logs[2].with_extension("index"), index).unwrap();
        std::fs::write(logs[3].with_extension("timeindex"), [1u8; 5]).unwrap();
        std::fs::remove_file(logs.last().unwrap().with_extension("index")).unwrap();
        assert!(dir.path().join(".clean_shutdown").exists());
        let path = dir.path().to_path_buf();
        let expected = placed.clone();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let batches: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            assert_eq!(batches, bytes_of(&expected));
            let end = log.log_end_offset();
            for batch in &expected {
                let slice = log.read(batch.header.last_offset(), 1, end).unwrap();
                assert_eq!(slice_bytes(&slice), batch.bytes);
                let found = log
                    .offset_for_timestamp(batch.header.max_timestamp)
                    .await
                    .unwrap();
                assert_eq!(found, Some(batch.header.base_offset));
            }
            log.close().await.unwrap();
        });
        for log in &logs {
            assert!(
                std::fs::metadata(log.with_extension("index"))
                    .unwrap()
                    .len()
                    > 0
            );
            assert!(
                std::fs::metadata(log.with_extension("timeindex"))
                    .unwrap()
                    .len()
                    >= 12
            );
        }
    }
}

/// Log lines captured from every thread (recovery runs on glommio's blocking pool).
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .init();
    });
}

// Proves a corrupt batch inside a closed segment is reported with its file and position: an
// error under Refuse; under TruncateTail a warning naming both, the log cut there, later
// segments deleted, and the leader-epoch cache cut to the new end.
#[test]
fn corrupt_batch_in_closed_segment_is_reported() {
    capture_logs();
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let placed = build(dir.path(), mode, 70);
        let logs = log_paths(dir.path());
        let victim_at = placed
            .iter()
            .position(|batch| batch.file == logs[1])
            .unwrap()
            + 1;
        let victim = placed[victim_at].clone();
        // Epoch 1 starts at batch 20 (offset 60), epoch 2 at batch 40.
        assert!(
            victim_at > 20 && victim_at < 40,
            "victim batch {victim_at} must be in epoch 1"
        );
        flip_byte(&victim.file, victim.position + 70);
        forget_clean_state(dir.path());
        assert_corrupt_at(
            reopen(dir.path(), mode, RecoveryPolicy::Refuse),
            &victim.file,
            victim.position,
        );
        let (end, batches, segments) =
            reopen(dir.path(), mode, RecoveryPolicy::TruncateTail).unwrap();
        assert_eq!(end, victim.header.base_offset);
        assert_eq!(batches, bytes_of(&placed[..victim_at]));
        assert_eq!(segments, 2);
        assert_eq!(log_paths(dir.path()), logs[..2].to_vec());
        let captured = String::from_utf8_lossy(&CAPTURED.lock().unwrap()).into_owned();
        assert!(
            captured.contains(&victim.file.display().to_string())
                && captured.contains(&format!("position={}", victim.position)),
            "warning must name the file and position: {captured}"
        );
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            assert_eq!(log.latest_epoch(), Some(1));
            assert_eq!(log.end_offset_for_epoch(1), Some((1, end)));
            log.close().await.unwrap();
        });
        let checkpoint =
            std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(checkpoint, "0\n2\n0 0\n1 60\n");
    }
}

// Proves the segments recovery drops after a corrupt batch lose their names during the open and
// their space after it, in paced steps on the opening executor rather than inside the unlinks.
#[test]
fn segments_dropped_by_recovery_are_freed_after_it() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let placed = build(dir.path(), mode, 70);
        let logs = log_paths(dir.path());
        assert!(logs.len() > 2, "{mode:?}: segments after the damaged one");
        let victim = placed
            .iter()
            .find(|batch| batch.file == logs[1])
            .unwrap()
            .clone();
        flip_byte(&victim.file, victim.position + 70);
        forget_clean_state(dir.path());
        let watchers: Vec<std::fs::File> = logs[2..]
            .iter()
            .map(|log| std::fs::File::open(log).unwrap())
            .collect();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = policy_config(mode, RecoveryPolicy::TruncateTail);
            let log = PartitionLog::open(&path, config).await.unwrap();
            assert_eq!(log_paths(&path), logs[..2].to_vec());
            assert_space_freed(&watchers).await;
            log.close().await.unwrap();
        });
    }
}
