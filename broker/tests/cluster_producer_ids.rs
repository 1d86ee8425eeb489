//! Producer ids in cluster mode: every broker reserves blocks of ids with a compare-and-swap in
//! etcd, so ids are unique across the cluster and never repeat after a broker's SIGKILL.
#![allow(clippy::unwrap_used)]

mod common;
mod support_cluster;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use sluice_net::{InitProducerIdRequest, InitProducerIdResponse};
use support_cluster::*;

/// Ids each broker hands out before the kill: more than one block (1,000), so every broker
/// reserves at least twice.
const IDS_PER_BROKER: usize = 1_100;

/// Ids asked of the restarted broker.
const IDS_AFTER_RESTART: usize = 10;

/// `count` producer ids from the broker at `addr`, one InitProducerId each.
fn producer_ids(addr: &str, count: usize) -> Vec<i64> {
    let addr: SocketAddr = addr.parse().unwrap();
    common::run(async move {
        let mut client = common::RawClient::connect(addr).await;
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let request = InitProducerIdRequest {
                transactional_id: None,
                producer_id: -1,
                producer_epoch: -1,
            };
            let (response, _): (InitProducerIdResponse, _) = client.call(&request, &[]).await;
            assert_eq!(response.error, 0, "{response:?}");
            assert_eq!(response.producer_epoch, 0);
            ids.push(response.producer_id);
        }
        ids
    })
}

// Proves cluster-wide uniqueness of producer ids: etcd + 3 brokers each hand out 1,100 ids
// (two block reservations apiece, racing each other's compare-and-swap in etcd), and no id is
// given twice; broker 1 is then SIGKILLed and restarted, and the ids it hands out afterwards
// are new too (a block reserved before the kill is never reused).
#[test]
fn producer_ids_are_unique_across_brokers_and_restarts() {
    let mut cluster = Cluster::start(ClusterSpec::default());
    let mut seen = BTreeSet::new();
    let handles: Vec<_> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let addr = cluster.node(id).native_addr();
            std::thread::spawn(move || producer_ids(&addr, IDS_PER_BROKER))
        })
        .collect();
    for handle in handles {
        for id in handle.join().unwrap() {
            assert!(seen.insert(id), "producer id {id} was handed out twice");
        }
    }
    cluster.kill(1);
    cluster.restart(1);
    for id in producer_ids(&cluster.node(1).native_addr(), IDS_AFTER_RESTART) {
        assert!(
            seen.insert(id),
            "producer id {id} repeats after the restart"
        );
    }
}
