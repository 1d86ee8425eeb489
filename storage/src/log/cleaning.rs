//! What the cleaner (`crate::compaction`) needs from a log: a snapshot of its closed segments,
//! its cleaner checkpoint, and the segment swap (in `admin.rs`). Nothing here runs on the
//! append path.

use super::{LogInner, PartitionLog};
use crate::{
    compaction::{
        checkpoint::{CleanerCheckpoint, CLEANER_CHECKPOINT_FILE},
        plan::{CleaningView, SegmentView},
        CleanedSegment,
    },
    error::StorageError,
};

impl LogInner {
    /// True when batches may start past the offset expected of them (see `compaction`).
    pub(crate) fn gaps_allowed(&self) -> bool {
        self.cleaning.borrow().gaps_allowed
    }
}

impl PartitionLog {
    /// `Err(Closed)` once the log is closed or deleted.
    pub(crate) fn check_open(&self) -> Result<(), StorageError> {
        self.inner.check_open()
    }

    /// True when the log's cleanup policy compacts it.
    pub(crate) fn compacted(&self) -> bool {
        self.inner.config().cleanup_policy.compacts()
    }

    /// A snapshot of the log for a cleaning decision.
    pub(crate) fn cleaning_view(&self) -> Result<CleaningView, StorageError> {
        self.inner.check_open()?;
        let state = self.inner.state.borrow();
        let closed_count = state.segments.len().saturating_sub(1);
        let closed = state.segments[..closed_count]
            .iter()
            .map(|segment| SegmentView {
                base_offset: segment.base_offset,
                path: segment.path.clone(),
                size: segment.size,
                next_offset: segment.next_offset,
                max_timestamp: segment.index.max_timestamp,
            })
            .collect();
        Ok(CleaningView {
            dir: self.inner.dir.clone(),
            config: crate::LogConfig::clone(&self.inner.config()),
            log_start: self.inner.log_start.get(),
            log_end: self.inner.log_end.get(),
            closed,
            checkpoint: self.inner.cleaning.borrow().checkpoint.clone(),
        })
    }

    /// Replaces the segments `cleaned` was made from; `Ok(false)` when they changed meanwhile
    /// (retention or truncation) and the cleaned file was not used.
    pub(crate) async fn swap_cleaned(&self, cleaned: CleanedSegment) -> Result<bool, StorageError> {
        self.inner.swap_cleaned(cleaned).await
    }

    /// Writes the cleaner checkpoint and keeps it as the log's. The first write also marks the
    /// log as one whose segments may have gaps, which is why a cleaning writes it before its
    /// first swap.
    pub(crate) async fn write_cleaner_checkpoint(
        &self,
        checkpoint: CleanerCheckpoint,
    ) -> Result<(), StorageError> {
        self.inner
            .write_checkpoint(CLEANER_CHECKPOINT_FILE, checkpoint.encode())
            .await?;
        let mut cleaning = self.inner.cleaning.borrow_mut();
        cleaning.gaps_allowed = true;
        cleaning.checkpoint = Some(checkpoint);
        Ok(())
    }
}
