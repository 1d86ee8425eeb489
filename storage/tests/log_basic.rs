//! Appends, reads and reopening of a partition log, in both write modes.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sluice_storage::{PartitionLog, ReadSlice, StorageError};

// Proves appended batches read back byte-identical with contiguous offsets, before and after a
// clean reopen, and that both write modes leave identical .log files.
#[test]
fn append_read_reopen_identical_across_modes() {
    let mut files_by_mode = Vec::new();
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let files = run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let mut written = Vec::new();
            for i in 0..200u32 {
                let records = 1 + (i as usize % 7);
                let data = batch(
                    records,
                    10 + (i as usize * 37) % 900,
                    i as u8,
                    1000 + i64::from(i),
                );
                let info = log.append(data, 3).await.unwrap();
                assert_eq!(info.last_offset - info.base_offset + 1, records as i64);
                written.push(info);
            }
            let read = read_all(&log).await;
            assert_eq!(read.len(), 200);
            let mut next = 0;
            for (header, _) in &read {
                assert_eq!(header.base_offset, next);
                assert_eq!(header.partition_leader_epoch, 3);
                next = header.last_offset() + 1;
            }
            assert_eq!(next, log.log_end_offset());
            assert!(log.segment_count() > 1);
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let reread = read_all(&log).await;
            assert_eq!(read, reread);
            log.close().await.unwrap();
            log_files(&path)
        });
        files_by_mode.push(files);
    }
    assert_eq!(files_by_mode[0], files_by_mode[1]);
}

// Proves read() honours max_offset, max_bytes (at least one batch), and range errors.
#[test]
fn read_limits_and_ranges() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            for i in 0..10 {
                log.append(batch(5, 100, i, 0), 0).await.unwrap();
            }
            let end = log.log_end_offset();
            assert_eq!(end, 50);
            assert!(matches!(
                log.read(end, 1000, end).unwrap(),
                ReadSlice::Empty
            ));
            assert!(matches!(
                log.read(end + 1, 1000, end),
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            assert!(matches!(
                log.read(-1, 1000, end),
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            // max_offset inside batch 2 (offsets 10..15): only batches 0 and 1.
            let bytes = log.read_bytes(0, 1 << 20, 12).await.unwrap();
            let first = sluice_storage::batch::BatchHeader::parse(&bytes).unwrap();
            assert_eq!(bytes.len(), 2 * first.total_bytes());
            assert!(matches!(log.read(12, 1000, 12).unwrap(), ReadSlice::Empty));
            assert!(matches!(log.read(11, 1000, 12).unwrap(), ReadSlice::Empty));
            // max_bytes smaller than one batch still returns one whole batch.
            let one = log.read_bytes(7, 1, end).await.unwrap();
            assert_eq!(one.len(), first.total_bytes());
            let header = sluice_storage::batch::BatchHeader::parse(&one).unwrap();
            assert_eq!(header.base_offset, 5);
            log.close().await.unwrap();
        });
    }
}

// Proves appends issued concurrently from several tasks (pipelined writes) are all
// acknowledged with disjoint contiguous offsets and read back exactly as acknowledged.
#[test]
fn concurrent_appends_are_contiguous_and_exact() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = std::rc::Rc::new(PartitionLog::open(&path, config(mode)).await.unwrap());
            let mut tasks = Vec::new();
            for task in 0..6u8 {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut acked = Vec::new();
                    for i in 0..40usize {
                        let data = batch(
                            1 + i % 3,
                            50 + (i * 97 + task as usize * 13) % 3000,
                            task,
                            0,
                        );
                        let info = log.append(data.clone(), 1).await.unwrap();
                        acked.push((info.base_offset, data));
                    }
                    acked
                }));
            }
            let mut acked = Vec::new();
            for task in tasks {
                acked.extend(task.await);
            }
            acked.sort_by_key(|(offset, _)| *offset);
            let read = read_all(&log).await;
            assert_eq!(read.len(), acked.len());
            for ((header, bytes), (offset, original)) in read.iter().zip(&acked) {
                assert_eq!(header.base_offset, *offset);
                let mut expected = original.clone();
                sluice_storage::batch::stamp(&mut expected, *offset, 1).unwrap();
                assert_eq!(bytes, &expected[..]);
            }
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            assert_eq!(read_all(&log).await, read);
        });
    }
}

// Proves direct mode serves the newest batches from the tail cache (memory) and older ones
// from the segment file, with the same bytes either way; buffered mode always uses the file.
#[test]
fn tail_cache_serves_newest_bytes() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            for i in 0..40 {
                log.append(batch(2, 1000, i, 0), 0).await.unwrap();
            }
            let end = log.log_end_offset();
            let newest = log.read(end - 1, 1 << 20, end).unwrap();
            let oldest = log.read(0, 1 << 20, end).unwrap();
            match mode {
                sluice_storage::WriteMode::Direct => {
                    assert!(matches!(newest, ReadSlice::Memory(_)));
                }
                sluice_storage::WriteMode::Buffered => {
                    assert!(matches!(newest, ReadSlice::File(_)));
                }
            }
            assert!(matches!(oldest, ReadSlice::File(_)));
            let newest_bytes = slice_bytes(&newest);
            let header = sluice_storage::batch::validate_batch(&newest_bytes, 1 << 20).unwrap();
            assert_eq!(header.base_offset, end - 2);
            assert_eq!(
                newest_bytes,
                log.read_bytes(end - 2, 1 << 20, end)
                    .await
                    .unwrap()
                    .to_vec()
            );
            log.close().await.unwrap();
        });
    }
}

// Proves flush() and durable acknowledgement move the flushed offset to the log end, and
// maintenance() rolls the active segment once it is older than segment_ms_max.
#[test]
fn flush_policies_and_time_roll() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let mut every = config(mode);
            every.durability = sluice_storage::Durability::Durable;
            every.segment_ms_max = 60_000;
            let log = PartitionLog::open(&path, every).await.unwrap();
            for i in 0..5 {
                log.append(batch(3, 10, i, 0), 0).await.unwrap();
                assert_eq!(log.flushed_offset(), log.log_end_offset());
            }
            assert_eq!(log.segment_count(), 1);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            log.maintenance(now).await.unwrap();
            assert_eq!(log.segment_count(), 1);
            log.maintenance(now + 61_000).await.unwrap();
            assert_eq!(log.segment_count(), 2);
            let info = log.append(batch(1, 10, 9, 0), 0).await.unwrap();
            assert_eq!(info.base_offset, 15);
            log.close().await.unwrap();

            let interval_dir = path.join("interval");
            let log = PartitionLog::open(&interval_dir, config(mode))
                .await
                .unwrap();
            log.append(batch(3, 10, 1, 0), 0).await.unwrap();
            assert_eq!(log.flushed_offset(), 0);
            log.maintenance(now + 10_000).await.unwrap();
            assert_eq!(log.flushed_offset(), 3);
            log.append(batch(3, 10, 1, 0), 0).await.unwrap();
            assert_eq!(log.flush().await.unwrap(), 6);
            log.close().await.unwrap();
        });
    }
}

// Proves offset_for_timestamp returns the first batch whose max timestamp reaches the target,
// across segments and index entries, and None past the newest timestamp.
#[test]
fn offset_for_timestamp_finds_first_batch() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let mut batches = Vec::new();
            for i in 0..120i64 {
                // Timestamps rise with a dip every 10 batches, like skewed producer clocks.
                let timestamp = i * 100 - if i % 10 == 5 { 450 } else { 0 };
                let info = log.append(batch(2, 300, 0, timestamp), 0).await.unwrap();
                batches.push((info.base_offset, info.max_timestamp));
            }
            for target in [-5, 0, 1, 99, 100, 550, 5555, 11_801, 11_901] {
                let expected = batches
                    .iter()
                    .find(|(_, max)| *max >= target)
                    .map(|(offset, _)| *offset);
                assert_eq!(
                    log.offset_for_timestamp(target).await.unwrap(),
                    expected,
                    "target {target}"
                );
            }
            log.close().await.unwrap();
        });
    }
}

// Proves a closed log refuses work with Closed and delete() removes its directory.
#[test]
fn closed_log_refuses_and_delete_removes() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic-0");
        run(async move {
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            log.append(batch(1, 10, 0, 0), 0).await.unwrap();
            log.close().await.unwrap();
            assert!(matches!(
                log.append(batch(1, 10, 0, 0), 0).await,
                Err(StorageError::Closed)
            ));
            assert!(matches!(log.read(0, 100, 1), Err(StorageError::Closed)));
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            assert_eq!(log.log_end_offset(), 1);
            log.delete().await.unwrap();
            assert!(!path.exists());
        });
    }
}

/// Batch sizes for the stress test: tiny ones that share a block with their neighbours, and
/// ones whose size makes later appends start exactly on a block boundary.
fn stress_batch(task: u8, i: usize) -> bytes::BytesMut {
    let mut data = match i % 4 {
        0 => batch(1, 10, task, 0),
        1 => batch(1, 30 + i % 50, task, 0),
        2 => batch(2, 4096 - 61 - 2 * 12, task, 0),
        _ => batch(3, 1500 + (i * 7) % 9000, task, 0),
    };
    if i % 9 == 4 {
        // Pad an append to a multiple of 4 KiB with a second batch where possible.
        let filler = 4096 - data.len() % 4096;
        if filler > 200 {
            data.extend_from_slice(&batch(1, filler - 100, task, 0));
        }
    }
    data
}

// Proves many concurrent small and block-sized appends (sharing partial blocks, in direct mode
// carried from one write to the next) all read back exactly as acknowledged, before and after
// an unclean reopen.
#[test]
fn concurrent_small_appends_share_blocks_correctly() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let log = std::rc::Rc::new(PartitionLog::open(&path, config(mode)).await.unwrap());
            let mut tasks = Vec::new();
            for task in 0..16u8 {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut acked = Vec::new();
                    for i in 0..60usize {
                        let data = stress_batch(task, i);
                        let info = log.append(data.clone(), 2).await.unwrap();
                        acked.push((info.base_offset, data));
                    }
                    acked
                }));
            }
            let mut acked = Vec::new();
            for task in tasks {
                acked.extend(task.await);
            }
            acked.sort_by_key(|(offset, _)| *offset);
            let mut expected = Vec::new();
            for (offset, data) in &acked {
                let mut position = 0;
                let mut next = *offset;
                while position < data.len() {
                    let header =
                        sluice_storage::batch::BatchHeader::parse(&data[position..]).unwrap();
                    let mut one =
                        bytes::BytesMut::from(&data[position..position + header.total_bytes()]);
                    sluice_storage::batch::stamp(&mut one, next, 2).unwrap();
                    next += i64::from(header.last_offset_delta) + 1;
                    position += header.total_bytes();
                    expected.push(one.to_vec());
                }
            }
            let read: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            assert_eq!(read, expected);
            let log = std::rc::Rc::try_unwrap(log).ok().unwrap();
            drop(log);
            let log = PartitionLog::open(&path, config(mode)).await.unwrap();
            let reread: Vec<Vec<u8>> = read_all(&log).await.into_iter().map(|(_, b)| b).collect();
            assert_eq!(reread, expected);
            log.close().await.unwrap();
        });
    }
}
