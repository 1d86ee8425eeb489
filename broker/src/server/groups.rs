//! The native protocol's consumer-group apis: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups,
//! OffsetDelete. Each maps its rkyv body to the coordinator's own request type, routes it to
//! the shard that coordinates the group (see [`crate::groups`]), and maps the answer back.
//!
//! What a client relies on:
//! - FindCoordinator answers the broker and the shard port of the group's coordinator, or
//!   COORDINATOR_NOT_AVAILABLE while `__consumer_offsets` is being created (it is created on
//!   first use) or has no leader; ask again after a short wait.
//! - NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS: leadership moved or the new leader is
//!   loading: find the coordinator again and retry.
//! - JoinGroup and SyncGroup are long polls: the answer comes when the rebalance moves, up to
//!   the rebalance timeout. A connection answers in order, so a client keeps its long polls on
//!   a connection of their own.
//! - An OffsetCommit is answered once the offsets are written to the in-sync replicas; a commit
//!   for a topic or partition that does not exist gets UNKNOWN_TOPIC_OR_PARTITION for it.

use std::net::SocketAddr;
use std::rc::Rc;

use futures_channel::oneshot;
use sluice_group as group;
use sluice_group::{GroupErrorCode, GroupRequest, GroupResponse, CONSUMER_OFFSETS_TOPIC};
use sluice_net::{
    ApiKey, CommittedOffsetMeta, Connection, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, ErrorCode, FindCoordinatorRequest,
    FindCoordinatorResponse, Frame, FrameHeader, GroupDescription, GroupListing,
    GroupMemberDescription, GroupPartitionResult, GroupResult, HeartbeatRequest, HeartbeatResponse,
    JoinGroupMemberMeta, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, LeftMemberResult, ListGroupsRequest, ListGroupsResponse, NetError,
    NewTopic, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicResult,
    COORDINATOR_KEY_GROUP,
};
use sluice_shard::{ProtocolErrorKind, Route, ShardId};

use super::ShardServer;
use crate::control::ControlRequest;

/// A group api's response body.
pub enum GroupBody {
    /// FindCoordinator.
    FindCoordinator(FindCoordinatorResponse),
    /// JoinGroup.
    JoinGroup(JoinGroupResponse),
    /// SyncGroup.
    SyncGroup(SyncGroupResponse),
    /// Heartbeat.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupResponse),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitResponse),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchResponse),
    /// ListGroups.
    ListGroups(ListGroupsResponse),
    /// DescribeGroups.
    DescribeGroups(DescribeGroupsResponse),
    /// DeleteGroups.
    DeleteGroups(DeleteGroupsResponse),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteResponse),
}

impl GroupBody {
    /// Writes the body as a response frame.
    pub async fn write(self, header: FrameHeader, writer: &mut Connection) -> Result<(), NetError> {
        match self {
            GroupBody::FindCoordinator(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::JoinGroup(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::SyncGroup(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::Heartbeat(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::LeaveGroup(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::OffsetCommit(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::OffsetFetch(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::ListGroups(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::DescribeGroups(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::DeleteGroups(body) => writer.write_frame(header, &body, &[]).await,
            GroupBody::OffsetDelete(body) => writer.write_frame(header, &body, &[]).await,
        }
    }
}

/// Whether `api` is a group api this module serves.
pub fn is_group_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::FindCoordinator
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::ListGroups
            | ApiKey::DescribeGroups
            | ApiKey::DeleteGroups
            | ApiKey::OffsetDelete
    )
}

/// Serves one group api request (the caller checked the version).
pub async fn handle(
    server: &Rc<ShardServer>,
    api: ApiKey,
    frame: &Frame,
    peer: Option<SocketAddr>,
) -> Result<GroupBody, NetError> {
    let body = match api {
        ApiKey::FindCoordinator => {
            GroupBody::FindCoordinator(find_coordinator(server, frame.decode()?).await)
        }
        ApiKey::JoinGroup => GroupBody::JoinGroup(join_group(server, frame.decode()?, peer).await),
        ApiKey::SyncGroup => GroupBody::SyncGroup(sync_group(server, frame.decode()?).await),
        ApiKey::Heartbeat => GroupBody::Heartbeat(heartbeat(server, frame.decode()?).await),
        ApiKey::LeaveGroup => GroupBody::LeaveGroup(leave_group(server, frame.decode()?).await),
        ApiKey::OffsetCommit => {
            GroupBody::OffsetCommit(offset_commit(server, frame.decode()?).await)
        }
        ApiKey::OffsetFetch => GroupBody::OffsetFetch(offset_fetch(server, frame.decode()?).await),
        ApiKey::ListGroups => GroupBody::ListGroups(list_groups(server, frame.decode()?).await),
        ApiKey::DescribeGroups => {
            GroupBody::DescribeGroups(describe_groups(server, frame.decode()?).await)
        }
        ApiKey::DeleteGroups => {
            GroupBody::DeleteGroups(delete_groups(server, frame.decode()?).await)
        }
        ApiKey::OffsetDelete => {
            GroupBody::OffsetDelete(offset_delete(server, frame.decode()?).await)
        }
        _ => return Err(NetError::UnknownApi(api.code())),
    };
    Ok(body)
}

/// The body of `api`'s type carrying `code` in place of results (undecodable request or
/// unsupported version).
pub fn error_body(api: ApiKey, code: ErrorCode, message: Option<String>) -> Option<GroupBody> {
    let error = code.code();
    let body = match api {
        ApiKey::FindCoordinator => GroupBody::FindCoordinator(coordinator_error(error, message)),
        ApiKey::JoinGroup => GroupBody::JoinGroup(join_response(
            group::JoinGroupResponse {
                error_message: message,
                ..group::JoinGroupResponse::error("", GroupErrorCode::InvalidRequest)
            },
            error,
        )),
        ApiKey::SyncGroup => GroupBody::SyncGroup(SyncGroupResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        }),
        ApiKey::Heartbeat => GroupBody::Heartbeat(HeartbeatResponse { error }),
        ApiKey::LeaveGroup => GroupBody::LeaveGroup(LeaveGroupResponse {
            error,
            members: Vec::new(),
        }),
        ApiKey::OffsetCommit => GroupBody::OffsetCommit(OffsetCommitResponse {
            partitions: vec![GroupPartitionResult {
                topic: String::new(),
                partition: -1,
                error,
            }],
        }),
        ApiKey::OffsetFetch => GroupBody::OffsetFetch(OffsetFetchResponse {
            error,
            partitions: Vec::new(),
        }),
        ApiKey::ListGroups => GroupBody::ListGroups(ListGroupsResponse {
            error,
            groups: Vec::new(),
        }),
        ApiKey::DescribeGroups => GroupBody::DescribeGroups(DescribeGroupsResponse {
            groups: vec![describe_error("", error)],
        }),
        ApiKey::DeleteGroups => GroupBody::DeleteGroups(DeleteGroupsResponse {
            results: vec![GroupResult {
                group_id: String::new(),
                error,
            }],
        }),
        ApiKey::OffsetDelete => GroupBody::OffsetDelete(OffsetDeleteResponse {
            error,
            partitions: Vec::new(),
        }),
        _ => return None,
    };
    Some(body)
}

fn describe_error(group_id: &str, error: i16) -> GroupDescription {
    GroupDescription {
        error,
        group_id: group_id.to_string(),
        state: group::GroupState::Dead.name().to_string(),
        protocol_type: String::new(),
        protocol: String::new(),
        generation_id: -1,
        members: Vec::new(),
    }
}

fn coordinator_error(error: i16, message: Option<String>) -> FindCoordinatorResponse {
    FindCoordinatorResponse {
        error,
        message,
        node_id: -1,
        host: String::new(),
        port: 0,
        shard: 0,
        shard_port: 0,
        partition: -1,
    }
}

/// The number of partitions of `__consumer_offsets`, if it exists.
pub(crate) fn offsets_partitions(server: &ShardServer) -> Option<i32> {
    server.shard.with_table(|table| {
        table
            .topic(CONSUMER_OFFSETS_TOPIC)
            .and_then(|topic| i32::try_from(topic.partition_count()).ok())
            .filter(|count| *count > 0)
    })
}

/// Asks the control plane to create `__consumer_offsets` (once at a time per shard) with
/// `offsets_topic_partitions` partitions and, in cluster mode, min(replication factor, live
/// brokers) replicas. As Kafka's, the topic is compacted (`cleanup.policy=compact`): it keeps
/// the newest record of every key (a group's metadata, a partition's committed offset) and
/// nothing is deleted for its age, so it stays bounded and idle groups keep their offsets.
pub(crate) fn ensure_offsets_topic(server: &Rc<ShardServer>) {
    if !server.groups.begin_topic_creation() {
        return;
    }
    let settings = &server.shared.config.groups;
    let live_brokers = server
        .shard
        .with_table(|table| table.cluster().map(|cluster| cluster.brokers.len()));
    let replication_factor = match live_brokers {
        Some(brokers) => {
            let brokers = i16::try_from(brokers.max(1)).unwrap_or(i16::MAX);
            settings.offsets_topic_replication_factor.min(brokers)
        }
        None => 1,
    };
    let topic = NewTopic {
        name: CONSUMER_OFFSETS_TOPIC.to_string(),
        partitions: settings.offsets_topic_partitions,
        replication_factor,
        configs: vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                settings.offsets_topic_segment_bytes.to_string(),
            ),
        ],
    };
    let (reply, answer) = oneshot::channel::<Vec<TopicResult>>();
    if !server
        .shared
        .control
        .try_send(ControlRequest::CreateTopics {
            topics: vec![topic],
            reply,
        })
    {
        server.groups.end_topic_creation();
        return;
    }
    let server = server.clone();
    glommio::spawn_local(async move {
        if let Ok(results) = answer.await {
            for result in results {
                let exists = result.error == ErrorCode::TopicAlreadyExists.code();
                if result.error != ErrorCode::None.code() && !exists {
                    tracing::warn!(error = result.error, message = ?result.message, "creating __consumer_offsets failed");
                } else {
                    tracing::info!(partitions = server.shared.config.groups.offsets_topic_partitions, replication_factor, "created __consumer_offsets");
                }
            }
        }
        server.groups.end_topic_creation();
    })
    .detach();
}

/// Serves `request` for `group_id` on the shard coordinating it: locally, or forwarded to the
/// owning shard (`ShardRequest::Group`). The entry point of both protocol front ends for every
/// group api but ListGroups ([`list_all`]); a request naming several groups is split by group.
pub async fn route(
    server: &Rc<ShardServer>,
    group_id: &str,
    request: GroupRequest,
) -> GroupResponse {
    let Some(count) = offsets_partitions(server) else {
        ensure_offsets_topic(server);
        return request.error_response(GroupErrorCode::CoordinatorNotAvailable);
    };
    let partition = group::partition_for_group(group_id, count);
    route_to_partition(server, partition, request).await
}

async fn route_to_partition(
    server: &Rc<ShardServer>,
    partition: i32,
    request: GroupRequest,
) -> GroupResponse {
    match server.shard.route(CONSUMER_OFFSETS_TOPIC, partition) {
        Route::Local(_) => server.groups.serve_local(partition, request).await,
        Route::Remote(owner) => {
            let fallback = request.error_response(GroupErrorCode::NotCoordinator);
            server
                .shard
                .group_request(owner, partition, request)
                .await
                .unwrap_or(fallback)
        }
        Route::NotHosted | Route::Unknown => request.error_response(GroupErrorCode::NotCoordinator),
    }
}

async fn find_coordinator(
    server: &Rc<ShardServer>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if request.key_type != COORDINATOR_KEY_GROUP {
        server
            .metrics()
            .protocol_error(ProtocolErrorKind::InvalidRequest);
        return coordinator_error(
            ErrorCode::InvalidRequest.code(),
            Some(format!("key type {} is not a group (0)", request.key_type)),
        );
    }
    let Some(count) = offsets_partitions(server) else {
        ensure_offsets_topic(server);
        return coordinator_error(
            ErrorCode::CoordinatorNotAvailable.code(),
            Some("__consumer_offsets is being created; retry".to_string()),
        );
    };
    let partition = group::partition_for_group(&request.key, count);
    let shared = &server.shared;
    server.shard.with_table(|table| match table.cluster() {
        None => {
            let Some(owner) = table.owner(CONSUMER_OFFSETS_TOPIC, partition) else {
                return coordinator_error(ErrorCode::CoordinatorNotAvailable.code(), None);
            };
            let shard_port = shared
                .shard_ports
                .get()
                .and_then(|ports| ports.get(owner.index()).copied())
                .unwrap_or(0);
            FindCoordinatorResponse {
                error: ErrorCode::None.code(),
                message: None,
                node_id: shared.config.node_id,
                host: shared.advertised_host.clone(),
                port: shared.native_addr.port(),
                shard: owner.0,
                shard_port,
                partition,
            }
        }
        Some(cluster) => {
            let leader = table
                .topic(CONSUMER_OFFSETS_TOPIC)
                .and_then(|topic| topic.replica_info(usize::try_from(partition).unwrap_or(0)))
                .map_or(sluice_shard::NO_LEADER, |info| info.leader);
            let broker = cluster.brokers.get(&leader);
            let shard =
                broker.and_then(|broker| broker.owner_shard(CONSUMER_OFFSETS_TOPIC, partition));
            match (broker, shard) {
                (Some(broker), Some(shard)) => FindCoordinatorResponse {
                    error: ErrorCode::None.code(),
                    message: None,
                    node_id: broker.node_id,
                    host: broker.host.clone(),
                    port: broker.native_port,
                    shard: shard.0,
                    shard_port: broker.shard_ports.get(shard.index()).copied().unwrap_or(0),
                    partition,
                },
                _ => coordinator_error(
                    ErrorCode::CoordinatorNotAvailable.code(),
                    Some(format!(
                        "__consumer_offsets-{partition} has no leader now; retry"
                    )),
                ),
            }
        }
    })
}

fn code(error: GroupErrorCode) -> i16 {
    error.code()
}

fn join_response(answer: group::JoinGroupResponse, error: i16) -> JoinGroupResponse {
    JoinGroupResponse {
        error,
        message: answer.error_message,
        generation_id: answer.generation_id,
        protocol_type: answer.protocol_type,
        protocol_name: answer.protocol_name,
        leader: answer.leader,
        member_id: answer.member_id,
        members: answer
            .members
            .into_iter()
            .map(|member| JoinGroupMemberMeta {
                member_id: member.member_id,
                group_instance_id: member.group_instance_id,
                metadata: member.metadata,
            })
            .collect(),
    }
}

async fn join_group(
    server: &Rc<ShardServer>,
    request: JoinGroupRequest,
    peer: Option<SocketAddr>,
) -> JoinGroupResponse {
    let group_id = request.group_id.clone();
    let join = GroupRequest::Join(group::JoinGroupRequest {
        group_id: request.group_id,
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
        protocol_type: request.protocol_type,
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| group::Protocol {
                name: protocol.name,
                metadata: protocol.metadata,
            })
            .collect(),
        client_id: request.client_id,
        client_host: peer.map_or_else(String::new, |peer| format!("/{}", peer.ip())),
        require_known_member_id: true,
    });
    match route(server, &group_id, join).await {
        GroupResponse::Join(answer) => {
            let error = code(answer.error);
            join_response(answer, error)
        }
        other => unexpected_join(&other),
    }
}

fn unexpected_join(other: &GroupResponse) -> JoinGroupResponse {
    tracing::error!(
        ?other,
        "the coordinator answered a JoinGroup with another api's answer"
    );
    join_response(
        group::JoinGroupResponse::error("", GroupErrorCode::UnknownServerError),
        GroupErrorCode::UnknownServerError.code(),
    )
}

async fn sync_group(server: &Rc<ShardServer>, request: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = request.group_id.clone();
    let sync = GroupRequest::Sync(group::SyncGroupRequest {
        group_id: request.group_id,
        generation_id: request.generation_id,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
        protocol_type: request.protocol_type,
        protocol_name: request.protocol_name,
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| group::MemberAssignment {
                member_id: assignment.member_id,
                assignment: assignment.assignment,
            })
            .collect(),
    });
    let answer = match route(server, &group_id, sync).await {
        GroupResponse::Sync(answer) => answer,
        _ => group::SyncGroupResponse::error(GroupErrorCode::UnknownServerError),
    };
    SyncGroupResponse {
        error: code(answer.error),
        protocol_type: answer.protocol_type,
        protocol_name: answer.protocol_name,
        assignment: answer.assignment,
    }
}

async fn heartbeat(server: &Rc<ShardServer>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.clone();
    let heartbeat = GroupRequest::Heartbeat(group::HeartbeatRequest {
        group_id: request.group_id,
        generation_id: request.generation_id,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
    });
    let error = match route(server, &group_id, heartbeat).await {
        GroupResponse::Heartbeat(answer) => answer.error,
        _ => GroupErrorCode::UnknownServerError,
    };
    HeartbeatResponse { error: code(error) }
}

async fn leave_group(server: &Rc<ShardServer>, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.clone();
    let leave = GroupRequest::Leave(group::LeaveGroupRequest {
        group_id: request.group_id,
        members: request
            .members
            .into_iter()
            .map(|member| group::LeavingMember {
                member_id: member.member_id,
                group_instance_id: member.group_instance_id,
            })
            .collect(),
    });
    match route(server, &group_id, leave).await {
        GroupResponse::Leave(answer) => LeaveGroupResponse {
            error: code(answer.error),
            members: answer
                .members
                .into_iter()
                .map(|member| LeftMemberResult {
                    member_id: member.member_id,
                    group_instance_id: member.group_instance_id,
                    error: code(member.error),
                })
                .collect(),
        },
        _ => LeaveGroupResponse {
            error: code(GroupErrorCode::UnknownServerError),
            members: Vec::new(),
        },
    }
}

/// Whether `topic`-`partition` exists now (commits to deleted topics are refused).
pub(crate) fn partition_exists(server: &ShardServer, topic: &str, partition: i32) -> bool {
    server
        .shard
        .with_table(|table| table.has_partition(topic, partition))
}

async fn offset_commit(
    server: &Rc<ShardServer>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    // Partitions that do not exist are answered here; the coordinator gets the others.
    let mut results: Vec<Option<GroupPartitionResult>> =
        Vec::with_capacity(request.partitions.len());
    let mut valid = Vec::new();
    for partition in request.partitions {
        if partition_exists(server, &partition.topic, partition.partition) {
            results.push(None);
            valid.push(group::OffsetCommitPartition {
                topic: partition.topic,
                partition: partition.partition,
                offset: partition.offset,
                leader_epoch: partition.leader_epoch,
                metadata: partition.metadata,
            });
        } else {
            server
                .metrics()
                .protocol_error(ProtocolErrorKind::UnknownTopicOrPartition);
            server.groups.metrics().errors.increment();
            results.push(Some(GroupPartitionResult {
                topic: partition.topic,
                partition: partition.partition,
                error: ErrorCode::UnknownTopicOrPartition.code(),
            }));
        }
    }
    let answered = if valid.is_empty() {
        Vec::new()
    } else {
        let group_id = request.group_id.clone();
        let commit = GroupRequest::OffsetCommit(group::OffsetCommitRequest {
            group_id: request.group_id,
            generation_id: request.generation_id,
            member_id: request.member_id,
            group_instance_id: request.group_instance_id,
            partitions: valid,
        });
        match route(server, &group_id, commit).await {
            GroupResponse::OffsetCommit(answer) => answer.partitions,
            _ => Vec::new(),
        }
    };
    let mut answered = answered.into_iter();
    let partitions = results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| match answered.next() {
                Some(answer) => GroupPartitionResult {
                    topic: answer.topic,
                    partition: answer.partition,
                    error: code(answer.error),
                },
                None => GroupPartitionResult {
                    topic: String::new(),
                    partition: -1,
                    error: code(GroupErrorCode::UnknownServerError),
                },
            })
        })
        .collect();
    OffsetCommitResponse { partitions }
}

async fn offset_fetch(
    server: &Rc<ShardServer>,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let group_id = request.group_id.clone();
    let fetch = GroupRequest::OffsetFetch(group::OffsetFetchRequest {
        group_id: request.group_id,
        partitions: request.partitions.map(|partitions| {
            partitions
                .into_iter()
                .map(|partition| group::TopicPartition {
                    topic: partition.topic,
                    partition: partition.partition,
                })
                .collect()
        }),
    });
    match route(server, &group_id, fetch).await {
        GroupResponse::OffsetFetch(answer) => OffsetFetchResponse {
            error: code(answer.error),
            partitions: answer
                .partitions
                .into_iter()
                .map(|offset| CommittedOffsetMeta {
                    topic: offset.topic,
                    partition: offset.partition,
                    offset: offset.offset,
                    leader_epoch: offset.leader_epoch,
                    metadata: offset.metadata,
                    error: code(offset.error),
                })
                .collect(),
        },
        _ => OffsetFetchResponse {
            error: code(GroupErrorCode::UnknownServerError),
            partitions: Vec::new(),
        },
    }
}

/// Every group this broker coordinates, from every shard (in `states`, or all when empty).
/// For both protocol front ends.
pub async fn list_all(
    server: &Rc<ShardServer>,
    states: Vec<group::GroupState>,
) -> Vec<group::ListedGroup> {
    let list = GroupRequest::ListGroups(group::ListGroupsRequest { states });
    let mut groups = Vec::new();
    for index in 0..server.shard.shard_count() {
        let shard = ShardId(index);
        let answer = if shard == server.shard.id() {
            server.groups.list_local(list.clone()).await
        } else {
            server
                .shard
                .group_request(shard, sluice_shard::ALL_COORDINATORS, list.clone())
                .await
                .unwrap_or_else(|_| list.error_response(GroupErrorCode::CoordinatorNotAvailable))
        };
        if let GroupResponse::ListGroups(answer) = answer {
            groups.extend(answer.groups);
        }
    }
    groups.sort_by(|left, right| left.group_id.cmp(&right.group_id));
    groups
}

async fn list_groups(server: &Rc<ShardServer>, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut states = Vec::with_capacity(request.states.len());
    for name in &request.states {
        match group::GroupState::from_name(name) {
            Some(state) => states.push(state),
            None => {
                server
                    .metrics()
                    .protocol_error(ProtocolErrorKind::InvalidRequest);
                return ListGroupsResponse {
                    error: ErrorCode::InvalidRequest.code(),
                    groups: Vec::new(),
                };
            }
        }
    }
    let groups = list_all(server, states)
        .await
        .into_iter()
        .map(|listed| GroupListing {
            group_id: listed.group_id,
            protocol_type: listed.protocol_type,
            state: listed.state.name().to_string(),
        })
        .collect();
    ListGroupsResponse {
        error: ErrorCode::None.code(),
        groups,
    }
}

async fn describe_groups(
    server: &Rc<ShardServer>,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let describe = GroupRequest::DescribeGroups(group::DescribeGroupsRequest {
            groups: vec![group_id.clone()],
        });
        let described = match route(server, &group_id, describe).await {
            GroupResponse::DescribeGroups(answer) => answer.groups.into_iter().next(),
            _ => None,
        };
        groups.push(match described {
            Some(described) => GroupDescription {
                error: code(described.error),
                group_id: described.group_id,
                state: described.state.name().to_string(),
                protocol_type: described.protocol_type,
                protocol: described.protocol,
                generation_id: described.generation_id,
                members: described
                    .members
                    .into_iter()
                    .map(|member| GroupMemberDescription {
                        member_id: member.member_id,
                        group_instance_id: member.group_instance_id,
                        client_id: member.client_id,
                        client_host: member.client_host,
                        metadata: member.metadata,
                        assignment: member.assignment,
                    })
                    .collect(),
            },
            None => describe_error(&group_id, code(GroupErrorCode::UnknownServerError)),
        });
    }
    DescribeGroupsResponse { groups }
}

async fn delete_groups(
    server: &Rc<ShardServer>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let delete = GroupRequest::DeleteGroups(group::DeleteGroupsRequest {
            groups: vec![group_id.clone()],
        });
        let error = match route(server, &group_id, delete).await {
            GroupResponse::DeleteGroups(answer) => answer
                .results
                .into_iter()
                .next()
                .map_or(GroupErrorCode::UnknownServerError, |result| result.error),
            _ => GroupErrorCode::UnknownServerError,
        };
        results.push(GroupResult {
            group_id,
            error: code(error),
        });
    }
    DeleteGroupsResponse { results }
}

async fn offset_delete(
    server: &Rc<ShardServer>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.clone();
    let delete = GroupRequest::OffsetDelete(group::OffsetDeleteRequest {
        group_id: request.group_id,
        partitions: request
            .partitions
            .into_iter()
            .map(|partition| group::TopicPartition {
                topic: partition.topic,
                partition: partition.partition,
            })
            .collect(),
    });
    match route(server, &group_id, delete).await {
        GroupResponse::OffsetDelete(answer) => OffsetDeleteResponse {
            error: code(answer.error),
            partitions: answer
                .partitions
                .into_iter()
                .map(|result| GroupPartitionResult {
                    topic: result.topic,
                    partition: result.partition,
                    error: code(result.error),
                })
                .collect(),
        },
        _ => OffsetDeleteResponse {
            error: code(GroupErrorCode::UnknownServerError),
            partitions: Vec::new(),
        },
    }
}
