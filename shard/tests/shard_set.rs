//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use futures_lite::StreamExt;
use sluice_shard::{
    OffsetQuery, PartitionError, PartitionRegistry, Shard, ShardContext, ShardControl, ShardError,
    ShardId, ShardMetrics, ShardPlacement, ShardSet, ShardSetConfig, ShardTable, TopicAssignment,
};
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::LogConfig;

const TOPIC: &str = "mesh";
const PARTITIONS: u32 = 4;

fn batch(tag: &str, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for index in 0..records {
        builder.push(
            1_000 + index as i64,
            None,
            Some(format!("{tag}-{index}").as_bytes()),
            &[],
        );
    }
    builder.build().unwrap().freeze()
}

fn table(shard_count: u32) -> ShardTable {
    let mut topics = BTreeMap::new();
    topics.insert(
        TOPIC.to_string(),
        TopicAssignment::place(TOPIC, PARTITIONS, shard_count, 1, Vec::new()),
    );
    ShardTable::new(1, topics)
}

/// What shard 0 observed while exercising a partition owned by shard 1.
#[derive(Debug)]
struct Observed {
    base_offsets: Vec<i64>,
    read_back: Bytes,
    latest: Option<i64>,
    unknown_is_error: bool,
    forwarded_by_0: u64,
}

/// Shard 0 appends twice to `partition` (owned by shard 1), reads it back and asks for the latest
/// offset, all through the mesh.
async fn exercise(shard: &Shard, partition: i32, batches: &[Bytes]) -> Observed {
    let mut base_offsets = Vec::new();
    for produced in batches {
        let outcome = shard
            .append(TOPIC, partition, BytesMut::from(&produced[..]))
            .await
            .unwrap();
        base_offsets.push(outcome.base_offset);
    }
    let read = shard
        .read_remote(ShardId(1), TOPIC, partition, 0, 1 << 20)
        .await
        .unwrap();
    let latest = shard
        .list_offset(TOPIC, partition, OffsetQuery::Latest)
        .await
        .unwrap();
    let unknown = shard
        .append(TOPIC, 99, BytesMut::from(&batches[0][..]))
        .await;
    Observed {
        base_offsets,
        read_back: read.records,
        latest,
        unknown_is_error: matches!(unknown, Err(PartitionError::UnknownTopicOrPartition { .. })),
        forwarded_by_0: shard.metrics().forwarded_requests.get(),
    }
}

/// A shard main for tests: applies tables, closes on Close, and on Drain (used here as "go")
/// shard 0 runs `exercise` against the first partition shard 1 owns.
async fn test_shard(context: ShardContext, dir: PathBuf, batches: Vec<Bytes>) -> Option<Observed> {
    let ShardContext {
        id,
        shard_count,
        senders,
        receivers,
        mut control,
    } = context;
    let registry = PartitionRegistry::new(dir, LogConfig::default());
    let metrics = Arc::new(ShardMetrics::new(id));
    let shard = Shard::new(id, shard_count, senders, registry, metrics, 64);
    let _serving = shard.serve_mesh(receivers);
    let mut observed = None;
    while let Some(message) = control.next().await {
        match message {
            ShardControl::ApplyTable { table, reply } => {
                let _ = reply.send(shard.apply_table(table).await);
            }
            ShardControl::Drain { reply } => {
                if id == ShardId(0) {
                    let partition = shard.with_table(|table| {
                        table
                            .topic(TOPIC)
                            .unwrap()
                            .owners
                            .iter()
                            .position(|o| *o == ShardId(1))
                            .unwrap() as i32
                    });
                    observed = Some(exercise(&shard, partition, &batches).await);
                }
                let _ = reply.send(());
            }
            ShardControl::Close { reply } => {
                let _ = reply.send(shard.close().await);
                break;
            }
        }
    }
    observed
}

fn ask<T>(
    set: &ShardSet<Option<Observed>>,
    shard: usize,
    make: impl FnOnce(oneshot::Sender<T>) -> ShardControl,
) -> T {
    let (reply, answer) = oneshot::channel();
    set.controls()[shard].send_blocking(make(reply)).unwrap();
    futures_lite::future::block_on(answer).unwrap()
}

// Proves cross-shard routing end to end on two real executors: appends to a partition another
// shard owns travel over the mesh and get contiguous offsets, the bytes read back through the
// owner equal what was appended, offsets queries are forwarded too, unknown partitions are
// refused, and the forwarding shard counts what it forwarded.
#[test]
fn appends_and_reads_are_forwarded_to_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let batches = vec![batch("first", 3), batch("second", 2)];
    let shard_batches = batches.clone();
    let config = ShardSetConfig {
        shard_count: 2,
        placement: ShardPlacement::Unbound,
        ..ShardSetConfig::default()
    };
    let set = ShardSet::start(config, move |context| {
        test_shard(context, data.clone(), shard_batches.clone())
    })
    .unwrap();
    for shard in 0..2 {
        ask(&set, shard, |reply| ShardControl::ApplyTable {
            table: table(2),
            reply,
        })
        .unwrap();
    }
    ask(&set, 0, |reply| ShardControl::Drain { reply });
    for shard in 0..2 {
        ask(&set, shard, |reply| ShardControl::Close { reply }).unwrap();
    }
    let mut results = set.join().into_iter();
    let observed = results.next().unwrap().unwrap().unwrap();
    assert_eq!(observed.base_offsets, vec![0, 3]);
    assert_eq!(observed.latest, Some(5));
    assert!(observed.unknown_is_error);
    assert!(observed.forwarded_by_0 >= 4, "{observed:?}");
    let mut expected = Vec::new();
    for produced in &batches {
        expected.extend_from_slice(produced);
    }
    // Only base offsets and leader epochs (outside the CRC) were stamped by the owner.
    assert_eq!(observed.read_back.len(), expected.len());
    let second_start = batches[0].len();
    assert_eq!(
        observed.read_back[16..second_start],
        expected[16..second_start]
    );
    assert_eq!(
        observed.read_back[second_start + 16..],
        expected[second_start + 16..]
    );
}

// Proves a failure to create one executor (pinning to a CPU that does not exist) makes start()
// return an error naming the shard instead of hanging, after stopping the shards already started.
#[test]
fn failed_executor_aborts_startup() {
    let config = ShardSetConfig {
        shard_count: 2,
        placement: ShardPlacement::Pinned(vec![0, 100_000]),
        ..ShardSetConfig::default()
    };
    let started = ShardSet::<()>::start(config, |_context| async {});
    match started {
        Err(ShardError::Start { shard, .. }) => assert_eq!(shard, 1),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a shard pinned to CPU 100000 must not start"),
    }
    let too_few = ShardSetConfig {
        shard_count: 3,
        placement: ShardPlacement::Pinned(vec![0]),
        ..ShardSetConfig::default()
    };
    assert!(matches!(
        ShardSet::<()>::start(too_few, |_context| async {}),
        Err(ShardError::InvalidConfig(_))
    ));
}

// Proves a waiting fetch is woken by an append: wait_for_data returns true once a batch lands,
// and returns false when nothing arrives before its bound.
#[test]
fn waiters_wake_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wait-0");
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap()
        .run(async move {
            let log = sluice_storage::PartitionLog::open(&path, LogConfig::default())
                .await
                .unwrap();
            let partition = std::rc::Rc::new(sluice_shard::Partition::new("wait", 0, log));
            assert!(!partition.wait_for_data(0, Duration::from_millis(20)).await);
            let waiting = partition.clone();
            let waiter = glommio::spawn_local(async move {
                waiting.wait_for_data(0, Duration::from_secs(60)).await
            });
            glommio::timer::sleep(Duration::from_millis(10)).await;
            partition
                .append(bytes::BytesMut::from(&batch("wake", 1)[..]))
                .await
                .unwrap();
            assert!(waiter.await);
            partition.log().close().await.unwrap();
        });
}

/// Longest wait for a panicking shard's thread to end.
const SHARD_DEATH_WAIT_S: u64 = 30;

// Proves a dead shard blocks no thread that talks to it: once shard 1 panics leaking its inbox
// and a reply (as a broker shard did), waiting for that reply returns None, a later send fails
// with Stopped instead of queueing into the inbox nothing drops, first_finished names the shard,
// the other shard keeps answering, and joining reports the panic.
#[test]
fn a_panicked_shard_answers_nothing_and_blocks_no_one() {
    let config = ShardSetConfig {
        shard_count: 2,
        placement: ShardPlacement::Unbound,
        ..ShardSetConfig::default()
    };
    let set = ShardSet::start(config, |context: ShardContext| async move {
        let mut control = context.control;
        while let Some(message) = control.next().await {
            match message {
                // What a broker shard did when one of its tasks panicked: its inbox and the
                // replies queued in it stayed open (its tasks share the server state through
                // `Rc`s, most likely in cycles).
                ShardControl::Drain { reply } if context.id == ShardId(1) => {
                    std::mem::forget(reply);
                    std::mem::forget(control);
                    panic!("shard 1 dies and leaks its inbox");
                }
                ShardControl::Drain { reply } => {
                    let _ = reply.send(());
                }
                ShardControl::Close { reply } => {
                    let _ = reply.send(Ok(()));
                    return;
                }
                _ => {}
            }
        }
    })
    .unwrap();
    let controls = set.controls().to_vec();
    let (reply, answer) = oneshot::channel();
    controls[1]
        .send_blocking(ShardControl::Drain { reply })
        .unwrap();
    assert_eq!(controls[1].wait_reply(answer), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(SHARD_DEATH_WAIT_S);
    while controls[1].is_alive() {
        assert!(std::time::Instant::now() < deadline, "shard 1 never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(set.first_finished(), Some(ShardId(1)));
    let (reply, _answer) = oneshot::channel();
    assert!(matches!(
        controls[1].send_blocking(ShardControl::Drain { reply }),
        Err(ShardError::Stopped { shard: 1 })
    ));
    let (reply, answer) = oneshot::channel();
    controls[0]
        .send_blocking(ShardControl::Drain { reply })
        .unwrap();
    assert_eq!(controls[0].wait_reply(answer), Some(()));
    let (reply, answer) = oneshot::channel();
    controls[0]
        .send_blocking(ShardControl::Close { reply })
        .unwrap();
    assert!(matches!(controls[0].wait_reply(answer), Some(Ok(()))));
    drop(controls);
    let results = set.join();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(ShardError::Panicked { shard: 1 })));
}
