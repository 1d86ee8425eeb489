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
        // The second group's client does not know shards: every group request lands on the
        // shared port's shard and is forwarded to the coordinating one when that is another.
        let plain = Client::connect(ClientConfig {
            shard_aware: false,
            ..client.config().clone()
        })
        .await
        .unwrap();
        let mut other = GroupConsumer::new(
            plain,
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

/// A raw JoinGroup for `group` with one "range" protocol carrying `metadata`.
fn raw_join(group: &str, member_id: &str, metadata: Vec<u8>) -> sluice_net::JoinGroupRequest {
    sluice_net::JoinGroupRequest {
        group_id: group.to_string(),
        session_timeout_ms: 6_000,
        rebalance_timeout_ms: 6_000,
        member_id: member_id.to_string(),
        group_instance_id: None,
        protocol_type: "consumer".to_string(),
        protocols: vec![sluice_net::GroupProtocolMeta {
            name: "range".to_string(),
            metadata,
        }],
        client_id: "storm".to_string(),
    }
}

/// Where `group`'s coordinator is (waits while __consumer_offsets is being created).
async fn coordinator(raw: &mut common::RawClient, group: &str) -> std::net::SocketAddr {
    let started = Instant::now();
    loop {
        let request = sluice_net::FindCoordinatorRequest {
            key: group.to_string(),
            key_type: 0,
        };
        let (found, _): (sluice_net::FindCoordinatorResponse, _) = raw.call(&request, &[]).await;
        if found.error == 0 {
            return format!("{}:{}", found.host, found.shard_port)
                .parse()
                .unwrap();
        }
        assert!(started.elapsed() < WAIT_MAX, "no coordinator: {found:?}");
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

/// Oversized metadata, then a JoinGroup storm from one connection, then an unknown member's
/// heartbeat, all against group "storm".
async fn join_storm(native: std::net::SocketAddr) {
    let mut raw = common::RawClient::connect(native).await;
    let storm_at = coordinator(&mut raw, "storm").await;
    let mut storm = common::RawClient::connect(storm_at).await;
    let (oversized, _): (sluice_net::JoinGroupResponse, _) = storm
        .call(&raw_join("storm", "", vec![0; 4_096]), &[])
        .await;
    assert_eq!(
        oversized.error,
        sluice_net::ErrorCode::InvalidRequest.code()
    );
    assert!(oversized
        .message
        .unwrap()
        .contains("member_metadata_bytes_max"));
    let mut codes = Vec::new();
    for _ in 0..20 {
        let (answer, _): (sluice_net::JoinGroupResponse, _) =
            storm.call(&raw_join("storm", "", vec![1, 2, 3]), &[]).await;
        codes.push(answer.error);
    }
    let required = sluice_net::ErrorCode::MemberIdRequired.code();
    let full = sluice_net::ErrorCode::GroupMaxSizeReached.code();
    assert_eq!(codes.iter().filter(|code| **code == required).count(), 4);
    assert_eq!(codes.iter().filter(|code| **code == full).count(), 16);
    let heartbeat = sluice_net::HeartbeatRequest {
        group_id: "storm".to_string(),
        generation_id: 1,
        member_id: "ghost".to_string(),
        group_instance_id: None,
    };
    let (answer, _): (sluice_net::HeartbeatResponse, _) = storm.call(&heartbeat, &[]).await;
    assert_eq!(answer.error, sluice_net::ErrorCode::UnknownMemberId.code());
}

/// A commit to a deleted topic and the description of an unknown group.
async fn refused_by_admin(client: &Rc<Client>) {
    let admin = GroupAdmin::new(client.clone());
    client.delete_topic("doomed").await.unwrap();
    let error = admin
        .commit_offsets("calm", &[("doomed".to_string(), 0, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            sluice_client::ClientError::Broker {
                code: sluice_net::ErrorCode::UnknownTopicOrPartition,
                ..
            }
        ),
        "{error}"
    );
    let error = admin.describe_group("nosuch").await.unwrap_err();
    assert!(
        matches!(
            error,
            sluice_client::ClientError::Broker {
                code: sluice_net::ErrorCode::GroupIdNotFound,
                ..
            }
        ),
        "{error}"
    );
}

// Proves bad input gets clear errors, is counted, and leaves other groups alone: oversized
// member metadata (INVALID_REQUEST with a message naming the bound), a JoinGroup storm from
// one client (member ids bounded by group_members_max, then GROUP_MAX_SIZE_REACHED), an
// unknown member's heartbeat (UNKNOWN_MEMBER_ID), a commit to a deleted topic
// (UNKNOWN_TOPIC_OR_PARTITION), an unknown group's describe (GROUP_ID_NOT_FOUND); meanwhile a
// real member of another group consumes normally, and sluice_group_errors_total counts it all.
#[test]
fn bad_group_input_is_refused_clearly_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = group_config(dir.path(), 2);
    config.groups.group_members_max = 4;
    config.groups.member_metadata_bytes_max = 1_024;
    let broker = Broker::start(config).unwrap();
    let native = broker.native_addr();
    let admin_addr = broker.admin_addr().unwrap();
    let client_settings = client_config(&broker);
    run(async move {
        let client = Client::connect(client_settings).await.unwrap();
        client
            .create_topic("events", 2, 1, Vec::new())
            .await
            .unwrap();
        client
            .create_topic("doomed", 1, 1, Vec::new())
            .await
            .unwrap();
        produce(&client, "events", 50).await;
        join_storm(native).await;

        let mut calm = GroupConsumer::new(
            client.clone(),
            ConsumerConfig::default(),
            member_config("calm", Assignor::Range),
        )
        .unwrap();
        calm.subscribe(vec!["events".to_string()]);
        let seen = consume_all(std::slice::from_mut(&mut calm), 50).await;
        assert_eq!(seen[0].len(), 50, "the storm did not disturb another group");
        calm.close().await.unwrap();

        refused_by_admin(&client).await;
    });
    let (_, metrics) = common::http_get(admin_addr, "/metrics");
    assert!(
        common::metric(&metrics, "sluice_group_errors_total") >= 20,
        "errors counted"
    );
    assert!(common::metric(&metrics, "sluice_group_offset_commits_total") >= 2);
    // Group gauges are refreshed periodically: wait for the storm and calm groups to show.
    let started = Instant::now();
    while common::metric(
        &common::http_get(admin_addr, "/metrics").1,
        "sluice_groups{",
    ) < 2
    {
        assert!(
            started.elapsed() < WAIT_MAX,
            "group gauges never showed the groups"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.shutdown().unwrap();
}

// Proves committed offsets and group state survive a graceful restart: a member commits part
// of a topic and stops; after the broker restarts on the same data a new member of the group
// resumes exactly after the commit (nothing repeated, nothing skipped), and requests answered
// NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS while the coordinator loads are retried.
#[test]
fn offsets_survive_a_restart_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(group_config(dir.path(), 2)).unwrap();
    let config = client_config(&broker);
    let first: Vec<String> = run(async move {
        let client = Client::connect(config).await.unwrap();
        client
            .create_topic("ledger", 3, 1, Vec::new())
            .await
            .unwrap();
        produce(&client, "ledger", 300).await;
        let mut member = GroupConsumer::new(
            client.clone(),
            ConsumerConfig::default(),
            member_config("resume", Assignor::RoundRobin),
        )
        .unwrap();
        member.subscribe(vec!["ledger".to_string()]);
        let mut printed = Vec::new();
        let started = Instant::now();
        while printed.len() < 100 {
            assert!(started.elapsed() < WAIT_MAX);
            let want = 100 - printed.len();
            for record in member
                .poll_records(Duration::from_millis(200), want)
                .await
                .unwrap()
            {
                printed.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
        member.close().await.unwrap();
        printed
    });
    broker.shutdown().unwrap();
    let broker = Broker::start(group_config(dir.path(), 2)).unwrap();
    let config = client_config(&broker);
    let rest: Vec<String> = run(async move {
        let client = Client::connect(config).await.unwrap();
        let mut member = GroupConsumer::new(
            client.clone(),
            ConsumerConfig::default(),
            member_config("resume", Assignor::RoundRobin),
        )
        .unwrap();
        member.subscribe(vec!["ledger".to_string()]);
        let seen = consume_all(std::slice::from_mut(&mut member), 200).await;
        member.close().await.unwrap();
        seen.into_iter().flatten().collect()
    });
    assert_eq!(first.len(), 100);
    assert_eq!(rest.len(), 200);
    let all: BTreeSet<&String> = first.iter().chain(&rest).collect();
    assert_eq!(all.len(), 300, "nothing repeated or skipped");
    broker.shutdown().unwrap();
}

/// Records in `topic`-`partition` from its log start to its end, read as a plain consumer.
async fn count_records(client: &Rc<Client>, topic: &str, partition: i32) -> usize {
    let end = client
        .list_offset(topic, partition, sluice_client::OffsetSpec::Latest)
        .await
        .unwrap();
    let mut consumer = sluice_client::Consumer::new(client.clone(), ConsumerConfig::default());
    consumer
        .assign(
            vec![(topic.to_string(), partition)],
            sluice_client::SeekTo::Earliest,
        )
        .await
        .unwrap();
    let mut count = 0;
    while consumer.position(topic, partition).unwrap() < end {
        count += consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .len();
    }
    count
}

// Proves `__consumer_offsets` is compacted and loads right after it: 2,000 commits of 4
// partitions and a deleted group shrink to a handful of records once the cleaner ran (small
// segments here), and after a restart the group's offsets are its newest commits and the
// deleted group stays deleted.
#[test]
fn consumer_offsets_is_compacted_and_reloads_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = group_config(dir.path(), 1);
    config.groups.offsets_topic_partitions = 1;
    config.groups.offsets_topic_segment_bytes = 4_096;
    config.storage.log_cleaner_backoff_ms = 100;
    let broker = Broker::start(config.clone()).unwrap();
    let settings = client_config(&broker);
    run(async move {
        let client = Client::connect(settings).await.unwrap();
        client.create_topic("t", 4, 1, Vec::new()).await.unwrap();
        let admin = GroupAdmin::new(client.clone());
        for round in 1..=500 {
            let offsets: Vec<(String, i32, i64)> = (0..4)
                .map(|partition| ("t".to_string(), partition, round))
                .collect();
            admin.commit_offsets("kept", &offsets).await.unwrap();
        }
        admin
            .commit_offsets("gone", &[("t".to_string(), 0, 9)])
            .await
            .unwrap();
        admin.delete_group("gone").await.unwrap();
        let started = Instant::now();
        loop {
            let records = count_records(&client, "__consumer_offsets", 0).await;
            if records < 100 {
                break;
            }
            assert!(
                started.elapsed() < WAIT_MAX,
                "__consumer_offsets still holds {records} records"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
    });
    broker.shutdown().unwrap();
    let broker = Broker::start(config).unwrap();
    let settings = client_config(&broker);
    run(async move {
        let client = Client::connect(settings).await.unwrap();
        let admin = GroupAdmin::new(client.clone());
        let committed = admin.committed_offsets("kept", None).await.unwrap();
        let offsets: Vec<(i32, i64)> = committed
            .iter()
            .map(|offset| (offset.partition, offset.offset))
            .collect();
        assert_eq!(offsets, vec![(0, 500), (1, 500), (2, 500), (3, 500)]);
        let error = admin.describe_group("gone").await.unwrap_err();
        assert!(
            matches!(
                error,
                sluice_client::ClientError::Broker {
                    code: sluice_net::ErrorCode::GroupIdNotFound,
                    ..
                }
            ),
            "{error}"
        );
        assert!(admin
            .committed_offsets("gone", None)
            .await
            .unwrap()
            .is_empty());
    });
    broker.shutdown().unwrap();
}

/// Records what a member was told it lost and got.
#[derive(Default)]
struct Moves {
    revoked: Vec<(String, i32)>,
    assigned: Vec<(String, i32)>,
}

struct RecordingListener(Rc<std::cell::RefCell<Moves>>);

impl sluice_client::RebalanceListener for RecordingListener {
    fn on_partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.0.borrow_mut().revoked.extend_from_slice(partitions);
    }

    fn on_partitions_assigned(&mut self, partitions: &[(String, i32)]) {
        self.0.borrow_mut().assigned.extend_from_slice(partitions);
    }
}

// Proves cooperative-sticky rebalancing (KIP-429) end to end: a member owning all 4 partitions
// gives up only the 2 that move when a second member joins (never the 2 it keeps), the
// newcomer gets exactly those, and the two together read every message once.
#[test]
fn cooperative_members_give_up_only_what_moves() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(group_config(dir.path(), 2)).unwrap();
    let config = client_config(&broker);
    run(async move {
        let client = Client::connect(config).await.unwrap();
        client.create_topic("jobs", 4, 1, Vec::new()).await.unwrap();
        produce(&client, "jobs", 200).await;
        let new_member = || {
            let mut member = GroupConsumer::new(
                client.clone(),
                ConsumerConfig::default(),
                member_config("crew", Assignor::CooperativeSticky),
            )
            .unwrap();
            member.subscribe(vec!["jobs".to_string()]);
            member
        };
        let first_moves = Rc::new(std::cell::RefCell::new(Moves::default()));
        let mut first = new_member();
        first.set_rebalance_listener(Box::new(RecordingListener(first_moves.clone())));
        let mut seen = consume_all(std::slice::from_mut(&mut first), 200).await;
        assert_eq!(first.assignment().len(), 4);
        let mut members = vec![first, new_member()];
        let started = Instant::now();
        while members
            .iter()
            .map(|member| member.assignment().len())
            .collect::<Vec<_>>()
            != vec![2, 2]
        {
            assert!(started.elapsed() < WAIT_MAX, "the partitions never moved");
            for member in &mut members {
                assert!(member
                    .poll(Duration::from_millis(50))
                    .await
                    .unwrap()
                    .is_empty());
            }
        }
        let mut revoked = first_moves.borrow().revoked.clone();
        assert_eq!(revoked.len(), 2, "only what moves is revoked: {revoked:?}");
        let kept = members[0].assignment();
        assert!(revoked.iter().all(|partition| !kept.contains(partition)));
        let mut given: Vec<(String, i32)> = members[1].assignment();
        given.sort();
        revoked.sort();
        assert_eq!(given, revoked, "the newcomer got exactly what was revoked");
        produce(&client, "jobs", 200).await;
        let more = consume_all(&mut members, 200).await;
        seen.extend(more);
        // Both rounds wrote m-0..m-199: each value is read exactly twice, once per round.
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for value in seen.iter().flatten() {
            *counts.entry(value).or_default() += 1;
        }
        assert_eq!(counts.len(), 200);
        assert!(
            counts.values().all(|count| *count == 2),
            "every message once"
        );
        for member in members {
            member.close().await.unwrap();
        }
    });
    broker.shutdown().unwrap();
}

/// A member of `group` subscribed to `topic`.
fn subscribed(client: &Rc<Client>, group: &str, topic: &str) -> GroupConsumer {
    let mut member = GroupConsumer::new(
        client.clone(),
        ConsumerConfig::default(),
        member_config(group, Assignor::Range),
    )
    .unwrap();
    member.subscribe(vec![topic.to_string()]);
    member
}

// Proves reading whole batches in place (`poll_batches`, `FetchedBatches::for_each_record`):
// a member resuming from a commit that falls inside a batch reads every later record exactly
// once and nothing the member before it returned, each partition's offsets contiguous, and it
// commits what it returned (lag 0 after close). A batch poll while records of a limited poll
// are still buffered is refused, not allowed to skip them.
#[test]
fn batch_polls_resume_mid_batch_and_commit_what_they_returned() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(group_config(dir.path(), 1)).unwrap();
    let config = client_config(&broker);
    run(async move {
        let client = Client::connect(config).await.unwrap();
        client
            .create_topic("stream", 2, 1, Vec::new())
            .await
            .unwrap();
        produce(&client, "stream", 400).await;
        let mut read: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        let mut values = BTreeSet::new();
        let mut first = subscribed(&client, "batches", "stream");
        let started = Instant::now();
        while values.len() < 50 {
            assert!(started.elapsed() < WAIT_MAX, "read {} of 50", values.len());
            let want = 50 - values.len();
            for record in first
                .poll_records(Duration::from_millis(100), want)
                .await
                .unwrap()
            {
                read.entry(record.partition)
                    .or_default()
                    .push(record.offset);
                assert!(values.insert(record.value.unwrap()));
            }
        }
        let refused = first.poll_batches(Duration::from_millis(100)).await;
        assert!(
            matches!(refused, Err(sluice_client::ClientError::Config { .. })),
            "{refused:?}"
        );
        first.close().await.unwrap();
        let mut second = subscribed(&client, "batches", "stream");
        while values.len() < 400 {
            assert!(started.elapsed() < WAIT_MAX, "read {} of 400", values.len());
            for fetched in second
                .poll_batches(Duration::from_millis(100))
                .await
                .unwrap()
            {
                let offsets = read.entry(fetched.partition).or_default();
                fetched
                    .for_each_record(|record| {
                        offsets.push(record.offset);
                        let value = Bytes::copy_from_slice(record.value.unwrap());
                        assert!(values.insert(value), "read twice at {}", record.offset);
                    })
                    .unwrap();
            }
        }
        second.close().await.unwrap();
        let committed = GroupAdmin::new(client.clone())
            .committed_offsets("batches", None)
            .await
            .unwrap();
        assert_eq!(committed.len(), 2);
        for offset in committed {
            let end = client
                .list_offset(
                    "stream",
                    offset.partition,
                    sluice_client::OffsetSpec::Latest,
                )
                .await
                .unwrap();
            assert_eq!(
                offset.offset, end,
                "lag 0 on partition {}",
                offset.partition
            );
            let expected: Vec<i64> = (0..end).collect();
            assert_eq!(
                read[&offset.partition], expected,
                "contiguous, from the start"
            );
        }
    });
    broker.shutdown().unwrap();
}
