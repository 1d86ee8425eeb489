//! The Kafka port end to end with the kafka-protocol crate as the client: negotiation,
//! produce and fetch of every codec across shards, interoperability with the native client,
//! offsets by timestamp, long polling, acks=0, topic administration and configs.
#![allow(clippy::unwrap_used)]

mod common;
mod kafka_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_support::*;
use sluice_client::{Client, ClientConfig, Consumer, ConsumerConfig, SeekTo};
use sluice_kafka::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use sluice_kafka::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use sluice_kafka::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use sluice_kafka::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use sluice_kafka::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use sluice_kafka::kafka_protocol::messages::*;
use sluice_kafka::kafka_protocol::protocol::StrBytes;
use sluice_kafka::ApiTable;
use sluice_storage::batch::{decode_records, BatchBuilder, Compression};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// A batch of `count` keyed records with `tag` in each value, timestamps from `first_ms`.
fn kafka_batch(codec: Compression, tag: &str, count: usize, first_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(codec);
    for index in 0..count {
        let key = format!("key-{index}");
        let value = format!("{tag}-value-{index}-{}", "x".repeat(index % 50));
        builder.push(
            first_ms + index as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[],
        );
    }
    builder.build().unwrap().freeze()
}

fn values(records: &[u8]) -> Vec<(i64, String)> {
    split_batches(records)
        .iter()
        .flat_map(|(_, _, batch)| decode_records(batch).unwrap())
        .map(|record| {
            (
                record.offset,
                String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

// Proves ApiVersions lists exactly the table the broker serves, at every version, and that an
// ApiVersions version the broker does not know is answered in v0 with UNSUPPORTED_VERSION and
// the same list (KIP-511), the connection staying usable.
#[test]
fn api_versions_is_honest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    let table = ApiTable::with_groups();
    for version in 0..=4 {
        let response: ApiVersionsResponse = client.call(version, &ApiVersionsRequest::default());
        assert_eq!(response.error_code, 0);
        let listed: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, api.min_version, api.max_version))
            .collect();
        let served: Vec<(i16, i16, i16)> = table
            .apis()
            .iter()
            .map(|api| (api.key as i16, api.min, api.max))
            .collect();
        assert_eq!(listed, served);
    }
    let (correlation_id, mut framed) = client.encode(3, &ApiVersionsRequest::default());
    framed[6..8].copy_from_slice(&99i16.to_be_bytes());
    client.send_raw(&framed);
    let response: ApiVersionsResponse = client.read_response(correlation_id, 0);
    assert_eq!(response.error_code, 35, "UNSUPPORTED_VERSION");
    assert_eq!(response.api_keys.len(), table.apis().len());
    let metadata: MetadataResponse = client.call(12, &MetadataRequest::default());
    assert_eq!(metadata.brokers.len(), 1);
}

// Proves batches of every codec produced through the Kafka port, to partitions on both shards
// (so half the requests are forwarded over the mesh), come back from Kafka fetches byte for
// byte with contiguous offsets, at the oldest and newest Fetch versions served, and that the
// native consumer decodes the same records.
#[test]
fn every_codec_round_trips_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    client.create_topic("codecs", 4);
    let mut expected: Vec<Vec<(i64, String)>> = vec![Vec::new(); 4];
    for partition in 0..4 {
        let mut next_offset = 0;
        for (round, codec) in CODECS.into_iter().enumerate() {
            let tag = format!("p{partition}-{codec:?}");
            let batch = kafka_batch(codec, &tag, 20 + round, 1_000);
            let version = if round % 2 == 0 { 3 } else { 12 };
            let (error, base) = client.produce(version, "codecs", partition, batch.clone());
            assert_eq!((error, base), (0, next_offset), "{tag}");
            for (index, (_, value)) in values(&batch).into_iter().enumerate() {
                expected[partition as usize].push((next_offset + index as i64, value));
            }
            next_offset += 20 + round as i64;
        }
    }
    for partition in 0..4 {
        for version in [4, 11, 12] {
            let (error, high_watermark, records) =
                client.fetch(version, "codecs", partition, 0, 100, 1);
            assert_eq!(error, 0);
            assert_eq!(high_watermark, expected[partition as usize].len() as i64);
            assert_eq!(values(&records), expected[partition as usize], "v{version}");
        }
    }
    let native = native_values(&broker, "codecs", 4, expected.iter().map(Vec::len).sum());
    for (partition, records) in expected.iter().enumerate() {
        assert_eq!(
            &native[partition], records,
            "native consumer, partition {partition}"
        );
    }
}

/// Every record of `topic` read with the native consumer, by partition.
fn native_values(
    broker: &sluice_broker::BrokerHandle,
    topic: &str,
    partitions: usize,
    total: usize,
) -> Vec<Vec<(i64, String)>> {
    let bootstrap = broker.native_addr().to_string();
    run(async move {
        let client = Client::connect(ClientConfig {
            bootstrap: vec![bootstrap],
            ..ClientConfig::default()
        })
        .await
        .unwrap();
        let mut consumer = Consumer::new(client, ConsumerConfig::default());
        let all = (0..partitions as i32)
            .map(|p| (topic.to_string(), p))
            .collect();
        consumer.assign(all, SeekTo::Earliest).await.unwrap();
        let mut out = vec![Vec::new(); partitions];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = 0;
        while seen < total && Instant::now() < deadline {
            for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                out[record.partition as usize].push((record.offset, value));
                seen += 1;
            }
        }
        out
    })
}

// Proves a Kafka fetch waits for min_bytes (long poll) and returns as soon as another
// connection produces, and that acks=0 produces get no answer but are appended.
#[test]
fn long_poll_and_acks_zero() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let addr = broker.kafka_addr().unwrap();
    let mut client = KafkaClient::connect(addr);
    client.create_topic("poll", 1);
    let waiting = std::thread::spawn(move || {
        let mut consumer = KafkaClient::connect(addr);
        consumer.fetch(12, "poll", 0, 0, 25_000, 1)
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut producer = KafkaClient::connect(addr);
    let batch = kafka_batch(Compression::Lz4, "acks0", 3, 5);
    let (_, framed) = producer.encode(9, &kafka_produce_request("poll", 0, batch, 0));
    producer.send_raw(&framed);
    let (error, high_watermark, records) = waiting.join().unwrap();
    assert_eq!((error, high_watermark), (0, 3));
    assert_eq!(values(&records).len(), 3);
    // The acks=0 request got no answer: the next answer on this connection carries the
    // metadata request's correlation id (read_response checks it).
    let metadata: MetadataResponse =
        producer.call(9, &MetadataRequest::default().with_topics(None));
    assert_eq!(metadata.topics.len(), 1);
}

// Proves ListOffsets answers earliest, latest, and for a timestamp the exact record (inside a
// batch) whose timestamp first reaches it, with that record's timestamp.
#[test]
fn list_offsets_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 1);
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    client.create_topic("times", 1);
    // Three batches of 10 records, timestamps 1000..1009, 2000..2009, 3000..3009.
    for (round, codec) in [Compression::None, Compression::Snappy, Compression::Gzip]
        .into_iter()
        .enumerate()
    {
        let batch = kafka_batch(codec, "t", 10, 1_000 * (round as i64 + 1));
        assert_eq!(client.produce(9, "times", 0, batch).0, 0);
    }
    let query = |client: &mut KafkaClient, version: i16, timestamp: i64| {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name("times"))
                .with_partitions(vec![
                    ListOffsetsPartition::default().with_timestamp(timestamp)
                ])]);
        let response: ListOffsetsResponse = client.call(version, &request);
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error_code, 0);
        (answer.offset, answer.timestamp)
    };
    for version in [1, 6] {
        assert_eq!(query(&mut client, version, -2).0, 0);
        assert_eq!(query(&mut client, version, -1).0, 30);
        assert_eq!(query(&mut client, version, 2_004), (14, 2_004));
        assert_eq!(query(&mut client, version, 1_500), (10, 2_000));
        assert_eq!(query(&mut client, version, 0), (0, 1_000));
        assert_eq!(query(&mut client, version, 3_009), (29, 3_009));
        assert_eq!(query(&mut client, version, 9_999).0, -1);
    }
}

// Proves topic administration through the Kafka port: create with configs (validate-only
// creates nothing), metadata by name and for an unknown topic, describe configs of the topic
// (override and defaults) and of the broker, delete, and the errors Kafka gives for a
// duplicate topic and manual assignments.
#[test]
fn topic_admin_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    let topic = |name: &str| {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(3)
            .with_replication_factor(-1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("3600000")))])
    };
    let dry = CreateTopicsRequest::default()
        .with_topics(vec![topic("admin")])
        .with_validate_only(true);
    let response: CreateTopicsResponse = client.call(7, &dry);
    assert_eq!(response.topics[0].error_code, 0);
    let metadata: MetadataResponse = client.call(1, &MetadataRequest::default().with_topics(None));
    assert!(metadata.topics.is_empty(), "validate_only created a topic");

    let request = CreateTopicsRequest::default().with_topics(vec![topic("admin")]);
    let response: CreateTopicsResponse = client.call(7, &request);
    let created = &response.topics[0];
    assert_eq!(
        (
            created.error_code,
            created.num_partitions,
            created.replication_factor
        ),
        (0, 3, 1)
    );
    let again: CreateTopicsResponse = client.call(4, &request);
    assert_eq!(again.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");

    let wanted = |name: &str| MetadataRequestTopic::default().with_name(Some(topic_name(name)));
    let metadata: MetadataResponse = client.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![wanted("admin"), wanted("missing")])),
    );
    assert_eq!(metadata.topics[0].partitions.len(), 3);
    assert_eq!(
        metadata.topics[1].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("admin"))
            .with_configuration_keys(None),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("0"))
            .with_configuration_keys(None),
    ]);
    let described: DescribeConfigsResponse = client.call(4, &describe);
    let entry = |result: usize, name: &str| {
        described.results[result]
            .configs
            .iter()
            .find(|config| config.name.as_str() == name)
            .map(|config| {
                (
                    config.value.as_ref().unwrap().to_string(),
                    config.config_source,
                )
            })
            .unwrap()
    };
    assert_eq!(entry(0, "retention.ms"), ("3600000".to_string(), 1));
    assert_eq!(entry(0, "segment.bytes").1, 5, "a default");
    assert_eq!(entry(1, "auto.create.topics.enable").0, "false");

    let delete = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_name(Some(topic_name("admin")))
    ]);
    let deleted: DeleteTopicsResponse = client.call(6, &delete);
    assert_eq!(deleted.responses[0].error_code, 0);
    let metadata: MetadataResponse = client.call(9, &MetadataRequest::default().with_topics(None));
    assert!(metadata.topics.is_empty());
}

/// One record of producer `producer_id` (epoch 0) at `sequence`.
fn idempotent_batch(producer_id: i64, sequence: i32, tag: &str) -> Bytes {
    fenced_batch(producer_id, 0, sequence, tag)
}

/// Like [`idempotent_batch`], with the producer epoch given.
fn fenced_batch(producer_id: i64, epoch: i16, sequence: i32, tag: &str) -> Bytes {
    let mut builder =
        BatchBuilder::new(Compression::Lz4).with_producer(producer_id, epoch, sequence);
    builder.push(1_700_000_000_000, Some(b"k"), Some(tag.as_bytes()), &[]);
    builder.build().unwrap().freeze()
}

/// One InitProducerId (idempotent, no transactional id) per served version, each answered with
/// epoch 0: the producer ids.
fn producer_id_per_version(client: &mut KafkaClient) -> Vec<i64> {
    (0..=4)
        .map(|version| {
            let idempotent = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1));
            let response: InitProducerIdResponse = client.call(version, &idempotent);
            assert_eq!(response.error_code, 0, "v{version}: {response:?}");
            assert_eq!(response.producer_epoch, 0);
            response.producer_id.0
        })
        .collect()
}

// Proves idempotent producers work on the Kafka port: InitProducerId answers every served
// version with a new id and epoch 0 (never the same id twice), a transactional id is refused,
// a retried batch is answered with its original offset and not appended again, a sequence gap
// is OUT_OF_ORDER_SEQUENCE_NUMBER, a batch of an older epoch after a newer one is
// INVALID_PRODUCER_EPOCH (fenced), an unknown producer past sequence 0 is UNKNOWN_PRODUCER_ID;
// the partition holds each accepted record once.
#[test]
fn init_producer_id_and_sequence_checks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    client.create_topic("idempotent", 2);
    let ids = producer_id_per_version(&mut client);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids repeat: {ids:?}");
    let transactional = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))));
    let refused: InitProducerIdResponse = client.call(4, &transactional);
    assert_ne!(refused.error_code, 0, "a transactional id is refused");

    let producer = ids[0];
    for partition in 0..2 {
        let first = client.produce(
            9,
            "idempotent",
            partition,
            idempotent_batch(producer, 0, "a"),
        );
        assert_eq!(first, (0, 0));
        let second = client.produce(
            9,
            "idempotent",
            partition,
            idempotent_batch(producer, 1, "b"),
        );
        assert_eq!(second, (0, 1));
        let retry = client.produce(
            9,
            "idempotent",
            partition,
            idempotent_batch(producer, 0, "a"),
        );
        assert_eq!(retry, (0, 0), "a duplicate gets its original offset");
        let (gap, _) = client.produce(
            9,
            "idempotent",
            partition,
            idempotent_batch(producer, 5, "c"),
        );
        assert_eq!(gap, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
        let bumped = client.produce(
            9,
            "idempotent",
            partition,
            fenced_batch(producer, 1, 0, "e"),
        );
        assert_eq!(bumped, (0, 2), "a newer epoch starts again at sequence 0");
        let (fenced, _) = client.produce(
            9,
            "idempotent",
            partition,
            fenced_batch(producer, 0, 2, "old"),
        );
        assert_eq!(fenced, 47, "INVALID_PRODUCER_EPOCH for the older epoch");
        let (unknown, _) = client.produce(
            9,
            "idempotent",
            partition,
            idempotent_batch(ids[1], 7, "never"),
        );
        assert_eq!(
            unknown, 59,
            "UNKNOWN_PRODUCER_ID past sequence 0 of a new producer"
        );
        let (error, high_watermark, records) = client.fetch(12, "idempotent", partition, 0, 0, 1);
        assert_eq!((error, high_watermark), (0, 3));
        let stored: Vec<String> = values(&records).into_iter().map(|(_, v)| v).collect();
        assert_eq!(stored, ["a", "b", "e"]);
    }
}

/// Metadata v12 of every topic: (name, topic id) pairs.
fn topic_ids(client: &mut KafkaClient) -> Vec<(String, uuid::Uuid)> {
    let metadata: MetadataResponse = client.call(12, &MetadataRequest::default().with_topics(None));
    metadata
        .topics
        .iter()
        .map(|topic| (topic.name.as_ref().unwrap().0.to_string(), topic.topic_id))
        .collect()
}

// Proves topic ids (KIP-516) reach Kafka clients: CreateTopics v7 and Metadata v10+ name the
// same non-zero id, Metadata by id alone finds the topic, DeleteTopics v6 deletes by id, and a
// topic re-created under the same name gets a new id (the old id is then unknown).
#[test]
fn topic_ids_are_served_and_change_with_each_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    let create = |client: &mut KafkaClient| -> uuid::Uuid {
        let topic = CreatableTopic::default()
            .with_name(topic_name("incarnations"))
            .with_num_partitions(2)
            .with_replication_factor(1);
        let created: CreateTopicsResponse =
            client.call(7, &CreateTopicsRequest::default().with_topics(vec![topic]));
        assert_eq!(created.topics[0].error_code, 0);
        created.topics[0].topic_id
    };
    let first = create(&mut client);
    assert!(!first.is_nil(), "CreateTopics v7 names the topic id");
    assert!(topic_ids(&mut client).contains(&("incarnations".to_string(), first)));
    let by_id = MetadataRequestTopic::default()
        .with_name(None)
        .with_topic_id(first);
    let found: MetadataResponse = client.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![by_id.clone()])),
    );
    assert_eq!(found.topics[0].error_code, 0);
    assert_eq!(
        found.topics[0].name.as_ref().unwrap().0.as_str(),
        "incarnations"
    );
    assert_eq!(found.topics[0].partitions.len(), 2);

    let delete = DeleteTopicState::default()
        .with_name(None)
        .with_topic_id(first);
    let deleted: DeleteTopicsResponse =
        client.call(6, &DeleteTopicsRequest::default().with_topics(vec![delete]));
    assert_eq!(deleted.responses[0].error_code, 0, "{deleted:?}");
    assert!(topic_ids(&mut client)
        .iter()
        .all(|(name, _)| name != "incarnations"));

    let second = create(&mut client);
    assert!(
        !second.is_nil() && second != first,
        "a new incarnation gets a new id"
    );
    let stale: MetadataResponse = client.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![by_id])),
    );
    assert_eq!(stale.topics[0].error_code, 100, "UNKNOWN_TOPIC_ID");
}
