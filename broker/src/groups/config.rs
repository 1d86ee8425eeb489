//! The `[groups]` section of the broker configuration: the internal topic
//! `__consumer_offsets` and the coordinator's bounds.

use serde::{Deserialize, Serialize};
use sluice_group::GroupConfig;

use crate::config::ConfigError;

/// Consumer-group settings. Defaults follow Kafka's broker defaults where Kafka has the
/// setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSettings {
    /// Partitions of `__consumer_offsets` when the broker creates it (Kafka's
    /// `offsets.topic.num.partitions`). Group G lives on partition
    /// `abs(java_hash(G)) mod N`, so this must not change once the topic exists.
    pub offsets_topic_partitions: i32,
    /// Replicas of each partition of `__consumer_offsets` in cluster mode, capped at the live
    /// brokers when the topic is created (Kafka's `offsets.topic.replication.factor`).
    pub offsets_topic_replication_factor: i16,
    /// Segment size of `__consumer_offsets` when the broker creates it, bytes (Kafka's
    /// `offsets.topic.segment.bytes`): the cleaner compacts closed segments only.
    pub offsets_topic_segment_bytes: u64,
    /// Longest an offset commit or group write waits for the in-sync replicas, ms (Kafka's
    /// `offsets.commit.timeout.ms`).
    pub offsets_commit_timeout_ms: u64,
    /// Members one group may have (Kafka's `group.max.size`).
    pub group_members_max: usize,
    /// Groups one coordinator (one partition of `__consumer_offsets`) may hold.
    pub groups_per_coordinator_max: usize,
    /// Bytes of protocol metadata one member may send in a JoinGroup.
    pub member_metadata_bytes_max: usize,
    /// Bytes of an offset commit's metadata string (Kafka's `offset.metadata.max.bytes`).
    pub offset_metadata_bytes_max: usize,
    /// Smallest session timeout a member may ask for, ms (Kafka's
    /// `group.min.session.timeout.ms`).
    pub session_timeout_ms_min: i32,
    /// Largest session timeout a member may ask for, ms (Kafka's
    /// `group.max.session.timeout.ms`).
    pub session_timeout_ms_max: i32,
    /// How long the first rebalance of an empty group waits for more members, ms (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        let coordinator = GroupConfig::default();
        GroupSettings {
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_topic_segment_bytes: 100 << 20,
            offsets_commit_timeout_ms: 5_000,
            group_members_max: coordinator.group_members_max,
            groups_per_coordinator_max: coordinator.groups_max,
            member_metadata_bytes_max: coordinator.member_metadata_bytes_max,
            offset_metadata_bytes_max: coordinator.offset_metadata_bytes_max,
            session_timeout_ms_min: coordinator.session_timeout_ms_min,
            session_timeout_ms_max: coordinator.session_timeout_ms_max,
            initial_rebalance_delay_ms: 3_000,
        }
    }
}

impl GroupSettings {
    /// The coordinator's settings.
    pub fn coordinator_config(&self) -> GroupConfig {
        GroupConfig {
            group_members_max: self.group_members_max,
            groups_max: self.groups_per_coordinator_max,
            member_metadata_bytes_max: self.member_metadata_bytes_max,
            offset_metadata_bytes_max: self.offset_metadata_bytes_max,
            session_timeout_ms_min: self.session_timeout_ms_min,
            session_timeout_ms_max: self.session_timeout_ms_max,
            initial_rebalance_delay_ms: i64::try_from(self.initial_rebalance_delay_ms)
                .unwrap_or(i64::MAX),
            ..GroupConfig::default()
        }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, value: String, reason: &str| ConfigError::Invalid {
            key,
            value,
            reason: reason.to_string(),
        };
        if !(1..=10_000).contains(&self.offsets_topic_partitions) {
            return Err(invalid(
                "offsets_topic_partitions",
                self.offsets_topic_partitions.to_string(),
                "must be in [1, 10000]",
            ));
        }
        if self.offsets_topic_replication_factor < 1 {
            return Err(invalid(
                "offsets_topic_replication_factor",
                self.offsets_topic_replication_factor.to_string(),
                "must be at least 1",
            ));
        }
        if self.offsets_topic_segment_bytes < sluice_storage::config::SEGMENT_BYTES_MIN {
            return Err(invalid(
                "offsets_topic_segment_bytes",
                self.offsets_topic_segment_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        if self.offsets_commit_timeout_ms == 0 {
            return Err(invalid(
                "offsets_commit_timeout_ms",
                "0".to_string(),
                "must be at least 1",
            ));
        }
        self.coordinator_config()
            .validate()
            .map_err(|reason| invalid("groups", String::new(), &reason))
    }

    /// Applies the keys `overlay` sets.
    pub fn apply(&mut self, overlay: GroupsOverlay) {
        macro_rules! set {
            ($($field:ident),+) => {
                $( if let Some(value) = overlay.$field { self.$field = value; } )+
            };
        }
        set!(
            offsets_topic_partitions,
            offsets_topic_replication_factor,
            offsets_topic_segment_bytes,
            offsets_commit_timeout_ms,
            group_members_max,
            groups_per_coordinator_max,
            member_metadata_bytes_max,
            offset_metadata_bytes_max,
            session_timeout_ms_min,
            session_timeout_ms_max,
            initial_rebalance_delay_ms
        );
    }

    /// Every key as an overlay (for printing the effective configuration).
    pub fn to_overlay(&self) -> GroupsOverlay {
        GroupsOverlay {
            offsets_topic_partitions: Some(self.offsets_topic_partitions),
            offsets_topic_replication_factor: Some(self.offsets_topic_replication_factor),
            offsets_topic_segment_bytes: Some(self.offsets_topic_segment_bytes),
            offsets_commit_timeout_ms: Some(self.offsets_commit_timeout_ms),
            group_members_max: Some(self.group_members_max),
            groups_per_coordinator_max: Some(self.groups_per_coordinator_max),
            member_metadata_bytes_max: Some(self.member_metadata_bytes_max),
            offset_metadata_bytes_max: Some(self.offset_metadata_bytes_max),
            session_timeout_ms_min: Some(self.session_timeout_ms_min),
            session_timeout_ms_max: Some(self.session_timeout_ms_max),
            initial_rebalance_delay_ms: Some(self.initial_rebalance_delay_ms),
        }
    }
}

/// The `[groups]` keys of a configuration overlay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct GroupsOverlay {
    /// Partitions of __consumer_offsets when created.
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_PARTITIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsets_topic_partitions: Option<i32>,
    /// Replicas of __consumer_offsets (cluster mode, capped at the live brokers).
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_REPLICATION_FACTOR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsets_topic_replication_factor: Option<i16>,
    /// Segment size of __consumer_offsets when created, bytes.
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_SEGMENT_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsets_topic_segment_bytes: Option<u64>,
    /// Wait for the ISR on offset commits and group writes, ms.
    #[arg(long, env = "SLUICE_OFFSETS_COMMIT_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsets_commit_timeout_ms: Option<u64>,
    /// Members per group.
    #[arg(long, env = "SLUICE_GROUP_MEMBERS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_members_max: Option<usize>,
    /// Groups per coordinator partition.
    #[arg(long, env = "SLUICE_GROUPS_PER_COORDINATOR_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_per_coordinator_max: Option<usize>,
    /// Protocol metadata per member, bytes.
    #[arg(long, env = "SLUICE_MEMBER_METADATA_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_metadata_bytes_max: Option<usize>,
    /// Offset commit metadata, bytes.
    #[arg(long, env = "SLUICE_OFFSET_METADATA_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_metadata_bytes_max: Option<usize>,
    /// Smallest session timeout, ms.
    #[arg(long, env = "SLUICE_SESSION_TIMEOUT_MS_MIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_timeout_ms_min: Option<i32>,
    /// Largest session timeout, ms.
    #[arg(long, env = "SLUICE_SESSION_TIMEOUT_MS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_timeout_ms_max: Option<i32>,
    /// First-rebalance delay of an empty group, ms.
    #[arg(long, env = "SLUICE_INITIAL_REBALANCE_DELAY_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_rebalance_delay_ms: Option<u64>,
}

impl GroupsOverlay {
    /// This overlay with every key it leaves unset taken from `lower`.
    pub fn over(mut self, mut lower: GroupsOverlay) -> GroupsOverlay {
        macro_rules! merge {
            ($($field:ident),+) => {
                $( self.$field = self.$field.take().or(lower.$field.take()); )+
            };
        }
        merge!(
            offsets_topic_partitions,
            offsets_topic_replication_factor,
            offsets_topic_segment_bytes,
            offsets_commit_timeout_ms,
            group_members_max,
            groups_per_coordinator_max,
            member_metadata_bytes_max,
            offset_metadata_bytes_max,
            session_timeout_ms_min,
            session_timeout_ms_max,
            initial_rebalance_delay_ms
        );
        self
    }
}
