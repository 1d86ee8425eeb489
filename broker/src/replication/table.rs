//! The shard table of cluster mode, built from a [`ClusterState`] (pure).

use std::collections::BTreeMap;

use sluice_shard::partition::topic_min_insync_replicas;
use sluice_shard::{
    BrokerAddress, ClusterView, ReplicaInfo, ShardTable, TopicAssignment, NO_LEADER,
};

use crate::cluster::{ClusterState, PartitionState};

/// The table every shard of broker `node_id` gets for `state`: every topic (so metadata can
/// describe it), each partition owned by the shard [`sluice_shard::shard_for`] picks over
/// `shard_count` shards, its leader, epoch, replicas and ISR, and the live brokers. Its version
/// is the etcd revision the state reflects, so a stale broadcast is ignored.
pub fn table_from_cluster(
    state: &ClusterState,
    node_id: i32,
    shard_count: u32,
    min_insync_replicas_default: usize,
) -> ShardTable {
    let topics = state
        .topics
        .iter()
        .map(|(name, topic)| {
            let configs: Vec<(String, String)> = topic
                .configs
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            let min_insync =
                topic_min_insync_replicas(&configs).unwrap_or(min_insync_replicas_default);
            let partitions = u32::try_from(topic.partitions).unwrap_or(0);
            let mut assignment = TopicAssignment::place(
                name,
                partitions,
                shard_count,
                topic.replication_factor,
                configs,
            )
            .with_topic_id(topic.topic_id);
            // The full replica set: replicas a reassignment adds follow like the others.
            assignment.replication = (0..topic.assignment.len())
                .map(|index| {
                    let partition = i32::try_from(index).unwrap_or(i32::MAX);
                    let replicas = state.replicas(name, partition);
                    replica_info(state, node_id, name, partition, &replicas, min_insync)
                })
                .collect();
            (name.clone(), assignment)
        })
        .collect();
    let brokers = state
        .brokers
        .values()
        .map(|broker| {
            let address = BrokerAddress {
                node_id: broker.id,
                host: broker.host.clone(),
                native_port: broker.native_port,
                shard_ports: broker.shard_ports.clone(),
                broker_epoch: state.broker_epoch(broker.id).unwrap_or(0),
                kafka_port: broker.kafka_port,
            };
            (broker.id, address)
        })
        .collect::<BTreeMap<_, _>>();
    let cluster = ClusterView {
        node_id,
        controller_id: state.controller_id().unwrap_or(NO_LEADER),
        brokers,
    };
    let version = u64::try_from(state.revision).unwrap_or(0);
    ShardTable::with_cluster(version, topics, cluster)
}

/// One partition's replication state; a partition whose state is not written yet (its
/// creator died midway; the controller fills it in) has no leader. Broker `node_id` takes a
/// leadership only under the broker epoch recorded for it: a state naming it leader under
/// another registration (written before it restarted, perhaps with its disk wiped, and not
/// yet failed over by the controller) has no leader in its table, so it never serves, nor has
/// its followers truncate to, a log it may no longer hold.
fn replica_info(
    state: &ClusterState,
    node_id: i32,
    topic: &str,
    partition: i32,
    replicas: &[i32],
    min_insync_replicas: usize,
) -> ReplicaInfo {
    let broker_epochs = replicas
        .iter()
        .filter_map(|replica| state.broker_epoch(*replica).map(|epoch| (*replica, epoch)))
        .collect();
    let assigned = state
        .assigned_replicas(topic, partition)
        .unwrap_or_default();
    let adding: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|replica| !assigned.contains(replica))
        .collect();
    match state.partition(topic, partition) {
        Some(entry) => ReplicaInfo {
            leader: leader_for(state, node_id, (topic, partition), &entry.state),
            leader_epoch: entry.state.leader_epoch,
            replicas: replicas.to_vec(),
            isr: entry.state.isr.clone(),
            version: entry.mod_revision,
            min_insync_replicas,
            broker_epochs,
            adding,
        },
        None => ReplicaInfo {
            leader: NO_LEADER,
            leader_epoch: -1,
            replicas: replicas.to_vec(),
            isr: Vec::new(),
            version: 0,
            min_insync_replicas,
            broker_epochs,
            adding,
        },
    }
}

/// The leader of `partition` as broker `node_id` may act on it (see [`replica_info`]).
fn leader_for(
    state: &ClusterState,
    node_id: i32,
    (topic, index): (&str, i32),
    partition: &PartitionState,
) -> i32 {
    let own = state.broker_epoch(node_id);
    let recorded = partition.isr_epochs.get(&node_id).copied();
    if partition.leader == node_id && (own.is_none() || own != recorded) {
        tracing::warn!(
            topic,
            partition = index,
            node_id,
            own_epoch = ?own,
            recorded_epoch = ?recorded,
            leader_epoch = partition.leader_epoch,
            "not taking a leadership recorded under another broker epoch; the controller elects anew"
        );
        return NO_LEADER;
    }
    partition.leader
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BrokerInfo, PartitionEntry, PartitionState, TopicAssignment};

    /// Two registered brokers and topic `t`: t-0 on [1, 2] led by 1, t-1 on [2, 3] with no
    /// state yet.
    fn two_broker_state() -> ClusterState {
        let mut state = ClusterState::new("c");
        state.revision = 42;
        for id in [1, 2] {
            state.brokers.insert(
                id,
                BrokerInfo {
                    id,
                    host: "127.0.0.1".into(),
                    native_port: 9000 + id as u16,
                    shard_ports: vec![9100 + id as u16],
                    admin_addr: None,
                    kafka_port: None,
                },
            );
        }
        state.topics.insert(
            "t".into(),
            TopicAssignment {
                name: "t".into(),
                topic_id: uuid::Uuid::from_u128(9),
                partitions: 2,
                replication_factor: 2,
                configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
                assignment: vec![vec![1, 2], vec![2, 3]],
            },
        );
        let entry = PartitionEntry {
            state: PartitionState {
                leader: 1,
                leader_epoch: 4,
                isr: vec![1, 2],
                controller_epoch: 0,
                isr_epochs: [(1, 31), (2, 32)].into(),
            },
            mod_revision: 40,
        };
        state
            .partitions
            .entry("t".into())
            .or_default()
            .insert(0, entry);
        state.broker_epochs = [(1, 31), (2, 32)].into();
        state
    }

    // Proves the table of a cluster state holds every topic, opens on this broker only the
    // partitions it has a replica of, carries leader, epoch, ISR and CAS version, takes
    // min.insync.replicas from the topic over the default, and lists the live brokers.
    #[test]
    fn table_reflects_the_cluster_state() {
        let state = two_broker_state();
        let table = table_from_cluster(&state, 1, 2, 1);
        assert_eq!(table.version(), 42);
        assert_eq!(table.topic_id("t"), Some(uuid::Uuid::from_u128(9)));
        assert!(table.owner("t", 0).is_some());
        assert_eq!(
            table.owner("t", 1),
            None,
            "broker 1 holds no replica of t-1"
        );
        assert!(table.has_partition("t", 1));
        let assignment = table.topic("t").unwrap();
        let info = assignment.replica_info(0).unwrap();
        assert_eq!((info.leader, info.leader_epoch, info.version), (1, 4, 40));
        assert_eq!(info.isr, vec![1, 2]);
        assert_eq!(info.min_insync_replicas, 2);
        assert_eq!(
            info.broker_epochs,
            vec![(1, 31), (2, 32)],
            "3 is not registered"
        );
        assert!(info.adding.is_empty(), "no reassignment: nothing is added");
        assert_eq!(assignment.replica_info(1).unwrap().leader, NO_LEADER);
        let cluster = table.cluster().unwrap();
        assert_eq!(cluster.node_id, 1);
        assert_eq!(cluster.brokers.len(), 2);
        assert_eq!(cluster.brokers[&2].broker_epoch, 32);
        assert_eq!(cluster.controller_id, NO_LEADER);
    }

    // Proves a reassignment's target replicas outside the assignment join the replica set and
    // are named as being added (the ones the reassignment throttle applies to).
    #[test]
    fn table_names_the_replicas_a_reassignment_adds() {
        let mut state = two_broker_state();
        state.reassignments.entry("t".into()).or_default().insert(
            0,
            crate::cluster::ReassignmentEntry {
                record: crate::cluster::ReassignmentRecord { target: vec![3, 2] },
                mod_revision: 43,
            },
        );
        let table = table_from_cluster(&state, 1, 2, 1);
        let info = table.topic("t").unwrap().replica_info(0).unwrap();
        assert_eq!(
            info.replicas,
            vec![1, 2, 3],
            "the target's new replica follows"
        );
        assert_eq!(
            info.adding,
            vec![3],
            "only the replica outside the assignment is added"
        );
    }

    // Proves a broker never takes a leadership the state records under another of its broker
    // epochs (it restarted, perhaps with an empty disk, before the controller failed the
    // partition over) nor one recorded under none, while other brokers still see it as leader
    // (they follow nobody else until the controller decides).
    #[test]
    fn leadership_is_taken_only_under_the_recorded_broker_epoch() {
        let mut state = ClusterState::new("c");
        state.topics.insert(
            "t".into(),
            TopicAssignment {
                name: "t".into(),
                topic_id: uuid::Uuid::from_u128(9),
                partitions: 1,
                replication_factor: 2,
                configs: Default::default(),
                assignment: vec![vec![1, 2]],
            },
        );
        let partition = |isr_epochs: &[(i32, i64)]| PartitionEntry {
            state: PartitionState {
                leader: 1,
                leader_epoch: 4,
                isr: vec![1, 2],
                controller_epoch: 0,
                isr_epochs: isr_epochs.iter().copied().collect(),
            },
            mod_revision: 40,
        };
        let leader_seen_by = |state: &ClusterState, node_id: i32| {
            let table = table_from_cluster(state, node_id, 1, 1);
            table.topic("t").unwrap().replica_info(0).unwrap().leader
        };
        state.broker_epochs = [(1, 31), (2, 32)].into();
        for (recorded, leads) in [
            (vec![(1, 31), (2, 32)], true),
            (vec![(1, 17), (2, 32)], false),
            (vec![(2, 32)], false),
        ] {
            state
                .partitions
                .entry("t".into())
                .or_default()
                .insert(0, partition(&recorded));
            let expected = if leads { 1 } else { NO_LEADER };
            assert_eq!(leader_seen_by(&state, 1), expected, "recorded {recorded:?}");
            assert_eq!(
                leader_seen_by(&state, 2),
                1,
                "the other broker's view is the state's"
            );
        }
        state.broker_epochs.remove(&1);
        state
            .partitions
            .entry("t".into())
            .or_default()
            .insert(0, partition(&[(1, 31)]));
        assert_eq!(
            leader_seen_by(&state, 1),
            NO_LEADER,
            "not registered: no leadership"
        );
    }
}
