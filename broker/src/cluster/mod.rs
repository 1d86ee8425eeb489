//! Cluster mode: the control plane on etcd.
//!
//! Everything here runs on one ordinary thread (the control-plane thread) with a small tokio
//! current-thread runtime, because the etcd client is tonic/tokio based. The glommio shards never
//! touch tokio: they read [`ClusterHandle::snapshot`] and learn of changes through
//! [`ClusterSubscription`] (a futures-channel receiver they can await), and they send requests
//! through the handle's blocking methods from a non-shard thread.
//!
//! Layout in etcd (DESIGN.md section 5), every value JSON so `etcdctl get` shows it:
//!
//! ```text
//! /sluice/<cluster>/brokers/<id>             BrokerInfo, bound to the broker's lease
//! /sluice/<cluster>/controller               {"id": N}, bound to the controller's lease
//! /sluice/<cluster>/topics/<topic>           TopicAssignment
//! /sluice/<cluster>/partitions/<topic>/<p>   PartitionState
//! /sluice/<cluster>/reassignments/<topic>/<p> ReassignmentRecord, while a move is in progress
//! ```
//!
//! - [`placement`]: replica placement (pure).
//! - [`state`]: the keys, the values and [`ClusterState`], the snapshot built from them.
//! - [`controller`]: the controller's decisions (sans-IO).
//! - [`reassign`]: partition reassignment decisions (sans-IO, KIP-455).
//! - [`rebalance`]: rebalance and decommission plans (pure).
//! - [`preferred`]: preferred leader elections and the automatic leader rebalance (sans-IO).
//! - `session` and `ops` (private): the etcd side: lease, registration, election, watch,
//!   compare-and-swap writes, reconnection.
//! - [`handle`]: [`ClusterHandle`], what the broker holds.
//! - [`store`]: [`EtcdMetadataStore`], the broker's `MetadataStore` on etcd.
//!
//! **Invariant:** every write is an etcd transaction guarded by the mod_revision the writer
//! read (compare-and-swap); controller writes are also guarded by the controller key's
//! revision, so a deposed controller cannot write.
//! **Invariant:** a replica outside the ISR is never elected leader.

pub mod controller;
pub mod handle;
mod ops;
pub mod placement;
pub mod preferred;
pub mod reassign;
mod reassign_ops;
pub mod rebalance;
mod session;
pub mod state;
pub mod store;

use std::time::Duration;

pub use controller::{on_broker_change, ChangeReason, PartitionChange};
pub use handle::{ClusterHandle, ClusterSubscription, PartitionVersion, TopicSpec};
pub use placement::assign_replicas;
pub use state::{
    BrokerInfo, ClusterKeys, ClusterState, ControllerInfo, PartitionEntry, PartitionState,
    ReassignmentEntry, ReassignmentRecord, TopicAssignment, NO_LEADER,
};
pub use store::EtcdMetadataStore;

/// Default broker session TTL, seconds: a broker whose lease is not renewed for this long is
/// considered dead and its partitions fail over.
pub const BROKER_SESSION_TTL_S_DEFAULT: u64 = 6;

/// Shortest session TTL accepted, seconds. etcd itself never grants less than about two
/// seconds (its minimum lease TTL derives from the election timeout).
pub const BROKER_SESSION_TTL_S_MIN: u64 = 2;

/// Default bound on connecting to etcd and getting a lease, milliseconds.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Default bound on one etcd request, milliseconds.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Default bound on one handle command (several etcd round trips plus waiting for the watch to
/// show the change), milliseconds.
pub const COMMAND_TIMEOUT_MS_DEFAULT: u64 = 15_000;

/// Default longest wait between two reconnection attempts, milliseconds.
pub const RECONNECT_BACKOFF_MS_MAX_DEFAULT: u64 = 2_000;

/// Default bound on joining the cluster at start, milliseconds: a starting broker retries
/// (with backoff) while etcd is unreachable, restarting, or loses the new lease, and gives up
/// with the last error only after this long. Once joined, a broker never gives up: it
/// reconnects for as long as it runs.
pub const START_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// Default of the automatic leader rebalance (Kafka's `auto.leader.rebalance.enable`).
pub const AUTO_LEADER_REBALANCE_ENABLE_DEFAULT: bool = true;

/// Default interval of the controller's leader imbalance check, milliseconds. Kafka checks
/// every 300 s; Sluice's failure detection is seconds (a 6 s session TTL), and a check reads
/// only the in-memory snapshot, so leadership comes home after a restart within half a minute
/// instead of five.
pub const LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT: u64 = 30_000;

/// Default per-broker imbalance above which the controller moves leadership back, percent
/// (Kafka's `leader.imbalance.per.broker.percentage`).
pub const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_DEFAULT: u32 = 10;

/// Largest per-broker imbalance threshold, percent.
pub const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_MAX: u32 = 100;

/// Longest topic or cluster name, bytes (Kafka's topic name limit).
pub const NAME_BYTES_MAX: usize = 249;

/// Most partitions one topic may have. The assignment is one etcd value, and etcd refuses
/// requests over 1.5 MiB by default; 10,000 partitions at replication factor 3 stay far below.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Errors of the cluster control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration cannot work.
    #[error("cluster config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// etcd did not answer at start within the connect timeout.
    #[error("etcd unreachable at {endpoints} within {timeout_ms} ms: {reason}")]
    Unreachable {
        /// The endpoints tried, comma separated.
        endpoints: String,
        /// The bound that ran out, milliseconds.
        timeout_ms: u64,
        /// The last error seen.
        reason: String,
    },
    /// An etcd request failed.
    #[error("etcd {operation} {key}: {source}")]
    Etcd {
        /// What was being done.
        operation: &'static str,
        /// The key (or prefix) involved.
        key: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// An etcd request or a session step did not finish in time.
    #[error("etcd {operation} {key}: no answer within {timeout_ms} ms")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The key (or prefix) involved.
        key: String,
        /// The bound, milliseconds.
        timeout_ms: u64,
    },
    /// The session with etcd ended (lease expired, stream closed); the control plane reconnects.
    #[error("etcd session lost: {reason}")]
    SessionLost {
        /// Why.
        reason: String,
    },
    /// The control plane is not connected to etcd right now; the last snapshot is kept.
    #[error("{operation}: not connected to etcd (reconnecting)")]
    Disconnected {
        /// What was asked.
        operation: &'static str,
    },
    /// The control plane has stopped (shut down, or its thread ended).
    #[error("{operation}: the cluster control plane has stopped")]
    Stopped {
        /// What was asked.
        operation: &'static str,
    },
    /// The control-plane thread or runtime could not be started.
    #[error("cannot start the cluster control-plane thread: {source}")]
    Runtime {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A value in etcd is not what this version writes.
    #[error("etcd key {key} holds an invalid value: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Another live process is registered with this node id.
    #[error("node id {node_id} is already registered at {key} by another live broker")]
    NodeIdInUse {
        /// The node id.
        node_id: i32,
        /// The registration key.
        key: String,
    },
    /// A topic or cluster name is not allowed.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The partition count is out of range.
    #[error("partition count {partitions} is outside 1..={TOPIC_PARTITIONS_MAX}")]
    InvalidPartitionCount {
        /// The count asked for.
        partitions: i32,
    },
    /// The replication factor cannot be met.
    #[error(
        "replication factor {replication_factor} is impossible with {live_brokers} live brokers \
         (it must be between 1 and the number of live brokers)"
    )]
    InvalidReplicationFactor {
        /// The factor asked for.
        replication_factor: i16,
        /// Live brokers now.
        live_brokers: usize,
    },
    /// CreateTopics named a topic that exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// The partition does not exist (or its state is not written yet).
    #[error("partition {topic}-{partition} does not exist")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Only the partition's leader may change its ISR.
    #[error("partition {topic}-{partition}: node {node_id} is not the leader (leader {leader})")]
    NotLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The caller.
        node_id: i32,
        /// The leader now.
        leader: i32,
    },
    /// The caller's leader epoch is not the current one.
    #[error("partition {topic}-{partition}: leader epoch {expected} is stale (now {current})")]
    StaleLeaderEpoch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The epoch the caller had.
        expected: i32,
        /// The epoch in etcd.
        current: i32,
    },
    /// The partition state changed since the caller read it; re-read and decide again.
    #[error(
        "partition {topic}-{partition}: state changed since revision {expected_revision} \
         (now leader {} epoch {} isr {:?})", current.leader, current.leader_epoch, current.isr
    )]
    Conflict {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The revision the caller's decision was based on.
        expected_revision: i64,
        /// The state now.
        current: Box<PartitionState>,
    },
    /// A member an ISR expansion adds is registered with another broker epoch than the one
    /// the leader saw it catch up in (it restarted since, KIP-903); the partition state is
    /// unchanged.
    #[error(
        "partition {topic}-{partition}: broker {broker} is no longer registered with broker \
         epoch {expected}; it restarted and must catch up again"
    )]
    StaleBrokerEpoch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The member being added.
        broker: i32,
        /// The epoch the leader named.
        expected: i64,
    },
    /// Other brokers won every compare-and-swap on the producer-id block key.
    #[error("could not reserve producer ids: {attempts} compare-and-swap attempts lost")]
    ProducerIdsContended {
        /// Attempts made.
        attempts: usize,
    },
    /// The producer-id block key holds something that is not a number.
    #[error("the producer-id key holds {0:?}, not a number")]
    ProducerIdsCorrupt(String),
    /// A partition count that does not grow the topic.
    #[error(
        "topic {topic} has {current} partitions; the count can only grow (asked for {requested})"
    )]
    PartitionsNotIncreased {
        /// Topic.
        topic: String,
        /// Partitions now.
        current: i32,
        /// Partitions asked for.
        requested: i32,
    },
    /// The topic changed between the read a change was based on and its write; nothing was
    /// written.
    #[error("topic {0} changed meanwhile; nothing was written, try again")]
    TopicChanged(String),
    /// No controller is elected right now (an election is under way); try again.
    #[error("no controller is elected right now; try again in a moment")]
    NoController,
    /// The proposed ISR breaks a rule.
    #[error("partition {topic}-{partition}: invalid ISR {isr:?}: {reason}")]
    InvalidIsr {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The proposed ISR.
        isr: Vec<i32>,
        /// The rule broken.
        reason: &'static str,
    },
    /// A partition reassignment (or its cancel) was refused; nothing changed.
    #[error("partition {topic}-{partition}: reassignment refused: {reason}")]
    ReassignmentRefused {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Which rule refused it, for the answer's error code.
        kind: Refusal,
        /// Why.
        reason: String,
    },
}

/// Why a reassignment (or its cancel) was refused: each kind answers with its own Kafka error
/// code, so admin clients can tell a bad target from a busy partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The target replica list breaks a rule (INVALID_REPLICA_ASSIGNMENT).
    InvalidAssignment,
    /// The partition is being reassigned already (REASSIGNMENT_IN_PROGRESS).
    InProgress,
    /// A cancel of a partition that is not being reassigned (NO_REASSIGNMENT_IN_PROGRESS).
    NotInProgress,
    /// Anything else: a partition named twice in one request, a state that changed meanwhile,
    /// no original replica able to lead again (INVALID_REQUEST, the reason says which).
    Other,
}

/// How to reach etcd and what to register. Build with [`ClusterConfig::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:port`).
    pub endpoints: Vec<String>,
    /// Cluster name: the `<cluster>` in every key, so several clusters can share an etcd.
    pub cluster: String,
    /// This broker's node id (0 or more).
    pub node_id: i32,
    /// The host clients and other brokers reach this broker at.
    pub host: String,
    /// The native protocol port.
    pub native_port: u16,
    /// The per-shard native ports, shard 0 first.
    pub shard_ports: Vec<u16>,
    /// The admin HTTP address, if enabled.
    pub admin_addr: Option<String>,
    /// The Kafka protocol port, if enabled.
    pub kafka_port: Option<u16>,
    /// Lease TTL, seconds; keep-alives go out every third of it.
    pub broker_session_ttl_s: u64,
    /// Bound on connecting and getting a lease, milliseconds.
    pub connect_timeout_ms: u64,
    /// Bound on one etcd request, milliseconds.
    pub request_timeout_ms: u64,
    /// Bound on one handle command, milliseconds.
    pub command_timeout_ms: u64,
    /// Longest wait between reconnection attempts, milliseconds.
    pub reconnect_backoff_ms_max: u64,
    /// Bound on joining the cluster at start (retrying transient failures), milliseconds.
    pub start_timeout_ms: u64,
    /// Whether the controller moves leadership back to preferred replicas by itself.
    pub auto_leader_rebalance_enable: bool,
    /// Interval of the controller's leader imbalance check, milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
    /// Per-broker share of partitions preferring a broker but led elsewhere above which the
    /// controller moves them back, percent.
    pub leader_imbalance_per_broker_percentage: u32,
}

impl ClusterConfig {
    /// A config with the default bounds, registering `host` with no ports (fill them in).
    pub fn new(endpoints: Vec<String>, cluster: &str, node_id: i32, host: &str) -> ClusterConfig {
        ClusterConfig {
            endpoints,
            cluster: cluster.to_string(),
            node_id,
            host: host.to_string(),
            native_port: 0,
            shard_ports: Vec::new(),
            admin_addr: None,
            kafka_port: None,
            broker_session_ttl_s: BROKER_SESSION_TTL_S_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            command_timeout_ms: COMMAND_TIMEOUT_MS_DEFAULT,
            reconnect_backoff_ms_max: RECONNECT_BACKOFF_MS_MAX_DEFAULT,
            start_timeout_ms: START_TIMEOUT_MS_DEFAULT,
            auto_leader_rebalance_enable: AUTO_LEADER_REBALANCE_ENABLE_DEFAULT,
            leader_imbalance_check_interval_ms: LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT,
            leader_imbalance_per_broker_percentage: LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_DEFAULT,
        }
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |reason: String| Err(ClusterError::InvalidConfig { reason });
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return invalid("endpoints: at least one etcd URL is needed".to_string());
        }
        validate_name(&self.cluster)?;
        if self.node_id < 0 {
            return invalid(format!("node_id {} is negative", self.node_id));
        }
        if self.broker_session_ttl_s < BROKER_SESSION_TTL_S_MIN {
            return invalid(format!(
                "broker_session_ttl_s {} is below the minimum {BROKER_SESSION_TTL_S_MIN}",
                self.broker_session_ttl_s
            ));
        }
        let bounds = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("command_timeout_ms", self.command_timeout_ms),
            ("reconnect_backoff_ms_max", self.reconnect_backoff_ms_max),
            ("start_timeout_ms", self.start_timeout_ms),
            (
                "leader_imbalance_check_interval_ms",
                self.leader_imbalance_check_interval_ms,
            ),
        ];
        if let Some((name, _)) = bounds.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{name} must be more than 0"));
        }
        let percentage = self.leader_imbalance_per_broker_percentage;
        if percentage > LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_MAX {
            return invalid(format!(
                "leader_imbalance_per_broker_percentage {percentage} is above \
                 {LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_MAX}"
            ));
        }
        Ok(())
    }

    /// The endpoints as one string, for messages.
    pub fn endpoints_text(&self) -> String {
        self.endpoints.join(",")
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(self.broker_session_ttl_s)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn broker_info(&self) -> BrokerInfo {
        BrokerInfo {
            id: self.node_id,
            host: self.host.clone(),
            native_port: self.native_port,
            shard_ports: self.shard_ports.clone(),
            admin_addr: self.admin_addr.clone(),
            kafka_port: self.kafka_port,
        }
    }
}

/// Checks a topic or cluster name: 1 to [`NAME_BYTES_MAX`] bytes of `[a-zA-Z0-9._-]`, not `.`
/// or `..`. The name becomes part of etcd keys and partition directory names, so a `/` must
/// never get through.
pub fn validate_name(name: &str) -> Result<(), ClusterError> {
    let refuse = |reason| {
        Err(ClusterError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > NAME_BYTES_MAX {
        return refuse("it is longer than 249 bytes");
    }
    if name == "." || name == ".." {
        return refuse("`.` and `..` are reserved");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
    if !name.chars().all(allowed) {
        return refuse("only ASCII letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves names that would escape their etcd key or directory are refused and ordinary ones
    // pass, by checking each class of bad name.
    #[test]
    fn names_are_checked() {
        for good in ["orders", "a.b-c_d", "X1"] {
            validate_name(good).unwrap();
        }
        let long = "a".repeat(NAME_BYTES_MAX + 1);
        for bad in ["", ".", "..", "a/b", "a b", "é", long.as_str()] {
            assert!(validate_name(bad).is_err(), "{bad:?} passed");
        }
    }

    // Proves the config check names the bad field, by breaking one field at a time.
    #[test]
    fn config_errors_name_the_field() {
        let good = ClusterConfig::new(vec!["http://127.0.0.1:2379".into()], "c", 1, "h");
        good.validate().unwrap();
        let mut bad = good.clone();
        bad.endpoints.clear();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("endpoints"));
        let mut bad = good.clone();
        bad.broker_session_ttl_s = 1;
        assert!(bad.validate().unwrap_err().to_string().contains("ttl"));
        let mut bad = good.clone();
        bad.request_timeout_ms = 0;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("request_timeout_ms"));
        let mut bad = good;
        bad.node_id = -1;
        assert!(bad.validate().unwrap_err().to_string().contains("node_id"));
    }
}
