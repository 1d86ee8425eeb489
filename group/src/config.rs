//! The coordinator's settings: every bound named with its unit last, checked in one place.

/// Settings of a [`GroupCoordinator`](crate::GroupCoordinator). Defaults follow Kafka's broker
/// defaults where Kafka has the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Members (and members asked to rejoin with a member id, KIP-394) one group may hold
    /// (Kafka's `group.max.size`). A JoinGroup beyond it gets GROUP_MAX_SIZE_REACHED.
    pub group_members_max: usize,
    /// Groups one coordinator (one partition of `__consumer_offsets`) may hold; a JoinGroup or
    /// standalone commit that would create another gets POLICY_VIOLATION.
    pub groups_max: usize,
    /// Bytes of protocol metadata one member may send in a JoinGroup, summed over its
    /// protocols; more gets INVALID_REQUEST. It bounds what a group's metadata record holds.
    pub member_metadata_bytes_max: usize,
    /// Bytes of one member's assignment in a SyncGroup; more gets INVALID_REQUEST.
    pub member_assignment_bytes_max: usize,
    /// Bytes of an offset commit's metadata string (Kafka's `offset.metadata.max.bytes`).
    pub offset_metadata_bytes_max: usize,
    /// Bytes of a group id, member id, group.instance.id, client id or protocol name.
    pub name_bytes_max: usize,
    /// Partitions one OffsetCommit, OffsetFetch or OffsetDelete may name.
    pub request_partitions_max: usize,
    /// Smallest session timeout a member may ask for (Kafka's `group.min.session.timeout.ms`).
    pub session_timeout_ms_min: i32,
    /// Largest session timeout a member may ask for (Kafka's `group.max.session.timeout.ms`).
    pub session_timeout_ms_max: i32,
    /// How long the first rebalance of an empty group waits for more members, extended by
    /// each new member up to the rebalance timeout (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            group_members_max: 1_000,
            groups_max: 100_000,
            member_metadata_bytes_max: 64 * 1024,
            member_assignment_bytes_max: 1024 * 1024,
            offset_metadata_bytes_max: 4_096,
            name_bytes_max: 255,
            request_partitions_max: 100_000,
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
        }
    }
}

impl GroupConfig {
    /// Checks the settings; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("group_members_max", self.group_members_max),
            ("groups_max", self.groups_max),
            ("member_metadata_bytes_max", self.member_metadata_bytes_max),
            (
                "member_assignment_bytes_max",
                self.member_assignment_bytes_max,
            ),
            ("name_bytes_max", self.name_bytes_max),
            ("request_partitions_max", self.request_partitions_max),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.session_timeout_ms_min <= 0
            || self.session_timeout_ms_min > self.session_timeout_ms_max
        {
            return Err(
                "session_timeout_ms_min must be positive and at most session_timeout_ms_max"
                    .to_string(),
            );
        }
        if self.initial_rebalance_delay_ms < 0 {
            return Err("initial_rebalance_delay_ms must not be negative".to_string());
        }
        Ok(())
    }
}
