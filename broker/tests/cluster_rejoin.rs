//! A broker's etcd session never ends the process: a broker starting while etcd is down waits
//! for it and joins, instead of exiting.
#![allow(clippy::unwrap_used)]

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{config, etcd_get, EtcdServer, WAIT};
use sluice_broker::cluster::ClusterHandle;

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
