//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sluice_broker::{Broker, BrokerError};
use sluice_net::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ErrorCode, MetadataRequest, MetadataResponse, NewTopic,
};
use std::time::Duration;

/// How long the Nagle test waits for the broker to accept its connections.
const ACCEPT_WAIT_MS: u64 = 10_000;
/// How often it looks.
const ACCEPT_POLL_MS: u64 = 10;

// Proves a second broker cannot take a data directory in use, nor silently share a native port
// another broker listens on; both fail with errors naming the problem.
#[test]
fn data_dir_and_port_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_broker(&dir.path().join("a"), 1);
    let same_dir = Broker::start(test_config(&dir.path().join("a"), 1));
    assert!(matches!(same_dir, Err(BrokerError::DataDirLocked(_))));
    let mut same_port = test_config(&dir.path().join("b"), 1);
    same_port.native_addr = first.native_addr();
    match Broker::start(same_port) {
        Err(BrokerError::Bind { addr, .. }) => assert_eq!(addr, first.native_addr()),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a second broker must not share the native port"),
    }
    first.shutdown().unwrap();
}

/// Sends one CreateTopics with four bad topics and checks each gets its own error and a message.
async fn assert_invalid_creates_refused(client: &mut RawClient) {
    let topic = |name: &str, partitions, replication_factor| NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs: Vec::new(),
    };
    let request = CreateTopicsRequest {
        topics: vec![
            topic("bad/name", 1, 1),
            topic("zero", 0, 1),
            topic("replicated", 1, 3),
            topic("kept", 1, 1),
        ],
        timeout_ms: 1000,
    };
    let (response, _): (CreateTopicsResponse, _) = client.call(&request, &[]).await;
    let codes: Vec<i16> = response.results.iter().map(|result| result.error).collect();
    let expected = [
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::TopicAlreadyExists,
    ];
    assert_eq!(codes, expected.map(ErrorCode::code).to_vec());
    assert!(response
        .results
        .iter()
        .all(|result| result.message.is_some()));
}

// Proves topics survive a restart (metadata store) and their logs continue at the right offset;
// that CreateTopics validates name, partitions and replication factor with clear errors; and
// that a deleted topic is gone, and a new topic of the same name starts empty.
#[test]
fn topics_survive_restart_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let native = broker.native_addr();
    run(async move {
        let mut client = RawClient::connect(native).await;
        client.create_topic("kept", 3).await;
        client.create_topic("dropped", 1).await;
        assert_eq!(
            client.produce("kept", 2, batch("one", 2)).await.partitions[0].base_offset,
            0
        );
        assert_eq!(
            client
                .produce("dropped", 0, batch("old", 5))
                .await
                .partitions[0]
                .error,
            0
        );
        assert_invalid_creates_refused(&mut client).await;
        let delete = DeleteTopicsRequest {
            names: vec!["dropped".to_string()],
            timeout_ms: 1000,
        };
        let (deleted, _): (DeleteTopicsResponse, _) = client.call(&delete, &[]).await;
        assert_eq!(deleted.results[0].error, 0);
    });
    broker.shutdown().unwrap();

    let broker = start_broker(dir.path(), 2);
    let native = broker.native_addr();
    run(async move {
        let mut client = RawClient::connect(native).await;
        let (metadata, _): (MetadataResponse, _) =
            client.call(&MetadataRequest { topics: None }, &[]).await;
        let names: Vec<&str> = metadata
            .topics
            .iter()
            .map(|topic| topic.name.as_str())
            .collect();
        assert_eq!(names, vec!["kept"]);
        assert_eq!(metadata.topics[0].partitions.len(), 3);
        assert_eq!(
            client.produce("kept", 2, batch("two", 1)).await.partitions[0].base_offset,
            2
        );
        client.create_topic("dropped", 1).await;
        let (fetched, payload) = client.fetch("dropped", 0, 0).await;
        assert_eq!(
            fetched.partitions[0].high_watermark, 0,
            "a re-created topic starts empty"
        );
        assert!(payload.is_empty());
    });
    broker.shutdown().unwrap();
}

/// Longest wait for a broker whose shard panicked to exit.
const SHARD_FAILURE_EXIT_WAIT_S: u64 = 60;

// Proves a broker does not serve on without one of its shards: when shard 1 of 2 panics (an
// injected fault, as a bug would), the process shuts down what is left and exits with status 1,
// its log naming the shard; every acknowledged batch is there after a restart on the same data,
// each partition's log continuing at the next offset.
#[test]
fn broker_exits_when_a_shard_panics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trigger = dir.path().join("panic-now");
    let fault = format!("1:{}", trigger.display());
    let mut broker = BrokerProcess::start_with_env(
        &data,
        &["--shards", "2"],
        &[("SLUICE_FAULT_SHARD_PANIC", fault.as_str())],
    );
    let native = broker.native;
    run(async move {
        let mut client = RawClient::connect(native).await;
        client.create_topic("kept", 4).await;
        for partition in 0..4 {
            let answer = client.produce("kept", partition, batch("before", 3)).await;
            assert_eq!(answer.partitions[0].error, 0, "partition {partition}");
            assert_eq!(answer.partitions[0].base_offset, 0);
        }
    });
    std::fs::write(&trigger, b"").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(SHARD_FAILURE_EXIT_WAIT_S);
    let status = loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broker still runs {SHARD_FAILURE_EXIT_WAIT_S} s after its shard panicked:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = broker.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("injected fault: shard-1 panics"), "{log}");
    assert!(
        log.contains("part of the broker stopped on its own") && log.contains("part=shard-1"),
        "{log}"
    );
    drop(broker);
    let broker = BrokerProcess::start(&data, &["--shards", "2"]);
    let native = broker.native;
    run(async move {
        let mut client = RawClient::connect(native).await;
        for partition in 0..4 {
            let (fetched, payload) = client.fetch("kept", partition, 0).await;
            assert_eq!(
                fetched.partitions[0].high_watermark, 3,
                "partition {partition}"
            );
            assert_eq!(split_batches(&payload).len(), 1, "partition {partition}");
            let answer = client.produce("kept", partition, batch("after", 1)).await;
            assert_eq!(answer.partitions[0].base_offset, 3, "partition {partition}");
        }
    });
}

/// TCP_NODELAY of every connected TCP socket of this process whose local address is `addr`:
/// the broker's side of the connections it accepted there (the broker runs in-process).
fn accepted_nodelay(addr: std::net::SocketAddr) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the calls below, while it is open (the
        // broker does not close connections that are in use); a closed or reused number only
        // makes the calls fail or answer for another socket, which the address check filters.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let local = socket.local_addr().ok().and_then(|local| local.as_socket());
        let connected = socket.peer_addr().is_ok();
        if local == Some(addr) && connected {
            found.push(socket.nodelay().unwrap());
        }
    }
    found
}

// Proves the broker sends its answers without Nagle's delay on both protocols: every connection
// it accepted has TCP_NODELAY set (with Nagle's algorithm a small answer waits while an earlier
// one is unacknowledged, up to the peer's 40 ms delayed ACK).
#[test]
fn accepted_connections_disable_nagle() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 1);
    let native = broker.native_addr();
    let kafka = broker.kafka_addr().unwrap();
    let clients = [
        std::net::TcpStream::connect(native).unwrap(),
        std::net::TcpStream::connect(kafka).unwrap(),
    ];
    for addr in [native, kafka] {
        let mut waited_ms = 0;
        let nodelay = loop {
            let nodelay = accepted_nodelay(addr);
            if !nodelay.is_empty() || waited_ms >= ACCEPT_WAIT_MS {
                break nodelay;
            }
            std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS));
            waited_ms += ACCEPT_POLL_MS;
        };
        // The broker holds each connection twice (its reader and a dup for its writer).
        assert!(!nodelay.is_empty(), "{addr}: no accepted connection found");
        assert!(
            nodelay.iter().all(|on| *on),
            "{addr}: TCP_NODELAY unset: {nodelay:?}"
        );
    }
    drop(clients);
    broker.shutdown().unwrap();
}
