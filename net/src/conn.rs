//! A native-protocol connection over a glommio `TcpStream`.
//!
//! A `Connection` lives on the executor that accepted or opened its socket (it is `!Send`). It
//! reads whole frames through a bounded [`FrameDecoder`] and writes frames in order: header and
//! control first, then each payload part; runs of memory parts leave together in gathered
//! `sendmsg` calls (no copy into one buffer), file parts are spliced by the executor's
//! [`Splicer`].
//!
//! Cancellation: dropping a `read_frame` future loses nothing (bytes already received stay
//! buffered). Dropping a write future leaves an unknown prefix of the frame on the wire, so the
//! connection must then be closed.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::error::NetError;
use crate::frame::{encode_frame, ControlEncode, Frame, FrameDecoder, FrameHeader};
use crate::gather;
use crate::messages::Message;
use crate::splice::{local_splicer, Splicer};

/// Smallest socket read, in bytes: enough for many small pipelined frames per system call while
/// keeping the zero-fill of the read buffer cheap.
const READ_BYTES_MIN: usize = 16 * 1024;

/// Largest socket read, in bytes. A large frame is read in pieces of at most this size into the
/// buffer the decoder reserved for it; small enough that a piece is still in the cache when a
/// `read_frame_observed` observer checks it.
const READ_BYTES_MAX: usize = 256 * 1024;

/// One piece of a frame's payload.
#[derive(Debug, Clone)]
pub enum PayloadPart {
    /// Bytes in memory (for example the direct-mode tail cache or a produce payload).
    Memory(Bytes),
    /// A range of an open file, spliced to the socket without entering user space. The `Rc`
    /// keeps the file open while the send is in flight even if the log drops the segment.
    File {
        /// The open file.
        file: Rc<std::fs::File>,
        /// Start of the range, in bytes.
        position: u64,
        /// Length of the range, in bytes.
        len: usize,
    },
}

impl PayloadPart {
    /// Length of this part in bytes.
    pub fn len(&self) -> usize {
        match self {
            PayloadPart::Memory(bytes) => bytes.len(),
            PayloadPart::File { len, .. } => *len,
        }
    }

    /// True when the part carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of `parts` together.
    pub fn total_len(parts: &[PayloadPart]) -> usize {
        total_len(parts)
    }
}

/// A borrowed view of a payload part, so `write_frame` and `write_frame_parts` share one path
/// without allocating.
enum PartRef<'a> {
    Memory(&'a [u8]),
    File {
        fd: RawFd,
        position: u64,
        len: usize,
    },
}

trait AsPart {
    fn as_part(&self) -> PartRef<'_>;
}

fn total_len<P: AsPart>(parts: &[P]) -> usize {
    parts.iter().fold(0usize, |total, part| {
        total.saturating_add(match part.as_part() {
            PartRef::Memory(bytes) => bytes.len(),
            PartRef::File { len, .. } => len,
        })
    })
}

impl AsPart for Bytes {
    fn as_part(&self) -> PartRef<'_> {
        PartRef::Memory(self)
    }
}

impl AsPart for PayloadPart {
    fn as_part(&self) -> PartRef<'_> {
        match self {
            PayloadPart::Memory(bytes) => PartRef::Memory(bytes),
            PayloadPart::File {
                file,
                position,
                len,
            } => PartRef::File {
                fd: file.as_raw_fd(),
                position: *position,
                len: *len,
            },
        }
    }
}

/// A framed native-protocol connection. Lives on one executor.
pub struct Connection {
    stream: TcpStream,
    decoder: FrameDecoder,
    write_buffer: BytesMut,
    splicer: Option<Rc<Splicer>>,
}

impl Connection {
    /// Wraps a connected stream, refusing incoming frames larger than `frame_bytes_max` bytes.
    /// Sets `TCP_NODELAY`, since every frame is written whole and small requests must not wait
    /// for Nagle's algorithm.
    pub fn new(stream: TcpStream, frame_bytes_max: usize) -> Self {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY; small frames may be delayed");
        }
        Connection {
            stream,
            decoder: FrameDecoder::new(frame_bytes_max),
            write_buffer: BytesMut::new(),
            splicer: None,
        }
    }

    /// Uses `splicer` for file parts instead of this executor's [`local_splicer`].
    pub fn with_splicer(mut self, splicer: Rc<Splicer>) -> Self {
        self.splicer = Some(splicer);
        self
    }

    /// The next frame, or `None` when the peer closed the connection cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, NetError> {
        self.read_frame_observed(&mut |_| {}).await
    }

    /// [`read_frame`](Self::read_frame), showing `observer` the frame's received bytes (prefix
    /// included, none of the next frame's) after every socket read while it arrives, and once
    /// more when it is whole: a reader can look at a large frame's bytes while they are still
    /// in the cache.
    pub async fn read_frame_observed(
        &mut self,
        observer: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<Frame>, NetError> {
        loop {
            if let Some((_, received)) = self.decoder.head_frame_prefix() {
                observer(received);
            }
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            if self.fill_decoder().await? == 0 {
                let buffered_bytes = self.decoder.buffered_bytes();
                if buffered_bytes == 0 {
                    return Ok(None);
                }
                return Err(NetError::ConnectionClosedMidFrame { buffered_bytes });
            }
        }
    }

    /// Reads once from the socket into the decoder's buffer; returns the bytes read (0 at EOF).
    async fn fill_decoder(&mut self) -> Result<usize, NetError> {
        let wanted = self
            .decoder
            .bytes_wanted()
            .clamp(READ_BYTES_MIN, READ_BYTES_MAX);
        let fd = self.stream.as_raw_fd();
        match self.decoder.read_available(fd, wanted) {
            Ok(Some(got)) => return Ok(got),
            Ok(None) => {}
            Err(source) => {
                return Err(NetError::Socket {
                    operation: "read frame",
                    source,
                })
            }
        }
        // The socket is empty: wait for data through the reactor, into a small zero-filled read.
        let hint = self.decoder.read_bytes_hint(READ_BYTES_MIN, READ_BYTES_MIN);
        let want = self.decoder.read_len_fitting(hint);
        let mut guard = ReadGuard::new(self.decoder.buffer_mut(), want);
        let got = self
            .stream
            .read(guard.unfilled())
            .await
            .map_err(|source| NetError::Socket {
                operation: "read frame",
                source,
            })?;
        guard.commit(got);
        self.decoder.record_read(got);
        Ok(got)
    }

    /// Writes a frame whose payload is `payload`'s buffers, in order.
    pub async fn write_frame<T>(
        &mut self,
        header: FrameHeader,
        control: &T,
        payload: &[Bytes],
    ) -> Result<(), NetError>
    where
        T: Message + ControlEncode,
    {
        self.write_parts(header, control, payload).await
    }

    /// Writes a frame whose payload is a list of parts: memory, or file ranges that are spliced
    /// from the page cache to the socket. An error after the header was sent (for example a
    /// file range past the end of its file) leaves a partial frame on the wire: close the
    /// connection.
    pub async fn write_frame_parts<T>(
        &mut self,
        header: FrameHeader,
        control: &T,
        parts: &[PayloadPart],
    ) -> Result<(), NetError>
    where
        T: Message + ControlEncode,
    {
        self.write_parts(header, control, parts).await
    }

    async fn write_parts<T, P>(
        &mut self,
        header: FrameHeader,
        control: &T,
        parts: &[P],
    ) -> Result<(), NetError>
    where
        T: Message + ControlEncode,
        P: AsPart,
    {
        self.write_buffer.clear();
        encode_frame(&mut self.write_buffer, header, control, total_len(parts))?;
        let head = std::mem::take(&mut self.write_buffer);
        let result = write_runs(&mut self.stream, &mut self.splicer, &head, parts).await;
        // Keep the allocation for the next frame.
        self.write_buffer = head;
        result
    }

    /// The socket's descriptor (for splicing and socket options).
    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddr, NetError> {
        self.stream.peer_addr().map_err(|error| NetError::Socket {
            operation: "peer address",
            source: io::Error::from(error),
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.stream.local_addr().map_err(|error| NetError::Socket {
            operation: "local address",
            source: io::Error::from(error),
        })
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("fd", &self.stream.as_raw_fd())
            .field("buffered_bytes", &self.decoder.buffered_bytes())
            .finish()
    }
}

/// Extends a buffer with zeroed space for one read and, however the read ends (completion,
/// error or a dropped future), trims it back to the bytes actually received, so a cancelled read
/// never leaves zeros in the stream.
struct ReadGuard<'a> {
    buffer: &'a mut BytesMut,
    filled: usize,
}

impl<'a> ReadGuard<'a> {
    fn new(buffer: &'a mut BytesMut, extra: usize) -> Self {
        let filled = buffer.len();
        buffer.resize(filled + extra, 0);
        ReadGuard { buffer, filled }
    }

    fn unfilled(&mut self) -> &mut [u8] {
        &mut self.buffer[self.filled..]
    }

    fn commit(mut self, got: usize) {
        self.filled += got;
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.buffer.truncate(self.filled);
    }
}

/// Writes `parts` to `stream` in order, as [`Connection::write_frame_parts`] writes a frame's
/// payload (for protocols framed elsewhere, such as the Kafka port): runs of memory parts leave
/// in gathered sends without a copy, file parts are spliced by this executor's
/// [`local_splicer`]. An error part-way leaves a partial answer on the wire: close the stream.
pub async fn write_payload_parts(
    stream: &mut TcpStream,
    parts: &[PayloadPart],
) -> Result<(), NetError> {
    write_runs(stream, &mut None, &[], parts).await
}

/// Writes `head` then `parts`: each run of memory parts (the first with `head`) gathered, at
/// most [`gather::GATHER_BUFFERS_MAX`] pieces a batch, each file part spliced.
async fn write_runs<P: AsPart>(
    stream: &mut TcpStream,
    splicer: &mut Option<Rc<Splicer>>,
    head: &[u8],
    parts: &[P],
) -> Result<(), NetError> {
    let mut run: [&[u8]; gather::GATHER_BUFFERS_MAX] = [&[]; gather::GATHER_BUFFERS_MAX];
    run[0] = head;
    let mut count = 1;
    for part in parts {
        match part.as_part() {
            PartRef::Memory(bytes) => {
                if count == run.len() {
                    write_gathered(stream, &run[..count]).await?;
                    count = 0;
                }
                run[count] = bytes;
                count += 1;
            }
            PartRef::File { fd, position, len } => {
                write_gathered(stream, &run[..count]).await?;
                count = 0;
                send_file_part(stream, splicer, fd, position, len).await?;
            }
        }
    }
    write_gathered(stream, &run[..count]).await
}

/// Writes every byte of `pieces` in order: gathered sends while the socket takes them, the
/// reactor's send (which waits for room) when its buffer is full.
async fn write_gathered(stream: &mut TcpStream, pieces: &[&[u8]]) -> Result<(), NetError> {
    let operation = "write frame";
    let total: usize = pieces.iter().map(|piece| piece.len()).sum();
    let fd = stream.as_raw_fd();
    let mut sent = 0;
    while sent < total {
        match gather::send_available(fd, pieces, sent) {
            Ok(Some(got)) if got > 0 => sent += got,
            Ok(_) => {
                let (index, within) = gather::locate(pieces, sent);
                let got = stream
                    .write(&pieces[index][within..])
                    .await
                    .map_err(|source| NetError::Socket { operation, source })?;
                if got == 0 {
                    let source = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(NetError::Socket { operation, source });
                }
                sent += got;
            }
            Err(source) => return Err(NetError::Socket { operation, source }),
        }
    }
    Ok(())
}

/// Splices a file range to `stream` with `splicer`, or this executor's [`local_splicer`]
/// (then kept in `splicer`).
async fn send_file_part(
    stream: &TcpStream,
    splicer: &mut Option<Rc<Splicer>>,
    fd: RawFd,
    position: u64,
    len: usize,
) -> Result<(), NetError> {
    let error = |source| NetError::FilePart {
        position,
        len,
        source,
    };
    let splicer = match splicer {
        Some(splicer) => splicer.clone(),
        None => splicer.insert(local_splicer().map_err(error)?).clone(),
    };
    splicer
        .send_file(stream.as_raw_fd(), fd, position, len)
        .await
        .map_err(error)
}
