//! The fuzz entry for the request decoder (`fuzz/fuzz_targets/kafka_request.rs`), also
//! replayed over the committed seed corpus and deterministic mutations of it by
//! `kafka/tests/request_fuzz_replay.rs`.
//!
//! The input is a stream of size-prefixed requests, as a connection would deliver it. For each
//! request it checks what the broker relies on:
//! - nothing panics, and no decoder panic is swallowed (a swallowed one fails the run);
//! - a decoded Produce request's record views add up to no more than the body, and the
//!   generated decoder reads the same topics, partitions and record bytes;
//! - a request the generated codec decodes re-encodes and decodes to the same value.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest as CodecProduce;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::KafkaError;
use crate::frame::RequestDecoder;
use crate::header::split_request;
use crate::produce::ProduceRequest;
use crate::request::{check_supported, decode_request, Request};
use crate::versions::ApiTable;

/// Largest request the fuzz entry accepts, bytes (the broker's default is larger; fuzz inputs
/// are small anyway).
const FUZZ_REQUEST_BYTES_MAX: usize = 1 << 20;

/// Runs every check on one input; panics when one fails.
pub fn fuzz_one(data: &[u8]) {
    let table = ApiTable::with_groups();
    let mut decoder = RequestDecoder::new(FUZZ_REQUEST_BYTES_MAX);
    decoder.buffer_mut().extend_from_slice(data);
    while let Ok(Some(request)) = decoder.next_request() {
        let Ok((header, body)) = split_request(request) else {
            continue;
        };
        if check_supported(&header, &table).is_err() {
            continue;
        }
        let body_copy = Bytes::copy_from_slice(&body);
        match decode_request(&header, body) {
            Ok(Request::Produce(produce)) => {
                check_produce(&produce, &body_copy, header.api_version);
            }
            Ok(_) => check_reencodes(&header, &body_copy),
            Err(KafkaError::DecoderPanicked { api, version }) => {
                panic!("the {api} v{version} decoder panicked")
            }
            Err(_) => {}
        }
    }
}

fn check_produce(ours: &ProduceRequest, body: &Bytes, version: i16) {
    let records: usize = ours
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| partition.records.as_ref().map(BytesMut::len))
        .sum();
    assert!(records <= body.len(), "record views exceed the body");
    let theirs = CodecProduce::decode(&mut body.clone(), version)
        .expect("our decoder accepted a Produce request the generated codec refuses");
    assert_eq!(theirs.acks, ours.acks);
    assert_eq!(theirs.timeout_ms, ours.timeout_ms);
    assert_eq!(theirs.topic_data.len(), ours.topics.len());
    for (their_topic, our_topic) in theirs.topic_data.iter().zip(&ours.topics) {
        assert_eq!(their_topic.name.0.as_str(), our_topic.name);
        assert_eq!(their_topic.partition_data.len(), our_topic.partitions.len());
        for (their, our) in their_topic.partition_data.iter().zip(&our_topic.partitions) {
            assert_eq!(their.index, our.index);
            assert_eq!(their.records.as_deref(), our.records.as_deref());
        }
    }
}

/// Decodes `body` with the generated codec, encodes the result and decodes that again: both
/// decodes must agree.
fn check_reencodes(header: &crate::header::RequestHeader, body: &Bytes) {
    macro_rules! roundtrip {
        ($type:ty) => {{
            let version = header.api_version;
            if let Ok(first) = <$type>::decode(&mut body.clone(), version) {
                let mut encoded = BytesMut::new();
                first
                    .encode(&mut encoded, version)
                    .expect("a decoded request must re-encode");
                let second = <$type>::decode(&mut encoded.freeze(), version)
                    .expect("a re-encoded request must decode");
                assert_eq!(
                    first, second,
                    "{:?} v{version} changed on re-encoding",
                    header.api
                );
            }
        }};
    }
    use kafka_protocol::messages::*;
    match header.api {
        ApiKey::Metadata => roundtrip!(MetadataRequest),
        ApiKey::Fetch => roundtrip!(FetchRequest),
        ApiKey::ListOffsets => roundtrip!(ListOffsetsRequest),
        ApiKey::CreateTopics => roundtrip!(CreateTopicsRequest),
        ApiKey::DeleteTopics => roundtrip!(DeleteTopicsRequest),
        ApiKey::DescribeConfigs => roundtrip!(DescribeConfigsRequest),
        ApiKey::IncrementalAlterConfigs => roundtrip!(IncrementalAlterConfigsRequest),
        ApiKey::ElectLeaders => roundtrip!(ElectLeadersRequest),
        ApiKey::AlterPartitionReassignments => roundtrip!(AlterPartitionReassignmentsRequest),
        ApiKey::ListPartitionReassignments => roundtrip!(ListPartitionReassignmentsRequest),
        ApiKey::OffsetCommit => roundtrip!(OffsetCommitRequest),
        ApiKey::JoinGroup => roundtrip!(JoinGroupRequest),
        _ => {}
    }
}
