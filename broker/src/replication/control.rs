//! The control thread of cluster mode: applies every new cluster state to the shards and
//! serves topic changes through etcd.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use sluice_net::{
    ElectLeadersResponse, ElectionResult, ErrorCode, NewPartitions, NewTopic, TopicConfigChange,
    TopicResult,
};
use sluice_shard::ControlSender;
use sluice_storage::LogConfig;

use super::isr::IsrCommand;
use super::metrics::{ClusterMetrics, ObservedEpochs};
use super::table::table_from_cluster;
use crate::cluster::preferred::{ElectionOutcome, PartitionElection};
use crate::cluster::{ClusterError, ClusterHandle, EtcdMetadataStore};
use crate::control::{
    broadcast_table, check_new_partitions, check_topic_request, checked_configs, result,
    ControlClient, ControlRequest,
};
use crate::metadata::{MetadataError, MetadataStore, TopicRecord};

/// What the control thread needs besides the handle.
pub struct ClusterControlConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// Most partitions a topic may have.
    pub partitions_max: i32,
    /// The partition log config before topic overrides (to check topic configs).
    pub base_log_config: LogConfig,
    /// `min_insync_replicas` of topics that do not set `min.insync.replicas`.
    pub min_insync_replicas_default: usize,
}

/// The control plane of cluster mode. Runs on its own thread.
pub struct ClusterControl {
    handle: ClusterHandle,
    store: EtcdMetadataStore,
    shards: Vec<ControlSender>,
    shard_count: u32,
    config: ClusterControlConfig,
    metrics: Arc<ClusterMetrics>,
    /// Set by the watcher when it queued a `ClusterChanged` not yet handled, so at most one
    /// waits in the queue whatever the rate of changes.
    change_queued: Arc<AtomicBool>,
    applied_version: Option<u64>,
    connected: bool,
    observed: ObservedEpochs,
    /// Threads this control plane stops when it stops: the watcher and the ISR worker.
    helpers: Vec<JoinHandle<()>>,
    isr: Option<SyncSender<IsrCommand>>,
    producer_ids: crate::control::ProducerIdBlock,
}

impl ClusterControl {
    /// A control plane over a started `handle`, broadcasting to `shards`.
    pub fn new(
        handle: ClusterHandle,
        shards: Vec<ControlSender>,
        config: ClusterControlConfig,
        metrics: Arc<ClusterMetrics>,
    ) -> ClusterControl {
        let shard_count = u32::try_from(shards.len()).unwrap_or(u32::MAX);
        ClusterControl {
            store: EtcdMetadataStore::new(handle.clone()),
            handle,
            shards,
            shard_count,
            config,
            metrics,
            change_queued: Arc::new(AtomicBool::new(false)),
            applied_version: None,
            connected: true,
            observed: ObservedEpochs::new(),
            helpers: Vec::new(),
            isr: None,
            producer_ids: crate::control::ProducerIdBlock::default(),
        }
    }

    /// The flag the watcher sets when it queues a change (see [`spawn_watcher`]).
    pub fn change_queued(&self) -> Arc<AtomicBool> {
        self.change_queued.clone()
    }

    /// Hands over the threads to stop and join when this control plane stops.
    pub fn adopt_helpers(&mut self, helpers: Vec<JoinHandle<()>>, isr: SyncSender<IsrCommand>) {
        self.helpers = helpers;
        self.isr = Some(isr);
    }

    /// Applies the newest cluster state to every shard (when it is newer than the last one
    /// applied) and updates the metrics. Returns the first shard failure.
    pub fn apply_current(&mut self) -> Result<(), String> {
        let connected = self.handle.is_connected();
        if connected != self.connected {
            self.connected = connected;
            if connected {
                tracing::info!("etcd session restored; cluster changes resume");
            } else {
                tracing::warn!("etcd unreachable: serving the current leadership; ISR and leadership changes wait for etcd");
            }
        }
        let snapshot = self.handle.snapshot();
        let version = u64::try_from(snapshot.revision).unwrap_or(0);
        if self
            .applied_version
            .is_some_and(|applied| applied >= version)
        {
            return Ok(());
        }
        self.metrics
            .observe(&snapshot, self.config.node_id, &mut self.observed);
        let table = table_from_cluster(
            &snapshot,
            self.config.node_id,
            self.shard_count,
            self.config.min_insync_replicas_default,
        );
        let broadcast = broadcast_table(&self.shards, &table);
        self.applied_version = Some(version);
        broadcast
    }

    /// Starts the control thread serving `requests`; join it after sending
    /// [`ControlRequest::Stop`]. It gives the lease back (so the other brokers elect new
    /// leaders at once) and stops its helper threads before it ends.
    pub fn spawn(self, requests: Receiver<ControlRequest>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sluice-control".to_string())
            .spawn(move || self.run(requests))
    }

    fn run(mut self, requests: Receiver<ControlRequest>) {
        self.serve(requests);
        self.stop();
    }

    /// Serves requests until `Stop` or until every sender is gone. The queue is dropped on
    /// return, so a watcher blocked on a full queue wakes up and ends.
    fn serve(&mut self, requests: Receiver<ControlRequest>) {
        while let Ok(request) = requests.recv() {
            match request {
                ControlRequest::CreateTopics { topics, reply } => {
                    let _ = reply.send(self.create_topics(topics));
                }
                ControlRequest::DeleteTopics { names, reply } => {
                    let _ = reply.send(self.delete_topics(names));
                }
                ControlRequest::AllocateProducerId { reply } => {
                    let _ = reply.send(self.producer_ids.allocate(&mut self.store));
                }
                ControlRequest::AlterReassignments { partitions, reply } => {
                    let min_insync = self.config.min_insync_replicas_default;
                    let _ =
                        reply.send(super::reassign::alter(&self.handle, min_insync, partitions));
                }
                ControlRequest::ListReassignments { reply } => {
                    let _ = reply.send(super::reassign::list(&self.handle));
                }
                ControlRequest::CreatePartitions { topics, reply } => {
                    let _ = reply.send(self.create_partitions(topics));
                }
                ControlRequest::AlterTopicConfigs { changes, reply } => {
                    let _ = reply.send(self.alter_topic_configs(changes));
                }
                ControlRequest::ElectLeaders { topic, reply } => {
                    let _ = reply.send(self.elect_leaders(topic));
                }
                ControlRequest::ClusterChanged => {
                    self.change_queued.store(false, Ordering::Release);
                    if let Err(message) = self.apply_current() {
                        tracing::error!(%message, "a shard could not apply the cluster state");
                    }
                }
                ControlRequest::Stop => break,
            }
        }
    }

    fn stop(&mut self) {
        if let Err(error) = self.handle.shutdown() {
            tracing::warn!(%error, "leaving the cluster failed; the lease expires by itself");
        }
        if let Some(isr) = self.isr.take() {
            let _ = isr.send(IsrCommand::Stop);
        }
        for helper in std::mem::take(&mut self.helpers) {
            // A helper that panicked has logged it already.
            drop(helper.join());
        }
        tracing::debug!("cluster control plane stopped");
    }

    fn create_topics(&mut self, topics: Vec<NewTopic>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(topics.len());
        let mut seen = HashSet::new();
        for topic in topics {
            let name = topic.name.clone();
            if !seen.insert(name.clone()) {
                let message = format!("topic {name} is named twice in the request");
                results.push(result(&name, ErrorCode::InvalidRequest, Some(message)));
                continue;
            }
            if let Err(refused) = self.check_new_topic(&topic) {
                results.push(refused);
                continue;
            }
            let record = TopicRecord {
                name: name.clone(),
                partitions: u32::try_from(topic.partitions).unwrap_or(1),
                replication_factor: topic.replication_factor,
                configs: topic.configs,
            };
            match self.store.create_topic(record) {
                Ok(_) => {
                    tracing::info!(
                        topic = name,
                        partitions = topic.partitions,
                        replication_factor = topic.replication_factor,
                        "created topic"
                    );
                    results.push(result(&name, ErrorCode::None, None));
                }
                Err(error) => results.push(store_failure(&name, &error)),
            }
        }
        self.apply_after_change(&mut results);
        results
    }

    fn check_new_topic(&self, topic: &NewTopic) -> Result<(), TopicResult> {
        let name = topic.name.as_str();
        check_topic_request(
            topic,
            self.config.partitions_max,
            &self.config.base_log_config,
        )?;
        if self.store.topic(name).is_some() {
            return Err(result(
                name,
                ErrorCode::TopicAlreadyExists,
                Some(format!("topic {name} already exists")),
            ));
        }
        Ok(())
    }

    fn delete_topics(&mut self, names: Vec<String>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            match self.store.delete_topic(&name) {
                Ok(_) => results.push(result(&name, ErrorCode::None, None)),
                Err(error) => results.push(store_failure(&name, &error)),
            }
        }
        self.apply_after_change(&mut results);
        results
    }

    fn create_partitions(&mut self, topics: Vec<NewPartitions>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            let partitions_max = self.config.partitions_max;
            let outcome =
                check_new_partitions(&self.store, &topic, partitions_max).and_then(|count| {
                    self.store
                        .add_partitions(&topic.name, count)
                        .map_err(|error| store_failure(&topic.name, &error))
                });
            if outcome.is_ok() {
                tracing::info!(
                    topic = topic.name,
                    partitions = topic.count,
                    "added partitions"
                );
            }
            results.push(outcome.map_or_else(
                |refused| refused,
                |_| result(&topic.name, ErrorCode::None, None),
            ));
        }
        self.apply_after_change(&mut results);
        results
    }

    fn alter_topic_configs(&mut self, changes: Vec<TopicConfigChange>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let base = &self.config.base_log_config;
            let outcome = checked_configs(&self.store, &change, base).and_then(|configs| {
                self.store
                    .set_topic_configs(&change.name, configs)
                    .map_err(|error| store_failure(&change.name, &error))
            });
            if outcome.is_ok() {
                tracing::info!(topic = change.name, set = ?change.set, deleted = ?change.delete, "altered topic configs");
            }
            results.push(outcome.map_or_else(
                |refused| refused,
                |_| result(&change.name, ErrorCode::None, None),
            ));
        }
        self.apply_after_change(&mut results);
        results
    }

    /// A preferred election through the control plane (see `cluster::preferred`).
    fn elect_leaders(&mut self, topic: Option<String>) -> ElectLeadersResponse {
        match self.handle.elect_leaders(topic.as_deref()) {
            Ok(elections) => ElectLeadersResponse {
                error: ErrorCode::None.code(),
                message: None,
                partitions: elections.into_iter().map(election_result).collect(),
            },
            Err(error) => {
                let code = match error {
                    ClusterError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
                    ClusterError::NoController => ErrorCode::NotController,
                    ClusterError::Disconnected { .. } | ClusterError::Timeout { .. } => {
                        ErrorCode::RequestTimedOut
                    }
                    _ => ErrorCode::UnknownServerError,
                };
                ElectLeadersResponse {
                    error: code.code(),
                    message: Some(error.to_string()),
                    partitions: Vec::new(),
                }
            }
        }
    }

    /// Applies the state a successful change produced before answering, so this broker's own
    /// shards show the change when the client hears of it.
    fn apply_after_change(&mut self, results: &mut [TopicResult]) {
        if results.iter().all(|entry| entry.error != 0) {
            return;
        }
        if let Err(message) = self.apply_current() {
            for entry in results.iter_mut().filter(|entry| entry.error == 0) {
                entry.error = ErrorCode::KafkaStorageError.code();
                entry.message = Some(format!(
                    "the change is recorded in etcd but this broker's shards failed to apply it: {message}"
                ));
            }
        }
    }
}

/// One partition's election outcome on the wire.
fn election_result(election: PartitionElection) -> ElectionResult {
    let (code, message) = match election.outcome {
        ElectionOutcome::Elected { .. } => (ErrorCode::None, None),
        ElectionOutcome::AlreadyPreferred => (ErrorCode::ElectionNotNeeded, None),
        ElectionOutcome::NotAvailable { reason } => {
            (ErrorCode::PreferredLeaderNotAvailable, Some(reason))
        }
    };
    ElectionResult {
        topic: election.topic,
        partition: election.partition,
        error: code.code(),
        message,
    }
}

/// The topic result for a store failure, with the code the cluster error deserves.
fn store_failure(name: &str, error: &MetadataError) -> TopicResult {
    let message = Some(error.to_string());
    let cluster_error = match error {
        MetadataError::TopicExists(_) => {
            let message = Some(format!("topic {name} already exists"));
            return result(name, ErrorCode::TopicAlreadyExists, message);
        }
        MetadataError::UnknownTopic(_) => {
            let message = Some(format!("topic {name} does not exist"));
            return result(name, ErrorCode::UnknownTopicOrPartition, message);
        }
        MetadataError::PartitionsNotIncreased { .. } => {
            return result(name, ErrorCode::InvalidPartitions, message);
        }
        MetadataError::Io { source, .. } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ClusterError>())
            .map(|inner| (inner, source.kind())),
        MetadataError::Corrupt { .. } => None,
    };
    let code = match cluster_error {
        Some((ClusterError::InvalidReplicationFactor { .. }, _)) => {
            ErrorCode::InvalidReplicationFactor
        }
        Some((ClusterError::InvalidName { .. }, _)) => ErrorCode::InvalidTopic,
        Some((ClusterError::InvalidPartitionCount { .. }, _)) => ErrorCode::InvalidPartitions,
        Some((_, ErrorKind::NotConnected | ErrorKind::TimedOut)) => ErrorCode::RequestTimedOut,
        _ => ErrorCode::UnknownServerError,
    };
    let message = match cluster_error {
        // The cluster error alone reads best ("replication factor 3 is impossible with 2 live
        // brokers ...").
        Some((inner, _)) => Some(inner.to_string()),
        None => message,
    };
    result(name, code, message)
}

/// Starts the watcher thread: it waits on a cluster subscription and queues one
/// `ClusterChanged` for the control thread per batch of changes. It ends when the control
/// plane stops (the subscription ends) or the control queue is gone.
pub fn spawn_watcher(
    handle: &ClusterHandle,
    control: ControlClient,
    change_queued: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, ClusterError> {
    let mut subscription = handle.subscribe()?;
    std::thread::Builder::new()
        .name("sluice-watch".to_string())
        .spawn(move || {
            while futures_lite::future::block_on(subscription.changed()).is_some() {
                if change_queued.swap(true, Ordering::AcqRel) {
                    continue;
                }
                if !control.send_blocking(ControlRequest::ClusterChanged) {
                    return;
                }
            }
        })
        .map_err(|source| ClusterError::Runtime { source })
}
