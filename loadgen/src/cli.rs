//! The `sluice-loadgen` command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sluice_broker::config::{DurabilitySetting, WriteModeSetting};

use crate::embedded::EmbeddedOptions;
use crate::error::LoadgenError;
use crate::plot::report_svg;
use crate::report::Report;
use crate::runner::{
    run, BrokerTarget, Driver, RunOptions, CONNECT_TIMEOUT_DEFAULT_MS, DRAIN_TIMEOUT_DEFAULT_S,
    PROGRESS_INTERVAL_DEFAULT_S,
};
use crate::workload::{
    AcksSetting, CompressionSetting, KeyDistribution, Workload, WorkloadOverrides,
};

/// Exit code of a run that completed and passed (or did not need) the exactly-once check.
pub const EXIT_OK: u8 = 0;
/// Exit code of a run that could not be done (unreachable broker, failed executor, I/O error).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a bad workload or bad flags.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a run that ended cleanly but lost acknowledged messages.
pub const EXIT_CORRECTNESS: u8 = 3;
/// Exit code of a run stopped by Ctrl-C (its measurements are still printed and written).
pub const EXIT_INTERRUPTED: u8 = 130;

/// OpenMessaging-Benchmark-style load generator for Sluice.
///
/// Runs a workload (a TOML file and/or flags; flags win) against a broker: fixed-rate or
/// max-rate producers, consumers in subscriptions, publish and end-to-end latency in
/// HdrHistogram measured from each message's intended send time (coordinated omission
/// corrected), a progress line per window, a summary table, a JSON report and an SVG latency
/// plot. It also checks that every acknowledged message was consumed.
///
/// Exit codes: 0 ok; 1 run failed (e.g. broker unreachable); 2 bad workload or flags;
/// 3 acknowledged messages were not consumed; 130 interrupted by Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "sluice-loadgen", version, allow_negative_numbers = true)]
pub struct Cli {
    /// Workload file (TOML); see workloads/ for the OpenMessaging Benchmark classics.
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub overrides: WorkloadFlags,

    /// Start an in-process single-node broker on a temporary data directory.
    #[arg(long, conflicts_with = "bootstrap")]
    pub embedded: bool,
    /// The client that drives the load: Sluice's native client, or librdkafka over the Kafka
    /// protocol (against Sluice's Kafka port or any Kafka broker; `--bootstrap HOST:9092`).
    #[arg(long, value_enum, default_value_t = Driver::Native)]
    pub driver: Driver,
    /// Address of a running broker: its native port (comma-separated for several: the first
    /// that answers is used, the rest of the cluster is learned from its metadata), or its Kafka
    /// port with --driver kafka.
    #[arg(
        long,
        value_name = "HOST:PORT[,HOST:PORT...]",
        env = "SLUICE_BOOTSTRAP",
        default_value = "127.0.0.1:9192"
    )]
    pub bootstrap: String,
    /// Embedded broker: shards (cores) to run; default one per usable CPU.
    #[arg(long, requires = "embedded")]
    pub shards: Option<usize>,
    /// Embedded broker: CPUs to pin its shards to, e.g. `0` or `0-3,6`.
    #[arg(long, value_name = "LIST", requires = "embedded", value_parser = parse_cpu_list_arg)]
    pub broker_cpus: Option<CpuList>,
    /// Embedded broker: storage write mode.
    #[arg(long, value_enum, requires = "embedded")]
    pub write_mode: Option<WriteModeSetting>,
    /// Embedded broker: longest a written byte waits for fsync, in ms (interval durability).
    #[arg(long, value_name = "MS", requires = "embedded")]
    pub flush_ms: Option<u64>,
    /// Embedded broker: durability (durable: acknowledged once fsynced; interval: once written).
    #[arg(long, value_enum, requires = "embedded")]
    pub durability: Option<DurabilitySetting>,
    /// Embedded broker: keep its data directory after the run.
    #[arg(long, requires = "embedded")]
    pub keep_data: bool,

    /// Topic name to use instead of a run-unique one (`NAME-i` for several topics); an existing
    /// topic with the workload's partition count is reused.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Do not delete the topics this run created.
    #[arg(long)]
    pub keep_topic: bool,

    /// CPUs for the load generator's executors, e.g. `1` or `2-3`; default: those an embedded
    /// broker's --broker-cpus leaves free, or all.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list_arg)]
    pub cpus: Option<CpuList>,
    /// Do not pin executors to their CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Seconds per progress line (window).
    #[arg(long, value_name = "S", default_value_t = PROGRESS_INTERVAL_DEFAULT_S, value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_interval_s: u64,
    /// Longest consumers may take to catch up after producers stop, in seconds.
    #[arg(long, value_name = "S", default_value_t = DRAIN_TIMEOUT_DEFAULT_S)]
    pub drain_timeout_s: u64,
    /// Longest connecting to the broker may take, in ms.
    #[arg(long, value_name = "MS", default_value_t = CONNECT_TIMEOUT_DEFAULT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,
    /// Native driver: send every request to the broker's shared native port instead of
    /// straight to the shard owning each partition; the broker forwards requests for another
    /// core's partitions over its channel mesh (measures what forwarding costs, which is how
    /// every Kafka client is served).
    #[arg(long)]
    pub no_shard_aware: bool,

    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the latency-by-percentile plot (SVG) here.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// No progress lines, only the summary.
    #[arg(long)]
    pub quiet: bool,

    /// Instead of the workload, time consumer groups: MEMBERS members of a fresh group forming
    /// (to Stable), one of them leaving (to Stable again), then offset commits per second, on
    /// a topic of the workload's partition count.
    #[arg(long, value_name = "MEMBERS", value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub groups_bench: Option<u64>,
    /// With --groups-bench: how long members commit, in seconds.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 10,
        requires = "groups_bench"
    )]
    pub groups_bench_commit_s: u64,
}

/// Flags that override the workload file, one per workload key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WorkloadFlags {
    /// Workload name (topic names start with it).
    #[arg(long)]
    pub name: Option<String>,
    /// Number of topics.
    #[arg(long)]
    pub topics: Option<u32>,
    /// Partitions per topic.
    #[arg(long, visible_alias = "partitions")]
    pub partitions_per_topic: Option<u32>,
    /// Bytes per message.
    #[arg(long, value_name = "BYTES")]
    pub message_size: Option<usize>,
    /// Fraction (0.0..=1.0) of each random payload zstd can squeeze out.
    #[arg(long, value_name = "RATIO")]
    pub compressible_ratio: Option<f64>,
    /// File whose bytes fill every payload.
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
    /// Message keys.
    #[arg(long, value_name = "none|round-robin|random")]
    pub keys: Option<KeyDistribution>,
    /// Producers per topic.
    #[arg(long, visible_alias = "producers")]
    pub producers_per_topic: Option<u32>,
    /// Subscriptions (consumer groups) per topic.
    #[arg(long, visible_alias = "subscriptions")]
    pub subscriptions_per_topic: Option<u32>,
    /// Consumers per subscription.
    #[arg(long, visible_alias = "consumers")]
    pub consumers_per_subscription: Option<u32>,
    /// Messages per second over all producers; 0 = as fast as possible.
    #[arg(long, visible_alias = "rate", value_name = "MSG_PER_S")]
    pub producer_rate: Option<f64>,
    /// Warmup seconds (not in the aggregate).
    #[arg(long, value_name = "S")]
    pub warmup_s: Option<f64>,
    /// Measured seconds.
    #[arg(long, value_name = "S")]
    pub duration_s: Option<f64>,
    /// Backlog mode: bytes to produce with consumers paused before measuring the drain.
    #[arg(long, value_name = "BYTES")]
    pub backlog_bytes: Option<u64>,
    /// Largest producer batch in bytes.
    #[arg(long, value_name = "BYTES")]
    pub batch_bytes: Option<usize>,
    /// Producer linger in ms.
    #[arg(long, value_name = "MS")]
    pub linger_ms: Option<u64>,
    /// Acknowledgement level.
    #[arg(long, value_name = "0|1|all")]
    pub acks: Option<AcksSetting>,
    /// Batch codec.
    #[arg(long, value_name = "none|zstd")]
    pub compression: Option<CompressionSetting>,
    /// At-least-once producers: turn idempotence off (a retry may then write a message twice).
    #[arg(long)]
    pub no_idempotence: bool,
}

impl WorkloadFlags {
    /// The overrides these flags set.
    pub fn overrides(&self) -> WorkloadOverrides {
        let flags = self.clone();
        WorkloadOverrides {
            name: flags.name,
            topics: flags.topics,
            partitions_per_topic: flags.partitions_per_topic,
            message_size: flags.message_size,
            compressible_ratio: flags.compressible_ratio,
            payload_file: flags.payload_file,
            keys: flags.keys,
            producers_per_topic: flags.producers_per_topic,
            subscriptions_per_topic: flags.subscriptions_per_topic,
            consumers_per_subscription: flags.consumers_per_subscription,
            producer_rate: flags.producer_rate,
            warmup_s: flags.warmup_s,
            duration_s: flags.duration_s,
            backlog_bytes: flags.backlog_bytes,
            batch_bytes: flags.batch_bytes,
            linger_ms: flags.linger_ms,
            acks: flags.acks,
            compression: flags.compression,
            idempotence: flags.no_idempotence.then_some(false),
        }
    }
}

/// A CPU list flag's value. A newtype, because clap reads a bare `Vec` as a repeated flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses a CPU list flag (`0`, `0-3,6`) into a [`CpuList`].
pub fn parse_cpu_list_arg(text: &str) -> Result<CpuList, String> {
    parse_cpu_list(text).map(CpuList)
}

/// Parses a CPU list (`0`, `0-3,6`), sorted and without duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let parse = |number: &str| {
            number
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("`{number}` is not a CPU number"))
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (parse(first)?, parse(last)?);
                if first > last {
                    return Err(format!("range `{part}` runs backwards"));
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(parse(part)?),
        }
    }
    if cpus.is_empty() {
        return Err("list at least one CPU".to_string());
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

impl Cli {
    /// The workload: the file's (or the defaults), with the flags applied.
    pub fn workload(&self) -> Result<Workload, LoadgenError> {
        let mut workload = match &self.workload {
            Some(path) => Workload::from_file(path)?,
            None => Workload::default(),
        };
        workload.apply(&self.overrides.overrides());
        Ok(workload)
    }

    /// The run's options (the interrupt flag still to be wired to SIGINT).
    pub fn run_options(&self) -> Result<RunOptions, LoadgenError> {
        let broker = if self.embedded {
            BrokerTarget::Embedded(EmbeddedOptions {
                shards: self.shards,
                cpus: self.broker_cpus.clone().map(|list| list.0),
                write_mode: self.write_mode,
                flush_ms: self.flush_ms,
                durability: self.durability,
                keep_data: self.keep_data,
            })
        } else {
            let addresses = crate::admin::bootstrap_list(&self.bootstrap);
            if addresses.is_empty() {
                return Err(LoadgenError::Option {
                    option: "--bootstrap",
                    message: "give at least one host:port".to_string(),
                });
            }
            BrokerTarget::Remote {
                bootstrap: addresses.join(","),
            }
        };
        let mut options = RunOptions::new(self.workload()?, broker);
        options.driver = self.driver;
        options.topic = self.topic.clone();
        options.keep_topic = self.keep_topic;
        options.cpus = self.cpus.clone().map(|list| list.0);
        options.pin = !self.no_pin;
        options.progress_interval = Duration::from_secs(self.progress_interval_s);
        options.drain_timeout = Duration::from_secs(self.drain_timeout_s);
        options.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        options.shard_aware = !self.no_shard_aware;
        options.print_progress = !self.quiet;
        Ok(options)
    }
}

/// Runs the command line `args` (program name first) and returns the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    sluice_shard::keep_freed_memory();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_OK
            });
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match execute(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("sluice-loadgen: error: {error}");
            let usage = matches!(
                error,
                LoadgenError::Workload(_) | LoadgenError::Option { .. }
            );
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_ERROR })
        }
    }
}

fn execute(cli: &Cli) -> Result<u8, LoadgenError> {
    let mut options = cli.run_options()?;
    if let Some(members) = cli.groups_bench {
        let commit = Duration::from_secs(cli.groups_bench_commit_s);
        let report = crate::groups_bench::run_groups_bench_on(&options, members as usize, commit)?;
        println!("{report}");
        return Ok(EXIT_OK);
    }
    options.workload.validate(&crate::runner::broker_limits())?;
    options.interrupt = interrupt_on_sigint()?;
    println!("{}", describe(&options));
    let report = run(&options)?;
    print!("{}", report.summary_table());
    if let Some(path) = &cli.report {
        report
            .write_json(path)
            .map_err(|source| io_error("write report", path, source))?;
        println!("Report written to {}", path.display());
    }
    if let Some(path) = &cli.plot {
        std::fs::write(path, report_svg(&report))
            .map_err(|source| io_error("write plot", path, source))?;
        println!("Latency plot written to {}", path.display());
    }
    Ok(exit_code(&report))
}

/// The exit code a finished run deserves.
pub fn exit_code(report: &Report) -> u8 {
    if report.interrupted {
        EXIT_INTERRUPTED
    } else if report.correctness.checked && !report.correctness.passed {
        EXIT_CORRECTNESS
    } else {
        EXIT_OK
    }
}

fn io_error(operation: &'static str, path: &Path, source: std::io::Error) -> LoadgenError {
    LoadgenError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// A flag set by the first Ctrl-C (the run stops and reports); a second Ctrl-C exits at once.
fn interrupt_on_sigint() -> Result<Arc<AtomicBool>, LoadgenError> {
    let flag = Arc::new(AtomicBool::new(false));
    let register = |result: std::io::Result<signal_hook::SigId>| {
        result.map_err(|source| {
            io_error("register a Ctrl-C handler for", Path::new("SIGINT"), source)
        })
    };
    // Registered first, so it sees the flag as the previous Ctrl-C left it: set means this is the
    // second one, and the process exits.
    register(signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        i32::from(EXIT_INTERRUPTED),
        flag.clone(),
    ))?;
    register(signal_hook::flag::register(
        signal_hook::consts::SIGINT,
        flag.clone(),
    ))?;
    Ok(flag)
}

fn describe(options: &RunOptions) -> String {
    let w = &options.workload;
    let rate = if w.producer_rate == 0.0 {
        "max rate".to_string()
    } else {
        format!("{} msg/s", w.producer_rate)
    };
    let broker = match &options.broker {
        BrokerTarget::Embedded(_) => "an embedded broker".to_string(),
        BrokerTarget::Remote { bootstrap } => format!("the broker at {bootstrap}"),
    };
    let broker = match options.driver {
        Driver::Native => format!("{broker} (native driver)"),
        Driver::Kafka => format!(
            "{broker} (Kafka driver, {})",
            crate::kafka::client_version()
        ),
    };
    let mut text = format!(
        "Workload {}: {} topic(s) x {} partition(s), {} B messages, {} producer(s) per topic at {rate} in total, \
         {} subscription(s) x {} consumer(s), acks={}, compression={}, idempotence {}, batch {} B, linger {} ms; against {broker}",
        w.name,
        w.topics,
        w.partitions_per_topic,
        w.message_size,
        w.producers_per_topic,
        w.subscriptions_per_topic,
        w.consumers_per_subscription,
        w.acks,
        w.compression,
        if w.idempotence && w.acks != AcksSetting::None { "on" } else { "off" },
        w.batch_bytes,
        w.linger_ms
    );
    if w.is_backlog_mode() {
        text.push_str(&format!(
            "; backlog mode: {} bytes, then drain (at most {} s)",
            w.backlog_bytes, w.duration_s
        ));
    } else {
        text.push_str(&format!(
            "; warmup {} s, measure {} s",
            w.warmup_s, w.duration_s
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the exit code tells a clean pass, lost messages and an interruption apart, by
    // grading reports with each verdict.
    #[test]
    fn exit_codes_follow_the_verdict() {
        let mut report = crate::report::test_support::sample_report();
        assert_eq!(exit_code(&report), EXIT_OK);
        report.correctness.passed = false;
        assert_eq!(exit_code(&report), EXIT_CORRECTNESS);
        report.correctness.checked = false;
        assert_eq!(exit_code(&report), EXIT_OK);
        report.interrupted = true;
        assert_eq!(exit_code(&report), EXIT_INTERRUPTED);
    }

    // Proves CPU lists parse ranges and singles and refuse garbage, by parsing a few.
    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,2,4-6").unwrap(), vec![0, 2, 4, 5, 6]);
        assert_eq!(parse_cpu_list("3").unwrap(), vec![3]);
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    // Proves flags override the workload file and embedded-only flags need --embedded, by parsing
    // command lines.
    #[test]
    fn flags_override_workload_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("w.toml");
        std::fs::write(&path, "partitions_per_topic = 4\nproducer_rate = 100\n").unwrap();
        let cli = Cli::try_parse_from([
            "sluice-loadgen",
            "--workload",
            path.to_str().unwrap(),
            "--partitions",
            "8",
            "--acks",
            "1",
            "--embedded",
            "--shards",
            "1",
            "--broker-cpus",
            "0",
            "--cpus",
            "1-2",
        ])
        .unwrap();
        let options = cli.run_options().unwrap();
        assert_eq!(options.cpus, Some(vec![1, 2]));
        assert_eq!(options.workload.partitions_per_topic, 8);
        assert_eq!(options.workload.producer_rate, 100.0);
        assert_eq!(options.workload.acks, AcksSetting::Leader);
        assert!(matches!(
            options.broker,
            BrokerTarget::Embedded(EmbeddedOptions {
                shards: Some(1),
                ..
            })
        ));
        if let BrokerTarget::Embedded(embedded) = &options.broker {
            assert_eq!(embedded.cpus, Some(vec![0]));
        }
        assert!(Cli::try_parse_from(["sluice-loadgen", "--shards", "1"]).is_err());
        assert!(
            Cli::try_parse_from(["sluice-loadgen", "--embedded", "--bootstrap", "h:1"]).is_err()
        );
    }

    // Proves --bootstrap takes a comma-separated list as the sluice CLI does: every address is
    // kept in order (spaces and empty entries dropped), and a list with no address is refused.
    #[test]
    fn bootstrap_takes_a_comma_separated_list() {
        let cli = Cli::try_parse_from(["sluice-loadgen", "--bootstrap", "a:1, b:2,,c:3"]).unwrap();
        let options = cli.run_options().unwrap();
        let BrokerTarget::Remote { bootstrap } = &options.broker else {
            panic!("expected a remote broker");
        };
        assert_eq!(
            crate::admin::bootstrap_list(bootstrap),
            vec!["a:1".to_string(), "b:2".to_string(), "c:3".to_string()]
        );
        let empty = Cli::try_parse_from(["sluice-loadgen", "--bootstrap", " , "]).unwrap();
        let message = empty.run_options().unwrap_err().to_string();
        assert!(message.contains("--bootstrap"), "{message}");
    }

    // Proves impossible values given as flags fail with a usage error (exit code 2) and a message
    // naming the field, by running the command line through main_with_args's checks.
    #[test]
    fn bad_flags_are_usage_errors() {
        let cli = Cli::try_parse_from(["sluice-loadgen", "--rate", "-5"]).unwrap();
        let error = cli.run_options().and_then(|options| {
            options.workload.validate(&crate::runner::broker_limits())?;
            Ok(options)
        });
        let message = error.unwrap_err().to_string();
        assert!(message.contains("producer_rate is -5"), "{message}");
        assert!(Cli::try_parse_from(["sluice-loadgen", "--partitions", "-1"]).is_err());
        assert!(Cli::try_parse_from(["sluice-loadgen", "--keys", "sticky"]).is_err());
        let code = main_with_args(["sluice-loadgen", "--partitions", "0"].map(OsString::from));
        assert_eq!(code, ExitCode::from(EXIT_USAGE));
    }
}
