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
/// Default bytes appended between two fsyncs under [`Durability::Interval`]: 64 MiB.
pub const FLUSH_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Default time between two fsyncs under [`Durability::Interval`]: 1 s.
pub const FLUSH_MS_MAX_DEFAULT: u64 = 1000;
/// Default retention by age: 7 days.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// The durability a log gets unless configured otherwise: `Durable`, every acknowledgement
/// fsynced. On the quiet-machine benchmark of 2026-12-05 (benches/RESULTS.md) it had the lower
/// tail at 50k msg/s (end-to-end p99 3.9-4.3 ms against 5.9 ms for interval) and a max rate
/// within 3 % of interval's, so the safer mode costs nothing worth keeping it opt-in for.
pub const DURABILITY_DEFAULT: Durability = Durability::Durable;
/// Default size of the direct-mode tail cache: 16 MiB.
pub const TAIL_CACHE_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// Largest allowed tail cache: 1 GiB per log.
pub const TAIL_CACHE_BYTES_MAX_LIMIT: usize = 1 << 30;
/// Default number of open read descriptors for closed segments.
pub const READ_HANDLES_MAX_DEFAULT: usize = 16;
/// Largest allowed `read_handles_max`, so one log cannot eat the process's descriptors.
pub const READ_HANDLES_MAX_LIMIT: usize = 4096;
/// Default time a tombstone is kept after the cleaning that made it the only record of its key
/// (Kafka's `delete.retention.ms`): 1 day.
pub const DELETE_RETENTION_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
/// Default share of dirty bytes (written since the last cleaning) in the cleanable part of a
/// log before the cleaner rewrites it (Kafka's `min.cleanable.dirty.ratio`).
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;
/// Default "no limit" of `max_compaction_lag_ms` (Kafka's default, `Long.MAX_VALUE`).
pub const MAX_COMPACTION_LAG_MS_DEFAULT: u64 = i64::MAX as u64;
/// Default cleaner I/O budget per shard, reads and writes together: 64 MiB/s.
pub const CLEANER_IO_BYTES_PER_SECOND_MAX_DEFAULT: u64 = 64 << 20;
/// Smallest allowed cleaner I/O budget: below this a cleaning of one segment takes hours.
pub const CLEANER_IO_BYTES_PER_SECOND_MIN: u64 = 64 << 10;
/// Default memory of the cleaner's key -> newest offset map per shard: 32 MiB.
pub const CLEANER_OFFSET_MAP_BYTES_MAX_DEFAULT: usize = 32 << 20;
/// Smallest allowed offset map: it must hold the keys of at least a few batches.
pub const CLEANER_OFFSET_MAP_BYTES_MIN: usize = 64 << 10;
/// Default pause of a shard's cleaner when no log needs cleaning (Kafka's
/// `log.cleaner.backoff.ms`).
pub const CLEANER_BACKOFF_MS_DEFAULT: u64 = 15_000;

/// How appended bytes reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Through the page cache with glommio's `BufferedFile` (Kafka's classic design).
    Buffered,
    /// With O_DIRECT through glommio's `DmaFile`, from aligned buffers, with an in-memory tail
    /// cache for the newest bytes.
    Direct,
}

/// What an acknowledged append promises, independent of the write mode (DESIGN.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// An append returns (and becomes visible to readers: its offsets move the log end) only
    /// once its bytes are durable: written and covered by an fdatasync. Appends whose writes
    /// finish while a sync is in flight share the next one (group commit: at most one fdatasync
    /// in flight per log). A power loss loses nothing an append returned for.
    Durable,
    /// An append returns and is visible once written (to the page cache or, in direct mode, to
    /// the device's volatile cache). The log fsyncs once `flush_bytes_max` bytes are unflushed
    /// (in the background) or when `maintenance` finds the oldest unflushed byte older than
    /// `flush_ms_max`. A power loss can lose what was appended since the last completed fsync
    /// (the flushed offset); a killed process loses nothing.
    Interval {
        /// Unflushed bytes that trigger a background fsync.
        flush_bytes_max: u64,
        /// Age in milliseconds after which `maintenance` fsyncs.
        flush_ms_max: u64,
    },
}

/// What happens to old records of a topic (Kafka's `cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Closed segments are deleted by retention (`retention_ms`, `retention_bytes`).
    Delete,
    /// The cleaner keeps only the newest record of each key; retention deletes nothing.
    Compact,
    /// Both: the cleaner compacts, and retention still deletes old segments.
    CompactDelete,
}

impl CleanupPolicy {
    /// True when the cleaner compacts the log (and appends must carry keys).
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// True when retention deletes old segments.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// Parses Kafka's spelling: `delete`, `compact`, or both separated by a comma in either
    /// order (spaces around the names are ignored).
    pub fn parse(text: &str) -> Option<CleanupPolicy> {
        let mut compact = false;
        let mut delete = false;
        for name in text.split(',') {
            match name.trim() {
                "compact" if !compact => compact = true,
                "delete" if !delete => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }

    /// Kafka's spelling of the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// A ratio in [0, 1] (a plain `f64` would keep [`LogConfig`] from being `Eq`; a validated
/// ratio is never NaN, so comparing bits is equality).
#[derive(Debug, Clone, Copy)]
pub struct Ratio(f64);

impl Ratio {
    /// The ratio `value`, or `None` when it is not a number in [0, 1].
    pub fn new(value: f64) -> Option<Ratio> {
        (0.0..=1.0).contains(&value).then_some(Ratio(value))
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Ratio {
    fn eq(&self, other: &Ratio) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Ratio {}

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
    /// What an acknowledged append promises (when appends are fsynced).
    pub durability: Durability,
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
    /// Delete by retention, compact by key, or both.
    pub cleanup_policy: CleanupPolicy,
    /// Compacted logs: a tombstone (null value) stays at least this long after the cleaning
    /// that removed the older records of its key, so a reader scanning from the start within
    /// this time sees the deletion.
    pub delete_retention_ms: u64,
    /// Compacted logs: the cleaner rewrites a log once this share of its cleanable bytes was
    /// written since the last cleaning.
    pub min_cleanable_dirty_ratio: Ratio,
    /// Compacted logs: records newer than this (by batch timestamp) are never compacted.
    pub min_compaction_lag_ms: u64,
    /// Compacted logs: a record older than this is cleaned whatever the dirty ratio; the
    /// active segment also rolls at this age so its records become cleanable.
    pub max_compaction_lag_ms: u64,
    /// An idempotent producer's state (its sequence window) is forgotten this long after its
    /// newest batch's timestamp (Kafka's `producer.id.expiration.ms`); its next batch must
    /// then start a new sequence.
    pub producer_id_expiration_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            segment_ms_max: SEGMENT_MS_MAX_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            write_mode: WriteMode::Direct,
            durability: DURABILITY_DEFAULT,
            recovery: RecoveryPolicy::TruncateTail,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            tail_cache_bytes_max: TAIL_CACHE_BYTES_MAX_DEFAULT,
            read_handles_max: READ_HANDLES_MAX_DEFAULT,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_cleanable_dirty_ratio: Ratio(MIN_CLEANABLE_DIRTY_RATIO_DEFAULT),
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: MAX_COMPACTION_LAG_MS_DEFAULT,
            producer_id_expiration_ms: crate::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT,
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
            "producer_id_expiration_ms",
            self.producer_id_expiration_ms > 0,
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
        if let Durability::Interval {
            flush_bytes_max,
            flush_ms_max,
        } = self.durability
        {
            check(
                "durability.flush_bytes_max",
                flush_bytes_max > 0,
                "must be positive".to_string(),
            )?;
            check(
                "durability.flush_ms_max",
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
        )?;
        check(
            "max_compaction_lag_ms",
            self.max_compaction_lag_ms > 0,
            "must be positive".to_string(),
        )?;
        check(
            "min_compaction_lag_ms",
            self.min_compaction_lag_ms <= self.max_compaction_lag_ms,
            format!(
                "must be at most max_compaction_lag_ms ({} ms)",
                self.max_compaction_lag_ms
            ),
        )
    }

    /// The age at which the active segment rolls: `segment_ms_max`, or for a compacted log
    /// `max_compaction_lag_ms` when that is sooner (the active segment is never cleaned, so its
    /// records must leave it to meet the lag bound).
    pub fn roll_ms_max(&self) -> u64 {
        if self.cleanup_policy.compacts() {
            self.segment_ms_max.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms_max
        }
    }
}

/// Settings of one shard's log cleaner (see `compaction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Bytes per second the cleaner may read and write together (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`), so cleaning never starves appends of the disk.
    pub io_bytes_per_second_max: u64,
    /// Memory for the key -> newest offset map of one cleaning (keys plus a fixed overhead per
    /// entry). A log with more distinct dirty keys is cleaned in several rounds.
    pub offset_map_bytes_max: usize,
    /// Pause between two looks for a log to clean when none needed it.
    pub backoff_ms: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            io_bytes_per_second_max: CLEANER_IO_BYTES_PER_SECOND_MAX_DEFAULT,
            offset_map_bytes_max: CLEANER_OFFSET_MAP_BYTES_MAX_DEFAULT,
            backoff_ms: CLEANER_BACKOFF_MS_DEFAULT,
        }
    }
}

impl CleanerConfig {
    /// Checks every setting against its bounds.
    pub fn validate(&self) -> Result<(), StorageError> {
        check(
            "log_cleaner_io_bytes_per_second_max",
            self.io_bytes_per_second_max >= CLEANER_IO_BYTES_PER_SECOND_MIN,
            format!("must be at least {CLEANER_IO_BYTES_PER_SECOND_MIN} bytes per second"),
        )?;
        check(
            "log_cleaner_offset_map_bytes_max",
            self.offset_map_bytes_max >= CLEANER_OFFSET_MAP_BYTES_MIN,
            format!("must be at least {CLEANER_OFFSET_MAP_BYTES_MIN} bytes"),
        )?;
        check(
            "log_cleaner_backoff_ms",
            self.backoff_ms > 0,
            "must be positive".to_string(),
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
                    min_compaction_lag_ms: 10,
                    max_compaction_lag_ms: 5,
                    ..LogConfig::default()
                },
                "min_compaction_lag_ms",
            ),
            (
                LogConfig {
                    durability: Durability::Interval {
                        flush_bytes_max: 0,
                        flush_ms_max: 1,
                    },
                    ..LogConfig::default()
                },
                "durability.flush_bytes_max",
            ),
        ];
        for (config, name) in cases {
            match config.validate() {
                Err(StorageError::InvalidConfig { setting, .. }) => assert_eq!(setting, name),
                other => panic!("{name}: expected InvalidConfig, got {other:?}"),
            }
        }
        CleanerConfig::default().validate().unwrap();
        let slow = CleanerConfig {
            io_bytes_per_second_max: 1,
            ..CleanerConfig::default()
        };
        assert!(matches!(
            slow.validate(),
            Err(StorageError::InvalidConfig {
                setting: "log_cleaner_io_bytes_per_second_max",
                ..
            })
        ));
    }

    // Proves cleanup.policy accepts Kafka's spellings (either order, spaces) and nothing else.
    #[test]
    fn cleanup_policy_parses_kafka_spellings() {
        assert_eq!(CleanupPolicy::parse("delete"), Some(CleanupPolicy::Delete));
        assert_eq!(
            CleanupPolicy::parse("compact"),
            Some(CleanupPolicy::Compact)
        );
        for both in ["compact,delete", "delete,compact", " compact , delete "] {
            assert_eq!(
                CleanupPolicy::parse(both),
                Some(CleanupPolicy::CompactDelete)
            );
        }
        for bad in [
            "",
            "compacted",
            "compact,compact",
            "delete,",
            "compact;delete",
        ] {
            assert_eq!(CleanupPolicy::parse(bad), None, "{bad:?}");
        }
        assert!(CleanupPolicy::Compact.compacts() && !CleanupPolicy::Compact.deletes());
        assert!(Ratio::new(1.5).is_none() && Ratio::new(f64::NAN).is_none());
    }
}
