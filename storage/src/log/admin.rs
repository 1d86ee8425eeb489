//! Structural changes of a log, all under the append lock with no append in flight: rolling the
//! active segment, truncation, retention, the swap of cleaned segments (compaction), and the
//! periodic maintenance that drives time-based flushes and rolls.

use std::{
    fs::File,
    rc::{Rc, Weak},
};

use super::{blocking, LogInner, PRODUCER_EXPIRATION_CHECK_MS, RECOVERY_POINT_CHECKPOINT_MS};
use crate::{
    checkpoint::EpochCache,
    compaction::{
        crash_point,
        swap::{self, SwapManifest},
        CleanedSegment,
    },
    config::Durability,
    error::StorageError,
    producer_state::files as producer_files,
    reclaim::{self, HeldFile},
    segment::{writer::FileHandle, HeaderReader, Segment},
};

impl LogInner {
    /// See [`super::PartitionLog::truncate_to`].
    pub(super) async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let _lock = crate::sync::acquire_permit(&self.append_lock, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        self.check_open()?;
        self.settle().await?;
        self.await_seal().await;
        if offset >= self.log_end.get() {
            return Ok(());
        }
        if offset <= self.log_start.get() {
            self.truncate_fully(offset).await?;
            return self.clear_producers().await;
        }
        self.truncate_inside(offset).await?;
        // The producer state goes back to what the remaining batches say: a retry of a batch
        // the truncation removed must be appended again, not answered with its lost offsets.
        self.rebuild_producers().await
    }

    /// Forgets every producer and removes every producer snapshot (the log was emptied).
    async fn clear_producers(&self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        blocking(move || producer_files::remove_snapshots_outside(&dir, i64::MAX, i64::MIN))
            .await?;
        let mut state = self.state.borrow_mut();
        state.producers.clear();
        state.reserved_producers.clear();
        Ok(())
    }

    /// Cuts the log at the batch holding `offset`, which lies inside the log.
    async fn truncate_inside(&self, offset: i64) -> Result<(), StorageError> {
        let (at, position, new_end) = self.locate_cut(offset)?;
        let last = self.state.borrow().segments.len() - 1;
        if at < last {
            self.drop_segments_after(at).await?;
            let path = self.state.borrow().segments[at].path.clone();
            let cut_path = path.clone();
            blocking(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&cut_path)
                    .and_then(|file| file.set_len(position))
            })
            .await
            .map_err(|source| StorageError::io("truncate segment", &path, source))?;
            let writer = self.open_writer(&path, position, false).await?;
            self.state.borrow_mut().writer = Some(writer);
        } else {
            let (handle, path) = self.active_handle()?;
            handle.truncate(&path, position).await?;
            if let Some(writer) = self.state.borrow_mut().writer.as_mut() {
                writer.rewind(position, true)?;
            }
        }
        let (handle, path) = self.active_handle()?;
        handle.fdatasync(&path).await?;
        self.reindex_active(position, new_end)?;
        self.after_truncation(new_end).await
    }

    /// Segment index, position and base offset of the batch holding `offset`.
    fn locate_cut(&self, offset: i64) -> Result<(usize, u64, i64), StorageError> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let at = state
            .segments
            .partition_point(|segment| segment.base_offset <= offset)
            .saturating_sub(1);
        let segment = &state.segments[at];
        let file = if at + 1 == state.segments.len() {
            state.active_read.clone()
        } else {
            state.handles.get(segment.base_offset, &segment.path)?
        };
        let mut reader = HeaderReader::new(&file, &segment.path, segment.size)
            .allowing_gaps(self.gaps_allowed());
        let (position, header) = segment.locate(&mut reader, offset)?;
        Ok((at, position, header.base_offset))
    }

    fn active_handle(&self) -> Result<(FileHandle, std::path::PathBuf), StorageError> {
        let state = self.state.borrow();
        let writer = state.writer.as_ref().ok_or(StorageError::Closed)?;
        Ok((writer.handle(), writer.path().to_path_buf()))
    }

    /// Removes every segment after the one at `at`, which becomes the active one. Their space
    /// is freed in paced steps once no reader holds them (`reclaim`).
    async fn drop_segments_after(&self, at: usize) -> Result<(), StorageError> {
        let (old_writer, bases, mut readers, old_read) = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let bases: Vec<i64> = state.segments[at + 1..]
                .iter()
                .map(|segment| segment.base_offset)
                .collect();
            state.segments.truncate(at + 1);
            let readers: Vec<_> = bases
                .iter()
                .flat_map(|base| state.handles.remove(*base))
                .collect();
            let kept = &state.segments[at];
            let read = state.handles.get(kept.base_offset, &kept.path)?;
            state.handles.remove(kept.base_offset);
            let old_read = std::mem::replace(&mut state.active_read, read);
            (state.writer.take(), bases, readers, old_read)
        };
        readers.push(Rc::downgrade(&old_read));
        drop(old_read);
        if let Some(writer) = old_writer {
            let (handle, path) = (writer.handle(), writer.path().to_path_buf());
            drop(writer);
            handle.close(&path).await?;
        }
        let dir = self.dir.clone();
        let held = blocking(move || reclaim::remove_segments(&dir, &bases)).await?;
        reclaim::free_later(held, readers);
        self.sync_dir().await
    }

    /// Rebuilds the active segment's running index state after it was cut at `position`:
    /// drops entries past the cut and re-observes the batches after the last remaining entry.
    fn reindex_active(&self, position: u64, new_end: i64) -> Result<(), StorageError> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let Some(segment) = state.segments.last_mut() else {
            return Err(StorageError::Closed);
        };
        let relative_end = segment.relative(new_end);
        let mut walk = segment.index.truncate(position, relative_end);
        let mut expected = segment
            .index
            .offsets
            .last()
            .map_or(segment.base_offset, |entry| {
                segment.base_offset + i64::from(entry.relative_offset)
            });
        segment.size = walk;
        segment.next_offset = expected;
        let path = segment.path.clone();
        let mut reader = HeaderReader::new(&state.active_read, &path, position)
            .allowing_gaps(self.gaps_allowed());
        while walk < position {
            let header = reader.header_at(walk, expected)?;
            segment.observe(&header, walk);
            walk += header.total_bytes() as u64;
            expected = header.last_offset() + 1;
        }
        if segment.size == 0 {
            segment.roll_base_ms = None;
        }
        Ok(())
    }

    /// Brings offsets, epochs, the tail cache and the checkpoints in line with a log that now
    /// ends at `new_end`.
    async fn after_truncation(&self, new_end: i64) -> Result<(), StorageError> {
        let (changed, epochs) = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            state.next_offset = new_end;
            state.tail.truncate(new_end);
            state.generation += 1;
            let changed = state.epochs.truncate_from_end(new_end);
            state.reserved_epochs = state.epochs.clone();
            (changed, state.epochs.clone())
        };
        self.log_end.set(new_end);
        self.flushed.set(self.flushed.get().min(new_end));
        if changed {
            self.write_epochs(&epochs).await?;
        }
        let recovery_point = self.state.borrow().checkpointed_recovery_point.min(new_end);
        self.write_recovery_point(recovery_point).await
    }

    /// Empties the log and restarts it at `offset` (at or below the log start).
    pub(super) async fn truncate_fully(&self, offset: i64) -> Result<(), StorageError> {
        let (old_writer, bases, readers) = {
            let mut state = self.state.borrow_mut();
            state.handles.clear();
            let mut readers = state.handles.take_readers();
            readers.push(Rc::downgrade(&state.active_read));
            state.tail.clear();
            let bases: Vec<i64> = state
                .segments
                .iter()
                .map(|segment| segment.base_offset)
                .filter(|base| *base != offset)
                .collect();
            (state.writer.take(), bases, readers)
        };
        if let Some(writer) = old_writer {
            let (handle, path) = (writer.handle(), writer.path().to_path_buf());
            drop(writer);
            handle.close(&path).await?;
        }
        // The new empty segment is created before the old ones go: a crash in between leaves
        // it first, and recovery drops the old segments after it (they no longer follow it).
        let segment = Segment::new(&self.dir, offset, self.config().index_interval_bytes);
        let writer = self.open_writer(&segment.path, 0, true).await?;
        let read = open_read(&segment)?;
        let dir = self.dir.clone();
        let stale_indexes = vec![segment.index_path(), segment.time_index_path()];
        blocking(move || {
            for path in stale_indexes {
                let _ = std::fs::remove_file(path);
            }
            crate::checkpoint::sync_dir(&dir)
        })
        .await
        .map_err(|source| StorageError::io("fsync log directory", &self.dir, source))?;
        let dir = self.dir.clone();
        let held = blocking(move || reclaim::remove_segments(&dir, &bases)).await?;
        reclaim::free_later(held, readers);
        self.sync_dir().await?;
        {
            let mut state = self.state.borrow_mut();
            state.segments = vec![segment];
            state.writer = Some(writer);
            state.active_read = read;
            state.next_offset = offset;
            state.epochs = EpochCache::default();
            state.reserved_epochs = EpochCache::default();
            state.generation += 1;
        }
        self.log_start.set(offset);
        self.log_end.set(offset);
        self.flushed.set(offset);
        self.write_epochs(&EpochCache::default()).await?;
        self.write_recovery_point(offset).await
    }

    /// See [`super::PartitionLog::apply_retention`] and
    /// [`super::PartitionLog::apply_retention_below`]: nothing at or past `max_offset` goes.
    pub(super) async fn apply_retention(
        &self,
        now_ms: i64,
        max_offset: i64,
    ) -> Result<usize, StorageError> {
        let _lock = crate::sync::acquire_permit(&self.append_lock, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        self.check_open()?;
        self.await_seal().await;
        let count = self.expired_segments(now_ms, max_offset);
        if count == 0 {
            return Ok(0);
        }
        let (bases, readers, changed, epochs) = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let bases: Vec<i64> = state
                .segments
                .drain(..count)
                .map(|segment| segment.base_offset)
                .collect();
            let readers: Vec<_> = bases
                .iter()
                .flat_map(|base| state.handles.remove(*base))
                .collect();
            let start = state.segments[0].base_offset;
            self.log_start.set(start);
            state.tail.drop_before(start);
            state.reserved_epochs.truncate_from_start(start);
            let changed = state.epochs.truncate_from_start(start);
            (bases, readers, changed, state.epochs.clone())
        };
        if changed {
            self.write_epochs(&epochs).await?;
        }
        let dir = self.dir.clone();
        let held = blocking(move || reclaim::remove_segments(&dir, &bases)).await?;
        reclaim::free_later(held, readers);
        // Snapshots below the new start could only be replayed over deleted batches.
        let (dir, start) = (self.dir.clone(), self.log_start.get());
        blocking(move || producer_files::remove_snapshots_outside(&dir, start, i64::MAX)).await?;
        self.sync_dir().await?;
        Ok(count)
    }

    /// How many of the oldest closed segments retention deletes: a prefix of segments each
    /// newer-than-nothing by `retention_ms` or beyond `retention_bytes` (Kafka's rules), and
    /// each wholly below `max_offset` (the high watermark: Kafka never deletes a segment holding
    /// offsets at or above it).
    fn expired_segments(&self, now_ms: i64, max_offset: i64) -> usize {
        if !self.config().cleanup_policy.deletes() {
            return 0;
        }
        let state = self.state.borrow();
        let mut remaining: u64 = state.segments.iter().map(|segment| segment.size).sum();
        let closed = state.segments.len().saturating_sub(1);
        let mut count = 0;
        for segment in &state.segments[..closed] {
            if segment.next_offset > max_offset {
                break;
            }
            let time_breach = self.config().retention_ms.is_some_and(|retention_ms| {
                segment.index.max_timestamp.is_some_and(|newest| {
                    now_ms.saturating_sub(newest) > i64::try_from(retention_ms).unwrap_or(i64::MAX)
                })
            });
            let size_breach = self
                .config()
                .retention_bytes
                .is_some_and(|retention_bytes| {
                    remaining.saturating_sub(segment.size) >= retention_bytes
                });
            if !(time_breach || size_breach) {
                break;
            }
            remaining -= segment.size;
            count += 1;
        }
        count
    }

    /// See [`super::PartitionLog::maintenance`].
    pub(super) async fn maintenance(self: &Rc<Self>, now_ms: i64) -> Result<(), StorageError> {
        self.check_open()?;
        self.expire_producers(now_ms);
        if let Durability::Interval { flush_ms_max, .. } = self.config().durability {
            let since = self.state.borrow().unflushed_since_ms;
            let age_ms_max = i64::try_from(flush_ms_max).unwrap_or(i64::MAX);
            if since.is_some_and(|since| now_ms.saturating_sub(since) >= age_ms_max) {
                self.flush_all().await?;
            }
        }
        if self.roll_due(0, 0, now_ms) {
            let _lock = crate::sync::acquire_permit(&self.append_lock, 1)
                .await
                .map_err(|_| StorageError::Closed)?;
            self.check_open()?;
            self.roll_if_due(0, 0, now_ms).await?;
        }
        let last = self.state.borrow().recovery_point_checkpointed_ms;
        if last.is_some_and(|last| now_ms.saturating_sub(last) < RECOVERY_POINT_CHECKPOINT_MS) {
            return Ok(());
        }
        self.write_recovery_point(self.flushed.get()).await?;
        self.state.borrow_mut().recovery_point_checkpointed_ms = Some(now_ms);
        Ok(())
    }
}

impl LogInner {
    /// Forgets producers whose newest batch is older than `producer_id_expiration_ms`, at most
    /// every `PRODUCER_EXPIRATION_CHECK_MS` (or every half expiration, when that is shorter, so
    /// a short setting is honoured within 1.5 times its length).
    fn expire_producers(&self, now_ms: i64) {
        let expiration_ms =
            i64::try_from(self.config().producer_id_expiration_ms).unwrap_or(i64::MAX);
        let check_ms = PRODUCER_EXPIRATION_CHECK_MS.min(expiration_ms / 2).max(1);
        let mut state = self.state.borrow_mut();
        let last = state.producers_expired_ms;
        if last.is_some_and(|last| now_ms.saturating_sub(last) < check_ms) {
            return;
        }
        state.producers_expired_ms = Some(now_ms);
        let expired = state.producers.remove_expired(now_ms);
        state.reserved_producers.remove_expired(now_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.dir.display(), expired, "expired idempotent producers");
        }
    }
}

impl LogInner {
    /// Replaces the closed segments `cleaned` was made from by the cleaned segment, following
    /// the crash-safe protocol of `compaction::swap`. Only the check and the rename run under
    /// the append lock (no fsync there), so no roll, truncation or retention runs meanwhile and
    /// appends wait as little as possible; appends already in flight only touch the active
    /// segment, which a swap never does. `Ok(false)` when the segments changed since they were
    /// read: the cleaned files are then removed and nothing else changes. The replaced files'
    /// space is freed in paced steps once their readers are done (`reclaim`).
    pub(super) async fn swap_cleaned(&self, cleaned: CleanedSegment) -> Result<bool, StorageError> {
        let manifest = SwapManifest {
            replaces: cleaned.replaces.clone(),
        };
        let base = manifest.base_offset();
        let (dir, written) = (self.dir.clone(), manifest.clone());
        blocking(move || swap::write_manifest(&dir, &written)).await?;
        crash_point::reached(crash_point::MANIFEST_WRITTEN);
        let (mut held, readers) = match self.switch_under_lock(cleaned).await {
            Ok(Some(switched)) => switched,
            undone => {
                let dir = self.dir.clone();
                if let Ok(held) = blocking(move || swap::undo(&dir, base)).await {
                    reclaim::free_later(held, Vec::new());
                }
                return undone.map(|_| false);
            }
        };
        crash_point::reached(crash_point::RENAMED);
        let dir = self.dir.clone();
        let completed = blocking(move || swap::complete(&dir, &manifest))
            .await
            .map(|deleted| held.extend(deleted));
        // The first replaced segment's name is gone whatever happened after the rename.
        reclaim::free_later(held, readers);
        completed.map(|()| true)
    }

    /// Under the append lock: checks the replaced segments are as they were read, then renames
    /// the cleaned file into place and switches the in-memory segments. Returns the first
    /// replaced segment's file, held, and the replaced segments' readers; `None` when the
    /// segments changed.
    async fn switch_under_lock(
        &self,
        cleaned: CleanedSegment,
    ) -> Result<Option<(Vec<HeldFile>, Vec<Weak<File>>)>, StorageError> {
        let _lock = crate::sync::acquire_permit(&self.append_lock, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        self.check_open()?;
        // The segment rolled last may still be being sealed (cut, indexes written) in the
        // background; a swap replaces only sealed segments.
        self.await_seal().await;
        let Some(at) = self.locate_replaced(&cleaned)? else {
            return Ok(None);
        };
        // Opened before the rename, so this descriptor is the cleaned file whatever happens.
        let read = File::open(&cleaned.cleaned_path)
            .map(Rc::new)
            .map_err(|source| {
                StorageError::io("open cleaned segment", &cleaned.cleaned_path, source)
            })?;
        // Held before the rename over it, so the rename frees nothing.
        let held = reclaim::hold(&cleaned.segment.path).into_iter().collect();
        let readers = self.switch_segments(cleaned, at, read)?;
        Ok(Some((held, readers)))
    }

    /// Where the first segment a cleaned segment replaces sits, or `None` when they are no
    /// longer all there with the sizes they were read at, or one of them is the active segment.
    fn locate_replaced(&self, cleaned: &CleanedSegment) -> Result<Option<usize>, StorageError> {
        let state = self.state.borrow();
        let Some(&(first_base, _)) = cleaned.replaces.first() else {
            return Ok(None);
        };
        let Ok(at) = state
            .segments
            .binary_search_by_key(&first_base, |segment| segment.base_offset)
        else {
            return Ok(None);
        };
        let count = cleaned.replaces.len();
        let Some(following) = state.segments.get(at + count) else {
            return Ok(None);
        };
        let unchanged = state.segments[at..at + count]
            .iter()
            .zip(&cleaned.replaces)
            .all(|(segment, &(base, size))| segment.base_offset == base && segment.size == size);
        if !unchanged {
            return Ok(None);
        }
        let replaced_end = state.segments[at + count - 1].next_offset;
        if cleaned.segment.next_offset != replaced_end || following.base_offset != replaced_end {
            return Err(StorageError::corrupt(
                &cleaned.cleaned_path,
                0,
                format!(
                    "cleaned segment ends at offset {}, the segments it replaces at {replaced_end}",
                    cleaned.segment.next_offset
                ),
            ));
        }
        Ok(Some(at))
    }

    /// Renames the cleaned file over the first replaced segment and swaps the in-memory
    /// segments, in one step with no await so no reader sees one without the other. Returns
    /// the replaced segments' readers.
    fn switch_segments(
        &self,
        cleaned: CleanedSegment,
        at: usize,
        read: Rc<File>,
    ) -> Result<Vec<Weak<File>>, StorageError> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        std::fs::rename(&cleaned.cleaned_path, &cleaned.segment.path).map_err(|source| {
            StorageError::io("rename cleaned segment", &cleaned.cleaned_path, source)
        })?;
        let base = cleaned.segment.base_offset;
        let count = cleaned.replaces.len();
        let readers = cleaned
            .replaces
            .iter()
            .flat_map(|(replaced, _)| state.handles.remove(*replaced))
            .collect();
        let _replaced: Vec<Segment> = state
            .segments
            .splice(at..at + count, std::iter::once(cleaned.segment))
            .collect();
        state.handles.insert(base, read);
        // Cached appends of the replaced segments hold records the cleaning removed.
        if let Some(following) = state.segments.get(at + 1) {
            state.tail.drop_before(following.base_offset);
        }
        Ok(readers)
    }
}

/// Opens the buffered read descriptor of a segment.
fn open_read(segment: &Segment) -> Result<Rc<File>, StorageError> {
    File::open(&segment.path)
        .map(Rc::new)
        .map_err(|source| StorageError::io("open segment for reading", &segment.path, source))
}
