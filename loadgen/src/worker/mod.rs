//! One load generator executor: a glommio `LocalExecutor` on its own thread (pinned to a CPU when
//! asked), with one [`Client`](sluice_client::Client) shared by its producers and consumers.
//!
//! Everything an executor measures lives in its own [`ExecutorLocal`] (no sharing, no lock). A
//! housekeeping task hands each finished window to the main thread over a std channel and adds
//! the live counters to the run's atomics every [`LIVE_PUBLISH_INTERVAL_MS`].

mod consumer;
mod producer;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::admin::connect;
use crate::control::{RunControl, LIVE_PUBLISH_INTERVAL_MS};
use crate::error::LoadgenError;
use crate::payload::PayloadPool;
use crate::plan::ExecutorPlan;
use crate::stats::{SequenceSet, WindowStats};
use crate::workload::Workload;

pub use producer::{producer_config, PartitionChooser, PRODUCER_FLUSH_TIMEOUT_S};

/// Memory glommio registers for file I/O on a load generator executor. The load generator does
/// no file I/O, so the minimum keeps the locked-memory limit for the embedded broker's shards.
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 64 * 1024;
/// How often glommio lets a busy task queue yield to the reactor; short, so a producer sending
/// flat out cannot delay acknowledgements or window reports by more than this.
pub const EXECUTOR_PREEMPT_MS: u64 = 5;
/// How often an executor waiting for the start looks again.
const START_POLL_MS: u64 = 1;
/// Most error messages an executor keeps for the report.
pub const ERRORS_KEPT_MAX: usize = 10;

/// Everything the executors share, read-only, for one run.
#[derive(Debug)]
pub struct SharedRun {
    /// Switches, clock and live counters.
    pub control: Arc<RunControl>,
    /// The workload.
    pub workload: Workload,
    /// Topic names, by topic index.
    pub topics: Vec<String>,
    /// Broker address.
    pub bootstrap: String,
    /// Bytes payloads are cut from.
    pub pool: PayloadPool,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Native client: straight to each partition's shard, or everything via the shared port.
    pub shard_aware: bool,
}

/// What an executor tells the main thread.
#[derive(Debug)]
pub enum ExecutorEvent {
    /// Connected, consumers positioned: ready for the start.
    Ready {
        /// Executor number.
        executor: usize,
    },
    /// Everything measured in window `window`.
    Window {
        /// Executor number.
        executor: usize,
        /// Window index.
        window: u32,
        /// The measurements.
        stats: Box<WindowStats>,
    },
    /// Done: final accounting.
    Finished {
        /// Executor number.
        executor: usize,
        /// Its producers' and consumers' bookkeeping.
        outcome: Box<ExecutorOutcome>,
    },
    /// Gave up.
    Failed {
        /// Executor number.
        executor: usize,
        /// Why.
        message: String,
    },
}

/// One producer's bookkeeping at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct ProducerOutcome {
    /// Producer id.
    pub producer_id: u32,
    /// Index of its topic.
    pub topic_index: usize,
    /// Acknowledged sequences, by partition.
    pub acked: Vec<SequenceSet>,
    /// Messages handed to the client.
    pub sent: u64,
    /// Sends that failed.
    pub failed: u64,
}

/// One consumer's bookkeeping at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct ConsumerOutcome {
    /// Subscription id.
    pub subscription_id: u32,
    /// Index of its topic.
    pub topic_index: usize,
    /// Sequences received, by (partition, producer id).
    pub received: HashMap<(i32, u32), SequenceSet>,
    /// Messages received, by partition (duplicates included).
    pub consumed: HashMap<i32, u64>,
    /// Messages received more than once, by partition.
    pub duplicates: HashMap<i32, u64>,
    /// Messages this run did not write (too short to carry a header).
    pub foreign: u64,
    /// Rebalances of its group this consumer took part in.
    pub rebalances: u64,
    /// Their summed duration, ms.
    pub rebalance_ms_total: u64,
    /// The longest, ms.
    pub rebalance_ms_max: u64,
}

/// An executor's bookkeeping at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct ExecutorOutcome {
    /// Its producers.
    pub producers: Vec<ProducerOutcome>,
    /// Its consumers.
    pub consumers: Vec<ConsumerOutcome>,
    /// The first errors it saw.
    pub errors: Vec<String>,
}

/// State of one executor, shared by its tasks (`Rc`, this executor only).
#[derive(Debug)]
pub(crate) struct ExecutorLocal {
    pub(crate) shared: Arc<SharedRun>,
    pub(crate) window: RefCell<WindowStats>,
    live_acked: Cell<u64>,
    live_acked_bytes: Cell<u64>,
    live_consumed: Cell<u64>,
    errors: RefCell<Vec<String>>,
}

impl ExecutorLocal {
    fn new(shared: Arc<SharedRun>) -> ExecutorLocal {
        ExecutorLocal {
            shared,
            window: RefCell::new(WindowStats::default()),
            live_acked: Cell::new(0),
            live_acked_bytes: Cell::new(0),
            live_consumed: Cell::new(0),
            errors: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn control(&self) -> &RunControl {
        &self.shared.control
    }

    pub(crate) fn count_acked(&self, bytes: u64) {
        self.live_acked.set(self.live_acked.get() + 1);
        self.live_acked_bytes
            .set(self.live_acked_bytes.get() + bytes);
    }

    pub(crate) fn count_consumed(&self, messages: u64) {
        self.live_consumed.set(self.live_consumed.get() + messages);
    }

    /// Keeps the first [`ERRORS_KEPT_MAX`] errors for the report and logs each one.
    pub(crate) fn note_error(&self, context: &str, error: &dyn std::fmt::Display) {
        let mut errors = self.errors.borrow_mut();
        if errors.len() < ERRORS_KEPT_MAX {
            let message = format!("{context}: {error}");
            tracing::warn!("{message}");
            errors.push(message);
        }
    }

    fn publish_live(&self) {
        self.control().publish(
            self.live_acked.take(),
            self.live_acked_bytes.take(),
            self.live_consumed.take(),
        );
    }
}

/// Starts executor `plan.index` on its own thread. It reports over `events` and ends when the run
/// finishes or aborts.
pub fn spawn_executor(
    plan: ExecutorPlan,
    shared: Arc<SharedRun>,
    events: Sender<ExecutorEvent>,
) -> Result<glommio::ExecutorJoinHandle<()>, LoadgenError> {
    let index = plan.index;
    let placement = match plan.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    LocalExecutorBuilder::new(placement)
        .name(&format!("loadgen-{index}"))
        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_millis(EXECUTOR_PREEMPT_MS))
        .spawn(move || async move {
            let control = shared.control.clone();
            let event = match run_executor(plan, shared, &events).await {
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
            // The main thread outlives every executor; if it is gone there is nobody to tell.
            let _ = events.send(event);
        })
        .map_err(|error| LoadgenError::Executor {
            index,
            message: format!("cannot start: {error}"),
        })
}

async fn run_executor(
    plan: ExecutorPlan,
    shared: Arc<SharedRun>,
    events: &Sender<ExecutorEvent>,
) -> Result<ExecutorOutcome, LoadgenError> {
    let client = connect(
        &shared.bootstrap,
        shared.connect_timeout,
        shared.shard_aware,
    )
    .await?;
    let local = Rc::new(ExecutorLocal::new(shared.clone()));
    let consumers = consumer::prepare(&client, &plan.consumers, &local).await?;
    let producers = producer::prepare(&client, &plan.producers, &local);
    for _ in &producers {
        // Counted before Ready, so the main thread never sees zero active producers before they
        // have even started.
        local.control().producer_started();
    }
    send_event(
        events,
        ExecutorEvent::Ready {
            executor: plan.index,
        },
        plan.index,
    )?;
    let start_ns = wait_for_start(local.control(), plan.index).await?;

    let reporter = Rc::new(WindowReporter::new(plan.index, local.control().window()));
    let running = Rc::new(Cell::new(true));
    let housekeeping = glommio::spawn_local(housekeeping(
        local.clone(),
        reporter.clone(),
        running.clone(),
        events.clone(),
    ));
    let producer_tasks: Vec<_> = producers
        .into_iter()
        .map(|producer| glommio::spawn_local(producer.run(local.clone(), start_ns)))
        .collect();
    let consumer_tasks: Vec<_> = consumers
        .into_iter()
        .map(|consumer| glommio::spawn_local(consumer.run(local.clone())))
        .collect();

    let mut outcome = ExecutorOutcome::default();
    for task in producer_tasks {
        outcome.producers.push(task.await);
    }
    for task in consumer_tasks {
        outcome.consumers.push(task.await);
    }
    running.set(false);
    housekeeping.await;
    local.publish_live();
    reporter.report_changed(&local, events);
    reporter.report_final(&local, events);
    outcome.errors = local.errors.take();
    Ok(outcome)
}

fn send_event(
    events: &Sender<ExecutorEvent>,
    event: ExecutorEvent,
    index: usize,
) -> Result<(), LoadgenError> {
    events.send(event).map_err(|_| LoadgenError::Executor {
        index,
        message: "the main thread stopped listening".into(),
    })
}

async fn wait_for_start(control: &RunControl, index: usize) -> Result<u64, LoadgenError> {
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
        glommio::timer::sleep(Duration::from_millis(START_POLL_MS)).await;
    }
}

/// Hands finished windows to the main thread.
#[derive(Debug)]
struct WindowReporter {
    executor: usize,
    last_window: Cell<u32>,
}

impl WindowReporter {
    fn new(executor: usize, window: u32) -> WindowReporter {
        WindowReporter {
            executor,
            last_window: Cell::new(window),
        }
    }

    /// If the main thread moved to a new window, sends what was measured in the previous one.
    fn report_changed(&self, local: &ExecutorLocal, events: &Sender<ExecutorEvent>) {
        let current = local.control().window();
        if current != self.last_window.get() {
            let stats = local.window.borrow_mut().take();
            let _ = events.send(ExecutorEvent::Window {
                executor: self.executor,
                window: self.last_window.get(),
                stats: Box::new(stats),
            });
            self.last_window.set(current);
        }
    }

    /// Sends the last (current) window at the end of the run.
    fn report_final(&self, local: &ExecutorLocal, events: &Sender<ExecutorEvent>) {
        let stats = local.window.borrow_mut().take();
        let _ = events.send(ExecutorEvent::Window {
            executor: self.executor,
            window: self.last_window.get(),
            stats: Box::new(stats),
        });
    }
}

async fn housekeeping(
    local: Rc<ExecutorLocal>,
    reporter: Rc<WindowReporter>,
    running: Rc<Cell<bool>>,
    events: Sender<ExecutorEvent>,
) {
    while running.get() {
        glommio::timer::sleep(Duration::from_millis(LIVE_PUBLISH_INTERVAL_MS)).await;
        local.publish_live();
        reporter.report_changed(&local, &events);
    }
}
