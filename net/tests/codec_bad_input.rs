//! Hostile and broken input: every bad frame or body yields a typed error, never a panic, and no
//! bound is exceeded by an allocation.

// Tests and their helpers may unwrap: a failure should stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{BufMut, BytesMut};
use sluice_net::*;

use common::{feed_in_pieces, frame_bytes};

/// The fixed header fields, written by hand so tests can lie in them.
fn raw_header(frame_len: u32, api: u16, flags: u16, control_len: u32) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32(frame_len);
    out.put_u16(api);
    out.put_u16(0);
    out.put_u32(7);
    out.put_u16(flags);
    out.put_u32(control_len);
    out
}

fn sample_metadata() -> MetadataResponse {
    MetadataResponse {
        brokers: vec![BrokerMeta {
            node_id: 1,
            host: "broker-1.example".into(),
            port: 9093,
            shard_ports: vec![9100, 9101],
        }],
        controller_id: 1,
        cluster_id: "cluster".into(),
        topics: vec![TopicMeta {
            name: "orders".into(),
            error: 0,
            partitions: vec![],
            configs: vec![("retention.ms".into(), "1000".into())],
        }],
    }
}

// A frame_len over the decoder's bound is refused as soon as the 4-byte prefix arrives, and
// the decoder does not grow its buffer toward the announced size.
#[test]
fn oversized_frame_is_refused_before_allocating() {
    let mut decoder = FrameDecoder::new(1024 * 1024);
    decoder.buffer_mut().put_u32(u32::MAX);
    let capacity_before = decoder.buffer_mut().capacity();
    let error = decoder.next_frame().unwrap_err();
    assert!(
        matches!(error, NetError::FrameTooLarge { len, max } if len == u64::from(u32::MAX) + 4 && max == 1024 * 1024),
        "{error:?}"
    );
    assert!(error.is_fatal_to_connection());
    assert_eq!(decoder.buffer_mut().capacity(), capacity_before);
    assert!(decoder.buffer_mut().capacity() < 1024);
    // The error is sticky: the stream cannot be resynchronised.
    assert!(matches!(
        decoder.next_frame(),
        Err(NetError::FrameTooLarge { .. })
    ));
}

// The default decoder accepts a frame of exactly FRAME_BYTES_MAX bytes' announcement and refuses
// one byte more.
#[test]
fn default_bound_is_frame_bytes_max_inclusive() {
    let at_limit = (FRAME_BYTES_MAX - FRAME_PREFIX_BYTES) as u32;
    let mut decoder = FrameDecoder::default();
    decoder
        .buffer_mut()
        .extend_from_slice(&raw_header(at_limit, 4, 0, 0));
    assert!(decoder.next_frame().unwrap().is_none());
    assert_eq!(decoder.bytes_wanted(), FRAME_BYTES_MAX - FRAME_HEADER_BYTES);
    let mut decoder = FrameDecoder::default();
    decoder
        .buffer_mut()
        .extend_from_slice(&raw_header(at_limit + 1, 4, 0, 0));
    assert!(matches!(
        decoder.next_frame(),
        Err(NetError::FrameTooLarge { .. })
    ));
}

// A frame_len too small to hold the fixed header is malformed.
#[test]
fn frame_len_below_header_is_malformed() {
    let mut decoder = FrameDecoder::default();
    decoder.buffer_mut().put_u32(13);
    decoder.buffer_mut().put_bytes(0, 13);
    assert!(matches!(
        decoder.next_frame(),
        Err(NetError::Malformed { .. })
    ));
}

// control_len larger than the bytes frame_len leaves for it is malformed.
#[test]
fn control_len_beyond_frame_len_is_malformed() {
    let mut stream = raw_header(14 + 10, 4, 0, 11);
    stream.put_bytes(0xAB, 10);
    let (frames, error, _) = feed_in_pieces(&stream, &[3, 17], FRAME_BYTES_MAX);
    assert!(frames.is_empty());
    let error = error.unwrap();
    assert!(
        matches!(&error, NetError::Malformed { reason } if reason.contains("control_len 11")),
        "{error:?}"
    );
}

// control_len above CONTROL_BYTES_MAX is refused from the header alone, before the body arrives.
#[test]
fn control_len_over_limit_is_refused_from_the_header() {
    let control_len = (CONTROL_BYTES_MAX + 1) as u32;
    let stream = raw_header(14 + control_len, 4, 0, control_len);
    let (_, error, decoder) = feed_in_pieces(&stream, &[], FRAME_BYTES_MAX);
    assert!(
        matches!(error, Some(NetError::ControlTooLarge { .. })),
        "{error:?}"
    );
    assert!(decoder.buffered_bytes() == FRAME_HEADER_BYTES);
}

// Flag bits this build does not understand are refused rather than ignored.
#[test]
fn unknown_flags_are_malformed() {
    let stream = raw_header(14, 0, 0x8000, 0);
    let (_, error, _) = feed_in_pieces(&stream, &[], FRAME_BYTES_MAX);
    assert!(
        matches!(error, Some(NetError::Malformed { .. })),
        "{error:?}"
    );
}

// A truncated frame is not returned (the decoder waits for the rest), and completing it yields
// the frame.
#[test]
fn truncated_frame_waits_for_the_rest() {
    let header = FrameHeader::request(ApiKey::Metadata, 0, 1);
    let full = frame_bytes(header, &MetadataRequest { topics: None }, b"");
    let mut decoder = FrameDecoder::default();
    decoder
        .buffer_mut()
        .extend_from_slice(&full[..full.len() - 1]);
    assert!(decoder.next_frame().unwrap().is_none());
    assert_eq!(decoder.bytes_wanted(), 1);
    decoder
        .buffer_mut()
        .extend_from_slice(&full[full.len() - 1..]);
    let frame = decoder.next_frame().unwrap().unwrap();
    assert_eq!(
        frame.decode::<MetadataRequest>().unwrap(),
        MetadataRequest { topics: None }
    );
}

// Garbage control bodies (random bytes, all-0xFF, truncated or bit-flipped archives) fail rkyv
// validation with InvalidControl instead of being misread.
#[test]
fn control_bodies_failing_validation_are_invalid_control() {
    let valid = frame_bytes(
        FrameHeader::request(ApiKey::Metadata, 0, 1),
        &sample_metadata(),
        b"",
    );
    let control = valid[FRAME_HEADER_BYTES..].to_vec();
    assert_eq!(
        decode_control::<MetadataResponse>(&control).unwrap(),
        sample_metadata()
    );
    let mut candidates = vec![
        vec![0xFF; control.len()],
        control[..control.len() / 2].to_vec(),
        control[..3].to_vec(),
        common::pattern(control.len(), 99),
    ];
    // Overwrite the root object's last relative pointer and length with huge values.
    let mut lying = control.clone();
    let end = lying.len();
    lying[end - 8..].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0x7F]);
    candidates.push(lying);
    for candidate in candidates {
        let error = decode_control::<MetadataResponse>(&candidate).unwrap_err();
        assert!(
            matches!(&error, NetError::InvalidControl { api, .. } if *api == ApiKey::Metadata.code()),
            "{error:?}"
        );
        assert!(!error.is_fatal_to_connection());
    }
}

// A body decoded as the wrong api's type is refused by Frame::decode (the api check) even when
// the bytes would happen to validate.
#[test]
fn body_of_another_api_is_invalid_control() {
    let header = FrameHeader::request(ApiKey::Fetch, 0, 9);
    let stream = frame_bytes(header, &FetchResponse { partitions: vec![] }, b"");
    let (frames, _, _) = feed_in_pieces(&stream, &[], FRAME_BYTES_MAX);
    let error = frames[0].decode::<ProduceResponse>().unwrap_err();
    assert!(
        matches!(error, NetError::InvalidControl { api: 5, .. }),
        "{error:?}"
    );
}

// encode_frame refuses a header whose api differs from the body's or that carries unknown
// flags, and leaves the output buffer untouched.
#[test]
fn encode_refuses_inconsistent_headers() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let wrong_api = FrameHeader::request(ApiKey::Produce, 0, 1);
    let error =
        encode_frame(&mut out, wrong_api, &MetadataRequest { topics: None }, 0).unwrap_err();
    assert!(matches!(error, NetError::Encode { .. }), "{error:?}");
    let mut bad_flags = FrameHeader::request(ApiKey::Metadata, 0, 1);
    bad_flags.flags = 0x4000;
    let error =
        encode_frame(&mut out, bad_flags, &MetadataRequest { topics: None }, 0).unwrap_err();
    assert!(matches!(error, NetError::Encode { .. }), "{error:?}");
    assert_eq!(&out[..], b"prefix");
}

// A payload that would push frame_len past u32::MAX cannot be framed.
#[test]
fn payload_too_large_for_the_format_is_refused() {
    let mut out = BytesMut::new();
    let header = FrameHeader::request(ApiKey::Produce, 0, 1);
    let body = ProduceRequest {
        acks: 1,
        timeout_ms: 0,
        partitions: vec![],
    };
    let error = encode_frame(&mut out, header, &body, u32::MAX as usize).unwrap_err();
    assert!(matches!(error, NetError::FrameTooLarge { .. }), "{error:?}");
    assert!(out.is_empty());
}

// A control body larger than CONTROL_BYTES_MAX is refused on both the encode and decode side.
#[test]
fn oversized_control_body_is_refused_both_ways() {
    let body = DeleteTopicsRequest {
        names: vec!["x".repeat(CONTROL_BYTES_MAX)],
        timeout_ms: 0,
    };
    let mut out = BytesMut::new();
    let header = FrameHeader::request(ApiKey::DeleteTopics, 0, 1);
    let error = encode_frame(&mut out, header, &body, 0).unwrap_err();
    assert!(
        matches!(error, NetError::ControlTooLarge { .. }),
        "{error:?}"
    );
    let big = vec![0u8; CONTROL_BYTES_MAX + 1];
    let error = decode_control::<DeleteTopicsRequest>(&big).unwrap_err();
    assert!(
        matches!(error, NetError::ControlTooLarge { .. }),
        "{error:?}"
    );
}

// Proves the reads that finish a large frame never grow the buffer `next_frame` reserved for it
// (growing a buffer that holds one frame reallocates it and copies the whole frame): with the
// frame's rest and the next frame already in the socket, 16 KiB reads fill the reserved room
// without changing its capacity, the frame comes out whole, and the next frame follows intact.
#[test]
fn reads_finishing_a_reserved_frame_do_not_grow_its_buffer() {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    const READ_BYTES: usize = 16 * 1024;
    const FIRST_READ_BYTES: usize = 30_000;
    let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = reader.as_raw_fd();
    let payload = common::pattern(90_000, 3);
    let header = FrameHeader::request(ApiKey::Metadata, 0, 1);
    let first = frame_bytes(header, &MetadataRequest { topics: None }, &payload);
    let second = frame_bytes(header, &MetadataRequest { topics: None }, b"next");
    let mut decoder = FrameDecoder::default();
    writer.write_all(&first[..FIRST_READ_BYTES]).unwrap();
    let got = decoder.read_available(fd, FIRST_READ_BYTES).unwrap();
    assert_eq!(got, Some(FIRST_READ_BYTES));
    assert!(decoder.next_frame().unwrap().is_none());
    let reserved = decoder.buffer_mut().capacity();
    assert!(reserved >= first.len());
    assert_ne!(
        (reserved - FIRST_READ_BYTES) % READ_BYTES,
        0,
        "the last read must find less room than it asks for"
    );
    writer.write_all(&first[FIRST_READ_BYTES..]).unwrap();
    writer.write_all(&second).unwrap();
    while decoder.buffered_bytes() < first.len() {
        let got = decoder.read_available(fd, READ_BYTES).unwrap();
        assert!(
            matches!(got, Some(1..)),
            "the socket holds the rest: {got:?}"
        );
        assert_eq!(decoder.buffer_mut().capacity(), reserved);
    }
    let frame = decoder.next_frame().unwrap().unwrap();
    assert_eq!(&frame.payload[..], &payload[..]);
    while decoder.buffered_bytes() < second.len() {
        decoder.read_available(fd, READ_BYTES).unwrap();
    }
    let next = decoder.next_frame().unwrap().unwrap();
    assert_eq!(&next.payload[..], b"next");
}
