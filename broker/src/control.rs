//! The control plane: one ordinary thread that owns the metadata store, validates topic
//! creations and deletions, records them, and broadcasts the new shard table to every shard,
//! answering only once all shards applied it. It talks to shards only by messages.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use futures_channel::oneshot;
use sluice_net::{
    ElectLeadersResponse, ElectionResult, ErrorCode, NewPartitions, NewTopic, TopicConfigChange,
    TopicResult,
};
use sluice_shard::partition::{topic_log_config, topic_min_insync_replicas};
use sluice_shard::{ControlSender, ShardControl, ShardTable, TopicAssignment};
use sluice_storage::LogConfig;

use crate::metadata::{MetadataError, MetadataStore, TopicRecord};

/// Capacity of the control plane's request queue. Shards that find it full answer the client
/// with RequestTimedOut rather than block their executor.
pub const CONTROL_QUEUE_DEPTH_MAX: usize = 64;

/// The topic config key of the cleanup policy, and its compacting value.
const CLEANUP_POLICY_KEY: &str = "cleanup.policy";
const COMPACT_POLICY: &str = "compact";

/// Longest topic name, in bytes (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// A request to the control plane.
#[derive(Debug)]
pub enum ControlRequest {
    /// Create topics; answered with one result per topic, in request order.
    CreateTopics {
        /// The topics.
        topics: Vec<NewTopic>,
        /// Where the results go.
        reply: oneshot::Sender<Vec<TopicResult>>,
    },
    /// Delete topics; answered with one result per name, in request order.
    DeleteTopics {
        /// The topic names.
        names: Vec<String>,
        /// Where the results go.
        reply: oneshot::Sender<Vec<TopicResult>>,
    },
    /// Grow topics; answered with one result per topic, in request order.
    CreatePartitions {
        /// The topics and their new partition counts.
        topics: Vec<NewPartitions>,
        /// Where the results go.
        reply: oneshot::Sender<Vec<TopicResult>>,
    },
    /// Change topic configs; answered with one result per topic, in request order.
    AlterTopicConfigs {
        /// The changes.
        changes: Vec<TopicConfigChange>,
        /// Where the results go.
        reply: oneshot::Sender<Vec<TopicResult>>,
    },
    /// A preferred leader election (cluster mode; a single node leads everything already).
    ElectLeaders {
        /// Only this topic's partitions, when given.
        topic: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<ElectLeadersResponse>,
    },
    /// A new idempotent producer id, from the broker's reserved block (a new block is reserved
    /// in the metadata store when it runs out).
    AllocateProducerId {
        /// Where the id (or why there is none) goes.
        reply: oneshot::Sender<Result<i64, String>>,
    },
    /// Start or cancel partition reassignments (cluster mode); one result per partition, in
    /// request order.
    AlterReassignments {
        /// The partitions (target `None`: cancel).
        partitions: Vec<sluice_net::ReassignPartition>,
        /// Where the results go.
        reply: oneshot::Sender<Vec<sluice_net::ReassignResult>>,
    },
    /// The partition reassignments in progress (cluster mode).
    ListReassignments {
        /// Where the answer goes.
        reply: oneshot::Sender<sluice_net::ListPartitionReassignmentsResponse>,
    },
    /// Cluster mode: the cluster state or the etcd connection changed; apply the newest state.
    ClusterChanged,
    /// Leave the control loop.
    Stop,
}

/// A handle shards use to reach the control plane (`Send + Clone`).
#[derive(Debug, Clone)]
pub struct ControlClient {
    sender: SyncSender<ControlRequest>,
}

impl ControlClient {
    /// Sends `request` without blocking; `false` when the queue is full or the plane stopped.
    pub fn try_send(&self, request: ControlRequest) -> bool {
        match self.sender.try_send(request) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Sends `request`, blocking while the queue is full (for non-executor threads only);
    /// `false` when the control plane has stopped.
    pub fn send_blocking(&self, request: ControlRequest) -> bool {
        self.sender.send(request).is_ok()
    }
}

/// Why a single-node broker refuses the reassignment apis.
const NOT_CLUSTERED: &str = "partition reassignment needs cluster mode (--etcd)";

fn not_clustered_alter(
    partitions: Vec<sluice_net::ReassignPartition>,
) -> Vec<sluice_net::ReassignResult> {
    partitions
        .into_iter()
        .map(|partition| sluice_net::ReassignResult {
            topic: partition.topic,
            partition: partition.partition,
            error: ErrorCode::InvalidRequest.code(),
            message: Some(NOT_CLUSTERED.to_string()),
        })
        .collect()
}

/// Checks a topic name: 1..=249 bytes of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name must be 1 to {TOPIC_NAME_BYTES_MAX} characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is reserved"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {bad:?}; only a-z, A-Z, 0-9, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// The shard table describing every topic of `store`, at the store's version.
pub fn table_from_store(store: &dyn MetadataStore, shard_count: u32) -> ShardTable {
    let topics: BTreeMap<String, TopicAssignment> = store
        .list_topics()
        .into_iter()
        .map(|topic| {
            let topic_id = store.topic_id(&topic.name).unwrap_or_default();
            let assignment = TopicAssignment::place(
                &topic.name,
                topic.partitions,
                shard_count,
                topic.replication_factor,
                topic.configs,
            )
            .with_topic_id(topic_id);
            (topic.name, assignment)
        })
        .collect();
    ShardTable::new(store.version(), topics)
}

/// The control plane's state; runs on its own thread.
pub struct ControlPlane {
    store: Box<dyn MetadataStore>,
    data_dir: PathBuf,
    shards: Vec<ControlSender>,
    shard_count: u32,
    partitions_max: i32,
    base_log_config: LogConfig,
    producer_ids: ProducerIdBlock,
}

/// Producer ids reserved from the metadata store at once: one store write (in cluster mode one
/// etcd compare-and-swap) per this many producers.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;

/// The unused part `[next, end)` of the last block of producer ids this broker reserved. Lives
/// on the control-plane thread (either mode's).
#[derive(Debug, Default)]
pub(crate) struct ProducerIdBlock {
    unused: std::ops::Range<i64>,
}

impl ProducerIdBlock {
    /// The next producer id of the block, reserving a new block in `store` when it ran out.
    /// Ids left in a block when the broker stops are never used: the next start reserves anew.
    pub(crate) fn allocate(&mut self, store: &mut dyn MetadataStore) -> Result<i64, String> {
        if self.unused.is_empty() {
            let first = store
                .reserve_producer_ids(PRODUCER_ID_BLOCK_SIZE)
                .map_err(|error| format!("reserving producer ids failed: {error}"))?;
            self.unused = first..first + PRODUCER_ID_BLOCK_SIZE;
            tracing::info!(
                first,
                count = PRODUCER_ID_BLOCK_SIZE,
                "reserved producer ids"
            );
        }
        let id = self.unused.start;
        self.unused.start += 1;
        Ok(id)
    }
}

pub(crate) fn result(name: &str, code: ErrorCode, message: Option<String>) -> TopicResult {
    TopicResult {
        name: name.to_string(),
        error: code.code(),
        message,
    }
}

impl ControlPlane {
    /// A control plane over `store` that broadcasts to `shards`.
    pub fn new(
        store: Box<dyn MetadataStore>,
        data_dir: PathBuf,
        shards: Vec<ControlSender>,
        partitions_max: i32,
        base_log_config: LogConfig,
    ) -> ControlPlane {
        let shard_count = u32::try_from(shards.len()).unwrap_or(u32::MAX);
        ControlPlane {
            store,
            data_dir,
            shards,
            shard_count,
            partitions_max,
            base_log_config,
            producer_ids: ProducerIdBlock::default(),
        }
    }

    /// The queue shards use to reach the control plane. Made before the shards start (they
    /// hold the client), while the plane itself needs the started shards' control senders.
    pub fn channel() -> (ControlClient, Receiver<ControlRequest>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(CONTROL_QUEUE_DEPTH_MAX);
        (ControlClient { sender }, receiver)
    }

    /// Starts the control thread serving `requests`; join it after sending
    /// [`ControlRequest::Stop`].
    pub fn spawn(self, requests: Receiver<ControlRequest>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sluice-control".to_string())
            .spawn(move || self.run(requests))
    }

    fn run(mut self, requests: Receiver<ControlRequest>) {
        while let Ok(request) = requests.recv() {
            match request {
                ControlRequest::CreateTopics { topics, reply } => {
                    let _ = reply.send(self.create_topics(topics));
                }
                ControlRequest::DeleteTopics { names, reply } => {
                    let _ = reply.send(self.delete_topics(names));
                }
                ControlRequest::AllocateProducerId { reply } => {
                    let _ = reply.send(self.producer_ids.allocate(self.store.as_mut()));
                }
                ControlRequest::AlterReassignments { partitions, reply } => {
                    let _ = reply.send(not_clustered_alter(partitions));
                }
                ControlRequest::ListReassignments { reply } => {
                    let _ = reply.send(sluice_net::ListPartitionReassignmentsResponse {
                        error: ErrorCode::InvalidRequest.code(),
                        message: Some(NOT_CLUSTERED.to_string()),
                        reassignments: Vec::new(),
                    });
                }
                ControlRequest::CreatePartitions { topics, reply } => {
                    let _ = reply.send(self.create_partitions(topics));
                }
                ControlRequest::AlterTopicConfigs { changes, reply } => {
                    let _ = reply.send(self.alter_topic_configs(changes));
                }
                ControlRequest::ElectLeaders { topic, reply } => {
                    let _ = reply.send(single_node_election(self.store.as_ref(), topic));
                }
                ControlRequest::ClusterChanged => {}
                ControlRequest::Stop => break,
            }
        }
        tracing::debug!("control plane stopped");
    }

    fn check_new_topic(&self, topic: &NewTopic) -> Result<(), TopicResult> {
        let name = topic.name.as_str();
        check_topic_request(topic, self.partitions_max, &self.base_log_config)?;
        if topic.replication_factor != 1 {
            return Err(result(
                name,
                ErrorCode::InvalidReplicationFactor,
                Some(format!(
                    "replication factor {} is not possible on a single-node broker; use 1",
                    topic.replication_factor
                )),
            ));
        }
        if self.store.topic(name).is_some() {
            return Err(result(
                name,
                ErrorCode::TopicAlreadyExists,
                Some(format!("topic {name} already exists")),
            ));
        }
        Ok(())
    }

    fn create_topics(&mut self, topics: Vec<NewTopic>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(topics.len());
        let mut created = Vec::new();
        let mut seen = HashSet::new();
        for topic in topics {
            if !seen.insert(topic.name.clone()) {
                let message = format!("topic {} is named twice in the request", topic.name);
                results.push(result(
                    &topic.name,
                    ErrorCode::InvalidRequest,
                    Some(message),
                ));
                continue;
            }
            if let Err(refused) = self.check_new_topic(&topic) {
                results.push(refused);
                continue;
            }
            if let Err(error) = remove_stale_partition_dirs(&self.data_dir, &topic.name) {
                results.push(result(
                    &topic.name,
                    ErrorCode::KafkaStorageError,
                    Some(format!(
                        "cannot remove the leftover logs of an earlier {}: {error}",
                        topic.name
                    )),
                ));
                continue;
            }
            let record = TopicRecord {
                name: topic.name.clone(),
                // check_new_topic bounded it to 1..=partitions_max.
                partitions: u32::try_from(topic.partitions).unwrap_or(1),
                replication_factor: topic.replication_factor,
                configs: topic.configs,
            };
            match self.store.create_topic(record) {
                Ok(_) => {
                    created.push(topic.name.clone());
                    results.push(result(&topic.name, ErrorCode::None, None));
                }
                Err(error) => results.push(store_failure(&topic.name, &error)),
            }
        }
        if created.is_empty() {
            return results;
        }
        if let Err(message) = self.broadcast() {
            tracing::error!(%message, "shards could not create topics; rolling back");
            for name in &created {
                let _ = self.store.delete_topic(name);
            }
            let _ = self.broadcast();
            for entry in results
                .iter_mut()
                .filter(|entry| created.contains(&entry.name))
            {
                entry.error = ErrorCode::KafkaStorageError.code();
                entry.message = Some(format!("the partitions could not be created: {message}"));
            }
        } else {
            tracing::info!(topics = ?created, "created topics");
        }
        results
    }

    fn delete_topics(&mut self, names: Vec<String>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(names.len());
        let mut deleted = false;
        for name in names {
            match self.store.delete_topic(&name) {
                Ok(_) => {
                    deleted = true;
                    results.push(result(&name, ErrorCode::None, None));
                }
                Err(MetadataError::UnknownTopic(_)) => results.push(result(
                    &name,
                    ErrorCode::UnknownTopicOrPartition,
                    Some(format!("topic {name} does not exist")),
                )),
                Err(error) => results.push(store_failure(&name, &error)),
            }
        }
        if deleted {
            if let Err(message) = self.broadcast() {
                // The topics are gone from the metadata; a shard that failed to delete a log
                // leaves its directory behind, which the error names.
                for entry in results.iter_mut().filter(|entry| entry.error == 0) {
                    entry.error = ErrorCode::KafkaStorageError.code();
                    entry.message = Some(format!("the topic was deleted from the metadata but removing its logs failed: {message}"));
                }
            }
        }
        results
    }

    fn create_partitions(&mut self, topics: Vec<NewPartitions>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            let checked = check_new_partitions(self.store.as_ref(), &topic, self.partitions_max)
                .and_then(|count| {
                    self.store
                        .add_partitions(&topic.name, count)
                        .map_err(|error| partition_failure(&topic.name, &error))
                });
            results.push(checked.map_or_else(
                |refused| refused,
                |_| result(&topic.name, ErrorCode::None, None),
            ));
        }
        self.broadcast_after_change(&mut results);
        results
    }

    fn alter_topic_configs(&mut self, changes: Vec<TopicConfigChange>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let checked = checked_configs(self.store.as_ref(), &change, &self.base_log_config)
                .and_then(|configs| {
                    self.store
                        .set_topic_configs(&change.name, configs)
                        .map_err(|error| partition_failure(&change.name, &error))
                });
            results.push(checked.map_or_else(
                |refused| refused,
                |_| result(&change.name, ErrorCode::None, None),
            ));
        }
        self.broadcast_after_change(&mut results);
        results
    }

    /// Broadcasts the store's table after changes, when any succeeded; a shard failure turns
    /// the successes into storage errors naming it.
    fn broadcast_after_change(&self, results: &mut [TopicResult]) {
        if results.iter().all(|entry| entry.error != 0) {
            return;
        }
        if let Err(message) = self.broadcast() {
            for entry in results.iter_mut().filter(|entry| entry.error == 0) {
                entry.error = ErrorCode::KafkaStorageError.code();
                entry.message = Some(format!(
                    "the change is recorded but the shards failed to apply it: {message}"
                ));
            }
        }
    }

    /// Sends the table for the store's current version to every shard and waits until each
    /// has applied it.
    fn broadcast(&self) -> Result<(), String> {
        let table = table_from_store(self.store.as_ref(), self.shard_count);
        broadcast_table(&self.shards, &table)
    }
}

/// Checks what every mode checks of a new topic: its name, its partition count against
/// `partitions_max`, its configs (known keys, valid values, `min.insync.replicas` at most the
/// replication factor).
pub(crate) fn check_topic_request(
    topic: &NewTopic,
    partitions_max: i32,
    base_log_config: &LogConfig,
) -> Result<(), TopicResult> {
    let name = topic.name.as_str();
    validate_topic_name(name)
        .map_err(|message| result(name, ErrorCode::InvalidTopic, Some(message)))?;
    if !(1..=partitions_max).contains(&topic.partitions) {
        return Err(result(
            name,
            ErrorCode::InvalidPartitions,
            Some(format!(
                "partitions must be between 1 and {partitions_max} (partitions_max), got {}",
                topic.partitions
            )),
        ));
    }
    topic_log_config(base_log_config, &topic.configs)
        .map_err(|error| result(name, ErrorCode::InvalidConfig, Some(error.to_string())))?;
    if let Some(required) = topic_min_insync_replicas(&topic.configs) {
        if required > usize::try_from(topic.replication_factor).unwrap_or(0) {
            return Err(result(
                name,
                ErrorCode::InvalidConfig,
                Some(format!(
                    "min.insync.replicas {required} is larger than the replication factor {}: \
                     acks=all writes could never succeed",
                    topic.replication_factor
                )),
            ));
        }
    }
    Ok(())
}

/// Checks a partition count change against `store`: the topic exists, the count grows and stays
/// within `partitions_max`. Returns the new count.
pub(crate) fn check_new_partitions(
    store: &dyn MetadataStore,
    topic: &NewPartitions,
    partitions_max: i32,
) -> Result<u32, TopicResult> {
    let name = topic.name.as_str();
    let Some(current) = store.topic(name) else {
        return Err(result(
            name,
            ErrorCode::UnknownTopicOrPartition,
            Some(format!("topic {name} does not exist")),
        ));
    };
    if name == sluice_group::CONSUMER_OFFSETS_TOPIC {
        let message = format!(
            "{name} cannot grow: each group lives on the partition its id hashes to modulo the \
             partition count, so a new count would move every group away from its offsets"
        );
        return Err(result(name, ErrorCode::InvalidRequest, Some(message)));
    }
    let requested = topic.count;
    if i64::from(requested) <= i64::from(current.partitions) {
        let message = format!(
            "topic {name} has {} partitions; the count can only grow (asked for {requested})",
            current.partitions
        );
        return Err(result(name, ErrorCode::InvalidPartitions, Some(message)));
    }
    if requested > partitions_max {
        let message = format!(
            "partitions must be at most {partitions_max} (partitions_max), got {requested}"
        );
        return Err(result(name, ErrorCode::InvalidPartitions, Some(message)));
    }
    Ok(u32::try_from(requested).unwrap_or(current.partitions))
}

/// The configs topic `change.name` would have after `change`, validated as CreateTopics
/// validates configs (known keys, valid values, `min.insync.replicas` at most the replication
/// factor). Nothing is changed when this refuses.
pub(crate) fn checked_configs(
    store: &dyn MetadataStore,
    change: &TopicConfigChange,
    base_log_config: &LogConfig,
) -> Result<Vec<(String, String)>, TopicResult> {
    let name = change.name.as_str();
    let Some(current) = store.topic(name) else {
        return Err(result(
            name,
            ErrorCode::UnknownTopicOrPartition,
            Some(format!("topic {name} does not exist")),
        ));
    };
    let mut configs: BTreeMap<String, String> = current.configs.into_iter().collect();
    for key in &change.delete {
        configs.remove(key);
    }
    for (key, value) in &change.set {
        configs.insert(key.clone(), value.clone());
    }
    let compacted = configs
        .get(CLEANUP_POLICY_KEY)
        .is_some_and(|policy| policy.trim() == COMPACT_POLICY);
    if name == sluice_group::CONSUMER_OFFSETS_TOPIC && !compacted {
        let message = format!(
            "{name} must keep {CLEANUP_POLICY_KEY}={COMPACT_POLICY}: it holds every group's \
             newest offsets and state, which deletion by retention would lose"
        );
        return Err(result(name, ErrorCode::InvalidConfig, Some(message)));
    }
    let configs: Vec<(String, String)> = configs.into_iter().collect();
    let as_new = NewTopic {
        name: name.to_string(),
        partitions: 1,
        replication_factor: current.replication_factor,
        configs: configs.clone(),
    };
    check_topic_request(&as_new, i32::MAX, base_log_config)?;
    Ok(configs)
}

/// The result for a failed partition or config change in the store.
pub(crate) fn partition_failure(name: &str, error: &MetadataError) -> TopicResult {
    match error {
        MetadataError::UnknownTopic(_) => result(
            name,
            ErrorCode::UnknownTopicOrPartition,
            Some(format!("topic {name} does not exist")),
        ),
        MetadataError::PartitionsNotIncreased { .. } => {
            result(name, ErrorCode::InvalidPartitions, Some(error.to_string()))
        }
        other => store_failure(name, other),
    }
}

/// A single node leads every partition it has (it is every partition's only replica, so its
/// preferred one): every partition answers ELECTION_NOT_NEEDED.
fn single_node_election(store: &dyn MetadataStore, topic: Option<String>) -> ElectLeadersResponse {
    if let Some(name) = &topic {
        if store.topic(name).is_none() {
            return ElectLeadersResponse {
                error: ErrorCode::UnknownTopicOrPartition.code(),
                message: Some(format!("topic {name} does not exist")),
                partitions: Vec::new(),
            };
        }
    }
    let partitions = store
        .list_topics()
        .into_iter()
        .filter(|record| topic.as_ref().is_none_or(|name| *name == record.name))
        .flat_map(|record| {
            let count = i32::try_from(record.partitions).unwrap_or(i32::MAX);
            (0..count).map(move |partition| ElectionResult {
                topic: record.name.clone(),
                partition,
                error: ErrorCode::ElectionNotNeeded.code(),
                message: None,
            })
        })
        .collect();
    ElectLeadersResponse {
        error: ErrorCode::None.code(),
        message: None,
        partitions,
    }
}

/// Sends `table` to every shard and waits until each has applied it; the error names the first
/// shard that failed.
pub(crate) fn broadcast_table(shards: &[ControlSender], table: &ShardTable) -> Result<(), String> {
    let mut answers = Vec::with_capacity(shards.len());
    for shard in shards {
        let (reply, answer) = oneshot::channel();
        let message = ShardControl::ApplyTable {
            table: table.clone(),
            reply,
        };
        shard
            .send_blocking(message)
            .map_err(|error| error.to_string())?;
        answers.push(answer);
    }
    let mut first_error = None;
    for (sender, answer) in shards.iter().zip(answers) {
        let shard = sender.shard();
        match sender.wait_reply(answer) {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                first_error.get_or_insert(format!("{shard}: {error}"));
            }
            None => {
                first_error.get_or_insert(format!("{shard} stopped"));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Removes `<data_dir>/<topic>-<n>` directories left by an earlier topic of the same name (a
/// deletion interrupted by a crash), so a new topic never inherits old records. Called only for
/// a topic the metadata does not have, so every such directory is stale.
fn remove_stale_partition_dirs(data_dir: &Path, topic: &str) -> std::io::Result<()> {
    let prefix = format!("{topic}-");
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|name| name.strip_prefix(&prefix)) else {
            continue;
        };
        if !suffix.is_empty() && suffix.bytes().all(|byte| byte.is_ascii_digit()) {
            tracing::warn!(dir = %entry.path().display(), "removing a stale partition directory");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

pub(crate) fn store_failure(name: &str, error: &MetadataError) -> TopicResult {
    result(
        name,
        ErrorCode::KafkaStorageError,
        Some(format!("the metadata store failed: {error}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::EmbeddedMetadataStore;

    /// A topic to put in a test store: name, partitions, configs.
    type TestTopic<'a> = (&'a str, u32, &'a [(&'a str, &'a str)]);

    fn store_with(topics: &[TestTopic<'_>]) -> (tempfile::TempDir, EmbeddedMetadataStore) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        for (name, partitions, configs) in topics {
            let configs = configs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            store
                .create_topic(TopicRecord {
                    name: name.to_string(),
                    partitions: *partitions,
                    replication_factor: 1,
                    configs,
                })
                .unwrap();
        }
        (dir, store)
    }

    // Proves the checks of topic changes: a count that does not grow, an unknown topic and the
    // internal offsets topic are refused with their codes; an unknown config key, a bad value
    // and dropping compaction from the offsets topic are refused; a valid change merges set and
    // deleted keys over the current configs.
    #[test]
    fn topic_changes_are_checked() {
        let offsets = sluice_group::CONSUMER_OFFSETS_TOPIC;
        let (_dir, store) = store_with(&[
            ("t", 2, &[("retention.ms", "1000")]),
            (offsets, 50, &[("cleanup.policy", "compact")]),
        ]);
        let grow = |name: &str, count| NewPartitions {
            name: name.to_string(),
            count,
        };
        let code = |refused: TopicResult| ErrorCode::from_i16(refused.error);
        assert_eq!(check_new_partitions(&store, &grow("t", 3), 10), Ok(3));
        for (asked, expected) in [
            (grow("t", 2), ErrorCode::InvalidPartitions),
            (grow("t", 11), ErrorCode::InvalidPartitions),
            (grow("nope", 3), ErrorCode::UnknownTopicOrPartition),
            (grow(offsets, 60), ErrorCode::InvalidRequest),
        ] {
            let refused = check_new_partitions(&store, &asked, 10).unwrap_err();
            assert_eq!(code(refused), Some(expected), "{asked:?}");
        }
        let change = |name: &str, set: &[(&str, &str)], delete: &[&str]| TopicConfigChange {
            name: name.to_string(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
        };
        let base = LogConfig::default();
        let merged = checked_configs(
            &store,
            &change("t", &[("segment.ms", "5")], &["retention.ms"]),
            &base,
        );
        assert_eq!(
            merged,
            Ok(vec![("segment.ms".to_string(), "5".to_string())])
        );
        for bad in [
            change("t", &[("bogus", "1")], &[]),
            change("t", &[("retention.ms", "soon")], &[]),
            change(offsets, &[("cleanup.policy", "delete")], &[]),
            change(offsets, &[], &["cleanup.policy"]),
        ] {
            let refused = checked_configs(&store, &bad, &base).unwrap_err();
            assert_eq!(code(refused), Some(ErrorCode::InvalidConfig), "{bad:?}");
        }
    }

    // Proves the topic name rule: allowed characters and lengths pass, everything else is
    // refused with a message naming the problem.
    #[test]
    fn topic_names_are_checked() {
        assert!(validate_topic_name("orders.v2_EU-1").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        let error = validate_topic_name("a/b").unwrap_err();
        assert!(error.contains("'/'"), "{error}");
        assert!(validate_topic_name("naïve").is_err());
    }
}
