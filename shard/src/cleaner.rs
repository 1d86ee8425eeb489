//! The shard's log cleaner: one cleaning round at a time over the compacted logs this shard
//! owns, dirtiest first (logs whose records passed `max.compaction.lag.ms` or whose tombstones
//! passed `delete.retention.ms` before those due by their dirty ratio). Each round cleans only
//! below the partition's high watermark, so nothing a consumer cannot see yet (and nothing a
//! new leader might truncate) is ever compacted.
//!
//! The owner runs [`Shard::clean_dirtiest_log`] in a loop, in a glommio task queue with fewer
//! shares than the request path, pausing for the cleaner's backoff when it returns false.

use std::time::Instant;

use sluice_storage::{Cleanability, LogCleaner, StorageError};

use crate::shard::Shard;

impl Shard {
    /// Runs one cleaning round of the dirtiest compacted log this shard owns whose cleaning is
    /// due at `now_ms`. Returns true when the round made progress (so another may follow at
    /// once), false when nothing was due or the round failed (the caller then backs off).
    pub async fn clean_dirtiest_log(&self, cleaner: &LogCleaner, now_ms: i64) -> bool {
        let dirtiest = self
            .registry()
            .all()
            .into_iter()
            .filter_map(|partition| {
                let verdict = partition
                    .log()
                    .cleanability(partition.high_watermark(), now_ms)?;
                verdict.due.then_some((partition, verdict))
            })
            .max_by(|(_, a), (_, b)| urgency(a).total_cmp(&urgency(b)));
        let Some((partition, verdict)) = dirtiest else {
            return false;
        };
        let metrics = self.metrics();
        let started = Instant::now();
        let result = cleaner
            .clean(partition.log(), partition.high_watermark(), now_ms)
            .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        metrics.cleaner_runs.increment();
        metrics.cleaner_time_ms.add(elapsed_ms);
        let (topic, index) = (partition.topic(), partition.partition());
        match result {
            Ok(stats) => {
                metrics.cleaner_bytes_read.add(stats.bytes_read);
                metrics.cleaner_bytes_written.add(stats.bytes_written);
                metrics
                    .cleaner_segments_rewritten
                    .add(stats.segments_rewritten);
                metrics.cleaner_records_removed.add(stats.records_removed);
                tracing::info!(
                    topic,
                    partition = index,
                    dirty_ratio = verdict.dirty_ratio,
                    cleaned_offset = stats.cleaned_offset,
                    segments_rewritten = stats.segments_rewritten,
                    records_removed = stats.records_removed,
                    bytes_read = stats.bytes_read,
                    bytes_written = stats.bytes_written,
                    undecodable_batches = stats.batches_undecodable,
                    abandoned = stats.abandoned,
                    elapsed_ms,
                    "cleaned log"
                );
                !stats.abandoned && (stats.segments_rewritten > 0 || stats.records_removed > 0)
            }
            // The partition was removed or the shard is closing meanwhile.
            Err(StorageError::Closed) => false,
            Err(error) => {
                metrics.cleaner_errors.increment();
                tracing::warn!(topic, partition = index, %error, "log cleaning failed");
                false
            }
        }
    }
}

/// Order of the cleaner's choice: forced cleanings first, then by dirty ratio.
fn urgency(verdict: &Cleanability) -> f64 {
    verdict.dirty_ratio + if verdict.forced { 1.0 } else { 0.0 }
}
