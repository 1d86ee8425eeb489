//! Sluice consumer groups: Kafka's classic group protocol as a sans-IO state machine, and the
//! records of the internal topic `__consumer_offsets` that make groups and committed offsets
//! durable. No I/O, no clock, no workspace dependency: the broker's runtime feeds a
//! [`GroupCoordinator`] requests, write outcomes and the time, and carries out its
//! [`Output`]s; both protocol front ends (native and Kafka) map their wire messages to the
//! plain request and response types of [`api`].
//!
//! - [`api`]: requests and answers (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//!   OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete) and [`GroupState`].
//! - [`coordinator`]: [`GroupCoordinator`], the groups of one `__consumer_offsets` partition.
//! - [`records`]: the key and value formats of `__consumer_offsets`, byte-compatible with
//!   Kafka's, and their decoders for loading.
//! - [`consumer_protocol`]: Kafka's consumer subscription and assignment formats (the
//!   metadata members of protocol type "consumer" exchange through the coordinator).
//! - [`config`]: [`GroupConfig`], every bound a named setting.
//! - [`error`]: [`GroupErrorCode`] (Kafka's numbers) and [`RecordError`].
//!
//! Where a group lives: the coordinator of group G is the leader of partition
//! [`partition_for_group`]`(G, N)` of `__consumer_offsets` (Kafka's rule, so the mapping is the
//! same as Kafka's for the same N).

pub mod api;
pub mod config;
pub mod consumer_protocol;
pub mod coordinator;
pub mod error;
mod group;
pub mod records;
mod timers;
mod wire;

pub use api::*;
pub use config::GroupConfig;
pub use coordinator::{
    CommittedOffset, GroupCoordinator, GroupEvents, GroupGauges, Output, WriteId,
};
pub use error::{GroupErrorCode, RecordError};
pub use group::RequestId;
pub use records::OffsetsRecord;

/// The name of the internal topic that holds groups and committed offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` over UTF-16 code units (what Kafka hashes group ids with).
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The partition of `__consumer_offsets` (of `partitions` partitions) that holds `group_id`:
/// Kafka's `Utils.abs(groupId.hashCode) % partitions`, where `Utils.abs(i32::MIN)` is 0.
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(group_id);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the group -> partition mapping equals Kafka's: Java's String.hashCode values for
    // known strings (computed by the JVM), UTF-16 for non-ASCII, and the i32::MIN edge.
    #[test]
    fn group_partition_matches_kafka() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, a well-known Java edge case.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        // "😀" is two UTF-16 units: 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        // A negative hash: "my-group" hashes below zero in Java.
        let hash = java_string_hash("console-consumer-12345");
        assert_eq!(
            partition_for_group("console-consumer-12345", 50),
            hash.abs() % 50
        );
    }
}
