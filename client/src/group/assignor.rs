//! Partition assignment, computed by the group's leader member (as in Kafka: the coordinator
//! only hands out what the leader decided). Pure functions of the members' subscriptions and
//! the topics' partition counts, unit tested.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sluice_group::consumer_protocol::Subscription;

use super::config::Assignor;

/// A topic partition.
pub type TopicPartition = (String, i32);

/// One member as the leader sees it: its id and decoded subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id.
    pub member_id: String,
    /// What it subscribes to (and, for cooperative assignors, what it owns).
    pub subscription: Subscription,
}

/// The assignment of every member, by member id (members without partitions included).
pub type GroupAssignment = BTreeMap<String, Vec<TopicPartition>>;

/// Runs `assignor` over `members` and the topics' partition counts (topics missing from
/// `partition_counts` have no partitions).
pub fn assign(
    assignor: Assignor,
    members: &[MemberSubscription],
    partition_counts: &HashMap<String, i32>,
) -> GroupAssignment {
    match assignor {
        Assignor::Range => range(members, partition_counts),
        Assignor::RoundRobin => round_robin(members, partition_counts),
        Assignor::CooperativeSticky => cooperative_sticky(members, partition_counts),
    }
}

fn empty_assignment(members: &[MemberSubscription]) -> GroupAssignment {
    members
        .iter()
        .map(|member| (member.member_id.clone(), Vec::new()))
        .collect()
}

fn subscribes(member: &MemberSubscription, topic: &str) -> bool {
    member
        .subscription
        .topics
        .iter()
        .any(|subscribed| subscribed == topic)
}

/// Every existing partition of every topic some member subscribes to, sorted.
fn subscribed_partitions(
    members: &[MemberSubscription],
    partition_counts: &HashMap<String, i32>,
) -> Vec<TopicPartition> {
    let topics: BTreeSet<&String> = members
        .iter()
        .flat_map(|member| member.subscription.topics.iter())
        .collect();
    topics
        .into_iter()
        .flat_map(|topic| {
            let count = partition_counts.get(topic).copied().unwrap_or(0).max(0);
            (0..count).map(move |partition| (topic.clone(), partition))
        })
        .collect()
}

/// Kafka's RangeAssignor: for each topic, its subscribers in member-id order each take a
/// consecutive range; the first `count mod subscribers` take one more.
fn range(
    members: &[MemberSubscription],
    partition_counts: &HashMap<String, i32>,
) -> GroupAssignment {
    let mut assignment = empty_assignment(members);
    let mut by_topic: BTreeMap<&String, Vec<&str>> = BTreeMap::new();
    for member in members {
        for topic in &member.subscription.topics {
            by_topic.entry(topic).or_default().push(&member.member_id);
        }
    }
    for (topic, mut subscribers) in by_topic {
        subscribers.sort_unstable();
        subscribers.dedup();
        let count = partition_counts.get(topic).copied().unwrap_or(0).max(0);
        let consumers = i32::try_from(subscribers.len()).unwrap_or(i32::MAX).max(1);
        let (per_member, extra) = (count / consumers, count % consumers);
        let mut next = 0;
        for (index, member_id) in subscribers.iter().enumerate() {
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            let take = per_member + i32::from(index < extra);
            if let Some(partitions) = assignment.get_mut(*member_id) {
                partitions.extend((next..next + take).map(|partition| (topic.clone(), partition)));
            }
            next += take;
        }
    }
    assignment
}

/// Kafka's RoundRobinAssignor: every partition (sorted by topic, partition) to the next member
/// in member-id order that subscribes to its topic.
fn round_robin(
    members: &[MemberSubscription],
    partition_counts: &HashMap<String, i32>,
) -> GroupAssignment {
    let mut assignment = empty_assignment(members);
    let mut ordered: Vec<&MemberSubscription> = members.iter().collect();
    ordered.sort_by(|left, right| left.member_id.cmp(&right.member_id));
    if ordered.is_empty() {
        return assignment;
    }
    let mut cursor = 0usize;
    for (topic, partition) in subscribed_partitions(members, partition_counts) {
        for step in 0..ordered.len() {
            let member = ordered[(cursor + step) % ordered.len()];
            if subscribes(member, &topic) {
                if let Some(partitions) = assignment.get_mut(&member.member_id) {
                    partitions.push((topic.clone(), partition));
                }
                cursor = (cursor + step + 1) % ordered.len();
                break;
            }
        }
    }
    assignment
}

/// Who owns each partition now, from the members' subscriptions: when two members claim the
/// same partition, the claim of the newer generation wins (the other is stale).
fn current_owners(members: &[MemberSubscription]) -> HashMap<TopicPartition, (String, i32)> {
    let mut owners: HashMap<TopicPartition, (String, i32)> = HashMap::new();
    for member in members {
        let generation = member.subscription.generation_id;
        for owned in &member.subscription.owned_partitions {
            for partition in &owned.partitions {
                let key = (owned.topic.clone(), *partition);
                let newer = owners
                    .get(&key)
                    .is_none_or(|(_, claimed)| generation > *claimed);
                if newer {
                    owners.insert(key, (member.member_id.clone(), generation));
                }
            }
        }
    }
    owners
}

/// Sticky assignment: members keep the partitions they own as far as balance allows (at most
/// the quota each), the rest goes to the subscribed member with the fewest partitions. Then,
/// cooperatively (KIP-429), a partition still owned by another member is held back this round:
/// its owner revokes it and rejoins, and the next rebalance hands it over.
fn cooperative_sticky(
    members: &[MemberSubscription],
    partition_counts: &HashMap<String, i32>,
) -> GroupAssignment {
    let all = subscribed_partitions(members, partition_counts);
    let owners = current_owners(members);
    let target = sticky_target(members, &all, &owners);
    let mut assignment = GroupAssignment::new();
    for (member_id, partitions) in target {
        let kept = partitions
            .into_iter()
            .filter(|partition| {
                owners
                    .get(partition)
                    .is_none_or(|(owner, _)| *owner == member_id)
            })
            .collect();
        assignment.insert(member_id, kept);
    }
    assignment
}

/// The balanced sticky target assignment (before the cooperative hold-back).
fn sticky_target(
    members: &[MemberSubscription],
    all: &[TopicPartition],
    owners: &HashMap<TopicPartition, (String, i32)>,
) -> GroupAssignment {
    let existing: BTreeSet<&TopicPartition> = all.iter().collect();
    let count = all.len();
    let member_count = members.len().max(1);
    let (quota_min, mut with_extra) = (count / member_count, count % member_count);
    let mut assignment = empty_assignment(members);
    // Members owning the most go first, so they are the ones allowed one extra partition.
    let mut ordered: Vec<&MemberSubscription> = members.iter().collect();
    let owned_count = |member: &MemberSubscription| {
        owners
            .values()
            .filter(|(owner, _)| *owner == member.member_id)
            .count()
    };
    ordered.sort_by(|left, right| {
        owned_count(right)
            .cmp(&owned_count(left))
            .then_with(|| left.member_id.cmp(&right.member_id))
    });
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    for member in ordered {
        let mut owned: Vec<TopicPartition> = owners
            .iter()
            .filter(|(partition, (owner, _))| {
                *owner == member.member_id
                    && existing.contains(partition)
                    && subscribes(member, &partition.0)
            })
            .map(|(partition, _)| partition.clone())
            .collect();
        owned.sort();
        let mut quota = quota_min;
        if with_extra > 0 && owned.len() > quota_min {
            quota += 1;
            with_extra -= 1;
        }
        owned.truncate(quota);
        taken.extend(owned.iter().cloned());
        assignment.insert(member.member_id.clone(), owned);
    }
    for partition in all.iter().filter(|partition| !taken.contains(*partition)) {
        let receiver = members
            .iter()
            .filter(|member| subscribes(member, &partition.0))
            .min_by(|left, right| {
                let size = |member: &MemberSubscription| {
                    assignment.get(&member.member_id).map_or(0, Vec::len)
                };
                size(left)
                    .cmp(&size(right))
                    .then_with(|| left.member_id.cmp(&right.member_id))
            });
        if let Some(receiver) = receiver {
            if let Some(partitions) = assignment.get_mut(&receiver.member_id) {
                partitions.push(partition.clone());
            }
        }
    }
    for partitions in assignment.values_mut() {
        partitions.sort();
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_group::consumer_protocol::TopicPartitions;

    fn member(
        id: &str,
        topics: &[&str],
        owned: &[(&str, &[i32])],
        generation: i32,
    ) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            subscription: Subscription {
                topics: topics.iter().map(|topic| topic.to_string()).collect(),
                user_data: None,
                owned_partitions: owned
                    .iter()
                    .map(|(topic, partitions)| TopicPartitions {
                        topic: topic.to_string(),
                        partitions: partitions.to_vec(),
                    })
                    .collect(),
                generation_id: generation,
                rack_id: None,
            },
        }
    }

    fn counts(topics: &[(&str, i32)]) -> HashMap<String, i32> {
        topics
            .iter()
            .map(|(topic, count)| (topic.to_string(), *count))
            .collect()
    }

    fn sizes(assignment: &GroupAssignment) -> Vec<usize> {
        assignment.values().map(Vec::len).collect()
    }

    /// Every partition of the topics appears exactly once.
    fn assert_complete(assignment: &GroupAssignment, topics: &[(&str, i32)]) {
        let mut seen: Vec<TopicPartition> = assignment.values().flatten().cloned().collect();
        seen.sort();
        let mut expected: Vec<TopicPartition> = topics
            .iter()
            .flat_map(|(topic, count)| {
                (0..*count).map(move |partition| (topic.to_string(), partition))
            })
            .collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    // Proves the range assignor matches Kafka's: 12 partitions over 3 members is 4/4/4 in
    // consecutive ranges by member id; 7 over 3 gives the extra partition to the first member.
    #[test]
    fn range_splits_consecutive_ranges() {
        let members = [
            member("c", &["t"], &[], -1),
            member("a", &["t"], &[], -1),
            member("b", &["t"], &[], -1),
        ];
        let assignment = assign(Assignor::Range, &members, &counts(&[("t", 12)]));
        assert_eq!(
            assignment["a"],
            (0..4).map(|p| ("t".to_string(), p)).collect::<Vec<_>>()
        );
        assert_eq!(
            assignment["c"],
            (8..12).map(|p| ("t".to_string(), p)).collect::<Vec<_>>()
        );
        let assignment = assign(Assignor::Range, &members, &counts(&[("t", 7)]));
        assert_eq!(sizes(&assignment), vec![3, 2, 2]);
        assert_complete(&assignment, &[("t", 7)]);
    }

    // Proves round-robin deals partitions over all subscribed topics in turn and skips members
    // not subscribed to a topic.
    #[test]
    fn round_robin_deals_in_turn() {
        let members = [
            member("a", &["t", "u"], &[], -1),
            member("b", &["t"], &[], -1),
        ];
        let assignment = assign(
            Assignor::RoundRobin,
            &members,
            &counts(&[("t", 3), ("u", 2)]),
        );
        assert_complete(&assignment, &[("t", 3), ("u", 2)]);
        assert!(assignment["b"].iter().all(|(topic, _)| topic == "t"));
        assert_eq!(assignment["a"][0], ("t".to_string(), 0));
        assert_eq!(assignment["b"][0], ("t".to_string(), 1));
    }

    // Proves cooperative-sticky on a first rebalance balances 12 partitions 4/4/4 and covers
    // every partition once.
    #[test]
    fn cooperative_sticky_balances_from_scratch() {
        let members = [
            member("a", &["t"], &[], -1),
            member("b", &["t"], &[], -1),
            member("c", &["t"], &[], -1),
        ];
        let assignment = assign(Assignor::CooperativeSticky, &members, &counts(&[("t", 12)]));
        assert_eq!(sizes(&assignment), vec![4, 4, 4]);
        assert_complete(&assignment, &[("t", 12)]);
    }

    // Proves KIP-429's two-step move: when a member joins a group whose only member owns all
    // 12 partitions, the owner keeps 6 and nothing it owns is handed to the newcomer in the
    // same round; once the owner revoked, the next round gives the newcomer 6 and the owner
    // keeps its 6 (no partition moves twice).
    #[test]
    fn cooperative_sticky_moves_partitions_in_two_rounds() {
        let all: Vec<i32> = (0..12).collect();
        let first = [
            member("a", &["t"], &[("t", &all)], 1),
            member("b", &["t"], &[], -1),
        ];
        let round_one = assign(Assignor::CooperativeSticky, &first, &counts(&[("t", 12)]));
        assert_eq!(round_one["a"].len(), 6);
        assert!(round_one["b"].is_empty(), "b gets nothing a still owns");
        let kept: Vec<i32> = round_one["a"]
            .iter()
            .map(|(_, partition)| *partition)
            .collect();
        let second = [
            member("a", &["t"], &[("t", &kept)], 2),
            member("b", &["t"], &[], -1),
        ];
        let round_two = assign(Assignor::CooperativeSticky, &second, &counts(&[("t", 12)]));
        assert_eq!(round_two["a"], round_one["a"], "a keeps what it kept");
        assert_eq!(round_two["b"].len(), 6);
        assert_complete(&round_two, &[("t", 12)]);
    }

    // Proves a stale claim loses: when two members claim the same partition, the newer
    // generation's owner keeps it; partitions of a deleted topic or a dropped subscription are
    // not kept.
    #[test]
    fn cooperative_sticky_resolves_conflicting_claims() {
        let members = [
            member("a", &["t"], &[("t", &[0, 1]), ("gone", &[0])], 3),
            member("b", &["t"], &[("t", &[1])], 4),
        ];
        let assignment = assign(Assignor::CooperativeSticky, &members, &counts(&[("t", 2)]));
        assert_eq!(assignment["a"], vec![("t".to_string(), 0)]);
        assert_eq!(assignment["b"], vec![("t".to_string(), 1)]);
    }
}
