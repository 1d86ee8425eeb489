//! The producer's record accumulator: per-partition batches, closed by size or linger time,
//! drained into requests. Pure state driven by the caller's clock, no I/O, so batching is tested
//! deterministically.
//!
//! Two modes:
//! - At least once (idempotence off): a partition has at most one produce request in flight,
//!   carrying any number of its batches. Retried batches go back to the front of their
//!   partition's queue, so records of one partition are appended in the order they were sent.
//! - Idempotent: every request carries one batch per partition, and up to `max_in_flight`
//!   requests of a partition are in flight; behind the first only batches already closed (full,
//!   or by a flush) are sent, while a lingered open batch waits for the partition's answers and
//!   keeps filling. A batch gets its producer id, epoch and base sequence when it is first
//!   drained (see `idempotence`) and keeps them when resent. A batch that comes back for a
//!   retry is put back in sequence order, and while the front of the queue is such a batch the
//!   partition sends one request at a time (as Kafka's client does), so the broker sees the
//!   sequences in order again.
//!
//! **Invariant:** a partition's batches are sent in the order they were closed, each resend
//! before any later batch; a batch still waiting to be sent when its delivery timeout passes
//! fails here, without being sent.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::batch::{BatchBuilder, Compression, RecordsCrc};

use crate::delivery::BatchOutcome;
use crate::error::ClientError;
use crate::idempotence::{BatchStamp, PartitionSequences, ProducerIdentity};
use crate::retry::{delivery_timeout_error, FailedBatch};
use crate::FastMap;

/// Smallest buffer a new batch starts with, in bytes.
const BATCH_CAPACITY_BYTES_MIN: usize = 4 * 1024;
/// How fast a partition's recent batch size forgets a large batch: by this fraction of itself
/// with each later, smaller one. Halving (2) let a run of batches that linger closed early
/// shrink the next buffer enough that a full batch after them reallocated, and copied, about a
/// third of the bytes it carried at max rate; an eighth keeps a busy partition's buffers whole.
const RECENT_BATCH_DECAY_DIVISOR: usize = 8;

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
    /// The CRC of what follows its header, for an unsealed batch (its stamp seals it).
    pub(crate) records_crc: Option<RecordsCrc>,
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
    /// Its producer id, epoch and sequence once sent by an idempotent producer.
    pub(crate) stamp: Option<BatchStamp>,
}

/// A batch in flight, as its partition sees it.
#[derive(Debug)]
struct InFlight {
    outcome: Rc<BatchOutcome>,
    stamp: Option<BatchStamp>,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    ready: VecDeque<ReadyBatch>,
    /// The batches of the requests in flight, oldest first.
    in_flight: Vec<InFlight>,
    /// Sequence numbers (idempotent mode).
    sequences: PartitionSequences,
    /// Size of the recent batches, in bytes: the largest closed batch, less an eighth
    /// (`RECENT_BATCH_DECAY_DIVISOR`) with each later one that was smaller. The next batch's
    /// buffer starts at twice that (within the batch size), so filling it rarely reallocates
    /// (and copies) it, even right after batches that linger closed nearly empty, while a
    /// partition that stays slow stops holding a whole batch size of memory per batch within a
    /// few dozen batches.
    recent_batch_bytes: usize,
}

/// When a partition may send: the per-partition rules of both modes.
#[derive(Debug, Clone, Copy)]
struct SendRules {
    /// Requests in flight per partition in idempotent mode; `None` when not idempotent.
    idempotent_in_flight: Option<usize>,
    /// The producer's identity (idempotent mode), `None` until InitProducerId answered.
    identity: Option<ProducerIdentity>,
}

impl SendRules {
    /// True when `queue` may start another request now (whatever is due in it).
    fn may_send(&self, queue: &PartitionQueue) -> bool {
        let Some(in_flight_max) = self.idempotent_in_flight else {
            return queue.in_flight.is_empty();
        };
        if self.identity.is_none() || queue.sequences.reset_pending() {
            return false;
        }
        if queue.in_flight.is_empty() {
            return true;
        }
        let retrying = queue
            .ready
            .front()
            .is_some_and(|front| front.stamp.is_some());
        if retrying {
            return false;
        }
        // Behind a request in flight only an already closed batch (full, or by a flush) is
        // pipelined: a lingered open one keeps filling until the partition's requests are
        // answered, as without idempotence, so the requests per byte stay as few (the extra
        // in-flight slots are for load that fills batches faster than a request round trip).
        queue.in_flight.len() < in_flight_max && !queue.ready.is_empty()
    }

    /// True when closed batches get their CRC at once; false when idempotent, since their
    /// stamp (`BatchStamp::write`) computes it.
    fn seals_batches(&self) -> bool {
        self.idempotent_in_flight.is_none()
    }

    /// True when `queue` sends nothing only because it waits for an identity (the producer's
    /// first, or a new one after a reset): its waiting batches still expire meanwhile.
    fn waits_for_identity(&self, queue: &PartitionQueue) -> bool {
        self.idempotent_in_flight.is_some()
            && (self.identity.is_none() || queue.sequences.reset_pending())
    }
}

impl PartitionQueue {
    /// When this partition next has something to send, if it may send.
    fn deadline(&self, rules: SendRules, linger: Duration, now: Instant) -> Option<Instant> {
        if !rules.may_send(self) {
            return None;
        }
        if let Some(front) = self.ready.front() {
            return Some(front.not_before.unwrap_or(now));
        }
        self.open.as_ref().map(|open| open.opened_at + linger)
    }

    /// True when a stamped batch sent before `stamp`, of the same identity, is unanswered.
    fn predecessor_pending(&self, stamp: &BatchStamp) -> bool {
        let earlier = |other: &Option<BatchStamp>| {
            other.is_some_and(|other| {
                other.identity == stamp.identity && other.ordinal < stamp.ordinal
            })
        };
        self.in_flight.iter().any(|batch| earlier(&batch.stamp))
            || self.ready.iter().any(|batch| earlier(&batch.stamp))
    }

    /// Forgets the in-flight entries of `batches`.
    fn land(&mut self, batches: &[ReadyBatch]) {
        self.in_flight.retain(|entry| {
            !batches
                .iter()
                .any(|batch| Rc::ptr_eq(&batch.outcome, &entry.outcome))
        });
    }

    /// Puts a batch back in sequence order: before the first batch stamped after it, or
    /// before the first unstamped one.
    fn insert_in_order(&mut self, batch: ReadyBatch, ordinal: u64) {
        let position = self
            .ready
            .iter()
            .position(|other| other.stamp.is_none_or(|stamp| stamp.ordinal > ordinal))
            .unwrap_or(self.ready.len());
        self.ready.insert(position, batch);
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
    /// The value as pieces to concatenate; `None` is a null value.
    pub(crate) value: Option<&'a [&'a [u8]]>,
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
    rules: SendRules,
    topics: FastMap<Rc<str>, Vec<PartitionQueue>>,
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
            rules: SendRules {
                idempotent_in_flight: None,
                identity: None,
            },
            topics: FastMap::default(),
            released_bytes: 0,
        }
    }

    /// Switches to idempotent mode with up to `in_flight_max` requests per partition. Nothing
    /// is sent before `set_identity`.
    pub(crate) fn idempotent(mut self, in_flight_max: usize) -> Self {
        self.rules.idempotent_in_flight = Some(in_flight_max.max(1));
        self
    }

    /// The producer's identity: partitions without one (new, or reset) take it.
    pub(crate) fn set_identity(&mut self, identity: ProducerIdentity) {
        self.rules.identity = Some(identity);
    }

    fn queue_mut(&mut self, topic: &Rc<str>, partition: i32) -> &mut PartitionQueue {
        let queues = self.topics.entry(Rc::clone(topic)).or_default();
        let index = usize::try_from(partition).unwrap_or(0);
        if queues.len() <= index {
            queues.resize_with(index + 1, PartitionQueue::default);
        }
        &mut queues[index]
    }

    /// [`append_with`](Self::append_with) at a known time.
    #[cfg(test)]
    pub(crate) fn append(
        &mut self,
        topic: &Rc<str>,
        partition: i32,
        record: RecordParts<'_>,
        now: Instant,
    ) -> Appended {
        self.append_with(topic, partition, record, || now)
    }

    /// Adds a record to its partition's open batch, closing the batch first when the record
    /// would overflow it and after when the record filled it. `now` is read only when the
    /// record opens a batch (its linger starts then), not for every record.
    pub(crate) fn append_with(
        &mut self,
        topic: &Rc<str>,
        partition: i32,
        record: RecordParts<'_>,
        now: impl FnOnce() -> Instant,
    ) -> Appended {
        let batch_bytes_max = self.batch_bytes_max;
        let compression = self.compression;
        let seal = self.rules.seals_batches();
        let mut closed_batch = false;
        let queue = self.queue_mut(topic, partition);
        let overflows = queue.open.as_ref().is_some_and(|open| {
            !open.builder.is_empty()
                && open.builder.uncompressed_bytes() + record.reserved_bytes > batch_bytes_max
        });
        let mut released = 0;
        if overflows {
            released += close_open(queue, seal);
            closed_batch = true;
        }
        let opened_batch = queue.open.is_none();
        let capacity_bytes = queue.recent_batch_bytes.saturating_mul(2).clamp(
            BATCH_CAPACITY_BYTES_MIN,
            batch_bytes_max.max(BATCH_CAPACITY_BYTES_MIN),
        );
        let open = queue.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(compression, capacity_bytes),
            outcome: BatchOutcome::new(Rc::clone(topic), partition),
            opened_at: now(),
            reserved_bytes: 0,
        });
        let index = open.builder.records_count() as u32;
        open.builder.push_parts(
            record.timestamp_ms,
            record.key,
            record.value,
            record.headers,
        );
        open.reserved_bytes += record.reserved_bytes;
        let outcome = Rc::clone(&open.outcome);
        if open.builder.uncompressed_bytes() >= batch_bytes_max {
            released += close_open(queue, seal);
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

    /// Takes what is due for sending from every partition that may send (see `SendRules`):
    /// its ready batches (up to `partition_request_bytes_max` bytes, at least one batch; one
    /// batch when idempotent, stamped with its sequence) and its open batch once its linger time
    /// has passed. Ready batches whose delivery timeout passed fail instead of being sent.
    #[cfg(test)]
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        partition_request_bytes_max: usize,
    ) -> Vec<Drained> {
        self.drain_where(now, partition_request_bytes_max, |_, _| true)
    }

    /// `drain`, for the partitions `destination_free` accepts only (their broker can take
    /// another request now). The others keep their open batch open, so it goes on filling while
    /// their broker is busy (as Kafka's producer drains only the nodes with a free request
    /// slot): under load fewer, larger batches are sent, not a request per linger.
    pub(crate) fn drain_where(
        &mut self,
        now: Instant,
        partition_request_bytes_max: usize,
        mut destination_free: impl FnMut(&str, i32) -> bool,
    ) -> Vec<Drained> {
        let (linger, delivery_timeout, rules) = (self.linger, self.delivery_timeout, self.rules);
        let mut drained = Vec::new();
        let mut released = 0;
        for (topic, queues) in &mut self.topics {
            for (partition, queue) in queues.iter_mut().enumerate() {
                let may_send = rules.may_send(queue) && destination_free(topic, partition as i32);
                if !may_send && !rules.waits_for_identity(queue) {
                    continue;
                }
                let lingered = queue
                    .open
                    .as_ref()
                    .is_some_and(|open| open.opened_at + linger <= now);
                if lingered && queue.ready.is_empty() {
                    released += close_open(queue, rules.seals_batches());
                }
                released += expire_front(queue, topic, partition as i32, now, delivery_timeout);
                if !may_send {
                    continue;
                }
                let batches = match rules.identity {
                    Some(identity) if rules.idempotent_in_flight.is_some() => {
                        let (batches, failed) = take_stamped(queue, now, identity);
                        released += failed;
                        batches
                    }
                    _ => take_due(queue, now, partition_request_bytes_max),
                };
                if batches.is_empty() {
                    continue;
                }
                queue.in_flight.extend(batches.iter().map(|batch| InFlight {
                    outcome: Rc::clone(&batch.outcome),
                    stamp: batch.stamp,
                }));
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
        let seal = self.rules.seals_batches();
        for queue in self
            .topics
            .values_mut()
            .flat_map(|queues| queues.iter_mut())
        {
            if queue.open.is_some() {
                released += close_open(queue, seal);
            }
            outcomes.extend(
                queue
                    .in_flight
                    .iter()
                    .map(|batch| Rc::clone(&batch.outcome)),
            );
            outcomes.extend(queue.ready.iter().map(|batch| Rc::clone(&batch.outcome)));
        }
        self.released_bytes += released;
        outcomes
    }

    /// These batches of the partition were answered (acknowledged or failed for good): they
    /// are no longer in flight.
    pub(crate) fn complete(&mut self, topic: &Rc<str>, partition: i32, batches: &[ReadyBatch]) {
        self.queue_mut(topic, partition).land(batches);
    }

    /// Puts batches that failed with a retriable error back in their partition's queue, ahead
    /// of every batch sent after them (in sequence order when idempotent).
    pub(crate) fn requeue(&mut self, topic: &Rc<str>, partition: i32, batches: Vec<ReadyBatch>) {
        let queue = self.queue_mut(topic, partition);
        queue.land(&batches);
        for batch in batches.into_iter().rev() {
            match batch.stamp {
                Some(stamp) => queue.insert_in_order(batch, stamp.ordinal),
                None => queue.ready.push_front(batch),
            }
        }
    }

    /// True when a batch of the partition stamped before `stamp` (same identity) is still
    /// unanswered: a sequence error of the batch stamped `stamp` is then only a consequence.
    pub(crate) fn predecessor_pending(
        &mut self,
        topic: &Rc<str>,
        partition: i32,
        stamp: &BatchStamp,
    ) -> bool {
        self.queue_mut(topic, partition).predecessor_pending(stamp)
    }

    /// The broker lost the partition's sequences: send nothing more of it until
    /// `reset_sequences`.
    pub(crate) fn require_reset(&mut self, topic: &Rc<str>, partition: i32) {
        self.queue_mut(topic, partition).sequences.require_reset();
    }

    /// Partitions waiting for a new identity with nothing in flight any more: ready for
    /// `reset_sequences`.
    pub(crate) fn resets_due(&self) -> Vec<(Rc<str>, i32)> {
        let mut due = Vec::new();
        for (topic, queues) in &self.topics {
            for (partition, queue) in queues.iter().enumerate() {
                if queue.sequences.reset_pending() && queue.in_flight.is_empty() {
                    due.push((Rc::clone(topic), partition as i32));
                }
            }
        }
        due
    }

    /// Restarts the partition's sequences at 0 under `identity`: its waiting batches lose their
    /// stamps and are stamped again, in the same order, when next drained.
    pub(crate) fn reset_sequences(
        &mut self,
        topic: &Rc<str>,
        partition: i32,
        identity: ProducerIdentity,
    ) {
        let queue = self.queue_mut(topic, partition);
        queue.sequences.reset(identity);
        for batch in &mut queue.ready {
            batch.stamp = None;
        }
    }

    /// The earliest instant at which `drain` will have something to take (`now` when it has
    /// already), or `None` when nothing is waiting outside partitions that may not send.
    #[cfg(test)]
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.next_deadline_where(now, |_, _| true)
    }

    /// `next_deadline` of the partitions `destination_free` accepts (see `drain_where`): a
    /// partition whose broker is busy has none; the sender is woken when a request ends.
    pub(crate) fn next_deadline_where(
        &self,
        now: Instant,
        mut destination_free: impl FnMut(&str, i32) -> bool,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (topic, queues) in &self.topics {
            for (partition, queue) in queues.iter().enumerate() {
                let Some(deadline) = queue.deadline(self.rules, self.linger, now) else {
                    continue;
                };
                if next.is_some_and(|next| next <= deadline)
                    || !destination_free(topic, partition as i32)
                {
                    continue;
                }
                next = Some(deadline);
            }
        }
        next
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
    /// buffer bytes they held. Used when the producer is closed, dropped or fenced.
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

/// Builds the open batch and queues it as ready; `seal` computes its CRC (an idempotent
/// producer's batches get theirs when stamped). A batch that cannot be built fails its records
/// at once; the buffer bytes it held are returned.
fn close_open(queue: &mut PartitionQueue, seal: bool) -> usize {
    let Some(open) = queue.open.take() else {
        return 0;
    };
    let records = open.builder.records_count() as u32;
    let recent = queue.recent_batch_bytes;
    queue.recent_batch_bytes = open
        .builder
        .uncompressed_bytes()
        .max(recent - recent / RECENT_BATCH_DECAY_DIVISOR);
    let built = if seal {
        open.builder.build().map(|bytes| (bytes, None))
    } else {
        open.builder
            .build_unsealed()
            .map(|(bytes, records)| (bytes, Some(records)))
    };
    match built {
        Ok((bytes, records_crc)) => {
            queue.ready.push_back(ReadyBatch {
                bytes: bytes.freeze(),
                records_crc,
                records,
                outcome: open.outcome,
                reserved_bytes: open.reserved_bytes,
                attempts: 0,
                not_before: None,
                created_at: open.opened_at,
                last_error: None,
                stamp: None,
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

/// The front ready batch of `queue` if it is due, stamped with the partition's next sequence
/// unless it kept its stamp from an earlier send. A batch whose header cannot be stamped fails;
/// the buffer bytes it held are returned alongside.
fn take_stamped(
    queue: &mut PartitionQueue,
    now: Instant,
    identity: ProducerIdentity,
) -> (Vec<ReadyBatch>, usize) {
    let due = queue
        .ready
        .front()
        .is_some_and(|front| front.not_before.is_none_or(|not_before| not_before <= now));
    let Some(mut batch) = due.then(|| queue.ready.pop_front()).flatten() else {
        return (Vec::new(), 0);
    };
    if batch.stamp.is_some() {
        return (vec![batch], 0);
    }
    let stamp = queue.sequences.stamp_next(identity, batch.records);
    let mut bytes = std::mem::take(&mut batch.bytes)
        .try_into_mut()
        .unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
    match stamp.write(&mut bytes, batch.records_crc) {
        Ok(()) => {
            batch.bytes = bytes.freeze();
            batch.stamp = Some(stamp);
            (vec![batch], 0)
        }
        Err(error) => {
            batch.outcome.complete(Err(ClientError::Batch(error)));
            (Vec::new(), batch.reserved_bytes)
        }
    }
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
        // The parts borrow a one-piece list that must outlive the call; tests leak it (bytes).
        let pieces: &[&[u8]] = Box::leak(Box::new([value]));
        RecordParts {
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(pieces),
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
        accumulator.complete(&topic, 0, &drained[0].batches);
        assert_eq!(
            accumulator.next_deadline(start),
            Some(start + Duration::from_secs(60))
        );
        let rest = accumulator.drain(start + Duration::from_secs(60), REQUEST_BYTES_MAX);
        values.extend(rest[0].batches.iter().flat_map(values_of));
        let expected: Vec<Vec<u8>> = (0..20_u8).map(|index| vec![index; 1000]).collect();
        assert_eq!(values, expected);
    }

    // Proves a partition whose broker is busy keeps its batch open past the linger time, with
    // no deadline (the sender would otherwise spin), so records keep joining it, and the whole
    // batch goes out as one once the broker is free.
    #[test]
    fn busy_destination_keeps_the_batch_open() {
        let start = Instant::now();
        let linger = Duration::from_millis(1);
        let mut accumulator = Accumulator::new(Compression::None, 1 << 20, linger, TIMEOUT);
        let topic: Rc<str> = Rc::from("t");
        accumulator.append(&topic, 0, record(b"a"), start);
        let later = start + Duration::from_millis(10);
        let busy = |_: &str, _: i32| false;
        assert!(accumulator
            .drain_where(later, REQUEST_BYTES_MAX, busy)
            .is_empty());
        assert_eq!(accumulator.next_deadline_where(later, busy), None);
        let appended = accumulator.append(&topic, 0, record(b"b"), later);
        assert!(!appended.opened_batch, "the lingered batch was closed");
        let drained = accumulator.drain_where(later, REQUEST_BYTES_MAX, |_, _| true);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].batches.len(), 1);
        assert_eq!(drained[0].batches[0].records, 2);
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
            accumulator.complete(&batch.topic, batch.partition, &batch.batches);
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
        accumulator.complete(&topic, 0, &drained[0].batches);
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
        let first = accumulator.drain(start, REQUEST_BYTES_MAX);
        assert_eq!(first.len(), 1);
        let expired = accumulator.append(&topic, 0, record(&b), start);
        let later = start + Duration::from_secs(5);
        accumulator.append(&topic, 0, record(&c), later);
        accumulator.take_released_bytes();
        accumulator.complete(&topic, 0, &first[0].batches);
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

    const ID_A: ProducerIdentity = ProducerIdentity {
        producer_id: 11,
        epoch: 0,
    };
    const ID_B: ProducerIdentity = ProducerIdentity {
        producer_id: 12,
        epoch: 0,
    };

    /// An idempotent accumulator (5 in flight) whose batches close at every 2-byte record.
    fn idempotent() -> Accumulator {
        let mut accumulator =
            Accumulator::new(Compression::None, 8, Duration::ZERO, TIMEOUT).idempotent(5);
        accumulator.set_identity(ID_A);
        accumulator
    }

    /// Drains until nothing more comes, as the sender does; one batch per partition each time.
    fn drain_all(accumulator: &mut Accumulator, now: Instant) -> Vec<ReadyBatch> {
        let mut batches = Vec::new();
        loop {
            let drained = accumulator.drain(now, REQUEST_BYTES_MAX);
            if drained.is_empty() {
                return batches;
            }
            for partition in drained {
                assert_eq!(
                    partition.batches.len(),
                    1,
                    "one batch per idempotent request"
                );
                batches.extend(partition.batches);
            }
        }
    }

    /// (producer id, base sequence) of a sent batch.
    type Stamped = (i64, i32);

    fn sequence_of(batch: &ReadyBatch) -> Stamped {
        let header = validate_batch(&batch.bytes, usize::MAX).unwrap();
        (header.producer_id, header.base_sequence)
    }

    // Proves an idempotent partition sends nothing before the producer has an identity, then
    // up to 5 single-batch requests at once, each stamped (header and CRC) with consecutive
    // sequences; the sixth waits until one of them is answered.
    #[test]
    fn idempotent_partition_keeps_five_in_flight_with_consecutive_sequences() {
        let start = Instant::now();
        let mut accumulator =
            Accumulator::new(Compression::None, 8, Duration::ZERO, TIMEOUT).idempotent(5);
        let topic: Rc<str> = Rc::from("t");
        for index in 0..7_u8 {
            accumulator.append(&topic, 0, record(&[index; 8]), start);
        }
        assert!(accumulator.drain(start, REQUEST_BYTES_MAX).is_empty());
        assert_eq!(accumulator.next_deadline(start), None);
        accumulator.set_identity(ID_A);
        let sent = drain_all(&mut accumulator, start);
        let sequences: Vec<(i64, i32)> = sent.iter().map(sequence_of).collect();
        assert_eq!(sequences, vec![(11, 0), (11, 1), (11, 2), (11, 3), (11, 4)]);
        assert_eq!(
            accumulator.next_deadline(start),
            None,
            "five in flight: full"
        );
        accumulator.complete(&topic, 0, &sent[..1]);
        let next = drain_all(&mut accumulator, start);
        assert_eq!(
            next.iter().map(sequence_of).collect::<Vec<_>>(),
            vec![(11, 5)]
        );
        assert_eq!(values_of(&next[0]), vec![vec![5_u8; 8]]);
    }

    // Proves a partition with a request in flight pipelines only full batches: a lingered
    // batch stays open (and keeps filling) until the partition's requests are answered, so a
    // linger shorter than the round trip does not multiply the requests.
    #[test]
    fn idempotent_partition_pipelines_only_full_batches() {
        let start = Instant::now();
        let linger = Duration::from_millis(1);
        let mut accumulator =
            Accumulator::new(Compression::None, 128, linger, TIMEOUT).idempotent(5);
        accumulator.set_identity(ID_A);
        let topic: Rc<str> = Rc::from("t");
        accumulator.append(&topic, 0, record(&[0; 8]), start);
        let first = drain_all(&mut accumulator, start + 2 * linger);
        assert_eq!(first.len(), 1, "lingered, nothing in flight: sent");
        accumulator.append(&topic, 0, record(&[1; 8]), start + 2 * linger);
        let now = start + 4 * linger;
        assert!(
            drain_all(&mut accumulator, now).is_empty(),
            "lingered, one in flight"
        );
        assert_eq!(accumulator.next_deadline(now), None);
        // A record that does not fit closes the open batch; one that fills a batch closes it.
        accumulator.append(&topic, 0, record(&[2; 100]), now);
        let full = drain_all(&mut accumulator, now);
        let values: Vec<Vec<Vec<u8>>> = full.iter().map(values_of).collect();
        assert_eq!(values, vec![vec![vec![1; 8]], vec![vec![2; 100]]]);
        accumulator.append(&topic, 0, record(&[3; 8]), now);
        accumulator.complete(&topic, 0, &first);
        let later = now + 2 * linger;
        assert!(
            drain_all(&mut accumulator, later).is_empty(),
            "still in flight"
        );
        accumulator.complete(&topic, 0, &full);
        let last = drain_all(&mut accumulator, later);
        assert_eq!(values_of(&last[0]), vec![vec![3_u8; 8]]);
    }

    // Proves a retry keeps its sequence and goes out before everything sent after it, alone:
    // when three in-flight batches come back for a retry (in any order), they are resent one
    // request at a time in sequence order, and new batches go out in parallel after the last.
    #[test]
    fn idempotent_retries_resend_in_sequence_order_one_at_a_time() {
        let start = Instant::now();
        let mut accumulator = idempotent();
        let topic: Rc<str> = Rc::from("t");
        for index in 0..3_u8 {
            accumulator.append(&topic, 0, record(&[index; 8]), start);
        }
        accumulator.close_all_open();
        let mut sent = drain_all(&mut accumulator, start);
        assert_eq!(sent.len(), 3);
        accumulator.append(&topic, 0, record(&[3; 8]), start);
        accumulator.append(&topic, 0, record(&[4; 8]), start);
        // Answers arrive in order, but requeue order must not matter: last one first.
        let third = sent.pop().unwrap();
        accumulator.requeue(&topic, 0, vec![third]);
        for batch in std::mem::take(&mut sent) {
            accumulator.requeue(&topic, 0, vec![batch]);
        }
        // Each round drains what may go out, then the broker answers all of it.
        let mut rounds = Vec::new();
        loop {
            let batches = drain_all(&mut accumulator, start);
            if batches.is_empty() {
                break;
            }
            accumulator.complete(&topic, 0, &batches);
            rounds.push(batches.iter().map(sequence_of).collect::<Vec<_>>());
        }
        // The retries go out one at a time; new (full) batches may follow the last retry at once.
        let expected = vec![
            vec![(11, 0)],
            vec![(11, 1)],
            vec![(11, 2), (11, 3), (11, 4)],
        ];
        assert_eq!(rounds, expected);
    }

    // Proves the predecessor check and the reset: a sequence error behind an unanswered
    // earlier batch is only a consequence; without one the partition stops sending, is due for
    // a reset once nothing of it is in flight, and then restamps its waiting batches from 0
    // under the new identity, in their original order.
    #[test]
    fn sequence_reset_restamps_waiting_batches_under_a_new_identity() {
        let start = Instant::now();
        let mut accumulator = idempotent();
        let topic: Rc<str> = Rc::from("t");
        for index in 0..3_u8 {
            accumulator.append(&topic, 0, record(&[index; 8]), start);
        }
        accumulator.close_all_open();
        let mut sent = drain_all(&mut accumulator, start);
        let stamps: Vec<BatchStamp> = sent.iter().map(|batch| batch.stamp.unwrap()).collect();
        assert!(!accumulator.predecessor_pending(&topic, 0, &stamps[0]));
        assert!(accumulator.predecessor_pending(&topic, 0, &stamps[1]));
        let acknowledged = sent.remove(0);
        accumulator.complete(&topic, 0, &[acknowledged]);
        assert!(!accumulator.predecessor_pending(&topic, 0, &stamps[1]));
        accumulator.require_reset(&topic, 0);
        let rejected = sent.remove(0);
        accumulator.requeue(&topic, 0, vec![rejected]);
        assert!(accumulator.resets_due().is_empty(), "one still in flight");
        accumulator.append(&topic, 0, record(&[9; 8]), start);
        assert!(accumulator.drain(start, REQUEST_BYTES_MAX).is_empty());
        let last = sent.remove(0);
        accumulator.requeue(&topic, 0, vec![last]);
        assert_eq!(accumulator.resets_due(), vec![(Rc::clone(&topic), 0)]);
        accumulator.set_identity(ID_B);
        accumulator.reset_sequences(&topic, 0, ID_B);
        let mut resent = Vec::new();
        loop {
            let batches = drain_all(&mut accumulator, start);
            if batches.is_empty() {
                break;
            }
            accumulator.complete(&topic, 0, &batches);
            resent.extend(
                batches
                    .iter()
                    .map(|batch| (sequence_of(batch), values_of(batch))),
            );
        }
        let expected: Vec<(Stamped, Vec<Vec<u8>>)> = vec![
            ((12, 0), vec![vec![1; 8]]),
            ((12, 1), vec![vec![2; 8]]),
            ((12, 2), vec![vec![9; 8]]),
        ];
        assert_eq!(resent, expected);
    }

    // Proves batches waiting for the producer's identity still expire: with no InitProducerId
    // answer, a batch older than the delivery timeout fails instead of waiting forever (a
    // flush would otherwise never return).
    #[test]
    fn batches_waiting_for_an_identity_expire() {
        let start = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut accumulator =
            Accumulator::new(Compression::None, 8, Duration::ZERO, timeout).idempotent(5);
        let topic: Rc<str> = Rc::from("t");
        let appended = accumulator.append(&topic, 0, record(&[1; 8]), start);
        assert!(accumulator.drain(start, REQUEST_BYTES_MAX).is_empty());
        assert!(!appended.outcome.is_done());
        assert!(accumulator
            .drain(start + timeout, REQUEST_BYTES_MAX)
            .is_empty());
        assert!(appended.outcome.is_done());
        assert_eq!(accumulator.take_released_bytes(), 8 + 24);
        assert!(accumulator.is_idle());
    }
}
