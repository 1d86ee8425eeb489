//! A load generator producer: paces sends by its schedule, stamps each payload with its intended
//! send time and sequence, and records publish latency from the intended time when the broker
//! acknowledges.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use sluice_client::{
    Acks, Client, DeliveryFuture, Partitioner, Producer, ProducerConfig, RecordRef,
};
use sluice_storage::batch::Compression;

use super::{ExecutorLocal, ProducerOutcome};
use crate::admin::with_deadline;
use crate::payload::{KeyGenerator, PayloadHeader};
use crate::plan::ProducerPlan;
use crate::schedule::{Pace, Pacer, RateSchedule};
use crate::stats::SequenceSet;
use crate::workload::{AcksSetting, CompressionSetting, Workload};

/// Shortest pacing sleep. A message due sooner waits this long and goes out a little late; the
/// delay is counted in its latency (measured from the intended time), never hidden, and sleeping
/// less would spend more CPU on timers than on sending.
pub const PACING_SLEEP_MIN_US: u64 = 100;
/// Longest pacing sleep, so a slow producer still notices the end of the run promptly.
pub const PACING_SLEEP_MAX_MS: u64 = 50;
/// Sends in a row after which a producer lets the executor's other tasks (acknowledgements,
/// consumers, window reports) run even if the client never made it wait.
pub const SEND_BURST_MAX: u32 = 64;
/// Pause after a send the client refused outright, so a dead broker does not spin the CPU.
pub const SEND_ERROR_BACKOFF_MS: u64 = 10;
/// Longest wait for the last acknowledgements when a producer stops.
pub const PRODUCER_FLUSH_TIMEOUT_S: u64 = 60;
/// Interval at which a stopping producer checks whether its last acknowledgements were counted.
const OUTSTANDING_POLL_MS: u64 = 1;

/// What one send carries besides its bookkeeping ([`InFlight`]).
struct Outgoing<'a> {
    key: Option<&'a [u8]>,
    /// The value in pieces: the payload header, then a window of the pool.
    value: &'a [&'a [u8]],
    /// The record timestamp: the load generator's clock reading for this send, so the client
    /// reads no clock of its own.
    timestamp_ms: i64,
}

/// Chooses each message's partition the way Kafka clients do: by murmur2 of the key when there is
/// one, otherwise sticky (fill one partition's batch, then move to the next). The load generator
/// picks the partition itself so it can number messages per partition.
#[derive(Debug, Clone)]
pub struct PartitionChooser {
    partitions: i32,
    records_per_batch: u64,
    current: i32,
    in_current: u64,
}

impl PartitionChooser {
    /// A chooser over `partitions` partitions that moves on after `records_per_batch` unkeyed
    /// records, starting at `first` (mod partitions) so producers start on different partitions.
    pub fn new(partitions: u32, records_per_batch: u64, first: u32) -> PartitionChooser {
        let partitions = partitions.max(1) as i32;
        PartitionChooser {
            partitions,
            records_per_batch: records_per_batch.max(1),
            current: (first % partitions as u32) as i32,
            in_current: 0,
        }
    }

    /// The partition for the next message.
    pub fn choose(&mut self, key: Option<&[u8]>) -> i32 {
        if let Some(key) = key {
            return sluice_client::partition_for_key(key, self.partitions);
        }
        if self.in_current >= self.records_per_batch {
            self.current = (self.current + 1) % self.partitions;
            self.in_current = 0;
        }
        self.in_current += 1;
        self.current
    }
}

/// The client settings a workload asks for.
pub fn producer_config(workload: &Workload) -> ProducerConfig {
    ProducerConfig {
        acks: match workload.acks {
            AcksSetting::None => Acks::None,
            AcksSetting::Leader => Acks::Leader,
            AcksSetting::All => Acks::All,
        },
        compression: match workload.compression {
            CompressionSetting::None => Compression::None,
            CompressionSetting::Zstd => Compression::Zstd,
        },
        batch_bytes_max: workload.batch_bytes,
        linger_ms: workload.linger_ms,
        partitioner: Partitioner::Default,
        enable_idempotence: workload.idempotence && workload.acks != AcksSetting::None,
        ..ProducerConfig::default()
    }
}

/// One producer, ready to run on this executor.
pub(super) struct ProducerTask {
    plan: ProducerPlan,
    topic: String,
    producer: Rc<Producer>,
}

/// Acknowledgement bookkeeping of one producer, shared with its acknowledgement tasks.
#[derive(Debug, Default)]
struct AckState {
    acked: RefCell<Vec<SequenceSet>>,
    outstanding: Cell<u64>,
    failed: Cell<u64>,
}

/// Messages sent one after another into the same client batch: they are acknowledged
/// together, so one task awaits one delivery future for all of them (a task and a waker per
/// message cost more than sending the message). The task starts with the group's first
/// message; later messages join its list while the batch is still open, which is always before
/// the batch can be answered, so every latency is taken when the answer arrives.
struct AckGroup {
    /// A delivery future of the group's batch, to compare with the next message's.
    first: DeliveryFuture,
    messages: Rc<RefCell<Vec<InFlight>>>,
}

/// One message in flight: what its acknowledgement task needs to record.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    intended_ns: u64,
    partition: i32,
    sequence: u64,
    bytes: u64,
}

pub(super) fn prepare(
    client: &Rc<Client>,
    plans: &[ProducerPlan],
    local: &ExecutorLocal,
) -> Vec<ProducerTask> {
    plans
        .iter()
        .map(|plan| ProducerTask {
            plan: plan.clone(),
            topic: local.shared.topics[plan.topic_index].clone(),
            producer: Rc::new(Producer::new(
                client.clone(),
                producer_config(&local.shared.workload),
            )),
        })
        .collect()
}

impl ProducerTask {
    /// Sends by the schedule until the run stops producing, then flushes and reports.
    pub(super) async fn run(self, local: Rc<ExecutorLocal>, start_ns: u64) -> ProducerOutcome {
        let workload = &local.shared.workload;
        let partitions = workload.partitions_per_topic;
        let state = Rc::new(AckState {
            acked: RefCell::new(vec![SequenceSet::new(); partitions as usize]),
            ..AckState::default()
        });
        let records_per_batch = (workload.batch_bytes / workload.message_size.max(1)) as u64;
        let mut chooser =
            PartitionChooser::new(partitions, records_per_batch, self.plan.producer_id);
        let seed = u64::from(self.plan.producer_id) ^ start_ns;
        let mut keys = KeyGenerator::new(workload.keys, seed);
        let mut cursor = local.shared.pool.cursor(self.plan.producer_id);
        let mut pacer = Pacer::new(RateSchedule::fixed(
            self.plan.rate_per_s,
            start_ns,
            self.plan.stagger,
        ));
        let mut next_sequence = vec![0u64; partitions as usize];
        let mut burst = 0;
        let mut group: Option<AckGroup> = None;
        while local.control().producing() {
            let now_ns = local.control().now_ns();
            match pacer.poll(now_ns) {
                Pace::WaitUntil { until_ns } => {
                    burst = 0;
                    let wait_us = ((until_ns - now_ns) / 1_000)
                        .clamp(PACING_SLEEP_MIN_US, PACING_SLEEP_MAX_MS * 1_000);
                    glommio::timer::sleep(Duration::from_micros(wait_us)).await;
                }
                Pace::SendNow { intended_ns, .. } => {
                    let key = keys.next_key();
                    let partition = chooser.choose(key.as_deref());
                    let sequence = next_sequence[partition as usize];
                    next_sequence[partition as usize] += 1;
                    let header = PayloadHeader {
                        intended_ns,
                        sequence,
                        producer_id: self.plan.producer_id,
                    };
                    let header = header.to_bytes();
                    let value = [&header[..], cursor.next_body()];
                    let flight = InFlight {
                        intended_ns,
                        partition,
                        sequence,
                        bytes: (value[0].len() + value[1].len()) as u64,
                    };
                    let message = Outgoing {
                        key: key.as_deref(),
                        value: &value,
                        timestamp_ms: local.control().unix_ms(now_ns),
                    };
                    group = self.send_one(&local, &state, message, flight, group).await;
                    burst += 1;
                    if burst >= SEND_BURST_MAX {
                        burst = 0;
                        futures_lite::future::yield_now().await;
                    }
                    glommio::yield_if_needed().await;
                }
            }
        }
        drop(group);
        self.finish(&local, &state, pacer.sent()).await
    }

    /// Sends one message; returns the acknowledgement group it joined (a message whose batch
    /// differs from the open group's closes that group and starts its own).
    async fn send_one(
        &self,
        local: &Rc<ExecutorLocal>,
        state: &Rc<AckState>,
        message: Outgoing<'_>,
        flight: InFlight,
        group: Option<AckGroup>,
    ) -> Option<AckGroup> {
        {
            let mut window = local.window.borrow_mut();
            window.counters.sent += 1;
            window.counters.sent_bytes += flight.bytes;
        }
        let record = RecordRef {
            topic: &self.topic,
            partition: Some(flight.partition),
            key: message.key,
            value: message.value,
            timestamp_ms: Some(message.timestamp_ms),
            headers: &[],
        };
        match self.producer.send_ref(record).await {
            Ok(delivery) => {
                state.outstanding.set(state.outstanding.get() + 1);
                match group {
                    Some(open) if open.first.same_batch(&delivery) => {
                        open.messages.borrow_mut().push(flight);
                        Some(open)
                    }
                    _ => Some(start_group(delivery, flight, local, state)),
                }
            }
            Err(error) => {
                state.failed.set(state.failed.get() + 1);
                local.window.borrow_mut().counters.failed += 1;
                local.note_error(
                    &format!("send to {}/{}", self.topic, flight.partition),
                    &error,
                );
                glommio::timer::sleep(Duration::from_millis(SEND_ERROR_BACKOFF_MS)).await;
                group
            }
        }
    }

    async fn finish(self, local: &ExecutorLocal, state: &AckState, sent: u64) -> ProducerOutcome {
        let flush_timeout = Duration::from_secs(PRODUCER_FLUSH_TIMEOUT_S);
        match with_deadline(flush_timeout, self.producer.flush()).await {
            Some(Ok(())) => {}
            Some(Err(error)) => local.note_error(&format!("flush {}", self.topic), &error),
            None => local.note_error(
                &format!("flush {}", self.topic),
                &"no answer within the flush timeout",
            ),
        }
        // Acknowledgement tasks record their message after the delivery future resolves; wait
        // until they all ran, so the counts below are final.
        let waited = with_deadline(flush_timeout, async {
            while state.outstanding.get() > 0 {
                glommio::timer::sleep(Duration::from_millis(OUTSTANDING_POLL_MS)).await;
            }
        })
        .await;
        if waited.is_none() {
            local.note_error(
                &format!("producer {}", self.plan.producer_id),
                &"acknowledgements still missing at the flush timeout",
            );
        }
        if let Err(error) = self.producer.close().await {
            local.note_error(&format!("close producer on {}", self.topic), &error);
        }
        local.publish_live();
        local.control().producer_finished();
        ProducerOutcome {
            producer_id: self.plan.producer_id,
            topic_index: self.plan.topic_index,
            acked: state.acked.take(),
            sent,
            failed: state.failed.get(),
        }
    }
}

/// Starts a group with its first message: the task awaiting the batch's answer runs from now.
fn start_group(
    delivery: DeliveryFuture,
    flight: InFlight,
    local: &Rc<ExecutorLocal>,
    state: &Rc<AckState>,
) -> AckGroup {
    let messages = Rc::new(RefCell::new(vec![flight]));
    let first = delivery.clone_for_batch();
    glommio::spawn_local(acknowledge(
        delivery,
        messages.clone(),
        local.clone(),
        state.clone(),
    ))
    .detach();
    AckGroup { first, messages }
}

/// Records the outcome of every message of a group once its batch is answered.
async fn acknowledge(
    delivery: DeliveryFuture,
    messages: Rc<RefCell<Vec<InFlight>>>,
    local: Rc<ExecutorLocal>,
    state: Rc<AckState>,
) {
    let result = delivery.await;
    let now_ns = local.control().now_ns();
    let messages = messages.take();
    let count = messages.len() as u64;
    match result {
        Ok(_) => {
            let mut acked_bytes = 0;
            {
                let mut window = local.window.borrow_mut();
                let mut sets = state.acked.borrow_mut();
                for flight in &messages {
                    window
                        .publish_latency
                        .record_span_ns(flight.intended_ns, now_ns);
                    if let Some(set) = sets.get_mut(flight.partition as usize) {
                        set.insert(flight.sequence);
                    }
                    acked_bytes += flight.bytes;
                }
                window.counters.acked += count;
                window.counters.acked_bytes += acked_bytes;
            }
            for flight in &messages {
                local.count_acked(flight.bytes);
            }
        }
        Err(error) => {
            state.failed.set(state.failed.get() + count);
            local.window.borrow_mut().counters.failed += count;
            let partition = messages.first().map_or(-1, |flight| flight.partition);
            local.note_error(&format!("delivery to partition {partition}"), &error);
        }
    }
    state.outstanding.set(state.outstanding.get() - count);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves unkeyed messages stick to one partition for a batch's worth of records and then move
    // on round-robin, and keyed messages follow the client's murmur2 partitioner, by choosing
    // partitions for both kinds.
    #[test]
    fn partition_choice() {
        let mut chooser = PartitionChooser::new(3, 2, 4);
        let unkeyed: Vec<i32> = (0..8).map(|_| chooser.choose(None)).collect();
        assert_eq!(unkeyed, vec![1, 1, 2, 2, 0, 0, 1, 1]);
        for key in [&b"a"[..], b"key-17", b"orders-42"] {
            let partition = chooser.choose(Some(key));
            assert_eq!(partition, sluice_client::partition_for_key(key, 3));
            assert!((0..3).contains(&partition));
        }
    }
}
