//! ListGroups, DescribeGroups, DeleteGroups, OffsetDelete, and the removal of the offsets of
//! deleted topics.

use super::{GroupCoordinator, PendingWrite};
use crate::api::{
    DeleteGroupResult, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, DescribedGroup, DescribedMember, GroupResponse, GroupState,
    ListGroupsRequest, ListGroupsResponse, ListedGroup, OffsetDeleteRequest, OffsetDeleteResponse,
    PartitionResult,
};
use crate::consumer_protocol::{Subscription, CONSUMER_PROTOCOL_TYPE};
use crate::error::GroupErrorCode;
use crate::group::{Group, RequestId};
use crate::records::{group_key, OffsetsRecord};

/// A DeleteGroups whose tombstones are being written.
#[derive(Debug)]
pub(super) struct PendingDelete {
    request: RequestId,
    results: Vec<DeleteGroupResult>,
    /// Groups being deleted (marked Dead meanwhile).
    deleting: Vec<String>,
}

impl PendingDelete {
    pub(super) fn answer_all(mut self, error: GroupErrorCode) -> (RequestId, GroupResponse) {
        for result in &mut self.results {
            if self.deleting.contains(&result.group_id) {
                result.error = error;
            }
        }
        (
            self.request,
            GroupResponse::DeleteGroups(DeleteGroupsResponse {
                results: self.results,
            }),
        )
    }
}

/// An OffsetDelete whose tombstones are being written.
#[derive(Debug)]
pub(super) struct PendingOffsetDelete {
    request: RequestId,
    group_id: String,
    results: Vec<PartitionResult>,
    deleted: Vec<(String, i32)>,
}

impl PendingOffsetDelete {
    pub(super) fn answer_all(mut self, error: GroupErrorCode) -> (RequestId, GroupResponse) {
        for result in &mut self.results {
            if self
                .deleted
                .iter()
                .any(|(topic, partition)| *topic == result.topic && *partition == result.partition)
            {
                result.error = error;
            }
        }
        (
            self.request,
            GroupResponse::OffsetDelete(OffsetDeleteResponse {
                error: GroupErrorCode::None,
                partitions: self.results,
            }),
        )
    }
}

impl GroupCoordinator {
    pub(super) fn list_groups(&self, list: &ListGroupsRequest) -> ListGroupsResponse {
        let mut groups: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|group| group.state != GroupState::Dead)
            .filter(|group| list.states.is_empty() || list.states.contains(&group.state))
            .map(|group| ListedGroup {
                group_id: group.group_id.clone(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                state: group.state,
            })
            .collect();
        groups.sort_by(|left, right| left.group_id.cmp(&right.group_id));
        ListGroupsResponse {
            error: GroupErrorCode::None,
            groups,
        }
    }

    pub(super) fn describe_groups(
        &self,
        describe: &DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let groups = describe
            .groups
            .iter()
            .map(|group_id| match self.groups.get(group_id) {
                Some(group) if group.state != GroupState::Dead => describe_group(group),
                _ => DescribedGroup::error(group_id, GroupErrorCode::GroupIdNotFound),
            })
            .collect();
        DescribeGroupsResponse { groups }
    }

    /// Deletes empty groups: their offsets and metadata get tombstones; the group is Dead
    /// until they are written, then gone.
    pub(super) fn delete_groups(
        &mut self,
        now_ms: i64,
        request: RequestId,
        delete: DeleteGroupsRequest,
    ) {
        let mut results = Vec::with_capacity(delete.groups.len());
        let mut deleting = Vec::new();
        let mut records = Vec::new();
        for group_id in delete.groups {
            let error = match self.groups.get_mut(&group_id) {
                None => GroupErrorCode::GroupIdNotFound,
                Some(group) if group.state == GroupState::Dead => GroupErrorCode::GroupIdNotFound,
                Some(group) if !group.members.is_empty() => GroupErrorCode::NonEmptyGroup,
                Some(group) => {
                    for (topic, partition) in group.offsets.keys() {
                        records.push(Self::offset_record(&group_id, topic, *partition, None));
                    }
                    records.push(OffsetsRecord {
                        key: group_key(&group_id),
                        value: None,
                    });
                    group.state_before_delete = Some(group.state);
                    group.transition(GroupState::Dead, now_ms);
                    group.writes_in_flight += 1;
                    if !deleting.contains(&group_id) {
                        deleting.push(group_id.clone());
                    }
                    GroupErrorCode::None
                }
            };
            results.push(DeleteGroupResult { group_id, error });
        }
        let pending = PendingDelete {
            request,
            results,
            deleting,
        };
        if records.is_empty() {
            let (request, response) = pending.answer_all(GroupErrorCode::None);
            return self.respond(request, response);
        }
        self.write(records, PendingWrite::DeleteGroups(pending));
    }

    pub(super) fn groups_deleted(
        &mut self,
        now_ms: i64,
        pending: PendingDelete,
        result: Result<(), GroupErrorCode>,
    ) {
        for group_id in &pending.deleting {
            if result.is_ok() {
                self.clear_phase_deadline(group_id);
                self.groups.remove(group_id);
                continue;
            }
            if let Some(group) = self.groups.get_mut(group_id) {
                let state = group
                    .state_before_delete
                    .take()
                    .unwrap_or(GroupState::Empty);
                group.transition(state, now_ms);
                group.writes_in_flight = group.writes_in_flight.saturating_sub(1);
            }
        }
        let error = match result {
            Ok(()) => GroupErrorCode::None,
            Err(error) => error,
        };
        let (request, response) = pending.answer_all(error);
        self.respond(request, response);
    }

    /// Deletes committed offsets of a group. Refused for topics its members subscribe to
    /// (consumer groups), or while it has members (other protocol types).
    pub(super) fn delete_offsets(&mut self, request: RequestId, delete: OffsetDeleteRequest) {
        let top_error = match self.groups.get(&delete.group_id) {
            None => Some(GroupErrorCode::GroupIdNotFound),
            Some(group) if group.state == GroupState::Dead => Some(GroupErrorCode::GroupIdNotFound),
            Some(group)
                if !group.members.is_empty()
                    && group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) =>
            {
                Some(GroupErrorCode::NonEmptyGroup)
            }
            Some(_) if delete.partitions.len() > self.config.request_partitions_max => {
                Some(GroupErrorCode::InvalidRequest)
            }
            Some(_) => None,
        };
        if let Some(error) = top_error {
            let response = GroupResponse::OffsetDelete(OffsetDeleteResponse {
                error,
                partitions: Vec::new(),
            });
            return self.respond(request, response);
        }
        let Some(group) = self.groups.get_mut(&delete.group_id) else {
            return;
        };
        let subscribed = subscribed_topics(group);
        let mut results = Vec::with_capacity(delete.partitions.len());
        let mut deleted = Vec::new();
        let mut records = Vec::new();
        for wanted in delete.partitions {
            let error = if subscribed.contains(&wanted.topic) {
                GroupErrorCode::GroupSubscribedToTopic
            } else {
                let key = (wanted.topic.clone(), wanted.partition);
                if group.offsets.contains_key(&key) && !deleted.contains(&key) {
                    records.push(Self::offset_record(
                        &delete.group_id,
                        &wanted.topic,
                        wanted.partition,
                        None,
                    ));
                    deleted.push(key);
                }
                GroupErrorCode::None
            };
            results.push(PartitionResult {
                topic: wanted.topic,
                partition: wanted.partition,
                error,
            });
        }
        let pending = PendingOffsetDelete {
            request,
            group_id: delete.group_id,
            results,
            deleted,
        };
        if records.is_empty() {
            let (request, response) = pending.answer_all(GroupErrorCode::None);
            return self.respond(request, response);
        }
        group.writes_in_flight += 1;
        self.write(records, PendingWrite::OffsetDelete(pending));
    }

    pub(super) fn offsets_deleted(
        &mut self,
        pending: PendingOffsetDelete,
        result: Result<(), GroupErrorCode>,
    ) {
        let group_id = pending.group_id.clone();
        if result.is_ok() {
            if let Some(group) = self.groups.get_mut(&group_id) {
                for key in &pending.deleted {
                    group.offsets.remove(key);
                }
            }
        }
        let error = result.err().unwrap_or(GroupErrorCode::None);
        let (request, response) = pending.answer_all(error);
        self.respond(request, response);
        self.release_group(&group_id);
    }

    /// Topics were deleted: every group's committed offsets for them get tombstones (as Kafka
    /// does), so a topic created again under the same name starts without them.
    pub fn delete_topic_offsets(&mut self, topics: &[String]) {
        let mut removed = Vec::new();
        let mut records = Vec::new();
        for group in self.groups.values_mut() {
            let mut touched = false;
            for (topic, partition) in group.offsets.keys() {
                if topics.contains(topic) {
                    records.push(Self::offset_record(
                        &group.group_id,
                        topic,
                        *partition,
                        None,
                    ));
                    removed.push((group.group_id.clone(), topic.clone(), *partition));
                    touched = true;
                }
            }
            if touched {
                group.writes_in_flight += 1;
            }
        }
        if !records.is_empty() {
            self.write(records, PendingWrite::TopicCleanup { removed });
        }
    }

    pub(super) fn topic_offsets_deleted(
        &mut self,
        removed: Vec<(String, String, i32)>,
        result: Result<(), GroupErrorCode>,
    ) {
        let mut groups: Vec<String> = removed.iter().map(|(group, _, _)| group.clone()).collect();
        groups.dedup();
        if result.is_ok() {
            for (group_id, topic, partition) in removed {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.offsets.remove(&(topic, partition));
                }
            }
        }
        for group_id in groups {
            self.release_group(&group_id);
        }
    }
}

fn describe_group(group: &Group) -> DescribedGroup {
    let stable = group.state == GroupState::Stable;
    DescribedGroup {
        error: GroupErrorCode::None,
        group_id: group.group_id.clone(),
        state: group.state,
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol: group.protocol.clone().unwrap_or_default(),
        generation_id: group.generation,
        members: group
            .members_in_join_order()
            .into_iter()
            .map(|member| DescribedMember {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                metadata: member.metadata(group.protocol.as_deref()),
                assignment: if stable {
                    member.assignment.clone()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    }
}

/// The topics a consumer group's members subscribe to (decoded from their metadata; a member
/// whose metadata cannot be read subscribes to nothing known).
fn subscribed_topics(group: &Group) -> Vec<String> {
    let mut topics = Vec::new();
    for member in group.members.values() {
        let metadata = member.metadata(group.protocol.as_deref());
        if let Ok(subscription) = Subscription::decode(&metadata) {
            for topic in subscription.topics {
                if !topics.contains(&topic) {
                    topics.push(topic);
                }
            }
        }
    }
    topics
}
