//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sluice_broker::config::WriteModeSetting;
use sluice_broker::Broker;
use sluice_net::{MetadataRequest, MetadataResponse};

// Proves the admin endpoint: /health answers 200 "ok" with the shard count, unknown paths 404,
// and /metrics counts what clients did: produce and fetch requests, bytes in and out, partitions
// per shard, latency observations, and (in buffered mode, where fetches are served from the page
// cache) record bytes spliced to the socket rather than copied.
#[test]
fn admin_endpoint_reports_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), 2);
    config.storage.write_mode = WriteModeSetting::Buffered;
    let broker = Broker::start(config).unwrap();
    let admin = broker.admin_addr().unwrap();
    let shard_addrs = broker.shard_addrs();

    let (status, body) = http_get(admin, "/health");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok shards=2\n");
    let (status, _) = http_get(admin, "/nope");
    assert!(status.contains("404"), "{status}");

    let produced = batch("metrics", 10);
    let length = produced.len() as u64;
    run(async move {
        let mut client = RawClient::connect(shard_addrs[0]).await;
        client.create_topic("observed", 3).await;
        let (metadata, _): (MetadataResponse, _) = client
            .call(
                &MetadataRequest {
                    topics: Some(vec!["observed".to_string()]),
                },
                &[],
            )
            .await;
        let partition = metadata.topics[0]
            .partitions
            .iter()
            .find(|p| p.shard == 0)
            .unwrap()
            .partition;
        assert_eq!(
            client
                .produce("observed", partition, produced.clone())
                .await
                .partitions[0]
                .error,
            0
        );
        let (_, payload) = client.fetch("observed", partition, 0).await;
        assert_eq!(payload.len() as u64, length);
    });

    let (status, metrics) = scrape_counted(admin, length);
    assert!(status.contains("200"));
    assert_eq!(
        metric(&metrics, "sluice_produce_requests_total{shard=\"0\"}"),
        1
    );
    assert_eq!(
        metric(&metrics, "sluice_fetch_requests_total{shard=\"0\"}"),
        1
    );
    assert_eq!(
        metric(&metrics, "sluice_bytes_in_total{shard=\"0\"}"),
        length
    );
    assert_eq!(
        metric(&metrics, "sluice_bytes_out_total{shard=\"0\"}"),
        length
    );
    assert_eq!(metric(&metrics, "sluice_partitions{"), 3);
    assert!(
        metric(&metrics, "sluice_bytes_spliced_total{shard=\"0\"}") >= length,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "sluice_request_latency_seconds_count{shard=\"0\",api=\"produce\"}"
        ),
        1
    );
    assert!(metric(&metrics, "sluice_connections_accepted_total{") >= 1);
    assert!(metrics.contains("sluice_shards 2"));
    broker.shutdown().unwrap();
}

/// The /metrics page once it counts `length` bytes out and spliced on shard 0. The shard counts
/// a response's bytes once its last byte is written, which can be a moment after the client has
/// read it: scrape until they show (bounded), and let the caller's checks report what is wrong.
fn scrape_counted(admin: std::net::SocketAddr, length: u64) -> (String, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, metrics) = http_get(admin, "/metrics");
        let counted = metric(&metrics, "sluice_bytes_out_total{shard=\"0\"}") >= length
            && metric(&metrics, "sluice_bytes_spliced_total{shard=\"0\"}") >= length;
        if counted || std::time::Instant::now() >= deadline {
            return (status, metrics);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
