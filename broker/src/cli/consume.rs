//! `sluice consume`: a topic's messages to stdout.

use std::io::{BufWriter, ErrorKind, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sluice_client::{Consumer, ConsumerConfig, ConsumerRecord};

use super::args::ConsumeArgs;
use super::connect;

/// Idle time after which a consume without `--count` stops, in milliseconds.
const IDLE_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Longest single poll, so a `--count` run without idle timeout still flushes its output
/// regularly.
const POLL_WAIT_MAX: Duration = Duration::from_millis(500);

/// stdout buffer size, bytes.
const STDOUT_BUFFER_BYTES: usize = 1024 * 1024;

/// Writes one record: the value, or `partition<TAB>offset<TAB>value`, and a newline. A null
/// value prints as an empty line.
pub(crate) fn write_record(
    out: &mut impl Write,
    record: &ConsumerRecord,
    print_offsets: bool,
) -> std::io::Result<()> {
    if print_offsets {
        write!(out, "{}\t{}\t", record.partition, record.offset)?;
    }
    if let Some(value) = &record.value {
        out.write_all(value)?;
    }
    out.write_all(b"\n")
}

/// Runs `sluice consume`.
pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.connect).await?;
    let topic = client
        .describe_topic(&args.topic)
        .await
        .with_context(|| format!("cannot read topic {}", args.topic))?;
    let partitions: Vec<(String, i32)> = match args.partition {
        Some(partition) => vec![(args.topic.clone(), partition)],
        None => topic
            .partitions
            .iter()
            .map(|partition| (args.topic.clone(), partition.partition))
            .collect(),
    };
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    consumer
        .assign(partitions, args.from)
        .await
        .with_context(|| format!("cannot start reading topic {}", args.topic))?;
    let mut out = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, std::io::stdout().lock());
    let printed = match consume(&mut consumer, &args, &mut out).await {
        Ok(printed) => printed,
        // The reader went away (`| head`): that is how such a pipeline ends, not an error.
        Err(error) if is_broken_pipe(&error) => return Ok(ExitCode::SUCCESS),
        Err(error) => return Err(error),
    };
    eprintln!("consumed {printed} messages from {}", args.topic);
    Ok(ExitCode::SUCCESS)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|error| error.kind() == ErrorKind::BrokenPipe)
}

/// Polls and prints until `--count` messages were printed or nothing arrived for the idle
/// timeout; returns how many were printed.
async fn consume(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let idle_timeout = args
        .timeout_ms
        .or(args.count.is_none().then_some(IDLE_TIMEOUT_MS_DEFAULT))
        .map(Duration::from_millis);
    let mut printed = 0_u64;
    let mut last_message = Instant::now();
    while args.count.is_none_or(|count| printed < count) {
        let wait = match idle_timeout {
            Some(idle) => {
                let left = (last_message + idle).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(POLL_WAIT_MAX)
            }
            None => POLL_WAIT_MAX,
        };
        let records = consumer
            .poll(wait)
            .await
            .with_context(|| format!("cannot read topic {}", args.topic))?;
        if !records.is_empty() {
            last_message = Instant::now();
        }
        for record in &records {
            if args.count.is_some_and(|count| printed >= count) {
                break;
            }
            write_record(out, record, args.print_offsets)?;
            printed += 1;
        }
        out.flush()?;
    }
    out.flush()?;
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::rc::Rc;

    fn record(partition: i32, offset: i64, value: Option<&'static [u8]>) -> ConsumerRecord {
        ConsumerRecord {
            topic: Rc::from("t"),
            partition,
            offset,
            timestamp_ms: 0,
            key: None,
            value: value.map(Bytes::from_static),
            headers: Vec::new(),
        }
    }

    // Proves the output format: the value per line, or partition, offset and value separated by
    // tabs with --print-offsets; a null value is an empty line.
    #[test]
    fn records_print_as_lines() {
        let mut out = Vec::new();
        write_record(&mut out, &record(2, 41, Some(b"hello")), false).unwrap();
        write_record(&mut out, &record(2, 42, None), false).unwrap();
        write_record(&mut out, &record(3, 7, Some(b"x y")), true).unwrap();
        assert_eq!(out, b"hello\n\n3\t7\tx y\n");
    }
}
