//! Preferred leader election, free of I/O: the first replica of each assignment is the
//! partition's *preferred leader* (placement spreads the first replicas evenly, so leading from
//! them spreads leadership evenly); after a failover leadership piles up on the survivors, and
//! these decisions move it back.
//!
//! Rules (Kafka's preferred election and `auto.leader.rebalance`, with KIP-903 broker epochs):
//! - A partition moves to its preferred replica only when that replica is live, has not
//!   restarted since it joined the ISR (see `controller`), and is in the ISR: it then holds
//!   every committed record. The leader epoch goes up by one; the ISR is unchanged.
//! - A partition with no leader is the failover path's business, never this one's.
//! - The automatic rebalance follows Kafka's per-broker rule: for each broker, the imbalance is
//!   the partitions preferring it but led by another, over the partitions preferring it; above
//!   `leader_imbalance_per_broker_percentage`, every such partition that can move does.
//! - A replica outside the ISR is never elected.

use std::collections::{BTreeMap, BTreeSet};

use super::controller::{is_restarted, ChangeReason, PartitionChange};
use super::state::{ClusterState, PartitionEntry, NO_LEADER};

/// Percent, for the per-broker imbalance ratio.
const PERCENT: u64 = 100;

/// What a preferred election of one partition comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreferredOutcome {
    /// Leadership moves to the preferred replica with this change.
    Elect(PartitionChange),
    /// The preferred replica leads already (Kafka's ELECTION_NOT_NEEDED).
    AlreadyPreferred,
    /// The preferred replica is dead, restarted or outside the ISR, or the partition has no
    /// state or no leader (Kafka's PREFERRED_LEADER_NOT_AVAILABLE).
    NotAvailable {
        /// Why, for the operator.
        reason: &'static str,
    },
}

/// One partition's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferredDecision {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The preferred replica (`NO_LEADER` when the assignment is empty).
    pub preferred: i32,
    /// What to do.
    pub outcome: PreferredOutcome,
}

/// Per broker: partitions that prefer it, and how many of those another broker leads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerImbalance {
    /// Partitions whose preferred replica is this broker.
    pub preferring: u64,
    /// Of those, partitions led by another broker (or by none).
    pub led_elsewhere: u64,
}

impl BrokerImbalance {
    /// Whether `led_elsewhere / preferring` is above `percentage` percent.
    pub fn above(&self, percentage: u32) -> bool {
        self.preferring > 0
            && self.led_elsewhere * PERCENT > self.preferring * u64::from(percentage)
    }
}

/// What an on-demand election answers for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionOutcome {
    /// The preferred replica leads now.
    Elected {
        /// The new leader.
        leader: i32,
    },
    /// The preferred replica led already.
    AlreadyPreferred,
    /// The preferred replica cannot lead now.
    NotAvailable {
        /// Why.
        reason: String,
    },
}

/// One partition's answer to an on-demand election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionElection {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// What happened.
    pub outcome: ElectionOutcome,
}

/// The preferred election of `topic`-`partition` in `state` with the brokers in `live`; the
/// written state carries `controller_epoch`.
pub fn decide(
    state: &ClusterState,
    live: &BTreeSet<i32>,
    controller_epoch: i64,
    topic: &str,
    partition: i32,
) -> PreferredDecision {
    let replicas = state
        .topics
        .get(topic)
        .and_then(|assignment| assignment.assignment.get(usize::try_from(partition).ok()?));
    let preferred = replicas
        .and_then(|replicas| replicas.first().copied())
        .unwrap_or(NO_LEADER);
    let outcome = match state.partition(topic, partition) {
        None => PreferredOutcome::NotAvailable {
            reason: "the partition has no state yet",
        },
        Some(entry) => outcome(state, live, controller_epoch, (topic, partition), entry),
    };
    PreferredDecision {
        topic: topic.to_string(),
        partition,
        preferred,
        outcome,
    }
}

fn outcome(
    state: &ClusterState,
    live: &BTreeSet<i32>,
    controller_epoch: i64,
    (topic, partition): (&str, i32),
    entry: &PartitionEntry,
) -> PreferredOutcome {
    let current = &entry.state;
    let preferred = state
        .topics
        .get(topic)
        .and_then(|assignment| assignment.assignment.get(usize::try_from(partition).ok()?))
        .and_then(|replicas| replicas.first().copied());
    let not = |reason| PreferredOutcome::NotAvailable { reason };
    let Some(preferred) = preferred else {
        return not("the partition has no replicas");
    };
    if current.leader == preferred {
        return PreferredOutcome::AlreadyPreferred;
    }
    if current.leader == NO_LEADER {
        return not("the partition is offline; it fails over when an ISR member returns");
    }
    if !live.contains(&preferred) {
        return not("the preferred replica is not live");
    }
    if !current.isr.contains(&preferred) {
        return not("the preferred replica is not in the ISR");
    }
    let epochs = &state.broker_epochs;
    if is_restarted(current, preferred, live, epochs) {
        return not("the preferred replica restarted since it joined the ISR");
    }
    let Some(epoch) = epochs.get(&preferred).copied() else {
        return not("the preferred replica is not registered");
    };
    let mut next = current.clone();
    next.leader = preferred;
    next.leader_epoch = current.leader_epoch.saturating_add(1);
    next.controller_epoch = controller_epoch;
    PreferredOutcome::Elect(PartitionChange {
        topic: topic.to_string(),
        partition,
        expected_mod_revision: entry.mod_revision,
        topic_create_revision: state.topic_revisions.get(topic).copied().unwrap_or(0),
        elected: Some((preferred, epoch)),
        next,
        reason: ChangeReason::Preferred {
            from: current.leader,
        },
    })
}

/// The preferred election of every partition (of `topic` only, when given), in topic and
/// partition order.
pub fn decide_all(
    state: &ClusterState,
    live: &BTreeSet<i32>,
    controller_epoch: i64,
    topic: Option<&str>,
) -> Vec<PreferredDecision> {
    state
        .topics
        .iter()
        .filter(|(name, _)| topic.is_none_or(|wanted| wanted == name.as_str()))
        .flat_map(|(name, assignment)| {
            (0..assignment.assignment.len()).filter_map(move |index| {
                let partition = i32::try_from(index).ok()?;
                Some(decide(state, live, controller_epoch, name, partition))
            })
        })
        .collect()
}

/// The per-broker imbalance of `state`: for every broker that is some partition's preferred
/// replica.
pub fn imbalance(state: &ClusterState) -> BTreeMap<i32, BrokerImbalance> {
    let mut per_broker: BTreeMap<i32, BrokerImbalance> = BTreeMap::new();
    for (topic, assignment) in &state.topics {
        for (index, replicas) in assignment.assignment.iter().enumerate() {
            let Some(preferred) = replicas.first().copied() else {
                continue;
            };
            let leader = i32::try_from(index)
                .ok()
                .and_then(|partition| state.partition(topic, partition))
                .map_or(NO_LEADER, |entry| entry.state.leader);
            let counts = per_broker.entry(preferred).or_default();
            counts.preferring += 1;
            if leader != preferred {
                counts.led_elsewhere += 1;
            }
        }
    }
    per_broker
}

/// Partitions not led by their preferred replica, over the whole cluster.
pub fn imbalanced_partitions(state: &ClusterState) -> u64 {
    imbalance(state)
        .values()
        .map(|counts| counts.led_elsewhere)
        .sum()
}

/// Kafka's automatic rebalance: for each broker whose imbalance is above `percentage`, the
/// changes that move its partitions back to it (those that can move now).
pub fn auto_rebalance(
    state: &ClusterState,
    live: &BTreeSet<i32>,
    controller_epoch: i64,
    percentage: u32,
) -> Vec<PartitionChange> {
    let over: BTreeSet<i32> = imbalance(state)
        .into_iter()
        .filter(|(_, counts)| counts.above(percentage))
        .map(|(broker, _)| broker)
        .collect();
    if over.is_empty() {
        return Vec::new();
    }
    decide_all(state, live, controller_epoch, None)
        .into_iter()
        .filter(|decision| over.contains(&decision.preferred))
        .filter_map(|decision| match decision.outcome {
            PreferredOutcome::Elect(change) => Some(change),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::{PartitionState, TopicAssignment};

    /// Topic "t" with `partitions` (replicas, leader, isr), brokers 0..3 live at epoch 10+id.
    fn cluster(partitions: &[(&[i32], i32, &[i32])]) -> ClusterState {
        let mut state = ClusterState::new("c");
        state.topics.insert(
            "t".into(),
            TopicAssignment {
                name: "t".into(),
                topic_id: uuid::Uuid::nil(),
                partitions: partitions.len() as i32,
                replication_factor: 3,
                configs: Default::default(),
                assignment: partitions.iter().map(|(r, _, _)| r.to_vec()).collect(),
            },
        );
        state.topic_revisions.insert("t".into(), 3);
        state.broker_epochs = [(0, 10), (1, 11), (2, 12)].into();
        for (index, (_, leader, isr)) in partitions.iter().enumerate() {
            let entry = PartitionEntry {
                state: PartitionState {
                    leader: *leader,
                    leader_epoch: 4,
                    isr: isr.to_vec(),
                    controller_epoch: 1,
                    isr_epochs: isr.iter().map(|m| (*m, 10 + i64::from(*m))).collect(),
                },
                mod_revision: 20 + index as i64,
            };
            state
                .partitions
                .entry("t".into())
                .or_default()
                .insert(index as i32, entry);
        }
        state
    }

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    // Proves a live, in-sync, not restarted preferred replica takes leadership back with the
    // leader epoch bumped, the ISR unchanged, and the write bound to its registration and to the
    // partition's revision.
    #[test]
    fn preferred_replica_in_the_isr_is_elected() {
        let state = cluster(&[(&[0, 1, 2], 1, &[0, 1, 2])]);
        let decision = decide(&state, &live(&[0, 1, 2]), 9, "t", 0);
        let PreferredOutcome::Elect(change) = decision.outcome else {
            panic!("expected an election, got {decision:?}");
        };
        assert_eq!(change.next.leader, 0);
        assert_eq!(change.next.leader_epoch, 5);
        assert_eq!(change.next.isr, vec![0, 1, 2]);
        assert_eq!(change.next.controller_epoch, 9);
        assert_eq!(change.elected, Some((0, 10)));
        assert_eq!(change.expected_mod_revision, 20);
        assert_eq!(change.reason, ChangeReason::Preferred { from: 1 });
    }

    // Proves the preferred replica is never elected outside the ISR, when dead, when restarted
    // (another broker epoch than the ISR recorded), or for an offline partition; and that a
    // partition it leads already needs nothing.
    #[test]
    fn preferred_replica_is_elected_only_when_safe() {
        let not_in_isr = cluster(&[(&[0, 1, 2], 1, &[1, 2])]);
        let outcome = decide(&not_in_isr, &live(&[0, 1, 2]), 9, "t", 0).outcome;
        assert!(matches!(outcome, PreferredOutcome::NotAvailable { .. }));
        let state = cluster(&[(&[0, 1, 2], 1, &[0, 1, 2])]);
        let outcome = decide(&state, &live(&[1, 2]), 9, "t", 0).outcome;
        assert!(matches!(outcome, PreferredOutcome::NotAvailable { .. }));
        let mut restarted = state.clone();
        restarted.broker_epochs.insert(0, 99);
        let outcome = decide(&restarted, &live(&[0, 1, 2]), 9, "t", 0).outcome;
        assert!(matches!(outcome, PreferredOutcome::NotAvailable { .. }));
        let offline = cluster(&[(&[0, 1, 2], NO_LEADER, &[0])]);
        let outcome = decide(&offline, &live(&[1, 2]), 9, "t", 0).outcome;
        assert!(matches!(outcome, PreferredOutcome::NotAvailable { .. }));
        let led = cluster(&[(&[0, 1, 2], 0, &[0, 1, 2])]);
        let outcome = decide(&led, &live(&[0, 1, 2]), 9, "t", 0).outcome;
        assert_eq!(outcome, PreferredOutcome::AlreadyPreferred);
    }

    // Proves Kafka's per-broker rule: broker 0 prefers 3 partitions and leads 2 of them (33 %
    // imbalance), so a 10 % threshold moves its third partition back and a 50 % one moves
    // nothing; brokers without imbalance cause no change.
    #[test]
    fn auto_rebalance_follows_the_per_broker_threshold() {
        let state = cluster(&[
            (&[0, 1, 2], 0, &[0, 1, 2]),
            (&[0, 2, 1], 0, &[0, 1, 2]),
            (&[0, 1, 2], 1, &[0, 1, 2]),
            (&[1, 2, 0], 1, &[0, 1, 2]),
        ]);
        let counts = imbalance(&state);
        assert_eq!(
            counts[&0],
            BrokerImbalance {
                preferring: 3,
                led_elsewhere: 1
            }
        );
        assert_eq!(
            counts[&1],
            BrokerImbalance {
                preferring: 1,
                led_elsewhere: 0
            }
        );
        assert_eq!(imbalanced_partitions(&state), 1);
        let changes = auto_rebalance(&state, &live(&[0, 1, 2]), 9, 10);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].partition, changes[0].next.leader), (2, 0));
        assert!(auto_rebalance(&state, &live(&[0, 1, 2]), 9, 50).is_empty());
    }

    // Proves the on-demand election covers only the named topic's partitions when one is given.
    #[test]
    fn decide_all_filters_by_topic() {
        let state = cluster(&[(&[0, 1, 2], 1, &[0, 1, 2]), (&[1, 2, 0], 1, &[0, 1, 2])]);
        assert_eq!(decide_all(&state, &live(&[0, 1, 2]), 1, Some("t")).len(), 2);
        assert!(decide_all(&state, &live(&[0, 1, 2]), 1, Some("other")).is_empty());
    }
}
