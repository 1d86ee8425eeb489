//! The append path: validate, reserve offsets under the append lock (once the previous append's
//! bytes are written: one write of a log in flight, which may overlap the previous append's
//! fdatasync), write in a task of its own, queue the written append in offset order, and
//! publish it (move the log end offset, which is what readers, the high watermark and followers
//! see) as the durability says: at once under `Interval`, after the group commit's fdatasync
//! covering it under `Durable` (see `commit.rs`).

use std::rc::Rc;

use bytes::BytesMut;
use glommio::sync::StaticPermit;

use super::{now_ms, AppendInfo, LogInner, APPEND_BYTES_MAX, APPEND_INFLIGHT_BYTES_MAX};
use crate::{
    batch::{stamp, BatchHeader, BatchIter},
    config::Durability,
    error::StorageError,
    producer_state::{AppendDecision, ProducerBatch, ProducerStateError},
    segment::writer::{succeeded, Completion, FinishOnDrop, Prepared},
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
pub(super) struct BatchMeta {
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
    /// Finished once this append's bytes, and every earlier append's, are written.
    completion: Rc<Completion>,
    previous: Option<Rc<Completion>>,
    /// Finished once this append is published (true) or failed (false).
    published: Rc<Completion>,
    previous_published: Option<Rc<Completion>>,
}

/// An append whose bytes are written, queued in offset order until it is published.
pub(super) struct Written {
    segment_base: i64,
    position: u64,
    batches: Vec<BatchMeta>,
    bytes: u64,
    tail_after: Vec<u8>,
    cached: Option<bytes::Bytes>,
    published: Rc<Completion>,
}

/// What an append of these batches reports.
fn append_info(batches: &[BatchMeta]) -> AppendInfo {
    let base_offset = batches.first().map_or(0, |meta| meta.header.base_offset);
    let last_offset = batches
        .last()
        .map_or(base_offset - 1, |meta| meta.header.last_offset());
    let max_timestamp = batches
        .iter()
        .map(|meta| meta.header.max_timestamp)
        .max()
        .unwrap_or(i64::MIN);
    AppendInfo {
        base_offset,
        last_offset,
        max_timestamp,
        log_end_offset: last_offset + 1,
        duplicate: false,
    }
}

/// Checks every batch of an append (header, size limit, CRC) before anything is written; the
/// CRCs of the batches within the first `crc_verified_bytes` were matched as they arrived.
fn validate_input(
    batches: &[u8],
    batch_bytes_max: usize,
    crc_verified_bytes: usize,
) -> Result<Vec<BatchMeta>, StorageError> {
    if batches.is_empty() {
        return Err(StorageError::EmptyAppend);
    }
    if batches.len() > APPEND_BYTES_MAX {
        return Err(StorageError::AppendTooLarge {
            bytes: batches.len(),
            max: APPEND_BYTES_MAX,
        });
    }
    let mut iter = BatchIter::new(batches, batch_bytes_max).crc_verified_before(crc_verified_bytes);
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
        crc_verified_bytes: usize,
        kind: AppendKind,
    ) -> Result<AppendInfo, StorageError> {
        self.check_open()?;
        let batch_bytes_max = self.config().batch_bytes_max;
        let mut metas = validate_input(&batches, batch_bytes_max, crc_verified_bytes)?;
        let units = batches.len().min(APPEND_INFLIGHT_BYTES_MAX) as u64;
        let bytes_slot = crate::sync::acquire_static_permit(&self.inflight_bytes, units)
            .await
            .map_err(|_| StorageError::Closed)?;
        let slot = crate::sync::acquire_static_permit(&self.inflight, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        let pending = {
            let lock = crate::sync::acquire_permit(&self.append_lock, 1)
                .await
                .map_err(|_| StorageError::Closed)?;
            self.check_open()?;
            self.settle_writes().await?;
            let offsets = metas
                .iter()
                .map(|meta| i64::from(meta.header.last_offset_delta) + 1)
                .sum();
            self.roll_if_due(batches.len() as u64, offsets, now_ms())
                .await?;
            self.assign_offsets(&mut batches, &mut metas, kind)?;
            // The sequence check runs under the append lock against the state that includes
            // appends still in flight, so a retry racing its original is a duplicate.
            if let AppendKind::Leader(_) = kind {
                if let AppendDecision::Duplicate {
                    first_offset,
                    last_offset,
                } = self.check_producers(&metas)?
                {
                    let in_flight = self.state.borrow().last_published.clone();
                    drop(lock);
                    return self.duplicate(first_offset, last_offset, in_flight).await;
                }
            }
            self.reserve_epochs(&metas).await?;
            self.prepare_space(batches.len() as u64).await;
            self.prepare_next_segment_if_due();
            let pending = self.reserve(batches, metas);
            drop(lock);
            pending
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

    /// Runs the idempotent-producer check on a leader append's batches (offsets assigned).
    fn check_producers(&self, metas: &[BatchMeta]) -> Result<AppendDecision, StorageError> {
        let batches: Vec<(ProducerBatch, i64, i64)> = metas
            .iter()
            .filter_map(|meta| {
                ProducerBatch::from_header(&meta.header)
                    .map(|batch| (batch, meta.header.base_offset, meta.header.last_offset()))
            })
            .collect();
        if batches.is_empty() {
            return Ok(AppendDecision::Append);
        }
        let decision = self
            .state
            .borrow()
            .reserved_producers
            .check_append(&batches)?;
        // A duplicate must be the whole append: batches without a producer id mixed into it
        // would otherwise be dropped with it.
        if matches!(decision, AppendDecision::Duplicate { .. }) && batches.len() != metas.len() {
            return Err(ProducerStateError::PartialDuplicate {
                producer_id: batches[0].0.producer_id,
            }
            .into());
        }
        Ok(decision)
    }

    /// Answers a duplicate with its original offsets once the original is published (it may
    /// still be in flight: then the newest append in flight at the check is awaited, and a
    /// failed original fails the retry too, which the client retries again).
    async fn duplicate(
        &self,
        first_offset: i64,
        last_offset: i64,
        in_flight: Option<Rc<Completion>>,
    ) -> Result<AppendInfo, StorageError> {
        if last_offset >= self.log_end.get() {
            succeeded(in_flight).await;
        }
        self.check_open()?;
        if last_offset >= self.log_end.get() {
            return Err(StorageError::Aborted {
                base_offset: first_offset,
            });
        }
        Ok(AppendInfo {
            base_offset: first_offset,
            last_offset,
            max_timestamp: i64::MIN,
            log_end_offset: self.log_end.get(),
            duplicate: true,
        })
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

    /// Direct mode: keeps prepared space ahead of the writes by starting a background
    /// extension when the write position nears its end. An append waits only when its bytes
    /// would land in space an extension is still preparing (appends outran it). Preparation is
    /// best effort: without it the writes still work, only slower, so a failure is logged.
    async fn prepare_space(self: &Rc<Self>, len: u64) {
        let (extension, wait) = {
            let mut state = self.state.borrow_mut();
            match state.writer.as_mut() {
                Some(writer) => writer.plan_extension(len, self.config().segment_bytes_max),
                None => (None, None),
            }
        };
        if let Some(extension) = extension {
            let log = self.clone();
            glommio::spawn_local(async move {
                let (epoch, to, result) = extension.run().await;
                if let Err(error) = &result {
                    tracing::debug!(dir = %log.dir.display(), %error, "segment space preparation failed");
                }
                if let Some(writer) = log.state.borrow_mut().writer.as_mut() {
                    writer.extended(epoch, to, result.is_ok());
                }
            })
            .detach();
        }
        if let Some(wait) = wait {
            wait.wait().await;
        }
    }

    /// Hands the batches to the writer and chains the append behind the previous one.
    fn reserve(&self, batches: BytesMut, batches_meta: Vec<BatchMeta>) -> PendingAppend {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let keep = self.config().tail_cache_bytes_max > 0;
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
        let published = Completion::new();
        let previous_published = state.last_published.replace(published.clone());
        if let Some(last) = batches_meta.last() {
            state.next_offset = last.header.last_offset() + 1;
        }
        state
            .reserved_producers
            .record_headers(batches_meta.iter().map(|meta| &meta.header));
        PendingAppend {
            prepared,
            path,
            batches: batches_meta,
            bytes,
            segment_base,
            completion,
            previous,
            published,
            previous_published,
        }
    }

    /// Runs one append's writes, queues it in order, and waits until it is published (or
    /// fails it and every append behind it).
    async fn complete(
        self: Rc<Self>,
        pending: PendingAppend,
        _slots: [StaticPermit; 2],
    ) -> Result<AppendInfo, StorageError> {
        let written_guard = FinishOnDrop(pending.completion.clone());
        let published_guard = FinishOnDrop(pending.published.clone());
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
            published,
            previous_published,
        } = pending;
        let Prepared {
            plan,
            position,
            tail_after,
            cached,
        } = prepared;
        let written = plan.execute(&path, base_offset).await;
        // Wait for the previous append whatever happened, so appends finish in order.
        let predecessor_ok = succeeded(previous).await;
        let aborted = StorageError::Aborted { base_offset };
        let result = written.and(if predecessor_ok { Ok(()) } else { Err(aborted) });
        if let Err(error) = result {
            self.state
                .borrow_mut()
                .poisoned
                .get_or_insert_with(|| error.to_string());
            completion.finish(false);
            // Failed appends finish in order too, so the last one failing means every earlier
            // one is settled (published or failed) and a rewind cannot cut queued bytes.
            succeeded(previous_published).await;
            published.finish(false);
            return Err(error);
        }
        let info = append_info(&batches);
        self.state.borrow_mut().unpublished.push_back(Written {
            segment_base,
            position,
            batches,
            bytes,
            tail_after,
            cached,
            published: published.clone(),
        });
        completion.finish(true);
        drop(written_guard);
        match self.config().durability {
            Durability::Interval { .. } => self.publish_queued(usize::MAX),
            Durability::Durable => self.request_commit(),
        }
        let is_published = published.wait().await;
        drop(published_guard);
        if !is_published {
            return Err(self
                .offline_error()
                .unwrap_or(StorageError::Aborted { base_offset }));
        }
        self.after_publish().await?;
        Ok(info)
    }

    /// Publishes the first `count` queued appends in order (fewer when fewer are queued).
    pub(super) fn publish_queued(&self, count: usize) {
        if self.offline_error().is_some() {
            self.fail_queued();
            return;
        }
        let ready: Vec<Written> = {
            let mut state = self.state.borrow_mut();
            let count = count.min(state.unpublished.len());
            state.unpublished.drain(..count).collect()
        };
        for written in ready {
            let published = written.published.clone();
            self.publish(written);
            published.finish(true);
        }
    }

    /// Makes a written append visible: indexes, epochs, tail cache, log end offset.
    fn publish(&self, written: Written) {
        let Written {
            segment_base,
            position,
            batches,
            bytes,
            tail_after,
            cached,
            ..
        } = written;
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
        for meta in &batches {
            segment.observe(&meta.header, position + meta.position as u64);
            state
                .epochs
                .assign(meta.header.partition_leader_epoch, meta.header.base_offset);
        }
        state
            .producers
            .record_headers(batches.iter().map(|meta| &meta.header));
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
        if matches!(self.config().durability, Durability::Interval { .. }) {
            state.unflushed_since_ms.get_or_insert_with(now_ms);
        }
        self.log_end.set(next_offset);
    }

    /// Interval durability: starts a background fsync once enough bytes are unflushed.
    async fn after_publish(self: &Rc<Self>) -> Result<(), StorageError> {
        let Durability::Interval {
            flush_bytes_max, ..
        } = self.config().durability
        else {
            return Ok(());
        };
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
        Ok(())
    }

    /// Waits for every append in flight, then (interval durability) fsyncs.
    pub(super) async fn flush_all(&self) -> Result<i64, StorageError> {
        self.check_open()?;
        let last = self.state.borrow().last_published.clone();
        if let Some(last) = last {
            last.wait().await;
        }
        self.check_open()?;
        let flushed = match self.config().durability {
            Durability::Durable => self.flushed.get(),
            Durability::Interval { .. } => self.sync_published().await?,
        };
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

    /// Waits until the previous append's bytes are written (the caller holds the append lock).
    /// Its fdatasync may still be running: this append's write then overlaps it and shares
    /// the next commit round. When a write failed, settles everything (`settle`).
    async fn settle_writes(&self) -> Result<(), StorageError> {
        let last = self.state.borrow().last_completion.clone();
        if self.poisoned_after(last).await? {
            self.settle().await?;
        }
        Ok(())
    }

    /// Waits for `completion` (when there is one), then tells whether a write failed since
    /// the last rewind; an error when the log closed or went offline meanwhile.
    async fn poisoned_after(
        &self,
        completion: Option<Rc<Completion>>,
    ) -> Result<bool, StorageError> {
        if let Some(completion) = completion {
            completion.wait().await;
        }
        self.check_open()?;
        Ok(self.state.borrow().poisoned.is_some())
    }

    /// Waits for every append in flight to be published or failed (the caller holds the
    /// append lock, so no new one starts) and, when a write failed, cuts the file back to the
    /// last published byte.
    pub(super) async fn settle(&self) -> Result<(), StorageError> {
        let last = self.state.borrow().last_published.clone();
        if !self.poisoned_after(last).await? {
            return Ok(());
        }
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
        state.reserved_producers = state.producers.clone();
        let reason = state.poisoned.take().unwrap_or_default();
        // Every append is settled: none is in flight to chain the next one behind (the failed
        // ones would otherwise abort every later append, for good).
        state.last_completion = None;
        state.last_published = None;
        state.generation += 1;
        tracing::warn!(file = %path.display(), size, %reason, "rewound the active segment after a failed write");
        Ok(())
    }
}

impl Written {
    /// Fails the append (it is never published).
    pub(super) fn failed(self) {
        self.published.finish(false);
    }
}
