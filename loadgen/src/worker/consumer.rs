//! A load generator consumer: a member of its subscription's consumer group, reading the
//! partitions the group assigns it from the group's committed offsets (set to the partitions'
//! ends when the run started), recording end-to-end latency from each payload's intended send
//! time, and keeping the sequences it saw for the exactly-once check.

use std::rc::Rc;
use std::time::Duration;

use sluice_client::{
    Assignor, AutoOffsetReset, Client, ConsumerConfig, FetchedBatches, GroupConsumer,
    GroupConsumerConfig,
};

use super::{ConsumerOutcome, ExecutorLocal};
use crate::error::LoadgenError;
use crate::payload::PayloadHeader;
use crate::plan::{group_id, ConsumerPlan};
use crate::stats::SequenceSet;

/// Longest a consumer's poll waits for data, so it notices the end of the run promptly.
pub const CONSUMER_POLL_TIMEOUT_MS: u64 = 100;
/// Longest the broker holds a fetch open waiting for data (long polling).
pub const CONSUMER_FETCH_WAIT_MS: u32 = 100;
/// Session timeout of the load generator's group members, ms.
pub const CONSUMER_SESSION_TIMEOUT_MS: u64 = 10_000;
/// Heartbeat interval of the load generator's group members, ms.
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// Rebalance timeout of the load generator's group members, ms.
pub const CONSUMER_REBALANCE_TIMEOUT_MS: u64 = 30_000;
/// Interval at which a paused consumer (backlog mode) checks whether it may start.
const PAUSED_POLL_MS: u64 = 5;
/// Pause after a failed poll, so a dead broker does not spin the CPU.
const POLL_ERROR_BACKOFF_MS: u64 = 50;

/// One consumer, subscribed, ready to run on this executor (it joins its group in its first
/// poll).
pub(super) struct ConsumerTask {
    plan: ConsumerPlan,
    consumer: GroupConsumer,
}

/// Creates every consumer of this executor as a member of its subscription's group.
pub(super) async fn prepare(
    client: &Rc<Client>,
    plans: &[ConsumerPlan],
    local: &ExecutorLocal,
) -> Result<Vec<ConsumerTask>, LoadgenError> {
    let mut tasks = Vec::with_capacity(plans.len());
    for plan in plans {
        let topic = &local.shared.topics[plan.topic_index];
        let consumer_config = ConsumerConfig {
            fetch_max_wait_ms: CONSUMER_FETCH_WAIT_MS,
            ..ConsumerConfig::default()
        };
        let group = group_id(topic, plan.subscription_id);
        let config = GroupConsumerConfig {
            client_id: format!("loadgen-{}-{}", plan.subscription_id, plan.consumer_index),
            session_timeout_ms: CONSUMER_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: CONSUMER_HEARTBEAT_INTERVAL_MS,
            rebalance_timeout_ms: CONSUMER_REBALANCE_TIMEOUT_MS,
            assignors: vec![Assignor::Range],
            auto_offset_reset: AutoOffsetReset::Latest,
            ..GroupConsumerConfig::new(group.clone())
        };
        let mut consumer = GroupConsumer::new(client.clone(), consumer_config, config)
            .map_err(|error| LoadgenError::client(format!("join group {group}"), error))?;
        consumer.subscribe(vec![topic.clone()]);
        tasks.push(ConsumerTask {
            plan: plan.clone(),
            consumer,
        });
    }
    Ok(tasks)
}

impl ConsumerTask {
    /// Polls until the run finishes; waits first while consumers are paused (backlog mode).
    pub(super) async fn run(self, local: Rc<ExecutorLocal>) -> ConsumerOutcome {
        let mut outcome = ConsumerOutcome {
            subscription_id: self.plan.subscription_id,
            topic_index: self.plan.topic_index,
            ..ConsumerOutcome::default()
        };
        let mut consumer = self.consumer;
        let topic = &local.shared.topics[self.plan.topic_index];
        let poll_timeout = Duration::from_millis(CONSUMER_POLL_TIMEOUT_MS);
        while !local.control().finishing() {
            if !local.control().consuming() {
                glommio::timer::sleep(Duration::from_millis(PAUSED_POLL_MS)).await;
                continue;
            }
            match consumer.poll_batches(poll_timeout).await {
                Ok(polled) => record_polled(&local, &mut outcome, &polled),
                Err(error) => {
                    local.note_error(&format!("poll {topic}"), &error);
                    glommio::timer::sleep(Duration::from_millis(POLL_ERROR_BACKOFF_MS)).await;
                }
            }
            glommio::yield_if_needed().await;
        }
        let stats = consumer.rebalance_stats();
        outcome.rebalances = stats.rebalances;
        outcome.rebalance_ms_total = stats.rebalance_ms_total;
        outcome.rebalance_ms_max = stats.rebalance_ms_max;
        if let Err(error) = consumer.close().await {
            local.note_error(&format!("leave the group of {topic}"), &error);
        }
        outcome
    }
}

/// Records one poll's messages, read in place: end-to-end latency, counts, and sequences per
/// producer. The per-partition entries are looked up once per fetched partition, not once per
/// record. A batch that cannot be read (after its CRC matched) is reported; the records before
/// it still count.
fn record_polled(local: &ExecutorLocal, outcome: &mut ConsumerOutcome, polled: &[FetchedBatches]) {
    if polled.is_empty() {
        return;
    }
    let now_ns = local.control().now_ns();
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut window = local.window.borrow_mut();
    for fetched in polled {
        let partition = fetched.partition;
        let (mut in_partition, mut duplicates, mut foreign) = (0u64, 0u64, 0u64);
        // The sequences of the producer whose records these are, taken out of the map while
        // its records follow each other (put back when another producer's come, and at the end).
        let mut current: Option<(u32, SequenceSet)> = None;
        let received = &mut outcome.received;
        let walked = fetched.for_each_record(|record| {
            in_partition += 1;
            let value = record.value.unwrap_or(&[]);
            bytes += value.len() as u64;
            let Some(header) = PayloadHeader::read(value) else {
                foreign += 1;
                return;
            };
            window
                .end_to_end_latency
                .record_span_ns(header.intended_ns, now_ns);
            let producer = header.producer_id;
            let set = match &mut current {
                Some((id, set)) if *id == producer => set,
                _ => {
                    if let Some((id, set)) = current.take() {
                        received.insert((partition, id), set);
                    }
                    let set = received.remove(&(partition, producer)).unwrap_or_default();
                    &mut current.insert((producer, set)).1
                }
            };
            if !set.insert(header.sequence) {
                duplicates += 1;
            }
        });
        if let Some((id, set)) = current {
            received.insert((partition, id), set);
        }
        if let Err(error) = walked {
            local.note_error(&format!("read partition {partition}"), &error);
        }
        count += in_partition;
        *outcome.consumed.entry(partition).or_default() += in_partition;
        outcome.foreign += foreign;
        if duplicates > 0 {
            *outcome.duplicates.entry(partition).or_default() += duplicates;
        }
    }
    window.counters.consumed += count;
    window.counters.consumed_bytes += bytes;
    drop(window);
    local.count_consumed(count);
}
