//! `sluice consume`: a topic's messages to stdout, from explicitly chosen partitions, or as a
//! member of a consumer group (`--group`): then only the partitions the group assigns are read,
//! from the group's committed offsets, and what was printed is committed (every
//! `--commit-interval-ms`, when partitions move to another member, on exit and on Ctrl-C), so
//! several such processes share the partitions and a restarted one resumes right after what
//! was committed.
//!
//! Exit status: 0 when `--count` messages were printed, or (without `--count`) when nothing new
//! arrived for the idle timeout and every partition's last fetch succeeded (the topic was read
//! to its end); 1 when the idle timeout ended the run short of `--count`, or while fetches were
//! failing (the broker unreachable, a partition without a leader): scripts can tell "read it
//! all" from "cut off".

use std::cell::Cell;
use std::io::{BufWriter, ErrorKind, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sluice_client::{
    AutoOffsetReset, Client, Consumer, ConsumerConfig, ConsumerRecord, FailingPartition,
    GroupConsumer, GroupConsumerConfig, RebalanceListener, SeekTo,
};

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
    if let Some(group) = args.group.clone() {
        return run_group(&args, client, &group).await;
    }
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
    let failing = consumer.failing_partitions();
    let (line, code) = outcome(&args, printed, &failing);
    eprintln!("{line}");
    Ok(code)
}

/// The summary line and the exit code of a run that printed `printed` messages and stopped
/// with `failing` partitions still failing to fetch.
fn outcome(args: &ConsumeArgs, printed: u64, failing: &[FailingPartition]) -> (String, ExitCode) {
    let topic = &args.topic;
    let failures: Vec<String> = failing
        .iter()
        .map(|partition| {
            format!(
                "{}-{} ({} failed fetches; last: {})",
                partition.topic, partition.partition, partition.failures, partition.last_error
            )
        })
        .collect();
    let failing_text = if failures.is_empty() {
        String::new()
    } else {
        format!("; fetches were failing: {}", failures.join(", "))
    };
    let idle_ms = args
        .timeout_ms
        .unwrap_or(IDLE_TIMEOUT_MS_DEFAULT)
        .to_string();
    match args.count {
        Some(count) if printed < count => (
            format!(
                "consumed {printed} of {count} messages from {topic}: none arrived for \
                 {idle_ms} ms{failing_text}"
            ),
            ExitCode::FAILURE,
        ),
        None if !failing.is_empty() => (
            format!(
                "consumed {printed} messages from {topic}, then none for {idle_ms} ms while \
                 fetches were failing{}",
                failing_text.trim_start_matches("; fetches were failing")
            ),
            ExitCode::FAILURE,
        ),
        _ => (
            format!("consumed {printed} messages from {topic}"),
            ExitCode::SUCCESS,
        ),
    }
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

/// Longest heartbeat interval of a `--group` member, ms (Kafka's default).
const HEARTBEAT_INTERVAL_MS_MAX: u64 = 3_000;

/// Reports assignment changes on stderr and marks them as activity (a member that just got
/// partitions is not idle).
struct AssignmentReporter {
    topic: String,
    last_activity: Rc<Cell<Instant>>,
}

impl AssignmentReporter {
    fn report(&self, what: &str, partitions: &[(String, i32)]) {
        if partitions.is_empty() {
            return;
        }
        let list: Vec<String> = partitions
            .iter()
            .map(|(topic, partition)| format!("{topic}-{partition}"))
            .collect();
        eprintln!(
            "{what} {} partition(s) of {}: {}",
            list.len(),
            self.topic,
            list.join(",")
        );
        self.last_activity.set(Instant::now());
    }
}

impl RebalanceListener for AssignmentReporter {
    fn on_partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.report("revoked", partitions);
    }

    fn on_partitions_assigned(&mut self, partitions: &[(String, i32)]) {
        self.report("assigned", partitions);
    }
}

/// `sluice consume --group`: joins the group, prints what it is given, commits what it
/// printed, and leaves the group when it stops (count reached, idle, or Ctrl-C).
async fn run_group(
    args: &ConsumeArgs,
    client: Rc<Client>,
    group: &str,
) -> anyhow::Result<ExitCode> {
    let auto_offset_reset = match args.from {
        SeekTo::Earliest => AutoOffsetReset::Earliest,
        SeekTo::Latest => AutoOffsetReset::Latest,
        _ => bail!("with --group, --from is earliest or latest (it applies where the group has no committed offset)"),
    };
    client
        .describe_topic(&args.topic)
        .await
        .with_context(|| format!("cannot read topic {}", args.topic))?;
    let config = GroupConsumerConfig {
        client_id: "sluice-consume".to_string(),
        session_timeout_ms: args.session_timeout_ms,
        heartbeat_interval_ms: (args.session_timeout_ms / 3).clamp(1, HEARTBEAT_INTERVAL_MS_MAX),
        rebalance_timeout_ms: args.session_timeout_ms,
        assignors: vec![args.assignor.into()],
        auto_offset_reset,
        enable_auto_commit: true,
        auto_commit_interval_ms: args.commit_interval_ms.max(1),
        ..GroupConsumerConfig::new(group)
    };
    let mut member = GroupConsumer::new(client, ConsumerConfig::default(), config)
        .with_context(|| format!("cannot join group {group}"))?;
    let last_activity = Rc::new(Cell::new(Instant::now()));
    member.set_rebalance_listener(Box::new(AssignmentReporter {
        topic: args.topic.clone(),
        last_activity: last_activity.clone(),
    }));
    member.subscribe(vec![args.topic.clone()]);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot handle signals")?;
    }
    let mut out = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, std::io::stdout().lock());
    let consumed = consume_group(&mut member, args, &mut out, &stop, &last_activity).await;
    // Commit what was printed and leave, also after an error or a broken pipe.
    let closed = member.close().await;
    let printed = match consumed {
        Ok(printed) => printed,
        Err(error) if is_broken_pipe(&error) => return Ok(ExitCode::SUCCESS),
        Err(error) => return Err(error),
    };
    closed.with_context(|| format!("cannot commit the last offsets of group {group}"))?;
    // The same exit status as explicit partitions: short of `--count` is a failure.
    let (line, code) = outcome(args, printed, &[]);
    eprintln!("{line} as group {group}");
    Ok(code)
}

/// Polls and prints until `--count` messages were printed, nothing happened for the idle
/// timeout, or a signal asked to stop; returns how many were printed. Each poll returns at most
/// what is still to print, so the commits cover exactly what was printed.
async fn consume_group(
    member: &mut GroupConsumer,
    args: &ConsumeArgs,
    out: &mut impl Write,
    stop: &AtomicBool,
    last_activity: &Cell<Instant>,
) -> anyhow::Result<u64> {
    let idle_timeout = args
        .timeout_ms
        .or(args.count.is_none().then_some(IDLE_TIMEOUT_MS_DEFAULT))
        .map(Duration::from_millis);
    let mut printed = 0_u64;
    while args.count.is_none_or(|count| printed < count) && !stop.load(Ordering::Relaxed) {
        let wait = match idle_timeout {
            Some(idle) => {
                let left = (last_activity.get() + idle).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(POLL_WAIT_MAX)
            }
            None => POLL_WAIT_MAX,
        };
        let remaining = args.count.map_or(usize::MAX, |count| {
            usize::try_from(count - printed).unwrap_or(usize::MAX)
        });
        let records = member
            .poll_records(wait, remaining)
            .await
            .with_context(|| format!("cannot read topic {}", args.topic))?;
        if !records.is_empty() {
            last_activity.set(Instant::now());
        }
        for record in &records {
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

    fn args(count: Option<u64>, timeout_ms: Option<u64>) -> ConsumeArgs {
        ConsumeArgs {
            topic: "t".into(),
            partition: None,
            from: sluice_client::SeekTo::Earliest,
            count,
            timeout_ms,
            print_offsets: false,
            group: None,
            session_timeout_ms: 45_000,
            assignor: super::super::args::AssignorArg::Range,
            commit_interval_ms: 5_000,
            connect: super::super::args::ConnectArgs {
                bootstrap: "h:1".into(),
                request_timeout_ms: 1_000,
            },
        }
    }

    // Proves the exit status: success when --count was reached, or when the idle timeout
    // ended a run whose fetches all succeeded; failure when the idle timeout ended it short of
    // --count, or while a partition's fetches were failing, with a line naming the shortfall
    // and the failing partitions.
    #[test]
    fn exit_status_tells_complete_from_cut_off() {
        let failing = vec![FailingPartition {
            topic: "t".into(),
            partition: 1,
            failures: 4,
            last_error: "connection refused".into(),
        }];
        let (line, code) = outcome(&args(Some(3), None), 3, &failing);
        assert_eq!(code, ExitCode::SUCCESS, "{line}");
        let (line, code) = outcome(&args(None, None), 7, &[]);
        assert_eq!(code, ExitCode::SUCCESS, "{line}");
        assert_eq!(line, "consumed 7 messages from t");
        let (line, code) = outcome(&args(Some(10), Some(2_000)), 4, &[]);
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(
            line,
            "consumed 4 of 10 messages from t: none arrived for 2000 ms"
        );
        let (line, code) = outcome(&args(None, None), 7, &failing);
        assert_eq!(code, ExitCode::FAILURE);
        assert!(
            line.contains("t-1 (4 failed fetches; last: connection refused)"),
            "{line}"
        );
        let (line, code) = outcome(&args(Some(10), Some(2_000)), 4, &failing);
        assert_eq!(code, ExitCode::FAILURE);
        assert!(line.contains("4 of 10") && line.contains("t-1"), "{line}");
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
