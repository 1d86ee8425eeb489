//! The native client's idempotent producer against a real `sluice broker` process, through a
//! TCP proxy that loses produce responses: the proxy forwards a produce request, lets the broker
//! append it, and closes the connection instead of returning the response. The producer resends
//! (5 requests in flight per partition); the broker answers the batches it already has as
//! duplicates. Read back, the partition holds every acknowledged record once, in send order.
#![allow(clippy::unwrap_used)]

mod common;
#[allow(dead_code)]
#[path = "support_cluster/proxy.rs"]
mod proxy;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{run, BrokerProcess};
use proxy::{DropProxy, DropRule};
use sluice_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    SeekTo,
};

const TOPIC: &str = "proxied";
const PARTITIONS: i32 = 2;
/// Records sent per partition.
const RECORDS_PER_PARTITION: usize = 600;
/// The proxy cuts the connection after the response to every this many-th produce request.
const DROP_EVERY_PRODUCE: u32 = 15;
/// Connections the proxy cuts at most.
const DROPS_MAX: u32 = 4;
/// The sender pauses `SEND_PAUSE` after this many records per partition, so records go out in
/// many requests rather than a few large ones.
const SEND_PAUSE_EVERY: usize = 4;
const SEND_PAUSE: Duration = Duration::from_millis(1);
/// Loopback address the proxy listens on; the broker binds 127.0.0.1 and advertises this one.
const PROXY_HOST: &str = "127.0.0.2";
/// Longest the whole read-back may take.
const READ_BACK_WAIT: Duration = Duration::from_secs(60);

fn value(partition: i32, index: usize) -> Bytes {
    Bytes::from(format!("p{partition}-{index:06}"))
}

/// Sends every record (alternating partitions, one batch per few records so many requests are
/// in flight) and returns each record's acknowledged (partition, offset), in send order.
async fn produce_all(client: &Rc<Client>) -> Vec<(i32, i64, Bytes)> {
    let config = ProducerConfig {
        linger_ms: 0,
        batch_bytes_max: 256,
        ..ProducerConfig::default()
    };
    assert!(config.enable_idempotence && config.max_in_flight_requests_per_partition == 5);
    let producer = Producer::new(Rc::clone(client), config);
    let mut deliveries = Vec::new();
    for index in 0..RECORDS_PER_PARTITION {
        for partition in 0..PARTITIONS {
            let record = ProducerRecord {
                partition: Some(partition),
                ..ProducerRecord::new(TOPIC, value(partition, index))
            };
            deliveries.push((
                value(partition, index),
                producer.send(record).await.unwrap(),
            ));
        }
        if index % SEND_PAUSE_EVERY == 0 {
            glommio::timer::sleep(SEND_PAUSE).await;
        }
    }
    producer.flush().await.unwrap();
    let mut acknowledged = Vec::new();
    for (value, delivery) in deliveries {
        let metadata = delivery.await.unwrap();
        acknowledged.push((metadata.partition, metadata.offset, value));
    }
    producer.close().await.unwrap();
    acknowledged
}

/// Every record of the topic as (partition, offset, value), read from the start.
async fn read_back(client: &Rc<Client>, expected: usize) -> Vec<(i32, i64, Bytes)> {
    let mut consumer = Consumer::new(Rc::clone(client), ConsumerConfig::default());
    let assignment = (0..PARTITIONS).map(|partition| (TOPIC.to_string(), partition));
    consumer
        .assign(assignment.collect(), SeekTo::Earliest)
        .await
        .unwrap();
    let deadline = Instant::now() + READ_BACK_WAIT;
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            records.push((
                record.partition,
                record.offset,
                record.value.unwrap_or_default(),
            ));
        }
    }
    // Anything past the expected count would be a duplicate: give it a moment to show.
    for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
        records.push((
            record.partition,
            record.offset,
            record.value.unwrap_or_default(),
        ));
    }
    records
}

#[test]
fn lost_produce_responses_never_duplicate_or_reorder() {
    // Proves exactly once in send order across lost responses against a real broker: a proxy
    // cuts the connection after the broker appended every 15th produce request (up to 4 times),
    // with 5 requests per partition in flight; every record is acknowledged, each partition
    // read back holds each record once, in send order, at the acknowledged offsets.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--shards", "2", "--advertised-host", PROXY_HOST],
    );
    let mut targets = vec![broker.native];
    targets.extend(broker.shards.iter().copied());
    let rule = DropRule {
        every_produce: DROP_EVERY_PRODUCE,
        drops_max: DROPS_MAX,
    };
    let proxy = DropProxy::start(PROXY_HOST, &targets, rule);
    let (acknowledged, records) = run(async {
        let client = Client::connect(ClientConfig {
            bootstrap: vec![format!("{PROXY_HOST}:{}", broker.native.port())],
            retry_backoff_ms: 10,
            request_timeout_ms: 10_000,
            ..ClientConfig::default()
        })
        .await
        .unwrap();
        client
            .create_topic(TOPIC, PARTITIONS, 1, Vec::new())
            .await
            .unwrap();
        let acknowledged = produce_all(&client).await;
        let records = read_back(&client, acknowledged.len()).await;
        (acknowledged, records)
    });
    assert!(
        proxy.drops() >= 2,
        "the proxy cut too few connections to prove anything"
    );
    let mut expected = acknowledged.clone();
    expected.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    let mut consumed = records;
    consumed.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    assert_eq!(
        consumed.len(),
        expected.len(),
        "records missing or duplicated"
    );
    assert_eq!(
        consumed, expected,
        "the log differs from what was acknowledged"
    );
    for partition in 0..PARTITIONS {
        let values: Vec<Bytes> = consumed
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, _, value)| value.clone())
            .collect();
        let sent: Vec<Bytes> = (0..RECORDS_PER_PARTITION)
            .map(|index| value(partition, index))
            .collect();
        assert_eq!(values, sent, "partition {partition} is not in send order");
    }
}
