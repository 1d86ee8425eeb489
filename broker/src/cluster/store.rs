//! [`EtcdMetadataStore`]: the broker's [`MetadataStore`] in cluster mode, on a
//! [`ClusterHandle`].
//!
//! - Topic creation is done by whichever broker receives the request, with compare-and-swap
//!   (create-if-absent) on the topic key, in the same transaction as the partitions' initial
//!   states; the controller only repairs states a creator left missing. This keeps topic
//!   creation working while the controller is being re-elected.
//! - The metadata version is the etcd revision the snapshot reflects: it only grows, and every
//!   change (by any broker) raises it.
//! - The cluster id is the cluster name: it is what names the keys, and it is the same on
//!   every broker of the cluster.
//! - `MetadataError` has no variant for a failing backend or a refused replication factor, so
//!   those are reported as `MetadataError::Io` whose path is the etcd key and whose source is
//!   an `io::Error` carrying the [`ClusterError`] (kind `InvalidInput` for refused requests,
//!   `NotConnected` while etcd is unreachable, `Other` otherwise).

use std::io::ErrorKind;
use std::path::PathBuf;

use super::handle::{ClusterHandle, TopicSpec};
use super::state::{ClusterKeys, TopicAssignment};
use super::ClusterError;
use crate::metadata::{MetadataError, MetadataStore, TopicRecord};

/// The metadata store of cluster mode.
#[derive(Debug, Clone)]
pub struct EtcdMetadataStore {
    handle: ClusterHandle,
    keys: ClusterKeys,
    cluster_id: String,
}

impl EtcdMetadataStore {
    /// A store over a started handle.
    pub fn new(handle: ClusterHandle) -> EtcdMetadataStore {
        let cluster = handle.config().cluster.clone();
        EtcdMetadataStore {
            keys: ClusterKeys::new(&cluster),
            cluster_id: cluster,
            handle,
        }
    }

    /// The handle underneath (leaders, ISR, brokers, controller).
    pub fn handle(&self) -> &ClusterHandle {
        &self.handle
    }

    fn metadata_error(
        &self,
        operation: &'static str,
        topic: &str,
        error: ClusterError,
    ) -> MetadataError {
        let kind = match &error {
            ClusterError::TopicExists(name) => return MetadataError::TopicExists(name.clone()),
            ClusterError::UnknownTopic(name) => return MetadataError::UnknownTopic(name.clone()),
            ClusterError::InvalidName { .. }
            | ClusterError::InvalidPartitionCount { .. }
            | ClusterError::InvalidReplicationFactor { .. }
            | ClusterError::PartitionsNotIncreased { .. } => ErrorKind::InvalidInput,
            ClusterError::Disconnected { .. } | ClusterError::Stopped { .. } => {
                ErrorKind::NotConnected
            }
            ClusterError::Timeout { .. } => ErrorKind::TimedOut,
            _ => ErrorKind::Other,
        };
        MetadataError::Io {
            operation,
            path: PathBuf::from(self.keys.topic(topic)),
            source: std::io::Error::new(kind, error),
        }
    }
}

/// The broker-facing record of a topic.
pub fn topic_record(topic: &TopicAssignment) -> TopicRecord {
    TopicRecord {
        name: topic.name.clone(),
        partitions: u32::try_from(topic.partitions).unwrap_or(0),
        replication_factor: topic.replication_factor,
        configs: topic
            .configs
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    }
}

impl MetadataStore for EtcdMetadataStore {
    fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    fn version(&self) -> u64 {
        u64::try_from(self.handle.snapshot().revision).unwrap_or(0)
    }

    fn list_topics(&self) -> Vec<TopicRecord> {
        self.handle
            .snapshot()
            .topics
            .values()
            .map(topic_record)
            .collect()
    }

    fn topic(&self, name: &str) -> Option<TopicRecord> {
        self.handle.snapshot().topics.get(name).map(topic_record)
    }

    fn topic_id(&self, name: &str) -> Option<sluice_shard::Uuid> {
        self.handle
            .snapshot()
            .topics
            .get(name)
            .map(|topic| topic.topic_id)
    }

    fn create_topic(&mut self, topic: TopicRecord) -> Result<u64, MetadataError> {
        let name = topic.name.clone();
        let partitions = i32::try_from(topic.partitions).unwrap_or(i32::MAX);
        let spec = TopicSpec {
            name: topic.name,
            partitions,
            replication_factor: topic.replication_factor,
            configs: topic.configs.into_iter().collect(),
        };
        self.handle
            .create_topic(spec)
            .map_err(|error| self.metadata_error("etcd create topic", &name, error))?;
        Ok(self.version())
    }

    fn delete_topic(&mut self, name: &str) -> Result<u64, MetadataError> {
        self.handle
            .delete_topic(name)
            .map_err(|error| self.metadata_error("etcd delete topic", name, error))?;
        Ok(self.version())
    }

    fn add_partitions(&mut self, name: &str, partitions: u32) -> Result<u64, MetadataError> {
        let count = i32::try_from(partitions).unwrap_or(i32::MAX);
        match self.handle.add_partitions(name, count) {
            Ok(_) => Ok(self.version()),
            Err(ClusterError::PartitionsNotIncreased {
                current, requested, ..
            }) => Err(MetadataError::PartitionsNotIncreased {
                topic: name.to_string(),
                current: u32::try_from(current).unwrap_or(0),
                requested: u32::try_from(requested).unwrap_or(0),
            }),
            Err(error) => Err(self.metadata_error("etcd add partitions", name, error)),
        }
    }

    fn set_topic_configs(
        &mut self,
        name: &str,
        configs: Vec<(String, String)>,
    ) -> Result<u64, MetadataError> {
        let expected = self
            .handle
            .snapshot()
            .topics
            .get(name)
            .map(|topic| topic.configs.clone())
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.handle
            .set_topic_configs(name, expected, configs.into_iter().collect())
            .map_err(|error| self.metadata_error("etcd alter topic configs", name, error))?;
        Ok(self.version())
    }

    fn reserve_producer_ids(&mut self, count: i64) -> Result<i64, MetadataError> {
        self.handle
            .reserve_producer_ids(count)
            .map_err(|error| self.metadata_error("etcd reserve producer ids", "", error))
    }
}
