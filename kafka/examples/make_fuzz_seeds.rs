//! Writes the seed corpus of the `kafka_request` fuzz target into `fuzz/seeds/kafka_request/`
//! (or the directory given as the first argument): size-prefixed requests as Kafka clients send
//! them, one API and version per file, plus one file of several pipelined requests. The output
//! is deterministic: rerun it with `cargo run -p sluice-kafka --example make_fuzz_seeds`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use sluice_kafka::kafka_protocol;

fn name(text: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(text))
}

fn framed<R: Request>(version: i16, correlation_id: i32, request: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut out = Vec::new();
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out
}

/// A small valid record batch, as a producer sends it.
fn batch() -> Bytes {
    Bytes::from(one_record_batch())
}

/// A hand-written v2 batch of one record, CRC included, so the generator needs no storage
/// dependency.
fn one_record_batch() -> Vec<u8> {
    // length 12, attributes, timestamp delta 0, offset delta 0, key "k", value "value", no
    // headers; lengths are zigzag varints.
    let record: &[u8] = &[
        0x18, 0, 0, 0, 0x02, b'k', 0x0a, b'v', b'a', b'l', b'u', b'e', 0,
    ];
    let mut body = Vec::new();
    body.put_i16(0); // attributes
    body.put_i32(0); // last offset delta
    body.put_i64(1_700_000_000_000);
    body.put_i64(1_700_000_000_000);
    body.put_i64(-1);
    body.put_i16(-1);
    body.put_i32(-1);
    body.put_i32(1);
    body.extend_from_slice(record);
    let crc = crc32c(&body);
    let mut out = Vec::new();
    out.put_i64(0);
    out.put_i32((4 + 1 + 4 + body.len()) as i32);
    out.put_i32(-1);
    out.put_i8(2);
    out.put_u32(crc);
    out.extend_from_slice(&body);
    out
}

/// CRC-32C (Castagnoli), bitwise: seeds are tiny.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn produce() -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("orders"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch()))])])
}

fn fetch() -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("orders"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(42)
                .with_partition_max_bytes(1 << 20)])])
}

/// Seeds of the topic and config administration requests.
fn admin_seeds() -> Vec<(String, Vec<u8>)> {
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("orders"))
        .with_num_partitions(3)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(Some(StrBytes::from_static_str("1000")))])]);
    let delete = DeleteTopicsRequest::default().with_topic_names(vec![name("orders")]);
    let describe =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders"))]);
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("5000")))]),
    ]);
    vec![
        ("create-topics-v2.bin".to_string(), framed(2, 7, &create)),
        ("create-topics-v7.bin".to_string(), framed(7, 7, &create)),
        ("delete-topics-v5.bin".to_string(), framed(5, 8, &delete)),
        (
            "describe-configs-v4.bin".to_string(),
            framed(4, 9, &describe),
        ),
        (
            "incremental-alter-configs-v1.bin".to_string(),
            framed(1, 10, &alter),
        ),
    ]
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("orders"))),
    ]));
    let list_offsets = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(-2)
            ])]);
    let epochs =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name("orders"))
            .with_partitions(vec![
                OffsetForLeaderPartition::default().with_leader_epoch(3)
            ])]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"\x00\x01"))]);
    let mut out = vec![
        (
            "api-versions-v0.bin".to_string(),
            framed(0, 1, &ApiVersionsRequest::default()),
        ),
        (
            "api-versions-v3.bin".to_string(),
            framed(
                3,
                1,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("seed"))
                    .with_client_software_version(StrBytes::from_static_str("1.0")),
            ),
        ),
        ("metadata-v1.bin".to_string(), framed(1, 2, &metadata)),
        ("metadata-v12.bin".to_string(), framed(12, 2, &metadata)),
        (
            "list-offsets-v1.bin".to_string(),
            framed(1, 5, &list_offsets),
        ),
        (
            "list-offsets-v6.bin".to_string(),
            framed(6, 5, &list_offsets),
        ),
        (
            "offset-for-leader-epoch-v4.bin".to_string(),
            framed(4, 6, &epochs),
        ),
        (
            "describe-cluster-v1.bin".to_string(),
            framed(1, 11, &DescribeClusterRequest::default()),
        ),
        ("join-group-v5.bin".to_string(), framed(5, 12, &join)),
    ];
    out.extend(admin_seeds());
    for version in [3, 8, 9, 12] {
        out.push((
            format!("produce-v{version}.bin"),
            framed(version, 3, &produce()),
        ));
    }
    for version in [4, 7, 11, 12] {
        out.push((
            format!("fetch-v{version}.bin"),
            framed(version, 4, &fetch()),
        ));
    }
    let mut pipelined = framed(3, 1, &ApiVersionsRequest::default());
    pipelined.extend(framed(12, 2, &metadata));
    pipelined.extend(framed(9, 3, &produce()));
    pipelined.extend(framed(12, 4, &fetch()));
    out.push(("pipelined.bin".to_string(), pipelined));
    out
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/kafka_request")
        });
    std::fs::create_dir_all(&dir)?;
    let seeds = seeds();
    for (file, bytes) in &seeds {
        std::fs::write(dir.join(file), bytes)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
