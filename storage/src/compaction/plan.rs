//! Which part of a log a cleaning may touch, how dirty it is, and how its segments are grouped:
//! pure decisions over a snapshot of the log.

use std::path::PathBuf;

use super::checkpoint::CleanerCheckpoint;
use crate::config::LogConfig;

/// A closed segment as the cleaner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentView {
    pub base_offset: i64,
    pub path: PathBuf,
    pub size: u64,
    /// One past its last offset; the next segment's base offset.
    pub next_offset: i64,
    /// Newest batch timestamp, `None` when empty.
    pub max_timestamp: Option<i64>,
}

/// A snapshot of a log for one cleaning decision.
#[derive(Debug, Clone)]
pub(crate) struct CleaningView {
    pub dir: PathBuf,
    pub config: LogConfig,
    pub log_start: i64,
    pub log_end: i64,
    /// Every segment but the active one, in offset order.
    pub closed: Vec<SegmentView>,
    pub checkpoint: Option<CleanerCheckpoint>,
}

/// The part of a log one cleaning may read and rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanRange {
    /// A prefix of the closed segments: below the caller's bound (the high watermark) and
    /// older than `min_compaction_lag_ms`.
    pub segments: Vec<SegmentView>,
    /// Offsets below this were cleaned before; the rest of the range is dirty.
    pub first_dirty: i64,
    /// Bytes of the segments wholly below `first_dirty`.
    pub clean_bytes: u64,
    /// Bytes of the other segments of the range.
    pub dirty_bytes: u64,
}

impl CleanRange {
    /// One past the last offset of the range.
    pub(crate) fn end_offset(&self) -> i64 {
        self.segments
            .last()
            .map_or(self.first_dirty, |segment| segment.next_offset)
    }
}

/// How much a log would gain from a cleaning, for the shard's choice of the dirtiest log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanability {
    /// Dirty bytes over all cleanable bytes, in [0, 1].
    pub dirty_ratio: f64,
    /// Bytes written since the last cleaning, within the cleanable range.
    pub dirty_bytes: u64,
    /// True when a cleaning is due: the ratio reached `min_cleanable_dirty_ratio`, a dirty
    /// record passed `max_compaction_lag_ms`, or kept tombstones passed `delete_retention_ms`.
    pub due: bool,
    /// True when the due cleaning is forced by a time bound (lag or tombstones) rather than
    /// the ratio; such logs go first.
    pub forced: bool,
}

/// The cleanable range of `view` for records below `upper_offset` at `now_ms`.
pub(crate) fn clean_range(view: &CleaningView, upper_offset: i64, now_ms: i64) -> CleanRange {
    let lag_ms = i64::try_from(view.config.min_compaction_lag_ms).unwrap_or(i64::MAX);
    let segments: Vec<SegmentView> = view
        .closed
        .iter()
        .take_while(|segment| {
            let settled = lag_ms == 0
                || segment
                    .max_timestamp
                    .is_none_or(|newest| now_ms.saturating_sub(newest) >= lag_ms);
            segment.next_offset <= upper_offset && settled
        })
        .cloned()
        .collect();
    let cleaned = view.checkpoint.as_ref().map(|c| c.cleaned_offset);
    // A checkpoint outside the log (the log was truncated or emptied since) says nothing.
    let first_dirty = match cleaned {
        Some(offset) if offset >= view.log_start && offset <= view.log_end => offset,
        _ => view.log_start,
    };
    let (clean_bytes, dirty_bytes) = segments.iter().fold((0, 0), |(clean, dirty), segment| {
        if segment.next_offset <= first_dirty {
            (clean + segment.size, dirty)
        } else {
            (clean, dirty + segment.size)
        }
    });
    CleanRange {
        segments,
        first_dirty,
        clean_bytes,
        dirty_bytes,
    }
}

/// Whether and how urgently `range` of `view` should be cleaned at `now_ms`; `None` when the
/// log is not compacted or nothing in it can be cleaned.
pub(crate) fn cleanability(
    view: &CleaningView,
    range: &CleanRange,
    now_ms: i64,
) -> Option<Cleanability> {
    if !view.config.cleanup_policy.compacts() || range.segments.is_empty() {
        return None;
    }
    let total = range.clean_bytes + range.dirty_bytes;
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        range.dirty_bytes as f64 / total as f64
    };
    let lag_ms = i64::try_from(view.config.max_compaction_lag_ms).unwrap_or(i64::MAX);
    // The first dirty segment's newest timestamp bounds its oldest record from above, so this
    // forces a cleaning at most one segment's time span late (segments of compacted logs
    // roll at `max_compaction_lag_ms` at the latest).
    let lagging = range
        .segments
        .iter()
        .find(|segment| segment.next_offset > range.first_dirty)
        .and_then(|segment| segment.max_timestamp)
        .is_some_and(|newest| now_ms.saturating_sub(newest) >= lag_ms);
    let tombstones = view.checkpoint.as_ref().is_some_and(|checkpoint| {
        checkpoint.tombstones_expired(now_ms, view.config.delete_retention_ms)
    });
    let by_ratio =
        range.dirty_bytes > 0 && dirty_ratio >= view.config.min_cleanable_dirty_ratio.get();
    let forced = (range.dirty_bytes > 0 && lagging) || tombstones;
    Some(Cleanability {
        dirty_ratio,
        dirty_bytes: range.dirty_bytes,
        due: by_ratio || forced,
        forced: forced && !by_ratio,
    })
}

/// Splits `segments` into runs that are rewritten into one segment each: consecutive segments
/// whose sizes add up to at most `bytes_max` and whose offsets stay within u32 of the run's
/// base (index entries hold relative offsets). A segment larger than the bound is a run alone.
pub(crate) fn group_segments(segments: &[SegmentView], bytes_max: u64) -> Vec<&[SegmentView]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (at, segment) in segments.iter().enumerate() {
        let span = segment.next_offset - segments[start].base_offset;
        let fits = bytes + segment.size <= bytes_max && span <= i64::from(u32::MAX);
        if at > start && !fits {
            groups.push(&segments[start..at]);
            start = at;
            bytes = 0;
        }
        bytes += segment.size;
    }
    if start < segments.len() {
        groups.push(&segments[start..]);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CleanupPolicy, Ratio};

    fn segment(base: i64, next: i64, size: u64, newest: i64) -> SegmentView {
        SegmentView {
            base_offset: base,
            path: PathBuf::new(),
            size,
            next_offset: next,
            max_timestamp: Some(newest),
        }
    }

    fn view(checkpoint: Option<i64>) -> CleaningView {
        CleaningView {
            dir: PathBuf::new(),
            config: LogConfig {
                cleanup_policy: CleanupPolicy::Compact,
                min_cleanable_dirty_ratio: Ratio::new(0.5).unwrap(),
                min_compaction_lag_ms: 100,
                max_compaction_lag_ms: 10_000,
                ..LogConfig::default()
            },
            log_start: 0,
            log_end: 400,
            closed: vec![
                segment(0, 100, 1_000, 10),
                segment(100, 200, 1_000, 20),
                segment(200, 300, 1_000, 950),
            ],
            checkpoint: checkpoint.map(|cleaned_offset| CleanerCheckpoint {
                cleaned_offset,
                tombstone_rounds: Vec::new(),
            }),
        }
    }

    // Proves the range stops at the high watermark and at segments younger than the minimum
    // compaction lag, and splits clean from dirty bytes at the checkpoint.
    #[test]
    fn range_respects_bounds_and_checkpoint() {
        let range = clean_range(&view(Some(100)), 1_000, 1_000);
        assert_eq!(range.segments.len(), 2, "the third segment is too young");
        assert_eq!((range.clean_bytes, range.dirty_bytes), (1_000, 1_000));
        let below_hw = clean_range(&view(Some(100)), 150, 5_000);
        assert_eq!(below_hw.segments.len(), 1);
        let reset = clean_range(&view(Some(9_999)), 1_000, 1_000);
        assert_eq!(reset.first_dirty, 0, "a checkpoint past the end is ignored");
    }

    // Proves a log is due at the dirty ratio, forced by the max lag or expired tombstones, and
    // never due with nothing dirty.
    #[test]
    fn due_by_ratio_lag_or_tombstones() {
        let half = view(Some(100));
        let range = clean_range(&half, 1_000, 1_000);
        let verdict = cleanability(&half, &range, 1_000).unwrap();
        assert!(verdict.due && !verdict.forced);
        assert!((verdict.dirty_ratio - 0.5).abs() < 1e-9);
        let mostly_clean = view(Some(200));
        let range = clean_range(&mostly_clean, 1_000, 5_000);
        let verdict = cleanability(&mostly_clean, &range, 5_000).unwrap();
        assert!(verdict.dirty_ratio < 0.5 && !verdict.due);
        let verdict = cleanability(&mostly_clean, &range, 20_000).unwrap();
        assert!(
            verdict.due && verdict.forced,
            "the dirty segment passed the max lag"
        );
        let mut clean = view(Some(300));
        clean.checkpoint =
            Some(CleanerCheckpoint::default().after_round(300, i64::MIN, Some(5), 1_000));
        let range = clean_range(&clean, 1_000, 1_500);
        assert!(!cleanability(&clean, &range, 1_500).unwrap().due);
        let later = clean_range(&clean, 1_000, 1_000 + 86_400_000);
        assert!(
            cleanability(&clean, &later, 1_000 + 86_400_000)
                .unwrap()
                .due
        );
    }

    // Proves segments are grouped up to the size bound, and an oversized one stands alone.
    #[test]
    fn groups_respect_the_size_bound() {
        let segments = vec![
            segment(0, 10, 400, 0),
            segment(10, 20, 500, 0),
            segment(20, 30, 200, 0),
            segment(30, 40, 5_000, 0),
            segment(40, 50, 10, 0),
        ];
        let groups = group_segments(&segments, 1_000);
        let bases: Vec<Vec<i64>> = groups
            .iter()
            .map(|group| group.iter().map(|s| s.base_offset).collect())
            .collect();
        assert_eq!(bases, vec![vec![0, 10], vec![20], vec![30], vec![40]]);
    }
}
