//! Round trips of every message type through encode_frame / FrameDecoder / decode_control, and
//! property tests of the decoder against arbitrary and arbitrarily split byte streams.

// Tests and their helpers may unwrap: a failure should stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Debug;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use sluice_net::*;

use common::{feed_in_pieces, frame_bytes};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9._-]{0,24}"]
}

fn configs() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..4)
}

prop_compose! {
    fn broker_meta()(node_id in any::<i32>(), host in text(), port in any::<u16>(),
                     shard_ports in vec(any::<u16>(), 0..8)) -> BrokerMeta {
        BrokerMeta { node_id, host, port, shard_ports }
    }
}

prop_compose! {
    fn partition_meta()(partition in any::<i32>(), error in any::<i16>(), leader in any::<i32>(),
                        leader_epoch in any::<i32>(), replicas in vec(any::<i32>(), 0..5),
                        isr in vec(any::<i32>(), 0..5), shard in any::<u32>()) -> PartitionMeta {
        PartitionMeta { partition, error, leader, leader_epoch, replicas, isr, shard }
    }
}

prop_compose! {
    fn topic_meta()(name in text(), error in any::<i16>(), partitions in vec(partition_meta(), 0..4),
                    configs in configs()) -> TopicMeta {
        TopicMeta { name, error, partitions, configs }
    }
}

prop_compose! {
    fn metadata_response()(brokers in vec(broker_meta(), 0..4), controller_id in any::<i32>(),
                           cluster_id in text(), topics in vec(topic_meta(), 0..3)) -> MetadataResponse {
        MetadataResponse { brokers, controller_id, cluster_id, topics }
    }
}

prop_compose! {
    fn topic_result()(name in text(), error in any::<i16>(), message in option::of(text())) -> TopicResult {
        TopicResult { name, error, message }
    }
}

prop_compose! {
    fn create_topics_request()(topics in vec((text(), any::<i32>(), any::<i16>(), configs()), 0..4),
                               timeout_ms in any::<u32>()) -> CreateTopicsRequest {
        let topics = topics
            .into_iter()
            .map(|(name, partitions, replication_factor, configs)| NewTopic {
                name, partitions, replication_factor, configs,
            })
            .collect();
        CreateTopicsRequest { topics, timeout_ms }
    }
}

prop_compose! {
    fn produce_request()(acks in prop_oneof![Just(0i8), Just(1), Just(-1), any::<i8>()],
                         timeout_ms in any::<u32>(),
                         partitions in vec((text(), any::<i32>(), any::<u32>()), 0..5)) -> ProduceRequest {
        let partitions = partitions
            .into_iter()
            .map(|(topic, partition, records_bytes)| ProducePartition { topic, partition, records_bytes })
            .collect();
        ProduceRequest { acks, timeout_ms, partitions }
    }
}

prop_compose! {
    fn produce_response()(partitions in vec((text(), any::<i32>(), any::<i16>(), any::<i64>(),
                                             any::<i64>(), option::of(text()), any::<i32>()), 0..5))
                          -> ProduceResponse {
        let partitions = partitions
            .into_iter()
            .map(|(topic, partition, error, base_offset, log_start_offset, message, current_leader)| {
                ProducePartitionResult {
                    topic, partition, error, base_offset, log_start_offset, message, current_leader,
                }
            })
            .collect();
        ProduceResponse { partitions }
    }
}

prop_compose! {
    fn fetch_request()(replica_id in any::<i32>(), max_wait_ms in any::<u32>(), min_bytes in any::<u32>(),
                       max_bytes in any::<u32>(),
                       partitions in vec((text(), any::<i32>(), any::<i64>(), any::<u32>(), any::<i32>()), 0..5))
                       -> FetchRequest {
        let partitions = partitions
            .into_iter()
            .map(|(topic, partition, fetch_offset, partition_max_bytes, current_leader_epoch)| {
                FetchPartition { topic, partition, fetch_offset, partition_max_bytes, current_leader_epoch }
            })
            .collect();
        FetchRequest { replica_id, max_wait_ms, min_bytes, max_bytes, partitions }
    }
}

prop_compose! {
    fn fetch_response()(partitions in vec((text(), any::<i32>(), any::<i16>(), any::<i64>(), any::<i64>(),
                                           any::<i64>(), any::<u32>(), any::<i32>()), 0..5)) -> FetchResponse {
        let partitions = partitions
            .into_iter()
            .map(|(topic, partition, error, high_watermark, log_start_offset, log_end_offset, records_bytes,
                   current_leader)| {
                FetchPartitionResult {
                    topic, partition, error, high_watermark, log_start_offset, log_end_offset, records_bytes,
                    current_leader,
                }
            })
            .collect();
        FetchResponse { partitions }
    }
}

prop_compose! {
    fn list_offsets()(queries in vec((text(), any::<i32>(), any::<i64>()), 0..5),
                      answers in vec((text(), any::<i32>(), any::<i16>(), any::<i64>(), any::<i64>()), 0..5))
                      -> (ListOffsetsRequest, ListOffsetsResponse) {
        let request = ListOffsetsRequest {
            partitions: queries
                .into_iter()
                .map(|(topic, partition, timestamp)| ListOffsetsPartition { topic, partition, timestamp })
                .collect(),
        };
        let response = ListOffsetsResponse {
            partitions: answers
                .into_iter()
                .map(|(topic, partition, error, offset, timestamp)| {
                    ListOffsetsPartitionResult { topic, partition, error, offset, timestamp }
                })
                .collect(),
        };
        (request, response)
    }
}

prop_compose! {
    fn epochs()(queries in vec((text(), any::<i32>(), any::<i32>()), 0..5),
                answers in vec((text(), any::<i32>(), any::<i16>(), any::<i32>(), any::<i64>()), 0..5))
                -> (OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse) {
        let request = OffsetForLeaderEpochRequest {
            partitions: queries
                .into_iter()
                .map(|(topic, partition, leader_epoch)| EpochQuery { topic, partition, leader_epoch })
                .collect(),
        };
        let response = OffsetForLeaderEpochResponse {
            partitions: answers
                .into_iter()
                .map(|(topic, partition, error, leader_epoch, end_offset)| {
                    EpochAnswer { topic, partition, error, leader_epoch, end_offset }
                })
                .collect(),
        };
        (request, response)
    }
}

/// Runs of frame headers with small, possibly inconsistent lengths and flags, each followed by
/// random bytes, so the decoder's checks past the length prefix are exercised.
fn plausible_stream() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![Just(0u16), Just(FLAG_RESPONSE), any::<u16>()];
    vec(
        (
            0u32..300,
            0u16..10,
            flags,
            0u32..300,
            vec(any::<u8>(), 0..300),
        ),
        1..8,
    )
    .prop_map(|pieces| {
        let mut stream = Vec::new();
        for (frame_len, api, flags, control_len, body) in pieces {
            stream.extend_from_slice(&frame_len.to_be_bytes());
            stream.extend_from_slice(&api.to_be_bytes());
            stream.extend_from_slice(&0u16.to_be_bytes());
            stream.extend_from_slice(&1u32.to_be_bytes());
            stream.extend_from_slice(&flags.to_be_bytes());
            stream.extend_from_slice(&control_len.to_be_bytes());
            stream.extend_from_slice(&body);
        }
        stream
    })
}

/// Transport details varied for every round trip: header fields, payload and cut points.
#[derive(Debug, Clone)]
struct Carrier {
    version: u16,
    correlation_id: u32,
    response: bool,
    payload: Vec<u8>,
    cuts: Vec<usize>,
}

fn carrier() -> impl Strategy<Value = Carrier> {
    (
        any::<u16>(),
        any::<u32>(),
        any::<bool>(),
        vec(any::<u8>(), 0..2048),
        vec(0usize..4096, 0..8),
    )
        .prop_map(
            |(version, correlation_id, response, payload, cuts)| Carrier {
                version,
                correlation_id,
                response,
                payload,
                cuts,
            },
        )
}

/// Encodes `value` in a frame described by `carrier`, decodes it back from pieces, and checks
/// that header, body and payload all survive unchanged.
fn assert_round_trip<T>(value: &T, carrier: &Carrier)
where
    T: Message + ControlEncode + ControlDecode + PartialEq + Debug,
{
    let mut header = FrameHeader::request(T::API, carrier.version, carrier.correlation_id);
    if carrier.response {
        header = header.response();
    }
    let stream = frame_bytes(header, value, &carrier.payload);
    let (frames, error, decoder) = feed_in_pieces(&stream, &carrier.cuts, FRAME_BYTES_MAX);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames.len(), 1);
    assert_eq!(decoder.buffered_bytes(), 0);
    let frame = &frames[0];
    assert_eq!(frame.header, header);
    assert_eq!(frame.header.is_response(), carrier.response);
    assert_eq!(frame.header.api_key().unwrap(), T::API);
    assert_eq!(frame.payload, Bytes::copy_from_slice(&carrier.payload));
    assert_eq!(&decode_control::<T>(&frame.control).unwrap(), value);
    assert_eq!(&frame.decode::<T>().unwrap(), value);
}

proptest! {
    // Every request and response type, with arbitrary field values, header fields, payloads and
    // stream cut points, decodes to exactly the value that was encoded.
    #[test]
    fn every_message_type_round_trips(
        carrier in carrier(),
        metadata_topics in option::of(vec(text(), 0..4)),
        metadata in metadata_response(),
        create in create_topics_request(),
        results in vec(topic_result(), 0..4),
        delete_names in vec(text(), 0..4),
        produce in produce_request(),
        produced in produce_response(),
        fetch in fetch_request(),
        fetched in fetch_response(),
        (list_request, list_response) in list_offsets(),
        (epoch_request, epoch_response) in epochs(),
        transactional_id in option::of(text()),
        producer in (any::<i16>(), any::<i64>(), any::<i16>()),
    ) {
        assert_round_trip(&ApiVersionsRequest {}, &carrier);
        assert_round_trip(&ApiVersionsResponse::from_supported(), &carrier);
        assert_round_trip(&MetadataRequest { topics: metadata_topics }, &carrier);
        assert_round_trip(&metadata, &carrier);
        assert_round_trip(&create, &carrier);
        assert_round_trip(&CreateTopicsResponse { results: results.clone() }, &carrier);
        assert_round_trip(&DeleteTopicsRequest { names: delete_names.clone(), timeout_ms: carrier.correlation_id }, &carrier);
        let grown = delete_names.iter().map(|name| NewPartitions { name: name.clone(), count: carrier.correlation_id as i32 }).collect();
        assert_round_trip(&CreatePartitionsRequest { topics: grown, timeout_ms: carrier.correlation_id }, &carrier);
        assert_round_trip(&CreatePartitionsResponse { results: results.clone() }, &carrier);
        let changes = delete_names.iter().map(|name| TopicConfigChange { name: name.clone(), set: vec![(name.clone(), name.clone())], delete: delete_names.clone() }).collect();
        assert_round_trip(&AlterTopicConfigsRequest { changes, timeout_ms: carrier.correlation_id }, &carrier);
        assert_round_trip(&AlterTopicConfigsResponse { results: results.clone() }, &carrier);
        assert_round_trip(&ElectLeadersRequest { topic: delete_names.first().cloned() }, &carrier);
        let elections = results.iter().map(|result| ElectionResult { topic: result.name.clone(), partition: carrier.correlation_id as i32, error: result.error, message: result.message.clone() }).collect();
        assert_round_trip(&ElectLeadersResponse { error: 0, message: None, partitions: elections }, &carrier);
        assert_round_trip(&DeleteTopicsResponse { results }, &carrier);
        assert_round_trip(&produce, &carrier);
        assert_round_trip(&produced, &carrier);
        assert_round_trip(&fetch, &carrier);
        assert_round_trip(&fetched, &carrier);
        assert_round_trip(&list_request, &carrier);
        assert_round_trip(&list_response, &carrier);
        assert_round_trip(&epoch_request, &carrier);
        assert_round_trip(&epoch_response, &carrier);
        let (error, producer_id, producer_epoch) = producer;
        assert_round_trip(&InitProducerIdRequest { transactional_id: transactional_id.clone(), producer_id, producer_epoch }, &carrier);
        assert_round_trip(&InitProducerIdResponse { error, message: transactional_id, producer_id, producer_epoch }, &carrier);
    }

    // Every consumer-group request and response, with arbitrary field values, decodes to
    // exactly the value that was encoded.
    #[test]
    fn group_message_types_round_trip(
        carrier in carrier(),
        group in text(),
        member in text(),
        instance in option::of(text()),
        numbers in (any::<i32>(), any::<i32>(), any::<i16>(), any::<i64>()),
        blobs in vec(vec(any::<u8>(), 0..64), 0..4),
        names in vec(text(), 0..4),
    ) {
        let (generation_id, partition, error, offset) = numbers;
        let protocols = names.iter().zip(&blobs).map(|(name, metadata)| GroupProtocolMeta {
            name: name.clone(), metadata: metadata.clone(),
        }).collect();
        let partitions: Vec<TopicPartitionMeta> = names.iter().map(|topic| TopicPartitionMeta {
            topic: topic.clone(), partition,
        }).collect();
        let results: Vec<GroupPartitionResult> = names.iter().map(|topic| GroupPartitionResult {
            topic: topic.clone(), partition, error,
        }).collect();
        assert_round_trip(&FindCoordinatorRequest { key: group.clone(), key_type: 0 }, &carrier);
        assert_round_trip(&FindCoordinatorResponse {
            error, message: instance.clone(), node_id: partition, host: member.clone(),
            port: carrier.version, shard: carrier.correlation_id, shard_port: 7, partition,
        }, &carrier);
        assert_round_trip(&JoinGroupRequest {
            group_id: group.clone(), session_timeout_ms: generation_id, rebalance_timeout_ms: partition,
            member_id: member.clone(), group_instance_id: instance.clone(),
            protocol_type: "consumer".into(), protocols, client_id: member.clone(),
        }, &carrier);
        assert_round_trip(&JoinGroupResponse {
            error, message: None, generation_id, protocol_type: instance.clone(),
            protocol_name: Some(group.clone()), leader: member.clone(), member_id: member.clone(),
            members: blobs.iter().map(|metadata| JoinGroupMemberMeta {
                member_id: member.clone(), group_instance_id: instance.clone(), metadata: metadata.clone(),
            }).collect(),
        }, &carrier);
        assert_round_trip(&SyncGroupRequest {
            group_id: group.clone(), generation_id, member_id: member.clone(),
            group_instance_id: instance.clone(), protocol_type: None, protocol_name: instance.clone(),
            assignments: blobs.iter().map(|assignment| GroupAssignmentMeta {
                member_id: member.clone(), assignment: assignment.clone(),
            }).collect(),
        }, &carrier);
        assert_round_trip(&SyncGroupResponse {
            error, protocol_type: None, protocol_name: instance.clone(),
            assignment: blobs.first().cloned().unwrap_or_default(),
        }, &carrier);
        assert_round_trip(&HeartbeatRequest {
            group_id: group.clone(), generation_id, member_id: member.clone(), group_instance_id: instance.clone(),
        }, &carrier);
        assert_round_trip(&HeartbeatResponse { error }, &carrier);
        assert_round_trip(&LeaveGroupRequest {
            group_id: group.clone(),
            members: vec![LeavingMemberMeta { member_id: member.clone(), group_instance_id: instance.clone() }],
        }, &carrier);
        assert_round_trip(&LeaveGroupResponse {
            error,
            members: vec![LeftMemberResult { member_id: member.clone(), group_instance_id: instance.clone(), error }],
        }, &carrier);
        assert_round_trip(&OffsetCommitRequest {
            group_id: group.clone(), generation_id, member_id: member.clone(), group_instance_id: instance.clone(),
            partitions: names.iter().map(|topic| CommitPartition {
                topic: topic.clone(), partition, offset, leader_epoch: generation_id, metadata: instance.clone(),
            }).collect(),
        }, &carrier);
        assert_round_trip(&OffsetCommitResponse { partitions: results.clone() }, &carrier);
        assert_round_trip(&OffsetFetchRequest { group_id: group.clone(), partitions: Some(partitions.clone()) }, &carrier);
        assert_round_trip(&OffsetFetchRequest { group_id: group.clone(), partitions: None }, &carrier);
        assert_round_trip(&OffsetFetchResponse {
            error,
            partitions: names.iter().map(|topic| CommittedOffsetMeta {
                topic: topic.clone(), partition, offset, leader_epoch: generation_id,
                metadata: instance.clone(), error,
            }).collect(),
        }, &carrier);
        assert_round_trip(&ListGroupsRequest { states: names.clone() }, &carrier);
        assert_round_trip(&ListGroupsResponse {
            error,
            groups: names.iter().map(|name| GroupListing {
                group_id: name.clone(), protocol_type: group.clone(), state: member.clone(),
            }).collect(),
        }, &carrier);
        assert_round_trip(&DescribeGroupsRequest { groups: names.clone() }, &carrier);
        assert_round_trip(&DescribeGroupsResponse {
            groups: vec![GroupDescription {
                error, group_id: group.clone(), state: "Stable".into(), protocol_type: "consumer".into(),
                protocol: member.clone(), generation_id,
                members: blobs.iter().map(|blob| GroupMemberDescription {
                    member_id: member.clone(), group_instance_id: instance.clone(), client_id: group.clone(),
                    client_host: member.clone(), metadata: blob.clone(), assignment: blob.clone(),
                }).collect(),
            }],
        }, &carrier);
        assert_round_trip(&DeleteGroupsRequest { groups: names.clone() }, &carrier);
        assert_round_trip(&DeleteGroupsResponse {
            results: names.iter().map(|name| GroupResult { group_id: name.clone(), error }).collect(),
        }, &carrier);
        assert_round_trip(&OffsetDeleteRequest { group_id: group.clone(), partitions }, &carrier);
        assert_round_trip(&OffsetDeleteResponse { error, partitions: results }, &carrier);
    }

    // Arbitrary streams (random bytes, or runs of plausible headers with lying lengths and
    // random bodies) cut at arbitrary points never panic the decoder or the control validator,
    // and every byte fed is accounted for: returned in a frame or still buffered.
    #[test]
    fn arbitrary_streams_never_panic_and_lose_no_bytes(
        stream in prop_oneof![vec(any::<u8>(), 0..4096), plausible_stream()],
        cuts in vec(0usize..4096, 0..16),
        frame_bytes_max in prop_oneof![Just(FRAME_BYTES_MAX), 0usize..2048],
    ) {
        let (frames, error, decoder) = feed_in_pieces(&stream, &cuts, frame_bytes_max);
        let framed: usize = frames
            .iter()
            .map(|frame| FRAME_HEADER_BYTES + frame.control.len() + frame.payload.len())
            .sum();
        match error {
            // Feeding stops at the first error, so later pieces were never handed over.
            Some(error) => {
                prop_assert!(error.is_fatal_to_connection());
                prop_assert!(framed + decoder.buffered_bytes() <= stream.len());
            }
            None => prop_assert_eq!(framed + decoder.buffered_bytes(), stream.len()),
        }
        for frame in &frames {
            prop_assert!(FRAME_HEADER_BYTES + frame.control.len() + frame.payload.len()
                <= decoder.frame_bytes_max());
            prop_assert!(frame.header.flags & !FLAG_RESPONSE == 0);
            let metadata = decode_control::<MetadataResponse>(&frame.control);
            let acceptable = matches!(metadata, Ok(_) | Err(NetError::InvalidControl { .. }));
            prop_assert!(acceptable, "{:?}", metadata);
            let fetch = decode_control::<FetchRequest>(&frame.control);
            let acceptable = matches!(fetch, Ok(_) | Err(NetError::InvalidControl { .. }));
            prop_assert!(acceptable, "{:?}", fetch);
        }
    }

    // A sequence of valid frames, concatenated and cut at arbitrary points, reassembles into
    // the same frames in the same order, whatever the cuts.
    #[test]
    fn valid_frames_reassemble_identically_however_split(
        frames in vec((produce_request(), any::<u32>(), vec(any::<u8>(), 0..512)), 1..8),
        cuts in vec(0usize..8192, 0..32),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (body, correlation_id, payload) in &frames {
            let header = FrameHeader::request(ApiKey::Produce, 0, *correlation_id);
            stream.extend_from_slice(&frame_bytes(header, body, payload));
            expected.push((header, body.clone(), payload.clone()));
        }
        let (decoded, error, decoder) = feed_in_pieces(&stream, &cuts, FRAME_BYTES_MAX);
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(decoder.buffered_bytes(), 0);
        prop_assert_eq!(decoded.len(), expected.len());
        for (frame, (header, body, payload)) in decoded.iter().zip(&expected) {
            prop_assert_eq!(&frame.header, header);
            prop_assert_eq!(&frame.decode::<ProduceRequest>().unwrap(), body);
            prop_assert_eq!(&frame.payload[..], &payload[..]);
        }
    }

    // While a frame arrives, head_frame_prefix shows exactly its received bytes (never the next
    // frame's) under its correlation id once the id has arrived, and received_control gives its
    // control body once that is whole.
    #[test]
    fn a_frame_is_visible_as_it_arrives(
        (body, correlation_id, payload) in (fetch_response(), any::<u32>(), vec(any::<u8>(), 0..512)),
        received in any::<prop::sample::Index>(),
    ) {
        let header = FrameHeader::request(ApiKey::Fetch, 0, correlation_id).response();
        let frame = frame_bytes(header, &body, &payload);
        let mut stream = frame.to_vec();
        stream.extend_from_slice(&frame);
        let received = received.index(stream.len() + 1);
        let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX);
        decoder.buffer_mut().extend_from_slice(&stream[..received]);
        let shown = decoder.head_frame_prefix();
        if received < 12 {
            prop_assert!(shown.is_none());
        } else {
            let visible = received.min(frame.len());
            prop_assert_eq!(shown, Some((correlation_id, &frame[..visible])));
            let control_end = frame.len() - payload.len();
            let control = received_control(&frame[..visible]);
            if visible >= control_end {
                let decoded: FetchResponse = decode_control(control.unwrap()).unwrap();
                prop_assert_eq!(decoded, body);
            } else {
                prop_assert!(control.is_none());
            }
        }
    }
}

// The ApiVersions answer lists exactly the implemented table, and every listed version passes
// check_version while the next one up is refused.
#[test]
fn api_versions_answer_matches_supported_versions() {
    let response = ApiVersionsResponse::from_supported();
    assert_eq!(response.apis.len(), ApiKey::ALL.len());
    for (range, &(api, min, max)) in response.apis.iter().zip(supported_versions()) {
        assert_eq!(range.api, api.code());
        assert_eq!((range.min, range.max), (min, max));
        assert!(check_version(api, min).is_ok());
        assert!(check_version(api, max).is_ok());
        assert!(matches!(
            check_version(api, max + 1),
            Err(NetError::UnsupportedVersion { api: code, version }) if code == api.code() && version == max + 1
        ));
    }
}

// Api keys and error codes convert to and from their wire numbers, Kafka's where Kafka has one,
// and unknown numbers are reported rather than guessed.
#[test]
fn api_keys_and_error_codes_map_to_wire_numbers() {
    for api in ApiKey::ALL {
        assert_eq!(ApiKey::try_from(api.code()).unwrap(), api);
    }
    let codes: Vec<u16> = ApiKey::ALL.iter().map(|api| api.code()).collect();
    let expected: Vec<u16> = (0..=24).collect();
    assert_eq!(codes, expected, "wire values in order");
    assert_eq!(ApiKey::try_from(8).unwrap(), ApiKey::InitProducerId);
    assert_eq!(ApiKey::try_from(22).unwrap(), ApiKey::ElectLeaders);
    assert_eq!(
        ApiKey::try_from(24).unwrap(),
        ApiKey::ListPartitionReassignments
    );
    assert!(matches!(
        ApiKey::try_from(25),
        Err(NetError::UnknownApi(25))
    ));
    assert!(matches!(
        ApiKey::try_from(u16::MAX),
        Err(NetError::UnknownApi(u16::MAX))
    ));
    let kafka = [
        (ErrorCode::OffsetOutOfRange, 1),
        (ErrorCode::NotLeaderOrFollower, 6),
        (ErrorCode::InvalidRequest, 42),
        (ErrorCode::KafkaStorageError, 56),
        (ErrorCode::FencedLeaderEpoch, 74),
        (ErrorCode::NotCoordinator, 16),
        (ErrorCode::IllegalGeneration, 22),
        (ErrorCode::UnknownMemberId, 25),
        (ErrorCode::RebalanceInProgress, 27),
        (ErrorCode::MemberIdRequired, 79),
        (ErrorCode::FencedInstanceId, 82),
        (ErrorCode::GroupSubscribedToTopic, 86),
        (ErrorCode::NotController, 41),
        (ErrorCode::PreferredLeaderNotAvailable, 80),
        (ErrorCode::ElectionNotNeeded, 84),
        (ErrorCode::UnknownServerError, -1),
    ];
    for (code, number) in kafka {
        assert_eq!(code.code(), number);
    }
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_i16(code.code()), Some(code));
        assert!(!code.to_string().is_empty());
    }
    assert_eq!(ErrorCode::from_i16(9999), None);
    assert!(ErrorCode::NotLeaderOrFollower.is_retriable());
    assert!(!ErrorCode::TopicAlreadyExists.is_retriable());
}

// A Produce payload splits into per-partition slices that match the byte counts, and counts
// that disagree with the payload length are refused.
#[test]
fn produce_payload_splits_by_partition_counts() {
    let part = |records_bytes| ProducePartition {
        topic: "t".into(),
        partition: 0,
        records_bytes,
    };
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 1000,
        partitions: vec![part(3), part(0), part(5)],
    };
    let payload = Bytes::from_static(b"abcdefgh");
    let slices = request.partition_payloads(&payload).unwrap();
    assert_eq!(slices, vec![&b"abc"[..], &b""[..], &b"defgh"[..]]);
    let short = Bytes::from_static(b"abcdefg");
    assert!(matches!(
        request.partition_payloads(&short),
        Err(NetError::Malformed { .. })
    ));
    let long = Bytes::from_static(b"abcdefghi");
    assert!(matches!(
        request.partition_payloads(&long),
        Err(NetError::Malformed { .. })
    ));
}
