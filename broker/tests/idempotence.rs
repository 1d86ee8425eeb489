//! Idempotent producers against a real `sluice broker` process: InitProducerId hands out ids
//! that never repeat, even after SIGKILL and restart; the leader answers a retried batch with
//! its original offsets and appends it once, and maps sequence errors to Kafka's codes.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use sluice_net::{ErrorCode, InitProducerIdRequest, InitProducerIdResponse};
use sluice_storage::batch::{BatchBuilder, Compression};

const TOPIC: &str = "idempotent";

async fn init_producer_id(client: &mut RawClient) -> (i64, i16) {
    let request = InitProducerIdRequest {
        transactional_id: None,
        producer_id: -1,
        producer_epoch: -1,
    };
    let (response, _): (InitProducerIdResponse, _) = client.call(&request, &[]).await;
    assert_eq!(response.error, 0, "{response:?}");
    (response.producer_id, response.producer_epoch)
}

/// One record of producer `producer_id` at `sequence`.
fn producer_batch(producer_id: i64, sequence: i32, tag: &str) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None).with_producer(producer_id, 0, sequence);
    builder.push(1_700_000_000_000, Some(b"k"), Some(tag.as_bytes()), &[]);
    builder.build().unwrap().freeze()
}

#[test]
fn producer_ids_never_repeat_across_a_sigkill_restart() {
    // Proves ids are unique and persisted by block: ids handed out before a SIGKILL are never
    // handed out again after the restart, and a transactional id is refused with a clear error.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = BrokerProcess::start(&data, &["--shards", "2"]);
    let first: Vec<i64> = run(async {
        let mut client = RawClient::connect(broker.native).await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let (id, epoch) = init_producer_id(&mut client).await;
            assert_eq!(epoch, 0);
            ids.push(id);
        }
        let request = InitProducerIdRequest {
            transactional_id: Some("tx".to_string()),
            producer_id: -1,
            producer_epoch: -1,
        };
        let (refused, _): (InitProducerIdResponse, _) = client.call(&request, &[]).await;
        assert_eq!(refused.error, ErrorCode::InvalidRequest.code());
        ids
    });
    let mut sorted = first.clone();
    sorted.dedup();
    assert_eq!(sorted, first, "ids are distinct and increasing");
    broker.signal_and_wait(libc::SIGKILL);
    let broker = BrokerProcess::start(&data, &["--shards", "2"]);
    let (after, _) = run(async {
        let mut client = RawClient::connect(broker.native).await;
        init_producer_id(&mut client).await
    });
    assert!(
        first.iter().all(|id| *id < after),
        "id {after} after the restart repeats or precedes {first:?}"
    );
}

#[test]
fn retries_are_answered_with_the_original_offsets() {
    // Proves the broker path end to end: a retried batch gets its first offset and the log
    // holds it once (and /metrics counts one duplicate); a gap answers
    // OUT_OF_ORDER_SEQUENCE_NUMBER and appends nothing.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--shards", "2"]);
    run(async {
        let mut client = RawClient::connect(broker.native).await;
        client.create_topic(TOPIC, 1).await;
        let (producer_id, _) = init_producer_id(&mut client).await;
        let first = client
            .produce(TOPIC, 0, producer_batch(producer_id, 0, "a"))
            .await;
        let second = client
            .produce(TOPIC, 0, producer_batch(producer_id, 1, "b"))
            .await;
        let retry = client
            .produce(TOPIC, 0, producer_batch(producer_id, 0, "a"))
            .await;
        assert_eq!(first.partitions[0].base_offset, 0);
        assert_eq!(second.partitions[0].base_offset, 1);
        assert_eq!(retry.partitions[0].error, 0, "{retry:?}");
        assert_eq!(retry.partitions[0].base_offset, 0, "the original offset");
        let gap = client
            .produce(TOPIC, 0, producer_batch(producer_id, 5, "c"))
            .await;
        assert_eq!(
            gap.partitions[0].error,
            ErrorCode::OutOfOrderSequenceNumber.code()
        );
        let (_, fetched) = client.fetch(TOPIC, 0, 0).await;
        let batches = split_batches(&fetched);
        let offsets: Vec<i64> = batches.iter().map(|(base, _, _)| *base).collect();
        assert_eq!(offsets, vec![0, 1], "each batch once, nothing else");
    });
    let (_, metrics) = http_get(broker.admin.unwrap(), "/metrics");
    let duplicates: u64 = (0..2)
        .map(|shard| {
            let series = format!("sluice_produce_duplicate_batches_total{{shard=\"{shard}\"}}");
            metric(&metrics, &series)
        })
        .sum();
    assert_eq!(duplicates, 1, "the retry is counted as a duplicate");
}

/// One record of producer `producer_id` at `sequence`, stamped now (expiration counts from a
/// producer's newest batch timestamp, as in Kafka).
fn fresh_batch(producer_id: i64, sequence: i32, tag: &str) -> Bytes {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut builder = BatchBuilder::new(Compression::None).with_producer(producer_id, 0, sequence);
    builder.push(
        i64::try_from(now_ms).unwrap(),
        Some(b"k"),
        Some(tag.as_bytes()),
        &[],
    );
    builder.build().unwrap().freeze()
}

#[test]
fn producer_state_expires_after_the_setting() {
    // Proves `producer_id_expiration_ms` reaches the partitions: with a 1 s setting, a producer
    // silent for 3 s is forgotten, so its next sequence is UNKNOWN_PRODUCER_ID, and starting a
    // new sequence at 0 is accepted; a producer that keeps sending is not forgotten.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--shards", "1", "--producer-id-expiration-ms", "1000"],
    );
    run(async {
        let mut client = RawClient::connect(broker.native).await;
        client.create_topic(TOPIC, 1).await;
        let (silent, _) = init_producer_id(&mut client).await;
        let (busy, _) = init_producer_id(&mut client).await;
        let first = client.produce(TOPIC, 0, fresh_batch(silent, 0, "a")).await;
        assert_eq!(first.partitions[0].error, 0, "{first:?}");
        for sequence in 0..6 {
            let answer = client
                .produce(TOPIC, 0, fresh_batch(busy, sequence, "b"))
                .await;
            assert_eq!(answer.partitions[0].error, 0, "busy producer: {answer:?}");
            glommio::timer::sleep(std::time::Duration::from_millis(500)).await;
        }
        let late = client.produce(TOPIC, 0, fresh_batch(silent, 1, "c")).await;
        assert_eq!(
            late.partitions[0].error,
            ErrorCode::UnknownProducerId.code(),
            "{late:?}"
        );
        let restarted = client.produce(TOPIC, 0, fresh_batch(silent, 0, "d")).await;
        assert_eq!(restarted.partitions[0].error, 0, "{restarted:?}");
    });
}
