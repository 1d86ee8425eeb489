//! Runs a workload end to end: broker (embedded or remote), topics, executors, phases, report.

use crate::cpu::{CpuReading, CpuReport};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::accounting::account;
use crate::admin;
use crate::control::RunControl;
use crate::coordinator::{BrokerHealth, Coordinator, Measured, Timing};
use crate::embedded::{EmbeddedBroker, EmbeddedOptions};
use crate::error::LoadgenError;
use crate::histogram::LatencyHistogram;
use crate::payload::PayloadPool;
use crate::plan::plan_executors;
use crate::report::{
    AggregateReport, BacklogReport, BrokerInfo, Correctness, CountsReport, MachineInfo, Report,
    BYTES_PER_MB,
};
use crate::worker::{spawn_executor, SharedRun};
use crate::workload::{CompressionSetting, Workload, WorkloadLimits, TOPIC_NAME_BYTES_MAX};

/// Default progress window.
pub const PROGRESS_INTERVAL_DEFAULT_S: u64 = 5;
/// Default longest tail: after producers stop, consumers get this long to catch up.
pub const DRAIN_TIMEOUT_DEFAULT_S: u64 = 30;
/// Default connect timeout.
pub const CONNECT_TIMEOUT_DEFAULT_MS: u64 = 5_000;
/// Bytes of a record batch that are not message value: the 61-byte batch header, the record's
/// framing varints and its key, rounded up generously. A message may be at most the broker's
/// batch limit less this.
pub const RECORD_OVERHEAD_BYTES_MAX: usize = 1024;
/// Seed of the random payload pool: fixed, so two runs of a workload send the same bytes.
const PAYLOAD_SEED: u64 = 0x5eed_1007;

/// Which client drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Sluice's native client on glommio executors (shard-aware, zero-copy).
    #[default]
    Native,
    /// librdkafka through the Kafka protocol: Sluice's Kafka port or any Kafka broker.
    Kafka,
}

/// Which broker to run against.
#[derive(Debug, Clone)]
pub enum BrokerTarget {
    /// A broker that is already running.
    Remote {
        /// `HOST:PORT` of its native port (its Kafka port with the Kafka driver).
        bootstrap: String,
    },
    /// An in-process broker started for this run.
    Embedded(EmbeddedOptions),
}

/// Everything a run needs besides the workload's own settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The workload (already merged from file and flags; validated by [`run`]).
    pub workload: Workload,
    /// The broker.
    pub broker: BrokerTarget,
    /// The client that drives the load.
    pub driver: Driver,
    /// Use this topic name (or `NAME-i` for several topics) instead of a run-unique one; an
    /// existing topic with the right partition count is reused.
    pub topic: Option<String>,
    /// Keep the topics this run created.
    pub keep_topic: bool,
    /// CPUs for the load generator's executors; `None` = those the embedded broker does not use,
    /// or all.
    pub cpus: Option<Vec<usize>>,
    /// Pin each executor to its CPU.
    pub pin: bool,
    /// Length of a progress window.
    pub progress_interval: Duration,
    /// Longest the tail may last after producers stop.
    pub drain_timeout: Duration,
    /// How long connecting to the broker may take.
    pub connect_timeout: Duration,
    /// Native driver: route each request to the shard that owns its partition (true), or send
    /// everything to the broker's shared port, which forwards requests for another core's
    /// partitions over its channel mesh (false: what forwarding costs, as a Kafka client sees).
    pub shard_aware: bool,
    /// Set (by a SIGINT handler) to stop the run early; what was measured is still reported.
    pub interrupt: Arc<AtomicBool>,
    /// Print the progress line every window.
    pub print_progress: bool,
}

impl RunOptions {
    /// Options with every default for `workload` against `broker`.
    pub fn new(workload: Workload, broker: BrokerTarget) -> RunOptions {
        RunOptions {
            workload,
            broker,
            driver: Driver::Native,
            topic: None,
            keep_topic: false,
            cpus: None,
            pin: true,
            progress_interval: Duration::from_secs(PROGRESS_INTERVAL_DEFAULT_S),
            drain_timeout: Duration::from_secs(DRAIN_TIMEOUT_DEFAULT_S),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_DEFAULT_MS),
            shard_aware: true,
            interrupt: Arc::new(AtomicBool::new(false)),
            print_progress: true,
        }
    }
}

/// The bounds the broker puts on a workload (its default record batch limit).
pub fn broker_limits() -> WorkloadLimits {
    let batch_bytes_max = sluice_storage::LogConfig::default().batch_bytes_max;
    WorkloadLimits {
        message_bytes_max: batch_bytes_max - RECORD_OVERHEAD_BYTES_MAX,
        batch_bytes_max,
    }
}

/// Runs the workload and returns its report. Errors (bad workload, unreachable broker, a failed
/// executor) come back as [`LoadgenError`]; a run that lost acknowledged messages is not an error
/// here: its report says so in `correctness`.
pub fn run(options: &RunOptions) -> Result<Report, LoadgenError> {
    options.workload.validate(&broker_limits())?;
    let pool = payload_pool(&options.workload)?;
    let started_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (embedded, bootstrap, broker) = match &options.broker {
        BrokerTarget::Embedded(embedded) => {
            let embedded = EmbeddedBroker::start(embedded)?;
            let bootstrap = match options.driver {
                Driver::Native => embedded.bootstrap(),
                Driver::Kafka => {
                    embedded
                        .kafka_bootstrap()
                        .ok_or_else(|| LoadgenError::EmbeddedBroker {
                            operation: "start",
                            message: "the embedded broker has no Kafka port".to_string(),
                        })?
                }
            };
            let info = BrokerInfo {
                bootstrap: bootstrap.clone(),
                ..embedded.info()
            };
            (Some(embedded), bootstrap, info)
        }
        BrokerTarget::Remote { bootstrap } => (None, bootstrap.clone(), remote_info(bootstrap)),
    };
    let cpu_start = embedded.as_ref().and_then(|_| CpuReading::now());
    let health = || embedded.as_ref().and_then(EmbeddedBroker::stopped_part);
    let result = run_on_broker(options, &bootstrap, pool, &health);
    let cpu_end = embedded.as_ref().and_then(|_| CpuReading::now());
    let shutdown = embedded.map(EmbeddedBroker::shutdown).transpose();
    let (topics, measured, mut errors) = result?;
    if let Some(Some(kept)) = shutdown? {
        eprintln!("Embedded broker data kept in {}", kept.display());
    }
    let (cpus, executors) = (
        executor_cpus(options).unwrap_or_default(),
        measured.outcomes.len(),
    );
    errors.extend(
        measured
            .outcomes
            .iter()
            .flat_map(|outcome| outcome.errors.iter().cloned()),
    );
    let counts = account(
        &topics,
        options.workload.subscriptions_per_topic,
        &measured.outcomes,
    );
    let moved_bytes = (counts.acked + counts.consumed) * options.workload.message_size as u64;
    let cpu = cpu_start
        .zip(cpu_end)
        .map(|(start, end)| CpuReport::between(start, end, moved_bytes));
    Ok(Report {
        tool: "sluice-loadgen".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        driver: driver_name(options.driver, options.shard_aware),
        started_at_unix_ms,
        workload: options.workload.clone(),
        machine: MachineInfo::detect(),
        broker,
        loadgen_cpus: cpus.into_iter().flatten().collect(),
        loadgen_executors: executors,
        topics,
        interrupted: measured.interrupted,
        aggregate: aggregate(&measured, &options.workload),
        correctness: verdict(&options.workload, &measured, &counts),
        windows: measured.windows,
        counts,
        notes: notes(&options.workload, options.driver),
        errors,
        cpu,
    })
}

/// The driver as the report names it.
fn driver_name(driver: Driver, shard_aware: bool) -> String {
    match driver {
        Driver::Native if shard_aware => "native".to_string(),
        Driver::Native => "native (shared port only, forwarded)".to_string(),
        Driver::Kafka => format!("kafka ({})", crate::kafka::client_version()),
    }
}

fn remote_info(bootstrap: &str) -> BrokerInfo {
    BrokerInfo {
        mode: "remote".to_string(),
        bootstrap: bootstrap.to_string(),
        shards: None,
        cpus: None,
        write_mode: None,
        durability: None,
    }
}

/// The payload pool the workload asks for.
pub fn payload_pool(workload: &Workload) -> Result<PayloadPool, LoadgenError> {
    match &workload.payload_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| LoadgenError::Io {
                operation: "read payload file",
                path: path.clone(),
                source,
            })?;
            Ok(PayloadPool::from_file_bytes(&bytes, workload.message_size))
        }
        None => Ok(PayloadPool::random(
            workload.message_size,
            workload.compressible_ratio.unwrap_or(0.0),
            PAYLOAD_SEED,
            workload.compression != CompressionSetting::None,
        )),
    }
}

/// Creates the topics, runs, and deletes the topics it created (unless kept).
fn run_on_broker(
    options: &RunOptions,
    bootstrap: &str,
    pool: PayloadPool,
    health: BrokerHealth<'_>,
) -> Result<(Vec<String>, Measured, Vec<String>), LoadgenError> {
    let suffix = format!("{:08x}", rand::thread_rng().gen::<u32>());
    let topics = topic_names(&options.workload, options.topic.as_deref(), &suffix)?;
    let partitions = options.workload.partitions_per_topic;
    let reuse = options.topic.is_some();
    let timeout = options.connect_timeout;
    let created = match options.driver {
        Driver::Native => admin::create_topics(bootstrap, timeout, &topics, partitions, reuse)?,
        Driver::Kafka => {
            crate::kafka::create_topics(bootstrap, timeout, &topics, partitions, reuse)?
        }
    };
    // The native driver's subscriptions are consumer groups starting at the partitions'
    // ends; the Kafka driver assigns partitions statically (see `kafka`).
    let subscriptions = options.workload.subscriptions_per_topic;
    if options.driver == Driver::Native {
        admin::commit_start_offsets(bootstrap, timeout, &topics, subscriptions)?;
    }
    let measured = match options.driver {
        Driver::Native => drive(options, bootstrap, &topics, pool, health),
        Driver::Kafka => crate::kafka::drive(options, bootstrap, &topics, pool, health),
    };
    let mut errors = Vec::new();
    // A broker that lost a part answers nothing more: cleaning up would only wait out timeouts.
    if !options.keep_topic && health().is_none() {
        // The groups go with the topics (their members left when the run ended).
        let groups_deleted = match options.driver {
            Driver::Native => admin::delete_groups(bootstrap, timeout, &topics, subscriptions),
            Driver::Kafka => Ok(()),
        };
        if let Err(error) = groups_deleted {
            tracing::warn!("{error}");
            errors.push(error.to_string());
        }
        let ours: Vec<String> = topics
            .iter()
            .zip(&created)
            .filter(|(_, created)| **created)
            .map(|(topic, _)| topic.clone())
            .collect();
        let deleted = match options.driver {
            Driver::Native => admin::delete_topics(bootstrap, timeout, &ours),
            Driver::Kafka => crate::kafka::delete_topics(bootstrap, timeout, &ours),
        };
        if let Err(error) = deleted {
            tracing::warn!("{error}");
            errors.push(error.to_string());
        }
    }
    Ok((topics, measured?, errors))
}

/// Topic names: `NAME-SUFFIX` (or `NAME-SUFFIX-i` for several topics), or the `--topic` name
/// (`TOPIC-i` for several).
pub fn topic_names(
    workload: &Workload,
    topic: Option<&str>,
    suffix: &str,
) -> Result<Vec<String>, LoadgenError> {
    let base = match topic {
        Some(topic) => {
            let valid = !topic.is_empty()
                && topic.len() + 8 <= TOPIC_NAME_BYTES_MAX
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
            if !valid {
                return Err(LoadgenError::Option {
                    option: "--topic",
                    message: format!(
                        "`{topic}` is not a topic name: use 1 to 240 of a-z A-Z 0-9 . _ -"
                    ),
                });
            }
            topic.to_string()
        }
        None => format!("{}-{suffix}", workload.name),
    };
    if workload.topics == 1 {
        return Ok(vec![base]);
    }
    Ok((0..workload.topics)
        .map(|index| format!("{base}-{index}"))
        .collect())
}

/// One entry per executor: the CPU to pin it to, or `None` when unpinned.
pub fn executor_cpus(options: &RunOptions) -> Result<Vec<Option<usize>>, LoadgenError> {
    let online: Vec<usize> = glommio::CpuSet::online()
        .map(|set| {
            let mut cpus: Vec<usize> = set.into_iter().map(|location| location.cpu).collect();
            cpus.sort_unstable();
            cpus.dedup();
            cpus
        })
        .unwrap_or_else(|_| {
            (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
        });
    let cpus = match &options.cpus {
        Some(cpus) => {
            if cpus.is_empty() {
                return Err(LoadgenError::Option {
                    option: "--cpus",
                    message: "list at least one CPU".into(),
                });
            }
            if let Some(missing) = cpus.iter().find(|cpu| !online.contains(cpu)) {
                return Err(LoadgenError::Option {
                    option: "--cpus",
                    message: format!("CPU {missing} is not online (online: {online:?})"),
                });
            }
            cpus.clone()
        }
        None => {
            let broker_cpus = match &options.broker {
                BrokerTarget::Embedded(EmbeddedOptions {
                    cpus: Some(cpus), ..
                }) => cpus.clone(),
                _ => Vec::new(),
            };
            let free: Vec<usize> = online
                .iter()
                .copied()
                .filter(|cpu| !broker_cpus.contains(cpu))
                .collect();
            if free.is_empty() {
                online
            } else {
                free
            }
        }
    };
    Ok(cpus
        .into_iter()
        .map(|cpu| options.pin.then_some(cpu))
        .collect())
}

/// Starts the executors and coordinates the run until every executor reported.
fn drive(
    options: &RunOptions,
    bootstrap: &str,
    topics: &[String],
    pool: PayloadPool,
    health: BrokerHealth<'_>,
) -> Result<Measured, LoadgenError> {
    let control = Arc::new(RunControl::new());
    let shared = Arc::new(SharedRun {
        control: control.clone(),
        workload: options.workload.clone(),
        topics: topics.to_vec(),
        bootstrap: bootstrap.to_string(),
        pool,
        connect_timeout: options.connect_timeout,
        shard_aware: options.shard_aware,
    });
    let plans = plan_executors(&options.workload, &executor_cpus(options)?);
    if options.print_progress {
        let cpus: Vec<String> = plans
            .iter()
            .map(|plan| {
                plan.cpu
                    .map_or_else(|| "unpinned".to_string(), |cpu| format!("cpu {cpu}"))
            })
            .collect();
        println!(
            "Broker at {bootstrap}; topic(s) {}; {} load generator executor(s) ({})",
            topics.join(", "),
            plans.len(),
            cpus.join(", ")
        );
    }
    let (sender, receiver) = mpsc::channel();
    let mut handles = Vec::with_capacity(plans.len());
    let executors = plans.len();
    for plan in plans {
        match spawn_executor(plan, shared.clone(), sender.clone()) {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                control.abort();
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(error);
            }
        }
    }
    drop(sender);
    let timing = Timing {
        progress_interval: options.progress_interval,
        drain_timeout: options.drain_timeout,
    };
    let coordinator = Coordinator::new(
        control.clone(),
        options.workload.clone(),
        timing,
        options.interrupt.clone(),
        options.print_progress,
        receiver,
        executors,
    )
    .watching(health);
    let (result, all_done) = coordinator.run();
    control.finish();
    if all_done {
        for (index, handle) in handles.into_iter().enumerate() {
            if let Err(error) = handle.join() {
                tracing::warn!("load generator executor {index} ended badly: {error}");
            }
        }
    } else {
        // An executor stuck on a broker that stopped answering is left to end with the process
        // rather than joined, so the run still reports and exits.
        tracing::warn!("some load generator executors did not stop; not waiting for them");
    }
    result
}

fn aggregate(measured: &Measured, workload: &Workload) -> AggregateReport {
    let counters = &measured.measured_counters;
    let seconds = measured.measured_s;
    let per_s = |count: u64| {
        if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        }
    };
    // Every message of a run has exactly the workload's size.
    let bytes_per_message = workload.message_size as f64;
    let backlog = measured.backlog.map(|backlog| {
        let drain_rate = if backlog.drain_s > 0.0 {
            backlog.drain_consumed as f64 / backlog.drain_s
        } else {
            0.0
        };
        BacklogReport {
            backlog_bytes_target: workload.backlog_bytes,
            backlog_messages: backlog.backlog_messages,
            build_s: backlog.build_s,
            drain_s: backlog.drain_s,
            drained: backlog.drained,
            drain_rate_msg_s: drain_rate,
            drain_rate_mb_s: drain_rate * bytes_per_message / BYTES_PER_MB,
        }
    });
    let latency =
        |histogram: &LatencyHistogram| (histogram.summary(), histogram.percentile_curve());
    let (publish_latency, publish_latency_curve) = latency(&measured.latency.publish_latency);
    let (end_to_end_latency, end_to_end_latency_curve) =
        latency(&measured.latency.end_to_end_latency);
    AggregateReport {
        measured_s: seconds,
        publish_rate_msg_s: per_s(counters.acked),
        publish_rate_mb_s: per_s(counters.acked_bytes) / BYTES_PER_MB,
        consume_rate_msg_s: per_s(counters.consumed),
        consume_rate_mb_s: per_s(counters.consumed_bytes) / BYTES_PER_MB,
        publish_latency,
        end_to_end_latency,
        publish_latency_curve,
        end_to_end_latency_curve,
        backlog,
    }
}

fn verdict(workload: &Workload, measured: &Measured, counts: &CountsReport) -> Correctness {
    let subscriptions = workload.subscriptions_per_topic;
    if subscriptions == 0 {
        return Correctness {
            checked: false,
            passed: true,
            message: "not checked: the workload has no subscriptions".to_string(),
        };
    }
    if measured.interrupted {
        return Correctness {
            checked: false,
            passed: counts.missing == 0,
            message: format!(
                "not checked: interrupted (Ctrl-C); {} acknowledged message(s) were not consumed before it stopped",
                counts.missing
            ),
        };
    }
    if counts.missing == 0 {
        let message = format!(
            "PASSED: every one of the {} acknowledged messages was consumed by each of the {} subscription(s) \
             per topic ({} duplicate deliveries)",
            counts.acked, subscriptions, counts.duplicates
        );
        return Correctness {
            checked: true,
            passed: true,
            message,
        };
    }
    let mut message = format!(
        "FAILED: {} acknowledged message(s) were never consumed (per partition in counts.partitions)",
        counts.missing
    );
    if !measured.caught_up {
        message.push_str("; consumers had not caught up when the drain timeout ended the run");
    }
    Correctness {
        checked: true,
        passed: false,
        message,
    }
}

fn notes(workload: &Workload, driver: Driver) -> Vec<String> {
    let mut notes = vec![
        "Rates count acknowledged and consumed messages; MB = 2^20 bytes, as the OpenMessaging Benchmark reports."
            .to_string(),
        "Latency is measured from each message's intended send time (coordinated-omission corrected).".to_string(),
    ];
    if workload.subscriptions_per_topic > 0 && driver == Driver::Kafka {
        notes.push(format!(
            "Kafka driver: each subscription's {} consumer(s) are assigned partitions statically \
             (partition p to consumer p mod consumers), starting at the partitions' ends.",
            workload.consumers_per_subscription
        ));
    } else if workload.subscriptions_per_topic > 0 {
        notes.push(format!(
            "Each subscription is a consumer group of {} member(s) (range assignor), starting at the partitions' \
             ends when the run began; rebalances and their duration are counted in counts.groups.",
            workload.consumers_per_subscription
        ));
    }
    if workload.producer_rate == 0.0 {
        notes.push(
            "producer_rate 0: producers send as fast as the client's buffer allows, so publish latency includes time \
             queued in that buffer."
                .to_string(),
        );
    }
    if workload.is_backlog_mode() {
        notes.push(format!(
            "Backlog mode: {} bytes produced with consumers paused, then consumers started; the drain rate is \
             measured until they consumed as many messages as the backlog held.",
            workload.backlog_bytes
        ));
    }
    notes
}
