//! Error types of the shard crate. Both are `Send`: they travel back over the mesh and to the
//! control plane inside replies.

use sluice_storage::batch::BatchError;
use sluice_storage::StorageError;

/// Errors of starting, configuring and running shards.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A shard-set setting is out of its bounds.
    #[error("invalid shard configuration: {0}")]
    InvalidConfig(String),
    /// An executor or its thread could not be created, or the mesh could not be joined.
    #[error("cannot start shard {shard}: {reason}")]
    Start {
        /// The shard.
        shard: u32,
        /// Why.
        reason: String,
    },
    /// A shard's thread panicked.
    #[error("shard {shard} panicked")]
    Panicked {
        /// The shard.
        shard: u32,
    },
    /// A shard no longer accepts messages (it has shut down).
    #[error("shard {shard} has stopped")]
    Stopped {
        /// The shard.
        shard: u32,
    },
    /// A topic configuration entry is unknown or its value is invalid.
    #[error("invalid topic config {key}={value}: {reason}")]
    TopicConfig {
        /// The configuration key.
        key: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A partition's log could not be opened, closed, or deleted.
    #[error("{operation} partition {topic}-{partition}: {source}")]
    Partition {
        /// "open", "close" or "delete".
        operation: &'static str,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What the log reported.
        #[source]
        source: StorageError,
    },
}

/// Errors of one operation on one partition (append, read, offsets), local or forwarded.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// No shard owns this topic-partition (the topic does not exist, or the partition index is
    /// past its partition count).
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The requested offset lies outside the log.
    #[error("offset {offset} is out of range for {topic}-{partition}: the log holds [{log_start_offset}, {log_end_offset})")]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The requested offset.
        offset: i64,
        /// First offset in the log.
        log_start_offset: i64,
        /// Offset the next append gets.
        log_end_offset: i64,
    },
    /// A record batch failed validation (bad CRC, header, or size); nothing was appended.
    #[error("invalid record batch for {topic}-{partition}: {source}")]
    InvalidBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What is wrong with the batch.
        #[source]
        source: BatchError,
    },
    /// The log failed (I/O error, disk full, corruption); the log is left as it was before.
    #[error("storage error on {topic}-{partition}: {source}")]
    Storage {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What the log reported.
        #[source]
        source: StorageError,
    },
    /// This broker is not the partition's leader (it follows another broker, the partition
    /// has no leader, or this broker holds no replica of it): refresh metadata and retry.
    #[error("this broker is not the leader of {topic}-{partition} (leader {leader})")]
    NotLeaderOrFollower {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The leader as this broker knows it, -1 when none or unknown.
        leader: i32,
    },
    /// A replica fetch carried a leader epoch older than the leader's.
    #[error(
        "leader epoch {requested} is older than the current epoch {current} of {topic}-{partition}"
    )]
    FencedLeaderEpoch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The epoch the request carried.
        requested: i32,
        /// The leader's epoch.
        current: i32,
    },
    /// An acks=all write was refused before it was appended: the ISR is smaller than
    /// `min.insync.replicas`.
    #[error("{topic}-{partition} has {isr} in-sync replicas but min.insync.replicas is {required}; nothing was appended")]
    NotEnoughReplicas {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// In-sync replicas now.
        isr: usize,
        /// The required minimum.
        required: usize,
    },
    /// An acks=all write was appended and committed, but the ISR shrank below
    /// `min.insync.replicas` meanwhile.
    #[error("{topic}-{partition}: the records were appended but only {isr} in-sync replicas remain (min.insync.replicas {required})")]
    NotEnoughReplicasAfterAppend {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// In-sync replicas now.
        isr: usize,
        /// The required minimum.
        required: usize,
    },
    /// An acks=all write was appended but the in-sync replicas did not all have it within the
    /// request's timeout.
    #[error("{topic}-{partition}: offset {last_offset} was not replicated to the in-sync replicas within {timeout_ms} ms")]
    ReplicationTimeout {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The last offset of the write.
        last_offset: i64,
        /// The request's timeout, milliseconds.
        timeout_ms: u64,
    },
    /// A new leader cannot answer an offset query yet: its high watermark still lags the start
    /// of its epoch until the followers have fetched (Kafka's OFFSET_NOT_AVAILABLE); retry.
    #[error("{topic}-{partition}: the new leader's high watermark {high_watermark} is still below the start of its epoch at {epoch_start_offset}; retry")]
    OffsetNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The leader's high watermark now.
        high_watermark: i64,
        /// Where the leader's epoch starts.
        epoch_start_offset: i64,
    },
    /// A forwarded request got no answer from the owning shard (it has stopped).
    #[error("shard {shard} did not answer the forwarded {operation}")]
    Forward {
        /// The owning shard.
        shard: u32,
        /// Which operation.
        operation: &'static str,
    },
}

impl PartitionError {
    /// Classifies a log error on `topic`-`partition`.
    pub fn from_storage(topic: &str, partition: i32, error: StorageError) -> PartitionError {
        match error {
            StorageError::OffsetOutOfRange { offset, start, end } => {
                PartitionError::OffsetOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    log_start_offset: start,
                    log_end_offset: end,
                }
            }
            StorageError::Batch { source, .. } => PartitionError::InvalidBatch {
                topic: topic.to_string(),
                partition,
                source,
            },
            other => PartitionError::Storage {
                topic: topic.to_string(),
                partition,
                source: other,
            },
        }
    }

    /// The error for a partition no shard owns.
    pub fn unknown(topic: &str, partition: i32) -> PartitionError {
        PartitionError::UnknownTopicOrPartition {
            topic: topic.to_string(),
            partition,
        }
    }

    /// The error for a partition this broker does not lead (`leader` as far as it knows).
    pub fn not_leader(topic: &str, partition: i32, leader: i32) -> PartitionError {
        PartitionError::NotLeaderOrFollower {
            topic: topic.to_string(),
            partition,
            leader,
        }
    }
}
