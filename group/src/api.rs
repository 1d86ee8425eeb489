//! The requests the coordinator serves and its answers: plain types of this crate, which the
//! native protocol (rkyv bodies in `sluice-net`) and the Kafka protocol front end both map to.
//! Offsets are listed flat, one entry per (topic, partition); names and fields follow Kafka's.

use crate::error::GroupErrorCode;

/// The member id of a member that has none yet.
pub const UNKNOWN_MEMBER_ID: &str = "";

/// The generation of a commit from outside any group generation (a standalone consumer).
pub const NO_GENERATION: i32 = -1;

/// A group's state (Kafka's classic group states, with Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    /// No members; the group may hold committed offsets.
    Empty,
    /// A rebalance began: members are (re)joining.
    PreparingRebalance,
    /// Every member joined; the leader's assignment is awaited (SyncGroup).
    CompletingRebalance,
    /// Members hold their assignments and heartbeat.
    Stable,
    /// The group is being removed.
    Dead,
}

impl GroupState {
    /// Every state, in the order metrics list them.
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// The state named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<GroupState> {
        GroupState::ALL
            .into_iter()
            .find(|state| state.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One protocol a joining member supports, with its metadata (for protocol type "consumer":
/// Kafka's ConsumerProtocolSubscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// The protocol (assignor) name.
    pub name: String,
    /// Opaque metadata.
    pub metadata: Vec<u8>,
}

/// JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest {
    /// The group.
    pub group_id: String,
    /// The member is removed when it sends no heartbeat for this long.
    pub session_timeout_ms: i32,
    /// How long a rebalance may wait for this member to rejoin.
    pub rebalance_timeout_ms: i32,
    /// The member id, or [`UNKNOWN_MEMBER_ID`] on the first join.
    pub member_id: String,
    /// group.instance.id of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// The protocol type ("consumer" for consumers).
    pub protocol_type: String,
    /// Supported protocols, preferred first.
    pub protocols: Vec<Protocol>,
    /// The client's id (the start of a generated member id).
    pub client_id: String,
    /// The client's host, as the broker sees it.
    pub client_host: String,
    /// KIP-394: a member without a member id first gets MEMBER_ID_REQUIRED and one to rejoin
    /// with (Kafka's JoinGroup v4 and later).
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupMember {
    /// The member id.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Vec<u8>,
}

/// The answer to JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    /// The error.
    pub error: GroupErrorCode,
    /// Detail for an error, when there is more to say than the code.
    pub error_message: Option<String>,
    /// The generation the member joined, -1 on error.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's id (the assigned one for a new member).
    pub member_id: String,
    /// Every member with its metadata: for the leader only, empty for the others.
    pub members: Vec<JoinGroupMember>,
}

impl JoinGroupResponse {
    /// An error answer.
    pub fn error(member_id: &str, error: GroupErrorCode) -> JoinGroupResponse {
        JoinGroupResponse {
            error,
            error_message: None,
            generation_id: NO_GENERATION,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// One member's assignment, sent by the leader in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAssignment {
    /// The member id.
    pub member_id: String,
    /// Opaque assignment (for "consumer": Kafka's ConsumerProtocolAssignment).
    pub assignment: Vec<u8>,
}

/// SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest {
    /// The group.
    pub group_id: String,
    /// The generation the member joined.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
    /// The protocol type, when the member sends it (checked against the group's).
    pub protocol_type: Option<String>,
    /// The protocol name, when the member sends it (checked against the group's).
    pub protocol_name: Option<String>,
    /// The leader's assignment of every member; empty from the others.
    pub assignments: Vec<MemberAssignment>,
}

/// The answer to SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse {
    /// The error.
    pub error: GroupErrorCode,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The group's protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Vec<u8>,
}

impl SyncGroupResponse {
    /// An error answer.
    pub fn error(error: GroupErrorCode) -> SyncGroupResponse {
        SyncGroupResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        }
    }
}

/// Heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
}

/// The answer to Heartbeat: REBALANCE_IN_PROGRESS tells the member to rejoin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The error.
    pub error: GroupErrorCode,
}

/// One member leaving (KIP-345 batches several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// The member id ([`UNKNOWN_MEMBER_ID`] to name a static member by instance id alone).
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
}

/// LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    /// The group.
    pub group_id: String,
    /// The members leaving.
    pub members: Vec<LeavingMember>,
}

/// The outcome for one leaving member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResult {
    /// The member id as sent.
    pub member_id: String,
    /// The group.instance.id as sent.
    pub group_instance_id: Option<String>,
    /// The error.
    pub error: GroupErrorCode,
}

/// The answer to LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResponse {
    /// An error for the whole request.
    pub error: GroupErrorCode,
    /// One result per member.
    pub members: Vec<LeaveMemberResult>,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record the group will read.
    pub offset: i64,
    /// The leader epoch of the last record read, -1 when unknown.
    pub leader_epoch: i32,
    /// Free-form metadata.
    pub metadata: Option<String>,
}

/// OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation, or [`NO_GENERATION`] for a standalone consumer.
    pub generation_id: i32,
    /// The member id ([`UNKNOWN_MEMBER_ID`] for a standalone consumer).
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub partitions: Vec<OffsetCommitPartition>,
}

/// The outcome for one partition of a commit, an offset delete, or a partition error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The error.
    pub error: GroupErrorCode,
}

/// The answer to OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponse {
    /// One result per partition, in request order.
    pub partitions: Vec<PartitionResult>,
}

/// A partition whose committed offset is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    /// The group.
    pub group_id: String,
    /// The partitions, or `None` for every partition with a committed offset.
    pub partitions: Option<Vec<TopicPartition>>,
}

/// A committed offset as OffsetFetch answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset, -1 when the group has none for the partition.
    pub offset: i64,
    /// The committed leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// The committed metadata.
    pub metadata: Option<String>,
    /// The error.
    pub error: GroupErrorCode,
}

/// The answer to OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponse {
    /// An error for the whole request.
    pub error: GroupErrorCode,
    /// The offsets.
    pub partitions: Vec<FetchedOffset>,
}

/// ListGroups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsRequest {
    /// Only groups in these states (every state when empty).
    pub states: Vec<GroupState>,
}

/// One listed group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group.
    pub group_id: String,
    /// Its protocol type ("" for a group that only stores offsets).
    pub protocol_type: String,
    /// Its state.
    pub state: GroupState,
}

/// The answer to ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListGroupsResponse {
    /// The error.
    pub error: GroupErrorCode,
    /// The groups.
    pub groups: Vec<ListedGroup>,
}

/// DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeGroupsRequest {
    /// The groups.
    pub groups: Vec<String>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// The member id.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// Its metadata for the selected protocol.
    pub metadata: Vec<u8>,
    /// Its assignment (empty unless the group is Stable).
    pub assignment: Vec<u8>,
}

/// One described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// The error (GROUP_ID_NOT_FOUND for an unknown group).
    pub error: GroupErrorCode,
    /// The group.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// Its protocol type.
    pub protocol_type: String,
    /// Its selected protocol.
    pub protocol: String,
    /// Its generation.
    pub generation_id: i32,
    /// The members.
    pub members: Vec<DescribedMember>,
}

/// The answer to DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeGroupsResponse {
    /// One per requested group.
    pub groups: Vec<DescribedGroup>,
}

/// DeleteGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGroupsRequest {
    /// The groups.
    pub groups: Vec<String>,
}

/// The outcome for one group of DeleteGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGroupResult {
    /// The group.
    pub group_id: String,
    /// The error.
    pub error: GroupErrorCode,
}

/// The answer to DeleteGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGroupsResponse {
    /// One per requested group.
    pub results: Vec<DeleteGroupResult>,
}

/// OffsetDelete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteRequest {
    /// The group.
    pub group_id: String,
    /// The partitions whose committed offsets go away.
    pub partitions: Vec<TopicPartition>,
}

/// The answer to OffsetDelete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResponse {
    /// An error for the whole request.
    pub error: GroupErrorCode,
    /// One per partition.
    pub partitions: Vec<PartitionResult>,
}

/// A request to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRequest {
    /// JoinGroup.
    Join(JoinGroupRequest),
    /// SyncGroup.
    Sync(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    Leave(LeaveGroupRequest),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitRequest),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchRequest),
    /// ListGroups.
    ListGroups(ListGroupsRequest),
    /// DescribeGroups.
    DescribeGroups(DescribeGroupsRequest),
    /// DeleteGroups.
    DeleteGroups(DeleteGroupsRequest),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteRequest),
}

/// An answer of the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupResponse {
    /// JoinGroup.
    Join(JoinGroupResponse),
    /// SyncGroup.
    Sync(SyncGroupResponse),
    /// Heartbeat.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup.
    Leave(LeaveGroupResponse),
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

impl GroupRequest {
    /// A short name of the api, for logs and metrics.
    pub fn api_name(&self) -> &'static str {
        match self {
            GroupRequest::Join(_) => "join_group",
            GroupRequest::Sync(_) => "sync_group",
            GroupRequest::Heartbeat(_) => "heartbeat",
            GroupRequest::Leave(_) => "leave_group",
            GroupRequest::OffsetCommit(_) => "offset_commit",
            GroupRequest::OffsetFetch(_) => "offset_fetch",
            GroupRequest::ListGroups(_) => "list_groups",
            GroupRequest::DescribeGroups(_) => "describe_groups",
            GroupRequest::DeleteGroups(_) => "delete_groups",
            GroupRequest::OffsetDelete(_) => "offset_delete",
        }
    }

    /// The group ids the request names (for routing to a coordinator; empty for ListGroups).
    pub fn group_ids(&self) -> Vec<&str> {
        match self {
            GroupRequest::Join(request) => vec![&request.group_id],
            GroupRequest::Sync(request) => vec![&request.group_id],
            GroupRequest::Heartbeat(request) => vec![&request.group_id],
            GroupRequest::Leave(request) => vec![&request.group_id],
            GroupRequest::OffsetCommit(request) => vec![&request.group_id],
            GroupRequest::OffsetFetch(request) => vec![&request.group_id],
            GroupRequest::OffsetDelete(request) => vec![&request.group_id],
            GroupRequest::ListGroups(_) => Vec::new(),
            GroupRequest::DescribeGroups(request) => {
                request.groups.iter().map(String::as_str).collect()
            }
            GroupRequest::DeleteGroups(request) => {
                request.groups.iter().map(String::as_str).collect()
            }
        }
    }

    /// The answer that carries `error` in place of results (coordinator not loaded, not the
    /// coordinator, ...), in the request's own shape.
    pub fn error_response(&self, error: GroupErrorCode) -> GroupResponse {
        let partition_results = |partitions: &mut dyn Iterator<Item = (&str, i32)>| {
            partitions
                .map(|(topic, partition)| PartitionResult {
                    topic: topic.to_string(),
                    partition,
                    error,
                })
                .collect::<Vec<_>>()
        };
        match self {
            GroupRequest::Join(request) => {
                GroupResponse::Join(JoinGroupResponse::error(&request.member_id, error))
            }
            GroupRequest::Sync(_) => GroupResponse::Sync(SyncGroupResponse::error(error)),
            GroupRequest::Heartbeat(_) => GroupResponse::Heartbeat(HeartbeatResponse { error }),
            GroupRequest::Leave(_) => GroupResponse::Leave(LeaveGroupResponse {
                error,
                members: Vec::new(),
            }),
            GroupRequest::OffsetCommit(request) => {
                GroupResponse::OffsetCommit(OffsetCommitResponse {
                    partitions: partition_results(
                        &mut request
                            .partitions
                            .iter()
                            .map(|p| (p.topic.as_str(), p.partition)),
                    ),
                })
            }
            GroupRequest::OffsetFetch(_) => GroupResponse::OffsetFetch(OffsetFetchResponse {
                error,
                partitions: Vec::new(),
            }),
            GroupRequest::ListGroups(_) => GroupResponse::ListGroups(ListGroupsResponse {
                error,
                groups: Vec::new(),
            }),
            GroupRequest::DescribeGroups(request) => {
                GroupResponse::DescribeGroups(DescribeGroupsResponse {
                    groups: request
                        .groups
                        .iter()
                        .map(|group_id| DescribedGroup::error(group_id, error))
                        .collect(),
                })
            }
            GroupRequest::DeleteGroups(request) => {
                GroupResponse::DeleteGroups(DeleteGroupsResponse {
                    results: request
                        .groups
                        .iter()
                        .map(|group_id| DeleteGroupResult {
                            group_id: group_id.clone(),
                            error,
                        })
                        .collect(),
                })
            }
            GroupRequest::OffsetDelete(_) => GroupResponse::OffsetDelete(OffsetDeleteResponse {
                error,
                partitions: Vec::new(),
            }),
        }
    }
}

impl DescribedGroup {
    /// A described group that carries only an error.
    pub fn error(group_id: &str, error: GroupErrorCode) -> DescribedGroup {
        DescribedGroup {
            error,
            group_id: group_id.to_string(),
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol: String::new(),
            generation_id: NO_GENERATION,
            members: Vec::new(),
        }
    }
}
