//! Replica placement, from the design documents we follow (DESIGN.md section 5): sort the n
//! brokers; replica j of partition i goes to broker ((i + j) mod n); replica 0 is the preferred
//! leader. Pure: no I/O, no clock.

use super::{ClusterError, TOPIC_PARTITIONS_MAX};

/// Assigns the replicas of `partition_count` partitions over `brokers` (live broker ids, any
/// order, duplicates ignored). Entry i is partition i's replica list, preferred leader first.
///
/// A replication factor above the number of brokers is refused: two replicas on one broker
/// would share a disk and a failure, which is no replication at all.
pub fn assign_replicas(
    brokers: &[i32],
    partition_count: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ClusterError> {
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&partition_count) {
        return Err(ClusterError::InvalidPartitionCount {
            partitions: partition_count,
        });
    }
    let factor = usize::try_from(replication_factor).unwrap_or(0);
    if factor == 0 || factor > sorted.len() {
        return Err(ClusterError::InvalidReplicationFactor {
            replication_factor,
            live_brokers: sorted.len(),
        });
    }
    let count = sorted.len();
    let partitions = usize::try_from(partition_count).unwrap_or(0);
    Ok((0..partitions)
        .map(|partition| {
            (0..factor)
                .map(|replica| sorted[(partition + replica) % count])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Replica count per broker over every given assignment.
    fn replicas_per_broker(assignments: &[Vec<Vec<i32>>]) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for replica in assignments.iter().flatten().flatten() {
            *counts.entry(*replica).or_insert(0) += 1;
        }
        counts
    }

    // Proves the design documents' example: topics of 5 and 10 partitions make 15 partition
    // folders in the cluster, 3 on each of 5 brokers, and with 3 brokers no broker holds more
    // than one folder of a topic above another.
    #[test]
    fn design_example_spreads_fifteen_folders_evenly() {
        let brokers = [4, 2, 0, 3, 1];
        let first = assign_replicas(&brokers, 5, 1).unwrap();
        let second = assign_replicas(&brokers, 10, 1).unwrap();
        let counts = replicas_per_broker(&[first.clone(), second.clone()]);
        assert_eq!(counts.values().sum::<usize>(), 15);
        assert_eq!(counts, (0..5).map(|b| (b, 3)).collect());
        assert_eq!(first, vec![vec![0], vec![1], vec![2], vec![3], vec![4]]);
        for topic in [
            assign_replicas(&[7, 8, 9], 5, 1),
            assign_replicas(&[7, 8, 9], 10, 1),
        ] {
            let counts = replicas_per_broker(&[topic.unwrap()]);
            let spread = counts.values().max().unwrap() - counts.values().min().unwrap();
            assert!(spread <= 1, "{counts:?}");
        }
    }

    // Proves the (i + j) mod n rule on an uneven count (7 partitions, 3 brokers, rf 3): every
    // list has distinct brokers, leaders rotate, and leaders per broker differ by at most one.
    #[test]
    fn uneven_partition_count_follows_the_rule() {
        let assignment = assign_replicas(&[30, 10, 20], 7, 3).unwrap();
        assert_eq!(assignment[0], vec![10, 20, 30]);
        assert_eq!(assignment[1], vec![20, 30, 10]);
        assert_eq!(assignment[2], vec![30, 10, 20]);
        assert_eq!(assignment[6], vec![10, 20, 30]);
        let leaders = replicas_per_broker(&[assignment.iter().map(|r| vec![r[0]]).collect()]);
        assert_eq!(leaders, BTreeMap::from([(10, 3), (20, 2), (30, 2)]));
        for replicas in &assignment {
            let mut distinct = replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3);
        }
    }

    // Proves every replication factor from 1 to n gives n-length-bounded lists of distinct
    // brokers with replica 0 at broker (i mod n), and duplicates in the input are ignored.
    #[test]
    fn every_factor_up_to_broker_count_works() {
        let brokers = [1, 2, 3, 4, 2];
        for factor in 1..=4i16 {
            let assignment = assign_replicas(&brokers, 9, factor).unwrap();
            assert_eq!(assignment.len(), 9);
            for (partition, replicas) in assignment.iter().enumerate() {
                assert_eq!(replicas.len(), factor as usize);
                assert_eq!(replicas[0], [1, 2, 3, 4][partition % 4]);
                let mut distinct = replicas.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), replicas.len());
            }
        }
    }

    // Proves impossible requests are refused with errors that say why: factor above the broker
    // count, factor 0, no brokers, and partition counts out of range.
    #[test]
    fn impossible_requests_are_refused() {
        let error = assign_replicas(&[1, 2], 3, 3).unwrap_err();
        assert!(matches!(
            error,
            ClusterError::InvalidReplicationFactor {
                replication_factor: 3,
                live_brokers: 2
            }
        ));
        assert!(error.to_string().contains("2 live brokers"), "{error}");
        assert!(assign_replicas(&[1, 2], 3, 0).is_err());
        assert!(assign_replicas(&[], 1, 1).is_err());
        assert!(matches!(
            assign_replicas(&[1], 0, 1),
            Err(ClusterError::InvalidPartitionCount { partitions: 0 })
        ));
        assert!(assign_replicas(&[1], TOPIC_PARTITIONS_MAX + 1, 1).is_err());
    }
}
