//! CPU time of this process and of its threads by name, from `/proc/self` (Linux): how many
//! CPU-seconds an embedded broker's shard threads spent per GB moved, and what the rest of the
//! process (the load generator's executors and client threads) spent.
//!
//! A thread's time is readable only while it lives: the shards live until the broker shuts
//! down, after the run, so their time is read then; the load generator's threads exit at the end
//! of the run, so their share is the whole process's time minus the shards'.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Name prefix of an embedded broker's shard threads.
pub const BROKER_THREAD_PREFIX: &str = "sluice-shard";

/// Field of `/proc/.../stat` (1-based, after the command name) holding user time, in ticks;
/// system time follows it.
const STAT_UTIME_FIELD: usize = 14;

/// Bytes in the GB of CPU-seconds per GB (decimal, as disks and the goal count).
const BYTES_PER_GB: f64 = 1e9;

/// Clock ticks per second of `/proc` times (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User + system CPU-seconds from one `stat` file, or `None` if it cannot be read.
fn stat_cpu_seconds(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state).
    let utime: f64 = fields.get(STAT_UTIME_FIELD - 3)?.parse().ok()?;
    let stime: f64 = fields.get(STAT_UTIME_FIELD - 2)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// CPU-seconds of this whole process so far (threads that exited included).
pub fn process_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds(Path::new("/proc/self/stat"))
}

/// CPU-seconds so far of this process's live threads whose name starts with `prefix`.
pub fn threads_cpu_seconds(prefix: &str) -> Option<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix) {
            total += stat_cpu_seconds(&entry.path().join("stat")).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// A reading of the process's and the broker threads' CPU time.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    process_s: f64,
    broker_s: f64,
}

impl CpuReading {
    /// Reads both now; `None` where `/proc` is not available.
    pub fn now() -> Option<CpuReading> {
        Some(CpuReading {
            process_s: process_cpu_seconds()?,
            broker_s: threads_cpu_seconds(BROKER_THREAD_PREFIX)?,
        })
    }
}

/// CPU spent over a run of an embedded broker, and per GB moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// CPU-seconds of the broker's shard threads over the whole run (warmup and tail included).
    pub broker_cpu_s: f64,
    /// CPU-seconds of everything else in the process: the load generator.
    pub loadgen_cpu_s: f64,
    /// Bytes produced (acknowledged) plus bytes consumed over the whole run, in GB (1e9 bytes).
    pub moved_gb: f64,
    /// `broker_cpu_s / moved_gb`.
    pub broker_cpu_s_per_gb: f64,
    /// `loadgen_cpu_s / moved_gb`.
    pub loadgen_cpu_s_per_gb: f64,
}

impl CpuReport {
    /// The report between two readings, for `moved_bytes` produced plus consumed.
    pub fn between(start: CpuReading, end: CpuReading, moved_bytes: u64) -> CpuReport {
        let broker_cpu_s = (end.broker_s - start.broker_s).max(0.0);
        let loadgen_cpu_s = (end.process_s - start.process_s - broker_cpu_s).max(0.0);
        let moved_gb = moved_bytes as f64 / BYTES_PER_GB;
        let per_gb = |seconds: f64| {
            if moved_gb > 0.0 {
                seconds / moved_gb
            } else {
                0.0
            }
        };
        CpuReport {
            broker_cpu_s,
            loadgen_cpu_s,
            moved_gb,
            broker_cpu_s_per_gb: per_gb(broker_cpu_s),
            loadgen_cpu_s_per_gb: per_gb(loadgen_cpu_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time the test's spinning thread burns, seconds.
    const SPIN_CPU_S: f64 = 0.2;

    /// Bound on the spin's wall time.
    const SPIN_WALL_MAX: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn this_process_and_a_named_thread_are_measured() {
        // Proves the readings follow real CPU use: a thread named like a shard that spins until
        // its own CPU time (not wall time, so a loaded machine cannot fail it) reaches 0.2 s
        // adds at least that to the shard total, and the process total grows with it.
        let before = CpuReading::now().expect("/proc/self is readable on Linux");
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (spun_tx, spun_rx) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::Builder::new()
            .name(format!("{BROKER_THREAD_PREFIX}-9"))
            .spawn(move || {
                let own = Path::new("/proc/thread-self/stat");
                let deadline = std::time::Instant::now() + SPIN_WALL_MAX;
                let mut x = 0u64;
                while stat_cpu_seconds(own).unwrap() < SPIN_CPU_S {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no CPU time in {SPIN_WALL_MAX:?}"
                    );
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                }
                let _ = spun_tx.send(());
                let _ = done_rx.recv();
            })
            .unwrap();
        spun_rx.recv().unwrap();
        let after = CpuReading::now().unwrap();
        let _ = done_tx.send(());
        spinner.join().unwrap();
        let report = CpuReport::between(before, after, 2_000_000_000);
        assert!(report.broker_cpu_s >= SPIN_CPU_S, "{report:?}");
        assert!((report.broker_cpu_s_per_gb - report.broker_cpu_s / 2.0).abs() < 1e-9);
        assert!(after.process_s >= before.process_s + report.broker_cpu_s - 0.05);
    }
}
