//! `Consumer`: reads assigned partitions from their owning shards, from any offset.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_net::api::ErrorCode;
use sluice_net::messages::{FetchPartition, FetchRequest, FetchResponse};

use crate::client::Client;
use crate::config::{ConsumerConfig, OffsetSpec, SeekTo};
use crate::error::ClientError;
use crate::fetch::{decode_from, whole_batches, ConsumerRecord, FetchedBatches};

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
    /// Consecutive fetches that failed with a retriable error.
    failures: u32,
}

/// What one fetch round got for one partition.
#[derive(Debug)]
struct Fetched {
    index: usize,
    high_watermark: i64,
    batches: Bytes,
    next_position: i64,
}

/// Reads records from explicitly assigned partitions (consumer groups come later). It is
/// `!Send` and lives on the executor of its `Client`. Positions advance only when a poll
/// returns successfully, so a failed poll loses nothing: the next one fetches the same records.
pub struct Consumer {
    client: Rc<Client>,
    config: ConsumerConfig,
    assigned: Vec<Assigned>,
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
                failures: 0,
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
        loop {
            let fetched = self.fetch_round(deadline).await?;
            let mut records = Vec::new();
            for partition in &fetched {
                let assigned = &self.assigned[partition.index];
                records.extend(decode_from(
                    &assigned.topic,
                    assigned.partition,
                    &partition.batches,
                    assigned.position,
                )?);
            }
            self.advance(&fetched);
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Like `poll`, but returns whole batches undecoded (the first may start before the
    /// position) and advances positions past them.
    pub async fn poll_batches(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<FetchedBatches>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let fetched = self.fetch_round(deadline).await?;
            self.advance(&fetched);
            let batches: Vec<FetchedBatches> = fetched
                .into_iter()
                .filter(|partition| !partition.batches.is_empty())
                .map(|partition| FetchedBatches {
                    topic: Rc::clone(&self.assigned[partition.index].topic),
                    partition: self.assigned[partition.index].partition,
                    high_watermark: partition.high_watermark,
                    records: partition.batches,
                })
                .collect();
            if !batches.is_empty() || Instant::now() >= deadline {
                return Ok(batches);
            }
        }
    }

    fn advance(&mut self, fetched: &[Fetched]) {
        for partition in fetched {
            self.assigned[partition.index].position = partition.next_position;
        }
    }

    /// One round of fetches, all brokers in parallel. Partitions failing with retriable errors
    /// are skipped (after a metadata refresh and a backoff) until they failed `retries_max`
    /// times in a row.
    async fn fetch_round(&mut self, deadline: Instant) -> Result<Vec<Fetched>, ClientError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if self.assigned.is_empty() {
            glommio::timer::sleep(remaining).await;
            return Ok(Vec::new());
        }
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        let mut failed = false;
        for index in 0..self.assigned.len() {
            let assigned = &self.assigned[index];
            match self.client.route(&assigned.topic, assigned.partition) {
                Ok(addr) => groups.entry(addr).or_default().push(index),
                Err(error) => {
                    self.note_failure(index, error)?;
                    failed = true;
                }
            }
        }
        let wait_ms = u32::try_from(remaining.as_millis())
            .unwrap_or(u32::MAX)
            .min(self.config.fetch_max_wait_ms);
        let timeout = self.client.request_timeout() + Duration::from_millis(u64::from(wait_ms));
        let requests: Vec<_> = groups
            .into_iter()
            .map(|(addr, indexes)| {
                let request = self.fetch_request(&indexes, wait_ms);
                let client = Rc::clone(&self.client);
                let task = glommio::spawn_local(async move {
                    client.fetch_from(&addr, &request, timeout).await
                });
                (indexes, task)
            })
            .collect();
        let mut fetched = Vec::new();
        for (indexes, task) in requests {
            match task.await {
                Ok((response, payload)) => {
                    failed |= self.take_response(&indexes, &response, &payload, &mut fetched)?;
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
            self.recover(deadline).await;
        }
        Ok(fetched)
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
        response: &FetchResponse,
        payload: &Bytes,
        fetched: &mut Vec<Fetched>,
    ) -> Result<bool, ClientError> {
        let payloads = response.partition_payloads(payload)?;
        let mut failed = false;
        for (result, records) in response.partitions.iter().zip(payloads) {
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
                    )?;
                    self.assigned[index].failures = 0;
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
                    self.note_failure(index, ClientError::from_code(result.error, context))?;
                    failed = true;
                }
            }
        }
        Ok(failed)
    }

    /// Counts a failed fetch of partition `index`: a retriable error is tolerated up to
    /// `retries_max` times in a row, anything else fails the poll.
    fn note_failure(&mut self, index: usize, error: ClientError) -> Result<(), ClientError> {
        let assigned = &mut self.assigned[index];
        assigned.failures += 1;
        if error.is_retriable() && assigned.failures <= self.client.config().retries_max {
            tracing::debug!(
                %error,
                topic = %assigned.topic,
                partition = assigned.partition,
                "fetch will be retried"
            );
            return Ok(());
        }
        Err(error)
    }

    /// After retriable failures: refresh metadata and back off (within the poll's deadline),
    /// so a broken broker is not hammered.
    async fn recover(&self, deadline: Instant) {
        let attempt = self
            .assigned
            .iter()
            .map(|assigned| assigned.failures)
            .max()
            .unwrap_or(0);
        if let Err(error) = self.client.refresh_metadata().await {
            tracing::debug!(%error, "consumer metadata refresh failed");
        }
        let backoff = self.client.backoff(attempt.saturating_sub(1));
        let remaining = deadline.saturating_duration_since(Instant::now());
        glommio::timer::sleep(backoff.min(remaining)).await;
    }
}
