//! Consumer groups against an in-process broker (the native client's group member and group
//! admin over real sockets): members split a topic's partitions, every group reads every
//! message, committed offsets survive a restart, bad input gets clear errors.

// Tests and their helpers may unwrap: a failure should stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{run, test_config};
use sluice_broker::{Broker, BrokerConfig, BrokerHandle};
use sluice_client::{
    Acks, Assignor, Client, ClientConfig, ConsumerConfig, GroupAdmin, GroupConsumer,
    GroupConsumerConfig, Producer, ProducerConfig, ProducerRecord,
};

/// How long a test waits for a condition before failing.
const WAIT_MAX: Duration = Duration::from_secs(60);

fn group_config(data_dir: &std::path::Path, shards: usize) -> BrokerConfig {
    let mut config = test_config(data_dir, shards);
    config.groups.offsets_topic_partitions = 4;
    config.groups.initial_rebalance_delay_ms = 200;
    config.groups.session_timeout_ms_min = 1_000;
    config
}

fn client_config(broker: &BrokerHandle) -> ClientConfig {
    ClientConfig {
        bootstrap: vec![broker.native_addr().to_string()],
        ..ClientConfig::default()
    }
}

fn member_config(group: &str, assignor: Assignor) -> GroupConsumerConfig {
    GroupConsumerConfig {
        session_timeout_ms: 6_000,
        heartbeat_interval_ms: 500,
        rebalance_timeout_ms: 10_000,
        assignors: vec![assignor],
        auto_commit_interval_ms: 200,
        ..GroupConsumerConfig::new(group)
    }
}

/// Produces `count` messages `m-<i>` round-robin over the topic's partitions, acks=all.
async fn produce(client: &Rc<Client>, topic: &str, count: usize) {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::All,
            partitioner: sluice_client::Partitioner::RoundRobin,
            ..ProducerConfig::default()
        },
    );
    let mut deliveries = Vec::new();
    for index in 0..count {
        let record = ProducerRecord::new(topic, Bytes::from(format!("m-{index}")));
        deliveries.push(producer.send(record).await.unwrap());
    }
    producer.flush().await.unwrap();
    for delivery in deliveries {
        delivery.await.unwrap();
    }
}

/// Polls every member in turn until `expected` messages arrived in total; returns each
/// member's values.
async fn consume_all(members: &mut [GroupConsumer], expected: usize) -> Vec<Vec<String>> {
    let mut seen: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    let started = Instant::now();
    while seen.iter().map(Vec::len).sum::<usize>() < expected {
        assert!(
            started.elapsed() < WAIT_MAX,
            "consumed {seen:?} of {expected}"
        );
        for (index, member) in members.iter_mut().enumerate() {
            for record in member.poll(Duration::from_millis(100)).await.unwrap() {
                let value = record.value.unwrap();
                seen[index].push(String::from_utf8(value.to_vec()).unwrap());
            }
        }
    }
    seen
}

// Proves the queue and publish-subscribe models: two members of one group split a 6-partition
// topic and together read every message exactly once; a second group reads them all again;
// after closing, the committed offsets equal the log end (lag 0).
#[test]
fn members_split_partitions_and_groups_each_read_everything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(group_config(dir.path(), 2)).unwrap();
    let config = client_config(&broker);
    run(async move {
        let client = Client::connect(config).await.unwrap();
        client
            .create_topic("events", 6, 1, Vec::new())
            .await
            .unwrap();
        produce(&client, "events", 600).await;
        let mut members: Vec<GroupConsumer> = (0..2)
            .map(|_| {
                let mut member = GroupConsumer::new(
                    client.clone(),
                    ConsumerConfig::default(),
                    member_config("readers", Assignor::Range),
                )
                .unwrap();
                member.subscribe(vec!["events".to_string()]);
                member
            })
            .collect();
        let seen = consume_all(&mut members, 600).await;
        let all: BTreeSet<&String> = seen.iter().flatten().collect();
        assert_eq!(all.len(), 600, "every message once");
        assert_eq!(
            seen.iter().map(Vec::len).sum::<usize>(),
            600,
            "no duplicate"
        );
        let assignments: Vec<usize> = members
            .iter()
            .map(|member| member.assignment().len())
            .collect();
        assert_eq!(assignments, vec![3, 3]);
        for member in members {
            member.close().await.unwrap();
        }
        let mut other = GroupConsumer::new(
            client.clone(),
            ConsumerConfig::default(),
            member_config("auditors", Assignor::CooperativeSticky),
        )
        .unwrap();
        other.subscribe(vec!["events".to_string()]);
        let again = consume_all(std::slice::from_mut(&mut other), 600).await;
        assert_eq!(again[0].iter().collect::<BTreeSet<_>>().len(), 600);
        other.close().await.unwrap();
        let admin = GroupAdmin::new(client.clone());
        let committed = admin.committed_offsets("readers", None).await.unwrap();
        let committed: BTreeMap<i32, i64> = committed
            .iter()
            .map(|offset| (offset.partition, offset.offset))
            .collect();
        assert_eq!(committed.len(), 6);
        for (partition, offset) in committed {
            let end = client
                .list_offset("events", partition, sluice_client::OffsetSpec::Latest)
                .await
                .unwrap();
            assert_eq!(offset, end, "lag 0 on partition {partition}");
        }
        let listed = admin.list_groups().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|group| group.group_id.as_str()).collect();
        assert_eq!(names, vec!["auditors", "readers"]);
        let described = admin.describe_group("readers").await.unwrap();
        assert_eq!(described.state, "Empty");
    });
    broker.shutdown().unwrap();
}
