//! Sluice shards: one glommio executor per core, each owning the partitions the shard table
//! assigns it.
//!
//! - [`executor`]: [`ShardSet`] starts the executors (pinned or unbound), joins them into a
//!   channel mesh, and gives each a [`ShardContext`]; [`ShardControl`] is the control plane's
//!   inbox.
//! - [`table`]: [`ShardTable`], the versioned (topic, partition) -> [`ShardId`] map every shard
//!   keeps its own copy of.
//! - [`partition`]: [`Partition`] (log + replication role + waiting fetches and producers) and
//!   [`PartitionRegistry`].
//! - [`replica`]: the replication decisions, free of I/O: high watermark, ISR shrink and
//!   expand, the leader's OffsetForLeaderEpoch answer, the follower's truncation point.
//! - [`shard`]: [`Shard`], one shard's state, and the routing of partition operations to their
//!   owner, locally or as an owned [`ShardRequest`] over the mesh.
//! - [`metrics`]: per-shard counters and latency histograms the admin thread reads lock-free.
//! - `cleaner`: [`Shard::clean_dirtiest_log`], one round of the shard's log cleaner over the
//!   compacted logs it owns.
//!
//! **Invariant:** a partition's state is touched only by its owning executor; nothing on the
//! data path takes a lock.

mod cleaner;
pub mod error;
pub mod executor;
pub mod message;
pub mod metrics;
pub mod partition;
pub mod replica;
pub mod shard;
pub mod table;

pub use error::{PartitionError, ShardError};
pub use executor::{
    keep_freed_memory, usable_cpus, ControlReceiver, ControlSender, ShardContext, ShardControl,
    ShardPlacement, ShardSet, ShardSetConfig,
};
pub use message::{
    AppendOutcome, OffsetQuery, PartitionState, Reader, RemoteRead, ShardRequest, Visibility,
    ALL_COORDINATORS,
};
pub use metrics::{PartitionCatchUp, PartitionLag, ProtocolErrorKind, ShardMetrics};
pub use partition::{Partition, PartitionRegistry, Role, RoleView};
pub use replica::{IsrChangeKind, IsrOutcome, IsrProposal, LeaderState, ReplicaInfo, NO_LEADER};
pub use shard::{GroupAnswer, GroupService, Route, Shard};
pub use table::{
    new_topic_id, parse_topic_id_text, shard_for, topic_id_text, BrokerAddress, ClusterView,
    ShardId, ShardTable, TopicAssignment,
};
/// The topic id type (KIP-516) of [`TopicAssignment::topic_id`].
pub use uuid::Uuid;

/// Milliseconds since the Unix epoch by the wall clock (the clock replication decisions use).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
