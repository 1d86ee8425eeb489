//! The controller's decisions, free of I/O: given the cluster state and the live brokers, which
//! partition states must change. The session feeds it after every change it sees and writes the
//! result with compare-and-swap; a lost race is simply decided again on the next event, so the
//! decisions must be (and are) idempotent.
//!
//! Rules (DESIGN.md sections 5 and 6, Kafka's clean election, KIP-903 broker epochs):
//! - A member is *restarted* when it is live but registered with another broker epoch than the
//!   one the partition state recorded when it joined the ISR (or none was recorded): it may
//!   have come back with an empty or truncated log, so it holds nothing the ISR promises until
//!   it catches up again. A broker leads only under the epoch recorded for it (see
//!   `replication::table`), so a leader that restarted never serves its old leadership.
//! - A partition whose leader is live (and not restarted) is left alone, except that restarted
//!   members leave its ISR (shrinking it for a lagging or dead follower is the leader's job,
//!   through `update_isr`; the leader adds them back once they caught up).
//! - A partition whose leader is dead (or restarted) gets the first replica, in assignment
//!   order, that is live, not restarted AND in the ISR; its leader epoch goes up by one and its
//!   ISR keeps only such members.
//! - If no replica qualifies, the leader becomes [`NO_LEADER`] (epoch + 1, so the old leader is
//!   fenced) and the ISR keeps every member but the restarted ones (all of them when only
//!   restarted ones are left): they are the only replicas known to hold every committed record,
//!   so the first of them to return becomes leader again (recording its new broker epoch).
//! - A replica outside the ISR is never elected.
//! - A topic partition with no state (its creator died between writes) gets the initial one.

use std::collections::{BTreeMap, BTreeSet};

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
    /// ISR members registered anew since they joined (restarted) leave the ISR.
    Restarted,
    /// The partition had no state; this is its initial one.
    Missing,
    /// Leadership moves back to the preferred replica (the first of the assignment), which is
    /// live and in the ISR (`preferred`).
    Preferred {
        /// The leader it moves from.
        from: i32,
    },
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
    /// The new leader and the broker epoch it was elected with, when the change elects one:
    /// the write must find it still registered with that epoch.
    pub elected: Option<(i32, i64)>,
    /// The state to write.
    pub next: PartitionState,
    /// Why.
    pub reason: ChangeReason,
}

/// The broker epochs of the live brokers a decision is made on.
type Epochs<'a> = &'a BTreeMap<i32, i64>;

/// Decides every partition change needed now that the live brokers are `live`; the written
/// states carry `controller_epoch`. Returns nothing when the state already agrees.
pub fn on_broker_change(
    state: &ClusterState,
    live: &BTreeSet<i32>,
    controller_epoch: i64,
) -> Vec<PartitionChange> {
    let epochs = &state.broker_epochs;
    let mut changes = Vec::new();
    for (topic, assignment) in &state.topics {
        let topic_create_revision = state.topic_revisions.get(topic).copied().unwrap_or(0);
        for index in 0..assignment.assignment.len() {
            let Ok(partition) = i32::try_from(index) else {
                break;
            };
            // With a reassignment in progress, the replicas being added are candidates too.
            let replicas = &state.replicas(topic, partition);
            let decided = match state.partition(topic, partition) {
                Some(entry) => elect(&entry.state, replicas, live, epochs, controller_epoch)
                    .map(|(next, reason)| (entry.mod_revision, next, reason)),
                None => Some(initial(replicas, live, epochs, controller_epoch)),
            };
            if let Some((expected_mod_revision, next, reason)) = decided {
                let elected = matches!(
                    reason,
                    ChangeReason::Failover { .. } | ChangeReason::Returned | ChangeReason::Missing
                )
                .then(|| epochs.get(&next.leader).map(|epoch| (next.leader, *epoch)))
                .flatten();
                changes.push(PartitionChange {
                    topic: topic.clone(),
                    partition,
                    expected_mod_revision,
                    topic_create_revision,
                    elected,
                    next,
                    reason,
                });
            }
        }
    }
    changes
}

/// The state a new partition starts with: replica 0 leads, every replica is in the ISR, each
/// with the broker epoch it is registered with in `epochs` (when it is).
pub fn initial_state(
    replicas: &[i32],
    controller_epoch: i64,
    epochs: &BTreeMap<i32, i64>,
) -> PartitionState {
    PartitionState {
        leader: replicas.first().copied().unwrap_or(NO_LEADER),
        leader_epoch: 0,
        isr: replicas.to_vec(),
        controller_epoch,
        isr_epochs: recorded_epochs(replicas, epochs),
    }
}

/// The registration epochs in `epochs` of `members` (those registered).
fn recorded_epochs(members: &[i32], epochs: Epochs<'_>) -> BTreeMap<i32, i64> {
    members
        .iter()
        .filter_map(|member| epochs.get(member).map(|epoch| (*member, *epoch)))
        .collect()
}

fn initial(
    replicas: &[i32],
    live: &BTreeSet<i32>,
    epochs: Epochs<'_>,
    controller_epoch: i64,
) -> (i64, PartitionState, ChangeReason) {
    let start = initial_state(replicas, controller_epoch, epochs);
    let next =
        elect(&start, replicas, live, epochs, controller_epoch).map_or(start, |(next, _)| next);
    (0, next, ChangeReason::Missing)
}

/// Whether ISR member `member` of `current` is live but registered with another broker epoch
/// than the one recorded when it joined, or with none recorded (it joined while unregistered,
/// or the state predates broker epochs): nothing shows it holds what the ISR promises.
pub(crate) fn is_restarted(
    current: &PartitionState,
    member: i32,
    live: &BTreeSet<i32>,
    epochs: Epochs<'_>,
) -> bool {
    live.contains(&member)
        && epochs
            .get(&member)
            .is_some_and(|now| current.isr_epochs.get(&member) != Some(now))
}

/// The election for one partition, or `None` when nothing changes.
fn elect(
    current: &PartitionState,
    replicas: &[i32],
    live: &BTreeSet<i32>,
    epochs: Epochs<'_>,
    controller_epoch: i64,
) -> Option<(PartitionState, ChangeReason)> {
    let restarted = |member: i32| is_restarted(current, member, live, epochs);
    let leader_serves =
        current.leader != NO_LEADER && live.contains(&current.leader) && !restarted(current.leader);
    if leader_serves {
        return drop_restarted(current, &restarted, controller_epoch);
    }
    if current.leader == NO_LEADER {
        return return_from_offline(current, replicas, live, epochs, controller_epoch);
    }
    let fresh = |member: i32| live.contains(&member) && !restarted(member);
    let candidate = replicas
        .iter()
        .copied()
        .find(|replica| fresh(*replica) && current.isr.contains(replica));
    let leader_epoch = current.leader_epoch.saturating_add(1);
    let from = current.leader;
    match candidate {
        Some(leader) => {
            let isr: Vec<i32> = current.isr.iter().copied().filter(|m| fresh(*m)).collect();
            let next = PartitionState {
                leader,
                leader_epoch,
                isr_epochs: kept_epochs(current, &isr),
                isr,
                controller_epoch,
            };
            Some((next, ChangeReason::Failover { from }))
        }
        None => {
            let mut isr: Vec<i32> = current
                .isr
                .iter()
                .copied()
                .filter(|m| !restarted(*m))
                .collect();
            if isr.is_empty() {
                isr = current.isr.clone();
            }
            let next = PartitionState {
                leader: NO_LEADER,
                leader_epoch,
                isr_epochs: kept_epochs(current, &isr),
                isr,
                controller_epoch,
            };
            Some((next, ChangeReason::Offline { from }))
        }
    }
}

/// A live leader's partition: restarted members leave the ISR (leader epoch unchanged).
fn drop_restarted(
    current: &PartitionState,
    restarted: &impl Fn(i32) -> bool,
    controller_epoch: i64,
) -> Option<(PartitionState, ChangeReason)> {
    let leader = current.leader;
    if !current.isr.iter().any(|m| *m != leader && restarted(*m)) {
        return None;
    }
    let isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|m| *m == leader || !restarted(*m))
        .collect();
    let next = PartitionState {
        isr_epochs: kept_epochs(current, &isr),
        isr,
        controller_epoch,
        ..current.clone()
    };
    Some((next, ChangeReason::Restarted))
}

/// An offline partition: the first ISR member that is live again leads it, and every live ISR
/// member is recorded with the epoch it returned with.
fn return_from_offline(
    current: &PartitionState,
    replicas: &[i32],
    live: &BTreeSet<i32>,
    epochs: Epochs<'_>,
    controller_epoch: i64,
) -> Option<(PartitionState, ChangeReason)> {
    let leader = replicas
        .iter()
        .copied()
        .find(|replica| live.contains(replica) && current.isr.contains(replica))?;
    let isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|member| live.contains(member))
        .collect();
    let mut isr_epochs = kept_epochs(current, &isr);
    isr_epochs.extend(recorded_epochs(&isr, epochs));
    let next = PartitionState {
        leader,
        leader_epoch: current.leader_epoch.saturating_add(1),
        isr,
        controller_epoch,
        isr_epochs,
    };
    Some((next, ChangeReason::Returned))
}

/// The recorded epochs of `current` for the members of `isr`.
fn kept_epochs(current: &PartitionState, isr: &[i32]) -> BTreeMap<i32, i64> {
    current
        .isr_epochs
        .iter()
        .filter(|(member, _)| isr.contains(member))
        .map(|(member, epoch)| (*member, *epoch))
        .collect()
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
                topic_id: uuid::Uuid::nil(),
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
            isr_epochs: BTreeMap::new(),
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
                controller_epoch: 9,
                isr_epochs: BTreeMap::new()
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
                controller_epoch: 7,
                isr_epochs: BTreeMap::new()
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
        assert_eq!(
            changes[0].next,
            initial_state(&[0, 1, 2], 2, &BTreeMap::new())
        );
        assert_eq!(changes[0].expected_mod_revision, 0);
        assert_eq!(changes[0].reason, ChangeReason::Missing);
        let changes = on_broker_change(&state, &live(&[1, 2]), 2);
        assert_eq!(changes[0].next.leader, 1);
        assert_eq!(changes[0].next.isr, vec![1, 2]);
    }

    /// `state` with brokers registered at `epochs`.
    fn registered(mut state: ClusterState, epochs: &[(i32, i64)]) -> ClusterState {
        state.broker_epochs = epochs.iter().copied().collect();
        state
    }

    fn joined(mut partition: PartitionState, epochs: &[(i32, i64)]) -> PartitionState {
        partition.isr_epochs = epochs.iter().copied().collect();
        partition
    }

    // Proves KIP-903's rule with a live leader: an ISR member registered with another broker
    // epoch than the one it joined with (it restarted, maybe with an empty log) leaves the ISR,
    // with the leader epoch unchanged; a member that kept its epoch stays, and one whose epoch
    // was never recorded (it joined unregistered, or an older state) leaves as well: nothing
    // shows it holds the ISR's records.
    #[test]
    fn restarted_members_leave_the_isr() {
        let all_in = joined(partition(0, 4, &[0, 1, 2]), &[(0, 10), (1, 11), (2, 12)]);
        let state = registered(cluster(&[0, 1, 2], all_in), &[(0, 10), (1, 21), (2, 12)]);
        let changes = on_broker_change(&state, &live(&[0, 1, 2]), 9);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].reason, ChangeReason::Restarted);
        assert_eq!(changes[0].next.leader, 0);
        assert_eq!(changes[0].next.leader_epoch, 4);
        assert_eq!(changes[0].next.isr, vec![0, 2]);
        assert_eq!(changes[0].next.isr_epochs, [(0, 10), (2, 12)].into());
        assert_eq!(changes[0].elected, None);
        let unrecorded = registered(
            cluster(
                &[0, 1, 2],
                joined(partition(0, 4, &[0, 1, 2]), &[(0, 10), (2, 12)]),
            ),
            &[(0, 10), (1, 21), (2, 12)],
        );
        let changes = on_broker_change(&unrecorded, &live(&[0, 1, 2]), 9);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].reason, ChangeReason::Restarted);
        assert_eq!(changes[0].next.isr, vec![0, 2]);
    }

    // Proves a restarted member is never elected: with the leader dead, the first live ISR
    // member in assignment order that kept its epoch leads (and the write is bound to that
    // epoch); with only restarted members left the partition goes offline without them, and
    // with nothing else left it keeps them so the first to come back leads.
    #[test]
    fn restarted_members_are_not_elected() {
        let all_in = joined(partition(0, 4, &[0, 1, 2]), &[(0, 10), (1, 11), (2, 12)]);
        let state = registered(cluster(&[0, 1, 2], all_in.clone()), &[(1, 21), (2, 12)]);
        let changes = on_broker_change(&state, &live(&[1, 2]), 9);
        assert_eq!(changes[0].next.leader, 2);
        assert_eq!(changes[0].next.isr, vec![2]);
        assert_eq!(changes[0].elected, Some((2, 12)));
        let state = registered(cluster(&[0, 1, 2], all_in), &[(1, 21)]);
        let changes = on_broker_change(&state, &live(&[1]), 9);
        assert_eq!(changes[0].next.leader, NO_LEADER);
        assert_eq!(
            changes[0].next.isr,
            vec![0, 2],
            "the restarted member is dropped"
        );
        let alone = joined(partition_alone(), &[(1, 11)]);
        let state = registered(cluster(&[0, 1, 2], alone), &[(1, 21)]);
        let changes = on_broker_change(&state, &live(&[1]), 9);
        assert_eq!(changes[0].next.leader, NO_LEADER);
        assert_eq!(changes[0].next.isr, vec![1], "the last holder is kept");
        let offline = registered(
            cluster(
                &[0, 1, 2],
                joined(partition(NO_LEADER, 6, &[1]), &[(1, 11)]),
            ),
            &[(1, 21)],
        );
        let changes = on_broker_change(&offline, &live(&[1]), 9);
        assert_eq!(changes[0].reason, ChangeReason::Returned);
        assert_eq!(changes[0].next.leader, 1);
        assert_eq!(changes[0].next.isr_epochs, [(1, 21)].into());
    }

    /// Partition 0 led by broker 1 alone (which is about to restart).
    fn partition_alone() -> PartitionState {
        partition(1, 3, &[1])
    }
}
