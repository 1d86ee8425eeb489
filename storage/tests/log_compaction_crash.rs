//! Crash test of compaction: a child process cleans a compacted log and is killed with SIGKILL,
//! at each named point of the segment swap and at random moments of a write-and-clean loop; the
//! reopened log must be readable, hold only records that were written (at their offsets), and
//! hold every record that was newest for its key. Both write modes.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use common::compaction::*;
use common::*;
use rand::{Rng, SeedableRng};
use sluice_storage::{batch::Compression, compaction::crash_point, PartitionLog, WriteMode};

/// Set in the child: the log directory.
const CHILD_DIR_ENV: &str = "SLUICE_COMPACTION_CRASH_DIR";
/// Set in the child: "buffered" or "direct".
const CHILD_MODE_ENV: &str = "SLUICE_COMPACTION_CRASH_MODE";
/// Set in the child: a crash point name, or "random" for the write-and-clean loop.
const CHILD_PLAN_ENV: &str = "SLUICE_COMPACTION_CRASH_PLAN";
/// Name of the test, which the child runs again.
const TEST_NAME: &str = "sigkill_during_cleaning_loses_no_newest_record";
/// Distinct keys: few enough that most records are superseded.
const KEYS: i64 = 37;
/// Offsets the crash-point child writes before it cleans.
const POINT_RECORDS: i64 = 1_500;
/// Random kills per write mode.
const RANDOM_ROUNDS: usize = 4;

/// The record every writer puts at `offset`: the log's content follows from the offsets, so
/// the parent can check any record it finds. Every ninth record is a tombstone.
fn record_at(offset: i64) -> KeyValue {
    let key = format!("key-{}", (offset * 7919) % KEYS).into_bytes();
    let value = (offset % 9 != 4).then(|| format!("value-{offset}").into_bytes());
    (key, value)
}

/// Appends one batch continuing the log: 1 to 3 records, zstd every other batch.
async fn append_next(log: &PartitionLog) {
    let base = log.log_end_offset();
    let records: Vec<KeyValue> = (0..1 + base % 3).map(|i| record_at(base + i)).collect();
    let codec = if base % 2 == 0 {
        Compression::Zstd
    } else {
        Compression::None
    };
    let info = log
        .append(keyed_batch(&records, codec, base), 5)
        .await
        .unwrap();
    assert_eq!(info.base_offset, base);
}

fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Buffered => "buffered",
        WriteMode::Direct => "direct",
    }
}

/// Child side. A crash point: write, make it durable, clean with the point armed (the process
/// dies there). "random": append, flush and report, and every so often roll and clean, until
/// killed.
fn child(dir: &Path, mode: WriteMode, plan: &str) {
    let dir = dir.to_path_buf();
    let plan = plan.to_string();
    run(async move {
        let log = PartitionLog::open(&dir, compact_config(mode))
            .await
            .unwrap();
        let cleaner = cleaner(1 << 20);
        if plan != "random" {
            while log.log_end_offset() < POINT_RECORDS {
                append_next(&log).await;
            }
            roll(&log).await;
            log.flush().await.unwrap();
            println!("DURABLE {}", log.log_end_offset());
            crash_point::arm(&plan);
            cleaner
                .clean(&log, log.log_end_offset(), now_ms())
                .await
                .unwrap();
            println!("SURVIVED");
            return;
        }
        for round in 0u64.. {
            append_next(&log).await;
            if round % 16 == 0 {
                log.flush().await.unwrap();
                println!("DURABLE {}", log.log_end_offset());
            }
            if round % 200 == 199 {
                roll(&log).await;
                cleaner
                    .clean(&log, log.log_end_offset(), now_ms())
                    .await
                    .unwrap();
            }
        }
    });
}

/// Runs a child to its end (a crash point) or for `kill_after` (random), then SIGKILLs it if
/// needed. Returns the last durable end it reported and whether it died of SIGKILL by itself.
fn child_round(
    dir: &Path,
    mode: WriteMode,
    plan: &str,
    kill_after: Option<Duration>,
) -> (i64, bool) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_MODE_ENV, mode_name(mode))
        .env(CHILD_PLAN_ENV, plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut durable = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(end) = line.strip_prefix("DURABLE ") {
                durable = end.trim().parse().unwrap();
            }
        }
        durable
    });
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    let durable = reader.join().unwrap();
    (
        durable,
        kill_after.is_none() && status.signal() == Some(libc::SIGKILL),
    )
}

/// Parent side: reopen and check the log against the records written; then clean to the end
/// and check it holds exactly the newest record of each key. Returns the log end.
fn verify(dir: &Path, mode: WriteMode, durable_end: i64) -> i64 {
    let dir = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&dir, compact_config(mode))
            .await
            .unwrap();
        let end = log.log_end_offset();
        assert!(
            end >= durable_end,
            "{mode:?}: end {end} lost durable records below {durable_end}"
        );
        let model: BTreeMap<i64, KeyValue> =
            (0..end).map(|offset| (offset, record_at(offset))).collect();
        let found = scan(&log).await;
        for (offset, key, value) in &found {
            let (model_key, model_value) = &model[offset];
            assert_eq!(
                key.as_deref(),
                Some(model_key.as_slice()),
                "{mode:?}: key at {offset}"
            );
            assert_eq!(
                value.as_deref(),
                model_value.as_deref(),
                "{mode:?}: value at {offset}"
            );
        }
        let present: BTreeMap<i64, (Option<Bytes>, Option<Bytes>)> = found
            .into_iter()
            .map(|(offset, key, value)| (offset, (key, value)))
            .collect();
        for (offset, _, _) in expected(&model, end, true) {
            assert!(
                present.contains_key(&offset),
                "{mode:?}: lost the newest record of its key at {offset}"
            );
        }
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".cleaned") || name == "cleaner-swap")
            .collect();
        assert!(
            leftovers.is_empty(),
            "{mode:?}: recovery left {leftovers:?}"
        );
        roll(&log).await;
        cleaner(1 << 20).clean(&log, end, now_ms()).await.unwrap();
        assert_eq!(
            scan(&log).await,
            expected(&model, end, true),
            "{mode:?}: clean after recovery"
        );
        log.close().await.unwrap();
        end
    })
}

// Proves that a SIGKILL at every point of the segment swap protocol (and at random moments of a
// write-and-clean loop), in both write modes, leaves a log that reopens, holds only records
// that were written at their offsets, and keeps every record that was newest for its key; and
// that cleaning it again then leaves exactly the newest record per key.
#[test]
fn sigkill_during_cleaning_loses_no_newest_record() {
    if let (Ok(dir), Ok(mode), Ok(plan)) = (
        std::env::var(CHILD_DIR_ENV),
        std::env::var(CHILD_MODE_ENV),
        std::env::var(CHILD_PLAN_ENV),
    ) {
        let mode = if mode == "direct" {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        };
        child(Path::new(&dir), mode, &plan);
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC1EA);
    for mode in MODES {
        for point in crash_point::ALL {
            let dir = tempfile::tempdir().unwrap();
            let (durable, killed) = child_round(dir.path(), mode, point, None);
            assert!(killed, "{mode:?}: the cleaning never reached {point}");
            verify(dir.path(), mode, durable);
        }
        let dir = tempfile::tempdir().unwrap();
        let mut durable_end = 0;
        for _ in 0..RANDOM_ROUNDS {
            let after = Duration::from_millis(rng.gen_range(200..1_500));
            let (durable, _) = child_round(dir.path(), mode, "random", Some(after));
            durable_end = verify(dir.path(), mode, durable.max(durable_end));
        }
        assert!(durable_end > 0, "{mode:?}: the random child never wrote");
    }
}
