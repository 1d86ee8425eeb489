//! `sluice produce`: stdin lines to a topic.
//!
//! A reader thread reads stdin (a blocking read would stall the executor, and with it the
//! producer's sender) and hands the executor chunks of whole lines over a bounded channel; the
//! executor turns each line into a record without copying (values are slices of the chunk). A
//! chunk ends where the input read so far ends, so lines typed or piped in slowly are sent as
//! they come rather than once a chunk fills up.
//!
//! Exit status: 0 when every line was acknowledged; 1 when any failed (after the producer's
//! retries, which last up to `--delivery-timeout-ms`), with the first failure named.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures_channel::mpsc;
use futures_lite::StreamExt;
use sluice_client::{
    Acks, ClientError, DeliveryFuture, Partitioner, Producer, ProducerConfig, ProducerRecord,
};

use super::args::ProduceArgs;
use super::connect;

/// A chunk handed from the reader thread is cut after the line that reaches this many bytes.
const CHUNK_BYTES_MAX: usize = 256 * 1024;

/// Chunks read ahead of the producer at most.
const CHUNK_QUEUE_DEPTH_MAX: usize = 4;

/// Delivery futures kept before the oldest is awaited; bounds memory on huge inputs.
const PENDING_DELIVERIES_MAX: usize = 100_000;

/// Whole lines read from stdin: the bytes and where each line ends (newline excluded).
#[derive(Debug)]
pub(crate) struct Chunk {
    data: Bytes,
    lines: Vec<(usize, usize)>,
}

/// Reads `input` into chunks of whole lines: up to `CHUNK_BYTES_MAX` bytes, and no further
/// than the bytes already read from the source (the chunk ends rather than wait for more
/// input). A final line without a newline counts as a line. Line ends are `\n`, with a `\r`
/// before it removed too.
pub(crate) fn read_chunk<R: Read>(input: &mut BufReader<R>) -> std::io::Result<Option<Chunk>> {
    let mut data = BytesMut::new();
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while data.len() < CHUNK_BYTES_MAX {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let mut end = line.len();
        if line.ends_with(b"\n") {
            end -= 1;
            if line[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        let start = data.len();
        data.extend_from_slice(&line[..end]);
        lines.push((start, data.len()));
        if input.buffer().is_empty() {
            // Everything read so far is in the chunk: hand it over before blocking for more.
            break;
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    Ok(Some(Chunk {
        data: data.freeze(),
        lines,
    }))
}

/// Splits a line into key and value at the first `separator`; without a separator (or
/// without one in the line) the whole line is the value.
pub(crate) fn split_line(line: Bytes, separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    let Some(separator) = separator.filter(|separator| !separator.is_empty()) else {
        return (None, line);
    };
    match line
        .windows(separator.len())
        .position(|window| window == separator)
    {
        Some(at) => (Some(line.slice(..at)), line.slice(at + separator.len()..)),
        None => (None, line),
    }
}

/// Starts the stdin reader thread.
fn spawn_reader() -> anyhow::Result<mpsc::Receiver<std::io::Result<Chunk>>> {
    let (mut sender, receiver) = mpsc::channel(CHUNK_QUEUE_DEPTH_MAX);
    std::thread::Builder::new()
        .name("sluice-stdin".into())
        .spawn(move || {
            let mut input = BufReader::with_capacity(CHUNK_BYTES_MAX, std::io::stdin());
            loop {
                let chunk = match read_chunk(&mut input) {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => return,
                    Err(error) => Err(error),
                };
                let failed = chunk.is_err();
                let ready =
                    futures_lite::future::block_on(futures_lite::future::poll_fn(|context| {
                        sender.poll_ready(context)
                    }));
                if ready.is_err() || sender.start_send(chunk).is_err() || failed {
                    return;
                }
            }
        })
        .context("cannot start the stdin reader thread")?;
    Ok(receiver)
}

/// Counts of what was sent and acknowledged.
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    bytes: u64,
    failures: u64,
    first_failure: Option<ClientError>,
}

impl Tally {
    fn settle(&mut self, result: Result<sluice_client::RecordMetadata, ClientError>) {
        if let Err(error) = result {
            self.failures += 1;
            self.first_failure.get_or_insert(error);
        }
    }
}

/// Runs `sluice produce`.
pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.connect).await?;
    let config = ProducerConfig {
        acks: args.acks,
        compression: args.compression.into(),
        batch_bytes_max: args.batch_bytes,
        linger_ms: args.linger_ms,
        delivery_timeout_ms: args.delivery_timeout_ms,
        partitioner: Partitioner::Default,
        enable_idempotence: !args.no_idempotence && args.acks != Acks::None,
        ..ProducerConfig::default()
    };
    let buffer_bytes_max = config.buffer_bytes_max.max(config.batch_bytes_max);
    let producer = Producer::new(
        client,
        ProducerConfig {
            buffer_bytes_max,
            ..config
        },
    );
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut chunks = spawn_reader()?;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.context("cannot read stdin")?;
        for &(start, end) in &chunk.lines {
            let (key, value) = split_line(
                chunk.data.slice(start..end),
                args.key_separator.as_deref().map(str::as_bytes),
            );
            tally.messages += 1;
            tally.bytes += (key.as_ref().map_or(0, Bytes::len) + value.len()) as u64;
            let record = ProducerRecord {
                topic: args.topic.clone(),
                partition: args.partition,
                key,
                value,
                timestamp_ms: None,
                headers: Vec::new(),
            };
            let delivery = producer
                .send(record)
                .await
                .with_context(|| format!("cannot produce to topic {}", args.topic))?;
            pending.push_back(delivery);
            settle_ready(&mut pending, &mut tally, PENDING_DELIVERIES_MAX).await;
        }
    }
    producer
        .flush()
        .await
        .context("cannot flush the producer")?;
    settle_ready(&mut pending, &mut tally, 0).await;
    producer
        .close()
        .await
        .context("cannot close the producer")?;
    report(&args.topic, &tally, started)
}

/// Awaits deliveries from the front: all that are already done, and more while over `keep`.
async fn settle_ready(pending: &mut VecDeque<DeliveryFuture>, tally: &mut Tally, keep: usize) {
    while let Some(front) = pending.front() {
        if pending.len() <= keep && !front.is_done() {
            break;
        }
        if let Some(delivery) = pending.pop_front() {
            tally.settle(delivery.await);
        }
    }
}

/// Prints the summary line to stderr; the exit code is a failure if any message was not
/// acknowledged.
fn report(topic: &str, tally: &Tally, started: Instant) -> anyhow::Result<ExitCode> {
    let seconds = started.elapsed().as_secs_f64();
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "produced {} messages ({} bytes) to {topic} in {seconds:.3} s; {} failed",
        tally.messages, tally.bytes, tally.failures
    )?;
    if let Some(error) = &tally.first_failure {
        writeln!(err, "first failure: {error}")?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves stdin is cut into whole lines: newlines (and CRLF) removed, an unterminated last
    // line kept, empty lines kept as empty messages, and chunks bounded by CHUNK_BYTES_MAX.
    #[test]
    fn lines_are_read_in_bounded_chunks() {
        let input = b"alpha\r\nbeta\n\ngamma".to_vec();
        let mut reader = BufReader::new(std::io::Cursor::new(input));
        let chunk = read_chunk(&mut reader).unwrap().unwrap();
        let lines: Vec<&[u8]> = chunk
            .lines
            .iter()
            .map(|&(start, end)| &chunk.data[start..end])
            .collect();
        assert_eq!(lines, vec![&b"alpha"[..], b"beta", b"", b"gamma"]);
        assert!(read_chunk(&mut reader).unwrap().is_none());

        let line = vec![b'x'; 1000];
        let mut many = Vec::new();
        for _ in 0..1000 {
            many.extend_from_slice(&line);
            many.push(b'\n');
        }
        let mut reader = BufReader::with_capacity(CHUNK_BYTES_MAX, std::io::Cursor::new(many));
        let mut total = 0;
        while let Some(chunk) = read_chunk(&mut reader).unwrap() {
            assert!(chunk.data.len() < CHUNK_BYTES_MAX + line.len());
            assert!(chunk.lines.iter().all(|&(start, end)| end - start == 1000));
            total += chunk.lines.len();
        }
        assert_eq!(total, 1000);
    }

    // Proves a chunk ends where the input read so far ends: lines arriving in two reads (as
    // from a terminal or a slow pipe) come out as two chunks, the first without waiting for
    // the second read.
    #[test]
    fn a_chunk_ends_with_the_input_read_so_far() {
        /// Hands out its pieces one per read, as a pipe written in bursts does.
        struct Bursts(Vec<&'static [u8]>);
        impl Read for Bursts {
            fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Ok(0);
                }
                let piece = self.0.remove(0);
                buffer[..piece.len()].copy_from_slice(piece);
                Ok(piece.len())
            }
        }
        let mut reader = BufReader::new(Bursts(vec![b"one\ntwo\n", b"three\n"]));
        let first = read_chunk(&mut reader).unwrap().unwrap();
        assert_eq!(&first.data[..], b"onetwo");
        assert_eq!(first.lines.len(), 2);
        let second = read_chunk(&mut reader).unwrap().unwrap();
        assert_eq!(&second.data[..], b"three");
        assert!(read_chunk(&mut reader).unwrap().is_none());
    }

    // Proves the key separator splits at its first occurrence, and a line without it is all
    // value with no key.
    #[test]
    fn key_separator_splits_at_first_occurrence() {
        let line = Bytes::from_static(b"user-1:hello:world");
        assert_eq!(
            split_line(line.clone(), Some(b":")),
            (
                Some(Bytes::from_static(b"user-1")),
                Bytes::from_static(b"hello:world")
            )
        );
        assert_eq!(split_line(line.clone(), Some(b"::")), (None, line.clone()));
        assert_eq!(split_line(line.clone(), None), (None, line));
        assert_eq!(
            split_line(Bytes::from_static(b"k=>v"), Some(b"=>")),
            (Some(Bytes::from_static(b"k")), Bytes::from_static(b"v"))
        );
    }
}
