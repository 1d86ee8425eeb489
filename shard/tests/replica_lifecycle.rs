//! A cluster-mode replica across opens and role changes on a real log: the high watermark is
//! checkpointed and restored, a new leader answers offset queries only once its high watermark
//! caught up with its epoch start, a log of an earlier topic incarnation is never reused, and
//! retention never deletes past the high watermark.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use sluice_shard::{
    new_topic_id, topic_id_text, ClusterView, OffsetQuery, Partition, PartitionError,
    PartitionRegistry, Reader, ReplicaInfo, ShardId, ShardTable, TopicAssignment, Uuid,
};
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::checkpoint::{read_partition_metadata, PARTITION_METADATA_FILE};
use sluice_storage::LogConfig;

const NODE: i32 = 1;
const FOLLOWER: i32 = 2;
const SHARD: ShardId = ShardId(0);

fn batch(records: usize) -> BytesMut {
    let mut builder = BatchBuilder::new(Compression::None);
    for index in 0..records {
        builder.push(1_000 + index as i64, None, Some(&[7; 200]), &[]);
    }
    builder.build().unwrap()
}

fn info(leader: i32, epoch: i32, isr: &[i32], version: i64) -> ReplicaInfo {
    ReplicaInfo {
        leader,
        leader_epoch: epoch,
        replicas: vec![NODE, FOLLOWER],
        isr: isr.to_vec(),
        version,
        min_insync_replicas: 1,
        broker_epochs: vec![(NODE, 1), (FOLLOWER, 2)],
        adding: Vec::new(),
    }
}

/// A cluster table of broker `NODE` holding partition t-0 of incarnation `topic_id`.
fn table(version: u64, topic_id: Uuid, configs: &[(&str, &str)]) -> ShardTable {
    let configs = configs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let mut assignment = TopicAssignment::place("t", 1, 1, 2, configs).with_topic_id(topic_id);
    assignment.replication = vec![info(NODE, 0, &[NODE, FOLLOWER], 1)];
    let mut topics = BTreeMap::new();
    topics.insert("t".to_string(), assignment);
    let cluster = ClusterView {
        node_id: NODE,
        controller_id: NODE,
        brokers: BTreeMap::new(),
    };
    ShardTable::with_cluster(version, topics, cluster)
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap()
        .run(future)
}

/// Opens t-0 through a registry, as a shard does for `table`.
async fn open(dir: &Path, table: &ShardTable) -> (PartitionRegistry, Rc<Partition>) {
    let registry = PartitionRegistry::new(dir, LogConfig::default());
    registry.reconcile(table, SHARD).await.unwrap();
    let partition = registry.get("t", 0).unwrap();
    (registry, partition)
}

async fn lead(partition: &Partition, epoch: i32, isr: &[i32], version: i64) {
    let live = |_| true;
    partition
        .apply_replica_info(NODE, &info(NODE, epoch, isr, version), live, 0)
        .await;
}

// Proves the high watermark survives a restart: a leader alone in its ISR commits 5 records,
// the registry closes (checkpointing durably), a new registry opens the replica with that high
// watermark, and as leader again with a follower that has not fetched yet it answers the latest
// offset with 5, not the log start.
#[test]
fn the_high_watermark_is_checkpointed_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let id = new_topic_id();
    run(async {
        let (registry, partition) = open(dir.path(), &table(1, id, &[])).await;
        lead(&partition, 0, &[NODE], 1).await;
        partition.append(batch(5)).await.unwrap();
        assert_eq!(partition.high_watermark(), 5);
        registry.close_all().await.unwrap();

        let (registry, partition) = open(dir.path(), &table(2, id, &[])).await;
        assert_eq!(
            partition.high_watermark(),
            5,
            "restored from the checkpoint"
        );
        lead(&partition, 1, &[NODE, FOLLOWER], 2).await;
        assert_eq!(
            partition.list_offset(OffsetQuery::Latest).await.unwrap(),
            Some(5)
        );
        registry.close_all().await.unwrap();
    });
}

// Proves Kafka's rule for a new leader whose high watermark lags the start of its epoch: it
// answers the latest offset, and a timestamp whose record is at or past its high watermark,
// with OffsetNotAvailable (the earliest offset is fine), until its followers fetched; then
// with the committed end.
#[test]
fn offsets_wait_for_the_new_leader_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (registry, partition) = open(dir.path(), &table(1, new_topic_id(), &[])).await;
        lead(&partition, 0, &[NODE, FOLLOWER], 1).await;
        partition.append(batch(5)).await.unwrap();
        assert_eq!(
            partition.high_watermark(),
            0,
            "the follower has not fetched"
        );
        lead(&partition, 1, &[NODE, FOLLOWER], 2).await;
        let not_available = |result: Result<Option<i64>, PartitionError>| {
            matches!(
                result,
                Err(PartitionError::OffsetNotAvailable {
                    high_watermark: 0,
                    epoch_start_offset: 5,
                    ..
                })
            )
        };
        assert!(not_available(
            partition.list_offset(OffsetQuery::Latest).await
        ));
        assert!(not_available(
            partition.list_offset(OffsetQuery::Timestamp(1_000)).await
        ));
        assert_eq!(
            partition.list_offset(OffsetQuery::Earliest).await.unwrap(),
            Some(0)
        );
        let follower = Reader::Replica {
            node_id: FOLLOWER,
            leader_epoch: 1,
        };
        partition.record_fetch(follower, 5, 1).unwrap();
        assert_eq!(
            partition.list_offset(OffsetQuery::Latest).await.unwrap(),
            Some(5)
        );
        assert_eq!(
            partition
                .list_offset(OffsetQuery::Timestamp(1_000))
                .await
                .unwrap(),
            Some(0)
        );
        registry.close_all().await.unwrap();
    });
}

// Proves a replica never reuses the log of an earlier incarnation of its topic: an open
// partition whose table now names another topic id is deleted and opened empty; a directory
// on disk naming another id is deleted before it is opened; and a directory from before topic
// ids (no partition.metadata) adopts the current id and keeps its records.
#[test]
fn logs_of_earlier_incarnations_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, third) = (new_topic_id(), new_topic_id(), new_topic_id());
    let partition_dir = dir.path().join("t-0");
    run(async {
        let (registry, partition) = open(dir.path(), &table(1, first, &[])).await;
        lead(&partition, 0, &[NODE], 1).await;
        partition.append(batch(3)).await.unwrap();
        assert_eq!(
            read_partition_metadata(&partition_dir).unwrap(),
            Some(topic_id_text(first))
        );
        registry
            .reconcile(&table(2, second, &[]), SHARD)
            .await
            .unwrap();
        let recreated = registry.get("t", 0).unwrap();
        assert_eq!(recreated.topic_id(), second);
        assert_eq!(
            recreated.log().log_end_offset(),
            0,
            "the old records were reused"
        );
        lead(&recreated, 0, &[NODE], 2).await;
        recreated.append(batch(2)).await.unwrap();
        registry.close_all().await.unwrap();

        let (registry, reopened) = open(dir.path(), &table(3, third, &[])).await;
        assert_eq!(reopened.log().log_end_offset(), 0, "the old log was opened");
        lead(&reopened, 0, &[NODE], 3).await;
        reopened.append(batch(4)).await.unwrap();
        registry.close_all().await.unwrap();

        std::fs::remove_file(partition_dir.join(PARTITION_METADATA_FILE)).unwrap();
        let (registry, adopted) = open(dir.path(), &table(4, first, &[])).await;
        assert_eq!(
            adopted.log().log_end_offset(),
            4,
            "an upgraded log keeps its records"
        );
        assert_eq!(
            read_partition_metadata(&partition_dir).unwrap(),
            Some(topic_id_text(first))
        );
        registry.close_all().await.unwrap();
    });
}

// Proves retention never deletes records at or above the high watermark: with tiny segments
// and retention.bytes 1 every closed segment is due, yet none goes while the follower has not
// fetched (high watermark 0); once it fetched to the end they go.
#[test]
fn retention_waits_for_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let configs = [("segment.bytes", "1024"), ("retention.bytes", "1")];
    run(async {
        let (registry, partition) = open(dir.path(), &table(1, new_topic_id(), &configs)).await;
        lead(&partition, 0, &[NODE, FOLLOWER], 1).await;
        for _ in 0..20 {
            partition.append(batch(2)).await.unwrap();
        }
        assert!(partition.log().segment_count() > 5);
        assert_eq!(partition.high_watermark(), 0);
        assert_eq!(partition.apply_retention(i64::MAX / 2).await.unwrap(), 0);
        assert_eq!(partition.log().log_start_offset(), 0);
        let follower = Reader::Replica {
            node_id: FOLLOWER,
            leader_epoch: 0,
        };
        let end = partition.log().log_end_offset();
        partition.record_fetch(follower, end, 1).unwrap();
        assert_eq!(partition.high_watermark(), end);
        assert!(partition.apply_retention(i64::MAX / 2).await.unwrap() > 0);
        assert!(partition.log().log_start_offset() > 0);
        registry.close_all().await.unwrap();
    });
}
