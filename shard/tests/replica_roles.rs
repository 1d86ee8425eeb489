//! A partition's replication roles on a real log: what a leader, a follower and an offline
//! replica accept, and how acks=all waits for the followers.
#![allow(clippy::unwrap_used)]

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use sluice_shard::{
    IsrChangeKind, Partition, PartitionError, Reader, ReplicaInfo, Role, RoleView, NO_LEADER,
};
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::{LogConfig, PartitionLog};

const NODE: i32 = 1;
const FOLLOWER: i32 = 2;

fn batch(records: usize) -> BytesMut {
    let mut builder = BatchBuilder::new(Compression::None);
    for index in 0..records {
        builder.push(1_000 + index as i64, None, Some(b"value"), &[]);
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
        min_insync_replicas: 2,
        broker_epochs: vec![(NODE, 1), (FOLLOWER, 2)],
        adding: Vec::new(),
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap()
        .run(future)
}

async fn open(dir: &std::path::Path) -> Rc<Partition> {
    let log = PartitionLog::open(dir.join("t-0"), LogConfig::default())
        .await
        .unwrap();
    let role = Role::Offline {
        epoch: -1,
        high_watermark: 0,
    };
    Rc::new(Partition::with_role("t", 0, log, role))
}

// Proves an acks=all write completes only once the follower's fetch shows it has the records
// (the high watermark passed them), times out when no follower fetches, carries the leader's
// epoch, and that a consumer never reads past the high watermark while a follower reads to the
// log end.
#[test]
fn acks_all_waits_for_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let partition = open(dir.path()).await;
        let live = |_| true;
        assert!(
            partition
                .apply_replica_info(NODE, &info(NODE, 3, &[NODE, FOLLOWER], 10), live, 0)
                .await
        );
        assert_eq!(partition.role(), RoleView::Leader { epoch: 3 });
        let waited = partition
            .append_as_leader(batch(5), Some(Duration::from_millis(100)))
            .await;
        assert!(
            matches!(
                waited,
                Err(PartitionError::ReplicationTimeout { last_offset: 4, .. })
            ),
            "{waited:?}"
        );
        assert_eq!(partition.log().latest_epoch(), Some(3));
        assert_eq!(partition.high_watermark(), 0);
        let consumer = partition.read_bytes(0, 1 << 20).await.unwrap();
        assert!(consumer.is_empty(), "a consumer saw uncommitted records");
        let follower = Reader::Replica {
            node_id: FOLLOWER,
            leader_epoch: 3,
        };
        let replica = partition.read_bytes_as(follower, 0, 1 << 20).await.unwrap();
        assert!(!replica.is_empty(), "the follower cannot read the log end");

        let appending = {
            let partition = partition.clone();
            glommio::spawn_local(async move {
                partition
                    .append_as_leader(batch(2), Some(Duration::from_secs(60)))
                    .await
            })
        };
        while partition.log().log_end_offset() < 7 {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        partition.record_fetch(follower, 7, 1).unwrap();
        let outcome = appending.await.unwrap();
        assert_eq!((outcome.base_offset, outcome.last_offset), (5, 6));
        assert_eq!(partition.high_watermark(), 7);
        assert_eq!(
            partition.read_bytes(0, 1 << 20).await.unwrap(),
            replica_all(&partition).await
        );
        partition.log().close().await.unwrap();
    });
}

async fn replica_all(partition: &Partition) -> bytes::Bytes {
    let end = partition.log().log_end_offset();
    partition.log().read_bytes(0, 1 << 20, end).await.unwrap()
}

// Proves the refusals: acks=all below min.insync.replicas is refused before anything is
// appended; a follower and an offline replica refuse produce, consumer reads and epoch queries
// with NotLeaderOrFollower; a replica fetch with an older epoch is fenced; and a leader proposes
// removing a follower that never caught up within the lag bound.
#[test]
fn followers_and_small_isrs_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let partition = open(dir.path()).await;
        let live = |_| true;
        partition
            .apply_replica_info(NODE, &info(NODE, 4, &[NODE], 20), live, 0)
            .await;
        let refused = partition
            .append_as_leader(batch(1), Some(Duration::from_secs(1)))
            .await;
        assert!(
            matches!(
                refused,
                Err(PartitionError::NotEnoughReplicas {
                    isr: 1,
                    required: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!(
            partition.log().log_end_offset(),
            0,
            "a refused write was appended"
        );
        partition.append(batch(1)).await.unwrap();

        partition
            .apply_replica_info(NODE, &info(NODE, 4, &[NODE, FOLLOWER], 21), live, 0)
            .await;
        let stale = Reader::Replica {
            node_id: FOLLOWER,
            leader_epoch: 3,
        };
        assert!(matches!(
            partition.record_fetch(stale, 0, 1),
            Err(PartitionError::FencedLeaderEpoch {
                requested: 3,
                current: 4,
                ..
            })
        ));
        let proposal = partition.propose_isr_change(60_000, 10_000).unwrap();
        assert_eq!(proposal.kind, IsrChangeKind::Shrink);
        assert_eq!(proposal.isr, vec![NODE]);
        assert_eq!((proposal.leader_epoch, proposal.version), (4, 21));
        assert_eq!(
            partition.propose_isr_change(60_000, 10_000),
            None,
            "one at a time"
        );

        partition
            .apply_replica_info(NODE, &info(FOLLOWER, 5, &[FOLLOWER], 30), live, 0)
            .await;
        assert_eq!(
            partition.role(),
            RoleView::Follower {
                leader: FOLLOWER,
                epoch: 5
            }
        );
        let not_leader = |result: Result<(), PartitionError>| {
            matches!(
                result,
                Err(PartitionError::NotLeaderOrFollower {
                    leader: FOLLOWER,
                    ..
                })
            )
        };
        assert!(not_leader(partition.append(batch(1)).await.map(drop)));
        assert!(not_leader(partition.read_bytes(0, 1024).await.map(drop)));
        assert!(not_leader(partition.epoch_end(4).map(drop)));

        partition
            .apply_replica_info(NODE, &info(NO_LEADER, 6, &[FOLLOWER], 31), live, 0)
            .await;
        assert_eq!(partition.role(), RoleView::Offline { epoch: 6 });
        assert!(partition.append(batch(1)).await.is_err());
        partition.log().close().await.unwrap();
    });
}
