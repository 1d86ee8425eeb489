//! The exactly-once check: compares what producers had acknowledged with what every subscription
//! received, partition by partition, by producer sequence numbers.

use std::collections::BTreeMap;

use crate::report::{CountsReport, GroupsReport, PartitionCounts};
use crate::stats::SequenceSet;
use crate::worker::ExecutorOutcome;

/// Counts over every executor's outcome. `topics` names the topics by index;
/// `subscriptions_per_topic` is how many subscriptions each topic has.
pub fn account(
    topics: &[String],
    subscriptions_per_topic: u32,
    outcomes: &[ExecutorOutcome],
) -> CountsReport {
    // (topic index, partition) -> producer id -> acknowledged sequences.
    let mut acked: BTreeMap<(usize, i32), BTreeMap<u32, &SequenceSet>> = BTreeMap::new();
    let (mut sent, mut failed) = (0, 0);
    for producer in outcomes.iter().flat_map(|outcome| &outcome.producers) {
        sent += producer.sent;
        failed += producer.failed;
        for (partition, set) in producer.acked.iter().enumerate() {
            acked
                .entry((producer.topic_index, partition as i32))
                .or_default()
                .insert(producer.producer_id, set);
        }
    }
    // subscription -> (partition, producer) -> received sequences, merged over its consumers.
    let mut received: BTreeMap<u32, BTreeMap<(i32, u32), SequenceSet>> = BTreeMap::new();
    let mut partitions: BTreeMap<(usize, i32), PartitionCounts> = BTreeMap::new();
    let mut foreign = 0;
    let mut groups = GroupsReport::default();
    for consumer in outcomes.iter().flat_map(|outcome| &outcome.consumers) {
        foreign += consumer.foreign;
        groups.rebalances += consumer.rebalances;
        groups.rebalance_ms_total += consumer.rebalance_ms_total;
        groups.rebalance_ms_max = groups.rebalance_ms_max.max(consumer.rebalance_ms_max);
        let merged = received.entry(consumer.subscription_id).or_default();
        for (key, set) in &consumer.received {
            let overlap = merged.entry(*key).or_default().union_with(set);
            // Inside one group a partition has one owner at a time, so an overlap is a message
            // delivered twice to the subscription (at-least-once: after a rebalance, the new
            // owner re-reads what the old one had not committed).
            counts_for(&mut partitions, topics, consumer.topic_index, key.0).duplicates += overlap;
        }
        for (partition, count) in &consumer.consumed {
            counts_for(&mut partitions, topics, consumer.topic_index, *partition).consumed += count;
        }
        for (partition, count) in &consumer.duplicates {
            counts_for(&mut partitions, topics, consumer.topic_index, *partition).duplicates +=
                count;
        }
    }
    let empty = SequenceSet::new();
    for ((topic_index, partition), producers) in &acked {
        let counts = counts_for(&mut partitions, topics, *topic_index, *partition);
        counts.acked = producers.values().map(|set| set.len()).sum();
        for subscription in 0..subscriptions_per_topic {
            let subscription_id = *topic_index as u32 * subscriptions_per_topic + subscription;
            let seen = received.get(&subscription_id);
            for (producer_id, set) in producers {
                let got = seen
                    .and_then(|map| map.get(&(*partition, *producer_id)))
                    .unwrap_or(&empty);
                counts.missing += set.missing_from(got);
            }
        }
    }
    let partitions: Vec<PartitionCounts> = partitions.into_values().collect();
    CountsReport {
        sent,
        acked: partitions.iter().map(|p| p.acked).sum(),
        failed,
        consumed: partitions.iter().map(|p| p.consumed).sum(),
        subscriptions_per_topic,
        duplicates: partitions.iter().map(|p| p.duplicates).sum(),
        missing: partitions.iter().map(|p| p.missing).sum(),
        foreign,
        partitions,
        groups,
    }
}

fn counts_for<'a>(
    partitions: &'a mut BTreeMap<(usize, i32), PartitionCounts>,
    topics: &[String],
    topic_index: usize,
    partition: i32,
) -> &'a mut PartitionCounts {
    partitions
        .entry((topic_index, partition))
        .or_insert_with(|| PartitionCounts {
            topic: topics.get(topic_index).cloned().unwrap_or_default(),
            partition,
            acked: 0,
            consumed: 0,
            duplicates: 0,
            missing: 0,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::{ConsumerOutcome, ProducerOutcome};

    fn set(members: impl IntoIterator<Item = u64>) -> SequenceSet {
        let mut set = SequenceSet::new();
        for member in members {
            set.insert(member);
        }
        set
    }

    // Proves the check counts exactly what a user would call lost or duplicated: a partition
    // missing two acknowledged messages in one of two subscriptions, a duplicate delivery, and a
    // clean partition, built as synthetic executor outcomes.
    #[test]
    fn missing_and_duplicates_per_partition() {
        let topics = vec!["t".to_string()];
        let producer = ProducerOutcome {
            producer_id: 0,
            topic_index: 0,
            acked: vec![set(0..10), set(0..5)],
            sent: 16,
            failed: 1,
        };
        let mut first = ConsumerOutcome {
            subscription_id: 0,
            topic_index: 0,
            ..ConsumerOutcome::default()
        };
        first.received.insert((0, 0), set(0..10));
        first.received.insert((1, 0), set(0..5));
        first.consumed.insert(0, 11);
        first.consumed.insert(1, 5);
        first.duplicates.insert(0, 1);
        let mut second = ConsumerOutcome {
            subscription_id: 1,
            topic_index: 0,
            ..ConsumerOutcome::default()
        };
        second
            .received
            .insert((0, 0), set((0..10).filter(|s| *s != 3 && *s != 7)));
        second.received.insert((1, 0), set(0..5));
        second.consumed.insert(0, 8);
        second.consumed.insert(1, 5);
        let outcomes = vec![ExecutorOutcome {
            producers: vec![producer],
            consumers: vec![first, second],
            errors: vec![],
        }];
        let counts = account(&topics, 2, &outcomes);
        assert_eq!((counts.sent, counts.acked, counts.failed), (16, 15, 1));
        assert_eq!(counts.consumed, 29);
        assert_eq!(counts.missing, 2);
        assert_eq!(counts.duplicates, 1);
        assert_eq!(counts.partitions.len(), 2);
        assert_eq!(
            (
                counts.partitions[0].missing,
                counts.partitions[0].duplicates
            ),
            (2, 1)
        );
        assert_eq!(
            (
                counts.partitions[1].missing,
                counts.partitions[1].duplicates
            ),
            (0, 0)
        );
    }

    // Proves a subscription that received nothing counts every acknowledged message as missing,
    // by accounting a producer with no consumer outcome at all.
    #[test]
    fn silent_subscription_misses_everything() {
        let producer = ProducerOutcome {
            producer_id: 3,
            topic_index: 0,
            acked: vec![set(0..4)],
            sent: 4,
            failed: 0,
        };
        let outcomes = vec![ExecutorOutcome {
            producers: vec![producer],
            ..ExecutorOutcome::default()
        }];
        let counts = account(&["t".to_string()], 1, &outcomes);
        assert_eq!(counts.missing, 4);
        assert_eq!(account(&["t".to_string()], 0, &outcomes).missing, 0);
    }
}
