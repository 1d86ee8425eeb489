//! Append and read throughput of a partition log, in both write modes.
//!
//! Appends: 1 KiB records in 16 KiB, 256 KiB and 1 MiB batches from `APPENDERS` tasks (a broker
//! with several produce requests in flight; the log bounds how many are in flight), measured
//! until the final
//! `flush()` returns so both modes are timed to the same durability. Reads: `read()` plus a
//! pread of the returned file range (the copy the network layer's splice avoids), and
//! `read_bytes()`, fetching 1 MiB at a time over a log of 16 KiB batches. The `raw_dma/1MiB`
//! case is the yardstick for direct mode: 1 MiB aligned writes straight through glommio's
//! `DmaFile` from as many tasks, into a preallocated file, then an fdatasync; no log at all.
//!
//! `SLUICE_BENCH_BYTES` (default 8GiB; suffixes KiB/MiB/GiB or K/M/G) is the total written per
//! append case: criterion's one warm-up and ten samples each write a eleventh of it. Read cases
//! read a log of that eleventh once per sample. `SLUICE_BENCH_DIR` picks the directory (default
//! the system temp dir). Run: `SLUICE_BENCH_BYTES=256MiB cargo bench -p sluice-storage --bench
//! append`. Each sample also prints its rate in GB/s (10^9 bytes per second).
// A benchmark harness panics on setup failure by design: there is no caller to report to.
#![allow(clippy::unwrap_used)]

use std::{
    cell::Cell,
    os::unix::fs::FileExt,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use sluice_storage::{
    batch::{BatchBuilder, BatchHeader, Compression},
    LogConfig, PartitionLog, ReadSlice, WriteMode, APPEND_INFLIGHT_MAX,
};

/// Tasks appending concurrently to the one log of an append case.
const APPENDERS: usize = APPEND_INFLIGHT_MAX;

/// Default total bytes per append case.
const BENCH_BYTES_DEFAULT: u64 = 8 << 30;
/// Total bytes per case when criterion runs in test mode (`cargo test --benches`).
const TEST_MODE_BYTES: u64 = 32 << 20;
/// Criterion calls the routine once to warm up and once per sample.
const SAMPLES: usize = 10;
/// Value size of every record.
const RECORD_BYTES: usize = 1024;
/// Batch sizes of the append cases.
const BATCH_SIZES: [(&str, usize); 3] = [
    ("16KiB", 16 << 10),
    ("256KiB", 256 << 10),
    ("1MiB", 1 << 20),
];
/// Batch size of the log the read cases read.
const READ_BATCH_BYTES: usize = 16 << 10;
/// Bytes asked for by each read, as a consumer fetch would.
const READ_MAX_BYTES: usize = 1 << 20;

/// Parses "8GiB", "256MiB", "512K", "1000000".
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok().map(|number| number << shift)
}

/// Bytes written per routine call.
fn bytes_per_call() -> u64 {
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let total = match std::env::var("SLUICE_BENCH_BYTES") {
        Ok(text) => parse_bytes(&text).expect("SLUICE_BENCH_BYTES: a size such as 8GiB or 256MiB"),
        Err(_) if bench_mode => BENCH_BYTES_DEFAULT,
        Err(_) => TEST_MODE_BYTES,
    };
    (total / (SAMPLES as u64 + 1)).max(1 << 20)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("SLUICE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Buffered => "buffered",
        WriteMode::Direct => "direct",
    }
}

fn log_config(mode: WriteMode) -> LogConfig {
    LogConfig {
        write_mode: mode,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A batch of 1 KiB records, about `batch_bytes` long.
fn template(batch_bytes: usize) -> BytesMut {
    let mut builder = BatchBuilder::new(Compression::None);
    let value = vec![0x5a; RECORD_BYTES];
    for record in 0..(batch_bytes / RECORD_BYTES).max(1) {
        builder.push(record as i64, None, Some(&value), &[]);
    }
    builder.build().unwrap()
}

fn report(name: &str, bytes: u64, elapsed: Duration) {
    let rate = bytes as f64 / elapsed.as_secs_f64() / 1e9;
    println!(
        "{name}: {bytes} bytes in {:.3} s = {rate:.2} GB/s",
        elapsed.as_secs_f64()
    );
}

/// Appends copies of `batch` from `APPENDERS` tasks until `bytes` are written, then
/// flushes; returns the time from the first append to the end of the flush.
async fn append_run(mode: WriteMode, batch: BytesMut, bytes: u64) -> Duration {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let log = Rc::new(
        PartitionLog::open(dir.path(), log_config(mode))
            .await
            .unwrap(),
    );
    let remaining = Rc::new(Cell::new(bytes));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..APPENDERS {
        let (log, remaining, batch) = (log.clone(), remaining.clone(), batch.clone());
        tasks.push(glommio::spawn_local(async move {
            while remaining.get() > 0 {
                remaining.set(remaining.get().saturating_sub(batch.len() as u64));
                log.append(batch.clone(), 0).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    log.flush().await.unwrap();
    let elapsed = started.elapsed();
    log.delete().await.unwrap();
    elapsed
}

/// Writes `bytes` as 1 MiB aligned buffers through `DmaFile` from `APPENDERS` tasks into a
/// preallocated file, then fdatasyncs: the device's O_DIRECT speed as glommio sees it.
async fn raw_dma_run(bytes: u64) -> Duration {
    const WRITE_BYTES: u64 = 1 << 20;
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let file = glommio::io::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(dir.path().join("raw"))
        .await
        .unwrap();
    let file = Rc::new(file);
    let total = bytes.div_ceil(WRITE_BYTES) * WRITE_BYTES;
    file.pre_allocate(total, false).await.unwrap();
    let next = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..APPENDERS {
        let (file, next) = (file.clone(), next.clone());
        tasks.push(glommio::spawn_local(async move {
            while next.get() < total {
                let position = next.get();
                next.set(position + WRITE_BYTES);
                let mut buffer = file.alloc_dma_buffer(WRITE_BYTES as usize);
                buffer.as_bytes_mut().fill(0x5a);
                file.write_at(buffer, position).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    file.fdatasync().await.unwrap();
    started.elapsed()
}

fn append_benches(criterion: &mut Criterion, executor: &LocalExecutor) {
    let bytes = bytes_per_call();
    let mut group = criterion.benchmark_group("append");
    configure(&mut group, bytes);
    group.bench_function("raw_dma/1MiB", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let elapsed = executor.run(raw_dma_run(bytes));
                report("append/raw_dma/1MiB", bytes, elapsed);
                total += elapsed;
            }
            total
        });
    });
    for mode in [WriteMode::Buffered, WriteMode::Direct] {
        for (size_name, batch_bytes) in BATCH_SIZES {
            let name = format!("{}/{size_name}", mode_name(mode));
            let batch = template(batch_bytes);
            group.bench_function(&name, |bencher| {
                bencher.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let elapsed = executor.run(append_run(mode, batch.clone(), bytes));
                        report(&format!("append/{name}"), bytes, elapsed);
                        total += elapsed;
                    }
                    total
                });
            });
        }
    }
    group.finish();
}

fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bytes: u64,
) {
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_nanos(1))
        .measurement_time(Duration::from_nanos(1))
        .throughput(Throughput::Bytes(bytes));
}

/// How a read case reads.
#[derive(Clone, Copy)]
enum ReadPath {
    /// `read()` then a pread of the file range (or a copy of the memory).
    SliceAndPread,
    /// `read_bytes()`.
    Copying,
}

/// Offset after the last whole batch in `bytes`.
fn next_offset(bytes: &[u8]) -> i64 {
    let mut position = 0;
    let mut next = 0;
    while position < bytes.len() {
        let header = BatchHeader::parse(&bytes[position..]).unwrap();
        next = header.last_offset() + 1;
        position += header.total_bytes();
    }
    next
}

/// Reads the whole log once, 1 MiB at a time; returns bytes read and the time it took.
async fn read_run(log: &PartitionLog, path: ReadPath, buffer: &mut Vec<u8>) -> (u64, Duration) {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut bytes = 0u64;
    let started = Instant::now();
    while offset < end {
        let len = match path {
            ReadPath::SliceAndPread => match log.read(offset, READ_MAX_BYTES, end).unwrap() {
                ReadSlice::File(slice) => {
                    buffer.resize(slice.len, 0);
                    slice.file.read_exact_at(buffer, slice.position).unwrap();
                    slice.len
                }
                ReadSlice::Memory(pieces) => {
                    buffer.clear();
                    for piece in &pieces {
                        buffer.extend_from_slice(piece);
                    }
                    buffer.len()
                }
                ReadSlice::Empty => unreachable!("read below the end returned nothing"),
            },
            ReadPath::Copying => {
                let read = log.read_bytes(offset, READ_MAX_BYTES, end).await.unwrap();
                buffer.clear();
                buffer.extend_from_slice(&read);
                read.len()
            }
        };
        offset = next_offset(&buffer[..len]);
        bytes += len as u64;
    }
    (bytes, started.elapsed())
}

fn read_benches(criterion: &mut Criterion, executor: &LocalExecutor) {
    let bytes = bytes_per_call();
    let mut group = criterion.benchmark_group("read");
    configure(&mut group, bytes);
    for mode in [WriteMode::Buffered, WriteMode::Direct] {
        let dir = tempfile::tempdir_in(bench_dir()).unwrap();
        let log = executor.run(async {
            let log = PartitionLog::open(dir.path(), log_config(mode))
                .await
                .unwrap();
            let batch = template(READ_BATCH_BYTES);
            let mut written = 0;
            while written < bytes {
                log.append(batch.clone(), 0).await.unwrap();
                written += batch.len() as u64;
            }
            log.flush().await.unwrap();
            log
        });
        for (path_name, path) in [
            ("read+pread", ReadPath::SliceAndPread),
            ("read_bytes", ReadPath::Copying),
        ] {
            let name = format!("{}/{path_name}", mode_name(mode));
            let mut buffer = Vec::with_capacity(2 * READ_MAX_BYTES);
            group.bench_function(&name, |bencher| {
                bencher.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let (read, elapsed) = executor.run(read_run(&log, path, &mut buffer));
                        report(&format!("read/{name}"), read, elapsed);
                        total += elapsed;
                    }
                    total
                });
            });
        }
        executor.run(log.close()).unwrap();
    }
    group.finish();
}

fn benches(criterion: &mut Criterion) {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .unwrap();
    append_benches(criterion, &executor);
    read_benches(criterion, &executor);
}

criterion_group!(append, benches);
criterion_main!(append);
