//! Operations replication needs from a replica's log beyond appends and reads: truncating a
//! follower that fell behind the leader's log start (Kafka's `truncateFullyAndStartAt`),
//! retention bounded by the high watermark, and the high-watermark checkpoint.

use super::{blocking, LogInner, PartitionLog};
use crate::checkpoint::{self, HIGH_WATERMARK_FILE};
use crate::error::StorageError;

impl PartitionLog {
    /// Empties the log and restarts it at `offset`, wherever that is relative to the log (Kafka's
    /// `truncateFullyAndStartAt`): a follower whose log ends below the leader's log start can
    /// never fetch what retention deleted on the leader, so it drops everything and continues
    /// from the leader's log start. Epochs and both offset checkpoints restart with it.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        self.inner.truncate_fully_and_start_at(offset).await
    }

    /// Like [`PartitionLog::apply_retention`], but never deletes a segment holding an offset at
    /// or above `max_offset`: a replica passes its high watermark, so retention never removes
    /// records a follower has not replicated yet (Kafka bounds deletion the same way).
    pub async fn apply_retention_below(
        &self,
        now_ms: i64,
        max_offset: i64,
    ) -> Result<usize, StorageError> {
        self.inner.apply_retention(now_ms, max_offset).await
    }

    /// The high watermark last checkpointed in this log's directory, if the file is there and
    /// readable (see [`PartitionLog::checkpoint_high_watermark`]).
    pub async fn read_high_watermark_checkpoint(&self) -> Option<i64> {
        let dir = self.inner.dir.clone();
        blocking(move || checkpoint::read_high_watermark(&dir)).await
    }

    /// Writes `offset` as the checkpointed high watermark. The file is a hint that lets a
    /// restarted replica serve the committed offsets at once: a lost or stale one costs only
    /// availability (the replica learns the high watermark again), so periodic writes may skip
    /// the fsyncs (`durable` false); the write at close is durable.
    pub async fn checkpoint_high_watermark(
        &self,
        offset: i64,
        durable: bool,
    ) -> Result<(), StorageError> {
        self.inner.check_open()?;
        let _permit = crate::sync::acquire_permit(&self.inner.checkpoint_lock, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        let dir = self.inner.dir.clone();
        let bytes = checkpoint::encode_recovery_point(offset);
        crate::lanes::background(move || {
            checkpoint::replace_file(&dir, HIGH_WATERMARK_FILE, &bytes, durable)
        })
        .await
        .map_err(|source| {
            StorageError::io(
                "write checkpoint",
                self.inner.dir.join(HIGH_WATERMARK_FILE),
                source,
            )
        })
    }
}

impl LogInner {
    async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        let _lock = crate::sync::acquire_permit(&self.append_lock, 1)
            .await
            .map_err(|_| StorageError::Closed)?;
        self.check_open()?;
        self.settle().await?;
        self.truncate_fully(offset).await
    }
}
