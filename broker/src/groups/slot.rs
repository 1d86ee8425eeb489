//! The runtime of one coordinator: a [`GroupCoordinator`] for one partition of
//! `__consumer_offsets` this shard leads, and the three tasks that carry out its outputs.
//!
//! - load: reads the partition's log from its start to its end (as it was when leadership
//!   began) and replays every record; requests get COORDINATOR_LOAD_IN_PROGRESS meanwhile.
//! - writer: appends the records the coordinator asks for, one batch per write, several writes
//!   per append (group commit), acks=all with `offsets_commit_timeout_ms`, and reports each
//!   outcome back before anyone is answered.
//! - timer: ticks the coordinator at its next deadline (sessions, join phases).
//!
//! Lives on the shard that owns the partition; everything here is `!Send` and lock-free. When
//! leadership moves (or the partition goes away), [`CoordinatorSlot::stop`] answers every
//! waiting request with NOT_COORDINATOR and the tasks end.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::oneshot;
use sluice_group::{
    GroupConfig, GroupCoordinator, GroupErrorCode, GroupGauges, GroupRequest, GroupResponse,
    OffsetsRecord, Output, RequestId, WriteId,
};
use sluice_shard::{Partition, PartitionError};
use sluice_storage::batch::{decode_records, BatchBuilder, BatchIter, Compression};
use sluice_storage::StorageError;

use super::metrics::GroupMetrics;
use crate::server::now_ms;

/// Bytes read from the log per step while loading.
const LOAD_READ_BYTES: usize = 1024 * 1024;

/// Largest batch the loader accepts (it reads what the log validated on append).
const LOAD_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Wait before retrying a load that failed, ms.
const LOAD_RETRY_MS: u64 = 1_000;

/// Longest the timer sleeps when the coordinator has no deadline, ms.
const TIMER_IDLE_MS: i64 = 1_000;

/// Writes carried by one append at most (the rest wait for the next append).
const WRITES_PER_APPEND_MAX: usize = 256;

/// A wake-up for one task, remembered if nobody waits yet.
#[derive(Default)]
struct Notify {
    waiter: RefCell<Option<oneshot::Sender<()>>>,
    pending: Cell<bool>,
}

impl Notify {
    fn notify(&self) {
        match self.waiter.borrow_mut().take() {
            Some(waiter) => {
                let _ = waiter.send(());
            }
            None => self.pending.set(true),
        }
    }

    /// Waits for a notification or `timeout`, whichever is first.
    async fn wait(&self, timeout: Duration) {
        if self.pending.replace(false) {
            return;
        }
        let (sender, receiver) = oneshot::channel();
        *self.waiter.borrow_mut() = Some(sender);
        futures_lite::future::or(
            async {
                let _ = receiver.await;
            },
            glommio::timer::sleep(timeout),
        )
        .await;
        self.waiter.borrow_mut().take();
    }
}

enum SlotState {
    Loading,
    Active(Box<GroupCoordinator>),
    Stopped,
}

/// What a slot needs besides its partition.
#[derive(Debug, Clone)]
pub struct SlotSettings {
    /// The coordinator's bounds.
    pub config: GroupConfig,
    /// acks=all wait of each write.
    pub commit_timeout: Duration,
}

/// One coordinator and its tasks. Lives on the shard that leads the partition.
pub struct CoordinatorSlot {
    index: i32,
    partition: Rc<Partition>,
    role_generation: u64,
    settings: SlotSettings,
    state: RefCell<SlotState>,
    waiters: RefCell<HashMap<RequestId, oneshot::Sender<GroupResponse>>>,
    next_request: Cell<RequestId>,
    writes: RefCell<VecDeque<(WriteId, Vec<OffsetsRecord>)>>,
    writer_wake: Notify,
    timer_wake: Notify,
    metrics: Arc<GroupMetrics>,
}

impl CoordinatorSlot {
    /// Starts coordinating partition `index` (led by this shard in role generation
    /// `partition.generation()`): loads it, then serves.
    pub fn start(
        index: i32,
        partition: Rc<Partition>,
        settings: SlotSettings,
        metrics: Arc<GroupMetrics>,
    ) -> Rc<CoordinatorSlot> {
        let slot = Rc::new(CoordinatorSlot {
            index,
            role_generation: partition.generation(),
            partition,
            settings,
            state: RefCell::new(SlotState::Loading),
            waiters: RefCell::new(HashMap::new()),
            next_request: Cell::new(1),
            writes: RefCell::new(VecDeque::new()),
            writer_wake: Notify::default(),
            timer_wake: Notify::default(),
            metrics,
        });
        glommio::spawn_local(load_loop(slot.clone())).detach();
        glommio::spawn_local(write_loop(slot.clone())).detach();
        glommio::spawn_local(timer_loop(slot.clone())).detach();
        slot
    }

    /// The partition of `__consumer_offsets`.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The role generation of the partition the slot was started for: a different one means
    /// leadership changed since.
    pub fn role_generation(&self) -> u64 {
        self.role_generation
    }

    fn stopped(&self) -> bool {
        matches!(*self.state.borrow(), SlotState::Stopped)
    }

    /// Serves one request: answered at once while loading or stopped; otherwise handed to the
    /// coordinator, and answered when it says (JoinGroup and SyncGroup wait for the rebalance).
    pub async fn serve(&self, request: GroupRequest) -> GroupResponse {
        let (id, answer) = {
            let mut state = self.state.borrow_mut();
            let coordinator = match &mut *state {
                SlotState::Active(coordinator) => coordinator,
                SlotState::Loading => return loading_answer(&request),
                SlotState::Stopped => {
                    return request.error_response(GroupErrorCode::NotCoordinator)
                }
            };
            let id = self.next_request.get();
            self.next_request.set(id + 1);
            let (sender, answer) = oneshot::channel();
            self.waiters.borrow_mut().insert(id, sender);
            let fallback = request.error_response(GroupErrorCode::NotCoordinator);
            coordinator.handle(now_ms(), id, request);
            (id, (answer, fallback))
        };
        self.drive();
        let (answer, fallback) = answer;
        let response = answer.await.unwrap_or(fallback);
        self.waiters.borrow_mut().remove(&id);
        response
    }

    /// Carries out the coordinator's outputs: answers go to their waiters, writes to the
    /// writer; the timer re-reads the next deadline.
    fn drive(&self) {
        let (outputs, events) = match &mut *self.state.borrow_mut() {
            SlotState::Active(coordinator) => {
                (coordinator.take_outputs(), coordinator.take_events())
            }
            _ => return,
        };
        self.metrics.record(&events);
        let mut wrote = false;
        for output in outputs {
            match output {
                Output::Respond { request, response } => {
                    if let Some(waiter) = self.waiters.borrow_mut().remove(&request) {
                        let _ = waiter.send(response);
                    }
                }
                Output::Write { write, records } => {
                    self.writes.borrow_mut().push_back((write, records));
                    wrote = true;
                }
            }
        }
        if wrote {
            self.writer_wake.notify();
        }
        self.timer_wake.notify();
    }

    /// Runs `change` on the coordinator (when active), then carries out its outputs.
    fn with_coordinator(&self, change: impl FnOnce(&mut GroupCoordinator)) {
        if let SlotState::Active(coordinator) = &mut *self.state.borrow_mut() {
            change(coordinator);
        }
        self.drive();
    }

    /// Leadership moved or the partition went away: every waiting request is answered with
    /// NOT_COORDINATOR, and the tasks end.
    pub fn stop(&self) {
        self.with_coordinator(GroupCoordinator::unload);
        *self.state.borrow_mut() = SlotState::Stopped;
        // Anything still waiting (its answer was never produced) gets NOT_COORDINATOR from its
        // fallback when its sender is dropped here.
        self.waiters.borrow_mut().clear();
        self.writes.borrow_mut().clear();
        self.writer_wake.notify();
        self.timer_wake.notify();
    }

    /// Topics were deleted: their committed offsets go.
    pub fn delete_topic_offsets(&self, topics: &[String]) {
        self.with_coordinator(|coordinator| coordinator.delete_topic_offsets(topics));
    }

    /// The coordinator's group counts (zero while loading).
    pub fn gauges(&self) -> GroupGauges {
        match &*self.state.borrow() {
            SlotState::Active(coordinator) => coordinator.gauges(),
            _ => GroupGauges::default(),
        }
    }

    /// Every committed offset (for lag).
    pub fn committed_offsets(&self) -> Vec<sluice_group::CommittedOffset> {
        match &*self.state.borrow() {
            SlotState::Active(coordinator) => coordinator.committed_offsets(),
            _ => Vec::new(),
        }
    }

    /// Whether the groups are loaded.
    pub fn is_active(&self) -> bool {
        matches!(*self.state.borrow(), SlotState::Active(_))
    }

    /// Reads the partition's log and rebuilds the coordinator from it.
    async fn load(&self) -> Result<GroupCoordinator, String> {
        let log = self.partition.log();
        let end = log.log_end_offset();
        let mut offset = log.log_start_offset();
        let seed = RandomState::new().build_hasher().finish();
        let mut coordinator = GroupCoordinator::new(self.settings.config.clone(), seed);
        while offset < end {
            if self.stopped() {
                return Err("stopped".to_string());
            }
            let bytes = log
                .read_bytes(offset, LOAD_READ_BYTES, end)
                .await
                .map_err(|error| format!("reading offset {offset}: {error}"))?;
            let next = self.replay(&mut coordinator, &bytes, offset)?;
            if next <= offset {
                break;
            }
            offset = next;
            glommio::yield_if_needed().await;
        }
        coordinator.finish_load(now_ms());
        Ok(coordinator)
    }

    /// Replays the records of `bytes` at or after `from`; returns the offset after the last
    /// batch. Records that cannot be read are skipped (and counted): one bad record must not
    /// keep every group of the partition from loading.
    fn replay(
        &self,
        coordinator: &mut GroupCoordinator,
        bytes: &[u8],
        from: i64,
    ) -> Result<i64, String> {
        let mut next = from;
        for batch in BatchIter::new(bytes, LOAD_BATCH_BYTES_MAX) {
            let (header, raw) =
                batch.map_err(|error| format!("batch after offset {next}: {error}"))?;
            next = header.last_offset() + 1;
            if header.is_control() {
                continue;
            }
            let records = match decode_records(raw) {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(partition = self.index, base_offset = header.base_offset, %error, "skipped an unreadable batch of __consumer_offsets");
                    self.metrics.records_skipped.increment();
                    continue;
                }
            };
            for record in records.iter().filter(|record| record.offset >= from) {
                let Some(key) = &record.key else {
                    continue;
                };
                if let Err(error) = coordinator.replay(key, record.value.as_deref()) {
                    tracing::warn!(partition = self.index, offset = record.offset, %error, "skipped an unreadable record of __consumer_offsets");
                    self.metrics.records_skipped.increment();
                }
            }
        }
        Ok(next)
    }

    /// Takes the queued writes one append carries.
    fn take_writes(&self) -> Vec<(WriteId, Vec<OffsetsRecord>)> {
        let mut writes = self.writes.borrow_mut();
        let count = writes.len().min(WRITES_PER_APPEND_MAX);
        writes.drain(..count).collect()
    }

    /// Appends `writes` (one batch each) with acks=all; the outcome applies to all of them.
    async fn append(&self, writes: &[(WriteId, Vec<OffsetsRecord>)]) -> Result<(), GroupErrorCode> {
        if self.partition.generation() != self.role_generation {
            return Err(GroupErrorCode::NotCoordinator);
        }
        let now = now_ms();
        let mut batches = BytesMut::new();
        for (_, records) in writes {
            let mut builder = BatchBuilder::new(Compression::None);
            for record in records {
                builder.push(now, Some(&record.key), record.value.as_deref(), &[]);
            }
            builder
                .build_into(&mut batches)
                .map_err(|_| GroupErrorCode::InvalidCommitOffsetSize)?;
        }
        self.partition
            .append_as_leader(batches, Some(self.settings.commit_timeout))
            .await
            .map(|_| ())
            .map_err(|error| write_error_code(&error))
    }
}

/// What a request gets while the coordinator loads (as Kafka: a SyncGroup is told to rejoin,
/// since the rebalance's state is lost; a heartbeat is let through).
pub(super) fn loading_answer(request: &GroupRequest) -> GroupResponse {
    match request {
        GroupRequest::Sync(_) => request.error_response(GroupErrorCode::RebalanceInProgress),
        GroupRequest::Heartbeat(_) => request.error_response(GroupErrorCode::None),
        _ => request.error_response(GroupErrorCode::CoordinatorLoadInProgress),
    }
}

/// Kafka's mapping of a failed `__consumer_offsets` write to the code a group request gets.
pub fn write_error_code(error: &PartitionError) -> GroupErrorCode {
    match error {
        PartitionError::NotLeaderOrFollower { .. }
        | PartitionError::FencedLeaderEpoch { .. }
        | PartitionError::UnknownTopicOrPartition { .. } => GroupErrorCode::NotCoordinator,
        PartitionError::NotEnoughReplicas { .. }
        | PartitionError::NotEnoughReplicasAfterAppend { .. }
        | PartitionError::ReplicationTimeout { .. }
        | PartitionError::Forward { .. }
        | PartitionError::OffsetNotAvailable { .. } => GroupErrorCode::CoordinatorNotAvailable,
        PartitionError::Storage {
            source: StorageError::Closed,
            ..
        } => GroupErrorCode::NotCoordinator,
        PartitionError::Storage {
            source: StorageError::AppendTooLarge { .. },
            ..
        }
        | PartitionError::InvalidBatch { .. } => GroupErrorCode::InvalidCommitOffsetSize,
        PartitionError::Storage { .. } | PartitionError::OffsetOutOfRange { .. } => {
            GroupErrorCode::UnknownServerError
        }
    }
}

async fn load_loop(slot: Rc<CoordinatorSlot>) {
    loop {
        if !matches!(*slot.state.borrow(), SlotState::Loading) {
            return;
        }
        match slot.load().await {
            Ok(coordinator) => {
                if !matches!(*slot.state.borrow(), SlotState::Loading) {
                    return;
                }
                tracing::info!(
                    partition = slot.index,
                    groups = coordinator.group_count(),
                    "loaded the groups of __consumer_offsets partition"
                );
                *slot.state.borrow_mut() = SlotState::Active(Box::new(coordinator));
                slot.metrics.coordinator_loads.increment();
                slot.drive();
                return;
            }
            Err(reason) => {
                if slot.stopped() {
                    return;
                }
                tracing::warn!(partition = slot.index, %reason, "loading the groups failed; retrying");
                glommio::timer::sleep(Duration::from_millis(LOAD_RETRY_MS)).await;
            }
        }
    }
}

async fn write_loop(slot: Rc<CoordinatorSlot>) {
    loop {
        if slot.stopped() {
            return;
        }
        let writes = slot.take_writes();
        if writes.is_empty() {
            slot.writer_wake
                .wait(Duration::from_millis(TIMER_IDLE_MS as u64))
                .await;
            continue;
        }
        let result = slot.append(&writes).await;
        if let Err(error) = result {
            tracing::debug!(
                partition = slot.index,
                ?error,
                "a __consumer_offsets write failed"
            );
        }
        let now = now_ms();
        slot.with_coordinator(|coordinator| {
            for (write, _) in &writes {
                coordinator.write_done(now, *write, result);
            }
        });
    }
}

async fn timer_loop(slot: Rc<CoordinatorSlot>) {
    loop {
        if slot.stopped() {
            return;
        }
        let deadline = match &*slot.state.borrow() {
            SlotState::Active(coordinator) => coordinator.next_deadline_ms(),
            _ => None,
        };
        let wait_ms = deadline.map_or(TIMER_IDLE_MS, |at| (at - now_ms()).clamp(0, TIMER_IDLE_MS));
        if wait_ms > 0 {
            slot.timer_wake
                .wait(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
                .await;
        }
        let now = now_ms();
        let due = deadline.is_some_and(|at| at <= now);
        if due {
            slot.with_coordinator(|coordinator| coordinator.tick(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_group::{HeartbeatRequest, OffsetFetchRequest, SyncGroupRequest};

    // Proves what a request gets while its coordinator loads, as Kafka answers: a SyncGroup is
    // told to rejoin, a heartbeat is let through, anything else gets
    // COORDINATOR_LOAD_IN_PROGRESS.
    #[test]
    fn loading_answers_follow_kafka() {
        let sync = GroupRequest::Sync(SyncGroupRequest {
            group_id: "g".to_string(),
            generation_id: 1,
            member_id: "m".to_string(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: Vec::new(),
        });
        let heartbeat = GroupRequest::Heartbeat(HeartbeatRequest {
            group_id: "g".to_string(),
            generation_id: 1,
            member_id: "m".to_string(),
            group_instance_id: None,
        });
        let fetch = GroupRequest::OffsetFetch(OffsetFetchRequest {
            group_id: "g".to_string(),
            partitions: None,
        });
        assert!(
            matches!(loading_answer(&sync), GroupResponse::Sync(answer) if answer.error == GroupErrorCode::RebalanceInProgress)
        );
        assert!(
            matches!(loading_answer(&heartbeat), GroupResponse::Heartbeat(answer) if answer.error == GroupErrorCode::None)
        );
        assert!(
            matches!(loading_answer(&fetch), GroupResponse::OffsetFetch(answer) if answer.error == GroupErrorCode::CoordinatorLoadInProgress)
        );
    }

    // Proves Kafka's mapping of failed __consumer_offsets writes: leadership lost is
    // NOT_COORDINATOR (find it again), replication trouble COORDINATOR_NOT_AVAILABLE (retry),
    // an oversized write INVALID_COMMIT_OFFSET_SIZE.
    #[test]
    fn write_errors_map_as_kafka_does() {
        let not_leader = PartitionError::not_leader("__consumer_offsets", 3, 2);
        assert_eq!(
            write_error_code(&not_leader),
            GroupErrorCode::NotCoordinator
        );
        let timeout = PartitionError::ReplicationTimeout {
            topic: "__consumer_offsets".to_string(),
            partition: 3,
            last_offset: 9,
            timeout_ms: 5_000,
        };
        assert_eq!(
            write_error_code(&timeout),
            GroupErrorCode::CoordinatorNotAvailable
        );
        let short = PartitionError::NotEnoughReplicas {
            topic: "__consumer_offsets".to_string(),
            partition: 3,
            isr: 1,
            required: 2,
        };
        assert_eq!(
            write_error_code(&short),
            GroupErrorCode::CoordinatorNotAvailable
        );
        let closed = PartitionError::from_storage("__consumer_offsets", 3, StorageError::Closed);
        assert_eq!(write_error_code(&closed), GroupErrorCode::NotCoordinator);
    }
}
