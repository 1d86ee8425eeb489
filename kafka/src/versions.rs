//! The APIs and versions this broker implements: exactly what ApiVersions advertises, nothing
//! more. The lowest version of each is Kafka 4.0's baseline (KIP-896 removed the older ones);
//! the highest is the newest we implement fully, at least what librdkafka 2.x, kafka-python
//! 2.x/3.x and kafkajs 2.2 ask for (a client uses the lower of its own maximum and ours).
//!
//! Where a newer version exists but is left out, the reason is given:
//! - Produce v13 and Fetch v13+ name topics by topic id only; our Produce decoder and Fetch
//!   path look topics up by name (Metadata, CreateTopics and DeleteTopics do carry ids).
//! - ListOffsets v7+ adds the max-timestamp query (-3), which the log cannot answer yet.
//! - InitProducerId v5 belongs to transactions' second version (KIP-890); transactions are
//!   not implemented, so it stops at v4 (what librdkafka 2.x asks for).
//!
//! The consumer-group APIs are listed by [`ApiTable::with_groups`], once a group coordinator
//! serves them.

use kafka_protocol::messages::ApiKey;

/// One API and the range of versions implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    /// The API.
    pub key: ApiKey,
    /// Lowest version implemented.
    pub min: i16,
    /// Highest version implemented.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport { key, min, max }
}

/// The data and admin APIs: always served.
pub const CORE_APIS: [ApiSupport; 16] = [
    api(ApiKey::Produce, 3, 12),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 6),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::AlterPartitionReassignments, 0, 0),
    api(ApiKey::ListPartitionReassignments, 0, 0),
];

/// The classic consumer-group APIs (served when a group coordinator is wired in).
pub const GROUP_APIS: [ApiSupport; 11] = [
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 8),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 2, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 4),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
];

/// The APIs one broker serves, in ApiVersions order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTable {
    apis: Vec<ApiSupport>,
}

impl Default for ApiTable {
    fn default() -> Self {
        ApiTable::core()
    }
}

impl ApiTable {
    /// The data and admin APIs only.
    pub fn core() -> Self {
        let mut apis = CORE_APIS.to_vec();
        apis.sort_by_key(|support| support.key as i16);
        ApiTable { apis }
    }

    /// The data and admin APIs plus the consumer-group APIs.
    pub fn with_groups() -> Self {
        let mut apis = CORE_APIS.to_vec();
        apis.extend(GROUP_APIS);
        apis.sort_by_key(|support| support.key as i16);
        ApiTable { apis }
    }

    /// Every API served, by key.
    pub fn apis(&self) -> &[ApiSupport] {
        &self.apis
    }

    /// The versions of `key` served, if any.
    pub fn get(&self, key: ApiKey) -> Option<ApiSupport> {
        self.apis.iter().copied().find(|support| support.key == key)
    }

    /// True when `key` is served at `version`.
    pub fn supports(&self, key: ApiKey, version: i16) -> bool {
        self.get(key)
            .is_some_and(|support| (support.min..=support.max).contains(&version))
    }
}

/// A short name of an API for errors, logs and metric labels (`produce`, `list_offsets`).
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::Metadata => "metadata",
        ApiKey::OffsetCommit => "offset_commit",
        ApiKey::OffsetFetch => "offset_fetch",
        ApiKey::FindCoordinator => "find_coordinator",
        ApiKey::JoinGroup => "join_group",
        ApiKey::Heartbeat => "heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::SyncGroup => "sync_group",
        ApiKey::DescribeGroups => "describe_groups",
        ApiKey::ListGroups => "list_groups",
        ApiKey::ApiVersions => "api_versions",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::OffsetForLeaderEpoch => "offset_for_leader_epoch",
        ApiKey::DescribeConfigs => "describe_configs",
        ApiKey::CreatePartitions => "create_partitions",
        ApiKey::DeleteGroups => "delete_groups",
        ApiKey::IncrementalAlterConfigs => "incremental_alter_configs",
        ApiKey::OffsetDelete => "offset_delete",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::ElectLeaders => "elect_leaders",
        ApiKey::AlterPartitionReassignments => "alter_partition_reassignments",
        ApiKey::ListPartitionReassignments => "list_partition_reassignments",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves every advertised range is one the codec can decode and encode, starts at or above
    // Kafka 4.0's baseline, and that the group APIs appear only in the table that asks for
    // them.
    #[test]
    fn advertised_ranges_are_within_the_codec_and_baseline() {
        for support in ApiTable::with_groups().apis() {
            let codec = support.key.valid_versions();
            assert!(support.min <= support.max, "{support:?}");
            assert!(
                codec.min <= support.min && support.max <= codec.max,
                "{support:?}"
            );
            assert_ne!(api_name(support.key), "other", "{support:?}");
        }
        assert!(ApiTable::core().get(ApiKey::JoinGroup).is_none());
        assert!(ApiTable::with_groups().supports(ApiKey::JoinGroup, 5));
        assert!(ApiTable::core().supports(ApiKey::Fetch, 4));
        assert!(!ApiTable::core().supports(ApiKey::Fetch, 3));
        assert!(!ApiTable::core().supports(ApiKey::Fetch, 13));
    }
}
