//! Per-shard metrics.
//!
//! Each shard owns one [`ShardMetrics`] (shared as `Arc` with the admin thread). Every counter
//! is an `AtomicU64` written only by its own shard, so a write is a relaxed load plus a relaxed
//! store (no locked read-modify-write instruction on the data path), and the admin thread reads
//! them with relaxed loads without stopping anything. A reader may see a value a few increments
//! old, which is all Prometheus needs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::table::ShardId;

/// A monotonically increasing counter written by exactly one shard.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `amount`. Only the owning shard may call this (single writer).
    pub fn add(&self, amount: u64) {
        let value = self.0.load(Ordering::Relaxed);
        self.0.store(value.wrapping_add(amount), Ordering::Relaxed);
    }

    /// Adds one.
    pub fn increment(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (connections open, partitions owned), written by one shard.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn increment(&self) {
        self.set(self.get().saturating_add(1));
    }

    /// Subtracts one (never below zero).
    pub fn decrement(&self) {
        self.set(self.get().saturating_sub(1));
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency histogram buckets, in microseconds (Prometheus' usual
/// 100 µs .. 10 s ladder). Observations above the last bound land in the implicit `+Inf` bucket.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A fixed-bucket latency histogram of atomics, single writer.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts: `buckets[i]` counts observations in (bound[i-1], bound[i]];
    /// the last slot counts those above every bound.
    buckets: [Counter; LATENCY_BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl LatencyHistogram {
    /// Records one observation of `micros` microseconds.
    pub fn observe_us(&self, micros: u64) {
        let slot = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[slot].increment();
        self.sum_us.add(micros);
    }

    /// Cumulative bucket counts (as Prometheus wants them), the last entry being `+Inf` (the
    /// total count), plus the sum in microseconds.
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut running = 0u64;
        for bucket in &self.buckets {
            running = running.wrapping_add(bucket.get());
            cumulative.push(running);
        }
        (cumulative, self.sum_us.get())
    }
}

/// Number of api slots in the per-api latency histograms (the native protocol's api keys are
/// 0..API_SLOTS; anything else is counted in no histogram).
pub const API_SLOTS: usize = 25;

/// Kinds of bad input, the label of `sluice_protocol_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// Bytes that are not a frame (inconsistent lengths, garbage).
    MalformedFrame,
    /// A frame larger than `frame_bytes_max`.
    FrameTooLarge,
    /// The peer closed the connection in the middle of a frame.
    TruncatedFrame,
    /// An api key this broker does not know.
    UnknownApi,
    /// A known api at a version this broker does not implement.
    UnsupportedVersion,
    /// A control body that failed validation or is inconsistent with its payload.
    InvalidRequest,
    /// A record batch with a bad CRC or header.
    CorruptBatch,
    /// A record batch larger than `batch_bytes_max`.
    MessageTooLarge,
    /// A request for a topic or partition that does not exist.
    UnknownTopicOrPartition,
    /// A fetch or list-offsets outside the log.
    OffsetOutOfRange,
}

impl ProtocolErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ProtocolErrorKind; 10] = [
        ProtocolErrorKind::MalformedFrame,
        ProtocolErrorKind::FrameTooLarge,
        ProtocolErrorKind::TruncatedFrame,
        ProtocolErrorKind::UnknownApi,
        ProtocolErrorKind::UnsupportedVersion,
        ProtocolErrorKind::InvalidRequest,
        ProtocolErrorKind::CorruptBatch,
        ProtocolErrorKind::MessageTooLarge,
        ProtocolErrorKind::UnknownTopicOrPartition,
        ProtocolErrorKind::OffsetOutOfRange,
    ];

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            ProtocolErrorKind::MalformedFrame => "malformed_frame",
            ProtocolErrorKind::FrameTooLarge => "frame_too_large",
            ProtocolErrorKind::TruncatedFrame => "truncated_frame",
            ProtocolErrorKind::UnknownApi => "unknown_api",
            ProtocolErrorKind::UnsupportedVersion => "unsupported_version",
            ProtocolErrorKind::InvalidRequest => "invalid_request",
            ProtocolErrorKind::CorruptBatch => "corrupt_batch",
            ProtocolErrorKind::MessageTooLarge => "message_too_large",
            ProtocolErrorKind::UnknownTopicOrPartition => "unknown_topic_or_partition",
            ProtocolErrorKind::OffsetOutOfRange => "offset_out_of_range",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The replication lag of one partition this broker leads: how many messages its slowest
/// follower is behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The largest follower lag, in messages.
    pub lag_messages: i64,
}

/// How far one replica a reassignment adds on this broker is from its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCatchUp {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Estimated bytes this replica still lacks.
    pub bytes_remaining: u64,
}

/// Everything one shard counts. Written only by its shard; read by the admin thread.
#[derive(Debug)]
pub struct ShardMetrics {
    /// The shard these counters belong to.
    pub shard: ShardId,
    /// Produce requests received on this shard's connections.
    pub produce_requests: Counter,
    /// Partition appends from this shard's connections that were an idempotent producer's
    /// retry of batches already in the log (answered with the original offsets).
    pub produce_duplicate_batches: Counter,
    /// Fetch requests received on this shard's connections.
    pub fetch_requests: Counter,
    /// Record bytes accepted by produce requests on this shard's connections.
    pub bytes_in: Counter,
    /// Record bytes sent in fetch responses on this shard's connections.
    pub bytes_out: Counter,
    /// Record bytes sent to sockets by splice (never copied through user space).
    pub bytes_spliced: Counter,
    /// Record bytes sent to sockets from memory (tail cache or forwarded copies).
    pub bytes_copied: Counter,
    /// Requests this shard forwarded to another shard over the mesh.
    pub forwarded_requests: Counter,
    /// Requests this shard served for another shard.
    pub forwarded_served: Counter,
    /// Partitions this shard owns.
    pub partitions: Gauge,
    /// Partitions whose log is offline after a failed fsync (answering KAFKA_STORAGE_ERROR).
    pub partitions_offline: Gauge,
    /// Connections accepted.
    pub connections_accepted: Counter,
    /// Connections open now.
    pub connections_active: Gauge,
    /// Connections refused because `connections_max` was reached.
    pub connections_rejected: Counter,
    /// Request latency (receipt of the frame to the response being written), by api key.
    pub request_latency: [LatencyHistogram; API_SLOTS],
    /// ISR shrinks etcd recorded for partitions this shard leads.
    pub isr_shrinks: Counter,
    /// ISR expansions etcd recorded for partitions this shard leads.
    pub isr_expands: Counter,
    /// Bytes of record batches appended as a follower (replicated from leaders).
    pub replicated_bytes: Counter,
    /// Bytes fetched by replicas a reassignment adds while under the reassignment throttle.
    pub reassignment_throttled_bytes: Counter,
    /// Fetch rounds a throttled replica was held back because the throttle's budget was spent.
    pub reassignment_throttle_delays: Counter,
    /// Estimated bytes the replicas reassignments add on this shard still lack, in total.
    pub reassignment_bytes_remaining: Gauge,
    /// Cleaning rounds of compacted logs this shard's cleaner ran.
    pub cleaner_runs: Counter,
    /// Cleaning rounds that failed (the log is retried after the cleaner's backoff).
    pub cleaner_errors: Counter,
    /// Bytes the cleaner read from segments.
    pub cleaner_bytes_read: Counter,
    /// Bytes the cleaner wrote to cleaned segments.
    pub cleaner_bytes_written: Counter,
    /// Segments replaced by cleaned ones.
    pub cleaner_segments_rewritten: Counter,
    /// Records the cleaner removed (superseded records and expired tombstones).
    pub cleaner_records_removed: Counter,
    /// Time spent in cleaning rounds, milliseconds.
    pub cleaner_time_ms: Counter,
    /// Fetches on this shard's connections waiting for data now (long polls parked after a
    /// round found less than their `min_bytes`; Kafka's fetch purgatory size).
    pub fetches_waiting: Gauge,
    protocol_errors: [Counter; ProtocolErrorKind::ALL.len()],
    /// The follower lag of every partition this shard leads, replaced whole by the shard's
    /// periodic replication check (never on the data path), read by the admin thread.
    replica_lag: Mutex<Vec<PartitionLag>>,
    /// The catch-up progress of every replica a reassignment adds on this shard, replaced
    /// whole by the shard's replica fetchers, read by the admin thread.
    reassignment_progress: Mutex<Vec<PartitionCatchUp>>,
}

impl ShardMetrics {
    /// Zeroed metrics for `shard`.
    pub fn new(shard: ShardId) -> ShardMetrics {
        ShardMetrics {
            shard,
            produce_requests: Counter::default(),
            produce_duplicate_batches: Counter::default(),
            fetch_requests: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            bytes_spliced: Counter::default(),
            bytes_copied: Counter::default(),
            forwarded_requests: Counter::default(),
            forwarded_served: Counter::default(),
            partitions: Gauge::default(),
            partitions_offline: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_active: Gauge::default(),
            connections_rejected: Counter::default(),
            request_latency: Default::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            replicated_bytes: Counter::default(),
            reassignment_throttled_bytes: Counter::default(),
            reassignment_throttle_delays: Counter::default(),
            reassignment_bytes_remaining: Gauge::default(),
            cleaner_runs: Counter::default(),
            cleaner_errors: Counter::default(),
            cleaner_bytes_read: Counter::default(),
            cleaner_bytes_written: Counter::default(),
            cleaner_segments_rewritten: Counter::default(),
            cleaner_records_removed: Counter::default(),
            cleaner_time_ms: Counter::default(),
            fetches_waiting: Gauge::default(),
            protocol_errors: Default::default(),
            replica_lag: Mutex::new(Vec::new()),
            reassignment_progress: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the follower lag of the partitions this shard leads.
    pub fn set_replica_lag(&self, lags: Vec<PartitionLag>) {
        *self
            .replica_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = lags;
    }

    /// The follower lag of the partitions this shard leads, as last recorded.
    pub fn replica_lag(&self) -> Vec<PartitionLag> {
        self.replica_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the catch-up progress of the replicas reassignments add on this shard (and
    /// their total in `reassignment_bytes_remaining`).
    pub fn set_reassignment_progress(&self, progress: Vec<PartitionCatchUp>) {
        let total = progress
            .iter()
            .fold(0u64, |sum, entry| sum.saturating_add(entry.bytes_remaining));
        self.reassignment_bytes_remaining.set(total);
        *self
            .reassignment_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = progress;
    }

    /// The catch-up progress of the replicas reassignments add on this shard.
    pub fn reassignment_progress(&self) -> Vec<PartitionCatchUp> {
        self.reassignment_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts one piece of bad input of `kind`.
    pub fn protocol_error(&self, kind: ProtocolErrorKind) {
        self.protocol_errors[kind.index()].increment();
    }

    /// How many protocol errors of `kind` this shard has counted.
    pub fn protocol_errors(&self, kind: ProtocolErrorKind) -> u64 {
        self.protocol_errors[kind.index()].get()
    }

    /// Records the latency of one request of api `api`.
    pub fn observe_latency(&self, api: u16, micros: u64) {
        if let Some(histogram) = self.request_latency.get(usize::from(api)) {
            histogram.observe_us(micros);
        }
    }
}

/// Renders every shard's metrics in the Prometheus text exposition format (version 0.0.4).
/// `api_names[i]` labels the latency histogram of api key `i`.
pub fn render_prometheus(shards: &[Arc<ShardMetrics>], api_names: &[&str]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    render_counters(&mut out, shards);
    render_protocol_errors(&mut out, shards);
    render_latency(&mut out, shards, api_names);
    render_replica_lag(&mut out, shards);
    render_reassignment_progress(&mut out, shards);
    out
}

fn render_replica_lag(out: &mut String, shards: &[Arc<ShardMetrics>]) {
    let name = "sluice_replica_lag_messages";
    let _ = writeln!(
        out,
        "# HELP {name} Messages the slowest follower is behind, per partition this broker leads.\n# TYPE {name} gauge"
    );
    for metrics in shards {
        for lag in metrics.replica_lag() {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                lag.topic, lag.partition, lag.lag_messages
            );
        }
    }
}

/// Name of the per-partition catch-up gauge (read back by `sluice cluster info` and the
/// ListPartitionReassignments answer through each broker's `/metrics`).
pub const REASSIGNMENT_PARTITION_BYTES_REMAINING: &str =
    "sluice_reassignment_partition_bytes_remaining";

fn render_reassignment_progress(out: &mut String, shards: &[Arc<ShardMetrics>]) {
    let name = REASSIGNMENT_PARTITION_BYTES_REMAINING;
    let _ = writeln!(
        out,
        "# HELP {name} Estimated bytes a replica a reassignment adds on this broker still lacks, per partition.\n# TYPE {name} gauge"
    );
    for metrics in shards {
        for entry in metrics.reassignment_progress() {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                entry.topic, entry.partition, entry.bytes_remaining
            );
        }
    }
}

type CounterField = fn(&ShardMetrics) -> u64;

const COUNTER_FAMILIES: [(&str, &str, &str, CounterField); 28] = [
    (
        "sluice_produce_requests_total",
        "counter",
        "Produce requests received.",
        |m| m.produce_requests.get(),
    ),
    (
        "sluice_produce_duplicate_batches_total",
        "counter",
        "Idempotent producers' retries answered with their original offsets, not appended.",
        |m| m.produce_duplicate_batches.get(),
    ),
    (
        "sluice_fetch_requests_total",
        "counter",
        "Fetch requests received.",
        |m| m.fetch_requests.get(),
    ),
    (
        "sluice_bytes_in_total",
        "counter",
        "Record bytes accepted by produce requests.",
        |m| m.bytes_in.get(),
    ),
    (
        "sluice_bytes_out_total",
        "counter",
        "Record bytes sent in fetch responses.",
        |m| m.bytes_out.get(),
    ),
    (
        "sluice_bytes_spliced_total",
        "counter",
        "Record bytes sent to sockets by splice (zero-copy).",
        |m| m.bytes_spliced.get(),
    ),
    (
        "sluice_bytes_copied_total",
        "counter",
        "Record bytes sent to sockets from memory.",
        |m| m.bytes_copied.get(),
    ),
    (
        "sluice_forwarded_requests_total",
        "counter",
        "Requests forwarded to the owning shard.",
        |m| m.forwarded_requests.get(),
    ),
    (
        "sluice_forwarded_served_total",
        "counter",
        "Requests served for another shard.",
        |m| m.forwarded_served.get(),
    ),
    (
        "sluice_partitions",
        "gauge",
        "Partitions owned by the shard.",
        |m| m.partitions.get(),
    ),
    (
        "sluice_partitions_offline",
        "gauge",
        "Partitions offline after a failed fsync (their log is reopened at the next start).",
        |m| m.partitions_offline.get(),
    ),
    (
        "sluice_connections_accepted_total",
        "counter",
        "Connections accepted.",
        |m| m.connections_accepted.get(),
    ),
    ("sluice_connections", "gauge", "Connections open.", |m| {
        m.connections_active.get()
    }),
    (
        "sluice_connections_rejected_total",
        "counter",
        "Connections refused at connections_max.",
        |m| m.connections_rejected.get(),
    ),
    (
        "sluice_isr_shrinks_total",
        "counter",
        "ISR shrinks recorded in etcd for partitions this shard leads.",
        |m| m.isr_shrinks.get(),
    ),
    (
        "sluice_isr_expands_total",
        "counter",
        "ISR expansions recorded in etcd for partitions this shard leads.",
        |m| m.isr_expands.get(),
    ),
    (
        "sluice_replicated_bytes_total",
        "counter",
        "Record batch bytes appended as a follower.",
        |m| m.replicated_bytes.get(),
    ),
    (
        "sluice_reassignment_throttled_bytes_total",
        "counter",
        "Bytes fetched by replicas a reassignment adds, under the reassignment throttle.",
        |m| m.reassignment_throttled_bytes.get(),
    ),
    (
        "sluice_reassignment_throttle_delays_total",
        "counter",
        "Fetch rounds a throttled replica was held back by the reassignment throttle.",
        |m| m.reassignment_throttle_delays.get(),
    ),
    (
        "sluice_reassignment_bytes_remaining",
        "gauge",
        "Estimated bytes the replicas reassignments add on this broker still lack.",
        |m| m.reassignment_bytes_remaining.get(),
    ),
    (
        "sluice_log_cleaner_runs_total",
        "counter",
        "Cleaning rounds of compacted logs.",
        |m| m.cleaner_runs.get(),
    ),
    (
        "sluice_log_cleaner_errors_total",
        "counter",
        "Cleaning rounds that failed.",
        |m| m.cleaner_errors.get(),
    ),
    (
        "sluice_log_cleaner_bytes_read_total",
        "counter",
        "Bytes the log cleaner read.",
        |m| m.cleaner_bytes_read.get(),
    ),
    (
        "sluice_log_cleaner_bytes_written_total",
        "counter",
        "Bytes the log cleaner wrote to cleaned segments.",
        |m| m.cleaner_bytes_written.get(),
    ),
    (
        "sluice_log_cleaner_segments_rewritten_total",
        "counter",
        "Segments replaced by cleaned ones.",
        |m| m.cleaner_segments_rewritten.get(),
    ),
    (
        "sluice_log_cleaner_records_removed_total",
        "counter",
        "Records removed by the log cleaner (superseded, or expired tombstones).",
        |m| m.cleaner_records_removed.get(),
    ),
    (
        "sluice_log_cleaner_time_ms_total",
        "counter",
        "Milliseconds spent cleaning logs.",
        |m| m.cleaner_time_ms.get(),
    ),
    (
        "sluice_fetches_waiting",
        "gauge",
        "Fetches waiting for data (long polling).",
        |m| m.fetches_waiting.get(),
    ),
];

fn render_counters(out: &mut String, shards: &[Arc<ShardMetrics>]) {
    for (name, kind, help, field) in COUNTER_FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for metrics in shards {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{}\"}} {}",
                metrics.shard.0,
                field(metrics)
            );
        }
    }
}

fn render_protocol_errors(out: &mut String, shards: &[Arc<ShardMetrics>]) {
    let name = "sluice_protocol_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Bad input received, by kind.\n# TYPE {name} counter"
    );
    for metrics in shards {
        for kind in ProtocolErrorKind::ALL {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{}\",kind=\"{}\"}} {}",
                metrics.shard.0,
                kind.label(),
                metrics.protocol_errors(kind)
            );
        }
    }
}

fn render_latency(out: &mut String, shards: &[Arc<ShardMetrics>], api_names: &[&str]) {
    let name = "sluice_request_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Request latency from receipt to response, by api.\n# TYPE {name} histogram"
    );
    for metrics in shards {
        for (api, histogram) in metrics.request_latency.iter().enumerate() {
            let api_name = api_names.get(api).copied().unwrap_or("unknown");
            let labels = format!("shard=\"{}\",api=\"{api_name}\"", metrics.shard.0);
            let (cumulative, sum_us) = histogram.snapshot();
            for (bound, count) in LATENCY_BUCKETS_US.iter().zip(&cumulative) {
                let seconds = *bound as f64 / 1e6;
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{seconds}\"}} {count}");
            }
            let total = cumulative.last().copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_us as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the histogram puts observations in the right buckets and renders cumulative counts
    // whose +Inf bucket equals the number of observations.
    #[test]
    fn histogram_is_cumulative_and_counts_everything() {
        let metrics = Arc::new(ShardMetrics::new(ShardId(3)));
        metrics.observe_latency(4, 50); // first bucket
        metrics.observe_latency(4, 1_000); // exactly on the 1 ms bound
        metrics.observe_latency(4, 60_000_000); // above every bound
        metrics.observe_latency(99, 10); // unknown api: ignored
        let (cumulative, sum) = metrics.request_latency[4].snapshot();
        assert_eq!(cumulative[0], 1);
        assert_eq!(cumulative[3], 2);
        assert_eq!(cumulative[LATENCY_BUCKETS_US.len() - 1], 2);
        assert_eq!(*cumulative.last().unwrap(), 3);
        assert_eq!(sum, 60_001_050);
        let text = render_prometheus(&[metrics], &["a", "b", "c", "d", "produce"]);
        assert!(text.contains(
            "sluice_request_latency_seconds_bucket{shard=\"3\",api=\"produce\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains(
            "sluice_request_latency_seconds_bucket{shard=\"3\",api=\"produce\",le=\"0.001\"} 2"
        ));
    }

    // Proves counters, gauges and protocol errors appear in the rendered text with their
    // values and labels.
    #[test]
    fn counters_render_with_shard_labels() {
        let metrics = Arc::new(ShardMetrics::new(ShardId(1)));
        metrics.forwarded_requests.add(5);
        metrics.connections_active.increment();
        metrics.connections_active.increment();
        metrics.connections_active.decrement();
        metrics.protocol_error(ProtocolErrorKind::CorruptBatch);
        metrics.protocol_error(ProtocolErrorKind::CorruptBatch);
        let text = render_prometheus(&[metrics], &[]);
        assert!(text.contains("sluice_forwarded_requests_total{shard=\"1\"} 5"));
        assert!(text.contains("sluice_connections{shard=\"1\"} 1"));
        assert!(text.contains("sluice_protocol_errors_total{shard=\"1\",kind=\"corrupt_batch\"} 2"));
        assert!(text.contains("# TYPE sluice_partitions gauge"));
    }
}
