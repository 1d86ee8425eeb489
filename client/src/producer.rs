//! `Producer`: batches records per partition and sends them to the owning shard.
//!
//! Delivery contract:
//! - Retries: a batch whose request failed with a retriable error (a lost connection, a
//!   timeout, a leader change, not enough in-sync replicas) is sent again after a metadata
//!   refresh and a backoff, for as long as it is younger than `delivery_timeout_ms` (see
//!   `retry`); a NotLeaderOrFollower answer that names the new leader sends it there at once.
//!   Each record's delivery future resolves with its offset once acknowledged.
//! - Idempotent (the default, `enable_idempotence`): the sender task gets a producer id and
//!   epoch (InitProducerId) before its first request; each batch gets its partition's next
//!   sequence when first sent and keeps it when resent (see `idempotence`), so the leader
//!   appends it once and answers a retry of an appended batch with the original offsets. Up to
//!   `max_in_flight_requests_per_partition` (5) requests per partition are in flight (behind
//!   the first only batches closed full: a lingered batch waits for the answers); after a
//!   retriable error, the batches that come back are resent in sequence order, one request at
//!   a time, before any newer batch. A sequence error behind an unanswered earlier batch is only
//!   its consequence and is resent after it; one with nothing before it means the broker lost
//!   the partition's producer state, and the partition continues under a new producer id from
//!   sequence 0 (KIP-360), once nothing of it is in flight. That reset is the one window in
//!   which a record may be written twice: a batch whose earlier send was appended but not
//!   answered, still waiting when the reset happens, is sent again under the new id (Kafka has
//!   the same window). INVALID_PRODUCER_EPOCH (fenced) fails the producer: every unanswered
//!   record and every later send fail with it.
//! - Not idempotent: at least once. A partition has one request in flight, so its records are
//!   appended in send order, but a batch the broker appended before the failure is written
//!   twice; and, as with Kafka's non-idempotent producer, a request the client gave up on
//!   (timed out, or its connection lost) may still be appended after its retry and after later
//!   batches, leaving an out-of-order duplicate.
//! - Per broker port at most `inflight_requests_max` (5) produce requests are in flight, as
//!   Kafka's `max.in.flight.requests.per.connection`; the sender drains only the partitions
//!   whose broker has a free slot, so while it is busy their open batches keep filling (past
//!   the linger time) and go out together in its next request: under load a few large batches
//!   rather than one small request per linger.
//!
//! **Invariant:** a partition's batches reach the broker in the order they were closed (see
//! `accumulator`): resends go ahead of newer batches, and with idempotence the leader's
//! sequence check turns any reordering in transit into a resend.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;
use sluice_net::api::ErrorCode;
use sluice_net::messages::{ProducePartition, ProduceRequest, ProduceResponse};

use crate::accumulator::{Accumulator, Drained, RecordParts};
use crate::client::Client;
use crate::config::{Acks, ProducerConfig};
use crate::delivery::DeliveryFuture;
use crate::error::ClientError;
use crate::idempotence::{classify, ProducerIdentity, SequenceVerdict};
use crate::notify::Notify;
use crate::partitioner::PartitionChooser;
use crate::retry::{produce_retry, FailedBatch, ProduceRetryPolicy, RetryDecision};
use crate::FastMap;

/// Estimated bytes a record adds to a batch beyond its key, value and header bytes (length,
/// attributes, timestamp and offset deltas, field lengths), used to size batches and the buffer.
const RECORD_OVERHEAD_BYTES: usize = 24;

/// Bytes one produce request may carry, over all its partitions. Kept well under the frame
/// limit so a request never reaches the broker's `frame_bytes_max`.
const PRODUCE_REQUEST_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Extra time the client waits for a produce response beyond the broker-side timeout it asked
/// for, in milliseconds, so the broker's own timeout answer arrives first.
const PRODUCE_RESPONSE_MARGIN_MS: u64 = 5_000;

/// One record to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: String,
    /// The partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// The key (hashed with murmur2 by the default partitioner).
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// Create time in Unix milliseconds; `None` for now.
    pub timestamp_ms: Option<i64>,
    /// Record headers.
    pub headers: Vec<(String, Bytes)>,
}

impl ProducerRecord {
    /// A record of `topic` with only a value.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: value.into(),
            ..ProducerRecord::default()
        }
    }
}

/// A record to send whose fields are borrowed and whose value is given as pieces, encoded as
/// their concatenation: [`Producer::send_ref`] copies each piece once, straight into the
/// record's batch, so a caller that assembles values (a header and a body, say) needs no buffer
/// of its own and the producer no owned copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordRef<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// The key (hashed with murmur2 by the default partitioner).
    pub key: Option<&'a [u8]>,
    /// The value, as pieces to concatenate.
    pub value: &'a [&'a [u8]],
    /// Create time in Unix milliseconds; `None` for now.
    pub timestamp_ms: Option<i64>,
    /// Record headers; a `None` value is a null header value.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl RecordRef<'_> {
    /// Bytes of the value: the pieces' lengths summed.
    fn value_len(&self) -> usize {
        self.value.iter().map(|piece| piece.len()).sum()
    }

    /// The estimated encoded size of the record in a batch.
    fn estimated_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(key, value)| key.len() + value.map_or(0, <[u8]>::len) + 2 * 5)
            .sum();
        RECORD_OVERHEAD_BYTES + self.key.map_or(0, <[u8]>::len) + self.value_len() + headers
    }
}

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// State shared by the producer handle, its sender task and its request tasks. Lives on the
/// producer's executor.
struct Shared {
    client: Rc<Client>,
    config: ProducerConfig,
    /// Why the settings are refused (`ProducerConfig::validate_for`), checked once: every
    /// send fails with it.
    refused: Option<ClientError>,
    accumulator: RefCell<Accumulator>,
    chooser: RefCell<PartitionChooser>,
    /// Topic names interned once, so records share one allocation per topic.
    topics: RefCell<FastMap<String, Rc<str>>>,
    /// Bytes of records accepted and not yet answered (`buffer_bytes_max` units).
    buffer: Semaphore,
    /// Produce requests in flight per broker address (`inflight_requests_max` units each).
    request_slots: RefCell<FastMap<String, Rc<Semaphore>>>,
    /// Produce requests started per broker address and not yet settled: the sender drains
    /// only the partitions whose broker has fewer than `inflight_requests_max`.
    requests_out: RefCell<FastMap<String, usize>>,
    wake: Notify,
    closed: Cell<bool>,
    refresh_running: Cell<bool>,
    /// The producer id and epoch new (and reset) partitions take, once InitProducerId answered
    /// (idempotence only).
    identity: Cell<Option<ProducerIdentity>>,
    /// Why the producer cannot send any more (fenced, or InitProducerId refused): every send
    /// and every unanswered batch fails with it.
    fatal: RefCell<Option<ClientError>>,
}

/// Batches records per partition and sends them to their leaders' owning shards. It is `!Send`
/// and lives on the executor of its `Client`. Dropping it fails records not yet sent (their
/// futures resolve with `ClientError::Closed`); `close` sends them first.
pub struct Producer {
    shared: Rc<Shared>,
    sender: RefCell<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Producer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Producer {
    /// A producer on `client`'s executor. Starts its sender task. Settings `validate` refuses
    /// make every `send` fail with the same error.
    pub fn new(client: Rc<Client>, config: ProducerConfig) -> Producer {
        let linger = Duration::from_millis(config.linger_ms);
        let delivery_timeout = Duration::from_millis(config.delivery_timeout_ms);
        let mut accumulator = Accumulator::new(
            config.compression,
            config.batch_bytes_max,
            linger,
            delivery_timeout,
        );
        if config.enable_idempotence {
            accumulator = accumulator.idempotent(config.in_flight_per_partition());
        }
        let shared = Rc::new(Shared {
            refused: config.validate_for(client.config()).err(),
            accumulator: RefCell::new(accumulator),
            chooser: RefCell::new(PartitionChooser::new(config.partitioner)),
            topics: RefCell::new(FastMap::default()),
            buffer: Semaphore::new(config.buffer_bytes_max as u64),
            request_slots: RefCell::new(FastMap::default()),
            requests_out: RefCell::new(FastMap::default()),
            wake: Notify::default(),
            closed: Cell::new(false),
            refresh_running: Cell::new(false),
            identity: Cell::new(None),
            fatal: RefCell::new(None),
            client,
            config,
        });
        let sender = glommio::spawn_local(run_sender(Rc::clone(&shared))).detach();
        Producer {
            shared,
            sender: RefCell::new(Some(sender)),
        }
    }

    /// Adds the record to its partition's open batch (waiting only for buffer space); the
    /// returned future resolves when the broker acknowledges it (or at once with offset -1 for
    /// acks=None, once written). Fails at once for an unknown topic or partition (after
    /// `retries_max` metadata refreshes, for a topic that was just created), a record that can
    /// never fit, or a closed producer.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(key, value)| (key.as_str(), Some(&value[..])))
            .collect();
        let value = [&record.value[..]];
        self.send_ref(RecordRef {
            topic: &record.topic,
            partition: record.partition,
            key: record.key.as_deref(),
            value: &value,
            timestamp_ms: record.timestamp_ms,
            headers: &headers,
        })
        .await
    }

    /// [`send`](Self::send) for a borrowed record whose value is given as pieces: each piece is
    /// copied once, into the batch (see [`RecordRef`]).
    pub async fn send_ref(&self, record: RecordRef<'_>) -> Result<DeliveryFuture, ClientError> {
        let shared = &self.shared;
        if let Some(refused) = &shared.refused {
            return Err(refused.duplicate());
        }
        if shared.closed.get() {
            return Err(ClientError::Closed);
        }
        if let Some(fatal) = &*shared.fatal.borrow() {
            return Err(fatal.duplicate());
        }
        let partitions = shared.partition_count(record.topic).await?;
        if let Some(partition) = record.partition {
            if !(0..partitions).contains(&partition) {
                return Err(ClientError::UnknownPartition {
                    topic: record.topic.to_string(),
                    partition,
                });
            }
        }
        let reserved_bytes = shared.check_size(&record)?;
        shared
            .buffer
            .acquire(reserved_bytes as u64)
            .await
            .map_err(|_| ClientError::Closed)?;
        if shared.closed.get() {
            shared.buffer.signal(reserved_bytes as u64);
            return Err(ClientError::Closed);
        }
        Ok(shared.append(&record, partitions, reserved_bytes))
    }

    /// Sends every record accepted so far without waiting for linger, and waits until each was
    /// answered (acknowledged or failed: look at the delivery futures for which).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let outcomes = self.shared.accumulator.borrow_mut().close_all_open();
        self.shared.release_failed_bytes();
        self.shared.wake.notify();
        for outcome in outcomes {
            outcome.wait().await;
        }
        Ok(())
    }

    /// Flushes, then stops the producer: later sends fail with `Closed`.
    pub async fn close(&self) -> Result<(), ClientError> {
        if self.shared.closed.get() {
            return Ok(());
        }
        self.flush().await?;
        self.shutdown();
        Ok(())
    }

    /// Marks the producer closed, fails what was not sent, and stops the sender task. Requests
    /// already in flight still complete.
    fn shutdown(&self) {
        let shared = &self.shared;
        shared.closed.set(true);
        let released = shared
            .accumulator
            .borrow_mut()
            .fail_unsent(&ClientError::Closed);
        shared.buffer.signal(released as u64);
        shared.buffer.close();
        if let Some(sender) = self.sender.borrow_mut().take() {
            sender.cancel();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    /// The partition count of `topic`, refreshing metadata and retrying while the topic is
    /// unknown (it may have just been created).
    async fn partition_count(&self, topic: &str) -> Result<i32, ClientError> {
        if let Some(count) = self.client.cached_partition_count(topic) {
            return Ok(count);
        }
        self.client
            .retrying(|| self.client.partition_count(topic))
            .await
    }

    /// The buffer bytes the record needs, or why it can never be sent.
    fn check_size(&self, record: &RecordRef<'_>) -> Result<usize, ClientError> {
        let bytes = record.estimated_bytes();
        let (max, limit) = if self.config.buffer_bytes_max < PRODUCE_REQUEST_BYTES_MAX {
            (self.config.buffer_bytes_max, "buffer_bytes_max")
        } else {
            (PRODUCE_REQUEST_BYTES_MAX, "PRODUCE_REQUEST_BYTES_MAX")
        };
        if bytes > max {
            return Err(ClientError::RecordTooLarge { bytes, max, limit });
        }
        Ok(bytes)
    }

    fn topic_name(&self, topic: &str) -> Rc<str> {
        if let Some(name) = self.topics.borrow().get(topic) {
            return Rc::clone(name);
        }
        let name: Rc<str> = Rc::from(topic);
        self.topics
            .borrow_mut()
            .insert(topic.to_string(), Rc::clone(&name));
        name
    }

    /// Puts the record into its partition's batch and wakes the sender when there is something
    /// new to send or a new linger deadline.
    fn append(
        &self,
        record: &RecordRef<'_>,
        partitions: i32,
        reserved_bytes: usize,
    ) -> DeliveryFuture {
        let topic = self.topic_name(record.topic);
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let partition = match record.partition {
            Some(partition) => partition,
            None => self
                .chooser
                .borrow_mut()
                .choose(&topic, record.key, partitions),
        };
        let parts = RecordParts {
            timestamp_ms,
            key: record.key,
            value: Some(record.value),
            headers: record.headers,
            reserved_bytes,
        };
        let appended =
            self.accumulator
                .borrow_mut()
                .append_with(&topic, partition, parts, Instant::now);
        if appended.closed_batch {
            self.chooser
                .borrow_mut()
                .batch_closed(&topic, partition, partitions);
        }
        self.release_failed_bytes();
        if appended.closed_batch || appended.opened_batch {
            self.wake.notify();
        }
        DeliveryFuture::new(appended.outcome, appended.index, timestamp_ms)
    }

    /// Unkeyed records stop sticking to a partition whose batch is being sent (KIP-480), so
    /// a slow producer whose batches close by linger time still spreads over partitions.
    fn batches_sent(&self, drained: &[Drained]) {
        let mut chooser = self.chooser.borrow_mut();
        for partition in drained {
            if let Some(count) = self.client.cached_partition_count(&partition.topic) {
                chooser.batch_closed(&partition.topic, partition.partition, count);
            }
        }
    }

    fn release_failed_bytes(&self) {
        let released = self.accumulator.borrow_mut().take_released_bytes();
        if released > 0 {
            self.buffer.signal(released as u64);
        }
    }

    fn request_slots(&self, addr: &str) -> Rc<Semaphore> {
        let mut slots = self.request_slots.borrow_mut();
        let slot = slots
            .entry(addr.to_string())
            .or_insert_with(|| Rc::new(Semaphore::new(self.config.inflight_requests_max as u64)));
        Rc::clone(slot)
    }

    /// Starts a metadata refresh unless one is running; the sender is woken when it is done.
    fn request_refresh(self: &Rc<Self>) {
        if self.refresh_running.replace(true) {
            return;
        }
        let shared = Rc::clone(self);
        glommio::spawn_local(async move {
            if let Err(error) = shared.client.refresh_metadata().await {
                tracing::debug!(%error, "producer metadata refresh failed");
            }
            shared.refresh_running.set(false);
            shared.wake.notify();
        })
        .detach();
    }

    /// Routes drained partitions to their brokers and starts one request task per broker
    /// address (several when one would exceed `PRODUCE_REQUEST_BYTES_MAX`).
    fn dispatch(self: &Rc<Self>, drained: Vec<Drained>) {
        // Per address: the requests being built, each with its partitions and its byte size.
        let mut by_addr: HashMap<String, Vec<(Vec<Drained>, usize)>> = HashMap::new();
        for partition in drained {
            let addr = match self.client.route(&partition.topic, partition.partition) {
                Ok(addr) => addr,
                Err(error) => {
                    self.retry_or_fail(partition, &error);
                    continue;
                }
            };
            let size: usize = partition
                .batches
                .iter()
                .map(|batch| batch.bytes.len())
                .sum();
            let requests = by_addr.entry(addr).or_default();
            match requests.last_mut() {
                Some((partitions, bytes)) if *bytes + size <= PRODUCE_REQUEST_BYTES_MAX => {
                    partitions.push(partition);
                    *bytes += size;
                }
                _ => requests.push((vec![partition], size)),
            }
        }
        for (addr, requests) in by_addr {
            *self
                .requests_out
                .borrow_mut()
                .entry(addr.clone())
                .or_default() += requests.len();
            for (partitions, _) in requests {
                let shared = Rc::clone(self);
                let addr = addr.clone();
                glommio::spawn_local(async move { shared.send_request(addr, partitions).await })
                    .detach();
            }
        }
    }

    /// Sends one produce request and settles its batches.
    async fn send_request(self: Rc<Self>, addr: String, partitions: Vec<Drained>) {
        let slots = self.request_slots(&addr);
        let permit = slots.acquire_permit(1).await;
        let result = match permit {
            Ok(_permit) => self.produce(&addr, &partitions).await,
            Err(_) => Err(ClientError::Closed),
        };
        match result {
            Ok(Some(response)) => self.settle(partitions, &response),
            Ok(None) => {
                for partition in partitions {
                    self.finish(partition, |_| Ok(None));
                }
            }
            Err(error) => {
                for partition in partitions {
                    self.retry_or_fail(partition, &error);
                }
            }
        }
        if let Some(out) = self.requests_out.borrow_mut().get_mut(&addr) {
            *out = out.saturating_sub(1);
        }
        self.wake.notify();
    }

    /// True when the broker of a partition can take another produce request now (or the
    /// partition has no known broker, which the dispatch reports).
    fn destination_free(&self, topic: &str, partition: i32) -> bool {
        match self.client.route(topic, partition) {
            Ok(addr) => {
                let out = self.requests_out.borrow().get(&addr).copied().unwrap_or(0);
                out < self.config.inflight_requests_max
            }
            Err(_) => true,
        }
    }

    /// Builds and sends the request; `None` for acks=0 (no response comes).
    async fn produce(
        &self,
        addr: &str,
        partitions: &[Drained],
    ) -> Result<Option<ProduceResponse>, ClientError> {
        let request = ProduceRequest {
            acks: self.config.acks.wire(),
            timeout_ms: u32::try_from(self.client.config().request_timeout_ms).unwrap_or(u32::MAX),
            partitions: partitions
                .iter()
                .map(|partition| ProducePartition {
                    topic: partition.topic.to_string(),
                    partition: partition.partition,
                    records_bytes: partition
                        .batches
                        .iter()
                        .map(|batch| batch.bytes.len() as u32)
                        .sum(),
                })
                .collect(),
        };
        let payload: Vec<Bytes> = partitions
            .iter()
            .flat_map(|partition| partition.batches.iter().map(|batch| batch.bytes.clone()))
            .collect();
        let timeout =
            self.client.request_timeout() + Duration::from_millis(PRODUCE_RESPONSE_MARGIN_MS);
        let connection = self.client.connection(addr).await?;
        if self.config.acks == Acks::None {
            connection
                .send_without_response(&request, &payload, timeout)
                .await?;
            return Ok(None);
        }
        let (response, _) = connection
            .request::<_, ProduceResponse>(&request, &payload, timeout)
            .await?;
        Ok(Some(response))
    }

    /// Applies each partition's result: offsets to the delivery futures, retriable errors back
    /// to the queue, others to the futures as failures.
    fn settle(self: &Rc<Self>, partitions: Vec<Drained>, response: &ProduceResponse) {
        for partition in partitions {
            let result = response.partitions.iter().find(|result| {
                *result.topic == *partition.topic && result.partition == partition.partition
            });
            let Some(result) = result else {
                let error = ClientError::InvalidResponse {
                    op: "produce",
                    reason: format!("no result for {}-{}", partition.topic, partition.partition),
                };
                self.finish(partition, |_| Err(error.duplicate()));
                continue;
            };
            if result.error == ErrorCode::None.code() {
                let mut base_offset = result.base_offset;
                self.finish(partition, |records| {
                    let offset = base_offset;
                    base_offset += i64::from(records);
                    Ok(Some(offset))
                });
                continue;
            }
            let context = format!(
                "produce to {}-{}{}",
                partition.topic,
                partition.partition,
                result
                    .message
                    .as_deref()
                    .map(|message| format!(": {message}"))
                    .unwrap_or_default()
            );
            // A broker that is no longer the leader may name the one that is: go there next.
            self.client
                .note_leader(&partition.topic, partition.partition, result.current_leader);
            let error = ClientError::from_code(result.error, context);
            match self.sequence_verdict(&partition, result.error) {
                SequenceVerdict::Ordinary => self.retry_or_fail(partition, &error),
                SequenceVerdict::RetryAfterPredecessor => self.resend_in_order(partition, &error),
                SequenceVerdict::ResetSequences => {
                    tracing::info!(
                        %error,
                        topic = %partition.topic,
                        partition = partition.partition,
                        "the broker lost this partition's producer sequences: resetting them \
                         under a new producer id"
                    );
                    self.accumulator
                        .borrow_mut()
                        .require_reset(&partition.topic, partition.partition);
                    self.resend_in_order(partition, &error);
                }
                SequenceVerdict::Fenced => {
                    self.fail_producer(&error);
                    self.finish(partition, |_| Err(error.duplicate()));
                }
            }
        }
    }

    /// Completes every batch of `partition` with `result(records of the batch)`, gives back
    /// their buffer bytes and unmutes the partition.
    fn finish(
        &self,
        partition: Drained,
        mut result: impl FnMut(u32) -> Result<Option<i64>, ClientError>,
    ) {
        let mut released = 0;
        for batch in &partition.batches {
            batch.outcome.complete(result(batch.records));
            released += batch.reserved_bytes;
        }
        self.accumulator.borrow_mut().complete(
            &partition.topic,
            partition.partition,
            &partition.batches,
        );
        self.buffer.signal(released as u64);
    }

    /// What a sequence error means for the (single, stamped) batch of an idempotent request;
    /// `Ordinary` for anything else.
    fn sequence_verdict(&self, partition: &Drained, code: i16) -> SequenceVerdict {
        let [batch] = &partition.batches[..] else {
            return SequenceVerdict::Ordinary;
        };
        let Some(stamp) = batch.stamp else {
            return SequenceVerdict::Ordinary;
        };
        let pending = self.accumulator.borrow_mut().predecessor_pending(
            &partition.topic,
            partition.partition,
            &stamp,
        );
        classify(code, pending)
    }

    /// Puts the batches back to be sent again in sequence order, without a backoff or a retry
    /// counted: the broker refused them only because of what came before them.
    fn resend_in_order(&self, partition: Drained, error: &ClientError) {
        let mut batches = partition.batches;
        for batch in &mut batches {
            batch.not_before = None;
            batch.last_error = Some(error.to_string());
        }
        self.accumulator
            .borrow_mut()
            .requeue(&partition.topic, partition.partition, batches);
    }

    /// Makes the producer unusable with `error`: sends fail with it, unsent batches fail now,
    /// batches in flight when they are answered (unless acknowledged).
    fn fail_producer(&self, error: &ClientError) {
        tracing::error!(%error, "the idempotent producer cannot continue");
        self.fatal.replace(Some(error.duplicate()));
        let released = self.accumulator.borrow_mut().fail_unsent(error);
        self.buffer.signal(released as u64);
    }

    /// A new producer id and epoch from InitProducerId, retried while the error is retriable.
    async fn new_identity(&self) -> Result<ProducerIdentity, ClientError> {
        let (producer_id, epoch) = self
            .client
            .retrying(|| self.client.init_producer_id())
            .await?;
        Ok(ProducerIdentity { producer_id, epoch })
    }

    /// Before draining (idempotence only): gets the producer its first identity, and a new one
    /// for the partitions whose sequences the broker lost once nothing of theirs is in flight
    /// (KIP-360; Sluice's broker hands out a fresh id rather than bumping the epoch, and a
    /// fresh id leaves the other partitions' sequences untouched). A retriable failure waits a
    /// backoff and is tried again at the next round; any other fails the producer.
    async fn prepare_identity(&self) {
        if self.fatal.borrow().is_some() {
            return;
        }
        let resets = self.accumulator.borrow().resets_due();
        if self.identity.get().is_some() && resets.is_empty() {
            return;
        }
        match self.new_identity().await {
            Ok(identity) => {
                self.identity.set(Some(identity));
                let mut accumulator = self.accumulator.borrow_mut();
                accumulator.set_identity(identity);
                for (topic, partition) in resets {
                    accumulator.reset_sequences(&topic, partition, identity);
                }
            }
            Err(error) if error.is_retriable() => {
                tracing::warn!(%error, "InitProducerId failed; trying again");
                let backoff_ms = self.client.config().retry_backoff_ms_max;
                glommio::timer::sleep(Duration::from_millis(backoff_ms)).await;
            }
            Err(error) => self.fail_producer(&error),
        }
    }

    /// Requeues the batches of a partition whose send failed with a retriable error (with
    /// backoff, after a metadata refresh) while their delivery timeout allows; fails them
    /// otherwise (see `retry::produce_retry`).
    fn retry_or_fail(self: &Rc<Self>, partition: Drained, error: &ClientError) {
        if self.closed.get() {
            self.finish(partition, |_| Err(error.duplicate()));
            return;
        }
        let fatal = self.fatal.borrow().as_ref().map(ClientError::duplicate);
        if let Some(fatal) = fatal {
            self.finish(partition, |_| Err(fatal.duplicate()));
            return;
        }
        self.accumulator.borrow_mut().complete(
            &partition.topic,
            partition.partition,
            &partition.batches,
        );
        let now = Instant::now();
        let policy = ProduceRetryPolicy {
            delivery_timeout: Duration::from_millis(self.config.delivery_timeout_ms),
            retries_max: self.config.retries_max,
            backoff: self.client.backoff_policy(),
        };
        let mut retry = Vec::new();
        let mut released = 0;
        for mut batch in partition.batches {
            let failed = FailedBatch {
                topic: &partition.topic,
                partition: partition.partition,
                attempts: batch.attempts,
                created_at: batch.created_at,
            };
            let jitter = rand::random::<f64>();
            match produce_retry(failed, error, now, policy, jitter) {
                RetryDecision::RetryAt(at) => {
                    batch.not_before = Some(at);
                    batch.attempts += 1;
                    batch.last_error = Some(error.to_string());
                    retry.push(batch);
                }
                RetryDecision::Fail(failure) => {
                    batch.outcome.complete(Err(failure));
                    released += batch.reserved_bytes;
                }
            }
        }
        if !retry.is_empty() {
            tracing::debug!(
                %error,
                topic = %partition.topic,
                partition = partition.partition,
                batches = retry.len(),
                "produce will be retried"
            );
        }
        self.buffer.signal(released as u64);
        self.accumulator
            .borrow_mut()
            .requeue(&partition.topic, partition.partition, retry);
        if error.is_retriable() {
            self.request_refresh();
        }
    }
}

/// The sender task: drains due batches into requests, then sleeps until the next linger or
/// backoff deadline or until woken by a send, a completed request or a flush.
async fn run_sender(shared: Rc<Shared>) {
    loop {
        if shared.config.enable_idempotence {
            shared.prepare_identity().await;
        }
        let drained = shared.accumulator.borrow_mut().drain_where(
            Instant::now(),
            PRODUCE_REQUEST_BYTES_MAX,
            |topic, partition| shared.destination_free(topic, partition),
        );
        shared.release_failed_bytes();
        if !drained.is_empty() {
            shared.batches_sent(&drained);
            shared.dispatch(drained);
        }
        let now = Instant::now();
        let deadline = shared
            .accumulator
            .borrow()
            .next_deadline_where(now, |topic, partition| {
                shared.destination_free(topic, partition)
            });
        match deadline {
            Some(deadline) if deadline <= now => futures_lite::future::yield_now().await,
            Some(deadline) => {
                futures_lite::future::or(
                    shared.wake.notified(),
                    glommio::timer::sleep(deadline - now),
                )
                .await;
            }
            None => shared.wake.notified().await,
        }
    }
}
