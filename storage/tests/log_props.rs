//! Property tests of the partition log: random appends read back exactly, in both write modes,
//! before and after clean and unclean reopens.
// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use sluice_storage::{batch::stamp, LogConfig, PartitionLog, WriteMode};

/// One batch to append: records, value size, first timestamp, and whether the leader epoch
/// goes up before it.
#[derive(Debug, Clone)]
struct BatchSpec {
    records: usize,
    value_len: usize,
    timestamp_ms: i64,
    new_epoch: bool,
}

fn batch_spec() -> impl Strategy<Value = BatchSpec> {
    (
        1usize..6,
        0usize..1500,
        0i64..10_000,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(records, value_len, timestamp_ms, new_epoch)| BatchSpec {
            records,
            value_len,
            timestamp_ms,
            new_epoch,
        })
}

/// A batch as it must read back: offsets and stamped bytes.
#[derive(Debug, Clone)]
struct Expected {
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    bytes: Vec<u8>,
}

fn log_config(
    mode: WriteMode,
    segment_bytes_max: u64,
    index_interval_bytes: u32,
    tail: usize,
) -> LogConfig {
    LogConfig {
        segment_bytes_max,
        index_interval_bytes,
        tail_cache_bytes_max: tail,
        read_handles_max: 2,
        ..config(mode)
    }
}

async fn append_all(log: &PartitionLog, specs: &[BatchSpec]) -> Vec<Expected> {
    let mut epoch = 0;
    let mut expected = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        epoch += i32::from(spec.new_epoch);
        let mut data = batch(spec.records, spec.value_len, i as u8, spec.timestamp_ms);
        let end_before = log.log_end_offset();
        let info = log.append(data.clone(), epoch).await.unwrap();
        assert_eq!(info.base_offset, end_before);
        assert_eq!(info.last_offset, end_before + spec.records as i64 - 1);
        stamp(&mut data, info.base_offset, epoch).unwrap();
        expected.push(Expected {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            max_timestamp: info.max_timestamp,
            bytes: data.to_vec(),
        });
    }
    expected
}

/// Checks every way of reading the log against what was appended.
async fn check(log: &PartitionLog, expected: &[Expected]) {
    let end = expected.last().map_or(0, |batch| batch.last_offset + 1);
    assert_eq!(log.log_end_offset(), end);
    let all: Vec<Vec<u8>> = read_all(log)
        .await
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let wanted: Vec<Vec<u8>> = expected.iter().map(|batch| batch.bytes.clone()).collect();
    assert_eq!(all, wanted);
    for (at, batch) in expected.iter().enumerate() {
        let middle = (batch.base_offset + batch.last_offset) / 2;
        for offset in [batch.base_offset, middle, batch.last_offset] {
            let one = log.read(offset, 1, end).unwrap();
            assert_eq!(slice_bytes(&one), batch.bytes, "read({offset}, 1)");
            let copied = log.read_bytes(offset, 1, end).await.unwrap();
            assert_eq!(copied.to_vec(), batch.bytes, "read_bytes({offset}, 1)");
        }
        let bounded = log
            .read(batch.base_offset, 1 << 20, batch.last_offset + 1)
            .unwrap();
        assert_eq!(slice_bytes(&bounded), batch.bytes, "read below max_offset");
        let long = slice_bytes(&log.read(batch.base_offset, 8 * 1024, end).unwrap());
        let mut prefix = Vec::new();
        for next in &expected[at..] {
            if prefix.len() >= long.len() {
                break;
            }
            prefix.extend_from_slice(&next.bytes);
        }
        assert_eq!(
            long, prefix,
            "read of whole batches from {}",
            batch.base_offset
        );
        assert!(long.len() <= 8 * 1024 || long.len() == batch.bytes.len());
    }
    for batch in expected.iter().step_by(3) {
        for target in [batch.max_timestamp, batch.max_timestamp + 1] {
            let wanted = expected
                .iter()
                .find(|candidate| candidate.max_timestamp >= target)
                .map(|candidate| candidate.base_offset);
            assert_eq!(
                log.offset_for_timestamp(target).await.unwrap(),
                wanted,
                "timestamp {target}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    // Proves random appends (many rolls, small index intervals) read back byte-identical via
    // read() and read_bytes() at every batch, with correct timestamp lookups, before and after
    // a clean reopen and an unclean one (log dropped without close), in both write modes.
    #[test]
    fn appends_read_back_exactly_across_reopens(
        specs in prop::collection::vec(batch_spec(), 1..40),
        segment_kib in 1u64..12,
        index_interval_bytes in 64u32..2048,
        tail_kib in 0usize..24,
    ) {
        for mode in MODES {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            let config = log_config(mode, segment_kib * 1024, index_interval_bytes, tail_kib * 1024);
            let specs = specs.clone();
            run(async move {
                let log = PartitionLog::open(&path, config.clone()).await.unwrap();
                let expected = append_all(&log, &specs).await;
                check(&log, &expected).await;
                log.close().await.unwrap();
                let log = PartitionLog::open(&path, config.clone()).await.unwrap();
                check(&log, &expected).await;
                drop(log);
                let log = PartitionLog::open(&path, config.clone()).await.unwrap();
                check(&log, &expected).await;
                // A new leader's first append after the reopens (any older epoch is stale).
                let next_epoch = specs.iter().filter(|spec| spec.new_epoch).count() as i32 + 1;
                let info = log.append(batch(1, 5, 0, 0), next_epoch).await.unwrap();
                assert_eq!(info.base_offset, expected.last().unwrap().last_offset + 1);
                log.close().await.unwrap();
            });
        }
    }
}
