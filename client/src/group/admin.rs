//! [`GroupAdmin`]: list, describe and delete groups, read and set their committed offsets (what
//! `sluice group` runs). Each request goes to the group's coordinator, found again when it
//! moved.

use std::rc::Rc;

use sluice_group::consumer_protocol::Assignment;
use sluice_net::api::ErrorCode;
use sluice_net::messages::{
    CommitPartition, CommittedOffsetMeta, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupDescription, GroupListing,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicPartitionMeta,
};

use super::link::CoordinatorLink;
use crate::client::Client;
use crate::error::ClientError;
use crate::metadata::host_port;

/// A member of a described group, with its assignment decoded (consumer groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberInfo {
    /// The member id.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Its host as the broker saw it.
    pub client_host: String,
    /// Its partitions (empty unless the group is Stable and uses the consumer protocol).
    pub assignment: Vec<(String, i32)>,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub group_id: String,
    /// Its state (Kafka's name: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).
    pub state: String,
    /// Its protocol type.
    pub protocol_type: String,
    /// Its assignor.
    pub protocol: String,
    /// Its generation.
    pub generation_id: i32,
    /// Its members.
    pub members: Vec<GroupMemberInfo>,
}

/// Group administration over one client.
pub struct GroupAdmin {
    client: Rc<Client>,
}

fn check(code: i16, context: impl Into<String>) -> Result<(), ClientError> {
    if code == ErrorCode::None.code() {
        Ok(())
    } else {
        Err(ClientError::from_code(code, context))
    }
}

impl GroupAdmin {
    /// Administration through `client`.
    pub fn new(client: Rc<Client>) -> GroupAdmin {
        GroupAdmin { client }
    }

    fn link(&self, group_id: &str) -> CoordinatorLink {
        CoordinatorLink::new(self.client.clone(), group_id)
    }

    /// Every group of the cluster (each broker lists the groups it coordinates), sorted.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let metadata = self.client.metadata(None).await?;
        let mut groups = Vec::new();
        for broker in &metadata.brokers {
            let addr = host_port(&broker.host, broker.port);
            let (response, _) = self
                .client
                .request_to::<_, ListGroupsResponse>(
                    &addr,
                    &ListGroupsRequest { states: Vec::new() },
                    &[],
                    self.client.request_timeout(),
                )
                .await?;
            check(
                response.error,
                format!("list groups on broker {}", broker.node_id),
            )?;
            groups.extend(response.groups);
        }
        groups.sort_by(|left, right| left.group_id.cmp(&right.group_id));
        groups.dedup_by(|left, right| left.group_id == right.group_id);
        Ok(groups)
    }

    /// One group's state and members (GROUP_ID_NOT_FOUND when it does not exist).
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupInfo, ClientError> {
        let request = DescribeGroupsRequest {
            groups: vec![group_id.to_string()],
        };
        let response: DescribeGroupsResponse = self
            .link(group_id)
            .request_retrying(&request, |response: &DescribeGroupsResponse| {
                response.groups.first().map_or(0, |group| group.error)
            })
            .await?;
        let described =
            response
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| ClientError::InvalidResponse {
                    op: "describe groups",
                    reason: format!("no answer for group {group_id}"),
                })?;
        check(described.error, format!("describe group {group_id}"))?;
        Ok(group_info(described))
    }

    /// Deletes an empty group with its committed offsets (NON_EMPTY_GROUP while it has
    /// members).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClientError> {
        let request = DeleteGroupsRequest {
            groups: vec![group_id.to_string()],
        };
        let response: DeleteGroupsResponse = self
            .link(group_id)
            .request_retrying(&request, |response: &DeleteGroupsResponse| {
                response.results.first().map_or(0, |result| result.error)
            })
            .await?;
        let error = response.results.first().map_or(0, |result| result.error);
        check(error, format!("delete group {group_id}"))
    }

    /// The group's committed offsets: of `partitions`, or of every partition it committed.
    pub async fn committed_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<CommittedOffsetMeta>, ClientError> {
        let request = OffsetFetchRequest {
            group_id: group_id.to_string(),
            partitions: partitions.map(|partitions| {
                partitions
                    .into_iter()
                    .map(|(topic, partition)| TopicPartitionMeta { topic, partition })
                    .collect()
            }),
        };
        let response: OffsetFetchResponse = self
            .link(group_id)
            .request_retrying(&request, |response: &OffsetFetchResponse| response.error)
            .await?;
        check(
            response.error,
            format!("fetch the offsets of group {group_id}"),
        )?;
        Ok(response.partitions)
    }

    /// Sets the group's committed offsets as a standalone committer (generation -1): the
    /// coordinator refuses it (UNKNOWN_MEMBER_ID) while the group has members.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        let request = OffsetCommitRequest {
            group_id: group_id.to_string(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            partitions: offsets
                .iter()
                .map(|(topic, partition, offset)| CommitPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect(),
        };
        let response: OffsetCommitResponse = self
            .link(group_id)
            .request_retrying(&request, |response: &OffsetCommitResponse| {
                response
                    .partitions
                    .first()
                    .map_or(0, |partition| partition.error)
            })
            .await?;
        for result in &response.partitions {
            check(
                result.error,
                format!(
                    "commit {}-{} for group {group_id}",
                    result.topic, result.partition
                ),
            )?;
        }
        Ok(())
    }
}

fn group_info(described: GroupDescription) -> GroupInfo {
    let consumer =
        described.protocol_type == sluice_group::consumer_protocol::CONSUMER_PROTOCOL_TYPE;
    GroupInfo {
        group_id: described.group_id,
        state: described.state,
        protocol_type: described.protocol_type,
        protocol: described.protocol,
        generation_id: described.generation_id,
        members: described
            .members
            .into_iter()
            .map(|member| GroupMemberInfo {
                assignment: if consumer {
                    Assignment::decode(&member.assignment)
                        .map(|assignment| {
                            assignment
                                .topic_partitions()
                                .map(|(topic, partition)| (topic.to_string(), partition))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
                member_id: member.member_id,
                group_instance_id: member.group_instance_id,
                client_id: member.client_id,
                client_host: member.client_host,
            })
            .collect(),
    }
}
