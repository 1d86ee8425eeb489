//! Seeds of the native protocol's fuzz targets: `frame_decoder` (byte 0 the frame bound in steps
//! of 64 bytes over the 18-byte minimum, byte 1 the piece size, then the stream) and
//! `control_body` (byte 0 the body type, byte 1 the control share of the rest, then the bytes;
//! see `sluice_net::fuzz`).

use bytes::{BufMut, BytesMut};
use sluice_net::frame::{ControlEncode, FrameHeader};
use sluice_net::messages::*;
use sluice_net::{encode_frame, ApiKey};

/// Frame bound byte that allows every seed frame (18 + 255 * 64 bytes).
const BOUND_LARGE: u8 = 255;

/// Frame bound byte of the smallest bound: only an empty 18-byte frame fits.
const BOUND_SMALLEST: u8 = 0;

/// Control share byte that makes all of the rest the control body.
const WHOLE_CONTROL: u8 = 255;

fn frame<T: Message + ControlEncode>(header: FrameHeader, body: &T, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(&mut out, header, body, payload.len()).expect("a seed frame encodes");
    out.extend_from_slice(payload);
    out.to_vec()
}

fn metadata_request() -> MetadataRequest {
    MetadataRequest {
        topics: Some(vec!["orders".to_string(), "audit".to_string()]),
    }
}

fn produce_request(records_bytes: &[u32]) -> ProduceRequest {
    ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        partitions: records_bytes
            .iter()
            .enumerate()
            .map(|(index, &bytes)| ProducePartition {
                topic: "orders".to_string(),
                partition: i32::try_from(index).expect("few partitions"),
                records_bytes: bytes,
            })
            .collect(),
    }
}

fn fetch_response(records_bytes: &[u32]) -> FetchResponse {
    FetchResponse {
        partitions: records_bytes
            .iter()
            .enumerate()
            .map(|(index, &bytes)| FetchPartitionResult {
                topic: "orders".to_string(),
                partition: i32::try_from(index).expect("few partitions"),
                error: 0,
                high_watermark: 100,
                log_start_offset: 0,
                log_end_offset: 120,
                records_bytes: bytes,
                current_leader: -1,
            })
            .collect(),
    }
}

fn with_prefix(bound: u8, piece: u8, stream: &[u8]) -> Vec<u8> {
    let mut out = vec![bound, piece];
    out.extend_from_slice(stream);
    out
}

/// Seeds of `frame_decoder`.
pub fn frame_decoder() -> Vec<(&'static str, Vec<u8>)> {
    let metadata = frame(
        FrameHeader::request(ApiKey::Metadata, 0, 1),
        &metadata_request(),
        &[],
    );
    let produce = frame(
        FrameHeader::request(ApiKey::Produce, 0, 2),
        &produce_request(&[5, 3]),
        b"abcdefgh",
    );
    let fetch = frame(
        FrameHeader::request(ApiKey::Fetch, 0, 9).response(),
        &fetch_response(&[4]),
        b"wxyz",
    );
    let mut two = metadata.clone();
    two.extend_from_slice(&produce);
    let mut partial = two.clone();
    partial.extend_from_slice(&fetch[..fetch.len() / 2]);
    let mut bad_flags = metadata.clone();
    bad_flags[12..14].copy_from_slice(&0x8001_u16.to_be_bytes());
    let mut short_len = vec![0, 0, 0, 3];
    short_len.extend_from_slice(&[0; 20]);
    let mut control_overrun = metadata.clone();
    let control_len = u32::try_from(metadata.len()).expect("a small frame");
    control_overrun[14..18].copy_from_slice(&control_len.to_be_bytes());
    let mut huge_control = Vec::new();
    huge_control.put_u32(14 + 2 * 1024 * 1024);
    huge_control.extend_from_slice(&[0, 3, 0, 0, 0, 0, 0, 1, 0, 0]);
    huge_control.put_u32(2 * 1024 * 1024);
    vec![
        (
            "frames-metadata.bin",
            with_prefix(BOUND_LARGE, 0, &metadata),
        ),
        (
            "frames-two-in-pieces.bin",
            with_prefix(BOUND_LARGE, 2, &two),
        ),
        (
            "frames-fetch-response.bin",
            with_prefix(BOUND_LARGE, 6, &fetch),
        ),
        (
            "partial-third-frame.bin",
            with_prefix(BOUND_LARGE, 4, &partial),
        ),
        (
            "error-frame-too-large.bin",
            with_prefix(BOUND_SMALLEST, 1, &produce),
        ),
        (
            "error-unknown-flags.bin",
            with_prefix(BOUND_LARGE, 3, &bad_flags),
        ),
        (
            "error-short-frame-len.bin",
            with_prefix(BOUND_LARGE, 0, &short_len),
        ),
        (
            "error-control-overrun.bin",
            with_prefix(BOUND_LARGE, 5, &control_overrun),
        ),
        (
            "error-control-too-large.bin",
            with_prefix(BOUND_LARGE, 7, &huge_control),
        ),
    ]
}

/// The control bytes of `body` (the rkyv archive inside its frame).
fn control<T: Message + ControlEncode>(body: &T) -> Vec<u8> {
    let frame = frame(FrameHeader::request(T::API, 0, 1), body, &[]);
    frame[18..].to_vec()
}

/// A `control_body` seed whose rest is all control.
fn body_seed<T: Message + ControlEncode>(kind: u8, body: &T) -> Vec<u8> {
    let mut out = vec![kind, WHOLE_CONTROL];
    out.extend_from_slice(&control(body));
    out
}

/// A `control_body` seed of `control` followed by a payload, with the share byte chosen so the
/// split falls exactly after the control bytes (the payload is padded until one does).
fn split_seed(kind: u8, control: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut payload = payload.to_vec();
    loop {
        let total = control.len() + payload.len();
        let share = (0..=255_u8).find(|&share| total * usize::from(share) / 255 == control.len());
        if let Some(share) = share {
            let mut out = vec![kind, share];
            out.extend_from_slice(control);
            out.extend_from_slice(&payload);
            return out;
        }
        payload.push(b'.');
    }
}

/// Seeds of `control_body`: one valid body of every type, bodies with payloads whose counts
/// add up (and one whose counts do not), and refused bytes.
pub fn control_body() -> Vec<(&'static str, Vec<u8>)> {
    let produce_counts = |payload_len: usize| {
        let first = u32::try_from(payload_len / 3).expect("small payload");
        let second = u32::try_from(payload_len).expect("small payload") - first;
        produce_request(&[first, second])
    };
    // The payload is padded to make the split exact, so the counts are fixed up afterwards.
    let produce_payload = |kind: u8| {
        let mut payload_len = 24;
        loop {
            let control = control(&produce_counts(payload_len));
            let seed = split_seed(kind, &control, &vec![b'r'; payload_len]);
            if seed.len() - 2 - control.len() == payload_len {
                return seed;
            }
            payload_len += 1;
        }
    };
    let mut truncated = body_seed(9, &metadata_response());
    truncated.truncate(truncated.len() / 2);
    let mut flipped = body_seed(1, &metadata_request());
    let last = flipped.len() - 3;
    flipped[last] ^= 0xff;
    vec![
        (
            "valid-api-versions-request.bin",
            body_seed(0, &ApiVersionsRequest {}),
        ),
        (
            "valid-metadata-request.bin",
            body_seed(1, &metadata_request()),
        ),
        (
            "valid-create-topics-request.bin",
            body_seed(2, &create_topics()),
        ),
        (
            "valid-delete-topics-request.bin",
            body_seed(3, &delete_topics()),
        ),
        ("valid-produce-request.bin", produce_payload(4)),
        (
            "valid-produce-request-bad-counts.bin",
            split_seed(4, &control(&produce_request(&[7, 7])), b"short"),
        ),
        ("valid-fetch-request.bin", body_seed(5, &fetch_request())),
        (
            "valid-list-offsets-request.bin",
            body_seed(6, &list_offsets()),
        ),
        (
            "valid-offset-for-leader-epoch-request.bin",
            body_seed(7, &epochs()),
        ),
        (
            "valid-api-versions-response.bin",
            body_seed(8, &ApiVersionsResponse::from_supported()),
        ),
        (
            "valid-metadata-response.bin",
            body_seed(9, &metadata_response()),
        ),
        (
            "valid-create-topics-response.bin",
            body_seed(10, &topic_results_create()),
        ),
        (
            "valid-delete-topics-response.bin",
            body_seed(11, &topic_results_delete()),
        ),
        (
            "valid-produce-response.bin",
            body_seed(12, &produce_response()),
        ),
        (
            "valid-fetch-response.bin",
            split_seed(13, &control(&fetch_response(&[3, 2])), b"aaabb"),
        ),
        (
            "valid-list-offsets-response.bin",
            body_seed(14, &list_offsets_response()),
        ),
        (
            "valid-offset-for-leader-epoch-response.bin",
            body_seed(15, &epoch_answers()),
        ),
        ("invalid-empty.bin", vec![1, WHOLE_CONTROL]),
        ("invalid-truncated-metadata-response.bin", truncated),
        ("invalid-flipped-metadata-request.bin", flipped),
    ]
}

fn create_topics() -> CreateTopicsRequest {
    CreateTopicsRequest {
        topics: vec![NewTopic {
            name: "orders".to_string(),
            partitions: 8,
            replication_factor: 3,
            configs: vec![("min.insync.replicas".to_string(), "2".to_string())],
        }],
        timeout_ms: 30_000,
    }
}

fn delete_topics() -> DeleteTopicsRequest {
    DeleteTopicsRequest {
        names: vec!["orders".to_string()],
        timeout_ms: 30_000,
    }
}

fn fetch_request() -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 50 << 20,
        partitions: vec![FetchPartition {
            topic: "orders".to_string(),
            partition: 3,
            fetch_offset: 42,
            partition_max_bytes: 4 << 20,
            current_leader_epoch: -1,
        }],
    }
}

fn list_offsets() -> ListOffsetsRequest {
    ListOffsetsRequest {
        partitions: vec![
            ListOffsetsPartition {
                topic: "orders".to_string(),
                partition: 0,
                timestamp: -2,
            },
            ListOffsetsPartition {
                topic: "orders".to_string(),
                partition: 1,
                timestamp: 1_700_000_000_000,
            },
        ],
    }
}

fn epochs() -> OffsetForLeaderEpochRequest {
    OffsetForLeaderEpochRequest {
        partitions: vec![EpochQuery {
            topic: "orders".to_string(),
            partition: 0,
            leader_epoch: 4,
        }],
    }
}

fn metadata_response() -> MetadataResponse {
    MetadataResponse {
        brokers: vec![BrokerMeta {
            node_id: 1,
            host: "127.0.0.1".to_string(),
            port: 9192,
            shard_ports: vec![40001, 40002],
        }],
        controller_id: 1,
        cluster_id: "seed".to_string(),
        topics: vec![TopicMeta {
            name: "orders".to_string(),
            error: 0,
            partitions: vec![PartitionMeta {
                partition: 0,
                error: 0,
                leader: 1,
                leader_epoch: 2,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                shard: 1,
            }],
            configs: vec![("retention.ms".to_string(), "-1".to_string())],
        }],
    }
}

fn topic_results_create() -> CreateTopicsResponse {
    CreateTopicsResponse {
        results: vec![TopicResult {
            name: "orders".to_string(),
            error: 36,
            message: Some("topic orders already exists".to_string()),
        }],
    }
}

fn topic_results_delete() -> DeleteTopicsResponse {
    DeleteTopicsResponse {
        results: vec![TopicResult {
            name: "orders".to_string(),
            error: 0,
            message: None,
        }],
    }
}

fn produce_response() -> ProduceResponse {
    ProduceResponse {
        partitions: vec![ProducePartitionResult {
            topic: "orders".to_string(),
            partition: 0,
            error: 6,
            base_offset: -1,
            log_start_offset: -1,
            message: Some("this broker is not the leader of orders-0 (leader 2)".to_string()),
            current_leader: 2,
        }],
    }
}

fn list_offsets_response() -> ListOffsetsResponse {
    ListOffsetsResponse {
        partitions: vec![ListOffsetsPartitionResult {
            topic: "orders".to_string(),
            partition: 0,
            error: 0,
            offset: 42,
            timestamp: -1,
        }],
    }
}

fn epoch_answers() -> OffsetForLeaderEpochResponse {
    OffsetForLeaderEpochResponse {
        partitions: vec![EpochAnswer {
            topic: "orders".to_string(),
            partition: 0,
            error: 0,
            leader_epoch: 4,
            end_offset: 1_000,
        }],
    }
}
