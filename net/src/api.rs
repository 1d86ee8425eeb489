//! Api keys, the versions this build implements, and the error codes carried in responses.

use crate::error::NetError;

/// The request types of the native protocol. The numbers are the wire values of the frame's
/// `api` field; they are part of the protocol and never change.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiKey {
    /// Which apis and versions the broker implements.
    ApiVersions = 0,
    /// Brokers, shard ports, topics, partitions, leaders.
    Metadata = 1,
    /// Create topics.
    CreateTopics = 2,
    /// Delete topics.
    DeleteTopics = 3,
    /// Append record batches.
    Produce = 4,
    /// Read record batches (consumers and follower replicas).
    Fetch = 5,
    /// Offsets by timestamp, earliest or latest.
    ListOffsets = 6,
    /// End offset of a leader epoch (follower truncation, KIP-101/279).
    OffsetForLeaderEpoch = 7,
    /// A producer id and epoch for an idempotent producer.
    InitProducerId = 8,
    /// Where a group's coordinator is: broker and shard port.
    FindCoordinator = 9,
    /// Join a consumer group (a long poll answered when the rebalance's join phase ends).
    JoinGroup = 10,
    /// The leader hands out the assignment; every member gets its own (a long poll).
    SyncGroup = 11,
    /// A group member is alive; the answer says whether to rejoin.
    Heartbeat = 12,
    /// Members leave a group.
    LeaveGroup = 13,
    /// Commit a group's offsets.
    OffsetCommit = 14,
    /// Read a group's committed offsets.
    OffsetFetch = 15,
    /// The groups a broker coordinates.
    ListGroups = 16,
    /// Groups' state and members.
    DescribeGroups = 17,
    /// Delete empty groups with their offsets.
    DeleteGroups = 18,
    /// Delete some of a group's committed offsets.
    OffsetDelete = 19,
    /// Add partitions to topics (never fewer).
    CreatePartitions = 20,
    /// Set or remove topic configs.
    AlterTopicConfigs = 21,
    /// Move leadership to preferred replicas (cluster mode).
    ElectLeaders = 22,
    /// Start or cancel partition reassignments (KIP-455).
    AlterPartitionReassignments = 23,
    /// The partition reassignments in progress.
    ListPartitionReassignments = 24,
}

impl ApiKey {
    /// Every api key, in wire-value order.
    pub const ALL: [ApiKey; 25] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::OffsetForLeaderEpoch,
        ApiKey::InitProducerId,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
        ApiKey::OffsetDelete,
        ApiKey::CreatePartitions,
        ApiKey::AlterTopicConfigs,
        ApiKey::ElectLeaders,
        ApiKey::AlterPartitionReassignments,
        ApiKey::ListPartitionReassignments,
    ];

    /// The wire value of this key.
    pub fn code(self) -> u16 {
        self as u16
    }
}

impl TryFrom<u16> for ApiKey {
    type Error = NetError;

    fn try_from(value: u16) -> Result<Self, Self::Error> {
        let api = match value {
            0 => ApiKey::ApiVersions,
            1 => ApiKey::Metadata,
            2 => ApiKey::CreateTopics,
            3 => ApiKey::DeleteTopics,
            4 => ApiKey::Produce,
            5 => ApiKey::Fetch,
            6 => ApiKey::ListOffsets,
            7 => ApiKey::OffsetForLeaderEpoch,
            8 => ApiKey::InitProducerId,
            9 => ApiKey::FindCoordinator,
            10 => ApiKey::JoinGroup,
            11 => ApiKey::SyncGroup,
            12 => ApiKey::Heartbeat,
            13 => ApiKey::LeaveGroup,
            14 => ApiKey::OffsetCommit,
            15 => ApiKey::OffsetFetch,
            16 => ApiKey::ListGroups,
            17 => ApiKey::DescribeGroups,
            18 => ApiKey::DeleteGroups,
            19 => ApiKey::OffsetDelete,
            20 => ApiKey::CreatePartitions,
            21 => ApiKey::AlterTopicConfigs,
            22 => ApiKey::ElectLeaders,
            23 => ApiKey::AlterPartitionReassignments,
            24 => ApiKey::ListPartitionReassignments,
            _ => return Err(NetError::UnknownApi(value)),
        };
        Ok(api)
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{self:?}({})", self.code())
    }
}

/// The version ranges this build implements, `(api, min, max)` inclusive, one entry per api in
/// wire-value order. ApiVersions answers with exactly this table.
static SUPPORTED_VERSIONS: [(ApiKey, u16, u16); 25] = [
    (ApiKey::ApiVersions, 0, 0),
    (ApiKey::Metadata, 0, 0),
    (ApiKey::CreateTopics, 0, 0),
    (ApiKey::DeleteTopics, 0, 0),
    (ApiKey::Produce, 0, 0),
    (ApiKey::Fetch, 0, 0),
    (ApiKey::ListOffsets, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 0, 0),
    (ApiKey::InitProducerId, 0, 0),
    (ApiKey::FindCoordinator, 0, 0),
    (ApiKey::JoinGroup, 0, 0),
    (ApiKey::SyncGroup, 0, 0),
    (ApiKey::Heartbeat, 0, 0),
    (ApiKey::LeaveGroup, 0, 0),
    (ApiKey::OffsetCommit, 0, 0),
    (ApiKey::OffsetFetch, 0, 0),
    (ApiKey::ListGroups, 0, 0),
    (ApiKey::DescribeGroups, 0, 0),
    (ApiKey::DeleteGroups, 0, 0),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::CreatePartitions, 0, 0),
    (ApiKey::AlterTopicConfigs, 0, 0),
    (ApiKey::ElectLeaders, 0, 0),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The version ranges this build implements: `(api, min, max)`, inclusive.
pub fn supported_versions() -> &'static [(ApiKey, u16, u16)] {
    &SUPPORTED_VERSIONS
}

/// Checks that `version` of `api` is implemented, so a dispatcher can refuse a request with
/// `UnsupportedVersion` before decoding its body.
pub fn check_version(api: ApiKey, version: u16) -> Result<(), NetError> {
    let supported = SUPPORTED_VERSIONS
        .iter()
        .any(|&(key, min, max)| key == api && (min..=max).contains(&version));
    if supported {
        Ok(())
    } else {
        Err(NetError::UnsupportedVersion {
            api: api.code(),
            version,
        })
    }
}

/// The error code carried in responses. Where Kafka defines the condition, the number is
/// Kafka's, so the Kafka protocol adapter can pass codes through unchanged.
#[repr(i16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ErrorCode {
    /// Success.
    #[error("no error")]
    None = 0,
    /// The requested offset is outside the partition's log.
    #[error("the requested offset is out of range for this partition")]
    OffsetOutOfRange = 1,
    /// A record batch failed its CRC or header checks.
    #[error("a record batch failed its CRC or is otherwise corrupt")]
    CorruptMessage = 2,
    /// The broker does not host this topic-partition.
    #[error("this broker does not host the topic or partition")]
    UnknownTopicOrPartition = 3,
    /// The requested fetch size is invalid.
    #[error("the requested fetch size is invalid")]
    InvalidFetchSize = 4,
    /// The partition has no leader right now (an election is in progress).
    #[error("there is no leader for this partition right now")]
    LeaderNotAvailable = 5,
    /// This broker is not the leader (or follower) the request expected.
    #[error("this broker is not the leader or follower for the partition")]
    NotLeaderOrFollower = 6,
    /// The request did not complete within its timeout.
    #[error("the request timed out")]
    RequestTimedOut = 7,
    /// A record batch is larger than the topic allows.
    #[error("the record batch is larger than the maximum the topic allows")]
    MessageTooLarge = 10,
    /// The request carries an outdated controller epoch.
    #[error("the controller epoch is stale")]
    StaleControllerEpoch = 11,
    /// The connection failed while the request was in flight.
    #[error("the connection failed while the request was in flight")]
    NetworkException = 13,
    /// The topic name is invalid or names an internal topic.
    #[error("the topic name is invalid")]
    InvalidTopic = 17,
    /// A produce request's record list is larger than allowed.
    #[error("the request's record list is larger than allowed")]
    RecordListTooLarge = 18,
    /// Fewer in-sync replicas than min.insync.replicas: refused before appending.
    #[error("not enough in-sync replicas; the records were not appended")]
    NotEnoughReplicas = 19,
    /// The ISR shrank below min.insync.replicas after the records were appended.
    #[error("the records were appended but fewer in-sync replicas than required remain")]
    NotEnoughReplicasAfterAppend = 20,
    /// `acks` is not 0, 1 or -1.
    #[error("acks must be 0, 1 or -1")]
    InvalidRequiredAcks = 21,
    /// An offset commit's metadata is longer than the broker allows.
    #[error("the offset metadata is larger than the broker allows")]
    OffsetMetadataTooLarge = 12,
    /// The group coordinator is loading its groups: retry soon.
    #[error("the group coordinator is loading; retry")]
    CoordinatorLoadInProgress = 14,
    /// The group coordinator is not available: find it again and retry.
    #[error("the group coordinator is not available; retry")]
    CoordinatorNotAvailable = 15,
    /// This shard is not the group's coordinator: find the coordinator again.
    #[error("this is not the group's coordinator")]
    NotCoordinator = 16,
    /// The generation is not the group's current one.
    #[error("the generation is not the group's current generation")]
    IllegalGeneration = 22,
    /// The member's protocol type or protocols do not match the group's.
    #[error("the protocol type or protocols are not compatible with the group's")]
    InconsistentGroupProtocol = 23,
    /// The group id is empty or too long.
    #[error("the group id is invalid")]
    InvalidGroupId = 24,
    /// The member id is not known to the group (evicted, or never joined).
    #[error("the member id is not known to the group")]
    UnknownMemberId = 25,
    /// The session timeout is outside the broker's bounds.
    #[error("the session timeout is outside the broker's allowed range")]
    InvalidSessionTimeout = 26,
    /// The group is rebalancing: rejoin.
    #[error("the group is rebalancing; rejoin")]
    RebalanceInProgress = 27,
    /// The offset commit is too large to write.
    #[error("the offset commit is too large to write")]
    InvalidCommitOffsetSize = 28,
    /// The requested api version is not implemented.
    #[error("the api version is not supported")]
    UnsupportedVersion = 35,
    /// CreateTopics named a topic that already exists.
    #[error("the topic already exists")]
    TopicAlreadyExists = 36,
    /// The partition count is invalid.
    #[error("the number of partitions is invalid")]
    InvalidPartitions = 37,
    /// The replication factor is invalid or larger than the live brokers.
    #[error("the replication factor is invalid")]
    InvalidReplicationFactor = 38,
    /// A replica assignment is invalid: empty, a broker named twice or not registered, or
    /// fewer replicas than the topic's min.insync.replicas.
    #[error("the replica assignment is invalid")]
    InvalidReplicaAssignment = 39,
    /// A topic configuration entry is invalid.
    #[error("the configuration is invalid")]
    InvalidConfig = 40,
    /// The request is malformed or inconsistent.
    #[error("the request is invalid")]
    InvalidRequest = 42,
    /// A configured bound refuses the request.
    #[error("the request breaks a configured bound")]
    PolicyViolation = 44,
    /// An idempotent producer's batch does not follow its previous one (a gap in the
    /// sequence, or an old batch outside the broker's window).
    #[error("the producer's sequence number is out of order")]
    OutOfOrderSequenceNumber = 45,
    /// The producer's epoch is older than the partition's: a newer instance fenced it.
    #[error("the producer epoch is older than the current one (fenced)")]
    InvalidProducerEpoch = 47,
    /// The partition has no state for the producer (it expired) and the batch does not start
    /// a new sequence.
    #[error("the broker no longer knows this producer id")]
    UnknownProducerId = 59,
    /// The partition is being reassigned already (Sluice refuses a second move until the
    /// first ends or is cancelled).
    #[error("a reassignment of the partition is in progress")]
    ReassignmentInProgress = 60,
    /// A cancel named a partition that is not being reassigned.
    #[error("no reassignment of the partition is in progress")]
    NoReassignmentInProgress = 85,
    /// The partition's log is on a failed disk.
    #[error("the broker's storage for this partition failed")]
    KafkaStorageError = 56,
    /// The group still has members.
    #[error("the group is not empty")]
    NonEmptyGroup = 68,
    /// The group does not exist.
    #[error("the group does not exist")]
    GroupIdNotFound = 69,
    /// The request's leader epoch is older than the broker's.
    #[error("the leader epoch in the request is older than the broker's")]
    FencedLeaderEpoch = 74,
    /// A new leader's high watermark has not caught up with the start of its epoch yet, so it
    /// cannot answer an offset query; retry.
    #[error("the leader cannot answer offset queries until its high watermark catches up")]
    OffsetNotAvailable = 78,
    /// The member must rejoin with the member id the answer carries (KIP-394).
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired = 79,
    /// The group has reached its maximum size.
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached = 81,
    /// Another member with the same group.instance.id replaced this one.
    #[error("another member with the same group.instance.id replaced this one")]
    FencedInstanceId = 82,
    /// The preferred replica of a partition is dead, restarted or outside the ISR, so it
    /// cannot lead now.
    #[error("the preferred leader is not available (dead, restarted or outside the ISR)")]
    PreferredLeaderNotAvailable = 80,
    /// The preferred replica leads already: no election was needed.
    #[error("the preferred replica leads already; no election was needed")]
    ElectionNotNeeded = 84,
    /// No controller is elected right now.
    #[error("no controller is available right now; retry")]
    NotController = 41,
    /// The group's members subscribe to the topic whose offsets were to be deleted.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic = 86,
    /// A record the topic cannot accept (a record without a key in a compacted topic).
    #[error(
        "a record is invalid for this topic (a compacted topic requires a key on every record)"
    )]
    InvalidRecord = 87,
    /// An unexpected error on the server.
    #[error("unexpected server error")]
    UnknownServerError = -1,
}

impl ErrorCode {
    /// Every error code this build knows.
    pub const ALL: [ErrorCode; 54] = [
        ErrorCode::None,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::InvalidFetchSize,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::RequestTimedOut,
        ErrorCode::MessageTooLarge,
        ErrorCode::StaleControllerEpoch,
        ErrorCode::OffsetMetadataTooLarge,
        ErrorCode::NetworkException,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::InvalidTopic,
        ErrorCode::RecordListTooLarge,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend,
        ErrorCode::InvalidRequiredAcks,
        ErrorCode::IllegalGeneration,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidGroupId,
        ErrorCode::UnknownMemberId,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::RebalanceInProgress,
        ErrorCode::InvalidCommitOffsetSize,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidReplicaAssignment,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidRequest,
        ErrorCode::PolicyViolation,
        ErrorCode::OutOfOrderSequenceNumber,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::UnknownProducerId,
        ErrorCode::ReassignmentInProgress,
        ErrorCode::NoReassignmentInProgress,
        ErrorCode::KafkaStorageError,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupIdNotFound,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::MemberIdRequired,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::FencedInstanceId,
        ErrorCode::GroupSubscribedToTopic,
        ErrorCode::OffsetNotAvailable,
        ErrorCode::InvalidRecord,
        ErrorCode::PreferredLeaderNotAvailable,
        ErrorCode::ElectionNotNeeded,
        ErrorCode::NotController,
        ErrorCode::UnknownServerError,
    ];

    /// The error code with wire value `code`, or `None` for a number this build does not know
    /// (a client should treat that like `UnknownServerError`).
    pub fn from_i16(code: i16) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|known| known.code() == code)
    }

    /// The wire value of this code.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// True for `None`.
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }

    /// True when retrying the same request later (possibly after refreshing metadata) may
    /// succeed, following Kafka's classification of the same codes.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::CorruptMessage
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotLeaderOrFollower
                | ErrorCode::RequestTimedOut
                | ErrorCode::NetworkException
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::KafkaStorageError
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::OffsetNotAvailable
        )
    }
}

impl From<ErrorCode> for i16 {
    fn from(code: ErrorCode) -> i16 {
        code.code()
    }
}
