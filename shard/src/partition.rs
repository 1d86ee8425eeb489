//! Partition replicas owned by a shard, and the registry that opens, creates and deletes them.
//!
//! A [`Partition`] exists on exactly one shard (its owner) and is shared by that shard's tasks as
//! `Rc<Partition>`; nothing here is `Send`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use glommio::sync::{Permit, Semaphore};
use sluice_storage::{
    AppendBatches, CleanupPolicy, LogConfig, PartitionLog, Ratio, ReadSlice, StorageError,
};
use uuid::Uuid;

use crate::error::{PartitionError, ShardError};
use crate::message::{AppendOutcome, OffsetQuery, PartitionState, Reader, Visibility};
use crate::replica::{self, IsrOutcome, IsrProposal, LeaderState, ReplicaInfo, NO_LEADER};
use crate::table::{parse_topic_id_text, topic_id_text, ShardId, ShardTable};

/// The leader epoch a single-node broker stamps on every batch: there is one leader, forever.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

/// Holders of a partition's role at once: leader appends and follower truncations or appends
/// each hold one permit for as long as their write takes; a role change takes them all, so it
/// waits for every write begun under the old role (Kafka holds its leader-ISR lock's read side
/// across an append the same way). More writes than this wait for a permit.
pub const ROLE_HOLDERS_MAX: u64 = 1024;

/// How often, at most, a replica rewrites its high-watermark checkpoint (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`), milliseconds. It is written only when the
/// high watermark moved, and at close.
pub const HIGH_WATERMARK_CHECKPOINT_MS: i64 = 5_000;

/// The replication role of one partition replica on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Single-node mode: the only replica, leader forever; the high watermark is the log end.
    Standalone,
    /// The leader of the partition in its epoch, tracking its followers.
    Leader(LeaderState),
    /// A follower of `leader` in `epoch`; its high watermark is what the leader last said,
    /// capped by its own log end.
    Follower {
        /// The leader's node id.
        leader: i32,
        /// The leader epoch.
        epoch: i32,
        /// The high watermark as the leader last reported it (at most this log's end).
        high_watermark: i64,
    },
    /// No leader is known (the partition is offline, or its leader is not live): the replica
    /// neither serves clients nor fetches.
    Offline {
        /// The leader epoch.
        epoch: i32,
        /// The last known high watermark.
        high_watermark: i64,
    },
}

/// A summary of a [`Role`] (cheap to copy, for decisions outside the partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleView {
    /// Single-node mode.
    Standalone,
    /// Leader in `epoch`.
    Leader {
        /// The leader epoch.
        epoch: i32,
    },
    /// Follower of `leader` in `epoch`.
    Follower {
        /// The leader's node id.
        leader: i32,
        /// The leader epoch.
        epoch: i32,
    },
    /// No leader.
    Offline {
        /// The leader epoch.
        epoch: i32,
    },
}

/// One partition replica on its owning shard: the log, its replication role, the fetches and
/// producers waiting for offsets to move, and counters. Lives on one shard only.
pub struct Partition {
    topic: String,
    partition: i32,
    log: PartitionLog,
    role: RefCell<Role>,
    /// The topic id (KIP-516) of the topic incarnation this replica belongs to (nil when the
    /// table named none).
    topic_id: Uuid,
    /// Bumped by every change of role or leader epoch, so work begun under one role (a
    /// follower's fetch, a producer waiting for acks) can tell the role changed under it.
    generation: Cell<u64>,
    /// [`ROLE_HOLDERS_MAX`] permits: each leader append, follower truncation and follower
    /// append holds one across its write; a role change takes all of them. So a leader append
    /// is fenced by the role it started under (it is published before the role changes, or
    /// refused), and replicated bytes never land after the replica became leader.
    role_lock: Semaphore,
    /// One permit, taken by a role change for as long as it waits for and holds `role_lock`,
    /// and by each holder only while it takes its `role_lock` permit: glommio's semaphore is
    /// not fair (a one-permit acquire succeeds whenever a permit is free, even with a larger
    /// acquire waiting), so without this gate a steady stream of overlapping appends would
    /// keep a role change (and the control thread broadcasting it) waiting indefinitely.
    role_gate: Semaphore,
    /// The high watermark last written to the checkpoint, and when (ms).
    checkpointed_high_watermark: Cell<Option<i64>>,
    high_watermark_checkpointed_ms: Cell<i64>,
    /// Long-polling fetches and acks=all producers waiting for the high watermark or the log
    /// end to move. Bounded by the requests in flight on the broker (connections_max x
    /// connection_inflight_requests_max); senders whose receiver gave up are pruned on every
    /// subscribe.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    appended_batches_bytes: Cell<u64>,
    appends: Cell<u64>,
}

impl Partition {
    /// Wraps an open log as a single-node partition (standalone leader).
    pub fn new(topic: &str, partition: i32, log: PartitionLog) -> Partition {
        Partition::with_role(topic, partition, log, Role::Standalone)
    }

    /// Wraps an open log in `role`. Cluster mode opens partitions offline, so nothing is served
    /// before [`Partition::apply_replica_info`] gave them their role.
    pub fn with_role(topic: &str, partition: i32, log: PartitionLog, role: Role) -> Partition {
        Partition::with_topic_id(topic, partition, Uuid::nil(), log, role)
    }

    /// Wraps an open log of topic incarnation `topic_id` in `role`.
    pub fn with_topic_id(
        topic: &str,
        partition: i32,
        topic_id: Uuid,
        log: PartitionLog,
        role: Role,
    ) -> Partition {
        Partition {
            topic: topic.to_string(),
            partition,
            log,
            role: RefCell::new(role),
            topic_id,
            generation: Cell::new(0),
            role_lock: Semaphore::new(ROLE_HOLDERS_MAX),
            role_gate: Semaphore::new(1),
            checkpointed_high_watermark: Cell::new(None),
            high_watermark_checkpointed_ms: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            appended_batches_bytes: Cell::new(0),
            appends: Cell::new(0),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition index.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The topic id of the incarnation this replica belongs to (nil when none was given).
    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    /// The log (for operations this type does not wrap).
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The leader epoch this replica knows (what it stamps on batches it appends as leader).
    pub fn leader_epoch(&self) -> i32 {
        match &*self.role.borrow() {
            Role::Standalone => SINGLE_NODE_LEADER_EPOCH,
            Role::Leader(state) => state.epoch(),
            Role::Follower { epoch, .. } | Role::Offline { epoch, .. } => *epoch,
        }
    }

    /// The replication role now.
    pub fn role(&self) -> RoleView {
        match &*self.role.borrow() {
            Role::Standalone => RoleView::Standalone,
            Role::Leader(state) => RoleView::Leader {
                epoch: state.epoch(),
            },
            Role::Follower { leader, epoch, .. } => RoleView::Follower {
                leader: *leader,
                epoch: *epoch,
            },
            Role::Offline { epoch, .. } => RoleView::Offline { epoch: *epoch },
        }
    }

    /// Runs `read` on the full role state.
    pub fn read_role<R>(&self, read: impl FnOnce(&Role) -> R) -> R {
        read(&self.role.borrow())
    }

    /// Bumped by every change of role or leader epoch.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Holds the partition's current role until the permit is dropped: a role change waits
    /// for it. A follower fetcher holds it around each truncation or append (and checks the
    /// generation once it has it); leader appends hold it internally. `None` once the
    /// partition is closed.
    pub async fn hold_role(&self) -> Option<Permit<'_>> {
        let _gate = sluice_storage::sync::acquire_permit(&self.role_gate, 1)
            .await
            .ok()?;
        sluice_storage::sync::acquire_permit(&self.role_lock, 1)
            .await
            .ok()
    }

    /// Offsets below the high watermark are committed and visible to consumers. Single-node:
    /// the in-sync replica set is the leader alone, so it is the log end offset.
    pub fn high_watermark(&self) -> i64 {
        let log_end = self.log.log_end_offset();
        match &*self.role.borrow() {
            Role::Standalone => log_end,
            Role::Leader(state) => state.high_watermark().min(log_end),
            Role::Follower { high_watermark, .. } | Role::Offline { high_watermark, .. } => {
                (*high_watermark).min(log_end)
            }
        }
    }

    /// The partition's offsets now.
    pub fn state(&self) -> PartitionState {
        PartitionState {
            log_start_offset: self.log.log_start_offset(),
            log_end_offset: self.log.log_end_offset(),
            high_watermark: self.high_watermark(),
        }
    }

    /// Number of appends and appended bytes since the partition was opened.
    pub fn append_counts(&self) -> (u64, u64) {
        (self.appends.get(), self.appended_batches_bytes.get())
    }

    fn leader_now(&self) -> i32 {
        match &*self.role.borrow() {
            Role::Standalone | Role::Leader(_) => NO_LEADER,
            Role::Follower { leader, .. } => *leader,
            Role::Offline { .. } => NO_LEADER,
        }
    }

    fn not_leader(&self) -> PartitionError {
        PartitionError::not_leader(&self.topic, self.partition, self.leader_now())
    }

    /// Refuses client requests (produce, consumer fetch, offsets) unless this replica leads
    /// and its log is online (a log offline after a failed fsync answers a storage error:
    /// KAFKA_STORAGE_ERROR, as Kafka does for a failed log directory).
    pub fn check_leader(&self) -> Result<(), PartitionError> {
        if let Some(offline) = self.log.offline() {
            return Err(self.error(offline));
        }
        match &*self.role.borrow() {
            Role::Standalone | Role::Leader(_) => Ok(()),
            Role::Follower { .. } | Role::Offline { .. } => Err(self.not_leader()),
        }
    }

    /// Appends batches as the leader, answering after the local append (acks=1).
    pub async fn append(
        &self,
        batches: impl Into<AppendBatches>,
    ) -> Result<AppendOutcome, PartitionError> {
        self.append_as_leader(batches, None).await
    }

    /// Appends batches as the leader: refuses unless this replica leads (and, for acks=all,
    /// unless the ISR has at least `min.insync.replicas` members), stamps the leader epoch
    /// (the log validates each batch before writing anything), wakes the waiting fetches, and
    /// with `acks_all` waits until the high watermark passes the appended records, for at most
    /// that long.
    pub async fn append_as_leader(
        &self,
        batches: impl Into<AppendBatches>,
        acks_all: Option<Duration>,
    ) -> Result<AppendOutcome, PartitionError> {
        let batches = batches.into();
        // Held from the role check until the records are published and counted, so a role
        // change (which takes every permit) never lands in between.
        let held = self.hold_role().await.ok_or_else(|| self.not_leader())?;
        let (epoch, generation) = self.check_append(acks_all.is_some())?;
        let bytes = batches.bytes.len() as u64;
        let info = self
            .log
            .append(batches, epoch)
            .await
            .map_err(|error| self.error(error))?;
        self.appends.set(self.appends.get() + 1);
        self.appended_batches_bytes
            .set(self.appended_batches_bytes.get() + bytes);
        if let Role::Leader(state) = &mut *self.role.borrow_mut() {
            state.advance_high_watermark(self.log.log_end_offset());
        }
        drop(held);
        self.wake_waiters();
        if let Some(timeout) = acks_all {
            self.await_commit(info.last_offset, generation, timeout)
                .await?;
        }
        Ok(AppendOutcome {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            state: self.state(),
            duplicate: info.duplicate,
        })
    }

    /// The epoch to stamp and the role generation, or why this append is refused.
    fn check_append(&self, acks_all: bool) -> Result<(i32, u64), PartitionError> {
        let generation = self.generation.get();
        match &*self.role.borrow() {
            Role::Standalone => Ok((SINGLE_NODE_LEADER_EPOCH, generation)),
            Role::Leader(state) => {
                if acks_all {
                    state.check_min_insync().map_err(|refused| {
                        PartitionError::NotEnoughReplicas {
                            topic: self.topic.clone(),
                            partition: self.partition,
                            isr: refused.isr,
                            required: refused.required,
                        }
                    })?;
                }
                Ok((state.epoch(), generation))
            }
            Role::Follower { .. } | Role::Offline { .. } => Err(self.not_leader()),
        }
    }

    /// Waits until the high watermark passes `last_offset` while this replica still leads in
    /// the same epoch, for at most `timeout`.
    async fn await_commit(
        &self,
        last_offset: i64,
        generation: u64,
        timeout: Duration,
    ) -> Result<(), PartitionError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.generation.get() != generation {
                return Err(self.not_leader());
            }
            if self.high_watermark() > last_offset {
                return self.check_isr_after_append();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PartitionError::ReplicationTimeout {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    last_offset,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                });
            }
            self.wait_for_change(left).await;
        }
    }

    fn check_isr_after_append(&self) -> Result<(), PartitionError> {
        match &*self.role.borrow() {
            Role::Leader(state) => state.check_min_insync().map_err(|refused| {
                PartitionError::NotEnoughReplicasAfterAppend {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    isr: refused.isr,
                    required: refused.required,
                }
            }),
            _ => Ok(()),
        }
    }

    /// The highest offset `reader` may read below: the high watermark for consumers, the log
    /// end for a follower. Refuses consumers unless this replica leads, and replicas unless it
    /// leads in the epoch they name.
    fn read_limit(&self, reader: Reader) -> Result<i64, PartitionError> {
        match reader {
            Reader::Consumer => {
                self.check_leader()?;
                Ok(self.high_watermark())
            }
            Reader::Replica { leader_epoch, .. } => {
                self.check_replica_epoch(leader_epoch)?;
                Ok(self.log.log_end_offset())
            }
        }
    }

    fn check_replica_epoch(&self, requested: i32) -> Result<(), PartitionError> {
        let current = match &*self.role.borrow() {
            Role::Leader(state) => state.epoch(),
            _ => return Err(self.not_leader()),
        };
        if requested >= 0 && requested < current {
            return Err(PartitionError::FencedLeaderEpoch {
                topic: self.topic.clone(),
                partition: self.partition,
                requested,
                current,
            });
        }
        if requested > current {
            // The follower knows a newer epoch: this broker has not learned it is deposed yet.
            return Err(self.not_leader());
        }
        Ok(())
    }

    /// Whole batches from `offset` below the high watermark, as a file range to splice or tail
    /// cache memory (zero-copy for the local connection). Consumers only, from the leader.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadSlice, PartitionError> {
        self.read_as(Reader::Consumer, offset, max_bytes)
    }

    /// Whole batches from `offset` below what `reader` may see (see [`Reader`]).
    pub fn read_as(
        &self,
        reader: Reader,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadSlice, PartitionError> {
        let limit = self.read_limit(reader)?;
        self.log
            .read(offset, max_bytes, limit)
            .map_err(|error| self.error(error))
    }

    /// Same as [`Partition::read`] but copies the bytes (for answers that cross cores).
    pub async fn read_bytes(&self, offset: i64, max_bytes: usize) -> Result<Bytes, PartitionError> {
        self.read_bytes_as(Reader::Consumer, offset, max_bytes)
            .await
    }

    /// Same as [`Partition::read_as`] but copies the bytes.
    pub async fn read_bytes_as(
        &self,
        reader: Reader,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, PartitionError> {
        let limit = self.read_limit(reader)?;
        self.log
            .read_bytes(offset, max_bytes, limit)
            .await
            .map_err(|error| self.error(error))
    }

    /// The leader's side of a follower's fetch: checks the follower's epoch and offset, records
    /// the offset as the follower's log end, and moves the high watermark (waking producers and
    /// consumers waiting for it). Consumers pass through untouched.
    pub fn record_fetch(
        &self,
        reader: Reader,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<(), PartitionError> {
        let Reader::Replica {
            node_id,
            leader_epoch,
        } = reader
        else {
            return Ok(());
        };
        self.check_replica_epoch(leader_epoch)?;
        let (start, end) = (self.log.log_start_offset(), self.log.log_end_offset());
        if fetch_offset < start || fetch_offset > end {
            return Err(PartitionError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: fetch_offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let moved = match &mut *self.role.borrow_mut() {
            Role::Leader(state) => state.on_fetch(node_id, fetch_offset, end, now_ms),
            _ => false,
        };
        if moved {
            self.wake_waiters();
        }
        Ok(())
    }

    /// Resolves an offset query (leader only: consumers ask the leader). While a new leader's
    /// high watermark still lags the start of its epoch it does not know the committed end yet,
    /// so the latest offset, and a timestamp found at or past the high watermark, are refused
    /// with [`PartitionError::OffsetNotAvailable`] (retriable), as Kafka does.
    pub async fn list_offset(&self, query: OffsetQuery) -> Result<Option<i64>, PartitionError> {
        self.check_leader()?;
        match query {
            OffsetQuery::Earliest => Ok(Some(self.log.log_start_offset())),
            OffsetQuery::Latest => {
                self.check_offsets_available()?;
                Ok(Some(self.high_watermark()))
            }
            OffsetQuery::Timestamp(timestamp_ms) => {
                let batch = self
                    .log
                    .offset_for_timestamp(timestamp_ms)
                    .await
                    .map_err(|error| self.error(error))?;
                let Some(base_offset) = batch else {
                    return Ok(None);
                };
                let offset = self
                    .first_record_at_or_after(base_offset, timestamp_ms)
                    .await;
                // Consumers only see committed records.
                if offset < self.high_watermark() {
                    return Ok(Some(offset));
                }
                self.check_offsets_available()?;
                Ok(None)
            }
        }
    }

    /// Refuses offset queries while this leader's high watermark lags the start of its epoch.
    fn check_offsets_available(&self) -> Result<(), PartitionError> {
        match &*self.role.borrow() {
            Role::Leader(state) if state.high_watermark_lags_epoch_start() => {
                Err(PartitionError::OffsetNotAvailable {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    high_watermark: state.high_watermark(),
                    epoch_start_offset: state.epoch_start_offset(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The offset of the first record at or after `timestamp_ms` in the batch at
    /// `base_offset` (whose newest record is at or after it, as the time index found it): as
    /// Kafka answers, a record's own offset, not its batch's. Falls back to the batch's base
    /// offset when the batch cannot be decoded (a codec this build does not read).
    async fn first_record_at_or_after(&self, base_offset: i64, timestamp_ms: i64) -> i64 {
        let end = self.log.log_end_offset();
        // A budget of one byte still returns the whole first batch.
        let Ok(bytes) = self.log.read_bytes(base_offset, 1, end).await else {
            return base_offset;
        };
        sluice_storage::batch::decode_records(&bytes)
            .ok()
            .and_then(|records| {
                records
                    .iter()
                    .find(|record| record.timestamp >= timestamp_ms)
                    .map(|record| record.offset)
            })
            .unwrap_or(base_offset)
    }

    /// The leader's answer to OffsetForLeaderEpoch(`epoch`) (see
    /// [`replica::leader_epoch_end`]); `None` when undefined.
    pub fn epoch_end(&self, epoch: i32) -> Result<Option<(i32, i64)>, PartitionError> {
        let current = match &*self.role.borrow() {
            Role::Standalone => return Ok(self.log.end_offset_for_epoch(epoch)),
            Role::Leader(state) => state.epoch(),
            Role::Follower { .. } | Role::Offline { .. } => return Err(self.not_leader()),
        };
        Ok(replica::leader_epoch_end(
            epoch,
            current,
            self.log.end_offset_for_epoch(epoch),
            self.log.latest_epoch(),
            self.log.log_end_offset(),
        ))
    }

    /// A receiver that completes at the next append, high watermark move or role change (or
    /// when the partition is closed).
    pub fn subscribe(&self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|waiter| !waiter.is_canceled());
        waiters.push(sender);
        receiver
    }

    /// Waits until the partition's offsets move (see `subscribe`) or `left` passes.
    async fn wait_for_change(&self, left: Duration) {
        let woken = self.subscribe();
        futures_lite::future::or(
            async {
                let _ = woken.await;
            },
            glommio::timer::sleep(left),
        )
        .await;
    }

    fn watched(&self, visibility: Visibility) -> i64 {
        match visibility {
            Visibility::Committed => self.high_watermark(),
            Visibility::LogEnd => self.log.log_end_offset(),
        }
    }

    /// Resolves once the watched offset is above `offset` or the role changed, with no timer of
    /// its own: for callers that bound the wait themselves (a fetch waiting on many partitions
    /// arms one timer for all of them, not one per partition, since every timer armed and
    /// cancelled is reactor work on each wake-up).
    pub async fn moved_past(&self, visibility: Visibility, offset: i64) {
        let generation = self.generation.get();
        while self.watched(visibility) <= offset && self.generation.get() == generation {
            // Woken by the next append, high watermark move, role change or removal.
            let _ = self.subscribe().await;
        }
    }

    /// Waits until the high watermark is above `offset`, for at most `wait`. Returns true when
    /// data is available.
    pub async fn wait_for_data(&self, offset: i64, wait: Duration) -> bool {
        self.wait_until(Visibility::Committed, offset, wait).await
    }

    /// Waits until the watched offset is above `offset`, the role changes, or `wait` passes.
    /// Returns true when data is available.
    pub async fn wait_until(&self, visibility: Visibility, offset: i64, wait: Duration) -> bool {
        if self.watched(visibility) > offset {
            return true;
        }
        let generation = self.generation.get();
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.generation.get() != generation {
                return self.watched(visibility) > offset;
            }
            self.wait_for_change(left).await;
            if self.watched(visibility) > offset {
                return true;
            }
        }
    }

    /// Wakes every waiting fetch and producer (after an append, a high watermark move, a role
    /// change, or before the partition goes away).
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    /// Takes in this partition's replication state from the cluster metadata: becomes leader,
    /// follower or offline, or (same role and epoch) updates the leader's view of the ISR and
    /// of its followers' broker epochs. `live` says whether a broker is alive (a leader that is
    /// not is treated as none). Returns whether the role or epoch changed. Waits first for
    /// every write holding the role (leader appends, a follower fetcher's truncation or
    /// append), and holds off new ones until the change is made.
    pub async fn apply_replica_info(
        &self,
        node_id: i32,
        info: &ReplicaInfo,
        live: impl Fn(i32) -> bool,
        now_ms: i64,
    ) -> bool {
        let _gate = sluice_storage::sync::acquire_permit(&self.role_gate, 1).await;
        let _exclusive =
            sluice_storage::sync::acquire_permit(&self.role_lock, ROLE_HOLDERS_MAX).await;
        if info.leader_epoch < self.leader_epoch() && !matches!(self.role(), RoleView::Standalone) {
            return false;
        }
        let high_watermark = self.high_watermark();
        let next = {
            let mut role = self.role.borrow_mut();
            match (&mut *role, info.leader) {
                (Role::Leader(state), leader)
                    if leader == node_id && state.epoch() == info.leader_epoch =>
                {
                    state.update(info, now_ms);
                    state.advance_high_watermark(self.log.log_end_offset());
                    None
                }
                (_, leader) if leader == node_id => Some(Role::Leader(LeaderState::new(
                    node_id,
                    info,
                    self.log.log_end_offset(),
                    high_watermark,
                    now_ms,
                ))),
                (Role::Follower { leader, epoch, .. }, next_leader)
                    if *leader == next_leader
                        && *epoch == info.leader_epoch
                        && live(next_leader) =>
                {
                    None
                }
                (_, leader) if leader != NO_LEADER && live(leader) => Some(Role::Follower {
                    leader,
                    epoch: info.leader_epoch,
                    high_watermark,
                }),
                (Role::Offline { epoch, .. }, _) if *epoch == info.leader_epoch => None,
                _ => Some(Role::Offline {
                    epoch: info.leader_epoch,
                    high_watermark,
                }),
            }
        };
        let changed = next.is_some();
        if let Some(next) = next {
            tracing::info!(topic = self.topic, partition = self.partition, from = ?self.role(), to = ?role_name(&next), epoch = info.leader_epoch, "partition role changed");
            *self.role.borrow_mut() = next;
            self.generation.set(self.generation.get() + 1);
        }
        // A shrunken ISR or a new role can move the high watermark or end waits.
        self.wake_waiters();
        changed
    }

    /// The ISR change this leader wants now (see [`LeaderState::isr_change`]); marks it
    /// pending. `None` when not leader, or no change is due or one is pending.
    pub fn propose_isr_change(&self, now_ms: i64, lag_max_ms: u64) -> Option<IsrProposal> {
        let mut role = self.role.borrow_mut();
        let Role::Leader(state) = &mut *role else {
            return None;
        };
        let proposal = state.isr_change(now_ms, lag_max_ms)?;
        state.propose(&proposal);
        Some(proposal)
    }

    /// etcd answered sending `proposal` of the pending ISR change (see
    /// [`LeaderState::settle`]); an answer from an earlier epoch is ignored.
    pub fn settle_isr_change(&self, proposal: &IsrProposal, outcome: IsrOutcome) {
        let moved = {
            let mut role = self.role.borrow_mut();
            let Role::Leader(state) = &mut *role else {
                return;
            };
            if state.epoch() != proposal.leader_epoch {
                return;
            }
            state.settle(proposal.attempt, outcome);
            state.advance_high_watermark(self.log.log_end_offset())
        };
        if moved {
            self.wake_waiters();
        }
    }

    /// Leader only: the largest follower lag in messages, and whether the ISR is smaller than
    /// the replica set.
    pub fn replication_lag(&self) -> Option<(i64, bool)> {
        match &*self.role.borrow() {
            Role::Leader(state) => Some((
                state.max_follower_lag(self.log.log_end_offset()),
                state.isr().len() < state.replicas().len(),
            )),
            _ => None,
        }
    }

    /// Follower only: takes in the high watermark the leader reported (capped by this log's
    /// end).
    pub fn set_follower_high_watermark(&self, leader_high_watermark: i64) {
        let log_end = self.log.log_end_offset();
        if let Role::Follower { high_watermark, .. } = &mut *self.role.borrow_mut() {
            *high_watermark = leader_high_watermark.min(log_end);
        }
    }

    /// Follower only: appends batches fetched from the leader, keeping their offsets and
    /// epochs (the first must start at this log's end).
    pub async fn append_replicated(&self, batches: BytesMut) -> Result<i64, PartitionError> {
        let bytes = batches.len() as u64;
        let info = self
            .log
            .append_replicated(batches)
            .await
            .map_err(|error| self.error(error))?;
        self.appends.set(self.appends.get() + 1);
        self.appended_batches_bytes
            .set(self.appended_batches_bytes.get() + bytes);
        Ok(info.log_end_offset)
    }

    /// Follower only: empties the log and restarts it at `offset`, the leader's log start,
    /// when this log ends below it (retention on the leader deleted what it would fetch next;
    /// Kafka's `truncateFullyAndStartAt`). The high watermark follows the leader's next answer.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), PartitionError> {
        self.log
            .truncate_fully_and_start_at(offset)
            .await
            .map_err(|error| self.error(error))
    }

    /// Applies retention without ever deleting a segment holding offsets at or above the high
    /// watermark (records not yet replicated everywhere, or not yet known to be). Returns how
    /// many segments went.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        self.log
            .apply_retention_below(now_ms, self.high_watermark())
            .await
    }

    /// Writes the high-watermark checkpoint when the high watermark moved since the last one
    /// and at least [`HIGH_WATERMARK_CHECKPOINT_MS`] passed, or with `closing` whenever it
    /// moved (durably then). Single-node partitions have none: their high watermark is their
    /// log end.
    pub async fn checkpoint_high_watermark(
        &self,
        now_ms: i64,
        closing: bool,
    ) -> Result<(), StorageError> {
        if matches!(self.role(), RoleView::Standalone) {
            return Ok(());
        }
        let high_watermark = self.high_watermark();
        if self.checkpointed_high_watermark.get() == Some(high_watermark) {
            return Ok(());
        }
        let since = now_ms.saturating_sub(self.high_watermark_checkpointed_ms.get());
        if !closing && since < HIGH_WATERMARK_CHECKPOINT_MS {
            return Ok(());
        }
        self.log
            .checkpoint_high_watermark(high_watermark, closing)
            .await?;
        self.checkpointed_high_watermark.set(Some(high_watermark));
        self.high_watermark_checkpointed_ms.set(now_ms);
        Ok(())
    }

    /// Follower only: truncates the log to `offset` (whole batches) and caps the high
    /// watermark at the new end.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), PartitionError> {
        self.log
            .truncate_to(offset)
            .await
            .map_err(|error| self.error(error))?;
        let log_end = self.log.log_end_offset();
        if let Role::Follower { high_watermark, .. } = &mut *self.role.borrow_mut() {
            *high_watermark = (*high_watermark).min(log_end);
        }
        Ok(())
    }

    fn error(&self, error: StorageError) -> PartitionError {
        PartitionError::from_storage(&self.topic, self.partition, error)
    }
}

fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Standalone => "standalone",
        Role::Leader(_) => "leader",
        Role::Follower { .. } => "follower",
        Role::Offline { .. } => "offline",
    }
}

/// The name of the storage crate's clean-shutdown marker file inside a log directory (written
/// by `PartitionLog::close`, removed by `open`). Only read here, to log which recovery path a
/// partition takes.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean_shutdown";

/// The directory of a partition's log: `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Makes `dir` fit to hold the log of incarnation `topic_id` before it is opened: a directory
/// whose `partition.metadata` names another topic id belongs to an earlier incarnation of the
/// topic (deleted and created again while this broker was away) and is deleted. Returns whether
/// the file must be written once the log is open (a new directory, or one from before topic
/// ids, which adopts the current id). A file that cannot be read is an error: deleting a log
/// on a guess could destroy the only copy of its records.
async fn claim_partition_dir(
    dir: &Path,
    topic: &str,
    partition: i32,
    topic_id: Uuid,
) -> Result<bool, StorageError> {
    let path = dir.to_path_buf();
    let recorded = glommio::executor()
        .spawn_blocking(move || sluice_storage::checkpoint::read_partition_metadata(&path))
        .await
        .map_err(|source| metadata_error("read partition metadata", dir, source))?;
    let Some(recorded) = recorded else {
        return Ok(true);
    };
    let recorded_id = parse_topic_id_text(&recorded).ok_or_else(|| {
        metadata_error(
            "read partition metadata",
            dir,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{recorded:?} is not a topic id"),
            ),
        )
    })?;
    if recorded_id == topic_id {
        return Ok(false);
    }
    tracing::warn!(topic, partition, old = %recorded_id, new = %topic_id, dir = %dir.display(), "the log belongs to an earlier incarnation of the topic; deleting it");
    let path = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || std::fs::remove_dir_all(&path))
        .await
        .map_err(|source| StorageError::Io {
            operation: "remove old log directory",
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(true)
}

/// Writes `dir`'s `partition.metadata` naming `topic_id`.
async fn write_topic_id(dir: &Path, topic_id: Uuid) -> Result<(), StorageError> {
    let (path, text) = (dir.to_path_buf(), topic_id_text(topic_id));
    glommio::executor()
        .spawn_blocking(move || sluice_storage::checkpoint::write_partition_metadata(&path, &text))
        .await
        .map_err(|source| metadata_error("write partition metadata", dir, source))
}

fn metadata_error(operation: &'static str, dir: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        operation,
        path: dir.join(sluice_storage::checkpoint::PARTITION_METADATA_FILE),
        source,
    }
}

/// The topic configuration keys a topic may set: each overrides a [`LogConfig`] setting, except
/// `min.insync.replicas`, which overrides the broker's default for acks=all writes.
pub const TOPIC_CONFIG_KEYS: [&str; 11] = [
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "min.insync.replicas",
    "cleanup.policy",
    "delete.retention.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
];

/// The topic config key of the ISR size acks=all writes need.
pub const MIN_INSYNC_REPLICAS_KEY: &str = "min.insync.replicas";

/// The topic's `min.insync.replicas`, when it sets a valid one (at least 1).
pub fn topic_min_insync_replicas(configs: &[(String, String)]) -> Option<usize> {
    configs
        .iter()
        .rev()
        .find(|(key, _)| key == MIN_INSYNC_REPLICAS_KEY)
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .filter(|count| *count >= 1)
}

/// The log config of a topic: `base` with the topic's configuration entries applied.
/// `retention.ms` and `retention.bytes` take -1 for "no limit", as in Kafka.
/// `cleanup.policy` is `delete`, `compact` or `compact,delete`; `min.cleanable.dirty.ratio` a
/// number in [0, 1]; the other keys are integers.
pub fn topic_log_config(
    base: &LogConfig,
    configs: &[(String, String)],
) -> Result<LogConfig, ShardError> {
    let mut config = base.clone();
    for (key, value) in configs {
        let invalid = |reason: &str| ShardError::TopicConfig {
            key: key.clone(),
            value: value.clone(),
            reason: reason.to_string(),
        };
        match key.as_str() {
            "cleanup.policy" => {
                config.cleanup_policy = CleanupPolicy::parse(value)
                    .ok_or_else(|| invalid("must be delete, compact or compact,delete"))?;
                continue;
            }
            "min.cleanable.dirty.ratio" => {
                config.min_cleanable_dirty_ratio = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(Ratio::new)
                    .ok_or_else(|| invalid("must be a number in [0, 1]"))?;
                continue;
            }
            _ => {}
        }
        let number: i64 = value
            .trim()
            .parse()
            .map_err(|_| invalid("not an integer"))?;
        let positive = || u64::try_from(number).map_err(|_| invalid("must not be negative"));
        let optional = || {
            if number == -1 {
                Ok(None)
            } else {
                positive().map(Some)
            }
        };
        match key.as_str() {
            "retention.ms" => config.retention_ms = optional()?,
            "retention.bytes" => config.retention_bytes = optional()?,
            "segment.bytes" => config.segment_bytes_max = positive()?,
            "segment.ms" => config.segment_ms_max = positive()?,
            "delete.retention.ms" => config.delete_retention_ms = positive()?,
            "min.compaction.lag.ms" => config.min_compaction_lag_ms = positive()?,
            "max.compaction.lag.ms" => config.max_compaction_lag_ms = positive()?,
            "max.message.bytes" => {
                config.batch_bytes_max =
                    usize::try_from(positive()?).map_err(|_| invalid("too large"))?;
            }
            MIN_INSYNC_REPLICAS_KEY => {
                if number < 1 {
                    return Err(invalid("must be at least 1"));
                }
            }
            _ => {
                return Err(invalid(&format!(
                    "unknown topic config; known keys are {}",
                    TOPIC_CONFIG_KEYS.join(", ")
                )))
            }
        }
    }
    config.validate().map_err(|error| ShardError::TopicConfig {
        key: "(combined)".to_string(),
        value: String::new(),
        reason: error.to_string(),
    })?;
    Ok(config)
}

/// The partitions one shard owns, by topic and index. Lives on that shard only.
pub struct PartitionRegistry {
    data_dir: PathBuf,
    base_config: LogConfig,
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<Partition>>>>,
    /// Serialises reconcile/close so a log directory is never opened twice at once.
    changes: Semaphore,
}

impl PartitionRegistry {
    /// An empty registry whose logs live under `data_dir` with `base_config` (topic configs
    /// override parts of it).
    pub fn new(data_dir: impl Into<PathBuf>, base_config: LogConfig) -> PartitionRegistry {
        PartitionRegistry {
            data_dir: data_dir.into(),
            base_config,
            partitions: RefCell::new(HashMap::new()),
            changes: Semaphore::new(1),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log config partitions get before topic overrides.
    pub fn base_config(&self) -> &LogConfig {
        &self.base_config
    }

    /// The open partition `topic`-`partition`, if this shard has it.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    /// Number of open partitions.
    pub fn len(&self) -> usize {
        self.partitions.borrow().values().map(HashMap::len).sum()
    }

    /// True when no partition is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open partition.
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|by_index| by_index.values().cloned())
            .collect()
    }

    /// Makes the open partitions match what `table` says `shard` owns: opens (creating if
    /// missing) every owned partition that is not open, deletes the logs of open partitions
    /// whose topic or index no longer exists or whose topic is now another incarnation (a new
    /// topic id: deleted and created again), and closes (without deleting) any that moved to
    /// another shard or no longer has a replica on this broker. Tries every partition and
    /// returns the first error.
    pub async fn reconcile(&self, table: &ShardTable, shard: ShardId) -> Result<(), ShardError> {
        let _exclusive = sluice_storage::sync::acquire_permit(&self.changes, 1)
            .await
            .map_err(|_| ShardError::Stopped { shard: shard.0 })?;
        let mut first_error = None;
        for partition in self.all() {
            let (topic, index) = (partition.topic().to_string(), partition.partition());
            let result = match table.owner(&topic, index) {
                Some(owner) if owner == shard => {
                    let Some(current) = table.topic_id(&topic) else {
                        continue;
                    };
                    if partition.topic_id() == current {
                        self.apply_topic_configs(&partition, table);
                        continue;
                    }
                    tracing::warn!(topic, partition = index, old = %partition.topic_id(), new = %current, "the topic was deleted and created again; deleting the old incarnation's log");
                    self.remove(&topic, index, true).await
                }
                Some(_) => self.remove(&topic, index, false).await,
                // The partition exists but this broker is no longer one of its replicas: a
                // reassignment moved it away (or cancelled adding it here), so its log goes.
                None if table.has_partition(&topic, index) => {
                    self.remove(&topic, index, true).await
                }
                None => self.remove(&topic, index, true).await,
            };
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        let clustered = table.cluster().is_some();
        for (topic, index) in table.owned_by(shard) {
            if self.get(&topic, index).is_some() {
                continue;
            }
            let configs = table
                .topic(&topic)
                .map(|assignment| assignment.configs.clone())
                .unwrap_or_default();
            let topic_id = table.topic_id(&topic);
            if let Err(error) = self
                .open(&topic, index, topic_id, &configs, clustered)
                .await
            {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Gives an open partition the log settings its topic's configs in `table` make, when they
    /// changed (a topic config was altered). A config the log cannot take is logged and left
    /// out: the control plane validated it, so that is a bug, not an operator error.
    fn apply_topic_configs(&self, partition: &Partition, table: &ShardTable) {
        let Some(assignment) = table.topic(partition.topic()) else {
            return;
        };
        let wanted = match topic_log_config(&self.base_config, &assignment.configs) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(topic = partition.topic(), %error, "topic configs refused");
                return;
            }
        };
        if partition.log().config() == wanted {
            return;
        }
        match partition.log().set_config(wanted) {
            Ok(()) => tracing::info!(
                topic = partition.topic(),
                partition = partition.partition(),
                configs = ?assignment.configs,
                "applied changed topic configs"
            ),
            Err(error) => tracing::error!(
                topic = partition.topic(),
                partition = partition.partition(),
                %error,
                "changed topic configs not applied"
            ),
        }
    }

    async fn open(
        &self,
        topic: &str,
        partition: i32,
        topic_id: Option<Uuid>,
        configs: &[(String, String)],
        clustered: bool,
    ) -> Result<(), ShardError> {
        let config = topic_log_config(&self.base_config, configs)?;
        let dir = partition_dir(&self.data_dir, topic, partition);
        let failed = |operation, source| ShardError::Partition {
            operation,
            topic: topic.to_string(),
            partition,
            source,
        };
        let adopt = match topic_id {
            Some(topic_id) => claim_partition_dir(&dir, topic, partition, topic_id)
                .await
                .map_err(|source| failed("check the topic id of", source))?,
            None => false,
        };
        // Looked at before opening, since opening removes the marker.
        let clean_shutdown = dir.join(CLEAN_SHUTDOWN_MARKER).exists();
        let log = PartitionLog::open(&dir, config)
            .await
            .map_err(|source| failed("open", source))?;
        if let (true, Some(topic_id)) = (adopt, topic_id) {
            write_topic_id(&dir, topic_id)
                .await
                .map_err(|source| failed("write the topic id of", source))?;
        }
        let checkpointed = if clustered {
            log.read_high_watermark_checkpoint().await
        } else {
            None
        };
        tracing::info!(
            topic,
            partition,
            clean_shutdown,
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            checkpointed_high_watermark = checkpointed,
            "opened partition"
        );
        let role = if clustered {
            // The checkpointed high watermark, within the log (a crash may have cut the log
            // below it); without one the log start is a safe floor, and followers' fetches
            // raise it once this replica leads.
            let start = log.log_start_offset();
            let high_watermark =
                checkpointed.map_or(start, |offset| offset.clamp(start, log.log_end_offset()));
            Role::Offline {
                epoch: -1,
                high_watermark,
            }
        } else {
            Role::Standalone
        };
        let opened = Partition::with_topic_id(
            topic,
            partition,
            topic_id.unwrap_or_else(Uuid::nil),
            log,
            role,
        );
        opened.checkpointed_high_watermark.set(checkpointed);
        self.partitions
            .borrow_mut()
            .entry(topic.to_string())
            .or_default()
            .insert(partition, Rc::new(opened));
        Ok(())
    }

    async fn remove(&self, topic: &str, partition: i32, delete: bool) -> Result<(), ShardError> {
        let removed = {
            let mut partitions = self.partitions.borrow_mut();
            let removed = partitions
                .get_mut(topic)
                .and_then(|by_index| by_index.remove(&partition));
            if partitions.get(topic).is_some_and(HashMap::is_empty) {
                partitions.remove(topic);
            }
            removed
        };
        let Some(removed) = removed else {
            return Ok(());
        };
        removed.wake_waiters();
        if !delete {
            // Durably, so a restart serves the committed offsets at once.
            if let Err(error) = removed
                .checkpoint_high_watermark(crate::now_ms(), true)
                .await
            {
                tracing::warn!(topic, partition, %error, "high watermark not checkpointed at close");
            }
        }
        let (operation, result) = if delete {
            ("delete", removed.log().delete().await)
        } else {
            ("close", removed.log().close().await)
        };
        tracing::info!(topic, partition, operation, "removed partition");
        result.map_err(|source| ShardError::Partition {
            operation,
            topic: topic.to_string(),
            partition,
            source,
        })
    }

    /// Flushes and closes every open partition (each writes its clean-shutdown marker), leaving
    /// the registry empty. Tries every partition and returns the first error.
    pub async fn close_all(&self) -> Result<(), ShardError> {
        let _exclusive = sluice_storage::sync::acquire_permit(&self.changes, 1)
            .await
            .map_err(|_| ShardError::Stopped { shard: u32::MAX })?;
        let mut first_error = None;
        for partition in self.all() {
            let result = self
                .remove(partition.topic(), partition.partition(), false)
                .await;
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves topic configs override the base log config (with -1 meaning "no limit") and that an
    // unknown key or a bad value is refused with the key named.
    #[test]
    fn topic_configs_override_the_base() {
        let base = LogConfig::default();
        let configs = vec![
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "1048576".to_string()),
            ("segment.bytes".to_string(), "65536".to_string()),
        ];
        let config = topic_log_config(&base, &configs).unwrap();
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(1_048_576));
        assert_eq!(config.segment_bytes_max, 65_536);
        assert_eq!(config.write_mode, base.write_mode);

        let unknown = vec![("flush.messages".to_string(), "1".to_string())];
        let error = topic_log_config(&base, &unknown).unwrap_err().to_string();
        assert!(error.contains("flush.messages"), "{error}");
        let negative = vec![("segment.ms".to_string(), "-5".to_string())];
        let error = topic_log_config(&base, &negative).unwrap_err().to_string();
        assert!(error.contains("segment.ms"), "{error}");
    }

    // Proves the compaction keys set their LogConfig settings, and that a bad policy, a ratio
    // outside [0, 1] and a minimum lag above the maximum are refused naming the key.
    #[test]
    fn compaction_configs_apply_and_are_checked() {
        let base = LogConfig::default();
        let entries = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let config = topic_log_config(
            &base,
            &entries(&[
                ("cleanup.policy", "compact,delete"),
                ("delete.retention.ms", "1000"),
                ("min.cleanable.dirty.ratio", "0.25"),
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "60000"),
            ]),
        )
        .unwrap();
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(config.delete_retention_ms, 1000);
        assert_eq!(config.min_cleanable_dirty_ratio, Ratio::new(0.25).unwrap());
        assert_eq!(
            (config.min_compaction_lag_ms, config.max_compaction_lag_ms),
            (10, 60_000)
        );
        for (key, value) in [
            ("cleanup.policy", "shred"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("delete.retention.ms", "-1"),
        ] {
            let error = topic_log_config(&base, &entries(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{error}");
        }
        let inverted = entries(&[
            ("min.compaction.lag.ms", "5000"),
            ("max.compaction.lag.ms", "10"),
        ]);
        let error = topic_log_config(&base, &inverted).unwrap_err().to_string();
        assert!(error.contains("min_compaction_lag_ms"), "{error}");
    }
}
