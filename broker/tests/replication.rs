//! Replication in process: a real etcd and three brokers started with `Broker::start` on
//! ephemeral ports, driven with the native client.
#![allow(clippy::unwrap_used)]

mod common;
mod support_cluster;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{http_get, run};
use sluice_broker::{Broker, BrokerConfig, BrokerHandle};
use sluice_client::{
    Acks, Client, ClientConfig, Compression, Consumer, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, SeekTo,
};
use sluice_net::messages::TopicMeta;
use sluice_storage::PartitionLog;
use support_cluster::control::{EtcdServer, WAIT};

const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 3;
const MESSAGES: usize = 10_000;

/// A cluster-mode broker config for node `node_id` on ephemeral ports.
fn cluster_config(data_dir: &Path, etcd: &str, cluster: &str, node_id: i32) -> BrokerConfig {
    let mut config = common::test_config(data_dir, 1);
    config.node_id = node_id;
    config.cluster.etcd = vec![etcd.to_string()];
    config.cluster.name = cluster.to_string();
    config
}

fn client_config(bootstrap: &[String]) -> ClientConfig {
    ClientConfig {
        bootstrap: bootstrap.to_vec(),
        retry_backoff_ms: 50,
        retries_max: 20,
        request_timeout_ms: 20_000,
        ..ClientConfig::default()
    }
}

/// Waits until `check` holds for the topic's metadata (asked of every broker in turn), failing
/// with `what` after [`WAIT`].
async fn wait_metadata(client: &Client, what: &str, check: impl Fn(&TopicMeta, usize) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = client.metadata(Some(vec![TOPIC.to_string()])).await {
            let brokers = response.brokers.len();
            if response
                .topics
                .iter()
                .any(|topic| topic.name == TOPIC && check(topic, brokers))
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Every replica of every partition in the ISR.
fn fully_in_sync(topic: &TopicMeta) -> bool {
    topic.partitions.len() == PARTITIONS as usize
        && topic.partitions.iter().all(|partition| {
            partition.error == 0 && partition.replicas.len() == 3 && partition.isr.len() == 3
        })
}

/// Every `sluice_replica_lag_messages` series of `TOPIC` over every broker's admin endpoint, by
/// partition. A partition missing from the map has no leader reporting its lag (yet); a line
/// of the family that does not parse fails the test.
fn replica_lags(brokers: &[BrokerHandle]) -> BTreeMap<i32, i64> {
    let prefix = format!("sluice_replica_lag_messages{{topic=\"{TOPIC}\",partition=\"");
    let mut lags = BTreeMap::new();
    for broker in brokers {
        let (_, body) = http_get(broker.admin_addr().unwrap(), "/metrics");
        for line in body.lines().filter(|line| line.starts_with(&prefix)) {
            let parsed = line[prefix.len()..]
                .split_once("\"} ")
                .and_then(|(partition, value)| {
                    Some((partition.parse().ok()?, value.parse().ok()?))
                });
            let (partition, lag) = parsed.unwrap_or_else(|| panic!("unparsable lag line {line:?}"));
            assert!(
                lags.insert(partition, lag).is_none(),
                "two brokers report the lag of partition {partition}"
            );
        }
    }
    lags
}

/// Produces `MESSAGES` numbered messages with acks=all, round-robin over the partitions, and
/// returns each message's acknowledged (partition, offset) by message number.
async fn produce_all(client: &Rc<Client>) -> Vec<(i32, i64)> {
    let config = ProducerConfig {
        acks: Acks::All,
        compression: Compression::None,
        linger_ms: 2,
        batch_bytes_max: 16 * 1024,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(Rc::clone(client), config);
    let mut deliveries = Vec::with_capacity(MESSAGES);
    for number in 0..MESSAGES {
        let record = ProducerRecord {
            partition: Some(number as i32 % PARTITIONS),
            ..ProducerRecord::new(TOPIC, format!("message-{number}"))
        };
        deliveries.push(producer.send(record).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut acked = Vec::with_capacity(MESSAGES);
    for delivery in deliveries {
        let metadata = delivery.await.unwrap();
        acked.push((metadata.partition, metadata.offset));
    }
    acked
}

/// Consumes every partition from the start until `MESSAGES` records arrived.
async fn consume_all(client: &Rc<Client>) -> BTreeMap<(i32, i64), Bytes> {
    let mut consumer = Consumer::new(Rc::clone(client), ConsumerConfig::default());
    let partitions = (0..PARTITIONS).map(|p| (TOPIC.to_string(), p)).collect();
    consumer.assign(partitions, SeekTo::Earliest).await.unwrap();
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < MESSAGES {
        assert!(Instant::now() < deadline, "consumed only {}", seen.len());
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = record.value.clone().unwrap();
            let previous = seen.insert((record.partition, record.offset), value);
            assert!(
                previous.is_none(),
                "offset {} returned twice",
                record.offset
            );
        }
    }
    seen
}

/// Every batch of the log in `dir`, read from its start to its end.
async fn read_log(dir: PathBuf, config: sluice_storage::LogConfig) -> (i64, Vec<u8>) {
    let log = PartitionLog::open(&dir, config).await.unwrap();
    let end = log.log_end_offset();
    let mut bytes = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < end {
        let chunk = log.read_bytes(offset, 1 << 20, end).await.unwrap();
        assert!(!chunk.is_empty(), "no batch at {offset} below {end}");
        let mut last = offset;
        for batch in sluice_storage::batch::BatchIter::new(&chunk, 1 << 24) {
            let (header, _) = batch.unwrap();
            last = header.base_offset + i64::from(header.last_offset_delta);
        }
        bytes.extend_from_slice(&chunk);
        offset = last + 1;
    }
    log.close().await.unwrap();
    (end, bytes)
}

/// Creates the topic once all three brokers see each other, waits for full ISRs, produces
/// every message, consumes them back, and waits for full ISRs again.
async fn exercise(bootstrap: Vec<String>) -> (Vec<(i32, i64)>, BTreeMap<(i32, i64), Bytes>) {
    let client = Client::connect(client_config(&bootstrap)).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while client.metadata(None).await.unwrap().brokers.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the brokers never saw each other"
        );
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    let configs = vec![("min.insync.replicas".to_string(), "2".to_string())];
    client
        .create_topic(TOPIC, PARTITIONS, 3, configs)
        .await
        .unwrap();
    wait_metadata(
        &client,
        "every partition led with a full ISR",
        |topic, _| fully_in_sync(topic),
    )
    .await;
    let acked = produce_all(&client).await;
    let consumed = consume_all(&client).await;
    wait_metadata(&client, "a full ISR after the writes", |topic, _| {
        fully_in_sync(topic)
    })
    .await;
    (acked, consumed)
}

/// Checks every message was consumed at its acknowledged offset and offsets have no gaps.
fn assert_consumed_as_acked(acked: &[(i32, i64)], consumed: &BTreeMap<(i32, i64), Bytes>) {
    assert_eq!(consumed.len(), MESSAGES);
    for (number, (partition, offset)) in acked.iter().enumerate() {
        let value = consumed.get(&(*partition, *offset)).unwrap();
        assert_eq!(value, format!("message-{number}").as_bytes());
    }
    for partition in 0..PARTITIONS {
        let offsets: Vec<i64> = consumed
            .keys()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "partition {partition} has gaps");
    }
}

/// Reads every partition's log from each broker's data directory (brokers stopped) and checks
/// the followers' bytes equal the first broker's.
async fn assert_logs_identical(configs: Vec<BrokerConfig>) {
    let log_config = configs[0].storage.log_config().unwrap();
    for partition in 0..PARTITIONS {
        let mut logs = Vec::new();
        for config in &configs {
            let dir = config.data_dir.join(format!("{TOPIC}-{partition}"));
            logs.push(read_log(dir, log_config.clone()).await);
        }
        let (end, bytes) = &logs[0];
        assert!(*end > 0);
        for (index, (other_end, other_bytes)) in logs.iter().enumerate().skip(1) {
            assert_eq!(other_end, end, "replica {index} of partition {partition}");
            assert!(
                other_bytes == bytes,
                "replica {index} of partition {partition} differs"
            );
        }
    }
}

// Proves the replication data path end to end on three brokers with a real etcd: 10,000
// acks=all messages to a topic of replication factor 3 and min.insync.replicas 2 are all
// acknowledged, a consumer reads back exactly those messages at exactly their acknowledged
// offsets, and afterwards every follower's log of every partition is byte-identical to its
// leader's (offsets and leader epochs included).
#[test]
fn three_brokers_replicate_acks_all_byte_identical() {
    let etcd = EtcdServer::start();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs: Vec<BrokerConfig> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| cluster_config(dir.path(), &etcd.endpoint(), "repl", index as i32 + 1))
        .collect();
    let brokers: Vec<BrokerHandle> = configs
        .iter()
        .map(|config| Broker::start(config.clone()).unwrap())
        .collect();
    let bootstrap: Vec<String> = brokers
        .iter()
        .map(|b| b.native_addr().to_string())
        .collect();
    let (acked, consumed) = run(exercise(bootstrap));
    // Caught up means every partition's leader reports a lag, and every lag is 0: a missing
    // series is not a lag of 0.
    let caught_up: BTreeMap<i32, i64> = (0..PARTITIONS).map(|partition| (partition, 0)).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let lags = replica_lags(&brokers);
        if lags == caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "followers never caught up: lags by partition {lags:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_consumed_as_acked(&acked, &consumed);
    for broker in brokers {
        broker.shutdown().unwrap();
    }
    run(assert_logs_identical(configs));
}
