//! File-range sends over loopback: io_uring splice (file -> pipe -> socket, no user-space copy)
//! against a copying path (pread into a buffer, then glommio `write_all`), in bytes per second.
//!
//! A plain thread on the other end of each connection reads and discards everything, so both
//! paths pay the same receive cost. Run: `cargo bench -p sluice-net --bench send`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use sluice_net::local_splicer;

/// Size of the file the ranges are taken from, in bytes; written once, so it sits in the page
/// cache like a recently appended segment.
const FILE_BYTES: usize = 64 * 1024 * 1024;

/// Range sizes measured, in bytes: a small fetch, a typical one, a large catch-up read.
const RANGE_SIZES_BYTES: [usize; 3] = [64 * 1024, 1024 * 1024, 8 * 1024 * 1024];

/// Receive buffer of the draining thread, in bytes.
const DRAIN_BUFFER_BYTES: usize = 1024 * 1024;

/// Starts a thread that accepts connections one after another and discards all they send.
fn start_drain() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind drain listener");
    let address = listener.local_addr().expect("drain listener address");
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; DRAIN_BUFFER_BYTES];
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            while matches!(stream.read(&mut buffer), Ok(read) if read > 0) {}
        }
    });
    address
}

fn make_file(directory: &tempfile::TempDir) -> std::fs::File {
    let path = directory.path().join("segment.log");
    let mut file = std::fs::File::create(&path).expect("create bench file");
    let block: Vec<u8> = (0..1024 * 1024).map(|index| (index % 251) as u8).collect();
    for _ in 0..FILE_BYTES / block.len() {
        file.write_all(&block).expect("write bench file");
    }
    std::fs::File::open(&path).expect("open bench file")
}

/// Sends `iterations` ranges of `range_bytes`, walking through the file, by splice.
fn splice_sends(
    executor: &LocalExecutor,
    address: SocketAddr,
    file: &std::fs::File,
    range_bytes: usize,
    iterations: u64,
) -> Duration {
    executor.run(async {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let splicer = local_splicer().expect("splicer");
        let start = Instant::now();
        for iteration in 0..iterations {
            let position = (iteration as usize * range_bytes) % (FILE_BYTES - range_bytes);
            splicer
                .send_file(
                    stream.as_raw_fd(),
                    file.as_raw_fd(),
                    position as u64,
                    range_bytes,
                )
                .await
                .expect("splice send");
        }
        start.elapsed()
    })
}

/// Sends the same ranges by copying them through a user-space buffer.
fn copy_sends(
    executor: &LocalExecutor,
    address: SocketAddr,
    file: &std::fs::File,
    range_bytes: usize,
    iterations: u64,
) -> Duration {
    use std::os::unix::fs::FileExt;
    executor.run(async {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut buffer = vec![0u8; range_bytes];
        let start = Instant::now();
        for iteration in 0..iterations {
            let position = (iteration as usize * range_bytes) % (FILE_BYTES - range_bytes);
            file.read_exact_at(&mut buffer, position as u64)
                .expect("pread");
            stream.write_all(&buffer).await.expect("write");
        }
        start.elapsed()
    })
}

fn bench_send(criterion: &mut Criterion) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let file = make_file(&directory);
    let address = start_drain();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("executor");
    let mut group = criterion.benchmark_group("send_file_range");
    for range_bytes in RANGE_SIZES_BYTES {
        group.throughput(Throughput::Bytes(range_bytes as u64));
        group.bench_with_input(
            BenchmarkId::new("splice", range_bytes),
            &range_bytes,
            |bencher, &size| {
                bencher.iter_custom(|iterations| {
                    splice_sends(&executor, address, &file, size, iterations)
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("copy", range_bytes),
            &range_bytes,
            |bencher, &size| {
                bencher.iter_custom(|iterations| {
                    copy_sends(&executor, address, &file, size, iterations)
                })
            },
        );
    }
    group.finish();
    let stats = executor.run(async { local_splicer().expect("splicer").stats() });
    eprintln!(
        "splicer: {} bytes spliced, {} bytes copied, {} splice operations",
        stats.bytes_spliced, stats.bytes_copied, stats.splice_calls
    );
}

criterion_group!(benches, bench_send);
criterion_main!(benches);
