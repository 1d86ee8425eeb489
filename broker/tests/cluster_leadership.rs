//! Partition leadership against a real etcd: controller failover decisions end to end, and
//! compare-and-swap ISR changes.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::sync::{Arc, Barrier};

use sluice_broker::cluster::{
    ClusterError, ClusterHandle, ClusterState, PartitionState, TopicSpec, NO_LEADER,
};
use support_cluster::control::{config, etcd_history, EtcdServer, WAIT};

fn topic(name: &str, partitions: i32, replication_factor: i16) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs: Default::default(),
    }
}

fn state_of(snapshot: &ClusterState, partition: i32) -> PartitionState {
    snapshot.partition("t", partition).unwrap().state.clone()
}

fn leader_is(handle: &ClusterHandle, partition: i32, leader: i32) -> PartitionState {
    let snapshot = handle
        .wait_for(WAIT, |state| {
            state
                .partition("t", partition)
                .is_some_and(|entry| entry.state.leader == leader)
        })
        .unwrap_or_else(|| panic!("partition {partition} never got leader {leader}"));
    state_of(&snapshot, partition)
}

// Proves the controller's failover end to end on 3 brokers and a topic of replication factor 3:
// the dead leader is replaced by the next ISR member with epoch + 1 and leaves the ISR; a live
// replica outside the ISR is never elected (checked over etcd's full history of the key); with
// every ISR member gone the partition is offline (leader -1); a returning member leads again.
#[test]
fn leader_failover_follows_the_isr() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let brokers: Vec<ClusterHandle> = (0..3)
        .map(|id| ClusterHandle::start(config(&endpoint, "fail", id)).unwrap())
        .collect();
    let watcher = &brokers[1];
    brokers[0]
        .wait_for(WAIT, |state| state.brokers.len() == 3)
        .unwrap();
    let assignment = brokers[0].create_topic(topic("t", 3, 3)).unwrap();
    assert_eq!(assignment.assignment[0], vec![0, 1, 2]);
    let created = brokers[0].snapshot();
    assert_eq!(
        state_of(&created, 0),
        PartitionState {
            leader: 0,
            leader_epoch: 0,
            isr: vec![0, 1, 2],
            controller_epoch: 0,
            // Each member with the broker epoch it was registered with at creation.
            isr_epochs: (0..3).map(|id| (id, created.broker_epochs[&id])).collect(),
        }
    );
    let history_start = created.partition("t", 0).unwrap().mod_revision;

    // Broker 1 fell behind: the leader takes it out of partition 0's ISR.
    let shrunk = brokers[0].update_isr("t", 0, vec![0, 2], 0).unwrap();
    assert_eq!(shrunk.isr, vec![0, 2]);
    watcher
        .wait_for(WAIT, |state| state_of(state, 0).isr == vec![0, 2])
        .unwrap();

    brokers[0].abandon().unwrap();
    let failed_over = leader_is(watcher, 0, 2);
    assert_eq!(failed_over.leader_epoch, 1);
    assert_eq!(failed_over.isr, vec![2]);
    let untouched = watcher.snapshot();
    assert_eq!(state_of(&untouched, 1).leader, 1);
    assert_eq!(state_of(&untouched, 1).leader_epoch, 0);

    brokers[2].abandon().unwrap();
    let offline = leader_is(watcher, 0, NO_LEADER);
    assert_eq!(offline.leader_epoch, 2);
    assert_eq!(offline.isr, vec![2], "the ISR is kept while offline");
    let moved = leader_is(watcher, 2, 1);
    assert_eq!(moved.isr, vec![1]);
    assert_eq!(
        watcher.snapshot().offline_partitions(),
        vec![("t".to_string(), 0)]
    );

    let returned = ClusterHandle::start(config(&endpoint, "fail", 2)).unwrap();
    let back = leader_is(watcher, 0, 2);
    assert_eq!(back.leader_epoch, 3);
    assert_eq!(back.isr, vec![2]);

    let history: Vec<PartitionState> =
        etcd_history(&endpoint, "/sluice/fail/partitions/t/0", history_start)
            .iter()
            .map(|value| serde_json::from_slice(value).unwrap())
            .collect();
    assert!(history.len() >= 5, "{history:?}");
    assert!(
        history.iter().all(|state| state.leader != 1),
        "broker 1 was outside the ISR and must never lead: {history:?}"
    );
    let epochs: Vec<i32> = history.iter().map(|state| state.leader_epoch).collect();
    assert!(
        epochs.windows(2).all(|pair| pair[0] <= pair[1]),
        "{epochs:?}"
    );
    returned.shutdown().unwrap();
    watcher.shutdown().unwrap();
}

// Proves ISR changes are compare-and-swap: two concurrent changes based on the same state (same
// epoch and revision) give exactly one success and one Conflict; a non-leader is refused;
// sequential changes each see the last; and after a failover the old epoch is refused as stale.
#[test]
fn isr_updates_are_compare_and_swap() {
    let etcd = EtcdServer::start();
    let zero = ClusterHandle::start(config(&etcd.endpoint(), "cas", 0)).unwrap();
    let one = ClusterHandle::start(config(&etcd.endpoint(), "cas", 1)).unwrap();
    zero.wait_for(WAIT, |state| state.brokers.len() == 2)
        .unwrap();
    zero.create_topic(topic("t", 1, 2)).unwrap();
    let base = zero.snapshot().partition("t", 0).unwrap().version();

    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = [vec![0], vec![0, 1]]
        .into_iter()
        .map(|isr| {
            let (handle, barrier) = (zero.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                handle.update_isr_at("t", 0, isr, base)
            })
        })
        .collect();
    let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let winners: Vec<&PartitionState> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(matches!(loser, ClusterError::Conflict { .. }), "{loser:?}");
    assert_eq!(state_of(&zero.snapshot(), 0).isr, winners[0].isr);

    let refused = one.update_isr("t", 0, vec![0, 1], 0).unwrap_err();
    assert!(
        matches!(refused, ClusterError::NotLeader { leader: 0, .. }),
        "{refused:?}"
    );
    assert_eq!(zero.update_isr("t", 0, vec![0], 0).unwrap().isr, vec![0]);
    assert_eq!(
        zero.update_isr("t", 0, vec![0, 1], 0).unwrap().isr,
        vec![0, 1]
    );
    let invalid = zero.update_isr("t", 0, vec![1], 0).unwrap_err();
    assert!(
        matches!(invalid, ClusterError::InvalidIsr { .. }),
        "{invalid:?}"
    );

    zero.shutdown().unwrap();
    let failed_over = leader_is(&one, 0, 1);
    assert_eq!(failed_over.leader_epoch, 1);
    let stale = one.update_isr("t", 0, vec![1], 0).unwrap_err();
    assert!(
        matches!(
            stale,
            ClusterError::StaleLeaderEpoch {
                expected: 0,
                current: 1,
                ..
            }
        ),
        "{stale:?}"
    );
    assert_eq!(one.update_isr("t", 0, vec![1], 1).unwrap().isr, vec![1]);
    one.shutdown().unwrap();
}
