//! OffsetCommit (validated against the group, written, then applied and answered) and
//! OffsetFetch (what was written).

use super::{GroupCoordinator, PendingWrite};
use crate::api::{
    FetchedOffset, GroupResponse, GroupState, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, PartitionResult,
};
use crate::error::GroupErrorCode;
use crate::group::{Group, RequestId};
use crate::records::OffsetValue;

/// An OffsetCommit whose records are being written.
#[derive(Debug)]
pub(super) struct PendingCommit {
    request: RequestId,
    group_id: String,
    /// One result per requested partition, in request order; the written ones start as None.
    results: Vec<PartitionResult>,
    /// Index into `results`, and the value written.
    written: Vec<(usize, OffsetValue)>,
}

impl PendingCommit {
    /// The answer with `error` for every partition being written.
    pub(super) fn answer_all(mut self, error: GroupErrorCode) -> (RequestId, GroupResponse) {
        for (index, _) in &self.written {
            self.results[*index].error = error;
        }
        (
            self.request,
            GroupResponse::OffsetCommit(OffsetCommitResponse {
                partitions: self.results,
            }),
        )
    }
}

/// Whether `commit` may store offsets in `group` now (Kafka's `validateOffsetCommit`).
fn check_commit(group: &Group, commit: &OffsetCommitRequest) -> Result<(), GroupErrorCode> {
    if group.state == GroupState::Dead {
        return Err(GroupErrorCode::CoordinatorNotAvailable);
    }
    let instance = commit.group_instance_id.as_deref();
    if group.is_static_member_fenced(&commit.member_id, instance) {
        return Err(GroupErrorCode::FencedInstanceId);
    }
    // A standalone consumer (no generation) may commit while the group has no members.
    if commit.generation_id < 0 && group.members.is_empty() {
        return Ok(());
    }
    if !group.members.contains_key(&commit.member_id) {
        return Err(GroupErrorCode::UnknownMemberId);
    }
    if commit.generation_id != group.generation {
        return Err(GroupErrorCode::IllegalGeneration);
    }
    // The member got its JoinGroup answer but the assignment is not out yet.
    if group.state == GroupState::CompletingRebalance {
        return Err(GroupErrorCode::RebalanceInProgress);
    }
    Ok(())
}

impl GroupCoordinator {
    pub(super) fn commit(&mut self, now_ms: i64, request: RequestId, commit: OffsetCommitRequest) {
        self.events.commit_requests += 1;
        let refuse = |error: GroupErrorCode, commit: &OffsetCommitRequest| {
            GroupResponse::OffsetCommit(OffsetCommitResponse {
                partitions: commit
                    .partitions
                    .iter()
                    .map(|partition| PartitionResult {
                        topic: partition.topic.clone(),
                        partition: partition.partition,
                        error,
                    })
                    .collect(),
            })
        };
        if let Err(error) = self.check_commit_request(now_ms, &commit) {
            let response = refuse(error, &commit);
            self.respond(request, response);
            return self.drop_if_disposable(&commit.group_id);
        }
        if commit.generation_id >= 0 {
            self.touch_session(now_ms, &commit.group_id, &commit.member_id);
        }
        self.write_commit(now_ms, request, commit);
    }

    /// Bounds, the group's existence (created for a standalone consumer) and membership.
    fn check_commit_request(
        &mut self,
        now_ms: i64,
        commit: &OffsetCommitRequest,
    ) -> Result<(), GroupErrorCode> {
        if commit.group_id.is_empty() || commit.group_id.len() > self.config.name_bytes_max {
            return Err(GroupErrorCode::InvalidGroupId);
        }
        if commit.partitions.len() > self.config.request_partitions_max {
            return Err(GroupErrorCode::InvalidRequest);
        }
        if !self.groups.contains_key(&commit.group_id) {
            if commit.generation_id >= 0 {
                return Err(GroupErrorCode::IllegalGeneration);
            }
            if self.groups.len() >= self.config.groups_max {
                return Err(GroupErrorCode::PolicyViolation);
            }
            self.groups.insert(
                commit.group_id.clone(),
                Group::new(&commit.group_id, now_ms),
            );
        }
        match self.groups.get(&commit.group_id) {
            Some(group) => check_commit(group, commit),
            None => Err(GroupErrorCode::UnknownServerError),
        }
    }

    /// Writes the valid partitions' offsets; the answer follows the write.
    fn write_commit(&mut self, now_ms: i64, request: RequestId, commit: OffsetCommitRequest) {
        let metadata_max = self.config.offset_metadata_bytes_max;
        let name_max = self.config.name_bytes_max.max(249);
        let mut results = Vec::with_capacity(commit.partitions.len());
        let mut written = Vec::new();
        let mut records = Vec::new();
        for partition in commit.partitions {
            let metadata = partition.metadata.unwrap_or_default();
            let error = if metadata.len() > metadata_max {
                GroupErrorCode::OffsetMetadataTooLarge
            } else if partition.offset < 0
                || partition.partition < 0
                || partition.topic.is_empty()
                || partition.topic.len() > name_max
            {
                GroupErrorCode::InvalidRequest
            } else {
                GroupErrorCode::None
            };
            if error.is_ok() {
                let value = OffsetValue {
                    offset: partition.offset,
                    leader_epoch: partition.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                };
                records.push(Self::offset_record(
                    &commit.group_id,
                    &partition.topic,
                    partition.partition,
                    Some(&value),
                ));
                written.push((results.len(), value));
            }
            results.push(PartitionResult {
                topic: partition.topic,
                partition: partition.partition,
                error,
            });
        }
        let pending = PendingCommit {
            request,
            group_id: commit.group_id,
            results,
            written,
        };
        if records.is_empty() {
            let group_id = pending.group_id.clone();
            let (request, response) = pending.answer_all(GroupErrorCode::None);
            self.respond(request, response);
            return self.drop_if_disposable(&group_id);
        }
        if let Some(group) = self.groups.get_mut(&pending.group_id) {
            group.writes_in_flight += 1;
        }
        self.write(records, PendingWrite::Commit(pending));
    }

    /// The commit's records were written (or not): apply them and answer.
    pub(super) fn commit_written(
        &mut self,
        pending: PendingCommit,
        result: Result<(), GroupErrorCode>,
    ) {
        let group_id = pending.group_id.clone();
        match result {
            Ok(()) => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    for (index, value) in &pending.written {
                        let result = &pending.results[*index];
                        group
                            .offsets
                            .insert((result.topic.clone(), result.partition), value.clone());
                    }
                    self.events.offsets_committed += pending.written.len() as u64;
                }
                let (request, response) = pending.answer_all(GroupErrorCode::None);
                self.respond(request, response);
            }
            Err(error) => {
                let (request, response) = pending.answer_all(error);
                self.respond(request, response);
            }
        }
        self.release_group(&group_id);
    }

    pub(super) fn fetch_offsets(&self, fetch: &OffsetFetchRequest) -> OffsetFetchResponse {
        if fetch
            .partitions
            .as_ref()
            .is_some_and(|partitions| partitions.len() > self.config.request_partitions_max)
        {
            return OffsetFetchResponse {
                error: GroupErrorCode::InvalidRequest,
                partitions: Vec::new(),
            };
        }
        let group = self.groups.get(&fetch.group_id);
        let lookup = |topic: &str, partition: i32| {
            let committed =
                group.and_then(|group| group.offsets.get(&(topic.to_string(), partition)));
            FetchedOffset {
                topic: topic.to_string(),
                partition,
                offset: committed.map_or(-1, |value| value.offset),
                leader_epoch: committed.map_or(-1, |value| value.leader_epoch),
                metadata: committed.map(|value| value.metadata.clone()),
                error: GroupErrorCode::None,
            }
        };
        let partitions = match &fetch.partitions {
            Some(wanted) => wanted
                .iter()
                .map(|wanted| lookup(&wanted.topic, wanted.partition))
                .collect(),
            None => group
                .map(|group| {
                    group
                        .offsets
                        .keys()
                        .map(|(topic, partition)| lookup(topic, *partition))
                        .collect()
                })
                .unwrap_or_default(),
        };
        OffsetFetchResponse {
            error: GroupErrorCode::None,
            partitions,
        }
    }
}
