//! One client connection: a reader that parses frames and starts each request's handler (at
//! most `connection_inflight_requests_max` in flight), and a writer that sends the responses in
//! request order, so pipelined requests on one connection are answered in order.
//!
//! The reader and the writer each own a descriptor of the same socket (the writer's is a
//! `dup`), so reading the next request never waits for a response to be written and vice
//! versa, without any lock.

use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::Instant;

use futures_channel::oneshot;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use sluice_net::{ApiKey, Connection, Frame, NetError};
use sluice_shard::ProtocolErrorKind;

use super::handlers::{self, Outcome, Outgoing};
use super::produce::ProduceCheck;
use super::ShardServer;

/// A request whose handler is running, queued for the writer in arrival order.
struct Pending {
    answer: oneshot::Receiver<Outcome>,
    api: u16,
    received: Instant,
    /// Held until the response is written, so "in flight" covers queued responses too.
    _permit: StaticPermit,
}

/// Serves one connection until the peer closes it, a fatal protocol error, or the shard drains.
pub async fn serve(server: Rc<ShardServer>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    // SAFETY: dup of a descriptor we own; the new descriptor is owned by the writer's stream.
    let write_fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if write_fd < 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot dup a connection's socket");
        return;
    }
    // SAFETY: `write_fd` is a fresh descriptor of a connected TCP socket, owned from here on.
    let write_stream = unsafe { TcpStream::from_raw_fd(write_fd) };
    let limits = &server.shared.config.limits;
    let reader = Connection::new(stream, limits.frame_bytes_max);
    let writer = Connection::new(write_stream, limits.frame_bytes_max);
    let inflight_max = limits.connection_inflight_requests_max;
    let (queue, responses) = local_channel::new_bounded(inflight_max);
    let permits = Rc::new(Semaphore::new(inflight_max as u64));
    let writing = glommio::spawn_local(write_loop(server.clone(), writer, responses));
    read_loop(&server, reader, queue, permits, peer).await;
    writing.await;
    tracing::debug!(?peer, "connection closed");
}

async fn read_loop(
    server: &Rc<ShardServer>,
    mut reader: Connection,
    queue: LocalSender<Pending>,
    permits: Rc<Semaphore>,
    peer: Option<std::net::SocketAddr>,
) {
    let mut check = ProduceCheck::new(server.shared.config.limits.frame_bytes_max);
    loop {
        let mut observer = |received: &[u8]| check.observe(received);
        let reading = reader.read_frame_observed(&mut observer);
        let next = futures_lite::future::or(async { Some(reading.await) }, async {
            server.stop.wait().await;
            None
        })
        .await;
        let crc_verified = check.take();
        let frame = match next {
            // Draining: read no more requests; the ones already read are still answered.
            None => return,
            Some(Ok(None)) => return,
            Some(Ok(Some(frame))) => frame,
            Some(Err(error)) => {
                count_frame_error(server, &error);
                tracing::debug!(%error, "closing connection after a frame error");
                return;
            }
        };
        if let Err(kind) = check_request_frame(&frame) {
            server.metrics().protocol_error(kind);
            tracing::debug!(
                api = frame.header.api,
                ?kind,
                "closing connection: frame is not a request this broker can answer"
            );
            return;
        }
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            return;
        };
        let received = Instant::now();
        let api = frame.header.api;
        let (answer_sender, answer) = oneshot::channel();
        let handling = server.clone();
        // Detached: a handler is never cancelled half-way (an append runs to completion even if
        // the connection goes away); its answer is simply dropped then.
        glommio::spawn_local(async move {
            let outcome = handlers::handle(&handling, frame, crc_verified, peer).await;
            let _ = answer_sender.send(outcome);
        })
        .detach();
        let pending = Pending {
            answer,
            api,
            received,
            _permit: permit,
        };
        if queue.send(pending).await.is_err() {
            return;
        }
    }
}

/// A frame the reader cannot hand to a handler: an unknown api (no response type exists for
/// it, so, as Kafka does, the connection is closed) or a frame flagged as a response.
fn check_request_frame(frame: &Frame) -> Result<(), ProtocolErrorKind> {
    if frame.header.is_response() {
        return Err(ProtocolErrorKind::MalformedFrame);
    }
    ApiKey::try_from(frame.header.api).map_err(|_| ProtocolErrorKind::UnknownApi)?;
    Ok(())
}

fn count_frame_error(server: &ShardServer, error: &NetError) {
    let kind = match error {
        NetError::FrameTooLarge { .. } | NetError::ControlTooLarge { .. } => {
            ProtocolErrorKind::FrameTooLarge
        }
        NetError::ConnectionClosedMidFrame { .. } => ProtocolErrorKind::TruncatedFrame,
        NetError::Malformed { .. } => ProtocolErrorKind::MalformedFrame,
        // A socket error (reset by peer) is not bad input.
        _ => return,
    };
    server.metrics().protocol_error(kind);
}

async fn write_loop(
    server: Rc<ShardServer>,
    mut writer: Connection,
    responses: LocalReceiver<Pending>,
) {
    while let Some(pending) = responses.recv().await {
        let Ok(outcome) = pending.answer.await else {
            // A handler vanished without answering: the responses can no longer be kept in
            // order, so the connection ends.
            break;
        };
        let written = match outcome {
            Outcome::Respond(outgoing) => write_response(&server, &mut writer, outgoing).await,
            Outcome::Silent => Ok(()),
            Outcome::Close => Err(NetError::Io(std::io::Error::other(
                "closing the connection after a failed acks=0 produce",
            ))),
        };
        let micros = u64::try_from(pending.received.elapsed().as_micros()).unwrap_or(u64::MAX);
        server.metrics().observe_latency(pending.api, micros);
        if let Err(error) = written {
            tracing::debug!(%error, "closing connection");
            break;
        }
    }
    // Stop the reader too (it may be waiting for bytes): shut the socket down in both
    // directions. Harmless when the peer already closed it.
    // SAFETY: shutdown on a descriptor this connection owns.
    unsafe {
        libc::shutdown(writer.raw_fd(), libc::SHUT_RDWR);
    }
}

async fn write_response(
    server: &ShardServer,
    writer: &mut Connection,
    outgoing: Outgoing,
) -> Result<(), NetError> {
    use handlers::Body;
    let header = outgoing.header;
    match outgoing.body {
        Body::ApiVersions(body) => writer.write_frame(header, &body, &[]).await,
        Body::Metadata(body) => writer.write_frame(header, &body, &[]).await,
        Body::CreateTopics(body) => writer.write_frame(header, &body, &[]).await,
        Body::DeleteTopics(body) => writer.write_frame(header, &body, &[]).await,
        Body::Produce(body) => writer.write_frame(header, &body, &[]).await,
        Body::ListOffsets(body) => writer.write_frame(header, &body, &[]).await,
        Body::OffsetForLeaderEpoch(body) => writer.write_frame(header, &body, &[]).await,
        Body::InitProducerId(body) => writer.write_frame(header, &body, &[]).await,
        Body::Group(body) => body.write(header, writer).await,
        Body::Reassign(body) => body.write(header, writer).await,
        Body::CreatePartitions(body) => writer.write_frame(header, &body, &[]).await,
        Body::AlterTopicConfigs(body) => writer.write_frame(header, &body, &[]).await,
        Body::ElectLeaders(body) => writer.write_frame(header, &body, &[]).await,
        Body::Fetch(body, parts) => {
            let result = writer.write_frame_parts(header, &body, &parts).await;
            let mut memory_bytes = 0u64;
            let mut total_bytes = 0u64;
            for part in &parts {
                total_bytes += part.len() as u64;
                if let sluice_net::PayloadPart::Memory(bytes) = part {
                    memory_bytes += bytes.len() as u64;
                }
            }
            let metrics = server.metrics();
            metrics.bytes_out.add(total_bytes);
            metrics.bytes_copied.add(memory_bytes);
            if let Ok(splicer) = sluice_net::local_splicer() {
                server.account_splice(splicer.stats());
            }
            result
        }
    }
}
