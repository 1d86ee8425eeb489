//! One Kafka client connection: a reader that frames requests, checks their header and decodes
//! their body, then starts each request's handler (at most `connection_inflight_requests_max`
//! in flight), and a writer that sends the answers in request order, as Kafka clients require
//! of pipelined requests.
//!
//! Bad input closes the connection after the answers to the requests before it, and is counted
//! in `sluice_protocol_errors_total`: garbage or a size prefix out of bounds (`malformed_frame`,
//! `frame_too_large`), a connection ending mid-request (`truncated_frame`), an API key Kafka
//! does not define or this broker does not serve (`unknown_api`), a version outside what
//! ApiVersions advertised (`unsupported_version`; ApiVersions itself is answered with
//! UNSUPPORTED_VERSION and the supported list, as Kafka does), a body that does not decode
//! (`invalid_request`). This is what a Kafka broker does with such requests, since no answer of
//! the right shape can be written for them.
//!
//! The reader and the writer each own a descriptor of the same socket (the writer's is a
//! `dup`), so reading the next request never waits for an answer to be written.

use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use futures_channel::oneshot;
use futures_lite::AsyncReadExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use sluice_kafka::kafka_protocol::messages::ApiKey;
use sluice_kafka::{
    api_versions_unsupported, check_supported, decode_request, split_request, KafkaError,
    RequestDecoder, RequestHeader,
};
use sluice_net::{NetError, PayloadPart};
use sluice_shard::ProtocolErrorKind;

use super::dispatch::{self, Answer};
use crate::server::ShardServer;

/// Smallest socket read, bytes.
const READ_BYTES_MIN: usize = 16 * 1024;
/// Largest socket read, bytes.
const READ_BYTES_MAX: usize = 1024 * 1024;

/// A request whose handler is running, queued for the writer in arrival order.
struct Pending {
    answer: oneshot::Receiver<Answer>,
    api: ApiKey,
    version: i16,
    received: Instant,
    /// Held until the answer is written, so "in flight" covers queued answers too.
    _permit: StaticPermit,
}

/// Serves one Kafka connection until the peer closes it, bad input, or the shard drains.
pub async fn serve(server: Rc<ShardServer>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    // SAFETY: dup of a descriptor we own; the new descriptor is owned by the writer's stream.
    let write_fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if write_fd < 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot dup a Kafka connection's socket");
        return;
    }
    // SAFETY: `write_fd` is a fresh descriptor of a connected TCP socket, owned from here on.
    let write_stream = unsafe { TcpStream::from_raw_fd(write_fd) };
    let limits = &server.shared.config.limits;
    let inflight_max = limits.connection_inflight_requests_max;
    let (queue, answers) = local_channel::new_bounded(inflight_max);
    let permits = Rc::new(Semaphore::new(inflight_max as u64));
    let reader = Reader {
        stream,
        decoder: RequestDecoder::new(limits.frame_bytes_max),
    };
    let writing = glommio::spawn_local(write_loop(server.clone(), write_stream, answers));
    read_loop(&server, reader, queue, permits, peer).await;
    writing.await;
    tracing::debug!(?peer, "Kafka connection closed");
}

struct Reader {
    stream: TcpStream,
    decoder: RequestDecoder,
}

impl Reader {
    /// The next request, `None` at a clean end of stream.
    async fn next(&mut self) -> Result<Option<BytesMut>, KafkaError> {
        loop {
            if let Some(request) = self.decoder.next_request()? {
                return Ok(Some(request));
            }
            let got = self.fill().await;
            if got == 0 {
                return match self.decoder.end_of_stream() {
                    Some(error) => Err(error),
                    None => Ok(None),
                };
            }
        }
    }

    /// Reads once into the decoder's buffer; 0 at end of stream or on a socket error (which
    /// ends the connection the same way).
    async fn fill(&mut self) -> usize {
        let want = self.decoder.read_bytes_hint(READ_BYTES_MIN, READ_BYTES_MAX);
        let mut guard = ReadGuard::new(self.decoder.buffer_mut(), want);
        let got = match self.stream.read(guard.unfilled()).await {
            Ok(got) => got,
            Err(error) => {
                tracing::debug!(%error, "Kafka connection read failed");
                0
            }
        };
        guard.commit(got);
        self.decoder.record_read(got);
        got
    }
}

/// Extends a buffer with zeroed room for one read and, however the read ends (completion or a
/// dropped future), trims it back to the bytes received.
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

/// What the reader does with one framed request.
enum Next {
    /// Queue this request's handler.
    Handle(RequestHeader, sluice_kafka::Request),
    /// Queue this ready answer (ApiVersions at an unknown version).
    Answer(RequestHeader, Answer),
    /// Close the connection after the earlier answers.
    Close,
}

async fn read_loop(
    server: &Rc<ShardServer>,
    mut reader: Reader,
    queue: LocalSender<Pending>,
    permits: Rc<Semaphore>,
    peer: Option<std::net::SocketAddr>,
) {
    loop {
        let next = futures_lite::future::or(async { Some(reader.next().await) }, async {
            server.stop.wait().await;
            None
        })
        .await;
        let request = match next {
            // Draining: read no more requests; the ones already read are still answered.
            None | Some(Ok(None)) => return,
            Some(Ok(Some(request))) => request,
            Some(Err(error)) => {
                refuse(server, &error);
                return;
            }
        };
        let (header, answer) = match admit(server, request) {
            Next::Close => return,
            Next::Answer(header, answer) => {
                let (sender, receiver) = oneshot::channel();
                let _ = sender.send(answer);
                (header, receiver)
            }
            Next::Handle(header, request) => {
                let (sender, receiver) = oneshot::channel();
                let handling = server.clone();
                let handled_header = header.clone();
                // Detached: a handler is never cancelled half-way (an append runs to
                // completion even if the connection goes away); its answer is dropped then.
                glommio::spawn_local(async move {
                    let answer = dispatch::handle(&handling, &handled_header, request, peer).await;
                    let _ = sender.send(answer);
                })
                .detach();
                (header, receiver)
            }
        };
        if !enqueue(&queue, &permits, &header, answer).await {
            return;
        }
    }
}

async fn enqueue(
    queue: &LocalSender<Pending>,
    permits: &Rc<Semaphore>,
    header: &RequestHeader,
    answer: oneshot::Receiver<Answer>,
) -> bool {
    let Ok(permit) = permits.acquire_static_permit(1).await else {
        return false;
    };
    let pending = Pending {
        answer,
        api: header.api,
        version: header.api_version,
        received: Instant::now(),
        _permit: permit,
    };
    queue.send(pending).await.is_ok()
}

/// Splits, checks and decodes one request.
fn admit(server: &ShardServer, request: BytesMut) -> Next {
    let (header, body) = match split_request(request) {
        Ok(split) => split,
        Err(error) => {
            refuse(server, &error);
            return Next::Close;
        }
    };
    let Some(kafka) = server.shared.kafka.as_ref() else {
        return Next::Close;
    };
    if let Err(error) = check_supported(&header, &kafka.apis) {
        if header.api == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and the supported list, so the
            // client can retry with a version both sides know.
            server
                .metrics()
                .protocol_error(ProtocolErrorKind::UnsupportedVersion);
            return match api_versions_unsupported(&header, &kafka.apis) {
                Ok(bytes) => {
                    let answer = Answer::Respond {
                        parts: vec![PayloadPart::Memory(bytes)],
                        failed: true,
                    };
                    Next::Answer(header, answer)
                }
                Err(_) => Next::Close,
            };
        }
        refuse(server, &error);
        return Next::Close;
    }
    match decode_request(&header, body) {
        Ok(request) => Next::Handle(header, request),
        Err(error) => {
            kafka_metrics(server).refused(header.api, header.api_version);
            refuse(server, &error);
            Next::Close
        }
    }
}

/// The Kafka metrics of the shard `server` runs on.
pub(crate) fn kafka_metrics(server: &ShardServer) -> &super::KafkaMetrics {
    let kafka = server
        .shared
        .kafka
        .as_ref()
        .expect("Kafka connections exist only when the Kafka port is on");
    &kafka.metrics[server.shard.id().index()]
}

/// Counts `error` as bad input (unless it is the peer's socket going away) and logs it.
fn refuse(server: &ShardServer, error: &KafkaError) {
    let kind = match error {
        KafkaError::BadSize { .. } | KafkaError::BadHeader { .. } => {
            ProtocolErrorKind::MalformedFrame
        }
        KafkaError::TooLarge { .. } => ProtocolErrorKind::FrameTooLarge,
        KafkaError::Truncated { .. } => ProtocolErrorKind::TruncatedFrame,
        KafkaError::UnknownApi { .. } | KafkaError::UnsupportedApi { .. } => {
            ProtocolErrorKind::UnknownApi
        }
        KafkaError::UnsupportedVersion { .. } => ProtocolErrorKind::UnsupportedVersion,
        KafkaError::BadBody { .. }
        | KafkaError::DecoderPanicked { .. }
        | KafkaError::Encode { .. } => ProtocolErrorKind::InvalidRequest,
    };
    server.metrics().protocol_error(kind);
    tracing::debug!(%error, "closing a Kafka connection after bad input");
}

async fn write_loop(
    server: Rc<ShardServer>,
    mut stream: TcpStream,
    answers: LocalReceiver<Pending>,
) {
    while let Some(pending) = answers.recv().await {
        let Ok(answer) = pending.answer.await else {
            // A handler vanished without answering: the answers can no longer be kept in
            // order, so the connection ends.
            break;
        };
        let (written, failed) = match answer {
            Answer::Respond { parts, failed } => {
                let written = write_parts(&server, &mut stream, &parts).await;
                (written.map_err(|error| error.to_string()), failed)
            }
            Answer::Silent => (Ok(()), false),
            Answer::Close => (Err("closing after a refused request".to_owned()), true),
        };
        let micros = u64::try_from(pending.received.elapsed().as_micros()).unwrap_or(u64::MAX);
        kafka_metrics(&server).observe(pending.api, pending.version, micros, failed);
        if let Err(error) = written {
            tracing::debug!(%error, "closing a Kafka connection");
            break;
        }
    }
    // Stop the reader too (it may be waiting for bytes): shut the socket down both ways.
    // SAFETY: shutdown on a descriptor this connection owns.
    unsafe {
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR);
    }
}

/// Writes one answer: runs of memory parts in gathered sends (no copy), file parts spliced
/// from the page cache. A failure part-way leaves a partial answer on the wire: the caller
/// closes.
async fn write_parts(
    server: &ShardServer,
    stream: &mut TcpStream,
    parts: &[PayloadPart],
) -> Result<(), NetError> {
    sluice_net::write_payload_parts(stream, parts).await?;
    let spliced = parts
        .iter()
        .any(|part| matches!(part, PayloadPart::File { .. }));
    if spliced {
        if let Ok(splicer) = sluice_net::local_splicer() {
            server.account_splice(splicer.stats());
        }
    }
    Ok(())
}
