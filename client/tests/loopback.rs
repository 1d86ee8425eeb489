//! Loopback tests: the client against a fake broker (tests/support) on the same glommio
//! executor, over real TCP connections.

mod support;

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_client::{
    Acks, Client, ClientConfig, ClientError, Compression, Consumer, ConsumerConfig, OffsetSpec,
    Producer, ProducerConfig, ProducerRecord, RecordRef, SeekTo,
};
use sluice_net::api::ErrorCode;

fn run<T>(test: impl std::future::Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("cannot start a glommio executor")
        .run(test)
}

fn client_config(bootstrap: String) -> ClientConfig {
    ClientConfig {
        bootstrap: vec![bootstrap],
        retry_backoff_ms: 5,
        request_timeout_ms: 10_000,
        ..ClientConfig::default()
    }
}

/// A client connected to the fake broker's main port.
async fn connect(broker: &support::FakeState) -> Rc<Client> {
    Client::connect(client_config(broker.main_addr()))
        .await
        .expect("the fake broker accepts connections")
}

fn producer_config(linger_ms: u64) -> ProducerConfig {
    ProducerConfig {
        linger_ms,
        compression: Compression::None,
        ..ProducerConfig::default()
    }
}

fn record(partition: i32, value: &str) -> ProducerRecord {
    ProducerRecord {
        partition: Some(partition),
        ..ProducerRecord::new("t", value.to_string())
    }
}

// Proves the at-least-once producer pipelines: three partitions' batches become three produce
// requests on one shard connection, all in flight at once (the fake broker holds its answers
// until three are waiting), and each record is acknowledged at offset 0 of its partition.
#[test]
fn producer_pipelines_requests_on_one_connection() {
    run(async {
        let broker = support::start(1, "t", 3);
        broker.produce_hold.set(3);
        let client = connect(&broker).await;
        let config = ProducerConfig {
            enable_idempotence: false,
            ..producer_config(0)
        };
        let producer = Producer::new(Rc::clone(&client), config);
        let mut deliveries = Vec::new();
        for partition in 0..3 {
            deliveries.push(
                producer
                    .send(record(partition, &format!("v{partition}")))
                    .await
                    .unwrap(),
            );
            // Let the sender dispatch this partition's batch before the next record arrives.
            futures_lite::future::yield_now().await;
        }
        for (partition, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.await.unwrap();
            assert_eq!((metadata.partition, metadata.offset), (partition as i32, 0));
        }
        assert_eq!(
            broker.produce_pending_max.get(),
            3,
            "requests were not pipelined"
        );
        assert_eq!(broker.produce_requests.get(), 3);
        for partition in 0..3 {
            let values = broker.records("t", partition);
            assert_eq!(values, vec![(0, Bytes::from(format!("v{partition}")))]);
        }
        // One connection to the shard port carried all produce requests.
        assert_eq!(broker.connections(0, 1), 1);
    });
}

// Proves a NotLeaderOrFollower answer makes the producer refresh metadata and send the same
// batch again: every record is acknowledged once, offsets are contiguous and in send order,
// and the log holds each record exactly once.
#[test]
fn producer_retries_not_leader_and_keeps_order() {
    run(async {
        let broker = support::start(1, "t", 1);
        broker.produce_failures_left.set(2);
        broker
            .produce_error
            .set(ErrorCode::NotLeaderOrFollower.code());
        let client = connect(&broker).await;
        let metadata_before = broker.metadata_requests.get();
        let producer = Producer::new(Rc::clone(&client), producer_config(1));
        let mut deliveries = Vec::new();
        for index in 0..20 {
            deliveries.push(
                producer
                    .send(record(0, &format!("m{index}")))
                    .await
                    .unwrap(),
            );
        }
        producer.flush().await.unwrap();
        let mut offsets = Vec::new();
        for delivery in deliveries {
            offsets.push(delivery.await.unwrap().offset);
        }
        assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
        let expected: Vec<(i64, Bytes)> = (0..20)
            .map(|index| (index, Bytes::from(format!("m{index}"))))
            .collect();
        assert_eq!(broker.records("t", 0), expected);
        assert!(
            broker.metadata_requests.get() > metadata_before,
            "no metadata refresh before retrying"
        );
        assert!(broker.produce_requests.get() >= 3);
    });
}

// Proves the producer keeps retrying a retriable error (several sends, each after a metadata
// refresh) until the delivery timeout, then fails the record with DeliveryTimeout naming the
// last error; and that a non-retriable error fails on its first answer, with nothing written.
#[test]
fn producer_retries_until_delivery_timeout_and_fails_fatal_errors_at_once() {
    run(async {
        let broker = support::start(1, "t", 1);
        broker.produce_failures_left.set(u32::MAX);
        broker
            .produce_error
            .set(ErrorCode::NotEnoughReplicas.code());
        let config = ClientConfig {
            request_timeout_ms: 1_000,
            retry_backoff_ms_max: 20,
            ..client_config(broker.main_addr())
        };
        let client = Client::connect(config).await.unwrap();
        let metadata_before = broker.metadata_requests.get();
        let producer = Producer::new(
            Rc::clone(&client),
            ProducerConfig {
                delivery_timeout_ms: 1_500,
                ..producer_config(0)
            },
        );
        let delivery = producer.send(record(0, "doomed")).await.unwrap();
        match delivery.await {
            Err(ClientError::DeliveryTimeout {
                topic,
                partition,
                attempts,
                last_error,
                ..
            }) => {
                assert_eq!((topic.as_str(), partition), ("t", 0));
                assert!(attempts >= 3, "only {attempts} attempts");
                assert!(last_error.contains("NotEnoughReplicas"), "{last_error}");
            }
            other => panic!("expected a delivery timeout, got {other:?}"),
        }
        let sends = broker.produce_requests.get();
        assert!(sends >= 3, "only {sends} sends before the delivery timeout");
        assert!(
            broker.metadata_requests.get() > metadata_before,
            "no metadata refresh between retries"
        );

        broker.produce_error.set(ErrorCode::MessageTooLarge.code());
        let delivery = producer.send(record(0, "too big")).await.unwrap();
        let error = delivery.await.unwrap_err();
        assert!(!error.is_retriable());
        assert_eq!(
            broker.produce_requests.get(),
            sends + 1,
            "a fatal error must not be retried"
        );
        assert!(broker.records("t", 0).is_empty());
    });
}

// Proves a connection lost mid-request is retried on a new connection and the record is
// acknowledged (the fake broker closes the first connection without answering).
#[test]
fn producer_reconnects_after_connection_loss() {
    run(async {
        let broker = support::start(1, "t", 1);
        broker.produce_drops_left.set(1);
        let client = connect(&broker).await;
        let producer = Producer::new(Rc::clone(&client), producer_config(0));
        let delivery = producer.send(record(0, "survivor")).await.unwrap();
        assert_eq!(delivery.await.unwrap().offset, 0);
        assert_eq!(
            broker.records("t", 0),
            vec![(0, Bytes::from_static(b"survivor"))]
        );
        assert_eq!(
            broker.connections(0, 1),
            2,
            "expected a second shard connection"
        );
    });
}

// Proves each partition's requests go to the port of the shard that owns it when shard-aware,
// and to the broker's main port when not.
#[test]
fn shard_aware_routing_uses_owning_shard_port() {
    run(async {
        let broker = support::start(2, "t", 4);
        let client = connect(&broker).await;
        let producer = Producer::new(Rc::clone(&client), producer_config(0));
        for partition in 0..4 {
            producer
                .send(record(partition, "x"))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let routes = broker.produce_routes.borrow().clone();
        assert_eq!(
            routes.len(),
            4,
            "one produce entry per partition: {routes:?}"
        );
        for (_, listener, _, partition) in &routes {
            assert_eq!(
                *listener,
                1 + (*partition as usize % 2),
                "partition {partition} went to the wrong port"
            );
        }
        broker.produce_routes.borrow_mut().clear();

        let plain = Client::connect(ClientConfig {
            shard_aware: false,
            ..client_config(broker.main_addr())
        })
        .await
        .unwrap();
        let producer = Producer::new(plain, producer_config(0));
        for partition in 0..4 {
            producer
                .send(record(partition, "y"))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let routes = broker.produce_routes.borrow().clone();
        assert_eq!(
            routes.len(),
            4,
            "one produce entry per partition: {routes:?}"
        );
        assert!(
            routes.iter().all(|(_, listener, _, _)| *listener == 0),
            "a plain client used a shard port: {routes:?}"
        );
    });
}

// Proves the consumer skips records before its position inside the first fetched batch, returns
// the rest in order, advances its position, and that poll_batches returns whole batches.
#[test]
fn consumer_skips_records_before_position() {
    run(async {
        let broker = support::start(1, "t", 1);
        let client = connect(&broker).await;
        let producer = Producer::new(Rc::clone(&client), producer_config(1_000));
        let mut deliveries = Vec::new();
        for batch in 0..2 {
            for index in 0..5 {
                let value = format!("r{}", batch * 5 + index);
                deliveries.push(producer.send(record(0, &value)).await.unwrap());
            }
            producer.flush().await.unwrap();
        }
        for (offset, delivery) in deliveries.into_iter().enumerate() {
            assert_eq!(delivery.await.unwrap().offset, offset as i64);
        }
        assert_eq!(
            broker.logs.borrow()[&("t".to_string(), 0)].len(),
            2,
            "expected two batches of five"
        );

        let mut consumer = Consumer::new(Rc::clone(&client), ConsumerConfig::default());
        consumer
            .assign(vec![("t".into(), 0)], SeekTo::Offset(3))
            .await
            .unwrap();
        let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
        let got: Vec<(i64, Bytes)> = records
            .iter()
            .map(|record| (record.offset, record.value.clone().unwrap()))
            .collect();
        let expected: Vec<(i64, Bytes)> = (3..10)
            .map(|offset| (offset, Bytes::from(format!("r{offset}"))))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(consumer.position("t", 0), Some(10));

        // The poll above sent a prefetch from offset 10; a seek must discard it.
        consumer.seek("t", 0, SeekTo::Offset(5)).await.unwrap();
        let again: Vec<i64> = consumer
            .poll(Duration::from_secs(5))
            .await
            .unwrap()
            .iter()
            .map(|record| record.offset)
            .collect();
        assert_eq!(again, (5..10).collect::<Vec<i64>>());
        assert_eq!(consumer.position("t", 0), Some(10));
        assert!(consumer
            .poll(Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty());

        consumer.seek("t", 0, SeekTo::Offset(3)).await.unwrap();
        let batches = consumer.poll_batches(Duration::from_secs(5)).await.unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].high_watermark, 10);
        let expected_bytes: Vec<u8> = broker.logs.borrow()[&("t".to_string(), 0)]
            .iter()
            .flat_map(|batch| batch.to_vec())
            .collect();
        assert_eq!(batches[0].records.to_vec(), expected_bytes);
        assert_eq!(consumer.position("t", 0), Some(10));
    });
}

// Proves a borrowed record sent as value pieces arrives as the pieces joined, key, header (a
// null value included) and all, interleaved in order with owned records of the same batch.
#[test]
fn record_ref_value_pieces_arrive_joined() {
    run(async {
        let broker = support::start(1, "t", 1);
        let client = connect(&broker).await;
        let producer = Producer::new(Rc::clone(&client), producer_config(1_000));
        let headers: [(&str, Option<&[u8]>); 2] = [("h", Some(b"v")), ("null", None)];
        let mut deliveries = Vec::new();
        for index in 0..3u8 {
            let pieces: [&[u8]; 3] = [b"head-", &[], &[b'0' + index; 4]];
            let piecewise = RecordRef {
                topic: "t",
                partition: Some(0),
                key: Some(b"k"),
                value: &pieces,
                timestamp_ms: Some(1_700_000_000_000),
                headers: &headers,
            };
            deliveries.push(producer.send_ref(piecewise).await.unwrap());
            deliveries.push(producer.send(record(0, "owned")).await.unwrap());
        }
        producer.flush().await.unwrap();
        for (offset, delivery) in deliveries.into_iter().enumerate() {
            assert_eq!(delivery.await.unwrap().offset, offset as i64);
        }

        let mut consumer = Consumer::new(Rc::clone(&client), ConsumerConfig::default());
        consumer
            .assign(vec![("t".into(), 0)], SeekTo::Offset(0))
            .await
            .unwrap();
        let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
        assert_eq!(records.len(), 6);
        for (index, pair) in records.chunks(2).enumerate() {
            let joined = format!(
                "head-{}",
                char::from(b'0' + index as u8).to_string().repeat(4)
            );
            assert_eq!(pair[0].value.as_deref(), Some(joined.as_bytes()));
            assert_eq!(pair[0].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(pair[0].timestamp_ms, 1_700_000_000_000);
            let got_headers: Vec<(&str, Option<&[u8]>)> = pair[0]
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_deref()))
                .collect();
            assert_eq!(got_headers, headers);
            assert_eq!(pair[1].value.as_deref(), Some(&b"owned"[..]));
        }
    });
}

// Proves acks=0 resolves deliveries with offset -1 and the records still land, and that
// seeking by earliest, latest and timestamp gives the offsets the log implies.
#[test]
fn acks_none_and_offset_lookups() {
    run(async {
        let broker = support::start(1, "t", 1);
        let client = connect(&broker).await;
        let producer = Producer::new(
            Rc::clone(&client),
            ProducerConfig {
                acks: Acks::None,
                enable_idempotence: false,
                ..producer_config(0)
            },
        );
        for index in 0..3 {
            let delivery = producer
                .send(ProducerRecord {
                    timestamp_ms: Some(1_000 * (index + 1)),
                    ..record(0, &format!("a{index}"))
                })
                .await
                .unwrap();
            assert_eq!(delivery.await.unwrap().offset, -1);
        }
        let mut consumer = Consumer::new(Rc::clone(&client), ConsumerConfig::default());
        consumer
            .assign(vec![("t".into(), 0)], SeekTo::Earliest)
            .await
            .unwrap();
        let mut values = Vec::new();
        while values.len() < 3 {
            let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
            assert!(!records.is_empty(), "acks=0 records never arrived");
            values.extend(records.into_iter().map(|record| record.value.unwrap()));
        }
        assert_eq!(values, vec!["a0", "a1", "a2"]);
        assert_eq!(
            client
                .list_offset("t", 0, OffsetSpec::Latest)
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            client
                .list_offset("t", 0, OffsetSpec::Earliest)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            client
                .list_offset("t", 0, OffsetSpec::Timestamp(2_000))
                .await
                .unwrap(),
            1
        );
        consumer
            .seek("t", 0, SeekTo::Timestamp(2_500))
            .await
            .unwrap();
        assert_eq!(consumer.position("t", 0), Some(2));
        consumer
            .seek("t", 0, SeekTo::Timestamp(99_000))
            .await
            .unwrap();
        assert_eq!(
            consumer.position("t", 0),
            Some(3),
            "no record that recent: the end"
        );
    });
}

// Proves the admin calls: create shows up in list and describe, a duplicate create fails with
// TopicAlreadyExists, delete removes the topic, and describing a missing topic is UnknownTopic.
#[test]
fn admin_create_list_describe_delete() {
    run(async {
        let broker = support::start(2, "t", 1);
        let client = connect(&broker).await;
        client.create_topic("orders", 4, 1, vec![]).await.unwrap();
        let names: Vec<String> = client
            .list_topics()
            .await
            .unwrap()
            .into_iter()
            .map(|topic| topic.name)
            .collect();
        assert_eq!(names, vec!["orders".to_string(), "t".to_string()]);
        let described = client.describe_topic("orders").await.unwrap();
        assert_eq!(described.partitions.len(), 4);
        assert_eq!(described.partitions[3].shard, 1);
        assert_eq!(client.partition_count("orders").await.unwrap(), 4);
        match client.create_topic("orders", 4, 1, vec![]).await {
            Err(ClientError::Broker { code, message }) => {
                assert_eq!(code, ErrorCode::TopicAlreadyExists);
                assert!(message.contains("already exists"), "{message}");
            }
            other => panic!("expected TopicAlreadyExists, got {other:?}"),
        }
        client.delete_topic("orders").await.unwrap();
        assert!(matches!(
            client.describe_topic("orders").await,
            Err(ClientError::UnknownTopic(_))
        ));
    });
}

// Proves a send to a topic created after the client connected succeeds (the producer refreshes
// metadata), and a send to a topic that never appears fails with UnknownTopic.
#[test]
fn producer_learns_new_topics() {
    run(async {
        let broker = support::start(1, "t", 1);
        let client = Client::connect(ClientConfig {
            retries_max: 1,
            ..client_config(broker.main_addr())
        })
        .await
        .unwrap();
        broker.topics.borrow_mut().insert("late".into(), 2);
        let producer = Producer::new(Rc::clone(&client), producer_config(0));
        let delivery = producer
            .send(ProducerRecord::new("late", "hello"))
            .await
            .unwrap();
        let metadata = delivery.await.unwrap();
        assert_eq!(metadata.topic, "late");
        assert_eq!(
            broker.records("late", metadata.partition),
            vec![(0, Bytes::from_static(b"hello"))]
        );
        let missing = producer.send(ProducerRecord::new("missing", "x")).await;
        assert!(
            matches!(missing, Err(ClientError::UnknownTopic(_))),
            "{missing:?}"
        );
    });
}

// Proves an unreachable bootstrap broker fails connect with a Connect error naming the address.
#[test]
fn unreachable_broker_fails_to_connect() {
    run(async {
        let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        match Client::connect(client_config(addr.clone())).await {
            Err(error @ ClientError::Connect { .. }) => {
                assert!(error.to_string().contains(&addr), "{error}")
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    });
}

// Proves unkeyed records do not stick to one partition forever: once a partition's batch is
// sent (here by linger, each record awaited), the next record goes to another partition, while
// every record still lands exactly once.
#[test]
fn unkeyed_records_move_on_after_each_sent_batch() {
    run(async {
        let broker = support::start(2, "t", 4);
        let client = connect(&broker).await;
        let producer = Producer::new(Rc::clone(&client), producer_config(0));
        let mut partitions = Vec::new();
        for index in 0..20 {
            let delivery = producer
                .send(ProducerRecord::new("t", format!("u{index}")))
                .await
                .unwrap();
            partitions.push(delivery.await.unwrap().partition);
        }
        for pair in partitions.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "consecutive sent batches on one partition: {partitions:?}"
            );
        }
        let stored: usize = (0..4)
            .map(|partition| broker.records("t", partition).len())
            .sum();
        assert_eq!(stored, 20);
    });
}

/// Values `m0`, `m1`, ... of `count` records sent to partition 0 one by one, with their
/// delivery reports' offsets once all are answered.
async fn send_numbered(producer: &Producer, from: usize, count: usize) -> Vec<i64> {
    let mut deliveries = Vec::new();
    for index in from..from + count {
        deliveries.push(
            producer
                .send(record(0, &format!("m{index}")))
                .await
                .expect("send refused"),
        );
        // Let the sender take each record as a batch of its own, so several are in flight.
        futures_lite::future::yield_now().await;
    }
    producer.flush().await.expect("flush failed");
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivery.await.expect("record not acknowledged").offset);
    }
    offsets
}

fn numbered(count: usize) -> Vec<(i64, Bytes)> {
    (0..count)
        .map(|index| (index as i64, Bytes::from(format!("m{index}"))))
        .collect()
}

// Proves an idempotent producer writes a batch once when the response to its append is lost:
// the fake broker holds three appended requests' answers (so three requests of the partition
// are in flight at once) and then drops the connection; the
// producer resends those batches with their sequences, the broker answers them as duplicates
// with the original offsets, and the log holds each of 40 records once, in send order, at the
// offsets the delivery reports name.
#[test]
fn lost_response_of_an_appended_batch_is_not_written_twice() {
    run(async {
        let broker = support::start(1, "t", 1);
        broker.produce_hold.set(3);
        broker.produce_drop_after_request.set(3);
        let client = connect(&broker).await;
        let config = ProducerConfig {
            batch_bytes_max: 16,
            ..producer_config(0)
        };
        let producer = Producer::new(Rc::clone(&client), config);
        let offsets = send_numbered(&producer, 0, 40).await;
        assert_eq!(offsets, (0..40).collect::<Vec<i64>>());
        assert_eq!(broker.records("t", 0), numbered(40));
        assert_eq!(
            broker.produce_pending_max.get(),
            3,
            "three requests of one partition were not in flight at once"
        );
        assert!(
            broker.duplicates_answered.get() >= 1,
            "no retry was answered as a duplicate"
        );
    });
}

// Proves the KIP-360 reset: when the broker forgets the producer's sequences (its state is
// dropped after 10 records), the next batch is refused UNKNOWN_PRODUCER_ID with nothing before
// it pending; the producer gets a new producer id, restarts that partition's sequences at 0,
// and every record is still written once, in order.
#[test]
fn unknown_producer_id_resets_sequences_under_a_new_id() {
    run(async {
        let broker = support::start(1, "t", 1);
        let client = connect(&broker).await;
        let producer = Producer::new(Rc::clone(&client), producer_config(0));
        let first = send_numbered(&producer, 0, 10).await;
        assert_eq!(first, (0..10).collect::<Vec<i64>>());
        broker.producer_states.borrow_mut().clear();
        let second = send_numbered(&producer, 10, 10).await;
        assert_eq!(second, (10..20).collect::<Vec<i64>>());
        assert_eq!(broker.records("t", 0), numbered(20));
        assert_eq!(
            broker.producer_ids_issued.get(),
            2,
            "the reset took a new producer id"
        );
    });
}
