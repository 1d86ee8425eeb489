//! A load generator consumer: reads its statically assigned partitions from where they ended when
//! the run started, records end-to-end latency from each payload's intended send time, and keeps
//! the sequences it saw for the exactly-once check.

use std::rc::Rc;
use std::time::Duration;

use sluice_client::{Client, Consumer, ConsumerConfig, ConsumerRecord, OffsetSpec, SeekTo};

use super::{ConsumerOutcome, ExecutorLocal};
use crate::error::LoadgenError;
use crate::payload::PayloadHeader;
use crate::plan::ConsumerPlan;

/// Longest a consumer's poll waits for data, so it notices the end of the run promptly.
pub const CONSUMER_POLL_TIMEOUT_MS: u64 = 100;
/// Longest the broker holds a fetch open waiting for data (long polling).
pub const CONSUMER_FETCH_WAIT_MS: u32 = 100;
/// Interval at which a paused consumer (backlog mode) checks whether it may start.
const PAUSED_POLL_MS: u64 = 5;
/// Pause after a failed poll, so a dead broker does not spin the CPU.
const POLL_ERROR_BACKOFF_MS: u64 = 50;

/// One consumer, assigned and positioned, ready to run on this executor.
pub(super) struct ConsumerTask {
    plan: ConsumerPlan,
    consumer: Option<Consumer>,
}

/// Creates every consumer of this executor, assigns its partitions and positions it at each
/// partition's current end, so it reads exactly what this run produces.
pub(super) async fn prepare(
    client: &Rc<Client>,
    plans: &[ConsumerPlan],
    local: &ExecutorLocal,
) -> Result<Vec<ConsumerTask>, LoadgenError> {
    let mut tasks = Vec::with_capacity(plans.len());
    for plan in plans {
        let topic = &local.shared.topics[plan.topic_index];
        if plan.partitions.is_empty() {
            tracing::warn!(
                "consumer {} of subscription {} on {topic} has no partition: more consumers than partitions",
                plan.consumer_index,
                plan.subscription_id
            );
            tasks.push(ConsumerTask {
                plan: plan.clone(),
                consumer: None,
            });
            continue;
        }
        let config = ConsumerConfig {
            fetch_max_wait_ms: CONSUMER_FETCH_WAIT_MS,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(client.clone(), config);
        let assignment = plan
            .partitions
            .iter()
            .map(|partition| (topic.clone(), *partition))
            .collect();
        consumer
            .assign(assignment, SeekTo::Earliest)
            .await
            .map_err(|error| LoadgenError::client(format!("assign {topic} partitions"), error))?;
        for partition in &plan.partitions {
            let end = client
                .list_offset(topic, *partition, OffsetSpec::Latest)
                .await
                .map_err(|error| {
                    LoadgenError::client(format!("list end offset of {topic}/{partition}"), error)
                })?;
            consumer
                .seek(topic, *partition, SeekTo::Offset(end))
                .await
                .map_err(|error| {
                    LoadgenError::client(format!("seek {topic}/{partition}"), error)
                })?;
        }
        tasks.push(ConsumerTask {
            plan: plan.clone(),
            consumer: Some(consumer),
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
        let Some(mut consumer) = self.consumer else {
            return outcome;
        };
        let topic = &local.shared.topics[self.plan.topic_index];
        let poll_timeout = Duration::from_millis(CONSUMER_POLL_TIMEOUT_MS);
        while !local.control().finishing() {
            if !local.control().consuming() {
                glommio::timer::sleep(Duration::from_millis(PAUSED_POLL_MS)).await;
                continue;
            }
            match consumer.poll(poll_timeout).await {
                Ok(records) => record_batch(&local, &mut outcome, &records),
                Err(error) => {
                    local.note_error(&format!("poll {topic}"), &error);
                    glommio::timer::sleep(Duration::from_millis(POLL_ERROR_BACKOFF_MS)).await;
                }
            }
            glommio::yield_if_needed().await;
        }
        outcome
    }
}

/// Records one poll's messages: end-to-end latency, counts, and sequences per producer.
fn record_batch(local: &ExecutorLocal, outcome: &mut ConsumerOutcome, records: &[ConsumerRecord]) {
    if records.is_empty() {
        return;
    }
    let now_ns = local.control().now_ns();
    let mut bytes = 0u64;
    let mut window = local.window.borrow_mut();
    for record in records {
        let value = record.value.as_deref().unwrap_or(&[]);
        bytes += value.len() as u64;
        *outcome.consumed.entry(record.partition).or_default() += 1;
        let Some(header) = PayloadHeader::read(value) else {
            outcome.foreign += 1;
            continue;
        };
        window
            .end_to_end_latency
            .record_span_ns(header.intended_ns, now_ns);
        let first_time = outcome
            .received
            .entry((record.partition, header.producer_id))
            .or_default()
            .insert(header.sequence);
        if !first_time {
            *outcome.duplicates.entry(record.partition).or_default() += 1;
        }
    }
    window.counters.consumed += records.len() as u64;
    window.counters.consumed_bytes += bytes;
    drop(window);
    local.count_consumed(records.len() as u64);
}
