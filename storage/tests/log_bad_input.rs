//! Bad input and a full disk: typed errors, and the log stays exactly as it was.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use bytes::BytesMut;
use common::*;
use sluice_storage::{
    batch::{stamp, BatchError},
    LogConfig, PartitionLog, StorageError, WriteMode,
};

/// Set in the child of the disk-full test: the log directory.
const CHILD_DIR_ENV: &str = "SLUICE_DISK_FULL_CHILD_DIR";
/// Set in the child of the disk-full test: "buffered" or "direct".
const CHILD_MODE_ENV: &str = "SLUICE_DISK_FULL_CHILD_MODE";
/// RLIMIT_FSIZE of the child: no file may grow past this many bytes.
const FILE_SIZE_LIMIT_BYTES: u64 = 100_000;
/// Appends the disk-full child makes after space came back; each must succeed.
const RECOVERY_APPENDS: u8 = 3;
/// Name of the disk-full test, which the child runs again.
const DISK_FULL_TEST: &str = "disk_full_fails_the_append_and_keeps_the_log";

/// Appends that must fail, each with a check of the error it gets.
type BadCase = (&'static str, BytesMut, fn(&StorageError) -> bool);

fn bad_cases(valid: &BytesMut, config: &LogConfig) -> Vec<BadCase> {
    let mut bad_crc = valid.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let mut bad_magic = valid.clone();
    bad_magic[16] = 1;
    let torn = BytesMut::from(&valid[..valid.len() - 5]);
    let oversized = batch(1, config.batch_bytes_max, 1, 0);
    let mut good_then_bad = valid.clone();
    good_then_bad.extend_from_slice(&bad_crc);
    vec![
        ("bad crc", bad_crc, |error| {
            matches!(
                error,
                StorageError::Batch {
                    source: BatchError::CrcMismatch { .. },
                    ..
                }
            )
        }),
        ("wrong magic", bad_magic, |error| {
            matches!(
                error,
                StorageError::Batch {
                    source: BatchError::BadMagic(1),
                    ..
                }
            )
        }),
        ("length past the buffer", torn, |error| {
            matches!(
                error,
                StorageError::Batch {
                    source: BatchError::Truncated { .. },
                    ..
                }
            )
        }),
        ("over batch_bytes_max", oversized, |error| {
            matches!(
                error,
                StorageError::Batch {
                    source: BatchError::TooLarge { .. },
                    ..
                }
            )
        }),
        (
            "valid then bad",
            good_then_bad,
            |error| matches!(error, StorageError::Batch { position, source: BatchError::CrcMismatch { .. } } if *position > 0),
        ),
        ("empty", BytesMut::new(), |error| {
            matches!(error, StorageError::EmptyAppend)
        }),
    ]
}

// Proves malformed appends (bad CRC, wrong magic, length past the buffer, oversized, a bad
// batch after a good one, empty) fail with typed errors and leave the log unchanged: same end
// offset, same bytes, later appends at the same offset.
#[test]
fn bad_batches_are_rejected_and_change_nothing() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = config(mode);
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            for i in 0..10 {
                log.append(batch(2, 500, i, 0), 0).await.unwrap();
            }
            let before = read_all(&log).await;
            let end = log.log_end_offset();
            let valid = batch(2, 300, 7, 0);
            for (name, data, expected) in bad_cases(&valid, &config) {
                let error = log.append(data, 0).await.expect_err(name);
                assert!(expected(&error), "{name}: unexpected error {error:?}");
                assert_eq!(log.log_end_offset(), end, "{name}");
                assert_eq!(read_all(&log).await, before, "{name}");
            }
            let info = log.append(valid, 0).await.unwrap();
            assert_eq!(info.base_offset, end);
            log.close().await.unwrap();
        });
    }
}

// Proves follower appends must continue the log exactly and may not go back in epoch, and that
// a leader append with an epoch older than the log's is refused; nothing changes on refusal.
#[test]
fn replicated_appends_are_checked() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let mut first = batch(3, 100, 1, 0);
            stamp(&mut first, 0, 4).unwrap();
            let info = log.append_replicated(first).await.unwrap();
            assert_eq!((info.base_offset, info.log_end_offset), (0, 3));
            let mut gap = batch(1, 100, 2, 0);
            stamp(&mut gap, 5, 4).unwrap();
            assert!(matches!(
                log.append_replicated(gap).await,
                Err(StorageError::NonContiguous {
                    expected: 3,
                    found: 5,
                    ..
                })
            ));
            let mut pair = batch(2, 100, 2, 0);
            stamp(&mut pair, 3, 4).unwrap();
            let mut overlap = batch(1, 100, 2, 0);
            stamp(&mut overlap, 4, 4).unwrap();
            pair.extend_from_slice(&overlap);
            assert!(matches!(
                log.append_replicated(pair).await,
                Err(StorageError::NonContiguous {
                    expected: 5,
                    found: 4,
                    ..
                })
            ));
            let mut stale = batch(1, 100, 2, 0);
            stamp(&mut stale, 3, 2).unwrap();
            assert!(matches!(
                log.append_replicated(stale).await,
                Err(StorageError::StaleEpoch {
                    epoch: 2,
                    latest: 4
                })
            ));
            assert!(matches!(
                log.append(batch(1, 10, 0, 0), 3).await,
                Err(StorageError::StaleEpoch {
                    epoch: 3,
                    latest: 4
                })
            ));
            assert_eq!(log.log_end_offset(), 3);
            let mut next = batch(1, 100, 2, 0);
            stamp(&mut next, 3, 5).unwrap();
            log.append_replicated(next).await.unwrap();
            assert_eq!(log.latest_epoch(), Some(5));
            assert_eq!(log.end_offset_for_epoch(4), Some((4, 3)));
            log.close().await.unwrap();
        });
    }
}

fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Buffered => "buffered",
        WriteMode::Direct => "direct",
    }
}

fn disk_full_config(mode: WriteMode) -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 20,
        ..config(mode)
    }
}

/// Child side: cap file sizes, append until the append fails, check the log still reads and
/// the failure changed nothing, and report over stdout.
fn disk_full_child(dir: &Path, mode: WriteMode) {
    set_file_size_limit(FILE_SIZE_LIMIT_BYTES);
    // SAFETY: a plain libc call; ignoring SIGXFSZ makes writes past the limit fail with EFBIG
    // instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&dir, disk_full_config(mode))
            .await
            .unwrap();
        let mut i = 0u8;
        let error = loop {
            match log.append(batch(2, 3000, i, 0), 0).await {
                Ok(info) => println!("ACK {} {}", info.base_offset, info.last_offset),
                Err(error) => break error,
            }
            i = i.wrapping_add(1);
        };
        assert!(
            matches!(error, StorageError::Io { .. }),
            "expected Io, got {error:?}"
        );
        println!("FAILED {error}");
        let end = log.log_end_offset();
        let before = read_all(&log).await;
        assert!(log.append(batch(2, 3000, 0, 0), 0).await.is_err());
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log).await, before);
        let small = log.append(batch(1, 10, 0, 0), 0).await;
        if let Ok(info) = small {
            println!("ACK {} {}", info.base_offset, info.last_offset);
        }
        println!("READABLE {}", log.log_end_offset());
        // Space comes back: appends work again, at the next offset, with nothing reopened.
        set_file_size_limit(libc::RLIM_INFINITY);
        for fill in 0..RECOVERY_APPENDS {
            let info = log.append(batch(2, 3000, fill, 0), 0).await.unwrap();
            println!("ACK {} {}", info.base_offset, info.last_offset);
        }
        log.close().await.unwrap();
    });
}

/// Sets RLIMIT_FSIZE (soft limit; the hard one stays unlimited so it can be raised again).
fn set_file_size_limit(bytes: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a plain libc call with a valid pointer.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
}

// Proves that when the disk fills (RLIMIT_FSIZE in a child) the append fails with an Io error,
// the log stays readable and unchanged, appends work again once space comes back, and it
// reopens with every acknowledged batch.
#[test]
fn disk_full_fails_the_append_and_keeps_the_log() {
    if let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_MODE_ENV)) {
        let mode = if mode == "direct" {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        };
        disk_full_child(Path::new(&dir), mode);
        return;
    }
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args([DISK_FULL_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_MODE_ENV, mode_name(mode))
            .stderr(Stdio::inherit())
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success(), "{mode:?}: child failed");
        let mut acknowledged_end = 0;
        let mut failed = false;
        let mut readable = None;
        let mut recovered = 0;
        for line in BufReader::new(&output.stdout[..]).lines() {
            let line = line.unwrap();
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["ACK", _, last] => {
                    acknowledged_end = last.parse::<i64>().unwrap() + 1;
                    recovered += u8::from(readable.is_some());
                }
                ["FAILED", ..] => failed = true,
                ["READABLE", end] => {
                    readable = Some(end.parse::<i64>().unwrap());
                    assert_eq!(readable, Some(acknowledged_end), "{mode:?}");
                }
                _ => {}
            }
        }
        assert!(failed, "{mode:?}: the append never failed");
        assert!(
            acknowledged_end > 0,
            "{mode:?}: nothing was acknowledged before the disk filled"
        );
        assert!(
            readable.is_some(),
            "{mode:?}: the log was not readable after the failure"
        );
        assert_eq!(
            recovered, RECOVERY_APPENDS,
            "{mode:?}: appends did not recover"
        );
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, disk_full_config(mode))
                .await
                .unwrap();
            assert_eq!(log.log_end_offset(), acknowledged_end);
            let batches = read_all(&log).await;
            assert_eq!(
                batches.last().unwrap().0.last_offset() + 1,
                acknowledged_end
            );
            let info = log.append(batch(2, 3000, 0, 0), 0).await.unwrap();
            assert_eq!(info.base_offset, acknowledged_end);
            log.close().await.unwrap();
        });
    }
}
