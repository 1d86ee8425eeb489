//! Partition replicas owned by a shard, and the registry that opens, creates and deletes them.
//!
//! A [`Partition`] exists on exactly one shard (its owner) and is shared by that shard's tasks as
//! `Rc<Partition>`; nothing here is `Send`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::oneshot;
use glommio::sync::Semaphore;
use sluice_storage::{LogConfig, PartitionLog, ReadSlice, StorageError};

use crate::error::{PartitionError, ShardError};
use crate::message::{AppendOutcome, OffsetQuery, PartitionState};
use crate::table::{ShardId, ShardTable};

/// The leader epoch a single-node broker stamps on every batch: there is one leader, forever.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

/// One partition replica on its owning shard: the log, the fetches waiting for new data, the
/// leader epoch, and counters. Lives on one shard only.
pub struct Partition {
    topic: String,
    partition: i32,
    log: PartitionLog,
    leader_epoch: Cell<i32>,
    /// Long-polling fetches waiting for the high watermark to move. Bounded by the fetches in
    /// flight on the broker (connections_max x connection_inflight_requests_max); senders whose
    /// receiver gave up are pruned on every subscribe.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    appended_batches_bytes: Cell<u64>,
    appends: Cell<u64>,
}

impl Partition {
    /// Wraps an open log.
    pub fn new(topic: &str, partition: i32, log: PartitionLog) -> Partition {
        Partition {
            topic: topic.to_string(),
            partition,
            log,
            leader_epoch: Cell::new(SINGLE_NODE_LEADER_EPOCH),
            waiters: RefCell::new(Vec::new()),
            appended_batches_bytes: Cell::new(0),
            appends: Cell::new(0),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition index.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The log (for operations this type does not wrap).
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The leader epoch this replica stamps on appended batches.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    /// Offsets below the high watermark are visible to consumers. The in-sync replica set of a
    /// single-node broker is the leader alone, so it is the log end offset.
    pub fn high_watermark(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The partition's offsets now.
    pub fn state(&self) -> PartitionState {
        PartitionState {
            log_start_offset: self.log.log_start_offset(),
            log_end_offset: self.log.log_end_offset(),
            high_watermark: self.high_watermark(),
        }
    }

    /// Number of appends and appended bytes since the partition was opened.
    pub fn append_counts(&self) -> (u64, u64) {
        (self.appends.get(), self.appended_batches_bytes.get())
    }

    /// Appends batches as the leader (the log validates each batch before writing anything),
    /// then wakes every fetch waiting for data.
    pub async fn append(&self, batches: BytesMut) -> Result<AppendOutcome, PartitionError> {
        let bytes = batches.len() as u64;
        let info = self
            .log
            .append(batches, self.leader_epoch.get())
            .await
            .map_err(|error| self.error(error))?;
        self.appends.set(self.appends.get() + 1);
        self.appended_batches_bytes
            .set(self.appended_batches_bytes.get() + bytes);
        self.wake_waiters();
        Ok(AppendOutcome {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            state: self.state(),
        })
    }

    /// Whole batches from `offset` below the high watermark, as a file range to splice or tail
    /// cache memory (zero-copy for the local connection).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadSlice, PartitionError> {
        self.log
            .read(offset, max_bytes, self.high_watermark())
            .map_err(|error| self.error(error))
    }

    /// Same as [`Partition::read`] but copies the bytes (for answers that cross cores).
    pub async fn read_bytes(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<bytes::Bytes, PartitionError> {
        self.log
            .read_bytes(offset, max_bytes, self.high_watermark())
            .await
            .map_err(|error| self.error(error))
    }

    /// Resolves an offset query.
    pub async fn list_offset(&self, query: OffsetQuery) -> Result<Option<i64>, PartitionError> {
        match query {
            OffsetQuery::Earliest => Ok(Some(self.log.log_start_offset())),
            OffsetQuery::Latest => Ok(Some(self.high_watermark())),
            OffsetQuery::Timestamp(timestamp_ms) => self
                .log
                .offset_for_timestamp(timestamp_ms)
                .await
                .map_err(|error| self.error(error)),
        }
    }

    /// A receiver that completes at the next append (or when the partition is closed).
    pub fn subscribe(&self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|waiter| !waiter.is_canceled());
        waiters.push(sender);
        receiver
    }

    /// Waits until the high watermark is above `offset`, for at most `wait`. Returns true when
    /// data is available.
    pub async fn wait_for_data(&self, offset: i64, wait: Duration) -> bool {
        if self.high_watermark() > offset {
            return true;
        }
        let woken = self.subscribe();
        let woken = async {
            let _ = woken.await;
        };
        futures_lite::future::or(woken, glommio::timer::sleep(wait)).await;
        self.high_watermark() > offset
    }

    /// Wakes every waiting fetch (after an append, or before the partition goes away).
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    fn error(&self, error: StorageError) -> PartitionError {
        PartitionError::from_storage(&self.topic, self.partition, error)
    }
}

/// The name of the storage crate's clean-shutdown marker file inside a log directory (written
/// by `PartitionLog::close`, removed by `open`). Only read here, to log which recovery path a
/// partition takes.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean_shutdown";

/// The directory of a partition's log: `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The topic configuration keys a topic may set, each overriding a [`LogConfig`] setting.
pub const TOPIC_CONFIG_KEYS: [&str; 5] = [
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
];

/// The log config of a topic: `base` with the topic's configuration entries applied.
/// `retention.ms` and `retention.bytes` take -1 for "no limit", as in Kafka.
pub fn topic_log_config(
    base: &LogConfig,
    configs: &[(String, String)],
) -> Result<LogConfig, ShardError> {
    let mut config = base.clone();
    for (key, value) in configs {
        let invalid = |reason: &str| ShardError::TopicConfig {
            key: key.clone(),
            value: value.clone(),
            reason: reason.to_string(),
        };
        let number: i64 = value
            .trim()
            .parse()
            .map_err(|_| invalid("not an integer"))?;
        let positive = || u64::try_from(number).map_err(|_| invalid("must not be negative"));
        let optional = || {
            if number == -1 {
                Ok(None)
            } else {
                positive().map(Some)
            }
        };
        match key.as_str() {
            "retention.ms" => config.retention_ms = optional()?,
            "retention.bytes" => config.retention_bytes = optional()?,
            "segment.bytes" => config.segment_bytes_max = positive()?,
            "segment.ms" => config.segment_ms_max = positive()?,
            "max.message.bytes" => {
                config.batch_bytes_max =
                    usize::try_from(positive()?).map_err(|_| invalid("too large"))?;
            }
            _ => {
                return Err(invalid(&format!(
                    "unknown topic config; known keys are {}",
                    TOPIC_CONFIG_KEYS.join(", ")
                )))
            }
        }
    }
    config.validate().map_err(|error| ShardError::TopicConfig {
        key: "(combined)".to_string(),
        value: String::new(),
        reason: error.to_string(),
    })?;
    Ok(config)
}

/// The partitions one shard owns, by topic and index. Lives on that shard only.
pub struct PartitionRegistry {
    data_dir: PathBuf,
    base_config: LogConfig,
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<Partition>>>>,
    /// Serialises reconcile/close so a log directory is never opened twice at once.
    changes: Semaphore,
}

impl PartitionRegistry {
    /// An empty registry whose logs live under `data_dir` with `base_config` (topic configs
    /// override parts of it).
    pub fn new(data_dir: impl Into<PathBuf>, base_config: LogConfig) -> PartitionRegistry {
        PartitionRegistry {
            data_dir: data_dir.into(),
            base_config,
            partitions: RefCell::new(HashMap::new()),
            changes: Semaphore::new(1),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log config partitions get before topic overrides.
    pub fn base_config(&self) -> &LogConfig {
        &self.base_config
    }

    /// The open partition `topic`-`partition`, if this shard has it.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    /// Number of open partitions.
    pub fn len(&self) -> usize {
        self.partitions.borrow().values().map(HashMap::len).sum()
    }

    /// True when no partition is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open partition.
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|by_index| by_index.values().cloned())
            .collect()
    }

    /// Makes the open partitions match what `table` says `shard` owns: opens (creating if
    /// missing) every owned partition that is not open, deletes the logs of open partitions
    /// whose topic or index no longer exists, and closes (without deleting) any that moved to
    /// another shard. Tries every partition and returns the first error.
    pub async fn reconcile(&self, table: &ShardTable, shard: ShardId) -> Result<(), ShardError> {
        let _exclusive = self
            .changes
            .acquire_permit(1)
            .await
            .map_err(|_| ShardError::Stopped { shard: shard.0 })?;
        let mut first_error = None;
        for partition in self.all() {
            let (topic, index) = (partition.topic().to_string(), partition.partition());
            let result = match table.owner(&topic, index) {
                Some(owner) if owner == shard => continue,
                Some(_) => self.remove(&topic, index, false).await,
                None => self.remove(&topic, index, true).await,
            };
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        for (topic, index) in table.owned_by(shard) {
            if self.get(&topic, index).is_some() {
                continue;
            }
            let configs = table
                .topic(&topic)
                .map(|assignment| assignment.configs.clone())
                .unwrap_or_default();
            if let Err(error) = self.open(&topic, index, &configs).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn open(
        &self,
        topic: &str,
        partition: i32,
        configs: &[(String, String)],
    ) -> Result<(), ShardError> {
        let config = topic_log_config(&self.base_config, configs)?;
        let dir = partition_dir(&self.data_dir, topic, partition);
        // Looked at before opening, since opening removes the marker.
        let clean_shutdown = dir.join(CLEAN_SHUTDOWN_MARKER).exists();
        let log =
            PartitionLog::open(&dir, config)
                .await
                .map_err(|source| ShardError::Partition {
                    operation: "open",
                    topic: topic.to_string(),
                    partition,
                    source,
                })?;
        tracing::info!(
            topic,
            partition,
            clean_shutdown,
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            "opened partition"
        );
        self.partitions
            .borrow_mut()
            .entry(topic.to_string())
            .or_default()
            .insert(partition, Rc::new(Partition::new(topic, partition, log)));
        Ok(())
    }

    async fn remove(&self, topic: &str, partition: i32, delete: bool) -> Result<(), ShardError> {
        let removed = {
            let mut partitions = self.partitions.borrow_mut();
            let removed = partitions
                .get_mut(topic)
                .and_then(|by_index| by_index.remove(&partition));
            if partitions.get(topic).is_some_and(HashMap::is_empty) {
                partitions.remove(topic);
            }
            removed
        };
        let Some(removed) = removed else {
            return Ok(());
        };
        removed.wake_waiters();
        let (operation, result) = if delete {
            ("delete", removed.log().delete().await)
        } else {
            ("close", removed.log().close().await)
        };
        tracing::info!(topic, partition, operation, "removed partition");
        result.map_err(|source| ShardError::Partition {
            operation,
            topic: topic.to_string(),
            partition,
            source,
        })
    }

    /// Flushes and closes every open partition (each writes its clean-shutdown marker), leaving
    /// the registry empty. Tries every partition and returns the first error.
    pub async fn close_all(&self) -> Result<(), ShardError> {
        let _exclusive = self
            .changes
            .acquire_permit(1)
            .await
            .map_err(|_| ShardError::Stopped { shard: u32::MAX })?;
        let mut first_error = None;
        for partition in self.all() {
            let result = self
                .remove(partition.topic(), partition.partition(), false)
                .await;
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves topic configs override the base log config (with -1 meaning "no limit") and that an
    // unknown key or a bad value is refused with the key named.
    #[test]
    fn topic_configs_override_the_base() {
        let base = LogConfig::default();
        let configs = vec![
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "1048576".to_string()),
            ("segment.bytes".to_string(), "65536".to_string()),
        ];
        let config = topic_log_config(&base, &configs).unwrap();
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(1_048_576));
        assert_eq!(config.segment_bytes_max, 65_536);
        assert_eq!(config.write_mode, base.write_mode);

        let unknown = vec![("cleanup.policy".to_string(), "compact".to_string())];
        let error = topic_log_config(&base, &unknown).unwrap_err().to_string();
        assert!(error.contains("cleanup.policy"), "{error}");
        let negative = vec![("segment.ms".to_string(), "-5".to_string())];
        let error = topic_log_config(&base, &negative).unwrap_err().to_string();
        assert!(error.contains("segment.ms"), "{error}");
    }
}
