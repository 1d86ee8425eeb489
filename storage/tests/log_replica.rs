//! The log operations replication needs: full truncation to a new start beyond the log
//! (Kafka's truncateFullyAndStartAt), retention bounded by the high watermark, and the
//! high-watermark checkpoint; in both write modes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sluice_storage::batch::stamp;
use sluice_storage::{LogConfig, PartitionLog, WriteMode};

fn small_segments(mode: WriteMode) -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 * 1024,
        retention_bytes: Some(1),
        ..config(mode)
    }
}

// Proves a follower log that ends below the leader's log start can restart there: it is
// emptied, its log start and end become the new offset, it accepts replicated batches from that
// offset on, and the state survives a reopen.
#[test]
fn truncate_fully_restarts_the_log_past_its_end() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            for index in 0..4 {
                log.append(batch(3, 100, index, 1_000), 2).await.unwrap();
            }
            assert_eq!(log.log_end_offset(), 12);
            log.truncate_fully_and_start_at(500).await.unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
            assert_eq!(
                log.latest_epoch(),
                None,
                "the old epochs went with the data"
            );
            let mut replicated = batch(2, 100, 9, 2_000);
            stamp(&mut replicated, 500, 7).unwrap();
            log.append_replicated(replicated).await.unwrap();
            assert_eq!(log.log_end_offset(), 502);
            assert_eq!(log.latest_epoch(), Some(7));
            log.close().await.unwrap();
            let reopened = PartitionLog::open(&path, config(mode)).await.unwrap();
            assert_eq!(
                (reopened.log_start_offset(), reopened.log_end_offset()),
                (500, 502)
            );
            let batches = read_all(&reopened).await;
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].0.base_offset, 500);
            reopened.close().await.unwrap();
        });
    }
}

// Proves retention never deletes a segment holding offsets at or above the bound it is given
// (the high watermark): with everything expired by size, only segments wholly below the bound
// go, and raising the bound lets the rest go.
#[test]
fn retention_stops_at_the_high_watermark() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, small_segments(mode))
                .await
                .unwrap();
            for index in 0..40 {
                log.append(batch(3, 2_000, index, 1_000), 0).await.unwrap();
            }
            let segments = log.segment_count();
            assert!(segments >= 5, "{segments} segments");
            let bound = 30;
            let deleted = log.apply_retention_below(10_000, bound).await.unwrap();
            assert!(deleted > 0, "segments wholly below the bound may go");
            let start = log.log_start_offset();
            assert!(start <= bound, "log start {start} passed the bound {bound}");
            assert_eq!(log.apply_retention_below(10_000, bound).await.unwrap(), 0);
            let all = log
                .apply_retention_below(10_000, log.log_end_offset())
                .await;
            assert!(all.unwrap() > 0);
            assert_eq!(log.segment_count(), 1);
            log.close().await.unwrap();
        });
    }
}

// Proves the high-watermark checkpoint round-trips through the log's directory, durable or not,
// and is absent before the first write.
#[test]
fn high_watermark_checkpoint_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(&path, config(WriteMode::Buffered))
            .await
            .unwrap();
        assert_eq!(log.read_high_watermark_checkpoint().await, None);
        log.checkpoint_high_watermark(17, false).await.unwrap();
        assert_eq!(log.read_high_watermark_checkpoint().await, Some(17));
        log.checkpoint_high_watermark(18, true).await.unwrap();
        log.close().await.unwrap();
        let reopened = PartitionLog::open(&path, config(WriteMode::Buffered))
            .await
            .unwrap();
        assert_eq!(reopened.read_high_watermark_checkpoint().await, Some(18));
        reopened.close().await.unwrap();
    });
}
