//! Rolling the active segment without holding appends behind file work: the next segment is
//! prepared ahead (created, its first space preallocated and, under durable acknowledgement,
//! zero-filled and fsynced) once the active one is half full, so a roll is a rename and a swap
//! under the append lock; the old segment is sealed (cut to its exact length, fsynced, indexes
//! written, closed, recovery point moved) by a background task.
//!
//! Until the directory is fsynced after the rename, the new segment's name is not durable: the
//! next commit round (or interval flush) fsyncs the directory together with the segment, so
//! nothing in the new segment is acknowledged (durable mode) or counted as flushed before its
//! name is on disk. A crash in between leaves the prepared file under its temporary name, which
//! the next open deletes, and the old segment's zero-filled tail, which recovery cuts.

use std::{fs::File, path::Path, rc::Rc};

use super::{blocking, LogInner};
use crate::{
    compaction::crash_point,
    error::StorageError,
    lanes, recovery,
    segment::{writer::SegmentWriter, Segment},
};

/// Name of the prepared next segment until a roll renames it; `.tmp` files are removed when a
/// log opens.
pub(crate) const PREPARED_SEGMENT_FILE: &str = "prepared-segment.log.tmp";

/// A segment file made ready before it is needed.
pub(super) struct PreparedSegment {
    writer: SegmentWriter,
    read: Rc<File>,
}

impl LogInner {
    /// Opens a segment writer with this log's way of preparing space.
    pub(super) async fn open_writer(
        &self,
        path: &Path,
        size: u64,
        create: bool,
    ) -> Result<SegmentWriter, StorageError> {
        let mut writer = SegmentWriter::open(path, self.config().write_mode, size, create).await?;
        writer.set_zero_fill(self.durable());
        Ok(writer)
    }

    /// True when the next append of `len` bytes and `offsets` offsets must go to a new segment:
    /// the active one would pass `segment_bytes_max`, is older than `roll_ms_max()`, or its
    /// relative offsets would no longer fit in u32. An empty segment never rolls.
    pub(super) fn roll_due(&self, len: u64, offsets: i64, now_ms: i64) -> bool {
        let state = self.state.borrow();
        let (Some(writer), Some(active)) = (state.writer.as_ref(), state.segments.last()) else {
            return false;
        };
        if writer.submitted() == 0 {
            return false;
        }
        let size_due = writer.submitted() + len > self.config().segment_bytes_max;
        let age_ms_max = i64::try_from(self.config().roll_ms_max()).unwrap_or(i64::MAX);
        let time_due = active
            .roll_base_ms
            .is_some_and(|base| now_ms.saturating_sub(base) >= age_ms_max);
        let relative_end = state.next_offset.saturating_add(offsets) - active.base_offset;
        let offsets_due = relative_end > i64::from(u32::MAX);
        size_due || time_due || offsets_due
    }

    /// Rolls when due (the caller holds the append lock).
    pub(super) async fn roll_if_due(
        self: &Rc<Self>,
        len: u64,
        offsets: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        if !self.roll_due(len, offsets, now_ms) {
            return Ok(());
        }
        self.settle().await?;
        if self.roll_due(len, offsets, now_ms) {
            self.roll().await?;
        }
        Ok(())
    }

    /// Starts preparing the next segment once the active one is half full (and none is
    /// prepared or being prepared).
    pub(super) fn prepare_next_segment_if_due(self: &Rc<Self>) {
        let due = {
            let mut state = self.state.borrow_mut();
            let half_full = state
                .writer
                .as_ref()
                .is_some_and(|writer| writer.submitted() >= self.config().segment_bytes_max / 2);
            let due = half_full && state.prepared.is_none() && !state.preparing;
            state.preparing |= due;
            due
        };
        if due {
            glommio::spawn_local(self.clone().prepare_next_segment()).detach();
        }
    }

    async fn prepare_next_segment(self: Rc<Self>) {
        let path = self.dir.join(PREPARED_SEGMENT_FILE);
        let prepared = self.prepare_segment_file(&path).await;
        let mut state = self.state.borrow_mut();
        state.preparing = false;
        match prepared {
            Ok(prepared) if !self.closed.get() => state.prepared = Some(prepared),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(file = %path.display(), %error, "preparing the next segment failed; the roll will create it");
            }
        }
    }

    async fn prepare_segment_file(&self, path: &Path) -> Result<PreparedSegment, StorageError> {
        let mut writer = self.open_writer(path, 0, true).await?;
        let (extension, _) = writer.plan_extension(0, self.config().segment_bytes_max);
        if let Some(extension) = extension {
            let (epoch, to, result) = extension.run().await;
            result?;
            writer.extended(epoch, to, true);
        }
        let read = File::open(path)
            .map_err(|source| StorageError::io("open segment for reading", path, source))?;
        Ok(PreparedSegment {
            writer,
            read: Rc::new(read),
        })
    }

    /// Makes a new active segment at the log end offset (the prepared one, renamed, or a new
    /// file) and hands the old one to a background seal. The caller holds the append lock and
    /// has settled.
    async fn roll(self: &Rc<Self>) -> Result<(), StorageError> {
        self.await_seal().await;
        let (new_base, prepared) = {
            let mut state = self.state.borrow_mut();
            (state.next_offset, state.prepared.take())
        };
        let segment = Segment::new(&self.dir, new_base, self.config().index_interval_bytes);
        let (writer, read) = match prepared {
            Some(PreparedSegment { mut writer, read }) => {
                let (from, to) = (self.dir.join(PREPARED_SEGMENT_FILE), segment.path.clone());
                blocking(move || std::fs::rename(from, to))
                    .await
                    .map_err(|source| StorageError::io("rename segment", &segment.path, source))?;
                writer.renamed(&segment.path);
                (writer, read)
            }
            None => {
                let writer = self.open_writer(&segment.path, 0, true).await?;
                let read = File::open(&segment.path).map_err(|source| {
                    StorageError::io("open segment for reading", &segment.path, source)
                })?;
                (writer, Rc::new(read))
            }
        };
        let seal = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let old_read = std::mem::replace(&mut state.active_read, read);
            let Some(old) = state.segments.last_mut() else {
                return Err(StorageError::Closed);
            };
            let seal = Seal {
                producer_snapshot: crate::producer_state::encode_snapshot(&state.producers),
                base: old.base_offset,
                size: old.size,
                files: recovery::sealed_index_files(old),
                writer: state.writer.replace(writer),
                new_base,
                done: crate::segment::writer::Completion::new(),
            };
            state.handles.insert(seal.base, old_read);
            state.segments.push(segment);
            state.dir_sync_pending = true;
            state.sealing = Some(seal.done.clone());
            seal
        };
        glommio::spawn_local(self.clone().seal(seal)).detach();
        Ok(())
    }

    /// Waits for the seal of the previous active segment, if one is running.
    pub(super) async fn await_seal(&self) {
        let sealing = self.state.borrow().sealing.clone();
        if let Some(sealing) = sealing {
            sealing.wait().await;
        }
    }

    /// Seals a segment that just stopped being the active one. A failed fsync takes the log
    /// offline; other failures only leave work for recovery (which scans a segment without
    /// valid indexes and cuts a zero-filled tail), so they are logged.
    async fn seal(self: Rc<Self>, mut seal: Seal) {
        let done = seal.done.clone();
        let _guard = crate::segment::writer::FinishOnDrop(done.clone());
        let new_base = seal.new_base;
        let producer_snapshot = std::mem::take(&mut seal.producer_snapshot);
        match self.run_seal(seal).await {
            Ok(()) => {
                self.flushed.set(self.flushed.get().max(new_base));
                crash_point::reached(crash_point::ROLL_BEFORE_PRODUCER_SNAPSHOT);
                if let Err(error) = self
                    .write_producer_snapshot(new_base, producer_snapshot)
                    .await
                {
                    tracing::warn!(dir = %self.dir.display(), %error, "writing the producer snapshot after a roll failed; recovery replays from an older one");
                }
                if let Err(error) = self.write_recovery_point(new_base).await {
                    tracing::warn!(dir = %self.dir.display(), %error, "writing the recovery point after a roll failed");
                }
            }
            Err(
                error @ StorageError::Io {
                    operation: "fsync segment",
                    ..
                },
            ) => {
                self.go_offline("fsync segment", &error);
            }
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "sealing a rolled segment failed; recovery will redo it");
            }
        }
        done.finish(true);
    }

    async fn run_seal(&self, seal: Seal) -> Result<(), StorageError> {
        let Some(writer) = seal.writer else {
            return Err(StorageError::Closed);
        };
        if let Some(extension) = writer.extension_in_flight() {
            extension.wait().await;
        }
        let files = seal.files;
        let index_files = lanes::background(move || recovery::write_index_files(&files));
        // Cutting the file's preallocated tail runs on the blocking thread too.
        let closed = async {
            let _turn = lanes::background_turn().await;
            writer.close(seal.size).await
        };
        let (closed, indexed) = futures_lite::future::zip(closed, index_files).await;
        closed.and(indexed)
    }
}

/// What sealing a rolled segment needs.
struct Seal {
    base: i64,
    size: u64,
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
    /// The producer state as of `new_base` (the roll settled every append), written once the
    /// old segment is durable so the snapshot never describes batches recovery could lose.
    producer_snapshot: Vec<u8>,
    writer: Option<SegmentWriter>,
    new_base: i64,
    done: Rc<crate::segment::writer::Completion>,
}
