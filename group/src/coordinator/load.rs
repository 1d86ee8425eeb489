//! Loading a partition's groups from its records, oldest first, when this shard becomes its
//! leader: the newest value of each key wins and a tombstone deletes. Groups whose metadata
//! lists members come back Stable with their assignments (their sessions start at load time);
//! the others come back Empty.

use super::GroupCoordinator;
use crate::api::{GroupState, Protocol};
use crate::error::RecordError;
use crate::group::{Group, Member};
use crate::records::{decode_group_value, decode_key, decode_offset_value, GroupValue, OffsetsKey};

impl GroupCoordinator {
    /// Applies one record of the partition's log (key, and value or `None` for a tombstone).
    /// Records of types this build does not use are skipped. An error names the record that
    /// could not be read; the caller decides whether to skip it.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        match decode_key(key)? {
            OffsetsKey::Offset {
                group,
                topic,
                partition,
            } => {
                match value {
                    Some(value) => {
                        let value = decode_offset_value(value)?;
                        self.loading_group(&group)
                            .offsets
                            .insert((topic, partition), value);
                    }
                    None => {
                        if let Some(loaded) = self.groups.get_mut(&group) {
                            loaded.offsets.remove(&(topic, partition));
                        }
                    }
                }
                Ok(())
            }
            OffsetsKey::Group { group } => {
                match value {
                    Some(value) => {
                        let value = decode_group_value(value)?;
                        self.load_metadata(&group, value);
                    }
                    None => {
                        self.groups.remove(&group);
                    }
                }
                Ok(())
            }
            OffsetsKey::Other { .. } => Ok(()),
        }
    }

    fn loading_group(&mut self, group_id: &str) -> &mut Group {
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, 0))
    }

    fn load_metadata(&mut self, group_id: &str, value: GroupValue) {
        let mut seqs = Vec::with_capacity(value.members.len());
        for _ in &value.members {
            seqs.push(self.next_join_seq());
        }
        let group = self.loading_group(group_id);
        group.protocol_type = Some(value.protocol_type).filter(|name| !name.is_empty());
        group.generation = value.generation;
        group.protocol = value.protocol;
        group.leader = value.leader;
        group.state_since_ms = value.current_state_timestamp_ms.max(0);
        group.members.clear();
        group.static_members.clear();
        let protocol = group.protocol.clone().unwrap_or_default();
        for (member, joined_seq) in value.members.into_iter().zip(seqs) {
            if let Some(instance) = &member.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            group.members.insert(
                member.member_id.clone(),
                Member {
                    member_id: member.member_id,
                    group_instance_id: member.group_instance_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    session_timeout_ms: member.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    protocols: vec![Protocol {
                        name: protocol.clone(),
                        metadata: member.subscription,
                    }],
                    assignment: member.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    session_deadline_ms: 0,
                    joined_seq,
                },
            );
        }
    }

    /// Ends the load: every group takes its state (Stable with members, else Empty) and every
    /// member's session starts now, so members that are gone are removed after their timeout
    /// and the others carry on without a rebalance.
    pub fn finish_load(&mut self, now_ms: i64) {
        let mut sessions = Vec::new();
        for group in self.groups.values_mut() {
            let state = if group.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
            group.state = state;
            if group
                .leader
                .as_ref()
                .is_none_or(|leader| !group.members.contains_key(leader))
            {
                group.leader = group
                    .members_in_join_order()
                    .first()
                    .map(|member| member.member_id.clone());
            }
            for member_id in group.members.keys() {
                sessions.push((group.group_id.clone(), member_id.clone()));
            }
        }
        for (group_id, member_id) in sessions {
            self.touch_session(now_ms, &group_id, &member_id);
        }
    }
}
