//! Partition reassignment (Kafka's KIP-455), the decisions free of I/O.
//!
//! What a user relies on:
//! - A reassignment of `topic`-`p` to a target replica list is one etcd key,
//!   `/sluice/<cluster>/reassignments/<topic>/<p>` ([`ReassignmentRecord`]), written next to the
//!   topic's assignment, which does not change until the move ends. While the key exists the
//!   partition's full replica set is the assignment followed by the target replicas not in it
//!   ([`ClusterState::replicas`]): the shard table gives the added replicas the follower role,
//!   they catch up from the leader, and the leader adds them to the ISR as it adds any caught-up
//!   follower.
//! - Once every target replica is in the ISR, the controller ends the move in ONE transaction
//!   ([`completions`]): if the leader is not a target replica, leadership moves to the first
//!   target replica that is live, not restarted since it joined the ISR (KIP-903) and in the ISR
//!   (leader epoch + 1); the ISR shrinks to the target replicas; the assignment becomes the
//!   target; the reassignment key goes. Replicas no longer in the assignment then close and
//!   delete their partition directory (the shard table no longer lists them).
//! - Every step is a compare-and-swap on revisions read and the controller's write is fenced by
//!   the controller key, so a controller or a moving replica killed at any step leaves etcd
//!   either before or after the step; the next controller decides again from etcd alone.
//! - A cancel ([`check_cancel`]) deletes the key and shrinks the ISR back to the original
//!   replicas (moving leadership back to one of them if a failover had put it on an added
//!   replica); the added replicas then delete their logs.
//! - A request is refused, changing nothing, for an unknown topic or partition, an empty or
//!   duplicate-holding target, a broker that is not registered, fewer target replicas than
//!   the topic's `min.insync.replicas`, a second reassignment of a partition already moving (cancel
//!   it first), and a cancel of a partition that is not moving.

use std::collections::BTreeMap;

use super::state::{ClusterState, PartitionState, ReassignmentRecord, TopicAssignment, NO_LEADER};
use super::{ClusterError, Refusal};

/// The topic config naming the fewest in-sync replicas an acks=all write needs.
const MIN_INSYNC_REPLICAS_CONFIG: &str = "min.insync.replicas";

/// What an operator asks of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassignRequest {
    /// Move the partition onto `target` (preferred leader first).
    Move {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The target replica list.
        target: Vec<i32>,
        /// `min.insync.replicas` of topics that do not set it.
        min_insync_replicas_default: usize,
    },
    /// Cancel the partition's reassignment in progress.
    Cancel {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
}

/// A reassignment request that passed every check: the key to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The create revision of the topic key the request was checked against.
    pub topic_create_revision: i64,
    /// The record to write (the key must not exist).
    pub record: ReassignmentRecord,
}

/// A cancel that passed every check: the key to delete and the partition state to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The reassignment key's mod_revision.
    pub reassignment_mod_revision: i64,
    /// The partition key's mod_revision.
    pub partition_mod_revision: i64,
    /// The leader elected back onto an original replica, with its broker epoch, if any.
    pub elected: Option<(i32, i64)>,
    /// The partition state with the ISR back on the original replicas.
    pub next: PartitionState,
}

/// The end of one reassignment, decided by the controller: one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The topic key's mod_revision the new assignment is based on.
    pub topic_mod_revision: i64,
    /// The reassignment key's mod_revision.
    pub reassignment_mod_revision: i64,
    /// The partition key's mod_revision.
    pub partition_mod_revision: i64,
    /// The new leader and its broker epoch when leadership moves.
    pub elected: Option<(i32, i64)>,
    /// The topic record with the partition's assignment set to the target.
    pub assignment: TopicAssignment,
    /// The partition state: leader on a target replica, ISR = the target replicas.
    pub next: PartitionState,
}

/// What a reassignment in progress looks like, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The full replica set now (assignment, then the replicas being added).
    pub replicas: Vec<i32>,
    /// The target replica list.
    pub target: Vec<i32>,
    /// Target replicas not in the assignment.
    pub adding: Vec<i32>,
    /// Assigned replicas not in the target.
    pub removing: Vec<i32>,
    /// Target replicas not in the ISR yet (the move ends when this is empty).
    pub catching_up: Vec<i32>,
    /// The current leader.
    pub leader: i32,
}

fn refused(topic: &str, partition: i32, kind: Refusal, reason: String) -> ClusterError {
    ClusterError::ReassignmentRefused {
        topic: topic.to_string(),
        partition,
        kind,
        reason,
    }
}

/// The `min.insync.replicas` of `topic`: its override, else `default`.
pub fn min_insync_replicas(topic: &TopicAssignment, default: usize) -> usize {
    topic
        .configs
        .get(MIN_INSYNC_REPLICAS_CONFIG)
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(default)
}

/// Checks a request to move `topic`-`partition` onto `target` against `state`. Returns
/// `Ok(None)` when the partition already has exactly that assignment and is not moving.
pub fn check_submit(
    state: &ClusterState,
    topic: &str,
    partition: i32,
    target: &[i32],
    min_insync_replicas_default: usize,
) -> Result<Option<Submit>, ClusterError> {
    let refuse = |reason: String| refused(topic, partition, Refusal::InvalidAssignment, reason);
    let assignment = state
        .topics
        .get(topic)
        .ok_or_else(|| ClusterError::UnknownTopic(topic.to_string()))?;
    let current = state.assigned_replicas(topic, partition).ok_or_else(|| {
        ClusterError::UnknownPartition {
            topic: topic.to_string(),
            partition,
        }
    })?;
    if target.is_empty() {
        return Err(refuse("the target replica list is empty".to_string()));
    }
    if let Some(duplicate) = target
        .iter()
        .enumerate()
        .find_map(|(index, id)| target[..index].contains(id).then_some(*id))
    {
        return Err(refuse(format!("broker {duplicate} is listed twice")));
    }
    if let Some(missing) = target.iter().find(|id| !state.brokers.contains_key(id)) {
        return Err(refuse(format!(
            "broker {missing} is not registered (live brokers: {:?})",
            state.live_brokers()
        )));
    }
    let min_insync = min_insync_replicas(assignment, min_insync_replicas_default);
    if target.len() < min_insync {
        return Err(refuse(format!(
            "{} replicas are fewer than the topic's min.insync.replicas ({min_insync})",
            target.len()
        )));
    }
    if let Some(entry) = state.reassignment(topic, partition) {
        return Err(refused(
            topic,
            partition,
            Refusal::InProgress,
            format!(
                "a reassignment to {:?} is in progress; cancel it first",
                entry.record.target
            ),
        ));
    }
    if current == target {
        return Ok(None);
    }
    Ok(Some(Submit {
        topic: topic.to_string(),
        partition,
        topic_create_revision: state.topic_revisions.get(topic).copied().unwrap_or(0),
        record: ReassignmentRecord {
            target: target.to_vec(),
        },
    }))
}

/// Whether `member` is live but registered with another broker epoch than the one `current`
/// recorded when it joined the ISR (it restarted since and may have lost its log).
fn restarted(state: &ClusterState, current: &PartitionState, member: i32) -> bool {
    current
        .isr_epochs
        .get(&member)
        .zip(state.broker_epoch(member))
        .is_some_and(|(joined, now)| *joined != now)
}

/// The first of `candidates` that can lead: live, in the ISR and not restarted.
fn leader_among(state: &ClusterState, current: &PartitionState, candidates: &[i32]) -> Option<i32> {
    candidates.iter().copied().find(|candidate| {
        state.brokers.contains_key(candidate)
            && current.isr.contains(candidate)
            && !restarted(state, current, *candidate)
    })
}

/// `current` with its ISR cut to `replicas` (in their order) and, when the leader is not one
/// of them, leadership moved to `leader` (epoch + 1). `None` when no replica of `replicas`
/// can lead.
fn narrowed(
    state: &ClusterState,
    current: &PartitionState,
    replicas: &[i32],
    controller_epoch: i64,
) -> Option<(PartitionState, Option<(i32, i64)>)> {
    let (leader, leader_epoch, elected) =
        if current.leader == NO_LEADER || replicas.contains(&current.leader) {
            (current.leader, current.leader_epoch, None)
        } else {
            let leader = leader_among(state, current, replicas)?;
            let epoch = state.broker_epoch(leader)?;
            (
                leader,
                current.leader_epoch.saturating_add(1),
                Some((leader, epoch)),
            )
        };
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|replica| current.isr.contains(replica))
        .collect();
    let isr_epochs: BTreeMap<i32, i64> = current
        .isr_epochs
        .iter()
        .filter(|(member, _)| isr.contains(member))
        .map(|(member, epoch)| (*member, *epoch))
        .collect();
    if isr.is_empty() {
        // Nothing of `replicas` holds every committed record: they cannot take over.
        return None;
    }
    let next = PartitionState {
        leader,
        leader_epoch,
        isr,
        controller_epoch,
        isr_epochs,
    };
    Some((next, elected))
}

/// Checks a cancel of `topic`-`partition`'s reassignment: the partition goes back to its
/// assignment (the original replicas).
pub fn check_cancel(
    state: &ClusterState,
    topic: &str,
    partition: i32,
) -> Result<Cancel, ClusterError> {
    let refuse = |reason: String| refused(topic, partition, Refusal::Other, reason);
    let original = state.assigned_replicas(topic, partition).ok_or_else(|| {
        ClusterError::UnknownPartition {
            topic: topic.to_string(),
            partition,
        }
    })?;
    let entry = state.reassignment(topic, partition).ok_or_else(|| {
        refused(
            topic,
            partition,
            Refusal::NotInProgress,
            "no reassignment of this partition is in progress".to_string(),
        )
    })?;
    let current = state
        .partition(topic, partition)
        .ok_or_else(|| refuse("the partition has no state yet".to_string()))?;
    let (next, elected) = narrowed(
        state,
        &current.state,
        original,
        current.state.controller_epoch,
    )
    .ok_or_else(|| {
        refuse(format!(
            "no original replica {original:?} is live and in sync to lead again; retry when one is"
        ))
    })?;
    Ok(Cancel {
        topic: topic.to_string(),
        partition,
        reassignment_mod_revision: entry.mod_revision,
        partition_mod_revision: current.mod_revision,
        elected,
        next,
    })
}

/// Every reassignment the controller can end now: each whose target replicas are all in the
/// ISR of a led partition, and (when the leader is being removed) one of which can lead.
/// Idempotent: a completion that loses its compare-and-swap is decided again on the next event.
pub fn completions(state: &ClusterState, controller_epoch: i64) -> Vec<Completion> {
    let mut done = Vec::new();
    for (topic, entries) in &state.reassignments {
        for (partition, entry) in entries {
            if let Some(completion) =
                completion(state, topic, *partition, &entry.record, controller_epoch)
            {
                done.push(Completion {
                    reassignment_mod_revision: entry.mod_revision,
                    ..completion
                });
            }
        }
    }
    done
}

fn completion(
    state: &ClusterState,
    topic: &str,
    partition: i32,
    record: &ReassignmentRecord,
    controller_epoch: i64,
) -> Option<Completion> {
    let assignment = state.topics.get(topic)?;
    let index = usize::try_from(partition).ok()?;
    let current = state.partition(topic, partition)?;
    let target = &record.target;
    let caught_up = current.state.leader != NO_LEADER
        && !target.is_empty()
        && target
            .iter()
            .all(|replica| current.state.isr.contains(replica));
    if !caught_up {
        return None;
    }
    let (next, elected) = narrowed(state, &current.state, target, controller_epoch)?;
    let mut assignment = assignment.clone();
    *assignment.assignment.get_mut(index)? = target.clone();
    Some(Completion {
        topic: topic.to_string(),
        partition,
        topic_mod_revision: state.topic_mod_revisions.get(topic).copied().unwrap_or(0),
        reassignment_mod_revision: 0,
        partition_mod_revision: current.mod_revision,
        elected,
        assignment,
        next,
    })
}

/// Every reassignment in progress, in topic and partition order.
pub fn statuses(state: &ClusterState) -> Vec<ReassignmentStatus> {
    let mut list = Vec::new();
    for (topic, entries) in &state.reassignments {
        for (partition, entry) in entries {
            let Some(assigned) = state.assigned_replicas(topic, *partition) else {
                continue;
            };
            let target = entry.record.target.clone();
            let current = state.partition(topic, *partition);
            let isr = current
                .map(|entry| entry.state.isr.clone())
                .unwrap_or_default();
            list.push(ReassignmentStatus {
                topic: topic.clone(),
                partition: *partition,
                replicas: state.replicas(topic, *partition),
                adding: target
                    .iter()
                    .copied()
                    .filter(|r| !assigned.contains(r))
                    .collect(),
                removing: assigned
                    .iter()
                    .copied()
                    .filter(|r| !target.contains(r))
                    .collect(),
                catching_up: target
                    .iter()
                    .copied()
                    .filter(|r| !isr.contains(r))
                    .collect(),
                leader: current.map_or(NO_LEADER, |entry| entry.state.leader),
                target,
            });
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::{BrokerInfo, PartitionEntry, ReassignmentEntry};

    fn broker(id: i32) -> BrokerInfo {
        BrokerInfo {
            id,
            host: "127.0.0.1".into(),
            native_port: 1,
            shard_ports: vec![2],
            admin_addr: None,
            kafka_port: None,
        }
    }

    /// Brokers `live` registered at epoch 100 + id; topic "t" with partition 0 on `replicas`,
    /// led by `leader` with ISR `isr` (all joined at their current epochs).
    fn cluster(live: &[i32], replicas: &[i32], leader: i32, isr: &[i32]) -> ClusterState {
        let mut state = ClusterState::new("c");
        for id in live {
            state.brokers.insert(*id, broker(*id));
            state.broker_epochs.insert(*id, 100 + i64::from(*id));
        }
        state.topics.insert(
            "t".into(),
            TopicAssignment {
                name: "t".into(),
                topic_id: uuid::Uuid::nil(),
                partitions: 1,
                replication_factor: replicas.len() as i16,
                configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
                assignment: vec![replicas.to_vec()],
            },
        );
        state.topic_revisions.insert("t".into(), 3);
        state.topic_mod_revisions.insert("t".into(), 4);
        let partition = PartitionState {
            leader,
            leader_epoch: 5,
            isr: isr.to_vec(),
            controller_epoch: 1,
            isr_epochs: isr.iter().map(|id| (*id, 100 + i64::from(*id))).collect(),
        };
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

    fn moving(mut state: ClusterState, target: &[i32]) -> ClusterState {
        let entry = ReassignmentEntry {
            record: ReassignmentRecord {
                target: target.to_vec(),
            },
            mod_revision: 20,
        };
        state
            .reassignments
            .entry("t".into())
            .or_default()
            .insert(0, entry);
        state
    }

    // Proves a valid request becomes the key to write, the same assignment is a no-op, and
    // every bad input is refused with a reason naming the problem.
    #[test]
    fn submit_checks_every_rule() {
        let state = cluster(&[1, 2, 3, 4], &[1, 2], 1, &[1, 2]);
        let submit = check_submit(&state, "t", 0, &[3, 4], 1).unwrap().unwrap();
        assert_eq!(submit.record.target, vec![3, 4]);
        assert_eq!(submit.topic_create_revision, 3);
        assert_eq!(check_submit(&state, "t", 0, &[1, 2], 1).unwrap(), None);
        let reason = |target: &[i32]| {
            check_submit(&state, "t", 0, target, 1)
                .unwrap_err()
                .to_string()
        };
        assert!(
            reason(&[3, 9]).contains("broker 9 is not registered"),
            "{}",
            reason(&[3, 9])
        );
        assert!(reason(&[3, 3]).contains("listed twice"));
        assert!(reason(&[3]).contains("min.insync.replicas (2)"));
        assert!(reason(&[]).contains("empty"));
        for target in [&[3, 9][..], &[3, 3], &[3], &[]] {
            assert_eq!(
                refusal(check_submit(&state, "t", 0, target, 1)),
                Some(Refusal::InvalidAssignment),
                "{target:?}"
            );
        }
        assert!(matches!(
            check_submit(&state, "u", 0, &[1, 2], 1),
            Err(ClusterError::UnknownTopic(_))
        ));
        assert!(matches!(
            check_submit(&state, "t", 1, &[1, 2], 1),
            Err(ClusterError::UnknownPartition { .. })
        ));
        let busy = moving(state, &[3, 4]);
        assert!(check_submit(&busy, "t", 0, &[2, 3], 1)
            .unwrap_err()
            .to_string()
            .contains("in progress"));
        assert_eq!(
            refusal(check_submit(&busy, "t", 0, &[2, 3], 1)),
            Some(Refusal::InProgress)
        );
    }

    /// The kind of a refusal, `None` for success or any other error.
    fn refusal<T>(outcome: Result<T, ClusterError>) -> Option<Refusal> {
        match outcome {
            Err(ClusterError::ReassignmentRefused { kind, .. }) => Some(kind),
            _ => None,
        }
    }

    // Proves the full replica set during a move is the assignment then the added replicas,
    // and the status lists what is added, removed and still catching up.
    #[test]
    fn replicas_during_a_move_are_the_union() {
        let state = moving(cluster(&[1, 2, 3], &[1, 2], 1, &[1, 2]), &[2, 3]);
        assert_eq!(state.replicas("t", 0), vec![1, 2, 3]);
        let status = &statuses(&state)[0];
        assert_eq!(status.adding, vec![3]);
        assert_eq!(status.removing, vec![1]);
        assert_eq!(status.catching_up, vec![3]);
        assert_eq!(status.leader, 1);
    }

    // Proves nothing completes while a target replica is outside the ISR or the partition is
    // offline, and once all are in, leadership moves to the first target replica (epoch + 1),
    // the ISR and the assignment become the target, all in one decision.
    #[test]
    fn completes_once_every_target_replica_is_in_sync() {
        let waiting = moving(cluster(&[1, 2, 3, 4], &[1, 2], 1, &[1, 2, 3]), &[3, 4]);
        assert!(completions(&waiting, 7).is_empty());
        let offline = moving(
            cluster(&[1, 2, 3, 4], &[1, 2], NO_LEADER, &[1, 2, 3, 4]),
            &[3, 4],
        );
        assert!(completions(&offline, 7).is_empty());
        let ready = moving(cluster(&[1, 2, 3, 4], &[1, 2], 1, &[1, 2, 3, 4]), &[3, 4]);
        let done = completions(&ready, 7);
        assert_eq!(done.len(), 1);
        let done = &done[0];
        assert_eq!(done.next.leader, 3);
        assert_eq!(done.next.leader_epoch, 6);
        assert_eq!(done.next.isr, vec![3, 4]);
        assert_eq!(done.next.controller_epoch, 7);
        assert_eq!(done.next.isr_epochs, [(3, 103), (4, 104)].into());
        assert_eq!(done.elected, Some((3, 103)));
        assert_eq!(done.assignment.assignment, vec![vec![3, 4]]);
        assert_eq!(
            (
                done.topic_mod_revision,
                done.reassignment_mod_revision,
                done.partition_mod_revision
            ),
            (4, 20, 10)
        );
    }

    // Proves a leader that stays keeps its epoch (no needless failover), and a target replica
    // that restarted since joining the ISR, or is dead, is never made leader.
    #[test]
    fn leadership_moves_only_when_needed_and_never_to_a_restarted_replica() {
        let staying = moving(cluster(&[1, 2, 3], &[1, 2], 2, &[1, 2, 3]), &[2, 3]);
        let done = &completions(&staying, 7)[0];
        assert_eq!((done.next.leader, done.next.leader_epoch), (2, 5));
        assert_eq!(done.elected, None);
        assert_eq!(done.next.isr, vec![2, 3]);
        let mut restarted = moving(cluster(&[1, 2, 3, 4], &[1, 2], 1, &[1, 2, 3, 4]), &[3, 4]);
        restarted.broker_epochs.insert(3, 999);
        assert_eq!(completions(&restarted, 7)[0].next.leader, 4);
        let mut dead = moving(cluster(&[1, 2, 3, 4], &[1, 2], 1, &[1, 2, 3, 4]), &[3, 4]);
        dead.brokers.remove(&3);
        dead.broker_epochs.remove(&3);
        assert_eq!(completions(&dead, 7)[0].next.leader, 4);
        dead.brokers.remove(&4);
        dead.broker_epochs.remove(&4);
        assert!(
            completions(&dead, 7).is_empty(),
            "no target replica can lead"
        );
    }

    // Proves a cancel brings the ISR back to the original replicas, moves leadership back when
    // a failover had put it on an added replica, and a cancel of nothing is refused.
    #[test]
    fn cancel_returns_to_the_original_replicas() {
        let state = moving(cluster(&[1, 2, 3], &[1, 2], 1, &[1, 2, 3]), &[2, 3]);
        let cancel = check_cancel(&state, "t", 0).unwrap();
        assert_eq!(cancel.next.isr, vec![1, 2]);
        assert_eq!((cancel.next.leader, cancel.next.leader_epoch), (1, 5));
        assert_eq!(
            (
                cancel.reassignment_mod_revision,
                cancel.partition_mod_revision
            ),
            (20, 10)
        );
        let failed_over = moving(cluster(&[2, 3], &[1, 2], 3, &[2, 3]), &[2, 3]);
        let cancel = check_cancel(&failed_over, "t", 0).unwrap();
        assert_eq!((cancel.next.leader, cancel.next.leader_epoch), (2, 6));
        assert_eq!(cancel.elected, Some((2, 102)));
        let still = cluster(&[1, 2, 3], &[1, 2], 1, &[1, 2]);
        assert!(check_cancel(&still, "t", 0)
            .unwrap_err()
            .to_string()
            .contains("no reassignment"));
        assert_eq!(
            refusal(check_cancel(&still, "t", 0)),
            Some(Refusal::NotInProgress)
        );
        assert!(matches!(
            check_cancel(&still, "t", 1),
            Err(ClusterError::UnknownPartition { .. })
        ));
    }
}
