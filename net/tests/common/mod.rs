//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use bytes::BytesMut;
use sluice_net::{Frame, FrameDecoder, NetError};

/// Feeds `stream` to a fresh decoder in pieces cut at `cuts` (positions, any order, clamped),
/// collecting every frame; stops at the first error and returns it with the frames so far.
pub fn feed_in_pieces(
    stream: &[u8],
    cuts: &[usize],
    frame_bytes_max: usize,
) -> (Vec<Frame>, Option<NetError>, FrameDecoder) {
    let mut positions: Vec<usize> = cuts.iter().map(|&cut| cut.min(stream.len())).collect();
    positions.push(stream.len());
    positions.sort_unstable();
    let mut decoder = FrameDecoder::new(frame_bytes_max);
    let mut frames = Vec::new();
    let mut start = 0;
    for end in positions {
        decoder.buffer_mut().extend_from_slice(&stream[start..end]);
        start = end;
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(error), decoder),
            }
        }
    }
    (frames, None, decoder)
}

/// Deterministic pseudo-random bytes (xorshift64), so file contents differ at every offset.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Encodes one complete frame (header, control and payload) into a buffer.
pub fn frame_bytes<T>(header: sluice_net::FrameHeader, control: &T, payload: &[u8]) -> BytesMut
where
    T: sluice_net::Message + sluice_net::ControlEncode,
{
    let mut out = BytesMut::new();
    sluice_net::encode_frame(&mut out, header, control, payload.len()).unwrap();
    out.extend_from_slice(payload);
    out
}
