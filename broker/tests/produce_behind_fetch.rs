//! Regression test of a produce stall: acknowledgements must not wait behind a consumer's
//! long-polling fetch that shares the client with the producer.
#![allow(clippy::unwrap_used)]

mod common;

use std::rc::Rc;
use std::time::Duration;

use sluice_client::{
    Acks, Client, ClientConfig, Compression, Consumer, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, SeekTo,
};
use sluice_net::ApiKey;
use sluice_shard::ShardMetrics;

/// How long the consumer's fetch may wait for data at the broker: the broker's largest.
const FETCH_WAIT_MS: u32 = 30_000;

// Proves a produce is acknowledged while a consumer of the same client long-polls an empty
// partition of the same shard: the broker answers a connection's requests in order, so a
// produce sharing the consumer's connection would wait for the fetch's whole wait (30 s, close
// to the client's request timeout, which then fails the connection and retries the produce).
// The order of events is checked, not the time: when the acknowledgement arrives the broker
// must not have answered the fetch yet (it answers it only when the test then writes to the
// fetched partition, and the poll returns that record).
#[test]
fn produce_is_acknowledged_while_a_fetch_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start_broker(dir.path(), 1);
    let metrics = broker.metrics()[0].clone();
    let config = ClientConfig {
        bootstrap: vec![broker.native_addr().to_string()],
        ..ClientConfig::default()
    };
    common::run(async move {
        let client = Client::connect(config).await.unwrap();
        client.create_topic("t", 2, 1, Vec::new()).await.unwrap();
        let consumer_config = ConsumerConfig {
            fetch_max_wait_ms: FETCH_WAIT_MS,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(Rc::clone(&client), consumer_config);
        consumer
            .assign(vec![("t".to_string(), 1)], SeekTo::Earliest)
            .await
            .unwrap();
        let polling = glommio::spawn_local(async move {
            let timeout = Duration::from_millis(u64::from(FETCH_WAIT_MS));
            consumer.poll(timeout).await.unwrap()
        });
        // The fetch is in flight once the broker has counted it.
        while metrics.fetch_requests.get() == 0 {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let producer_config = ProducerConfig {
            acks: Acks::All,
            compression: Compression::None,
            linger_ms: 0,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(Rc::clone(&client), producer_config);
        let record = ProducerRecord {
            partition: Some(0),
            ..ProducerRecord::new("t", "acknowledged")
        };
        let acknowledged = producer.send(record).await.unwrap().await.unwrap();
        assert_eq!(acknowledged.offset, 0);
        assert_eq!(
            fetches_answered(&metrics),
            0,
            "the produce was acknowledged only after the fetch in front of it was answered"
        );
        let wake = ProducerRecord {
            partition: Some(1),
            ..ProducerRecord::new("t", "wake")
        };
        producer.send(wake).await.unwrap().await.unwrap();
        let records = polling.await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value.as_deref(), Some(&b"wake"[..]));
    });
}

/// Fetch responses the broker has written (its fetch latency observations).
fn fetches_answered(metrics: &ShardMetrics) -> u64 {
    let (cumulative, _) = metrics.request_latency[usize::from(ApiKey::Fetch.code())].snapshot();
    cumulative.last().copied().unwrap_or(0)
}
