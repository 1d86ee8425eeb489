//! The producer's record accumulator: per-partition batches, closed by size or linger time,
//! drained into requests. Pure state driven by the caller's clock, no I/O, so batching is tested
//! deterministically.
//!
//! **Invariant:** a partition has at most one produce request in flight. Retried batches go back
//! to the front of their partition's queue, so records of one partition are appended in the
//! order they were sent, even across retries. A batch still waiting to be sent when its
//! delivery timeout passes fails here, without being sent.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::batch::{BatchBuilder, Compression};

use crate::delivery::BatchOutcome;
use crate::error::ClientError;
use crate::retry::{delivery_timeout_error, FailedBatch};

/// Smallest buffer a new batch starts with, in bytes.
const BATCH_CAPACITY_BYTES_MIN: usize = 4 * 1024;

/// A batch being filled.
#[derive(Debug)]
struct OpenBatch {
    builder: BatchBuilder,
    outcome: Rc<BatchOutcome>,
    opened_at: Instant,
    reserved_bytes: usize,
}

/// A built batch waiting to be sent (or re-sent).
#[derive(Debug)]
pub(crate) struct ReadyBatch {
    /// The encoded Kafka v2 batch.
    pub(crate) bytes: Bytes,
    /// Records in the batch.
    pub(crate) records: u32,
    /// Shared by the delivery futures of its records.
    pub(crate) outcome: Rc<BatchOutcome>,
    /// Producer buffer bytes the batch holds until it is answered.
    pub(crate) reserved_bytes: usize,
    /// Sends that failed with a retriable error so far.
    pub(crate) attempts: u32,
    /// Retry backoff: not sent again before this instant.
    pub(crate) not_before: Option<Instant>,
    /// When its first record was added: its delivery timeout counts from here.
    pub(crate) created_at: Instant,
    /// Why its last send failed, for the error of a batch that expires waiting to be resent.
    pub(crate) last_error: Option<String>,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    ready: VecDeque<ReadyBatch>,
    /// Outcomes of the batches of the request in flight; non-empty mutes the partition.
    in_flight: Vec<Rc<BatchOutcome>>,
    /// Size of the last batch closed, in bytes: the next batch's buffer starts at twice that
    /// (within the batch size), so filling it rarely reallocates while a slow partition does
    /// not hold a whole batch size of memory per batch.
    last_batch_bytes: usize,
}

impl PartitionQueue {
    /// When this partition next has something to send, if it is not muted.
    fn deadline(&self, linger: Duration, now: Instant) -> Option<Instant> {
        if !self.in_flight.is_empty() {
            return None;
        }
        if let Some(front) = self.ready.front() {
            return Some(front.not_before.unwrap_or(now));
        }
        self.open.as_ref().map(|open| open.opened_at + linger)
    }
}

/// What `append` did.
#[derive(Debug)]
pub(crate) struct Appended {
    /// The outcome of the batch the record went into.
    pub(crate) outcome: Rc<BatchOutcome>,
    /// The record's index in that batch.
    pub(crate) index: u32,
    /// A batch of this partition was closed (full): there is something to send now.
    pub(crate) closed_batch: bool,
    /// The record opened a new batch: a new linger deadline exists.
    pub(crate) opened_batch: bool,
}

/// The batches of one partition taken for one request.
#[derive(Debug)]
pub(crate) struct Drained {
    /// The topic.
    pub(crate) topic: Rc<str>,
    /// The partition.
    pub(crate) partition: i32,
    /// The batches, oldest first.
    pub(crate) batches: Vec<ReadyBatch>,
}

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordParts<'a> {
    pub(crate) timestamp_ms: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Buffer bytes reserved for the record (its estimated encoded size).
    pub(crate) reserved_bytes: usize,
}

/// Per-partition batches of one producer. Lives on the producer's executor.
#[derive(Debug)]
pub(crate) struct Accumulator {
    compression: Compression,
    batch_bytes_max: usize,
    linger: Duration,
    delivery_timeout: Duration,
    topics: HashMap<Rc<str>, Vec<PartitionQueue>>,
    /// Buffer bytes of batches that failed inside the accumulator (build errors, expired
    /// delivery timeouts), to be given back by the producer.
    released_bytes: usize,
}

impl Accumulator {
    /// An empty accumulator. Batches close at `batch_bytes_max` or `linger` after their first
    /// record; a batch not sent within `delivery_timeout` of its first record fails.
    pub(crate) fn new(
        compression: Compression,
        batch_bytes_max: usize,
        linger: Duration,
        delivery_timeout: Duration,
    ) -> Self {
        Accumulator {
            compression,
            batch_bytes_max,
            linger,
            delivery_timeout,
            topics: HashMap::new(),
            released_bytes: 0,
        }
    }

    fn queue_mut(&mut self, topic: &Rc<str>, partition: i32) -> &mut PartitionQueue {
        let queues = self.topics.entry(Rc::clone(topic)).or_default();
        let index = usize::try_from(partition).unwrap_or(0);
        if queues.len() <= index {
            queues.resize_with(index + 1, PartitionQueue::default);
        }
        &mut queues[index]
    }

    /// Adds a record to its partition's open batch, closing the batch first when the record
    /// would overflow it and after when the record filled it.
    pub(crate) fn append(
        &mut self,
        topic: &Rc<str>,
        partition: i32,
        record: RecordParts<'_>,
        now: Instant,
    ) -> Appended {
        let batch_bytes_max = self.batch_bytes_max;
        let compression = self.compression;
        let mut closed_batch = false;
        let queue = self.queue_mut(topic, partition);
        let overflows = queue.open.as_ref().is_some_and(|open| {
            !open.builder.is_empty()
                && open.builder.uncompressed_bytes() + record.reserved_bytes > batch_bytes_max
        });
        let mut released = 0;
        if overflows {
            released += close_open(queue);
            closed_batch = true;
        }
        let opened_batch = queue.open.is_none();
        let capacity_bytes = queue.last_batch_bytes.saturating_mul(2).clamp(
            BATCH_CAPACITY_BYTES_MIN,
            batch_bytes_max.max(BATCH_CAPACITY_BYTES_MIN),
        );
        let open = queue.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(compression, capacity_bytes),
            outcome: BatchOutcome::new(Rc::clone(topic), partition),
            opened_at: now,
            reserved_bytes: 0,
        });
        let index = open.builder.records_count() as u32;
        open.builder.push(
            record.timestamp_ms,
            record.key,
            record.value,
            record.headers,
        );
        open.reserved_bytes += record.reserved_bytes;
        let outcome = Rc::clone(&open.outcome);
        if open.builder.uncompressed_bytes() >= batch_bytes_max {
            released += close_open(queue);
            closed_batch = true;
        }
        self.released_bytes += released;
        Appended {
            outcome,
            index,
            closed_batch,
            opened_batch,
        }
    }

    /// Takes what is due for sending: every unmuted partition's ready batches (up to
    /// `partition_request_bytes_max` bytes, at least one batch) and its open batch once its
    /// linger time has passed. The partitions taken are muted until `complete` or `requeue`.
    /// Ready batches whose delivery timeout passed fail instead of being sent.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        partition_request_bytes_max: usize,
    ) -> Vec<Drained> {
        let linger = self.linger;
        let delivery_timeout = self.delivery_timeout;
        let mut drained = Vec::new();
        let mut released = 0;
        for (topic, queues) in &mut self.topics {
            for (partition, queue) in queues.iter_mut().enumerate() {
                if !queue.in_flight.is_empty() {
                    continue;
                }
                let lingered = queue
                    .open
                    .as_ref()
                    .is_some_and(|open| open.opened_at + linger <= now);
                if lingered && queue.ready.is_empty() {
                    released += close_open(queue);
                }
                released += expire_front(queue, topic, partition as i32, now, delivery_timeout);
                let batches = take_due(queue, now, partition_request_bytes_max);
                if batches.is_empty() {
                    continue;
                }
                queue.in_flight = batches
                    .iter()
                    .map(|batch| Rc::clone(&batch.outcome))
                    .collect();
                drained.push(Drained {
                    topic: Rc::clone(topic),
                    partition: partition as i32,
                    batches,
                });
            }
        }
        self.released_bytes += released;
        drained
    }

    /// Closes every open batch so it is sent at the next drain, and returns the outcomes of
    /// every batch not yet answered (open, ready and in flight): what a flush waits for.
    pub(crate) fn close_all_open(&mut self) -> Vec<Rc<BatchOutcome>> {
        let mut released = 0;
        let mut outcomes = Vec::new();
        for queue in self
            .topics
            .values_mut()
            .flat_map(|queues| queues.iter_mut())
        {
            if queue.open.is_some() {
                released += close_open(queue);
            }
            outcomes.extend(queue.in_flight.iter().cloned());
            outcomes.extend(queue.ready.iter().map(|batch| Rc::clone(&batch.outcome)));
        }
        self.released_bytes += released;
        outcomes
    }

    /// The request carrying this partition's batches was answered: unmute it.
    pub(crate) fn complete(&mut self, topic: &Rc<str>, partition: i32) {
        self.queue_mut(topic, partition).in_flight.clear();
    }

    /// Puts batches that failed with a retriable error back at the front of their partition's
    /// queue, in their original order, and unmutes the partition.
    pub(crate) fn requeue(&mut self, topic: &Rc<str>, partition: i32, batches: Vec<ReadyBatch>) {
        let queue = self.queue_mut(topic, partition);
        queue.in_flight.clear();
        for batch in batches.into_iter().rev() {
            queue.ready.push_front(batch);
        }
    }

    /// The earliest instant at which `drain` will have something to take (`now` when it has
    /// already), or `None` when nothing is waiting outside muted partitions.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.topics
            .values()
            .flat_map(|queues| queues.iter())
            .filter_map(|queue| queue.deadline(self.linger, now))
            .min()
    }

    /// True when no batch is open, waiting or in flight.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.topics
            .values()
            .flat_map(|queues| queues.iter())
            .all(|queue| {
                queue.open.is_none() && queue.ready.is_empty() && queue.in_flight.is_empty()
            })
    }

    /// Buffer bytes freed by batches that failed inside the accumulator since the last call.
    pub(crate) fn take_released_bytes(&mut self) -> usize {
        std::mem::take(&mut self.released_bytes)
    }

    /// Fails every batch that is not in flight (open and waiting) with `error`; returns the
    /// buffer bytes they held. Used when the producer is closed or dropped.
    pub(crate) fn fail_unsent(&mut self, error: &ClientError) -> usize {
        let mut released = std::mem::take(&mut self.released_bytes);
        for queue in self
            .topics
            .values_mut()
            .flat_map(|queues| queues.iter_mut())
        {
            if let Some(open) = queue.open.take() {
                open.outcome.complete(Err(error.duplicate()));
                released += open.reserved_bytes;
            }
            for batch in queue.ready.drain(..) {
                batch.outcome.complete(Err(error.duplicate()));
                released += batch.reserved_bytes;
            }
        }
        released
    }
}

/// Builds the open batch and queues it as ready. A batch that cannot be built fails its records
/// at once; the buffer bytes it held are returned.
fn close_open(queue: &mut PartitionQueue) -> usize {
    let Some(open) = queue.open.take() else {
        return 0;
    };
    let records = open.builder.records_count() as u32;
    queue.last_batch_bytes = open.builder.uncompressed_bytes();
    match open.builder.build() {
        Ok(bytes) => {
            queue.ready.push_back(ReadyBatch {
                bytes: bytes.freeze(),
                records,
                outcome: open.outcome,
                reserved_bytes: open.reserved_bytes,
                attempts: 0,
                not_before: None,
                created_at: open.opened_at,
                last_error: None,
            });
            0
        }
        Err(error) => {
            open.outcome.complete(Err(ClientError::Batch(error)));
            open.reserved_bytes
        }
    }
}

/// Fails the ready batches at the front of `queue` whose delivery timeout passed at `now` (the
/// queue is in creation order, so expired batches are always at the front); returns the buffer
/// bytes they held.
fn expire_front(
    queue: &mut PartitionQueue,
    topic: &str,
    partition: i32,
    now: Instant,
    delivery_timeout: Duration,
) -> usize {
    let mut released = 0;
    while let Some(front) = queue.ready.front() {
        if front.created_at + delivery_timeout > now {
            break;
        }
        let Some(batch) = queue.ready.pop_front() else {
            break;
        };
        let failed = FailedBatch {
            topic,
            partition,
            attempts: batch.attempts,
            created_at: batch.created_at,
        };
        let reason = batch
            .last_error
            .unwrap_or_else(|| "it was never sent".to_string());
        batch
            .outcome
            .complete(Err(delivery_timeout_error(failed, reason, now)));
        released += batch.reserved_bytes;
    }
    released
}

/// The ready batches at the front of `queue` that are due, up to `bytes_max` (at least one).
fn take_due(queue: &mut PartitionQueue, now: Instant, bytes_max: usize) -> Vec<ReadyBatch> {
    let mut taken = Vec::new();
    let mut bytes = 0;
    while let Some(front) = queue.ready.front() {
        let due = front.not_before.is_none_or(|not_before| not_before <= now);
        let fits = taken.is_empty() || bytes + front.bytes.len() <= bytes_max;
        if !due || !fits {
            break;
        }
        bytes += front.bytes.len();
        taken.extend(queue.ready.pop_front());
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::{decode_records, validate_batch};

    const REQUEST_BYTES_MAX: usize = 1024 * 1024;

    /// A delivery timeout no test reaches unless it means to.
    const TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

    fn record(value: &[u8]) -> RecordParts<'_> {
        RecordParts {
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(value),
            headers: &[],
            reserved_bytes: value.len() + 24,
        }
    }

    fn values_of(batch: &ReadyBatch) -> Vec<Vec<u8>> {
        validate_batch(&batch.bytes, usize::MAX).unwrap();
        decode_records(&batch.bytes)
            .unwrap()
            .into_iter()
            .map(|record| record.value.unwrap().to_vec())
            .collect()
    }

    // Proves a batch is closed by size: 1 KiB records into 4 KiB batches give batches that
    // never exceed the limit, hold every record once, in order, and are sendable at once.
    #[test]
    fn batches_close_when_full() {
        let start = Instant::now();
        let mut accumulator =
            Accumulator::new(Compression::None, 4096, Duration::from_secs(60), TIMEOUT);
        let topic: Rc<str> = Rc::from("t");
        let mut closed = 0;
        for index in 0..20_u8 {
            let value = vec![index; 1000];
            closed += usize::from(
                accumulator
                    .append(&topic, 0, record(&value), start)
                    .closed_batch,
            );
        }
        assert!(
            closed >= 4,
            "20 KiB of records closed only {closed} 4 KiB batches"
        );
        assert_eq!(accumulator.next_deadline(start), Some(start));
        let drained = accumulator.drain(start, REQUEST_BYTES_MAX);
        assert_eq!(drained.len(), 1);
        let mut values = Vec::new();
        for batch in &drained[0].batches {
            assert!(
                batch.bytes.len() <= 4096,
                "batch of {} bytes",
                batch.bytes.len()
            );
            values.extend(values_of(batch));
        }
        // The last, still open batch is not due before its linger time.
        assert!(
            accumulator.next_deadline(start).is_none(),
            "muted partition has no deadline"
        );
        accumulator.complete(&topic, 0);
        assert_eq!(
            accumulator.next_deadline(start),
            Some(start + Duration::from_secs(60))
        );
        let rest = accumulator.drain(start + Duration::from_secs(60), REQUEST_BYTES_MAX);
        values.extend(rest[0].batches.iter().flat_map(values_of));
        let expected: Vec<Vec<u8>> = (0..20_u8).map(|index| vec![index; 1000]).collect();
        assert_eq!(values, expected);
    }

    // Proves a batch that is not full is sent only once its linger time has passed.
    #[test]
    fn open_batch_is_due_after_linger() {
        let start = Instant::now();
        let linger = Duration::from_millis(5);
        let mut accumulator = Accumulator::new(Compression::Zstd, 1 << 20, linger, TIMEOUT);
        let topic: Rc<str> = Rc::from("t");
        let appended = accumulator.append(&topic, 2, record(b"hello"), start);
        assert!(appended.opened_batch && !appended.closed_batch);
        assert!(
            !accumulator
                .append(&topic, 2, record(b"world"), start)
                .opened_batch
        );
        assert!(accumulator
            .drain(start + Duration::from_millis(4), REQUEST_BYTES_MAX)
            .is_empty());
        assert_eq!(accumulator.next_deadline(start), Some(start + linger));
        let drained = accumulator.drain(start + linger, REQUEST_BYTES_MAX);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].partition, 2);
        assert_eq!(drained[0].batches.len(), 1);
        assert_eq!(drained[0].batches[0].records, 2);
        assert_eq!(
            values_of(&drained[0].batches[0]),
            vec![b"hello".to_vec(), b"world".to_vec()]
        );
    }

    // Proves a partition with a request in flight is muted, and that requeued batches are sent
    // again before newer ones, after their backoff: order survives a retry.
    #[test]
    fn in_flight_partition_is_muted_and_requeue_keeps_order() {
        let start = Instant::now();
        let mut accumulator = Accumulator::new(Compression::None, 64, Duration::ZERO, TIMEOUT);
        let topic: Rc<str> = Rc::from("t");
        accumulator.append(&topic, 0, record(b"first-record-with-some-length"), start);
        let mut first = accumulator.drain(start, REQUEST_BYTES_MAX);
        assert_eq!(first.len(), 1);
        accumulator.append(&topic, 0, record(b"second"), start);
        assert!(
            accumulator.drain(start, REQUEST_BYTES_MAX).is_empty(),
            "muted partition drained"
        );
        let mut batches = std::mem::take(&mut first[0].batches);
        batches[0].attempts += 1;
        batches[0].not_before = Some(start + Duration::from_millis(100));
        accumulator.requeue(&topic, 0, batches);
        // The retried batch blocks newer ones until its backoff passed.
        assert!(accumulator.drain(start, REQUEST_BYTES_MAX).is_empty());
        let later = start + Duration::from_millis(100);
        let retried = accumulator.drain(later, REQUEST_BYTES_MAX);
        let values: Vec<Vec<u8>> = retried[0].batches.iter().flat_map(values_of).collect();
        assert_eq!(
            values,
            vec![
                b"first-record-with-some-length".to_vec(),
                b"second".to_vec()
            ]
        );
        assert_eq!(retried[0].batches[0].attempts, 1);
    }

    // Proves flush closes every open batch and reports every unanswered outcome, and that the
    // accumulator is idle only once the requests were answered.
    #[test]
    fn flush_closes_open_batches() {
        let start = Instant::now();
        let mut accumulator = Accumulator::new(
            Compression::Zstd,
            1 << 20,
            Duration::from_secs(3600),
            TIMEOUT,
        );
        let topic: Rc<str> = Rc::from("t");
        for partition in 0..3 {
            accumulator.append(&topic, partition, record(b"v"), start);
        }
        let outcomes = accumulator.close_all_open();
        assert_eq!(outcomes.len(), 3);
        let drained = accumulator.drain(start, REQUEST_BYTES_MAX);
        assert_eq!(drained.len(), 3);
        assert!(!accumulator.is_idle());
        for batch in &drained {
            accumulator.complete(&batch.topic, batch.partition);
        }
        assert!(accumulator.is_idle());
    }

    // Proves a record larger than the batch limit still goes out, alone in its batch, after
    // the batch it overflowed; and that the per-request bound takes at least one batch.
    #[test]
    fn oversized_record_gets_its_own_batch() {
        let start = Instant::now();
        let mut accumulator =
            Accumulator::new(Compression::None, 1024, Duration::from_secs(1), TIMEOUT);
        let topic: Rc<str> = Rc::from("t");
        accumulator.append(&topic, 0, record(b"small"), start);
        let big = vec![7_u8; 4096];
        let appended = accumulator.append(&topic, 0, record(&big), start);
        assert!(appended.closed_batch);
        assert_eq!(appended.index, 0);
        let drained = accumulator.drain(start, 100);
        assert_eq!(
            drained[0].batches.len(),
            1,
            "only one batch fits a 100-byte request"
        );
        assert_eq!(values_of(&drained[0].batches[0]), vec![b"small".to_vec()]);
        accumulator.complete(&topic, 0);
        let drained = accumulator.drain(start, 100);
        assert_eq!(drained[0].batches.len(), 1);
        assert_eq!(values_of(&drained[0].batches[0]), vec![big]);
    }

    // Proves a ready batch whose delivery timeout passed while it waited (here behind a request
    // in flight) fails with DeliveryTimeout instead of being sent, gives its buffer bytes back,
    // and lets the younger batch behind it go out.
    #[test]
    fn expired_batches_fail_instead_of_being_sent() {
        let start = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut accumulator = Accumulator::new(Compression::None, 64, Duration::ZERO, timeout);
        let topic: Rc<str> = Rc::from("t");
        let value = |tag: u8| vec![tag; 70];
        let (a, b, c) = (value(b'a'), value(b'b'), value(b'c'));
        accumulator.append(&topic, 0, record(&a), start);
        assert_eq!(accumulator.drain(start, REQUEST_BYTES_MAX).len(), 1);
        let expired = accumulator.append(&topic, 0, record(&b), start);
        let later = start + Duration::from_secs(5);
        accumulator.append(&topic, 0, record(&c), later);
        accumulator.take_released_bytes();
        accumulator.complete(&topic, 0);
        let drained = accumulator.drain(start + Duration::from_secs(11), REQUEST_BYTES_MAX);
        let values: Vec<Vec<u8>> = drained[0].batches.iter().flat_map(values_of).collect();
        assert_eq!(values, vec![c]);
        assert_eq!(accumulator.take_released_bytes(), 70 + 24);
        let result = futures_lite::future::block_on(crate::delivery::DeliveryFuture::new(
            expired.outcome,
            0,
            0,
        ));
        match result {
            Err(ClientError::DeliveryTimeout {
                elapsed_ms,
                attempts,
                last_error,
                ..
            }) => {
                assert_eq!((elapsed_ms, attempts), (11_000, 1));
                assert!(last_error.contains("never sent"), "{last_error}");
            }
            other => panic!("expected a delivery timeout, got {other:?}"),
        }
    }

    // Proves closing the producer fails unsent batches and returns their buffer bytes.
    #[test]
    fn fail_unsent_releases_buffer() {
        let start = Instant::now();
        let mut accumulator =
            Accumulator::new(Compression::None, 1 << 20, Duration::from_secs(1), TIMEOUT);
        let topic: Rc<str> = Rc::from("t");
        let appended = accumulator.append(&topic, 0, record(b"abc"), start);
        let released = accumulator.fail_unsent(&ClientError::Closed);
        assert_eq!(released, 3 + 24);
        assert!(appended.outcome.is_done());
        assert!(accumulator.is_idle());
    }
}
