//! Blocking one-shot native-protocol requests from the test thread (Metadata, and a Fetch that
//! reads a partition's high watermark), each on its own short-lived TCP connection with connect
//! and read timeouts, so asking a stopped or unreachable broker fails fast instead of hanging.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use sluice_net::{
    encode_frame, ControlDecode, ControlEncode, FetchPartition, FetchRequest, FetchResponse,
    FrameDecoder, FrameHeader, Message, MetadataRequest, MetadataResponse, FRAME_BYTES_MAX,
};

/// Bound on opening the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on each read and write of one request.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Sends one request to `addr` and returns the decoded response, or why it failed.
pub fn call<Req, Resp>(addr: &str, request: &Req) -> Result<Resp, String>
where
    Req: Message + ControlEncode,
    Resp: Message + ControlDecode,
{
    let socket_addr: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|error| format!("{addr}: {error}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket_addr, CONNECT_TIMEOUT)
        .map_err(|error| format!("connect {addr}: {error}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut out = BytesMut::new();
    encode_frame(&mut out, FrameHeader::request(Req::API, 0, 1), request, 0)
        .map_err(|error| format!("encode for {addr}: {error}"))?;
    stream
        .write_all(&out)
        .map_err(|error| format!("write to {addr}: {error}"))?;
    let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX);
    let mut chunk = vec![0_u8; READ_CHUNK_BYTES];
    loop {
        if let Some(frame) = decoder
            .next_frame()
            .map_err(|error| format!("frame from {addr}: {error}"))?
        {
            return frame
                .decode::<Resp>()
                .map_err(|error| format!("decode from {addr}: {error}"));
        }
        let read = stream
            .read(&mut chunk)
            .map_err(|error| format!("read from {addr}: {error}"))?;
        if read == 0 {
            return Err(format!("{addr} closed the connection before answering"));
        }
        decoder.buffer_mut().extend_from_slice(&chunk[..read]);
    }
}

/// Metadata for `topics` (every topic when `None`) as broker `addr` sees it.
pub fn metadata(addr: &str, topics: Option<Vec<String>>) -> Result<MetadataResponse, String> {
    call(addr, &MetadataRequest { topics })
}

/// What a consumer fetch from offset 0 reports about a partition on its leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The error code of the partition's answer (0: none).
    pub error: i16,
    /// The leader's high watermark.
    pub high_watermark: i64,
    /// The leader's log end offset.
    pub log_end_offset: i64,
}

/// The high watermark and log end offset of `topic`/`partition` from broker `addr` (which must
/// lead it), through a consumer fetch that does not wait and asks for one byte.
pub fn partition_offsets(
    addr: &str,
    topic: &str,
    partition: i32,
) -> Result<PartitionOffsets, String> {
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1,
        partitions: vec![FetchPartition {
            topic: topic.to_string(),
            partition,
            fetch_offset: 0,
            partition_max_bytes: 1,
            current_leader_epoch: -1,
        }],
    };
    let response: FetchResponse = call(addr, &request)?;
    let answer = response.partitions.first().ok_or_else(|| {
        format!("{addr} answered a fetch of {topic}-{partition} with no partition")
    })?;
    Ok(PartitionOffsets {
        error: answer.error,
        high_watermark: answer.high_watermark,
        log_end_offset: answer.log_end_offset,
    })
}

/// GETs `path` from an admin endpoint; returns (status line, body), or why it failed.
pub fn http_get(addr: &str, path: &str) -> Result<(String, String), String> {
    let socket_addr: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|error| format!("{addr}: {error}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket_addr, CONNECT_TIMEOUT)
        .map_err(|error| format!("connect {addr}: {error}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| format!("write to {addr}: {error}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| format!("read from {addr}: {error}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: no HTTP header in {response:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// The value of the first sample in Prometheus text whose metric name ends with `suffix`
/// (whatever its prefix, such as `sluice_`, and its labels).
pub fn metric_ending_with(metrics: &str, suffix: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.split(['{', ' '])
                .next()
                .is_some_and(|name| name.ends_with(suffix))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
}
