//! The error type of the native wire protocol.

use std::io;

/// Everything that can go wrong while framing, decoding or moving native-protocol frames.
///
/// Frame-level errors (`FrameTooLarge`, `ControlTooLarge`, `Malformed`,
/// `ConnectionClosedMidFrame`) leave the byte stream unsynchronised: the only safe reaction is to
/// close the connection. Request-level errors (`UnknownApi`, `UnsupportedVersion`,
/// `InvalidControl`) concern one well-framed request, so a broker can answer it with an error
/// response and keep the connection.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An I/O error without more specific context.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// A socket operation failed.
    #[error("socket {operation} failed: {source}")]
    Socket {
        /// What the connection was doing, for example "read frame" or "write frame header".
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Sending a file-range payload part failed.
    #[error("sending file range [{position}, +{len}) failed: {source}")]
    FilePart {
        /// Start of the range in the file, in bytes.
        position: u64,
        /// Length of the range, in bytes.
        len: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A frame (prefix included) is larger than the receiver's or the format's bound. Refused
    /// before any buffer for it is allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Size of the frame in bytes, the 4-byte length prefix included.
        len: u64,
        /// The bound that was exceeded, in bytes.
        max: u64,
    },

    /// A control body is larger than `CONTROL_BYTES_MAX`.
    #[error("control body of {len} bytes exceeds the limit of {max} bytes")]
    ControlTooLarge {
        /// Size of the control body in bytes.
        len: u64,
        /// The bound that was exceeded, in bytes.
        max: u64,
    },

    /// The frame's fixed fields are inconsistent (for example `control_len > frame_len`).
    #[error("malformed frame: {reason}")]
    Malformed {
        /// What is wrong, with the offending values.
        reason: String,
    },

    /// The peer closed the connection after sending only part of a frame.
    #[error("connection closed in the middle of a frame ({buffered_bytes} bytes buffered)")]
    ConnectionClosedMidFrame {
        /// How many bytes of the unfinished frame had arrived.
        buffered_bytes: usize,
    },

    /// A control body failed rkyv validation or does not belong to the frame's api.
    #[error("invalid control body for api {api}: {reason}")]
    InvalidControl {
        /// The api key the body was decoded for.
        api: u16,
        /// Why it was refused.
        reason: String,
    },

    /// A control body could not be serialised.
    #[error("cannot encode control body for api {api}: {reason}")]
    Encode {
        /// The api key of the body.
        api: u16,
        /// Why serialisation failed.
        reason: String,
    },

    /// The frame names an api key this build does not know.
    #[error("unknown api key {0}")]
    UnknownApi(u16),

    /// The frame asks for a version of a known api that this build does not implement.
    #[error("api {api} does not support version {version}")]
    UnsupportedVersion {
        /// The api key.
        api: u16,
        /// The requested version.
        version: u16,
    },
}

impl NetError {
    /// Builds a `Malformed` error from anything printable.
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        NetError::Malformed {
            reason: reason.into(),
        }
    }

    /// True when the error leaves the connection's byte stream unusable, so the connection must
    /// be closed rather than answered.
    pub fn is_fatal_to_connection(&self) -> bool {
        !matches!(
            self,
            NetError::InvalidControl { .. }
                | NetError::UnknownApi(_)
                | NetError::UnsupportedVersion { .. }
                | NetError::Encode { .. }
        )
    }
}
