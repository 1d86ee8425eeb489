//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use sluice_net::{FetchResponse, MetadataRequest, MetadataResponse};

const TOPIC: &str = "forwarded";

/// The partitions of `topic` and the shard that owns each.
async fn owners(client: &mut RawClient, topic: &str) -> Vec<u32> {
    let (metadata, _): (MetadataResponse, _) = client
        .call(
            &MetadataRequest {
                topics: Some(vec![topic.to_string()]),
            },
            &[],
        )
        .await;
    metadata.topics[0]
        .partitions
        .iter()
        .map(|p| p.shard)
        .collect()
}

fn forwarded(admin: SocketAddr, shard: usize) -> u64 {
    let (_, body) = http_get(admin, "/metrics");
    metric(
        &body,
        &format!("sluice_forwarded_requests_total{{shard=\"{shard}\"}}"),
    )
}

// Proves a partition owned by shard B can be produced and fetched through a connection to shard
// A's port (each request forwarded over the mesh, counted on A), and that the same through B's
// own port is served locally without forwarding.
#[test]
fn foreign_partition_is_forwarded_and_own_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let shard_addrs = broker.shard_addrs();
    let admin = broker.admin_addr().unwrap();
    run(async move {
        let mut client = RawClient::connect(shard_addrs[0]).await;
        client.create_topic(TOPIC, 4).await;
        let owners = owners(&mut client, TOPIC).await;
        let partition = owners.iter().position(|owner| *owner == 1).unwrap() as i32;

        // Through shard 0: forwarded.
        let before = forwarded(admin, 0);
        let first = batch("via-shard-0", 3);
        let produced = client.produce(TOPIC, partition, first.clone()).await;
        assert_eq!(produced.partitions[0].error, 0);
        assert_eq!(produced.partitions[0].base_offset, 0);
        let (fetched, payload) = client.fetch(TOPIC, partition, 0).await;
        assert_eq!(fetched.partitions[0].error, 0);
        let batches = split_batches(&payload);
        assert_eq!(batches.len(), 1);
        assert!(same_batch(&batches[0].2, &first));
        let after = forwarded(admin, 0);
        assert!(after >= before + 2, "forwarded {before} -> {after}");

        // Through shard 1 (the owner): local.
        let before_owner = forwarded(admin, 1);
        let before_other = forwarded(admin, 0);
        let mut owner_client = RawClient::connect(shard_addrs[1]).await;
        let second = batch("via-shard-1", 2);
        let produced = owner_client.produce(TOPIC, partition, second.clone()).await;
        assert_eq!(produced.partitions[0].base_offset, 3);
        let (_, payload) = owner_client.fetch(TOPIC, partition, 0).await;
        let batches = split_batches(&payload);
        assert_eq!(batches.len(), 2);
        assert!(same_batch(&batches[1].2, &second));
        assert_eq!(forwarded(admin, 1), before_owner);
        assert_eq!(forwarded(admin, 0), before_other);
    });
    broker.shutdown().unwrap();
}

/// Longest the long-poll test waits for its fetch to be parked; a bound on a hang.
const PARK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

// Proves long polling: a fetch at the end of the log with min_bytes 1 is parked (the broker's
// `sluice_fetches_waiting` gauge shows it, so its first read found nothing) and then returns the
// batch produced while it waited, both for a partition the connection's shard owns and for one
// it must forward (the wait itself runs on the owner); once answered it is no longer counted.
#[test]
fn long_poll_returns_data_appended_while_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let shard_addrs = broker.shard_addrs();
    let waiting = broker.metrics()[0].clone();
    let admin = broker.admin_addr().unwrap();
    run(async move {
        let mut client = RawClient::connect(shard_addrs[0]).await;
        client.create_topic(TOPIC, 4).await;
        let owners = owners(&mut client, TOPIC).await;
        for owner in [0u32, 1] {
            let partition = owners.iter().position(|o| *o == owner).unwrap() as i32;
            let mut poller = RawClient::connect(shard_addrs[0]).await;
            let request = fetch_request(TOPIC, partition, 0, 20_000, 1);
            let correlation_id = poller.send(&request, &[]).await;
            let produced = batch(&format!("late-{owner}"), 1);
            let deadline = std::time::Instant::now() + PARK_WAIT;
            while waiting.fetches_waiting.get() == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the fetch was never parked"
                );
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            }
            let (_, body) = http_get(admin, "/metrics");
            assert_eq!(metric(&body, "sluice_fetches_waiting{shard=\"0\"}"), 1);
            let mut producer = RawClient::connect(shard_addrs[1]).await;
            producer.produce(TOPIC, partition, produced.clone()).await;
            let (response, payload): (FetchResponse, _) = poller.receive(correlation_id).await;
            assert_eq!(response.partitions[0].error, 0);
            let batches = split_batches(&payload);
            assert_eq!(
                batches.len(),
                1,
                "the fetch returned the batch appended while it waited"
            );
            assert!(same_batch(&batches[0].2, &produced));
            let deadline = std::time::Instant::now() + PARK_WAIT;
            while waiting.fetches_waiting.get() != 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "an answered fetch is still counted as waiting"
                );
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    });
    broker.shutdown().unwrap();
}
