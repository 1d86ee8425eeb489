//! The in-process single-node broker of `--embedded` runs, on a temporary data directory.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_broker::config::{BrokerConfig, DurabilitySetting, WriteModeSetting};
use sluice_broker::{Broker, BrokerHandle};

use crate::error::LoadgenError;
use crate::report::BrokerInfo;

/// How the embedded broker is set up.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// Shards (cores) it runs; `None` = one per usable CPU.
    pub shards: Option<usize>,
    /// CPUs to pin its shards to; `None` = unpinned, so the OS balances it with the load
    /// generator's executors.
    pub cpus: Option<Vec<usize>>,
    /// Storage write mode; `None` = the broker's default.
    pub write_mode: Option<WriteModeSetting>,
    /// Longest a written byte may wait for fsync, in ms; `None` = the broker's default.
    pub flush_ms: Option<u64>,
    /// Durability; `None` = the broker's default.
    pub durability: Option<DurabilitySetting>,
    /// Keep the data directory after the run (its path is printed).
    pub keep_data: bool,
}

/// A running embedded broker and its temporary data directory.
pub struct EmbeddedBroker {
    handle: Option<BrokerHandle>,
    data_dir: Option<tempfile::TempDir>,
    keep_data: bool,
    native_addr: SocketAddr,
    kafka_addr: Option<SocketAddr>,
    info: BrokerInfo,
}

impl EmbeddedBroker {
    /// Starts a single-node broker on 127.0.0.1 with OS-chosen ports and a fresh data directory.
    pub fn start(options: &EmbeddedOptions) -> Result<EmbeddedBroker, LoadgenError> {
        let data_dir = tempfile::Builder::new()
            .prefix("sluice-loadgen-")
            .tempdir()
            .map_err(|source| LoadgenError::Io {
                operation: "create the embedded broker's data directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let config = broker_config(options, data_dir.path().join("data"));
        let info = broker_info(&config, options);
        let handle = Broker::start(config).map_err(|error| LoadgenError::EmbeddedBroker {
            operation: "start",
            message: error.to_string(),
        })?;
        let native_addr = handle.native_addr();
        let kafka_addr = handle.kafka_addr();
        let info = BrokerInfo {
            bootstrap: native_addr.to_string(),
            ..info
        };
        Ok(EmbeddedBroker {
            handle: Some(handle),
            data_dir: Some(data_dir),
            keep_data: options.keep_data,
            native_addr,
            kafka_addr,
            info,
        })
    }

    /// The address clients bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.native_addr.to_string()
    }

    /// The address Kafka clients bootstrap from (the broker binds an OS-picked Kafka port).
    pub fn kafka_bootstrap(&self) -> Option<String> {
        self.kafka_addr.map(|addr| addr.to_string())
    }

    /// The part of the broker that stopped on its own (a shard that panicked), if any.
    pub fn stopped_part(&self) -> Option<String> {
        self.handle.as_ref()?.stopped_part()
    }

    /// What the report says about this broker.
    pub fn info(&self) -> BrokerInfo {
        self.info.clone()
    }

    /// Shuts the broker down gracefully and removes its data directory unless asked to keep it;
    /// returns the kept directory's path.
    pub fn shutdown(mut self) -> Result<Option<PathBuf>, LoadgenError> {
        let result = match self.handle.take() {
            Some(handle) => handle
                .shutdown()
                .map_err(|error| LoadgenError::EmbeddedBroker {
                    operation: "shutdown",
                    message: error.to_string(),
                }),
            None => Ok(()),
        };
        let kept = self.release_data_dir();
        result.map(|()| kept)
    }

    fn release_data_dir(&mut self) -> Option<PathBuf> {
        let data_dir = self.data_dir.take()?;
        if self.keep_data {
            return Some(data_dir.keep());
        }
        if let Err(error) = data_dir.close() {
            tracing::warn!("cannot remove the embedded broker's data directory: {error}");
        }
        None
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.shutdown();
        }
        self.release_data_dir();
    }
}

fn broker_config(options: &EmbeddedOptions, data_dir: PathBuf) -> BrokerConfig {
    let mut config = BrokerConfig {
        data_dir,
        native_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_addr: None,
        // An OS-picked Kafka port, so embedded runs (and tests) never take 9092; the Kafka
        // driver connects to whatever port was bound.
        kafka_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        shards: options.shards.unwrap_or(0),
        cpus: options.cpus.clone(),
        pin: options.cpus.is_some(),
        ..BrokerConfig::default()
    };
    if let Some(write_mode) = options.write_mode {
        config.storage.write_mode = write_mode;
    }
    if let Some(flush_ms) = options.flush_ms {
        config.storage.flush_ms_max = flush_ms;
    }
    if let Some(durability) = options.durability {
        config.storage.durability = durability;
    }
    // Every consumer of a run starts at once, so the first rebalance of a subscription's group
    // need not wait Kafka's 3 s for stragglers (Kafka's own test setups use 0 too).
    config.groups.initial_rebalance_delay_ms = EMBEDDED_INITIAL_REBALANCE_DELAY_MS;
    config
}

/// The embedded broker's `initial_rebalance_delay_ms`.
pub const EMBEDDED_INITIAL_REBALANCE_DELAY_MS: u64 = 100;

fn broker_info(config: &BrokerConfig, options: &EmbeddedOptions) -> BrokerInfo {
    let storage = &config.storage;
    let (write_mode, written) = match storage.write_mode {
        WriteModeSetting::Buffered => ("buffered", "written to the page cache"),
        WriteModeSetting::Direct => ("direct", "written to the device with O_DIRECT"),
    };
    let mut durability = match storage.durability {
        DurabilitySetting::Durable => {
            format!("durable: acknowledged and visible once {written} and fsynced (group commit)")
        }
        DurabilitySetting::Interval => format!(
            "interval: acknowledged once {written}; fsync every {} ms or {} bytes, whichever \
             comes first",
            storage.flush_ms_max, storage.flush_bytes_max
        ),
    };
    if let Some(mount) = sluice_broker::mounts::online_discard_mount(&config.data_dir) {
        let _ = write!(
            durability,
            "; its filesystem ({} on {}) discards online, so deleting segments slows appends \
             (README, Running a broker)",
            mount.mount_point.display(),
            mount.source
        );
    }
    BrokerInfo {
        mode: "embedded".to_string(),
        bootstrap: String::new(),
        shards: Some(config.shard_count()),
        cpus: options.cpus.clone(),
        write_mode: Some(write_mode.to_string()),
        durability: Some(durability),
    }
}
