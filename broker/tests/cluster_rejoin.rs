//! A broker's etcd session never ends the process: a broker starting while etcd is down waits
//! for it and joins, instead of exiting. A broker that registers anew (it restarted) gets a new
//! broker epoch (KIP-903): it leaves the ISRs it was in and rejoins only under that epoch.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::time::{Duration, Instant};

use sluice_broker::cluster::{ClusterError, ClusterHandle, ClusterState, TopicSpec};
use support_cluster::control::{config, etcd_get, EtcdServer, WAIT};

/// How long etcd stays down while the broker starts: longer than the test config's connect
/// timeout, so the broker's first attempts fail.
const ETCD_OUTAGE: Duration = Duration::from_secs(4);

// Proves a broker that starts while etcd is down (restarting) keeps trying and joins once etcd
// is back, instead of failing its start: etcd is killed, a handle starts with a start bound of
// a minute, etcd comes back after an outage longer than the connect timeout, and the start
// succeeds with the registration in etcd.
#[test]
fn start_waits_for_etcd_to_return() {
    let mut etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    etcd.kill();
    let mut joining = config(&endpoint, "late", 1);
    joining.start_timeout_ms = WAIT.as_millis() as u64 * 2;
    let started_at = Instant::now();
    let starting = std::thread::spawn(move || ClusterHandle::start(joining));
    std::thread::sleep(ETCD_OUTAGE);
    assert!(
        !starting.is_finished(),
        "the start ended while etcd was down: {:?}",
        starting.join().unwrap().map(|_| ())
    );
    etcd.restart();
    let handle = starting.join().unwrap().unwrap_or_else(|error| {
        panic!("the start failed after {:?}: {error}", started_at.elapsed())
    });
    assert!(handle.is_connected());
    assert!(etcd_get(&endpoint, "/sluice/late/brokers/1").is_some());
    handle
        .wait_for(WAIT, |state| state.controller_id() == Some(1))
        .expect("the broker campaigns once it joined");
    handle.shutdown().unwrap();
}

fn isr_of(state: &ClusterState) -> Vec<i32> {
    state
        .partition("t", 0)
        .map_or(Vec::new(), |entry| entry.state.isr.clone())
}

// Proves broker epochs against a real etcd: a topic's partition state records each ISR
// member's registration epoch; an expansion naming a stale epoch is refused and changes
// nothing, one naming the current epoch is recorded; and when that member registers anew (its
// session lapsed, as after a restart) the controller takes it out of the ISR, while the leader
// keeps leading.
#[test]
fn a_member_registered_anew_leaves_the_isr() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let leader = ClusterHandle::start(config(&endpoint, "epochs", 1)).unwrap();
    let follower = ClusterHandle::start(config(&endpoint, "epochs", 2)).unwrap();
    leader
        .wait_for(WAIT, |state| state.brokers.len() == 2)
        .unwrap();
    leader
        .create_topic(TopicSpec {
            name: "t".into(),
            partitions: 1,
            replication_factor: 2,
            configs: Default::default(),
        })
        .unwrap();
    let created = leader.snapshot();
    let entry = created.partition("t", 0).unwrap().clone();
    assert_eq!(entry.state.leader, 1);
    let first_epoch = created.broker_epoch(2).unwrap();
    assert_eq!(entry.state.isr_epochs.get(&2), Some(&first_epoch));

    let shrunk = leader.update_isr("t", 0, vec![1], 0).unwrap();
    assert!(!shrunk.isr_epochs.contains_key(&2));
    let basis = leader
        .wait_for(WAIT, |state| isr_of(state) == vec![1])
        .unwrap()
        .partition("t", 0)
        .unwrap()
        .version();
    let stale = leader.update_isr_adding("t", 0, vec![1, 2], basis, vec![(2, first_epoch - 1)]);
    assert!(
        matches!(stale, Err(ClusterError::StaleBrokerEpoch { broker: 2, .. })),
        "{stale:?}"
    );
    assert_eq!(
        isr_of(&leader.snapshot()),
        vec![1],
        "a refused change wrote nothing"
    );
    let expanded = leader
        .update_isr_adding("t", 0, vec![1, 2], basis, vec![(2, first_epoch)])
        .unwrap();
    assert_eq!(expanded.isr_epochs.get(&2), Some(&first_epoch));
    leader
        .wait_for(WAIT, |state| isr_of(state) == vec![1, 2])
        .unwrap();

    follower.abandon().unwrap();
    leader
        .wait_for(WAIT, |state| !state.brokers.contains_key(&2))
        .expect("the follower's registration lapses");
    let returned = ClusterHandle::start(config(&endpoint, "epochs", 2)).unwrap();
    let after = leader
        .wait_for(WAIT, |state| {
            state
                .broker_epoch(2)
                .is_some_and(|epoch| epoch != first_epoch)
                && isr_of(state) == vec![1]
        })
        .expect("the member registered anew leaves the ISR");
    let entry = after.partition("t", 0).unwrap();
    assert_eq!((entry.state.leader, entry.state.leader_epoch), (1, 0));
    returned.shutdown().unwrap();
    leader.shutdown().unwrap();
}
