//! Control bodies of every request and response, as rkyv archives.
//!
//! Every type derives rkyv `Archive`, `Serialize` and `Deserialize`; with rkyv's default
//! `bytecheck` feature the archived form also derives `CheckBytes`, so a received body is
//! validated before any field is read. Error fields are `ErrorCode` wire values (`i16`); use
//! [`ErrorCode::from_i16`](crate::api::ErrorCode::from_i16) to interpret them.
//!
//! Record bytes never travel inside a control body: Produce requests and Fetch responses list
//! per-partition byte counts here and carry the batches, concatenated in the same order, as the
//! frame's payload.

use bytes::{Bytes, BytesMut};
use rkyv::{Archive, Deserialize, Serialize};

use crate::api::{supported_versions, ApiKey, ErrorCode};
use crate::error::NetError;

/// Implemented by every request and response body, so generic code can check that a frame's
/// api matches the body it is decoded or encoded as.
pub trait Message {
    /// The api this body belongs to.
    const API: ApiKey;
}

macro_rules! message {
    ($api:ident: $($body:ty),+) => {
        $(impl Message for $body {
            const API: ApiKey = ApiKey::$api;
        })+
    };
}

message!(ApiVersions: ApiVersionsRequest, ApiVersionsResponse);
message!(Metadata: MetadataRequest, MetadataResponse);
message!(CreateTopics: CreateTopicsRequest, CreateTopicsResponse);
message!(DeleteTopics: DeleteTopicsRequest, DeleteTopicsResponse);
message!(Produce: ProduceRequest, ProduceResponse);
message!(Fetch: FetchRequest, FetchResponse);
message!(ListOffsets: ListOffsetsRequest, ListOffsetsResponse);
message!(OffsetForLeaderEpoch: OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse);
message!(InitProducerId: InitProducerIdRequest, InitProducerIdResponse);
message!(FindCoordinator: FindCoordinatorRequest, FindCoordinatorResponse);
message!(JoinGroup: JoinGroupRequest, JoinGroupResponse);
message!(SyncGroup: SyncGroupRequest, SyncGroupResponse);
message!(Heartbeat: HeartbeatRequest, HeartbeatResponse);
message!(LeaveGroup: LeaveGroupRequest, LeaveGroupResponse);
message!(OffsetCommit: OffsetCommitRequest, OffsetCommitResponse);
message!(OffsetFetch: OffsetFetchRequest, OffsetFetchResponse);
message!(ListGroups: ListGroupsRequest, ListGroupsResponse);
message!(DescribeGroups: DescribeGroupsRequest, DescribeGroupsResponse);
message!(DeleteGroups: DeleteGroupsRequest, DeleteGroupsResponse);
message!(OffsetDelete: OffsetDeleteRequest, OffsetDeleteResponse);
message!(CreatePartitions: CreatePartitionsRequest, CreatePartitionsResponse);
message!(AlterTopicConfigs: AlterTopicConfigsRequest, AlterTopicConfigsResponse);
message!(ElectLeaders: ElectLeadersRequest, ElectLeadersResponse);

/// A topic to grow to `count` partitions (the new total, never fewer than now).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NewPartitions {
    /// Topic name.
    pub name: String,
    /// The partition count the topic should have afterwards.
    pub count: i32,
}

/// Adds partitions to topics. New partitions are placed like a new topic's; existing ones
/// keep their replicas, records and offsets.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CreatePartitionsRequest {
    /// Topics to grow.
    pub topics: Vec<NewPartitions>,
    /// How long the broker may wait for the change to complete, in milliseconds.
    pub timeout_ms: u32,
}

/// Per-topic outcomes of a CreatePartitions request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CreatePartitionsResponse {
    /// One result per requested topic.
    pub results: Vec<TopicResult>,
}

/// Config changes of one topic: entries set (added or replaced) and keys removed (back to
/// the broker default).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TopicConfigChange {
    /// Topic name.
    pub name: String,
    /// Entries to set, key and value.
    pub set: Vec<(String, String)>,
    /// Keys to remove.
    pub delete: Vec<String>,
}

/// Changes topic configs; every change is validated as CreateTopics validates configs, and a
/// topic with any invalid entry is left unchanged.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AlterTopicConfigsRequest {
    /// Changes, one per topic.
    pub changes: Vec<TopicConfigChange>,
    /// How long the broker may wait for the change to complete, in milliseconds.
    pub timeout_ms: u32,
}

/// Per-topic outcomes of an AlterTopicConfigs request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AlterTopicConfigsResponse {
    /// One result per requested topic.
    pub results: Vec<TopicResult>,
}

/// Moves leadership of every partition (of `topic` only, when given) to its preferred replica
/// (the first of its assignment), where that replica is live and in the ISR.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ElectLeadersRequest {
    /// Only this topic's partitions; `None`: every topic.
    pub topic: Option<String>,
}

/// One partition's outcome of a preferred election.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ElectionResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// None: elected; ElectionNotNeeded: the preferred replica led already;
    /// PreferredLeaderNotAvailable: it cannot lead now (`message` says why).
    pub error: i16,
    /// Why, for an error.
    pub message: Option<String>,
}

/// The outcome of an ElectLeaders request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ElectLeadersResponse {
    /// An error for the whole request (unknown topic, single-node broker, no controller).
    pub error: i16,
    /// Why, for an error.
    pub message: Option<String>,
    /// One result per partition considered.
    pub partitions: Vec<ElectionResult>,
}
message!(
    AlterPartitionReassignments: AlterPartitionReassignmentsRequest,
    AlterPartitionReassignmentsResponse
);
message!(
    ListPartitionReassignments: ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse
);

/// Asks which apis and versions the broker implements.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ApiVersionsRequest {}

/// One api's implemented version range, inclusive.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ApiVersionRange {
    /// ApiKey wire value.
    pub api: u16,
    /// Lowest implemented version.
    pub min: u16,
    /// Highest implemented version.
    pub max: u16,
}

/// The broker's implemented apis and versions.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ApiVersionsResponse {
    /// ErrorCode wire value.
    pub error: i16,
    /// One entry per implemented api.
    pub apis: Vec<ApiVersionRange>,
}

impl ApiVersionsResponse {
    /// The honest answer for this build: exactly [`supported_versions`].
    pub fn from_supported() -> Self {
        ApiVersionsResponse {
            error: ErrorCode::None.code(),
            apis: supported_versions()
                .iter()
                .map(|&(api, min, max)| ApiVersionRange {
                    api: api.code(),
                    min,
                    max,
                })
                .collect(),
        }
    }
}

/// Asks for cluster metadata.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetadataRequest {
    /// Topics to describe; `None` means every topic.
    pub topics: Option<Vec<String>>,
}

/// A broker and its ports.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BrokerMeta {
    /// Broker id.
    pub node_id: i32,
    /// Host name or address clients connect to.
    pub host: String,
    /// The shared native port (any shard answers).
    pub port: u16,
    /// One native port per shard, indexed by shard number, so a client can connect straight to
    /// the core that owns a partition.
    pub shard_ports: Vec<u16>,
}

/// One partition of a topic.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PartitionMeta {
    /// Partition index.
    pub partition: i32,
    /// ErrorCode wire value.
    pub error: i16,
    /// Leader's broker id, -1 when there is none.
    pub leader: i32,
    /// Current leader epoch.
    pub leader_epoch: i32,
    /// Broker ids of all replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Broker ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// The leader's shard (core) that owns this partition; index into `shard_ports`.
    pub shard: u32,
}

/// One topic.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// ErrorCode wire value.
    pub error: i16,
    /// Partitions, by index.
    pub partitions: Vec<PartitionMeta>,
    /// Topic configuration overrides, key and value.
    pub configs: Vec<(String, String)>,
}

/// Cluster metadata.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetadataResponse {
    /// Live brokers.
    pub brokers: Vec<BrokerMeta>,
    /// The controller's broker id, -1 when unknown.
    pub controller_id: i32,
    /// Cluster id.
    pub cluster_id: String,
    /// The requested topics.
    pub topics: Vec<TopicMeta>,
}

/// A topic to create.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
    /// Configuration overrides, key and value.
    pub configs: Vec<(String, String)>,
}

/// Creates topics.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CreateTopicsRequest {
    /// Topics to create.
    pub topics: Vec<NewTopic>,
    /// How long the broker may wait for the creation to complete, in milliseconds.
    pub timeout_ms: u32,
}

/// The outcome for one topic of a create or delete.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TopicResult {
    /// Topic name.
    pub name: String,
    /// ErrorCode wire value.
    pub error: i16,
    /// Human-readable detail for an error.
    pub message: Option<String>,
}

/// Per-topic outcomes of a CreateTopics request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CreateTopicsResponse {
    /// One result per requested topic.
    pub results: Vec<TopicResult>,
}

/// Deletes topics.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DeleteTopicsRequest {
    /// Topics to delete.
    pub names: Vec<String>,
    /// How long the broker may wait for the deletion to complete, in milliseconds.
    pub timeout_ms: u32,
}

/// Per-topic outcomes of a DeleteTopics request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DeleteTopicsResponse {
    /// One result per requested topic.
    pub results: Vec<TopicResult>,
}

/// One partition's share of a Produce payload.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProducePartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Bytes of record batches for this partition in the payload.
    pub records_bytes: u32,
}

/// Appends record batches. The payload is each partition's record batches concatenated, in the
/// order of `partitions`. With `acks == 0` the broker sends no response.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProduceRequest {
    /// 0 (no response), 1 (leader appended) or -1 (the whole ISR has it).
    pub acks: i8,
    /// How long the broker may wait for acks, in milliseconds.
    pub timeout_ms: u32,
    /// The partitions written, in payload order.
    pub partitions: Vec<ProducePartition>,
}

impl ProduceRequest {
    /// Splits `payload` into one slice per partition (no copy), checking that the byte counts
    /// add up to exactly the payload's length.
    pub fn partition_payloads(&self, payload: &Bytes) -> Result<Vec<Bytes>, NetError> {
        split_payload(self.partitions.iter().map(|p| p.records_bytes), payload)
    }

    /// Splits `payload` into one writable view per partition (no copy), with the same checks as
    /// [`ProduceRequest::partition_payloads`].
    pub fn partition_payloads_mut(&self, payload: BytesMut) -> Result<Vec<BytesMut>, NetError> {
        split_payload_mut(self.partitions.iter().map(|p| p.records_bytes), payload)
    }
}

/// The outcome of a Produce for one partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProducePartitionResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// ErrorCode wire value.
    pub error: i16,
    /// Offset assigned to the first record, -1 on error.
    pub base_offset: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// Human-readable detail for an error.
    pub message: Option<String>,
    /// With NotLeaderOrFollower: the leader's broker id as this broker knows it, so the client
    /// can send there before its metadata refresh answers (Kafka's KIP-951); -1 otherwise.
    pub current_leader: i32,
}

/// Per-partition outcomes of a Produce.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProduceResponse {
    /// One result per requested partition.
    pub partitions: Vec<ProducePartitionResult>,
}

/// One partition to fetch from.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FetchPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Bound on this partition's share of the response, in bytes.
    pub partition_max_bytes: u32,
    /// The leader epoch the fetcher believes current, -1 when unknown (fencing, KIP-320).
    pub current_leader_epoch: i32,
}

/// Reads record batches; used by consumers and by follower replicas.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FetchRequest {
    /// -1 for a consumer, else the follower's broker id.
    pub replica_id: i32,
    /// How long the broker may wait for `min_bytes`, in milliseconds.
    pub max_wait_ms: u32,
    /// Answer as soon as this many bytes are available.
    pub min_bytes: u32,
    /// Bound on the whole response's records, in bytes.
    pub max_bytes: u32,
    /// The partitions to read.
    pub partitions: Vec<FetchPartition>,
}

/// The outcome of a Fetch for one partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FetchPartitionResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// ErrorCode wire value.
    pub error: i16,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// The partition's log end offset.
    pub log_end_offset: i64,
    /// Bytes of whole record batches for this partition in the payload.
    pub records_bytes: u32,
    /// With NotLeaderOrFollower: the leader's broker id as this broker knows it (KIP-951); -1
    /// otherwise.
    pub current_leader: i32,
}

/// Fetch results. The payload is each partition's records (whole batches) concatenated, in the
/// order of `partitions`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FetchResponse {
    /// One result per requested partition.
    pub partitions: Vec<FetchPartitionResult>,
}

impl FetchResponse {
    /// Splits `payload` into one slice per partition (no copy), checking that the byte counts
    /// add up to exactly the payload's length.
    pub fn partition_payloads(&self, payload: &Bytes) -> Result<Vec<Bytes>, NetError> {
        split_payload(self.partitions.iter().map(|p| p.records_bytes), payload)
    }

    /// Splits `payload` into one writable view per partition (no copy), with the same checks as
    /// [`FetchResponse::partition_payloads`].
    pub fn partition_payloads_mut(&self, payload: BytesMut) -> Result<Vec<BytesMut>, NetError> {
        split_payload_mut(self.partitions.iter().map(|p| p.records_bytes), payload)
    }
}

/// One partition whose offset is wanted.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ListOffsetsPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// -2 for the earliest offset, -1 for the latest, else a unix timestamp in milliseconds
    /// (the first offset at or after it).
    pub timestamp: i64,
}

/// Looks up offsets by timestamp.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ListOffsetsRequest {
    /// The partitions to look up.
    pub partitions: Vec<ListOffsetsPartition>,
}

/// The offset found for one partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ListOffsetsPartitionResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// ErrorCode wire value.
    pub error: i16,
    /// The offset found, -1 when none.
    pub offset: i64,
    /// The timestamp of the record at `offset`, -1 when not applicable.
    pub timestamp: i64,
}

/// ListOffsets results.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ListOffsetsResponse {
    /// One result per requested partition.
    pub partitions: Vec<ListOffsetsPartitionResult>,
}

/// Asks for the end offset of a leader epoch in one partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EpochQuery {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The epoch whose end offset is wanted.
    pub leader_epoch: i32,
}

/// Asks for the end offsets of leader epochs, so a new follower can truncate (KIP-101/279).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetForLeaderEpochRequest {
    /// The partitions and epochs.
    pub partitions: Vec<EpochQuery>,
}

/// The end offset of an epoch in one partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EpochAnswer {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// ErrorCode wire value.
    pub error: i16,
    /// The largest epoch at or below the requested one that the leader knows.
    pub leader_epoch: i32,
    /// The start offset of the next epoch after `leader_epoch`, or the log end offset.
    pub end_offset: i64,
}

/// OffsetForLeaderEpoch results.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetForLeaderEpochResponse {
    /// One answer per query.
    pub partitions: Vec<EpochAnswer>,
}

// Consumer groups (Kafka's classic group protocol). Fields follow Kafka's; the broker maps them
// to the coordinator's own types (`sluice-group`). Error fields are ErrorCode wire values.

/// Asks for an idempotent producer's id and epoch (Kafka's InitProducerId).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct InitProducerIdRequest {
    /// The transactional id; `None` for a plain idempotent producer, which gets a new id on
    /// every call. Transactions are not implemented yet: a transactional id is refused.
    pub transactional_id: Option<String>,
    /// The producer's current id when it asks again (KIP-360), -1 otherwise.
    pub producer_id: i64,
    /// The producer's current epoch when it asks again, -1 otherwise.
    pub producer_epoch: i16,
}

/// An idempotent producer's id and epoch, unique in the cluster.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct InitProducerIdResponse {
    /// ErrorCode wire value.
    pub error: i16,
    /// Detail for an error.
    pub message: Option<String>,
    /// The producer id (-1 on error).
    pub producer_id: i64,
    /// The producer epoch (-1 on error).
    pub producer_epoch: i16,
}

/// `key_type` of a FindCoordinator for a consumer group.
pub const COORDINATOR_KEY_GROUP: i8 = 0;

/// Asks where a group's coordinator is.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FindCoordinatorRequest {
    /// The group id.
    pub key: String,
    /// [`COORDINATOR_KEY_GROUP`].
    pub key_type: i8,
}

/// Where a group's coordinator is: the broker leading the group's partition of
/// `__consumer_offsets`, and the shard (core) that owns it there.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FindCoordinatorResponse {
    /// ErrorCode wire value (COORDINATOR_NOT_AVAILABLE while none is elected or the topic is
    /// being created).
    pub error: i16,
    /// Detail for an error.
    pub message: Option<String>,
    /// The coordinator's broker id.
    pub node_id: i32,
    /// Its host.
    pub host: String,
    /// Its shared native port.
    pub port: u16,
    /// The shard that owns the group's partition.
    pub shard: u32,
    /// That shard's own port (0 when unknown).
    pub shard_port: u16,
    /// The partition of `__consumer_offsets` that holds the group.
    pub partition: i32,
}

/// One protocol a joining member supports.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupProtocolMeta {
    /// The protocol (assignor) name.
    pub name: String,
    /// Its metadata (for "consumer": Kafka's ConsumerProtocolSubscription bytes).
    pub metadata: Vec<u8>,
}

/// Joins a group. The answer comes when the rebalance's join phase ends.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JoinGroupRequest {
    /// The group.
    pub group_id: String,
    /// Removed after this long without a heartbeat, ms.
    pub session_timeout_ms: i32,
    /// How long a rebalance waits for this member to rejoin, ms.
    pub rebalance_timeout_ms: i32,
    /// The member id; empty on the first join (the answer is MEMBER_ID_REQUIRED with one).
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
    /// The protocol type ("consumer").
    pub protocol_type: String,
    /// Supported protocols, preferred first.
    pub protocols: Vec<GroupProtocolMeta>,
    /// The client's id.
    pub client_id: String,
}

/// A member as the leader sees it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JoinGroupMemberMeta {
    /// The member id.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Vec<u8>,
}

/// The answer to JoinGroup.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JoinGroupResponse {
    /// ErrorCode wire value.
    pub error: i16,
    /// Detail for an error.
    pub message: Option<String>,
    /// The generation joined, -1 on error.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinGroupMemberMeta>,
}

/// One member's assignment.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupAssignmentMeta {
    /// The member id.
    pub member_id: String,
    /// Its assignment (for "consumer": Kafka's ConsumerProtocolAssignment bytes).
    pub assignment: Vec<u8>,
}

/// SyncGroup: the leader sends every member's assignment; every member gets its own back.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SyncGroupRequest {
    /// The group.
    pub group_id: String,
    /// The generation joined.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
    /// The protocol type, checked against the group's.
    pub protocol_type: Option<String>,
    /// The protocol name, checked against the group's.
    pub protocol_name: Option<String>,
    /// The leader's assignments; empty from the others.
    pub assignments: Vec<GroupAssignmentMeta>,
}

/// The answer to SyncGroup.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SyncGroupResponse {
    /// ErrorCode wire value.
    pub error: i16,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The group's protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Vec<u8>,
}

/// A group member is alive.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
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

/// The answer to Heartbeat (REBALANCE_IN_PROGRESS: rejoin).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HeartbeatResponse {
    /// ErrorCode wire value.
    pub error: i16,
}

/// One member leaving.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeavingMemberMeta {
    /// The member id (empty to name a static member by instance id).
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
}

/// Members leave a group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeaveGroupRequest {
    /// The group.
    pub group_id: String,
    /// The members.
    pub members: Vec<LeavingMemberMeta>,
}

/// The outcome for one leaving member.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeftMemberResult {
    /// The member id as sent.
    pub member_id: String,
    /// The group.instance.id as sent.
    pub group_instance_id: Option<String>,
    /// ErrorCode wire value.
    pub error: i16,
}

/// The answer to LeaveGroup.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeaveGroupResponse {
    /// ErrorCode wire value for the whole request.
    pub error: i16,
    /// One per member.
    pub members: Vec<LeftMemberResult>,
}

/// One partition's offset to commit.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CommitPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The offset of the next record to read.
    pub offset: i64,
    /// The leader epoch of the last record read, -1 when unknown.
    pub leader_epoch: i32,
    /// Free-form metadata.
    pub metadata: Option<String>,
}

/// Commits a group's offsets.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetCommitRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation, -1 for a standalone consumer.
    pub generation_id: i32,
    /// The member id, empty for a standalone consumer.
    pub member_id: String,
    /// group.instance.id of a static member.
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub partitions: Vec<CommitPartition>,
}

/// The outcome for one partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupPartitionResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// ErrorCode wire value.
    pub error: i16,
}

/// The answer to OffsetCommit.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetCommitResponse {
    /// One per partition, in request order.
    pub partitions: Vec<GroupPartitionResult>,
}

/// A topic partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TopicPartitionMeta {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// Reads a group's committed offsets.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetFetchRequest {
    /// The group.
    pub group_id: String,
    /// The partitions, or `None` for every partition with a committed offset.
    pub partitions: Option<Vec<TopicPartitionMeta>>,
}

/// A committed offset.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CommittedOffsetMeta {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The committed offset, -1 when none.
    pub offset: i64,
    /// The committed leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// The committed metadata.
    pub metadata: Option<String>,
    /// ErrorCode wire value.
    pub error: i16,
}

/// The answer to OffsetFetch.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetFetchResponse {
    /// ErrorCode wire value for the whole request.
    pub error: i16,
    /// The offsets.
    pub partitions: Vec<CommittedOffsetMeta>,
}

/// Lists the groups a broker coordinates.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ListGroupsRequest {
    /// Only groups in these states (Kafka's state names); every state when empty.
    pub states: Vec<String>,
}

/// One listed group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupListing {
    /// The group.
    pub group_id: String,
    /// Its protocol type.
    pub protocol_type: String,
    /// Its state (Kafka's name).
    pub state: String,
}

/// The answer to ListGroups.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ListGroupsResponse {
    /// ErrorCode wire value.
    pub error: i16,
    /// The groups.
    pub groups: Vec<GroupListing>,
}

/// Describes groups.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DescribeGroupsRequest {
    /// The groups.
    pub groups: Vec<String>,
}

/// One member of a described group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupMemberDescription {
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
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupDescription {
    /// ErrorCode wire value (GROUP_ID_NOT_FOUND for an unknown group).
    pub error: i16,
    /// The group.
    pub group_id: String,
    /// Its state (Kafka's name).
    pub state: String,
    /// Its protocol type.
    pub protocol_type: String,
    /// Its protocol.
    pub protocol: String,
    /// Its generation.
    pub generation_id: i32,
    /// The members.
    pub members: Vec<GroupMemberDescription>,
}

/// The answer to DescribeGroups.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DescribeGroupsResponse {
    /// One per requested group.
    pub groups: Vec<GroupDescription>,
}

/// Deletes empty groups.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DeleteGroupsRequest {
    /// The groups.
    pub groups: Vec<String>,
}

/// The outcome for one group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupResult {
    /// The group.
    pub group_id: String,
    /// ErrorCode wire value.
    pub error: i16,
}

/// The answer to DeleteGroups.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DeleteGroupsResponse {
    /// One per requested group.
    pub results: Vec<GroupResult>,
}

/// Deletes some of a group's committed offsets.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetDeleteRequest {
    /// The group.
    pub group_id: String,
    /// The partitions.
    pub partitions: Vec<TopicPartitionMeta>,
}

/// The answer to OffsetDelete.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OffsetDeleteResponse {
    /// ErrorCode wire value for the whole request.
    pub error: i16,
    /// One per partition.
    pub partitions: Vec<GroupPartitionResult>,
}

/// Cuts `payload` into consecutive slices of the given lengths, refusing counts that do not add
/// up to the payload length (they would misattribute records to partitions).
fn split_payload(lens: impl Iterator<Item = u32>, payload: &Bytes) -> Result<Vec<Bytes>, NetError> {
    let ranges = payload_ranges(lens, payload.len())?;
    Ok(ranges
        .into_iter()
        .map(|(start, end)| payload.slice(start..end))
        .collect())
}

fn split_payload_mut(
    lens: impl Iterator<Item = u32>,
    mut payload: BytesMut,
) -> Result<Vec<BytesMut>, NetError> {
    let ranges = payload_ranges(lens, payload.len())?;
    Ok(ranges
        .into_iter()
        .map(|(start, end)| payload.split_to(end - start))
        .collect())
}

/// The `[start, end)` byte range of each part, checking that the lengths cover exactly
/// `payload_len` bytes.
fn payload_ranges(
    lens: impl Iterator<Item = u32>,
    payload_len: usize,
) -> Result<Vec<(usize, usize)>, NetError> {
    let mut ranges = Vec::new();
    let mut start = 0usize;
    for len in lens {
        let end = start.saturating_add(len as usize);
        if end > payload_len {
            return Err(NetError::malformed(format!(
                "partition byte counts exceed the payload of {payload_len} bytes"
            )));
        }
        ranges.push((start, end));
        start = end;
    }
    if start != payload_len {
        return Err(NetError::malformed(format!(
            "partition byte counts add up to {start} but the payload has {payload_len} bytes"
        )));
    }
    Ok(ranges)
}

/// One partition to move (or whose move to cancel).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ReassignPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The target replica list, preferred leader first; `None` cancels the partition's
    /// reassignment in progress.
    pub replicas: Option<Vec<i32>>,
}

/// Starts or cancels partition reassignments (cluster mode).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AlterPartitionReassignmentsRequest {
    /// The partitions.
    pub partitions: Vec<ReassignPartition>,
    /// How long the broker may wait for each change to be recorded, in milliseconds.
    pub timeout_ms: u32,
}

/// The outcome for one partition of a reassignment request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ReassignResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// ErrorCode wire value.
    pub error: i16,
    /// Human-readable detail for an error.
    pub message: Option<String>,
}

/// Per-partition outcomes of an AlterPartitionReassignments request, in request order.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AlterPartitionReassignmentsResponse {
    /// One result per requested partition.
    pub results: Vec<ReassignResult>,
}

/// Asks for every partition reassignment in progress.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ListPartitionReassignmentsRequest {}

/// One partition reassignment in progress.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OngoingReassignment {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The full replica set now: the assignment, then the replicas being added.
    pub replicas: Vec<i32>,
    /// The target replica list.
    pub target: Vec<i32>,
    /// Replicas being added.
    pub adding: Vec<i32>,
    /// Replicas being removed.
    pub removing: Vec<i32>,
    /// Target replicas not in the ISR yet.
    pub catching_up: Vec<i32>,
    /// The current leader (-1: none).
    pub leader: i32,
    /// Estimated bytes the added replicas still catching up lack, together, as their brokers
    /// report them; -1: unknown (a broker could not be read or has not measured yet).
    pub bytes_remaining: i64,
}

/// The partition reassignments in progress.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ListPartitionReassignmentsResponse {
    /// ErrorCode wire value (for example InvalidRequest outside cluster mode).
    pub error: i16,
    /// Human-readable detail for an error.
    pub message: Option<String>,
    /// The reassignments, in topic and partition order.
    pub reassignments: Vec<OngoingReassignment>,
}
