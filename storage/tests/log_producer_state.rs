//! Idempotent-producer state in the partition log: the leader's sequence check (duplicates
//! answered with their original offsets, a duplicate racing its original appended once, gaps
//! and fenced epochs refused), followers recording replicated batches, truncation, and the
//! state rebuilt at open from the newest snapshot plus the log (after a clean close, after a
//! crash, and after SIGKILL between a roll and its snapshot).
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, Stdio},
};

use bytes::BytesMut;
use common::*;
use sluice_storage::{
    batch::{BatchBuilder, BatchHeader, Compression},
    compaction::crash_point,
    producer_state::ProducerStateError,
    PartitionLog, StorageError, WriteMode,
};

const PRODUCER: i64 = 4242;
/// Set in the SIGKILL child: the log directory.
const CHILD_DIR_ENV: &str = "SLUICE_PRODUCER_SNAPSHOT_CRASH_DIR";
const CRASH_TEST_NAME: &str = "sigkill_between_roll_and_snapshot_keeps_dedup";

/// One batch of `records` records of producer `PRODUCER` in `epoch` from `sequence`.
fn producer_batch(epoch: i16, sequence: i32, records: usize) -> BytesMut {
    let mut builder = BatchBuilder::new(Compression::None).with_producer(PRODUCER, epoch, sequence);
    for record in 0..records {
        let value = vec![b'v'; 900];
        builder.push(now_ms() + record as i64, Some(b"k"), Some(&value), &[]);
    }
    builder.build().unwrap()
}

fn now_ms() -> i64 {
    common::compaction::now_ms()
}

fn producer_error(result: Result<sluice_storage::AppendInfo, StorageError>) -> ProducerStateError {
    match result {
        Err(StorageError::Producer(error)) => error,
        other => panic!("expected a producer error, got {other:?}"),
    }
}

#[test]
fn leader_dedupes_retries_and_refuses_gaps_and_old_epochs() {
    // Proves the leader append applies the sequence rules: a retry gets its original offsets
    // and appends nothing, a gap and an old epoch are refused, in both write modes.
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        run(async move {
            let log = PartitionLog::open(dir.path(), config(mode)).await.unwrap();
            let first = log.append(producer_batch(0, 0, 3), 0).await.unwrap();
            let second = log.append(producer_batch(0, 3, 2), 0).await.unwrap();
            let retry = log.append(producer_batch(0, 0, 3), 0).await.unwrap();
            assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
            assert_eq!(log.log_end_offset(), 5, "a retry appends nothing");
            let gap = producer_error(log.append(producer_batch(0, 9, 1), 0).await);
            assert!(matches!(
                gap,
                ProducerStateError::OutOfOrderSequence { expected: 5, .. }
            ));
            log.append(producer_batch(1, 0, 1), 0).await.unwrap();
            let fenced = producer_error(log.append(producer_batch(0, 5, 1), 0).await);
            assert!(matches!(
                fenced,
                ProducerStateError::InvalidProducerEpoch { current: 1, .. }
            ));
            assert_eq!((first.base_offset, second.base_offset), (0, 3));
            assert_eq!(log.log_end_offset(), 6);
            log.close().await.unwrap();
        });
    }
}

#[test]
fn a_retry_racing_its_original_is_appended_once() {
    // Proves the check and the append are atomic: the original and its retry are started
    // together, both answer the same offsets, and the log holds the batch once.
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        run(async move {
            let log = std::rc::Rc::new(PartitionLog::open(dir.path(), config(mode)).await.unwrap());
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    log.append(producer_batch(0, 0, 4), 0).await.unwrap()
                }));
            }
            for task in tasks {
                let info = task.await;
                assert_eq!((info.base_offset, info.last_offset), (0, 3));
            }
            assert_eq!(log.log_end_offset(), 4);
            assert_eq!(read_all(&log).await.len(), 1);
            log.close().await.unwrap();
        });
    }
}

#[test]
fn followers_record_replicated_batches_and_truncation_forgets_cut_ones() {
    // Proves a follower's state comes from replicated batches (so as a new leader it dedupes a
    // retry), and that after truncating a batch away its retry is appended again.
    let dir = tempfile::tempdir().unwrap();
    run(async move {
        let leader_dir = dir.path().join("leader");
        let leader = PartitionLog::open(&leader_dir, config(WriteMode::Buffered))
            .await
            .unwrap();
        leader.append(producer_batch(0, 0, 2), 3).await.unwrap();
        leader.append(producer_batch(0, 2, 2), 3).await.unwrap();
        let bytes = leader
            .read_bytes(0, 1 << 20, leader.log_end_offset())
            .await
            .unwrap();
        let follower = PartitionLog::open(dir.path().join("follower"), config(WriteMode::Buffered))
            .await
            .unwrap();
        follower
            .append_replicated(BytesMut::from(&bytes[..]))
            .await
            .unwrap();
        let retry = follower.append(producer_batch(0, 2, 2), 4).await.unwrap();
        assert_eq!((retry.base_offset, follower.log_end_offset()), (2, 4));
        follower.truncate_to(2).await.unwrap();
        let again = follower.append(producer_batch(0, 2, 2), 4).await.unwrap();
        assert_eq!((again.base_offset, follower.log_end_offset()), (2, 4));
        follower.truncate_to(0).await.unwrap();
        assert_eq!(
            follower.producer_count(),
            0,
            "an emptied log knows no producer"
        );
        let unknown = producer_error(follower.append(producer_batch(0, 4, 1), 4).await);
        assert!(matches!(
            unknown,
            ProducerStateError::UnknownProducerId { .. }
        ));
        leader.close().await.unwrap();
        follower.close().await.unwrap();
    });
}

/// Appends `batches` producer batches of one record from sequence 0; returns the offsets.
async fn append_sequence(log: &PartitionLog, batches: i32) -> Vec<i64> {
    let mut offsets = Vec::new();
    for sequence in 0..batches {
        let info = log.append(producer_batch(0, sequence, 1), 0).await.unwrap();
        offsets.push(info.base_offset);
    }
    offsets
}

#[test]
fn open_rebuilds_from_the_newest_snapshot() {
    // Proves the state survives a reopen: after a crash (no close) from a roll's snapshot,
    // replaying only the batches after it; after a clean close from the close snapshot with
    // nothing replayed; either way a retry of every retained batch is answered, not appended.
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let offsets = append_sequence(&log, 200).await;
            assert!(log.segment_count() > 2, "the test needs rolls");
            log.flush().await.unwrap();
            // A crash: the log is dropped without close (no clean marker, no close snapshot).
            drop(log);
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let rebuild = log.recovered().producer_rebuild;
            let active_base = 200 - active_segment_batches(&log).await;
            let snapshot = rebuild.snapshot_offset.expect("a roll wrote a snapshot");
            assert!(
                snapshot > 0 && snapshot <= active_base,
                "snapshot {snapshot}"
            );
            assert_eq!(rebuild.batches_replayed, (200 - snapshot) as u64);
            for sequence in 195..200 {
                let info = log.append(producer_batch(0, sequence, 1), 0).await.unwrap();
                assert_eq!(info.base_offset, offsets[sequence as usize]);
            }
            assert_eq!(log.log_end_offset(), 200);
            log.append(producer_batch(0, 200, 1), 0).await.unwrap();
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let rebuild = log.recovered().producer_rebuild;
            assert_eq!(rebuild.snapshot_offset, Some(201));
            assert_eq!(rebuild.batches_replayed, 0);
            let retry = log.append(producer_batch(0, 200, 1), 0).await.unwrap();
            assert_eq!((retry.base_offset, log.log_end_offset()), (200, 201));
            log.close().await.unwrap();
        });
    }
}

/// Batches (one record each) in the active segment: the offsets from its base to the end.
async fn active_segment_batches(log: &PartitionLog) -> i64 {
    let headers: Vec<BatchHeader> = read_all(log).await.into_iter().map(|(h, _)| h).collect();
    let dir = log.dir().to_path_buf();
    let newest_base = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")
                .and_then(|stem| stem.parse::<i64>().ok())
        })
        .max()
        .unwrap();
    headers
        .iter()
        .filter(|h| h.base_offset >= newest_base)
        .count() as i64
}

#[test]
fn sigkill_between_roll_and_snapshot_keeps_dedup() {
    // Proves a crash after a roll but before its snapshot loses no producer state: a child
    // appends until a roll's seal reaches the armed point and SIGKILLs itself; the reopened log
    // replays from the older snapshot, dedupes the last acknowledged batch and accepts the next.
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        crash_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            CRASH_TEST_NAME,
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged: Vec<i64> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(offset) = line.strip_prefix("ACKED ") {
            acknowledged.push(offset.trim().parse().unwrap());
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child must die at the point"
    );
    assert!(
        acknowledged.len() > 10,
        "the child acknowledged appends before the roll"
    );
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(&path, config(WriteMode::Buffered))
            .await
            .unwrap();
        let rebuild = log.recovered().producer_rebuild;
        assert_eq!(
            rebuild.snapshot_offset, None,
            "the only roll died before its snapshot"
        );
        let end = log.log_end_offset();
        let last_sequence = i32::try_from(end - 1).unwrap();
        let last_acked = *acknowledged.last().unwrap();
        assert!(end > last_acked, "every acknowledged batch survived");
        let retry = log
            .append(producer_batch(0, last_sequence, 1), 0)
            .await
            .unwrap();
        assert_eq!((retry.base_offset, log.log_end_offset()), (end - 1, end));
        let next = log
            .append(producer_batch(0, last_sequence + 1, 1), 0)
            .await
            .unwrap();
        assert_eq!(next.base_offset, end);
        log.close().await.unwrap();
    });
}

/// The SIGKILL child: one-record producer batches from sequence 0, each acknowledged on
/// stdout, until the first roll's seal kills the process before its snapshot.
fn crash_child(dir: &Path) {
    let dir = dir.to_path_buf();
    crash_point::arm(crash_point::ROLL_BEFORE_PRODUCER_SNAPSHOT);
    run(async move {
        let log = PartitionLog::open(&dir, config(WriteMode::Buffered))
            .await
            .unwrap();
        for sequence in 0.. {
            let info = log.append(producer_batch(0, sequence, 1), 0).await.unwrap();
            println!("ACKED {}", info.base_offset);
        }
    });
}
