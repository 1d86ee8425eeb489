//! The etcd keys, their JSON values, and [`ClusterState`]: the snapshot the control plane builds
//! from them (a full read at session start, then every watch event applied in order).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ClusterError;

/// The leader id of a partition that has no leader (every ISR member is down).
pub const NO_LEADER: i32 = -1;

/// A live broker, as registered under `/sluice/<cluster>/brokers/<id>` with its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Host clients and brokers connect to.
    pub host: String,
    /// Native protocol port.
    pub native_port: u16,
    /// Per-shard native ports, shard 0 first.
    pub shard_ports: Vec<u16>,
    /// Admin HTTP address, if any.
    pub admin_addr: Option<String>,
    /// Kafka protocol port, if the broker has one on (absent in registrations written before
    /// the Kafka listener existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_port: Option<u16>,
}

/// The value of the controller key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ControllerRecord {
    /// The controller's node id.
    pub id: i32,
}

/// Who is controller, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerInfo {
    /// The controller's node id.
    pub node_id: i32,
    /// The controller epoch: the etcd revision at which this controller wrote the controller key
    /// when it won. Every new reign has a higher one.
    pub epoch: i64,
}

/// A topic and its replica assignment, under `/sluice/<cluster>/topics/<topic>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicAssignment {
    /// Topic name.
    pub name: String,
    /// The topic id of this incarnation (KIP-516), chosen by the creator. A record written
    /// before topic ids existed has none in etcd; the snapshot then derives one from the key's
    /// create revision (see [`derived_topic_id`]), the same on every broker.
    #[serde(default)]
    pub topic_id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
    /// Configuration overrides.
    pub configs: BTreeMap<String, String>,
    /// Entry i: partition i's replicas, preferred leader first.
    pub assignment: Vec<Vec<i32>>,
}

/// The leadership state of one partition, under `/sluice/<cluster>/partitions/<topic>/<p>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The leader's node id, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped on every leader change (including to and from [`NO_LEADER`]).
    pub leader_epoch: i32,
    /// In-sync replicas, in assignment order.
    pub isr: Vec<i32>,
    /// The epoch of the controller that last elected the leader (0 when the topic's creator
    /// wrote it).
    pub controller_epoch: i64,
    /// The broker epoch (KIP-903) each ISR member was registered with when it joined the ISR
    /// (or when the partition was created or its leader elected). A live member registered
    /// with another epoch now has restarted since, may have lost its log, and is neither
    /// elected nor kept in the ISR. Empty in states written before broker epochs existed (no
    /// member is then taken as restarted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub isr_epochs: BTreeMap<i32, i64>,
}

/// A partition reassignment in progress (KIP-455), under
/// `/sluice/<cluster>/reassignments/<topic>/<p>`: the replica list the partition moves to. While
/// it exists the partition's full replica set is its assignment followed by the target
/// replicas not in it (see [`ClusterState::replicas`]); the controller ends it once every
/// target replica is in the ISR (see `reassign`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentRecord {
    /// The replicas the partition ends with, preferred leader first.
    pub target: Vec<i32>,
}

/// A reassignment and the etcd mod_revision of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentEntry {
    /// The record.
    pub record: ReassignmentRecord,
    /// The key's mod_revision.
    pub mod_revision: i64,
}

/// A partition state and the etcd mod_revision it was read at (what a compare-and-swap of it
/// compares against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// The state.
    pub state: PartitionState,
    /// The key's mod_revision.
    pub mod_revision: i64,
}

/// The cluster as this broker last saw it in etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Cluster name.
    pub cluster: String,
    /// The etcd revision this snapshot reflects (everything up to it under the cluster prefix).
    pub revision: i64,
    /// Live brokers (their lease is alive) by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// The broker epoch (KIP-903) of each live broker's registration: the etcd revision that
    /// created its registration key. A broker that registers anew (it restarted, or its lease
    /// lapsed) gets a new, higher one; one that takes its key over from an earlier session of
    /// the same process keeps it.
    pub broker_epochs: BTreeMap<i32, i64>,
    /// The controller, if one is elected.
    pub controller: Option<ControllerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicAssignment>,
    /// The create revision of each topic key (tells a recreated topic from the old one).
    pub topic_revisions: BTreeMap<String, i64>,
    /// Partition states by topic, then partition.
    pub partitions: BTreeMap<String, BTreeMap<i32, PartitionEntry>>,
    /// The mod_revision of each topic key (what a change of the assignment compares against).
    pub topic_mod_revisions: BTreeMap<String, i64>,
    /// Reassignments in progress by topic, then partition.
    pub reassignments: BTreeMap<String, BTreeMap<i32, ReassignmentEntry>>,
}

impl ClusterState {
    /// An empty state of `cluster`.
    pub fn new(cluster: &str) -> ClusterState {
        ClusterState {
            cluster: cluster.to_string(),
            ..ClusterState::default()
        }
    }

    /// Node ids of the live brokers.
    pub fn live_brokers(&self) -> BTreeSet<i32> {
        self.brokers.keys().copied().collect()
    }

    /// The broker epoch `node_id` is registered with now, `None` when it is not live.
    pub fn broker_epoch(&self, node_id: i32) -> Option<i64> {
        self.broker_epochs.get(&node_id).copied()
    }

    /// One partition's state.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionEntry> {
        self.partitions.get(topic)?.get(&partition)
    }

    /// The reassignment of one partition in progress, if any.
    pub fn reassignment(&self, topic: &str, partition: i32) -> Option<&ReassignmentEntry> {
        self.reassignments.get(topic)?.get(&partition)
    }

    /// The assignment of one partition (its replicas outside any reassignment).
    pub fn assigned_replicas(&self, topic: &str, partition: i32) -> Option<&[i32]> {
        let index = usize::try_from(partition).ok()?;
        self.topics
            .get(topic)?
            .assignment
            .get(index)
            .map(Vec::as_slice)
    }

    /// The full replica set of one partition: its assignment, then, while a reassignment is in
    /// progress, the target replicas not in it (they follow and catch up). Empty for a
    /// partition that does not exist.
    pub fn replicas(&self, topic: &str, partition: i32) -> Vec<i32> {
        let mut replicas = self
            .assigned_replicas(topic, partition)
            .map(<[i32]>::to_vec)
            .unwrap_or_default();
        if let Some(entry) = self.reassignment(topic, partition) {
            for target in &entry.record.target {
                if !replicas.contains(target) {
                    replicas.push(*target);
                }
            }
        }
        replicas
    }

    /// The controller's node id, if any.
    pub fn controller_id(&self) -> Option<i32> {
        self.controller.map(|c| c.node_id)
    }

    /// Partitions (topic, partition) with no leader now.
    pub fn offline_partitions(&self) -> Vec<(String, i32)> {
        self.partitions
            .iter()
            .flat_map(|(topic, states)| {
                states
                    .iter()
                    .filter(|(_, entry)| entry.state.leader == NO_LEADER)
                    .map(move |(partition, _)| (topic.clone(), *partition))
            })
            .collect()
    }

    /// Applies a put of `key` (a value written at `mod_revision`, key created at
    /// `create_revision`). Keys outside the layout are ignored, so a newer version can add keys.
    pub(crate) fn apply_put(
        &mut self,
        keys: &ClusterKeys,
        key: &str,
        value: &[u8],
        mod_revision: i64,
        create_revision: i64,
    ) -> Result<(), ClusterError> {
        match keys.parse(key) {
            Some(ParsedKey::Broker(id)) => {
                self.brokers.insert(id, decode(key, value)?);
                self.broker_epochs.insert(id, create_revision);
            }
            Some(ParsedKey::Controller) => {
                let record: ControllerRecord = decode(key, value)?;
                self.controller = Some(ControllerInfo {
                    node_id: record.id,
                    epoch: mod_revision,
                });
            }
            Some(ParsedKey::Topic(name)) => {
                let mut topic: TopicAssignment = decode(key, value)?;
                if topic.topic_id.is_nil() {
                    topic.topic_id = derived_topic_id(create_revision);
                }
                self.topics.insert(name.clone(), topic);
                self.topic_mod_revisions.insert(name.clone(), mod_revision);
                self.topic_revisions.insert(name, create_revision);
            }
            Some(ParsedKey::Partition(topic, partition)) => {
                let state = decode(key, value)?;
                let entry = PartitionEntry {
                    state,
                    mod_revision,
                };
                self.partitions
                    .entry(topic)
                    .or_default()
                    .insert(partition, entry);
            }
            Some(ParsedKey::Reassignment(topic, partition)) => {
                let entry = ReassignmentEntry {
                    record: decode(key, value)?,
                    mod_revision,
                };
                self.reassignments
                    .entry(topic)
                    .or_default()
                    .insert(partition, entry);
            }
            None => {}
        }
        Ok(())
    }

    /// Applies a delete of `key`.
    pub(crate) fn apply_delete(&mut self, keys: &ClusterKeys, key: &str) {
        match keys.parse(key) {
            Some(ParsedKey::Broker(id)) => {
                self.brokers.remove(&id);
                self.broker_epochs.remove(&id);
            }
            Some(ParsedKey::Controller) => self.controller = None,
            Some(ParsedKey::Topic(name)) => {
                self.topics.remove(&name);
                self.topic_mod_revisions.remove(&name);
                self.topic_revisions.remove(&name);
            }
            Some(ParsedKey::Partition(topic, partition)) => {
                if let Some(states) = self.partitions.get_mut(&topic) {
                    states.remove(&partition);
                    if states.is_empty() {
                        self.partitions.remove(&topic);
                    }
                }
            }
            Some(ParsedKey::Reassignment(topic, partition)) => {
                if let Some(entries) = self.reassignments.get_mut(&topic) {
                    entries.remove(&partition);
                    if entries.is_empty() {
                        self.reassignments.remove(&topic);
                    }
                }
            }
            None => {}
        }
    }
}

/// The topic id of a topic record written without one (before topic ids existed): derived from
/// the create revision of its key, which every broker reads alike and which differs between
/// incarnations of the same name.
pub fn derived_topic_id(create_revision: i64) -> Uuid {
    /// "sluice" in ASCII, so a derived id is recognisable.
    const DERIVED_TOPIC_ID_HIGH: u64 = 0x736c_7569_6365_0000;
    Uuid::from_u64_pair(
        DERIVED_TOPIC_ID_HIGH,
        u64::try_from(create_revision).unwrap_or(0),
    )
}

fn decode<T: for<'a> Deserialize<'a>>(key: &str, value: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(value).map_err(|error| ClusterError::Corrupt {
        key: key.to_string(),
        reason: error.to_string(),
    })
}

/// Serialises a value for etcd. Our value types hold only strings, numbers, lists and string
/// maps, which JSON always represents, so a failure is a bug.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("cluster values are plain data and always serialise")
}

/// A key of the cluster layout, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParsedKey {
    Broker(i32),
    Controller,
    Topic(String),
    Partition(String, i32),
    Reassignment(String, i32),
}

/// Builds and parses the keys of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterKeys {
    cluster: String,
    root: String,
}

impl ClusterKeys {
    /// The keys of cluster `cluster` (a validated name).
    pub fn new(cluster: &str) -> ClusterKeys {
        ClusterKeys {
            cluster: cluster.to_string(),
            root: format!("/sluice/{cluster}/"),
        }
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// `/sluice/<cluster>/`: the prefix of every key of the cluster.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `/sluice/<cluster>/brokers/<id>`.
    pub fn broker(&self, id: i32) -> String {
        format!("{}brokers/{id}", self.root)
    }

    /// `/sluice/<cluster>/controller`.
    pub fn controller(&self) -> String {
        format!("{}controller", self.root)
    }

    /// `/sluice/<cluster>/producer-ids`: the first producer id no broker has reserved.
    pub fn producer_ids(&self) -> String {
        format!("{}producer-ids", self.root)
    }

    /// `/sluice/<cluster>/topics/<topic>`.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}topics/{topic}", self.root)
    }

    /// `/sluice/<cluster>/partitions/<topic>/`: the prefix of a topic's partition states.
    pub fn partitions_of(&self, topic: &str) -> String {
        format!("{}partitions/{topic}/", self.root)
    }

    /// `/sluice/<cluster>/partitions/<topic>/<partition>`.
    pub fn partition(&self, topic: &str, partition: i32) -> String {
        format!("{}partitions/{topic}/{partition}", self.root)
    }

    /// `/sluice/<cluster>/reassignments/<topic>/`: the prefix of a topic's reassignments.
    pub fn reassignments_of(&self, topic: &str) -> String {
        format!("{}reassignments/{topic}/", self.root)
    }

    /// `/sluice/<cluster>/reassignments/<topic>/<partition>`.
    pub fn reassignment(&self, topic: &str, partition: i32) -> String {
        format!("{}reassignments/{topic}/{partition}", self.root)
    }

    pub(crate) fn parse(&self, key: &str) -> Option<ParsedKey> {
        let rest = key.strip_prefix(&self.root)?;
        if rest == "controller" {
            return Some(ParsedKey::Controller);
        }
        if let Some(id) = rest.strip_prefix("brokers/") {
            return id.parse().ok().map(ParsedKey::Broker);
        }
        if let Some(name) = rest.strip_prefix("topics/") {
            return (!name.is_empty() && !name.contains('/'))
                .then(|| ParsedKey::Topic(name.to_string()));
        }
        if let Some(rest) = rest.strip_prefix("reassignments/") {
            let (topic, partition) = rest.split_once('/')?;
            let partition = partition.parse().ok()?;
            return Some(ParsedKey::Reassignment(topic.to_string(), partition));
        }
        let (topic, partition) = rest.strip_prefix("partitions/")?.split_once('/')?;
        let partition = partition.parse().ok()?;
        Some(ParsedKey::Partition(topic.to_string(), partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves every key the layout builds parses back to what built it, and foreign keys
    // (another cluster, unknown kinds, bad numbers) are not mistaken for ours.
    #[test]
    fn keys_round_trip() {
        let keys = ClusterKeys::new("prod");
        assert_eq!(keys.broker(3), "/sluice/prod/brokers/3");
        assert_eq!(keys.parse(&keys.broker(3)), Some(ParsedKey::Broker(3)));
        assert_eq!(keys.parse(&keys.controller()), Some(ParsedKey::Controller));
        assert_eq!(
            keys.parse(&keys.topic("a.b")),
            Some(ParsedKey::Topic("a.b".into()))
        );
        assert_eq!(
            keys.parse(&keys.partition("a.b", 7)),
            Some(ParsedKey::Partition("a.b".into(), 7))
        );
        assert_eq!(
            keys.parse(&keys.reassignment("a.b", 7)),
            Some(ParsedKey::Reassignment("a.b".into(), 7))
        );
        assert!(keys
            .reassignment("t", 1)
            .starts_with(&keys.reassignments_of("t")));
        assert!(keys.partition("t", 1).starts_with(&keys.partitions_of("t")));
        assert!(!keys
            .partition("t.x", 1)
            .starts_with(&keys.partitions_of("t")));
        for foreign in [
            "/sluice/prod2/brokers/1",
            "/sluice/prod/brokers/x",
            "/sluice/prod/other",
            "/sluice/prod/partitions/t/x",
        ] {
            assert_eq!(keys.parse(foreign), None, "{foreign}");
        }
    }

    // Proves puts and deletes build the snapshot an operator would expect: values decoded,
    // controller epoch taken from the revision, a topic's partitions gone with their deletes,
    // and a corrupt value reported with its key.
    #[test]
    fn events_build_the_snapshot() {
        let keys = ClusterKeys::new("c");
        let mut state = ClusterState::new("c");
        let broker = br#"{"id":1,"host":"h","native_port":9,"shard_ports":[10],"admin_addr":null}"#;
        state
            .apply_put(&keys, &keys.broker(1), broker, 9, 5)
            .unwrap();
        assert_eq!(state.broker_epoch(1), Some(5), "the key's create revision");
        state
            .apply_put(&keys, &keys.controller(), br#"{"id":1}"#, 6, 6)
            .unwrap();
        let partition = br#"{"leader":1,"leader_epoch":0,"isr":[1],"controller_epoch":0}"#;
        state
            .apply_put(&keys, &keys.partition("t", 0), partition, 7, 7)
            .unwrap();
        assert_eq!(state.live_brokers(), BTreeSet::from([1]));
        assert_eq!(
            state.controller,
            Some(ControllerInfo {
                node_id: 1,
                epoch: 6
            })
        );
        assert_eq!(state.partition("t", 0).unwrap().mod_revision, 7);
        assert_eq!(state.partition("t", 0).unwrap().state.isr, vec![1]);
        assert!(state.partition("t", 0).unwrap().state.isr_epochs.is_empty());
        state.apply_delete(&keys, &keys.partition("t", 0));
        assert!(state.partitions.is_empty());
        state.apply_delete(&keys, &keys.broker(1));
        assert!(state.brokers.is_empty());
        assert_eq!(state.broker_epoch(1), None);
        let old_topic = br#"{"name":"t","partitions":1,"replication_factor":1,"configs":{},"assignment":[[1]]}"#;
        state
            .apply_put(&keys, &keys.topic("t"), old_topic, 11, 11)
            .unwrap();
        assert_eq!(state.topics["t"].topic_id, derived_topic_id(11));
        state.apply_delete(&keys, &keys.topic("t"));
        state
            .apply_put(&keys, &keys.topic("t"), old_topic, 12, 12)
            .unwrap();
        assert_ne!(
            state.topics["t"].topic_id,
            derived_topic_id(11),
            "a new incarnation has a new id"
        );
        let error = state
            .apply_put(&keys, &keys.topic("t"), b"{oops", 8, 8)
            .unwrap_err();
        assert!(error.to_string().contains("/sluice/c/topics/t"), "{error}");
    }
}
