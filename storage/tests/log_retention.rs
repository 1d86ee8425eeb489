//! Retention, truncation and the leader-epoch cache, in both write modes.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sluice_storage::{LogConfig, PartitionLog, ReadSlice, StorageError, WriteMode};

/// Appends `count` batches of 3 records and ~2 KiB, with `timestamp(i)` and `epoch(i)`.
async fn fill(
    log: &PartitionLog,
    count: usize,
    timestamp: impl Fn(usize) -> i64,
    epoch: impl Fn(usize) -> i32,
) -> Vec<Vec<u8>> {
    for i in 0..count {
        log.append(batch(3, 2000, i as u8, timestamp(i)), epoch(i))
            .await
            .unwrap();
    }
    read_all(log)
        .await
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect()
}

fn retention_config(
    mode: WriteMode,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
) -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 * 1024,
        retention_ms,
        retention_bytes,
        ..config(mode)
    }
}

// Proves time retention deletes exactly the oldest closed segments whose newest timestamp is
// past retention_ms, advances the log start (older offsets are out of range, the rest reads
// unchanged), keeps the active segment even when it is expired, and survives a reopen.
#[test]
fn time_retention_deletes_expired_closed_segments() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = retention_config(mode, Some(1000), None);
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            let all = fill(&log, 60, |i| i as i64 * 100, |_| 0).await;
            let segments = log.segment_count();
            assert!(segments >= 5);
            // At now = 3000 + 1000 every batch with timestamp below 3000 is expired; segments
            // whose newest batch is older go, the first one holding a newer batch stays.
            let deleted = log.apply_retention(4000).await.unwrap();
            assert!(deleted > 0 && deleted < segments);
            let start = log.log_start_offset();
            let first_kept = (start / 3) as usize;
            assert!(
                first_kept <= 30,
                "segment holding offset 90 (timestamp 3000) must stay"
            );
            assert!((first_kept - 1) * 100 < 3000);
            assert!(matches!(
                log.read(start - 1, 100, log.log_end_offset()),
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            let kept: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            assert_eq!(kept, all[first_kept..].to_vec());
            assert_eq!(log.apply_retention(4000).await.unwrap(), 0);
            let everything = log.apply_retention(1_000_000).await.unwrap();
            assert_eq!(
                log.segment_count(),
                1,
                "the active segment is never deleted"
            );
            assert!(everything > 0);
            let start = log.log_start_offset();
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config).await.unwrap();
            assert_eq!(log.log_start_offset(), start);
            assert_eq!(log.log_end_offset(), 180);
            log.close().await.unwrap();
        });
    }
}

// Proves size retention deletes oldest closed segments only while the log stays at or above
// retention_bytes without them, never the active one.
#[test]
fn size_retention_keeps_the_log_above_the_limit() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, retention_config(mode, None, Some(40 * 1024)))
                .await
                .unwrap();
            let all = fill(&log, 60, |_| 0, |_| 0).await;
            let size_before = log.size_bytes();
            let deleted = log.apply_retention(0).await.unwrap();
            assert!(deleted > 0);
            let size_after = log.size_bytes();
            assert!(size_after >= 40 * 1024, "deleted too much: {size_after}");
            assert!(size_after < size_before);
            // One more deletion would have gone under the limit.
            assert_eq!(log.apply_retention(0).await.unwrap(), 0);
            let start = (log.log_start_offset() / 3) as usize;
            let kept: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            assert_eq!(kept, all[start..].to_vec());
            log.close().await.unwrap();
        });
    }
}

// Proves truncate_to removes whole batches from the one holding the offset (inside the active
// segment, inside an older segment dropping later ones, at a mid-batch offset), leaves the
// log unchanged at or past its end, restarts an emptied log at the offset, lets appends
// continue at the new end, cuts the epoch cache, and that all of it survives clean and unclean
// reopens.
#[test]
fn truncate_to_cuts_whole_batches_and_epochs() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = retention_config(mode, None, None);
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            let all = fill(&log, 60, |i| i as i64, |i| (i / 20) as i32 + 1).await;
            assert_eq!(log.latest_epoch(), Some(3));
            let segments = log.segment_count();
            log.truncate_to(1000).await.unwrap();
            assert_eq!(log.log_end_offset(), 180);
            // Mid-batch offset 175 (batch 58 holds 174..177): batches 58 and 59 go.
            log.truncate_to(175).await.unwrap();
            assert_eq!(log.log_end_offset(), 174);
            assert_eq!(log.segment_count(), segments);
            // Offset 100 lies in an older segment: everything from batch 33 on goes.
            log.truncate_to(100).await.unwrap();
            assert_eq!(log.log_end_offset(), 99);
            assert!(log.segment_count() < segments);
            assert_eq!(log.latest_epoch(), Some(2));
            assert_eq!(log.end_offset_for_epoch(2), Some((2, 99)));
            assert_eq!(log.end_offset_for_epoch(1), Some((1, 60)));
            assert_eq!(log.end_offset_for_epoch(3), None);
            let kept: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            assert_eq!(kept, all[..33].to_vec());
            let info = log.append(batch(1, 10, 0, 0), 4).await.unwrap();
            assert_eq!(info.base_offset, 99);
            log.truncate_to(99).await.unwrap();
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            assert_eq!(log.log_end_offset(), 99);
            assert_eq!(log.latest_epoch(), Some(2));
            let reread: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            assert_eq!(reread, all[..33].to_vec());
            log.truncate_to(50).await.unwrap();
            drop(log);
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            assert_eq!(log.log_end_offset(), 48);
            assert_eq!(log.latest_epoch(), Some(1));
            log.truncate_to(0).await.unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
            assert_eq!(log.latest_epoch(), None);
            log.append(batch(2, 10, 0, 0), 5).await.unwrap();
            assert_eq!(log.log_end_offset(), 2);
            log.close().await.unwrap();
        });
    }
}

// Proves truncating at or below the log start (after retention) restarts the log at the given
// offset, and the new start survives a reopen.
#[test]
fn truncate_below_start_restarts_the_log() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = retention_config(mode, None, Some(1));
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            fill(&log, 30, |_| 0, |_| 1).await;
            log.apply_retention(0).await.unwrap();
            let start = log.log_start_offset();
            assert!(start > 0);
            log.truncate_to(start - 1).await.unwrap();
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (start - 1, start - 1)
            );
            assert_eq!(log.segment_count(), 1);
            let info = log.append(batch(1, 10, 0, 0), 2).await.unwrap();
            assert_eq!(info.base_offset, start - 1);
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config).await.unwrap();
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (start - 1, start)
            );
            assert_eq!(log_paths(&path).len(), 1);
            log.close().await.unwrap();
        });
    }
}

// Proves leader epochs are recorded on append and persisted in Kafka's checkpoint format,
// end_offset_for_epoch answers per KIP-101/279, and an unclean open drops checkpoint entries
// past the recovered end.
#[test]
fn leader_epoch_checkpoint_and_end_offsets() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = retention_config(mode, None, None);
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            // Epoch 2 from offset 0, 5 from 30, 9 from 60.
            fill(&log, 30, |_| 0, |i| [2, 5, 9][i / 10]).await;
            let checkpoint = std::fs::read_to_string(path.join("leader-epoch-checkpoint")).unwrap();
            assert_eq!(checkpoint, "0\n3\n2 0\n5 30\n9 60\n");
            assert_eq!(log.end_offset_for_epoch(9), Some((9, 90)));
            assert_eq!(log.end_offset_for_epoch(5), Some((5, 60)));
            assert_eq!(log.end_offset_for_epoch(7), Some((5, 60)));
            assert_eq!(log.end_offset_for_epoch(1), Some((1, 0)));
            assert_eq!(log.end_offset_for_epoch(10), None);
            log.close().await.unwrap();
            std::fs::write(
                path.join("leader-epoch-checkpoint"),
                "0\n4\n2 0\n5 30\n9 60\n11 500\n",
            )
            .unwrap();
            std::fs::remove_file(path.join(".clean_shutdown")).unwrap();
            let log = PartitionLog::open(&path, config).await.unwrap();
            assert_eq!(log.latest_epoch(), Some(9));
            assert_eq!(log.end_offset_for_epoch(9), Some((9, 90)));
            log.close().await.unwrap();
            let checkpoint = std::fs::read_to_string(path.join("leader-epoch-checkpoint")).unwrap();
            assert_eq!(checkpoint, "0\n3\n2 0\n5 30\n9 60\n");
        });
    }
}

// Proves truncating in the middle of a multi-batch append keeps whole batches before the cut,
// and the log (tail cache included in direct mode) accepts and serves appends after it.
#[test]
fn truncate_inside_a_multi_batch_append() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            for append in 0..4u8 {
                let mut data = batch(2, 100, append, 0);
                data.extend_from_slice(&batch(2, 100, append, 0));
                data.extend_from_slice(&batch(2, 100, append, 0));
                log.append(data, 1).await.unwrap();
            }
            let before: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            // Append 3 holds batches at 18, 20 and 22; offset 21 cuts at batch 20.
            log.truncate_to(21).await.unwrap();
            assert_eq!(log.log_end_offset(), 20);
            let info = log.append(batch(1, 50, 9, 0), 1).await.unwrap();
            assert_eq!(info.base_offset, 20);
            let after = read_all(&log).await;
            assert_eq!(after.len(), 11);
            let kept: Vec<Vec<u8>> = after[..10].iter().map(|(_, b)| b.clone()).collect();
            assert_eq!(kept, before[..10].to_vec());
            assert_eq!(after[10].0.base_offset, 20);
            let newest = log.read(20, 1 << 20, 21).unwrap();
            assert_eq!(slice_bytes(&newest), after[10].1);
            log.close().await.unwrap();
        });
    }
}

// Proves a topic-level setting changed on an open log takes effect without a reopen: a log with
// no retention keeps every segment, `set_config` with retention_bytes makes the next retention
// pass delete the oldest closed segments (the newest bytes stay readable); a change of a
// broker-level setting (the write mode) is refused and leaves the settings as they were.
#[test]
fn retention_set_on_an_open_log_applies_at_the_next_pass() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = retention_config(mode, None, None);
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            fill(&log, 60, |i| i as i64 * 100, |_| 0).await;
            let segments = log.segment_count();
            assert_eq!(log.apply_retention(1_000_000).await.unwrap(), 0);
            let limited = retention_config(mode, None, Some(32 * 1024));
            log.set_config(limited.clone()).unwrap();
            assert_eq!(log.config(), limited);
            assert!(log.apply_retention(1_000_000).await.unwrap() > 0);
            assert!(log.segment_count() < segments);
            assert!(log.log_start_offset() > 0);
            let other_mode = match mode {
                WriteMode::Buffered => WriteMode::Direct,
                WriteMode::Direct => WriteMode::Buffered,
            };
            let broker_level = LogConfig {
                write_mode: other_mode,
                ..limited.clone()
            };
            assert!(matches!(
                log.set_config(broker_level),
                Err(StorageError::InvalidConfig { .. })
            ));
            assert_eq!(log.config(), limited);
            log.close().await.unwrap();
        });
    }
}

// Proves a read taken before retention deletes its segment still returns every byte of it
// afterwards (the deleted file's space is freed in steps, and only once no reader holds it),
// and that the space is freed once the read is dropped.
#[test]
fn a_read_outlives_the_retention_of_its_segment() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, retention_config(mode, Some(1000), None))
                .await
                .unwrap();
            fill(&log, 60, |i| i as i64 * 100, |_| 0).await;
            let ReadSlice::File(slice) = log.read(0, 1 << 20, log.log_end_offset()).unwrap() else {
                panic!("the oldest segment is read from its file");
            };
            let expected = slice_bytes(&ReadSlice::File(slice.clone()));
            let first_segment = path.join(format!("{:020}.log", 0));
            let watcher = std::fs::File::open(&first_segment).unwrap();
            assert!(log.apply_retention(1_000_000).await.unwrap() > 0);
            assert!(
                !first_segment.exists(),
                "the deleted segment's name goes at once"
            );

            read_survives_then_space_frees(slice, &expected, &[watcher]).await;
            log.close().await.unwrap();
        });
    }
}

// Proves deleting a whole log (a deleted topic, a partition moved away) removes its directory at
// once, while a read taken before still returns every byte; the space is freed after the read.
#[test]
fn a_read_outlives_the_deletion_of_its_log() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic-0");
        run(async move {
            let log = PartitionLog::open(&path, retention_config(mode, None, None))
                .await
                .unwrap();
            fill(&log, 20, |i| i as i64, |_| 0).await;
            let ReadSlice::File(slice) = log.read(0, 1 << 20, log.log_end_offset()).unwrap() else {
                panic!("the oldest segment is read from its file");
            };
            let expected = slice_bytes(&ReadSlice::File(slice.clone()));
            let watcher = std::fs::File::open(path.join(format!("{:020}.log", 0))).unwrap();
            log.delete().await.unwrap();
            assert!(!path.exists(), "the log's directory goes at once");
            // As the broker does once the partition is removed (the log holds its active
            // segment's descriptor until dropped).
            drop(log);

            read_survives_then_space_frees(slice, &expected, &[watcher]).await;
        });
    }
}

/// The segment file holding `offset`: the newest one (names order by base offset) whose base
/// offset is at or below it.
fn segment_file_holding(dir: &std::path::Path, offset: i64) -> std::path::PathBuf {
    log_paths(dir)
        .into_iter()
        .rev()
        .find(|path| segment_base(path) <= offset)
        .unwrap()
}

// Proves a read taken before a truncation (a follower cutting back to its leader, inside the
// log or emptying it) removes its segment still returns every byte of it afterwards, and that
// the segment's space is freed once the read is dropped.
#[test]
fn a_read_outlives_the_truncation_of_its_segment() {
    for (mode, cut) in [
        (WriteMode::Direct, 30),
        (WriteMode::Buffered, 30),
        (WriteMode::Direct, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, retention_config(mode, None, None))
                .await
                .unwrap();
            fill(&log, 60, |i| i as i64, |_| 0).await;
            let read_offset = 90;
            let ReadSlice::File(slice) = log
                .read(read_offset, 1 << 20, log.log_end_offset())
                .unwrap()
            else {
                panic!("a closed segment is read from its file");
            };
            let expected = slice_bytes(&ReadSlice::File(slice.clone()));
            let segment = segment_file_holding(&path, read_offset);
            let watcher = std::fs::File::open(&segment).unwrap();
            log.truncate_to(cut).await.unwrap();
            assert!(
                !segment.exists(),
                "the truncated segment's name goes at once"
            );

            read_survives_then_space_frees(slice, &expected, &[watcher]).await;
            log.close().await.unwrap();
        });
    }
}
