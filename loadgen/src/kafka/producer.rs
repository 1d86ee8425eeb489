//! A Kafka-driver producer: the native driver's pacing, payloads, keys and partition choice,
//! sent through librdkafka. Each message carries its intended send time, partition, sequence
//! and size as librdkafka's per-message opaque; the delivery callback (on librdkafka's own
//! thread) timestamps the acknowledgement and passes it to this producer's thread, which
//! records publish latency from the intended time.

use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::{base_config, kafka_error, wait_for_start, Windows};
use crate::control::RunControl;
use crate::error::LoadgenError;
use crate::payload::{KeyGenerator, PayloadHeader};
use crate::plan::ProducerPlan;
use crate::schedule::{Pace, Pacer, RateSchedule};
use crate::stats::SequenceSet;
use crate::worker::{
    ExecutorEvent, ExecutorOutcome, PartitionChooser, ProducerOutcome, SharedRun, ERRORS_KEPT_MAX,
    PRODUCER_FLUSH_TIMEOUT_S,
};
use crate::workload::{AcksSetting, CompressionSetting, Workload};

/// Messages librdkafka may hold for one producer (queued or in flight); also the bound of the
/// acknowledgement channel, so the delivery thread never waits on it for long.
pub const PRODUCER_QUEUE_MESSAGES_MAX: usize = 100_000;
/// Bytes librdkafka may hold for one producer, in KiB (librdkafka's unit).
pub const PRODUCER_QUEUE_KIB_MAX: usize = 256 * 1024;
/// Shortest pacing sleep, as in the native driver.
const PACING_SLEEP_MIN_US: u64 = 100;
/// Longest pacing sleep, so the end of the run is noticed promptly.
const PACING_SLEEP_MAX_MS: u64 = 50;
/// Pause when librdkafka's queue is full before trying the same message again.
const QUEUE_FULL_BACKOFF_US: u64 = 100;
/// How often a finishing producer looks for its last acknowledgements.
const OUTSTANDING_POLL_MS: u64 = 1;

/// One message in flight: what its acknowledgement records.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    intended_ns: u64,
    partition: i32,
    sequence: u64,
    bytes: u64,
}

/// An acknowledgement (or failure) as the delivery callback saw it.
struct Ack {
    flight: InFlight,
    failure: Option<String>,
    at_ns: u64,
}

/// librdkafka's callbacks for one producer: delivery reports go to the producer's thread.
struct AckContext {
    acks: SyncSender<Ack>,
    control: Arc<RunControl>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, flight: Self::DeliveryOpaque) {
        let at_ns = self.control.now_ns();
        let failure = result.as_ref().err().map(|(error, _)| error.to_string());
        // The receiver only goes away once the producer stopped waiting for acknowledgements.
        let _ = self.acks.send(Ack {
            flight: *flight,
            failure,
            at_ns,
        });
    }
}

/// librdkafka producer settings for the workload.
fn producer_config(shared: &SharedRun) -> rdkafka::config::ClientConfig {
    let workload: &Workload = &shared.workload;
    let mut config = base_config(&shared.bootstrap, shared.connect_timeout);
    let acks = match workload.acks {
        AcksSetting::None => "0",
        AcksSetting::Leader => "1",
        AcksSetting::All => "all",
    };
    // librdkafka's idempotent producer needs acks=all; the workload's switch decides, as it
    // does for the native driver.
    let idempotence = workload.idempotence && workload.acks == AcksSetting::All;
    let compression = match workload.compression {
        CompressionSetting::None => "none",
        CompressionSetting::Zstd => "zstd",
    };
    config
        .set("acks", acks)
        .set("compression.type", compression)
        .set("linger.ms", workload.linger_ms.to_string())
        .set("batch.size", workload.batch_bytes.to_string())
        .set("enable.idempotence", idempotence.to_string())
        .set(
            "queue.buffering.max.messages",
            PRODUCER_QUEUE_MESSAGES_MAX.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            PRODUCER_QUEUE_KIB_MAX.to_string(),
        )
        .set(
            "message.timeout.ms",
            (PRODUCER_FLUSH_TIMEOUT_S * 1_000).to_string(),
        );
    config
}

/// What one producer thread keeps.
struct State {
    windows: Windows,
    acked: Vec<SequenceSet>,
    outstanding: u64,
    failed: u64,
    errors: Vec<String>,
}

impl State {
    fn note_error(&mut self, context: &str, error: &dyn std::fmt::Display) {
        if self.errors.len() < ERRORS_KEPT_MAX {
            let message = format!("{context}: {error}");
            tracing::warn!("{message}");
            self.errors.push(message);
        }
    }

    fn record(&mut self, ack: Ack) {
        self.outstanding -= 1;
        let flight = ack.flight;
        match ack.failure {
            None => {
                let window = &mut self.windows.stats;
                window.counters.acked += 1;
                window.counters.acked_bytes += flight.bytes;
                window
                    .publish_latency
                    .record_span_ns(flight.intended_ns, ack.at_ns);
                if let Some(set) = self.acked.get_mut(flight.partition as usize) {
                    set.insert(flight.sequence);
                }
                self.windows.live_acked += 1;
                self.windows.live_acked_bytes += flight.bytes;
            }
            Some(error) => {
                self.failed += 1;
                self.windows.stats.counters.failed += 1;
                self.note_error(
                    &format!("delivery to partition {}", flight.partition),
                    &error,
                );
            }
        }
    }

    fn drain(&mut self, acks: &Receiver<Ack>) {
        loop {
            match acks.try_recv() {
                Ok(ack) => self.record(ack),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// Runs one producer to the end of the run on this thread.
pub(super) fn run(
    index: usize,
    plan: ProducerPlan,
    shared: &Arc<SharedRun>,
    events: &Sender<ExecutorEvent>,
) -> Result<ExecutorOutcome, LoadgenError> {
    let control = &shared.control;
    let (sender, acks) = std::sync::mpsc::sync_channel(PRODUCER_QUEUE_MESSAGES_MAX);
    let context = AckContext {
        acks: sender,
        control: control.clone(),
    };
    let producer: ThreadedProducer<AckContext> = producer_config(shared)
        .create_with_context(context)
        .map_err(|error| kafka_error("create a producer", error))?;
    let topic = shared.topics[plan.topic_index].clone();
    producer
        .client()
        .fetch_metadata(Some(&topic), shared.connect_timeout)
        .map_err(|error| LoadgenError::Unreachable {
            bootstrap: shared.bootstrap.clone(),
            message: error.to_string(),
        })?;
    let partitions = shared.workload.partitions_per_topic;
    let mut state = State {
        windows: Windows::new(index, control),
        acked: vec![SequenceSet::new(); partitions as usize],
        outstanding: 0,
        failed: 0,
        errors: Vec::new(),
    };
    control.producer_started();
    let _ = events.send(ExecutorEvent::Ready { executor: index });
    let start_ns = wait_for_start(control, index)?;
    state.windows = Windows::new(index, control);
    let sent = send_until_stopped(
        &producer, &topic, &plan, shared, events, &acks, &mut state, start_ns,
    );
    finish(&producer, &acks, &mut state, control, events);
    control.producer_finished();
    state.windows.finish(control, events);
    Ok(ExecutorOutcome {
        producers: vec![ProducerOutcome {
            producer_id: plan.producer_id,
            topic_index: plan.topic_index,
            acked: state.acked,
            sent,
            failed: state.failed,
        }],
        consumers: Vec::new(),
        errors: state.errors,
    })
}

/// Sends by the schedule until the run stops producing; returns how many messages went out.
#[allow(clippy::too_many_arguments)]
fn send_until_stopped(
    producer: &ThreadedProducer<AckContext>,
    topic: &str,
    plan: &ProducerPlan,
    shared: &SharedRun,
    events: &Sender<ExecutorEvent>,
    acks: &Receiver<Ack>,
    state: &mut State,
    start_ns: u64,
) -> u64 {
    let control = &shared.control;
    let workload = &shared.workload;
    let records_per_batch = (workload.batch_bytes / workload.message_size.max(1)) as u64;
    let mut chooser = PartitionChooser::new(
        workload.partitions_per_topic,
        records_per_batch,
        plan.producer_id,
    );
    let mut keys = KeyGenerator::new(workload.keys, u64::from(plan.producer_id) ^ start_ns);
    let mut cursor = shared.pool.cursor(plan.producer_id);
    let mut pacer = Pacer::new(RateSchedule::fixed(plan.rate_per_s, start_ns, plan.stagger));
    let mut next_sequence = vec![0u64; workload.partitions_per_topic as usize];
    while control.producing() {
        state.drain(acks);
        state.windows.tick(control, events);
        let now_ns = control.now_ns();
        match pacer.poll(now_ns) {
            Pace::WaitUntil { until_ns } => {
                let wait_us = ((until_ns - now_ns) / 1_000)
                    .clamp(PACING_SLEEP_MIN_US, PACING_SLEEP_MAX_MS * 1_000);
                std::thread::sleep(Duration::from_micros(wait_us));
            }
            Pace::SendNow { intended_ns, .. } => {
                let key = keys.next_key();
                let partition = chooser.choose(key.as_deref());
                let sequence = next_sequence[partition as usize];
                next_sequence[partition as usize] += 1;
                let header = PayloadHeader {
                    intended_ns,
                    sequence,
                    producer_id: plan.producer_id,
                };
                let value = cursor.next_payload(&header);
                let flight = InFlight {
                    intended_ns,
                    partition,
                    sequence,
                    bytes: value.len() as u64,
                };
                send_one(
                    producer,
                    topic,
                    key.as_deref(),
                    &value,
                    flight,
                    acks,
                    state,
                    control,
                );
            }
        }
    }
    pacer.sent()
}

/// Hands one message to librdkafka, waiting while its queue is full.
#[allow(clippy::too_many_arguments)]
fn send_one(
    producer: &ThreadedProducer<AckContext>,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
    flight: InFlight,
    acks: &Receiver<Ack>,
    state: &mut State,
    control: &RunControl,
) {
    state.windows.stats.counters.sent += 1;
    state.windows.stats.counters.sent_bytes += flight.bytes;
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(flight))
        .partition(flight.partition)
        .payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => {
                state.outstanding += 1;
                return;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if !control.finishing() =>
            {
                state.drain(acks);
                std::thread::sleep(Duration::from_micros(QUEUE_FULL_BACKOFF_US));
                record = returned;
            }
            Err((error, _)) => {
                state.failed += 1;
                state.windows.stats.counters.failed += 1;
                state.note_error(&format!("send to {topic}/{}", flight.partition), &error);
                return;
            }
        }
    }
}

/// Flushes librdkafka's queue and waits (bounded) until every acknowledgement was recorded.
fn finish(
    producer: &ThreadedProducer<AckContext>,
    acks: &Receiver<Ack>,
    state: &mut State,
    control: &RunControl,
    events: &Sender<ExecutorEvent>,
) {
    let timeout = Duration::from_secs(PRODUCER_FLUSH_TIMEOUT_S);
    if let Err(error) = producer.flush(timeout) {
        state.note_error("flush", &error);
    }
    let deadline = Instant::now() + timeout;
    while state.outstanding > 0 && Instant::now() < deadline {
        match acks.recv_timeout(Duration::from_millis(OUTSTANDING_POLL_MS)) {
            Ok(ack) => state.record(ack),
            Err(_) => state.windows.tick(control, events),
        }
    }
    if state.outstanding > 0 {
        state.note_error(
            "producer",
            &"acknowledgements still missing at the flush timeout",
        );
    }
}
