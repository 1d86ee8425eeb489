//! The shard table: which shard owns which (topic, partition).
//!
//! Every shard holds its own copy of the table (a plain value, never shared between cores).
//! Updates are broadcast to all shards as whole tables carrying a version; a shard ignores an
//! update whose version is older than the one it holds, so a late or duplicated broadcast can
//! never roll the layout back.

use std::collections::BTreeMap;
use std::fmt;

/// The index of a shard: shard `i` runs on the `i`-th executor the broker started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u32);

impl ShardId {
    /// The id as an index into per-shard vectors.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "shard-{}", self.0)
    }
}

/// The shard that owns partition `partition` of `topic` when there are `shard_count` shards.
///
/// Placement spreads each topic's partitions evenly over the shards, starting at a shard picked
/// by the topic name's CRC-32C so that many small topics do not all start on shard 0:
/// `shard = (crc32c(topic) + partition) mod shard_count`.
pub fn shard_for(topic: &str, partition: u32, shard_count: u32) -> ShardId {
    let shard_count = shard_count.max(1);
    let start = u64::from(crc32c::crc32c(topic.as_bytes()));
    let shard = (start + u64::from(partition)) % u64::from(shard_count);
    // The modulo keeps the value below `shard_count`, which is a u32.
    ShardId(u32::try_from(shard).unwrap_or(0))
}

/// One topic as the shards know it: the owner of each partition, plus what Metadata reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicAssignment {
    /// `owners[p]` owns partition `p`.
    pub owners: Vec<ShardId>,
    /// The topic's replication factor (1 in single-node mode).
    pub replication_factor: i16,
    /// The topic's configuration entries as created (for example `retention.ms`).
    pub configs: Vec<(String, String)>,
}

impl TopicAssignment {
    /// The assignment of a topic with `partitions` partitions, placed by [`shard_for`].
    pub fn place(
        topic: &str,
        partitions: u32,
        shard_count: u32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
    ) -> TopicAssignment {
        let owners = (0..partitions)
            .map(|partition| shard_for(topic, partition, shard_count))
            .collect();
        TopicAssignment {
            owners,
            replication_factor,
            configs,
        }
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> usize {
        self.owners.len()
    }
}

/// The versioned map (topic, partition) -> shard. Lives on every shard, one copy each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardTable {
    version: u64,
    topics: BTreeMap<String, TopicAssignment>,
}

impl ShardTable {
    /// A table at `version` holding `topics`.
    pub fn new(version: u64, topics: BTreeMap<String, TopicAssignment>) -> ShardTable {
        ShardTable { version, topics }
    }

    /// The version of this table. Version 0 is the empty table a shard starts with.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The owner of `(topic, partition)`, or `None` when the table has no such partition.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<ShardId> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.owners.get(index).copied()
    }

    /// The assignment of `topic`, if the table has it.
    pub fn topic(&self, topic: &str) -> Option<&TopicAssignment> {
        self.topics.get(topic)
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> impl Iterator<Item = (&str, &TopicAssignment)> {
        self.topics
            .iter()
            .map(|(name, assignment)| (name.as_str(), assignment))
    }

    /// Every (topic, partition) owned by `shard`, in name then partition order.
    pub fn owned_by(&self, shard: ShardId) -> Vec<(String, i32)> {
        let mut owned = Vec::new();
        for (name, assignment) in &self.topics {
            for (index, owner) in assignment.owners.iter().enumerate() {
                if *owner == shard {
                    // Partition counts are bounded by `partitions_max`, far below i32::MAX.
                    owned.push((name.clone(), i32::try_from(index).unwrap_or(i32::MAX)));
                }
            }
        }
        owned
    }

    /// Replaces this table with `update` unless `update` is older. Returns true when applied.
    /// An update with the same version is applied too (it is the same table re-sent), so a
    /// retried broadcast is harmless.
    pub fn apply(&mut self, update: ShardTable) -> bool {
        if update.version < self.version {
            return false;
        }
        *self = update;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves placement spreads a topic's partitions evenly: with 4 shards and 8 partitions every
    // shard owns exactly 2, and the table answers owner() consistently with shard_for().
    #[test]
    fn placement_spreads_partitions_evenly() {
        let assignment = TopicAssignment::place("orders", 8, 4, 1, Vec::new());
        let mut per_shard = [0usize; 4];
        for owner in &assignment.owners {
            per_shard[owner.index()] += 1;
        }
        assert_eq!(per_shard, [2, 2, 2, 2]);
        let mut topics = BTreeMap::new();
        topics.insert("orders".to_string(), assignment);
        let table = ShardTable::new(1, topics);
        for partition in 0..8 {
            assert_eq!(
                table.owner("orders", partition),
                Some(shard_for("orders", partition as u32, 4))
            );
        }
        assert_eq!(table.owner("orders", 8), None);
        assert_eq!(table.owner("orders", -1), None);
        assert_eq!(table.owner("other", 0), None);
    }

    // Proves a stale update is ignored and a newer one replaces the table, by applying versions
    // out of order.
    #[test]
    fn stale_updates_are_ignored() {
        let mut table = ShardTable::default();
        let mut v2_topics = BTreeMap::new();
        v2_topics.insert(
            "a".to_string(),
            TopicAssignment::place("a", 2, 2, 1, Vec::new()),
        );
        assert!(table.apply(ShardTable::new(2, v2_topics)));
        assert!(!table.apply(ShardTable::new(1, BTreeMap::new())));
        assert_eq!(table.version(), 2);
        assert!(table.topic("a").is_some());
        assert!(table.apply(ShardTable::new(3, BTreeMap::new())));
        assert!(table.topic("a").is_none());
    }

    // Proves owned_by lists exactly the partitions a shard owns, and together the shards cover
    // every partition once.
    #[test]
    fn owned_by_partitions_the_table() {
        let mut topics = BTreeMap::new();
        for name in ["a", "b", "c"] {
            topics.insert(
                name.to_string(),
                TopicAssignment::place(name, 5, 3, 1, Vec::new()),
            );
        }
        let table = ShardTable::new(7, topics);
        let mut all: Vec<(String, i32)> = (0..3).flat_map(|s| table.owned_by(ShardId(s))).collect();
        all.sort();
        assert_eq!(all.len(), 15);
        all.dedup();
        assert_eq!(all.len(), 15);
    }
}
