//! `PartitionLog`: the log of one partition replica in `<data>/<topic>-<partition>/`.
//!
//! Lives on exactly one glommio executor (it is `!Send`) and is shared by that executor's
//! tasks as `Rc<PartitionLog>`; every method takes `&self`. State sits in a `RefCell` that is
//! never borrowed across an `.await`. Appends take an executor-local semaphore only while they
//! are validated against the log and given offsets; their writes then run in their own tasks,
//! several in flight at once, and are published (made readable: the log end offset moves)
//! strictly in offset order, under `Durability::Durable` only once an fdatasync covers them.
//!
//! **Invariant:** a read sees only batches whose bytes are completely written, and under
//! `Durability::Durable` only batches that are durable; an append returns no sooner.
//! **Invariant:** after a failed fsync the log is offline: nothing more is appended,
//! acknowledged or read until it is reopened.
//! **Invariant:** a failed append leaves the log as it was (same end offset, same bytes);
//! appends in flight behind it fail with `StorageError::Aborted`.
//! **Invariant:** every segment except the last is immutable; once its background seal is done
//! (before the next roll, truncation or close) it is fsynced and has its index files.

mod admin;
mod append;
mod cleaning;
mod commit;
mod read;
mod replica;
mod roll;

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    fs::File,
    path::{Path, PathBuf},
    rc::Rc,
    time::{SystemTime, UNIX_EPOCH},
};

use glommio::sync::Semaphore;

use crate::{
    checkpoint::{self, EpochCache, LEADER_EPOCH_FILE, RECOVERY_POINT_FILE},
    compaction::CleaningState,
    config::{LogConfig, WriteMode},
    error::StorageError,
    producer_state::{files as producer_files, ProducerEntry, ProducerStateManager},
    recovery::RecoverySummary,
    recovery::{self, CLEAN_SHUTDOWN_FILE},
    segment::{
        writer::{Completion, SegmentWriter},
        ReadHandles, Segment,
    },
    tail_cache::TailCache,
};

/// Appends whose writes may be in flight at once per log; more wait for a slot. Several keep
/// the device busy while the next append is validated and copied into aligned buffers.
pub const APPEND_INFLIGHT_MAX: usize = 16;
/// Bytes of appends in flight at once per log (a larger single append counts as this much):
/// bounds the memory an append burst holds (its buffer and, in direct mode, the aligned copy).
pub const APPEND_INFLIGHT_BYTES_MAX: usize = 16 << 20;
/// Largest single append (all its batches together): 256 MiB.
pub const APPEND_BYTES_MAX: usize = 256 << 20;
/// Periodic maintenance writes the recovery-point checkpoint at most this often (Kafka's
/// `log.flush.offset.checkpoint.interval.ms`). Each checkpoint costs a write, an fsync and a
/// rename, i.e. device cache flushes and a journal commit that stall the log's O_DIRECT writes;
/// doing it every second for every partition was the largest source of write-latency spikes.
/// A checkpoint that lags only makes recovery after a crash scan more, never wrongly.
pub const RECOVERY_POINT_CHECKPOINT_MS: i64 = 60_000;

/// Maintenance looks for expired idempotent producers at most this often (Kafka's
/// `producer.id.expiration.check.interval.ms` default).
pub const PRODUCER_EXPIRATION_CHECK_MS: i64 = 600_000;

/// Batches for [`PartitionLog::append`], with what is known of their CRCs already.
#[derive(Debug)]
pub struct AppendBatches {
    /// Whole batches, back to back.
    pub bytes: bytes::BytesMut,
    /// Length of the prefix of `bytes` whose batches' CRCs were matched as they arrived (a
    /// [`StreamCheck`](crate::batch::StreamCheck)'s `verified_bytes` over the same bytes; 0 when
    /// none were): the log does not compute those CRCs again. Every other check still runs.
    pub crc_verified_bytes: usize,
}

impl From<bytes::BytesMut> for AppendBatches {
    /// Batches none of whose CRCs were checked yet.
    fn from(bytes: bytes::BytesMut) -> Self {
        AppendBatches {
            bytes,
            crc_verified_bytes: 0,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest batch max timestamp of the append.
    pub max_timestamp: i64,
    /// Log end offset right after this append.
    pub log_end_offset: i64,
    /// The batches were an idempotent producer's retry of batches already in the log: nothing
    /// was appended, and the offsets are the originals'.
    pub duplicate: bool,
}

/// Bytes a read returns: nothing, a file range to splice, or memory from the tail cache.
#[derive(Debug, Clone)]
pub enum ReadSlice {
    /// No batch to return (offset at the end, or its batch is not below `max_offset`).
    Empty,
    /// Whole batches in a segment file.
    File(FileSlice),
    /// Whole batches from the direct-mode tail cache: slices of its buffers, in order, none
    /// empty (one per append the read spans; not copied into one buffer).
    Memory(Vec<bytes::Bytes>),
}

/// A range of a segment file holding whole batches.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// Buffered read-only descriptor of the segment; the network layer splices
    /// `[position, position + len)` from it. It stays valid after the segment is deleted by
    /// retention; a `truncate_to` may shorten the file under it.
    pub file: Rc<File>,
    /// Byte position of the first batch.
    pub position: u64,
    /// Bytes of whole batches.
    pub len: usize,
}

/// Milliseconds since the Unix epoch by the wall clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Runs synchronous file work on glommio's blocking thread pool.
pub(crate) async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(work).await
}

/// The log of one partition replica.
pub struct PartitionLog {
    inner: Rc<LogInner>,
}

/// State shared with the tasks that run appends' writes.
pub(crate) struct LogInner {
    dir: PathBuf,
    /// The settings in force; topic-level ones may be replaced while the log is open
    /// ([`PartitionLog::set_config`]). Read through [`LogInner::config`], which hands out the
    /// current `Rc` so no borrow is held across an await.
    config: RefCell<Rc<LogConfig>>,
    state: RefCell<LogState>,
    /// Serialises reservations (offset assignment) and structural changes (roll, truncate,
    /// retention, close).
    append_lock: Semaphore,
    /// Bounds appends in flight to `APPEND_INFLIGHT_MAX`.
    inflight: Rc<Semaphore>,
    /// Bounds bytes of appends in flight to `APPEND_INFLIGHT_BYTES_MAX`.
    inflight_bytes: Rc<Semaphore>,
    /// One checkpoint file write at a time (they share temporary file names).
    checkpoint_lock: Semaphore,
    log_start: Cell<i64>,
    log_end: Cell<i64>,
    flushed: Cell<i64>,
    closed: Cell<bool>,
    /// The cleaner's checkpoint and whether segments may have offset gaps (compacted logs).
    cleaning: RefCell<CleaningState>,
    /// Set by a failed fsync: (what failed, the error). Never cleared; the log is reopened.
    offline: RefCell<Option<(&'static str, String)>>,
    /// What recovery found when the log opened.
    recovered: RecoverySummary,
}

/// Mutable state of a log. Segments and the published end are changed only when an append is
/// published or under `append_lock`.
pub(crate) struct LogState {
    /// Segments in offset order; never empty; the last is the active one.
    segments: Vec<Segment>,
    /// Writer of the active segment; `None` once closed.
    writer: Option<SegmentWriter>,
    /// Read descriptor of the active segment.
    active_read: Rc<File>,
    handles: ReadHandles,
    tail: TailCache,
    /// Epochs of published batches.
    epochs: EpochCache,
    /// Epochs including appends reserved but not yet published (what the checkpoint holds).
    reserved_epochs: EpochCache,
    /// Offset the next reservation starts at (log end plus appends in flight).
    next_offset: i64,
    /// Written-in-order completion of the newest append in flight.
    last_completion: Option<Rc<Completion>>,
    /// Published-or-failed completion of the newest append in flight.
    last_published: Option<Rc<Completion>>,
    /// Written appends waiting, in offset order, to be published.
    unpublished: VecDeque<append::Written>,
    /// A commit task (durable mode) is running.
    sync_running: bool,
    /// The directory must be fsynced before anything more counts as durable (a roll renamed
    /// or created the active segment).
    dir_sync_pending: bool,
    /// The next segment, prepared ahead of the roll.
    prepared: Option<roll::PreparedSegment>,
    preparing: bool,
    /// Finished when the background seal of the last rolled segment is done.
    sealing: Option<Rc<Completion>>,
    /// A write failed (why): the file must be rewound before the next append.
    poisoned: Option<String>,
    /// Bumped by every rewind and truncation, so a flush that raced one does not advance the
    /// flushed offset over bytes it did not sync.
    generation: u64,
    /// Bytes published since the log opened, and how many of them an fsync covered.
    published_bytes: u64,
    flushed_bytes: u64,
    /// Wall clock of the oldest unflushed publish.
    unflushed_since_ms: Option<i64>,
    background_flush: bool,
    /// Recovery point last written to its checkpoint.
    checkpointed_recovery_point: i64,
    /// Idempotent-producer state of the published batches.
    producers: ProducerStateManager,
    /// Producer state including appends reserved but not yet published: what the sequence
    /// check of the next leader append runs against (so a retry of a batch still in flight is
    /// a duplicate, never a second append). Reset to `producers` when a failed write rewinds.
    reserved_producers: ProducerStateManager,
    /// Wall clock of the last removal of expired producers.
    producers_expired_ms: Option<i64>,
    /// Wall clock of the last periodic recovery-point checkpoint.
    recovery_point_checkpointed_ms: Option<i64>,
}

impl LogState {
    /// The state of a log just recovered: `segments` (the last active, written by `writer`),
    /// ending at `end`.
    fn new(
        segments: Vec<Segment>,
        writer: SegmentWriter,
        active_read: Rc<File>,
        config: &LogConfig,
        epochs: EpochCache,
        producers: ProducerStateManager,
        end: i64,
    ) -> LogState {
        let tail_bytes_max = match config.write_mode {
            WriteMode::Direct => config.tail_cache_bytes_max,
            WriteMode::Buffered => 0,
        };
        LogState {
            segments,
            writer: Some(writer),
            active_read,
            handles: ReadHandles::new(config.read_handles_max),
            tail: TailCache::new(tail_bytes_max),
            reserved_epochs: epochs.clone(),
            epochs,
            next_offset: end,
            last_completion: None,
            last_published: None,
            unpublished: VecDeque::new(),
            sync_running: false,
            dir_sync_pending: false,
            prepared: None,
            preparing: false,
            sealing: None,
            poisoned: None,
            generation: 0,
            published_bytes: 0,
            flushed_bytes: 0,
            unflushed_since_ms: None,
            background_flush: false,
            checkpointed_recovery_point: end,
            recovery_point_checkpointed_ms: None,
            reserved_producers: producers.clone(),
            producers,
            producers_expired_ms: None,
        }
    }
}

impl PartitionLog {
    /// Opens (creating when missing) the log in `dir`, recovering it as the config says.
    pub async fn open(
        dir: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<PartitionLog, StorageError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let mut recovered = {
            let (dir, config) = (dir.clone(), config.clone());
            blocking(move || recovery::recover(&dir, &config)).await?
        };
        crate::reclaim::free_later(std::mem::take(&mut recovered.deleted), Vec::new());
        let mut summary = recovered.summary.clone();
        let segments = recovered.segments;
        let producers = {
            let files = producer_segment_files(&segments);
            let end = segments.last().map_or(0, |last| last.next_offset);
            let (dir, gaps, expiration_ms) = (
                dir.clone(),
                recovered.cleaning.gaps_allowed,
                config.producer_id_expiration_ms,
            );
            let (producers, rebuild) =
                blocking(move || producer_files::rebuild(&dir, &files, end, gaps, expiration_ms))
                    .await?;
            summary.producer_rebuild = rebuild;
            producers
        };
        let (start, end, active_path, active_size) = match (segments.first(), segments.last()) {
            (Some(first), Some(last)) => (
                first.base_offset,
                last.next_offset,
                last.path.clone(),
                last.size,
            ),
            _ => {
                return Err(StorageError::corrupt(
                    &dir,
                    0,
                    "recovery returned no segment",
                ))
            }
        };
        let mut writer =
            SegmentWriter::open(&active_path, config.write_mode, active_size, false).await?;
        writer.set_zero_fill(matches!(
            config.durability,
            crate::config::Durability::Durable
        ));
        let active_read = Rc::new(File::open(&active_path).map_err(|source| {
            StorageError::io("open segment for reading", &active_path, source)
        })?);
        let state = LogState::new(
            segments,
            writer,
            active_read,
            &config,
            recovered.epochs,
            producers,
            end,
        );
        let inner = LogInner {
            dir,
            config: RefCell::new(Rc::new(config)),
            state: RefCell::new(state),
            append_lock: Semaphore::new(1),
            inflight: Rc::new(Semaphore::new(APPEND_INFLIGHT_MAX as u64)),
            inflight_bytes: Rc::new(Semaphore::new(APPEND_INFLIGHT_BYTES_MAX as u64)),
            checkpoint_lock: Semaphore::new(1),
            log_start: Cell::new(start),
            log_end: Cell::new(end),
            flushed: Cell::new(end),
            closed: Cell::new(false),
            cleaning: RefCell::new(recovered.cleaning),
            offline: RefCell::new(None),
            recovered: summary,
        };
        Ok(PartitionLog {
            inner: Rc::new(inner),
        })
    }

    /// Leader append: validates every batch first (nothing is written if any is bad), assigns
    /// contiguous offsets from the log end offset, stamps `leader_epoch`, and writes all batches
    /// as one write. Returns once the bytes are in the file, and under `Durability::Durable`
    /// once they are durable (an fdatasync covered them); not before they are readable.
    /// A compacted log refuses records without a key (`StorageError::MissingKey`), as Kafka
    /// does: the cleaner could never tell them apart.
    pub async fn append(
        &self,
        batches: impl Into<AppendBatches>,
        leader_epoch: i32,
    ) -> Result<AppendInfo, StorageError> {
        let AppendBatches {
            bytes,
            crc_verified_bytes,
        } = batches.into();
        if self.inner.config().cleanup_policy.compacts() {
            crate::compaction::require_keys(&bytes, self.inner.config().batch_bytes_max)?;
        }
        let kind = append::AppendKind::Leader(leader_epoch);
        LogInner::append(&self.inner, bytes, crc_verified_bytes, kind).await
    }

    /// Follower append: keeps the offsets and epochs the batches carry; the first base offset
    /// must equal the log end offset and each batch must follow the previous one.
    pub async fn append_replicated(
        &self,
        batches: bytes::BytesMut,
    ) -> Result<AppendInfo, StorageError> {
        LogInner::append(&self.inner, batches, 0, append::AppendKind::Replicated).await
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` but always at least
    /// one whole batch, within a single segment, only batches with last offset below
    /// `max_offset` (the caller's high watermark; pass `log_end_offset()` when there is none).
    /// `offset` at the log end (or at/after `max_offset`) gives `Empty`; below the log start or
    /// past the end gives `OffsetOutOfRange`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<ReadSlice, StorageError> {
        self.inner.read(offset, max_bytes, max_offset)
    }

    /// Copying read with the same rules as [`PartitionLog::read`].
    pub async fn read_bytes(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<bytes::Bytes, StorageError> {
        self.inner.read_bytes(offset, max_bytes, max_offset).await
    }

    /// Base offset of the first batch whose max timestamp is at least `timestamp_ms`; `None`
    /// when every batch is older.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        self.inner.offset_for_timestamp(timestamp_ms).await
    }

    /// Removes every batch whose last offset is at or past `offset`. Truncation keeps whole
    /// batches, as Kafka does: when `offset` falls inside a batch that whole batch goes and the
    /// log end becomes its base offset (at most `offset`; in a compacted log an `offset` inside
    /// a gap the cleaner left ends the log where the next surviving batch started). At or past the log end nothing
    /// happens; at or below the log start the log is emptied and restarts at `offset`. Epochs
    /// starting at or after the new end are dropped from the leader-epoch cache.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.inner.truncate_to(offset).await
    }

    /// Deletes whole closed segments whose newest timestamp is older than `retention_ms`, or
    /// while the log is larger than `retention_bytes`, oldest first; never the active segment.
    /// Advances the log start offset and returns how many segments were deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        self.inner.apply_retention(now_ms, i64::MAX).await
    }

    /// Waits for appends in flight, fsyncs (interval durability), and returns the flushed
    /// offset.
    pub async fn flush(&self) -> Result<i64, StorageError> {
        self.inner.flush_all().await
    }

    /// Periodic work the owner calls: time-based flush and roll, recovery-point checkpoint.
    /// Nothing here holds appends for long: a roll is a rename of the segment prepared ahead.
    pub async fn maintenance(&self, now_ms: i64) -> Result<(), StorageError> {
        LogInner::maintenance(&self.inner, now_ms).await
    }

    /// Flushes, writes the indexes and checkpoints, closes the files and writes the
    /// clean-shutdown marker. Later calls other than getters fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.inner.close().await
    }

    /// Closes the files and removes the log's directory.
    pub async fn delete(&self) -> Result<(), StorageError> {
        let closed = self.inner.close().await;
        let readers = {
            let mut state = self.inner.state.borrow_mut();
            let mut readers = state.handles.take_readers();
            readers.push(Rc::downgrade(&state.active_read));
            readers
        };
        let dir = self.inner.dir.clone();
        let held = blocking(move || crate::reclaim::remove_dir(&dir)).await?;
        crate::reclaim::free_later(held, readers);
        match closed {
            Ok(()) | Err(StorageError::Closed) => Ok(()),
            Err(error) => {
                tracing::warn!(dir = %self.inner.dir.display(), %error, "close before delete failed");
                Ok(())
            }
        }
    }

    /// First offset in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.inner.log_start.get()
    }

    /// One past the last offset in the log (of completely written batches).
    pub fn log_end_offset(&self) -> i64 {
        self.inner.log_end.get()
    }

    /// Every offset below this is fsynced.
    pub fn flushed_offset(&self) -> i64 {
        self.inner.flushed.get()
    }

    /// Why the log is offline (a failed fsync), or `None` while it is healthy. An offline log
    /// answers every operation with `StorageError::Offline` until it is reopened.
    pub fn offline(&self) -> Option<StorageError> {
        self.inner.offline_error()
    }

    /// What recovery found when the log was opened (torn bytes it cut, segments it scanned).
    pub fn recovered(&self) -> &RecoverySummary {
        &self.inner.recovered
    }

    /// Newest leader epoch recorded in the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner
            .state
            .borrow()
            .epochs
            .latest()
            .map(|entry| entry.epoch)
    }

    /// KIP-101/279: `(epoch, end offset)` of `epoch` as this replica sees it (see Kafka's
    /// `LeaderEpochFileCache.endOffsetFor`); `None` for an undefined answer.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.inner
            .state
            .borrow()
            .epochs
            .end_offset_for(epoch, self.inner.log_end.get())
    }

    /// Bytes of whole batches in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .iter()
            .map(|segment| segment.size)
            .sum()
    }

    /// The published state of one idempotent producer on this log.
    pub fn producer_entry(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.inner
            .state
            .borrow()
            .producers
            .entry(producer_id)
            .cloned()
    }

    /// Number of idempotent producers this log knows.
    pub fn producer_count(&self) -> usize {
        self.inner.state.borrow().producers.len()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The settings in force now.
    pub fn config(&self) -> LogConfig {
        LogConfig::clone(&self.inner.config())
    }

    /// Replaces the settings of an open log (a topic's configs changed). Only topic-level
    /// settings may differ from the ones in force: retention, cleanup policy and compaction,
    /// segment size and age, batch size; a change of anything else (write mode, durability,
    /// caches, indexes: the broker's own settings, fixed while the log is open) is refused.
    /// Each applies from the next time it is consulted: retention and compaction at the next
    /// maintenance or cleaning round, the batch bound at the next append, the segment bounds
    /// at the next roll check (the active segment rolls as soon as it passes the new size or
    /// age; space already prepared ahead of its writes stays as it was planned).
    pub fn set_config(&self, config: LogConfig) -> Result<(), StorageError> {
        config.validate()?;
        let current = self.inner.config();
        let topic_level = LogConfig {
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            cleanup_policy: config.cleanup_policy,
            delete_retention_ms: config.delete_retention_ms,
            min_cleanable_dirty_ratio: config.min_cleanable_dirty_ratio,
            min_compaction_lag_ms: config.min_compaction_lag_ms,
            max_compaction_lag_ms: config.max_compaction_lag_ms,
            segment_bytes_max: config.segment_bytes_max,
            segment_ms_max: config.segment_ms_max,
            batch_bytes_max: config.batch_bytes_max,
            ..LogConfig::clone(&current)
        };
        if topic_level != config {
            return Err(StorageError::InvalidConfig {
                setting: "broker-level settings",
                reason: "cannot change while the log is open; only topic-level ones can"
                    .to_string(),
            });
        }
        *self.inner.config.borrow_mut() = Rc::new(config);
        Ok(())
    }
}

impl LogInner {
    /// The settings in force now (an `Rc`, so no borrow outlives the call).
    pub(crate) fn config(&self) -> Rc<LogConfig> {
        self.config.borrow().clone()
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        match self.offline_error() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Replaces a checkpoint file, one writer at a time, off the executor thread.
    async fn write_checkpoint(
        &self,
        name: &'static str,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError> {
        let _permit = crate::sync::acquire_permit(&self.checkpoint_lock, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        let dir = self.dir.clone();
        crate::lanes::background(move || checkpoint::atomic_write(&dir, name, &bytes))
            .await
            .map_err(|source| StorageError::io("write checkpoint", self.dir.join(name), source))
    }

    async fn write_epochs(&self, epochs: &EpochCache) -> Result<(), StorageError> {
        self.write_checkpoint(LEADER_EPOCH_FILE, epochs.encode())
            .await
    }

    /// Writes the recovery point (never above the log end) when it moved.
    async fn write_recovery_point(&self, offset: i64) -> Result<(), StorageError> {
        let offset = offset.min(self.log_end.get());
        if self.state.borrow().checkpointed_recovery_point == offset {
            return Ok(());
        }
        self.write_checkpoint(
            RECOVERY_POINT_FILE,
            checkpoint::encode_recovery_point(offset),
        )
        .await?;
        self.state.borrow_mut().checkpointed_recovery_point = offset;
        Ok(())
    }

    async fn sync_dir(&self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        blocking(move || checkpoint::sync_dir(&dir))
            .await
            .map_err(|source| StorageError::io("fsync log directory", &self.dir, source))
    }

    /// Closes the log: see [`PartitionLog::close`].
    async fn close(&self) -> Result<(), StorageError> {
        let _lock = crate::sync::acquire_permit(&self.append_lock, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        if let Some(error) = self.offline_error() {
            // An offline log only lets go of its files: no index, checkpoint or clean-shutdown
            // marker vouches for bytes whose state on disk is unknown, so the next open scans.
            self.closed.set(true);
            let mut state = self.state.borrow_mut();
            state.tail.clear();
            state.handles.clear();
            state.writer = None;
            state.prepared = None;
            return Err(error);
        }
        self.settle().await?;
        self.await_seal().await;
        // A background extension must not write zeros past the length close cuts the file to.
        let extension = {
            let state = self.state.borrow();
            state
                .writer
                .as_ref()
                .and_then(|writer| writer.extension_in_flight())
        };
        if let Some(extension) = extension {
            extension.wait().await;
        }
        self.closed.set(true);
        let (writer, files, size) = {
            let mut state = self.state.borrow_mut();
            state.tail.clear();
            state.handles.clear();
            state.prepared = None;
            let writer = state.writer.take();
            let active = state.segments.last_mut().ok_or(StorageError::Closed)?;
            (writer, recovery::sealed_index_files(active), active.size)
        };
        blocking(move || recovery::write_index_files(&files)).await?;
        if let Some(writer) = writer {
            writer.close(size).await?;
        }
        self.flushed.set(self.log_end.get());
        let epochs = self.state.borrow().epochs.clone();
        self.write_epochs(&epochs).await?;
        self.write_recovery_point(self.log_end.get()).await?;
        // A snapshot at the end spares the next open any replay of producer state.
        let snapshot = crate::producer_state::encode_snapshot(&self.state.borrow().producers);
        self.write_producer_snapshot(self.log_end.get(), snapshot)
            .await?;
        self.write_checkpoint(CLEAN_SHUTDOWN_FILE, Vec::new()).await
    }

    /// Writes the producer-state snapshot at `offset` off the executor thread.
    async fn write_producer_snapshot(
        &self,
        offset: i64,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        crate::lanes::background(move || producer_files::write_snapshot(&dir, offset, &bytes)).await
    }

    /// Rebuilds the producer state from the newest snapshot and the log (after a truncation).
    /// The caller holds the append lock with nothing in flight.
    async fn rebuild_producers(&self) -> Result<(), StorageError> {
        let files = producer_segment_files(&self.state.borrow().segments);
        let (dir, end, gaps, expiration_ms) = (
            self.dir.clone(),
            self.log_end.get(),
            self.gaps_allowed(),
            self.config().producer_id_expiration_ms,
        );
        let (producers, _) =
            blocking(move || producer_files::rebuild(&dir, &files, end, gaps, expiration_ms))
                .await?;
        let mut state = self.state.borrow_mut();
        state.reserved_producers = producers.clone();
        state.producers = producers;
        Ok(())
    }
}

/// The segment files a producer-state rebuild reads.
fn producer_segment_files(segments: &[Segment]) -> Vec<producer_files::SegmentFile> {
    segments
        .iter()
        .map(|segment| (segment.path.clone(), segment.base_offset, segment.size))
        .collect()
}
