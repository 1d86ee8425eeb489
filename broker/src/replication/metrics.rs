//! Broker-level replication metrics of cluster mode, kept by the control thread (from the
//! cluster state etcd publishes) and read by the admin thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::{ClusterHandle, ClusterState, NO_LEADER};

/// Gauges and counters of the cluster as this broker sees it. Written by the control thread
/// only; read with relaxed loads.
#[derive(Debug)]
pub struct ClusterMetrics {
    handle: ClusterHandle,
    under_replicated_partitions: AtomicU64,
    offline_partitions: AtomicU64,
    leader_elections: AtomicU64,
    preferred_leader_imbalance: AtomicU64,
}

/// Leader epochs by (topic, partition): what the last observed state held, to count elections.
pub(crate) type ObservedEpochs = BTreeMap<(String, i32), i32>;

impl ClusterMetrics {
    /// Zeroed metrics reading the connection state from `handle`.
    pub fn new(handle: ClusterHandle) -> ClusterMetrics {
        ClusterMetrics {
            handle,
            under_replicated_partitions: AtomicU64::new(0),
            offline_partitions: AtomicU64::new(0),
            leader_elections: AtomicU64::new(0),
            preferred_leader_imbalance: AtomicU64::new(0),
        }
    }

    /// Whether the control plane holds a live etcd session.
    pub fn etcd_connected(&self) -> bool {
        self.handle.is_connected()
    }

    /// Partitions this broker leads whose ISR is smaller than their replica set.
    pub fn under_replicated_partitions(&self) -> u64 {
        self.under_replicated_partitions.load(Ordering::Relaxed)
    }

    /// Partitions of the cluster with no leader.
    pub fn offline_partitions(&self) -> u64 {
        self.offline_partitions.load(Ordering::Relaxed)
    }

    /// Leader elections observed (a partition's leader epoch went up with a leader elected).
    pub fn leader_elections(&self) -> u64 {
        self.leader_elections.load(Ordering::Relaxed)
    }

    /// Partitions of the cluster not led by their preferred replica.
    pub fn preferred_leader_imbalance(&self) -> u64 {
        self.preferred_leader_imbalance.load(Ordering::Relaxed)
    }

    /// Takes in a new cluster state: recounts the gauges and counts the elections since
    /// `previous` (which it then updates). The first state seen counts no elections.
    pub(crate) fn observe(
        &self,
        state: &ClusterState,
        node_id: i32,
        previous: &mut ObservedEpochs,
    ) {
        let mut under_replicated = 0u64;
        let mut elections = 0u64;
        let first = previous.is_empty();
        let mut seen = ObservedEpochs::new();
        for (topic, partitions) in &state.partitions {
            let replicas = state.topics.get(topic);
            for (partition, entry) in partitions {
                let partition_state = &entry.state;
                let replica_count = replicas
                    .and_then(|topic| topic.assignment.get(usize::try_from(*partition).ok()?))
                    .map_or(0, Vec::len);
                if partition_state.leader == node_id && partition_state.isr.len() < replica_count {
                    under_replicated += 1;
                }
                let key = (topic.clone(), *partition);
                let newer = previous
                    .get(&key)
                    .is_some_and(|epoch| partition_state.leader_epoch > *epoch);
                if !first && newer && partition_state.leader != NO_LEADER {
                    elections += 1;
                }
                seen.insert(key, partition_state.leader_epoch);
            }
        }
        *previous = seen;
        self.under_replicated_partitions
            .store(under_replicated, Ordering::Relaxed);
        let offline = state.offline_partitions().len() as u64;
        self.offline_partitions.store(offline, Ordering::Relaxed);
        self.leader_elections
            .fetch_add(elections, Ordering::Relaxed);
        self.preferred_leader_imbalance.store(
            crate::cluster::preferred::imbalanced_partitions(state),
            Ordering::Relaxed,
        );
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families: [(&str, &str, &str, u64); 5] = [
            (
                "sluice_etcd_connected",
                "gauge",
                "1 while the broker holds a live etcd session, else 0.",
                u64::from(self.etcd_connected()),
            ),
            (
                "sluice_under_replicated_partitions",
                "gauge",
                "Partitions this broker leads whose ISR is smaller than their replica set.",
                self.under_replicated_partitions(),
            ),
            (
                "sluice_offline_partitions",
                "gauge",
                "Partitions of the cluster with no leader.",
                self.offline_partitions(),
            ),
            (
                "sluice_leader_elections_total",
                "counter",
                "Leader elections observed in the cluster state.",
                self.leader_elections(),
            ),
            (
                "sluice_preferred_leader_imbalance",
                "gauge",
                "Partitions of the cluster not led by their preferred replica (the first of their assignment).",
                self.preferred_leader_imbalance(),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
