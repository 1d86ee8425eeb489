//! [`GroupConsumer`]: a member of a consumer group, on top of the assigned [`Consumer`].
//!
//! What a user relies on:
//! - `subscribe(topics)`, then `poll`: the member joins the group inside `poll` and reads only
//!   the partitions the group assigns it, starting at the group's committed offsets (or at
//!   `auto_offset_reset` where it has none). `poll_batches` does the same and returns the
//!   fetched batches whole, read in place with `FetchedBatches::for_each_record`.
//! - At-least-once: with auto commit, the positions of what `poll` returned are committed
//!   every `auto_commit_interval_ms`, before partitions are given up in a rebalance, and on
//!   `close`; a partition's next owner resumes at the last commit, so only records after it
//!   may be read twice, and none is skipped.
//! - A heartbeat task keeps the membership alive while the application processes records;
//!   when the group rebalances, the next `poll` takes part in it. With an eager assignor
//!   (range, round-robin) every partition is given up before rejoining; with
//!   cooperative-sticky only the partitions that move are, after the rebalance (KIP-429), and
//!   the member rejoins once more so they can be handed over.
//! - `close` commits, leaves the group (a dynamic member) and stops the heartbeats; a member
//!   dropped without `close` is removed once its session times out.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::Task;
use sluice_group::consumer_protocol::{
    Assignment, Subscription, TopicPartitions, CONSUMER_PROTOCOL_TYPE,
};
use sluice_net::api::ErrorCode;
use sluice_net::messages::{
    CommitPartition, GroupAssignmentMeta, GroupProtocolMeta, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, LeavingMemberMeta,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicPartitionMeta,
};

use super::assignor::{assign, MemberSubscription, TopicPartition};
use super::config::{Assignor, AutoOffsetReset, GroupConsumerConfig};
use super::link::{coordinator_moved, CoordinatorLink};
use crate::client::Client;
use crate::config::{ConsumerConfig, OffsetSpec, SeekTo};
use crate::consumer::Consumer;
use crate::error::ClientError;
use crate::fetch::{ConsumerRecord, FetchedBatches};

/// Told about partitions the member gives up and receives, inside `poll` (Kafka's
/// `ConsumerRebalanceListener`).
pub trait RebalanceListener {
    /// The member no longer reads `partitions` (their positions were committed first when
    /// auto commit is on).
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]);
    /// The member now reads `partitions` (added to what it already had).
    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]);
}

/// Rebalances this member took part in, and the time they took (from the first poll that
/// noticed the rebalance to the new assignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RebalanceStats {
    /// Completed rebalances.
    pub rebalances: u64,
    /// Their summed duration, ms.
    pub rebalance_ms_total: u64,
    /// The last one's duration, ms.
    pub last_rebalance_ms: u64,
    /// The longest one, ms.
    pub rebalance_ms_max: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Unjoined,
    Joining,
    Stable,
}

#[derive(Debug, Clone)]
struct Membership {
    member_id: String,
    generation: i32,
    protocol: Option<Assignor>,
    phase: Phase,
}

/// What the member shares with its heartbeat task and asynchronous commits.
struct MemberShared {
    link: CoordinatorLink,
    config: GroupConsumerConfig,
    membership: RefCell<Membership>,
    /// Set when the group asks for a rejoin (a heartbeat or commit said so).
    rejoin: Cell<bool>,
    /// A failure the next poll reports (this static member was fenced).
    fatal: RefCell<Option<String>>,
}

/// A rebalance's outcome: the membership and this member's partitions.
struct Joined {
    member_id: String,
    generation: i32,
    protocol: Assignor,
    assignment: Vec<TopicPartition>,
}

/// A member of a consumer group. `!Send`; lives on its client's executor.
pub struct GroupConsumer {
    shared: Rc<MemberShared>,
    consumer: Consumer,
    subscription: Vec<String>,
    owned: Vec<TopicPartition>,
    listener: Option<Box<dyn RebalanceListener>>,
    rebalance: Option<Task<Result<Joined, ClientError>>>,
    rebalance_started: Option<Instant>,
    heartbeat: Option<Task<()>>,
    last_auto_commit: Instant,
    committed: HashMap<TopicPartition, i64>,
    /// Records fetched but not returned yet (`poll_records` returns at most its bound).
    buffered: std::collections::VecDeque<ConsumerRecord>,
    /// Per assigned partition, the offset after the last record returned: what commits and
    /// `position` report.
    returned: HashMap<TopicPartition, i64>,
    stats: RebalanceStats,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GroupConsumer")
            .field("group", &self.shared.config.group_id)
            .field("membership", &*self.shared.membership.borrow())
            .field("owned", &self.owned)
            .finish()
    }
}

impl GroupConsumer {
    /// A member of `config.group_id` that has not joined yet (it joins in its first `poll`
    /// after `subscribe`).
    pub fn new(
        client: Rc<Client>,
        consumer_config: ConsumerConfig,
        config: GroupConsumerConfig,
    ) -> Result<GroupConsumer, ClientError> {
        config.validate()?;
        let link = CoordinatorLink::new(client.clone(), &config.group_id);
        Ok(GroupConsumer {
            shared: Rc::new(MemberShared {
                link,
                config,
                membership: RefCell::new(Membership {
                    member_id: String::new(),
                    generation: -1,
                    protocol: None,
                    phase: Phase::Unjoined,
                }),
                rejoin: Cell::new(false),
                fatal: RefCell::new(None),
            }),
            consumer: Consumer::new(client, consumer_config),
            subscription: Vec::new(),
            owned: Vec::new(),
            listener: None,
            rebalance: None,
            rebalance_started: None,
            heartbeat: None,
            last_auto_commit: Instant::now(),
            committed: HashMap::new(),
            buffered: std::collections::VecDeque::new(),
            returned: HashMap::new(),
            stats: RebalanceStats::default(),
        })
    }

    /// Subscribes to `topics` (replacing the subscription); a member of the group rejoins so
    /// the group assigns again.
    pub fn subscribe(&mut self, topics: Vec<String>) {
        let mut topics = topics;
        topics.sort();
        topics.dedup();
        if topics != self.subscription {
            self.subscription = topics;
            self.shared.rejoin.set(true);
        }
    }

    /// Sets the listener told about partitions revoked and assigned.
    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// The partitions assigned now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.clone()
    }

    /// The member id the coordinator gave (empty before the first join).
    pub fn member_id(&self) -> String {
        self.shared.membership.borrow().member_id.clone()
    }

    /// The group generation this member is in (-1 before the first join).
    pub fn generation(&self) -> i32 {
        self.shared.membership.borrow().generation
    }

    /// Rebalances so far and their duration.
    pub fn rebalance_stats(&self) -> RebalanceStats {
        self.stats
    }

    /// The offset of the next record `poll` returns for an assigned partition (what a commit
    /// of this partition stores).
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.returned.get(&(topic.to_string(), partition)).copied()
    }

    /// Records left to read in an assigned partition: its log end (high watermark) minus the
    /// position.
    pub async fn lag(&self, topic: &str, partition: i32) -> Result<i64, ClientError> {
        let position = self
            .position(topic, partition)
            .ok_or_else(|| ClientError::Config {
                reason: format!("{topic}-{partition} is not assigned to this member"),
            })?;
        let end = self
            .shared
            .link
            .client()
            .list_offset(topic, partition, OffsetSpec::Latest)
            .await?;
        Ok((end - position).max(0))
    }

    /// The group's committed offsets of `partitions` (`None` where it has none).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<i64>>, ClientError> {
        fetch_committed(&self.shared, partitions).await
    }

    /// Polls for records: takes part in a rebalance when the group has one (within `timeout`),
    /// commits automatically when due, then fetches from the assigned partitions until records
    /// arrive or `timeout` passes (empty then).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.poll_records(timeout, usize::MAX).await
    }

    /// [`GroupConsumer::poll`] returning at most `max_records` records (Kafka's
    /// `max.poll.records`); the rest are returned by the next polls. Positions, and so commits,
    /// cover only what was returned.
    pub async fn poll_records(
        &mut self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let mut records: Vec<ConsumerRecord> = self.poll_fetched(timeout).await?;
        let max_records = max_records.max(1);
        if !self.buffered.is_empty() || records.len() > max_records {
            self.buffered.extend(records);
            let count = self.buffered.len().min(max_records);
            records = self.buffered.drain(..count).collect();
        }
        // Each partition's records are in offset order: the last of a run is its position.
        let same_partition = |a: &ConsumerRecord, b: &ConsumerRecord| {
            a.partition == b.partition && a.topic == b.topic
        };
        for run in records.chunk_by(same_partition) {
            let last = &run[run.len() - 1];
            self.returned
                .insert((last.topic.to_string(), last.partition), last.offset + 1);
        }
        Ok(records)
    }

    /// [`GroupConsumer::poll`] returning each partition's fetched batches whole, to be read in
    /// place with [`FetchedBatches::for_each_record`]: no list of records, no allocation or
    /// reference count per record, for a consumer that looks at each record once. Positions,
    /// and so commits, cover every batch returned, so a batch that then fails to read (its
    /// CRC matched: only a codec error) is not fetched again. Refused while records of a
    /// limited [`GroupConsumer::poll_records`] are still buffered (poll those first).
    pub async fn poll_batches(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<FetchedBatches>, ClientError> {
        if !self.buffered.is_empty() {
            return Err(ClientError::Config {
                reason: "poll_batches while records of a limited poll_records are buffered: \
                         poll those first"
                    .to_string(),
            });
        }
        let batches: Vec<FetchedBatches> = self.poll_fetched(timeout).await?;
        for fetched in &batches {
            self.returned.insert(
                (fetched.topic.to_string(), fetched.partition),
                fetched.next_offset,
            );
        }
        Ok(batches)
    }

    /// What the inner consumer fetched, as records or batches (nothing while records are
    /// buffered: those go first).
    async fn poll_fetched<P: Polled>(&mut self, timeout: Duration) -> Result<P, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(reason) = self.shared.fatal.borrow().clone() {
                return Err(ClientError::CommitFailed {
                    group: self.shared.config.group_id.clone(),
                    reason,
                });
            }
            if self.ensure_member(deadline).await? {
                self.maybe_auto_commit().await;
                if !self.buffered.is_empty() {
                    // Records fetched earlier are returned first.
                    return Ok(P::default());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let slice = left.min(Duration::from_millis(
                    self.shared.config.heartbeat_interval_ms,
                ));
                match P::poll(&mut self.consumer, slice).await {
                    Ok(polled) if !polled.is_empty() => return Ok(polled),
                    Ok(_) => {}
                    Err(ClientError::OffsetOutOfRange {
                        topic, partition, ..
                    }) => {
                        self.reset_position(&topic, partition).await?;
                    }
                    Err(error) => return Err(error),
                }
            }
            if Instant::now() >= deadline {
                return Ok(P::default());
            }
        }
    }

    /// Commits the positions of every assigned partition, and waits for the answer.
    pub async fn commit_sync(&mut self) -> Result<(), ClientError> {
        let offsets = self.positions(false);
        self.commit_offsets(offsets).await
    }

    /// Commits `offsets` (topic, partition, next offset to read), and waits for the answer.
    pub async fn commit_offsets(
        &mut self,
        offsets: Vec<(String, i32, i64)>,
    ) -> Result<(), ClientError> {
        commit(&self.shared, &offsets).await?;
        for (topic, partition, offset) in offsets {
            self.committed.insert((topic, partition), offset);
        }
        self.last_auto_commit = Instant::now();
        Ok(())
    }

    /// Commits the positions of every assigned partition in the background; the task ends
    /// with the outcome (detach it to ignore it).
    pub fn commit_async(&mut self) -> Task<Result<(), ClientError>> {
        let offsets = self.positions(false);
        for (topic, partition, offset) in &offsets {
            self.committed.insert((topic.clone(), *partition), *offset);
        }
        let shared = self.shared.clone();
        glommio::spawn_local(async move { commit(&shared, &offsets).await })
    }

    /// Commits (with auto commit), leaves the group (dynamic members; a static member keeps
    /// its place for a restart within its session timeout), and stops heartbeating.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.rebalance = None;
        let stable = self.shared.membership.borrow().phase == Phase::Stable;
        let mut result = Ok(());
        if self.shared.config.enable_auto_commit && stable && !self.owned.is_empty() {
            result = self.commit_sync().await;
        }
        self.heartbeat = None;
        let member_id = self.member_id();
        if !member_id.is_empty() && self.shared.config.group_instance_id.is_none() {
            let request = LeaveGroupRequest {
                group_id: self.shared.config.group_id.clone(),
                members: vec![LeavingMemberMeta {
                    member_id,
                    group_instance_id: None,
                }],
            };
            let left = self
                .shared
                .link
                .request_retrying(&request, |response: &LeaveGroupResponse| response.error)
                .await;
            if let Err(error) = left {
                tracing::debug!(%error, group = %self.shared.config.group_id, "leaving the group failed; the session timeout removes the member");
            }
        }
        result
    }

    /// The positions of the assigned partitions; with `changed_only`, those that moved since
    /// their last commit.
    fn positions(&self, changed_only: bool) -> Vec<(String, i32, i64)> {
        self.owned
            .iter()
            .filter_map(|(topic, partition)| {
                let key = (topic.clone(), *partition);
                let position = *self.returned.get(&key)?;
                let unchanged = self.committed.get(&key) == Some(&position);
                (!changed_only || !unchanged).then(|| (topic.clone(), *partition, position))
            })
            .collect()
    }

    async fn maybe_auto_commit(&mut self) {
        let interval = Duration::from_millis(self.shared.config.auto_commit_interval_ms);
        if !self.shared.config.enable_auto_commit || self.last_auto_commit.elapsed() < interval {
            return;
        }
        let offsets = self.positions(true);
        self.last_auto_commit = Instant::now();
        if offsets.is_empty() {
            return;
        }
        if let Err(error) = self.commit_offsets(offsets).await {
            tracing::debug!(%error, group = %self.shared.config.group_id, "automatic commit failed");
        }
    }

    /// Makes sure the member is in the group with an assignment, taking part in a rebalance
    /// when one is due. True when it is (false: the rebalance is still going at `deadline`).
    async fn ensure_member(&mut self, deadline: Instant) -> Result<bool, ClientError> {
        if self.subscription.is_empty() {
            return Err(ClientError::Config {
                reason: "subscribe to at least one topic before polling".to_string(),
            });
        }
        let phase = self.shared.membership.borrow().phase;
        if phase == Phase::Stable && !self.shared.rejoin.get() && self.rebalance.is_none() {
            return Ok(true);
        }
        if self.rebalance.is_none() {
            self.start_rebalance().await;
        }
        let Some(mut task) = self.rebalance.take() else {
            return Ok(false);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let finished = futures_lite::future::or(async { Some((&mut task).await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match finished {
            None => {
                self.rebalance = Some(task);
                Ok(false)
            }
            Some(Ok(joined)) => {
                self.apply(joined).await?;
                Ok(true)
            }
            Some(Err(error)) => {
                self.shared.membership.borrow_mut().phase = Phase::Unjoined;
                Err(error)
            }
        }
    }

    /// Begins a rebalance: an eager member gives up every partition first (committing their
    /// positions), then the join runs in its own task.
    async fn start_rebalance(&mut self) {
        let cooperative = self
            .shared
            .membership
            .borrow()
            .protocol
            .is_some_and(Assignor::is_cooperative);
        if !cooperative && !self.owned.is_empty() {
            let revoked = std::mem::take(&mut self.owned);
            self.give_up(&revoked).await;
            self.reassign(&[]).await;
        }
        self.rebalance_started.get_or_insert_with(Instant::now);
        self.shared.rejoin.set(false);
        self.shared.membership.borrow_mut().phase = Phase::Joining;
        let shared = self.shared.clone();
        let subscription = self.subscription.clone();
        let owned = self.owned.clone();
        self.rebalance = Some(glommio::spawn_local(async move {
            join_and_sync(&shared, &subscription, &owned).await
        }));
    }

    /// Commits the positions of `partitions` (with auto commit) and tells the listener they
    /// are revoked.
    async fn give_up(&mut self, partitions: &[TopicPartition]) {
        if self.shared.config.enable_auto_commit {
            let offsets: Vec<(String, i32, i64)> = partitions
                .iter()
                .filter_map(|(topic, partition)| {
                    self.returned
                        .get(&(topic.clone(), *partition))
                        .map(|position| (topic.clone(), *partition, *position))
                })
                .collect();
            if !offsets.is_empty() {
                if let Err(error) = self.commit_offsets(offsets).await {
                    tracing::info!(%error, group = %self.shared.config.group_id, "committing revoked partitions failed; their next owner may read some records again");
                }
            }
        }
        if let Some(listener) = &mut self.listener {
            listener.on_partitions_revoked(partitions);
        }
    }

    /// Takes in a rebalance's outcome: revokes what moved away (cooperative), finds where to
    /// start in what was added, and reads the new assignment.
    async fn apply(&mut self, joined: Joined) -> Result<(), ClientError> {
        {
            let mut membership = self.shared.membership.borrow_mut();
            membership.member_id = joined.member_id;
            membership.generation = joined.generation;
            membership.protocol = Some(joined.protocol);
        }
        let new: BTreeSet<TopicPartition> = joined.assignment.into_iter().collect();
        let old: BTreeSet<TopicPartition> = self.owned.iter().cloned().collect();
        let revoked: Vec<TopicPartition> = old.difference(&new).cloned().collect();
        let added: Vec<TopicPartition> = new.difference(&old).cloned().collect();
        if !revoked.is_empty() {
            self.give_up(&revoked).await;
            // KIP-429: what was revoked is handed over in a follow-up rebalance.
            self.shared.rejoin.set(true);
        }
        let mut positions = self.start_positions(&added).await?;
        for partition in &new {
            if let Some(position) = self.returned.get(partition) {
                positions.push((partition.clone(), *position));
            }
        }
        self.owned = new.into_iter().collect();
        self.reassign(&positions).await;
        if let Some(listener) = &mut self.listener {
            listener.on_partitions_assigned(&added);
        }
        self.shared.membership.borrow_mut().phase = Phase::Stable;
        if let Some(started) = self.rebalance_started.take() {
            let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.stats.rebalances += 1;
            self.stats.rebalance_ms_total += elapsed;
            self.stats.last_rebalance_ms = elapsed;
            self.stats.rebalance_ms_max = self.stats.rebalance_ms_max.max(elapsed);
        }
        if self.heartbeat.is_none() {
            let shared = self.shared.clone();
            self.heartbeat = Some(glommio::spawn_local(heartbeat_loop(shared)));
        }
        Ok(())
    }

    /// Where to start reading `partitions`: the group's committed offsets, else
    /// `auto_offset_reset`.
    async fn start_positions(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, i64)>, ClientError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let committed = fetch_committed(&self.shared, partitions).await?;
        let mut positions = Vec::with_capacity(partitions.len());
        let mut missing = Vec::new();
        for (partition, offset) in partitions.iter().zip(committed) {
            match offset {
                Some(offset) => {
                    self.committed.insert(partition.clone(), offset);
                    positions.push((partition.clone(), offset));
                }
                None => missing.push(partition.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(positions);
        }
        let spec = match self.shared.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
            AutoOffsetReset::None => {
                let (topic, partition) = missing.swap_remove(0);
                return Err(ClientError::NoCommittedOffset {
                    group: self.shared.config.group_id.clone(),
                    topic,
                    partition,
                });
            }
        };
        let offsets = self
            .shared
            .link
            .client()
            .list_offsets(&missing, spec)
            .await?;
        positions.extend(missing.into_iter().zip(offsets));
        Ok(positions)
    }

    /// Makes the inner consumer read exactly `positions` (records fetched but not returned are
    /// dropped: they are fetched again from the positions).
    async fn reassign(&mut self, positions: &[(TopicPartition, i64)]) {
        self.buffered.clear();
        self.returned = positions.iter().cloned().collect();
        let partitions: Vec<TopicPartition> = positions
            .iter()
            .map(|(partition, _)| partition.clone())
            .collect();
        // Offsets are given, so assigning and seeking need no request.
        if let Err(error) = self.consumer.assign(partitions, SeekTo::Offset(0)).await {
            tracing::warn!(%error, "assigning the group's partitions failed");
            self.shared.rejoin.set(true);
            return;
        }
        for ((topic, partition), position) in positions {
            if let Err(error) = self
                .consumer
                .seek(topic, *partition, SeekTo::Offset(*position))
                .await
            {
                tracing::warn!(%error, topic, partition, "seeking to the committed offset failed");
            }
        }
    }

    /// A position fell outside the log (retention deleted it): start again per
    /// `auto_offset_reset`.
    async fn reset_position(&mut self, topic: &str, partition: i32) -> Result<(), ClientError> {
        let to = match self.shared.config.auto_offset_reset {
            AutoOffsetReset::Earliest => SeekTo::Earliest,
            AutoOffsetReset::Latest => SeekTo::Latest,
            AutoOffsetReset::None => {
                return Err(ClientError::NoCommittedOffset {
                    group: self.shared.config.group_id.clone(),
                    topic: topic.to_string(),
                    partition,
                })
            }
        };
        self.consumer.seek(topic, partition, to).await?;
        self.buffered
            .retain(|record| !(&*record.topic == topic && record.partition == partition));
        if let Some(position) = self.consumer.position(topic, partition) {
            self.returned
                .insert((topic.to_string(), partition), position);
        }
        Ok(())
    }
}

/// The group's committed offsets of `partitions`.
async fn fetch_committed(
    shared: &MemberShared,
    partitions: &[TopicPartition],
) -> Result<Vec<Option<i64>>, ClientError> {
    let request = OffsetFetchRequest {
        group_id: shared.config.group_id.clone(),
        partitions: Some(
            partitions
                .iter()
                .map(|(topic, partition)| TopicPartitionMeta {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect(),
        ),
    };
    let response: OffsetFetchResponse = shared
        .link
        .request_retrying(&request, |response: &OffsetFetchResponse| response.error)
        .await?;
    if response.error != ErrorCode::None.code() {
        return Err(ClientError::from_code(
            response.error,
            format!(
                "fetch the committed offsets of group {}",
                shared.config.group_id
            ),
        ));
    }
    Ok(partitions
        .iter()
        .map(|(topic, partition)| {
            response
                .partitions
                .iter()
                .find(|found| &found.topic == topic && found.partition == *partition)
                .map(|found| found.offset)
                .filter(|offset| *offset >= 0)
        })
        .collect())
}

/// Commits `offsets` in the member's current generation.
async fn commit(shared: &MemberShared, offsets: &[(String, i32, i64)]) -> Result<(), ClientError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let (member_id, generation) = {
        let membership = shared.membership.borrow();
        (membership.member_id.clone(), membership.generation)
    };
    let group = shared.config.group_id.clone();
    if member_id.is_empty() || generation < 0 {
        return Err(ClientError::CommitFailed {
            group,
            reason: "the member has not joined the group yet".to_string(),
        });
    }
    let request = OffsetCommitRequest {
        group_id: group.clone(),
        generation_id: generation,
        member_id,
        group_instance_id: shared.config.group_instance_id.clone(),
        partitions: offsets
            .iter()
            .map(|(topic, partition, offset)| CommitPartition {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                leader_epoch: -1,
                metadata: None,
            })
            .collect(),
    };
    let response: OffsetCommitResponse = shared
        .link
        .request_retrying(&request, |response: &OffsetCommitResponse| {
            response
                .partitions
                .first()
                .map_or(0, |partition| partition.error)
        })
        .await?;
    for result in &response.partitions {
        match ErrorCode::from_i16(result.error) {
            Some(ErrorCode::None) => {}
            Some(
                code @ (ErrorCode::RebalanceInProgress
                | ErrorCode::IllegalGeneration
                | ErrorCode::UnknownMemberId
                | ErrorCode::FencedInstanceId),
            ) => {
                note_membership_error(shared, code);
                return Err(ClientError::CommitFailed {
                    group,
                    reason: format!("{code} ({:?}); the member rejoins", code),
                });
            }
            _ => {
                return Err(ClientError::from_code(
                    result.error,
                    format!(
                        "commit {}-{} for group {group}",
                        result.topic, result.partition
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// A group answer says the membership is over or the group rebalances: rejoin (with a new
/// member id when the old one is unknown; a fenced static member stops).
fn note_membership_error(shared: &MemberShared, code: ErrorCode) {
    match code {
        ErrorCode::UnknownMemberId => {
            let mut membership = shared.membership.borrow_mut();
            membership.member_id.clear();
            membership.generation = -1;
        }
        ErrorCode::FencedInstanceId => {
            *shared.fatal.borrow_mut() = Some(format!(
                "another member with group.instance.id {:?} replaced this one",
                shared.config.group_instance_id
            ));
        }
        _ => {}
    }
    shared.rejoin.set(true);
}

/// The JoinGroup a member sends: one protocol per assignor, each carrying its subscription
/// (with what it owns, for cooperative rebalancing).
fn join_request(
    shared: &MemberShared,
    subscription: &[String],
    owned: &[TopicPartition],
) -> JoinGroupRequest {
    let membership = shared.membership.borrow();
    let mut owned_by_topic: Vec<TopicPartitions> = Vec::new();
    for (topic, partition) in owned {
        match owned_by_topic
            .iter_mut()
            .find(|entry| &entry.topic == topic)
        {
            Some(entry) => entry.partitions.push(*partition),
            None => owned_by_topic.push(TopicPartitions {
                topic: topic.clone(),
                partitions: vec![*partition],
            }),
        }
    }
    let metadata = Subscription {
        topics: subscription.to_vec(),
        user_data: None,
        owned_partitions: owned_by_topic,
        generation_id: membership.generation,
        rack_id: None,
    }
    .encode();
    let config = &shared.config;
    JoinGroupRequest {
        group_id: config.group_id.clone(),
        session_timeout_ms: i32::try_from(config.session_timeout_ms).unwrap_or(i32::MAX),
        rebalance_timeout_ms: i32::try_from(config.rebalance_timeout_ms).unwrap_or(i32::MAX),
        member_id: membership.member_id.clone(),
        group_instance_id: config.group_instance_id.clone(),
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
        protocols: config
            .assignors
            .iter()
            .map(|assignor| GroupProtocolMeta {
                name: assignor.name().to_string(),
                metadata: metadata.clone(),
            })
            .collect(),
        client_id: config.client_id.clone(),
    }
}

/// Joins (again) and syncs until the member holds an assignment of a generation. Coordinator
/// moves and lost connections are retried with backoff; refusals (a fenced static member,
/// incompatible protocols, a full group, bad settings) end it with an error.
async fn join_and_sync(
    shared: &MemberShared,
    subscription: &[String],
    owned: &[TopicPartition],
) -> Result<Joined, ClientError> {
    let client = shared.link.client().clone();
    let long_poll =
        Duration::from_millis(shared.config.rebalance_timeout_ms) + client.request_timeout();
    let mut attempt = 0u32;
    loop {
        let request = join_request(shared, subscription, owned);
        let joined = match shared
            .link
            .request::<_, JoinGroupResponse>(&request, long_poll)
            .await
        {
            Ok(response) => response,
            Err(error) if error.is_retriable() => {
                retry_pause(&client, &mut attempt, &error).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        match ErrorCode::from_i16(joined.error) {
            Some(ErrorCode::None) => {}
            Some(ErrorCode::MemberIdRequired) => {
                shared.membership.borrow_mut().member_id = joined.member_id;
                continue;
            }
            Some(code) if rejoinable(code) => {
                note_membership_error(shared, code);
                shared.rejoin.set(false);
                if coordinator_moved(code) {
                    shared.link.reset();
                }
                retry_pause(
                    &client,
                    &mut attempt,
                    &ClientError::from_code(joined.error, "join group"),
                )
                .await;
                continue;
            }
            _ => {
                let detail = joined.message.unwrap_or_default();
                return Err(ClientError::from_code(
                    joined.error,
                    format!("join group {} {detail}", shared.config.group_id),
                ));
            }
        }
        {
            let mut membership = shared.membership.borrow_mut();
            membership.member_id = joined.member_id.clone();
            membership.generation = joined.generation_id;
        }
        match sync(shared, &client, joined).await? {
            Some(done) => return Ok(done),
            None => {
                retry_pause(
                    &client,
                    &mut attempt,
                    &ClientError::Timeout {
                        op: "sync group".to_string(),
                    },
                )
                .await
            }
        }
    }
}

/// Join answers after which the member simply joins again.
fn rejoinable(code: ErrorCode) -> bool {
    coordinator_moved(code)
        || matches!(
            code,
            ErrorCode::UnknownMemberId
                | ErrorCode::RebalanceInProgress
                | ErrorCode::IllegalGeneration
        )
}

async fn retry_pause(client: &Client, attempt: &mut u32, error: &ClientError) {
    tracing::debug!(%error, attempt = *attempt, "rejoining the group after a pause");
    glommio::timer::sleep(client.backoff(*attempt)).await;
    *attempt = (*attempt + 1).min(16);
}

/// SyncGroup after a successful JoinGroup (the leader computes and sends every member's
/// assignment). `None`: the generation is over already; join again.
async fn sync(
    shared: &MemberShared,
    client: &Rc<Client>,
    joined: JoinGroupResponse,
) -> Result<Option<Joined>, ClientError> {
    let protocol_name = joined.protocol_name.clone().unwrap_or_default();
    let protocol =
        Assignor::from_name(&protocol_name).ok_or_else(|| ClientError::InvalidResponse {
            op: "join group",
            reason: format!(
                "the group chose protocol {protocol_name:?}, which this member did not offer"
            ),
        })?;
    let assignments = if joined.leader == joined.member_id {
        leader_assignments(client, protocol, &joined).await?
    } else {
        Vec::new()
    };
    let request = SyncGroupRequest {
        group_id: shared.config.group_id.clone(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        group_instance_id: shared.config.group_instance_id.clone(),
        protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
        protocol_name: Some(protocol_name),
        assignments,
    };
    let long_poll =
        Duration::from_millis(shared.config.rebalance_timeout_ms) + client.request_timeout();
    let synced = match shared
        .link
        .request::<_, SyncGroupResponse>(&request, long_poll)
        .await
    {
        Ok(response) => response,
        Err(error) if error.is_retriable() => return Ok(None),
        Err(error) => return Err(error),
    };
    match ErrorCode::from_i16(synced.error) {
        Some(ErrorCode::None) => {}
        Some(code) if rejoinable(code) => {
            note_membership_error(shared, code);
            shared.rejoin.set(false);
            if coordinator_moved(code) {
                shared.link.reset();
            }
            return Ok(None);
        }
        _ => {
            return Err(ClientError::from_code(
                synced.error,
                format!("sync group {}", shared.config.group_id),
            ))
        }
    }
    let assignment =
        Assignment::decode(&synced.assignment).map_err(|error| ClientError::InvalidResponse {
            op: "sync group",
            reason: format!("undecodable assignment: {error}"),
        })?;
    Ok(Some(Joined {
        member_id: joined.member_id,
        generation: joined.generation_id,
        protocol,
        assignment: assignment
            .topic_partitions()
            .map(|(topic, partition)| (topic.to_string(), partition))
            .collect(),
    }))
}

/// The leader's work: decode every member's subscription, learn the topics' partition
/// counts, run the group's assignor.
async fn leader_assignments(
    client: &Rc<Client>,
    protocol: Assignor,
    joined: &JoinGroupResponse,
) -> Result<Vec<GroupAssignmentMeta>, ClientError> {
    let members: Vec<MemberSubscription> = joined
        .members
        .iter()
        .map(|member| MemberSubscription {
            member_id: member.member_id.clone(),
            subscription: Subscription::decode(&member.metadata).unwrap_or_default(),
        })
        .collect();
    let topics: BTreeSet<String> = members
        .iter()
        .flat_map(|member| member.subscription.topics.iter().cloned())
        .collect();
    let metadata = client.metadata(Some(topics.into_iter().collect())).await?;
    let counts: HashMap<String, i32> = metadata
        .topics
        .iter()
        .filter(|topic| topic.error == ErrorCode::None.code())
        .map(|topic| {
            (
                topic.name.clone(),
                i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
            )
        })
        .collect();
    let assignment = assign(protocol, &members, &counts);
    Ok(assignment
        .into_iter()
        .map(|(member_id, partitions)| {
            let mut by_topic: Vec<TopicPartitions> = Vec::new();
            for (topic, partition) in partitions {
                match by_topic.iter_mut().find(|entry| entry.topic == topic) {
                    Some(entry) => entry.partitions.push(partition),
                    None => by_topic.push(TopicPartitions {
                        topic,
                        partitions: vec![partition],
                    }),
                }
            }
            GroupAssignmentMeta {
                member_id,
                assignment: Assignment {
                    partitions: by_topic,
                    user_data: None,
                }
                .encode(),
            }
        })
        .collect())
}

/// Heartbeats every `heartbeat_interval_ms` while the member holds an assignment; an answer
/// that says the group rebalances (or the membership is over) flags a rejoin for the next
/// poll. Ends when the member is dropped or closed (its task is dropped).
async fn heartbeat_loop(shared: Rc<MemberShared>) {
    let interval = Duration::from_millis(shared.config.heartbeat_interval_ms);
    loop {
        glommio::timer::sleep(interval).await;
        let (member_id, generation, phase) = {
            let membership = shared.membership.borrow();
            (
                membership.member_id.clone(),
                membership.generation,
                membership.phase,
            )
        };
        if phase != Phase::Stable || shared.rejoin.get() {
            continue;
        }
        let request = HeartbeatRequest {
            group_id: shared.config.group_id.clone(),
            generation_id: generation,
            member_id,
            group_instance_id: shared.config.group_instance_id.clone(),
        };
        let timeout = shared.link.client().request_timeout();
        match shared
            .link
            .request::<_, HeartbeatResponse>(&request, timeout)
            .await
        {
            Ok(answer) => match ErrorCode::from_i16(answer.error) {
                Some(ErrorCode::None) => {}
                Some(code) if coordinator_moved(code) => shared.link.reset(),
                Some(code) => note_membership_error(&shared, code),
                None => note_membership_error(&shared, ErrorCode::UnknownServerError),
            },
            Err(error) => {
                tracing::debug!(%error, group = %shared.config.group_id, "heartbeat failed; finding the coordinator again");
            }
        }
    }
}

/// What one poll of the inner consumer returns: decoded records, or whole batches.
trait Polled: Default {
    fn is_empty(&self) -> bool;
    async fn poll(consumer: &mut Consumer, timeout: Duration) -> Result<Self, ClientError>;
}

impl Polled for Vec<ConsumerRecord> {
    fn is_empty(&self) -> bool {
        <[ConsumerRecord]>::is_empty(self)
    }

    async fn poll(consumer: &mut Consumer, timeout: Duration) -> Result<Self, ClientError> {
        consumer.poll(timeout).await
    }
}

impl Polled for Vec<FetchedBatches> {
    fn is_empty(&self) -> bool {
        <[FetchedBatches]>::is_empty(self)
    }

    async fn poll(consumer: &mut Consumer, timeout: Duration) -> Result<Self, ClientError> {
        consumer.poll_batches(timeout).await
    }
}
