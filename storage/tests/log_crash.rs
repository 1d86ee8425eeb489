//! Crash test: a child process appends with fsync per append and is SIGKILLed at random
//! moments; the recovered log must hold every acknowledged batch, in both write modes.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use bytes::BytesMut;
use common::*;
use rand::{Rng, SeedableRng};
use sluice_storage::{batch::stamp, FlushPolicy, LogConfig, PartitionLog, WriteMode};

/// Set in the child: the log directory.
const CHILD_DIR_ENV: &str = "SLUICE_CRASH_CHILD_DIR";
/// Set in the child: "buffered" or "direct".
const CHILD_MODE_ENV: &str = "SLUICE_CRASH_CHILD_MODE";
/// Kill rounds per write mode (two modes: 24 rounds in all).
const ROUNDS_PER_MODE: usize = 12;
/// Name of the test, which the child runs again.
const TEST_NAME: &str = "sigkill_keeps_every_acknowledged_batch";

fn crash_config(mode: WriteMode) -> LogConfig {
    LogConfig {
        segment_bytes_max: 48 * 1024,
        flush: FlushPolicy::EveryAppend,
        ..config(mode)
    }
}

/// The batch every writer appends at `offset`: its size and contents follow from the offset,
/// so the parent can check any batch it finds.
fn batch_for(offset: i64) -> BytesMut {
    let records = 1 + (offset % 4) as usize;
    let value_len = ((offset * 131) % 2500) as usize;
    batch(records, value_len, (offset % 251) as u8, offset)
}

/// Child side: append forever, printing each acknowledged (fsynced) batch.
fn child(dir: &Path, mode: WriteMode) {
    let dir = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&dir, crash_config(mode)).await.unwrap();
        loop {
            let offset = log.log_end_offset();
            let info = log.append(batch_for(offset), 7).await.unwrap();
            assert_eq!(info.base_offset, offset);
            println!("ACK {} {}", info.base_offset, info.last_offset);
        }
    });
}

/// Runs a child for a random time, kills it with SIGKILL, returns the acknowledged offsets.
fn kill_round(dir: &Path, mode: WriteMode, rng: &mut impl Rng) -> Vec<(i64, i64)> {
    let mode_name = match mode {
        WriteMode::Buffered => "buffered",
        WriteMode::Direct => "direct",
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_MODE_ENV, mode_name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let ["ACK", base, last] = fields.as_slice() {
                acked.push((base.parse().unwrap(), last.parse().unwrap()));
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(rng.gen_range(30..250)));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

/// Parent side: reopen, check the log against everything acknowledged so far, append once.
fn verify(dir: &Path, mode: WriteMode, acknowledged_end: i64) -> i64 {
    let dir = dir.to_path_buf();
    run(async move {
        let log = PartitionLog::open(&dir, crash_config(mode)).await.unwrap();
        let end = log.log_end_offset();
        assert!(
            end >= acknowledged_end,
            "lost acknowledged data: end {end} < {acknowledged_end}"
        );
        let batches = read_all(&log).await;
        let mut next = 0;
        for (header, bytes) in &batches {
            assert_eq!(header.base_offset, next, "offsets must be contiguous");
            let mut expected = batch_for(next);
            stamp(&mut expected, next, 7).unwrap();
            assert_eq!(
                bytes,
                &expected[..],
                "batch at {next} differs from what was written"
            );
            next = header.last_offset() + 1;
        }
        assert_eq!(next, end);
        let info = log.append(batch_for(end), 7).await.unwrap();
        assert_eq!(
            info.base_offset, end,
            "appends must continue at the recovered end"
        );
        log.close().await.unwrap();
        info.last_offset + 1
    })
}

// Proves that after SIGKILL at random moments (20+ rounds, both modes) the reopened log is a
// valid, contiguous prefix of what was written that holds every acknowledged batch, and that
// appends continue at the recovered end.
#[test]
fn sigkill_keeps_every_acknowledged_batch() {
    if let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_MODE_ENV)) {
        let mode = if mode == "direct" {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        };
        child(Path::new(&dir), mode);
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x51_u64);
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let mut acknowledged_end = 0;
        let mut total_acks = 0;
        for _ in 0..ROUNDS_PER_MODE {
            let acked = kill_round(dir.path(), mode, &mut rng);
            total_acks += acked.len();
            if let Some((_, last)) = acked.last() {
                acknowledged_end = acknowledged_end.max(last + 1);
            }
            acknowledged_end = verify(dir.path(), mode, acknowledged_end);
        }
        assert!(
            total_acks > 0,
            "{mode:?}: the child never acknowledged an append"
        );
        assert!(
            log_paths(dir.path()).len() > 1,
            "{mode:?}: the test should cross segment rolls"
        );
    }
}
