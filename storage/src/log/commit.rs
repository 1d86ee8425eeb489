//! Making appends durable: the group commit of `Durability::Durable`, the flushes of
//! `Durability::Interval`, and what a failed fsync does to the log.
//!
//! Group commit: written appends wait in offset order in `LogState::unpublished`. When one is
//! queued and no sync is running, a commit task starts: it notes how many appends are queued,
//! fdatasyncs the active segment (and the directory, after a roll renamed a new segment into
//! place), publishes exactly those appends, and goes again while more were queued meanwhile.
//! So at most one fdatasync per log is in flight, and every append whose write finished while
//! one was in flight shares the next (an fdatasync covers only writes finished before it
//! started). An append's write waits for the previous append's write, not for its fdatasync
//! (`settle_writes`), so a log's next write overlaps the running round and joins the next one.
//! The logs of a shard commit independently and concurrently, so one round of the shard is one
//! fdatasync per dirty partition; the block layer merges the concurrent cache flushes they issue.
//!
//! A failed fsync takes the log offline for good (until it is reopened, when recovery reads
//! what really is on disk): Linux may already have dropped the pages it could not write and
//! marked them clean, so a retried fsync could succeed over lost data ("fsyncgate", as
//! PostgreSQL learned in 2018). Queued appends fail, nothing more is published, and every later
//! operation answers `StorageError::Offline`.

use std::rc::Rc;

use super::{append::Written, LogInner};
use crate::{config::Durability, error::StorageError, segment::writer::FileHandle};

impl LogInner {
    /// The `Offline` error when the log is offline.
    pub(super) fn offline_error(&self) -> Option<StorageError> {
        self.offline
            .borrow()
            .as_ref()
            .map(|(operation, reason)| StorageError::Offline {
                dir: self.dir.clone(),
                operation,
                reason: reason.clone(),
            })
    }

    /// Takes the log offline after `error` (a failed fsync) and fails every queued append.
    pub(super) fn go_offline(&self, operation: &'static str, error: &StorageError) {
        if self.offline.borrow().is_none() {
            tracing::error!(
                dir = %self.dir.display(),
                operation,
                %error,
                "fsync failed: the partition log goes offline; unsynced bytes are never \
                 acknowledged nor retried, and the log recovers from the disk when reopened"
            );
            *self.offline.borrow_mut() = Some((operation, error.to_string()));
        }
        self.fail_queued();
    }

    pub(super) fn fail_queued(&self) {
        let queued: Vec<Written> = self.state.borrow_mut().unpublished.drain(..).collect();
        for written in queued {
            written.failed();
        }
    }

    /// Durable mode: starts a commit task unless one is running or nothing is queued.
    pub(super) fn request_commit(self: &Rc<Self>) {
        if self.offline_error().is_some() {
            self.fail_queued();
            return;
        }
        let start = {
            let mut state = self.state.borrow_mut();
            let start = !state.sync_running && !state.unpublished.is_empty();
            state.sync_running |= start;
            start
        };
        if start {
            glommio::spawn_local(self.clone().commit_rounds()).detach();
        }
    }

    /// Syncs and publishes queued appends until none is left.
    async fn commit_rounds(self: Rc<Self>) {
        loop {
            let round = {
                let mut state = self.state.borrow_mut();
                let state = &mut *state;
                let queued = state.unpublished.len();
                match state.writer.as_ref() {
                    Some(writer) if queued > 0 => Some((
                        queued,
                        writer.handle(),
                        writer.path().to_path_buf(),
                        std::mem::take(&mut state.dir_sync_pending),
                    )),
                    _ => None,
                }
            };
            let Some((queued, handle, path, dir_sync)) = round else {
                let mut state = self.state.borrow_mut();
                state.sync_running = false;
                drop(state);
                // A close took the writer: whatever is queued can no longer be made durable.
                self.fail_queued();
                return;
            };
            if let Err((operation, error)) = self.sync_files(&handle, &path, dir_sync).await {
                self.go_offline(operation, &error);
                self.state.borrow_mut().sync_running = false;
                return;
            }
            self.publish_queued(queued);
            let mut state = self.state.borrow_mut();
            state.flushed_bytes = state.published_bytes;
            self.flushed.set(self.log_end.get());
        }
    }

    /// Fdatasyncs the active segment, and fsyncs the directory too when `dir_sync` (both at
    /// once). Returns which one failed.
    async fn sync_files(
        &self,
        handle: &FileHandle,
        path: &std::path::Path,
        dir_sync: bool,
    ) -> Result<(), (&'static str, StorageError)> {
        let file = async {
            handle
                .fdatasync(path)
                .await
                .map_err(|error| ("fsync segment", error))
        };
        if !dir_sync {
            return file.await;
        }
        let dir = async {
            self.sync_dir()
                .await
                .map_err(|error| ("fsync log directory", error))
        };
        let (file, dir) = futures_lite::future::zip(file, dir).await;
        file.and(dir)
    }

    /// Interval mode (and close): fsyncs the active segment and advances the flushed offset to
    /// what was published when the fsync started (earlier segments were fsynced when they were
    /// sealed). A failure takes the log offline.
    pub(super) async fn sync_published(&self) -> Result<i64, StorageError> {
        if let Some(error) = self.offline_error() {
            return Err(error);
        }
        self.await_seal().await;
        let (handle, path, end, bytes, generation, dir_sync) = {
            let mut state = self.state.borrow_mut();
            let Some(writer) = state.writer.as_ref() else {
                return Err(StorageError::Closed);
            };
            let (handle, path) = (writer.handle(), writer.path().to_path_buf());
            (
                handle,
                path,
                self.log_end.get(),
                state.published_bytes,
                state.generation,
                std::mem::take(&mut state.dir_sync_pending),
            )
        };
        if let Err((operation, error)) = self.sync_files(&handle, &path, dir_sync).await {
            self.go_offline(operation, &error);
            return Err(self.offline_error().unwrap_or(error));
        }
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

    /// True when appends are acknowledged only once durable.
    pub(super) fn durable(&self) -> bool {
        matches!(self.config().durability, Durability::Durable)
    }
}
