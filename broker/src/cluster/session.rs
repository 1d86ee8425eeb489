//! The control-plane thread: one etcd session at a time (lease, registration, snapshot, watch,
//! controller duties, commands), and reconnection with backoff when a session is lost.
//!
//! A session is lost when the keep-alive or watch stream fails, etcd says the lease expired, or
//! no keep-alive answer came for a whole TTL. The last snapshot is kept (reported as
//! disconnected), commands are refused with [`ClusterError::Disconnected`], and a new session
//! (a new lease) is built as soon as etcd answers again, taking over this process's keys from
//! the old lease.
//!
//! Nothing etcd does ends the process: once the first session stood, sessions are rebuilt for
//! as long as the broker runs; the first one itself is retried (etcd restarting, a lease lost
//! while the process was paused) for up to `start_timeout_ms`, and only a configuration error,
//! a node id held by another live broker, or that bound running out fails the start.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, EventType, LeaseKeepAliveStream, LeaseKeeper, WatchResponse, WatchStream,
};
use tokio::sync::mpsc::Receiver;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::MissedTickBehavior;

use super::controller::{on_broker_change, ChangeReason, PartitionChange};
use super::handle::{Command, Shared};
use super::ops::{self, IsrRequest};
use super::preferred::{self, ElectionOutcome, PartitionElection, PreferredOutcome};
use super::reassign_ops;
use super::state::{ClusterKeys, ClusterState};
use super::{ClusterConfig, ClusterError};

/// First wait before reconnecting, milliseconds; it doubles up to `reconnect_backoff_ms_max`.
const RECONNECT_BACKOFF_MS_MIN: u64 = 100;

/// Leases of earlier sessions remembered (to take over keys still bound to them).
const OWN_LEASES_MAX: usize = 8;

/// A command answer held until the snapshot shows the write it reports (read-your-writes for
/// the caller).
struct Pending {
    revision: i64,
    since: Instant,
    deliver: Box<dyn FnOnce() + Send>,
}

/// One live etcd session.
struct Session {
    client: Client,
    lease: i64,
    /// The task renewing the lease; it ends only with the error that ended the lease.
    keep_alive: KeepAliveTask,
    watch: WatchStream,
    /// This broker's controller epoch while it is controller.
    controller_epoch: Option<i64>,
}

/// The lease renewal, on its own task of the control-plane runtime so that a slow command or
/// controller write never delays a keep-alive. Aborted when dropped.
struct KeepAliveTask(JoinHandle<ClusterError>);

impl Drop for KeepAliveTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What woke the session loop.
enum Wake {
    Tick,
    /// Time for the controller's leader imbalance check.
    Rebalance,
    LeaseLost(Result<ClusterError, JoinError>),
    Watch(Result<Option<WatchResponse>, etcd_client::Error>),
    Command(Option<Command>),
}

/// How a session ended.
enum Ended {
    Shutdown,
    Lost(ClusterError),
    /// The first session could not be built yet; it is tried again.
    Retry,
}

/// Whether a failure to build the first session ends the start at once: retrying cannot help
/// a configuration error, and a node id held by another live broker has been waited for already
/// (up to twice the TTL). Everything else (etcd unreachable or restarting, a lease lost while
/// the process was paused) is retried until the start bound.
fn ends_start(error: &ClusterError) -> bool {
    matches!(
        error,
        ClusterError::InvalidConfig { .. }
            | ClusterError::InvalidName { .. }
            | ClusterError::NodeIdInUse { .. }
            | ClusterError::Runtime { .. }
    )
}

/// The control plane's state on its thread.
pub(crate) struct ControlPlane {
    config: ClusterConfig,
    keys: ClusterKeys,
    shared: Arc<Shared>,
    state: ClusterState,
    own_leases: Vec<i64>,
    pending: Vec<Pending>,
}

impl ControlPlane {
    pub(crate) fn new(config: ClusterConfig, shared: Arc<Shared>) -> ControlPlane {
        ControlPlane {
            keys: ClusterKeys::new(&config.cluster),
            state: ClusterState::new(&config.cluster),
            config,
            shared,
            own_leases: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The thread's body: builds the runtime and runs sessions until shutdown. `started` gets
    /// the outcome of the first session's setup.
    pub(crate) fn run_thread(
        self,
        commands: Receiver<Command>,
        started: SyncSender<Result<(), ClusterError>>,
    ) {
        let shared = self.shared.clone();
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.run(commands, started)),
            Err(source) => drop(started.try_send(Err(ClusterError::Runtime { source }))),
        }
        shared.close();
    }

    async fn run(
        mut self,
        mut commands: Receiver<Command>,
        started: SyncSender<Result<(), ClusterError>>,
    ) {
        let mut started = Some(started);
        let start_deadline = Instant::now() + Duration::from_millis(self.config.start_timeout_ms);
        let mut backoff_ms = RECONNECT_BACKOFF_MS_MIN;
        loop {
            let ended = match self.establish().await {
                Ok(session) => {
                    backoff_ms = RECONNECT_BACKOFF_MS_MIN;
                    if let Some(started) = started.take() {
                        drop(started.try_send(Ok(())));
                    }
                    self.serve(session, &mut commands).await
                }
                Err(error) => match started.take() {
                    Some(reply) if ends_start(&error) || Instant::now() >= start_deadline => {
                        drop(reply.try_send(Err(error)));
                        return;
                    }
                    Some(reply) => {
                        tracing::warn!(%error, backoff_ms, "cannot join the cluster yet; retrying");
                        started = Some(reply);
                        Ended::Retry
                    }
                    None => Ended::Lost(error),
                },
            };
            self.shared.set_connected(false);
            self.flush_pending();
            match ended {
                Ended::Shutdown => return,
                Ended::Retry => {}
                Ended::Lost(error) => {
                    tracing::warn!(%error, backoff_ms, "etcd session lost; reconnecting");
                }
            }
            if !pause(&mut commands, Duration::from_millis(backoff_ms)).await {
                return;
            }
            backoff_ms = (backoff_ms * 2).min(self.config.reconnect_backoff_ms_max);
        }
    }

    /// Builds a session: lease (renewed from now on), registration, snapshot, watch, campaign.
    async fn establish(&mut self) -> Result<Session, ClusterError> {
        let (mut client, lease) = ops::connect(&self.config).await?;
        match self.establish_with(&mut client, lease).await {
            Ok((keep_alive, watch)) => {
                let mut session = Session {
                    client,
                    lease,
                    keep_alive,
                    watch,
                    controller_epoch: None,
                };
                self.shared.publish(self.state.clone());
                self.shared.set_connected(true);
                if let Err(error) = self.after_change(&mut session).await {
                    // The registration is bound to this lease now: the next session takes it
                    // over instead of waiting for it to lapse.
                    self.remember_lease(lease);
                    return Err(error);
                }
                self.revoke_old_leases(&mut session.client).await;
                Ok(session)
            }
            Err(error) => {
                // Best effort: a lease nobody keeps alive expires by itself anyway.
                let timeout = self.config.request_timeout();
                drop(ops::revoke(&mut client, lease, timeout).await);
                Err(error)
            }
        }
    }

    async fn establish_with(
        &mut self,
        client: &mut Client,
        lease: i64,
    ) -> Result<(KeepAliveTask, WatchStream), ClusterError> {
        let timeout = self.config.request_timeout();
        let lease_name = format!("lease {lease:x}");
        let (keeper, responses) = ops::timed(
            timeout,
            "keep lease alive",
            &lease_name,
            client.lease_keep_alive(lease),
        )
        .await?;
        // Renewal starts before registration, which may wait up to twice the TTL for a stale
        // registration of this node id to lapse.
        let renewal = keep_alive(keeper, responses, self.config.ttl(), timeout);
        let keep_alive = KeepAliveTask(tokio::spawn(renewal));
        ops::register(client, &self.keys, &self.config, lease, &self.own_leases).await?;
        let state = ops::load(client, &self.keys, timeout).await?;
        let watch = ops::watch(client, &self.keys, state.revision + 1, timeout).await?;
        self.state = state;
        tracing::info!(
            node_id = self.config.node_id,
            lease = format_args!("{lease:x}"),
            revision = self.state.revision,
            "registered in etcd"
        );
        Ok((keep_alive, watch))
    }

    /// Gives back the leases of earlier sessions: every key this process had under them has
    /// been moved to the new lease, so etcd can drop them now instead of after their TTL.
    async fn revoke_old_leases(&mut self, client: &mut Client) {
        let timeout = self.config.request_timeout();
        for lease in std::mem::take(&mut self.own_leases) {
            if let Err(error) = ops::revoke(client, lease, timeout).await {
                tracing::debug!(%error, "old lease not revoked; it will expire");
            }
        }
    }

    async fn serve(&mut self, mut session: Session, commands: &mut Receiver<Command>) -> Ended {
        let mut tick = tokio::time::interval(self.config.ttl() / 3);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let check_interval = Duration::from_millis(self.config.leader_imbalance_check_interval_ms);
        let mut rebalance =
            tokio::time::interval_at(tokio::time::Instant::now() + check_interval, check_interval);
        rebalance.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                _ = tick.tick() => Wake::Tick,
                _ = rebalance.tick() => Wake::Rebalance,
                ended = &mut session.keep_alive.0 => Wake::LeaseLost(ended),
                message = session.watch.message() => Wake::Watch(message),
                command = commands.recv() => Wake::Command(command),
            };
            let result = match wake {
                Wake::Tick => self.on_tick(),
                Wake::Rebalance => self.rebalance_leaders(&mut session).await,
                Wake::LeaseLost(Ok(error)) => Err(error),
                Wake::LeaseLost(Err(error)) => Err(ClusterError::SessionLost {
                    reason: format!("the lease renewal task failed: {error}"),
                }),
                Wake::Watch(message) => self.on_watch(&mut session, message).await,
                Wake::Command(None) => return self.end(session, true).await,
                Wake::Command(Some(Command::Shutdown { revoke, reply })) => {
                    let ended = self.end(session, revoke).await;
                    drop(reply.try_send(Ok(())));
                    return ended;
                }
                Wake::Command(Some(command)) => {
                    self.on_command(&mut session, command).await;
                    Ok(())
                }
            };
            if let Err(error) = result {
                self.remember_lease(session.lease);
                return Ended::Lost(error);
            }
        }
    }

    fn remember_lease(&mut self, lease: i64) {
        self.own_leases.push(lease);
        if self.own_leases.len() > OWN_LEASES_MAX {
            self.own_leases.remove(0);
        }
    }

    async fn end(&mut self, mut session: Session, revoke: bool) -> Ended {
        if revoke {
            let timeout = self.config.request_timeout();
            match ops::revoke(&mut session.client, session.lease, timeout).await {
                Ok(()) => tracing::info!(node_id = self.config.node_id, "left the cluster"),
                Err(error) => tracing::warn!(%error, "lease not revoked; it will expire"),
            }
        }
        Ended::Shutdown
    }

    fn on_tick(&mut self) -> Result<(), ClusterError> {
        self.release_pending(true);
        Ok(())
    }

    async fn on_watch(
        &mut self,
        session: &mut Session,
        message: Result<Option<WatchResponse>, etcd_client::Error>,
    ) -> Result<(), ClusterError> {
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => {
                return Err(ClusterError::SessionLost {
                    reason: "the watch stream closed".to_string(),
                })
            }
            Err(source) => {
                return Err(ClusterError::Etcd {
                    operation: "watch",
                    key: self.keys.root().to_string(),
                    source,
                })
            }
        };
        if response.canceled() {
            return Err(ClusterError::SessionLost {
                reason: format!(
                    "the watch was cancelled ({}; compacted at revision {})",
                    response.cancel_reason(),
                    response.compact_revision()
                ),
            });
        }
        if !self.apply(&response) {
            return Ok(());
        }
        self.shared.publish(self.state.clone());
        self.release_pending(false);
        self.after_change(session).await
    }

    /// Applies a watch response to the state; returns whether anything moved.
    fn apply(&mut self, response: &WatchResponse) -> bool {
        let mut revision = self.state.revision;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = kv.key_str() else { continue };
            match event.event_type() {
                EventType::Put => {
                    let applied = self.state.apply_put(
                        &self.keys,
                        key,
                        kv.value(),
                        kv.mod_revision(),
                        kv.create_revision(),
                    );
                    if let Err(error) = applied {
                        tracing::warn!(%error, "ignoring an unreadable cluster key");
                    }
                }
                EventType::Delete => self.state.apply_delete(&self.keys, key),
            }
            revision = revision.max(kv.mod_revision());
        }
        // The answer that confirms the watch's creation carries the revision at creation, and
        // events up to it may still be on their way; every later header is a promise that all
        // events up to it have been sent.
        if !response.created() {
            if let Some(header) = response.header() {
                revision = revision.max(header.revision());
            }
        }
        let moved = revision != self.state.revision || !response.events().is_empty();
        self.state.revision = revision;
        moved
    }

    /// Controller duties after the state changed: campaign when there is no controller, notice
    /// being deposed, and reconcile partition leadership while controller.
    async fn after_change(&mut self, session: &mut Session) -> Result<(), ClusterError> {
        let node_id = self.config.node_id;
        match (self.state.controller, session.controller_epoch) {
            // No controller, or the key still names this broker from an earlier session (it
            // is taken over under the new lease).
            (None, _) => self.campaign(session).await?,
            (Some(current), None) if current.node_id == node_id => self.campaign(session).await?,
            (Some(current), Some(mine)) if current.epoch > mine => {
                tracing::info!(controller = current.node_id, "no longer controller");
                session.controller_epoch = None;
            }
            _ => {}
        }
        self.reconcile(session).await
    }

    async fn campaign(&mut self, session: &mut Session) -> Result<(), ClusterError> {
        let won = ops::campaign(
            &mut session.client,
            &self.keys,
            &self.config,
            session.lease,
            &self.own_leases,
        )
        .await?;
        if won.is_some() && won != session.controller_epoch {
            tracing::info!(node_id = self.config.node_id, epoch = ?won, "became controller");
        }
        session.controller_epoch = won;
        Ok(())
    }

    async fn reconcile(&mut self, session: &mut Session) -> Result<(), ClusterError> {
        let Some(epoch) = session.controller_epoch else {
            return Ok(());
        };
        let changes = on_broker_change(&self.state, &self.state.live_brokers(), epoch);
        self.write_changes(session, epoch, &changes).await
    }

    /// Writes the controller's `changes` (each a fenced compare-and-swap) and logs each outcome.
    async fn write_changes(
        &mut self,
        session: &mut Session,
        epoch: i64,
        changes: &[PartitionChange],
    ) -> Result<(), ClusterError> {
        let timeout = self.config.request_timeout();
        for change in changes {
            let written =
                ops::write_change(&mut session.client, &self.keys, epoch, change, timeout).await?;
            log_change(change, written);
        }
        // Reassignments whose target replicas all caught up end now (see `reassign`).
        reassign_ops::complete_all(&mut session.client, &self.keys, &self.state, epoch, timeout)
            .await
    }

    /// Kafka's automatic leader rebalance, run by the controller on its interval when enabled:
    /// moves leadership back to preferred replicas of brokers whose imbalance passes the
    /// threshold (`preferred::auto_rebalance`).
    async fn rebalance_leaders(&mut self, session: &mut Session) -> Result<(), ClusterError> {
        let Some(epoch) = session.controller_epoch else {
            return Ok(());
        };
        if !self.config.auto_leader_rebalance_enable {
            return Ok(());
        }
        let percentage = self.config.leader_imbalance_per_broker_percentage;
        let live = self.state.live_brokers();
        let changes = preferred::auto_rebalance(&self.state, &live, epoch, percentage);
        self.write_changes(session, epoch, &changes).await
    }

    /// An on-demand preferred election (of `topic`'s partitions, or all). The decision is the
    /// controller's (`preferred::decide_all` on this broker's snapshot) and so is the write:
    /// fenced by the controller key's revision, and each partition's by its own, so it lands
    /// only if neither the controller nor the partition changed since the snapshot (a broker
    /// that is not controller writes under the current controller's epoch, which a new
    /// controller's first write invalidates).
    async fn elect_preferred(
        &mut self,
        session: &mut Session,
        topic: Option<&str>,
    ) -> Result<Vec<PartitionElection>, ClusterError> {
        if let Some(topic) = topic {
            if !self.state.topics.contains_key(topic) {
                return Err(ClusterError::UnknownTopic(topic.to_string()));
            }
        }
        let epoch = session
            .controller_epoch
            .or(self.state.controller.map(|controller| controller.epoch))
            .ok_or(ClusterError::NoController)?;
        let live = self.state.live_brokers();
        let decisions = preferred::decide_all(&self.state, &live, epoch, topic);
        let timeout = self.config.request_timeout();
        let mut answers = Vec::with_capacity(decisions.len());
        for decision in decisions {
            let outcome = match decision.outcome {
                PreferredOutcome::AlreadyPreferred => ElectionOutcome::AlreadyPreferred,
                PreferredOutcome::NotAvailable { reason } => ElectionOutcome::NotAvailable {
                    reason: reason.to_string(),
                },
                PreferredOutcome::Elect(change) => {
                    let written =
                        ops::write_change(&mut session.client, &self.keys, epoch, &change, timeout)
                            .await?;
                    log_change(&change, written);
                    if written {
                        ElectionOutcome::Elected {
                            leader: change.next.leader,
                        }
                    } else {
                        ElectionOutcome::NotAvailable {
                            reason: "the partition or the controller changed meanwhile; try again"
                                .to_string(),
                        }
                    }
                }
            };
            answers.push(PartitionElection {
                topic: decision.topic,
                partition: decision.partition,
                outcome,
            });
        }
        Ok(answers)
    }

    async fn on_command(&mut self, session: &mut Session, command: Command) {
        let timeout = self.config.request_timeout();
        let client = &mut session.client;
        match command {
            Command::CreateTopic { spec, reply } => {
                match ops::create_topic(client, &self.keys, &self.state, &spec, timeout).await {
                    Ok((topic, revision)) => self.defer(revision, reply, Ok(topic)),
                    Err(error) => drop(reply.try_send(Err(error))),
                }
            }
            Command::DeleteTopic { name, reply } => {
                match ops::delete_topic(client, &self.keys, &name, timeout).await {
                    Ok(revision) => self.defer(revision, reply, Ok(())),
                    Err(error) => drop(reply.try_send(Err(error))),
                }
            }
            Command::UpdateIsr {
                topic,
                partition,
                isr,
                expected,
                added_broker_epochs,
                reply,
            } => {
                let request = IsrRequest {
                    node_id: self.config.node_id,
                    topic: &topic,
                    partition,
                    isr: &isr,
                    expected,
                    added_broker_epochs: &added_broker_epochs,
                };
                match ops::update_isr(client, &self.keys, &self.state, &request, timeout).await {
                    Ok((state, revision)) => self.defer(revision, reply, Ok(state)),
                    Err(error) => drop(reply.try_send(Err(error))),
                }
            }
            Command::Reassign { request, reply } => {
                let state = &self.state;
                match reassign_ops::execute(client, &self.keys, state, &request, timeout).await {
                    Ok(Some(revision)) => self.defer(revision, reply, Ok(())),
                    Ok(None) => drop(reply.try_send(Ok(()))),
                    Err(error) => drop(reply.try_send(Err(error))),
                }
            }
            Command::AddPartitions { name, count, reply } => {
                match ops::add_partitions(client, &self.keys, &self.state, &name, count, timeout)
                    .await
                {
                    Ok((topic, revision)) => self.defer(revision, reply, Ok(topic)),
                    Err(error) => drop(reply.try_send(Err(error))),
                }
            }
            Command::SetTopicConfigs {
                name,
                expected,
                next,
                reply,
            } => {
                let change = (&expected, next);
                match ops::set_topic_configs(client, &self.keys, &name, change, timeout).await {
                    Ok(revision) => self.defer(revision, reply, Ok(())),
                    Err(error) => drop(reply.try_send(Err(error))),
                }
            }
            Command::ElectLeaders { topic, reply } => {
                let elected = self.elect_preferred(session, topic.as_deref()).await;
                drop(reply.try_send(elected));
            }
            Command::ReserveProducerIds { count, reply } => {
                let reserved = ops::reserve_producer_ids(client, &self.keys, count, timeout).await;
                drop(reply.try_send(reserved));
            }
            Command::Shutdown { reply, .. } => drop(reply.try_send(Ok(()))),
        }
    }

    /// Answers with `result` once the snapshot reaches `revision`.
    fn defer<T: Send + 'static>(
        &mut self,
        revision: i64,
        reply: SyncSender<Result<T, ClusterError>>,
        result: Result<T, ClusterError>,
    ) {
        let deliver: Box<dyn FnOnce() + Send> = Box::new(move || drop(reply.try_send(result)));
        if self.state.revision >= revision {
            deliver();
            return;
        }
        self.pending.push(Pending {
            revision,
            since: Instant::now(),
            deliver,
        });
    }

    /// Delivers the answers the snapshot has caught up with; with `overdue`, also those waiting
    /// longer than a request timeout (their write is done; only the snapshot lags).
    fn release_pending(&mut self, overdue: bool) {
        let revision = self.state.revision;
        let patience = self.config.request_timeout();
        let (ready, waiting) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|pending: &Pending| {
                    pending.revision <= revision || (overdue && pending.since.elapsed() > patience)
                });
        self.pending = waiting;
        for pending in ready {
            (pending.deliver)();
        }
    }

    fn flush_pending(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            (pending.deliver)();
        }
    }
}

/// Renews the lease every third of `ttl` until that fails; returns why. The lease is taken as
/// lost when etcd says it expired, a stream breaks, or no answer came for a whole TTL (etcd
/// has expired it by then).
async fn keep_alive(
    mut keeper: LeaseKeeper,
    mut responses: LeaseKeepAliveStream,
    ttl: Duration,
    timeout: Duration,
) -> ClusterError {
    let lease_name = format!("lease {:x}", keeper.id());
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut answered = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if answered.elapsed() > ttl {
                    return ClusterError::SessionLost {
                        reason: format!("no keep-alive answer for {} s", ttl.as_secs()),
                    };
                }
                let sent = keeper.keep_alive();
                if let Err(error) = ops::timed(timeout, "keep lease alive", &lease_name, sent).await {
                    return error;
                }
            }
            message = responses.message() => match message {
                Ok(Some(response)) if response.ttl() > 0 => answered = Instant::now(),
                Ok(Some(_)) => {
                    return ClusterError::SessionLost {
                        reason: "etcd says the lease has expired".to_string(),
                    }
                }
                Ok(None) => {
                    return ClusterError::SessionLost {
                        reason: "the keep-alive stream closed".to_string(),
                    }
                }
                Err(source) => {
                    return ClusterError::Etcd {
                        operation: "keep lease alive",
                        key: lease_name,
                        source,
                    }
                }
            },
        }
    }
}

/// Waits `backoff` while refusing commands; returns false if asked to shut down meanwhile.
async fn pause(commands: &mut Receiver<Command>, backoff: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + backoff;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return true,
            command = commands.recv() => match command {
                None => return false,
                Some(Command::Shutdown { reply, .. }) => {
                    drop(reply.try_send(Ok(())));
                    return false;
                }
                Some(command) => {
                    let operation = command.operation();
                    command.fail(ClusterError::Disconnected { operation });
                }
            },
        }
    }
}

fn log_change(change: &PartitionChange, written: bool) {
    let (topic, partition, next) = (&change.topic, change.partition, &change.next);
    if !written {
        tracing::debug!(
            topic,
            partition,
            "partition state moved meanwhile; deciding again"
        );
        return;
    }
    match change.reason {
        ChangeReason::Offline { from } => tracing::warn!(
            topic,
            partition,
            dead_leader = from,
            isr = ?next.isr,
            "partition offline: no live in-sync replica; waiting for an ISR member to return"
        ),
        ChangeReason::Failover { from } => tracing::info!(
            topic,
            partition,
            from,
            leader = next.leader,
            leader_epoch = next.leader_epoch,
            "leader failover"
        ),
        ChangeReason::Returned => tracing::info!(
            topic,
            partition,
            leader = next.leader,
            leader_epoch = next.leader_epoch,
            "partition back online"
        ),
        ChangeReason::Restarted => tracing::warn!(
            topic,
            partition,
            leader = next.leader,
            isr = ?next.isr,
            "ISR members registered anew since they joined (restarted) left the ISR; they rejoin once caught up"
        ),
        ChangeReason::Missing => tracing::info!(topic, partition, "wrote missing partition state"),
        ChangeReason::Preferred { from } => tracing::info!(
            topic,
            partition,
            from,
            leader = next.leader,
            leader_epoch = next.leader_epoch,
            "leadership moved back to the preferred replica"
        ),
    }
}
