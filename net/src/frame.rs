//! Frame layout, encoding and incremental decoding.
//!
//! Every frame, request or response, is (all integers big-endian):
//!
//! ```text
//! offset size field
//!      0    4 frame_len       bytes after this field: 14 + control_len + payload length
//!      4    2 api             ApiKey wire value
//!      6    2 version         api version
//!      8    4 correlation_id  chosen by the requester, echoed by the response
//!     12    2 flags           bit 0 = RESPONSE; other bits must be zero
//!     14    4 control_len     length of the rkyv control body
//!     18    . control         rkyv archive of the request/response body
//!      .    . payload         raw Kafka record batches (may be empty)
//! ```
//!
//! The fixed part is `FRAME_HEADER_BYTES` = 18 bytes, of which `FRAME_PREFIX_BYTES` = 4 are the
//! length prefix, so the smallest legal `frame_len` is 14.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::api::ApiKey;
use crate::error::NetError;
use crate::messages::Message;

/// Size of the `frame_len` prefix, in bytes.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Size of the fixed part of every frame, prefix included: frame_len (4) + api (2) + version (2)
/// + correlation_id (4) + flags (2) + control_len (4) = 18 bytes.
pub const FRAME_HEADER_BYTES: usize = 18;

/// Position of `correlation_id` in a frame, prefix included.
const CORRELATION_ID_AT: usize = 8;

/// Position of `flags` in a frame, just past `correlation_id`.
const FRAME_FLAGS_AT: usize = 12;

/// Position of `control_len` in a frame, prefix included.
const CONTROL_LEN_AT: usize = 14;

/// Smallest legal `frame_len` value: the fixed fields after the prefix (14 bytes).
const FRAME_LEN_MIN: usize = FRAME_HEADER_BYTES - FRAME_PREFIX_BYTES;

/// Default bound on a whole frame (prefix included) accepted by a decoder, in bytes.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bound on a control body, in bytes. Control bodies describe requests; record bytes travel in
/// the payload, so a megabyte is far more than any legitimate body needs.
pub const CONTROL_BYTES_MAX: usize = 1024 * 1024;

/// Largest frame the format can express: `frame_len` is a u32.
const FRAME_BYTES_FORMAT_MAX: u64 = u32::MAX as u64 + FRAME_PREFIX_BYTES as u64;

/// Flag bit 0: the frame is a response to the request with the same correlation id.
pub const FLAG_RESPONSE: u16 = 1 << 0;

/// Every flag bit this build understands. A frame with other bits set is refused, because its
/// sender expects semantics this build does not implement.
pub const FLAGS_KNOWN: u16 = FLAG_RESPONSE;

/// The fixed fields of a frame after `frame_len` (and apart from `control_len`, which the codec
/// derives from the control body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// ApiKey wire value. Kept raw so an unknown key still frames correctly and can be refused
    /// with a typed error by the dispatcher.
    pub api: u16,
    /// Api version.
    pub version: u16,
    /// Chosen by the requester; the response echoes it.
    pub correlation_id: u32,
    /// Flag bits (`FLAG_RESPONSE`).
    pub flags: u16,
}

impl FrameHeader {
    /// A request header.
    pub fn request(api: ApiKey, version: u16, correlation_id: u32) -> Self {
        FrameHeader {
            api: api.code(),
            version,
            correlation_id,
            flags: 0,
        }
    }

    /// The header of the response to this request: same api, version and correlation id, with
    /// the RESPONSE flag set.
    pub fn response(&self) -> Self {
        FrameHeader {
            flags: self.flags | FLAG_RESPONSE,
            ..*self
        }
    }

    /// True when the RESPONSE flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// The api key, or `UnknownApi`.
    pub fn api_key(&self) -> Result<ApiKey, NetError> {
        ApiKey::try_from(self.api)
    }
}

/// One decoded frame. `control` and `payload` are views of the received buffer (no copy).
/// The payload is a `BytesMut`: a disjoint, writable view, so the broker can stamp offsets into
/// produced batches in place instead of copying them first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The fixed fields.
    pub header: FrameHeader,
    /// The rkyv control body, not yet validated: use [`Frame::decode`] or [`decode_control`].
    pub control: Bytes,
    /// Raw record batches; empty when the api carries none.
    pub payload: BytesMut,
}

impl Frame {
    /// Validates and decodes the control body as `T`, after checking that the frame's api is
    /// `T`'s api (a Produce body in a Fetch frame is refused, not misread).
    pub fn decode<T: Message + ControlDecode>(&self) -> Result<T, NetError> {
        if self.header.api != T::API.code() {
            return Err(NetError::InvalidControl {
                api: self.header.api,
                reason: format!("frame api {} is not {}", self.header.api, T::API),
            });
        }
        decode_control(&self.control)
    }
}

/// Control bodies that can be encoded: every rkyv `Serialize` type with the high-level
/// serializer, which all `#[derive(Serialize)]` types are.
pub trait ControlEncode:
    for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

impl<T> ControlEncode for T where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

/// Control bodies that can be validated (bytecheck) and deserialised. Implemented for every
/// rkyv-derived type; it exists so generic code needs one bound instead of rkyv's four.
pub trait ControlDecode: Sized {
    /// Validates `aligned` (which must be 16-byte aligned) and deserialises it.
    fn from_aligned_bytes(aligned: &[u8]) -> Result<Self, rancor::Error>;
}

impl<T> ControlDecode for T
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    fn from_aligned_bytes(aligned: &[u8]) -> Result<Self, rancor::Error> {
        rkyv::from_bytes::<T, rancor::Error>(aligned)
    }
}

/// Encodes the fixed header and the control body into `out`, with `frame_len` counting
/// `payload_len` more bytes that the caller sends right after (from memory or spliced from a
/// file). On error `out` is left as it was.
pub fn encode_frame<T>(
    out: &mut BytesMut,
    header: FrameHeader,
    control: &T,
    payload_len: usize,
) -> Result<(), NetError>
where
    T: Message + ControlEncode,
{
    check_encodable_header(&header, T::API)?;
    let body = rkyv::to_bytes::<rancor::Error>(control).map_err(|error| NetError::Encode {
        api: header.api,
        reason: error.to_string(),
    })?;
    if body.len() > CONTROL_BYTES_MAX {
        return Err(NetError::ControlTooLarge {
            len: body.len() as u64,
            max: CONTROL_BYTES_MAX as u64,
        });
    }
    let frame_bytes = FRAME_HEADER_BYTES as u64 + body.len() as u64 + payload_len as u64;
    if frame_bytes > FRAME_BYTES_FORMAT_MAX {
        return Err(NetError::FrameTooLarge {
            len: frame_bytes,
            max: FRAME_BYTES_FORMAT_MAX,
        });
    }
    // Both casts are lossless: the two bounds checked above keep the values below u32::MAX.
    let frame_len = (frame_bytes - FRAME_PREFIX_BYTES as u64) as u32;
    out.reserve(FRAME_HEADER_BYTES + body.len());
    out.put_u32(frame_len);
    out.put_u16(header.api);
    out.put_u16(header.version);
    out.put_u32(header.correlation_id);
    out.put_u16(header.flags);
    out.put_u32(body.len() as u32);
    out.extend_from_slice(&body);
    Ok(())
}

/// Refuses to encode a frame our own decoder (or the peer's) would refuse or misread.
fn check_encodable_header(header: &FrameHeader, body_api: ApiKey) -> Result<(), NetError> {
    if header.api != body_api.code() {
        return Err(NetError::Encode {
            api: header.api,
            reason: format!(
                "header api {} does not match body api {body_api}",
                header.api
            ),
        });
    }
    if header.flags & !FLAGS_KNOWN != 0 {
        return Err(NetError::Encode {
            api: header.api,
            reason: format!("unknown flag bits {:#06x}", header.flags & !FLAGS_KNOWN),
        });
    }
    Ok(())
}

/// Validates (bytecheck) and deserialises a control body of type `T`. The bytes are first
/// copied into a 16-byte-aligned buffer, because rkyv reads archived fields in place and a
/// frame's control body starts at an arbitrary address inside the receive buffer.
pub fn decode_control<T>(control: &[u8]) -> Result<T, NetError>
where
    T: Message + ControlDecode,
{
    if control.len() > CONTROL_BYTES_MAX {
        return Err(NetError::ControlTooLarge {
            len: control.len() as u64,
            max: CONTROL_BYTES_MAX as u64,
        });
    }
    let mut aligned = AlignedVec::<16>::with_capacity(control.len());
    aligned.extend_from_slice(control);
    T::from_aligned_bytes(&aligned).map_err(|error| NetError::InvalidControl {
        api: T::API.code(),
        reason: error.to_string(),
    })
}

/// The control body of a frame (prefix included) of which `received` bytes have arrived, once
/// all of it has; `None` before, and for a `control_len` over `CONTROL_BYTES_MAX`.
pub fn received_control(received: &[u8]) -> Option<&[u8]> {
    let mut control_len = received.get(CONTROL_LEN_AT..FRAME_HEADER_BYTES)?;
    let control_len = control_len.get_u32() as usize;
    if control_len > CONTROL_BYTES_MAX {
        return None;
    }
    received.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + control_len)
}

/// Where the payload of a frame (prefix included) of which `received` bytes have arrived
/// starts, and the sizes of its consecutive parts as `part_bytes` reads them from the control
/// body, decoded as `T`, once that body has arrived; `None` before. A body that does not decode
/// gives no parts (whoever handles the frame reports that).
pub fn received_payload_parts<T>(
    received: &[u8],
    part_bytes: impl FnOnce(T) -> Vec<usize>,
) -> Option<(usize, Vec<usize>)>
where
    T: Message + ControlDecode,
{
    let control = received_control(received)?;
    let parts = decode_control::<T>(control).map_or_else(|_| Vec::new(), part_bytes);
    Some((FRAME_HEADER_BYTES + control.len(), parts))
}

/// The `api` of a frame (prefix included) of which `received` bytes have arrived, once it has.
pub fn received_api(received: &[u8]) -> Option<u16> {
    let mut api = received.get(FRAME_PREFIX_BYTES..FRAME_PREFIX_BYTES + 2)?;
    Some(api.get_u16())
}

/// Reassembles frames from a byte stream read in arbitrary pieces.
///
/// Read socket data into [`FrameDecoder::buffer_mut`], then call [`FrameDecoder::next_frame`]
/// until it returns `Ok(None)`. Every length field is checked against its bound before the
/// decoder reserves memory for the frame. After an error the offending bytes stay at the head of
/// the buffer, so every later call returns the same error: the stream cannot be resynchronised
/// and the connection must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    frame_bytes_max: usize,
    /// Bytes the last socket read returned; sizes the next one (see `read_bytes_hint`).
    last_read_bytes: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames larger than `frame_bytes_max` bytes (prefix included).
    /// Values below `FRAME_HEADER_BYTES` are raised to it, since no frame is smaller.
    pub fn new(frame_bytes_max: usize) -> Self {
        FrameDecoder {
            buffer: BytesMut::new(),
            frame_bytes_max: frame_bytes_max.max(FRAME_HEADER_BYTES),
            last_read_bytes: usize::MAX,
        }
    }

    /// The receive buffer: append bytes read from the socket here.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// The bound on a whole frame, in bytes.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// How many more bytes the frame at the head of the buffer needs (the prefix or header when
    /// they are incomplete, the whole frame once its length is known and valid), or 0 when a
    /// complete frame or an invalid length is buffered. A hint for sizing the next read.
    pub fn bytes_wanted(&self) -> usize {
        let needed = match self.peek_frame_bytes() {
            Some(total) if total <= self.frame_bytes_max as u64 => total as usize,
            Some(_) => return 0,
            None => FRAME_HEADER_BYTES,
        };
        needed.saturating_sub(self.buffer.len())
    }

    /// How many bytes the next socket read should ask for: what the head frame still needs,
    /// at least `min`, at most `max`, and at most twice what the previous read returned. Reads
    /// that wait through the reactor zero-fill their buffer first, so asking for far more than
    /// the socket delivers would waste a memset of the difference; `read_available` reads into
    /// uninitialised memory and is not limited by this.
    pub fn read_bytes_hint(&self, min: usize, max: usize) -> usize {
        let cap = self.last_read_bytes.saturating_mul(2).clamp(min, max);
        self.bytes_wanted().clamp(min, cap)
    }

    /// `len` cut to the buffer's spare room when that room already holds the rest of the head
    /// frame (`next_frame` reserved an incomplete frame's whole size): a read past the frame's
    /// end, for the next frame's first bytes, would grow the buffer, and growing a buffer that
    /// holds one frame reallocates it and copies the whole frame. Reads with a fixed lower bound
    /// (the socket paths ask for at least 16 KiB) pass through this.
    pub fn read_len_fitting(&self, len: usize) -> usize {
        let spare = self.buffer.capacity() - self.buffer.len();
        let wanted = self.bytes_wanted();
        if self.peek_frame_bytes().is_some() && wanted > 0 && spare >= wanted {
            len.min(spare)
        } else {
            len
        }
    }

    /// Reads what the socket `fd` already holds, up to `len` bytes, straight into the receive
    /// buffer's uninitialised spare capacity: no zero fill, no copy. Never blocks:
    /// `Ok(None)` when the socket has nothing now (the caller then waits through the reactor),
    /// `Ok(Some(0))` at end of stream. Records the read for `read_bytes_hint`.
    pub fn read_available(
        &mut self,
        fd: std::os::fd::RawFd,
        len: usize,
    ) -> std::io::Result<Option<usize>> {
        let len = self.read_len_fitting(len);
        self.buffer.reserve(len);
        let spare = self.buffer.spare_capacity_mut();
        let len = len.min(spare.len());
        // SAFETY: `spare` is writable memory of at least `len` bytes owned by the buffer; recv
        // writes at most `len` bytes into it and nothing else of ours.
        let got = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) };
        if got < 0 {
            let error = std::io::Error::last_os_error();
            return match error.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
                _ => Err(error),
            };
        }
        let got = got as usize;
        // SAFETY: recv initialised exactly `got` (at most `len`) bytes after the current length.
        unsafe { self.buffer.set_len(self.buffer.len() + got) };
        self.last_read_bytes = got;
        Ok(Some(got))
    }

    /// The head frame's correlation id and its bytes received so far (prefix included, none of
    /// the next frame's), once its fixed header has arrived: for a reader that looks at a large
    /// frame while it is still arriving. The length fields are not checked here; `next_frame`
    /// checks them before the frame is handed out.
    pub fn head_frame_prefix(&self) -> Option<(u32, &[u8])> {
        let frame_bytes = usize::try_from(self.peek_frame_bytes()?).ok()?;
        let mut correlation_id = self.buffer.get(CORRELATION_ID_AT..FRAME_FLAGS_AT)?;
        let correlation_id = correlation_id.get_u32();
        Some((
            correlation_id,
            &self.buffer[..self.buffer.len().min(frame_bytes)],
        ))
    }

    /// Records how many bytes the last socket read returned, for `read_bytes_hint`.
    pub fn record_read(&mut self, got: usize) {
        self.last_read_bytes = got;
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or a typed error when the
    /// buffered bytes cannot be a valid frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, NetError> {
        let Some(frame_bytes) = self.peek_frame_bytes() else {
            return Ok(None);
        };
        self.check_frame_bytes(frame_bytes)?;
        // The bound check above keeps frame_bytes within usize (it is at most frame_bytes_max).
        let frame_bytes = frame_bytes as usize;
        if self.buffer.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let (header, control_len) = self.check_header(frame_bytes)?;
        if self.buffer.len() < frame_bytes {
            // Reserving only now, after every length has been bounded, means a hostile length
            // never makes us allocate more than frame_bytes_max.
            self.buffer.reserve(frame_bytes - self.buffer.len());
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(frame_bytes);
        let control_end = FRAME_HEADER_BYTES + control_len;
        let payload = frame.split_off(control_end);
        Ok(Some(Frame {
            header,
            control: frame.freeze().slice(FRAME_HEADER_BYTES..),
            payload,
        }))
    }

    /// The whole size (prefix included) of the frame at the head of the buffer, once the prefix
    /// has arrived.
    fn peek_frame_bytes(&self) -> Option<u64> {
        let prefix = self.buffer.get(..FRAME_PREFIX_BYTES)?;
        let frame_len = (&prefix[..]).get_u32();
        Some(u64::from(frame_len) + FRAME_PREFIX_BYTES as u64)
    }

    fn check_frame_bytes(&self, frame_bytes: u64) -> Result<(), NetError> {
        if frame_bytes > self.frame_bytes_max as u64 {
            return Err(NetError::FrameTooLarge {
                len: frame_bytes,
                max: self.frame_bytes_max as u64,
            });
        }
        if frame_bytes < FRAME_HEADER_BYTES as u64 {
            return Err(NetError::malformed(format!(
                "frame_len {} is below the minimum {FRAME_LEN_MIN}",
                frame_bytes - FRAME_PREFIX_BYTES as u64
            )));
        }
        Ok(())
    }

    /// Parses and checks the fixed fields; needs `FRAME_HEADER_BYTES` buffered.
    fn check_header(&self, frame_bytes: usize) -> Result<(FrameHeader, usize), NetError> {
        let mut fields = &self.buffer[FRAME_PREFIX_BYTES..FRAME_HEADER_BYTES];
        let header = FrameHeader {
            api: fields.get_u16(),
            version: fields.get_u16(),
            correlation_id: fields.get_u32(),
            flags: fields.get_u16(),
        };
        let control_len = fields.get_u32() as usize;
        if header.flags & !FLAGS_KNOWN != 0 {
            return Err(NetError::malformed(format!(
                "unknown flag bits {:#06x} (correlation id {})",
                header.flags & !FLAGS_KNOWN,
                header.correlation_id
            )));
        }
        if control_len > CONTROL_BYTES_MAX {
            return Err(NetError::ControlTooLarge {
                len: control_len as u64,
                max: CONTROL_BYTES_MAX as u64,
            });
        }
        if control_len > frame_bytes - FRAME_HEADER_BYTES {
            return Err(NetError::malformed(format!(
                "control_len {control_len} exceeds the {} bytes left in a frame_len of {}",
                frame_bytes - FRAME_HEADER_BYTES,
                frame_bytes - FRAME_PREFIX_BYTES
            )));
        }
        Ok((header, control_len))
    }
}

impl Default for FrameDecoder {
    /// A decoder bounded by `FRAME_BYTES_MAX`.
    fn default() -> Self {
        FrameDecoder::new(FRAME_BYTES_MAX)
    }
}
