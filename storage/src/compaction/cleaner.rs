//! [`LogCleaner`]: one cleaning round of one log (see the module docs of `compaction`).

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use super::{
    checkpoint::CleanerCheckpoint,
    crash_point,
    filter::{filter_batch, FilterOutcome, Filtered},
    io::{CleanedWriter, SegmentBatches},
    offset_map::OffsetMap,
    plan::{self, CleanRange, CleaningView, SegmentView},
    swap,
    throttle::IoThrottle,
    CleanedSegment,
};
use crate::{
    batch::{decode_records, BatchHeader, Record},
    config::CleanerConfig,
    error::StorageError,
    PartitionLog,
};

/// What one cleaning round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes read from segments (building the offset map and rewriting).
    pub bytes_read: u64,
    /// Bytes written to cleaned segments.
    pub bytes_written: u64,
    /// Segments replaced by cleaned ones.
    pub segments_rewritten: u64,
    /// Records left out (superseded records and expired tombstones).
    pub records_removed: u64,
    /// Batches left out entirely.
    pub batches_removed: u64,
    /// Batches kept whole because their records could not be decoded.
    pub batches_undecodable: u64,
    /// Distinct keys in the offset map.
    pub keys_mapped: u64,
    /// Every offset below this is now clean (the new cleaner checkpoint); unchanged when the
    /// round was given up.
    pub cleaned_offset: i64,
    /// The round stopped early because the log changed under it (retention or truncation);
    /// what was swapped before stays, and the next round starts over.
    pub abandoned: bool,
}

/// Longest stretch of CPU work (decoding, mapping, filtering) a cleaning does before it lets
/// the shard's other task queues run. glommio preempts a task queue only every 100 ms by
/// default, far too long for the appends waiting behind it.
const CPU_SLICE_US: u64 = 500;

/// The cleaner of one shard: its settings and its I/O budget, shared by the rounds it runs one
/// after the other over the logs the shard owns. Lives on that shard only.
pub struct LogCleaner {
    config: CleanerConfig,
    throttle: IoThrottle,
    /// Start of the current stretch of CPU work.
    slice_start: Cell<Instant>,
}

impl LogCleaner {
    /// A cleaner with `config` (validated).
    pub fn new(config: CleanerConfig) -> Result<LogCleaner, StorageError> {
        config.validate()?;
        Ok(LogCleaner {
            throttle: IoThrottle::new(config.io_bytes_per_second_max),
            config,
            slice_start: Cell::new(Instant::now()),
        })
    }

    /// Lets the shard's other task queues run once this stretch of work used its slice.
    async fn yield_if_spent(&self) {
        if self.slice_start.get().elapsed() >= Duration::from_micros(CPU_SLICE_US) {
            glommio::executor().yield_task_queue_now().await;
            self.slice_start.set(Instant::now());
        }
    }

    /// The settings.
    pub fn config(&self) -> &CleanerConfig {
        &self.config
    }

    /// Runs one cleaning round of `log` over the records below `upper_offset` (the high
    /// watermark), whatever its dirty ratio; `now_ms` is the wall clock that tombstone and
    /// lag bounds are measured with. A log that is not compacted is left alone.
    pub async fn clean(
        &self,
        log: &PartitionLog,
        upper_offset: i64,
        now_ms: i64,
    ) -> Result<CleanStats, StorageError> {
        let view = log.cleaning_view()?;
        let range = plan::clean_range(&view, upper_offset, now_ms);
        let mut stats = CleanStats {
            cleaned_offset: range.first_dirty,
            ..CleanStats::default()
        };
        if !view.config.cleanup_policy.compacts() || range.segments.is_empty() {
            return Ok(stats);
        }
        if swap::manifest_present(&view.dir) {
            return Err(StorageError::corrupt(
                view.dir.join(swap::SWAP_MANIFEST_FILE),
                0,
                "a segment swap failed earlier; reopen the log to finish it before cleaning",
            ));
        }
        let mapped = self.build_offset_map(&range, &mut stats).await?;
        let before = view.checkpoint.clone().unwrap_or(CleanerCheckpoint {
            cleaned_offset: range.first_dirty,
            tombstone_rounds: Vec::new(),
        });
        if view.checkpoint.is_none() {
            // Written before the first swap: its presence marks a log that may have gaps.
            log.write_cleaner_checkpoint(before.clone()).await?;
        }
        let horizon = before.tombstone_horizon(now_ms, view.config.delete_retention_ms);
        let round = Round {
            map: mapped.map,

            first_dirty: range.first_dirty,
            map_end: mapped.end,
            horizon,
        };
        let kept_tombstone_max = self.rewrite(log, &view, &range, &round, &mut stats).await?;
        if stats.abandoned {
            return Ok(stats);
        }
        crash_point::reached(crash_point::BEFORE_CHECKPOINT);
        let after = before.after_round(round.map_end, horizon, kept_tombstone_max, now_ms);
        log.write_cleaner_checkpoint(after).await?;
        stats.cleaned_offset = round.map_end;
        Ok(stats)
    }

    /// Reads the dirty part of `range` into the key -> newest offset map until the map is
    /// full; also notes the newest batch of every producer seen.
    async fn build_offset_map(
        &self,
        range: &CleanRange,
        stats: &mut CleanStats,
    ) -> Result<Mapped, StorageError> {
        let mut mapped = Mapped {
            map: OffsetMap::new(self.config.offset_map_bytes_max),
            // A checkpoint past the cleanable range (the high watermark went back) stays.
            end: range.end_offset().max(range.first_dirty),
        };
        for segment in &range.segments {
            if segment.next_offset <= range.first_dirty {
                continue;
            }
            let full = self.map_segment(segment, range.first_dirty, &mut mapped, stats);
            if full.await? {
                break;
            }
        }
        stats.keys_mapped = mapped.map.len() as u64;
        Ok(mapped)
    }

    /// Maps the dirty batches of one segment; true when the map filled up (its end is then the
    /// first batch that did not fit).
    async fn map_segment(
        &self,
        segment: &SegmentView,
        first_dirty: i64,
        mapped: &mut Mapped,
        stats: &mut CleanStats,
    ) -> Result<bool, StorageError> {
        let mut batches = SegmentBatches::open(
            &segment.path,
            segment.size,
            segment.base_offset,
            &self.throttle,
        )
        .await?;
        let mut full = false;
        while let Some((header, bytes)) = batches.next().await? {
            if header.last_offset() < first_dirty || header.is_control() {
                continue;
            }
            // Undecodable records cannot be mapped; such a batch is kept whole anyway.
            let records = decode_records(bytes).unwrap_or_default();
            let needed: usize = records
                .iter()
                .filter_map(|record| record.key.as_deref())
                .map(OffsetMap::entry_bytes)
                .sum::<usize>()
                + OffsetMap::entry_bytes(&[]);
            if !mapped.map.has_room(needed) {
                mapped.end = header.base_offset;
                full = true;
                break;
            }
            for record in &records {
                if let Some(key) = record.key.as_deref() {
                    mapped.map.insert(key, record.offset);
                }
            }
            if header.producer_id >= 0 {
                mapped
                    .map
                    .note_producer(header.producer_id, header.base_offset);
            }
            self.yield_if_spent().await;
        }
        stats.bytes_read += batches.bytes_read();
        batches.close().await;
        Ok(full)
    }

    /// Rewrites every group of segments below the map's end; returns the newest tombstone
    /// kept below it. Stops (marking the stats abandoned) when a swap finds the log changed.
    async fn rewrite(
        &self,
        log: &PartitionLog,
        view: &CleaningView,
        range: &CleanRange,
        round: &Round,
        stats: &mut CleanStats,
    ) -> Result<Option<i64>, StorageError> {
        let mapped_count = range
            .segments
            .iter()
            .take_while(|segment| segment.base_offset < round.map_end)
            .count();
        let mut kept_tombstone_max = None;
        for group in plan::group_segments(
            &range.segments[..mapped_count],
            view.config.segment_bytes_max,
        ) {
            let outcome = self.clean_group(log, view, group, round, stats).await?;
            kept_tombstone_max = kept_tombstone_max.max(outcome.kept_tombstone_max);
            if !outcome.swapped {
                stats.abandoned = true;
                break;
            }
        }
        Ok(kept_tombstone_max)
    }

    /// Writes the cleaned form of `group` and swaps it in.
    async fn clean_group(
        &self,
        log: &PartitionLog,
        view: &CleaningView,
        group: &[SegmentView],
        round: &Round,
        stats: &mut CleanStats,
    ) -> Result<GroupOutcome, StorageError> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(GroupOutcome::default());
        };
        // A log closed or deleted meanwhile gets no new files in its directory.
        log.check_open()?;
        let mut writer = CleanedWriter::create(
            &view.dir,
            first.base_offset,
            view.config.write_mode,
            view.config.index_interval_bytes,
        )
        .await?;
        let mut group_stats = CleanStats::default();
        let written = self
            .write_group(
                &mut writer,
                group,
                last.next_offset,
                round,
                &mut group_stats,
            )
            .await;
        let kept_tombstone_max = match written {
            Ok(kept) => kept,
            Err(error) => {
                writer.abandon().await;
                return Err(error);
            }
        };
        group_stats.bytes_written = writer.size();
        let unchanged = group.len() == 1 && group_stats.records_removed == 0;
        stats.bytes_read += group_stats.bytes_read;
        stats.batches_undecodable += group_stats.batches_undecodable;
        if unchanged {
            // Rewriting a lone segment that lost nothing would only cost a swap.
            writer.abandon().await;
            return Ok(GroupOutcome {
                swapped: true,
                kept_tombstone_max,
            });
        }
        let (segment, cleaned_path) = writer.finish().await?;
        crash_point::reached(crash_point::CLEANED_WRITTEN);
        let cleaned = CleanedSegment {
            segment,
            cleaned_path,
            replaces: group.iter().map(|s| (s.base_offset, s.size)).collect(),
        };
        let swapped = match log.swap_cleaned(cleaned).await {
            Ok(swapped) => swapped,
            Err(error) => {
                // Without a manifest the cleaned files are nobody's; with one, recovery needs
                // them.
                let (dir, base) = (view.dir.clone(), first.base_offset);
                let discarded = crate::log::blocking(move || match swap::manifest_present(&dir) {
                    true => Ok(Vec::new()),
                    false => swap::discard(&dir, base),
                })
                .await;
                crate::reclaim::free_later(discarded.unwrap_or_default(), Vec::new());
                return Err(error);
            }
        };
        if swapped {
            stats.bytes_written += group_stats.bytes_written;
            stats.segments_rewritten += group.len() as u64;
            stats.records_removed += group_stats.records_removed;
            stats.batches_removed += group_stats.batches_removed;
        }
        Ok(GroupOutcome {
            swapped,
            kept_tombstone_max,
        })
    }

    /// Filters every batch of `group` into `writer`; returns the newest tombstone kept below
    /// the map's end.
    async fn write_group(
        &self,
        writer: &mut CleanedWriter,
        group: &[SegmentView],
        group_end: i64,
        round: &Round,
        stats: &mut CleanStats,
    ) -> Result<Option<i64>, StorageError> {
        let mut kept_tombstone_max = None;
        for source in group {
            let mut batches = SegmentBatches::open(
                &source.path,
                source.size,
                source.base_offset,
                &self.throttle,
            )
            .await?;
            while let Some((header, bytes)) = batches.next().await? {
                let ends_group = header.last_offset() + 1 == group_end;
                let outcome = round.filter(&header, bytes, ends_group);
                stats.records_removed += outcome.records_removed;
                stats.batches_undecodable += u64::from(outcome.undecodable);
                if header.base_offset < round.map_end {
                    kept_tombstone_max = kept_tombstone_max.max(outcome.kept_tombstone_max);
                }
                match outcome.filtered {
                    Filtered::Unchanged => writer.append(&header, bytes, &self.throttle).await?,
                    Filtered::Rewritten(rewritten) => {
                        let rewritten_header = BatchHeader::parse(&rewritten)?;
                        writer
                            .append(&rewritten_header, &rewritten, &self.throttle)
                            .await?;
                    }
                    Filtered::Dropped => stats.batches_removed += 1,
                }
                self.yield_if_spent().await;
            }
            stats.bytes_read += batches.bytes_read();
            batches.close().await;
        }
        Ok(kept_tombstone_max)
    }
}

/// The offset map of one round and where it stops.
struct Mapped {
    map: OffsetMap,
    /// One past the last mapped offset.
    end: i64,
}

/// Everything that decides the fate of a record in one round.
struct Round {
    map: OffsetMap,
    first_dirty: i64,
    /// Batches at or past this were not mapped and are copied as they are.
    map_end: i64,
    /// Tombstones below this are old enough to go.
    horizon: i64,
}

impl Round {
    /// The fate of one batch. `ends_group` marks the batch that ends the cleaned segment: it
    /// is kept (empty if need be) so the segment keeps its end offset.
    fn filter(&self, header: &BatchHeader, bytes: &[u8], ends_group: bool) -> FilterOutcome {
        if header.base_offset >= self.map_end || header.is_control() {
            return FilterOutcome {
                filtered: Filtered::Unchanged,
                records_removed: 0,
                kept_tombstone_max: None,
                undecodable: false,
            };
        }
        let keep_if_emptied = ends_group || self.is_producer_latest(header);
        filter_batch(bytes, header, keep_if_emptied, |record| self.retain(record))
    }

    /// Kafka keeps the newest batch of every producer, even emptied, so idempotent producer
    /// state survives compaction. A producer not seen in the dirty part had its newest batch
    /// (as far as this log shows) kept by an earlier round; without producer state to ask, an
    /// emptied batch of such a producer is kept too (a header of waste, never a loss).
    fn is_producer_latest(&self, header: &BatchHeader) -> bool {
        if header.producer_id < 0 {
            return false;
        }
        match self.map.newest_batch_of(header.producer_id) {
            Some(newest) => newest == header.base_offset,
            None => header.base_offset < self.first_dirty,
        }
    }

    /// True when `record` survives: it has no key, or no newer record of its key was mapped,
    /// and it is not a tombstone past its retention.
    fn retain(&self, record: &Record) -> bool {
        let Some(key) = record.key.as_deref() else {
            return true;
        };
        if self
            .map
            .newest(key)
            .is_some_and(|newest| newest > record.offset)
        {
            return false;
        }
        !(record.value.is_none() && record.offset < self.horizon)
    }
}

/// What became of one group of segments.
#[derive(Debug, Default)]
struct GroupOutcome {
    /// The cleaned segment replaced the group (or the group needed no rewrite).
    swapped: bool,
    kept_tombstone_max: Option<i64>,
}
