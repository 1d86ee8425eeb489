//! The offset and group-administration APIs on the Kafka port: OffsetCommit, OffsetFetch
//! (v8 looks up several groups), ListGroups, DescribeGroups, DeleteGroups and OffsetDelete.
//! Kafka lists offsets by topic; the coordinator lists them flat, one entry per partition, so
//! these handlers flatten requests and group answers by topic again, in the order asked.

use std::rc::Rc;

use sluice_group as group;
use sluice_group::{GroupErrorCode, GroupRequest as CoordinatorRequest, GroupResponse};
use sluice_kafka::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use sluice_kafka::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use sluice_kafka::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use sluice_kafka::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use sluice_kafka::kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult, list_groups_response::ListedGroup,
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use sluice_kafka::RequestHeader;

use super::dispatch::{respond, Answer};
use super::groups::{group_id, str_bytes};
use crate::server::groups::{list_all, partition_exists, route};
use crate::server::ShardServer;

/// First OffsetFetch version that looks up several groups in one request (KIP-709).
const OFFSET_FETCH_GROUPS_VERSION_MIN: i16 = 8;

/// The "no committed offset" answer of OffsetFetch.
const NO_OFFSET: i64 = -1;

/// The "no leader epoch" value of offsets committed without one.
const NO_LEADER_EPOCH: i32 = -1;

fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}

/// Appends `(partition, value)` under `topic`, keeping topics in first-seen order.
fn push_by_topic<T>(topics: &mut Vec<(String, Vec<T>)>, topic: String, value: T) {
    match topics.iter_mut().find(|(name, _)| *name == topic) {
        Some((_, values)) => values.push(value),
        None => topics.push((topic, vec![value])),
    }
}

/// OffsetCommit: partitions that do not exist are refused here (UNKNOWN_TOPIC_OR_PARTITION);
/// the coordinator writes the others with acks=all before answering.
pub async fn offset_commit(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: OffsetCommitRequest,
) -> Answer {
    let id = request.group_id.0.to_string();
    let mut answers: Vec<(String, i32, Option<GroupErrorCode>)> = Vec::new();
    let mut valid = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        for partition in &topic.partitions {
            let known = partition_exists(server, &name, partition.partition_index);
            answers.push((
                name.clone(),
                partition.partition_index,
                (!known).then_some(GroupErrorCode::UnknownTopicOrPartition),
            ));
            if known {
                valid.push(group::OffsetCommitPartition {
                    topic: name.clone(),
                    partition: partition.partition_index,
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata: partition.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
        }
    }
    let committed = if valid.is_empty() {
        Vec::new()
    } else {
        let commit = CoordinatorRequest::OffsetCommit(group::OffsetCommitRequest {
            group_id: id.clone(),
            generation_id: request.generation_id_or_member_epoch,
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
            partitions: valid,
        });
        match route(server, &id, commit).await {
            GroupResponse::OffsetCommit(answer) => answer.partitions,
            _ => Vec::new(),
        }
    };
    let mut committed = committed.into_iter();
    let mut topics: Vec<(String, Vec<OffsetCommitResponsePartition>)> = Vec::new();
    let mut failed = false;
    for (topic, partition, refused) in answers {
        let error = refused.unwrap_or_else(|| {
            committed
                .next()
                .map_or(GroupErrorCode::UnknownServerError, |result| result.error)
        });
        failed |= error != GroupErrorCode::None;
        let entry = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(error.code());
        push_by_topic(&mut topics, topic, entry);
    }
    let response = OffsetCommitResponse::default().with_topics(
        topics
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    respond(header, &response, failed)
}

/// One group's committed offsets: for `partitions`, or every partition it has offsets for.
async fn fetch_group(
    server: &Rc<ShardServer>,
    id: &str,
    partitions: Option<Vec<group::TopicPartition>>,
) -> group::OffsetFetchResponse {
    let fetch = CoordinatorRequest::OffsetFetch(group::OffsetFetchRequest {
        group_id: id.to_string(),
        partitions,
    });
    match route(server, id, fetch).await {
        GroupResponse::OffsetFetch(answer) => answer,
        _ => group::OffsetFetchResponse {
            error: GroupErrorCode::UnknownServerError,
            partitions: Vec::new(),
        },
    }
}

fn wanted(topics: impl Iterator<Item = (String, Vec<i32>)>) -> Vec<group::TopicPartition> {
    topics
        .flat_map(|(topic, partitions)| {
            partitions
                .into_iter()
                .map(move |partition| group::TopicPartition {
                    topic: topic.clone(),
                    partition,
                })
        })
        .collect()
}

/// The fetched offsets by topic, in the order the coordinator listed them.
fn fetched_by_topic(
    answer: &group::OffsetFetchResponse,
) -> Vec<(String, Vec<&group::FetchedOffset>)> {
    let mut topics = Vec::new();
    for offset in &answer.partitions {
        push_by_topic(&mut topics, offset.topic.clone(), offset);
    }
    topics
}

fn offset_value(offset: &group::FetchedOffset) -> (i64, i32) {
    if offset.offset < 0 {
        (NO_OFFSET, NO_LEADER_EPOCH)
    } else {
        (offset.offset, offset.leader_epoch)
    }
}

/// OffsetFetch: one group (v1-v7) or several (v8).
pub async fn offset_fetch(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: OffsetFetchRequest,
) -> Answer {
    if header.api_version >= OFFSET_FETCH_GROUPS_VERSION_MIN {
        return offset_fetch_groups(server, header, request).await;
    }
    let id = request.group_id.0.to_string();
    let partitions = request.topics.map(|topics| {
        wanted(
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes)),
        )
    });
    let answer = fetch_group(server, &id, partitions).await;
    let topics = fetched_by_topic(&answer)
        .into_iter()
        .map(|(name, offsets)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(
                    offsets
                        .into_iter()
                        .map(|offset| {
                            let (value, epoch) = offset_value(offset);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(offset.partition)
                                .with_committed_offset(value)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(offset.metadata.clone().map(str_bytes))
                                .with_error_code(offset.error.code())
                        })
                        .collect(),
                )
        })
        .collect();
    let response = OffsetFetchResponse::default()
        .with_error_code(answer.error.code())
        .with_topics(topics);
    respond(header, &response, answer.error != GroupErrorCode::None)
}

async fn offset_fetch_groups(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: OffsetFetchRequest,
) -> Answer {
    let mut groups = Vec::with_capacity(request.groups.len());
    let mut failed = false;
    for wanted_group in request.groups {
        let id = wanted_group.group_id.0.to_string();
        let partitions = wanted_group.topics.map(|topics| {
            wanted(
                topics
                    .into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes)),
            )
        });
        let answer = fetch_group(server, &id, partitions).await;
        failed |= answer.error != GroupErrorCode::None;
        let topics = fetched_by_topic(&answer)
            .into_iter()
            .map(|(name, offsets)| {
                OffsetFetchResponseTopics::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        offsets
                            .into_iter()
                            .map(|offset| {
                                let (value, epoch) = offset_value(offset);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(offset.partition)
                                    .with_committed_offset(value)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(offset.metadata.clone().map(str_bytes))
                                    .with_error_code(offset.error.code())
                            })
                            .collect(),
                    )
            })
            .collect();
        groups.push(
            OffsetFetchResponseGroup::default()
                .with_group_id(group_id(id))
                .with_error_code(answer.error.code())
                .with_topics(topics),
        );
    }
    let response = OffsetFetchResponse::default().with_groups(groups);
    respond(header, &response, failed)
}

/// ListGroups: every group this broker coordinates, from every shard, optionally filtered by
/// state (v4); an unknown state name is INVALID_REQUEST.
pub async fn list_groups(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &ListGroupsRequest,
) -> Answer {
    let mut states = Vec::with_capacity(request.states_filter.len());
    for name in &request.states_filter {
        match group::GroupState::from_name(name.as_str()) {
            Some(state) => states.push(state),
            None => {
                let response = ListGroupsResponse::default()
                    .with_error_code(GroupErrorCode::InvalidRequest.code());
                return respond(header, &response, true);
            }
        }
    }
    let groups = list_all(server, states)
        .await
        .into_iter()
        .map(|listed| {
            ListedGroup::default()
                .with_group_id(group_id(listed.group_id))
                .with_protocol_type(str_bytes(listed.protocol_type))
                .with_group_state(str_bytes(listed.state.name()))
                .with_group_type(str_bytes("classic"))
        })
        .collect();
    respond(
        header,
        &ListGroupsResponse::default().with_groups(groups),
        false,
    )
}

/// DescribeGroups: each group asked about, from the shard coordinating it.
pub async fn describe_groups(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: DescribeGroupsRequest,
) -> Answer {
    let mut groups = Vec::with_capacity(request.groups.len());
    for id in request.groups {
        let id = id.0.to_string();
        let describe = CoordinatorRequest::DescribeGroups(group::DescribeGroupsRequest {
            groups: vec![id.clone()],
        });
        let described = match route(server, &id, describe).await {
            GroupResponse::DescribeGroups(answer) => answer.groups.into_iter().next(),
            _ => None,
        };
        groups.push(match described {
            Some(described) => described_group(described),
            None => DescribedGroup::default()
                .with_group_id(group_id(id))
                .with_error_code(GroupErrorCode::UnknownServerError.code()),
        });
    }
    let failed = groups.iter().any(|group| group.error_code != 0);
    respond(
        header,
        &DescribeGroupsResponse::default().with_groups(groups),
        failed,
    )
}

fn described_group(described: group::DescribedGroup) -> DescribedGroup {
    DescribedGroup::default()
        .with_error_code(described.error.code())
        .with_group_id(group_id(described.group_id))
        .with_group_state(str_bytes(described.state.name()))
        .with_protocol_type(str_bytes(described.protocol_type))
        .with_protocol_data(str_bytes(described.protocol))
        .with_members(
            described
                .members
                .into_iter()
                .map(|member| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(member.member_id))
                        .with_group_instance_id(member.group_instance_id.map(str_bytes))
                        .with_client_id(str_bytes(member.client_id))
                        .with_client_host(str_bytes(member.client_host))
                        .with_member_metadata(member.metadata.into())
                        .with_member_assignment(member.assignment.into())
                })
                .collect(),
        )
}

/// DeleteGroups: each group is deleted by its coordinator (only an empty group can be).
pub async fn delete_groups(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: DeleteGroupsRequest,
) -> Answer {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let id = id.0.to_string();
        let delete = CoordinatorRequest::DeleteGroups(group::DeleteGroupsRequest {
            groups: vec![id.clone()],
        });
        let error = match route(server, &id, delete).await {
            GroupResponse::DeleteGroups(answer) => answer
                .results
                .into_iter()
                .next()
                .map_or(GroupErrorCode::UnknownServerError, |result| result.error),
            _ => GroupErrorCode::UnknownServerError,
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id(id))
                .with_error_code(error.code()),
        );
    }
    let failed = results.iter().any(|result| result.error_code != 0);
    respond(
        header,
        &DeleteGroupsResponse::default().with_results(results),
        failed,
    )
}

/// OffsetDelete: removes a group's committed offsets of partitions it no longer subscribes to.
pub async fn offset_delete(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: OffsetDeleteRequest,
) -> Answer {
    let id = request.group_id.0.to_string();
    let partitions = wanted(request.topics.into_iter().map(|topic| {
        let indexes = topic.partitions.iter().map(|p| p.partition_index).collect();
        (topic.name.0.to_string(), indexes)
    }));
    let delete = CoordinatorRequest::OffsetDelete(group::OffsetDeleteRequest {
        group_id: id.clone(),
        partitions,
    });
    let answer = match route(server, &id, delete).await {
        GroupResponse::OffsetDelete(answer) => answer,
        _ => group::OffsetDeleteResponse {
            error: GroupErrorCode::UnknownServerError,
            partitions: Vec::new(),
        },
    };
    let mut topics: Vec<(String, Vec<OffsetDeleteResponsePartition>)> = Vec::new();
    let mut failed = answer.error != GroupErrorCode::None;
    for result in answer.partitions {
        failed |= result.error != GroupErrorCode::None;
        let entry = OffsetDeleteResponsePartition::default()
            .with_partition_index(result.partition)
            .with_error_code(result.error.code());
        push_by_topic(&mut topics, result.topic, entry);
    }
    let response = OffsetDeleteResponse::default()
        .with_error_code(answer.error.code())
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    respond(header, &response, failed)
}
