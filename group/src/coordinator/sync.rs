//! SyncGroup (the leader's assignment, written before anyone gets theirs), Heartbeat and
//! LeaveGroup.

use std::collections::HashMap;

use super::{GroupCoordinator, PendingWrite};
use crate::api::{
    GroupResponse, GroupState, HeartbeatRequest, HeartbeatResponse, LeaveGroupRequest,
    LeaveGroupResponse, LeaveMemberResult, SyncGroupRequest, SyncGroupResponse, UNKNOWN_MEMBER_ID,
};
use crate::error::GroupErrorCode;
use crate::group::{Group, RequestId};
use crate::records::{encode_group_value, group_key, OffsetsRecord};

/// Checks every request from a member makes: the group exists and is not being deleted, the
/// member is not a fenced static instance, it is a member, of this generation.
fn check_member(
    group: Option<&Group>,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation_id: i32,
) -> Result<(), GroupErrorCode> {
    let Some(group) = group else {
        return Err(GroupErrorCode::UnknownMemberId);
    };
    if group.state == GroupState::Dead {
        return Err(GroupErrorCode::CoordinatorNotAvailable);
    }
    if group.is_static_member_fenced(member_id, group_instance_id) {
        return Err(GroupErrorCode::FencedInstanceId);
    }
    if !group.members.contains_key(member_id) {
        return Err(GroupErrorCode::UnknownMemberId);
    }
    if generation_id != group.generation {
        return Err(GroupErrorCode::IllegalGeneration);
    }
    Ok(())
}

impl GroupCoordinator {
    pub(super) fn sync(&mut self, now_ms: i64, request: RequestId, sync: SyncGroupRequest) {
        let group = self.groups.get(&sync.group_id);
        let checked = check_member(
            group,
            &sync.member_id,
            sync.group_instance_id.as_deref(),
            sync.generation_id,
        )
        .and_then(|()| check_protocol(group, &sync));
        if let Err(error) = checked {
            return self.respond(
                request,
                GroupResponse::Sync(SyncGroupResponse::error(error)),
            );
        }
        let Some(group) = group else {
            return;
        };
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                let response = SyncGroupResponse::error(GroupErrorCode::UnknownMemberId);
                self.respond(request, GroupResponse::Sync(response));
            }
            GroupState::PreparingRebalance => {
                let response = SyncGroupResponse::error(GroupErrorCode::RebalanceInProgress);
                self.respond(request, GroupResponse::Sync(response));
            }
            GroupState::Stable => {
                let response = self.assignment_answer(&sync.group_id, &sync.member_id);
                self.respond(request, GroupResponse::Sync(response));
                self.touch_session(now_ms, &sync.group_id, &sync.member_id);
            }
            GroupState::CompletingRebalance => self.await_assignment(request, sync),
        }
    }

    fn assignment_answer(&self, group_id: &str, member_id: &str) -> SyncGroupResponse {
        let group = self.groups.get(group_id);
        SyncGroupResponse {
            error: GroupErrorCode::None,
            protocol_type: group.and_then(|group| group.protocol_type.clone()),
            protocol_name: group.and_then(|group| group.protocol.clone()),
            assignment: group
                .and_then(|group| group.members.get(member_id))
                .map(|member| member.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// CompletingRebalance: the member waits for the assignment; the leader's SyncGroup
    /// carries it, and it is written before anyone is answered.
    fn await_assignment(&mut self, request: RequestId, sync: SyncGroupRequest) {
        let assignment_max = self.config.member_assignment_bytes_max;
        let Some(group) = self.groups.get_mut(&sync.group_id) else {
            return;
        };
        let is_leader = group.leader.as_deref() == Some(sync.member_id.as_str());
        if is_leader
            && sync
                .assignments
                .iter()
                .any(|assignment| assignment.assignment.len() > assignment_max)
        {
            let response = SyncGroupResponse::error(GroupErrorCode::InvalidRequest);
            return self.respond(request, GroupResponse::Sync(response));
        }
        let replaced = group
            .members
            .get_mut(&sync.member_id)
            .and_then(|member| member.awaiting_sync.replace(request));
        if let Some(replaced) = replaced {
            let response = SyncGroupResponse::error(GroupErrorCode::RebalanceInProgress);
            self.respond(replaced, GroupResponse::Sync(response));
        }
        let Some(group) = self.groups.get_mut(&sync.group_id) else {
            return;
        };
        if !is_leader || group.assignment_write.is_some() {
            return;
        }
        // Members the leader left out get an empty assignment; unknown member ids are ignored.
        let mut assignments: HashMap<String, Vec<u8>> = group
            .members
            .keys()
            .map(|member_id| (member_id.clone(), Vec::new()))
            .collect();
        for assignment in sync.assignments {
            if let Some(slot) = assignments.get_mut(&assignment.member_id) {
                *slot = assignment.assignment;
            }
        }
        group.assignment_write = Some(group.generation);
        group.writes_in_flight += 1;
        let record = OffsetsRecord {
            key: group_key(&sync.group_id),
            value: Some(encode_group_value(
                &group.metadata_value(Some(&assignments)),
            )),
        };
        let generation = group.generation;
        self.write(
            vec![record],
            PendingWrite::Assignment {
                group: sync.group_id,
                generation,
                assignments,
            },
        );
    }

    /// The leader's assignment was written (or not): on success every member waiting in
    /// SyncGroup gets its part and the group is Stable; on failure they get the error and the
    /// group rebalances. Nothing happens if the group moved on meanwhile.
    pub(super) fn assignment_written(
        &mut self,
        now_ms: i64,
        group_id: &str,
        generation: i32,
        assignments: HashMap<String, Vec<u8>>,
        result: Result<(), GroupErrorCode>,
    ) {
        self.release_group(group_id);
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state != GroupState::CompletingRebalance
            || group.generation != generation
            || group.assignment_write != Some(generation)
        {
            return;
        }
        group.assignment_write = None;
        if let Err(error) = result {
            self.reset_and_propagate_assignment_error(now_ms, group_id, error);
            return self.prepare_rebalance(now_ms, group_id);
        }
        let mut waiting = Vec::new();
        for member in group.members.values_mut() {
            member.assignment = assignments
                .get(&member.member_id)
                .cloned()
                .unwrap_or_default();
            if let Some(request) = member.awaiting_sync.take() {
                waiting.push((request, member.member_id.clone()));
            }
        }
        if let Some(started) = group.rebalance_started_ms.take() {
            self.events.rebalances += 1;
            self.events.rebalance_ms += u64::try_from(now_ms.saturating_sub(started)).unwrap_or(0);
        }
        group.transition(GroupState::Stable, now_ms);
        self.clear_phase_deadline(group_id);
        let members: Vec<String> = self
            .groups
            .get(group_id)
            .map(|group| group.members.keys().cloned().collect())
            .unwrap_or_default();
        for (request, member_id) in waiting {
            let response = self.assignment_answer(group_id, &member_id);
            self.respond(request, GroupResponse::Sync(response));
        }
        for member_id in members {
            self.touch_session(now_ms, group_id, &member_id);
        }
    }

    pub(super) fn heartbeat(
        &mut self,
        now_ms: i64,
        heartbeat: &HeartbeatRequest,
    ) -> HeartbeatResponse {
        let group = self.groups.get(&heartbeat.group_id);
        if let Err(error) = check_member(
            group,
            &heartbeat.member_id,
            heartbeat.group_instance_id.as_deref(),
            heartbeat.generation_id,
        ) {
            return HeartbeatResponse { error };
        }
        let state = group.map_or(GroupState::Dead, |group| group.state);
        let error = match state {
            GroupState::Empty | GroupState::Dead => {
                return HeartbeatResponse {
                    error: GroupErrorCode::UnknownMemberId,
                }
            }
            // A member may heartbeat between its JoinGroup answer and its SyncGroup.
            GroupState::CompletingRebalance | GroupState::Stable => GroupErrorCode::None,
            GroupState::PreparingRebalance => GroupErrorCode::RebalanceInProgress,
        };
        self.touch_session(now_ms, &heartbeat.group_id, &heartbeat.member_id);
        HeartbeatResponse { error }
    }

    pub(super) fn leave(&mut self, now_ms: i64, leave: &LeaveGroupRequest) -> LeaveGroupResponse {
        let state = self.groups.get(&leave.group_id).map(|group| group.state);
        let top_error = match state {
            Some(GroupState::Dead) => GroupErrorCode::CoordinatorNotAvailable,
            _ => GroupErrorCode::None,
        };
        if !top_error.is_ok() {
            return LeaveGroupResponse {
                error: top_error,
                members: Vec::new(),
            };
        }
        let members = leave
            .members
            .iter()
            .map(|leaving| {
                let error = match state {
                    None => GroupErrorCode::UnknownMemberId,
                    Some(_) => self.leave_one(
                        now_ms,
                        &leave.group_id,
                        &leaving.member_id,
                        leaving.group_instance_id.as_deref(),
                    ),
                };
                LeaveMemberResult {
                    member_id: leaving.member_id.clone(),
                    group_instance_id: leaving.group_instance_id.clone(),
                    error,
                }
            })
            .collect();
        self.drop_if_disposable(&leave.group_id);
        LeaveGroupResponse {
            error: GroupErrorCode::None,
            members,
        }
    }

    /// One member of a LeaveGroup: a static member may be named by its instance id alone.
    fn leave_one(
        &mut self,
        now_ms: i64,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> GroupErrorCode {
        let Some(group) = self.groups.get_mut(group_id) else {
            return GroupErrorCode::UnknownMemberId;
        };
        if member_id != UNKNOWN_MEMBER_ID
            && group.is_static_member_fenced(member_id, group_instance_id)
        {
            return GroupErrorCode::FencedInstanceId;
        }
        if let Some(expiry) = group.pending_members.remove(member_id) {
            self.timers.cancel(
                crate::timers::TimerKey::Pending {
                    group: group_id.to_string(),
                    member: member_id.to_string(),
                },
                expiry,
            );
            self.try_complete_join(now_ms, group_id);
            return GroupErrorCode::None;
        }
        let target = group_instance_id
            .and_then(|instance| group.static_members.get(instance).cloned())
            .or_else(|| {
                group
                    .members
                    .contains_key(member_id)
                    .then(|| member_id.to_string())
            });
        match target {
            Some(target) => {
                self.remove_member(now_ms, group_id, &target);
                GroupErrorCode::None
            }
            None => GroupErrorCode::UnknownMemberId,
        }
    }
}

/// SyncGroup v5 and later name the protocol type and name: they must be the group's.
fn check_protocol(group: Option<&Group>, sync: &SyncGroupRequest) -> Result<(), GroupErrorCode> {
    let Some(group) = group else {
        return Ok(());
    };
    let type_differs = sync
        .protocol_type
        .as_ref()
        .is_some_and(|sent| group.protocol_type.as_ref() != Some(sent));
    let name_differs = sync
        .protocol_name
        .as_ref()
        .is_some_and(|sent| group.protocol.as_ref() != Some(sent));
    if type_differs || name_differs {
        return Err(GroupErrorCode::InconsistentGroupProtocol);
    }
    Ok(())
}
