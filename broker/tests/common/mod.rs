//! Helpers shared by the broker's integration tests: an in-process broker on ephemeral ports, a
//! raw native-protocol client over `sluice_net::Connection`, record batches, a child `sluice`
//! process, and a scraper for the admin endpoint.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_broker::{Broker, BrokerConfig, BrokerHandle};
use sluice_net::{
    ApiKey, Connection, ControlDecode, ControlEncode, CreateTopicsRequest, CreateTopicsResponse,
    FetchPartition, FetchRequest, FetchResponse, FrameHeader, Message, NewTopic, ProducePartition,
    ProduceRequest, ProduceResponse,
};
use sluice_storage::batch::{BatchBuilder, BatchIter, Compression};

/// A broker config for tests: ephemeral ports, unpinned shards, the given data directory.
pub fn test_config(data_dir: &Path, shards: usize) -> BrokerConfig {
    let mut config = BrokerConfig {
        data_dir: data_dir.to_path_buf(),
        native_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        // An OS-picked Kafka port: tests run in parallel, so none may take 9092.
        kafka_addr: Some("127.0.0.1:0".parse().unwrap()),
        shards,
        pin: false,
        ..BrokerConfig::default()
    };
    config.limits.shutdown_drain_ms_max = 2_000;
    config
}

/// Starts an in-process broker.
pub fn start_broker(data_dir: &Path, shards: usize) -> BrokerHandle {
    Broker::start(test_config(data_dir, shards)).unwrap()
}

/// Runs `future` on a fresh unbound glommio executor on this thread.
pub fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap()
        .run(future)
}

/// A raw native-protocol client: one connection, requests answered in order.
pub struct RawClient {
    pub connection: Connection,
    next_correlation_id: u32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = glommio::net::TcpStream::connect(addr).await.unwrap();
        RawClient {
            connection: Connection::new(stream, 256 << 20),
            next_correlation_id: 1,
        }
    }

    /// Sends a request without waiting for its response; returns its correlation id.
    pub async fn send<Req: Message + ControlEncode>(
        &mut self,
        request: &Req,
        payload: &[Bytes],
    ) -> u32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = FrameHeader::request(Req::API, 0, correlation_id);
        self.connection
            .write_frame(header, request, payload)
            .await
            .unwrap();
        correlation_id
    }

    /// Reads the next response, checking it answers `correlation_id`.
    pub async fn receive<Resp: Message + ControlDecode>(
        &mut self,
        correlation_id: u32,
    ) -> (Resp, Bytes) {
        let frame = self
            .connection
            .read_frame()
            .await
            .unwrap()
            .expect("connection closed");
        assert!(frame.header.is_response());
        assert_eq!(frame.header.correlation_id, correlation_id);
        let body = frame.decode::<Resp>().unwrap();
        (body, frame.payload.freeze())
    }

    /// One request, one response.
    pub async fn call<Req, Resp>(&mut self, request: &Req, payload: &[Bytes]) -> (Resp, Bytes)
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        let correlation_id = self.send(request, payload).await;
        self.receive(correlation_id).await
    }

    pub async fn create_topic(&mut self, name: &str, partitions: i32) {
        let request = CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.to_string(),
                partitions,
                replication_factor: 1,
                configs: Vec::new(),
            }],
            timeout_ms: 30_000,
        };
        let (response, _): (CreateTopicsResponse, _) = self.call(&request, &[]).await;
        assert_eq!(response.results.len(), 1);
        assert_eq!(response.results[0].error, 0, "{:?}", response.results[0]);
    }

    /// Produces one partition's batches with acks=1; returns the base offset.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        batches: Bytes,
    ) -> ProduceResponse {
        let request = produce_request(topic, partition, batches.len());
        let (response, _) = self.call(&request, &[batches]).await;
        response
    }

    /// Fetches one partition from `offset` without waiting.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> (FetchResponse, Bytes) {
        let request = fetch_request(topic, partition, offset, 0, 0);
        self.call(&request, &[]).await
    }
}

pub fn produce_request(topic: &str, partition: i32, records_bytes: usize) -> ProduceRequest {
    ProduceRequest {
        acks: 1,
        timeout_ms: 30_000,
        partitions: vec![ProducePartition {
            topic: topic.to_string(),
            partition,
            records_bytes: records_bytes as u32,
        }],
    }
}

pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: u32,
    min_bytes: u32,
) -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms,
        min_bytes,
        max_bytes: 64 << 20,
        partitions: vec![FetchPartition {
            topic: topic.to_string(),
            partition,
            fetch_offset: offset,
            partition_max_bytes: 64 << 20,
            current_leader_epoch: -1,
        }],
    }
}

/// A batch of `records` records whose values name the batch, so every batch is distinct.
pub fn batch(tag: &str, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for index in 0..records {
        let value = format!("{tag}-record-{index}");
        builder.push(
            1_700_000_000_000 + index as i64,
            Some(tag.as_bytes()),
            Some(value.as_bytes()),
            &[],
        );
    }
    builder.build().unwrap().freeze()
}

/// Splits concatenated batches into (base offset, record count, bytes) triples.
pub fn split_batches(bytes: &[u8]) -> Vec<(i64, i64, Bytes)> {
    BatchIter::new(bytes, 64 << 20)
        .map(|item| {
            let (header, batch) = item.unwrap();
            (
                header.base_offset,
                i64::from(header.last_offset_delta) + 1,
                Bytes::copy_from_slice(batch),
            )
        })
        .collect()
}

/// True when a fetched batch carries exactly the produced batch's bytes: everything the CRC
/// covers plus the length and CRC fields. Only the base offset and partition leader epoch differ,
/// since the broker stamps those (both outside the CRC).
pub fn same_batch(fetched: &[u8], produced: &[u8]) -> bool {
    fetched.len() == produced.len()
        && fetched[8..12] == produced[8..12]
        && fetched[16..] == produced[16..]
}

/// GETs `path` from the admin endpoint; returns (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the metric line that starts with `series` (name and labels), summed if the
/// series appears without a shard label filter.
pub fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// A `sluice broker` child process; killed when dropped.
pub struct BrokerProcess {
    pub child: Child,
    pub native: SocketAddr,
    pub shards: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub kafka: Option<SocketAddr>,
    pub stderr_path: std::path::PathBuf,
}

impl BrokerProcess {
    /// Starts `sluice broker` with `args` and waits until it prints `ready`.
    pub fn start(data_dir: &Path, args: &[&str]) -> BrokerProcess {
        BrokerProcess::start_with_env(data_dir, args, &[])
    }

    /// `start` with extra environment variables for the broker.
    pub fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> BrokerProcess {
        let stderr_path = data_dir.with_extension(format!("stderr-{}", rand::random::<u32>()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("broker")
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--native-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--kafka-addr",
                "127.0.0.1:0",
                "--pin",
                "false",
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut native = None;
        let mut shards = Vec::new();
        let mut admin = None;
        let mut kafka = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["native", addr] => native = Some(addr.parse().unwrap()),
                ["shard", _, addr] => shards.push(addr.parse().unwrap()),
                ["admin", "off"] | ["kafka", "off"] => {}
                ["kafka", addr] => kafka = Some(addr.parse().unwrap()),
                ["admin", addr] => admin = Some(addr.parse().unwrap()),
                ["ready"] => break,
                _ => {}
            }
        }
        let native = native.unwrap_or_else(|| {
            let _ = child.kill();
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("broker did not start:\n{log}");
        });
        BrokerProcess {
            child,
            native,
            shards,
            admin,
            kafka,
            stderr_path,
        }
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        self.child.wait().unwrap()
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// Concatenates batches.
pub fn concat(batches: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for batch in batches {
        out.extend_from_slice(batch);
    }
    out.freeze()
}

/// The api key's wire value.
pub fn api(key: ApiKey) -> u16 {
    key.code()
}
