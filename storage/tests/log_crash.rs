//! Crash test: a child process appends and is SIGKILLed at random moments, in the middle of
//! group commits (durable) or between flushes (interval); the recovered log must hold every
//! acknowledged batch, in both write modes and both durability modes (SIGKILL keeps the page
//! cache and the device's cache, so interval mode loses nothing acknowledged either).
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    rc::Rc,
    time::Duration,
};

use bytes::BytesMut;
use common::*;
use rand::{Rng, SeedableRng};
use sluice_storage::{batch::stamp, Durability, LogConfig, PartitionLog, WriteMode};

/// Set in the child: the log directory.
const CHILD_DIR_ENV: &str = "SLUICE_CRASH_CHILD_DIR";
/// Set in the child: "buffered" or "direct".
const CHILD_MODE_ENV: &str = "SLUICE_CRASH_CHILD_MODE";
/// Set in the child: "durable" or "interval".
const CHILD_DURABILITY_ENV: &str = "SLUICE_CRASH_CHILD_DURABILITY";
/// Kill rounds per write mode and durability (four combinations: 32 rounds in all).
const ROUNDS_PER_MODE: usize = 8;
/// Both durability modes, with a flush interval that keeps unflushed bytes around.
const DURABILITIES: [Durability; 2] = [
    Durability::Durable,
    Durability::Interval {
        flush_bytes_max: 32 * 1024,
        flush_ms_max: 1000,
    },
];
/// Appending tasks in the child, so several appends are in flight (group commits).
const CHILD_WRITERS: u64 = 4;
/// Name of the test, which the child runs again.
const TEST_NAME: &str = "sigkill_keeps_every_acknowledged_batch";

fn crash_config(mode: WriteMode, durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes_max: 48 * 1024,
        durability,
        ..config(mode)
    }
}

fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Durable => "durable",
        Durability::Interval { .. } => "interval",
    }
}

/// The batch a writer appends for `seed`: its size and contents follow from the seed, which the
/// child prints with the offsets it got, so the parent can check every acknowledged batch.
fn batch_for(seed: u64) -> BytesMut {
    let records = 1 + (seed % 4) as usize;
    let value_len = ((seed * 131) % 2500) as usize;
    batch(records, value_len, (seed % 251) as u8, seed as i64)
}

/// Child side: append forever from several tasks (so kills land inside group commits and
/// between flushes), printing each acknowledged batch as "ACK base last seed".
fn child(dir: &Path, mode: WriteMode, durability: Durability) {
    let dir = dir.to_path_buf();
    run(async move {
        let log = Rc::new(
            PartitionLog::open(&dir, crash_config(mode, durability))
                .await
                .unwrap(),
        );
        let start = log.log_end_offset() as u64;
        let writers: Vec<_> = (0..CHILD_WRITERS)
            .map(|writer| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    for round in 0.. {
                        let seed = (start + round) * CHILD_WRITERS + writer;
                        let info = log.append(batch_for(seed), 7).await.unwrap();
                        println!("ACK {} {} {seed}", info.base_offset, info.last_offset);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await;
        }
    });
}

/// An acknowledged batch: its offsets and seed.
type Acked = (i64, i64, u64);

/// Runs a child for a random time, kills it with SIGKILL, returns what it acknowledged.
fn kill_round(
    dir: &Path,
    mode: WriteMode,
    durability: Durability,
    rng: &mut impl Rng,
) -> Vec<Acked> {
    let mode_name = match mode {
        WriteMode::Buffered => "buffered",
        WriteMode::Direct => "direct",
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_MODE_ENV, mode_name)
        .env(CHILD_DURABILITY_ENV, durability_name(durability))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let fields: Vec<&str> = line[at..].split_whitespace().collect();
            if let ["ACK", base, last, seed] = fields.as_slice() {
                acked.push((
                    base.parse().unwrap(),
                    last.parse().unwrap(),
                    seed.parse().unwrap(),
                ));
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(rng.gen_range(30..250)));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

/// Parent side: reopen, check that the log is valid and contiguous and holds every batch
/// acknowledged so far byte for byte, append once (remembered as acknowledged).
fn verify(dir: &Path, mode: WriteMode, durability: Durability, acked: &mut HashMap<i64, Acked>) {
    let dir = dir.to_path_buf();
    let expected = acked.clone();
    let appended = run(async move {
        let log = PartitionLog::open(&dir, crash_config(mode, durability))
            .await
            .unwrap();
        let end = log.log_end_offset();
        let batches = read_all(&log).await;
        let mut next = 0;
        let mut found = 0;
        for (header, bytes) in &batches {
            assert_eq!(header.base_offset, next, "offsets must be contiguous");
            if let Some(&(_, last, seed)) = expected.get(&next) {
                assert_eq!(header.last_offset(), last);
                let mut wanted = batch_for(seed);
                stamp(&mut wanted, next, 7).unwrap();
                assert_eq!(
                    bytes,
                    &wanted[..],
                    "batch at {next} differs from what was acked"
                );
                found += 1;
            }
            next = header.last_offset() + 1;
        }
        assert_eq!(next, end);
        assert_eq!(
            found,
            expected.len(),
            "lost acknowledged batches: log ends at {end}"
        );
        let seed = (1 << 40) + end as u64;
        let info = log.append(batch_for(seed), 7).await.unwrap();
        assert_eq!(
            info.base_offset, end,
            "appends must continue at the recovered end"
        );
        log.close().await.unwrap();
        (info.base_offset, info.last_offset, seed)
    });
    acked.insert(appended.0, appended);
}

// Proves that after SIGKILL at random moments (8 rounds for each write mode and durability,
// with four appending tasks so kills land inside group commits) the reopened log is valid and
// contiguous, holds every acknowledged batch byte for byte, and appends continue at its end.
#[test]
fn sigkill_keeps_every_acknowledged_batch() {
    if let (Ok(dir), Ok(mode), Ok(durability)) = (
        std::env::var(CHILD_DIR_ENV),
        std::env::var(CHILD_MODE_ENV),
        std::env::var(CHILD_DURABILITY_ENV),
    ) {
        let mode = if mode == "direct" {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        };
        let durability = DURABILITIES
            .into_iter()
            .find(|candidate| durability_name(*candidate) == durability)
            .unwrap();
        child(Path::new(&dir), mode, durability);
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x51_u64);
    for mode in MODES {
        for durability in DURABILITIES {
            let dir = tempfile::tempdir().unwrap();
            let mut acked = HashMap::new();
            let mut total_acks = 0;
            for _ in 0..ROUNDS_PER_MODE {
                let round = kill_round(dir.path(), mode, durability, &mut rng);
                total_acks += round.len();
                acked.extend(round.into_iter().map(|entry| (entry.0, entry)));
                verify(dir.path(), mode, durability, &mut acked);
            }
            assert!(
                total_acks > 0,
                "{mode:?} {durability:?}: the child never acknowledged an append"
            );
            assert!(
                log_paths(dir.path()).len() > 1,
                "{mode:?} {durability:?}: the test should cross segment rolls"
            );
        }
    }
}
