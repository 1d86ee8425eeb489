//! Power-loss test: a child process appends to a log on a FUSE filesystem that keeps unsynced
//! writes in memory (`support/unsynced_fs.rs`); the parent kills it at a random moment and
//! cuts the power (drops everything not fsynced), then recovers the log from what survived.
//! SIGKILL alone keeps the page cache and so cannot tell a synced write from an unsynced one;
//! this can. Needs root and /dev/fuse (CI runs as root): without them the test fails.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/unsynced_fs.rs"]
mod unsynced_fs;

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

/// Set in the child: the log directory (the FUSE mount).
const CHILD_DIR_ENV: &str = "SLUICE_POWER_CHILD_DIR";
/// Set in the child: write mode and durability, "direct/durable" for example.
const CHILD_SETUP_ENV: &str = "SLUICE_POWER_CHILD_SETUP";
/// Name of the test, which the child runs again.
const TEST_NAME: &str = "power_cut_loses_nothing_acknowledged_as_durable";
/// Power cuts per write mode and durability.
const CUTS_PER_SETUP: usize = 8;
/// Cuts per setup at most: past `CUTS_PER_SETUP` the test goes on only until a cut dropped
/// something (a cut can land when nothing unsynced is left, e.g. right after a durable fsync).
const CUTS_PER_SETUP_MAX: usize = 32;
/// Longest wait for the child's first acknowledgement (it recovers the log first).
const FIRST_ACK_WAIT_S: u64 = 60;
/// Appending tasks in the child.
const CHILD_WRITERS: u64 = 3;
/// Name of the roll test, which its child runs again.
const ROLL_TEST_NAME: &str = "a_rolled_segment_is_named_durably_before_its_first_acknowledgement";
/// The roll test's child is taken to be stalled at its second roll once it acknowledged nothing
/// for this long, in ms.
const ROLL_CHILD_QUIET_MS: u64 = 1_000;
/// Longest the roll test lets its child run, in s.
const ROLL_CHILD_RUN_S_MAX: u64 = 120;
/// Interval durability in this test: long enough that unflushed bytes exist at every cut.
const INTERVAL: Durability = Durability::Interval {
    flush_bytes_max: 256 * 1024,
    flush_ms_max: 60_000,
};

fn setup_config(mode: WriteMode, durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes_max: 48 * 1024,
        durability,
        ..config(mode)
    }
}

fn setup_name(mode: WriteMode, durability: Durability) -> String {
    let mode = match mode {
        WriteMode::Buffered => "buffered",
        WriteMode::Direct => "direct",
    };
    let durability = match durability {
        Durability::Durable => "durable",
        Durability::Interval { .. } => "interval",
    };
    format!("{mode}/{durability}")
}

fn batch_for(seed: u64) -> BytesMut {
    let records = 1 + (seed % 3) as usize;
    let value_len = ((seed * 97) % 1800) as usize;
    batch(records, value_len, (seed % 251) as u8, seed as i64)
}

/// Child side: append forever from several tasks, printing "ACK base last seed flushed" for
/// each acknowledged batch (flushed: the log's flushed offset right after the ack).
fn child(dir: &Path, config: LogConfig) {
    let dir = dir.to_path_buf();
    run(async move {
        let log = Rc::new(PartitionLog::open(&dir, config).await.unwrap());
        let start = log.log_end_offset() as u64;
        let writers: Vec<_> = (0..CHILD_WRITERS)
            .map(|writer| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    for round in 0.. {
                        let seed = (start + round) * CHILD_WRITERS + writer;
                        let info = log.append(batch_for(seed), 2).await.unwrap();
                        let flushed = log.flushed_offset();
                        println!(
                            "ACK {} {} {seed} {flushed}",
                            info.base_offset, info.last_offset
                        );
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await;
        }
    });
}

/// (base, last, seed) of an acknowledged batch.
type Acked = (i64, i64, u64);

/// Runs the child for a random time and SIGKILLs it; returns what it acknowledged and the
/// highest flushed offset it reported.
fn run_child(dir: &Path, setup: &str, rng: &mut impl Rng) -> (Vec<Acked>, i64) {
    let run_time = Duration::from_millis(rng.gen_range(50..300));
    run_child_until(TEST_NAME, dir, setup, |acks| {
        // The child first recovers the log through FUSE, which takes a while on a loaded
        // machine: the random run time counts from its first acknowledgement.
        if acks
            .recv_timeout(Duration::from_secs(FIRST_ACK_WAIT_S))
            .is_ok()
        {
            std::thread::sleep(run_time);
        }
    })
}

/// Runs the test `test_name` as a child appending to `dir` with `setup` until `wait` (given one
/// message per acknowledgement) returns, then SIGKILLs it; returns what it acknowledged and the
/// highest flushed offset it reported.
fn run_child_until(
    test_name: &str,
    dir: &Path,
    setup: &str,
    wait: impl FnOnce(&std::sync::mpsc::Receiver<()>),
) -> (Vec<Acked>, i64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SETUP_ENV, setup)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ack, acks) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (mut acked, mut flushed) = (Vec::new(), 0i64);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let fields: Vec<i64> = line[at + 4..]
                .split_whitespace()
                .map(|field| field.parse().unwrap())
                .collect();
            if let [base, last, seed, reported] = fields[..] {
                acked.push((base, last, seed as u64));
                flushed = flushed.max(reported);
                let _ = ack.send(());
            }
        }
        (acked, flushed)
    });
    wait(&acks);
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

/// Reopens the log after a power cut and checks it: valid and contiguous, and every batch in
/// `must_survive` there byte for byte. Returns how many acknowledged batches were lost (those
/// of `acked` missing), after appending one batch (acknowledged, so it joins `acked`).
fn recover_and_check(
    dir: &Path,
    config: LogConfig,
    acked: &mut HashMap<i64, Acked>,
    must_survive: impl Fn(&Acked) -> bool + 'static,
) -> usize {
    let dir = dir.to_path_buf();
    let expected = acked.clone();
    let (lost, appended) = run(async move {
        let log = PartitionLog::open(&dir, config).await.unwrap();
        let end = log.log_end_offset();
        let mut present = 0;
        let mut next = 0;
        for (header, bytes) in read_all(&log).await {
            assert_eq!(header.base_offset, next, "offsets must be contiguous");
            if let Some(&(_, last, seed)) = expected.get(&next) {
                assert_eq!(header.last_offset(), last);
                let mut wanted = batch_for(seed);
                stamp(&mut wanted, next, 2).unwrap();
                assert_eq!(
                    &bytes[..],
                    &wanted[..],
                    "batch at {next} is not what was acked"
                );
                present += 1;
            }
            next = header.last_offset() + 1;
        }
        assert_eq!(next, end);
        for entry in expected.values() {
            if must_survive(entry) {
                assert!(
                    entry.1 < end,
                    "acknowledged batch {entry:?} lost by the power cut (log ends at {end})"
                );
            }
        }
        let seed = (1 << 40) + end as u64;
        let info = log.append(batch_for(seed), 2).await.unwrap();
        log.close().await.unwrap();
        (
            expected.len() - present,
            (info.base_offset, info.last_offset, seed),
        )
    });
    // Batches past the recovered end were lost; later appends reuse their offsets.
    acked.retain(|base, _| *base < appended.0);
    acked.insert(appended.0, appended);
    lost
}

// Proves, over 8 (up to 32, until one dropped data) random power cuts per write mode and
// durability on a filesystem that
// drops unsynced writes: in durable mode every acknowledged batch survives; in interval mode
// every batch below the flushed offset the log reported survives, and batches acknowledged
// after it are lost at some cut (so the filesystem really drops unsynced data); the recovered
// log is always valid and contiguous and appends continue at its end.
#[test]
fn power_cut_loses_nothing_acknowledged_as_durable() {
    if let Some((dir, config)) = child_setup() {
        child(&dir, config);
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9d);
    for (mode, durability) in setups() {
        let setup = setup_name(mode, durability);
        let mountpoint = tempfile::tempdir().unwrap();
        let mounted = unsynced_fs::mount(mountpoint.path()).unwrap_or_else(|error| {
            panic!("cannot mount the FUSE filesystem (needs root and /dev/fuse): {error}")
        });
        let dir = mountpoint.path();
        let mut acked: HashMap<i64, Acked> = HashMap::new();
        let (mut lost_total, mut dropped_total) = (0, 0);
        for cut in 0..CUTS_PER_SETUP_MAX {
            if cut >= CUTS_PER_SETUP && dropped_total > 0 {
                break;
            }
            let (round, flushed) = run_child(dir, &setup, &mut rng);
            assert!(!round.is_empty(), "{setup}: the child acknowledged nothing");
            acked.extend(round.iter().map(|entry| (entry.0, *entry)));
            dropped_total += mounted.cut_power();
            let config = setup_config(mode, durability);
            lost_total += match durability {
                Durability::Durable => recover_and_check(dir, config, &mut acked, |_| true),
                Durability::Interval { .. } => {
                    recover_and_check(dir, config, &mut acked, move |entry| entry.1 < flushed)
                }
            };
        }
        assert!(mounted.syncs() > 0, "{setup}: nothing was ever fsynced");
        assert!(dropped_total > 0, "{setup}: no power cut dropped anything");
        match durability {
            Durability::Durable => assert_eq!(lost_total, 0, "{setup}"),
            Durability::Interval { .. } => {
                assert!(
                    lost_total > 0,
                    "{setup}: interval mode never lost an unflushed ack"
                )
            }
        }
        drop(mounted);
    }
}

/// In a child: its log directory and configuration, from the environment its parent set.
fn child_setup() -> Option<(std::path::PathBuf, LogConfig)> {
    let (Ok(dir), Ok(setup)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_SETUP_ENV))
    else {
        return None;
    };
    let config = setups()
        .into_iter()
        .find(|(mode, durability)| setup_name(*mode, *durability) == setup)
        .map(|(mode, durability)| setup_config(mode, durability))
        .unwrap();
    Some((dir.into(), config))
}

/// Child side of the roll test: appends one batch at a time, printing "ACK base last seed 0",
/// with the background file work held from the first acknowledgement on, so the first roll's
/// seal (and its checkpoint, which fsyncs the directory too) never runs and the second roll
/// waits for it for good.
fn roll_child(dir: &Path, config: LogConfig) {
    let dir = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&dir, config).await.unwrap();
        let start = log.log_end_offset() as u64;
        for round in 0.. {
            let seed = start + round;
            let info = log.append(batch_for(seed), 2).await.unwrap();
            if round == 0 {
                sluice_storage::fault::hold_background();
            }
            println!("ACK {} {} {seed} 0", info.base_offset, info.last_offset);
        }
    });
}

// Proves that in durable mode nothing written to a new segment is acknowledged before the
// segment's name is durable: the child's acknowledgements run past its first roll while the
// background work that would also fsync the directory (the seal, its checkpoint) is held; a
// power cut then, and every acknowledged batch is there after recovery. Fails when the commit
// round after a roll does not fsync the directory.
#[test]
fn a_rolled_segment_is_named_durably_before_its_first_acknowledgement() {
    if let Some((dir, config)) = child_setup() {
        roll_child(&dir, config);
        return;
    }
    for mode in MODES {
        let setup = setup_name(mode, Durability::Durable);
        let mountpoint = tempfile::tempdir().unwrap();
        let mounted = unsynced_fs::mount(mountpoint.path()).unwrap_or_else(|error| {
            panic!("cannot mount the FUSE filesystem (needs root and /dev/fuse): {error}")
        });
        let dir = mountpoint.path();
        let (round, _) = run_child_until(ROLL_TEST_NAME, dir, &setup, |acks| {
            let deadline = std::time::Instant::now() + Duration::from_secs(ROLL_CHILD_RUN_S_MAX);
            let _ = acks.recv_timeout(Duration::from_secs(FIRST_ACK_WAIT_S));
            let quiet = Duration::from_millis(ROLL_CHILD_QUIET_MS);
            // Stalled: quiet, with its first roll behind it (a slow child is not stalled).
            while std::time::Instant::now() < deadline
                && (acks.recv_timeout(quiet).is_ok() || log_paths(dir).len() < 2)
            {}
        });
        let rolled_at = segment_base(log_paths(dir).last().unwrap());
        assert!(
            rolled_at > 0 && round.iter().any(|entry| entry.0 >= rolled_at),
            "{setup}: the child's acknowledgements must run past its first roll"
        );
        mounted.cut_power();
        let mut acked: HashMap<i64, Acked> = round.iter().map(|entry| (entry.0, *entry)).collect();
        let lost = recover_and_check(
            dir,
            setup_config(mode, Durability::Durable),
            &mut acked,
            |_| true,
        );
        assert_eq!(lost, 0, "{setup}");
        drop(mounted);
    }
}

fn setups() -> Vec<(WriteMode, Durability)> {
    MODES
        .into_iter()
        .flat_map(|mode| [(mode, Durability::Durable), (mode, INTERVAL)])
        .collect()
}
