//! Sluice native wire protocol: length-prefixed frames, rkyv control bodies validated on
//! receipt, raw record-batch payloads, and zero-copy file-range sends.
//!
//! - [`frame`]: the frame layout, [`encode_frame`], [`FrameDecoder`] and [`decode_control`].
//! - [`api`]: [`ApiKey`], the implemented versions and [`ErrorCode`].
//! - [`messages`]: every request and response body.
//! - [`conn`]: [`Connection`], framed reads and ordered writes over a glommio `TcpStream`.
//! - [`splice`]: [`Splicer`], file range -> socket with io_uring splice, one per executor.
//! - [`fuzz`]: fuzz entry points for the frame decoder and every control body.
//!
//! The crate depends on no other workspace crate and knows nothing of storage: a fetch
//! response's payload is handed to it as memory or as open file ranges.

pub mod api;
pub mod conn;
pub mod error;
pub mod frame;
pub mod fuzz;
mod gather;
pub mod messages;
pub mod splice;

pub use api::{check_version, supported_versions, ApiKey, ErrorCode};
pub use conn::{write_payload_parts, Connection, PayloadPart};
pub use error::NetError;
pub use frame::{
    decode_control, encode_frame, received_api, received_control, received_payload_parts,
    ControlDecode, ControlEncode, Frame, FrameDecoder, FrameHeader, CONTROL_BYTES_MAX,
    FLAG_RESPONSE, FRAME_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_PREFIX_BYTES,
};
pub use messages::*;
pub use splice::{local_splicer, SpliceStats, Splicer};
