//! The controller's decisions, free of I/O: given the cluster state and the live brokers, which
//! partition states must change. The session feeds it after every change it sees and writes the
//! result with compare-and-swap; a lost race is simply decided again on the next event, so the
//! decisions must be (and are) idempotent.
//!
//! Rules (DESIGN.md sections 5 and 6, Kafka's clean election):
//! - A partition whose leader is live is left alone (shrinking the ISR for a lagging or dead
//!   follower is the leader's job, through `update_isr`).
//! - A partition whose leader is dead gets the first replica, in assignment order, that is live
//!   AND in the ISR; its leader epoch goes up by one and its ISR keeps only live members.
//! - If no replica qualifies, the leader becomes [`NO_LEADER`] (epoch + 1, so the old leader is
//!   fenced) and the ISR is kept as it was: its members are the only replicas known to hold
//!   every committed record, so the first of them to return becomes leader again.
//! - A replica outside the ISR is never elected.
//! - A topic partition with no state (its creator died between writes) gets the initial state.

use std::collections::BTreeSet;

use super::state::{ClusterState, PartitionState, NO_LEADER};

/// Why the controller changes a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeReason {
    /// The leader died and an ISR member takes over.
    Failover {
        /// The dead leader.
        from: i32,
    },
    /// The leader died and no ISR member is live: the partition is offline.
    Offline {
        /// The dead leader.
        from: i32,
    },
    /// An ISR member of an offline partition came back and leads it.
    Returned,
    /// The partition had no state; this is its initial one.
    Missing,
}

/// One partition state the controller wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionChange {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The mod_revision the write must find (0: the key must not exist).
    pub expected_mod_revision: i64,
    /// The create revision of the topic key the decision was made for, so a write never lands
    /// in a topic deleted (or deleted and recreated) meanwhile.
    pub topic_create_revision: i64,
    /// The state to write.
    pub next: PartitionState,
    /// Why.
    pub reason: ChangeReason,
}

/// Decides every partition change needed now that the live brokers are `live`; the written
/// states carry `controller_epoch`. Returns nothing when the state already agrees.
pub fn on_broker_change(
    state: &ClusterState,
    live: &BTreeSet<i32>,
    controller_epoch: i64,
) -> Vec<PartitionChange> {
    let mut changes = Vec::new();
    for (topic, assignment) in &state.topics {
        let topic_create_revision = state.topic_revisions.get(topic).copied().unwrap_or(0);
        for (index, replicas) in assignment.assignment.iter().enumerate() {
            let Ok(partition) = i32::try_from(index) else {
                break;
            };
            let decided = match state.partition(topic, partition) {
                Some(entry) => elect(&entry.state, replicas, live, controller_epoch)
                    .map(|(next, reason)| (entry.mod_revision, next, reason)),
                None => Some(initial(replicas, live, controller_epoch)),
            };
            if let Some((expected_mod_revision, next, reason)) = decided {
                changes.push(PartitionChange {
                    topic: topic.clone(),
                    partition,
                    expected_mod_revision,
                    topic_create_revision,
                    next,
                    reason,
                });
            }
        }
    }
    changes
}

/// The state a new partition starts with: replica 0 leads, every replica is in the ISR.
pub fn initial_state(replicas: &[i32], controller_epoch: i64) -> PartitionState {
    PartitionState {
        leader: replicas.first().copied().unwrap_or(NO_LEADER),
        leader_epoch: 0,
        isr: replicas.to_vec(),
        controller_epoch,
    }
}

fn initial(
    replicas: &[i32],
    live: &BTreeSet<i32>,
    controller_epoch: i64,
) -> (i64, PartitionState, ChangeReason) {
    let start = initial_state(replicas, controller_epoch);
    let next = elect(&start, replicas, live, controller_epoch).map_or(start, |(next, _)| next);
    (0, next, ChangeReason::Missing)
}

/// The election for one partition, or `None` when nothing changes.
fn elect(
    current: &PartitionState,
    replicas: &[i32],
    live: &BTreeSet<i32>,
    controller_epoch: i64,
) -> Option<(PartitionState, ChangeReason)> {
    if current.leader != NO_LEADER && live.contains(&current.leader) {
        return None;
    }
    let candidate = replicas
        .iter()
        .copied()
        .find(|replica| live.contains(replica) && current.isr.contains(replica));
    let leader_epoch = current.leader_epoch.saturating_add(1);
    match candidate {
        Some(leader) => {
            let isr = current
                .isr
                .iter()
                .copied()
                .filter(|member| live.contains(member))
                .collect();
            let reason = if current.leader == NO_LEADER {
                ChangeReason::Returned
            } else {
                ChangeReason::Failover {
                    from: current.leader,
                }
            };
            let next = PartitionState {
                leader,
                leader_epoch,
                isr,
                controller_epoch,
            };
            Some((next, reason))
        }
        None if current.leader != NO_LEADER => {
            let next = PartitionState {
                leader: NO_LEADER,
                leader_epoch,
                isr: current.isr.clone(),
                controller_epoch,
            };
            Some((
                next,
                ChangeReason::Offline {
                    from: current.leader,
                },
            ))
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::{PartitionEntry, TopicAssignment};

    /// A state with one topic "t" of one partition assigned to `replicas`, in `partition`.
    fn cluster(replicas: &[i32], partition: PartitionState) -> ClusterState {
        let mut state = ClusterState::new("c");
        state.topics.insert(
            "t".into(),
            TopicAssignment {
                name: "t".into(),
                partitions: 1,
                replication_factor: replicas.len() as i16,
                configs: Default::default(),
                assignment: vec![replicas.to_vec()],
            },
        );
        state.topic_revisions.insert("t".into(), 3);
        let entry = PartitionEntry {
            state: partition,
            mod_revision: 10,
        };
        state
            .partitions
            .entry("t".into())
            .or_default()
            .insert(0, entry);
        state
    }

    fn partition(leader: i32, leader_epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            leader,
            leader_epoch,
            isr: isr.to_vec(),
            controller_epoch: 1,
        }
    }

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    // Proves a dead leader is replaced by the next live ISR member in assignment order, with
    // the epoch bumped, the dead broker gone from the ISR, and the CAS revision carried.
    #[test]
    fn dead_leader_fails_over_to_next_isr_member() {
        let state = cluster(&[0, 1, 2], partition(0, 4, &[0, 1, 2]));
        let changes = on_broker_change(&state, &live(&[1, 2]), 9);
        assert_eq!(changes.len(), 1);
        let change = &changes[0];
        assert_eq!(
            change.next,
            PartitionState {
                leader: 1,
                leader_epoch: 5,
                isr: vec![1, 2],
                controller_epoch: 9
            }
        );
        assert_eq!(change.reason, ChangeReason::Failover { from: 0 });
        assert_eq!(change.expected_mod_revision, 10);
        assert_eq!(change.topic_create_revision, 3);
    }

    // Proves a live replica outside the ISR is skipped even when it comes first in the
    // assignment, and is not elected even when it is the only live replica.
    #[test]
    fn replica_outside_isr_is_never_elected() {
        let state = cluster(&[0, 1, 2], partition(0, 0, &[0, 2]));
        let changes = on_broker_change(&state, &live(&[1, 2]), 1);
        assert_eq!(changes[0].next.leader, 2);
        assert_eq!(changes[0].next.isr, vec![2]);
        let state = cluster(&[0, 1, 2], partition(0, 0, &[0, 2]));
        let changes = on_broker_change(&state, &live(&[1]), 1);
        assert_eq!(changes[0].next.leader, NO_LEADER);
        assert_ne!(changes[0].next.leader, 1);
    }

    // Proves that with every ISR member down the partition goes offline once (epoch bumped, ISR
    // kept so the data holders can return), and a second pass changes nothing.
    #[test]
    fn all_isr_down_goes_offline_once() {
        let state = cluster(&[0, 1, 2], partition(2, 3, &[2]));
        let changes = on_broker_change(&state, &live(&[0, 1]), 1);
        assert_eq!(changes[0].next, partition(NO_LEADER, 4, &[2]));
        assert_eq!(changes[0].reason, ChangeReason::Offline { from: 2 });
        let offline = cluster(&[0, 1, 2], partition(NO_LEADER, 4, &[2]));
        assert!(on_broker_change(&offline, &live(&[0, 1]), 1).is_empty());
        assert_eq!(offline.offline_partitions(), vec![("t".to_string(), 0)]);
    }

    // Proves an ISR member returning to an offline partition becomes leader with a new epoch.
    #[test]
    fn returning_isr_member_leads_again() {
        let state = cluster(&[0, 1, 2], partition(NO_LEADER, 4, &[2, 0]));
        let changes = on_broker_change(&state, &live(&[0, 1]), 7);
        assert_eq!(
            changes[0].next,
            PartitionState {
                leader: 0,
                leader_epoch: 5,
                isr: vec![0],
                controller_epoch: 7
            }
        );
        assert_eq!(changes[0].reason, ChangeReason::Returned);
    }

    // Proves a live leader is left alone even when followers die (ISR shrink is the leader's
    // job), so the controller does not fight the leader's own writes.
    #[test]
    fn live_leader_is_left_alone() {
        let state = cluster(&[0, 1, 2], partition(1, 2, &[0, 1, 2]));
        assert!(on_broker_change(&state, &live(&[1]), 1).is_empty());
    }

    // Proves a partition with no state gets the initial one (replica 0 leads, all in ISR, to
    // be created), and if replica 0 is down the next live replica leads instead.
    #[test]
    fn missing_partition_state_is_filled_in() {
        let mut state = cluster(&[0, 1, 2], partition(0, 0, &[0, 1, 2]));
        state.partitions.clear();
        let changes = on_broker_change(&state, &live(&[0, 1, 2]), 2);
        assert_eq!(changes[0].next, initial_state(&[0, 1, 2], 2));
        assert_eq!(changes[0].expected_mod_revision, 0);
        assert_eq!(changes[0].reason, ChangeReason::Missing);
        let changes = on_broker_change(&state, &live(&[1, 2]), 2);
        assert_eq!(changes[0].next.leader, 1);
        assert_eq!(changes[0].next.isr, vec![1, 2]);
    }
}
