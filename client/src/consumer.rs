//! `Consumer`: reads assigned partitions from their owning shards, from any offset.
//!
//! Failover: a fetch that fails with a retriable error (the broker is not the leader any more,
//! the connection was lost or refused, a timeout, no leader yet) holds that partition back for
//! a backoff (see `retry::PartitionRetry`) while a metadata refresh runs, then fetches it from
//! wherever the metadata (or the failed answer's `current_leader`) now says it lives, from the
//! same position: nothing is skipped and nothing read twice. Such errors never fail a poll, as
//! with Kafka's consumer; the other partitions keep being read meanwhile. Errors that a retry
//! cannot fix (offset out of range, a corrupt batch, an unknown partition) fail the poll.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::Task;
use sluice_net::api::ErrorCode;
use sluice_net::messages::{FetchPartition, FetchRequest, FetchResponse};

use crate::client::Client;
use crate::config::{ConsumerConfig, OffsetSpec, SeekTo};
use crate::error::ClientError;
use crate::fetch::{decode_into, records_bound, whole_batches, ConsumerRecord, FetchedBatches};
use crate::retry::PartitionRetry;

/// `replica_id` of a fetch from a consumer (followers send their node id).
const CONSUMER_REPLICA_ID: i32 = -1;

/// `current_leader_epoch` meaning "unknown": the broker does not fence the fetch by epoch.
const LEADER_EPOCH_UNKNOWN: i32 = -1;

/// One assigned partition and where reading continues.
#[derive(Debug)]
struct Assigned {
    topic: Rc<str>,
    partition: i32,
    position: i64,
    /// Retriable fetch failures in a row, and the backoff they impose.
    retry: PartitionRetry,
    /// The error of the last fetch, while fetches fail.
    last_error: Option<String>,
}

/// An assigned partition whose fetches are failing with retriable errors (the consumer keeps
/// retrying it in the background).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Fetches that failed in a row.
    pub failures: u32,
    /// The last fetch's error.
    pub last_error: String,
}

/// What one fetch round got for one partition.
#[derive(Debug)]
struct Fetched {
    index: usize,
    high_watermark: i64,
    batches: Bytes,
    next_position: i64,
}

/// Assigned partition indexes grouped by the broker address that owns them.
type RouteGroups = HashMap<String, Vec<usize>>;

/// Fetch requests of one round in flight: each broker's task with the partitions it covers.
type RoundRequests = Vec<(
    Vec<usize>,
    Task<Result<(FetchResponse, Bytes, Vec<usize>), ClientError>>,
)>;

/// A round sent ahead, from the positions a poll just advanced to, while the caller processes
/// what that poll returned (as Kafka's consumer pipelines fetches). Used only if the positions
/// are still the same when the next poll starts; dropped (cancelled) otherwise.
struct Prefetch {
    positions: Vec<i64>,
    requests: RoundRequests,
}

/// Reads records from explicitly assigned partitions (consumer groups come later). It is
/// `!Send` and lives on the executor of its `Client`. Positions advance only when a poll
/// returns successfully, so a failed poll loses nothing: the next one fetches the same records.
/// After a poll that returned records, the next round of fetches is already sent, so the
/// broker reads the next data while the caller handles this data.
pub struct Consumer {
    client: Rc<Client>,
    config: ConsumerConfig,
    assigned: Vec<Assigned>,
    prefetch: Option<Prefetch>,
    /// Long-poll wait of a prefetch: the last poll's timeout within `fetch_max_wait_ms`, so a
    /// caller polling with short timeouts is not held up by a prefetch waiting longer.
    prefetch_wait_ms: u32,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Consumer")
            .field("config", &self.config)
            .field("assigned", &self.assigned)
            .finish()
    }
}

impl Consumer {
    /// A consumer with nothing assigned.
    pub fn new(client: Rc<Client>, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            assigned: Vec::new(),
            prefetch: None,
            prefetch_wait_ms: 0,
        }
    }

    /// Replaces the assignment with `partitions` (duplicates ignored), each starting at
    /// `start`. Fails for an unknown topic or partition.
    pub async fn assign(
        &mut self,
        partitions: Vec<(String, i32)>,
        start: SeekTo,
    ) -> Result<(), ClientError> {
        let mut wanted: Vec<(String, i32)> = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let count = self
                .client
                .retrying(|| self.client.partition_count(&topic))
                .await?;
            if !(0..count).contains(&partition) {
                return Err(ClientError::UnknownPartition { topic, partition });
            }
            if !wanted.contains(&(topic.clone(), partition)) {
                wanted.push((topic, partition));
            }
        }
        let positions = self.resolve(&wanted, start).await?;
        self.prefetch = None;
        let mut topics: HashMap<String, Rc<str>> = HashMap::new();
        self.assigned = wanted
            .into_iter()
            .zip(positions)
            .map(|((topic, partition), position)| Assigned {
                topic: Rc::clone(
                    topics
                        .entry(topic.clone())
                        .or_insert_with(|| Rc::from(topic)),
                ),
                partition,
                position,
                retry: PartitionRetry::default(),
                last_error: None,
            })
            .collect();
        Ok(())
    }

    /// Moves the position of an assigned partition.
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: i32,
        to: SeekTo,
    ) -> Result<(), ClientError> {
        let index = self
            .index_of(topic, partition)
            .ok_or_else(|| ClientError::Config {
                reason: format!("{topic}-{partition} is not assigned to this consumer"),
            })?;
        let positions = self.resolve(&[(topic.to_string(), partition)], to).await?;
        if let Some(&position) = positions.first() {
            self.assigned[index].position = position;
        }
        self.prefetch = None;
        Ok(())
    }

    /// The offset of the next record `poll` returns for the partition, if it is assigned.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.index_of(topic, partition)
            .map(|index| self.assigned[index].position)
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assigned
            .iter()
            .map(|assigned| (assigned.topic.to_string(), assigned.partition))
            .collect()
    }

    /// The assigned partitions whose last fetch failed (with a retriable error: others fail
    /// the poll), with the error; empty when every partition's last fetch succeeded. A caller
    /// that stops reading when nothing arrives uses it to tell "caught up" from "cut off".
    pub fn failing_partitions(&self) -> Vec<FailingPartition> {
        self.assigned
            .iter()
            .filter_map(|assigned| {
                let last_error = assigned.last_error.clone()?;
                Some(FailingPartition {
                    topic: assigned.topic.to_string(),
                    partition: assigned.partition,
                    failures: assigned.retry.failures,
                    last_error,
                })
            })
            .collect()
    }

    fn index_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.assigned
            .iter()
            .position(|assigned| &*assigned.topic == topic && assigned.partition == partition)
    }

    /// The offsets `to` designates for each partition.
    async fn resolve(
        &self,
        partitions: &[(String, i32)],
        to: SeekTo,
    ) -> Result<Vec<i64>, ClientError> {
        match to {
            SeekTo::Offset(offset) if offset >= 0 => Ok(vec![offset; partitions.len()]),
            SeekTo::Offset(offset) => Err(ClientError::Config {
                reason: format!("cannot seek to negative offset {offset}"),
            }),
            SeekTo::Earliest => {
                self.client
                    .list_offsets(partitions, OffsetSpec::Earliest)
                    .await
            }
            SeekTo::Latest => {
                self.client
                    .list_offsets(partitions, OffsetSpec::Latest)
                    .await
            }
            SeekTo::Timestamp(timestamp_ms) => {
                let mut offsets = self
                    .client
                    .list_offsets(partitions, OffsetSpec::Timestamp(timestamp_ms))
                    .await?;
                // No record that recent: start at the end, where the next such record will be.
                let missing: Vec<usize> = (0..offsets.len())
                    .filter(|&index| offsets[index] < 0)
                    .collect();
                if !missing.is_empty() {
                    let ends: Vec<(String, i32)> = missing
                        .iter()
                        .map(|&index| partitions[index].clone())
                        .collect();
                    let latest = self.client.list_offsets(&ends, OffsetSpec::Latest).await?;
                    for (index, offset) in missing.into_iter().zip(latest) {
                        offsets[index] = offset;
                    }
                }
                Ok(offsets)
            }
        }
    }

    /// Fetches until records arrive or `timeout` passes: each round sends one request per
    /// owning broker shard, long-polling up to `fetch_max_wait_ms` (or what is left of
    /// `timeout`). Returns the records in offset order per partition (records before the
    /// position in the first batch are skipped); empty on timeout.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        self.prefetch_wait_ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .min(self.config.fetch_max_wait_ms);
        loop {
            let fetched = self.fetch_round(deadline).await?;
            let starts: Vec<i64> = fetched
                .iter()
                .map(|partition| self.assigned[partition.index].position)
                .collect();
            // Advancing first sends the prefetch, so the broker works while this decodes.
            self.advance(&fetched);
            let records = match self.decode(&fetched, &starts) {
                Ok(records) => records,
                Err(error) => {
                    // Nothing of this poll was returned: fetch the same records again.
                    self.prefetch = None;
                    for (partition, start) in fetched.iter().zip(starts) {
                        self.assigned[partition.index].position = start;
                    }
                    return Err(error);
                }
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// The records of `fetched`, each partition's from its position `starts[i]` on.
    fn decode(
        &self,
        fetched: &[Fetched],
        starts: &[i64],
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let bound = fetched.iter().zip(starts);
        let bound = bound.map(|(partition, &start)| records_bound(&partition.batches, start));
        let mut records = Vec::with_capacity(bound.sum());
        for (partition, &start) in fetched.iter().zip(starts) {
            let assigned = &self.assigned[partition.index];
            decode_into(
                &assigned.topic,
                assigned.partition,
                &partition.batches,
                start,
                &mut records,
            )?;
        }
        Ok(records)
    }

    /// Like `poll`, but returns whole batches undecoded (the first may start before the
    /// position) and advances positions past them.
    pub async fn poll_batches(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<FetchedBatches>, ClientError> {
        let deadline = Instant::now() + timeout;
        self.prefetch_wait_ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .min(self.config.fetch_max_wait_ms);
        loop {
            let fetched = self.fetch_round(deadline).await?;
            let starts: Vec<i64> = fetched
                .iter()
                .map(|partition| self.assigned[partition.index].position)
                .collect();
            self.advance(&fetched);
            let batches: Vec<FetchedBatches> = fetched
                .into_iter()
                .zip(starts)
                .filter(|(partition, _)| !partition.batches.is_empty())
                .map(|(partition, from_offset)| FetchedBatches {
                    topic: Rc::clone(&self.assigned[partition.index].topic),
                    partition: self.assigned[partition.index].partition,
                    high_watermark: partition.high_watermark,
                    records: partition.batches,
                    from_offset,
                    next_offset: partition.next_position,
                })
                .collect();
            if !batches.is_empty() || Instant::now() >= deadline {
                return Ok(batches);
            }
        }
    }

    /// Moves the positions past what was fetched and, when something was, sends the next
    /// round right away (see [`Prefetch`]).
    fn advance(&mut self, fetched: &[Fetched]) {
        for partition in fetched {
            self.assigned[partition.index].position = partition.next_position;
        }
        if fetched
            .iter()
            .any(|partition| !partition.batches.is_empty())
        {
            let (groups, unrouted) = self.route_groups(Instant::now());
            // A partition without a route is left to the next poll's own round, which counts
            // the failure and recovers.
            if unrouted.is_empty() && !groups.is_empty() {
                self.prefetch = Some(Prefetch {
                    positions: self.positions(),
                    requests: self.send_round(groups, self.prefetch_wait_ms),
                });
            }
        }
    }

    fn positions(&self) -> Vec<i64> {
        self.assigned
            .iter()
            .map(|assigned| assigned.position)
            .collect()
    }

    /// One round of fetches, all brokers in parallel, of the partitions not backing off. A
    /// partition failing with a retriable error backs off (see [`PartitionRetry`]) and a
    /// metadata refresh starts; other errors fail the round. When every partition is backing
    /// off, waits until the first may be fetched again (or the deadline) instead.
    async fn fetch_round(&mut self, deadline: Instant) -> Result<Vec<Fetched>, ClientError> {
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        if self.assigned.is_empty() {
            glommio::timer::sleep(remaining).await;
            return Ok(Vec::new());
        }
        let (requests, mut failed) = match self.prefetch.take() {
            Some(prefetch) if prefetch.positions == self.positions() => (prefetch.requests, false),
            _ => {
                let wait_ms = u32::try_from(remaining.as_millis())
                    .unwrap_or(u32::MAX)
                    .min(self.config.fetch_max_wait_ms);
                let (groups, unrouted) = self.route_groups(now);
                if groups.is_empty() && unrouted.is_empty() {
                    self.wait_for_backoff(deadline).await;
                    return Ok(Vec::new());
                }
                let failed = !unrouted.is_empty();
                for (index, error) in unrouted {
                    self.note_failure(index, error)?;
                }
                (self.send_round(groups, wait_ms), failed)
            }
        };
        let mut fetched = Vec::new();
        for (indexes, task) in requests {
            match task.await {
                Ok((response, payload, verified)) => {
                    let answer = (&response, &payload, &verified[..]);
                    failed |= self.take_response(&indexes, answer, &mut fetched)?;
                }
                Err(error) => {
                    for &index in &indexes {
                        self.note_failure(index, error.duplicate())?;
                    }
                    failed = true;
                }
            }
        }
        if failed {
            self.client.refresh_soon();
        }
        Ok(fetched)
    }

    /// Sleeps until the first backing-off partition may be fetched again, or `deadline`.
    async fn wait_for_backoff(&self, deadline: Instant) {
        let ready_at = self
            .assigned
            .iter()
            .filter_map(|assigned| assigned.retry.not_before)
            .min()
            .unwrap_or(deadline)
            .min(deadline);
        glommio::timer::sleep(ready_at.saturating_duration_since(Instant::now())).await;
    }

    /// The assigned partitions that may be fetched at `now` (not backing off), grouped by the
    /// broker address that owns them, and those of them that have no route now.
    fn route_groups(&self, now: Instant) -> (RouteGroups, Vec<(usize, ClientError)>) {
        let mut groups = RouteGroups::new();
        let mut unrouted = Vec::new();
        for (index, assigned) in self.assigned.iter().enumerate() {
            if !assigned.retry.ready(now) {
                continue;
            }
            match self.client.route(&assigned.topic, assigned.partition) {
                Ok(addr) => groups.entry(addr).or_default().push(index),
                Err(error) => unrouted.push((index, error)),
            }
        }
        (groups, unrouted)
    }

    /// Sends one fetch per broker of `groups`, long-polling up to `wait_ms`.
    fn send_round(&self, groups: RouteGroups, wait_ms: u32) -> RoundRequests {
        let timeout = self.client.request_timeout() + Duration::from_millis(u64::from(wait_ms));
        groups
            .into_iter()
            .map(|(addr, indexes)| {
                let request = self.fetch_request(&indexes, wait_ms);
                let client = Rc::clone(&self.client);
                let task = glommio::spawn_local(async move {
                    client.fetch_from(&addr, &request, timeout).await
                });
                (indexes, task)
            })
            .collect()
    }

    fn fetch_request(&self, indexes: &[usize], wait_ms: u32) -> FetchRequest {
        FetchRequest {
            replica_id: CONSUMER_REPLICA_ID,
            max_wait_ms: wait_ms,
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            partitions: indexes
                .iter()
                .map(|&index| FetchPartition {
                    topic: self.assigned[index].topic.to_string(),
                    partition: self.assigned[index].partition,
                    fetch_offset: self.assigned[index].position,
                    partition_max_bytes: self.config.partition_fetch_max_bytes,
                    current_leader_epoch: LEADER_EPOCH_UNKNOWN,
                })
                .collect(),
        }
    }

    /// Sorts one response's partitions into fetched data and failures; returns whether any
    /// partition failed with a retriable error.
    fn take_response(
        &mut self,
        indexes: &[usize],
        (response, payload, verified): (&FetchResponse, &Bytes, &[usize]),
        fetched: &mut Vec<Fetched>,
    ) -> Result<bool, ClientError> {
        let payloads = response.partition_payloads(payload)?;
        let mut failed = false;
        for (at, (result, records)) in response.partitions.iter().zip(payloads).enumerate() {
            let Some(&index) = indexes.iter().find(|&&index| {
                *self.assigned[index].topic == *result.topic
                    && self.assigned[index].partition == result.partition
            }) else {
                continue;
            };
            let assigned = &self.assigned[index];
            match ErrorCode::from_i16(result.error) {
                Some(ErrorCode::None) => {
                    let (batches, next_position) = whole_batches(
                        &records,
                        assigned.position,
                        self.client.config().frame_bytes_max,
                        verified.get(at).copied().unwrap_or(0),
                    )?;
                    self.assigned[index].retry.succeeded();
                    self.assigned[index].last_error = None;
                    fetched.push(Fetched {
                        index,
                        high_watermark: result.high_watermark,
                        batches,
                        next_position,
                    });
                }
                Some(ErrorCode::OffsetOutOfRange) => {
                    return Err(ClientError::OffsetOutOfRange {
                        topic: result.topic.clone(),
                        partition: result.partition,
                        offset: assigned.position,
                        log_start_offset: result.log_start_offset,
                        log_end_offset: result.log_end_offset,
                    })
                }
                _ => {
                    let context = format!("fetch {}-{}", result.topic, result.partition);
                    // A broker that is no longer the leader may name the one that is.
                    self.client
                        .note_leader(&result.topic, result.partition, result.current_leader);
                    self.note_failure(index, ClientError::from_code(result.error, context))?;
                    failed = true;
                }
            }
        }
        Ok(failed)
    }

    /// Counts a failed fetch of partition `index`: a retriable error holds the partition back
    /// for a backoff (however often it happens), anything else fails the poll.
    fn note_failure(&mut self, index: usize, error: ClientError) -> Result<(), ClientError> {
        let backoff = self.client.backoff_policy();
        let assigned = &mut self.assigned[index];
        tracing::debug!(
            %error,
            topic = %assigned.topic,
            partition = assigned.partition,
            failures = assigned.retry.failures,
            "fetch failed"
        );
        assigned.last_error = Some(error.to_string());
        assigned
            .retry
            .failed(error, Instant::now(), backoff, rand::random::<f64>())
    }
}
