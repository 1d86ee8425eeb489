//! A Kafka-driver consumer: reads its statically assigned partitions through librdkafka from
//! where they ended when the run started, records end-to-end latency from each payload's
//! intended send time, and keeps the sequences it saw for the exactly-once check.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{base_config, kafka_error, wait_for_start, Windows};
use crate::error::LoadgenError;
use crate::payload::PayloadHeader;
use crate::plan::ConsumerPlan;
use crate::worker::{ConsumerOutcome, ExecutorEvent, ExecutorOutcome, SharedRun, ERRORS_KEPT_MAX};

/// Longest one `poll` blocks, so the end of the run is noticed promptly.
const POLL_TIMEOUT_MS: u64 = 100;
/// Longest the broker holds a fetch open waiting for data, as in the native driver.
const FETCH_WAIT_MS: u32 = 100;
/// Interval at which a paused consumer (backlog mode) checks whether it may start.
const PAUSED_POLL_MS: u64 = 5;
/// Pause after a failed poll, so a dead broker does not spin the CPU.
const POLL_ERROR_BACKOFF_MS: u64 = 50;

/// Creates the consumer and assigns its partitions at their current end.
fn assigned_consumer(
    plan: &ConsumerPlan,
    shared: &SharedRun,
) -> Result<BaseConsumer, LoadgenError> {
    let consumer: BaseConsumer = base_config(&shared.bootstrap, shared.connect_timeout)
        // librdkafka requires a group id; with assign() no group is joined or committed to.
        .set(
            "group.id",
            format!("sluice-loadgen-{}", plan.subscription_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .set("fetch.min.bytes", "1")
        .create()
        .map_err(|error| kafka_error("create a consumer", error))?;
    let topic = &shared.topics[plan.topic_index];
    let mut assignment = TopicPartitionList::new();
    for partition in &static_partitions(plan, &shared.workload) {
        // Positioned at the end known now, before producers start, so it reads exactly what
        // this run produces (a lazily resolved "end" could skip the first messages).
        let (_, end) = consumer
            .fetch_watermarks(topic, *partition, shared.connect_timeout)
            .map_err(|error| LoadgenError::Unreachable {
                bootstrap: shared.bootstrap.clone(),
                message: format!("end offset of {topic}/{partition}: {error}"),
            })?;
        assignment
            .add_partition_offset(topic, *partition, Offset::Offset(end))
            .map_err(|error| kafka_error("assign", error))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| kafka_error(format!("assign {topic} partitions"), error))?;
    Ok(consumer)
}

/// The partitions this consumer reads: the Kafka driver assigns them statically (partition `p`
/// to consumer `p mod consumers_per_subscription`) instead of joining a consumer group, so it
/// measures the same data path on any Kafka broker without depending on its group coordinator.
fn static_partitions(plan: &ConsumerPlan, workload: &crate::workload::Workload) -> Vec<i32> {
    let consumers = workload.consumers_per_subscription.max(1);
    (0..workload.partitions_per_topic)
        .filter(|partition| partition % consumers == plan.consumer_index)
        .map(|partition| i32::try_from(partition).unwrap_or(i32::MAX))
        .collect()
}

/// Runs one consumer to the end of the run on this thread.
pub(super) fn run(
    index: usize,
    plan: ConsumerPlan,
    shared: &Arc<SharedRun>,
    events: &Sender<ExecutorEvent>,
) -> Result<ExecutorOutcome, LoadgenError> {
    let control = &shared.control;
    let consumer = if static_partitions(&plan, &shared.workload).is_empty() {
        tracing::warn!(
            "consumer {} of subscription {} has no partition: more consumers than partitions",
            plan.consumer_index,
            plan.subscription_id
        );
        None
    } else {
        Some(assigned_consumer(&plan, shared)?)
    };
    let _ = events.send(ExecutorEvent::Ready { executor: index });
    wait_for_start(control, index)?;
    let mut windows = Windows::new(index, control);
    let mut outcome = ConsumerOutcome {
        subscription_id: plan.subscription_id,
        topic_index: plan.topic_index,
        ..ConsumerOutcome::default()
    };
    let mut errors = Vec::new();
    while !control.finishing() {
        windows.tick(control, events);
        let Some(consumer) = consumer.as_ref().filter(|_| control.consuming()) else {
            std::thread::sleep(Duration::from_millis(PAUSED_POLL_MS));
            continue;
        };
        match consumer.poll(Duration::from_millis(POLL_TIMEOUT_MS)) {
            None => {}
            Some(Ok(message)) => {
                let at_ns = control.now_ns();
                let value = message.payload().unwrap_or(&[]);
                record(
                    &mut windows,
                    &mut outcome,
                    message.partition(),
                    value,
                    at_ns,
                );
            }
            Some(Err(error)) => {
                if errors.len() < ERRORS_KEPT_MAX {
                    tracing::warn!("poll: {error}");
                    errors.push(format!("poll: {error}"));
                }
                std::thread::sleep(Duration::from_millis(POLL_ERROR_BACKOFF_MS));
            }
        }
    }
    windows.finish(control, events);
    Ok(ExecutorOutcome {
        producers: Vec::new(),
        consumers: vec![outcome],
        errors,
    })
}

/// Records one message: end-to-end latency, counts, and its sequence per producer.
fn record(
    windows: &mut Windows,
    outcome: &mut ConsumerOutcome,
    partition: i32,
    value: &[u8],
    at_ns: u64,
) {
    *outcome.consumed.entry(partition).or_default() += 1;
    windows.stats.counters.consumed += 1;
    windows.stats.counters.consumed_bytes += value.len() as u64;
    windows.live_consumed += 1;
    let Some(header) = PayloadHeader::read(value) else {
        outcome.foreign += 1;
        return;
    };
    windows
        .stats
        .end_to_end_latency
        .record_span_ns(header.intended_ns, at_ns);
    let first_time = outcome
        .received
        .entry((partition, header.producer_id))
        .or_default()
        .insert(header.sequence);
    if !first_time {
        *outcome.duplicates.entry(partition).or_default() += 1;
    }
}
