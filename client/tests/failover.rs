//! Failover tests: the producer and the consumer against a fake cluster (tests/support) whose
//! leaders move, whose nodes die, whose metadata lags, and whose answers fail or drop the
//! connection. Each checks what a user would notice: every acknowledged record is read back
//! exactly once, in offset order, and a poll never fails for a fault a retry can fix.
// The helpers below unwrap: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_client::{
    Client, ClientConfig, ClientError, Compression, Consumer, ConsumerConfig, Producer,
    ProducerConfig, ProducerRecord, SeekTo,
};
use sluice_net::api::ErrorCode;

/// Longest a test waits for records it expects; a bound on a hang, not a speed requirement.
const CONSUME_WAIT: Duration = Duration::from_secs(30);

/// Delivery timeout of the tests' producers, in milliseconds: generous for a fake cluster on
/// this executor, short enough that a producer stuck on a dead leader fails the test quickly.
const DELIVERY_TIMEOUT_MS: u64 = 20_000;

/// One poll's wait.
const POLL: Duration = Duration::from_millis(100);

fn run<T>(test: impl std::future::Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("cannot start a glommio executor")
        .run(test)
}

fn client_config(bootstrap: Vec<String>) -> ClientConfig {
    ClientConfig {
        bootstrap,
        retry_backoff_ms: 5,
        retry_backoff_ms_max: 50,
        request_timeout_ms: 5_000,
        ..ClientConfig::default()
    }
}

/// A producer whose records fail after `DELIVERY_TIMEOUT_MS`, so a test whose producer cannot
/// fail over fails in seconds rather than after Kafka's two minutes.
fn producer(client: &Rc<Client>) -> Producer {
    Producer::new(
        Rc::clone(client),
        ProducerConfig {
            linger_ms: 1,
            compression: Compression::None,
            delivery_timeout_ms: DELIVERY_TIMEOUT_MS,
            ..ProducerConfig::default()
        },
    )
}

fn value(partition: i32, index: usize) -> String {
    format!("p{partition}-m{index}")
}

/// Sends `range` of numbered records to each of `partitions` and waits for every
/// acknowledgement; returns (partition, offset) -> value.
async fn produce_numbered(
    producer: &Producer,
    partitions: i32,
    range: std::ops::Range<usize>,
) -> BTreeMap<(i32, i64), String> {
    let mut deliveries = Vec::new();
    for index in range {
        for partition in 0..partitions {
            let text = value(partition, index);
            let record = ProducerRecord {
                partition: Some(partition),
                ..ProducerRecord::new("t", text.clone())
            };
            deliveries.push((text, producer.send(record).await.unwrap()));
        }
    }
    producer.flush().await.unwrap();
    let mut acknowledged = BTreeMap::new();
    for (text, delivery) in deliveries {
        let metadata = delivery.await.unwrap();
        acknowledged.insert((metadata.partition, metadata.offset), text);
    }
    acknowledged
}

/// Polls until `count` records arrived, failing the test if a poll errs or the records do not
/// come within `CONSUME_WAIT`; returns (partition, offset) -> value in arrival order.
async fn consume(consumer: &mut Consumer, count: usize) -> Vec<((i32, i64), String)> {
    let deadline = Instant::now() + CONSUME_WAIT;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records arrived within {CONSUME_WAIT:?}",
            records.len()
        );
        let polled = consumer
            .poll(POLL)
            .await
            .unwrap_or_else(|error| panic!("a poll failed during failover: {error}"));
        for record in polled {
            let text = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            records.push(((record.partition, record.offset), text));
        }
    }
    records
}

/// Checks that `consumed` holds each record of `expected` exactly once, offsets increasing per
/// partition.
fn assert_exactly_once(consumed: &[((i32, i64), String)], expected: &BTreeMap<(i32, i64), String>) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for ((partition, offset), _) in consumed {
        let previous = last.insert(*partition, *offset);
        assert!(
            previous.is_none_or(|previous| previous < *offset),
            "partition {partition}: offset {offset} after {previous:?}"
        );
    }
    let got: BTreeMap<(i32, i64), String> = consumed.iter().cloned().collect();
    assert_eq!(got.len(), consumed.len(), "a record was consumed twice");
    assert_eq!(&got, expected);
}

async fn consumer_from_earliest(client: &Rc<Client>, partitions: i32) -> Consumer {
    let mut consumer = Consumer::new(Rc::clone(client), ConsumerConfig::default());
    let assignment = (0..partitions).map(|p| ("t".to_string(), p)).collect();
    consumer.assign(assignment, SeekTo::Earliest).await.unwrap();
    consumer
}

// Proves a consumer and a producer survive the death of the leader: after node 0 is killed
// (its ports refuse connections) and node 1 leads every partition, the producer's next records
// are acknowledged by node 1, and the consumer resumes from its positions on node 1 and reads
// every acknowledged record exactly once, in order, with no poll failing meanwhile.
#[test]
fn consumer_and_producer_follow_the_leader_when_it_dies() {
    run(async {
        let cluster = support::start_cluster(2, 2, "t", 2);
        let bootstrap = vec![cluster.node_addr(0), cluster.node_addr(1)];
        let client = Client::connect(client_config(bootstrap)).await.unwrap();
        let producer = producer(&client);
        let mut expected = produce_numbered(&producer, 2, 0..50).await;
        let mut consumer = consumer_from_earliest(&client, 2).await;
        let mut consumed = consume(&mut consumer, 100).await;

        cluster.kill(0);
        for partition in 0..2 {
            cluster.set_leader("t", partition, 1);
        }
        let after = produce_numbered(&producer, 2, 50..100).await;
        expected.extend(after);
        consumed.extend(consume(&mut consumer, 100).await);
        assert_exactly_once(&consumed, &expected);
        assert_eq!(consumer.position("t", 0), Some(100));
        let fetched_from_new_leader = cluster
            .fetch_routes
            .borrow()
            .iter()
            .filter(|(node, ..)| *node == 1)
            .count();
        assert!(fetched_from_new_leader > 0, "no fetch reached node 1");
    });
}

// Proves a consumer whose metadata keeps naming a broker that is no longer the leader keeps
// polling without an error (each NotLeaderOrFollower answer backs the partition off and
// refreshes metadata), and reads everything exactly once once the metadata catches up.
#[test]
fn consumer_waits_out_stale_metadata_without_failing() {
    run(async {
        let cluster = support::start_cluster(2, 1, "t", 1);
        let client = Client::connect(client_config(vec![cluster.main_addr()]))
            .await
            .unwrap();
        let expected = produce_numbered(&producer(&client), 1, 0..30).await;
        cluster.set_true_leader("t", 0, 1);
        let mut consumer = consumer_from_earliest(&client, 1).await;
        let deadline = Instant::now() + CONSUME_WAIT;
        while cluster.fetch_not_leader_answers.get() < 3 {
            assert!(Instant::now() < deadline, "the consumer stopped fetching");
            let polled = consumer.poll(POLL).await.unwrap();
            assert!(
                polled.is_empty(),
                "records from a node that is not the leader"
            );
        }
        let metadata_requests = cluster.metadata_requests.get();
        assert!(
            metadata_requests >= 3,
            "no metadata refresh after NotLeaderOrFollower"
        );
        cluster.publish_leaders();
        let consumed = consume(&mut consumer, 30).await;
        assert_exactly_once(&consumed, &expected);
    });
}

// Proves the consumer goes straight to the leader a NotLeaderOrFollower answer names, while
// the metadata still names the old one, and the producer does the same: records are produced
// and consumed through node 1 before the metadata ever mentions it as leader.
#[test]
fn leader_named_in_not_leader_answers_is_used_before_metadata_catches_up() {
    run(async {
        let cluster = support::start_cluster(2, 1, "t", 1);
        let client = Client::connect(client_config(vec![cluster.main_addr()]))
            .await
            .unwrap();
        let producer = producer(&client);
        let mut expected = produce_numbered(&producer, 1, 0..20).await;
        cluster.name_leader_in_errors.set(true);
        cluster.set_true_leader("t", 0, 1);
        expected.extend(produce_numbered(&producer, 1, 20..40).await);
        let produced_on_node_1 = cluster
            .produce_routes
            .borrow()
            .iter()
            .filter(|(node, ..)| *node == 1)
            .count();
        assert!(
            produced_on_node_1 > 0,
            "the producer ignored the leader hint"
        );
        let mut consumer = consumer_from_earliest(&client, 1).await;
        let consumed = consume(&mut consumer, 40).await;
        assert_exactly_once(&consumed, &expected);
    });
}

// Proves an idle client refreshes its metadata every `metadata_max_age_ms` without any
// request failing: a leader moved while nothing was sent is learnt in the background, so the
// next records go straight to the new leader and never touch the old one.
#[test]
fn idle_client_refreshes_metadata_after_its_max_age() {
    run(async {
        let cluster = support::start_cluster(2, 1, "t", 1);
        let config = ClientConfig {
            metadata_max_age_ms: 50,
            ..client_config(vec![cluster.main_addr()])
        };
        let client = Client::connect(config).await.unwrap();
        let producer = producer(&client);
        let mut expected = produce_numbered(&producer, 1, 0..10).await;
        cluster.set_leader("t", 0, 1);
        let seen = cluster.metadata_requests.get();
        let deadline = Instant::now() + CONSUME_WAIT;
        while cluster.metadata_requests.get() < seen + 2 {
            assert!(Instant::now() < deadline, "the idle client never refreshed");
            glommio::timer::sleep(POLL).await;
        }
        cluster.produce_routes.borrow_mut().clear();
        expected.extend(produce_numbered(&producer, 1, 10..20).await);
        let routes = cluster.produce_routes.borrow().clone();
        assert!(!routes.is_empty(), "nothing was produced");
        assert!(
            routes.iter().all(|(node, ..)| *node == 1),
            "records went to the old leader: {routes:?}"
        );
        let mut consumer = consumer_from_earliest(&client, 1).await;
        let consumed = consume(&mut consumer, 20).await;
        assert_exactly_once(&consumed, &expected);
    });
}

// Proves retriable fetch errors and fetch connections dropped without an answer never fail a
// poll: the consumer reconnects, backs off, and reads every record exactly once. A fetch error
// no retry can fix fails the poll, and the next poll returns the same records (no position
// moved).
#[test]
fn fetch_faults_are_retried_and_fatal_ones_lose_nothing() {
    run(async {
        let cluster = support::start(1, "t", 1);
        let client = Client::connect(client_config(vec![cluster.main_addr()]))
            .await
            .unwrap();
        let expected = produce_numbered(&producer(&client), 1, 0..25).await;
        cluster
            .fetch_error
            .set(ErrorCode::LeaderNotAvailable.code());
        cluster.fetch_failures_left.set(3);
        cluster.fetch_drops_left.set(2);
        let mut consumer = consumer_from_earliest(&client, 1).await;
        let connections_before = cluster.connections(0, 1);
        let consumed = consume(&mut consumer, 25).await;
        assert_exactly_once(&consumed, &expected);
        assert_eq!(cluster.fetch_failures_left.get(), 0);
        assert_eq!(cluster.fetch_drops_left.get(), 0);
        assert!(
            cluster.connections(0, 1) >= connections_before + 2,
            "dropped fetch connections were not reopened"
        );

        consumer.seek("t", 0, SeekTo::Offset(10)).await.unwrap();
        cluster.fetch_error.set(ErrorCode::InvalidRequest.code());
        // Every fetch fails, so the one a discarded prefetch may still have in flight cannot
        // use the fault up.
        cluster.fetch_failures_left.set(u32::MAX);
        match consumer.poll(Duration::from_secs(5)).await {
            Err(ClientError::Broker { code, .. }) => assert_eq!(code, ErrorCode::InvalidRequest),
            other => panic!("expected the fatal fetch error, got {other:?}"),
        }
        cluster.fetch_failures_left.set(0);
        assert_eq!(consumer.position("t", 0), Some(10));
        let again = consume(&mut consumer, 15).await;
        let tail: BTreeMap<(i32, i64), String> = expected
            .iter()
            .filter(|((_, offset), _)| *offset >= 10)
            .map(|(key, text)| (*key, text.clone()))
            .collect();
        assert_exactly_once(&again, &tail);
    });
}

// Proves a producer whose leader dies with requests in flight acknowledges every record it
// sends afterwards through the new leader, and that everything it acknowledged is in the log
// in send order (duplicates of unanswered sends allowed, as at-least-once delivery permits).
#[test]
fn producer_recovers_when_the_leader_dies_mid_stream() {
    run(async {
        let cluster = support::start_cluster(2, 1, "t", 1);
        let bootstrap = vec![cluster.node_addr(0), cluster.node_addr(1)];
        let client = Client::connect(client_config(bootstrap)).await.unwrap();
        let producer = producer(&client);
        let mut deliveries = Vec::new();
        for index in 0..200 {
            if index == 100 {
                cluster.kill(0);
                cluster.set_leader("t", 0, 1);
            }
            let record = ProducerRecord {
                partition: Some(0),
                ..ProducerRecord::new("t", value(0, index))
            };
            deliveries.push((index, producer.send(record).await.unwrap()));
            if index % 10 == 0 {
                futures_lite::future::yield_now().await;
            }
        }
        producer.flush().await.unwrap();
        let mut acknowledged = Vec::new();
        for (index, delivery) in deliveries {
            let metadata = delivery
                .await
                .unwrap_or_else(|error| panic!("record {index} failed: {error}"));
            acknowledged.push((metadata.offset, value(0, index)));
        }
        let log: Vec<(i64, Bytes)> = cluster.records("t", 0);
        let offsets: Vec<i64> = log.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, (0..log.len() as i64).collect::<Vec<_>>());
        for (offset, text) in &acknowledged {
            assert_eq!(
                log[usize::try_from(*offset).unwrap()].1,
                Bytes::from(text.clone()),
                "offset {offset} does not hold what was acknowledged there"
            );
        }
        let mut first_seen: Vec<&Bytes> = Vec::new();
        for (_, bytes) in &log {
            if !first_seen.contains(&bytes) {
                first_seen.push(bytes);
            }
        }
        let sent: Vec<Bytes> = (0..200).map(|index| Bytes::from(value(0, index))).collect();
        let sent_refs: Vec<&Bytes> = sent.iter().collect();
        assert_eq!(first_seen, sent_refs, "records out of send order");
    });
}
