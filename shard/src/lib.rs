//! Sluice shards: one glommio executor per core, each owning the partitions the shard table
//! assigns it.
//!
//! - [`executor`]: [`ShardSet`] starts the executors (pinned or unbound), joins them into a
//!   channel mesh, and gives each a [`ShardContext`]; [`ShardControl`] is the control plane's
//!   inbox.
//! - [`table`]: [`ShardTable`], the versioned (topic, partition) -> [`ShardId`] map every shard
//!   keeps its own copy of.
//! - [`partition`]: [`Partition`] (log + waiting fetches + leader epoch) and
//!   [`PartitionRegistry`].
//! - [`shard`]: [`Shard`], one shard's state, and the routing of partition operations to their
//!   owner, locally or as an owned [`ShardRequest`] over the mesh.
//! - [`metrics`]: per-shard counters and latency histograms the admin thread reads lock-free.
//!
//! **Invariant:** a partition's state is touched only by its owning executor; nothing on the
//! data path takes a lock.

pub mod error;
pub mod executor;
pub mod message;
pub mod metrics;
pub mod partition;
pub mod shard;
pub mod table;

pub use error::{PartitionError, ShardError};
pub use executor::{
    usable_cpus, ControlReceiver, ControlSender, ShardContext, ShardControl, ShardPlacement,
    ShardSet, ShardSetConfig,
};
pub use message::{AppendOutcome, OffsetQuery, PartitionState, RemoteRead, ShardRequest};
pub use metrics::{ProtocolErrorKind, ShardMetrics};
pub use partition::{Partition, PartitionRegistry};
pub use shard::{Route, Shard};
pub use table::{shard_for, ShardId, ShardTable, TopicAssignment};
