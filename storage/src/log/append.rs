//! The append path: validate, reserve offsets under the append lock, write in a task of its
//! own (several in flight), publish in order, fsync as the flush policy says.

use std::rc::Rc;

use bytes::BytesMut;
use glommio::sync::StaticPermit;

use super::{now_ms, AppendInfo, LogInner, APPEND_BYTES_MAX, APPEND_INFLIGHT_BYTES_MAX};
use crate::{
    batch::{stamp, BatchHeader, BatchIter},
    config::FlushPolicy,
    error::StorageError,
    segment::writer::{succeeded, BlockFate, Completion, FinishOnDrop, Prepared, TailCover},
    tail_cache::Chunk,
};

/// Who is appending.
#[derive(Debug, Clone, Copy)]
pub(super) enum AppendKind {
    /// The leader: offsets are assigned and this epoch stamped.
    Leader(i32),
    /// A follower: offsets and epochs come with the batches.
    Replicated,
}

/// One batch of an append: its header as written and its position inside the append.
#[derive(Debug, Clone, Copy)]
struct BatchMeta {
    header: BatchHeader,
    position: usize,
}

/// An append that has offsets and a place in the file, on its way to the disk.
pub(super) struct PendingAppend {
    prepared: Prepared,
    /// The segment file written to.
    path: std::path::PathBuf,
    batches: Vec<BatchMeta>,
    bytes: u64,
    segment_base: i64,
    completion: Rc<Completion>,
    previous: Option<Rc<Completion>>,
}

/// Checks every batch of an append (header, size limit, CRC) before anything is written.
fn validate_input(batches: &[u8], batch_bytes_max: usize) -> Result<Vec<BatchMeta>, StorageError> {
    if batches.is_empty() {
        return Err(StorageError::EmptyAppend);
    }
    if batches.len() > APPEND_BYTES_MAX {
        return Err(StorageError::AppendTooLarge {
            bytes: batches.len(),
            max: APPEND_BYTES_MAX,
        });
    }
    let mut iter = BatchIter::new(batches, batch_bytes_max);
    let mut metas = Vec::new();
    loop {
        let position = iter.position();
        match iter.next() {
            None => return Ok(metas),
            Some(Ok((header, _))) => metas.push(BatchMeta { header, position }),
            Some(Err(source)) => return Err(StorageError::Batch { position, source }),
        }
    }
}

impl LogInner {
    pub(super) async fn append(
        self: &Rc<Self>,
        mut batches: BytesMut,
        kind: AppendKind,
    ) -> Result<AppendInfo, StorageError> {
        self.check_open()?;
        let mut metas = validate_input(&batches, self.config.batch_bytes_max)?;
        let units = batches.len().min(APPEND_INFLIGHT_BYTES_MAX) as u64;
        let bytes_slot = self
            .inflight_bytes
            .acquire_static_permit(units)
            .await
            .map_err(|_| StorageError::Closed)?;
        let slot = self
            .inflight
            .acquire_static_permit(1)
            .await
            .map_err(|_| StorageError::Closed)?;
        let pending = {
            let _lock = self
                .append_lock
                .acquire_permit(1)
                .await
                .map_err(|_| StorageError::Closed)?;
            self.check_open()?;
            self.settle().await?;
            let offsets = metas
                .iter()
                .map(|meta| i64::from(meta.header.last_offset_delta) + 1)
                .sum();
            self.roll_if_due(batches.len() as u64, offsets, now_ms())
                .await?;
            self.assign_offsets(&mut batches, &mut metas, kind)?;
            self.reserve_epochs(&metas).await?;
            self.preallocate(batches.len() as u64).await;
            self.reserve(batches, metas)
        };
        // The write and publish run in their own task so that a caller dropping this future
        // cannot leave a write half done or the completion chain unfinished.
        let slots = [slot, bytes_slot];
        let task = glommio::spawn_local(Self::complete(self.clone(), pending, slots)).detach();
        task.await.unwrap_or(Err(StorageError::Closed))
    }

    /// Gives the batches their offsets (leader) or checks the offsets they carry (follower),
    /// and checks epochs never go back. Nothing is changed in the log.
    fn assign_offsets(
        &self,
        batches: &mut BytesMut,
        metas: &mut [BatchMeta],
        kind: AppendKind,
    ) -> Result<(), StorageError> {
        let state = self.state.borrow();
        let mut next = state.next_offset;
        let mut latest = state.reserved_epochs.latest().map(|entry| entry.epoch);
        for meta in metas.iter_mut() {
            let header = &mut meta.header;
            let epoch = match kind {
                AppendKind::Leader(epoch) => epoch,
                AppendKind::Replicated => header.partition_leader_epoch,
            };
            if let Some(latest) = latest.filter(|latest| epoch >= 0 && epoch < *latest) {
                return Err(StorageError::StaleEpoch { epoch, latest });
            }
            if epoch >= 0 {
                latest = Some(epoch);
            }
            if matches!(kind, AppendKind::Replicated) {
                // A compacted leader's log has gaps where its cleaner removed batches, and a
                // follower copies them as they are.
                let gap = self.gaps_allowed() && header.base_offset > next;
                if header.base_offset != next && !gap {
                    return Err(StorageError::NonContiguous {
                        expected: next,
                        found: header.base_offset,
                        position: meta.position,
                    });
                }
                next = header.base_offset;
            }
            header.base_offset = next;
            header.partition_leader_epoch = epoch;
            next = next
                .checked_add(i64::from(header.last_offset_delta) + 1)
                .ok_or(StorageError::OffsetOverflow { base_offset: next })?;
        }
        if let AppendKind::Leader(epoch) = kind {
            for meta in metas.iter() {
                stamp(
                    &mut batches[meta.position..],
                    meta.header.base_offset,
                    epoch,
                )
                .map_err(|source| StorageError::Batch {
                    position: meta.position,
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Persists the leader-epoch checkpoint before the bytes of a new epoch are written, as
    /// Kafka does; recovery drops entries past the recovered end.
    async fn reserve_epochs(&self, metas: &[BatchMeta]) -> Result<(), StorageError> {
        let mut epochs = self.state.borrow().reserved_epochs.clone();
        let mut changed = false;
        for meta in metas {
            changed |= epochs.assign(meta.header.partition_leader_epoch, meta.header.base_offset);
        }
        if changed {
            self.write_epochs(&epochs).await?;
            self.state.borrow_mut().reserved_epochs = epochs;
        }
        Ok(())
    }

    /// Direct mode: extends the file ahead of the writes. Best effort: without it the writes
    /// still work, only slower, so a failure is logged and ignored.
    async fn preallocate(&self, len: u64) {
        let wanted = {
            let state = self.state.borrow();
            state
                .writer
                .as_ref()
                .and_then(|writer| writer.preallocation(len, self.config.segment_bytes_max))
        };
        let Some((file, target)) = wanted else {
            return;
        };
        match file.pre_allocate(target, false).await {
            Ok(()) => {
                if let Some(writer) = self.state.borrow_mut().writer.as_mut() {
                    writer.preallocated(target);
                }
            }
            Err(error) => {
                tracing::debug!(dir = %self.dir.display(), %error, "preallocation failed")
            }
        }
    }

    /// Hands the batches to the writer and chains the append behind the previous one.
    fn reserve(&self, batches: BytesMut, batches_meta: Vec<BatchMeta>) -> PendingAppend {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let keep = self.config.tail_cache_bytes_max > 0;
        let bytes = batches.len() as u64;
        let segment_base = state
            .segments
            .last()
            .map_or(0, |segment| segment.base_offset);
        let Some(writer) = state.writer.as_mut() else {
            unreachable!("check_open ran under the append lock");
        };
        let path = writer.path().to_path_buf();
        let prepared = writer.prepare(batches, keep);
        let completion = Completion::new();
        let previous = state.last_completion.replace(completion.clone());
        if let Some(last) = batches_meta.last() {
            state.next_offset = last.header.last_offset() + 1;
        }
        PendingAppend {
            prepared,
            path,
            batches: batches_meta,
            bytes,
            segment_base,
            completion,
            previous,
        }
    }

    /// Runs one append's writes, then publishes it (or fails it and every append behind it).
    async fn complete(
        self: Rc<Self>,
        pending: PendingAppend,
        _slots: [StaticPermit; 2],
    ) -> Result<AppendInfo, StorageError> {
        let guard = FinishOnDrop(pending.completion.clone());
        let base_offset = pending
            .batches
            .first()
            .map_or(0, |meta| meta.header.base_offset);
        let PendingAppend {
            prepared,
            path,
            batches,
            bytes,
            segment_base,
            completion,
            previous,
        } = pending;
        let Prepared {
            plan,
            position,
            tail_after,
            cached,
        } = prepared;
        let tail_fate = plan.tail_fate();
        let written = match (plan.execute(&path, base_offset).await, tail_fate) {
            (Ok(()), Some(fate)) => self.write_tail(&path, &fate, base_offset).await,
            (result, _) => result,
        };
        // Wait for the previous append whatever happened, so appends finish in order.
        let predecessor_ok = succeeded(previous).await;
        let aborted = StorageError::Aborted { base_offset };
        let result = written.and(if predecessor_ok { Ok(()) } else { Err(aborted) });
        if let Err(error) = result {
            self.state.borrow_mut().poisoned = true;
            completion.finish(false);
            return Err(error);
        }
        let info = self.publish(segment_base, position, &batches, bytes, tail_after, cached);
        completion.finish(true);
        drop(guard);
        self.after_publish(info.log_end_offset).await?;
        Ok(info)
    }

    /// Makes sure the partial last block of a direct-mode append reaches the disk: by the
    /// write that already covers it, or by a padded write of it issued now.
    async fn write_tail(
        &self,
        path: &std::path::Path,
        fate: &BlockFate,
        base_offset: i64,
    ) -> Result<(), StorageError> {
        let cover = self
            .state
            .borrow_mut()
            .writer
            .as_mut()
            .and_then(|writer| writer.cover_tail(fate));
        match cover {
            None => Err(StorageError::Closed),
            Some(TailCover::Covered(write)) => {
                if write.wait().await {
                    Ok(())
                } else {
                    Err(StorageError::Aborted { base_offset })
                }
            }
            Some(TailCover::Write(write)) => write.run(path, base_offset).await,
        }
    }

    /// Makes a written append visible: indexes, epochs, tail cache, log end offset.
    fn publish(
        &self,
        segment_base: i64,
        position: u64,
        batches: &[BatchMeta],
        bytes: u64,
        tail_after: Vec<u8>,
        cached: Option<bytes::Bytes>,
    ) -> AppendInfo {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let Some(segment) = state.segments.last_mut() else {
            unreachable!("a log always has an active segment");
        };
        assert_eq!(
            segment.base_offset, segment_base,
            "append published into another segment"
        );
        assert_eq!(segment.size, position, "appends must be published in order");
        let mut max_timestamp = i64::MIN;
        for meta in batches {
            segment.observe(&meta.header, position + meta.position as u64);
            state
                .epochs
                .assign(meta.header.partition_leader_epoch, meta.header.base_offset);
            max_timestamp = max_timestamp.max(meta.header.max_timestamp);
        }
        segment.roll_base_ms.get_or_insert_with(now_ms);
        let base_offset = batches.first().map_or(0, |meta| meta.header.base_offset);
        let next_offset = segment.next_offset;
        if let Some(writer) = state.writer.as_mut() {
            writer.published(tail_after);
        }
        if let Some(data) = cached {
            state.tail.push(Chunk {
                segment_base,
                base_offset,
                next_offset,
                data,
            });
        }
        state.published_bytes += bytes;
        state.unflushed_since_ms.get_or_insert_with(now_ms);
        self.log_end.set(next_offset);
        AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            max_timestamp,
            log_end_offset: next_offset,
        }
    }

    /// Applies the flush policy after a publish: fsync now (every append) or start a
    /// background fsync once enough bytes are unflushed.
    async fn after_publish(self: &Rc<Self>, end: i64) -> Result<(), StorageError> {
        match self.config.flush {
            FlushPolicy::EveryAppend => {
                if self.flushed.get() < end {
                    self.sync_published().await?;
                }
            }
            FlushPolicy::Interval {
                flush_bytes_max, ..
            } => {
                let start = {
                    let mut state = self.state.borrow_mut();
                    let due = state.published_bytes - state.flushed_bytes >= flush_bytes_max;
                    let start = due && !state.background_flush;
                    state.background_flush |= start;
                    start
                };
                if start {
                    let log = self.clone();
                    glommio::spawn_local(async move {
                        match log.sync_published().await {
                            // A close that overtook the flush fsynced everything itself.
                            Ok(_) | Err(StorageError::Closed) => {}
                            Err(error) => {
                                tracing::warn!(dir = %log.dir.display(), %error, "background flush failed");
                            }
                        }
                        log.state.borrow_mut().background_flush = false;
                    })
                    .detach();
                }
            }
        }
        Ok(())
    }

    /// Fsyncs the active segment and advances the flushed offset to what was published when
    /// the fsync started (earlier segments were fsynced when they rolled).
    pub(super) async fn sync_published(&self) -> Result<i64, StorageError> {
        let (handle, path, end, bytes, generation) = {
            let state = self.state.borrow();
            let Some(writer) = state.writer.as_ref() else {
                return Err(StorageError::Closed);
            };
            (
                writer.handle(),
                writer.path().to_path_buf(),
                self.log_end.get(),
                state.published_bytes,
                state.generation,
            )
        };
        handle.fdatasync(&path).await?;
        let mut state = self.state.borrow_mut();
        if state.generation == generation && end > self.flushed.get() {
            self.flushed.set(end);
            state.flushed_bytes = state.flushed_bytes.max(bytes);
            if state.flushed_bytes == state.published_bytes {
                state.unflushed_since_ms = None;
            }
        }
        Ok(self.flushed.get())
    }

    /// Waits for every append in flight, then fsyncs.
    pub(super) async fn flush_all(&self) -> Result<i64, StorageError> {
        self.check_open()?;
        let last = self.state.borrow().last_completion.clone();
        if let Some(last) = last {
            last.wait().await;
        }
        let flushed = self.sync_published().await?;
        let roll_checkpoint_due = {
            let state = self.state.borrow();
            state
                .segments
                .last()
                .is_some_and(|active| active.base_offset > state.checkpointed_recovery_point)
        };
        if roll_checkpoint_due {
            self.write_recovery_point(flushed).await?;
        }
        Ok(flushed)
    }

    /// Waits for every append in flight (the caller holds the append lock, so no new one
    /// starts) and, when a write failed, cuts the file back to the last published byte.
    pub(super) async fn settle(&self) -> Result<(), StorageError> {
        let last = self.state.borrow().last_completion.clone();
        if let Some(last) = last {
            last.wait().await;
        }
        if !self.state.borrow().poisoned {
            return Ok(());
        }
        let (handle, path, size) = {
            let state = self.state.borrow();
            match (state.writer.as_ref(), state.segments.last()) {
                (Some(writer), Some(active)) => {
                    (writer.handle(), writer.path().to_path_buf(), active.size)
                }
                _ => return Err(StorageError::Closed),
            }
        };
        handle.truncate(&path, size).await?;
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if let Some(writer) = state.writer.as_mut() {
            writer.rewind(size, false)?;
        }
        state.next_offset = self.log_end.get();
        state.reserved_epochs = state.epochs.clone();
        state.poisoned = false;
        state.generation += 1;
        tracing::warn!(file = %path.display(), size, "rewound the active segment after a failed write");
        Ok(())
    }
}
