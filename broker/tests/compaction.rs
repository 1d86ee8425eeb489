//! Log compaction end to end: a topic created with `sluice topic create --config
//! cleanup.policy=compact` is compacted by the broker's own cleaner, and the native client then
//! reads exactly the newest record of every key, at the offsets they were acknowledged at.
#![allow(clippy::unwrap_used)]

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{http_get, metric, test_config};
use e2e_support::{client_config, sluice_cli, sluice_ok};
use sluice_broker::Broker;
use sluice_client::blocking::{BlockingClient, BlockingConsumer, BlockingProducer};
use sluice_client::{
    ClientConfig, ConsumerConfig, OffsetSpec, ProducerConfig, ProducerRecord, SeekTo,
};

/// Partitions of the test topic.
const PARTITIONS: i32 = 2;
/// Distinct keys; every key is written many times.
const KEYS: u64 = 40;
/// Records produced.
const RECORDS: u64 = 3_000;
/// Bound on the wait for the cleaner (a bound on a hang, not a speed claim).
const COMPACTED_WITHIN_MS_MAX: u64 = 60_000;
/// Bound on one consumer poll.
const POLL_MS_MAX: u64 = 2_000;

/// Every record of `topic` below each partition's end, keyed by (partition, offset).
type Records = BTreeMap<(i32, i64), (Option<Bytes>, Bytes)>;

/// Reads every partition of `topic` from the earliest offset up to its end offset now.
fn read_everything(client: &BlockingClient, consumer: &BlockingConsumer, topic: &str) -> Records {
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|partition| {
            client
                .list_offset(topic, partition, OffsetSpec::Latest)
                .unwrap()
        })
        .collect();
    let assignment = (0..PARTITIONS).map(|p| (topic.to_string(), p)).collect();
    consumer.assign(assignment, SeekTo::Earliest).unwrap();
    let mut records = Records::new();
    let deadline = Instant::now() + Duration::from_millis(COMPACTED_WITHIN_MS_MAX);
    while (0..PARTITIONS)
        .any(|p| consumer.position(topic, p).unwrap().unwrap_or(0) < ends[p as usize])
    {
        assert!(
            Instant::now() < deadline,
            "the consumer never reached the end offsets {ends:?}"
        );
        for record in consumer.poll(Duration::from_millis(POLL_MS_MAX)).unwrap() {
            let value = record.value.expect("the test writes no tombstones");
            records.insert((record.partition, record.offset), (record.key, value));
        }
    }
    records
}

/// Creates the compacted test topic through the CLI: small segments that roll after 300 ms
/// and a dirty ratio low enough that any dirty segment is cleaned.
fn create_compacted_topic(bootstrap: &str) {
    let partitions = PARTITIONS.to_string();
    let (created, _) = sluice_ok(
        &[
            "topic",
            "create",
            "latest",
            "--partitions",
            &partitions,
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=4096",
            "--config",
            "segment.ms=300",
            "--config",
            "min.cleanable.dirty.ratio=0.01",
            "--bootstrap",
            bootstrap,
        ],
        b"",
    );
    assert!(created.contains("created topic latest"), "{created}");
}

/// The key and value of record `index`.
fn record_of(index: u64) -> (Option<Bytes>, Bytes) {
    (
        Some(Bytes::from(format!("key-{}", index % KEYS))),
        Bytes::from(format!("value-{index}")),
    )
}

/// Produces `RECORDS` keyed records and returns where each was acknowledged.
fn produce_acknowledged(client_config: &ClientConfig) -> Records {
    let producer = BlockingProducer::new(client_config.clone(), ProducerConfig::default()).unwrap();
    let handles: Vec<_> = (0..RECORDS)
        .map(|index| {
            let (key, value) = record_of(index);
            let record = ProducerRecord {
                key,
                ..ProducerRecord::new("latest", value)
            };
            (index, producer.send(record).unwrap())
        })
        .collect();
    producer.flush().unwrap();
    let mut acknowledged = Records::new();
    for (index, handle) in handles {
        let metadata = handle.wait().unwrap();
        acknowledged.insert((metadata.partition, metadata.offset), record_of(index));
    }
    producer.close().unwrap();
    acknowledged
}

/// The newest acknowledged record of each key, where it was acknowledged.
fn newest_per_key(acknowledged: &Records) -> Records {
    let mut newest: BTreeMap<(i32, Option<Bytes>), i64> = BTreeMap::new();
    for ((partition, offset), (key, _)) in acknowledged {
        newest.insert((*partition, key.clone()), *offset);
    }
    newest
        .iter()
        .map(|((partition, _), offset)| {
            let at = (*partition, *offset);
            (at, acknowledged[&at].clone())
        })
        .collect()
}

/// Reads the topic again until it holds exactly `expected` or the bound passes; checks it does.
fn wait_for_compaction(client_config: &ClientConfig, expected: &Records) {
    let client = BlockingClient::connect(client_config.clone()).unwrap();
    let consumer = BlockingConsumer::new(client_config.clone(), ConsumerConfig::default()).unwrap();
    let deadline = Instant::now() + Duration::from_millis(COMPACTED_WITHIN_MS_MAX);
    let mut found = read_everything(&client, &consumer, "latest");
    while &found != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        found = read_everything(&client, &consumer, "latest");
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|at| !found.contains_key(at))
        .collect();
    assert!(missing.is_empty(), "lost the newest records at {missing:?}");
    let extra: Vec<_> = found
        .keys()
        .filter(|at| !expected.contains_key(at))
        .take(5)
        .collect();
    assert_eq!(
        &found, expected,
        "superseded records still there, e.g. at {extra:?}"
    );
}

// Proves that a topic created through the CLI with cleanup.policy=compact is compacted by the
// broker: after its segments roll, a full read returns exactly the newest record of each key,
// each at the offset its produce was acknowledged at, the cleaner metrics count the work, a
// keyless record is refused with a clear error, and the end offsets do not move.
#[test]
fn compacted_topic_keeps_the_newest_record_per_key() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), 2);
    config.storage.log_cleaner_backoff_ms = 100;
    let broker = Broker::start(config).unwrap();
    let bootstrap = broker.native_addr().to_string();
    create_compacted_topic(&bootstrap);
    let client_config = client_config(broker.native_addr(), true);
    let acknowledged = produce_acknowledged(&client_config);
    let expected = newest_per_key(&acknowledged);
    assert_eq!(expected.len() as u64, KEYS, "every key was written");
    wait_for_compaction(&client_config, &expected);

    let (_, metrics) = http_get(broker.admin_addr().unwrap(), "/metrics");
    let removed = metric(&metrics, "sluice_log_cleaner_records_removed_total");
    assert!(
        removed >= RECORDS - KEYS,
        "removed {removed} records\n{metrics}"
    );
    assert!(metric(&metrics, "sluice_log_cleaner_segments_rewritten_total") > 0);

    let refused = sluice_cli(
        &["produce", "latest", "--bootstrap", &bootstrap],
        b"no key\n",
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a keyless record was accepted: {stderr}"
    );
    assert!(stderr.contains("requires a key"), "{stderr}");

    let client = BlockingClient::connect(client_config).unwrap();
    for partition in 0..PARTITIONS {
        let end = client
            .list_offset("latest", partition, OffsetSpec::Latest)
            .unwrap();
        let acknowledged_end = acknowledged
            .keys()
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| offset + 1)
            .max()
            .unwrap_or(0);
        assert_eq!(
            end, acknowledged_end,
            "compaction moved the end of {partition}"
        );
    }
    broker.shutdown().unwrap();
}
