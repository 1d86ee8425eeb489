//! The consumer-group APIs on the Kafka port, with the kafka-protocol crate as the client:
//! FindCoordinator, the join/sync/heartbeat/leave cycle, offset commits and fetches, group
//! listing, description and deletion, and interoperability with the native group client.
#![allow(clippy::unwrap_used)]

mod common;
mod kafka_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_support::*;
use sluice_broker::BrokerHandle;
use sluice_client::{Client, ClientConfig, GroupAdmin};
use sluice_kafka::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use sluice_kafka::kafka_protocol::messages::leave_group_request::MemberIdentity;
use sluice_kafka::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_kafka::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use sluice_kafka::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use sluice_kafka::kafka_protocol::messages::*;
use sluice_kafka::kafka_protocol::protocol::StrBytes;

/// Bound on waiting for `__consumer_offsets` to be created and loaded.
const COORDINATOR_WAIT_S: u64 = 60;

const MEMBER_ID_REQUIRED: i16 = 79;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NON_EMPTY_GROUP: i16 = 68;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group(name: &str) -> GroupId {
    GroupId(text(name))
}

/// Pause between retries while the coordinator is created or loads.
const COORDINATOR_RETRY_MS: u64 = 200;

/// Calls `call` again, as a client does, while its answer's error code (`code`) says the
/// coordinator is not available or still loading, up to [`COORDINATOR_WAIT_S`]; then returns the
/// last answer.
fn while_coordinator_starts<R>(mut call: impl FnMut() -> R, code: impl Fn(&R) -> i16) -> R {
    let deadline = Instant::now() + Duration::from_secs(COORDINATOR_WAIT_S);
    loop {
        let answer = call();
        let starting = matches!(
            code(&answer),
            COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS
        );
        if !starting || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(COORDINATOR_RETRY_MS));
    }
}

/// FindCoordinator (v3) until the group's coordinator is available.
fn find_coordinator(client: &mut KafkaClient, key: &str) -> FindCoordinatorResponse {
    let request = FindCoordinatorRequest::default().with_key(text(key));
    while_coordinator_starts(
        || client.call(3, &request),
        |response: &FindCoordinatorResponse| response.error_code,
    )
}

/// JoinGroup v5 (KIP-394): the first join is answered MEMBER_ID_REQUIRED with an id, the
/// second, with that id, joins. Retries while the coordinator loads.
fn join(client: &mut KafkaClient, group_name: &str, metadata: &'static [u8]) -> JoinGroupResponse {
    let mut call = |member_id: &str| {
        let request = JoinGroupRequest::default()
            .with_group_id(group(group_name))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(metadata))]);
        while_coordinator_starts(
            || client.call(5, &request),
            |response: &JoinGroupResponse| response.error_code,
        )
    };
    let first = call("");
    if first.error_code != MEMBER_ID_REQUIRED {
        return first;
    }
    call(&first.member_id)
}

fn commit(
    client: &mut KafkaClient,
    group_name: &str,
    joined: &JoinGroupResponse,
) -> OffsetCommitResponse {
    let partitions = |indexes: &[(i32, i64)]| {
        indexes
            .iter()
            .map(|(index, offset)| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*index)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(text("meta")))
            })
            .collect()
    };
    let request = OffsetCommitRequest::default()
        .with_group_id(group(group_name))
        .with_generation_id_or_member_epoch(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic_name("orders"))
                .with_partitions(partitions(&[(0, 42), (2, 7)])),
            OffsetCommitRequestTopic::default()
                .with_name(topic_name("missing"))
                .with_partitions(partitions(&[(0, 1)])),
        ]);
    client.call(8, &request)
}

fn committed_offsets(response: &OffsetFetchResponse) -> Vec<(String, i32, i64, i16)> {
    let mut offsets: Vec<(String, i32, i64, i16)> = response
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                (
                    topic.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )
            })
        })
        .collect();
    offsets.sort();
    offsets
}

// Proves a Kafka-protocol member goes through FindCoordinator (single key and batched), the
// two-step JoinGroup of v4+, SyncGroup (getting back the assignment it sent as leader),
// Heartbeat, OffsetCommit (a missing topic refused per partition, the others written),
// OffsetFetch v7 and v8 (the committed offsets and metadata come back), ListGroups,
// DescribeGroups, DeleteGroups refused while a member is in and accepted once it left; and that
// the native GroupAdmin sees the offsets the Kafka member committed.
#[test]
fn group_lifecycle_through_the_kafka_port() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let kafka = broker.kafka_addr().unwrap();
    let mut client = KafkaClient::connect(kafka);
    client.create_topic("orders", 4);

    let found = find_coordinator(&mut client, "g1");
    assert_eq!(found.error_code, 0, "{:?}", found.error_message);
    assert_eq!(found.port, i32::from(kafka.port()));
    let batched: FindCoordinatorResponse = client.call(
        4,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![text("g1"), text("g2")]),
    );
    assert_eq!(batched.coordinators.len(), 2);
    assert!(batched
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.port == found.port));

    let joined = join_and_sync(&mut client);
    commit_and_fetch(&mut client, &broker, &joined);
    administer(&mut client, &joined);
}

/// Joins g1 as its only member (so its leader) and syncs the assignment it hands itself.
fn join_and_sync(client: &mut KafkaClient) -> JoinGroupResponse {
    let joined = join(client, "g1", b"subscription-bytes");
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    assert_eq!(joined.members.len(), 1);
    assert_eq!(&joined.members[0].metadata[..], b"subscription-bytes");

    let sync: SyncGroupResponse = client.call(
        3,
        &SyncGroupRequest::default()
            .with_group_id(group("g1"))
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(Bytes::from_static(b"assignment-bytes"))]),
    );
    assert_eq!(sync.error_code, 0);
    assert_eq!(&sync.assignment[..], b"assignment-bytes");

    let beat: HeartbeatResponse = client.call(
        3,
        &HeartbeatRequest::default()
            .with_group_id(group("g1"))
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone()),
    );
    assert_eq!(beat.error_code, 0);

    joined
}

/// Commits offsets as the member, reads them back through Kafka (v7, v8) and the native admin.
fn commit_and_fetch(client: &mut KafkaClient, broker: &BrokerHandle, joined: &JoinGroupResponse) {
    let committed = commit(client, "g1", joined);
    let codes: Vec<(String, i32, i16)> = committed
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("orders".to_string(), 0, 0),
            ("orders".to_string(), 2, 0),
            ("missing".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );

    let fetched: OffsetFetchResponse = client.call(
        7,
        &OffsetFetchRequest::default()
            .with_group_id(group("g1"))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name("orders"))
                .with_partition_indexes(vec![0, 1, 2])])),
    );
    assert_eq!(fetched.error_code, 0);
    assert_eq!(
        committed_offsets(&fetched),
        vec![
            ("orders".to_string(), 0, 42, 0),
            ("orders".to_string(), 1, -1, 0),
            ("orders".to_string(), 2, 7, 0),
        ]
    );
    let all: OffsetFetchResponse = client.call(
        8,
        &OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group("g1"))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(group("nobody"))
                .with_topics(None),
        ]),
    );
    assert_eq!(all.groups.len(), 2);
    let g1: Vec<(i32, i64)> = all.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(g1, vec![(0, 42), (2, 7)]);
    assert!(all.groups[1].topics.is_empty());

    let native = ClientConfig {
        bootstrap: vec![broker.native_addr().to_string()],
        ..ClientConfig::default()
    };
    let native_offsets = run(async move {
        let client = Client::connect(native).await.unwrap();
        GroupAdmin::new(client)
            .committed_offsets("g1", None)
            .await
            .unwrap()
    });
    let mut native_offsets: Vec<(String, i32, i64)> = native_offsets
        .into_iter()
        .map(|o| (o.topic, o.partition, o.offset))
        .collect();
    native_offsets.sort();
    assert_eq!(
        native_offsets,
        vec![("orders".to_string(), 0, 42), ("orders".to_string(), 2, 7)]
    );
}

/// Lists and describes the group, deletes it only once its member left.
fn administer(client: &mut KafkaClient, joined: &JoinGroupResponse) {
    let listed: ListGroupsResponse = client.call(4, &ListGroupsRequest::default());
    assert_eq!(listed.error_code, 0);
    let g1_listing = listed
        .groups
        .iter()
        .find(|g| g.group_id.0.as_str() == "g1")
        .unwrap();
    assert_eq!(g1_listing.group_state.as_str(), "Stable");
    let described: DescribeGroupsResponse = client.call(
        5,
        &DescribeGroupsRequest::default().with_groups(vec![group("g1")]),
    );
    let description = &described.groups[0];
    assert_eq!(description.error_code, 0);
    assert_eq!(description.protocol_data.as_str(), "range");
    assert_eq!(description.members.len(), 1);
    assert_eq!(description.members[0].client_id.as_str(), "sluice-test");
    assert_eq!(
        &description.members[0].member_assignment[..],
        b"assignment-bytes"
    );

    let refused: DeleteGroupsResponse = client.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![group("g1")]),
    );
    assert_eq!(refused.results[0].error_code, NON_EMPTY_GROUP);
    let left: LeaveGroupResponse = client.call(
        4,
        &LeaveGroupRequest::default()
            .with_group_id(group("g1"))
            .with_members(vec![
                MemberIdentity::default().with_member_id(joined.member_id.clone())
            ]),
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    let deleted: DeleteGroupsResponse = client.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![group("g1")]),
    );
    assert_eq!(deleted.results[0].error_code, 0);
    let after: OffsetFetchResponse = client.call(
        7,
        &OffsetFetchRequest::default()
            .with_group_id(group("g1"))
            .with_topics(None),
    );
    assert!(
        after.topics.is_empty(),
        "a deleted group's offsets are gone"
    );
}

/// Every version of `key` the broker advertises.
fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let support = sluice_kafka::ApiTable::with_groups().get(key).unwrap();
    support.min..=support.max
}

// Proves every group API answers at every version it advertises (old clients included: an
// answer must not carry a field its version lacks, or the broker cannot encode it and closes
// the connection): each request is answered with a decodable response on a connection that
// stays open.
#[test]
fn every_group_api_version_answers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let mut client = KafkaClient::connect(broker.kafka_addr().unwrap());
    client.create_topic("orders", 2);
    assert_eq!(find_coordinator(&mut client, "compat").error_code, 0);
    for version in versions(ApiKey::FindCoordinator) {
        let request = if version < 4 {
            FindCoordinatorRequest::default().with_key(text("compat"))
        } else {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![text("compat")])
        };
        let _: FindCoordinatorResponse = client.call(version, &request);
    }
    for version in versions(ApiKey::JoinGroup) {
        let request = JoinGroupRequest::default()
            .with_group_id(group(&format!("compat-join-{version}")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(text("range"))
            ]);
        // Each version's group may be coordinated by a shard still loading its partition.
        let joined = while_coordinator_starts(
            || client.call(version, &request),
            |response: &JoinGroupResponse| response.error_code,
        );
        assert!(
            joined.error_code == 0 || joined.error_code == MEMBER_ID_REQUIRED,
            "JoinGroup v{version}: error {}",
            joined.error_code
        );
    }
    for version in versions(ApiKey::SyncGroup) {
        let _: SyncGroupResponse = client.call(
            version,
            &SyncGroupRequest::default().with_group_id(group("compat")),
        );
    }
    for version in versions(ApiKey::Heartbeat) {
        let _: HeartbeatResponse = client.call(
            version,
            &HeartbeatRequest::default().with_group_id(group("compat")),
        );
    }
    for version in versions(ApiKey::LeaveGroup) {
        let request = LeaveGroupRequest::default().with_group_id(group("compat"));
        let request = if version < 3 {
            request.with_member_id(text("nobody"))
        } else {
            request.with_members(vec![
                MemberIdentity::default().with_member_id(text("nobody"))
            ])
        };
        let _: LeaveGroupResponse = client.call(version, &request);
    }
    every_offset_api_version_answers(&mut client);
    every_admin_api_version_answers(&mut client);
    let metadata: MetadataResponse = client.call(1, &MetadataRequest::default());
    assert_eq!(metadata.brokers.len(), 1, "the connection is still open");
}

fn every_offset_api_version_answers(client: &mut KafkaClient) {
    for version in versions(ApiKey::OffsetCommit) {
        let commit: OffsetCommitResponse = client.call(
            version,
            &OffsetCommitRequest::default()
                .with_group_id(group("compat"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(i64::from(version))])]),
        );
        assert_eq!(commit.topics[0].partitions[0].error_code, 0, "v{version}");
    }
    for version in versions(ApiKey::OffsetFetch) {
        let request = if version < 8 {
            OffsetFetchRequest::default()
                .with_group_id(group("compat"))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partition_indexes(vec![0])]))
        } else {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group("compat"))
                .with_topics(None)])
        };
        let fetched: OffsetFetchResponse = client.call(version, &request);
        let offset = if version < 8 {
            fetched.topics[0].partitions[0].committed_offset
        } else {
            fetched.groups[0].topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 9, "the last commit (v9) at v{version}");
    }
}

fn every_admin_api_version_answers(client: &mut KafkaClient) {
    for version in versions(ApiKey::ListGroups) {
        let _: ListGroupsResponse = client.call(version, &ListGroupsRequest::default());
    }
    for version in versions(ApiKey::DescribeGroups) {
        let described: DescribeGroupsResponse = client.call(
            version,
            &DescribeGroupsRequest::default().with_groups(vec![group("compat")]),
        );
        assert_eq!(described.groups.len(), 1);
    }
    for version in versions(ApiKey::OffsetDelete) {
        let _: OffsetDeleteResponse = client.call(
            version,
            &OffsetDeleteRequest::default().with_group_id(group("compat-none")),
        );
    }
    for version in versions(ApiKey::DeleteGroups) {
        let _: DeleteGroupsResponse = client.call(
            version,
            &DeleteGroupsRequest::default().with_groups_names(vec![group("compat-none")]),
        );
    }
}
