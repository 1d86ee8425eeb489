//! What a run reports: the progress line, the summary table and the JSON report.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::histogram::{LatencySummary, PercentilePoint};
use crate::stats::WindowStats;
use crate::workload::Workload;

/// Bytes in the "MB" of rates: OMB reports MiB and calls them MB; we follow it so figures compare.
pub const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

/// Which part of the run a window belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before measuring: excluded from the aggregate.
    Warmup,
    /// The measured phase.
    Measure,
    /// Backlog mode: producing with consumers paused.
    BacklogBuild,
    /// Backlog mode: consumers draining the backlog (the measured phase of a backlog run).
    Drain,
    /// After producers stopped: consumers catching up on the last messages (latencies count in
    /// the aggregate, rates do not).
    Tail,
}

impl Phase {
    /// Short label for the progress line.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::BacklogBuild => "backlog",
            Phase::Drain => "drain",
            Phase::Tail => "tail",
        }
    }
}

/// The machine the load generator ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Online CPUs.
    pub cores: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Total memory in bytes, from /proc/meminfo (0 if unknown).
    pub memory_bytes: u64,
}

impl MachineInfo {
    /// Reads the machine's description from /proc; unknown fields say "unknown".
    pub fn detect() -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")
                    .and_then(|rest| rest.split(':').nth(1))
            })
            .map(|model| model.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(0);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        MachineInfo {
            cores,
            kernel,
            cpu_model,
            memory_bytes,
        }
    }
}

/// The broker under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// `embedded` (started in this process) or `remote`.
    pub mode: String,
    /// Address the clients bootstrapped from.
    pub bootstrap: String,
    /// Shards of the embedded broker.
    pub shards: Option<usize>,
    /// CPUs the embedded broker was pinned to.
    pub cpus: Option<Vec<usize>>,
    /// Storage write mode of the embedded broker (`buffered` or `direct`).
    pub write_mode: Option<String>,
    /// What an acknowledgement guarantees on the embedded broker, in words.
    pub durability: Option<String>,
}

/// Figures of one window (summed over executors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Position of the window in the run, from 0.
    pub index: u32,
    /// Part of the run.
    pub phase: Phase,
    /// Seconds from the start of the run to the start of the window.
    pub start_s: f64,
    /// Length of the window in seconds.
    pub duration_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Sends that failed.
    pub failed: u64,
    /// Messages consumed (all subscriptions).
    pub consumed: u64,
    /// Acknowledged messages per second.
    pub publish_rate_msg_s: f64,
    /// Acknowledged payload MB (MiB) per second.
    pub publish_rate_mb_s: f64,
    /// Failed sends per second.
    pub publish_error_rate_s: f64,
    /// Consumed messages per second.
    pub consume_rate_msg_s: f64,
    /// Consumed payload MB (MiB) per second.
    pub consume_rate_mb_s: f64,
    /// Messages sent but not yet consumed, summed over subscriptions, at the window's end (OMB's
    /// definition: sent x subscriptions - received).
    pub backlog_messages: i64,
    /// Publish latency in the window.
    pub publish_latency: LatencySummary,
    /// End-to-end latency in the window.
    pub end_to_end_latency: LatencySummary,
}

impl WindowReport {
    /// Figures of a window from its merged stats; `backlog_messages` is the running backlog.
    pub fn from_stats(
        index: u32,
        phase: Phase,
        start_s: f64,
        duration_s: f64,
        stats: &WindowStats,
        backlog_messages: i64,
    ) -> WindowReport {
        let counters = &stats.counters;
        let per_s = |count: u64| {
            if duration_s > 0.0 {
                count as f64 / duration_s
            } else {
                0.0
            }
        };
        WindowReport {
            index,
            phase,
            start_s,
            duration_s,
            sent: counters.sent,
            acked: counters.acked,
            failed: counters.failed,
            consumed: counters.consumed,
            publish_rate_msg_s: per_s(counters.acked),
            publish_rate_mb_s: per_s(counters.acked_bytes) / BYTES_PER_MB,
            publish_error_rate_s: per_s(counters.failed),
            consume_rate_msg_s: per_s(counters.consumed),
            consume_rate_mb_s: per_s(counters.consumed_bytes) / BYTES_PER_MB,
            backlog_messages,
            publish_latency: stats.publish_latency.summary(),
            end_to_end_latency: stats.end_to_end_latency.summary(),
        }
    }

    /// The progress line, in OMB's shape.
    pub fn progress_line(&self) -> String {
        let mut line = format!(
            "[{:>7}] Pub rate {:>9.1} msg/s / {:>6.1} MB/s",
            self.phase.label(),
            self.publish_rate_msg_s,
            self.publish_rate_mb_s
        );
        if self.failed > 0 {
            let _ = write!(line, " | Pub err {:>7.1} err/s", self.publish_error_rate_s);
        }
        let _ = write!(
            line,
            " | Cons rate {:>9.1} msg/s / {:>6.1} MB/s | Backlog: {:>6.1} K",
            self.consume_rate_msg_s,
            self.consume_rate_mb_s,
            self.backlog_messages as f64 / 1_000.0
        );
        let latency = |line: &mut String, name: &str, summary: &LatencySummary| {
            let _ = write!(
                line,
                " | {name} Latency (ms) avg: {:>7.3} - 50%: {:>7.3} - 99%: {:>7.3} - 99.9%: {:>7.3} - Max: {:>8.3}",
                summary.avg_ms, summary.p50_ms, summary.p99_ms, summary.p999_ms, summary.max_ms
            );
        };
        latency(&mut line, "Pub", &self.publish_latency);
        if self.end_to_end_latency.count > 0 {
            latency(&mut line, "E2E", &self.end_to_end_latency);
        }
        line
    }
}

/// Backlog mode results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacklogReport {
    /// Bytes the workload asked to build up.
    pub backlog_bytes_target: u64,
    /// Messages acknowledged (per subscription) when the consumers were started.
    pub backlog_messages: u64,
    /// Seconds spent building the backlog.
    pub build_s: f64,
    /// Seconds the consumers took to catch up (or until the drain phase ended).
    pub drain_s: f64,
    /// Whether the consumers caught up before the drain phase ended.
    pub drained: bool,
    /// Messages consumed per second while draining.
    pub drain_rate_msg_s: f64,
    /// MB (MiB) consumed per second while draining.
    pub drain_rate_mb_s: f64,
}

/// Figures over the whole measured phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateReport {
    /// Seconds measured (warmup, backlog build and tail excluded).
    pub measured_s: f64,
    /// Acknowledged messages per second.
    pub publish_rate_msg_s: f64,
    /// Acknowledged MB (MiB) per second.
    pub publish_rate_mb_s: f64,
    /// Consumed messages per second.
    pub consume_rate_msg_s: f64,
    /// Consumed MB (MiB) per second.
    pub consume_rate_mb_s: f64,
    /// Publish latency (measured phase and tail).
    pub publish_latency: LatencySummary,
    /// End-to-end latency (measured phase and tail).
    pub end_to_end_latency: LatencySummary,
    /// Publish latency by percentile, for plotting.
    pub publish_latency_curve: Vec<PercentilePoint>,
    /// End-to-end latency by percentile, for plotting.
    pub end_to_end_latency_curve: Vec<PercentilePoint>,
    /// Backlog mode results, if it was a backlog run.
    pub backlog: Option<BacklogReport>,
}

/// Exactly-once accounting of one partition, summed over subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCounts {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Messages acknowledged to producers.
    pub acked: u64,
    /// Messages consumed (every subscription, duplicates included).
    pub consumed: u64,
    /// Messages a subscription received more than once.
    pub duplicates: u64,
    /// Acknowledged messages a subscription never received.
    pub missing: u64,
}

/// Counts over the whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsReport {
    /// Messages handed to the client.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Sends that failed.
    pub failed: u64,
    /// Messages consumed over all subscriptions (duplicates included).
    pub consumed: u64,
    /// Subscriptions per topic: each is expected to consume every acknowledged message.
    pub subscriptions_per_topic: u32,
    /// Messages delivered more than once to a subscription.
    pub duplicates: u64,
    /// Acknowledged messages some subscription never received.
    pub missing: u64,
    /// Consumed messages that this run's producers did not write (foreign or unreadable).
    pub foreign: u64,
    /// Per partition.
    pub partitions: Vec<PartitionCounts>,
    /// The subscriptions' consumer-group rebalances.
    #[serde(default)]
    pub groups: GroupsReport,
}

/// Rebalances the consumers took part in (each member counts its own; the first join of a
/// group is a rebalance too), and how long they took from the member's side: from the poll
/// that noticed the rebalance to the new assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupsReport {
    /// Rebalances, summed over members.
    pub rebalances: u64,
    /// Their summed duration, ms.
    pub rebalance_ms_total: u64,
    /// The longest one, ms.
    pub rebalance_ms_max: u64,
}

/// The correctness verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correctness {
    /// Whether the check applies: the run ended cleanly (not interrupted) with subscriptions.
    pub checked: bool,
    /// Whether every acknowledged message was consumed by every subscription.
    pub passed: bool,
    /// In words.
    pub message: String,
}

/// The JSON report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `sluice-loadgen`.
    pub tool: String,
    /// Version of the load generator.
    pub version: String,
    /// The client that drove the load: `native`, or `kafka (librdkafka VERSION)`.
    #[serde(default)]
    pub driver: String,
    /// Wall-clock start of the run, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// The workload as run (file and flags merged).
    pub workload: Workload,
    /// The machine.
    pub machine: MachineInfo,
    /// The broker.
    pub broker: BrokerInfo,
    /// CPUs the load generator's executors ran on (empty when unpinned).
    pub loadgen_cpus: Vec<usize>,
    /// Executors the load generator ran.
    pub loadgen_executors: usize,
    /// Topics used.
    pub topics: Vec<String>,
    /// Whether the run was stopped by Ctrl-C.
    pub interrupted: bool,
    /// Every window, in order.
    pub windows: Vec<WindowReport>,
    /// Aggregate figures.
    pub aggregate: AggregateReport,
    /// Counts.
    pub counts: CountsReport,
    /// Verdict of the exactly-once check.
    pub correctness: Correctness,
    /// How to read the figures (emulations, caveats of this run).
    pub notes: Vec<String>,
    /// The first errors producers and consumers saw.
    pub errors: Vec<String>,
    /// Embedded broker: CPU-seconds of its shards and of the load generator, per GB moved.
    #[serde(default)]
    pub cpu: Option<crate::cpu::CpuReport>,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }

    /// The message counts and group rebalances lines of the summary.
    fn write_counts(&self, out: &mut String) {
        let counts = &self.counts;
        let _ = writeln!(
            out,
            "Messages: sent {} | acked {} | failed {} | consumed {} ({} subscription(s) per topic) | \
             duplicates {} | missing {}",
            counts.sent,
            counts.acked,
            counts.failed,
            counts.consumed,
            counts.subscriptions_per_topic,
            counts.duplicates,
            counts.missing
        );
        if let Some(cpu) = &self.cpu {
            let _ = writeln!(
                out,
                "CPU over the whole run: broker {:.1} s = {:.3} s per GB moved (produced + consumed, \
                 {:.2} GB) | load generator {:.1} s = {:.3} s per GB",
                cpu.broker_cpu_s,
                cpu.broker_cpu_s_per_gb,
                cpu.moved_gb,
                cpu.loadgen_cpu_s,
                cpu.loadgen_cpu_s_per_gb
            );
        }
        if counts.subscriptions_per_topic > 0 {
            let groups = &counts.groups;
            let _ = writeln!(
                out,
                "Groups: {} rebalance(s) over all members | {} ms in total | longest {} ms",
                groups.rebalances, groups.rebalance_ms_total, groups.rebalance_ms_max
            );
        }
    }

    /// The summary table printed at the end of a run.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let aggregate = &self.aggregate;
        let _ = writeln!(
            out,
            "\n==== {} : aggregate over {:.1} s ====",
            self.workload.name, aggregate.measured_s
        );
        let _ = writeln!(
            out,
            "Pub rate {:.1} msg/s / {:.1} MB/s | Cons rate {:.1} msg/s / {:.1} MB/s",
            aggregate.publish_rate_msg_s,
            aggregate.publish_rate_mb_s,
            aggregate.consume_rate_msg_s,
            aggregate.consume_rate_mb_s
        );
        if let Some(backlog) = &aggregate.backlog {
            let _ =
                writeln!(
                out,
                "Backlog {} messages built in {:.1} s, {} in {:.1} s at {:.1} msg/s / {:.1} MB/s",
                backlog.backlog_messages,
                backlog.build_s,
                if backlog.drained { "drained" } else { "NOT drained" },
                backlog.drain_s,
                backlog.drain_rate_msg_s,
                backlog.drain_rate_mb_s
            );
        }
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "latency (ms)", "avg", "p50", "p75", "p95", "p99", "p99.9", "p99.99", "max", "samples"
        );
        for (name, summary) in [
            ("publish", &aggregate.publish_latency),
            ("end-to-end", &aggregate.end_to_end_latency),
        ] {
            let _ = writeln!(
                out,
                "{:<16} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10}",
                name,
                summary.avg_ms,
                summary.p50_ms,
                summary.p75_ms,
                summary.p95_ms,
                summary.p99_ms,
                summary.p999_ms,
                summary.p9999_ms,
                summary.max_ms,
                summary.count
            );
        }
        if let Some(durability) = &self.broker.durability {
            let _ = writeln!(out, "Broker ({}): {durability}", self.broker.mode);
        }
        self.write_counts(&mut out);
        let _ = writeln!(out, "Correctness: {}", self.correctness.message);
        for note in &self.notes {
            let _ = writeln!(out, "Note: {note}");
        }
        for error in &self.errors {
            let _ = writeln!(out, "Error seen: {error}");
        }
        out
    }
}

/// A report with made-up figures, for tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::histogram::LatencyHistogram;
    use crate::stats::Counters;

    /// A plausible report of a short, clean run.
    pub(crate) fn sample_report() -> Report {
        let counters = Counters {
            sent: 100,
            sent_bytes: 102_400,
            acked: 100,
            acked_bytes: 102_400,
            failed: 0,
            consumed: 100,
            consumed_bytes: 102_400,
        };
        let mut stats = WindowStats {
            counters,
            ..WindowStats::default()
        };
        for latency_us in [800, 1_000, 1_200, 5_000] {
            stats.publish_latency.record_us(latency_us);
            stats.end_to_end_latency.record_us(latency_us * 2);
        }
        let window = WindowReport::from_stats(0, Phase::Measure, 0.0, 2.0, &stats, 0);
        let mut histogram = LatencyHistogram::new();
        histogram.record_us(1_000);
        Report {
            tool: "sluice-loadgen".to_string(),
            version: "0.1.0".to_string(),
            driver: "native".to_string(),
            started_at_unix_ms: 1,
            workload: Workload::default(),
            machine: MachineInfo::detect(),
            broker: BrokerInfo {
                mode: "embedded".to_string(),
                bootstrap: "127.0.0.1:1".to_string(),
                shards: Some(1),
                cpus: None,
                write_mode: Some("buffered".to_string()),
                durability: Some("page cache".to_string()),
            },
            loadgen_cpus: vec![0],
            loadgen_executors: 1,
            topics: vec!["t".to_string()],
            interrupted: false,
            windows: vec![window],
            aggregate: AggregateReport {
                measured_s: 2.0,
                publish_rate_msg_s: 50.0,
                publish_rate_mb_s: 0.05,
                consume_rate_msg_s: 50.0,
                consume_rate_mb_s: 0.05,
                publish_latency: stats.publish_latency.summary(),
                end_to_end_latency: stats.end_to_end_latency.summary(),
                publish_latency_curve: stats.publish_latency.percentile_curve(),
                end_to_end_latency_curve: histogram.percentile_curve(),
                backlog: None,
            },
            counts: CountsReport {
                sent: 100,
                acked: 100,
                failed: 0,
                consumed: 100,
                subscriptions_per_topic: 1,
                duplicates: 0,
                missing: 0,
                foreign: 0,
                partitions: vec![PartitionCounts {
                    topic: "t".to_string(),
                    partition: 0,
                    acked: 100,
                    consumed: 100,
                    duplicates: 0,
                    missing: 0,
                }],
                groups: GroupsReport::default(),
            },
            correctness: Correctness {
                checked: true,
                passed: true,
                message: "ok".to_string(),
            },
            notes: vec!["each subscription is a consumer group".to_string()],
            errors: Vec::new(),
            cpu: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::sample_report;
    use super::*;

    // Proves the JSON report survives a serde round trip unchanged and carries every key a reader
    // relies on, by serialising a sample report and inspecting the JSON value.
    #[test]
    fn json_round_trip_and_required_keys() {
        let report = sample_report();
        let text = serde_json::to_string_pretty(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        // Compared with `==` rather than assert_eq! so a failure does not print every curve point.
        assert!(back == report, "the report changed in a JSON round trip");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "workload",
            "machine",
            "broker",
            "windows",
            "aggregate",
            "counts",
            "correctness",
            "notes",
            "errors",
        ] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        for key in ["cores", "kernel", "cpu_model"] {
            assert!(value["machine"].get(key).is_some(), "missing machine.{key}");
        }
        for key in ["write_mode", "durability"] {
            assert!(value["broker"].get(key).is_some(), "missing broker.{key}");
        }
        for key in [
            "sent",
            "acked",
            "failed",
            "consumed",
            "duplicates",
            "missing",
            "partitions",
        ] {
            assert!(value["counts"].get(key).is_some(), "missing counts.{key}");
        }
        let latency = &value["aggregate"]["publish_latency"];
        for key in [
            "avg_ms", "p50_ms", "p75_ms", "p95_ms", "p99_ms", "p999_ms", "p9999_ms", "max_ms",
        ] {
            assert!(
                latency.get(key).is_some(),
                "missing aggregate.publish_latency.{key}"
            );
        }
        assert_eq!(value["windows"][0]["phase"], "measure");
        assert_eq!(value["workload"]["acks"], "all");
    }

    // Proves window rates divide counts by the window length and the progress line shows them
    // in OMB's shape, by building a 2 s window of 100 messages of 1 KiB.
    #[test]
    fn window_rates_and_progress_line() {
        let report = sample_report();
        let window = &report.windows[0];
        assert_eq!(window.publish_rate_msg_s, 50.0);
        assert!((window.publish_rate_mb_s - 102_400.0 / 2.0 / BYTES_PER_MB).abs() < 1e-9);
        let line = window.progress_line();
        for part in [
            "Pub rate",
            "msg/s",
            "MB/s",
            "Cons rate",
            "Backlog:",
            "Pub Latency (ms) avg:",
            "99.9%:",
            "E2E Latency",
        ] {
            assert!(line.contains(part), "progress line lacks {part}: {line}");
        }
        let table = report.summary_table();
        assert!(
            table.contains("p99.99") && table.contains("Correctness: ok"),
            "{table}"
        );
    }
}
