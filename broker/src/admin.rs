//! The admin HTTP endpoint: a small HTTP/1.1 server on its own thread (no async runtime).
//! `GET /metrics` answers Prometheus text, `GET /health` answers `ok` with the shard count (in
//! cluster mode `degraded` while etcd is unreachable: the broker keeps serving its current
//! leadership but cannot change an ISR), anything else is 404. One request per connection
//! (`Connection: close`).
//!
//! It reads the shards' metrics through their atomics and never touches shard state.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use sluice_shard::metrics::render_prometheus;
use sluice_shard::ShardMetrics;

use crate::groups::metrics::GroupMetrics;
use crate::kafka::{render_kafka_metrics, KafkaMetrics};
use crate::replication::ClusterMetrics;
use crate::server::handlers::API_NAMES;

/// Cluster mode's metrics, set once the broker has joined the cluster (the admin endpoint
/// starts before, since its address is part of the broker's registration).
pub type ClusterMetricsSlot = Arc<OnceLock<Arc<ClusterMetrics>>>;

/// Largest request head read, bytes; a longer one is answered 431 and closed.
pub const ADMIN_REQUEST_BYTES_MAX: usize = 8 * 1024;

/// Longest wait for a client to send its request or take the response, in ms.
pub const ADMIN_IO_TIMEOUT_MS: u64 = 5_000;

/// Pause after a failed accept before the next, in ms, so a persistent error does not spin.
const ADMIN_ACCEPT_RETRY_MS: u64 = 50;

/// Bytes read from a client per system call while looking for the end of the request head.
const ADMIN_READ_CHUNK_BYTES: usize = 1024;

/// The running admin endpoint.
pub struct AdminServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AdminServer {
    /// Binds `addr` and serves on a new thread. `cluster` is empty in single-node mode.
    pub fn start(
        addr: SocketAddr,
        metrics: Vec<Arc<ShardMetrics>>,
        groups: Vec<Arc<GroupMetrics>>,
        kafka: Vec<Arc<KafkaMetrics>>,
        cluster: ClusterMetricsSlot,
    ) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let sources = Sources {
            metrics,
            groups,
            kafka,
            cluster,
        };
        let thread = std::thread::Builder::new()
            .name("sluice-admin".to_string())
            .spawn(move || serve(listener, &sources, stopping))?;
        Ok(AdminServer { addr, stop, thread })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the endpoint and joins its thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(ADMIN_IO_TIMEOUT_MS));
        let _ = self.thread.join();
    }
}

/// What the endpoint reports from.
struct Sources {
    metrics: Vec<Arc<ShardMetrics>>,
    groups: Vec<Arc<GroupMetrics>>,
    /// The Kafka port's metrics per shard (empty when the port is off).
    kafka: Vec<Arc<KafkaMetrics>>,
    cluster: ClusterMetricsSlot,
}

fn serve(listener: TcpListener, sources: &Sources, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match stream {
            Ok(stream) => {
                if let Err(error) = answer(stream, sources) {
                    tracing::debug!(%error, "admin request failed");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                std::thread::sleep(Duration::from_millis(ADMIN_ACCEPT_RETRY_MS));
            }
        }
    }
}

/// Reads the request head, up to the blank line or the size bound.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; ADMIN_READ_CHUNK_BYTES];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > ADMIN_REQUEST_BYTES_MAX {
            return Ok(None);
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

fn answer(mut stream: TcpStream, sources: &Sources) -> std::io::Result<()> {
    let metrics = &sources.metrics;
    let timeout = Some(Duration::from_millis(ADMIN_IO_TIMEOUT_MS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let Some(head) = read_head(&mut stream)? else {
        return respond(
            &mut stream,
            "431 Request Header Fields Too Large",
            "text/plain",
            "request head too large\n",
        );
    };
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => {
            let mut body = render_prometheus(metrics, &API_NAMES);
            crate::groups::metrics::render(&mut body, &sources.groups);
            body.push_str(&format!(
                "# HELP sluice_shards Shards (executors) running.\n# TYPE sluice_shards gauge\nsluice_shards {}\n",
                metrics.len()
            ));
            if !sources.kafka.is_empty() {
                body.push_str(&render_kafka_metrics(&sources.kafka));
            }
            if let Some(cluster) = sources.cluster.get() {
                body.push_str(&cluster.render());
            }
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
        }
        ("GET", "/health") => {
            let body = health(sources);
            respond(&mut stream, "200 OK", "text/plain; charset=utf-8", &body)
        }
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

/// The `/health` text: `ok`, or in cluster mode `degraded` while etcd is unreachable.
fn health(sources: &Sources) -> String {
    let shards = sources.metrics.len();
    match sources.cluster.get() {
        None => format!("ok shards={shards}\n"),
        Some(cluster) if cluster.etcd_connected() => {
            format!("ok shards={shards} etcd=connected\n")
        }
        Some(_) => format!(
            "degraded shards={shards} etcd=disconnected: serving the current leadership; \
             ISR and leadership changes wait for etcd\n"
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
