//! Sluice storage engine: Kafka RecordBatch v2 batches kept in segmented partition logs,
//! written and read through glommio's io_uring reactor. See ARCHITECTURE.md for the map.

pub mod batch;
pub mod compaction;
pub mod config;
pub mod error;
pub mod fault;
pub mod log;
pub mod producer_state;

mod fuzz_recovery;

pub mod checkpoint;
mod index;
mod lanes;
mod reclaim;
mod recovery;
pub use recovery::RecoverySummary;
mod segment;
pub mod sync;
mod tail_cache;

pub use compaction::{CleanStats, Cleanability, LogCleaner};
pub use config::{
    CleanerConfig, CleanupPolicy, Durability, LogConfig, Ratio, RecoveryPolicy, WriteMode,
};
pub use error::StorageError;
pub use fuzz_recovery::{fuzz_recovery, RecoveryOutcome};
pub use log::{
    AppendBatches, AppendInfo, FileSlice, PartitionLog, ReadSlice, APPEND_BYTES_MAX,
    APPEND_INFLIGHT_BYTES_MAX, APPEND_INFLIGHT_MAX,
};
