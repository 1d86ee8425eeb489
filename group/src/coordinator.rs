//! [`GroupCoordinator`]: the groups of one partition of `__consumer_offsets` as a sans-IO state
//! machine, modelled on the replication leader's `LeaderState`. The runtime feeds it events
//! with the clock (`now_ms`): requests ([`GroupCoordinator::handle`]), the outcome of the writes
//! it asked for ([`GroupCoordinator::write_done`]) and the passing of time
//! ([`GroupCoordinator::tick`]). It answers with [`Output`]s: answers to deliver to waiting
//! requests (JoinGroup and SyncGroup are long polls answered when the rebalance moves) and
//! records to append to the partition (acks=all) before the answers that depend on them;
//! [`GroupCoordinator::next_deadline_ms`] says when to tick next.
//!
//! Semantics follow Kafka's classic group protocol (`GroupCoordinator`/`GroupMetadataManager`):
//!
//! - Empty --join--> PreparingRebalance --every member rejoined, or the rebalance timeout-->
//!   CompletingRebalance --leader's SyncGroup written--> Stable. A member joining or leaving, a
//!   changed subscription, the leader rejoining, or a session expiring sends Stable or
//!   CompletingRebalance back to PreparingRebalance; a join phase that ends with nobody makes
//!   the group Empty (generation still bumped). Dead only while a deletion is written.
//! - The first rebalance of an empty group waits `initial_rebalance_delay_ms` for more members
//!   (extended while members keep arriving, within the rebalance timeout).
//! - Each completed join phase bumps the generation. Heartbeats, SyncGroup and offset commits
//!   of another generation get ILLEGAL_GENERATION; unknown members UNKNOWN_MEMBER_ID; a static
//!   member replaced by a newer instance FENCED_INSTANCE_ID.
//! - A member awaiting its JoinGroup or SyncGroup answer is kept alive; otherwise it is removed
//!   when it sends nothing for its session timeout. Members that did not rejoin when the join
//!   phase ends are removed (static members are kept until their session expires), and members
//!   that did not send SyncGroup within the rebalance timeout after it are removed too.
//! - Offsets are committed by members of the current generation (also while a rebalance is
//!   being prepared, so a member can commit what it is giving up), or by anyone with generation
//!   -1 while the group has no members (standalone consumers); they are visible to OffsetFetch
//!   once written.
//!
//! **Invariant:** every JoinGroup and SyncGroup that waits is answered exactly once: by the
//! rebalance, by a newer request of the same member, by the member's removal, or by
//! [`GroupCoordinator::unload`].

mod admin;
mod join;
mod load;
mod offsets;
mod sync;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::api::{GroupRequest, GroupResponse, GroupState, JoinGroupResponse, SyncGroupResponse};
use crate::config::GroupConfig;
use crate::error::GroupErrorCode;
use crate::group::{Group, RequestId};
use crate::records::{
    encode_group_value, encode_offset_value, group_key, offset_key, OffsetValue, OffsetsRecord,
};
use crate::timers::{TimerKey, Timers};

/// The id of a write the coordinator asked for.
pub type WriteId = u64;

/// What the runtime must do after feeding an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Deliver `response` to the waiting request `request`.
    Respond {
        /// The request.
        request: RequestId,
        /// Its answer.
        response: GroupResponse,
    },
    /// Append `records` to the coordinator's partition (acks=all, in the order asked), then
    /// report the outcome with [`GroupCoordinator::write_done`].
    Write {
        /// The write.
        write: WriteId,
        /// The records, in order.
        records: Vec<OffsetsRecord>,
    },
}

/// Counts of what happened since they were last taken (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupEvents {
    /// Rebalances that reached Stable.
    pub rebalances: u64,
    /// Their summed duration (leaving Stable or Empty to Stable), ms.
    pub rebalance_ms: u64,
    /// Partition offsets committed (written and applied).
    pub offsets_committed: u64,
    /// OffsetCommit requests answered.
    pub commit_requests: u64,
    /// Members removed because their session expired.
    pub members_expired: u64,
    /// Answers carrying an error, by request (bad input and fencing alike).
    pub errors: u64,
}

/// The coordinator's groups now (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupGauges {
    /// Groups per state, in the order of [`GroupState::ALL`].
    pub groups_by_state: [u64; 5],
    /// Members over all groups.
    pub members: u64,
}

/// A committed offset, for lag reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The group.
    pub group_id: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset.
    pub offset: i64,
}

/// A write in flight and what its outcome completes.
#[derive(Debug)]
enum PendingWrite {
    /// An OffsetCommit: apply and answer on success.
    Commit(offsets::PendingCommit),
    /// The leader's assignment of `generation`: Stable on success.
    Assignment {
        group: String,
        generation: i32,
        assignments: HashMap<String, Vec<u8>>,
    },
    /// Group metadata that needs no answer (an empty generation, a replaced static member).
    Metadata { group: String },
    /// DeleteGroups.
    DeleteGroups(admin::PendingDelete),
    /// OffsetDelete.
    OffsetDelete(admin::PendingOffsetDelete),
    /// Offsets of deleted topics.
    TopicCleanup { removed: Vec<(String, String, i32)> },
}

impl PendingWrite {
    /// The answer a write's waiting request gets when the coordinator is unloaded before the
    /// write completed (writes without a waiting request have none).
    fn not_coordinator_answer(self) -> Option<(RequestId, GroupResponse)> {
        let error = GroupErrorCode::NotCoordinator;
        match self {
            PendingWrite::Commit(commit) => Some(commit.answer_all(error)),
            PendingWrite::DeleteGroups(delete) => Some(delete.answer_all(error)),
            PendingWrite::OffsetDelete(delete) => Some(delete.answer_all(error)),
            PendingWrite::Assignment { .. }
            | PendingWrite::Metadata { .. }
            | PendingWrite::TopicCleanup { .. } => None,
        }
    }
}

/// The groups of one `__consumer_offsets` partition, on the shard that leads it. Not `Send`
/// by intent: it lives on that shard only.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: HashMap<String, Group>,
    timers: Timers,
    writes: HashMap<WriteId, PendingWrite>,
    next_write: WriteId,
    member_id_seed: u64,
    member_counter: u64,
    join_seq: u64,
    outputs: Vec<Output>,
    events: GroupEvents,
}

impl GroupCoordinator {
    /// An empty coordinator. `member_id_seed` makes the member ids it generates unique across
    /// coordinators (the runtime passes a random value).
    pub fn new(config: GroupConfig, member_id_seed: u64) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: HashMap::new(),
            timers: Timers::default(),
            writes: HashMap::new(),
            next_write: 1,
            member_id_seed,
            member_counter: 0,
            join_seq: 0,
            outputs: Vec::new(),
            events: GroupEvents::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Serves one request. Its answer is among the outputs now, or later when the rebalance or
    /// a write completes.
    pub fn handle(&mut self, now_ms: i64, request: RequestId, body: GroupRequest) {
        match body {
            GroupRequest::Join(join) => self.join(now_ms, request, join),
            GroupRequest::Sync(sync) => self.sync(now_ms, request, sync),
            GroupRequest::Heartbeat(heartbeat) => {
                let response = self.heartbeat(now_ms, &heartbeat);
                self.respond(request, GroupResponse::Heartbeat(response));
            }
            GroupRequest::Leave(leave) => {
                let response = self.leave(now_ms, &leave);
                self.respond(request, GroupResponse::Leave(response));
            }
            GroupRequest::OffsetCommit(commit) => self.commit(now_ms, request, commit),
            GroupRequest::OffsetFetch(fetch) => {
                let response = self.fetch_offsets(&fetch);
                self.respond(request, GroupResponse::OffsetFetch(response));
            }
            GroupRequest::ListGroups(list) => {
                let response = self.list_groups(&list);
                self.respond(request, GroupResponse::ListGroups(response));
            }
            GroupRequest::DescribeGroups(describe) => {
                let response = self.describe_groups(&describe);
                self.respond(request, GroupResponse::DescribeGroups(response));
            }
            GroupRequest::DeleteGroups(delete) => self.delete_groups(now_ms, request, delete),
            GroupRequest::OffsetDelete(delete) => self.delete_offsets(request, delete),
        }
    }

    /// Takes the outputs produced so far, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// The earliest deadline: call [`GroupCoordinator::tick`] then.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.timers.next()
    }

    /// Fires every deadline at or before `now_ms`: expired sessions and member ids, ended join
    /// phases, leaders that never sent their assignment.
    pub fn tick(&mut self, now_ms: i64) {
        while let Some((at, key)) = self.timers.pop_due(now_ms) {
            match key {
                TimerKey::Session { group, member } => {
                    self.expire_session(now_ms, &group, &member, at)
                }
                TimerKey::Pending { group, member } => {
                    self.expire_pending(now_ms, &group, &member, at)
                }
                TimerKey::Phase { group } => self.phase_deadline(now_ms, &group, at),
            }
        }
    }

    /// The outcome of write `write`: `Ok` once the records are committed to the ISR, else the
    /// error to answer with (NOT_COORDINATOR when leadership moved, COORDINATOR_NOT_AVAILABLE
    /// when replication timed out, ...).
    pub fn write_done(&mut self, now_ms: i64, write: WriteId, result: Result<(), GroupErrorCode>) {
        let Some(pending) = self.writes.remove(&write) else {
            return;
        };
        match pending {
            PendingWrite::Commit(commit) => self.commit_written(commit, result),
            PendingWrite::Assignment {
                group,
                generation,
                assignments,
            } => self.assignment_written(now_ms, &group, generation, assignments, result),
            PendingWrite::Metadata { group } => self.release_group(&group),
            PendingWrite::DeleteGroups(delete) => self.groups_deleted(now_ms, delete, result),
            PendingWrite::OffsetDelete(delete) => self.offsets_deleted(delete, result),
            PendingWrite::TopicCleanup { removed } => self.topic_offsets_deleted(removed, result),
        }
    }

    /// The partition is no longer led here: answers every waiting request with NOT_COORDINATOR
    /// and forgets everything (the next leader loads the groups from the log).
    pub fn unload(&mut self) {
        // Writes not yet started are dropped: nobody leads the partition here any more.
        self.outputs
            .retain(|output| matches!(output, Output::Respond { .. }));
        let writes: Vec<(WriteId, PendingWrite)> = self.writes.drain().collect();
        for (_, pending) in writes {
            if let Some((request, response)) = pending.not_coordinator_answer() {
                self.respond(request, response);
            }
        }
        let mut waiting = Vec::new();
        for group in self.groups.values() {
            for member in group.members.values() {
                if let Some(request) = member.awaiting_join {
                    let response =
                        JoinGroupResponse::error(&member.member_id, GroupErrorCode::NotCoordinator);
                    waiting.push((request, GroupResponse::Join(response)));
                }
                if let Some(request) = member.awaiting_sync {
                    let response = SyncGroupResponse::error(GroupErrorCode::NotCoordinator);
                    waiting.push((request, GroupResponse::Sync(response)));
                }
            }
        }
        for (request, response) in waiting {
            self.respond(request, response);
        }
        self.groups.clear();
        self.timers.clear();
    }

    /// Takes the event counts since the last call.
    pub fn take_events(&mut self) -> GroupEvents {
        std::mem::take(&mut self.events)
    }

    /// The groups per state and the members now.
    pub fn gauges(&self) -> GroupGauges {
        let mut gauges = GroupGauges::default();
        for group in self.groups.values() {
            let slot = GroupState::ALL
                .iter()
                .position(|state| *state == group.state)
                .unwrap_or(0);
            gauges.groups_by_state[slot] += 1;
            gauges.members += group.members.len() as u64;
        }
        gauges
    }

    /// Every committed offset (for lag reporting).
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        self.groups
            .values()
            .flat_map(|group| {
                group
                    .offsets
                    .iter()
                    .map(|((topic, partition), value)| CommittedOffset {
                        group_id: group.group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: value.offset,
                    })
            })
            .collect()
    }

    /// The state of `group_id`, if it exists here.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|group| group.state)
    }

    /// Number of groups held.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn respond(&mut self, request: RequestId, response: GroupResponse) {
        if response_error(&response) {
            self.events.errors += 1;
        }
        self.outputs.push(Output::Respond { request, response });
    }

    /// Asks for `records` to be written; `pending` completes when they are.
    fn write(&mut self, records: Vec<OffsetsRecord>, pending: PendingWrite) {
        let write = self.next_write;
        self.next_write += 1;
        self.writes.insert(write, pending);
        self.outputs.push(Output::Write { write, records });
    }

    /// A generated member id: the client id (or group.instance.id), then a suffix unique to
    /// this coordinator and run, as Kafka's `clientId-UUID`.
    fn generate_member_id(&mut self, prefix: &str) -> String {
        self.member_counter += 1;
        format!(
            "{prefix}-{:016x}-{:08x}",
            self.member_id_seed, self.member_counter
        )
    }

    fn next_join_seq(&mut self) -> u64 {
        self.join_seq += 1;
        self.join_seq
    }

    /// Writes `group_id`'s metadata with the members' current assignments (no answer waits).
    fn write_group_metadata(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group.writes_in_flight += 1;
        let record = OffsetsRecord {
            key: group_key(group_id),
            value: Some(encode_group_value(&group.metadata_value(None))),
        };
        self.write(
            vec![record],
            PendingWrite::Metadata {
                group: group_id.to_string(),
            },
        );
    }

    /// A write naming `group_id` finished: forget the group if nothing about it remains.
    fn release_group(&mut self, group_id: &str) {
        let disposable = match self.groups.get_mut(group_id) {
            Some(group) => {
                group.writes_in_flight = group.writes_in_flight.saturating_sub(1);
                group.is_disposable()
            }
            None => false,
        };
        if disposable {
            self.groups.remove(group_id);
        }
    }

    /// Forgets `group_id` if it was only created by a request that stored nothing.
    fn drop_if_disposable(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(Group::is_disposable) {
            self.groups.remove(group_id);
        }
    }

    /// Sets (or moves) the deadline of a group's current phase.
    fn set_phase_deadline(&mut self, group_id: &str, at: i64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let previous = group.phase_deadline_ms.replace(at);
        self.timers.set(
            TimerKey::Phase {
                group: group_id.to_string(),
            },
            previous,
            at,
        );
    }

    fn clear_phase_deadline(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if let Some(previous) = group.phase_deadline_ms.take() {
            self.timers.cancel(
                TimerKey::Phase {
                    group: group_id.to_string(),
                },
                previous,
            );
        }
    }

    /// Restarts `member_id`'s session: it expires `session_timeout_ms` from now.
    fn touch_session(&mut self, now_ms: i64, group_id: &str, member_id: &str) {
        let Some(member) = self
            .groups
            .get_mut(group_id)
            .and_then(|group| group.members.get_mut(member_id))
        else {
            return;
        };
        let previous = member.session_deadline_ms;
        let at = now_ms.saturating_add(i64::from(member.session_timeout_ms));
        member.session_deadline_ms = at;
        self.timers.set(
            TimerKey::Session {
                group: group_id.to_string(),
                member: member_id.to_string(),
            },
            Some(previous),
            at,
        );
    }

    fn offset_record(
        group_id: &str,
        topic: &str,
        partition: i32,
        value: Option<&OffsetValue>,
    ) -> OffsetsRecord {
        OffsetsRecord {
            key: offset_key(group_id, topic, partition),
            value: value.map(encode_offset_value),
        }
    }
}

/// Whether an answer carries an error (for the error counter).
fn response_error(response: &GroupResponse) -> bool {
    match response {
        GroupResponse::Join(answer) => {
            !answer.error.is_ok() && answer.error != GroupErrorCode::MemberIdRequired
        }
        GroupResponse::Sync(answer) => !answer.error.is_ok(),
        GroupResponse::Heartbeat(answer) => {
            !answer.error.is_ok() && answer.error != GroupErrorCode::RebalanceInProgress
        }
        GroupResponse::Leave(answer) => {
            !answer.error.is_ok() || answer.members.iter().any(|member| !member.error.is_ok())
        }
        GroupResponse::OffsetCommit(answer) => answer
            .partitions
            .iter()
            .any(|partition| !partition.error.is_ok()),
        GroupResponse::OffsetFetch(answer) => !answer.error.is_ok(),
        GroupResponse::ListGroups(answer) => !answer.error.is_ok(),
        GroupResponse::DescribeGroups(answer) => {
            answer.groups.iter().any(|group| !group.error.is_ok())
        }
        GroupResponse::DeleteGroups(answer) => {
            answer.results.iter().any(|result| !result.error.is_ok())
        }
        GroupResponse::OffsetDelete(answer) => {
            !answer.error.is_ok()
                || answer
                    .partitions
                    .iter()
                    .any(|partition| !partition.error.is_ok())
        }
    }
}
