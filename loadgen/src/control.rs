//! State shared by the main thread and the executors: a clock, phase switches and live counters.
//!
//! Everything here is an atomic written rarely (phase switches, once per window) or in batches
//! (live counters, every [`LIVE_PUBLISH_INTERVAL_MS`] per executor), so the send and receive paths
//! take no lock and share no hot cache line. The main thread is the only one that moves phases;
//! executors only read them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// How often each executor adds its live counters to the shared totals.
pub const LIVE_PUBLISH_INTERVAL_MS: u64 = 10;

/// Run-wide switches and totals, shared as `Arc<RunControl>` by the main thread and every
/// executor (it exists once per run, on no particular core).
#[derive(Debug)]
pub struct RunControl {
    epoch: Instant,
    /// Unix time of `epoch`, in ms.
    epoch_unix_ms: i64,
    start_ns: AtomicU64,
    produce: AtomicBool,
    consume: AtomicBool,
    finish: AtomicBool,
    abort: AtomicBool,
    window: AtomicU32,
    producers_active: AtomicUsize,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    consumed: AtomicU64,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl::new()
    }
}

impl RunControl {
    /// A run whose clock starts now; nothing is switched on yet.
    pub fn new() -> RunControl {
        RunControl {
            epoch: Instant::now(),
            epoch_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                }),
            start_ns: AtomicU64::new(0),
            produce: AtomicBool::new(false),
            consume: AtomicBool::new(false),
            finish: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            window: AtomicU32::new(0),
            producers_active: AtomicUsize::new(0),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the run's epoch (monotonic; the same clock on every thread, so
    /// timestamps written by a producer on one core compare with a consumer's on another).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Unix time in ms of `now_ns` (a reading of [`RunControl::now_ns`]): the record timestamp
    /// of a message sent then, with no second clock read.
    pub fn unix_ms(&self, now_ns: u64) -> i64 {
        self.epoch_unix_ms
            .saturating_add(i64::try_from(now_ns / 1_000_000).unwrap_or(i64::MAX))
    }

    /// Starts the run at `start_ns`, with producers and (unless `consumers_paused`) consumers on.
    pub fn start(&self, start_ns: u64, consumers_paused: bool) {
        self.produce.store(true, Ordering::Release);
        self.consume.store(!consumers_paused, Ordering::Release);
        // Stored last: executors wait for a non-zero start and then read the switches.
        self.start_ns.store(start_ns.max(1), Ordering::Release);
    }

    /// The run's start (ns since the epoch), or `None` before it started.
    pub fn start_ns(&self) -> Option<u64> {
        match self.start_ns.load(Ordering::Acquire) {
            0 => None,
            start => Some(start),
        }
    }

    /// Whether producers should keep sending.
    pub fn producing(&self) -> bool {
        self.produce.load(Ordering::Relaxed) && !self.aborted()
    }

    /// Tells producers to stop (they flush and finish).
    pub fn stop_producing(&self) {
        self.produce.store(false, Ordering::Release);
    }

    /// Whether consumers should poll.
    pub fn consuming(&self) -> bool {
        self.consume.load(Ordering::Relaxed)
    }

    /// Lets paused consumers start (backlog mode).
    pub fn start_consuming(&self) {
        self.consume.store(true, Ordering::Release);
    }

    /// Whether the run is over for consumers and executors.
    pub fn finishing(&self) -> bool {
        self.finish.load(Ordering::Relaxed) || self.aborted()
    }

    /// Ends the run: producers stop, consumers stop, executors report and exit.
    pub fn finish(&self) {
        self.produce.store(false, Ordering::Release);
        self.finish.store(true, Ordering::Release);
    }

    /// Whether something failed and everybody should stop at once.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Stops everything because of a failure.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
    }

    /// The current window index.
    pub fn window(&self) -> u32 {
        self.window.load(Ordering::Acquire)
    }

    /// Closes the current window; returns the index of the new one.
    pub fn next_window(&self) -> u32 {
        self.window.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A producer started.
    pub fn producer_started(&self) {
        self.producers_active.fetch_add(1, Ordering::AcqRel);
    }

    /// A producer finished: every send was acknowledged or failed, and its counts were published.
    pub fn producer_finished(&self) {
        self.producers_active.fetch_sub(1, Ordering::AcqRel);
    }

    /// Producers still running.
    pub fn producers_active(&self) -> usize {
        self.producers_active.load(Ordering::Acquire)
    }

    /// Adds an executor's counts since its last publication.
    pub fn publish(&self, acked: u64, acked_bytes: u64, consumed: u64) {
        if acked > 0 {
            self.acked.fetch_add(acked, Ordering::Relaxed);
            self.acked_bytes.fetch_add(acked_bytes, Ordering::Relaxed);
        }
        if consumed > 0 {
            self.consumed.fetch_add(consumed, Ordering::Relaxed);
        }
    }

    /// Messages acknowledged so far (as last published).
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Payload bytes acknowledged so far (as last published).
    pub fn acked_bytes(&self) -> u64 {
        self.acked_bytes.load(Ordering::Acquire)
    }

    /// Messages consumed so far over all subscriptions (as last published).
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Acquire)
    }
}
