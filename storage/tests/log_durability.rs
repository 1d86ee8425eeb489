//! Durable acknowledgement: group commit, a failed fsync taking the log offline (never
//! acknowledging or exposing the batch, other logs unaffected), and a torn write at a crash
//! that recovery must cut.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    rc::Rc,
};

use common::*;
use sluice_storage::{fault, Durability, LogConfig, PartitionLog, StorageError, WriteMode};

/// errno of the injected fsync failure (EIO, what a failing device reports).
const EIO: i32 = 5;
/// Set in the child of the torn-write test: the log directory.
const TORN_CHILD_DIR_ENV: &str = "SLUICE_TORN_CHILD_DIR";
/// Set in the child of the torn-write test: "buffered" or "direct".
const TORN_CHILD_MODE_ENV: &str = "SLUICE_TORN_CHILD_MODE";
/// Name of the torn-write test, which the child runs again.
const TORN_TEST: &str = "torn_write_at_a_crash_is_cut_by_recovery";
/// Whole batches the torn-write child appends before the torn one.
const TORN_WHOLE_BATCHES: i64 = 7;
/// How long the overlap test waits for a write to reach the file.
const WRITE_WAIT_MS: u64 = 10_000;
/// How often the overlap test looks at the file.
const WRITE_POLL_MS: u64 = 5;
/// Value bytes of each batch of the overlap test, long enough to find in the file.
const MARKED_VALUE_BYTES: usize = 300;

fn durable(mode: WriteMode) -> LogConfig {
    LogConfig {
        durability: Durability::Durable,
        ..config(mode)
    }
}

fn is_offline(error: &StorageError) -> bool {
    matches!(error, StorageError::Offline { .. })
}

// Proves group commit under concurrency: 64 appends issued at once in durable mode all succeed
// with contiguous offsets, each returns only once the flushed offset covers it, and everything
// reads back after a reopen.
#[test]
fn concurrent_durable_appends_share_commits() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = Rc::new(PartitionLog::open(&path, durable(mode)).await.unwrap());
            let tasks: Vec<_> = (0..64u8)
                .map(|i| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let info = log.append(batch(2, 300, i, 0), 3).await.unwrap();
                        assert!(log.flushed_offset() > info.last_offset);
                        info
                    })
                })
                .collect();
            let mut infos = Vec::new();
            for task in tasks {
                infos.push(task.await);
            }
            infos.sort_by_key(|info| info.base_offset);
            for (at, info) in infos.iter().enumerate() {
                assert_eq!(
                    info.base_offset,
                    2 * at as i64,
                    "offsets must be contiguous"
                );
            }
            assert_eq!(log.log_end_offset(), 128);
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, durable(mode)).await.unwrap();
            assert_eq!(read_all(&log).await.len(), 64);
            log.close().await.unwrap();
        });
    }
}

/// True when a `.log` file in `dir` holds a run of `MARKED_VALUE_BYTES` bytes of `mark`.
fn file_holds(dir: &Path, mark: u8) -> bool {
    let run = vec![mark; MARKED_VALUE_BYTES];
    log_files(dir)
        .iter()
        .any(|(_, bytes)| bytes.windows(run.len()).any(|window| window == run))
}

// Proves an append's write does not wait for the previous append's fsync (it overlaps it and
// shares the next commit round): with the log's fsyncs held, the second of two appends reaches
// the file while neither is acknowledged or visible; released, both are acknowledged in order.
#[test]
fn next_write_overlaps_the_previous_fsync() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = Rc::new(PartitionLog::open(&path, durable(mode)).await.unwrap());
            // The first append also waits for the segment's first space preparation, whose
            // fsync must not be held.
            log.append(batch(2, MARKED_VALUE_BYTES, 0xA0, 0), 0)
                .await
                .unwrap();
            let acknowledged_end = log.log_end_offset();
            fault::hold_syncs(&path);
            let appends: Vec<_> = [0xA1u8, 0xA2]
                .into_iter()
                .map(|mark| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        log.append(batch(2, MARKED_VALUE_BYTES, mark, 0), 0).await
                    })
                })
                .collect();
            let mut waited_ms = 0;
            while !file_holds(&path, 0xA2) {
                assert!(
                    waited_ms < WRITE_WAIT_MS,
                    "{mode:?}: the second write waited for the first append's fsync"
                );
                glommio::timer::sleep(std::time::Duration::from_millis(WRITE_POLL_MS)).await;
                waited_ms += WRITE_POLL_MS;
            }
            assert!(file_holds(&path, 0xA1));
            assert_eq!(
                log.log_end_offset(),
                acknowledged_end,
                "exposed before its fsync"
            );
            assert_eq!(log.flushed_offset(), acknowledged_end);
            fault::release_syncs(&path);
            let mut bases = Vec::new();
            for append in appends {
                bases.push(append.await.unwrap().base_offset);
            }
            assert_eq!(bases, [acknowledged_end, acknowledged_end + 2]);
            assert_eq!(log.flushed_offset(), acknowledged_end + 4);
            log.close().await.unwrap();
        });
    }
}

// Proves a failed fsync (injected EIO) in durable mode takes that log offline without
// acknowledging or exposing the batch (its append fails, the log end does not move, reads and
// later appends answer Offline), while another log on the same executor keeps appending and
// reading; reopening recovers the offline log with every acknowledged batch.
#[test]
fn failed_fsync_takes_only_that_log_offline() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let (failing, healthy) = (dir.path().join("a-0"), dir.path().join("b-0"));
        run(async move {
            let log = PartitionLog::open(&failing, durable(mode)).await.unwrap();
            let other = PartitionLog::open(&healthy, durable(mode)).await.unwrap();
            for i in 0..3 {
                log.append(batch(2, 100, i, 0), 0).await.unwrap();
            }
            let acknowledged_end = log.log_end_offset();
            fault::fail_next_sync(&failing, EIO);
            let error = log.append(batch(2, 100, 9, 0), 0).await.unwrap_err();
            assert!(is_offline(&error), "{mode:?}: {error}");
            assert_eq!(
                log.log_end_offset(),
                acknowledged_end,
                "the batch was exposed"
            );
            assert!(log.offline().is_some());
            assert!(is_offline(&log.read(0, 1 << 20, i64::MAX).unwrap_err()));
            let later = log.append(batch(1, 10, 1, 0), 0).await.unwrap_err();
            assert!(is_offline(&later), "{later}");

            let info = other.append(batch(3, 100, 5, 0), 0).await.unwrap();
            assert_eq!(info.base_offset, 0);
            assert_eq!(read_all(&other).await.len(), 1);
            other.close().await.unwrap();

            assert!(is_offline(&log.close().await.unwrap_err()));
            let log = PartitionLog::open(&failing, durable(mode)).await.unwrap();
            assert!(log.offline().is_none());
            assert!(log.log_end_offset() >= acknowledged_end);
            let batches = read_all(&log).await;
            assert!(batches.len() >= 3);
            let info = log.append(batch(1, 10, 2, 0), 0).await.unwrap();
            assert_eq!(info.base_offset, log.log_end_offset() - 1);
            log.close().await.unwrap();
        });
    }
}

// Proves a failed fsync under interval durability (the flush) also takes the log offline: the
// flush fails, and appends and reads then answer Offline instead of retrying over lost pages.
#[test]
fn failed_interval_flush_takes_the_log_offline() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            log.append(batch(2, 100, 1, 0), 0).await.unwrap();
            fault::fail_next_sync(&path, EIO);
            let error = log.flush().await.unwrap_err();
            assert!(is_offline(&error), "{error}");
            assert!(is_offline(&log.flush().await.unwrap_err()));
            assert!(is_offline(
                &log.append(batch(1, 10, 1, 0), 0).await.unwrap_err()
            ));
            assert!(is_offline(&log.read(0, 1024, i64::MAX).unwrap_err()));
        });
    }
}

fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Buffered => "buffered",
        WriteMode::Direct => "direct",
    }
}

/// The torn batch: several blocks long, so half of its write ends inside it.
fn torn_batch() -> bytes::BytesMut {
    batch(4, 5000, 0xAB, 0)
}

/// Child side: appends whole batches (printing the acknowledged end), arms the torn write, and
/// appends once more: the process dies inside that write.
fn torn_child(dir: &Path, mode: WriteMode) {
    let dir = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&dir, durable(mode)).await.unwrap();
        for i in 0..TORN_WHOLE_BATCHES {
            log.append(batch(1, 700, i as u8, 0), 1).await.unwrap();
        }
        println!("ACKED {} {}", log.log_end_offset(), log.size_bytes());
        fault::tear_next_write_and_die(&dir);
        log.append(torn_batch(), 1).await.unwrap();
        println!("SURVIVED");
    });
}

// Proves a deterministic crash in the middle of a write (half of the batch on disk, then
// SIGKILL) is found and cut by recovery: the recovery summary names the cut at the end of the
// acknowledged batches with the torn bytes removed, the log ends at the acknowledged end, and
// appends continue there; in both write modes.
#[test]
fn torn_write_at_a_crash_is_cut_by_recovery() {
    if let (Ok(dir), Ok(mode)) = (
        std::env::var(TORN_CHILD_DIR_ENV),
        std::env::var(TORN_CHILD_MODE_ENV),
    ) {
        let mode = if mode == "direct" {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        };
        torn_child(Path::new(&dir), mode);
        return;
    }
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args([TORN_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(TORN_CHILD_DIR_ENV, dir.path())
            .env(TORN_CHILD_MODE_ENV, mode_name(mode))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let lines: Vec<String> = BufReader::new(&output.stdout[..])
            .lines()
            .map(Result::unwrap)
            .collect();
        assert!(
            !lines.iter().any(|line| line.contains("SURVIVED")),
            "{mode:?}: the child outlived its torn write"
        );
        let acked = lines
            .iter()
            .find_map(|line| line.find("ACKED ").map(|at| &line[at + "ACKED ".len()..]))
            .unwrap_or_else(|| panic!("{mode:?}: the child printed no ACKED line: {lines:?}"));
        let fields: Vec<u64> = acked
            .split(' ')
            .map(|field| field.parse().unwrap())
            .collect();
        let (acked_end, acked_bytes) = (fields[0] as i64, fields[1]);
        assert_eq!(acked_end, TORN_WHOLE_BATCHES);
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, durable(mode)).await.unwrap();
            let summary = log.recovered().clone();
            let (cut_file, cut_position) = summary
                .cut_at
                .clone()
                .unwrap_or_else(|| panic!("{mode:?}: recovery cut nothing: {summary:?}"));
            assert_eq!(
                cut_position, acked_bytes,
                "{mode:?}: cut at the wrong place"
            );
            assert!(cut_file.ends_with("00000000000000000000.log"));
            assert!(
                summary.bytes_cut >= torn_batch().len() as u64 / 4,
                "{mode:?}: {summary:?}"
            );
            assert_eq!(log.log_end_offset(), acked_end);
            assert_eq!(log.size_bytes(), acked_bytes);
            assert_eq!(read_all(&log).await.len(), TORN_WHOLE_BATCHES as usize);
            let info = log.append(batch(1, 10, 1, 0), 1).await.unwrap();
            assert_eq!(info.base_offset, acked_end);
            log.close().await.unwrap();
        });
    }
}
