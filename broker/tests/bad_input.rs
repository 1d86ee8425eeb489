//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use sluice_net::{
    encode_frame, ApiKey, ErrorCode, Frame, FrameDecoder, FrameHeader, MetadataRequest,
    MetadataResponse, ProduceResponse,
};

const TOPIC: &str = "bad-input";
/// Pieces a produce request is written in, and the pause after each, so the broker reads it in
/// several reads.
const PRODUCE_PIECES: usize = 4;
const PIECE_PAUSE_MS: u64 = 20;

/// A Produce request frame carrying `payload` to partition 0 of `TOPIC`.
fn produce_frame(correlation_id: u32, payload: &[u8]) -> BytesMut {
    let request = produce_request(TOPIC, 0, payload.len());
    let mut out = BytesMut::new();
    let header = FrameHeader::request(ApiKey::Produce, 0, correlation_id);
    encode_frame(&mut out, header, &request, payload.len()).unwrap();
    out.extend_from_slice(payload);
    out
}

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

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// True when the broker closed the connection (EOF or reset) instead of answering.
fn closed_by_broker(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 64];
    loop {
        // The in-process broker's executors use signals; a blocking read may see EINTR.
        return match stream.read(&mut buffer) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
        };
    }
}

/// A frame built by hand: header fields as given, any control bytes, any payload.
fn raw_frame(
    api: u16,
    version: u16,
    correlation_id: u32,
    control: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32((14 + control.len() + payload.len()) as u32);
    out.put_u16(api);
    out.put_u16(version);
    out.put_u32(correlation_id);
    out.put_u16(0);
    out.put_u32(control.len() as u32);
    out.extend_from_slice(control);
    out.extend_from_slice(payload);
    out.to_vec()
}

fn read_response(stream: &mut TcpStream) -> Frame {
    let mut decoder = FrameDecoder::new(64 << 20);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame().unwrap() {
            return frame;
        }
        let read = match stream.read(&mut chunk) {
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            read => read.unwrap(),
        };
        assert!(read > 0, "connection closed instead of answering");
        decoder.buffer_mut().extend_from_slice(&chunk[..read]);
    }
}

// Proves each fatal framing problem (garbage bytes, a frame over frame_bytes_max, a frame cut
// short by the peer, an unknown api) closes only that connection and is counted by kind.
#[test]
fn unrecoverable_streams_close_the_connection_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let (native, admin) = (broker.native_addr(), broker.admin_addr().unwrap());

    // Garbage: a small length prefix followed by bytes whose flag bits are all set.
    let mut stream = connect(native);
    let mut garbage = vec![0, 0, 0, 20];
    garbage.extend_from_slice(&[0xff; 20]);
    stream.write_all(&garbage).unwrap();
    assert!(closed_by_broker(&mut stream));
    assert!(protocol_errors(admin, "malformed_frame") >= 1);

    // A length prefix over frame_bytes_max (64 MiB by default): refused before allocating.
    let mut stream = connect(native);
    stream.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 1]).unwrap();
    assert!(closed_by_broker(&mut stream));
    assert!(protocol_errors(admin, "frame_too_large") >= 1);

    // A frame announcing 100 bytes of which only 20 arrive before the peer stops sending.
    let mut stream = connect(native);
    let mut truncated = vec![0, 0, 0, 100];
    truncated.extend_from_slice(&[0u8; 20]);
    stream.write_all(&truncated).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_broker(&mut stream));
    assert!(protocol_errors(admin, "truncated_frame") >= 1);

    // An api key the broker does not know: no response type exists, the connection closes.
    let mut stream = connect(native);
    stream.write_all(&raw_frame(999, 0, 1, &[], &[])).unwrap();
    assert!(closed_by_broker(&mut stream));
    assert!(protocol_errors(admin, "unknown_api") >= 1);

    assert_second_connection_works(native);
    broker.shutdown().unwrap();
}

/// Sends an unsupported version, an invalid control body and a corrupt batch on `stream`, and
/// checks each error response and its metric.
fn send_malformed_requests(stream: &mut TcpStream, admin: SocketAddr) {
    // Unsupported version of a known api.
    let mut out = BytesMut::new();
    let header = FrameHeader {
        api: ApiKey::Metadata.code(),
        version: 7,
        correlation_id: 10,
        flags: 0,
    };
    encode_frame(&mut out, header, &MetadataRequest { topics: None }, 0).unwrap();
    stream.write_all(&out).unwrap();
    let frame = read_response(stream);
    assert_eq!(frame.header.correlation_id, 10);
    let metadata: MetadataResponse = frame.decode().unwrap();
    assert_eq!(
        metadata.topics[0].error,
        ErrorCode::UnsupportedVersion.code()
    );
    assert!(protocol_errors(admin, "unsupported_version") >= 1);

    // A Produce whose control body is not a valid archive.
    stream
        .write_all(&raw_frame(ApiKey::Produce.code(), 0, 11, &[0xab; 24], &[]))
        .unwrap();
    let frame = read_response(stream);
    assert_eq!(frame.header.correlation_id, 11);
    let produce: ProduceResponse = frame.decode().unwrap();
    assert_eq!(
        produce.partitions[0].error,
        ErrorCode::InvalidRequest.code()
    );
    assert!(produce.partitions[0].message.is_some());
    assert!(protocol_errors(admin, "invalid_request") >= 1);

    // A batch whose last byte was flipped after its CRC was computed.
    let mut corrupt = BytesMut::from(&batch("corrupt", 2)[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x5a;
    let corrupt: Bytes = corrupt.freeze();
    stream.write_all(&produce_frame(12, &corrupt)).unwrap();
    let produce: ProduceResponse = read_response(stream).decode().unwrap();
    assert_eq!(
        produce.partitions[0].error,
        ErrorCode::CorruptMessage.code()
    );
    assert!(protocol_errors(admin, "corrupt_batch") >= 1);

    // A sound batch, then the corrupt one, arriving in pieces: the broker checks the CRCs of
    // what has arrived after each read; the corrupt batch must still be refused, and with it
    // the whole request.
    let sound = batch("sound", 3);
    let mut payload = BytesMut::from(&sound[..]);
    payload.extend_from_slice(&corrupt);
    let out = produce_frame(13, &payload);
    let piece = out.len() / PRODUCE_PIECES + 1;
    for chunk in out.chunks(piece) {
        stream.write_all(chunk).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(PIECE_PAUSE_MS));
    }
    let produce: ProduceResponse = read_response(stream).decode().unwrap();
    assert_eq!(
        produce.partitions[0].error,
        ErrorCode::CorruptMessage.code()
    );
}

// Proves well-framed but bad requests get a clear error response on a connection that keeps
// working: an unsupported version, a control body failing validation, a batch with a bad CRC, an
// unknown topic, a fetch past the end of the log; each is counted, and the log is unchanged.
#[test]
fn bad_requests_get_error_responses() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let (native, admin) = (broker.native_addr(), broker.admin_addr().unwrap());
    run(async move {
        let mut client = RawClient::connect(native).await;
        client.create_topic(TOPIC, 1).await;
        let good = batch("good", 1);
        assert_eq!(client.produce(TOPIC, 0, good).await.partitions[0].error, 0);
    });
    let mut stream = connect(native);
    send_malformed_requests(&mut stream, admin);

    run(async move {
        let mut client = RawClient::connect(native).await;
        // The corrupt batch was not appended: the log still ends after the one good record.
        let (fetched, payload) = client.fetch(TOPIC, 0, 0).await;
        assert_eq!(fetched.partitions[0].high_watermark, 1);
        assert_eq!(split_batches(&payload).len(), 1);

        let missing = client.produce("no-such-topic", 0, batch("x", 1)).await;
        assert_eq!(
            missing.partitions[0].error,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        let (missing, _) = client.fetch(TOPIC, 5, 0).await;
        assert_eq!(
            missing.partitions[0].error,
            ErrorCode::UnknownTopicOrPartition.code()
        );

        let (past_end, payload) = client.fetch(TOPIC, 0, 1000).await;
        let result = &past_end.partitions[0];
        assert_eq!(result.error, ErrorCode::OffsetOutOfRange.code());
        assert_eq!((result.log_start_offset, result.log_end_offset), (0, 1));
        assert!(payload.is_empty());
    });
    assert!(protocol_errors(admin, "unknown_topic_or_partition") >= 2);
    assert!(protocol_errors(admin, "offset_out_of_range") >= 1);

    // The connection that sent the bad requests still works.
    let mut out = BytesMut::new();
    encode_frame(
        &mut out,
        FrameHeader::request(ApiKey::Metadata, 0, 13),
        &MetadataRequest { topics: None },
        0,
    )
    .unwrap();
    stream.write_all(&out).unwrap();
    let metadata: MetadataResponse = read_response(&mut stream).decode().unwrap();
    assert!(metadata.topics.iter().any(|topic| topic.name == TOPIC));

    assert_second_connection_works(native);
    broker.shutdown().unwrap();
}

fn assert_second_connection_works(native: SocketAddr) {
    run(async move {
        let mut client = RawClient::connect(native).await;
        let topic = format!("after-bad-input-{}", rand::random::<u32>());
        client.create_topic(&topic, 2).await;
        let produced = batch("after", 3);
        let response = client.produce(&topic, 1, produced.clone()).await;
        assert_eq!(response.partitions[0].error, 0);
        let (fetched, payload) = client.fetch(&topic, 1, 0).await;
        assert_eq!(fetched.partitions[0].error, 0);
        let batches = split_batches(&payload);
        assert_eq!(batches.len(), 1);
        assert!(same_batch(&batches[0].2, &produced));
    });
}
