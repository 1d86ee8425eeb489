//! Connections over real loopback sockets on a glommio executor: pipelined frames, spliced file
//! payloads, the copying fallback, and broken peers.

// Tests and their helpers may unwrap: a failure should stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use sluice_net::*;

use common::pattern;

const FOUR_MIB: usize = 4 * 1024 * 1024;

fn run<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .unwrap()
        .run(test());
}

/// A listener on 127.0.0.1 with a free port.
fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// A file of `len` pattern bytes in a fresh temporary directory.
fn pattern_file(len: usize, seed: u64) -> (tempfile::TempDir, Rc<std::fs::File>, Vec<u8>) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("segment.log");
    let contents = pattern(len, seed);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&contents)
        .unwrap();
    let file = Rc::new(std::fs::File::open(&path).unwrap());
    (directory, file, contents)
}

/// Kernel send and receive buffer of a socket whose writer must find it full, in bytes.
const CAPPED_SOCKET_BUFFER_BYTES: libc::c_int = 64 * 1024;

/// Caps a socket's send and receive buffers (which also ends their autotuning).
fn cap_socket_buffers(fd: RawFd) {
    for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        let value = CAPPED_SOCKET_BUFFER_BYTES;
        // SAFETY: setsockopt on an open socket with a c_int option value of the right size.
        let result = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                std::ptr::addr_of!(value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(result, 0, "setsockopt: {}", std::io::Error::last_os_error());
    }
}

fn fetch_result(records_bytes: usize) -> FetchResponse {
    FetchResponse {
        partitions: vec![FetchPartitionResult {
            topic: "orders".into(),
            partition: 3,
            error: ErrorCode::None.code(),
            high_watermark: 10,
            log_start_offset: 0,
            log_end_offset: 10,
            records_bytes: records_bytes as u32,
            current_leader: -1,
        }],
    }
}

// A client pipelines 100 produce requests of varied payload sizes without waiting; an echo
// server answers each in order, and every response carries its request's correlation id,
// api, RESPONSE flag and byte-identical payload.
#[test]
fn pipelined_frames_round_trip_in_order() {
    run(|| async {
        let (listener, address) = listen();
        let server = glommio::spawn_local(async move {
            let mut connection = Connection::new(listener.accept().await.unwrap(), FRAME_BYTES_MAX);
            let mut answered = 0u32;
            while let Some(frame) = connection.read_frame().await.unwrap() {
                let request = frame.decode::<ProduceRequest>().unwrap();
                let response = ProduceResponse {
                    partitions: vec![ProducePartitionResult {
                        topic: request.partitions[0].topic.clone(),
                        partition: 0,
                        error: 0,
                        base_offset: i64::from(frame.header.correlation_id),
                        log_start_offset: 0,
                        message: None,
                        current_leader: -1,
                    }],
                };
                let header = frame.header.response();
                connection
                    .write_frame(header, &response, &[frame.payload.freeze()])
                    .await
                    .unwrap();
                answered += 1;
            }
            answered
        });
        let stream = TcpStream::connect(address).await.unwrap();
        let mut client = Connection::new(stream, FRAME_BYTES_MAX);
        let payloads: Vec<Bytes> = (0..100u64)
            .map(|index| Bytes::from(pattern((index as usize * 37) % 700, index)))
            .collect();
        for (index, payload) in payloads.iter().enumerate() {
            let request = ProduceRequest {
                acks: 1,
                timeout_ms: 1000,
                partitions: vec![ProducePartition {
                    topic: format!("topic-{index}"),
                    partition: 0,
                    records_bytes: payload.len() as u32,
                }],
            };
            let header = FrameHeader::request(ApiKey::Produce, 0, 1000 + index as u32);
            client
                .write_frame(header, &request, std::slice::from_ref(payload))
                .await
                .unwrap();
        }
        for (index, payload) in payloads.iter().enumerate() {
            let frame = client.read_frame().await.unwrap().unwrap();
            assert!(frame.header.is_response());
            assert_eq!(frame.header.api_key().unwrap(), ApiKey::Produce);
            assert_eq!(frame.header.correlation_id, 1000 + index as u32);
            let response = frame.decode::<ProduceResponse>().unwrap();
            assert_eq!(response.partitions[0].topic, format!("topic-{index}"));
            assert_eq!(response.partitions[0].base_offset, 1000 + index as i64);
            assert_eq!(frame.payload, *payload);
        }
        drop(client);
        assert_eq!(server.await, 100);
    });
}

// A fetch response whose payload is a memory part, a 4 MiB file range and an unaligned file
// range arrives byte-identical, and the splicer's counters show the file bytes were spliced,
// not copied.
#[test]
fn file_payload_is_spliced_byte_identical() {
    run(|| async {
        let (_directory, file, contents) = pattern_file(FOUR_MIB + 10_000, 7);
        let (listener, address) = listen();
        let splicer = local_splicer().unwrap();
        let before = splicer.stats();
        let memory = Bytes::from_static(b"tail-cache bytes");
        let parts = vec![
            PayloadPart::Memory(memory.clone()),
            PayloadPart::File {
                file: file.clone(),
                position: 0,
                len: FOUR_MIB,
            },
            PayloadPart::File {
                file: file.clone(),
                position: 4097,
                len: 5_003,
            },
        ];
        let payload_len: usize = parts.iter().map(PayloadPart::len).sum();
        let server = glommio::spawn_local(async move {
            let mut connection = Connection::new(listener.accept().await.unwrap(), FRAME_BYTES_MAX);
            let request = connection.read_frame().await.unwrap().unwrap();
            let header = request.header.response();
            connection
                .write_frame_parts(header, &fetch_result(payload_len), &parts)
                .await
                .unwrap();
        });
        let mut client =
            Connection::new(TcpStream::connect(address).await.unwrap(), FRAME_BYTES_MAX);
        let fetch = FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: u32::MAX,
            partitions: vec![],
        };
        client
            .write_frame(FrameHeader::request(ApiKey::Fetch, 0, 42), &fetch, &[])
            .await
            .unwrap();
        let frame = client.read_frame().await.unwrap().unwrap();
        server.await;
        assert_eq!(frame.header.correlation_id, 42);
        assert_eq!(
            frame.decode::<FetchResponse>().unwrap(),
            fetch_result(payload_len)
        );
        let mut expected = memory.to_vec();
        expected.extend_from_slice(&contents[..FOUR_MIB]);
        expected.extend_from_slice(&contents[4097..4097 + 5_003]);
        assert_eq!(frame.payload.len(), expected.len());
        assert!(
            frame.payload[..] == expected[..],
            "payload differs from the file"
        );
        let after = splicer.stats();
        assert_eq!(
            after.bytes_spliced - before.bytes_spliced,
            (FOUR_MIB + 5_003) as u64
        );
        assert_eq!(after.bytes_copied, before.bytes_copied);
        assert!(after.splice_calls > before.splice_calls);
    });
}

// A frame of 300 memory parts (as a fetch of tail-cache pieces) around a file part arrives whole
// and in order through socket buffers capped far below it: gathered sends resume after a full
// socket. The writer cannot avoid a full socket: the 6.8 MB of parts before the file part are
// sent without yielding to the reader (same executor) until the socket refuses more.
#[test]
fn many_memory_parts_past_a_full_socket_arrive_in_order() {
    run(|| async {
        let (_directory, file, contents) = pattern_file(FOUR_MIB, 5);
        let pieces: Vec<Bytes> = (0..300u64)
            .map(|index| Bytes::from(pattern(1 + (index as usize * 7_919) % 90_000, index)))
            .collect();
        let mut parts: Vec<PayloadPart> = pieces.iter().cloned().map(PayloadPart::Memory).collect();
        parts.insert(
            150,
            PayloadPart::File {
                file: file.clone(),
                position: 0,
                len: FOUR_MIB,
            },
        );
        let payload_len: usize = parts.iter().map(PayloadPart::len).sum();
        assert!(payload_len < FRAME_BYTES_MAX);
        let (listener, address) = listen();
        let server = glommio::spawn_local(async move {
            let stream = listener.accept().await.unwrap();
            cap_socket_buffers(stream.as_raw_fd());
            let mut connection = Connection::new(stream, FRAME_BYTES_MAX);
            let header = FrameHeader::request(ApiKey::Fetch, 0, 7).response();
            connection
                .write_frame_parts(header, &fetch_result(payload_len), &parts)
                .await
                .unwrap();
        });
        let stream = TcpStream::connect(address).await.unwrap();
        cap_socket_buffers(stream.as_raw_fd());
        let mut client = Connection::new(stream, FRAME_BYTES_MAX);
        let frame = client.read_frame().await.unwrap().unwrap();
        server.await;
        let mut expected: Vec<u8> = pieces[..150].concat();
        expected.extend_from_slice(&contents);
        expected.extend_from_slice(&pieces[150..].concat());
        assert_eq!(frame.payload.len(), expected.len());
        assert!(frame.payload[..] == expected[..], "payload out of order");
    });
}

// Three connections receive different file ranges at the same time through one splicer (its
// lanes run concurrently); each receives exactly its own bytes.
#[test]
fn concurrent_spliced_sends_do_not_mix() {
    run(|| async {
        let (_directory, file, contents) = pattern_file(3 * 1024 * 1024, 11);
        let (listener, address) = listen();
        let listener = Rc::new(listener);
        let mut servers = Vec::new();
        for index in 0..3usize {
            let listener = listener.clone();
            let file = file.clone();
            servers.push(glommio::spawn_local(async move {
                let stream = listener.accept().await.unwrap();
                let mut connection = Connection::new(stream, FRAME_BYTES_MAX);
                let request = connection.read_frame().await.unwrap().unwrap();
                let slot = request.decode::<FetchRequest>().unwrap().partitions[0].partition as u64;
                let part = PayloadPart::File {
                    file,
                    position: slot * 1024 * 1024 + 13,
                    len: 1024 * 1024 - 13,
                };
                let header = request.header.response();
                let body = fetch_result(part.len());
                connection
                    .write_frame_parts(header, &body, &[part])
                    .await
                    .unwrap();
                index
            }));
        }
        let mut clients = Vec::new();
        for slot in 0..3i32 {
            clients.push(glommio::spawn_local(async move {
                let stream = TcpStream::connect(address).await.unwrap();
                let mut client = Connection::new(stream, FRAME_BYTES_MAX);
                let fetch = FetchRequest {
                    replica_id: -1,
                    max_wait_ms: 0,
                    min_bytes: 1,
                    max_bytes: u32::MAX,
                    partitions: vec![FetchPartition {
                        topic: "orders".into(),
                        partition: slot,
                        fetch_offset: 0,
                        partition_max_bytes: u32::MAX,
                        current_leader_epoch: -1,
                    }],
                };
                let header = FrameHeader::request(ApiKey::Fetch, 0, slot as u32);
                client.write_frame(header, &fetch, &[]).await.unwrap();
                (slot, client.read_frame().await.unwrap().unwrap())
            }));
        }
        for client in clients {
            let (slot, frame) = client.await;
            let start = slot as usize * 1024 * 1024 + 13;
            assert_eq!(frame.header.correlation_id, slot as u32);
            assert!(frame.payload[..] == contents[start..start + 1024 * 1024 - 13]);
        }
        for server in servers {
            server.await;
        }
    });
}

// A file the kernel cannot splice (procfs) is still sent byte-identical, through the copying
// fallback, which the counters report as copied.
#[test]
fn unspliceable_file_falls_back_to_copying() {
    run(|| async {
        let path = "/proc/self/cmdline";
        let contents = std::fs::read(path).unwrap();
        let file = Rc::new(std::fs::File::open(path).unwrap());
        let splice_refused = kernel_refuses_splice(&file);
        let (listener, address) = listen();
        let splicer = Rc::new(Splicer::new(8, 64 * 1024).unwrap());
        let server_splicer = splicer.clone();
        let len = contents.len();
        let server = glommio::spawn_local(async move {
            let stream = listener.accept().await.unwrap();
            let mut connection =
                Connection::new(stream, FRAME_BYTES_MAX).with_splicer(server_splicer);
            let part = PayloadPart::File {
                file,
                position: 0,
                len,
            };
            let header = FrameHeader::request(ApiKey::Fetch, 0, 5).response();
            connection
                .write_frame_parts(header, &fetch_result(len), &[part])
                .await
                .unwrap();
        });
        let mut client =
            Connection::new(TcpStream::connect(address).await.unwrap(), FRAME_BYTES_MAX);
        let frame = client.read_frame().await.unwrap().unwrap();
        server.await;
        assert_eq!(frame.payload, contents);
        let stats = splicer.stats();
        assert_eq!(stats.bytes_copied + stats.bytes_spliced, len as u64);
        if splice_refused {
            assert_eq!(stats.bytes_copied, len as u64);
        }
    });
}

/// Whether splice(2) from `file` into a pipe fails with EINVAL on this kernel.
fn kernel_refuses_splice(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors; all descriptors are closed below.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let mut offset: libc::loff_t = 0;
        let moved = libc::splice(
            file.as_raw_fd(),
            &mut offset,
            fds[1],
            std::ptr::null_mut(),
            16,
            0,
        );
        let refused =
            moved < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL);
        libc::close(fds[0]);
        libc::close(fds[1]);
        refused
    }
}

// A file part that runs past the end of its file fails with a typed FilePart error naming the
// range, instead of hanging or sending short.
#[test]
fn file_range_past_end_of_file_is_a_typed_error() {
    run(|| async {
        let (_directory, file, _) = pattern_file(10_000, 3);
        let (listener, address) = listen();
        let reader = glommio::spawn_local(async move {
            let mut connection = Connection::new(listener.accept().await.unwrap(), FRAME_BYTES_MAX);
            connection.read_frame().await
        });
        let mut client =
            Connection::new(TcpStream::connect(address).await.unwrap(), FRAME_BYTES_MAX);
        let part = PayloadPart::File {
            file,
            position: 8_000,
            len: 4_000,
        };
        let header = FrameHeader::request(ApiKey::Fetch, 0, 1).response();
        let error = client
            .write_frame_parts(header, &fetch_result(4_000), &[part])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NetError::FilePart { position: 8_000, len: 4_000, source }
                if source.kind() == std::io::ErrorKind::UnexpectedEof),
            "{error:?}"
        );
        drop(client);
        // The receiver sees a frame cut short, reported as such.
        let received = reader.await;
        assert!(
            matches!(received, Err(NetError::ConnectionClosedMidFrame { .. })),
            "{received:?}"
        );
    });
}

// A peer that closes between frames ends read_frame with None; one that closes mid-frame, or
// sends a frame over the bound, gets a typed error.
#[test]
fn peer_close_and_oversized_frames_are_reported() {
    run(|| async {
        let (listener, address) = listen();
        let server = glommio::spawn_local(async move {
            let mut outcomes = Vec::new();
            for _ in 0..3 {
                let mut connection = Connection::new(listener.accept().await.unwrap(), 4096);
                outcomes.push(connection.read_frame().await.map(|frame| frame.is_some()));
            }
            outcomes
        });
        let header = FrameHeader::request(ApiKey::Metadata, 0, 1);
        let whole = common::frame_bytes(header, &MetadataRequest { topics: None }, b"");
        // 1: clean close without sending anything.
        drop(TcpStream::connect(address).await.unwrap());
        // 2: half a frame, then close.
        let mut half = TcpStream::connect(address).await.unwrap();
        half.write_all(&whole[..whole.len() / 2]).await.unwrap();
        drop(half);
        // 3: a frame announcing more than the server's 4096-byte bound.
        let mut huge = TcpStream::connect(address).await.unwrap();
        huge.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
        let outcomes = server.await;
        drop(huge);
        assert!(matches!(outcomes[0], Ok(false)), "{:?}", outcomes[0]);
        assert!(
            matches!(outcomes[1], Err(NetError::ConnectionClosedMidFrame { buffered_bytes }) if buffered_bytes == whole.len() / 2),
            "{:?}",
            outcomes[1]
        );
        assert!(
            matches!(outcomes[2], Err(NetError::FrameTooLarge { max: 4096, .. })),
            "{:?}",
            outcomes[2]
        );
    });
}

/// Sends `len` bytes of `file` from offset 0 as one frame over a fresh loopback connection,
/// using `splicer` (or the executor's own), and returns the sender's result and what arrived.
async fn send_file_once(
    file: Rc<std::fs::File>,
    len: usize,
    splicer: Option<Rc<Splicer>>,
) -> (Result<(), NetError>, Option<Bytes>) {
    let (listener, address) = listen();
    let receiver = glommio::spawn_local(async move {
        let mut connection = Connection::new(listener.accept().await.unwrap(), FRAME_BYTES_MAX);
        connection
            .read_frame()
            .await
            .ok()
            .flatten()
            .map(|frame| frame.payload)
    });
    let mut sender = Connection::new(TcpStream::connect(address).await.unwrap(), FRAME_BYTES_MAX);
    if let Some(splicer) = splicer {
        sender = sender.with_splicer(splicer);
    }
    let part = PayloadPart::File {
        file,
        position: 0,
        len,
    };
    let header = FrameHeader::request(ApiKey::Fetch, 0, 1).response();
    let sent = sender
        .write_frame_parts(header, &fetch_result(len), &[part])
        .await;
    drop(sender);
    (sent, receiver.await.map(bytes::BytesMut::freeze))
}

// Two executors run one after the other on the same thread: each gets its own local splicer
// and its spliced sends arrive intact, while a splicer explicitly carried over from the first
// executor is refused with an error instead of touching the dead executor's reactor.
#[test]
fn splicers_stay_on_their_executor() {
    let (_directory, file, contents) = pattern_file(300_000, 5);
    let first = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .unwrap();
    let (carried, first_id) = first.run(async {
        let (sent, received) = send_file_once(file.clone(), contents.len(), None).await;
        sent.unwrap();
        assert!(received.unwrap()[..] == contents[..]);
        let splicer = local_splicer().unwrap();
        assert_eq!(splicer.stats().bytes_spliced, contents.len() as u64);
        (splicer, glommio::executor().id())
    });
    drop(first);
    let second = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .unwrap();
    second.run(async {
        assert_ne!(glommio::executor().id(), first_id);
        let (sent, received) = send_file_once(file.clone(), contents.len(), None).await;
        sent.unwrap();
        assert!(received.unwrap()[..] == contents[..]);
        let splicer = local_splicer().unwrap();
        assert!(!Rc::ptr_eq(&splicer, &carried));
        assert_eq!(splicer.stats().bytes_spliced, contents.len() as u64);
        let (sent, _) = send_file_once(file.clone(), contents.len(), Some(carried.clone())).await;
        assert!(matches!(sent, Err(NetError::FilePart { .. })), "{sent:?}");
    });
}
