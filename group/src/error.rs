//! The error codes group answers carry (Kafka's numbers, so both protocol front ends pass them
//! through unchanged), and the crate's own error type for records it cannot read.

/// An error code in a group answer. The numbers are Kafka's.
#[repr(i16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum GroupErrorCode {
    /// Success.
    #[error("no error")]
    None = 0,
    /// The topic or partition does not exist (a commit to a deleted topic).
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition = 3,
    /// The request did not complete in time (a write of __consumer_offsets timed out).
    #[error("the request timed out")]
    RequestTimedOut = 7,
    /// The metadata string of an offset commit is longer than `offset_metadata_bytes_max`.
    #[error("the offset metadata is larger than the broker allows")]
    OffsetMetadataTooLarge = 12,
    /// The coordinator is still loading the groups of this partition: retry soon.
    #[error("the coordinator is loading its groups; retry")]
    CoordinatorLoadInProgress = 14,
    /// The coordinator cannot serve the group right now (it is being deleted, or the write of
    /// __consumer_offsets failed): find the coordinator again and retry.
    #[error("the group coordinator is not available; retry")]
    CoordinatorNotAvailable = 15,
    /// This broker shard is not the group's coordinator: find the coordinator again.
    #[error("this is not the group's coordinator")]
    NotCoordinator = 16,
    /// The generation in the request is not the group's current one.
    #[error("the generation is not the group's current generation")]
    IllegalGeneration = 22,
    /// The member's protocol type or protocols do not match the group's.
    #[error("the protocol type or protocols are not compatible with the group's")]
    InconsistentGroupProtocol = 23,
    /// The group id is empty or too long.
    #[error("the group id is invalid")]
    InvalidGroupId = 24,
    /// The member id is not a member of the group (evicted, or never joined).
    #[error("the member id is not known to the group")]
    UnknownMemberId = 25,
    /// The session timeout is outside the broker's bounds.
    #[error("the session timeout is outside the broker's allowed range")]
    InvalidSessionTimeout = 26,
    /// The group is rebalancing: rejoin.
    #[error("the group is rebalancing; rejoin")]
    RebalanceInProgress = 27,
    /// The offset commit's records are too large to write.
    #[error("the offset commit is too large to write")]
    InvalidCommitOffsetSize = 28,
    /// The request is malformed or breaks a bound (oversized member metadata, say).
    #[error("the request is invalid")]
    InvalidRequest = 42,
    /// A configured bound refuses the request (too many groups on this coordinator).
    #[error("the request breaks a configured bound")]
    PolicyViolation = 44,
    /// The group still has members.
    #[error("the group is not empty")]
    NonEmptyGroup = 68,
    /// The group does not exist.
    #[error("the group does not exist")]
    GroupIdNotFound = 69,
    /// KIP-394: the member must join again with the member id this answer carries.
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired = 79,
    /// The group has as many members as `group_members_max` allows.
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached = 81,
    /// Another member with the same group.instance.id replaced this one (KIP-345).
    #[error("another member with the same group.instance.id replaced this one")]
    FencedInstanceId = 82,
    /// The group's members are subscribed to the topic whose offsets were to be deleted.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic = 86,
    /// An unexpected error.
    #[error("unexpected server error")]
    UnknownServerError = -1,
}

impl GroupErrorCode {
    /// Every code, for lookups by number.
    pub const ALL: [GroupErrorCode; 23] = [
        GroupErrorCode::None,
        GroupErrorCode::UnknownTopicOrPartition,
        GroupErrorCode::RequestTimedOut,
        GroupErrorCode::OffsetMetadataTooLarge,
        GroupErrorCode::CoordinatorLoadInProgress,
        GroupErrorCode::CoordinatorNotAvailable,
        GroupErrorCode::NotCoordinator,
        GroupErrorCode::IllegalGeneration,
        GroupErrorCode::InconsistentGroupProtocol,
        GroupErrorCode::InvalidGroupId,
        GroupErrorCode::UnknownMemberId,
        GroupErrorCode::InvalidSessionTimeout,
        GroupErrorCode::RebalanceInProgress,
        GroupErrorCode::InvalidCommitOffsetSize,
        GroupErrorCode::InvalidRequest,
        GroupErrorCode::PolicyViolation,
        GroupErrorCode::NonEmptyGroup,
        GroupErrorCode::GroupIdNotFound,
        GroupErrorCode::MemberIdRequired,
        GroupErrorCode::GroupMaxSizeReached,
        GroupErrorCode::FencedInstanceId,
        GroupErrorCode::GroupSubscribedToTopic,
        GroupErrorCode::UnknownServerError,
    ];

    /// The wire value.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The code with wire value `code`, if this crate knows it.
    pub fn from_i16(code: i16) -> Option<GroupErrorCode> {
        GroupErrorCode::ALL
            .iter()
            .copied()
            .find(|known| known.code() == code)
    }

    /// True for `None`.
    pub fn is_ok(self) -> bool {
        self == GroupErrorCode::None
    }
}

/// Why a record of `__consumer_offsets` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end before the field does.
    #[error("{record}: truncated at byte {at} reading {field}")]
    Truncated {
        /// Which record type.
        record: &'static str,
        /// Which field.
        field: &'static str,
        /// Byte position.
        at: usize,
    },
    /// A length or count is negative where it must not be, or a string is not UTF-8.
    #[error("{record}: invalid {field} at byte {at}")]
    Invalid {
        /// Which record type.
        record: &'static str,
        /// Which field.
        field: &'static str,
        /// Byte position.
        at: usize,
    },
    /// A schema version this build does not read.
    #[error("{record}: unsupported version {version}")]
    UnsupportedVersion {
        /// Which record type.
        record: &'static str,
        /// The version found.
        version: i16,
    },
}
