//! Log compaction: what a reader sees after the cleaner ran, in both write modes.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::compaction::*;
use common::*;
use proptest::prelude::*;
use sluice_storage::{
    batch::{validate_batch, BatchBuilder, Compression},
    CleanupPolicy, LogConfig, PartitionLog, ReadSlice, StorageError,
};

/// Distinct keys of the property test: few, so most records are superseded.
const PROPERTY_KEYS: u8 = 12;

fn record_strategy() -> impl Strategy<Value = KeyValue> {
    (
        0..PROPERTY_KEYS,
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..40)),
    )
        .prop_map(|(key, value)| (vec![b'k', key], value))
}

fn batches_strategy() -> impl Strategy<Value = Vec<(Vec<KeyValue>, bool)>> {
    prop::collection::vec(
        (
            prop::collection::vec(record_strategy(), 1..6),
            any::<bool>(),
        ),
        1..80,
    )
}

/// Writes `batches`, cleans, cleans again after the tombstone retention, and reopens, checking
/// the scan each time against the model.
fn property_case(batches: Vec<(Vec<KeyValue>, bool)>) {
    for mode in MODES {
        let batches = batches.clone();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = compact_config(mode);
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            let model = write_model(&log, &batches).await;
            roll(&log).await;
            let (start, end) = (log.log_start_offset(), log.log_end_offset());
            let cleaner = cleaner(1 << 20);
            let now = now_ms();
            let stats = cleaner.clean(&log, end, now).await.unwrap();
            assert_eq!(
                stats.cleaned_offset, end,
                "{mode:?}: the whole log was cleanable"
            );
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
            assert_eq!(scan(&log).await, expected(&model, end, true), "{mode:?}");
            let later = now + config.delete_retention_ms as i64 + 1;
            cleaner.clean(&log, end, later).await.unwrap();
            let final_records = expected(&model, end, false);
            assert_eq!(
                scan(&log).await,
                final_records,
                "{mode:?}: tombstones expired"
            );
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config).await.unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
            assert_eq!(scan(&log).await, final_records, "{mode:?}: after reopen");
            let info = log
                .append(
                    keyed_batch(&[(b"k0".to_vec(), None)], Compression::None, 1),
                    3,
                )
                .await
                .unwrap();
            assert_eq!(info.base_offset, end, "appends continue at the same end");
            log.close().await.unwrap();
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    // Proves, for random keyed writes with tombstones (none and zstd batches, both modes),
    // that a full scan after cleaning returns exactly the newest record of each key at its
    // original offset, that tombstones go once their retention passed, and that the cleaned
    // log reopens the same and keeps appending at the same end.
    #[test]
    fn cleaning_keeps_exactly_the_newest_record_per_key(batches in batches_strategy()) {
        property_case(batches);
    }
}

// Proves a fetch at an offset whose batch was cleaned away starts at the next surviving batch
// (file reads and copying reads alike), and that every offset of the log resolves through the
// offset index to the first surviving batch ending at or after it.
#[test]
fn fetch_inside_a_gap_starts_at_the_next_surviving_batch() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, compact_config(mode))
                .await
                .unwrap();
            // Batches of 3 records; keys a, b, c are rewritten by every batch, so all but the
            // newest batch of each run of rewrites vanish; "keep-N" keys survive.
            let mut batches = Vec::new();
            for round in 0..60u8 {
                let survivor = round % 10 == 0;
                let first = if survivor {
                    format!("keep-{round}").into_bytes()
                } else {
                    b"a".to_vec()
                };
                let records = vec![
                    (first, Some(vec![round; 20])),
                    (b"b".to_vec(), Some(vec![round; 20])),
                    (b"c".to_vec(), Some(vec![round; 20])),
                ];
                batches.push((records, round % 3 == 0));
            }
            let model = write_model(&log, &batches).await;
            roll(&log).await;
            let end = log.log_end_offset();
            cleaner(1 << 20).clean(&log, end, now_ms()).await.unwrap();
            let batches = read_all(&log).await;
            let bases: Vec<i64> = batches
                .iter()
                .map(|(header, _)| header.base_offset)
                .collect();
            assert!(
                bases.windows(2).any(|pair| pair[1] - pair[0] > 3),
                "{mode:?}: cleaning should leave gaps: {bases:?}"
            );
            for offset in log.log_start_offset()..end {
                let first = batches
                    .iter()
                    .find(|(header, _)| header.last_offset() >= offset)
                    .map(|(header, bytes)| (header.base_offset, bytes.clone()))
                    .unwrap();
                let copied = log.read_bytes(offset, 1, end).await.unwrap();
                let header = validate_batch(&copied, usize::MAX).unwrap();
                assert_eq!(header.base_offset, first.0, "{mode:?}: read at {offset}");
                assert_eq!(&copied[..header.total_bytes()], &first.1[..]);
                let ReadSlice::File(slice) = log.read(offset, 1, end).unwrap() else {
                    panic!("{mode:?}: a closed segment is read from its file");
                };
                let bytes = slice_bytes(&ReadSlice::File(slice));
                assert_eq!(&bytes[..first.1.len()], &first.1[..]);
            }
            assert_eq!(scan(&log).await, expected(&model, end, true));
            log.close().await.unwrap();
        });
    }
}

// Proves a read taken before the cleaner swaps its segment out still returns every byte of it
// afterwards, and that every replaced file's space (the segment the cleaned one is renamed
// over, the others deleted) is freed once the read is dropped, in paced steps rather than
// inside the rename or unlink.
#[test]
fn a_read_outlives_the_cleaning_of_its_segment() {
    use std::os::unix::fs::MetadataExt;
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, compact_config(mode))
                .await
                .unwrap();
            let batches: Vec<_> = (0..60u8)
                .map(|round| {
                    let records = vec![
                        (b"a".to_vec(), Some(vec![round; 200])),
                        (b"b".to_vec(), Some(vec![round; 200])),
                    ];
                    (records, false)
                })
                .collect();
            write_model(&log, &batches).await;
            roll(&log).await;
            let end = log.log_end_offset();
            let ReadSlice::File(slice) = log.read(0, 1 << 20, end).unwrap() else {
                panic!("{mode:?}: a closed segment is read from its file");
            };
            let expected = slice_bytes(&ReadSlice::File(slice.clone()));
            let watchers: Vec<std::fs::File> = log_paths(&path)
                .iter()
                .map(|segment| std::fs::File::open(segment).unwrap())
                .collect();
            cleaner(1 << 20).clean(&log, end, now_ms()).await.unwrap();
            assert_eq!(
                watchers[0].metadata().unwrap().nlink(),
                0,
                "{mode:?}: the read's segment is replaced (the cleaned one renamed over it)"
            );
            let replaced: Vec<std::fs::File> = watchers
                .into_iter()
                .filter(|watcher| watcher.metadata().unwrap().nlink() == 0)
                .collect();
            assert!(
                replaced.len() >= 2,
                "{mode:?}: the cleaning replaces the first segment and deletes others"
            );
            read_survives_then_space_frees(slice, &expected, &replaced).await;
            log.close().await.unwrap();
        });
    }
}

// Proves a compacted log refuses a record without a key with a clear error and keeps nothing
// of that append, while a log with the delete policy accepts it.
#[test]
fn keyless_records_are_refused_in_a_compacted_log() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(path.join("c"), compact_config(mode))
                .await
                .unwrap();
            let mut builder = BatchBuilder::new(Compression::Zstd);
            builder.push(1, Some(b"key"), Some(b"value"), &[]);
            builder.push(2, None, Some(b"no key"), &[]);
            let keyless = builder.build().unwrap();
            let error = log.append(keyless.clone(), 1).await.unwrap_err();
            assert!(
                matches!(
                    error,
                    StorageError::MissingKey {
                        offset_delta: 1,
                        ..
                    }
                ),
                "{error:?}"
            );
            assert!(error.to_string().contains("requires a key"), "{error}");
            assert_eq!(log.log_end_offset(), 0);
            log.close().await.unwrap();
            let plain = LogConfig {
                cleanup_policy: CleanupPolicy::Delete,
                ..compact_config(mode)
            };
            let log = PartitionLog::open(path.join("d"), plain).await.unwrap();
            assert_eq!(log.append(keyless, 1).await.unwrap().log_end_offset, 2);
            log.close().await.unwrap();
        });
    }
}

// Proves a log with more distinct dirty keys than the offset map holds is cleaned over several
// rounds, each advancing the checkpoint, until it holds exactly the newest record per key.
#[test]
fn a_full_offset_map_cleans_over_several_rounds() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, compact_config(mode))
                .await
                .unwrap();
            let batches: Vec<(Vec<KeyValue>, bool)> = (0..3_000u32)
                .map(|index| {
                    let key = format!("key-{:05}", index % 2_200).into_bytes();
                    (
                        vec![(key, Some(index.to_be_bytes().to_vec()))],
                        index % 2 == 0,
                    )
                })
                .collect();
            let model = write_model(&log, &batches).await;
            roll(&log).await;
            let end = log.log_end_offset();
            // 64 KiB holds about a thousand entries of these keys.
            let cleaner = cleaner(64 << 10);
            let mut rounds = 0;
            let mut cleaned = 0;
            while cleaned < end {
                let stats = cleaner.clean(&log, end, now_ms()).await.unwrap();
                assert!(
                    stats.cleaned_offset > cleaned,
                    "{mode:?}: a round made no progress"
                );
                cleaned = stats.cleaned_offset;
                rounds += 1;
            }
            assert!(
                rounds >= 3,
                "{mode:?}: expected several rounds, got {rounds}"
            );
            assert_eq!(scan(&log).await, expected(&model, end, true));
            let stats = cleaner.clean(&log, end, now_ms()).await.unwrap();
            assert_eq!(
                stats.records_removed, 0,
                "{mode:?}: a clean log stays as it is"
            );
            log.close().await.unwrap();
        });
    }
}

// Proves the cleaner leaves the active segment and everything at or past its bound (the high
// watermark) alone, and counts what it removed.
#[test]
fn cleaning_stops_at_the_bound_and_the_active_segment() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, compact_config(mode))
                .await
                .unwrap();
            let batches: Vec<(Vec<KeyValue>, bool)> =
                vec![(vec![(b"same".to_vec(), Some(vec![7; 40]))], false); 400];
            let model = write_model(&log, &batches).await;
            let end = log.log_end_offset();
            assert!(log.segment_count() > 3);
            let bound = end / 2;
            let stats = cleaner(1 << 20).clean(&log, bound, now_ms()).await.unwrap();
            assert!(stats.cleaned_offset <= bound);
            assert!(stats.records_removed > 0 && stats.segments_rewritten > 0);
            let found = scan(&log).await;
            let kept_above: Vec<i64> = found
                .iter()
                .map(|(offset, _, _)| *offset)
                .filter(|offset| *offset >= stats.cleaned_offset)
                .collect();
            let written_above: Vec<i64> = model
                .range(stats.cleaned_offset..)
                .map(|(o, _)| *o)
                .collect();
            assert_eq!(
                kept_above, written_above,
                "{mode:?}: nothing at or past the bound goes"
            );
            assert_eq!(found.len() as i64, 1 + end - stats.cleaned_offset);
            log.close().await.unwrap();
        });
    }
}

// Proves a follower of a compacted log accepts the gaps its leader's cleaner left (and then
// serves the same batches at the same offsets), while a log with the delete policy still
// refuses a replicated batch that does not continue it.
#[test]
fn replicated_gaps_are_accepted_only_by_compacted_logs() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let leader = PartitionLog::open(path.join("leader"), compact_config(mode))
                .await
                .unwrap();
            let batches: Vec<(Vec<KeyValue>, bool)> = (0..200u8)
                .map(|round| {
                    let key = if round % 25 == 0 {
                        vec![b'k', round]
                    } else {
                        b"hot".to_vec()
                    };
                    (vec![(key, Some(vec![round; 30]))], round % 2 == 0)
                })
                .collect();
            write_model(&leader, &batches).await;
            roll(&leader).await;
            let end = leader.log_end_offset();
            cleaner(1 << 20)
                .clean(&leader, end, now_ms())
                .await
                .unwrap();
            let follower = PartitionLog::open(path.join("follower"), compact_config(mode))
                .await
                .unwrap();
            let strict = LogConfig {
                cleanup_policy: CleanupPolicy::Delete,
                ..compact_config(mode)
            };
            let plain = PartitionLog::open(path.join("plain"), strict)
                .await
                .unwrap();
            let mut refused = false;
            for (header, bytes) in read_all(&leader).await {
                let mut copy = bytes::BytesMut::from(&bytes[..]);
                follower.append_replicated(copy.clone()).await.unwrap();
                if header.base_offset > plain.log_end_offset() && !refused {
                    let error = plain.append_replicated(copy.split()).await.unwrap_err();
                    assert!(
                        matches!(error, StorageError::NonContiguous { .. }),
                        "{error:?}"
                    );
                    refused = true;
                } else if !refused {
                    plain.append_replicated(copy).await.unwrap();
                }
            }
            assert!(
                refused,
                "{mode:?}: the cleaned leader should have had a gap"
            );
            assert_eq!(follower.log_end_offset(), end);
            assert_eq!(
                read_all(&follower).await,
                read_all(&leader).await,
                "{mode:?}"
            );
            for log in [leader, follower, plain] {
                log.close().await.unwrap();
            }
        });
    }
}

// Proves retention deletes nothing under cleanup.policy=compact but still deletes old segments
// under compact,delete, whose log is also compacted.
#[test]
fn retention_applies_only_with_the_delete_policy() {
    for (policy, deletes) in [
        (CleanupPolicy::Compact, false),
        (CleanupPolicy::CompactDelete, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let config = LogConfig {
                cleanup_policy: policy,
                retention_ms: Some(1),
                ..compact_config(sluice_storage::WriteMode::Buffered)
            };
            let log = PartitionLog::open(&path, config).await.unwrap();
            let batches: Vec<(Vec<KeyValue>, bool)> = (0..100u8)
                .map(|i| (vec![(vec![i], Some(vec![i; 50]))], false))
                .collect();
            write_model(&log, &batches).await;
            roll(&log).await;
            let deleted = log.apply_retention(now_ms() + 60_000).await.unwrap();
            assert_eq!(
                deleted > 0,
                deletes,
                "{policy:?}: deleted {deleted} segments"
            );
            assert_eq!(log.log_start_offset() > 0, deletes, "{policy:?}");
            log.close().await.unwrap();
        });
    }
}

// Proves the newest batch of each idempotent producer survives a cleaning that removed all its
// records, as an empty batch with the same offsets, producer id, epoch and base sequence, while
// the producer's older emptied batches go.
#[test]
fn the_newest_batch_of_a_producer_survives_emptied() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, compact_config(mode))
                .await
                .unwrap();
            let mut producer_batches = Vec::new();
            for sequence in 0..3 {
                let mut builder =
                    BatchBuilder::new(Compression::Zstd).with_producer(42, 3, sequence * 2);
                builder.push(1, Some(b"shared"), Some(b"from the producer"), &[]);
                builder.push(2, Some(b"other"), Some(b"from the producer"), &[]);
                let info = log.append(builder.build().unwrap(), 1).await.unwrap();
                producer_batches.push(info.base_offset);
            }
            // A plain writer supersedes both keys afterwards.
            let batches = vec![(
                vec![
                    (b"shared".to_vec(), Some(b"newer".to_vec())),
                    (b"other".to_vec(), Some(b"newer".to_vec())),
                ],
                false,
            )];
            write_model(&log, &batches).await;
            roll(&log).await;
            let end = log.log_end_offset();
            cleaner(1 << 20).clean(&log, end, now_ms()).await.unwrap();
            let kept: Vec<_> = read_all(&log)
                .await
                .into_iter()
                .filter(|(header, _)| header.producer_id == 42)
                .map(|(header, _)| header)
                .collect();
            assert_eq!(
                kept.len(),
                1,
                "{mode:?}: only the producer's newest batch stays"
            );
            let newest = kept[0];
            assert_eq!(newest.base_offset, producer_batches[2]);
            assert_eq!(newest.last_offset(), producer_batches[2] + 1);
            assert_eq!((newest.producer_epoch, newest.base_sequence), (3, 4));
            assert_eq!(newest.records_count, 0);
            let records = scan(&log).await;
            assert_eq!(
                records.len(),
                2,
                "{mode:?}: only the plain writer's records remain"
            );
            log.close().await.unwrap();
        });
    }
}
