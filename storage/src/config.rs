//! Settings of one partition log. Every bound is a named setting with its unit last, checked by
//! [`LogConfig::validate`] before a log opens.

use crate::error::StorageError;

/// Default largest segment before the active one rolls: 1 GiB.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Largest allowed `segment_bytes_max`: index positions are u32, so a segment must stay below
/// 4 GiB.
pub const SEGMENT_BYTES_MAX_LIMIT: u64 = 1 << 32;
/// Smallest allowed `segment_bytes_max`; anything smaller only makes files, not sense.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Default age after which the active segment rolls: 7 days.
pub const SEGMENT_MS_MAX_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default bytes between two sparse index entries.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Default largest record batch: 8 MiB.
pub const BATCH_BYTES_MAX_DEFAULT: usize = 8 << 20;
/// Largest allowed `batch_bytes_max`: 64 MiB. Recovery scans with this limit, so a log written
/// under a larger setting than today's still reads back.
pub const BATCH_BYTES_MAX_LIMIT: usize = 64 << 20;
/// Default bytes appended between two fsyncs under [`FlushPolicy::Interval`]: 64 MiB.
pub const FLUSH_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Default time between two fsyncs under [`FlushPolicy::Interval`]: 1 s.
pub const FLUSH_MS_MAX_DEFAULT: u64 = 1000;
/// Default retention by age: 7 days.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default size of the direct-mode tail cache: 16 MiB.
pub const TAIL_CACHE_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// Largest allowed tail cache: 1 GiB per log.
pub const TAIL_CACHE_BYTES_MAX_LIMIT: usize = 1 << 30;
/// Default number of open read descriptors for closed segments.
pub const READ_HANDLES_MAX_DEFAULT: usize = 16;
/// Largest allowed `read_handles_max`, so one log cannot eat the process's descriptors.
pub const READ_HANDLES_MAX_LIMIT: usize = 4096;

/// How appended bytes reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Through the page cache with glommio's `BufferedFile` (Kafka's classic design).
    Buffered,
    /// With O_DIRECT through glommio's `DmaFile`, from aligned buffers, with an in-memory tail
    /// cache for the newest bytes.
    Direct,
}

/// When appended bytes are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append is fsynced before it is acknowledged.
    EveryAppend,
    /// Fsync once `flush_bytes_max` bytes are unflushed (in the background), or when
    /// `maintenance` finds the oldest unflushed byte older than `flush_ms_max`.
    Interval {
        /// Unflushed bytes that trigger a background fsync.
        flush_bytes_max: u64,
        /// Age in milliseconds after which `maintenance` fsyncs.
        flush_ms_max: u64,
    },
}

/// What opening a log does when recovery finds a torn or corrupt batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPolicy {
    /// Truncate the log at the first bad batch (dropping later segments) and warn.
    TruncateTail,
    /// Refuse to open: return `StorageError::Corrupt` naming the file and position.
    Refuse,
}

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Size at which the active segment rolls; at most 4 GiB (index positions are u32).
    pub segment_bytes_max: u64,
    /// Age at which the active segment rolls, by the wall clock from its first append (or, for
    /// a segment found at open, from the open).
    pub segment_ms_max: u64,
    /// Bytes between two entries of the sparse offset and time indexes.
    pub index_interval_bytes: u32,
    /// Largest record batch accepted; at most 64 MiB.
    pub batch_bytes_max: usize,
    /// Page cache or O_DIRECT.
    pub write_mode: WriteMode,
    /// When appends are fsynced.
    pub flush: FlushPolicy,
    /// What recovery does with a torn or corrupt batch.
    pub recovery: RecoveryPolicy,
    /// Closed segments whose newest timestamp is older than this are deleted.
    pub retention_ms: Option<u64>,
    /// Oldest closed segments are deleted while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Direct mode: newest bytes kept in memory to serve reads without the disk.
    pub tail_cache_bytes_max: usize,
    /// Open read descriptors kept for closed segments (least recently used are closed).
    pub read_handles_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            segment_ms_max: SEGMENT_MS_MAX_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            write_mode: WriteMode::Direct,
            flush: FlushPolicy::Interval {
                flush_bytes_max: FLUSH_BYTES_MAX_DEFAULT,
                flush_ms_max: FLUSH_MS_MAX_DEFAULT,
            },
            recovery: RecoveryPolicy::TruncateTail,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            tail_cache_bytes_max: TAIL_CACHE_BYTES_MAX_DEFAULT,
            read_handles_max: READ_HANDLES_MAX_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Checks every setting against its bounds.
    pub fn validate(&self) -> Result<(), StorageError> {
        check(
            "segment_bytes_max",
            (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX_LIMIT).contains(&self.segment_bytes_max),
            format!("must be in [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX_LIMIT}] bytes"),
        )?;
        check(
            "segment_ms_max",
            self.segment_ms_max > 0,
            "must be positive".to_string(),
        )?;
        check(
            "index_interval_bytes",
            self.index_interval_bytes > 0,
            "must be positive".to_string(),
        )?;
        check(
            "batch_bytes_max",
            (crate::batch::BATCH_HEADER_BYTES..=BATCH_BYTES_MAX_LIMIT)
                .contains(&self.batch_bytes_max),
            format!(
                "must be in [{}, {BATCH_BYTES_MAX_LIMIT}] bytes",
                crate::batch::BATCH_HEADER_BYTES
            ),
        )?;
        if let FlushPolicy::Interval {
            flush_bytes_max,
            flush_ms_max,
        } = self.flush
        {
            check(
                "flush.flush_bytes_max",
                flush_bytes_max > 0,
                "must be positive".to_string(),
            )?;
            check(
                "flush.flush_ms_max",
                flush_ms_max > 0,
                "must be positive".to_string(),
            )?;
        }
        check(
            "tail_cache_bytes_max",
            self.tail_cache_bytes_max <= TAIL_CACHE_BYTES_MAX_LIMIT,
            format!("must be at most {TAIL_CACHE_BYTES_MAX_LIMIT} bytes"),
        )?;
        check(
            "read_handles_max",
            (1..=READ_HANDLES_MAX_LIMIT).contains(&self.read_handles_max),
            format!("must be in [1, {READ_HANDLES_MAX_LIMIT}]"),
        )
    }
}

fn check(setting: &'static str, ok: bool, reason: String) -> Result<(), StorageError> {
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidConfig { setting, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the defaults pass validation and each out-of-range bound is rejected by name.
    #[test]
    fn validate_checks_every_bound() {
        LogConfig::default().validate().unwrap();
        let cases: Vec<(LogConfig, &str)> = vec![
            (
                LogConfig {
                    segment_bytes_max: SEGMENT_BYTES_MAX_LIMIT + 1,
                    ..LogConfig::default()
                },
                "segment_bytes_max",
            ),
            (
                LogConfig {
                    batch_bytes_max: BATCH_BYTES_MAX_LIMIT + 1,
                    ..LogConfig::default()
                },
                "batch_bytes_max",
            ),
            (
                LogConfig {
                    index_interval_bytes: 0,
                    ..LogConfig::default()
                },
                "index_interval_bytes",
            ),
            (
                LogConfig {
                    read_handles_max: 0,
                    ..LogConfig::default()
                },
                "read_handles_max",
            ),
            (
                LogConfig {
                    flush: FlushPolicy::Interval {
                        flush_bytes_max: 0,
                        flush_ms_max: 1,
                    },
                    ..LogConfig::default()
                },
                "flush.flush_bytes_max",
            ),
        ];
        for (config, name) in cases {
            match config.validate() {
                Err(StorageError::InvalidConfig { setting, .. }) => assert_eq!(setting, name),
                other => panic!("{name}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
