//! Cluster metadata: topics, their partition counts, replication factors and configs, and the
//! cluster id. [`MetadataStore`] is the interface; [`EmbeddedMetadataStore`] keeps it in
//! `<data_dir>/__cluster/metadata.json` for single-node mode (cluster mode will implement the
//! same trait on etcd).
//!
//! The store lives on the control-plane thread; its file writes are blocking and never run on a
//! shard.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_shard::Uuid;

/// The directory under the data directory that holds cluster-level files.
pub const CLUSTER_DIR: &str = "__cluster";

/// The embedded store's file name inside [`CLUSTER_DIR`].
pub const METADATA_FILE: &str = "metadata.json";

/// Largest metadata file read at startup, bytes; a larger one is refused as corrupt rather than
/// read into memory.
pub const METADATA_FILE_BYTES_MAX: u64 = 64 << 20;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A file operation failed.
    #[error("metadata store: {operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata file is not valid.
    #[error("metadata store: {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// CreateTopics named a topic that exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// DeleteTopics named a topic that does not exist.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// CreatePartitions asked for no more partitions than the topic has.
    #[error(
        "topic {topic} has {current} partitions; the count can only grow (asked for {requested})"
    )]
    PartitionsNotIncreased {
        /// Topic.
        topic: String,
        /// Partitions now.
        current: u32,
        /// Partitions asked for.
        requested: u32,
    },
}

/// One topic as the metadata records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: i16,
    /// Configuration overrides, key and value.
    pub configs: Vec<(String, String)>,
}

/// What every metadata backend offers. Each change returns the new metadata version, which
/// becomes the version of the shard table broadcast for it.
pub trait MetadataStore: Send {
    /// The cluster's id (generated once, kept forever).
    fn cluster_id(&self) -> &str;
    /// The version of the metadata now; increases with every change.
    fn version(&self) -> u64;
    /// Every topic, in name order.
    fn list_topics(&self) -> Vec<TopicRecord>;
    /// One topic.
    fn topic(&self, name: &str) -> Option<TopicRecord>;
    /// The topic id (KIP-516) of `name`'s current incarnation: a new one every time a topic of
    /// that name is created, so a replica can tell its log from an earlier incarnation's.
    fn topic_id(&self, name: &str) -> Option<Uuid>;
    /// Records a new topic durably.
    fn create_topic(&mut self, topic: TopicRecord) -> Result<u64, MetadataError>;
    /// Removes a topic durably.
    fn delete_topic(&mut self, name: &str) -> Result<u64, MetadataError>;
    /// Grows topic `name` to `partitions` partitions durably; a count not above the current
    /// one is refused with [`MetadataError::PartitionsNotIncreased`] and changes nothing.
    fn add_partitions(&mut self, name: &str, partitions: u32) -> Result<u64, MetadataError>;
    /// Replaces topic `name`'s config overrides durably.
    fn set_topic_configs(
        &mut self,
        name: &str,
        configs: Vec<(String, String)>,
    ) -> Result<u64, MetadataError>;
    /// Reserves `count` producer ids durably and returns the first: no later reservation, by
    /// this broker after a restart or by any other broker of the cluster, returns them again.
    fn reserve_producer_ids(&mut self, count: i64) -> Result<i64, MetadataError>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EmbeddedState {
    format: u32,
    cluster_id: String,
    version: u64,
    topics: BTreeMap<String, TopicRecord>,
    /// Each topic's id. Absent in files written before topic ids: such topics get one when
    /// the file is opened (and their partition directories adopt it).
    #[serde(default)]
    topic_ids: BTreeMap<String, Uuid>,
    /// The first producer id no reservation has handed out (files written before idempotent
    /// producers existed have none: 0).
    #[serde(default)]
    next_producer_id: i64,
}

/// The file format version written by this build.
const EMBEDDED_FORMAT: u32 = 1;

/// The single-node metadata store: one JSON file, rewritten atomically on every change
/// (temporary file, fsync, rename, fsync of the directory) so a crash leaves either the old or
/// the new file, never a torn one.
#[derive(Debug)]
pub struct EmbeddedMetadataStore {
    dir: PathBuf,
    state: EmbeddedState,
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MetadataError {
    let path = path.to_path_buf();
    move |source| MetadataError::Io {
        operation,
        path,
        source,
    }
}

impl EmbeddedMetadataStore {
    /// Opens the store under `data_dir`, creating it (with a new cluster id) if missing.
    pub fn open(data_dir: &Path) -> Result<EmbeddedMetadataStore, MetadataError> {
        let dir = data_dir.join(CLUSTER_DIR);
        fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let path = dir.join(METADATA_FILE);
        let state = match File::open(&path) {
            Ok(file) => Self::read_state(&path, file)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let state = EmbeddedState {
                    format: EMBEDDED_FORMAT,
                    cluster_id: new_cluster_id(),
                    version: 0,
                    topics: BTreeMap::new(),
                    topic_ids: BTreeMap::new(),
                    next_producer_id: 0,
                };
                let store = EmbeddedMetadataStore { dir, state };
                store.persist()?;
                return Ok(store);
            }
            Err(error) => return Err(io_error("open", &path)(error)),
        };
        let mut store = EmbeddedMetadataStore { dir, state };
        store.assign_missing_topic_ids()?;
        Ok(store)
    }

    /// Gives every topic without an id (a file from before topic ids) a new one, durably.
    fn assign_missing_topic_ids(&mut self) -> Result<(), MetadataError> {
        let missing: Vec<String> = self
            .state
            .topics
            .keys()
            .filter(|name| !self.state.topic_ids.contains_key(*name))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for name in missing {
            self.state
                .topic_ids
                .insert(name, sluice_shard::new_topic_id());
        }
        self.persist()
    }

    fn read_state(path: &Path, file: File) -> Result<EmbeddedState, MetadataError> {
        let length = file.metadata().map_err(io_error("stat", path))?.len();
        if length > METADATA_FILE_BYTES_MAX {
            return Err(MetadataError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("{length} bytes is over the {METADATA_FILE_BYTES_MAX} byte bound"),
            });
        }
        let state: EmbeddedState =
            serde_json::from_reader(std::io::BufReader::new(file)).map_err(|error| {
                MetadataError::Corrupt {
                    path: path.to_path_buf(),
                    reason: error.to_string(),
                }
            })?;
        if state.format != EMBEDDED_FORMAT {
            return Err(MetadataError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "format {} is not the supported format {EMBEDDED_FORMAT}",
                    state.format
                ),
            });
        }
        Ok(state)
    }

    /// The metadata file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(METADATA_FILE)
    }

    fn persist(&self) -> Result<(), MetadataError> {
        let path = self.path();
        let temporary = self.dir.join(format!("{METADATA_FILE}.tmp"));
        let bytes =
            serde_json::to_vec_pretty(&self.state).map_err(|error| MetadataError::Corrupt {
                path: path.clone(),
                reason: format!("cannot serialise: {error}"),
            })?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)
            .map_err(io_error("create", &temporary))?;
        file.write_all(&bytes)
            .map_err(io_error("write", &temporary))?;
        file.sync_all().map_err(io_error("fsync", &temporary))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(io_error("rename", &path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("fsync directory", &self.dir))
    }

    /// Applies `change` to a copy of the state, writes it, and only then adopts it, so a failed
    /// write leaves the in-memory state matching the file.
    fn change(
        &mut self,
        change: impl FnOnce(&mut EmbeddedState) -> Result<(), MetadataError>,
    ) -> Result<u64, MetadataError> {
        let previous = self.state.clone();
        change(&mut self.state)?;
        self.state.version += 1;
        if let Err(error) = self.persist() {
            self.state = previous;
            return Err(error);
        }
        Ok(self.state.version)
    }
}

impl MetadataStore for EmbeddedMetadataStore {
    fn cluster_id(&self) -> &str {
        &self.state.cluster_id
    }

    fn version(&self) -> u64 {
        self.state.version
    }

    fn list_topics(&self) -> Vec<TopicRecord> {
        self.state.topics.values().cloned().collect()
    }

    fn topic(&self, name: &str) -> Option<TopicRecord> {
        self.state.topics.get(name).cloned()
    }

    fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.state.topic_ids.get(name).copied()
    }

    fn create_topic(&mut self, topic: TopicRecord) -> Result<u64, MetadataError> {
        self.change(|state| {
            if state.topics.contains_key(&topic.name) {
                return Err(MetadataError::TopicExists(topic.name));
            }
            state
                .topic_ids
                .insert(topic.name.clone(), sluice_shard::new_topic_id());
            state.topics.insert(topic.name.clone(), topic);
            Ok(())
        })
    }

    fn delete_topic(&mut self, name: &str) -> Result<u64, MetadataError> {
        self.change(|state| {
            state.topic_ids.remove(name);
            state
                .topics
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))
        })
    }

    fn add_partitions(&mut self, name: &str, partitions: u32) -> Result<u64, MetadataError> {
        self.change(|state| {
            let topic = state
                .topics
                .get_mut(name)
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
            if partitions <= topic.partitions {
                return Err(MetadataError::PartitionsNotIncreased {
                    topic: name.to_string(),
                    current: topic.partitions,
                    requested: partitions,
                });
            }
            topic.partitions = partitions;
            Ok(())
        })
    }

    fn set_topic_configs(
        &mut self,
        name: &str,
        configs: Vec<(String, String)>,
    ) -> Result<u64, MetadataError> {
        self.change(|state| {
            let topic = state
                .topics
                .get_mut(name)
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
            topic.configs = configs;
            Ok(())
        })
    }

    fn reserve_producer_ids(&mut self, count: i64) -> Result<i64, MetadataError> {
        // Not a topic change, so the version (which versions shard tables) stays.
        let first = self.state.next_producer_id;
        let next = first
            .checked_add(count)
            .ok_or_else(|| MetadataError::Corrupt {
                path: self.path(),
                reason: "producer ids exhausted".to_string(),
            })?;
        self.state.next_producer_id = next;
        if let Err(error) = self.persist() {
            self.state.next_producer_id = first;
            return Err(error);
        }
        Ok(first)
    }
}

/// A new cluster id: 128 random bits in hex.
fn new_cluster_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: u32) -> TopicRecord {
        TopicRecord {
            name: name.to_string(),
            partitions,
            replication_factor: 1,
            configs: vec![("retention.ms".to_string(), "1000".to_string())],
        }
    }

    // Proves topics and the cluster id survive reopening the store (a restart), and versions
    // only grow.
    #[test]
    fn topics_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        let cluster_id = store.cluster_id().to_string();
        assert_eq!(store.create_topic(topic("a", 3)).unwrap(), 1);
        assert_eq!(store.create_topic(topic("b", 1)).unwrap(), 2);
        assert_eq!(store.delete_topic("a").unwrap(), 3);
        drop(store);
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.cluster_id(), cluster_id);
        assert_eq!(store.version(), 3);
        assert_eq!(store.list_topics(), vec![topic("b", 1)]);
        assert!(!dir
            .path()
            .join(CLUSTER_DIR)
            .join("metadata.json.tmp")
            .exists());
    }

    // Proves every incarnation of a topic gets its own id that survives reopening, and that a
    // file from before topic ids gets ids for its topics when opened (kept from then on).
    #[test]
    fn topic_ids_are_per_incarnation_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        store.create_topic(topic("a", 1)).unwrap();
        let first = store.topic_id("a").unwrap();
        store.delete_topic("a").unwrap();
        assert_eq!(store.topic_id("a"), None);
        store.create_topic(topic("a", 1)).unwrap();
        let second = store.topic_id("a").unwrap();
        assert_ne!(first, second, "a new incarnation has a new id");
        drop(store);
        assert_eq!(
            EmbeddedMetadataStore::open(dir.path())
                .unwrap()
                .topic_id("a"),
            Some(second)
        );
        let path = dir.path().join(CLUSTER_DIR).join(METADATA_FILE);
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("topic_ids");
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        let upgraded = EmbeddedMetadataStore::open(dir.path()).unwrap();
        let adopted = upgraded.topic_id("a").unwrap();
        drop(upgraded);
        assert_eq!(
            EmbeddedMetadataStore::open(dir.path())
                .unwrap()
                .topic_id("a"),
            Some(adopted)
        );
    }

    // Proves duplicate creates and deletes of missing topics are refused without changing the
    // version.
    #[test]
    fn conflicting_changes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        store.create_topic(topic("a", 1)).unwrap();
        assert!(matches!(
            store.create_topic(topic("a", 2)),
            Err(MetadataError::TopicExists(_))
        ));
        assert!(matches!(
            store.delete_topic("zzz"),
            Err(MetadataError::UnknownTopic(_))
        ));
        assert_eq!(store.version(), 1);
        assert_eq!(store.topic("a").unwrap().partitions, 1);
    }

    // Proves a corrupt metadata file is reported with its path instead of being replaced.
    #[test]
    fn corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedMetadataStore::open(dir.path()).unwrap());
        let path = dir.path().join(CLUSTER_DIR).join(METADATA_FILE);
        fs::write(&path, b"{ not json").unwrap();
        let error = EmbeddedMetadataStore::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("metadata.json"), "{error}");
    }
}
