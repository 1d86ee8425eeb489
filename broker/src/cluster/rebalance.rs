//! Reassignment plans, free of I/O: `cluster rebalance` (spread replicas and preferred leaders
//! evenly over the live brokers, moving as little as possible) and `cluster decommission`
//! (move every replica off one broker).
//!
//! Rules of [`rebalance`]:
//! - Replicas on brokers that are not live move first (to the least loaded live broker not
//!   already holding the partition).
//! - Then, while the most loaded broker holds at least two replicas more than the least loaded
//!   one, one replica of a partition the least loaded broker does not hold moves from the first
//!   to the second, keeping its position in the replica list (so a moved preferred leader stays
//!   the preferred leader on its new broker). A partition's replica on a broker within its fair
//!   share never moves, so the data moved is the least this greedy rule can find.
//! - Finally preferred leaders (first replicas) are spread the same way, by reordering replicas
//!   within a partition, which moves no data.
//!
//! Both planners are deterministic: the same input gives the same plan.

use std::collections::{BTreeMap, BTreeSet};

/// One partition's replicas as the cluster reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReplicas {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
}

/// One partition's move: from its replicas now to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Replicas now.
    pub from: Vec<i32>,
    /// Replicas afterwards, preferred leader first.
    pub target: Vec<i32>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No live broker to place replicas on.
    #[error("no live broker")]
    NoLiveBroker,
    /// A partition has more replicas than there are brokers to hold them.
    #[error(
        "{topic}-{partition} has {replicas} replicas but only {brokers} brokers could hold them"
    )]
    NotEnoughBrokers {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Its replica count.
        replicas: usize,
        /// Brokers available.
        brokers: usize,
    },
}

/// Replica (or leader) counts per broker.
type Load = BTreeMap<i32, usize>;

fn check_capacity(partitions: &[PartitionReplicas], brokers: usize) -> Result<(), PlanError> {
    if brokers == 0 {
        return Err(PlanError::NoLiveBroker);
    }
    match partitions.iter().find(|p| p.replicas.len() > brokers) {
        Some(p) => Err(PlanError::NotEnoughBrokers {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: p.replicas.len(),
            brokers,
        }),
        None => Ok(()),
    }
}

/// The least loaded broker of `load` outside `exclude` (lowest id on ties).
fn least_loaded(load: &Load, exclude: &[i32]) -> Option<i32> {
    load.iter()
        .filter(|(broker, _)| !exclude.contains(broker))
        .min_by_key(|(broker, count)| (**count, **broker))
        .map(|(broker, _)| *broker)
}

fn replica_load(live: &BTreeSet<i32>, plan: &[Vec<i32>]) -> Load {
    let mut load: Load = live.iter().map(|broker| (*broker, 0)).collect();
    for replicas in plan {
        for replica in replicas {
            if let Some(count) = load.get_mut(replica) {
                *count += 1;
            }
        }
    }
    load
}

/// Moves every replica on a broker outside `live` to the least loaded live broker not in the
/// partition.
fn evacuate(live: &BTreeSet<i32>, plan: &mut [Vec<i32>]) {
    let mut load = replica_load(live, plan);
    for replicas in plan.iter_mut() {
        for index in 0..replicas.len() {
            if live.contains(&replicas[index]) {
                continue;
            }
            if let Some(to) = least_loaded(&load, replicas) {
                replicas[index] = to;
                *load.entry(to).or_default() += 1;
            }
        }
    }
}

/// One step of evening out replica counts: moves one replica from the most loaded broker to
/// a less loaded one (two or more fewer) not holding that partition. Returns false when no
/// such move exists.
fn even_out_one(live: &BTreeSet<i32>, plan: &mut [Vec<i32>]) -> bool {
    let load = replica_load(live, plan);
    let leaders = leader_load(live, plan);
    let mut by_load: Vec<(i32, usize)> = load.iter().map(|(b, c)| (*b, *c)).collect();
    by_load.sort_by_key(|(broker, count)| (std::cmp::Reverse(*count), *broker));
    for (from, from_count) in &by_load {
        let mut receivers: Vec<(i32, usize)> = by_load
            .iter()
            .copied()
            .filter(|(_, count)| count + 2 <= *from_count)
            .collect();
        receivers.sort_by_key(|(broker, count)| (*count, *broker));
        for (to, _) in receivers {
            // Move a preferred leader when `from` leads more than its share compared to `to`
            // (the receiver then leads it once the move ends), another replica otherwise.
            let move_leader = leaders.get(from).copied().unwrap_or(0)
                >= leaders.get(&to).copied().unwrap_or(0) + 2;
            let fits = |replicas: &Vec<i32>| replicas.contains(from) && !replicas.contains(&to);
            let preferred = plan.iter().position(|replicas| {
                fits(replicas) && (replicas.first() == Some(from)) == move_leader
            });
            let candidate = preferred
                .or_else(|| plan.iter().position(fits))
                .and_then(|index| plan.get_mut(index));
            if let Some(replicas) = candidate {
                if let Some(slot) = replicas.iter_mut().find(|replica| **replica == *from) {
                    *slot = to;
                    return true;
                }
            }
        }
    }
    false
}

/// Preferred leaders (first replicas) per live broker.
fn leader_load(live: &BTreeSet<i32>, plan: &[Vec<i32>]) -> Load {
    let mut leaders: Load = live.iter().map(|broker| (*broker, 0)).collect();
    for replicas in plan {
        if let Some(count) = replicas.first().and_then(|first| leaders.get_mut(first)) {
            *count += 1;
        }
    }
    leaders
}

/// One step of evening out preferred leaders by reordering one partition's replicas.
fn even_out_leader(live: &BTreeSet<i32>, plan: &mut [Vec<i32>]) -> bool {
    let leaders = leader_load(live, plan);
    for replicas in plan.iter_mut() {
        let Some(first) = replicas.first().copied() else {
            continue;
        };
        let first_count = leaders.get(&first).copied().unwrap_or(0);
        let better = replicas
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, replica)| {
                leaders
                    .get(replica)
                    .is_some_and(|count| count + 2 <= first_count)
            })
            .min_by_key(|(_, replica)| (leaders.get(replica).copied(), **replica))
            .map(|(index, _)| index);
        if let Some(index) = better {
            replicas.swap(0, index);
            return true;
        }
    }
    false
}

fn moves(partitions: &[PartitionReplicas], plan: Vec<Vec<i32>>) -> Vec<PlannedMove> {
    partitions
        .iter()
        .zip(plan)
        .filter(|(current, target)| current.replicas != *target)
        .map(|(current, target)| PlannedMove {
            topic: current.topic.clone(),
            partition: current.partition,
            from: current.replicas.clone(),
            target,
        })
        .collect()
}

/// The plan spreading `partitions`' replicas and preferred leaders evenly over `live`.
pub fn rebalance(
    live: &BTreeSet<i32>,
    partitions: &[PartitionReplicas],
) -> Result<Vec<PlannedMove>, PlanError> {
    check_capacity(partitions, live.len())?;
    let mut plan: Vec<Vec<i32>> = partitions.iter().map(|p| p.replicas.clone()).collect();
    evacuate(live, &mut plan);
    // Each step lowers the spread of counts; the bound only guards against a bug looping.
    let steps_max = plan.iter().map(Vec::len).sum::<usize>() * live.len() + 1;
    for _ in 0..steps_max {
        if !even_out_one(live, &mut plan) {
            break;
        }
    }
    for _ in 0..steps_max {
        if !even_out_leader(live, &mut plan) {
            break;
        }
    }
    Ok(moves(partitions, plan))
}

/// The plan moving every replica off `broker` onto the other live brokers (each to the least
/// loaded one not holding the partition, in its position), refused when the others cannot
/// hold some partition's replication factor.
pub fn decommission(
    live: &BTreeSet<i32>,
    broker: i32,
    partitions: &[PartitionReplicas],
) -> Result<Vec<PlannedMove>, PlanError> {
    let mut rest = live.clone();
    rest.remove(&broker);
    check_capacity(partitions, rest.len())?;
    let mut plan: Vec<Vec<i32>> = partitions.iter().map(|p| p.replicas.clone()).collect();
    evacuate(&rest, &mut plan);
    Ok(moves(partitions, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(replicas: &[&[i32]]) -> Vec<PartitionReplicas> {
        replicas
            .iter()
            .enumerate()
            .map(|(index, replicas)| PartitionReplicas {
                topic: "t".into(),
                partition: index as i32,
                replicas: replicas.to_vec(),
            })
            .collect()
    }

    fn apply(current: &[PartitionReplicas], plan: &[PlannedMove]) -> Vec<Vec<i32>> {
        current
            .iter()
            .map(|p| {
                plan.iter()
                    .find(|m| m.partition == p.partition)
                    .map_or(p.replicas.clone(), |m| m.target.clone())
            })
            .collect()
    }

    fn counts(after: &[Vec<i32>], leaders_only: bool) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for replicas in after {
            let take = if leaders_only { 1 } else { replicas.len() };
            for replica in &replicas[..take] {
                *counts.entry(*replica).or_default() += 1;
            }
        }
        counts
    }

    // Proves a fourth broker joining a 3-broker RF 2 layout gets its fair share of replicas
    // and of preferred leaders, no partition holds a broker twice, and a replica on a broker
    // within its share stays (few moves).
    #[test]
    fn new_broker_gets_its_share() {
        let current = partitions(&[&[1, 2], &[2, 3], &[3, 1], &[1, 2], &[2, 3], &[3, 1]]);
        let live = BTreeSet::from([1, 2, 3, 4]);
        let plan = rebalance(&live, &current).unwrap();
        let after = apply(&current, &plan);
        let replicas = counts(&after, false);
        assert_eq!(replicas.values().copied().max(), Some(3));
        assert_eq!(replicas.values().copied().min(), Some(3));
        let leaders = counts(&after, true);
        assert!(leaders.get(&4).copied().unwrap_or(0) >= 1, "{leaders:?}");
        let moved_leaders = plan
            .iter()
            .filter(|m| m.target[0] == 4 && m.from[0] != 4)
            .count();
        assert!(
            moved_leaders >= 1,
            "a preferred leader moved to the new broker: {plan:?}"
        );
        let (most, fewest) = (leaders.values().max(), leaders.values().min());
        assert!(
            most.zip(fewest)
                .is_some_and(|(most, fewest)| most - fewest <= 1),
            "{leaders:?}"
        );
        for replicas in &after {
            let unique: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(unique.len(), replicas.len(), "{replicas:?}");
        }
        let data_moves: usize = plan
            .iter()
            .map(|m| m.target.iter().filter(|r| !m.from.contains(r)).count())
            .sum();
        assert_eq!(
            data_moves, 3,
            "exactly the new broker's share moves: {plan:?}"
        );
        let balanced: Vec<&[i32]> = after.iter().map(Vec::as_slice).collect();
        let again = rebalance(&live, &partitions(&balanced)).unwrap();
        assert!(again.is_empty(), "a balanced layout stays: {again:?}");
    }

    // Proves decommission moves every replica off the broker, keeps the replication factor,
    // and is refused when the other brokers cannot hold it.
    #[test]
    fn decommission_empties_the_broker_or_refuses() {
        let current = partitions(&[&[1, 2], &[2, 3], &[3, 1], &[4, 1]]);
        let live = BTreeSet::from([1, 2, 3, 4]);
        let plan = decommission(&live, 1, &current).unwrap();
        let after = apply(&current, &plan);
        for replicas in &after {
            assert!(!replicas.contains(&1), "{after:?}");
            assert_eq!(replicas.len(), 2);
        }
        assert_eq!(after[3][0], 4, "the untouched replica keeps its position");
        assert_eq!(
            after[0][1], 2,
            "the replacement takes the removed replica's position"
        );
        let three = partitions(&[&[1, 2, 3]]);
        assert!(matches!(
            decommission(&BTreeSet::from([1, 2, 3]), 1, &three),
            Err(PlanError::NotEnoughBrokers {
                replicas: 3,
                brokers: 2,
                ..
            })
        ));
    }
}
