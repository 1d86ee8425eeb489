//! Bad input on the Kafka port: each kind gets a clear error code or a closed connection, is
//! counted in /metrics, and the broker keeps serving everyone else.
#![allow(clippy::unwrap_used)]

mod common;
mod kafka_support;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};

use bytes::{BufMut, Bytes};
use common::*;
use kafka_support::*;
use sluice_kafka::kafka_protocol::messages::*;
use sluice_storage::batch::{BatchBuilder, Compression};

const TOPIC: &str = "kafka-bad-input";

fn protocol_errors(admin: SocketAddr, kind: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics");
    body.lines()
        .filter(|line| {
            line.starts_with("sluice_protocol_errors_total{")
                && line.contains(&format!("kind=\"{kind}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn kafka_errors(admin: SocketAddr, api: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics");
    body.lines()
        .filter(|line| {
            line.starts_with("sluice_kafka_request_errors_total{")
                && line.contains(&format!("api=\"{api}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits (bounded) for `condition`, which the broker makes true right after answering.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A request frame with the given header fields and body bytes.
fn raw_request(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut request = Vec::new();
    request.put_i16(api_key);
    request.put_i16(version);
    request.put_i32(7);
    request.put_i16(-1); // null client id
    request.extend_from_slice(body);
    let mut framed = Vec::new();
    framed.put_i32(request.len() as i32);
    framed.extend_from_slice(&request);
    framed
}

fn valid_batch() -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(1, Some(b"k"), Some(b"v"), &[]);
    builder.build().unwrap().freeze()
}

/// Sends `bytes` on a fresh connection and checks the broker closes it without answering.
fn closes(addr: SocketAddr, bytes: &[u8]) {
    let mut client = KafkaClient::connect(addr);
    client.send_raw(bytes);
    assert!(client.closed_by_broker(), "the broker answered {bytes:?}");
}

// Proves garbage, a 2 GiB size prefix, a negative size, an unknown API key, an API the broker
// does not serve, an unsupported version and an undecodable body each close the connection
// and are counted by kind, a truncated request is counted when the peer gives up, and the
// broker then still serves a well-behaved client.
#[test]
fn malformed_requests_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let addr = broker.kafka_addr().unwrap();
    let admin = broker.admin_addr().unwrap();

    closes(addr, b"GET / HTTP/1.1\r\nHost: sluice\r\n\r\n");
    closes(addr, &0x7fff_ffffu32.to_be_bytes());
    assert!(protocol_errors(admin, "frame_too_large") >= 2);
    closes(addr, &(-8i32).to_be_bytes());
    assert_eq!(protocol_errors(admin, "malformed_frame"), 1);

    closes(addr, &raw_request(999, 0, b""));
    closes(addr, &raw_request(17, 1, b"")); // SaslHandshake: a Kafka API not served here
    assert_eq!(protocol_errors(admin, "unknown_api"), 2);
    closes(addr, &raw_request(0, 2, b"")); // Produce v2: below Kafka 4.0's baseline
    closes(addr, &raw_request(1, 13, &[0])); // Fetch v13 (topic ids, not served yet); [0]: no header tags
    assert_eq!(protocol_errors(admin, "unsupported_version"), 2);
    closes(addr, &raw_request(3, 4, &[0, 0, 0, 9])); // Metadata: 9 topics announced, none sent
    assert_eq!(protocol_errors(admin, "invalid_request"), 1);

    let mut truncated = KafkaClient::connect(addr);
    let request = raw_request(18, 0, b"");
    truncated.send_raw(&request[..request.len() - 3]);
    truncated.stream.shutdown(Shutdown::Write).unwrap();
    assert!(truncated.closed_by_broker());
    wait_until("truncation counted", || {
        protocol_errors(admin, "truncated_frame") == 1
    });

    let mut client = KafkaClient::connect(addr);
    client.create_topic(TOPIC, 1);
    assert_eq!(client.produce(9, TOPIC, 0, valid_batch()), (0, 0));
    let (error, high_watermark, _) = client.fetch(12, TOPIC, 0, 0, 0, 0);
    assert_eq!((error, high_watermark), (0, 1));
}

// Proves a batch with a bad CRC is refused with CORRUPT_MESSAGE and an old v0/v1 message set
// with INVALID_RECORD, both counted, nothing appended, and the same connection keeps working.
#[test]
fn bad_batches_get_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 1);
    let admin = broker.admin_addr().unwrap();
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    client.create_topic(TOPIC, 1);

    let mut corrupt = valid_batch().to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    assert_eq!(
        client.produce(9, TOPIC, 0, Bytes::from(corrupt)).0,
        2,
        "CORRUPT_MESSAGE"
    );
    assert_eq!(protocol_errors(admin, "corrupt_batch"), 1);

    // A magic-1 message: offset, size, crc, magic 1, attributes, timestamp, key, value.
    let mut legacy = Vec::new();
    legacy.put_i64(0);
    legacy.put_i32(22);
    legacy.put_u32(0);
    legacy.put_i8(1);
    legacy.put_i8(0);
    legacy.put_i64(0);
    legacy.put_i32(-1);
    legacy.put_i32(0);
    for version in [3, 8, 12] {
        let answer: ProduceResponse = client.call(
            version,
            &kafka_produce_request(TOPIC, 0, Bytes::from(legacy.clone()), -1),
        );
        let partition = &answer.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 87, "INVALID_RECORD at v{version}");
        if version >= 8 {
            let message = partition.error_message.as_ref().unwrap().to_string();
            assert!(message.contains("magic 1"), "{message}");
        }
    }
    // Counted once each answer is written, so possibly just after the client read it.
    wait_until("produce errors counted", || {
        kafka_errors(admin, "produce") >= 4
    });

    let (error, high_watermark, records) = client.fetch(12, TOPIC, 0, 0, 0, 0);
    assert_eq!(
        (error, high_watermark, records.len()),
        (0, 0, 0),
        "nothing was appended"
    );
    assert_eq!(client.produce(12, TOPIC, 0, valid_batch()), (0, 0));
}

// Proves an acks=0 produce that fails closes the connection (the only way such a producer
// learns of it), while a client on another connection is unaffected.
#[test]
fn failed_acks_zero_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 1);
    let addr = broker.kafka_addr().unwrap();
    let mut bystander = KafkaClient::connect(addr);
    bystander.create_topic(TOPIC, 1);
    let mut client = KafkaClient::connect(addr);
    let (_, framed) = client.encode(
        9,
        &kafka_produce_request("no-such-topic", 0, valid_batch(), 0),
    );
    client.stream.write_all(&framed).unwrap();
    assert!(client.closed_by_broker());
    assert_eq!(bystander.produce(9, TOPIC, 0, valid_batch()), (0, 0));
}
