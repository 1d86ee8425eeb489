//! One TCP connection to one broker port (a shard's own port, or the shared native port), with
//! pipelined requests: callers queue frames for a writer task, a reader task hands each
//! response to its request by correlation id, in order.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;
use sluice_net::frame::{ControlDecode, ControlEncode, Frame, FrameHeader};
use sluice_net::messages::Message;
use sluice_net::{encode_frame, FrameDecoder, NetError};

use crate::error::ClientError;

/// Version of every api this client speaks (the broker implements version 0 of each).
const API_VERSION: u16 = 0;

/// Requests in flight on one connection at once, over all users of the client. The producer
/// keeps its own, smaller bound per connection (`inflight_requests_max`).
pub(crate) const CONNECTION_REQUESTS_INFLIGHT_MAX: usize = 64;

/// Smallest socket read, in bytes.
const READ_BYTES_MIN: usize = 64 * 1024;

/// Largest socket read, in bytes: a large frame arrives in pieces of at most this size. Small
/// enough that a piece is still in the cache when a `FrameObserver` checks it (with 1 MiB
/// reads the load generator's CRC share was 7.9 % of its core, with 256 KiB 6.3 %, 2026-12-07).
const READ_BYTES_MAX: usize = 256 * 1024;

/// Payload parts up to this size are copied behind the frame header so several small frames go
/// out in one send; larger parts are written from their own buffers.
const WRITE_COALESCE_BYTES_MAX: usize = 64 * 1024;

/// Shown the response frame's bytes received so far (prefix included) after each socket read
/// while the frame arrives, and once more when it is whole.
pub(crate) type FrameObserver = Box<dyn FnMut(&[u8])>;

/// A request waiting for its response.
struct Pending {
    correlation_id: u32,
    reply: oneshot::Sender<Result<Frame, ClientError>>,
    observer: Option<FrameObserver>,
}

/// A frame waiting for the writer.
struct Outgoing {
    head: Bytes,
    payload: Vec<Bytes>,
    /// Told when the frame was written (requests that get no response).
    written: Option<oneshot::Sender<Result<(), ClientError>>>,
}

/// State shared by the connection's handle, its writer task and its reader task. Lives on the
/// client's executor.
struct Shared {
    addr: String,
    stream: RefCell<TcpStream>,
    inflight: Semaphore,
    pending: RefCell<VecDeque<Pending>>,
    outgoing: RefCell<VecDeque<Outgoing>>,
    writer_wake: crate::notify::Notify,
    reader_stop: crate::notify::Notify,
    failure: RefCell<Option<String>>,
    next_correlation_id: Cell<u32>,
}

impl Shared {
    fn lost(&self) -> ClientError {
        ClientError::ConnectionLost {
            addr: self.addr.clone(),
            reason: self
                .failure
                .borrow()
                .clone()
                .unwrap_or_else(|| "connection closed".to_string()),
        }
    }

    fn check_alive(&self) -> Result<(), ClientError> {
        if self.failure.borrow().is_some() {
            return Err(self.lost());
        }
        Ok(())
    }

    /// Marks the connection broken: every queued and in-flight request fails, both tasks stop,
    /// and the socket closes once the last handle is gone. Only the first reason is kept.
    fn fail(&self, reason: String) {
        if self.failure.borrow().is_some() {
            return;
        }
        tracing::debug!(addr = %self.addr, %reason, "broker connection failed");
        *self.failure.borrow_mut() = Some(reason);
        self.inflight.close();
        let pending: Vec<Pending> = self.pending.borrow_mut().drain(..).collect();
        for request in pending {
            // The requester may have given up already; nobody is left to tell then.
            let _ = request.reply.send(Err(self.lost()));
        }
        let outgoing: Vec<Outgoing> = self.outgoing.borrow_mut().drain(..).collect();
        for frame in outgoing {
            if let Some(written) = frame.written {
                let _ = written.send(Err(self.lost()));
            }
        }
        self.writer_wake.notify();
        self.reader_stop.notify();
    }

    /// Hands a response to the oldest waiting request; a response nobody asked for, or out of
    /// order, breaks the connection (the broker answers in request order).
    fn dispatch(&self, frame: Frame) {
        let next = self.pending.borrow_mut().pop_front();
        let Some(request) = next else {
            self.fail(format!(
                "response with correlation id {} matches no request",
                frame.header.correlation_id
            ));
            return;
        };
        if request.correlation_id != frame.header.correlation_id || !frame.header.is_response() {
            let reason = format!(
                "expected the response to correlation id {}, got correlation id {} (flags {:#x})",
                request.correlation_id, frame.header.correlation_id, frame.header.flags
            );
            self.pending.borrow_mut().push_front(request);
            self.fail(reason);
            return;
        }
        let _ = request.reply.send(Ok(frame));
    }

    /// Shows the head frame, as far as it has arrived, to the observer of the request it
    /// answers.
    fn observe(&self, decoder: &FrameDecoder) {
        let Some((correlation_id, received)) = decoder.head_frame_prefix() else {
            return;
        };
        let mut pending = self.pending.borrow_mut();
        if let Some(Pending {
            correlation_id: expected,
            observer: Some(observer),
            ..
        }) = pending.front_mut()
        {
            if *expected == correlation_id {
                observer(received);
            }
        }
    }

    /// Reads once from the socket into `buffer`; 0 at end of stream.
    async fn read_some(&self, buffer: &mut [u8]) -> std::io::Result<usize> {
        // The borrow lasts one poll: the writer task borrows the same stream between our polls,
        // which glommio supports (reads and writes have separate reactor sources).
        poll_fn(|context| Pin::new(&mut *self.stream.borrow_mut()).poll_read(context, buffer)).await
    }

    async fn write_all(&self, mut buffer: &[u8]) -> std::io::Result<()> {
        while !buffer.is_empty() {
            let written = poll_fn(|context| {
                Pin::new(&mut *self.stream.borrow_mut()).poll_write(context, buffer)
            })
            .await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            buffer = &buffer[written..];
        }
        Ok(())
    }
}

/// Whether a request is answered.
enum Response {
    /// The broker sends no response (a produce request with acks=0).
    None,
    /// A response comes, shown while it arrives to the observer, if any.
    Awaited(Option<FrameObserver>),
}

/// A connection to one broker port. Dropping it stops its tasks and closes the socket.
pub(crate) struct BrokerConnection {
    shared: Rc<Shared>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for BrokerConnection {
    fn drop(&mut self) {
        self.shared
            .fail("connection closed by the client".to_string());
        for task in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            task.cancel();
        }
    }
}

/// Resolves `addr` (`host:port`) to its first socket address.
fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    let resolved = addr
        .to_socket_addrs()
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    resolved
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Connect {
            addr: addr.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "address resolves to nothing",
            ),
        })
}

impl BrokerConnection {
    /// Opens a connection to `addr` and starts its reader and writer tasks on this executor.
    pub(crate) async fn connect(
        addr: &str,
        frame_bytes_max: usize,
        connect_timeout: Duration,
    ) -> Result<Rc<BrokerConnection>, ClientError> {
        let socket_addr = resolve(addr)?;
        let stream = TcpStream::connect_timeout(socket_addr, connect_timeout)
            .await
            .map_err(|error| ClientError::Connect {
                addr: addr.to_string(),
                source: error.into(),
            })?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%addr, %error, "cannot set TCP_NODELAY; small requests may be delayed");
        }
        let shared = Rc::new(Shared {
            addr: addr.to_string(),
            stream: RefCell::new(stream),
            inflight: Semaphore::new(CONNECTION_REQUESTS_INFLIGHT_MAX as u64),
            pending: RefCell::new(VecDeque::new()),
            outgoing: RefCell::new(VecDeque::new()),
            writer_wake: Default::default(),
            reader_stop: Default::default(),
            failure: RefCell::new(None),
            next_correlation_id: Cell::new(1),
        });
        let reader = glommio::spawn_local(read_loop(Rc::clone(&shared), frame_bytes_max)).detach();
        let writer = glommio::spawn_local(write_loop(Rc::clone(&shared))).detach();
        Ok(Rc::new(BrokerConnection {
            shared,
            reader: Some(reader),
            writer: Some(writer),
        }))
    }

    /// False once the connection failed; the client then opens a new one.
    pub(crate) fn is_alive(&self) -> bool {
        self.shared.failure.borrow().is_none()
    }

    /// Queues a request frame. When a response is `Awaited`, its receiver is returned.
    fn enqueue<Req>(
        &self,
        request: &Req,
        payload: &[Bytes],
        written: Option<oneshot::Sender<Result<(), ClientError>>>,
        response: Response,
    ) -> Result<Option<oneshot::Receiver<Result<Frame, ClientError>>>, ClientError>
    where
        Req: Message + ControlEncode,
    {
        let shared = &self.shared;
        shared.check_alive()?;
        let correlation_id = shared.next_correlation_id.get();
        shared
            .next_correlation_id
            .set(correlation_id.wrapping_add(1));
        let header = FrameHeader::request(Req::API, API_VERSION, correlation_id);
        let payload_bytes = payload.iter().map(Bytes::len).sum();
        let mut head = BytesMut::new();
        encode_frame(&mut head, header, request, payload_bytes)?;
        // Queue the response slot and the frame in one step, with no await in between, so the
        // order of `pending` is the order the frames are written.
        let receiver = match response {
            Response::None => None,
            Response::Awaited(observer) => {
                let (reply, receiver) = oneshot::channel();
                shared.pending.borrow_mut().push_back(Pending {
                    correlation_id,
                    reply,
                    observer,
                });
                Some(receiver)
            }
        };
        shared.outgoing.borrow_mut().push_back(Outgoing {
            head: head.freeze(),
            payload: payload.to_vec(),
            written,
        });
        shared.writer_wake.notify();
        Ok(receiver)
    }

    /// Sends a request and waits up to `timeout` for its response, returning the decoded body
    /// and the payload. A timeout breaks the connection: a late response could otherwise be
    /// taken for the answer to a later request.
    pub(crate) async fn request<Req, Resp>(
        &self,
        request: &Req,
        payload: &[Bytes],
        timeout: Duration,
    ) -> Result<(Resp, Bytes), ClientError>
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        self.request_observed(request, payload, timeout, None).await
    }

    /// [`request`](Self::request), with `observer` shown the response while it arrives.
    pub(crate) async fn request_observed<Req, Resp>(
        &self,
        request: &Req,
        payload: &[Bytes],
        timeout: Duration,
        observer: Option<FrameObserver>,
    ) -> Result<(Resp, Bytes), ClientError>
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        let shared = &self.shared;
        let _permit = shared
            .inflight
            .acquire_permit(1)
            .await
            .map_err(|_| shared.lost())?;
        let Some(receiver) = self.enqueue(request, payload, None, Response::Awaited(observer))?
        else {
            return Err(shared.lost());
        };
        let frame = match with_timeout(timeout, receiver).await {
            None => {
                let reason = format!(
                    "{} request timed out after {} ms",
                    Req::API,
                    timeout.as_millis()
                );
                shared.fail(reason.clone());
                return Err(ClientError::Timeout {
                    op: format!("{reason} (broker {})", shared.addr),
                });
            }
            Some(Err(oneshot::Canceled)) => return Err(shared.lost()),
            Some(Ok(result)) => result?,
        };
        let response = frame.decode::<Resp>()?;
        Ok((response, frame.payload.freeze()))
    }

    /// Sends a request the broker does not answer (Produce with acks=0) and waits until it was
    /// written to the socket.
    pub(crate) async fn send_without_response<Req>(
        &self,
        request: &Req,
        payload: &[Bytes],
        timeout: Duration,
    ) -> Result<(), ClientError>
    where
        Req: Message + ControlEncode,
    {
        let shared = &self.shared;
        let _permit = shared
            .inflight
            .acquire_permit(1)
            .await
            .map_err(|_| shared.lost())?;
        let (written, receiver) = oneshot::channel();
        self.enqueue(request, payload, Some(written), Response::None)?;
        match with_timeout(timeout, receiver).await {
            None => {
                let reason = format!("writing a {} request timed out", Req::API);
                shared.fail(reason.clone());
                Err(ClientError::Timeout {
                    op: format!("{reason} (broker {})", shared.addr),
                })
            }
            Some(Err(oneshot::Canceled)) => Err(shared.lost()),
            Some(Ok(result)) => result,
        }
    }
}

/// Runs `future` for at most `timeout`; `None` when the time ran out first.
pub(crate) async fn with_timeout<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
}

/// Writes queued frames in order, coalescing small ones into one send, until the connection
/// fails.
async fn write_loop(shared: Rc<Shared>) {
    let mut buffer = BytesMut::new();
    loop {
        if shared.failure.borrow().is_some() {
            return;
        }
        let frames: Vec<Outgoing> = shared.outgoing.borrow_mut().drain(..).collect();
        if frames.is_empty() {
            shared.writer_wake.notified().await;
            continue;
        }
        let mut written = Vec::new();
        let mut result = Ok(());
        for frame in frames {
            result = write_frame(&shared, &mut buffer, &frame).await;
            if result.is_err() {
                break;
            }
            written.extend(frame.written);
        }
        if result.is_ok() && !buffer.is_empty() {
            result = shared.write_all(&buffer).await;
            buffer.clear();
        }
        if let Err(error) = result {
            shared.fail(format!("write failed: {error}"));
            return;
        }
        for sender in written {
            let _ = sender.send(Ok(()));
        }
    }
}

/// Appends one frame to the coalescing buffer, writing the buffer out first when a large part
/// follows, and writing large parts straight from their own memory.
async fn write_frame(
    shared: &Shared,
    buffer: &mut BytesMut,
    frame: &Outgoing,
) -> std::io::Result<()> {
    buffer.extend_from_slice(&frame.head);
    for part in &frame.payload {
        if part.len() <= WRITE_COALESCE_BYTES_MAX {
            buffer.extend_from_slice(part);
        } else {
            shared.write_all(buffer).await?;
            buffer.clear();
            shared.write_all(part).await?;
        }
        if buffer.len() >= WRITE_COALESCE_BYTES_MAX {
            shared.write_all(buffer).await?;
            buffer.clear();
        }
    }
    Ok(())
}

/// Reads frames and hands each to its request until the connection fails or the broker closes
/// it.
async fn read_loop(shared: Rc<Shared>, frame_bytes_max: usize) {
    let mut decoder = FrameDecoder::new(frame_bytes_max);
    loop {
        shared.observe(&decoder);
        match decoder.next_frame() {
            Ok(Some(frame)) => {
                shared.dispatch(frame);
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                shared.fail(format!("undecodable frame from the broker: {error}"));
                return;
            }
        }
        if shared.failure.borrow().is_some() {
            return;
        }
        match fill(&shared, &mut decoder).await {
            Some(Ok(0)) => {
                let reason = match decoder.buffered_bytes() {
                    0 => "the broker closed the connection".to_string(),
                    buffered => NetError::ConnectionClosedMidFrame {
                        buffered_bytes: buffered,
                    }
                    .to_string(),
                };
                shared.fail(reason);
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                shared.fail(format!("read failed: {error}"));
                return;
            }
            None => return,
        }
    }
}

/// One socket read into the decoder's buffer; `None` when the connection is being stopped.
async fn fill(shared: &Shared, decoder: &mut FrameDecoder) -> Option<std::io::Result<usize>> {
    // What the socket already holds goes straight into uninitialised buffer space (no zero
    // fill); only when it is empty does the read wait through the reactor.
    let wanted = decoder.bytes_wanted().clamp(READ_BYTES_MIN, READ_BYTES_MAX);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&*shared.stream.borrow());
    match decoder.read_available(fd, wanted) {
        Ok(Some(got)) => return Some(Ok(got)),
        Ok(None) => {}
        Err(error) => return Some(Err(error)),
    }
    let hint = decoder.read_bytes_hint(READ_BYTES_MIN, READ_BYTES_MIN);
    let want = decoder.read_len_fitting(hint);
    let buffer = decoder.buffer_mut();
    let filled = buffer.len();
    buffer.resize(filled + want, 0);
    let result = futures_lite::future::or(
        async { Some(shared.read_some(&mut buffer[filled..]).await) },
        async {
            shared.reader_stop.notified().await;
            None
        },
    )
    .await;
    let got = match &result {
        Some(Ok(got)) => *got,
        _ => 0,
    };
    buffer.truncate(filled + got);
    decoder.record_read(got);
    result
}
