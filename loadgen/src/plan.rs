//! Who runs where: producers and consumers spread over the load generator's executors.
//!
//! Each subscription is a real consumer group (see [`group_id`]): its consumers join it and the
//! group's leader member assigns the topic's partitions among them, so every subscription reads
//! every partition and, inside one, each partition has one consumer.

use crate::workload::Workload;

/// One producer: which topic it writes and at what rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerPlan {
    /// Run-unique id, carried in every payload.
    pub producer_id: u32,
    /// Index into the run's topic list.
    pub topic_index: usize,
    /// This producer's share of the workload rate (msg/s); 0 = as fast as possible.
    pub rate_per_s: f64,
    /// Fraction of one send interval this producer's schedule is shifted by, so producers do not
    /// all send at the same instant.
    pub stagger: f64,
}

/// One consumer: which subscription it belongs to and which partitions it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPlan {
    /// Run-unique subscription id (`topic_index * subscriptions_per_topic + subscription`).
    pub subscription_id: u32,
    /// Index into the run's topic list.
    pub topic_index: usize,
    /// Position of this consumer in its subscription.
    pub consumer_index: u32,
}

/// The consumer group of subscription `subscription_id` on `topic`: unique to the topic (so to
/// the run, whose topic names are run-unique unless `--topic` is given).
pub fn group_id(topic: &str, subscription_id: u32) -> String {
    format!("{topic}-sub-{subscription_id}")
}

/// The share of the run one executor carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutorPlan {
    /// Executor number, from 0.
    pub index: usize,
    /// CPU it is pinned to, or `None` when unpinned.
    pub cpu: Option<usize>,
    /// Its producers.
    pub producers: Vec<ProducerPlan>,
    /// Its consumers.
    pub consumers: Vec<ConsumerPlan>,
}

/// Spreads the workload's producers and consumers over one executor per entry of `cpus`
/// (`None` = unpinned), never more executors than there are producers and consumers. Producers
/// are dealt round-robin from executor 0 and consumers from the executor after the last
/// producer, so a one-producer, one-consumer run uses two executors when it has them.
pub fn plan_executors(workload: &Workload, cpus: &[Option<usize>]) -> Vec<ExecutorPlan> {
    let producers = plan_producers(workload);
    let consumers = plan_consumers(workload);
    let units = producers.len() + consumers.len();
    let count = cpus.len().min(units).max(1);
    let mut executors: Vec<ExecutorPlan> = cpus
        .iter()
        .take(count)
        .enumerate()
        .map(|(index, cpu)| ExecutorPlan {
            index,
            cpu: *cpu,
            ..ExecutorPlan::default()
        })
        .collect();
    if executors.is_empty() {
        executors.push(ExecutorPlan::default());
    }
    let count = executors.len();
    for (position, producer) in producers.into_iter().enumerate() {
        executors[position % count].producers.push(producer);
    }
    let first_consumer_executor = workload.producers_total() as usize % count;
    for (position, consumer) in consumers.into_iter().enumerate() {
        executors[(first_consumer_executor + position) % count]
            .consumers
            .push(consumer);
    }
    executors
}

/// Every producer of the run, with its share of the rate.
pub fn plan_producers(workload: &Workload) -> Vec<ProducerPlan> {
    let total = workload.producers_total();
    let rate_per_s = if total == 0 {
        0.0
    } else {
        workload.producer_rate / f64::from(total)
    };
    (0..total)
        .map(|producer_id| ProducerPlan {
            producer_id,
            topic_index: (producer_id / workload.producers_per_topic) as usize,
            rate_per_s,
            stagger: f64::from(producer_id) / f64::from(total),
        })
        .collect()
}

/// Every consumer of the run, by subscription.
pub fn plan_consumers(workload: &Workload) -> Vec<ConsumerPlan> {
    let mut consumers = Vec::new();
    for topic_index in 0..workload.topics as usize {
        for subscription in 0..workload.subscriptions_per_topic {
            let subscription_id =
                topic_index as u32 * workload.subscriptions_per_topic + subscription;
            for consumer_index in 0..workload.consumers_per_subscription {
                consumers.push(ConsumerPlan {
                    subscription_id,
                    topic_index,
                    consumer_index,
                });
            }
        }
    }
    consumers
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves every subscription gets consumers_per_subscription consumers of its own topic, with
    // subscription ids unique over topics, and that group ids differ per subscription.
    #[test]
    fn each_subscription_has_its_consumers() {
        let workload = Workload {
            topics: 2,
            partitions_per_topic: 7,
            subscriptions_per_topic: 2,
            consumers_per_subscription: 3,
            ..Workload::default()
        };
        let plans = plan_consumers(&workload);
        assert_eq!(plans.len(), 2 * 2 * 3);
        for subscription_id in 0..4 {
            let members: Vec<&ConsumerPlan> = plans
                .iter()
                .filter(|plan| plan.subscription_id == subscription_id)
                .collect();
            assert_eq!(members.len(), 3);
            assert!(members
                .iter()
                .all(|plan| plan.topic_index == subscription_id as usize / 2));
        }
        assert_ne!(group_id("t", 0), group_id("t", 1));
    }

    // Proves producers and consumers are spread over the executors, none is lost, the rate is
    // split evenly and no executor is left idle, by planning 4 producers and 4 consumers over 3
    // CPUs and 1 producer + 1 consumer over 4 CPUs.
    #[test]
    fn units_are_spread_over_executors() {
        let workload = Workload {
            producers_per_topic: 4,
            consumers_per_subscription: 4,
            producer_rate: 1_000.0,
            ..Workload::default()
        };
        let plans = plan_executors(&workload, &[Some(0), Some(1), Some(2)]);
        assert_eq!(plans.len(), 3);
        assert_eq!(
            plans.iter().map(|plan| plan.producers.len()).sum::<usize>(),
            4
        );
        assert_eq!(
            plans.iter().map(|plan| plan.consumers.len()).sum::<usize>(),
            4
        );
        assert!(plans
            .iter()
            .all(|plan| plan.producers.len() + plan.consumers.len() >= 2));
        assert!(plans
            .iter()
            .flat_map(|plan| &plan.producers)
            .all(|producer| producer.rate_per_s == 250.0));
        let small = plan_executors(&Workload::default(), &[None, None, None, None]);
        assert_eq!(small.len(), 2);
        assert_eq!((small[0].producers.len(), small[0].consumers.len()), (1, 0));
        assert_eq!((small[1].producers.len(), small[1].consumers.len()), (0, 1));
    }
}
