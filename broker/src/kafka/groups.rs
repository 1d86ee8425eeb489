//! The consumer-group APIs on the Kafka port: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and
//! OffsetDelete, each a thin mapping of kafka-protocol's structures onto the group coordinator's
//! own request type (`sluice_group`), served by the shard coordinating the group
//! ([`crate::server::groups::route`]) exactly as the native protocol's group APIs are. The
//! coordinator speaks Kafka's semantics and error codes, so nothing is translated but shapes.
//!
//! FindCoordinator names the broker leading the group's `__consumer_offsets` partition at its
//! Kafka address (this broker in single-node mode); the shard that owns the partition is reached
//! by forwarding, as every other Kafka request is.

use std::net::SocketAddr;
use std::rc::Rc;

use sluice_group as group;
use sluice_group::{GroupErrorCode, GroupRequest as CoordinatorRequest, GroupResponse};
use sluice_kafka::kafka_protocol::messages::find_coordinator_response::Coordinator;
use sluice_kafka::kafka_protocol::messages::{
    join_group_response::JoinGroupResponseMember, leave_group_response::MemberResponse,
};
use sluice_kafka::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use sluice_kafka::kafka_protocol::protocol::StrBytes;
use sluice_kafka::{GroupRequest, RequestHeader};
use sluice_shard::NO_LEADER;

use super::dispatch::{respond, Answer};
use super::group_admin;
use crate::server::groups::{ensure_offsets_topic, offsets_partitions, route};
use crate::server::ShardServer;

/// FindCoordinator's key type for consumer groups; 1 is transactions (not served yet).
const COORDINATOR_KEY_GROUP: i8 = 0;

/// First JoinGroup version whose first join must come back with the member id the broker
/// assigned (KIP-394, MEMBER_ID_REQUIRED).
const JOIN_KNOWN_MEMBER_ID_VERSION_MIN: i16 = 4;

/// First LeaveGroup version that names the leaving members in a list (KIP-345).
const LEAVE_BATCH_VERSION_MIN: i16 = 3;

/// First FindCoordinator version that looks up several keys at once (KIP-699).
const FIND_COORDINATOR_BATCH_VERSION_MIN: i16 = 4;

/// Runs the handler of a group request.
pub async fn handle(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: GroupRequest,
    peer: Option<SocketAddr>,
) -> Answer {
    match request {
        GroupRequest::FindCoordinator(request) => find_coordinator(server, header, &request),
        GroupRequest::JoinGroup(request) => join_group(server, header, request, peer).await,
        GroupRequest::SyncGroup(request) => sync_group(server, header, request).await,
        GroupRequest::Heartbeat(request) => heartbeat(server, header, request).await,
        GroupRequest::LeaveGroup(request) => leave_group(server, header, request).await,
        GroupRequest::OffsetCommit(request) => {
            group_admin::offset_commit(server, header, request).await
        }
        GroupRequest::OffsetFetch(request) => {
            group_admin::offset_fetch(server, header, request).await
        }
        GroupRequest::ListGroups(request) => {
            group_admin::list_groups(server, header, &request).await
        }
        GroupRequest::DescribeGroups(request) => {
            group_admin::describe_groups(server, header, request).await
        }
        GroupRequest::DeleteGroups(request) => {
            group_admin::delete_groups(server, header, request).await
        }
        GroupRequest::OffsetDelete(request) => {
            group_admin::offset_delete(server, header, request).await
        }
    }
}

pub(super) fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

pub(super) fn group_id(text: impl Into<String>) -> GroupId {
    GroupId(str_bytes(text))
}

fn optional(text: Option<StrBytes>) -> Option<String> {
    text.map(|text| text.to_string())
}

/// Where Kafka clients reach the coordinator of a key, or the error code and message.
struct Located {
    node_id: i32,
    host: String,
    port: u16,
}

type Location = Result<Located, (GroupErrorCode, String)>;

/// The Kafka address of the broker leading the `__consumer_offsets` partition of `key`.
fn locate(server: &Rc<ShardServer>, key: &str) -> Location {
    let Some(kafka) = server.shared.kafka.as_ref() else {
        return Err((
            GroupErrorCode::CoordinatorNotAvailable,
            "the Kafka port is off".to_string(),
        ));
    };
    let Some(count) = offsets_partitions(server) else {
        ensure_offsets_topic(server);
        return Err((
            GroupErrorCode::CoordinatorNotAvailable,
            "__consumer_offsets is being created; retry".to_string(),
        ));
    };
    let partition = group::partition_for_group(key, count);
    server.shard.with_table(|table| {
        let Some(cluster) = table.cluster() else {
            return Ok(Located {
                node_id: server.shared.config.node_id,
                host: kafka.advertised_host.clone(),
                port: kafka.advertised_port,
            });
        };
        let leader = table
            .topic(group::CONSUMER_OFFSETS_TOPIC)
            .and_then(|topic| topic.replica_info(usize::try_from(partition).unwrap_or(0)))
            .map_or(NO_LEADER, |info| info.leader);
        let not_available = || {
            (
                GroupErrorCode::CoordinatorNotAvailable,
                format!(
                    "__consumer_offsets-{partition} has no leader with a Kafka port now; retry"
                ),
            )
        };
        if leader == server.shared.config.node_id {
            return Ok(Located {
                node_id: leader,
                host: kafka.advertised_host.clone(),
                port: kafka.advertised_port,
            });
        }
        let broker = cluster.brokers.get(&leader).ok_or_else(not_available)?;
        let port = broker.kafka_port.ok_or_else(not_available)?;
        Ok(Located {
            node_id: broker.node_id,
            host: broker.host.clone(),
            port,
        })
    })
}

/// FindCoordinator: one key (v0-v3) or a batch of keys (v4).
fn find_coordinator(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &FindCoordinatorRequest,
) -> Answer {
    let lookup = |key: &str| -> Location {
        if request.key_type != COORDINATOR_KEY_GROUP {
            return Err((
                GroupErrorCode::CoordinatorNotAvailable,
                format!(
                    "key type {} is not served: only consumer groups (0) have coordinators here",
                    request.key_type
                ),
            ));
        }
        locate(server, key)
    };
    let mut response = FindCoordinatorResponse::default();
    if header.api_version >= FIND_COORDINATOR_BATCH_VERSION_MIN {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| coordinator_entry(key, lookup(key.as_str())))
            .collect();
    } else {
        let entry = coordinator_entry(&request.key, lookup(request.key.as_str()));
        response.error_code = entry.error_code;
        response.error_message = entry.error_message;
        response.node_id = entry.node_id;
        response.host = entry.host;
        response.port = entry.port;
    }
    let failed =
        response.error_code != 0 || response.coordinators.iter().any(|c| c.error_code != 0);
    respond(header, &response, failed)
}

fn coordinator_entry(key: &StrBytes, location: Location) -> Coordinator {
    let entry = Coordinator::default().with_key(key.clone());
    match location {
        Ok(located) => entry
            .with_node_id(BrokerId(located.node_id))
            .with_host(str_bytes(located.host))
            .with_port(i32::from(located.port)),
        Err((error, message)) => entry
            .with_node_id(BrokerId(-1))
            .with_host(str_bytes(""))
            .with_port(-1)
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message))),
    }
}

async fn join_group(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: JoinGroupRequest,
    peer: Option<SocketAddr>,
) -> Answer {
    let id = request.group_id.0.to_string();
    let join = CoordinatorRequest::Join(group::JoinGroupRequest {
        group_id: id.clone(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if request.rebalance_timeout_ms > 0 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        member_id: request.member_id.to_string(),
        group_instance_id: optional(request.group_instance_id),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| group::Protocol {
                name: protocol.name.to_string(),
                metadata: protocol.metadata.to_vec(),
            })
            .collect(),
        client_id: header.client_id.clone().unwrap_or_default(),
        client_host: peer.map_or_else(String::new, |peer| format!("/{}", peer.ip())),
        require_known_member_id: header.api_version >= JOIN_KNOWN_MEMBER_ID_VERSION_MIN,
    });
    let answer = match route(server, &id, join).await {
        GroupResponse::Join(answer) => answer,
        _ => group::JoinGroupResponse::error("", GroupErrorCode::UnknownServerError),
    };
    let response = JoinGroupResponse::default()
        .with_error_code(answer.error.code())
        .with_generation_id(answer.generation_id)
        .with_protocol_type(answer.protocol_type.map(str_bytes))
        .with_protocol_name(answer.protocol_name.map(str_bytes))
        .with_leader(str_bytes(answer.leader))
        .with_member_id(str_bytes(answer.member_id))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|member| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(member.member_id))
                        .with_group_instance_id(member.group_instance_id.map(str_bytes))
                        .with_metadata(member.metadata.into())
                })
                .collect(),
        );
    respond(header, &response, answer.error != GroupErrorCode::None)
}

async fn sync_group(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: SyncGroupRequest,
) -> Answer {
    let id = request.group_id.0.to_string();
    let sync = CoordinatorRequest::Sync(group::SyncGroupRequest {
        group_id: id.clone(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: optional(request.group_instance_id),
        protocol_type: optional(request.protocol_type),
        protocol_name: optional(request.protocol_name),
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| group::MemberAssignment {
                member_id: assignment.member_id.to_string(),
                assignment: assignment.assignment.to_vec(),
            })
            .collect(),
    });
    let answer = match route(server, &id, sync).await {
        GroupResponse::Sync(answer) => answer,
        _ => group::SyncGroupResponse::error(GroupErrorCode::UnknownServerError),
    };
    let response = SyncGroupResponse::default()
        .with_error_code(answer.error.code())
        .with_protocol_type(answer.protocol_type.map(str_bytes))
        .with_protocol_name(answer.protocol_name.map(str_bytes))
        .with_assignment(answer.assignment.into());
    respond(header, &response, answer.error != GroupErrorCode::None)
}

async fn heartbeat(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: HeartbeatRequest,
) -> Answer {
    let id = request.group_id.0.to_string();
    let beat = CoordinatorRequest::Heartbeat(group::HeartbeatRequest {
        group_id: id.clone(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: optional(request.group_instance_id),
    });
    let error = match route(server, &id, beat).await {
        GroupResponse::Heartbeat(answer) => answer.error,
        _ => GroupErrorCode::UnknownServerError,
    };
    let response = HeartbeatResponse::default().with_error_code(error.code());
    respond(header, &response, error != GroupErrorCode::None)
}

async fn leave_group(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: LeaveGroupRequest,
) -> Answer {
    let id = request.group_id.0.to_string();
    let batched = header.api_version >= LEAVE_BATCH_VERSION_MIN;
    let members = if batched {
        request
            .members
            .into_iter()
            .map(|member| group::LeavingMember {
                member_id: member.member_id.to_string(),
                group_instance_id: optional(member.group_instance_id),
            })
            .collect()
    } else {
        vec![group::LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let leave = CoordinatorRequest::Leave(group::LeaveGroupRequest {
        group_id: id.clone(),
        members,
    });
    let answer = match route(server, &id, leave).await {
        GroupResponse::Leave(answer) => answer,
        _ => group::LeaveGroupResponse {
            error: GroupErrorCode::UnknownServerError,
            members: Vec::new(),
        },
    };
    // Before v3 the one member's own error is the answer's error.
    let single_error = answer.members.first().map(|member| member.error);
    let error = match (batched, single_error) {
        (false, Some(member_error)) if answer.error == GroupErrorCode::None => member_error,
        _ => answer.error,
    };
    let failed = error != GroupErrorCode::None
        || answer
            .members
            .iter()
            .any(|m| m.error != GroupErrorCode::None);
    // Per-member results exist from v3 on; an older answer must not carry them.
    let members = if batched { answer.members } else { Vec::new() };
    let response = LeaveGroupResponse::default()
        .with_error_code(error.code())
        .with_members(
            members
                .into_iter()
                .map(|member| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member.member_id))
                        .with_group_instance_id(member.group_instance_id.map(str_bytes))
                        .with_error_code(member.error.code())
                })
                .collect(),
        );
    respond(header, &response, failed)
}
