//! Kafka-port metrics: requests, requests answered with an error, and latency, per API key and
//! version. One [`KafkaMetrics`] per shard, written only by that shard (relaxed atomics), read
//! by the admin thread.

use std::fmt::Write as _;
use std::sync::Arc;

use sluice_kafka::kafka_protocol::messages::ApiKey;
use sluice_kafka::{api_name, ApiTable};
use sluice_shard::metrics::{Counter, LatencyHistogram, LATENCY_BUCKETS_US};
use sluice_shard::ShardId;

/// API keys below this get a slot index; Kafka's keys are below 100.
const API_KEY_SLOTS: usize = 128;

/// What is counted for one (API, version).
#[derive(Debug, Default)]
struct VersionMetrics {
    requests: Counter,
    errors: Counter,
    latency: LatencyHistogram,
}

/// One shard's Kafka-port metrics.
#[derive(Debug)]
pub struct KafkaMetrics {
    shard: ShardId,
    /// The APIs and versions served, in slot order.
    table: ApiTable,
    /// For each API key, the slot of its lowest served version (`u16::MAX`: not served).
    first_slot: [u16; API_KEY_SLOTS],
    slots: Vec<VersionMetrics>,
}

impl KafkaMetrics {
    /// Zeroed metrics for every API and version of `table`.
    pub fn new(shard: ShardId, table: &ApiTable) -> KafkaMetrics {
        let mut first_slot = [u16::MAX; API_KEY_SLOTS];
        let mut count = 0usize;
        for support in table.apis() {
            if let Some(slot) = first_slot.get_mut(support.key as i16 as usize) {
                *slot = u16::try_from(count).unwrap_or(u16::MAX);
            }
            count += usize::try_from(support.max - support.min + 1).unwrap_or(0);
        }
        KafkaMetrics {
            shard,
            table: table.clone(),
            first_slot,
            slots: (0..count).map(|_| VersionMetrics::default()).collect(),
        }
    }

    fn slot(&self, api: ApiKey, version: i16) -> Option<&VersionMetrics> {
        let support = self.table.get(api)?;
        if !(support.min..=support.max).contains(&version) {
            return None;
        }
        let first = *self.first_slot.get(api as i16 as usize)?;
        let offset = usize::try_from(version - support.min).ok()?;
        self.slots.get(usize::from(first) + offset)
    }

    /// Counts one answered request of `api` `version`: its latency from receipt to the
    /// response written, and whether it carried an error.
    pub fn observe(&self, api: ApiKey, version: i16, micros: u64, failed: bool) {
        if let Some(slot) = self.slot(api, version) {
            slot.requests.increment();
            if failed {
                slot.errors.increment();
            }
            slot.latency.observe_us(micros);
        }
    }

    /// Counts a request of `api` `version` refused before it was answered (bad body).
    pub fn refused(&self, api: ApiKey, version: i16) {
        if let Some(slot) = self.slot(api, version) {
            slot.requests.increment();
            slot.errors.increment();
        }
    }

    /// Requests of `api` `version` counted so far, and how many of them failed.
    pub fn counts(&self, api: ApiKey, version: i16) -> (u64, u64) {
        self.slot(api, version)
            .map_or((0, 0), |slot| (slot.requests.get(), slot.errors.get()))
    }

    fn each(&self) -> impl Iterator<Item = (&'static str, i16, &VersionMetrics)> {
        self.table.apis().iter().flat_map(move |support| {
            (support.min..=support.max).filter_map(move |version| {
                self.slot(support.key, version)
                    .map(|slot| (api_name(support.key), version, slot))
            })
        })
    }
}

/// Renders every shard's Kafka metrics in the Prometheus text format. Versions never used are
/// left out, to keep the page short.
pub fn render_kafka_metrics(shards: &[Arc<KafkaMetrics>]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let requests = "sluice_kafka_requests_total";
    let errors = "sluice_kafka_request_errors_total";
    let latency = "sluice_kafka_request_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {requests} Kafka-protocol requests answered, by API and version.\n# TYPE {requests} counter"
    );
    let _ = writeln!(
        out,
        "# HELP {errors} Kafka-protocol requests refused or answered with an error code.\n# TYPE {errors} counter"
    );
    let _ = writeln!(
        out,
        "# HELP {latency} Kafka-protocol request latency from receipt to response.\n# TYPE {latency} histogram"
    );
    for metrics in shards {
        for (api, version, slot) in metrics.each() {
            let count = slot.requests.get();
            if count == 0 {
                continue;
            }
            let labels = format!(
                "shard=\"{}\",api=\"{api}\",version=\"{version}\"",
                metrics.shard.0
            );
            let _ = writeln!(out, "{requests}{{{labels}}} {count}");
            let _ = writeln!(out, "{errors}{{{labels}}} {}", slot.errors.get());
            let (cumulative, sum_us) = slot.latency.snapshot();
            for (bound, bucket) in LATENCY_BUCKETS_US.iter().zip(&cumulative) {
                let seconds = *bound as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "{latency}_bucket{{{labels},le=\"{seconds}\"}} {bucket}"
                );
            }
            let total = cumulative.last().copied().unwrap_or(0);
            let _ = writeln!(out, "{latency}_bucket{{{labels},le=\"+Inf\"}} {total}");
            let _ = writeln!(out, "{latency}_sum{{{labels}}} {}", sum_us as f64 / 1e6);
            let _ = writeln!(out, "{latency}_count{{{labels}}} {total}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves requests land in their own (API, version) slot, unserved versions are ignored,
    // and the rendered page labels each used slot with API, version and shard.
    #[test]
    fn counts_per_api_and_version() {
        let metrics = Arc::new(KafkaMetrics::new(ShardId(2), &ApiTable::core()));
        metrics.observe(ApiKey::Produce, 9, 150, false);
        metrics.observe(ApiKey::Produce, 9, 150, true);
        metrics.observe(ApiKey::Produce, 3, 10, false);
        metrics.refused(ApiKey::Fetch, 12);
        metrics.observe(ApiKey::Produce, 2, 10, false); // below the served range
        metrics.observe(ApiKey::JoinGroup, 5, 10, false); // not served by the core table
        assert_eq!(metrics.counts(ApiKey::Produce, 9), (2, 1));
        assert_eq!(metrics.counts(ApiKey::Produce, 3), (1, 0));
        assert_eq!(metrics.counts(ApiKey::Fetch, 12), (1, 1));
        assert_eq!(metrics.counts(ApiKey::Metadata, 12), (0, 0));
        let text = render_kafka_metrics(&[metrics]);
        assert!(text
            .contains("sluice_kafka_requests_total{shard=\"2\",api=\"produce\",version=\"9\"} 2"));
        assert!(text.contains(
            "sluice_kafka_request_errors_total{shard=\"2\",api=\"fetch\",version=\"12\"} 1"
        ));
        assert!(!text.contains("version=\"2\""));
    }
}
