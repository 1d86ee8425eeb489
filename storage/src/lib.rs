//! Sluice storage engine: Kafka RecordBatch v2 batches kept in segmented partition logs,
//! written and read through glommio's io_uring reactor. See ARCHITECTURE.md for the map.

pub mod batch;
pub mod config;
pub mod error;
pub mod log;

mod fuzz_recovery;

mod checkpoint;
mod index;
mod recovery;
mod segment;
mod tail_cache;

pub use config::{FlushPolicy, LogConfig, RecoveryPolicy, WriteMode};
pub use error::StorageError;
pub use fuzz_recovery::{fuzz_recovery, RecoveryOutcome};
pub use log::{
    AppendInfo, FileSlice, PartitionLog, ReadSlice, APPEND_BYTES_MAX, APPEND_INFLIGHT_BYTES_MAX,
    APPEND_INFLIGHT_MAX,
};
