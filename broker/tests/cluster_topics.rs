//! Topics in cluster mode against a real etcd: creation and deletion through the
//! `MetadataStore` interface, large topics, the controller's repair of a half-created topic, and
//! change subscriptions.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::sync::mpsc;

use sluice_broker::cluster::{
    ClusterHandle, EtcdMetadataStore, PartitionState, TopicAssignment, TopicSpec,
};
use sluice_broker::metadata::{MetadataError, MetadataStore, TopicRecord};
use support_cluster::control::{block_on, config, etcd_count, etcd_get, EtcdServer, WAIT};

fn record(name: &str, partitions: u32, replication_factor: i16) -> TopicRecord {
    TopicRecord {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs: vec![("retention.ms".to_string(), "60000".to_string())],
    }
}

// Proves the etcd store behaves like the embedded one for the broker: a created topic is
// listed with its configs at a higher version, is readable JSON in etcd with its placement and
// initial partition states, duplicates and unknown deletes get the same errors, an impossible
// replication factor is refused with the reason, and deletion removes every key of the topic.
#[test]
fn metadata_store_creates_and_deletes_topics() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let handles: Vec<ClusterHandle> = (1..=3)
        .map(|id| ClusterHandle::start(config(&endpoint, "topics", id)).unwrap())
        .collect();
    handles[0]
        .wait_for(WAIT, |state| state.brokers.len() == 3)
        .unwrap();
    let mut store = EtcdMetadataStore::new(handles[0].clone());
    assert_eq!(store.cluster_id(), "topics");
    let before = store.version();

    let version = store.create_topic(record("orders", 5, 2)).unwrap();
    assert!(version > before);
    assert_eq!(store.list_topics(), vec![record("orders", 5, 2)]);
    let stored = etcd_get(&endpoint, "/sluice/topics/topics/orders").unwrap();
    let assignment: TopicAssignment = serde_json::from_slice(stored.value()).unwrap();
    assert_eq!(
        assignment.assignment,
        vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2], vec![2, 3]]
    );
    let partition = etcd_get(&endpoint, "/sluice/topics/partitions/orders/1").unwrap();
    let partition: PartitionState = serde_json::from_slice(partition.value()).unwrap();
    assert_eq!(partition.leader, 2);
    assert_eq!(partition.leader_epoch, 0);
    assert_eq!(partition.isr, vec![2, 3]);
    handles[2]
        .wait_for(WAIT, |state| state.topics.contains_key("orders"))
        .expect("another broker sees the topic");

    assert!(matches!(
        store.create_topic(record("orders", 1, 1)),
        Err(MetadataError::TopicExists(_))
    ));
    let refused = store.create_topic(record("wide", 1, 4)).unwrap_err();
    assert!(refused.to_string().contains("3 live brokers"), "{refused}");
    assert!(store.topic("wide").is_none());

    let deleted = store.delete_topic("orders").unwrap();
    assert!(deleted > version);
    assert!(store.list_topics().is_empty());
    assert_eq!(
        etcd_count(&endpoint, "/sluice/topics/partitions/orders/"),
        0
    );
    assert!(matches!(
        store.delete_topic("orders"),
        Err(MetadataError::UnknownTopic(_))
    ));
    for handle in &handles {
        handle.shutdown().unwrap();
    }
}

// Proves a topic with more partitions than one etcd transaction may hold (300 > 128 ops) is
// created completely: every partition state exists with its initial leader.
#[test]
fn large_topic_is_created_completely() {
    let etcd = EtcdServer::start();
    let handle = ClusterHandle::start(config(&etcd.endpoint(), "large", 1)).unwrap();
    let spec = TopicSpec {
        name: "big".to_string(),
        partitions: 300,
        replication_factor: 1,
        configs: Default::default(),
    };
    handle.create_topic(spec).unwrap();
    assert_eq!(
        etcd_count(&etcd.endpoint(), "/sluice/large/partitions/big/"),
        300
    );
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.partitions["big"].len(), 300);
    assert!(snapshot.partitions["big"]
        .values()
        .all(|entry| entry.state.leader == 1 && entry.state.isr == vec![1]));
    handle.shutdown().unwrap();
}

// Proves the controller repairs a topic whose creator died after writing the topic key but
// before its partition states, by writing such a topic straight into etcd and waiting for the
// states to appear (leader = replica 0, every replica in the ISR).
#[test]
fn controller_fills_in_missing_partition_states() {
    let etcd = EtcdServer::start();
    let handle = ClusterHandle::start(config(&etcd.endpoint(), "repair", 4)).unwrap();
    handle
        .wait_for(WAIT, |state| state.controller.is_some())
        .unwrap();
    let topic = TopicAssignment {
        name: "half".to_string(),
        // No id, as a creator from before topic ids wrote it: the snapshot derives one.
        topic_id: Default::default(),
        partitions: 2,
        replication_factor: 1,
        configs: Default::default(),
        assignment: vec![vec![4], vec![4]],
    };
    let endpoint = etcd.endpoint();
    block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        let value = serde_json::to_vec(&topic).unwrap();
        client
            .put("/sluice/repair/topics/half", value, None)
            .await
            .unwrap();
    });
    let repaired = handle
        .wait_for(WAIT, |state| {
            state.partitions.get("half").is_some_and(|p| p.len() == 2)
        })
        .expect("the controller writes the missing states");
    let state = &repaired.partition("half", 1).unwrap().state;
    assert_eq!((state.leader, state.isr.clone()), (4, vec![4]));
    assert_eq!(
        state.controller_epoch,
        repaired.controller.unwrap().epoch,
        "written by the controller"
    );
    handle.shutdown().unwrap();
}

// Proves a subscription (the async interface shards use) wakes up with a snapshot that shows a
// change made elsewhere, and ends once the control plane stops.
#[test]
fn subscription_sees_changes_and_ends_at_shutdown() {
    let etcd = EtcdServer::start();
    let watcher = ClusterHandle::start(config(&etcd.endpoint(), "sub", 1)).unwrap();
    let creator = ClusterHandle::start(config(&etcd.endpoint(), "sub", 2)).unwrap();
    let mut subscription = watcher.subscribe().unwrap();
    let (seen_sender, seen) = mpsc::channel();
    let listener = std::thread::spawn(move || {
        futures_lite::future::block_on(async {
            while let Some(snapshot) = subscription.changed().await {
                if snapshot.topics.contains_key("news") {
                    seen_sender.send(snapshot.revision).unwrap();
                }
            }
        });
    });
    let spec = TopicSpec {
        name: "news".to_string(),
        partitions: 1,
        replication_factor: 2,
        configs: Default::default(),
    };
    creator.create_topic(spec).unwrap();
    let revision = seen
        .recv_timeout(WAIT)
        .expect("the subscriber sees the topic");
    assert!(revision > 0);
    watcher.shutdown().unwrap();
    listener.join().unwrap();
    creator.shutdown().unwrap();
}
