//! The Kafka driver (`--driver kafka`): the same workloads, latency accounting, exactly-once
//! check and report as the native driver, through librdkafka (the `rdkafka` crate), the client
//! most Kafka users run, so Sluice's Kafka port and any other Kafka-protocol broker can be
//! measured the same way.
//!
//! librdkafka is a threaded C library with a blocking API, so this driver does not use glommio:
//! every producer and every consumer of the plan runs on an OS thread of its own, each a
//! "worker" in the coordinator's terms (it reports Ready, one Window per progress window and
//! Finished, exactly as an executor does). A producer's acknowledgements are taken on
//! librdkafka's delivery thread, timestamped there, and handed to the producer's thread over a
//! bounded std channel; a consumer blocks in `poll`, which returns as soon as a message arrives.
//! Everything a worker measures stays on its own thread: nothing on the send or receive path
//! takes a lock of ours.
//!
//! Partitions are chosen by the load generator (murmur2 of the key, or sticky), as in the
//! native driver, so sequences are numbered per partition. Subscriptions are emulated by
//! static assignment, positioned at each partition's end before the run starts.

mod consumer;
mod producer;

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

use crate::control::RunControl;
use crate::coordinator::{BrokerHealth, Coordinator, Measured, Timing};
use crate::error::LoadgenError;
use crate::plan::plan_executors;
use crate::runner::{executor_cpus, RunOptions};
use crate::worker::{ExecutorEvent, SharedRun};

/// How often a waiting worker looks at the run's switches again.
const START_POLL_MS: u64 = 1;
/// librdkafka's log level: warnings and errors only.
const LIBRDKAFKA_LOG_LEVEL: &str = "4";

/// The librdkafka version this driver runs, for the report.
pub fn client_version() -> String {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    format!("librdkafka {version}")
}

/// The settings every librdkafka client of a run shares.
fn base_config(bootstrap: &str, connect_timeout: Duration) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "sluice-loadgen")
        .set("log_level", LIBRDKAFKA_LOG_LEVEL)
        // librdkafka otherwise opens its connection to a partition leader lazily, on the first
        // message, which would put connection set-up into the first measured latencies.
        .set("enable.sparse.connections", "false")
        .set(
            "socket.connection.setup.timeout.ms",
            connect_timeout.as_millis().to_string(),
        );
    config
}

fn kafka_error(operation: impl Into<String>, error: impl std::fmt::Display) -> LoadgenError {
    LoadgenError::Kafka {
        operation: operation.into(),
        message: error.to_string(),
    }
}

/// Creates `topics` with `partitions` each through the Kafka admin API; returns, per topic,
/// whether this run created it (an existing topic is reused when `reuse` allows it).
pub fn create_topics(
    bootstrap: &str,
    connect_timeout: Duration,
    topics: &[String],
    partitions: u32,
    reuse: bool,
) -> Result<Vec<bool>, LoadgenError> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap, connect_timeout)
        .create()
        .map_err(|error| kafka_error("create the admin client", error))?;
    let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(connect_timeout));
    let results = futures_lite::future::block_on(admin.create_topics(&new, &options))
        .map_err(|error| kafka_error("create topics", error))?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(_) => Ok(true),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if reuse => Ok(false),
            Err((topic, code)) => Err(kafka_error(format!("create topic {topic}"), code)),
        })
        .collect()
}

/// Deletes `topics` through the Kafka admin API.
pub fn delete_topics(
    bootstrap: &str,
    connect_timeout: Duration,
    topics: &[String],
) -> Result<(), LoadgenError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap, connect_timeout)
        .create()
        .map_err(|error| kafka_error("create the admin client", error))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(connect_timeout));
    let results = futures_lite::future::block_on(admin.delete_topics(&names, &options))
        .map_err(|error| kafka_error("delete topics", error))?;
    for result in results {
        if let Err((topic, code)) = result {
            return Err(kafka_error(format!("delete topic {topic}"), code));
        }
    }
    Ok(())
}

/// One unit of work on its own thread.
enum Work {
    Producer(crate::plan::ProducerPlan),
    Consumer(crate::plan::ConsumerPlan),
}

/// Starts one worker thread per producer and consumer of the plan and coordinates the run
/// until every worker reported.
pub fn drive(
    options: &RunOptions,
    bootstrap: &str,
    topics: &[String],
    pool: crate::payload::PayloadPool,
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
        shard_aware: true,
    });
    let work: Vec<(Option<usize>, Work)> =
        plan_executors(&options.workload, &executor_cpus(options)?)
            .into_iter()
            .flat_map(|plan| {
                let cpu = plan.cpu;
                let producers = plan.producers.into_iter().map(Work::Producer);
                let consumers = plan.consumers.into_iter().map(Work::Consumer);
                producers.chain(consumers).map(move |work| (cpu, work))
            })
            .collect();
    if options.print_progress {
        println!(
            "Kafka broker at {bootstrap} ({}); topic(s) {}; {} producer and consumer thread(s)",
            client_version(),
            topics.join(", "),
            work.len()
        );
    }
    let (sender, receiver) = mpsc::channel();
    let workers = work.len();
    let mut handles = Vec::with_capacity(workers);
    for (index, (cpu, work)) in work.into_iter().enumerate() {
        match spawn_worker(index, cpu, work, shared.clone(), sender.clone()) {
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
        workers,
    )
    .watching(health);
    let (result, all_done) = coordinator.run();
    control.finish();
    if all_done {
        for handle in handles {
            let _ = handle.join();
        }
    } else {
        tracing::warn!("some Kafka driver threads did not stop; not waiting for them");
    }
    result
}

/// Pins the calling thread to `cpu`. librdkafka's own threads, created later by this thread's
/// client, inherit the mask, so the whole driver stays off the embedded broker's cores as the
/// native driver's pinned executors do. A failure is logged: the run still measures, unpinned.
fn pin_current_thread(cpu: usize) {
    // SAFETY: `set` is a plain bitmask owned by this frame; sched_setaffinity(0, ...) only reads
    // it and changes the calling thread's own affinity.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        tracing::warn!(
            cpu,
            error = %std::io::Error::last_os_error(),
            "cannot pin a Kafka driver thread"
        );
    }
}

fn spawn_worker(
    index: usize,
    cpu: Option<usize>,
    work: Work,
    shared: Arc<SharedRun>,
    events: Sender<ExecutorEvent>,
) -> Result<JoinHandle<()>, LoadgenError> {
    std::thread::Builder::new()
        .name(format!("loadgen-kafka-{index}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                pin_current_thread(cpu);
            }
            let control = shared.control.clone();
            let result = match work {
                Work::Producer(plan) => producer::run(index, plan, &shared, &events),
                Work::Consumer(plan) => consumer::run(index, plan, &shared, &events),
            };
            let event = match result {
                Ok(outcome) => ExecutorEvent::Finished {
                    executor: index,
                    outcome: Box::new(outcome),
                },
                Err(error) => {
                    control.abort();
                    ExecutorEvent::Failed {
                        executor: index,
                        message: error.to_string(),
                    }
                }
            };
            let _ = events.send(event);
        })
        .map_err(|error| LoadgenError::Executor {
            index,
            message: format!("cannot start a Kafka driver thread: {error}"),
        })
}

/// Waits until the coordinator starts the run; the run's start time.
fn wait_for_start(control: &RunControl, index: usize) -> Result<u64, LoadgenError> {
    loop {
        if let Some(start_ns) = control.start_ns() {
            return Ok(start_ns);
        }
        if control.aborted() || control.finishing() {
            return Err(LoadgenError::Executor {
                index,
                message: "the run was cancelled before it started".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(START_POLL_MS));
    }
}

/// A worker's window bookkeeping: hands the window to the coordinator whenever the run moves
/// to the next one, and publishes the live counters.
struct Windows {
    executor: usize,
    last_window: u32,
    stats: crate::stats::WindowStats,
    live_acked: u64,
    live_acked_bytes: u64,
    live_consumed: u64,
    last_publish_ns: u64,
}

impl Windows {
    fn new(executor: usize, control: &RunControl) -> Windows {
        Windows {
            executor,
            last_window: control.window(),
            stats: crate::stats::WindowStats::default(),
            live_acked: 0,
            live_acked_bytes: 0,
            live_consumed: 0,
            last_publish_ns: 0,
        }
    }

    /// Publishes live counters every [`crate::control::LIVE_PUBLISH_INTERVAL_MS`] and sends
    /// the finished window when the coordinator moved on.
    fn tick(&mut self, control: &RunControl, events: &Sender<ExecutorEvent>) {
        let now_ns = control.now_ns();
        if now_ns.saturating_sub(self.last_publish_ns)
            >= crate::control::LIVE_PUBLISH_INTERVAL_MS * 1_000_000
        {
            self.publish(control);
            self.last_publish_ns = now_ns;
        }
        let current = control.window();
        if current != self.last_window {
            self.publish(control);
            let stats = self.stats.take();
            let _ = events.send(ExecutorEvent::Window {
                executor: self.executor,
                window: self.last_window,
                stats: Box::new(stats),
            });
            self.last_window = current;
        }
    }

    fn publish(&mut self, control: &RunControl) {
        control.publish(
            std::mem::take(&mut self.live_acked),
            std::mem::take(&mut self.live_acked_bytes),
            std::mem::take(&mut self.live_consumed),
        );
    }

    /// Sends the current window at the end of the run.
    fn finish(&mut self, control: &RunControl, events: &Sender<ExecutorEvent>) {
        self.tick(control, events);
        self.publish(control);
        let stats = self.stats.take();
        let _ = events.send(ExecutorEvent::Window {
            executor: self.executor,
            window: self.last_window,
            stats: Box::new(stats),
        });
    }
}
