//! Consumer-group metrics of one shard: written only by that shard (single-writer relaxed
//! atomics, as `ShardMetrics`), read by the admin thread. The lag table is replaced whole by
//! the shard's periodic lag refresh, never on a request path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sluice_group::{GroupEvents, GroupGauges, GroupState};
use sluice_shard::metrics::{Counter, Gauge};

/// The lag of one group on one partition: messages between its committed offset and the
/// partition's high watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// The group.
    pub group_id: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// High watermark minus committed offset (0 when the group is ahead).
    pub lag_messages: i64,
}

/// One shard's group metrics.
#[derive(Debug, Default)]
pub struct GroupMetrics {
    /// The shard.
    pub shard: u32,
    groups_by_state: [Gauge; 5],
    members: Gauge,
    /// Rebalances that reached Stable.
    pub rebalances: Counter,
    /// Their summed duration, ms.
    pub rebalance_ms: Counter,
    /// Partition offsets committed.
    pub offsets_committed: Counter,
    /// OffsetCommit requests served.
    pub commit_requests: Counter,
    /// Members removed because their session expired.
    pub members_expired: Counter,
    /// Group answers that carried an error (bad input, fencing, unknown members, ...).
    pub errors: Counter,
    /// Partitions of __consumer_offsets loaded as coordinator.
    pub coordinator_loads: Counter,
    /// Records of __consumer_offsets that could not be read while loading (skipped).
    pub records_skipped: Counter,
    lag: Mutex<Vec<GroupLag>>,
    /// Coordinators active on the shard (for the lag refresh and tests).
    pub coordinators: Gauge,
    lag_updates: AtomicU64,
}

impl GroupMetrics {
    /// Zeroed metrics of `shard`.
    pub fn new(shard: u32) -> GroupMetrics {
        GroupMetrics {
            shard,
            ..GroupMetrics::default()
        }
    }

    /// Adds a coordinator's events.
    pub fn record(&self, events: &GroupEvents) {
        self.rebalances.add(events.rebalances);
        self.rebalance_ms.add(events.rebalance_ms);
        self.offsets_committed.add(events.offsets_committed);
        self.commit_requests.add(events.commit_requests);
        self.members_expired.add(events.members_expired);
        self.errors.add(events.errors);
    }

    /// Replaces the per-state group counts and member count (summed over the shard's
    /// coordinators).
    pub fn set_gauges(&self, gauges: &GroupGauges) {
        for (slot, count) in self.groups_by_state.iter().zip(gauges.groups_by_state) {
            slot.set(count);
        }
        self.members.set(gauges.members);
    }

    /// Groups in `state` now.
    pub fn groups_in(&self, state: GroupState) -> u64 {
        GroupState::ALL
            .iter()
            .position(|candidate| *candidate == state)
            .map_or(0, |index| self.groups_by_state[index].get())
    }

    /// Members now.
    pub fn members(&self) -> u64 {
        self.members.get()
    }

    /// Replaces the lag table.
    pub fn set_lag(&self, lag: Vec<GroupLag>) {
        *self.lag.lock().unwrap_or_else(PoisonError::into_inner) = lag;
        self.lag_updates.fetch_add(1, Ordering::Relaxed);
    }

    /// The lag table as last refreshed.
    pub fn lag(&self) -> Vec<GroupLag> {
        self.lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

type Field = fn(&GroupMetrics) -> u64;

const FAMILIES: [(&str, &str, &str, Field); 8] = [
    (
        "sluice_group_members",
        "gauge",
        "Members of the groups this shard coordinates.",
        |m| m.members(),
    ),
    (
        "sluice_group_rebalances_total",
        "counter",
        "Rebalances that reached Stable.",
        |m| m.rebalances.get(),
    ),
    (
        "sluice_group_rebalance_ms_total",
        "counter",
        "Summed rebalance duration (leaving Stable or Empty to Stable), ms.",
        |m| m.rebalance_ms.get(),
    ),
    (
        "sluice_group_offset_commits_total",
        "counter",
        "Partition offsets committed.",
        |m| m.offsets_committed.get(),
    ),
    (
        "sluice_group_commit_requests_total",
        "counter",
        "OffsetCommit requests served.",
        |m| m.commit_requests.get(),
    ),
    (
        "sluice_group_members_expired_total",
        "counter",
        "Members removed because their session expired.",
        |m| m.members_expired.get(),
    ),
    (
        "sluice_group_errors_total",
        "counter",
        "Group answers carrying an error (bad input, fencing, unknown member).",
        |m| m.errors.get(),
    ),
    (
        "sluice_group_coordinator_loads_total",
        "counter",
        "Partitions of __consumer_offsets loaded as coordinator.",
        |m| m.coordinator_loads.get(),
    ),
];

/// Renders every shard's group metrics in the Prometheus text format.
pub fn render(out: &mut String, shards: &[Arc<GroupMetrics>]) {
    let name = "sluice_groups";
    let _ = writeln!(
        out,
        "# HELP {name} Groups this shard coordinates, by state.\n# TYPE {name} gauge"
    );
    for metrics in shards {
        for state in GroupState::ALL {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{}\",state=\"{}\"}} {}",
                metrics.shard,
                state.name(),
                metrics.groups_in(state)
            );
        }
    }
    for (name, kind, help, field) in FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for metrics in shards {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{}\"}} {}",
                metrics.shard,
                field(metrics)
            );
        }
    }
    let name = "sluice_group_lag_messages";
    let _ = writeln!(
        out,
        "# HELP {name} Messages between a group's committed offset and the partition's high watermark.\n# TYPE {name} gauge"
    );
    for metrics in shards {
        for lag in metrics.lag() {
            let _ = writeln!(
                out,
                "{name}{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                escape(&lag.group_id),
                escape(&lag.topic),
                lag.partition,
                lag.lag_messages
            );
        }
    }
}

/// Escapes a Prometheus label value (group ids are client-chosen text).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves group metrics render with their labels, group ids are escaped, and the lag table
    // shows one line per group and partition.
    #[test]
    fn group_metrics_render() {
        let metrics = Arc::new(GroupMetrics::new(2));
        metrics.set_gauges(&GroupGauges {
            groups_by_state: [1, 0, 0, 3, 0],
            members: 7,
        });
        metrics.record(&GroupEvents {
            rebalances: 2,
            offsets_committed: 10,
            ..GroupEvents::default()
        });
        metrics.set_lag(vec![GroupLag {
            group_id: "a\"b".to_string(),
            topic: "t".to_string(),
            partition: 3,
            lag_messages: 42,
        }]);
        let mut out = String::new();
        render(&mut out, &[metrics]);
        assert!(
            out.contains("sluice_groups{shard=\"2\",state=\"Stable\"} 3"),
            "{out}"
        );
        assert!(out.contains("sluice_group_members{shard=\"2\"} 7"));
        assert!(out.contains("sluice_group_rebalances_total{shard=\"2\"} 2"));
        assert!(out.contains("sluice_group_offset_commits_total{shard=\"2\"} 10"));
        assert!(out.contains(
            "sluice_group_lag_messages{group=\"a\\\"b\",topic=\"t\",partition=\"3\"} 42"
        ));
    }
}
