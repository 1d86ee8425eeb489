//! Fuzz entry point for recovery from damaged log directories: [`fuzz_recovery`] damages a copy
//! of a known, cleanly closed log (bytes flipped, files truncated, zero-filled, extended with
//! garbage or deleted, in segments, indexes and checkpoints alike) as its input describes, then
//! opens it. `fuzz/` runs it under libFuzzer (`recovery`); `storage/tests/recovery_fuzz_replay.rs`
//! replays the committed seeds and mutations of them in the normal test suite.
//!
//! What must hold, whatever the damage:
//! - `PartitionLog::open` returns, either a log or an error whose message says something; it
//!   never panics.
//! - An opened log can be read from its start to its end without a panic, offsets only moving
//!   forward, and closed again without an error.
//! - When nothing vouches for the files (no clean-shutdown marker, no recovery point), recovery
//!   scans everything: every batch read back then validates (CRC included), offsets are
//!   contiguous from the log start, and each batch is byte for byte the batch written at that
//!   offset, its leader-epoch field aside (that field is outside the CRC by Kafka's format, so
//!   no reader can tell a flipped epoch from a real one).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

use crate::batch::{validate_batch, BatchBuilder, BatchHeader, Compression};
use crate::config::{LogConfig, RecoveryPolicy, WriteMode};
use crate::log::PartitionLog;

/// Batches in the base log.
const BASE_BATCHES: usize = 14;

/// Records per batch of the base log.
const RECORDS_PER_BATCH: usize = 3;

/// Value bytes of each record of the base log.
const VALUE_BYTES: usize = 60;

/// Segment size of the base log, bytes: the smallest allowed, so the log has several segments.
const SEGMENT_BYTES: u64 = crate::config::SEGMENT_BYTES_MIN;

/// Bytes between sparse index entries of the base log, so every segment has several.
const INDEX_INTERVAL_BYTES: u32 = 200;

/// Bytes of one damage operation in the input.
const OPERATION_BYTES: usize = 5;

/// Damage operations applied at most, whatever the input's length.
const OPERATIONS_MAX: usize = 16;

/// Where the partition leader epoch sits in a batch header (outside the CRC).
const EPOCH_FIELD: std::ops::Range<usize> = 12..16;

/// Largest batch the checks read back.
const READ_BATCH_BYTES_MAX: usize = 1 << 20;

/// The base log: every file of its directory, and every batch it holds by base offset.
struct BaseLog {
    files: Vec<(String, Vec<u8>)>,
    batches: BTreeMap<i64, Vec<u8>>,
}

/// What one input did, for the replay test's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// The input was too short to describe a run.
    Skipped,
    /// Open refused the directory with an error.
    Refused,
    /// Open recovered a log with this many offsets, from its start to its end.
    Recovered {
        /// First offset.
        log_start: i64,
        /// One past the last offset.
        log_end: i64,
    },
}

thread_local! {
    /// One executor per thread, reused by every input (making one per input costs more than
    /// the recovery it runs).
    static EXECUTOR: LocalExecutor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("fuzz-recovery")
        .make()
        .expect("cannot start a glommio executor for the recovery fuzz target");
    static RUNS: Cell<u64> = const { Cell::new(0) };
}

fn base_config(write_mode: WriteMode, recovery: RecoveryPolicy) -> LogConfig {
    LogConfig {
        segment_bytes_max: SEGMENT_BYTES,
        index_interval_bytes: INDEX_INTERVAL_BYTES,
        write_mode,
        recovery,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A fresh scratch directory for one run.
fn scratch_dir(what: &str) -> PathBuf {
    let run = RUNS.with(|runs| {
        let run = runs.get();
        runs.set(run + 1);
        run
    });
    std::env::temp_dir().join(format!(
        "sluice-fuzz-recovery-{}-{:?}-{what}-{run}",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// The base log, written once per process: `BASE_BATCHES` batches over several segments, the
/// leader epoch rising every few batches, closed cleanly (marker and checkpoints written).
fn base_log() -> &'static BaseLog {
    static BASE: OnceLock<BaseLog> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = scratch_dir("base");
        let path = dir.clone();
        EXECUTOR.with(|executor| {
            executor.run(async move {
                let config = base_config(WriteMode::Buffered, RecoveryPolicy::TruncateTail);
                let log = PartitionLog::open(&path, config)
                    .await
                    .expect("the base log opens");
                for index in 0..BASE_BATCHES {
                    let mut builder = BatchBuilder::new(Compression::None);
                    let value = vec![b'a' + (index % 26) as u8; VALUE_BYTES];
                    for record in 0..RECORDS_PER_BATCH {
                        let timestamp = 1_700_000_000_000 + (index * 10 + record) as i64;
                        builder.push(timestamp, Some(b"key"), Some(&value), &[]);
                    }
                    let batch = builder.build().expect("the base batch builds");
                    let epoch = i32::try_from(index / 4).unwrap_or(i32::MAX);
                    log.append(batch, epoch)
                        .await
                        .expect("the base log appends");
                }
                log.close().await.expect("the base log closes");
            })
        });
        let base = read_base(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        base
    })
}

fn read_base(dir: &Path) -> BaseLog {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("the base log directory lists")
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("a base log file reads"))
        })
        .collect();
    files.sort();
    let mut batches = BTreeMap::new();
    for (name, bytes) in &files {
        if !name.ends_with(".log") {
            continue;
        }
        let mut position = 0;
        while position < bytes.len() {
            let header = validate_batch(&bytes[position..], READ_BATCH_BYTES_MAX)
                .expect("the base log's batches validate");
            let end = position + header.total_bytes();
            batches.insert(header.base_offset, bytes[position..end].to_vec());
            position = end;
        }
    }
    assert_eq!(batches.len(), BASE_BATCHES, "the base log lost batches");
    BaseLog { files, batches }
}

/// The run one input describes.
struct Run {
    keep_clean_marker: bool,
    keep_recovery_point: bool,
    recovery: RecoveryPolicy,
    write_mode: WriteMode,
}

/// Applies one damage operation (`[file, kind, position high, position low, value]`) to the
/// in-memory files.
fn damage(files: &mut Vec<(String, Vec<u8>)>, operation: &[u8]) {
    let [file, kind, high, low, value] = operation else {
        return;
    };
    if files.is_empty() {
        return;
    }
    let index = usize::from(*file) % files.len();
    let bytes = &mut files[index].1;
    let position = usize::from(u16::from_be_bytes([*high, *low])) % (bytes.len() + 1);
    match kind % 5 {
        0 => {
            if let Some(byte) = bytes.get_mut(position) {
                *byte ^= value | 1;
            }
        }
        1 => bytes.truncate(position),
        2 => bytes[position..].fill(0),
        3 => bytes.extend(std::iter::repeat_n(*value, usize::from(*value % 64) + 1)),
        _ => {
            files.remove(index);
        }
    }
}

/// Fuzz entry: byte 0 chooses the run (bit 0 keeps the clean-shutdown marker, bit 1 the
/// recovery-point checkpoint, bit 2 refuses rather than truncates a damaged tail, bit 3 opens
/// in direct mode), then each `OPERATION_BYTES` bytes damage one file. Panics when an
/// invariant of the module header breaks.
pub fn fuzz_recovery(data: &[u8]) -> RecoveryOutcome {
    let Some((&flags, operations)) = data.split_first() else {
        return RecoveryOutcome::Skipped;
    };
    let base = base_log();
    let run = Run {
        keep_clean_marker: flags & 1 != 0,
        keep_recovery_point: flags & 2 != 0,
        recovery: if flags & 4 != 0 {
            RecoveryPolicy::Refuse
        } else {
            RecoveryPolicy::TruncateTail
        },
        write_mode: if flags & 8 != 0 {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        },
    };
    let mut files = base.files.clone();
    files.retain(|(name, _)| {
        (run.keep_clean_marker || name != crate::recovery::CLEAN_SHUTDOWN_FILE)
            && (run.keep_recovery_point || name != crate::checkpoint::RECOVERY_POINT_FILE)
    });
    for operation in operations.chunks(OPERATION_BYTES).take(OPERATIONS_MAX) {
        damage(&mut files, operation);
    }
    let dir = scratch_dir("run");
    std::fs::create_dir_all(&dir).expect("the scratch directory is created");
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).expect("a damaged file is written");
    }
    let scanned = !run.keep_clean_marker && !run.keep_recovery_point;
    let config = base_config(run.write_mode, run.recovery);
    let path = dir.clone();
    let outcome = EXECUTOR.with(|executor| {
        executor.run(async move { open_and_check(&path, config, scanned, base).await })
    });
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// Opens the damaged directory and checks what the module header promises.
async fn open_and_check(
    dir: &Path,
    config: LogConfig,
    scanned: bool,
    base: &BaseLog,
) -> RecoveryOutcome {
    let log = match PartitionLog::open(dir, config).await {
        Ok(log) => log,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "a refusal without a message");
            return RecoveryOutcome::Refused;
        }
    };
    let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
    assert!(
        log_start <= log_end,
        "log start {log_start} after log end {log_end}"
    );
    let read = read_everything(&log, log_start, log_end).await;
    if scanned {
        let batches = read.unwrap_or_else(|error| {
            panic!("a fully scanned log of [{log_start}, {log_end}) does not read back: {error}")
        });
        check_against_base(&batches, log_start, log_end, base);
    }
    if let Err(error) = log.close().await {
        panic!("a recovered log does not close: {error}");
    }
    RecoveryOutcome::Recovered { log_start, log_end }
}

/// Reads `[start, end)` with `read_bytes`; the batches in order, or why reading failed. Offsets
/// must only move forward (a read that does not advance would loop forever).
async fn read_everything(
    log: &PartitionLog,
    start: i64,
    end: i64,
) -> Result<Vec<(BatchHeader, Vec<u8>)>, String> {
    let mut batches = Vec::new();
    let mut offset = start;
    while offset < end {
        let bytes = log
            .read_bytes(offset, READ_BATCH_BYTES_MAX, end)
            .await
            .map_err(|error| format!("read at {offset}: {error}"))?;
        if bytes.is_empty() {
            return Err(format!(
                "read at {offset} below the end {end} returned nothing"
            ));
        }
        let mut position = 0;
        while position < bytes.len() {
            let header = validate_batch(&bytes[position..], READ_BATCH_BYTES_MAX)
                .map_err(|error| format!("batch read at {offset}: {error}"))?;
            let next = header.last_offset() + 1;
            assert!(next > offset, "reading at {offset} went back to {next}");
            let total = header.total_bytes();
            batches.push((header, bytes[position..position + total].to_vec()));
            offset = next;
            position += total;
        }
    }
    Ok(batches)
}

/// Every batch of a fully scanned log is the base log's batch at that offset (epoch field
/// aside), and they are contiguous from the log start to the log end.
fn check_against_base(
    batches: &[(BatchHeader, Vec<u8>)],
    log_start: i64,
    log_end: i64,
    base: &BaseLog,
) {
    let mut expected_offset = log_start;
    for (header, bytes) in batches {
        assert!(
            header.base_offset <= expected_offset && expected_offset <= header.last_offset(),
            "batch [{}, {}] does not continue the log at {expected_offset}",
            header.base_offset,
            header.last_offset()
        );
        let original = base.batches.get(&header.base_offset).unwrap_or_else(|| {
            panic!(
                "recovery kept a batch at {} that was never written there",
                header.base_offset
            )
        });
        let same = original.len() == bytes.len()
            && original[..EPOCH_FIELD.start] == bytes[..EPOCH_FIELD.start]
            && original[EPOCH_FIELD.end..] == bytes[EPOCH_FIELD.end..];
        assert!(
            same,
            "the batch at {} differs from the one written there",
            header.base_offset
        );
        expected_offset = header.last_offset() + 1;
    }
    assert_eq!(
        expected_offset, log_end,
        "the batches end at {expected_offset}, the log at {log_end}"
    );
}
