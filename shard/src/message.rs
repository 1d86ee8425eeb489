//! Messages between shards. Every request is an owned value (`Send`, nothing borrowed) that
//! carries the oneshot sender its answer goes back on: one hop there, one hop back.

use bytes::Bytes;
use futures_channel::oneshot;

use crate::error::PartitionError;

/// Where a forwarded request's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, PartitionError>>;

/// The offsets of a partition as its owner sees them at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offset the next appended record gets.
    pub log_end_offset: i64,
    /// Offsets below it are visible to consumers. In single-node mode the in-sync replica set is
    /// the leader alone, so the high watermark equals the log end offset.
    pub high_watermark: i64,
}

/// The answer to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset given to the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The partition's offsets right after the append.
    pub state: PartitionState,
    /// An idempotent producer's retry answered with the original offsets (nothing appended).
    pub duplicate: bool,
}

/// The answer to a forwarded read: whole batches copied out of the owner's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRead {
    /// Whole record batches (may be empty).
    pub records: Bytes,
    /// The partition's offsets when it was read.
    pub state: PartitionState,
}

/// Who reads a partition: a consumer sees only committed records (below the high watermark) and
/// only from the leader; a follower replica reads up to the leader's log end offset, and its
/// fetch offset tells the leader how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// A consumer (replica id -1).
    Consumer,
    /// A follower replica.
    Replica {
        /// The follower's node id.
        node_id: i32,
        /// The leader epoch the follower believes current, -1 when it does not say.
        leader_epoch: i32,
    },
}

/// What a long-polling fetch waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// The high watermark passing the offset (consumers).
    Committed,
    /// The log end offset passing the offset (follower replicas).
    LogEnd,
}

/// Which offset a ListOffsets query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next consumed record will have).
    Latest,
    /// The first offset whose batch's max timestamp is at or after this Unix time in ms.
    Timestamp(i64),
}

/// A request from one shard to the shard that owns a partition.
///
/// Each variant says what the owning shard touches when it handles it.
#[derive(Debug)]
pub enum ShardRequest {
    /// Append record batches (already validated by the sender; the owner's log validates them
    /// again before writing). The bytes are moved, never copied, on the way. Touches: the
    /// owner's PartitionRegistry (lookup), the partition's log (append) and its waiter list
    /// (wakes long-polling fetches).
    Append {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Concatenated record batches, with what is known of their CRCs.
        batches: sluice_storage::AppendBatches,
        /// acks=all: answer only once the high watermark passes the appended records, waiting
        /// at most this many milliseconds. `None`: answer after the local append.
        acks_all_timeout_ms: Option<u64>,
        /// Answered with the assigned offsets.
        reply: Reply<AppendOutcome>,
    },
    /// Read whole batches from `offset` (a copying read, the answer crosses cores). Touches: the
    /// PartitionRegistry (lookup), the partition's log (read_bytes) and, for a replica, the
    /// leader's record of that follower (and the high watermark).
    Read {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// First offset wanted.
        offset: i64,
        /// Byte budget (at least one whole batch is returned when there is one); 0 asks for the
        /// partition's offsets only.
        max_bytes: usize,
        /// A consumer or a follower replica.
        reader: Reader,
        /// Answered with the bytes and the partition's offsets.
        reply: Reply<RemoteRead>,
    },
    /// Answer once the high watermark (or the log end offset, for a replica) passes `offset`,
    /// after `wait_ms`, or when the requester gives up (drops its receiver), whichever is
    /// first. Touches: the partition's waiter list.
    WaitForData {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The fetch position: data is available when the watched offset is above it.
        offset: i64,
        /// Which offset to watch.
        visibility: Visibility,
        /// Longest wait in milliseconds.
        wait_ms: u64,
        /// Answered (with nothing) when the wait ends.
        reply: oneshot::Sender<()>,
    },
    /// Resolve an offset query. Touches: the partition's log (offsets, time index).
    ListOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What to look up.
        query: OffsetQuery,
        /// Answered with the offset, or `None` when no record is at or after the timestamp.
        reply: Reply<Option<i64>>,
    },
    /// The end offset of a leader epoch (KIP-101/279). Touches: the log's leader-epoch cache.
    EpochEnd {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The epoch asked about.
        epoch: i32,
        /// Answered with `(epoch, end_offset)`, or `None` when the log knows no epoch at or
        /// below the one asked about.
        reply: Reply<Option<(i32, i64)>>,
    },
    /// A consumer-group request for the coordinator of partition `partition` of
    /// `__consumer_offsets` on this shard (any shard can receive a group request; Kafka
    /// clients cannot pick the shard). JoinGroup and SyncGroup are long polls: the answer comes
    /// when the rebalance moves. `partition` [`ALL_COORDINATORS`] asks every coordinator of the
    /// shard (ListGroups). Touches: the shard's group service (its coordinators, and through
    /// them the partition's log for the writes they ask for).
    Group {
        /// The partition of `__consumer_offsets`, or [`ALL_COORDINATORS`].
        partition: i32,
        /// The request.
        request: sluice_group::GroupRequest,
        /// Answered with the coordinator's answer.
        reply: oneshot::Sender<sluice_group::GroupResponse>,
    },
}

/// The `partition` of a [`ShardRequest::Group`] that asks every coordinator of the shard.
pub const ALL_COORDINATORS: i32 = -1;

impl ShardRequest {
    /// A short name of the operation, for errors and logs.
    pub fn operation(&self) -> &'static str {
        match self {
            ShardRequest::Append { .. } => "append",
            ShardRequest::Read { .. } => "read",
            ShardRequest::WaitForData { .. } => "wait",
            ShardRequest::ListOffset { .. } => "list offset",
            ShardRequest::EpochEnd { .. } => "epoch end",
            ShardRequest::Group { .. } => "group",
        }
    }
}
