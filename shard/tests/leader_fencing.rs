//! Leader appends are fenced by the role they started under: a role change waits for the
//! appends in flight, so a deposed leader never publishes records after it became a follower
//! (where the new leader may already have assigned the same offsets).
#![allow(clippy::unwrap_used)]

use std::rc::Rc;

use bytes::BytesMut;
use sluice_shard::{Partition, PartitionError, ReplicaInfo, Role, RoleView};
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::{LogConfig, PartitionLog};

const NODE: i32 = 1;
const OTHER: i32 = 2;

fn batch(records: usize) -> BytesMut {
    let mut builder = BatchBuilder::new(Compression::None);
    for index in 0..records {
        builder.push(1_000 + index as i64, None, Some(b"value"), &[]);
    }
    builder.build().unwrap()
}

fn info(leader: i32, epoch: i32, version: i64) -> ReplicaInfo {
    ReplicaInfo {
        leader,
        leader_epoch: epoch,
        replicas: vec![NODE, OTHER],
        isr: vec![leader],
        version,
        min_insync_replicas: 1,
        broker_epochs: vec![(NODE, 1), (OTHER, 2)],
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

// Proves a leader append still in flight when the partition becomes a follower is settled
// before the role change returns (published, so a follower's truncation sees it, or refused),
// never published afterwards: an append is started, the role changes while its write is in
// flight, and the log end must not move once the role change has returned.
#[test]
fn role_change_waits_for_leader_appends_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let partition = open(dir.path()).await;
        let live = |_| true;
        partition
            .apply_replica_info(NODE, &info(NODE, 3, 10), live, 0)
            .await;
        assert_eq!(partition.role(), RoleView::Leader { epoch: 3 });
        let appending = {
            let partition = partition.clone();
            glommio::spawn_local(async move { partition.append_as_leader(batch(5), None).await })
        };
        // Lets the append task run up to its write, which then waits for the device.
        futures_lite::future::yield_now().await;
        assert_eq!(
            partition.log().log_end_offset(),
            0,
            "the append finished before the role change could race it"
        );
        partition
            .apply_replica_info(NODE, &info(OTHER, 4, 11), live, 0)
            .await;
        assert_eq!(
            partition.role(),
            RoleView::Follower {
                leader: OTHER,
                epoch: 4
            }
        );
        let end_at_role_change = partition.log().log_end_offset();
        let outcome = appending.await;
        assert_eq!(
            partition.log().log_end_offset(),
            end_at_role_change,
            "a leader append was published after the replica became a follower ({outcome:?})"
        );
        match outcome {
            Ok(appended) => assert!(appended.last_offset < end_at_role_change),
            Err(error) => assert!(
                matches!(error, PartitionError::NotLeaderOrFollower { .. }),
                "{error:?}"
            ),
        }
        let refused = partition.append_as_leader(batch(1), None).await;
        assert!(
            matches!(refused, Err(PartitionError::NotLeaderOrFollower { .. })),
            "{refused:?}"
        );
        partition.log().close().await.unwrap();
    });
}

/// Appends each of the two steady appenders makes at most (so the test ends either way).
const STREAM_APPENDS_MAX: usize = 500;

// Proves a role change is not starved by a steady stream of leader appends (glommio's semaphore
// lets a one-permit acquire pass a waiting larger one): two tasks append back to back, so one
// of them nearly always holds the role; the role change must land while they are still going,
// after which their appends are refused, rather than after both finished every append.
#[test]
fn role_change_is_not_starved_by_a_stream_of_appends() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let partition = open(dir.path()).await;
        let live = |_| true;
        partition
            .apply_replica_info(NODE, &info(NODE, 3, 10), live, 0)
            .await;
        let appender = || {
            let partition = partition.clone();
            glommio::spawn_local(async move {
                let mut appended = 0;
                while appended < STREAM_APPENDS_MAX {
                    if partition.append_as_leader(batch(1), None).await.is_err() {
                        break;
                    }
                    appended += 1;
                }
                appended
            })
        };
        let appenders = [appender(), appender()];
        futures_lite::future::yield_now().await;
        partition
            .apply_replica_info(NODE, &info(OTHER, 4, 11), live, 0)
            .await;
        let mut appended = 0;
        for task in appenders {
            appended += task.await;
        }
        assert!(
            appended < 2 * STREAM_APPENDS_MAX,
            "the role change waited until every one of the {appended} appends was done"
        );
    });
}
