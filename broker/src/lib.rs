//! The Sluice broker: configuration, the metadata store (embedded, or etcd in cluster mode),
//! the control plane, replication, the per-shard servers, and the admin HTTP endpoint.
//! [`Broker::start`] runs a whole broker in this process (the `sluice broker` command, tests,
//! and the load generator's embedded mode all use it): single-node by default, a member of a
//! replicated cluster when `[cluster] etcd` is set.
//!
//! Threads: one glommio executor per shard (the data plane, replica fetchers included), one
//! control-plane thread (metadata, topic changes, and in cluster mode applying each cluster
//! state), one admin HTTP thread, and in cluster mode the etcd control plane's thread (tokio),
//! a watcher and the ISR worker. They talk only by messages; the admin thread reads atomics.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
mod fault;
pub mod groups;
pub mod kafka;
pub mod metadata;
pub mod mounts;
pub mod replication;
pub mod server;

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_channel::oneshot;
use sluice_shard::{
    usable_cpus, ShardControl, ShardError, ShardId, ShardMetrics, ShardPlacement, ShardSet,
    ShardSetConfig,
};

pub use config::{BrokerConfig, ConfigError, ConfigOverlay};
pub use metadata::{EmbeddedMetadataStore, MetadataError, MetadataStore, TopicRecord};

use admin::{AdminServer, ClusterMetricsSlot};
use cluster::{ClusterConfig, ClusterError, ClusterHandle};
use control::{table_from_store, ControlClient, ControlPlane, ControlRequest};
use groups::metrics::GroupMetrics;
use replication::{
    spawn_isr_worker, spawn_watcher, ClusterControl, ClusterMetrics, IsrCommand,
    ISR_QUEUE_DEPTH_MAX,
};
use server::ports::bind_native_listeners;
use server::{ServerShared, ShardStartup};
use sluice_shard::ShardTable;

/// Capacity of each shard's control inbox, messages.
pub const SHARD_CONTROL_QUEUE_DEPTH_MAX: usize = 16;

/// The lock file that keeps two brokers off one data directory.
pub const DATA_DIR_LOCK_FILE: &str = ".lock";

/// How often startup checks whether a shard died before reporting, in ms.
const STARTUP_POLL_MS: u64 = 100;

/// Errors of starting, running and stopping a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A shard failed.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// Cluster mode: etcd or the cluster control plane failed (unreachable at start, node id
    /// in use, ...).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be created or locked.
    #[error("data directory {path}: {operation} failed: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another broker holds the data directory.
    #[error("data directory {0} is in use by another broker")]
    DataDirLocked(PathBuf),
    /// A helper thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// One or more shards could not start.
    #[error("broker startup failed: {0}")]
    Startup(String),
    /// Shutting down did not complete cleanly.
    #[error("broker shutdown: {0}")]
    Shutdown(String),
}

/// Starts brokers.
pub struct Broker;

/// A running broker. Dropping it shuts the broker down (as [`BrokerHandle::shutdown`] does,
/// ignoring errors).
pub struct BrokerHandle {
    native_addr: SocketAddr,
    kafka_addr: Option<SocketAddr>,
    kafka_metrics: Vec<Arc<kafka::KafkaMetrics>>,
    shard_addrs: Vec<SocketAddr>,
    metrics: Vec<Arc<ShardMetrics>>,
    group_metrics: Vec<Arc<GroupMetrics>>,
    running: Option<Running>,
}

struct Running {
    shards: ShardSet<Result<(), BrokerError>>,
    control: ControlClient,
    control_thread: JoinHandle<()>,
    admin: Option<AdminServer>,
    _lock: File,
}

/// Locks `<data_dir>/.lock` (flock, released by the kernel when the process dies, so a killed
/// broker never leaves a stale lock).
fn lock_data_dir(data_dir: &std::path::Path) -> Result<File, BrokerError> {
    let data_dir_error = |operation| {
        let path = data_dir.to_path_buf();
        move |source| BrokerError::DataDir {
            path,
            operation,
            source,
        }
    };
    std::fs::create_dir_all(data_dir).map_err(data_dir_error("create"))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(DATA_DIR_LOCK_FILE))
        .map_err(data_dir_error("open lock file"))?;
    // SAFETY: flock on a descriptor we own.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(BrokerError::DataDirLocked(data_dir.to_path_buf()));
        }
        return Err(data_dir_error("lock")(error));
    }
    Ok(file)
}

fn advertised_host(config: &BrokerConfig, native_addr: SocketAddr) -> String {
    if let Some(host) = &config.advertised_host {
        return host.clone();
    }
    if !native_addr.ip().is_unspecified() {
        return native_addr.ip().to_string();
    }
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most buffer.len() bytes into the buffer.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let length = buffer.iter().position(|byte| *byte == 0).unwrap_or(0);
    if result == 0 && length > 0 {
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    } else {
        "localhost".to_string()
    }
}

/// Binds the Kafka port at `addr` (one SO_REUSEPORT socket per shard, refused when another
/// process listens on it, as the native port) and says what the shards share about it: where
/// clients are told to connect (`kafka_advertised_addr`, or the advertised host with the bound
/// port), the APIs served, and a metrics block per shard.
fn kafka_shared(
    config: &BrokerConfig,
    addr: SocketAddr,
    advertised_host: &str,
    shard_count: usize,
) -> Result<kafka::KafkaShared, BrokerError> {
    let listeners = bind_native_listeners(addr, shard_count)?;
    let (host, port) = match &config.kafka_advertised_addr {
        Some(advertised) => config::split_host_port(advertised).map_err(|reason| {
            BrokerError::Config(ConfigError::Invalid {
                key: "kafka_advertised_addr",
                value: advertised.clone(),
                reason,
            })
        })?,
        None => (advertised_host.to_string(), listeners.addr.port()),
    };
    let apis = sluice_kafka::ApiTable::with_groups();
    let metrics = (0..shard_count)
        .map(|index| {
            let id = ShardId(u32::try_from(index).unwrap_or(u32::MAX));
            Arc::new(kafka::KafkaMetrics::new(id, &apis))
        })
        .collect();
    Ok(kafka::KafkaShared {
        addr: listeners.addr,
        listeners: std::sync::Mutex::new(listeners.sockets.into_iter().map(Some).collect()),
        advertised_host: host,
        advertised_port: port,
        apis,
        metrics,
    })
}

/// The metadata backend the config asks for, the shard table the shards start with, and the
/// cluster id.
fn choose_backend(
    config: &BrokerConfig,
    shard_count: usize,
) -> Result<(Backend, ShardTable, String), BrokerError> {
    if config.cluster.enabled() {
        return Ok((
            Backend::Cluster,
            ShardTable::default(),
            config.cluster.name.clone(),
        ));
    }
    let store = EmbeddedMetadataStore::open(&config.data_dir)?;
    let table = table_from_store(&store, u32::try_from(shard_count).unwrap_or(u32::MAX));
    let cluster_id = store.cluster_id().to_string();
    Ok((Backend::Embedded(store), table, cluster_id))
}

/// Every shard's metrics and group metrics, by shard id.
fn shard_metrics(shard_count: usize) -> (Vec<Arc<ShardMetrics>>, Vec<Arc<GroupMetrics>>) {
    (0..shard_count)
        .map(|index| {
            let id = u32::try_from(index).unwrap_or(u32::MAX);
            (
                Arc::new(ShardMetrics::new(ShardId(id))),
                Arc::new(GroupMetrics::new(id)),
            )
        })
        .unzip()
}

/// Starts the admin endpoint when the config asks for one.
fn start_admin(
    config: &BrokerConfig,
    metrics: &[Arc<ShardMetrics>],
    group_metrics: &[Arc<GroupMetrics>],
    kafka_metrics: &[Arc<kafka::KafkaMetrics>],
    cluster_metrics: &ClusterMetricsSlot,
) -> Result<Option<AdminServer>, BrokerError> {
    let Some(addr) = config.admin_addr else {
        return Ok(None);
    };
    AdminServer::start(
        addr,
        metrics.to_vec(),
        group_metrics.to_vec(),
        kafka_metrics.to_vec(),
        cluster_metrics.clone(),
    )
    .map(Some)
    .map_err(|source| BrokerError::Bind { addr, source })
}

/// The Kafka port when the config asks for one, and its metrics per shard (empty without it).
fn kafka_port(
    config: &BrokerConfig,
    advertised_host: &str,
    shard_count: usize,
) -> Result<(Option<kafka::KafkaShared>, Vec<Arc<kafka::KafkaMetrics>>), BrokerError> {
    let Some(addr) = config.kafka_addr else {
        return Ok((None, Vec::new()));
    };
    let kafka = kafka_shared(config, addr, advertised_host, shard_count)?;
    let metrics = kafka.metrics.clone();
    Ok((Some(kafka), metrics))
}

/// The queue of ISR changes the shards propose to the control plane (cluster mode only).
fn isr_channel(
    backend: &Backend,
) -> (
    Option<std::sync::mpsc::SyncSender<IsrCommand>>,
    Option<std::sync::mpsc::Receiver<IsrCommand>>,
) {
    match backend {
        Backend::Cluster => {
            let (sender, receiver) = std::sync::mpsc::sync_channel(ISR_QUEUE_DEPTH_MAX);
            (Some(sender), Some(receiver))
        }
        Backend::Embedded(_) => (None, None),
    }
}

/// Where the metadata lives.
enum Backend {
    /// Single node: `<data_dir>/__cluster/metadata.json`.
    Embedded(EmbeddedMetadataStore),
    /// Cluster mode: etcd, joined once the shards are up.
    Cluster,
}

impl Broker {
    /// Starts a broker: opens (recovering) every partition, binds every port, and returns once
    /// all shards accept connections. In cluster mode (`[cluster] etcd` set) it also joins the
    /// cluster in etcd (failing with a clear error when etcd is unreachable) and applies the
    /// cluster state before accepting connections.
    pub fn start(config: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
        config.validate()?;
        let log_config = config.storage.log_config()?;
        let lock = lock_data_dir(&config.data_dir)?;
        mounts::warn_if_online_discard(&config.data_dir);
        let shard_count = config.shard_count();
        let (backend, table, cluster_id) = choose_backend(&config, shard_count)?;
        let native = bind_native_listeners(config.native_addr, shard_count)?;
        let native_addr = native.addr;
        let (metrics, group_metrics) = shard_metrics(shard_count);
        let cluster_metrics: ClusterMetricsSlot = Arc::new(OnceLock::new());
        let advertised = advertised_host(&config, native_addr);
        let (kafka, kafka_metrics) = kafka_port(&config, &advertised, shard_count)?;
        let admin = start_admin(
            &config,
            &metrics,
            &group_metrics,
            &kafka_metrics,
            &cluster_metrics,
        )?;
        let kafka_addr = kafka.as_ref().map(|kafka| kafka.addr);
        let (control, control_requests) = ControlPlane::channel();
        let (isr, isr_requests) = isr_channel(&backend);
        let (startup, startup_reports) = std::sync::mpsc::channel();
        let shared = Arc::new(ServerShared {
            advertised_host: advertised,
            kafka,
            log_config,
            cluster_id,
            native_addr,
            shard_ports: OnceLock::new(),
            native_listeners: std::sync::Mutex::new(native.sockets.into_iter().map(Some).collect()),
            metrics: metrics.clone(),
            group_metrics: group_metrics.clone(),
            control: control.clone(),
            connections_open: AtomicUsize::new(0),
            initial_table: table,
            isr,
            startup,
            config: config.clone(),
        });
        let launched = match (backend, isr_requests) {
            (Backend::Embedded(store), _) => {
                launch(&config, shared, startup_reports, store, control_requests)
            }
            (Backend::Cluster, isr_requests) => {
                let joining = Joining {
                    control_requests,
                    isr_requests,
                    admin_addr: admin.as_ref().map(AdminServer::addr),
                    metrics: cluster_metrics,
                };
                launch_cluster(&config, shared, startup_reports, joining)
            }
        };
        let (shards, shard_addrs, control_thread) = match launched {
            Ok(launched) => launched,
            Err(error) => {
                if let Some(admin) = admin {
                    admin.stop();
                }
                return Err(error);
            }
        };
        tracing::info!(%native_addr, ?kafka_addr, shards = shard_count, ?shard_addrs, admin = ?admin.as_ref().map(AdminServer::addr), cluster = config.cluster.enabled(), "broker started");
        Ok(BrokerHandle {
            native_addr,
            kafka_addr,
            kafka_metrics,
            shard_addrs,
            metrics,
            group_metrics,
            running: Some(Running {
                shards,
                control,
                control_thread,
                admin,
                _lock: lock,
            }),
        })
    }
}

type Launched = (
    ShardSet<Result<(), BrokerError>>,
    Vec<SocketAddr>,
    JoinHandle<()>,
);

/// What joining a cluster needs besides the shards.
struct Joining {
    control_requests: std::sync::mpsc::Receiver<ControlRequest>,
    isr_requests: Option<std::sync::mpsc::Receiver<IsrCommand>>,
    admin_addr: Option<SocketAddr>,
    metrics: ClusterMetricsSlot,
}

/// Cluster mode: starts the shards (with no partitions), registers in etcd with their ports,
/// applies the cluster state (opening this broker's replicas in their roles), and only then
/// lets the shards accept connections. On failure, whatever was started is stopped again (and
/// the lease given back).
fn launch_cluster(
    config: &BrokerConfig,
    shared: Arc<ServerShared>,
    startup_reports: std::sync::mpsc::Receiver<ShardStartup>,
    joining: Joining,
) -> Result<Launched, BrokerError> {
    let (shards, shard_addrs) = start_and_await_shards(config, &shared, &startup_reports)?;
    let mut cluster_config = ClusterConfig::new(
        config.cluster.etcd.clone(),
        &config.cluster.name,
        config.node_id,
        &shared.advertised_host,
    );
    cluster_config.native_port = shared.native_addr.port();
    cluster_config.shard_ports = shard_addrs.iter().map(SocketAddr::port).collect();
    cluster_config.admin_addr = joining.admin_addr.map(|addr| addr.to_string());
    cluster_config.kafka_port = shared.kafka.as_ref().map(|kafka| kafka.advertised_port);
    cluster_config.broker_session_ttl_s = config.cluster.broker_session_ttl_s;
    cluster_config.auto_leader_rebalance_enable = config.cluster.auto_leader_rebalance_enable;
    cluster_config.leader_imbalance_check_interval_ms =
        config.cluster.leader_imbalance_check_interval_ms;
    cluster_config.leader_imbalance_per_broker_percentage =
        config.cluster.leader_imbalance_per_broker_percentage;
    let handle = match ClusterHandle::start(cluster_config) {
        Ok(handle) => handle,
        Err(error) => {
            let _ = close_shards(shards);
            return Err(BrokerError::Cluster(error));
        }
    };
    let ports = shard_addrs.iter().map(SocketAddr::port).collect();
    match join_cluster(config, &shared, &shards, &handle, joining, ports) {
        Ok(control_thread) => Ok((shards, shard_addrs, control_thread)),
        Err(error) => {
            let _ = handle.shutdown();
            let _ = close_shards(shards);
            Err(error)
        }
    }
}

/// Applies the first cluster state, opens the shards' ports, and starts the control thread,
/// the watcher and the ISR worker.
fn join_cluster(
    config: &BrokerConfig,
    shared: &ServerShared,
    shards: &ShardSet<Result<(), BrokerError>>,
    handle: &ClusterHandle,
    joining: Joining,
    ports: Vec<u16>,
) -> Result<JoinHandle<()>, BrokerError> {
    let metrics = Arc::new(ClusterMetrics::new(handle.clone()));
    let _ = joining.metrics.set(metrics.clone());
    let control_config = replication::control::ClusterControlConfig {
        node_id: config.node_id,
        partitions_max: config.limits.partitions_max,
        base_log_config: shared.log_config.clone(),
        min_insync_replicas_default: usize::try_from(config.cluster.min_insync_replicas)
            .unwrap_or(1),
    };
    let mut plane = ClusterControl::new(
        handle.clone(),
        shards.controls().to_vec(),
        control_config,
        metrics,
    );
    // Subscribed before the first state is applied, so a change in between is not missed (it
    // queues a ClusterChanged the control thread serves once it runs).
    let watcher = spawn_watcher(handle, shared.control.clone(), plane.change_queued())?;
    plane
        .apply_current()
        .map_err(|reason| BrokerError::Startup(format!("applying the cluster state: {reason}")))?;
    let _ = shared.shard_ports.set(ports);
    let thread_error = |what| move |source| BrokerError::Thread { what, source };
    let (Some(requests), Some(isr)) = (joining.isr_requests, shared.isr.clone()) else {
        return Err(BrokerError::Startup(
            "cluster mode without an ISR queue".to_string(),
        ));
    };
    let worker = spawn_isr_worker(handle.clone(), requests).map_err(thread_error("isr"))?;
    plane.adopt_helpers(vec![watcher, worker], isr);
    plane
        .spawn(joining.control_requests)
        .map_err(thread_error("control"))
}
/// Starts the shards, waits until each has opened its partitions and bound its ports, then
/// starts the control plane. On failure, whatever was started is stopped again.
fn launch(
    config: &BrokerConfig,
    shared: Arc<ServerShared>,
    startup_reports: std::sync::mpsc::Receiver<ShardStartup>,
    store: EmbeddedMetadataStore,
    control_requests: std::sync::mpsc::Receiver<ControlRequest>,
) -> Result<Launched, BrokerError> {
    let (shards, shard_addrs) = start_and_await_shards(config, &shared, &startup_reports)?;
    let _ = shared
        .shard_ports
        .set(shard_addrs.iter().map(SocketAddr::port).collect());
    let plane = ControlPlane::new(
        Box::new(store),
        config.data_dir.clone(),
        shards.controls().to_vec(),
        config.limits.partitions_max,
        shared.log_config.clone(),
    );
    match plane.spawn(control_requests) {
        Ok(control_thread) => Ok((shards, shard_addrs, control_thread)),
        Err(source) => {
            let _ = close_shards(shards);
            Err(BrokerError::Thread {
                what: "control",
                source,
            })
        }
    }
}

/// The broker's shard executors, each ending with its server's result.
type Shards = ShardSet<Result<(), BrokerError>>;

/// Starts one shard per configured core and waits until each listens; closes them all again
/// when one fails to start.
fn start_and_await_shards(
    config: &BrokerConfig,
    shared: &Arc<ServerShared>,
    startup_reports: &std::sync::mpsc::Receiver<ShardStartup>,
) -> Result<(Shards, Vec<SocketAddr>), BrokerError> {
    let shard_count = shared.metrics.len();
    let shards = start_shards(config, shard_count, shared.clone())?;
    match await_startup(&shards, shard_count, startup_reports) {
        Ok(addrs) => Ok((shards, addrs)),
        Err(reason) => {
            let _ = close_shards(shards);
            Err(BrokerError::Startup(reason))
        }
    }
}

fn start_shards(
    config: &BrokerConfig,
    shard_count: usize,
    shared: Arc<ServerShared>,
) -> Result<ShardSet<Result<(), BrokerError>>, BrokerError> {
    let placement = if config.pin {
        ShardPlacement::Pinned(config.cpus.clone().unwrap_or_else(usable_cpus))
    } else {
        ShardPlacement::Unbound
    };
    let set_config = ShardSetConfig {
        shard_count,
        placement,
        mesh_queue_depth_max: config.limits.mesh_queue_depth_max,
        control_queue_depth_max: SHARD_CONTROL_QUEUE_DEPTH_MAX,
        name: "sluice-shard".to_string(),
    };
    Ok(ShardSet::start(set_config, move |context| {
        server::run_shard(context, shared.clone())
    })?)
}

/// Waits until every shard reported its startup; returns each shard's own address.
fn await_startup(
    shards: &ShardSet<Result<(), BrokerError>>,
    shard_count: usize,
    reports: &std::sync::mpsc::Receiver<ShardStartup>,
) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<Option<SocketAddr>> = vec![None; shard_count];
    let mut failures = Vec::new();
    let mut reported = 0;
    while reported < shard_count {
        match reports.recv_timeout(Duration::from_millis(STARTUP_POLL_MS)) {
            Ok(report) => {
                reported += 1;
                match report.result {
                    Ok(addr) => addrs[report.shard.index()] = Some(addr),
                    Err(reason) => failures.push(format!("{}: {reason}", report.shard)),
                }
            }
            Err(_) if shards.any_finished() => {
                failures.push("a shard stopped before reporting its startup".to_string());
                break;
            }
            Err(_) => {}
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    Ok(addrs.into_iter().flatten().collect())
}

/// Sends `message` (made per shard) to every shard, then waits for every answer.
fn broadcast<T>(
    shards: &ShardSet<Result<(), BrokerError>>,
    make: impl Fn(oneshot::Sender<T>) -> ShardControl,
) -> Vec<Option<T>> {
    let answers: Vec<_> = shards
        .controls()
        .iter()
        .map(|control| {
            let (reply, answer) = oneshot::channel();
            control.send_blocking(make(reply)).ok().map(|()| answer)
        })
        .collect();
    shards
        .controls()
        .iter()
        .zip(answers)
        .map(|(control, answer)| answer.and_then(|answer| control.wait_reply(answer)))
        .collect()
}

/// Closes every shard's logs and joins the shards, returning the first error.
fn close_shards(shards: ShardSet<Result<(), BrokerError>>) -> Result<(), BrokerError> {
    let closed = broadcast(&shards, |reply| ShardControl::Close { reply });
    let mut first_error = None;
    for answer in closed.into_iter().flatten() {
        if let Err(error) = answer {
            first_error.get_or_insert(BrokerError::Shard(error));
        }
    }
    for result in shards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(error) => {
                first_error.get_or_insert(BrokerError::Shard(error));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

impl BrokerHandle {
    /// The shared native address (any shard answers).
    pub fn native_addr(&self) -> SocketAddr {
        self.native_addr
    }

    /// The Kafka protocol address, when the Kafka port is on.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka_addr
    }

    /// Each shard's Kafka metrics, by shard id (empty when the Kafka port is off).
    pub fn kafka_metrics(&self) -> Vec<Arc<kafka::KafkaMetrics>> {
        self.kafka_metrics.clone()
    }

    /// Each shard's own native address, by shard id.
    pub fn shard_addrs(&self) -> Vec<SocketAddr> {
        self.shard_addrs.clone()
    }

    /// The admin HTTP address, when the endpoint is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.running
            .as_ref()
            .and_then(|running| running.admin.as_ref().map(AdminServer::addr))
    }

    /// Every shard's metrics, by shard id.
    pub fn metrics(&self) -> &[Arc<ShardMetrics>] {
        &self.metrics
    }

    /// Every shard's consumer-group metrics, by shard id.
    pub fn group_metrics(&self) -> &[Arc<GroupMetrics>] {
        &self.group_metrics
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests (bounded by
    /// `shutdown_drain_ms_max`), stop the control plane, flush and close every log (writing the
    /// clean-shutdown markers), join every thread.
    pub fn shutdown(mut self) -> Result<(), BrokerError> {
        self.stop()
    }

    /// The part of the broker that stopped on its own while the broker runs, if any: a shard
    /// whose thread ended (a fatal error or a panic) or the control thread. Such a broker can
    /// no longer serve every partition it leads, so its owner should shut it down and exit:
    /// the cluster then fails its partitions over, and a restart recovers its logs.
    pub fn stopped_part(&self) -> Option<String> {
        let running = self.running.as_ref()?;
        if let Some(shard) = running.shards.first_finished() {
            return Some(shard.to_string());
        }
        running
            .control_thread
            .is_finished()
            .then(|| "the control thread".to_string())
    }

    fn stop(&mut self) -> Result<(), BrokerError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        broadcast(&running.shards, |reply| ShardControl::Drain { reply });
        let _ = running.control.send_blocking(ControlRequest::Stop);
        let _ = running.control_thread.join();
        let result = close_shards(running.shards);
        if let Some(admin) = running.admin {
            admin.stop();
        }
        tracing::info!(native_addr = %self.native_addr, "broker stopped");
        result
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "broker shutdown failed");
        }
    }
}
