//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use sluice_net::ProduceResponse;

const TOPIC: &str = "durable";
const PARTITIONS: i32 = 4;

/// Acknowledged batches: (partition, base offset) -> produced bytes.
type Acknowledged = BTreeMap<(i32, i64), Bytes>;

/// Pipelines `count` produce requests (acks=1), and once `kill_after` responses have arrived
/// calls `kill` while the rest are still in flight. Returns what was acknowledged.
async fn produce_then(
    native: SocketAddr,
    tag: &str,
    count: usize,
    kill_after: usize,
    mut kill: impl FnMut(),
) -> Acknowledged {
    let mut client = RawClient::connect(native).await;
    let mut pending = Vec::new();
    for index in 0..count {
        let partition = (index % PARTITIONS as usize) as i32;
        let produced = batch(&format!("{tag}-{index}"), 1 + index % 3);
        let request = produce_request(TOPIC, partition, produced.len());
        let correlation_id = client.send(&request, std::slice::from_ref(&produced)).await;
        pending.push((partition, correlation_id, produced));
    }
    let mut acknowledged = Acknowledged::new();
    for (received, (partition, correlation_id, produced)) in pending.into_iter().enumerate() {
        if received == kill_after {
            kill();
        }
        let Ok(Some(frame)) = client.connection.read_frame().await else {
            break;
        };
        assert_eq!(frame.header.correlation_id, correlation_id);
        let response: ProduceResponse = frame.decode().unwrap();
        let result = &response.partitions[0];
        assert_eq!(result.error, 0, "{result:?}");
        acknowledged.insert((partition, result.base_offset), produced);
    }
    acknowledged
}

/// Fetches every partition from offset 0 and checks every acknowledged batch is there, whole
/// and at its offset, with offsets contiguous.
async fn assert_all_present(native: SocketAddr, acknowledged: &Acknowledged) {
    let mut client = RawClient::connect(native).await;
    for partition in 0..PARTITIONS {
        let mut found = BTreeMap::new();
        let mut offset = 0;
        loop {
            let (response, payload) = client.fetch(TOPIC, partition, offset).await;
            assert_eq!(
                response.partitions[0].error, 0,
                "{:?}",
                response.partitions[0]
            );
            let batches = split_batches(&payload);
            if batches.is_empty() {
                break;
            }
            for (base_offset, records, bytes) in batches {
                assert_eq!(base_offset, offset, "offsets contiguous after recovery");
                offset += records;
                found.insert(base_offset, bytes);
            }
        }
        for ((_, base_offset), produced) in
            acknowledged.range((partition, i64::MIN)..=(partition, i64::MAX))
        {
            let fetched = found
                .get(base_offset)
                .unwrap_or_else(|| panic!("acknowledged batch at {partition}/{base_offset} lost"));
            assert!(
                same_batch(fetched, produced),
                "batch {partition}/{base_offset} differs"
            );
        }
    }
}

fn markers(data_dir: &std::path::Path) -> usize {
    (0..PARTITIONS)
        .filter(|partition| {
            data_dir
                .join(format!("{TOPIC}-{partition}"))
                .join(".clean_shutdown")
                .exists()
        })
        .count()
}

/// Produces, SIGKILLs mid-produce, restarts, checks, produces more, SIGTERMs, restarts, checks.
fn kill_then_graceful_restart(write_mode: &str) {
    let args = ["--shards", "2", "--write-mode", write_mode];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = BrokerProcess::start(&data, &args);
    let native = broker.native;
    run(async move {
        let mut client = RawClient::connect(native).await;
        client.create_topic(TOPIC, PARTITIONS).await;
    });
    let pid = broker.child.id() as i32;
    let mut acknowledged = run(produce_then(native, "before-kill", 400, 150, move || {
        // SAFETY: SIGKILL to our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }));
    broker.child.wait().unwrap();
    assert!(acknowledged.len() >= 150);
    assert_eq!(
        markers(&data),
        0,
        "a killed broker leaves no clean-shutdown marker"
    );

    let mut broker = BrokerProcess::start(&data, &args);
    let native = broker.native;
    let before = acknowledged.clone();
    acknowledged.extend(run(async move {
        assert_all_present(native, &before).await;
        produce_then(native, "after-kill", 100, usize::MAX, || {}).await
    }));
    assert!(
        broker.log().contains("clean_shutdown=false"),
        "{}",
        broker.log()
    );
    let status = broker.signal_and_wait(libc::SIGTERM);
    assert!(
        status.success(),
        "graceful shutdown exits 0: {status:?}\n{}",
        broker.log()
    );
    assert_eq!(markers(&data), PARTITIONS as usize);

    let broker = BrokerProcess::start(&data, &args);
    let native = broker.native;
    run(async move { assert_all_present(native, &acknowledged).await });
    let log = broker.log();
    assert!(log.contains("clean_shutdown=true"), "{log}");
    assert!(!log.contains("clean_shutdown=false"), "{log}");
}

// Proves, in direct write mode, that nothing acknowledged is lost across a SIGKILL in the middle
// of pipelined produces (the restart recovers by scanning) and across a graceful SIGTERM (which
// writes every clean-shutdown marker, so the next start skips the scan).
#[test]
fn acknowledged_batches_survive_kill_and_graceful_restart_direct() {
    kill_then_graceful_restart("direct");
}

// Proves the same in buffered write mode (appends through the page cache).
#[test]
fn acknowledged_batches_survive_kill_and_graceful_restart_buffered() {
    kill_then_graceful_restart("buffered");
}
