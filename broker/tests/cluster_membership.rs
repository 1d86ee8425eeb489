//! Cluster membership against a real etcd: registration and its lease, controller election,
//! start-up errors, and surviving an etcd restart.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use sluice_broker::cluster::{BrokerInfo, ClusterError, ClusterHandle, TopicSpec};
use support_cluster::control::{config, etcd_get, free_port, EtcdServer, WAIT};

fn topic(name: &str, partitions: i32, replication_factor: i16) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs: Default::default(),
    }
}

// Proves a broker's registration is in etcd (readable JSON, bound to a lease) and in every
// broker's snapshot while it keeps its lease alive, and disappears once it stops renewing it,
// by abandoning the session (no revoke) and waiting for the other broker to see it go.
#[test]
fn registration_lasts_while_alive_and_lapses_with_the_lease() {
    let etcd = EtcdServer::start();
    let first = ClusterHandle::start(config(&etcd.endpoint(), "reg", 1)).unwrap();
    let second = ClusterHandle::start(config(&etcd.endpoint(), "reg", 2)).unwrap();
    assert!(first.is_connected());

    let registered = etcd_get(&etcd.endpoint(), "/sluice/reg/brokers/1").unwrap();
    assert_ne!(
        registered.lease(),
        0,
        "the registration must be bound to a lease"
    );
    let info: BrokerInfo = serde_json::from_slice(registered.value()).unwrap();
    assert_eq!(info.id, 1);
    assert_eq!(info.host, "127.0.0.1");
    assert_eq!(info.native_port, 9001);
    assert_eq!(info.shard_ports, vec![9101, 9201]);
    assert_eq!(info.admin_addr.as_deref(), Some("127.0.0.1:9601"));
    let seen = second
        .wait_for(WAIT, |state| state.brokers.len() == 2)
        .expect("the second broker sees both registrations");
    assert_eq!(seen.brokers[&1], info);

    first.abandon().unwrap();
    let after = second
        .wait_for(WAIT, |state| !state.brokers.contains_key(&1))
        .expect("the registration lapses with the lease");
    assert!(after.brokers.contains_key(&2));
    assert!(etcd_get(&etcd.endpoint(), "/sluice/reg/brokers/1").is_none());
    second.shutdown().unwrap();
}

// Proves exactly one of two brokers is controller (both snapshots and etcd agree), and when the
// controller dies without giving its lease back the other takes over with a higher epoch; then
// a graceful shutdown hands control to a third broker.
#[test]
fn one_controller_and_takeover_when_it_dies() {
    let etcd = EtcdServer::start();
    let handles: Vec<ClusterHandle> = (1..=2)
        .map(|id| ClusterHandle::start(config(&etcd.endpoint(), "elect", id)).unwrap())
        .collect();
    let controller = handles[0]
        .wait_for(WAIT, |state| state.controller.is_some())
        .unwrap()
        .controller
        .unwrap();
    handles[1]
        .wait_for(WAIT, |state| state.controller == Some(controller))
        .expect("both brokers agree on the controller");
    assert_eq!(
        handles
            .iter()
            .filter(|handle| handle.is_controller())
            .count(),
        1
    );
    let stored = etcd_get(&etcd.endpoint(), "/sluice/elect/controller").unwrap();
    assert_eq!(
        stored.value(),
        format!("{{\"id\":{}}}", controller.node_id).as_bytes()
    );

    let (dying, survivor): (Vec<_>, Vec<_>) = handles
        .into_iter()
        .partition(|handle| handle.node_id() == controller.node_id);
    dying[0].abandon().unwrap();
    let survivor = &survivor[0];
    let next = survivor
        .wait_for(WAIT, |state| {
            state.controller.map(|c| c.node_id) == Some(survivor.node_id())
        })
        .expect("the survivor takes over after the dead controller's lease expires")
        .controller
        .unwrap();
    assert!(next.epoch > controller.epoch);

    let third = ClusterHandle::start(config(&etcd.endpoint(), "elect", 3)).unwrap();
    let seen = third.wait_for(WAIT, |state| {
        state.controller.map(|c| c.node_id) == Some(survivor.node_id())
    });
    assert!(
        seen.is_some(),
        "the third broker sees the current controller"
    );
    survivor.shutdown().unwrap();
    let last = third
        .wait_for(WAIT, |state| state.controller.map(|c| c.node_id) == Some(3))
        .expect("the third broker takes over after a graceful shutdown")
        .controller
        .unwrap();
    assert!(last.epoch > next.epoch);
    third.shutdown().unwrap();
}

// Proves an unreachable etcd at start is an error (not a hang) that names the endpoint, by
// pointing a broker at a port nothing listens on.
#[test]
fn unreachable_etcd_at_start_is_a_clear_error() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let config = config(&endpoint, "down", 1);
    let connect_timeout_ms = config.connect_timeout_ms;
    let error = ClusterHandle::start(config).unwrap_err();
    assert!(
        matches!(error, ClusterError::Unreachable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&endpoint), "{message}");
    assert!(
        message.contains(&format!("{connect_timeout_ms} ms")),
        "{message}"
    );
}

// Proves a second live broker with the same node id is refused instead of both acting as that
// node, by starting two handles with node id 1.
#[test]
fn duplicate_node_id_is_refused() {
    let etcd = EtcdServer::start();
    let first = ClusterHandle::start(config(&etcd.endpoint(), "dup", 1)).unwrap();
    let error = ClusterHandle::start(config(&etcd.endpoint(), "dup", 1)).unwrap_err();
    assert!(
        matches!(error, ClusterError::NodeIdInUse { node_id: 1, .. }),
        "{error:?}"
    );
    assert!(first.snapshot().brokers.contains_key(&1));
    first.shutdown().unwrap();
}

// Proves brokers ride out an etcd restart: while etcd is down they report disconnected, keep
// the last snapshot and refuse changes; when it is back they reconnect, register under new
// leases, and snapshot updates resume (a topic created afterwards reaches the other broker).
#[test]
fn etcd_restart_reconnects_and_reregisters() {
    let mut etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let one = ClusterHandle::start(config(&endpoint, "restart", 1)).unwrap();
    let two = ClusterHandle::start(config(&endpoint, "restart", 2)).unwrap();
    two.wait_for(WAIT, |state| state.brokers.len() == 2)
        .unwrap();
    one.create_topic(topic("before", 2, 2)).unwrap();
    let lease_before = etcd_get(&endpoint, "/sluice/restart/brokers/2")
        .unwrap()
        .lease();

    etcd.kill();
    assert!(one.wait_connected(false, WAIT));
    assert!(two.wait_connected(false, WAIT));
    let kept = two.snapshot();
    assert_eq!(kept.brokers.len(), 2);
    assert!(kept.topics.contains_key("before"));
    let refused = one.create_topic(topic("during", 1, 1)).unwrap_err();
    assert!(
        matches!(refused, ClusterError::Disconnected { .. }),
        "{refused:?}"
    );

    etcd.restart();
    assert!(one.wait_connected(true, WAIT));
    assert!(two.wait_connected(true, WAIT));
    let lease_after = etcd_get(&endpoint, "/sluice/restart/brokers/2")
        .unwrap()
        .lease();
    assert_ne!(lease_after, lease_before, "re-registered under a new lease");
    one.create_topic(topic("after", 1, 2)).unwrap();
    let seen = two
        .wait_for(WAIT, |state| state.topics.contains_key("after"))
        .expect("updates reach the other broker after the restart");
    assert_eq!(seen.brokers.len(), 2);
    assert!(seen.controller.is_some());
    assert!(!seen.topics.contains_key("during"));
    one.shutdown().unwrap();
    two.shutdown().unwrap();
}
