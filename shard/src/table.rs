//! The shard table: which shard owns which (topic, partition).
//!
//! Every shard holds its own copy of the table (a plain value, never shared between cores).
//! Updates are broadcast to all shards as whole tables carrying a version; a shard ignores an
//! update whose version is older than the one it holds, so a late or duplicated broadcast can
//! never roll the layout back.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use uuid::Uuid;

use crate::replica::ReplicaInfo;

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

/// A new topic id (KIP-516): a random (version 4) UUID naming one incarnation of a topic, so
/// a topic deleted and created again under the same name never reuses the old one's data.
pub fn new_topic_id() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// A topic id as Kafka writes it in text (`partition.metadata`, tools): URL-safe base64 of the
/// 16 bytes, without padding.
pub fn topic_id_text(topic_id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic_id.as_bytes())
}

/// The topic id a [`topic_id_text`] names, or `None` when it is not one.
pub fn parse_topic_id_text(text: &str) -> Option<Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// One topic as the shards know it: the owner of each partition, plus what Metadata reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicAssignment {
    /// The topic id of this incarnation of the topic (KIP-516; the Kafka front end reports it
    /// in Metadata and Fetch versions that carry topic ids). Nil only for a table built without
    /// one.
    pub topic_id: Uuid,
    /// `owners[p]` is the shard of this broker that owns partition `p` (when this broker holds
    /// a replica of it).
    pub owners: Vec<ShardId>,
    /// The topic's replication factor (1 in single-node mode).
    pub replication_factor: i16,
    /// The topic's configuration entries as created (for example `retention.ms`).
    pub configs: Vec<(String, String)>,
    /// Cluster mode: `replication[p]` is partition `p`'s leader, epoch, replicas and ISR as
    /// etcd records them. Empty in single-node mode, where this broker holds every partition
    /// and leads it alone.
    pub replication: Vec<ReplicaInfo>,
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
            topic_id: Uuid::nil(),
            owners,
            replication_factor,
            configs,
            replication: Vec::new(),
        }
    }

    /// The same assignment naming `topic_id` as the topic's incarnation.
    pub fn with_topic_id(mut self, topic_id: Uuid) -> TopicAssignment {
        self.topic_id = topic_id;
        self
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> usize {
        self.owners.len()
    }

    /// Partition `partition`'s replication state (cluster mode only).
    pub fn replica_info(&self, partition: usize) -> Option<&ReplicaInfo> {
        self.replication.get(partition)
    }
}

/// A broker of the cluster as the shards need to reach it and describe it (cluster mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Node id.
    pub node_id: i32,
    /// Host clients and brokers connect to.
    pub host: String,
    /// The shared native port.
    pub native_port: u16,
    /// Each shard's own native port, shard 0 first.
    pub shard_ports: Vec<u16>,
    /// The broker epoch of its registration (KIP-903): a new value at every fresh
    /// registration, so a restarted broker is told apart from its earlier incarnation.
    pub broker_epoch: i64,
    /// The Kafka protocol port, when the broker has one on.
    pub kafka_port: Option<u16>,
}

impl BrokerAddress {
    /// The `host:port` of the shard of this broker that owns `topic`-`partition`, placed by
    /// [`shard_for`] over this broker's own shard count (its native port when it lists no
    /// shard ports).
    pub fn owner_addr(&self, topic: &str, partition: i32) -> String {
        let port = self
            .owner_shard(topic, partition)
            .and_then(|shard| self.shard_ports.get(shard.index()))
            .copied()
            .unwrap_or(self.native_port);
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// The shard of this broker that owns `topic`-`partition`.
    pub fn owner_shard(&self, topic: &str, partition: i32) -> Option<ShardId> {
        let count = u32::try_from(self.shard_ports.len())
            .ok()
            .filter(|c| *c > 0)?;
        let partition = u32::try_from(partition).ok()?;
        Some(shard_for(topic, partition, count))
    }
}

/// What the shards know of the cluster beyond the topics (cluster mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// This broker's node id.
    pub node_id: i32,
    /// The controller's node id, -1 when none is elected.
    pub controller_id: i32,
    /// The live brokers by node id.
    pub brokers: BTreeMap<i32, BrokerAddress>,
}

/// The versioned map (topic, partition) -> shard. Lives on every shard, one copy each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardTable {
    version: u64,
    topics: BTreeMap<String, TopicAssignment>,
    /// Cluster mode: this broker's id and the live brokers. `None` in single-node mode.
    cluster: Option<ClusterView>,
}

impl ShardTable {
    /// A single-node table at `version` holding `topics`.
    pub fn new(version: u64, topics: BTreeMap<String, TopicAssignment>) -> ShardTable {
        ShardTable {
            version,
            topics,
            cluster: None,
        }
    }

    /// A cluster-mode table: only the partitions whose replicas include `cluster.node_id` are
    /// owned by a shard of this broker.
    pub fn with_cluster(
        version: u64,
        topics: BTreeMap<String, TopicAssignment>,
        cluster: ClusterView,
    ) -> ShardTable {
        ShardTable {
            version,
            topics,
            cluster: Some(cluster),
        }
    }

    /// The version of this table. Version 0 is the empty table a shard starts with.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The cluster as this table describes it (cluster mode only).
    pub fn cluster(&self) -> Option<&ClusterView> {
        self.cluster.as_ref()
    }

    /// Whether the table has partition `partition` of `topic`, held by this broker or not.
    pub fn has_partition(&self, topic: &str, partition: i32) -> bool {
        usize::try_from(partition)
            .ok()
            .zip(self.topics.get(topic))
            .is_some_and(|(index, assignment)| index < assignment.owners.len())
    }

    /// Whether this broker holds a replica of `topic`-`partition`: always in single-node
    /// mode, when its node id is among the replicas in cluster mode.
    fn hosted(&self, assignment: &TopicAssignment, index: usize) -> bool {
        match &self.cluster {
            None => true,
            Some(cluster) => assignment
                .replication
                .get(index)
                .is_some_and(|info| info.replicas.contains(&cluster.node_id)),
        }
    }

    /// The shard of this broker that owns `(topic, partition)`, or `None` when the table has
    /// no such partition or this broker holds no replica of it.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<ShardId> {
        let index = usize::try_from(partition).ok()?;
        let assignment = self.topics.get(topic)?;
        let owner = assignment.owners.get(index).copied()?;
        self.hosted(assignment, index).then_some(owner)
    }

    /// The assignment of `topic`, if the table has it.
    pub fn topic(&self, topic: &str) -> Option<&TopicAssignment> {
        self.topics.get(topic)
    }

    /// The topic id of `topic`'s current incarnation, if the table has the topic and one.
    pub fn topic_id(&self, topic: &str) -> Option<Uuid> {
        self.topics
            .get(topic)
            .map(|assignment| assignment.topic_id)
            .filter(|id| !id.is_nil())
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
                if *owner == shard && self.hosted(assignment, index) {
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

    // Proves cluster-mode hosting: a broker's shards own only partitions whose replicas
    // include it, the others exist (for metadata) but have no owner here, and a broker's
    // address points at the shard that owns a partition on that broker.
    #[test]
    fn cluster_tables_own_only_hosted_partitions() {
        let info = |replicas: Vec<i32>| ReplicaInfo {
            leader: replicas[0],
            leader_epoch: 0,
            replicas: replicas.clone(),
            isr: replicas,
            version: 1,
            min_insync_replicas: 1,
            broker_epochs: Vec::new(),
            adding: Vec::new(),
        };
        let mut assignment = TopicAssignment::place("t", 2, 2, 2, Vec::new());
        assignment.replication = vec![info(vec![1, 2]), info(vec![2, 3])];
        let mut topics = BTreeMap::new();
        topics.insert("t".to_string(), assignment);
        let cluster = ClusterView {
            node_id: 1,
            controller_id: 1,
            brokers: BTreeMap::new(),
        };
        let table = ShardTable::with_cluster(5, topics, cluster);
        assert_eq!(table.owner("t", 0), Some(shard_for("t", 0, 2)));
        assert_eq!(table.owner("t", 1), None);
        assert!(table.has_partition("t", 1));
        assert!(!table.has_partition("t", 2));
        let owned: Vec<_> = (0..2).flat_map(|s| table.owned_by(ShardId(s))).collect();
        assert_eq!(owned, vec![("t".to_string(), 0)]);
        let broker = BrokerAddress {
            node_id: 2,
            host: "10.0.0.2".into(),
            native_port: 9000,
            shard_ports: vec![9001, 9002, 9003],
            broker_epoch: 7,
            kafka_port: Some(9092),
        };
        let shard = shard_for("t", 1, 3);
        assert_eq!(broker.owner_shard("t", 1), Some(shard));
        assert_eq!(
            broker.owner_addr("t", 1),
            format!("10.0.0.2:{}", 9001 + shard.0)
        );
        let bare = BrokerAddress {
            shard_ports: Vec::new(),
            ..broker
        };
        assert_eq!(bare.owner_addr("t", 1), "10.0.0.2:9000");
    }

    // Proves topic ids are random per call, round-trip through Kafka's text form (22 characters
    // of URL-safe base64), and that the table reports a topic's id (none when nil).
    #[test]
    fn topic_ids_are_unique_and_round_trip() {
        let first = new_topic_id();
        assert_ne!(first, new_topic_id());
        assert_eq!(first.get_version_num(), 4);
        let text = topic_id_text(first);
        assert_eq!(text.len(), 22);
        assert_eq!(parse_topic_id_text(&text), Some(first));
        assert_eq!(parse_topic_id_text("not an id"), None);
        let mut topics = BTreeMap::new();
        topics.insert(
            "a".to_string(),
            TopicAssignment::place("a", 1, 1, 1, Vec::new()).with_topic_id(first),
        );
        topics.insert(
            "b".to_string(),
            TopicAssignment::place("b", 1, 1, 1, Vec::new()),
        );
        let table = ShardTable::new(1, topics);
        assert_eq!(table.topic_id("a"), Some(first));
        assert_eq!(table.topic_id("b"), None);
        assert_eq!(table.topic_id("c"), None);
    }
}
