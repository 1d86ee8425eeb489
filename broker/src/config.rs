//! Broker configuration: a TOML file (`--config FILE`), every key overridable by a `SLUICE_*`
//! environment variable and by a command-line flag. Precedence: flag > environment > file >
//! built-in default.
//!
//! Naming rule: the TOML key `k` (in any section) is the flag `--k` with dashes for underscores
//! and the environment variable `SLUICE_K` in upper case. Key names are unique across sections,
//! so `[storage] write_mode` is `--write-mode` and `SLUICE_WRITE_MODE`. One exception:
//! `[cluster] name` is `--cluster` and `SLUICE_CLUSTER` (a bare `--name` would say nothing).

pub use crate::groups::config::{GroupSettings, GroupsOverlay};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_storage::{CleanerConfig, Durability, LogConfig, RecoveryPolicy, WriteMode};

/// Errors of reading and checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key).
        message: String,
    },
    /// A setting has a value outside its bounds.
    #[error("invalid setting {key} = {value}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

fn invalid(key: &'static str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Write mode setting (`buffered` or `direct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WriteModeSetting {
    /// Page cache, asynchronous flusher.
    Buffered,
    /// O_DIRECT with an in-memory tail cache.
    Direct,
}

/// Durability setting (`durable` or `interval`): what an acknowledgement promises. See
/// `DURABILITY_HELP` and the README for the exact meaning of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilitySetting {
    /// Acknowledged only once fsynced (group commit); nothing is visible before.
    Durable,
    /// Acknowledged once written; fsync every flush_bytes_max bytes or flush_ms_max ms.
    Interval,
}

/// What an acknowledgement means in each durability mode (the `--durability` help, the README
/// and `deploy/sluice.toml` say the same).
pub const DURABILITY_HELP: &str = "What an acknowledgement means. durable: a produce is acknowledged (acks=1 on the leader; acks=all once every in-sync replica has it, each replica counting it only once it is durable there) only after its batches are written and fsynced on the leader: group commit, one fdatasync per partition per round shared by every append written meanwhile; records are not visible to consumers or followers before that, so a power loss loses nothing acknowledged. interval: acknowledged once written (page cache, or the device's volatile cache with O_DIRECT) and visible at once; the broker fsyncs when flush_bytes_max bytes are unflushed or the oldest is flush_ms_max old, so a killed process loses nothing acknowledged but a power loss loses what was acknowledged since the last completed fsync. A failed fsync takes the partition offline (KAFKA_STORAGE_ERROR) in both modes; it is never retried.";

/// Recovery policy setting (`truncate-tail` or `refuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RecoverySetting {
    /// Truncate at the first torn or corrupt batch and warn.
    TruncateTail,
    /// Refuse to open a log with a corrupt batch.
    Refuse,
}

/// The `[storage]` section: the partition logs' settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageSettings {
    /// `buffered` or `direct`.
    pub write_mode: WriteModeSetting,
    /// Segment roll size, bytes.
    pub segment_bytes_max: u64,
    /// Segment roll age, milliseconds.
    pub segment_ms_max: u64,
    /// `durable` or `interval`: what an acknowledgement promises.
    pub durability: DurabilitySetting,
    /// Interval durability: unflushed bytes that trigger an fsync.
    pub flush_bytes_max: u64,
    /// Interval durability: age of the oldest unflushed byte that triggers an fsync, ms.
    pub flush_ms_max: u64,
    /// Delete closed segments older than this, milliseconds; -1 keeps them forever.
    pub retention_ms: i64,
    /// Delete the oldest closed segments while a partition is larger than this; -1 = no limit.
    pub retention_bytes: i64,
    /// Largest record batch accepted, bytes.
    pub batch_bytes_max: usize,
    /// Direct mode: newest bytes per partition kept in memory for reads.
    pub tail_cache_bytes_max: usize,
    /// `truncate-tail` or `refuse`.
    pub recovery: RecoverySetting,
    /// Bytes per second each shard's log cleaner may read and write together.
    pub log_cleaner_io_bytes_per_second_max: u64,
    /// Memory of each shard's cleaner for its key -> newest offset map, bytes.
    pub log_cleaner_offset_map_bytes_max: usize,
    /// Pause of a shard's cleaner when no compacted log needs cleaning, milliseconds.
    pub log_cleaner_backoff_ms: u64,
    /// How long a partition remembers an idempotent producer after its newest batch, ms
    /// (Kafka's `producer.id.expiration.ms`); a producer silent for longer gets
    /// UNKNOWN_PRODUCER_ID unless it starts a new sequence.
    pub producer_id_expiration_ms: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        let log = LogConfig::default();
        let cleaner = CleanerConfig::default();
        let (durability, flush_bytes_max, flush_ms_max) = match log.durability {
            Durability::Interval {
                flush_bytes_max,
                flush_ms_max,
            } => (DurabilitySetting::Interval, flush_bytes_max, flush_ms_max),
            Durability::Durable => (
                DurabilitySetting::Durable,
                sluice_storage::config::FLUSH_BYTES_MAX_DEFAULT,
                sluice_storage::config::FLUSH_MS_MAX_DEFAULT,
            ),
        };
        StorageSettings {
            write_mode: match log.write_mode {
                WriteMode::Buffered => WriteModeSetting::Buffered,
                WriteMode::Direct => WriteModeSetting::Direct,
            },
            segment_bytes_max: log.segment_bytes_max,
            segment_ms_max: log.segment_ms_max,
            durability,
            flush_bytes_max,
            flush_ms_max,
            retention_ms: log
                .retention_ms
                .map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            retention_bytes: log
                .retention_bytes
                .map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            batch_bytes_max: log.batch_bytes_max,
            tail_cache_bytes_max: log.tail_cache_bytes_max,
            recovery: RecoverySetting::TruncateTail,
            log_cleaner_io_bytes_per_second_max: cleaner.io_bytes_per_second_max,
            log_cleaner_offset_map_bytes_max: cleaner.offset_map_bytes_max,
            log_cleaner_backoff_ms: cleaner.backoff_ms,
            producer_id_expiration_ms: log.producer_id_expiration_ms,
        }
    }
}

impl StorageSettings {
    /// The partition log config these settings describe (checked by `LogConfig::validate`).
    pub fn log_config(&self) -> Result<LogConfig, ConfigError> {
        let optional = |key: &'static str, value: i64| match value {
            -1 => Ok(None),
            value => u64::try_from(value)
                .map(Some)
                .map_err(|_| invalid(key, value, "must be -1 (no limit) or at least 0")),
        };
        let config = LogConfig {
            segment_bytes_max: self.segment_bytes_max,
            segment_ms_max: self.segment_ms_max,
            batch_bytes_max: self.batch_bytes_max,
            write_mode: match self.write_mode {
                WriteModeSetting::Buffered => WriteMode::Buffered,
                WriteModeSetting::Direct => WriteMode::Direct,
            },
            durability: match self.durability {
                DurabilitySetting::Durable => Durability::Durable,
                DurabilitySetting::Interval => Durability::Interval {
                    flush_bytes_max: self.flush_bytes_max,
                    flush_ms_max: self.flush_ms_max,
                },
            },
            recovery: match self.recovery {
                RecoverySetting::TruncateTail => RecoveryPolicy::TruncateTail,
                RecoverySetting::Refuse => RecoveryPolicy::Refuse,
            },
            retention_ms: optional("retention_ms", self.retention_ms)?,
            retention_bytes: optional("retention_bytes", self.retention_bytes)?,
            tail_cache_bytes_max: self.tail_cache_bytes_max,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            ..LogConfig::default()
        };
        config.validate().map_err(|error| ConfigError::Invalid {
            key: "storage",
            value: String::new(),
            reason: error.to_string(),
        })?;
        Ok(config)
    }

    /// The settings of each shard's log cleaner (checked by `CleanerConfig::validate`).
    pub fn cleaner_config(&self) -> Result<CleanerConfig, ConfigError> {
        let config = CleanerConfig {
            io_bytes_per_second_max: self.log_cleaner_io_bytes_per_second_max,
            offset_map_bytes_max: self.log_cleaner_offset_map_bytes_max,
            backoff_ms: self.log_cleaner_backoff_ms,
        };
        config.validate().map_err(|error| ConfigError::Invalid {
            key: "storage",
            value: String::new(),
            reason: error.to_string(),
        })?;
        Ok(config)
    }
}

/// The `[limits]` section: bounds on what clients may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest request frame accepted, bytes (prefix included).
    pub frame_bytes_max: usize,
    /// Requests one connection may have in flight (read but not yet answered).
    pub connection_inflight_requests_max: usize,
    /// Longest a fetch may wait for data, milliseconds (caps the request's max_wait_ms).
    pub fetch_max_wait_ms_max: u32,
    /// Connections open at once across all shards; more are refused.
    pub connections_max: usize,
    /// Most partitions a topic may have.
    pub partitions_max: i32,
    /// Capacity of each cross-shard queue, messages.
    pub mesh_queue_depth_max: usize,
    /// Longest a graceful shutdown waits for in-flight requests, milliseconds (0: close
    /// connections at once).
    pub shutdown_drain_ms_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: 64 << 20,
            connection_inflight_requests_max: 16,
            fetch_max_wait_ms_max: 30_000,
            connections_max: 4096,
            partitions_max: 4096,
            mesh_queue_depth_max: 1024,
            shutdown_drain_ms_max: 10_000,
        }
    }
}

/// Default reassignment throttle: unlimited (0), so a move copies as fast as Kafka's does
/// without `leader.replication.throttled.rate`; set it when catch-up traffic competes with
/// producers.
pub const REASSIGNMENT_THROTTLE_BYTES_PER_SECOND_DEFAULT: u64 = 0;

/// Default cluster name: the `<cluster>` in every etcd key.
pub const CLUSTER_NAME_DEFAULT: &str = "sluice";

/// The `[cluster]` section: cluster mode on etcd, and replication. With no etcd endpoint the
/// broker runs single-node with its metadata in the data directory, and the other keys are
/// unused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSettings {
    /// etcd client URLs; empty: single-node mode.
    pub etcd: Vec<String>,
    /// The cluster's name (the `<cluster>` in `/sluice/<cluster>/...`); the same on every
    /// broker of a cluster.
    pub name: String,
    /// A broker whose etcd lease is not renewed for this long is dead, seconds.
    pub broker_session_ttl_s: u64,
    /// A follower not caught up with its leader for this long leaves the ISR, milliseconds.
    pub replica_lag_time_max_ms: u64,
    /// ISR members an acks=all write needs (topic config `min.insync.replicas` overrides it).
    pub min_insync_replicas: u32,
    /// Bytes a follower asks for per partition in one replica fetch.
    pub replica_fetch_max_bytes: u32,
    /// Longest a leader holds a follower's fetch waiting for new records, milliseconds.
    pub replica_fetch_wait_max_ms: u32,
    /// Whether the controller moves leadership back to preferred replicas by itself (Kafka's
    /// `auto.leader.rebalance.enable`).
    pub auto_leader_rebalance_enable: bool,
    /// Interval of the controller's leader imbalance check, milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
    /// Per-broker imbalance (partitions preferring the broker but led elsewhere, over the
    /// partitions preferring it) above which leadership moves back, percent.
    pub leader_imbalance_per_broker_percentage: u32,
    /// Rate at which the replicas a reassignment adds on this broker may fetch from their
    /// leaders, over all of them, bytes per second; 0: unlimited. ISR members and ordinary
    /// followers are never throttled.
    pub reassignment_throttle_bytes_per_second: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            etcd: Vec::new(),
            name: CLUSTER_NAME_DEFAULT.to_string(),
            broker_session_ttl_s: crate::cluster::BROKER_SESSION_TTL_S_DEFAULT,
            replica_lag_time_max_ms: 10_000,
            min_insync_replicas: 1,
            replica_fetch_max_bytes: 1024 * 1024,
            replica_fetch_wait_max_ms: 500,
            auto_leader_rebalance_enable: crate::cluster::AUTO_LEADER_REBALANCE_ENABLE_DEFAULT,
            leader_imbalance_check_interval_ms:
                crate::cluster::LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT,
            leader_imbalance_per_broker_percentage:
                crate::cluster::LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_DEFAULT,
            reassignment_throttle_bytes_per_second: REASSIGNMENT_THROTTLE_BYTES_PER_SECOND_DEFAULT,
        }
    }
}

impl ClusterSettings {
    /// Whether cluster mode is on (an etcd endpoint is configured).
    pub fn enabled(&self) -> bool {
        !self.etcd.is_empty()
    }
}

/// The broker's whole configuration, after defaults, file, environment and flags were merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// This broker's id.
    pub node_id: i32,
    /// Where partition logs and the embedded metadata live.
    pub data_dir: PathBuf,
    /// The shared native port every shard accepts on (port 0: the OS picks one).
    pub native_addr: SocketAddr,
    /// Host name clients are told to connect to; `None`: the native address's IP, or this
    /// machine's host name when that is a wildcard address.
    pub advertised_host: Option<String>,
    /// Each shard's own port, by shard index; empty (the default): the OS picks a free port for
    /// each shard. Clients learn the ports from metadata either way.
    pub shard_ports: Vec<u16>,
    /// The admin HTTP endpoint (`/metrics`, `/health`); `None` turns it off.
    pub admin_addr: Option<SocketAddr>,
    /// The Kafka protocol port every shard accepts on (SO_REUSEPORT); `None` turns it off.
    pub kafka_addr: Option<SocketAddr>,
    /// `host:port` Kafka clients are told to connect to (Metadata, DescribeCluster); `None`:
    /// the advertised host and the bound Kafka port.
    pub kafka_advertised_addr: Option<String>,
    /// Number of shards; 0 = one per CPU in `cpus`, or per usable CPU.
    pub shards: usize,
    /// CPUs to pin shards to, in shard order; `None` = the usable CPUs in order.
    pub cpus: Option<Vec<usize>>,
    /// Pin each shard's executor to its CPU.
    pub pin: bool,
    /// Partition log settings.
    pub storage: StorageSettings,
    /// Bounds.
    pub limits: Limits,
    /// Cluster mode and replication.
    pub cluster: ClusterSettings,
    /// Consumer groups and `__consumer_offsets`.
    pub groups: GroupSettings,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from("./sluice-data"),
            native_addr: SocketAddr::from(([127, 0, 0, 1], 9192)),
            advertised_host: None,
            shard_ports: Vec::new(),
            admin_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            kafka_addr: Some(SocketAddr::from(([127, 0, 0, 1], KAFKA_PORT_DEFAULT))),
            kafka_advertised_addr: None,
            shards: 0,
            cpus: None,
            pin: true,
            storage: StorageSettings::default(),
            limits: Limits::default(),
            cluster: ClusterSettings::default(),
            groups: GroupSettings::default(),
        }
    }
}

/// Kafka's customary port, the default of `kafka_addr`.
pub const KAFKA_PORT_DEFAULT: u16 = 9092;

/// Every key optional: what one source (the file, or the flags and environment) sets. Used as
/// the TOML schema (unknown keys are an error naming the key) and as clap arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigOverlay {
    /// This broker's id.
    #[arg(long, env = "SLUICE_NODE_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i32>,
    /// Data directory.
    #[arg(long, env = "SLUICE_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Shared native listen address, host:port.
    #[arg(long, env = "SLUICE_NATIVE_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_addr: Option<String>,
    /// Host name advertised to clients in metadata.
    #[arg(long, env = "SLUICE_ADVERTISED_HOST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    /// Each shard's own port, comma separated, one per shard (default: OS-picked).
    #[arg(long, env = "SLUICE_SHARD_PORTS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_ports: Option<Vec<u16>>,
    /// Admin HTTP address, host:port, or "off".
    #[arg(long, env = "SLUICE_ADMIN_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<String>,
    /// Kafka protocol listen address, host:port, or "" / "off" to disable it.
    #[arg(long, env = "SLUICE_KAFKA_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_addr: Option<String>,
    /// host:port Kafka clients are told to connect to.
    #[arg(long, env = "SLUICE_KAFKA_ADVERTISED_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_advertised_addr: Option<String>,
    /// Number of shards (0 = one per usable CPU).
    #[arg(long, env = "SLUICE_SHARDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// CPUs to pin shards to, comma separated.
    #[arg(long, env = "SLUICE_CPUS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<usize>>,
    /// Pin shards to CPUs (true/false).
    #[arg(long, env = "SLUICE_PIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<bool>,
    /// `[storage]` keys.
    #[command(flatten)]
    #[serde(default)]
    pub storage: StorageOverlay,
    /// `[limits]` keys.
    #[command(flatten)]
    #[serde(default)]
    pub limits: LimitsOverlay,
    /// `[cluster]` keys.
    #[command(flatten)]
    #[serde(default)]
    pub cluster: ClusterOverlay,
    /// `[groups]` keys.
    #[command(flatten)]
    #[serde(default)]
    pub groups: GroupsOverlay,
}

/// The `[cluster]` keys of a [`ConfigOverlay`]. One exception to the naming rule: the TOML key
/// `name` is the flag `--cluster` and the variable `SLUICE_CLUSTER`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ClusterOverlay {
    /// etcd client URLs, comma separated: turns on cluster mode.
    #[arg(
        long,
        env = "SLUICE_ETCD",
        value_delimiter = ',',
        value_name = "URL[,URL...]"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<Vec<String>>,
    /// Cluster name (the <cluster> in the etcd keys).
    #[arg(long = "cluster", env = "SLUICE_CLUSTER", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// etcd lease TTL, s: a broker silent this long is dead.
    #[arg(long, env = "SLUICE_BROKER_SESSION_TTL_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_session_ttl_s: Option<u64>,
    /// A follower not caught up this long leaves the ISR, ms.
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// ISR size acks=all writes need (topic min.insync.replicas overrides).
    #[arg(long, env = "SLUICE_MIN_INSYNC_REPLICAS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<u32>,
    /// Bytes per partition in one replica fetch.
    #[arg(long, env = "SLUICE_REPLICA_FETCH_MAX_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_fetch_max_bytes: Option<u32>,
    /// Longest wait of a replica fetch for new records, ms.
    #[arg(long, env = "SLUICE_REPLICA_FETCH_WAIT_MAX_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_fetch_wait_max_ms: Option<u32>,
    /// The controller moves leadership back to preferred replicas (true/false).
    #[arg(long, env = "SLUICE_AUTO_LEADER_REBALANCE_ENABLE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_leader_rebalance_enable: Option<bool>,
    /// Interval of the leader imbalance check, ms.
    #[arg(long, env = "SLUICE_LEADER_IMBALANCE_CHECK_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_imbalance_check_interval_ms: Option<u64>,
    /// Per-broker leader imbalance that triggers a rebalance, percent.
    #[arg(long, env = "SLUICE_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_imbalance_per_broker_percentage: Option<u32>,
    /// Fetch rate of the replicas reassignments add on this broker, bytes/s (0: unlimited).
    #[arg(long, env = "SLUICE_REASSIGNMENT_THROTTLE_BYTES_PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reassignment_throttle_bytes_per_second: Option<u64>,
}

/// The `[storage]` keys of a [`ConfigOverlay`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct StorageOverlay {
    /// buffered or direct.
    #[arg(long, env = "SLUICE_WRITE_MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_mode: Option<WriteModeSetting>,
    /// Segment roll size, bytes.
    #[arg(long, env = "SLUICE_SEGMENT_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_bytes_max: Option<u64>,
    /// Segment roll age, ms.
    #[arg(long, env = "SLUICE_SEGMENT_MS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_ms_max: Option<u64>,
    /// durable or interval: what an acknowledgement promises (see the long help).
    #[arg(long, env = "SLUICE_DURABILITY", long_help = DURABILITY_HELP)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<DurabilitySetting>,
    /// Interval durability: unflushed bytes that trigger an fsync.
    #[arg(long, env = "SLUICE_FLUSH_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_bytes_max: Option<u64>,
    /// Interval durability: unflushed age that triggers an fsync, ms.
    #[arg(long, env = "SLUICE_FLUSH_MS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_ms_max: Option<u64>,
    /// Retention by age, ms (-1 = forever).
    #[arg(long, env = "SLUICE_RETENTION_MS", allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<i64>,
    /// Retention by size, bytes (-1 = no limit).
    #[arg(long, env = "SLUICE_RETENTION_BYTES", allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<i64>,
    /// Largest record batch, bytes.
    #[arg(long, env = "SLUICE_BATCH_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_bytes_max: Option<usize>,
    /// Direct-mode tail cache per partition, bytes.
    #[arg(long, env = "SLUICE_TAIL_CACHE_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail_cache_bytes_max: Option<usize>,
    /// Idempotent producer state kept after a producer's newest batch, ms.
    #[arg(long, env = "SLUICE_PRODUCER_ID_EXPIRATION_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_id_expiration_ms: Option<u64>,
    /// truncate-tail or refuse.
    #[arg(long, env = "SLUICE_RECOVERY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySetting>,
    /// Log cleaner I/O budget per shard, bytes per second.
    #[arg(long, env = "SLUICE_LOG_CLEANER_IO_BYTES_PER_SECOND_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_cleaner_io_bytes_per_second_max: Option<u64>,
    /// Log cleaner offset map per shard, bytes.
    #[arg(long, env = "SLUICE_LOG_CLEANER_OFFSET_MAP_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_cleaner_offset_map_bytes_max: Option<usize>,
    /// Log cleaner pause when nothing needs cleaning, ms.
    #[arg(long, env = "SLUICE_LOG_CLEANER_BACKOFF_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_cleaner_backoff_ms: Option<u64>,
}

/// The `[limits]` keys of a [`ConfigOverlay`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverlay {
    /// Largest request frame, bytes.
    #[arg(long, env = "SLUICE_FRAME_BYTES_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_bytes_max: Option<usize>,
    /// Requests in flight per connection.
    #[arg(long, env = "SLUICE_CONNECTION_INFLIGHT_REQUESTS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_inflight_requests_max: Option<usize>,
    /// Cap on a fetch's wait, ms.
    #[arg(long, env = "SLUICE_FETCH_MAX_WAIT_MS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_max_wait_ms_max: Option<u32>,
    /// Connections open at once.
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_max: Option<usize>,
    /// Partitions per topic.
    #[arg(long, env = "SLUICE_PARTITIONS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions_max: Option<i32>,
    /// Cross-shard queue capacity, messages.
    #[arg(long, env = "SLUICE_MESH_QUEUE_DEPTH_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh_queue_depth_max: Option<usize>,
    /// Graceful shutdown bound, ms.
    #[arg(long, env = "SLUICE_SHUTDOWN_DRAIN_MS_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_drain_ms_max: Option<u64>,
}

macro_rules! overlay {
    ($high:expr, $low:expr; $($field:ident),+) => {
        $( $high.$field = $high.$field.take().or($low.$field.take()); )+
    };
}

impl ConfigOverlay {
    /// Reads a TOML config file; unknown keys are an error naming the key.
    pub fn from_file(path: &Path) -> Result<ConfigOverlay, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ConfigOverlay::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<ConfigOverlay, String> {
        toml::from_str(text).map_err(|error| error.message().to_string())
    }

    /// This overlay with every key it leaves unset taken from `lower`.
    pub fn over(mut self, mut lower: ConfigOverlay) -> ConfigOverlay {
        overlay!(self, lower; node_id, data_dir, native_addr, advertised_host, shard_ports,
            admin_addr, kafka_addr, kafka_advertised_addr, shards, cpus, pin);
        overlay!(self.storage, lower.storage; write_mode, segment_bytes_max, segment_ms_max,
            durability, flush_bytes_max, flush_ms_max, retention_ms, retention_bytes,
            batch_bytes_max, tail_cache_bytes_max, recovery, log_cleaner_io_bytes_per_second_max,
            log_cleaner_offset_map_bytes_max, log_cleaner_backoff_ms, producer_id_expiration_ms);
        overlay!(self.limits, lower.limits; frame_bytes_max, connection_inflight_requests_max,
            fetch_max_wait_ms_max, connections_max, partitions_max, mesh_queue_depth_max,
            shutdown_drain_ms_max);
        overlay!(self.cluster, lower.cluster; etcd, name, broker_session_ttl_s,
            replica_lag_time_max_ms, min_insync_replicas, replica_fetch_max_bytes,
            replica_fetch_wait_max_ms, auto_leader_rebalance_enable,
            leader_imbalance_check_interval_ms, leader_imbalance_per_broker_percentage,
            reassignment_throttle_bytes_per_second);
        self.groups = self.groups.over(lower.groups);
        self
    }
}

fn parse_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .map_err(|error| invalid(key, value, format!("not a host:port address ({error})")))?
        .next()
        .ok_or_else(|| invalid(key, value, "resolves to no address"))
}

/// Splits `host:port` (`[v6]:port` for IPv6) into its host and port.
pub fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "must be host:port".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the host is empty".to_string());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    Ok((host.to_string(), port))
}

impl BrokerConfig {
    /// The configuration from an optional file and the flags/environment overlay (which wins).
    pub fn load(file: Option<&Path>, flags: ConfigOverlay) -> Result<BrokerConfig, ConfigError> {
        let from_file = match file {
            Some(path) => ConfigOverlay::from_file(path)?,
            None => ConfigOverlay::default(),
        };
        BrokerConfig::default().with(flags.over(from_file))
    }

    /// This config with every key `overlay` sets replaced, then validated.
    pub fn with(mut self, overlay: ConfigOverlay) -> Result<BrokerConfig, ConfigError> {
        macro_rules! set {
            ($target:expr, $source:expr; $($field:ident),+) => {
                $( if let Some(value) = $source.$field { $target.$field = value; } )+
            };
        }
        set!(self, overlay; node_id, data_dir, shard_ports, shards, pin);
        if let Some(addr) = &overlay.native_addr {
            self.native_addr = parse_addr("native_addr", addr)?;
        }
        if let Some(host) = overlay.advertised_host {
            self.advertised_host = Some(host).filter(|host| !host.is_empty());
        }
        if let Some(addr) = &overlay.admin_addr {
            self.admin_addr = match addr.as_str() {
                "" | "off" | "none" => None,
                addr => Some(parse_addr("admin_addr", addr)?),
            };
        }
        if let Some(addr) = &overlay.kafka_addr {
            self.kafka_addr = match addr.as_str() {
                "" | "off" | "none" => None,
                addr => Some(parse_addr("kafka_addr", addr)?),
            };
        }
        if let Some(addr) = overlay.kafka_advertised_addr {
            self.kafka_advertised_addr = Some(addr).filter(|addr| !addr.is_empty());
        }
        if let Some(cpus) = overlay.cpus {
            self.cpus = Some(cpus);
        }
        let storage = overlay.storage;
        set!(self.storage, storage; write_mode, segment_bytes_max, segment_ms_max, flush_bytes_max,
            flush_ms_max, durability, retention_ms, retention_bytes, batch_bytes_max,
            tail_cache_bytes_max, recovery, log_cleaner_io_bytes_per_second_max,
            log_cleaner_offset_map_bytes_max, log_cleaner_backoff_ms, producer_id_expiration_ms);
        let limits = overlay.limits;
        set!(self.limits, limits; frame_bytes_max, connection_inflight_requests_max,
            fetch_max_wait_ms_max, connections_max, partitions_max, mesh_queue_depth_max,
            shutdown_drain_ms_max);
        let cluster = overlay.cluster;
        if let Some(endpoints) = cluster.etcd {
            self.cluster.etcd = endpoints
                .iter()
                .map(|endpoint| endpoint.trim().to_string())
                .filter(|endpoint| !endpoint.is_empty())
                .collect();
        }
        set!(self.cluster, cluster; name, broker_session_ttl_s, replica_lag_time_max_ms,
            min_insync_replicas, replica_fetch_max_bytes, replica_fetch_wait_max_ms,
            auto_leader_rebalance_enable, leader_imbalance_check_interval_ms,
            leader_imbalance_per_broker_percentage, reassignment_throttle_bytes_per_second);
        self.groups.apply(overlay.groups);
        self.validate()?;
        Ok(self)
    }

    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.storage.log_config()?;
        self.storage.cleaner_config()?;
        let limits = &self.limits;
        let frame_bytes_min = sluice_net::FRAME_HEADER_BYTES;
        if limits.frame_bytes_max < frame_bytes_min || limits.frame_bytes_max > u32::MAX as usize {
            return Err(invalid(
                "frame_bytes_max",
                limits.frame_bytes_max,
                format!("must be in [{frame_bytes_min}, {}]", u32::MAX),
            ));
        }
        if self.storage.batch_bytes_max > limits.frame_bytes_max {
            return Err(invalid(
                "batch_bytes_max",
                self.storage.batch_bytes_max,
                format!(
                    "must not exceed frame_bytes_max ({})",
                    limits.frame_bytes_max
                ),
            ));
        }
        let positive: [(&'static str, u64); 4] = [
            (
                "connection_inflight_requests_max",
                limits.connection_inflight_requests_max as u64,
            ),
            ("connections_max", limits.connections_max as u64),
            ("mesh_queue_depth_max", limits.mesh_queue_depth_max as u64),
            (
                "partitions_max",
                u64::try_from(limits.partitions_max).unwrap_or(0),
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, value, "must be at least 1"));
            }
        }
        self.validate_shard_ports()?;
        if let Some(advertised) = &self.kafka_advertised_addr {
            split_host_port(advertised)
                .map_err(|reason| invalid("kafka_advertised_addr", advertised, reason))?;
        }
        if let Some(cpus) = &self.cpus {
            if cpus.is_empty() {
                return Err(invalid(
                    "cpus",
                    "[]",
                    "list at least one CPU, or leave it out",
                ));
            }
        }
        self.validate_cluster()?;
        self.groups.validate()
    }

    /// A `shard_ports` list must give every shard its own port.
    fn validate_shard_ports(&self) -> Result<(), ConfigError> {
        let ports = &self.shard_ports;
        if ports.is_empty() {
            return Ok(());
        }
        let shard_count = self.shard_count();
        let reason = if ports.len() != shard_count {
            Some(format!(
                "lists {} ports for {shard_count} shards: give one per shard, or none to let the \
                 OS pick them",
                ports.len()
            ))
        } else if ports.contains(&0) {
            Some(
                "port 0 is not allowed in the list: leave the list empty for OS-picked ports"
                    .into(),
            )
        } else if ports.contains(&self.native_addr.port()) {
            Some("a shard port equals the native port".to_string())
        } else if (1..ports.len()).any(|index| ports[index..].contains(&ports[index - 1])) {
            Some("a port is listed twice".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => Err(invalid("shard_ports", format!("{ports:?}"), reason)),
            None => Ok(()),
        }
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        crate::cluster::validate_name(&cluster.name)
            .map_err(|error| invalid("name", &cluster.name, error.to_string()))?;
        let ttl_min = crate::cluster::BROKER_SESSION_TTL_S_MIN;
        if cluster.broker_session_ttl_s < ttl_min {
            return Err(invalid(
                "broker_session_ttl_s",
                cluster.broker_session_ttl_s,
                format!("must be at least {ttl_min} (etcd grants no shorter lease)"),
            ));
        }
        let percentage_max = crate::cluster::LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_MAX;
        if cluster.leader_imbalance_per_broker_percentage > percentage_max {
            return Err(invalid(
                "leader_imbalance_per_broker_percentage",
                cluster.leader_imbalance_per_broker_percentage,
                format!("must be at most {percentage_max}"),
            ));
        }
        let positive: [(&'static str, u64); 5] = [
            (
                "leader_imbalance_check_interval_ms",
                cluster.leader_imbalance_check_interval_ms,
            ),
            ("replica_lag_time_max_ms", cluster.replica_lag_time_max_ms),
            (
                "min_insync_replicas",
                u64::from(cluster.min_insync_replicas),
            ),
            (
                "replica_fetch_max_bytes",
                u64::from(cluster.replica_fetch_max_bytes),
            ),
            (
                "replica_fetch_wait_max_ms",
                u64::from(cluster.replica_fetch_wait_max_ms),
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, value, "must be at least 1"));
            }
        }
        if self.node_id < 0 {
            return Err(invalid("node_id", self.node_id, "must not be negative"));
        }
        Ok(())
    }

    /// The number of shards to run: `shards`; when 0, one per CPU of `cpus` if given, else one
    /// per usable CPU.
    pub fn shard_count(&self) -> usize {
        match (self.shards, &self.cpus) {
            (0, Some(cpus)) => cpus.len().max(1),
            (0, None) => sluice_shard::usable_cpus().len().max(1),
            (shards, _) => shards,
        }
    }

    /// The effective configuration as a complete overlay (every key set), for printing and for
    /// feeding back as a file.
    pub fn to_overlay(&self) -> ConfigOverlay {
        let storage = &self.storage;
        let limits = &self.limits;
        ConfigOverlay {
            node_id: Some(self.node_id),
            data_dir: Some(self.data_dir.clone()),
            native_addr: Some(self.native_addr.to_string()),
            advertised_host: self.advertised_host.clone(),
            shard_ports: Some(self.shard_ports.clone()),
            admin_addr: Some(
                self.admin_addr
                    .map_or("off".to_string(), |addr| addr.to_string()),
            ),
            kafka_addr: Some(
                self.kafka_addr
                    .map_or("off".to_string(), |addr| addr.to_string()),
            ),
            kafka_advertised_addr: self.kafka_advertised_addr.clone(),
            shards: Some(self.shards),
            cpus: self.cpus.clone(),
            pin: Some(self.pin),
            storage: StorageOverlay {
                write_mode: Some(storage.write_mode),
                segment_bytes_max: Some(storage.segment_bytes_max),
                segment_ms_max: Some(storage.segment_ms_max),
                flush_bytes_max: Some(storage.flush_bytes_max),
                flush_ms_max: Some(storage.flush_ms_max),
                durability: Some(storage.durability),
                retention_ms: Some(storage.retention_ms),
                retention_bytes: Some(storage.retention_bytes),
                batch_bytes_max: Some(storage.batch_bytes_max),
                tail_cache_bytes_max: Some(storage.tail_cache_bytes_max),
                recovery: Some(storage.recovery),
                log_cleaner_io_bytes_per_second_max: Some(
                    storage.log_cleaner_io_bytes_per_second_max,
                ),
                log_cleaner_offset_map_bytes_max: Some(storage.log_cleaner_offset_map_bytes_max),
                log_cleaner_backoff_ms: Some(storage.log_cleaner_backoff_ms),
                producer_id_expiration_ms: Some(storage.producer_id_expiration_ms),
            },
            limits: LimitsOverlay {
                frame_bytes_max: Some(limits.frame_bytes_max),
                connection_inflight_requests_max: Some(limits.connection_inflight_requests_max),
                fetch_max_wait_ms_max: Some(limits.fetch_max_wait_ms_max),
                connections_max: Some(limits.connections_max),
                partitions_max: Some(limits.partitions_max),
                mesh_queue_depth_max: Some(limits.mesh_queue_depth_max),
                shutdown_drain_ms_max: Some(limits.shutdown_drain_ms_max),
            },
            cluster: self.cluster_overlay(),
            groups: self.groups.to_overlay(),
        }
    }

    fn cluster_overlay(&self) -> ClusterOverlay {
        let cluster = &self.cluster;
        ClusterOverlay {
            etcd: Some(cluster.etcd.clone()),
            name: Some(cluster.name.clone()),
            broker_session_ttl_s: Some(cluster.broker_session_ttl_s),
            replica_lag_time_max_ms: Some(cluster.replica_lag_time_max_ms),
            min_insync_replicas: Some(cluster.min_insync_replicas),
            replica_fetch_max_bytes: Some(cluster.replica_fetch_max_bytes),
            replica_fetch_wait_max_ms: Some(cluster.replica_fetch_wait_max_ms),
            auto_leader_rebalance_enable: Some(cluster.auto_leader_rebalance_enable),
            leader_imbalance_check_interval_ms: Some(cluster.leader_imbalance_check_interval_ms),
            leader_imbalance_per_broker_percentage: Some(
                cluster.leader_imbalance_per_broker_percentage,
            ),
            reassignment_throttle_bytes_per_second: Some(
                cluster.reassignment_throttle_bytes_per_second,
            ),
        }
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_overlay()).unwrap_or_else(|error| format!("# {error}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves an unknown key, top level or inside a section, is refused with its name.
    #[test]
    fn unknown_keys_are_named() {
        let error = ConfigOverlay::from_toml("node_id = 1\nbogus_key = 3\n").unwrap_err();
        assert!(error.contains("bogus_key"), "{error}");
        let error = ConfigOverlay::from_toml("[storage]\nwrite_mod = \"direct\"\n").unwrap_err();
        assert!(error.contains("write_mod"), "{error}");
    }

    // Proves the higher overlay wins key by key and unset keys fall through to the lower one,
    // including inside sections.
    #[test]
    fn overlays_merge_key_by_key() {
        let file = ConfigOverlay::from_toml(
            "node_id = 1\nshards = 3\n[storage]\nwrite_mode = \"buffered\"\nsegment_bytes_max = 4096\n",
        )
        .unwrap();
        let mut flags = ConfigOverlay {
            shards: Some(2),
            ..ConfigOverlay::default()
        };
        flags.storage.segment_bytes_max = Some(8192);
        let config = BrokerConfig::default().with(flags.over(file)).unwrap();
        assert_eq!(config.node_id, 1);
        assert_eq!(config.shards, 2);
        assert_eq!(config.storage.write_mode, WriteModeSetting::Buffered);
        assert_eq!(config.storage.segment_bytes_max, 8192);
    }

    // Proves bad values are refused with the key's name, and the printed config reads back as
    // the same config.
    #[test]
    fn validation_names_the_key_and_print_round_trips() {
        let bad = ConfigOverlay::from_toml("[limits]\nconnections_max = 0\n").unwrap();
        let error = BrokerConfig::default().with(bad).unwrap_err().to_string();
        assert!(error.contains("connections_max"), "{error}");
        let bad = ConfigOverlay::from_toml("admin_addr = \"not an address\"\n").unwrap();
        let error = BrokerConfig::default().with(bad).unwrap_err().to_string();
        assert!(error.contains("admin_addr"), "{error}");

        let mut config = BrokerConfig {
            admin_addr: None,
            ..BrokerConfig::default()
        };
        config.storage.retention_ms = -1;
        let reread = ConfigOverlay::from_toml(&config.to_toml()).unwrap();
        assert_eq!(BrokerConfig::default().with(reread).unwrap(), config);
    }

    // Proves a shard_ports list gives each shard a distinct port other than the native port
    // (count, zero, duplicate and native-port collisions are refused naming the key), an empty
    // list (OS-picked ports) is the default, and a list reads back from the printed config.
    #[test]
    fn shard_ports_give_each_shard_its_own_port() {
        assert!(BrokerConfig::default().shard_ports.is_empty());
        let with = |ports: &str| {
            let text =
                format!("shards = 2\nnative_addr = \"127.0.0.1:9000\"\nshard_ports = {ports}\n");
            BrokerConfig::default().with(ConfigOverlay::from_toml(&text).unwrap())
        };
        let config = with("[9001, 9002]").unwrap();
        assert_eq!(config.shard_ports, vec![9001, 9002]);
        let reread = ConfigOverlay::from_toml(&config.to_toml()).unwrap();
        assert_eq!(BrokerConfig::default().with(reread).unwrap(), config);
        for bad in ["[9001]", "[9001, 0]", "[9001, 9001]", "[9000, 9001]"] {
            let error = with(bad).unwrap_err().to_string();
            assert!(error.contains("shard_ports"), "{bad}: {error}");
        }
        assert!(with("[]").unwrap().shard_ports.is_empty());
    }

    // Proves the [cluster] section: the sample cluster config of deploy/ parses (etcd list,
    // name), cluster mode is on exactly when etcd is set, defaults apply to keys left out, and a
    // bad value is refused with its key.
    #[test]
    fn cluster_section_parses_and_validates() {
        let sample = include_str!("../../deploy/cluster/broker-1.toml");
        let config = BrokerConfig::default()
            .with(ConfigOverlay::from_toml(sample).unwrap())
            .unwrap();
        assert!(config.cluster.enabled());
        assert_eq!(config.cluster.etcd.len(), 3);
        assert_eq!(config.cluster.name, "prod");
        assert_eq!(config.cluster.broker_session_ttl_s, 6);
        assert_eq!(config.cluster.replica_lag_time_max_ms, 10_000);
        assert_eq!(config.cluster.min_insync_replicas, 1);
        assert!(!BrokerConfig::default().cluster.enabled());
        assert_eq!(BrokerConfig::default().cluster.name, CLUSTER_NAME_DEFAULT);
        let flags = ConfigOverlay {
            cluster: ClusterOverlay {
                etcd: Some(vec!["http://a:2379".into(), " ".into()]),
                name: Some("dev".into()),
                min_insync_replicas: Some(2),
                ..ClusterOverlay::default()
            },
            ..ConfigOverlay::default()
        };
        let config = BrokerConfig::default().with(flags).unwrap();
        assert_eq!(config.cluster.etcd, vec!["http://a:2379".to_string()]);
        assert_eq!(config.cluster.min_insync_replicas, 2);
        let reread = ConfigOverlay::from_toml(&config.to_toml()).unwrap();
        assert_eq!(BrokerConfig::default().with(reread).unwrap(), config);
        for bad in [
            "[cluster]\nreplica_lag_time_max_ms = 0\n",
            "[cluster]\nname = \"a/b\"\n",
            "[cluster]\nbroker_session_ttl_s = 1\n",
        ] {
            let overlay = ConfigOverlay::from_toml(bad).unwrap();
            let error = BrokerConfig::default()
                .with(overlay)
                .unwrap_err()
                .to_string();
            let key = bad.split(['\n', ' ']).nth(1).unwrap();
            assert!(error.contains(key), "{bad}: {error}");
        }
    }
}
