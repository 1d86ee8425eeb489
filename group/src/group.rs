//! One group's state: members, generation, selected protocol, committed offsets. Pure data
//! and the decisions that read only the group (protocol compatibility and selection, who has
//! joined); the coordinator moves it between states.

use std::collections::{BTreeMap, HashMap};

use crate::api::{GroupState, JoinGroupMember, Protocol};
use crate::records::{GroupValue, MemberValue, OffsetValue};

/// The id of a request waiting for its answer (assigned by the runtime).
pub type RequestId = u64;

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// Supported protocols, preferred first.
    pub(crate) protocols: Vec<Protocol>,
    /// The assignment of the current generation (empty until the leader's SyncGroup lands).
    pub(crate) assignment: Vec<u8>,
    /// The JoinGroup waiting for the join phase to end.
    pub(crate) awaiting_join: Option<RequestId>,
    /// The SyncGroup waiting for the leader's assignment.
    pub(crate) awaiting_sync: Option<RequestId>,
    /// When its session expires unless it heartbeats (not while it awaits a join or sync).
    pub(crate) session_deadline_ms: i64,
    /// Join order, so the leader and the member lists are deterministic.
    pub(crate) joined_seq: u64,
}

impl Member {
    /// Whether `protocols` equal what the member last sent (names and metadata, in order).
    pub(crate) fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// The member's metadata for `protocol`.
    pub(crate) fn metadata(&self, protocol: Option<&str>) -> Vec<u8> {
        protocol
            .and_then(|name| {
                self.protocols
                    .iter()
                    .find(|candidate| candidate.name == name)
            })
            .map(|found| found.metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols
            .iter()
            .any(|candidate| candidate.name == protocol)
    }
}

/// How the join phase of a rebalance ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinPhase {
    /// The first rebalance of an empty group: it waits `initial_rebalance_delay_ms` for more
    /// members, again each time one joined meanwhile, within `remaining_ms`.
    Initial {
        remaining_ms: i64,
        new_member_added: bool,
    },
    /// Any other rebalance: it ends once every member rejoined, or at the deadline.
    Normal,
}

/// A group on its coordinator.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) state_since_ms: i64,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    pub(crate) static_members: HashMap<String, String>,
    /// Members given an id with MEMBER_ID_REQUIRED (KIP-394), with their expiry.
    pub(crate) pending_members: BTreeMap<String, i64>,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// The end of the join phase, or of the wait for the leader's SyncGroup.
    pub(crate) phase_deadline_ms: Option<i64>,
    pub(crate) join_phase: JoinPhase,
    /// When the rebalance under way began (left Stable or Empty).
    pub(crate) rebalance_started_ms: Option<i64>,
    /// The generation whose assignment is being written (the leader's SyncGroup).
    pub(crate) assignment_write: Option<i32>,
    /// The state the group had before it was marked Dead for deletion.
    pub(crate) state_before_delete: Option<GroupState>,
    /// Writes in flight that name this group (it is not dropped from memory meanwhile).
    pub(crate) writes_in_flight: usize,
}

impl Group {
    pub(crate) fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            phase_deadline_ms: None,
            join_phase: JoinPhase::Normal,
            rebalance_started_ms: None,
            assignment_write: None,
            state_before_delete: None,
            writes_in_flight: 0,
        }
    }

    pub(crate) fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// Members plus members asked to rejoin with an id: what `group_members_max` bounds.
    pub(crate) fn size(&self) -> usize {
        self.members.len() + self.pending_members.len()
    }

    /// True when nothing about the group was ever stored and nobody is in it: it can be
    /// forgotten without a record (a storm of first joins that never came back, say).
    pub(crate) fn is_disposable(&self) -> bool {
        self.state == GroupState::Empty
            && self.generation == 0
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
            && self.writes_in_flight == 0
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty type and protocols; a
    /// group with members needs the same type and a protocol every member supports.
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|protocol| {
                self.members
                    .values()
                    .all(|member| member.supports(&protocol.name))
            })
    }

    /// Kafka's protocol vote: among the protocols every member supports, each member votes for
    /// the first it lists; the most votes win (ties: the earliest-joined member's preference).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let ordered = self.members_in_join_order();
        let first = ordered.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|protocol| protocol.name.as_str())
            .filter(|name| ordered.iter().all(|member| member.supports(name)))
            .collect();
        let mut votes: Vec<(usize, &str)> = candidates.iter().map(|name| (0, *name)).collect();
        for member in &ordered {
            let vote = member
                .protocols
                .iter()
                .find(|protocol| candidates.contains(&protocol.name.as_str()));
            if let Some(vote) = vote {
                if let Some(slot) = votes.iter_mut().find(|(_, name)| *name == vote.name) {
                    slot.0 += 1;
                }
            }
        }
        // The first candidate with the most votes (candidates are in the first member's order).
        let mut best: Option<(usize, &str)> = None;
        for (count, name) in votes {
            if best.is_none_or(|(most, _)| count > most) {
                best = Some((count, name));
            }
        }
        best.map(|(_, name)| name.to_string())
    }

    pub(crate) fn members_in_join_order(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|member| member.joined_seq);
        members
    }

    /// Kafka's `hasAllMembersJoined`: every member awaits its join and no id is pending.
    pub(crate) fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty()
            && self
                .members
                .values()
                .all(|member| member.awaiting_join.is_some())
    }

    /// The largest rebalance timeout of the members (how long a join phase may last).
    pub(crate) fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|member| i64::from(member.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// A static member whose group.instance.id now belongs to another member id is fenced.
    pub(crate) fn is_static_member_fenced(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> bool {
        group_instance_id
            .and_then(|instance| self.static_members.get(instance))
            .is_some_and(|owner| owner != member_id)
    }

    /// The member list the leader gets: every member with its metadata for the protocol.
    pub(crate) fn leader_member_list(&self) -> Vec<JoinGroupMember> {
        self.members_in_join_order()
            .into_iter()
            .map(|member| JoinGroupMember {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                metadata: member.metadata(self.protocol.as_deref()),
            })
            .collect()
    }

    /// The group's metadata record value, with `assignments` (member id -> bytes) or the
    /// members' current assignments.
    pub(crate) fn metadata_value(
        &self,
        assignments: Option<&HashMap<String, Vec<u8>>>,
    ) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_since_ms,
            members: self
                .members_in_join_order()
                .into_iter()
                .map(|member| MemberValue {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: member.metadata(self.protocol.as_deref()),
                    assignment: assignments
                        .and_then(|map| map.get(&member.member_id).cloned())
                        .unwrap_or_else(|| member.assignment.clone()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, seq: u64, protocols: &[&str]) -> Member {
        Member {
            member_id: id.to_string(),
            group_instance_id: None,
            client_id: "c".to_string(),
            client_host: "h".to_string(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocols: protocols
                .iter()
                .map(|name| Protocol {
                    name: name.to_string(),
                    metadata: name.as_bytes().to_vec(),
                })
                .collect(),
            assignment: Vec::new(),
            awaiting_join: None,
            awaiting_sync: None,
            session_deadline_ms: 0,
            joined_seq: seq,
        }
    }

    // Proves the protocol vote: only protocols every member supports are candidates, each
    // member votes for its first candidate, and the majority wins.
    #[test]
    fn protocol_vote_follows_kafka() {
        let mut group = Group::new("g", 0);
        group.protocol_type = Some("consumer".to_string());
        for (id, seq, protocols) in [
            ("a", 1, &["range", "roundrobin"][..]),
            ("b", 2, &["roundrobin", "range"][..]),
            ("c", 3, &["roundrobin", "range", "sticky"][..]),
        ] {
            group
                .members
                .insert(id.to_string(), member(id, seq, protocols));
        }
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
        let sticky_only = [Protocol {
            name: "sticky".to_string(),
            metadata: Vec::new(),
        }];
        assert!(!group.supports_protocols("consumer", &sticky_only));
        let range = [Protocol {
            name: "range".to_string(),
            metadata: Vec::new(),
        }];
        assert!(group.supports_protocols("consumer", &range));
        assert!(!group.supports_protocols("connect", &range));
        assert!(!Group::new("g", 0).supports_protocols("consumer", &[]));
    }
}
