//! [`ClusterHandle`]: what the broker holds to use the control plane. It lives on any thread
//! (Send + Sync + Clone); the control plane itself runs on its own thread with a tokio
//! current-thread runtime, and the handle talks to it with a bounded command queue.
//!
//! Seeing changes, from three kinds of code:
//! - any thread: [`ClusterHandle::snapshot`] (an `Arc`, cheap) and [`ClusterHandle::changes`]
//!   (a counter that goes up with every new snapshot or connection change);
//! - std threads (tests, admin, the broker's control thread): [`ClusterHandle::wait_for`], a
//!   condition-variable wait with a timeout;
//! - glommio shards: [`ClusterSubscription`], built on a futures-channel bounded mpsc, so it
//!   can be awaited on any executor; one pending notification stands for any number of
//!   changes, and the subscriber always reads the newest snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::StreamExt as _;

use super::preferred::PartitionElection;
use super::reassign::ReassignRequest;
use super::session::ControlPlane;
use super::state::{ClusterState, PartitionEntry, PartitionState, TopicAssignment};
use super::{ClusterConfig, ClusterError};

/// Commands queued for the control plane at most; a caller beyond it blocks until there is room.
pub const COMMAND_QUEUE_DEPTH_MAX: usize = 64;

/// Subscribers kept at most; a subscribe beyond it is refused (a leak, not a real need: one per
/// shard plus a few for the admin side is the expected count).
pub const SUBSCRIBERS_MAX: usize = 1024;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name (`[a-zA-Z0-9._-]{1,249}`).
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition (at most the live broker count).
    pub replication_factor: i16,
    /// Configuration overrides.
    pub configs: BTreeMap<String, String>,
}

/// What a partition state change is based on: the leader epoch and the key's mod_revision the
/// caller read. A write based on anything older is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionVersion {
    /// The leader epoch the caller holds.
    pub leader_epoch: i32,
    /// The mod_revision of the partition key the caller read.
    pub mod_revision: i64,
}

impl PartitionEntry {
    /// The version a change of this state is based on.
    pub fn version(&self) -> PartitionVersion {
        PartitionVersion {
            leader_epoch: self.state.leader_epoch,
            mod_revision: self.mod_revision,
        }
    }
}

/// The reply side of a command: a one-slot std channel, so the caller can wait with a timeout
/// and the control plane never blocks sending.
pub(crate) type Reply<T> = SyncSender<Result<T, ClusterError>>;

/// A request for the control plane.
pub(crate) enum Command {
    CreateTopic {
        spec: TopicSpec,
        reply: Reply<TopicAssignment>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<()>,
    },
    UpdateIsr {
        topic: String,
        partition: i32,
        isr: Vec<i32>,
        expected: PartitionVersion,
        added_broker_epochs: Vec<(i32, i64)>,
        reply: Reply<PartitionState>,
    },
    ReserveProducerIds {
        count: i64,
        reply: Reply<i64>,
    },
    Reassign {
        request: ReassignRequest,
        reply: Reply<()>,
    },
    ElectLeaders {
        topic: Option<String>,
        reply: Reply<Vec<PartitionElection>>,
    },
    AddPartitions {
        name: String,
        count: i32,
        reply: Reply<TopicAssignment>,
    },
    SetTopicConfigs {
        name: String,
        expected: BTreeMap<String, String>,
        next: BTreeMap<String, String>,
        reply: Reply<()>,
    },
    /// Stop; `revoke` gives the lease back so the others see this broker leave at once,
    /// otherwise the registration lapses after the TTL as if the process had died.
    Shutdown {
        revoke: bool,
        reply: Reply<()>,
    },
}

impl Command {
    /// The command's name, for errors.
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Command::CreateTopic { .. } => "create topic",
            Command::DeleteTopic { .. } => "delete topic",
            Command::UpdateIsr { .. } => "update isr",
            Command::ReserveProducerIds { .. } => "reserve producer ids",
            Command::Reassign { .. } => "reassign partition",
            Command::ElectLeaders { .. } => "elect leaders",
            Command::AddPartitions { .. } => "add partitions",
            Command::SetTopicConfigs { .. } => "alter topic configs",
            Command::Shutdown { .. } => "shutdown",
        }
    }

    /// Answers the command with `error` (used while disconnected).
    pub(crate) fn fail(self, error: ClusterError) {
        // A caller that gave up waiting has dropped its receiver; nobody is left to tell.
        match self {
            Command::CreateTopic { reply, .. } => drop(reply.try_send(Err(error))),
            Command::DeleteTopic { reply, .. } => drop(reply.try_send(Err(error))),
            Command::UpdateIsr { reply, .. } => drop(reply.try_send(Err(error))),
            Command::ReserveProducerIds { reply, .. } => drop(reply.try_send(Err(error))),
            Command::Reassign { reply, .. } => drop(reply.try_send(Err(error))),
            Command::ElectLeaders { reply, .. } => drop(reply.try_send(Err(error))),
            Command::AddPartitions { reply, .. } => drop(reply.try_send(Err(error))),
            Command::SetTopicConfigs { reply, .. } => drop(reply.try_send(Err(error))),
            Command::Shutdown { reply, .. } => drop(reply.try_send(Ok(()))),
        }
    }
}

/// State shared by the handle and the control-plane thread.
pub(crate) struct Shared {
    snapshot: RwLock<Arc<ClusterState>>,
    changes: Mutex<u64>,
    changed: Condvar,
    connected: AtomicBool,
    subscribers: Mutex<Vec<futures_channel::mpsc::Sender<u64>>>,
}

impl Shared {
    fn new(cluster: &str) -> Shared {
        Shared {
            snapshot: RwLock::new(Arc::new(ClusterState::new(cluster))),
            changes: Mutex::new(0),
            changed: Condvar::new(),
            connected: AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// Makes `state` the snapshot everyone sees, and tells them.
    pub(crate) fn publish(&self, state: ClusterState) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
        self.notify();
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        if self.connected.swap(connected, Ordering::SeqCst) != connected {
            self.notify();
        }
    }

    /// Ends every subscription (the control plane has stopped) and wakes every waiter.
    pub(crate) fn close(&self) {
        self.connected.store(false, Ordering::SeqCst);
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.notify();
    }

    fn snapshot(&self) -> Arc<ClusterState> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn notify(&self) {
        let count = {
            let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
            *changes += 1;
            *changes
        };
        self.changed.notify_all();
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A full channel already holds a notification the subscriber has not read, and it will
        // read the newest snapshot when it does; only a closed one is dropped.
        subscribers.retain_mut(|sender| match sender.try_send(count) {
            Ok(()) => true,
            Err(error) => error.is_full(),
        });
    }
}

struct Inner {
    shared: Arc<Shared>,
    commands: tokio::sync::mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    config: ClusterConfig,
}

/// The broker's handle on the cluster control plane. Cloning is cheap; the control plane stops
/// when [`ClusterHandle::shutdown`] is called or the last clone is dropped (which gives the
/// lease back like `shutdown`).
///
/// The command methods block the calling thread (up to `command_timeout_ms`): call them from the
/// broker's control thread or another std thread, never from a glommio shard or from inside a
/// tokio runtime.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClusterHandle")
            .field("node_id", &self.inner.config.node_id)
            .field("cluster", &self.inner.config.cluster)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl ClusterHandle {
    /// Starts the control plane: connects to etcd, registers this broker under a lease, reads
    /// the cluster state, starts watching it and campaigns for controller. Returns once all that
    /// is done, or an error: etcd unreachable within `connect_timeout_ms` (naming the
    /// endpoints), or the node id held by another live broker.
    pub fn start(config: ClusterConfig) -> Result<ClusterHandle, ClusterError> {
        config.validate()?;
        let shared = Arc::new(Shared::new(&config.cluster));
        let (commands, receiver) = tokio::sync::mpsc::channel(COMMAND_QUEUE_DEPTH_MAX);
        let (started, started_receiver) = sync_channel(1);
        let plane = ControlPlane::new(config.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("cluster-{}", config.node_id))
            .spawn(move || plane.run_thread(receiver, started))
            .map_err(|source| ClusterError::Runtime { source })?;
        let outcome = started_receiver
            .recv()
            .unwrap_or_else(|_| Err(ClusterError::Stopped { operation: "start" }));
        if let Err(error) = outcome {
            // The thread has returned or is returning after reporting; nothing is left to stop.
            drop(thread.join());
            return Err(error);
        }
        Ok(ClusterHandle {
            inner: Arc::new(Inner {
                shared,
                commands,
                thread: Mutex::new(Some(thread)),
                config,
            }),
        })
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.inner.config.node_id
    }

    /// The configuration the handle was started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The cluster as last seen. While etcd is unreachable this is the last state seen before.
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.inner.shared.snapshot()
    }

    /// A counter that goes up with every new snapshot and every connection change.
    pub fn changes(&self) -> u64 {
        *self
            .inner
            .shared
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the control plane holds a live etcd session now (for health and metrics).
    pub fn is_connected(&self) -> bool {
        self.inner.shared.connected.load(Ordering::SeqCst)
    }

    /// Whether the last snapshot names this broker as controller.
    pub fn is_controller(&self) -> bool {
        self.snapshot().controller_id() == Some(self.node_id())
    }

    /// A subscription to changes, for async code on any executor.
    pub fn subscribe(&self) -> Result<ClusterSubscription, ClusterError> {
        let (sender, receiver) = futures_channel::mpsc::channel(0);
        let mut subscribers = self
            .inner
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if subscribers.len() >= SUBSCRIBERS_MAX {
            return Err(ClusterError::InvalidConfig {
                reason: format!("more than {SUBSCRIBERS_MAX} cluster subscriptions"),
            });
        }
        subscribers.push(sender);
        Ok(ClusterSubscription {
            receiver,
            shared: self.inner.shared.clone(),
        })
    }

    /// Waits until `predicate` holds for the snapshot (checked now and after every change), at
    /// most `timeout`. Returns the snapshot it held for, or `None` on timeout.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut predicate: impl FnMut(&ClusterState) -> bool,
    ) -> Option<Arc<ClusterState>> {
        let mut found = None;
        self.wait_change(timeout, || {
            let snapshot = self.snapshot();
            let holds = predicate(&snapshot);
            if holds {
                found = Some(snapshot);
            }
            holds
        });
        found
    }

    /// Waits until [`ClusterHandle::is_connected`] equals `connected`, at most `timeout`;
    /// returns whether it does.
    pub fn wait_connected(&self, connected: bool, timeout: Duration) -> bool {
        self.wait_change(timeout, || self.is_connected() == connected)
    }

    fn wait_change(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let shared = &self.inner.shared;
        let mut changes = shared
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            // The condition reads the snapshot under its own lock; holding `changes` here only
            // orders the check before the wait so no notification is missed.
            if done() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            changes = shared
                .changed
                .wait_timeout(changes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Creates a topic: assigns replicas over the live brokers and writes the assignment and
    /// every partition's initial state (leader = replica 0, epoch 0, ISR = all replicas). The
    /// write is done by this broker with compare-and-swap (any broker may create; the
    /// controller only repairs what a creator that died midway left missing). Returns once the
    /// snapshot shows it.
    pub fn create_topic(&self, spec: TopicSpec) -> Result<TopicAssignment, ClusterError> {
        self.request("create topic", |reply| Command::CreateTopic { spec, reply })
    }

    /// Deletes a topic and its partition states in one transaction.
    pub fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        let name = name.to_string();
        self.request("delete topic", |reply| Command::DeleteTopic { name, reply })
    }

    /// Replaces a partition's ISR. Only its leader calls this, holding `expected_leader_epoch`;
    /// the change is a compare-and-swap against the partition state in this handle's snapshot
    /// now, so a change based on an older state fails with [`ClusterError::Conflict`] (re-read
    /// and decide again) and a stale epoch with [`ClusterError::StaleLeaderEpoch`].
    pub fn update_isr(
        &self,
        topic: &str,
        partition: i32,
        new_isr: Vec<i32>,
        expected_leader_epoch: i32,
    ) -> Result<PartitionState, ClusterError> {
        let snapshot = self.snapshot();
        let entry =
            snapshot
                .partition(topic, partition)
                .ok_or_else(|| ClusterError::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                })?;
        let expected = PartitionVersion {
            leader_epoch: expected_leader_epoch,
            mod_revision: entry.mod_revision,
        };
        self.update_isr_at(topic, partition, new_isr, expected)
    }

    /// Like [`ClusterHandle::update_isr`], based on an explicit version (from
    /// [`PartitionEntry::version`] of a snapshot the caller decided on).
    pub fn update_isr_at(
        &self,
        topic: &str,
        partition: i32,
        new_isr: Vec<i32>,
        expected: PartitionVersion,
    ) -> Result<PartitionState, ClusterError> {
        self.update_isr_adding(topic, partition, new_isr, expected, Vec::new())
    }

    /// Like [`ClusterHandle::update_isr_at`], naming the broker epoch (KIP-903) each member
    /// being added was registered with when the leader saw it catch up: the change is refused
    /// with [`ClusterError::StaleBrokerEpoch`] when such a member is registered anew since. A
    /// member added without a named epoch is recorded with the one the snapshot shows.
    pub fn update_isr_adding(
        &self,
        topic: &str,
        partition: i32,
        new_isr: Vec<i32>,
        expected: PartitionVersion,
        added_broker_epochs: Vec<(i32, i64)>,
    ) -> Result<PartitionState, ClusterError> {
        let topic = topic.to_string();
        self.request("update isr", |reply| Command::UpdateIsr {
            topic,
            partition,
            isr: new_isr,
            expected,
            added_broker_epochs,
            reply,
        })
    }

    /// Reserves `count` producer ids with one compare-and-swap on
    /// `/sluice/<cluster>/producer-ids`; returns the first.
    pub fn reserve_producer_ids(&self, count: i64) -> Result<i64, ClusterError> {
        self.request("reserve producer ids", |reply| {
            Command::ReserveProducerIds { count, reply }
        })
    }

    /// Submits or cancels a partition reassignment (see [`super::reassign`]): checked against
    /// this broker's snapshot, written with compare-and-swap; returns once the snapshot shows
    /// it. A refused request changes nothing.
    pub fn reassign(&self, request: ReassignRequest) -> Result<(), ClusterError> {
        self.request("reassign partition", |reply| Command::Reassign {
            request,
            reply,
        })
    }

    /// Moves leadership of every partition (of `topic` only, when given) to its preferred
    /// replica where that replica is live and in the ISR; answers per partition. The decision
    /// and the fenced write are the controller's (see `preferred`).
    pub fn elect_leaders(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<PartitionElection>, ClusterError> {
        let topic = topic.map(str::to_string);
        self.request("elect leaders", |reply| Command::ElectLeaders {
            topic,
            reply,
        })
    }

    /// Grows topic `name` to `count` partitions (see `ops::add_partitions`); returns the new
    /// assignment once the snapshot shows it.
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<TopicAssignment, ClusterError> {
        let name = name.to_string();
        self.request("add partitions", |reply| Command::AddPartitions {
            name,
            count,
            reply,
        })
    }

    /// Replaces topic `name`'s configs with `next`, provided they are still `expected`;
    /// returns once the snapshot shows the change.
    pub fn set_topic_configs(
        &self,
        name: &str,
        expected: BTreeMap<String, String>,
        next: BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        let name = name.to_string();
        self.request("alter topic configs", |reply| Command::SetTopicConfigs {
            name,
            expected,
            next,
            reply,
        })
    }

    /// Stops the control plane and gives the lease back, so the other brokers see this one
    /// leave (and elect new leaders and a new controller) at once. Later calls return
    /// [`ClusterError::Stopped`]; the last snapshot stays readable.
    pub fn shutdown(&self) -> Result<(), ClusterError> {
        self.stop(true)
    }

    /// Stops the control plane WITHOUT giving the lease back, as a crashed or partitioned broker
    /// would: its registration and controllership lapse only after the TTL. For fault-injection
    /// in tests and chaos tooling.
    pub fn abandon(&self) -> Result<(), ClusterError> {
        self.stop(false)
    }

    fn stop(&self, revoke: bool) -> Result<(), ClusterError> {
        let result = self.request("shutdown", |reply| Command::Shutdown { revoke, reply });
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The thread ends right after answering; a panic there has been logged already.
            drop(thread.join());
        }
        result
    }

    fn request<T>(
        &self,
        operation: &'static str,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ClusterError> {
        let (reply, answer) = sync_channel(1);
        self.inner
            .commands
            .blocking_send(command(reply))
            .map_err(|_| ClusterError::Stopped { operation })?;
        let timeout_ms = self.inner.config.command_timeout_ms;
        match answer.recv_timeout(Duration::from_millis(timeout_ms)) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ClusterError::Timeout {
                operation,
                key: self.inner.config.cluster.clone(),
                timeout_ms,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(ClusterError::Stopped { operation }),
        }
    }
}

// The broker shares one handle between its control thread, admin thread and shards' helpers.
const _: fn() = || {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<ClusterHandle>();
};

/// Notifications of cluster changes for async code (a glommio shard, for instance). Each
/// [`ClusterSubscription::changed`] returns the newest snapshot after at least one change;
/// changes that happen while the subscriber is busy are merged into one notification.
pub struct ClusterSubscription {
    receiver: futures_channel::mpsc::Receiver<u64>,
    shared: Arc<Shared>,
}

impl ClusterSubscription {
    /// Waits for the next change and returns the snapshot then, or `None` once the control
    /// plane has stopped.
    pub async fn changed(&mut self) -> Option<Arc<ClusterState>> {
        self.receiver.next().await?;
        Some(self.shared.snapshot())
    }
}
