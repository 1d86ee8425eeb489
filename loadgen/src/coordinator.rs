//! The main thread's part of a run: it moves the phases (warmup, measure, backlog build, drain,
//! tail), closes a window every progress interval, merges the executors' windows as they arrive,
//! prints the progress line, and collects the executors' final bookkeeping.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use crate::control::RunControl;
use crate::error::LoadgenError;
use crate::report::{Phase, WindowReport};
use crate::stats::{Counters, WindowStats};
use crate::worker::{ExecutorEvent, ExecutorOutcome};
use crate::workload::Workload;

/// How often the main thread looks at the clock and the switches.
pub const MAIN_TICK_MS: u64 = 10;
/// Longest wait for every executor to connect and position its consumers.
pub const READY_TIMEOUT_S: u64 = 60;
/// How long consumers may keep draining after Ctrl-C.
pub const INTERRUPT_DRAIN_MS: u64 = 2_000;
/// Longest wait for executors to report after the run finished (producers flush first).
pub const FINISH_TIMEOUT_S: u64 = crate::worker::PRODUCER_FLUSH_TIMEOUT_S + 30;
/// Nanoseconds per second.
const NS_PER_S: u64 = 1_000_000_000;

/// Timing settings of a run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Length of a progress window.
    pub progress_interval: Duration,
    /// Longest the tail (consumers catching up after producers stopped) may last.
    pub drain_timeout: Duration,
}

/// Start and end of one window, and its phase.
#[derive(Debug, Clone, Copy)]
struct WindowMeta {
    phase: Phase,
    start_ns: u64,
    end_ns: u64,
}

/// Backlog-mode milestones.
#[derive(Debug, Clone, Copy, Default)]
pub struct BacklogMilestones {
    /// Messages acknowledged when consumers were started.
    pub backlog_messages: u64,
    /// Seconds spent building the backlog.
    pub build_s: f64,
    /// Seconds the drain took (or until it was cut off).
    pub drain_s: f64,
    /// Messages consumed during the drain.
    pub drain_consumed: u64,
    /// Whether consumers caught up with the backlog.
    pub drained: bool,
    consumed_at_drain_start: u64,
    drain_start_ns: u64,
}

/// What the coordinator measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Every window, in order.
    pub windows: Vec<WindowReport>,
    /// Latency over every window but the warmup.
    pub latency: WindowStats,
    /// Counts over the measured windows (measure or drain).
    pub measured_counters: Counters,
    /// Seconds covered by the measured windows.
    pub measured_s: f64,
    /// Every executor's final bookkeeping.
    pub outcomes: Vec<ExecutorOutcome>,
    /// Whether Ctrl-C stopped the run.
    pub interrupted: bool,
    /// Whether consumers had caught up with every acknowledged message when the run ended.
    pub caught_up: bool,
    /// Backlog mode results.
    pub backlog: Option<BacklogMilestones>,
}

/// What the coordinator asks, every tick, of the broker it runs against: the part of it that
/// stopped on its own (an embedded broker's shard), if any.
pub type BrokerHealth<'a> = &'a dyn Fn() -> Option<String>;

/// The health of a broker the load generator does not run: nothing to watch.
fn no_broker_failure() -> Option<String> {
    None
}

/// Drives one run from the main thread.
pub struct Coordinator<'a> {
    control: Arc<RunControl>,
    health: BrokerHealth<'a>,
    workload: Workload,
    timing: Timing,
    interrupt: Arc<AtomicBool>,
    print_progress: bool,
    events: Receiver<ExecutorEvent>,
    executors: usize,
    done: Vec<bool>,
    reported: Vec<Option<u32>>,
    failure: Option<String>,
    phase: Phase,
    finishing: bool,
    start_ns: u64,
    window_start_ns: u64,
    next_tick_ns: u64,
    phase_deadline_ns: u64,
    finish_deadline_ns: u64,
    metas: Vec<WindowMeta>,
    received: BTreeMap<u32, WindowStats>,
    next_emit: u32,
    cumulative: Counters,
    measured: Measured,
}

impl<'a> Coordinator<'a> {
    /// A coordinator for `executors` executors reporting on `events`.
    pub fn new(
        control: Arc<RunControl>,
        workload: Workload,
        timing: Timing,
        interrupt: Arc<AtomicBool>,
        print_progress: bool,
        events: Receiver<ExecutorEvent>,
        executors: usize,
    ) -> Coordinator<'a> {
        Coordinator {
            control,
            health: &no_broker_failure,
            workload,
            timing,
            interrupt,
            print_progress,
            events,
            executors,
            done: vec![false; executors],
            reported: vec![None; executors],
            failure: None,
            phase: Phase::Warmup,
            finishing: false,
            start_ns: 0,
            window_start_ns: 0,
            next_tick_ns: 0,
            phase_deadline_ns: 0,
            finish_deadline_ns: 0,
            metas: Vec::new(),
            received: BTreeMap::new(),
            next_emit: 0,
            cumulative: Counters::default(),
            measured: Measured::default(),
        }
    }

    /// Ends the run with an error as soon as `health` names a stopped part of the broker.
    pub fn watching(mut self, health: BrokerHealth<'a>) -> Coordinator<'a> {
        self.health = health;
        self
    }

    /// Runs the whole schedule and returns what was measured; an executor failure aborts the
    /// run and is returned once every executor stopped. The flag says whether every executor
    /// reported its end, so its thread can be joined without waiting on a stuck broker.
    pub fn run(mut self) -> (Result<Measured, LoadgenError>, bool) {
        let result = self.run_schedule();
        let all_done = self.done.iter().all(|done| *done);
        (result, all_done)
    }

    fn run_schedule(&mut self) -> Result<Measured, LoadgenError> {
        self.wait_ready()?;
        self.start();
        while !self.done.iter().all(|done| *done) {
            self.receive(Duration::from_millis(MAIN_TICK_MS));
            if self.broker_stopped() {
                break;
            }
            let now_ns = self.control.now_ns();
            self.check_interrupt(now_ns);
            if !self.finishing {
                self.advance(now_ns);
            } else if now_ns >= self.finish_deadline_ns {
                self.failure.get_or_insert_with(|| {
                    format!("executors did not finish within {FINISH_TIMEOUT_S} s of the end of the run")
                });
                self.control.abort();
                break;
            }
            self.emit_complete_windows();
        }
        self.emit_complete_windows();
        match self.failure.take() {
            Some(message) => Err(LoadgenError::Run { message }),
            None => Ok(std::mem::take(&mut self.measured)),
        }
    }

    fn wait_ready(&mut self) -> Result<(), LoadgenError> {
        let deadline_ns = self.control.now_ns() + READY_TIMEOUT_S * NS_PER_S;
        let mut ready = 0;
        while ready < self.executors {
            match self
                .events
                .recv_timeout(Duration::from_millis(MAIN_TICK_MS))
            {
                Ok(ExecutorEvent::Ready { .. }) => ready += 1,
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.failure
                        .get_or_insert_with(|| "executors stopped before they were ready".into());
                }
            }
            let timed_out = self.control.now_ns() >= deadline_ns;
            if self.broker_stopped() {
                return Err(LoadgenError::Run {
                    message: self.failure.take().unwrap_or_default(),
                });
            }
            if self.failure.is_some() || timed_out || self.interrupt.load(Ordering::Relaxed) {
                self.control.abort();
                self.drain_until_done();
                let message = match self.failure.take() {
                    Some(message) => message,
                    None if timed_out => format!("executors not ready within {READY_TIMEOUT_S} s"),
                    None => "interrupted before the run started".to_string(),
                };
                return Err(LoadgenError::Run { message });
            }
        }
        Ok(())
    }

    /// True (with the run aborted and its failure set) once part of the broker has stopped:
    /// nothing more will be answered, so waiting for the executors' flushes would only wait
    /// out their timeouts.
    fn broker_stopped(&mut self) -> bool {
        let Some(part) = (self.health)() else {
            return false;
        };
        self.failure.get_or_insert_with(|| {
            format!("the embedded broker's {part} stopped on its own (its error is logged above)")
        });
        self.control.abort();
        true
    }

    fn drain_until_done(&mut self) {
        let deadline_ns = self.control.now_ns() + FINISH_TIMEOUT_S * NS_PER_S;
        while !self.done.iter().all(|done| *done) && self.control.now_ns() < deadline_ns {
            self.receive(Duration::from_millis(MAIN_TICK_MS));
        }
    }

    fn start(&mut self) {
        let now_ns = self.control.now_ns();
        let backlog = self.workload.is_backlog_mode();
        self.control.start(now_ns, backlog);
        self.start_ns = now_ns;
        self.window_start_ns = now_ns;
        self.next_tick_ns = now_ns + self.interval_ns();
        self.phase = if backlog {
            self.measured.backlog = Some(BacklogMilestones::default());
            Phase::BacklogBuild
        } else if self.workload.warmup_s > 0.0 {
            self.phase_deadline_ns = now_ns + seconds_ns(self.workload.warmup_s);
            Phase::Warmup
        } else {
            self.phase_deadline_ns = now_ns + seconds_ns(self.workload.duration_s);
            Phase::Measure
        };
    }

    fn interval_ns(&self) -> u64 {
        (self.timing.progress_interval.as_nanos() as u64).max(1)
    }

    fn receive(&mut self, wait: Duration) {
        match self.events.recv_timeout(wait) {
            Ok(event) => {
                self.handle(event);
                while let Ok(event) = self.events.try_recv() {
                    self.handle(event);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                self.done.iter_mut().for_each(|done| *done = true)
            }
        }
    }

    fn handle(&mut self, event: ExecutorEvent) {
        match event {
            ExecutorEvent::Ready { .. } => {}
            ExecutorEvent::Window {
                executor,
                window,
                stats,
            } => {
                self.received.entry(window).or_default().merge(&stats);
                if let Some(reported) = self.reported.get_mut(executor) {
                    *reported = Some(reported.map_or(window, |last| last.max(window)));
                }
            }
            ExecutorEvent::Finished { executor, outcome } => {
                self.measured.outcomes.push(*outcome);
                if let Some(done) = self.done.get_mut(executor) {
                    *done = true;
                }
            }
            ExecutorEvent::Failed { executor, message } => {
                tracing::error!("executor {executor} failed: {message}");
                self.failure
                    .get_or_insert(format!("load generator executor {executor}: {message}"));
                self.control.abort();
                if let Some(done) = self.done.get_mut(executor) {
                    *done = true;
                }
            }
        }
    }

    fn check_interrupt(&mut self, now_ns: u64) {
        if self.measured.interrupted || !self.interrupt.load(Ordering::Relaxed) {
            return;
        }
        self.measured.interrupted = true;
        eprintln!(
            "Interrupted: stopping producers, letting consumers drain for {INTERRUPT_DRAIN_MS} ms"
        );
        if self.finishing {
            return;
        }
        let drain_ns = INTERRUPT_DRAIN_MS * 1_000_000;
        if self.phase != Phase::Tail {
            self.close_window(now_ns, Phase::Tail);
            self.control.stop_producing();
            self.control.start_consuming();
            self.phase_deadline_ns = now_ns + drain_ns;
        } else {
            self.phase_deadline_ns = self.phase_deadline_ns.min(now_ns + drain_ns);
        }
    }

    fn advance(&mut self, now_ns: u64) {
        let closed = match self.phase {
            Phase::Warmup if now_ns >= self.phase_deadline_ns => {
                self.close_window(now_ns, Phase::Measure);
                self.phase_deadline_ns = now_ns + seconds_ns(self.workload.duration_s);
                true
            }
            Phase::Measure if now_ns >= self.phase_deadline_ns => {
                self.begin_tail(now_ns);
                true
            }
            Phase::BacklogBuild if self.control.acked_bytes() >= self.workload.backlog_bytes => {
                self.begin_drain(now_ns);
                true
            }
            Phase::Drain => self.check_drain(now_ns),
            Phase::Tail => {
                let caught_up = self.caught_up();
                if (self.control.producers_active() == 0 && caught_up)
                    || now_ns >= self.phase_deadline_ns
                {
                    self.finish(now_ns, caught_up);
                    return;
                }
                false
            }
            _ => false,
        };
        if !closed && now_ns >= self.next_tick_ns {
            self.close_window(now_ns, self.phase);
        }
    }

    fn begin_tail(&mut self, now_ns: u64) {
        self.close_window(now_ns, Phase::Tail);
        self.control.stop_producing();
        self.phase_deadline_ns = now_ns + self.timing.drain_timeout.as_nanos() as u64;
    }

    fn begin_drain(&mut self, now_ns: u64) {
        self.close_window(now_ns, Phase::Drain);
        let backlog_messages = self.control.acked();
        let consumed = self.control.consumed();
        if let Some(backlog) = self.measured.backlog.as_mut() {
            backlog.backlog_messages = backlog_messages;
            backlog.build_s = (now_ns - self.start_ns) as f64 / NS_PER_S as f64;
            backlog.consumed_at_drain_start = consumed;
            backlog.drain_start_ns = now_ns;
        }
        self.control.start_consuming();
        if self.workload.producer_rate == 0.0 {
            // Flat-out producers would keep the backlog from ever draining: stop them.
            self.control.stop_producing();
        }
        self.phase_deadline_ns = now_ns + seconds_ns(self.workload.duration_s);
    }

    fn check_drain(&mut self, now_ns: u64) -> bool {
        let subscriptions = u64::from(self.workload.subscriptions_per_topic);
        let consumed = self.control.consumed();
        let Some(backlog) = self.measured.backlog.as_mut() else {
            return false;
        };
        let drained =
            consumed - backlog.consumed_at_drain_start >= backlog.backlog_messages * subscriptions;
        if !drained && now_ns < self.phase_deadline_ns {
            return false;
        }
        backlog.drained = drained;
        backlog.drain_s = (now_ns - backlog.drain_start_ns) as f64 / NS_PER_S as f64;
        backlog.drain_consumed = consumed - backlog.consumed_at_drain_start;
        self.begin_tail(now_ns);
        true
    }

    /// Whether every subscription consumed every acknowledged message (as published so far).
    fn caught_up(&self) -> bool {
        let expected = self.control.acked() * u64::from(self.workload.subscriptions_per_topic);
        self.control.consumed() >= expected
    }

    fn finish(&mut self, now_ns: u64, caught_up: bool) {
        self.metas.push(WindowMeta {
            phase: self.phase,
            start_ns: self.window_start_ns,
            end_ns: now_ns,
        });
        self.measured.caught_up = caught_up;
        self.control.finish();
        self.finishing = true;
        self.finish_deadline_ns = now_ns + FINISH_TIMEOUT_S * NS_PER_S;
    }

    fn close_window(&mut self, now_ns: u64, next_phase: Phase) {
        self.metas.push(WindowMeta {
            phase: self.phase,
            start_ns: self.window_start_ns,
            end_ns: now_ns,
        });
        self.control.next_window();
        self.window_start_ns = now_ns;
        self.next_tick_ns = now_ns + self.interval_ns();
        self.phase = next_phase;
    }

    fn window_complete(&self, window: u32) -> bool {
        (0..self.executors).all(|executor| {
            self.done[executor] || self.reported[executor].is_some_and(|last| last >= window)
        })
    }

    fn emit_complete_windows(&mut self) {
        while (self.next_emit as usize) < self.metas.len() && self.window_complete(self.next_emit) {
            let meta = self.metas[self.next_emit as usize];
            let stats = self.received.remove(&self.next_emit).unwrap_or_default();
            self.cumulative.add(&stats.counters);
            let subscriptions = u64::from(self.workload.subscriptions_per_topic);
            let backlog =
                (self.cumulative.sent * subscriptions) as i64 - self.cumulative.consumed as i64;
            let start_s = (meta.start_ns - self.start_ns) as f64 / NS_PER_S as f64;
            let duration_s = (meta.end_ns - meta.start_ns) as f64 / NS_PER_S as f64;
            let report = WindowReport::from_stats(
                self.next_emit,
                meta.phase,
                start_s,
                duration_s,
                &stats,
                backlog,
            );
            if self.print_progress {
                println!("{}", report.progress_line());
            }
            if meta.phase != Phase::Warmup {
                self.measured.latency.merge(&stats);
            }
            if matches!(meta.phase, Phase::Measure | Phase::Drain) {
                self.measured.measured_counters.add(&stats.counters);
                self.measured.measured_s += duration_s;
            }
            self.measured.windows.push(report);
            self.next_emit += 1;
        }
    }
}

fn seconds_ns(seconds: f64) -> u64 {
    (seconds * NS_PER_S as f64) as u64
}
