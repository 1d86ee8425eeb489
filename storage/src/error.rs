//! `StorageError`: every way a partition log operation can fail, with the context (operation,
//! path, offset, position) an operator needs to act on it.

use std::path::PathBuf;

use crate::batch::BatchError;

/// Errors of the storage crate.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch handed to `append`/`append_replicated` is malformed; nothing was written.
    #[error("invalid record batch at byte {position} of the append: {source}")]
    Batch {
        /// Byte position of the bad batch inside the appended buffer.
        position: usize,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },
    /// A file operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done ("write", "fsync", "open", ...).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The offset is below the log start or above the log end.
    #[error("offset {offset} is out of range: the log holds [{start}, {end})")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset.
        start: i64,
        /// The log end offset.
        end: i64,
    },
    /// A `LogConfig` setting is out of its bounds.
    #[error("invalid log config: {setting} {reason}")]
    InvalidConfig {
        /// The setting's name.
        setting: &'static str,
        /// Its bounds.
        reason: String,
    },
    /// A file of the log holds bytes that are not a valid log (found by recovery or a read).
    #[error("corrupt log file {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position of the bad data in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// Replicated batches do not continue the log: the first base offset must equal the log end
    /// offset and each batch must start where the previous one ended.
    #[error("replicated batch at byte {position} has base offset {found}, expected {expected}")]
    NonContiguous {
        /// The offset the log expected.
        expected: i64,
        /// The base offset the batch carries.
        found: i64,
        /// Byte position of the batch inside the appended buffer.
        position: usize,
    },
    /// An idempotent producer's batch failed the sequence check (fenced epoch, gap, unknown
    /// producer); nothing was appended.
    #[error("idempotent producer check failed: {0}")]
    Producer(#[from] crate::producer_state::ProducerStateError),
    /// A batch carries a leader epoch older than the newest epoch in the log.
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleEpoch {
        /// The epoch of the append.
        epoch: i32,
        /// The newest epoch in the log.
        latest: i32,
    },
    /// `append` was called with no bytes.
    #[error("append holds no record batch")]
    EmptyAppend,
    /// One append is larger than `APPEND_BYTES_MAX`.
    #[error("append of {bytes} bytes exceeds the limit of {max} bytes")]
    AppendTooLarge {
        /// Size of the append.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Offsets would pass i64::MAX.
    #[error("offset overflow: base offset {base_offset} plus the batch's offsets passes i64::MAX")]
    OffsetOverflow {
        /// Base offset of the batch that overflowed.
        base_offset: i64,
    },
    /// An earlier append that was still in flight failed; this one, written behind it, was
    /// rolled back with it and is not in the log.
    #[error("append at offset {base_offset} aborted: an earlier append in flight failed")]
    Aborted {
        /// The base offset this append had been given.
        base_offset: i64,
    },
    /// The log is offline: an fsync (or another operation after which the bytes on disk are
    /// unknown) failed. Failed fsyncs are never retried, since the kernel may already have
    /// dropped the pages it could not write ("fsyncgate"); nothing is appended, acknowledged or
    /// read until the log is reopened, which recovers it from what is really on disk.
    #[error("the partition log in {dir} is offline after a failed {operation}: {reason}")]
    Offline {
        /// The log's directory.
        dir: PathBuf,
        /// What failed ("fsync segment", "fsync log directory").
        operation: &'static str,
        /// The operating system's error.
        reason: String,
    },
    /// The log was closed or deleted.
    #[error("the partition log is closed")]
    Closed,
    /// A record without a key was appended to a compacted log; nothing was written.
    #[error("record at offset delta {offset_delta} of the batch at byte {position} has no key; a compacted topic requires a key on every record")]
    MissingKey {
        /// Byte position of the batch inside the appended buffer.
        position: usize,
        /// Offset delta of the keyless record inside its batch.
        offset_delta: i64,
    },
}

/// For callers that check a batch themselves and use `?`: the batch is taken to start the
/// buffer (position 0).
impl From<BatchError> for StorageError {
    fn from(source: BatchError) -> StorageError {
        StorageError::Batch {
            position: 0,
            source,
        }
    }
}

impl StorageError {
    /// Builds an `Io` error from anything convertible to `std::io::Error` (glommio's errors are).
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<std::io::Error>,
    ) -> StorageError {
        StorageError::Io {
            operation,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Builds a `Corrupt` error.
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}
