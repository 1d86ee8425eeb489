//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use sluice_net::{
    ApiVersionsRequest, ApiVersionsResponse, EpochQuery, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

const TOPIC: &str = "round-trip";
const PARTITIONS: i32 = 6;
const BATCHES_PER_PARTITION: usize = 20;

// Proves produce and fetch round-trip byte for byte over several partitions spread over two
// shards: batches are pipelined on one connection to the shared port, fetched back from the
// owning shards' ports, and every fetched batch equals the produced one with contiguous offsets.
#[test]
fn produce_fetch_round_trip_over_two_shards() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let native = broker.native_addr();
    let shard_addrs = broker.shard_addrs();
    run(async move {
        let mut client = RawClient::connect(native).await;
        client.create_topic(TOPIC, PARTITIONS).await;
        let (metadata, _): (MetadataResponse, _) =
            client.call(&MetadataRequest { topics: None }, &[]).await;
        let ports: Vec<u16> = shard_addrs.iter().map(|addr| addr.port()).collect();
        assert_eq!(metadata.brokers[0].shard_ports, ports);
        let topic = metadata
            .topics
            .iter()
            .find(|topic| topic.name == TOPIC)
            .unwrap();
        let owners: Vec<u32> = topic.partitions.iter().map(|p| p.shard).collect();
        assert!(
            owners.contains(&0) && owners.contains(&1),
            "partitions on both shards: {owners:?}"
        );

        // Pipeline every produce request before reading any response.
        let mut produced: Vec<Vec<Bytes>> = vec![Vec::new(); PARTITIONS as usize];
        let mut pending = Vec::new();
        for round in 0..BATCHES_PER_PARTITION {
            for partition in 0..PARTITIONS {
                let batch = batch(&format!("p{partition}-b{round}"), 1 + round % 4);
                let request = produce_request(TOPIC, partition, batch.len());
                let correlation_id = client.send(&request, std::slice::from_ref(&batch)).await;
                pending.push((partition, correlation_id));
                produced[partition as usize].push(batch);
            }
        }
        let mut next_offset = vec![0i64; PARTITIONS as usize];
        let mut count_in = vec![0usize; PARTITIONS as usize];
        for (partition, correlation_id) in pending {
            let (response, _): (sluice_net::ProduceResponse, _) =
                client.receive(correlation_id).await;
            let result = &response.partitions[0];
            assert_eq!(result.error, 0, "{result:?}");
            let index = partition as usize;
            assert_eq!(result.base_offset, next_offset[index], "contiguous offsets");
            let records = 1 + count_in[index] % 4;
            next_offset[index] += records as i64;
            count_in[index] += 1;
        }

        for partition in 0..PARTITIONS {
            let owner = owners[partition as usize] as usize;
            let mut owner_client = RawClient::connect(shard_addrs[owner]).await;
            let mut fetched = Vec::new();
            let mut offset = 0;
            while offset < next_offset[partition as usize] {
                let (response, payload) = owner_client.fetch(TOPIC, partition, offset).await;
                let result = &response.partitions[0];
                assert_eq!(result.error, 0, "{result:?}");
                assert_eq!(result.high_watermark, next_offset[partition as usize]);
                for (base_offset, records, bytes) in split_batches(&payload) {
                    assert_eq!(base_offset, offset, "offsets contiguous");
                    offset += records;
                    fetched.push(bytes);
                }
            }
            let expected = &produced[partition as usize];
            assert_eq!(fetched.len(), expected.len());
            for (fetched, produced) in fetched.iter().zip(expected) {
                assert!(same_batch(fetched, produced), "batch bytes differ");
            }
        }
    });
    broker.shutdown().unwrap();
}

// Proves ApiVersions answers the implemented versions, ListOffsets reports earliest, latest and
// by-timestamp offsets (the first record at or after the time), and OffsetForLeaderEpoch reports the end of epoch 0, for a partition
// owned by either shard, asked on the shared port.
#[test]
fn offsets_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let native = broker.native_addr();
    run(async move {
        let mut client = RawClient::connect(native).await;
        let (versions, _): (ApiVersionsResponse, _) =
            client.call(&ApiVersionsRequest {}, &[]).await;
        assert_eq!(versions, ApiVersionsResponse::from_supported());
        client.create_topic("offsets", 2).await;
        for partition in 0..2 {
            // Three batches of 2 records with increasing timestamps.
            for index in 0..3 {
                let batch = batch(&format!("t{index}"), 2);
                let response = client.produce("offsets", partition, batch).await;
                assert_eq!(response.partitions[0].base_offset, 2 * index);
            }
            let query = |timestamp| ListOffsetsPartition {
                topic: "offsets".to_string(),
                partition,
                timestamp,
            };
            let request = ListOffsetsRequest {
                partitions: vec![
                    query(-2),
                    query(-1),
                    query(1_700_000_000_001),
                    query(i64::MAX),
                ],
            };
            let (offsets, _): (ListOffsetsResponse, _) = client.call(&request, &[]).await;
            let found: Vec<(i16, i64)> = offsets
                .partitions
                .iter()
                .map(|p| (p.error, p.offset))
                .collect();
            // Every batch stamps its records 1_700_000_000_000 + index: the first record at or
            // after ..._001 is the second record of the first batch, offset 1 (the record's own
            // offset, as Kafka answers, not its batch's).
            assert_eq!(found, vec![(0, 0), (0, 6), (0, 1), (0, -1)]);
            let request = OffsetForLeaderEpochRequest {
                partitions: vec![EpochQuery {
                    topic: "offsets".to_string(),
                    partition,
                    leader_epoch: 0,
                }],
            };
            let (epochs, _): (OffsetForLeaderEpochResponse, _) = client.call(&request, &[]).await;
            assert_eq!(epochs.partitions[0].error, 0);
            assert_eq!(
                (
                    epochs.partitions[0].leader_epoch,
                    epochs.partitions[0].end_offset
                ),
                (0, 6)
            );
        }
    });
    broker.shutdown().unwrap();
}
