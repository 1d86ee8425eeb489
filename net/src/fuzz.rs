//! Fuzz entry points for the wire decoders. `fuzz/` runs them under libFuzzer (cargo-fuzz,
//! `scripts/fuzz.sh`); the normal test suite replays their committed seed corpora and mutations
//! of them (`net/tests/fuzz_replay.rs`). Each function panics when an invariant breaks, which is
//! what the fuzzer reports; any input may be given, none may crash anything else.
//!
//! - [`fuzz_frame_decoder`]: a byte stream fed to a [`FrameDecoder`] in pieces. Whatever the
//!   piece sizes, the same frames (or the same error) come out; each frame re-encodes to exactly
//!   the bytes it was cut from; every bound holds; an error stays (the stream cannot resync).
//! - [`fuzz_control_body`]: bytes decoded as one control body, chosen by the first byte among
//!   every request the broker decodes and every response a client or follower decodes. A body
//!   that validates re-encodes and decodes back to itself through a whole frame; payload
//!   splitting by its byte counts never panics and cuts exactly what the counts say.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::NetError;
use crate::frame::{
    decode_control, encode_frame, ControlDecode, ControlEncode, Frame, FrameDecoder, FrameHeader,
    CONTROL_BYTES_MAX, FLAGS_KNOWN, FRAME_HEADER_BYTES,
};
use crate::messages::*;

/// Granularity of the frame size bound the first input byte selects, in bytes: bounds from
/// the smallest frame up to about 16 KiB, so inputs can hit the bound easily.
const FRAME_BOUND_STEP_BYTES: usize = 64;

/// Piece sizes the second input byte selects between, 1 to this many bytes.
const PIECE_BYTES_MAX: usize = 31;

/// Read-size hint bounds passed to `read_bytes_hint`.
const HINT_MIN_BYTES: usize = 64;
const HINT_MAX_BYTES: usize = 4096;

/// What decoding a whole stream produced.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<Frame>,
    /// The error that stopped decoding, as text, if any.
    error: Option<String>,
    /// Bytes left in the decoder's buffer at the end of the stream (`None` after an error:
    /// feeding stops there, so how much was buffered depends on the pieces).
    left: Option<usize>,
}

/// Feeds `stream` to a decoder bounded by `frame_bytes_max`, `piece` bytes at a time, taking
/// every frame after each piece, until the stream ends or the decoder reports an error.
fn decode_stream(stream: &[u8], frame_bytes_max: usize, piece: usize) -> Decoded {
    let mut decoder = FrameDecoder::new(frame_bytes_max);
    let mut frames = Vec::new();
    for chunk in stream.chunks(piece.max(1)) {
        let hint = decoder.read_bytes_hint(HINT_MIN_BYTES, HINT_MAX_BYTES);
        assert!(
            (HINT_MIN_BYTES..=HINT_MAX_BYTES).contains(&hint),
            "read hint {hint} out of its bounds"
        );
        decoder.buffer_mut().extend_from_slice(chunk);
        decoder.record_read(chunk.len());
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    check_frame(&frame, decoder.frame_bytes_max());
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(error) => {
                    let again = decoder.next_frame();
                    assert!(
                        matches!(&again, Err(second) if second.to_string() == error.to_string()),
                        "after {error} the decoder returned {again:?}"
                    );
                    return Decoded {
                        frames,
                        error: Some(error.to_string()),
                        left: None,
                    };
                }
            }
        }
    }
    Decoded {
        frames,
        error: None,
        left: Some(decoder.buffered_bytes()),
    }
}

/// The bounds every decoded frame keeps.
fn check_frame(frame: &Frame, frame_bytes_max: usize) {
    assert_eq!(
        frame.header.flags & !FLAGS_KNOWN,
        0,
        "a frame with unknown flags got through"
    );
    assert!(frame.control.len() <= CONTROL_BYTES_MAX);
    let total = FRAME_HEADER_BYTES + frame.control.len() + frame.payload.len();
    assert!(
        total <= frame_bytes_max,
        "a frame of {total} bytes passed a bound of {frame_bytes_max}"
    );
}

/// The wire bytes of a decoded frame.
fn wire_bytes(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + frame.control.len());
    let frame_len = FRAME_HEADER_BYTES - 4 + frame.control.len() + frame.payload.len();
    out.put_u32(u32::try_from(frame_len).expect("a decoded frame fits its u32 length"));
    out.put_u16(frame.header.api);
    out.put_u16(frame.header.version);
    out.put_u32(frame.header.correlation_id);
    out.put_u16(frame.header.flags);
    out.put_u32(u32::try_from(frame.control.len()).expect("control length fits a u32"));
    out.extend_from_slice(&frame.control);
    out.extend_from_slice(&frame.payload);
    out
}

/// What the frame decoder made of one input, for the replay test's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFuzzOutcome {
    /// Frames decoded.
    pub frames: usize,
    /// The stream ended in an error (it cannot be a frame stream from there on).
    pub error: bool,
}

/// Fuzz entry for [`FrameDecoder`]: byte 0 selects the frame bound, byte 1 the piece size, the
/// rest is the stream.
pub fn fuzz_frame_decoder(data: &[u8]) -> FrameFuzzOutcome {
    let [bound, piece, stream @ ..] = data else {
        return FrameFuzzOutcome {
            frames: 0,
            error: false,
        };
    };
    let frame_bytes_max = FRAME_HEADER_BYTES + usize::from(*bound) * FRAME_BOUND_STEP_BYTES;
    let whole = decode_stream(stream, frame_bytes_max, stream.len());
    let pieces = decode_stream(
        stream,
        frame_bytes_max,
        usize::from(*piece) % PIECE_BYTES_MAX + 1,
    );
    assert_eq!(whole, pieces, "decoding depends on how the stream was cut");
    let mut rebuilt = Vec::with_capacity(stream.len());
    for frame in &whole.frames {
        rebuilt.extend_from_slice(&wire_bytes(frame));
    }
    assert_eq!(
        rebuilt.as_slice(),
        &stream[..rebuilt.len()],
        "decoded frames do not re-encode to the bytes they were cut from"
    );
    if let Some(left) = whole.left {
        assert_eq!(rebuilt.len() + left, stream.len(), "bytes lost");
    }
    FrameFuzzOutcome {
        frames: whole.frames.len(),
        error: whole.error.is_some(),
    }
}

/// Every control body type a peer decodes, in the order the first input byte selects them.
const BODY_TYPES: usize = 16;

/// Fuzz entry for the rkyv control bodies: byte 0 selects the body type (modulo
/// `BODY_TYPES`: requests first, in api order, then responses), byte 1 how much of the rest is
/// the control body (rest length * byte / 255; the remainder is a payload for the bodies that
/// split one). Returns whether the body validated.
pub fn fuzz_control_body(data: &[u8]) -> bool {
    let [kind, split, rest @ ..] = data else {
        return false;
    };
    let control_len = if rest.is_empty() {
        0
    } else {
        rest.len() * usize::from(*split) / 255
    };
    let (control, payload) = rest.split_at(control_len.min(rest.len()));
    let payload = Bytes::copy_from_slice(payload);
    match usize::from(*kind) % BODY_TYPES {
        0 => check_body::<ApiVersionsRequest>(control).is_some(),
        1 => check_body::<MetadataRequest>(control).is_some(),
        2 => check_body::<CreateTopicsRequest>(control).is_some(),
        3 => check_body::<DeleteTopicsRequest>(control).is_some(),
        4 => {
            let Some(request) = check_body::<ProduceRequest>(control) else {
                return false;
            };
            let counts: Vec<u32> = request.partitions.iter().map(|p| p.records_bytes).collect();
            check_split(&counts, request.partition_payloads(&payload), &payload);
            let writable = request.partition_payloads_mut(BytesMut::from(&payload[..]));
            check_split(&counts, writable.map(freeze_all), &payload);
            true
        }
        5 => check_body::<FetchRequest>(control).is_some(),
        6 => check_body::<ListOffsetsRequest>(control).is_some(),
        7 => check_body::<OffsetForLeaderEpochRequest>(control).is_some(),
        8 => check_body::<ApiVersionsResponse>(control).is_some(),
        9 => check_body::<MetadataResponse>(control).is_some(),
        10 => check_body::<CreateTopicsResponse>(control).is_some(),
        11 => check_body::<DeleteTopicsResponse>(control).is_some(),
        12 => check_body::<ProduceResponse>(control).is_some(),
        13 => {
            let Some(response) = check_body::<FetchResponse>(control) else {
                return false;
            };
            let counts: Vec<u32> = response
                .partitions
                .iter()
                .map(|p| p.records_bytes)
                .collect();
            check_split(&counts, response.partition_payloads(&payload), &payload);
            true
        }
        14 => check_body::<ListOffsetsResponse>(control).is_some(),
        _ => check_body::<OffsetForLeaderEpochResponse>(control).is_some(),
    }
}

fn freeze_all(parts: Vec<BytesMut>) -> Vec<Bytes> {
    parts.into_iter().map(BytesMut::freeze).collect()
}

/// Decodes `control` as `T`. A body that validates must travel through a whole frame (encode,
/// decoder, decode) unchanged; one that does not must be refused with a control error.
fn check_body<T>(control: &[u8]) -> Option<T>
where
    T: Message + ControlEncode + ControlDecode + PartialEq + std::fmt::Debug,
{
    let body = match decode_control::<T>(control) {
        Ok(body) => body,
        Err(NetError::InvalidControl { api, .. }) => {
            assert_eq!(api, T::API.code(), "a refusal names another api");
            return None;
        }
        Err(NetError::ControlTooLarge { .. }) => {
            assert!(control.len() > CONTROL_BYTES_MAX);
            return None;
        }
        Err(other) => panic!("control body refused with an unexpected error: {other}"),
    };
    let mut frame_bytes = BytesMut::new();
    let header = FrameHeader::request(T::API, 0, 7);
    match encode_frame(&mut frame_bytes, header, &body, 0) {
        Ok(()) => {}
        // A body can decode from under CONTROL_BYTES_MAX and re-encode to more (rkyv may lay it
        // out differently); refusing to send it is the encoder keeping the bound.
        Err(NetError::ControlTooLarge { .. }) => return Some(body),
        Err(error) => panic!("a body that decoded does not encode: {error}"),
    }
    let mut decoder = FrameDecoder::default();
    decoder.buffer_mut().extend_from_slice(&frame_bytes);
    let frame = decoder
        .next_frame()
        .expect("our own frame decodes")
        .expect("our own frame is complete");
    let again: T = frame.decode().expect("our own body validates");
    assert_eq!(again, body, "a body changed on its way through a frame");
    Some(body)
}

/// A payload split by byte counts either fails or cuts exactly those counts, in order, from
/// the whole payload.
fn check_split(counts: &[u32], parts: Result<Vec<Bytes>, NetError>, payload: &Bytes) {
    let Ok(parts) = parts else {
        let total: u64 = counts.iter().map(|&count| u64::from(count)).sum();
        assert_ne!(
            total,
            payload.len() as u64,
            "a split whose counts add up was refused"
        );
        return;
    };
    assert_eq!(parts.len(), counts.len());
    let mut start = 0;
    for (part, &count) in parts.iter().zip(counts) {
        assert_eq!(part.len(), count as usize);
        assert_eq!(&part[..], &payload[start..start + part.len()]);
        start += part.len();
    }
    assert_eq!(start, payload.len(), "a split left bytes over");
}
