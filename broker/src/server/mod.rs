//! The data plane: what each shard runs. A shard opens the partitions it owns, takes its socket
//! of the shared native port (SO_REUSEPORT, bound by `Broker::start` before the shards start;
//! see `ports`), binds its own shard port, accepts connections, serves requests, and obeys the
//! control plane's messages (table updates, drain, close).

pub mod connection;
pub mod fetch;
pub mod follower;
pub mod groups;
pub mod handlers;
pub mod ports;
pub mod produce;
pub mod reassign;
pub mod replication;
pub mod throttle;
pub(crate) mod topic_admin;
pub mod trigger;

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use glommio::net::{TcpListener, TcpStream};
use glommio::{Latency, Shares};
use sluice_net::SpliceStats;
use sluice_shard::shard::FORWARDED_INFLIGHT_MAX_DEFAULT;
use sluice_shard::{
    PartitionRegistry, Shard, ShardContext, ShardControl, ShardId, ShardMetrics, ShardTable,
};
use sluice_storage::{LogCleaner, LogConfig};
use socket2::Socket;

use crate::config::BrokerConfig;
use crate::control::ControlClient;
use crate::groups::GroupManager;
use crate::kafka::KafkaShared;
use crate::replication::IsrClient;
use crate::BrokerError;
use follower::Followers;
use trigger::Trigger;

/// How often each shard runs log maintenance (time-based flush and roll, retention), in ms.
pub const MAINTENANCE_INTERVAL_MS: u64 = 1000;

/// Shares of each shard's log-cleaner task queue. Requests run in glommio's default queue
/// (1000 shares), so a busy shard gives the cleaner about a tenth of its CPU, and an idle one
/// all it wants.
const CLEANER_SHARES: usize = 100;

/// Pause after a failed accept (for example EMFILE) before trying again, in ms, so a persistent
/// error does not spin the executor.
const ACCEPT_RETRY_MS: u64 = 50;

/// How often a shard checks whether every shard's ports are known (startup only), and whether
/// its connections are done (shutdown only), in ms.
const STATE_POLL_MS: u64 = 5;

/// What every shard shares with the others and with the control and admin threads. Read-only
/// after startup except for the atomics.
pub struct ServerShared {
    /// The configuration.
    pub config: BrokerConfig,
    /// The partition log config before topic overrides.
    pub log_config: LogConfig,
    /// The cluster id reported in metadata.
    pub cluster_id: String,
    /// The bound shared native address.
    pub native_addr: SocketAddr,
    /// The host name reported in metadata.
    pub advertised_host: String,
    /// Every shard's bound port, set once all shards have bound (before any connection is
    /// accepted).
    pub shard_ports: OnceLock<Vec<u16>>,
    /// The shared native port's listening sockets, by shard index, bound before the shards
    /// started; each shard takes its own once at startup (the lock is never touched again).
    pub native_listeners: Mutex<Vec<Option<Socket>>>,
    /// Every shard's metrics, by shard id.
    pub metrics: Vec<Arc<ShardMetrics>>,
    /// Every shard's consumer-group metrics, by shard id.
    pub group_metrics: Vec<Arc<crate::groups::metrics::GroupMetrics>>,
    /// The control plane's queue.
    pub control: ControlClient,
    /// Connections open across all shards (bounded by `connections_max`). Touched only when a
    /// connection opens or closes, never per request.
    pub connections_open: AtomicUsize,
    /// The shard table every shard starts with (from the metadata store; empty in cluster
    /// mode, where the control plane sends the first table from etcd).
    pub initial_table: ShardTable,
    /// Cluster mode: where leaders send the ISR changes they propose. `None` in single-node
    /// mode.
    pub isr: Option<IsrClient>,
    /// Where each shard reports the outcome of its startup.
    pub startup: std::sync::mpsc::Sender<ShardStartup>,
    /// The Kafka protocol port; `None` when it is off.
    pub kafka: Option<KafkaShared>,
}

/// A shard's startup report.
#[derive(Debug)]
pub struct ShardStartup {
    /// The shard.
    pub shard: ShardId,
    /// Its own bound address, or why it could not start.
    pub result: Result<SocketAddr, String>,
}

/// The state of one shard's server. Lives on that shard only.
pub struct ShardServer {
    /// The shard's partitions and routing.
    pub shard: Rc<Shard>,
    /// What all shards share.
    pub shared: Arc<ServerShared>,
    /// Fired to stop accepting and reading new requests (drain).
    pub stop: Trigger,
    /// Fired to drop connections that did not finish within the drain bound.
    pub abort: Trigger,
    /// Cluster mode: the replica fetchers of the partitions this shard follows.
    pub followers: Followers,
    /// The group coordinators of the partitions of `__consumer_offsets` this shard leads.
    pub groups: Rc<GroupManager>,
    connections: Cell<usize>,
    splice_seen: Cell<SpliceStats>,
}

impl ShardServer {
    /// This shard's metrics.
    pub fn metrics(&self) -> &ShardMetrics {
        self.shard.metrics()
    }

    /// Folds the executor's splice counters into this shard's metrics (the splicer is shared
    /// by every connection of the shard, so the delta since the last look is this send's).
    pub fn account_splice(&self, stats: SpliceStats) {
        let seen = self.splice_seen.replace(stats);
        let metrics = self.metrics();
        metrics
            .bytes_spliced
            .add(stats.bytes_spliced.saturating_sub(seen.bytes_spliced));
        metrics
            .bytes_copied
            .add(stats.bytes_copied.saturating_sub(seen.bytes_copied));
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

fn glommio_listener(socket: Socket) -> TcpListener {
    // SAFETY: the descriptor is a bound, listening TCP socket we own; ownership moves to the
    // listener, which closes it on drop.
    unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) }
}

/// The main function of shard `context.id`: runs until the control plane sends `Close` (or its
/// inbox closes).
pub async fn run_shard(
    context: ShardContext,
    shared: Arc<ServerShared>,
) -> Result<(), BrokerError> {
    let ShardContext {
        id,
        shard_count,
        senders,
        receivers,
        mut control,
    } = context;
    let registry = PartitionRegistry::new(&shared.config.data_dir, shared.log_config.clone());
    let metrics = shared.metrics[id.index()].clone();
    let shard = Shard::new(
        id,
        shard_count,
        senders,
        registry,
        metrics,
        FORWARDED_INFLIGHT_MAX_DEFAULT,
    );
    let groups = GroupManager::new(
        &shared.config.groups,
        shared.group_metrics[id.index()].clone(),
    );
    shard.set_group_service(groups.clone());
    let _mesh = shard.serve_mesh(receivers);
    let listeners = match start_listening(&shard, &shared).await {
        Ok((listeners, own_addr)) => {
            let _ = shared.startup.send(ShardStartup {
                shard: id,
                result: Ok(own_addr),
            });
            listeners
        }
        Err(error) => {
            let _ = shared.startup.send(ShardStartup {
                shard: id,
                result: Err(error.to_string()),
            });
            let _ = shard.close().await;
            return Err(error);
        }
    };
    let throttle_bytes_per_second = throttle::shard_rate_bytes_per_second(
        shared.config.cluster.reassignment_throttle_bytes_per_second,
        shard.shard_count(),
    );
    let server = Rc::new(ShardServer {
        shard,
        shared,
        stop: Trigger::default(),
        abort: Trigger::default(),
        followers: Followers::new(throttle_bytes_per_second),
        groups,
        connections: Cell::new(0),
        splice_seen: Cell::new(SpliceStats::default()),
    });
    let _accepting = glommio::spawn_local(accept_all(server.clone(), listeners));
    crate::fault::arm_shard_panic(server.shard.id());
    server.groups.reconcile(&server.shard);
    let _maintenance = glommio::spawn_local(maintain(server.clone()));
    let _cleaning = start_cleaner(&server);
    let _group_metrics = glommio::spawn_local(refresh_group_metrics(server.clone()));
    let _replication = server
        .shared
        .isr
        .is_some()
        .then(|| glommio::spawn_local(replication::check_loop(server.clone())));
    match obey(&server, &mut control).await {
        Some(Ok(())) => Ok(()),
        Some(Err(reason)) => Err(BrokerError::Shutdown(reason)),
        // The control plane went away without closing us: close the logs anyway.
        None => close(&server).await.map_err(BrokerError::from),
    }
}

/// Serves the control plane's messages until `Close` (returning how closing went) or until the
/// inbox closes (`None`).
async fn obey(
    server: &Rc<ShardServer>,
    control: &mut sluice_shard::ControlReceiver,
) -> Option<Result<(), String>> {
    while let Some(message) = control.next().await {
        match message {
            ShardControl::ApplyTable { table, reply } => {
                let applied = server.shard.apply_table(table).await;
                if !server.stop.is_fired() {
                    server.followers.reconcile(server);
                    server.groups.reconcile(&server.shard);
                }
                let _ = reply.send(applied);
            }
            ShardControl::Drain { reply } => {
                server.followers.stop_all();
                // Drained in its own task so this loop keeps applying tables meanwhile: an
                // in-flight CreateTopics may be waiting for exactly that to finish.
                let draining = server.clone();
                glommio::spawn_local(async move {
                    drain(&draining).await;
                    let _ = reply.send(());
                })
                .detach();
            }
            ShardControl::Close { reply } => {
                let result = close(server).await;
                let outcome = result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|error| error.to_string());
                let _ = reply.send(result);
                return Some(outcome);
            }
        }
    }
    None
}

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireProtocol {
    Native,
    Kafka,
}

type Listeners = Vec<(TcpListener, WireProtocol)>;

/// Opens this shard's partitions (recovering them), takes its native-port socket and binds its
/// own port.
async fn start_listening(
    shard: &Rc<Shard>,
    shared: &ServerShared,
) -> Result<(Listeners, SocketAddr), BrokerError> {
    shard.apply_table(shared.initial_table.clone()).await?;
    let native = shared
        .native_listeners
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_mut(shard.id().index())
        .and_then(Option::take)
        .ok_or_else(|| BrokerError::Bind {
            addr: shared.native_addr,
            source: std::io::Error::other(format!(
                "no native-port socket was bound for {}",
                shard.id()
            )),
        })?;
    let (own_socket, own_addr) = ports::bind_shard_listener(
        &shared.config.shard_ports,
        shared.native_addr,
        shard.id().index(),
    )?;
    let mut listeners = vec![
        (glommio_listener(native), WireProtocol::Native),
        (glommio_listener(own_socket), WireProtocol::Native),
    ];
    if let Some(kafka) = &shared.kafka {
        let socket = kafka
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(shard.id().index())
            .and_then(Option::take)
            .ok_or_else(|| BrokerError::Bind {
                addr: kafka.addr,
                source: std::io::Error::other(format!(
                    "no Kafka-port socket was bound for {}",
                    shard.id()
                )),
            })?;
        listeners.push((glommio_listener(socket), WireProtocol::Kafka));
    }
    Ok((listeners, own_addr))
}

/// Accepts on every listener once all shards' ports are known, until the stop trigger fires.
async fn accept_all(server: Rc<ShardServer>, listeners: Listeners) {
    while server.shared.shard_ports.get().is_none() {
        if server.stop.is_fired() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(STATE_POLL_MS)).await;
    }
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(listener, protocol)| {
            glommio::spawn_local(accept_loop(server.clone(), listener, protocol))
        })
        .collect();
    for accepting in loops {
        accepting.await;
    }
}

async fn accept_loop(server: Rc<ShardServer>, listener: TcpListener, protocol: WireProtocol) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            server.stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => admit(&server, stream, protocol),
            Some(Err(error)) => {
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

/// Starts serving `stream` unless `connections_max` connections are open.
fn admit(server: &Rc<ShardServer>, stream: TcpStream, protocol: WireProtocol) {
    let metrics = server.metrics();
    let limit = server.shared.config.limits.connections_max;
    let open = server
        .shared
        .connections_open
        .fetch_add(1, Ordering::AcqRel);
    if open >= limit {
        server
            .shared
            .connections_open
            .fetch_sub(1, Ordering::AcqRel);
        metrics.connections_rejected.increment();
        tracing::warn!(limit, "refused a connection: connections_max reached");
        return;
    }
    metrics.connections_accepted.increment();
    metrics.connections_active.increment();
    server.connections.set(server.connections.get() + 1);
    // Answers go out as soon as they are written: with Nagle's algorithm a small answer waits
    // while an earlier one is unacknowledged, and the peer may hold its ACK for the delayed-ACK
    // timeout (40 ms on Linux).
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted connection");
    }
    let server = server.clone();
    glommio::spawn_local(async move {
        let serving: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = match protocol {
            WireProtocol::Native => Box::pin(connection::serve(server.clone(), stream)),
            WireProtocol::Kafka => {
                Box::pin(crate::kafka::connection::serve(server.clone(), stream))
            }
        };
        futures_lite::future::or(serving, server.abort.wait()).await;
        server
            .connections
            .set(server.connections.get().saturating_sub(1));
        server.metrics().connections_active.decrement();
        server
            .shared
            .connections_open
            .fetch_sub(1, Ordering::AcqRel);
    })
    .detach();
}

/// Sleeps for `duration`; false (at once) when the shard aborts its work meanwhile.
pub(crate) async fn sleep_unless_aborted(server: &ShardServer, duration: Duration) -> bool {
    futures_lite::future::or(
        async {
            glommio::timer::sleep(duration).await;
            true
        },
        async {
            server.abort.wait().await;
            false
        },
    )
    .await
}

/// How often each shard refreshes its group gauges, in ms (the lag every
/// `GROUP_LAG_REFRESH_TICKS` refreshes).
const GROUP_METRICS_REFRESH_MS: u64 = 1000;
const GROUP_LAG_REFRESH_TICKS: u64 = 5;

async fn refresh_group_metrics(server: Rc<ShardServer>) {
    let mut ticks = 0u64;
    while sleep_unless_aborted(&server, Duration::from_millis(GROUP_METRICS_REFRESH_MS)).await {
        server.groups.refresh_gauges();
        ticks += 1;
        if ticks.is_multiple_of(GROUP_LAG_REFRESH_TICKS) {
            server.groups.refresh_lag(&server.shard).await;
        }
    }
}

async fn maintain(server: Rc<ShardServer>) {
    while sleep_unless_aborted(&server, Duration::from_millis(MAINTENANCE_INTERVAL_MS)).await {
        server.shard.maintenance(now_ms()).await;
    }
}

/// Starts this shard's log cleaner in a task queue of its own with fewer shares than the
/// request path; `None` (logged) when it cannot start, which leaves compacted logs uncleaned
/// but everything else serving.
fn start_cleaner(server: &Rc<ShardServer>) -> Option<glommio::Task<()>> {
    let cleaner = server
        .shared
        .config
        .storage
        .cleaner_config()
        .map_err(|error| error.to_string())
        .and_then(|config| LogCleaner::new(config).map_err(|error| error.to_string()));
    let queue = glommio::executor().create_task_queue(
        Shares::Static(CLEANER_SHARES),
        Latency::NotImportant,
        "log-cleaner",
    );
    let started = cleaner.and_then(|cleaner| {
        glommio::spawn_local_into(clean_logs(server.clone(), cleaner), queue)
            .map_err(|error| error.to_string())
    });
    match started {
        Ok(task) => Some(task),
        Err(error) => {
            tracing::error!(shard = server.shard.id().0, %error, "log cleaner not started");
            None
        }
    }
}

/// One cleaning round after another while logs need it; the cleaner's backoff otherwise.
async fn clean_logs(server: Rc<ShardServer>, cleaner: LogCleaner) {
    let backoff = Duration::from_millis(cleaner.config().backoff_ms);
    loop {
        let progressed = server.shard.clean_dirtiest_log(&cleaner, now_ms()).await;
        let pause = if progressed { Duration::ZERO } else { backoff };
        if !sleep_unless_aborted(&server, pause).await {
            return;
        }
    }
}

/// Stops accepting and reading, lets in-flight requests finish for at most
/// `shutdown_drain_ms_max`, then drops the connections that are left.
async fn drain(server: &ShardServer) {
    server.stop.fire();
    let bound = Duration::from_millis(server.shared.config.limits.shutdown_drain_ms_max);
    let deadline = Instant::now() + bound;
    while server.connections.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(STATE_POLL_MS)).await;
    }
    if server.connections.get() > 0 {
        tracing::warn!(
            shard = server.shard.id().0,
            left = server.connections.get(),
            "drain bound reached; closing the remaining connections"
        );
    }
    server.abort.fire();
}

async fn close(server: &ShardServer) -> Result<(), sluice_shard::ShardError> {
    server.stop.fire();
    server.abort.fire();
    server.followers.stop_all();
    server.groups.stop_all();
    let result = server.shard.close().await;
    if let Err(error) = &result {
        tracing::error!(shard = server.shard.id().0, %error, "closing logs failed");
    }
    result
}
