//! JoinGroup and the rebalance it drives: new and known members, KIP-394 member ids, static
//! members (KIP-345), the join phase and its completion, member removal.

use super::GroupCoordinator;
use crate::api::{
    GroupResponse, GroupState, JoinGroupRequest, JoinGroupResponse, UNKNOWN_MEMBER_ID,
};
use crate::error::GroupErrorCode;
use crate::group::{Group, JoinPhase, Member, RequestId};
use crate::timers::TimerKey;

impl GroupCoordinator {
    pub(super) fn join(&mut self, now_ms: i64, request: RequestId, join: JoinGroupRequest) {
        if let Some((error, message)) = self.validate_join(&join) {
            let mut response = JoinGroupResponse::error(&join.member_id, error);
            response.error_message = message;
            return self.respond(request, GroupResponse::Join(response));
        }
        let unknown_member = join.member_id == UNKNOWN_MEMBER_ID;
        let group_id = join.group_id.clone();
        if !self.groups.contains_key(&group_id) {
            if !unknown_member {
                return self.join_error(request, &join.member_id, GroupErrorCode::UnknownMemberId);
            }
            if self.groups.len() >= self.config.groups_max {
                let mut response =
                    JoinGroupResponse::error(&join.member_id, GroupErrorCode::PolicyViolation);
                response.error_message = Some(format!(
                    "the coordinator holds groups_max = {} groups",
                    self.config.groups_max
                ));
                return self.respond(request, GroupResponse::Join(response));
            }
            self.groups
                .insert(group_id.clone(), Group::new(&group_id, now_ms));
        }
        let full = self
            .groups
            .get(&group_id)
            .is_some_and(|group| group.size() >= self.config.group_members_max);
        if unknown_member && full {
            let mut response =
                JoinGroupResponse::error(UNKNOWN_MEMBER_ID, GroupErrorCode::GroupMaxSizeReached);
            response.error_message = Some(format!(
                "the group has group_members_max = {} members",
                self.config.group_members_max
            ));
            return self.respond(request, GroupResponse::Join(response));
        }
        if unknown_member {
            self.join_unknown_member(now_ms, request, join);
        } else {
            self.join_known_member(now_ms, request, join);
        }
        self.try_complete_join(now_ms, &group_id);
        self.drop_if_disposable(&group_id);
    }

    /// Bounds and sanity of a JoinGroup: the error and a detail, or `None` when it is fine.
    fn validate_join(&self, join: &JoinGroupRequest) -> Option<(GroupErrorCode, Option<String>)> {
        let limit = self.config.name_bytes_max;
        if join.group_id.is_empty() || join.group_id.len() > limit {
            return Some((
                GroupErrorCode::InvalidGroupId,
                Some(format!("a group id has 1 to {limit} bytes")),
            ));
        }
        let names = [
            join.member_id.len(),
            join.client_id.len(),
            join.protocol_type.len(),
            join.group_instance_id.as_ref().map_or(0, String::len),
        ];
        let protocol_names = join.protocols.iter().map(|protocol| protocol.name.len());
        if names
            .into_iter()
            .chain(protocol_names)
            .any(|length| length > limit)
            || join.group_instance_id.as_deref() == Some("")
        {
            return Some((
                GroupErrorCode::InvalidRequest,
                Some(format!(
                    "member ids, client ids, instance ids and protocol names have at most {limit} bytes (instance ids at least 1)"
                )),
            ));
        }
        let metadata_bytes: usize = join
            .protocols
            .iter()
            .map(|protocol| protocol.metadata.len())
            .sum();
        if metadata_bytes > self.config.member_metadata_bytes_max {
            return Some((
                GroupErrorCode::InvalidRequest,
                Some(format!(
                    "the member's protocol metadata has {metadata_bytes} bytes; member_metadata_bytes_max is {}",
                    self.config.member_metadata_bytes_max
                )),
            ));
        }
        if join.session_timeout_ms < self.config.session_timeout_ms_min
            || join.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return Some((
                GroupErrorCode::InvalidSessionTimeout,
                Some(format!(
                    "the session timeout must be within {}..={} ms",
                    self.config.session_timeout_ms_min, self.config.session_timeout_ms_max
                )),
            ));
        }
        None
    }

    fn join_error(&mut self, request: RequestId, member_id: &str, error: GroupErrorCode) {
        self.respond(
            request,
            GroupResponse::Join(JoinGroupResponse::error(member_id, error)),
        );
    }

    /// A member without a member id.
    fn join_unknown_member(&mut self, now_ms: i64, request: RequestId, join: JoinGroupRequest) {
        let Some(group) = self.groups.get(&join.group_id) else {
            return;
        };
        if group.state == GroupState::Dead {
            return self.join_error(
                request,
                UNKNOWN_MEMBER_ID,
                GroupErrorCode::CoordinatorNotAvailable,
            );
        }
        if !group.supports_protocols(&join.protocol_type, &join.protocols) {
            return self.join_error(
                request,
                UNKNOWN_MEMBER_ID,
                GroupErrorCode::InconsistentGroupProtocol,
            );
        }
        let replaced = join
            .group_instance_id
            .as_ref()
            .and_then(|instance| group.static_members.get(instance).cloned());
        let prefix = join
            .group_instance_id
            .clone()
            .unwrap_or_else(|| join.client_id.clone());
        let member_id = self.generate_member_id(&prefix);
        if let Some(old_member_id) = replaced {
            self.replace_static_member(now_ms, request, join, &old_member_id, member_id);
        } else if join.require_known_member_id && join.group_instance_id.is_none() {
            self.add_pending_member(now_ms, &join, &member_id);
            self.join_error(request, &member_id, GroupErrorCode::MemberIdRequired);
        } else {
            self.add_member_and_rebalance(now_ms, request, join, member_id);
        }
    }

    /// KIP-394: the member gets an id to rejoin with; it is forgotten unless it rejoins within
    /// its session timeout.
    fn add_pending_member(&mut self, now_ms: i64, join: &JoinGroupRequest, member_id: &str) {
        let Some(group) = self.groups.get_mut(&join.group_id) else {
            return;
        };
        let at = now_ms.saturating_add(i64::from(join.session_timeout_ms));
        group.pending_members.insert(member_id.to_string(), at);
        self.timers.set(
            TimerKey::Pending {
                group: join.group_id.clone(),
                member: member_id.to_string(),
            },
            None,
            at,
        );
    }

    /// A member with a member id.
    fn join_known_member(&mut self, now_ms: i64, request: RequestId, join: JoinGroupRequest) {
        let Some(group) = self.groups.get(&join.group_id) else {
            return;
        };
        let member_id = join.member_id.clone();
        if group.state == GroupState::Dead {
            return self.join_error(request, &member_id, GroupErrorCode::CoordinatorNotAvailable);
        }
        if !group.supports_protocols(&join.protocol_type, &join.protocols) {
            return self.join_error(
                request,
                &member_id,
                GroupErrorCode::InconsistentGroupProtocol,
            );
        }
        if group.pending_members.contains_key(&member_id) {
            if join.group_instance_id.is_some() {
                return self.join_error(request, &member_id, GroupErrorCode::InvalidRequest);
            }
            return self.add_member_and_rebalance(now_ms, request, join, member_id);
        }
        let instance = join.group_instance_id.as_deref();
        if group.is_static_member_fenced(&member_id, instance) {
            return self.join_error(request, &member_id, GroupErrorCode::FencedInstanceId);
        }
        let instance_unknown = instance.is_some_and(|id| !group.static_members.contains_key(id));
        let Some(member) = group.members.get(&member_id).filter(|_| !instance_unknown) else {
            return self.join_error(request, &member_id, GroupErrorCode::UnknownMemberId);
        };
        let unchanged = member.matches(&join.protocols);
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match group.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(now_ms, request, &join)
            }
            GroupState::CompletingRebalance if unchanged => {
                let response =
                    self.current_generation_answer(&join.group_id, &member_id, is_leader);
                self.respond(request, GroupResponse::Join(response));
            }
            GroupState::Stable if unchanged && !is_leader => {
                let response = self.current_generation_answer(&join.group_id, &member_id, false);
                self.respond(request, GroupResponse::Join(response));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(now_ms, request, &join);
            }
            GroupState::Empty | GroupState::Dead => {
                self.join_error(request, &member_id, GroupErrorCode::UnknownMemberId);
            }
        }
    }

    /// The answer describing the current generation, without a rebalance (a member that lost
    /// its JoinGroup answer, or a follower rejoining unchanged). The leader gets the members.
    fn current_generation_answer(
        &self,
        group_id: &str,
        member_id: &str,
        with_members: bool,
    ) -> JoinGroupResponse {
        let Some(group) = self.groups.get(group_id) else {
            return JoinGroupResponse::error(member_id, GroupErrorCode::UnknownMemberId);
        };
        JoinGroupResponse {
            error: GroupErrorCode::None,
            error_message: None,
            generation_id: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            leader: group.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                group.leader_member_list()
            } else {
                Vec::new()
            },
        }
    }

    /// A static member rejoined without its member id: it takes over the old member's place
    /// under a new id, and the old instance is fenced. In Stable and CompletingRebalance this
    /// needs no rebalance when its subscription is unchanged; it is told the current
    /// generation with the old leader id, so it never acts as leader by mistake.
    fn replace_static_member(
        &mut self,
        now_ms: i64,
        request: RequestId,
        join: JoinGroupRequest,
        old_member_id: &str,
        new_member_id: String,
    ) {
        let Some(group) = self.groups.get_mut(&join.group_id) else {
            return;
        };
        let Some(mut member) = group.members.remove(old_member_id) else {
            return;
        };
        let old_session = member.session_deadline_ms;
        self.timers.cancel(
            TimerKey::Session {
                group: join.group_id.clone(),
                member: old_member_id.to_string(),
            },
            old_session,
        );
        let fenced_join = member.awaiting_join.take();
        let fenced_sync = member.awaiting_sync.take();
        let unchanged = member.matches(&join.protocols);
        let previous_leader = group.leader.clone();
        if group.leader.as_deref() == Some(old_member_id) {
            group.leader = Some(new_member_id.clone());
        }
        member.member_id = new_member_id.clone();
        member.client_id = join.client_id.clone();
        member.client_host = join.client_host.clone();
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = effective_rebalance_timeout(&join);
        member.protocols = join.protocols.clone();
        let state = group.state;
        if let Some(instance) = &join.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), new_member_id.clone());
        }
        group.members.insert(new_member_id.clone(), member);
        if let Some(fenced) = fenced_join {
            self.join_error(fenced, old_member_id, GroupErrorCode::FencedInstanceId);
        }
        if let Some(fenced) = fenced_sync {
            self.respond(
                fenced,
                GroupResponse::Sync(crate::api::SyncGroupResponse::error(
                    GroupErrorCode::FencedInstanceId,
                )),
            );
        }
        self.touch_session(now_ms, &join.group_id, &new_member_id);
        match state {
            GroupState::PreparingRebalance => {
                self.set_awaiting_join(&join.group_id, &new_member_id, request);
            }
            GroupState::Stable | GroupState::CompletingRebalance if unchanged => {
                let mut response =
                    self.current_generation_answer(&join.group_id, &new_member_id, false);
                response.leader = previous_leader.unwrap_or_default();
                self.respond(request, GroupResponse::Join(response));
                self.write_group_metadata(&join.group_id);
            }
            _ => {
                self.set_awaiting_join(&join.group_id, &new_member_id, request);
                self.maybe_prepare_rebalance(now_ms, &join.group_id);
            }
        }
    }

    /// Records `request` as `member_id`'s waiting JoinGroup; a JoinGroup it replaces is told to
    /// rejoin.
    fn set_awaiting_join(&mut self, group_id: &str, member_id: &str, request: RequestId) {
        let replaced = self
            .groups
            .get_mut(group_id)
            .and_then(|group| group.members.get_mut(member_id))
            .and_then(|member| member.awaiting_join.replace(request));
        if let Some(replaced) = replaced {
            self.join_error(replaced, member_id, GroupErrorCode::RebalanceInProgress);
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now_ms: i64,
        request: RequestId,
        join: JoinGroupRequest,
        member_id: String,
    ) {
        let joined_seq = self.next_join_seq();
        let Some(group) = self.groups.get_mut(&join.group_id) else {
            return;
        };
        if group.members.is_empty() {
            group.protocol_type = Some(join.protocol_type.clone());
        }
        if let Some(expiry) = group.pending_members.remove(&member_id) {
            self.timers.cancel(
                TimerKey::Pending {
                    group: join.group_id.clone(),
                    member: member_id.clone(),
                },
                expiry,
            );
        }
        if let JoinPhase::Initial {
            new_member_added, ..
        } = &mut group.join_phase
        {
            if group.state == GroupState::PreparingRebalance {
                *new_member_added = true;
            }
        }
        if let Some(instance) = &join.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        group.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                group_instance_id: join.group_instance_id.clone(),
                client_id: join.client_id.clone(),
                client_host: join.client_host.clone(),
                session_timeout_ms: join.session_timeout_ms,
                rebalance_timeout_ms: effective_rebalance_timeout(&join),
                protocols: join.protocols,
                assignment: Vec::new(),
                awaiting_join: Some(request),
                awaiting_sync: None,
                session_deadline_ms: now_ms,
                joined_seq,
            },
        );
        if group.leader.is_none() {
            group.leader = Some(member_id.clone());
        }
        self.touch_session(now_ms, &join.group_id, &member_id);
        self.maybe_prepare_rebalance(now_ms, &join.group_id);
    }

    fn update_member_and_rebalance(
        &mut self,
        now_ms: i64,
        request: RequestId,
        join: &JoinGroupRequest,
    ) {
        if let Some(member) = self
            .groups
            .get_mut(&join.group_id)
            .and_then(|group| group.members.get_mut(&join.member_id))
        {
            member.protocols = join.protocols.clone();
            member.session_timeout_ms = join.session_timeout_ms;
            member.rebalance_timeout_ms = effective_rebalance_timeout(join);
            member.client_id = join.client_id.clone();
            member.client_host = join.client_host.clone();
        }
        self.set_awaiting_join(&join.group_id, &join.member_id, request);
        self.maybe_prepare_rebalance(now_ms, &join.group_id);
    }

    /// Starts a rebalance unless one is being prepared already.
    pub(super) fn maybe_prepare_rebalance(&mut self, now_ms: i64, group_id: &str) {
        let can = self.groups.get(group_id).is_some_and(|group| {
            matches!(
                group.state,
                GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
            )
        });
        if can {
            self.prepare_rebalance(now_ms, group_id);
        }
    }

    /// Enters PreparingRebalance: members waiting for an assignment are told to rejoin, and the
    /// join phase gets its deadline (the initial delay for an empty group).
    pub(super) fn prepare_rebalance(&mut self, now_ms: i64, group_id: &str) {
        if self.group_in(group_id, GroupState::CompletingRebalance) {
            self.reset_and_propagate_assignment_error(
                now_ms,
                group_id,
                GroupErrorCode::RebalanceInProgress,
            );
        }
        let delay = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let rebalance_timeout = group.rebalance_timeout_ms();
        let deadline = if group.state == GroupState::Empty {
            group.join_phase = JoinPhase::Initial {
                remaining_ms: (rebalance_timeout - delay).max(0),
                new_member_added: false,
            };
            now_ms.saturating_add(delay)
        } else {
            group.join_phase = JoinPhase::Normal;
            now_ms.saturating_add(rebalance_timeout)
        };
        if matches!(group.state, GroupState::Stable | GroupState::Empty) {
            group.rebalance_started_ms = Some(now_ms);
        }
        group.assignment_write = None;
        group.transition(GroupState::PreparingRebalance, now_ms);
        self.set_phase_deadline(group_id, deadline);
        self.try_complete_join(now_ms, group_id);
    }

    fn group_in(&self, group_id: &str, state: GroupState) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|group| group.state == state)
    }

    /// Ends the join phase early when every member rejoined (not during the initial delay,
    /// which exists to gather members).
    pub(super) fn try_complete_join(&mut self, now_ms: i64, group_id: &str) {
        let ready = self.groups.get(group_id).is_some_and(|group| {
            group.state == GroupState::PreparingRebalance
                && group.join_phase == JoinPhase::Normal
                && group.has_all_members_joined()
        });
        if ready {
            self.complete_join(now_ms, group_id);
        }
    }

    /// The join phase ended (everyone rejoined, or the deadline passed): members that did not
    /// rejoin are removed, the generation is bumped, a protocol chosen, and every waiting
    /// JoinGroup answered (the leader with the member list).
    pub(super) fn complete_join(&mut self, now_ms: i64, group_id: &str) {
        let not_rejoined: Vec<String> = match self.groups.get(group_id) {
            Some(group) => group
                .members
                .values()
                .filter(|member| {
                    member.awaiting_join.is_none() && member.group_instance_id.is_none()
                })
                .map(|member| member.member_id.clone())
                .collect(),
            None => return,
        };
        for member_id in not_rejoined {
            self.detach_member(group_id, &member_id);
        }
        if !self.elect_joined_leader(group_id) {
            // Only static members that did not rejoin are left: wait another rebalance timeout
            // for them (their sessions remove them meanwhile if they are gone).
            let timeout = self
                .groups
                .get(group_id)
                .map_or(0, Group::rebalance_timeout_ms);
            if let Some(group) = self.groups.get_mut(group_id) {
                group.join_phase = JoinPhase::Normal;
            }
            self.set_phase_deadline(group_id, now_ms.saturating_add(timeout));
            return;
        }
        self.init_next_generation(now_ms, group_id);
    }

    /// Makes a member that rejoined the leader if the leader did not. False when members remain
    /// but none rejoined.
    fn elect_joined_leader(&mut self, group_id: &str) -> bool {
        let Some(group) = self.groups.get_mut(group_id) else {
            return false;
        };
        if group.members.is_empty() {
            group.leader = None;
            return true;
        }
        let leader_joined = group
            .leader
            .as_ref()
            .and_then(|leader| group.members.get(leader))
            .is_some_and(|leader| leader.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        let next = group
            .members_in_join_order()
            .into_iter()
            .find(|member| member.awaiting_join.is_some())
            .map(|member| member.member_id.clone());
        match next {
            Some(leader) => {
                group.leader = Some(leader);
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: i64, group_id: &str) {
        self.clear_phase_deadline(group_id);
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group.generation = group.generation.wrapping_add(1).max(1);
        if group.members.is_empty() {
            group.protocol = None;
            group.rebalance_started_ms = None;
            group.transition(GroupState::Empty, now_ms);
            self.write_group_metadata(group_id);
            return;
        }
        group.protocol = group.select_protocol();
        group.transition(GroupState::CompletingRebalance, now_ms);
        let sync_deadline = now_ms.saturating_add(group.rebalance_timeout_ms());
        let leader = group.leader.clone().unwrap_or_default();
        let all = group.leader_member_list();
        let mut answers = Vec::new();
        for member in group.members.values_mut() {
            if let Some(request) = member.awaiting_join.take() {
                let is_leader = member.member_id == leader;
                answers.push((
                    request,
                    member.member_id.clone(),
                    JoinGroupResponse {
                        error: GroupErrorCode::None,
                        error_message: None,
                        generation_id: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol.clone(),
                        leader: leader.clone(),
                        member_id: member.member_id.clone(),
                        members: if is_leader { all.clone() } else { Vec::new() },
                    },
                ));
            }
        }
        for (request, member_id, response) in answers {
            self.respond(request, GroupResponse::Join(response));
            self.touch_session(now_ms, group_id, &member_id);
        }
        self.set_phase_deadline(group_id, sync_deadline);
    }

    /// Tells every member waiting in SyncGroup `error` and clears the assignments (the
    /// rebalance starts again, or the assignment could not be written).
    pub(super) fn reset_and_propagate_assignment_error(
        &mut self,
        now_ms: i64,
        group_id: &str,
        error: GroupErrorCode,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let mut waiting = Vec::new();
        for member in group.members.values_mut() {
            member.assignment.clear();
            if let Some(request) = member.awaiting_sync.take() {
                waiting.push((request, member.member_id.clone()));
            }
        }
        for (request, member_id) in waiting {
            self.respond(
                request,
                GroupResponse::Sync(crate::api::SyncGroupResponse::error(error)),
            );
            self.touch_session(now_ms, group_id, &member_id);
        }
    }

    /// Removes a member (it left, its session expired, or it did not rejoin) and moves the
    /// group on: a rebalance from Stable or CompletingRebalance, maybe the end of a join phase.
    pub(super) fn remove_member(&mut self, now_ms: i64, group_id: &str, member_id: &str) {
        self.detach_member(group_id, member_id);
        let Some(state) = self.groups.get(group_id).map(|group| group.state) else {
            return;
        };
        match state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now_ms, group_id);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, group_id),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Takes a member out of its group, answering its waiting requests with
    /// UNKNOWN_MEMBER_ID, and picks another leader if it led.
    fn detach_member(&mut self, group_id: &str, member_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(member) = group.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.group_instance_id {
            if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
                group.static_members.remove(instance);
            }
        }
        if group.leader.as_deref() == Some(member_id) {
            group.leader = group
                .members_in_join_order()
                .first()
                .map(|next| next.member_id.clone());
        }
        self.timers.cancel(
            TimerKey::Session {
                group: group_id.to_string(),
                member: member_id.to_string(),
            },
            member.session_deadline_ms,
        );
        if let Some(request) = member.awaiting_join {
            self.join_error(request, UNKNOWN_MEMBER_ID, GroupErrorCode::UnknownMemberId);
        }
        if let Some(request) = member.awaiting_sync {
            self.respond(
                request,
                GroupResponse::Sync(crate::api::SyncGroupResponse::error(
                    GroupErrorCode::UnknownMemberId,
                )),
            );
        }
    }

    /// A session deadline passed: the member is removed unless it heartbeated since (its
    /// deadline moved) or it awaits a JoinGroup or SyncGroup answer.
    pub(super) fn expire_session(&mut self, now_ms: i64, group_id: &str, member_id: &str, at: i64) {
        let expired = self
            .groups
            .get(group_id)
            .and_then(|group| group.members.get(member_id))
            .is_some_and(|member| {
                member.session_deadline_ms == at
                    && member.awaiting_join.is_none()
                    && member.awaiting_sync.is_none()
            });
        if expired {
            self.events.members_expired += 1;
            self.remove_member(now_ms, group_id, member_id);
        }
    }

    /// A member id handed out with MEMBER_ID_REQUIRED was never used.
    pub(super) fn expire_pending(&mut self, now_ms: i64, group_id: &str, member_id: &str, at: i64) {
        let removed = match self.groups.get_mut(group_id) {
            Some(group) if group.pending_members.get(member_id) == Some(&at) => {
                group.pending_members.remove(member_id);
                true
            }
            _ => false,
        };
        if removed {
            self.try_complete_join(now_ms, group_id);
            self.drop_if_disposable(group_id);
        }
    }

    /// A phase deadline passed: the initial delay is extended while members keep arriving;
    /// otherwise the join phase ends, or (CompletingRebalance) members that never sent
    /// SyncGroup are removed and the group rebalances.
    pub(super) fn phase_deadline(&mut self, now_ms: i64, group_id: &str, at: i64) {
        let delay = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.phase_deadline_ms != Some(at) {
            return;
        }
        group.phase_deadline_ms = None;
        match (group.state, group.join_phase) {
            (
                GroupState::PreparingRebalance,
                JoinPhase::Initial {
                    remaining_ms,
                    new_member_added: true,
                },
            ) if remaining_ms > 0 => {
                let extension = delay.min(remaining_ms);
                group.join_phase = JoinPhase::Initial {
                    remaining_ms: remaining_ms - extension,
                    new_member_added: false,
                };
                self.set_phase_deadline(group_id, now_ms.saturating_add(extension));
            }
            (GroupState::PreparingRebalance, _) => self.complete_join(now_ms, group_id),
            (GroupState::CompletingRebalance, _) if group.assignment_write.is_none() => {
                let unsynced: Vec<String> = group
                    .members
                    .values()
                    .filter(|member| member.awaiting_sync.is_none())
                    .map(|member| member.member_id.clone())
                    .collect();
                for member_id in unsynced {
                    self.detach_member(group_id, &member_id);
                }
                self.prepare_rebalance(now_ms, group_id);
            }
            _ => {}
        }
    }
}

/// The rebalance timeout a member gets: the one it asked for, or its session timeout when it
/// sent none (JoinGroup v0 had no rebalance timeout).
fn effective_rebalance_timeout(join: &JoinGroupRequest) -> i32 {
    if join.rebalance_timeout_ms > 0 {
        join.rebalance_timeout_ms
    } else {
        join.session_timeout_ms
    }
}
