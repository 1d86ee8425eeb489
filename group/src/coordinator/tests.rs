//! Unit tests of the coordinator: every state transition and every error of the classic group
//! protocol, driven deterministically through a harness that plays the runtime (it delivers
//! answers, writes records to an in-memory log, and moves the clock).

use std::collections::HashMap;

use super::*;
use crate::api::*;
use crate::consumer_protocol::{Assignment, Subscription, TopicPartitions};
use crate::records::OffsetsRecord;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const DELAY_MS: i64 = 100;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        session_timeout_ms_min: 1_000,
        group_members_max: 5,
        groups_max: 50,
        ..GroupConfig::default()
    }
}

/// Plays the runtime: answers land in `answers`; writes go to `log` and succeed at once unless
/// `hold_writes` is set (then they wait in `held` for [`Harness::finish_write`]).
struct Harness {
    coordinator: GroupCoordinator,
    now: i64,
    next_request: RequestId,
    answers: HashMap<RequestId, GroupResponse>,
    log: Vec<OffsetsRecord>,
    hold_writes: bool,
    held: Vec<(WriteId, Vec<OffsetsRecord>)>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(config())
    }

    fn with_config(config: GroupConfig) -> Harness {
        Harness {
            coordinator: GroupCoordinator::new(config, 7),
            now: 1_000_000,
            next_request: 1,
            answers: HashMap::new(),
            log: Vec::new(),
            hold_writes: false,
            held: Vec::new(),
        }
    }

    fn send(&mut self, request: GroupRequest) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.coordinator.handle(self.now, id, request);
        self.pump();
        id
    }

    fn pump(&mut self) {
        loop {
            let outputs = self.coordinator.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                match output {
                    Output::Respond { request, response } => {
                        assert!(
                            self.answers.insert(request, response).is_none(),
                            "request {request} answered twice"
                        );
                    }
                    Output::Write { write, records } if self.hold_writes => {
                        self.held.push((write, records));
                    }
                    Output::Write { write, records } => {
                        self.log.extend(records);
                        self.coordinator.write_done(self.now, write, Ok(()));
                    }
                }
            }
        }
    }

    /// Completes the oldest held write with `result`.
    fn finish_write(&mut self, result: Result<(), GroupErrorCode>) {
        let (write, records) = self.held.remove(0);
        if result.is_ok() {
            self.log.extend(records);
        }
        self.coordinator.write_done(self.now, write, result);
        self.pump();
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        self.coordinator.tick(self.now);
        self.pump();
    }

    fn answer(&mut self, request: RequestId) -> Option<GroupResponse> {
        self.answers.remove(&request)
    }

    fn join_answer(&mut self, request: RequestId) -> JoinGroupResponse {
        match self.answer(request) {
            Some(GroupResponse::Join(answer)) => answer,
            other => panic!("request {request}: expected a JoinGroup answer, got {other:?}"),
        }
    }

    fn sync_answer(&mut self, request: RequestId) -> SyncGroupResponse {
        match self.answer(request) {
            Some(GroupResponse::Sync(answer)) => answer,
            other => panic!("request {request}: expected a SyncGroup answer, got {other:?}"),
        }
    }

    fn state(&self, group: &str) -> Option<GroupState> {
        self.coordinator.group_state(group)
    }

    /// Sends a JoinGroup.
    fn join(&mut self, group: &str, member_id: &str, topics: &[&str]) -> RequestId {
        self.send(GroupRequest::Join(join_request(
            group, member_id, None, topics,
        )))
    }

    /// A new member: MEMBER_ID_REQUIRED first, then the JoinGroup that waits. Returns its id and
    /// the waiting request.
    fn new_member(&mut self, group: &str, topics: &[&str]) -> (String, RequestId) {
        let first = self.join(group, UNKNOWN_MEMBER_ID, topics);
        let answer = self.join_answer(first);
        assert_eq!(answer.error, GroupErrorCode::MemberIdRequired);
        assert!(!answer.member_id.is_empty());
        let waiting = self.join(group, &answer.member_id, topics);
        (answer.member_id, waiting)
    }

    fn sync(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<MemberAssignment>,
    ) -> RequestId {
        self.send(GroupRequest::Sync(SyncGroupRequest {
            group_id: group.to_string(),
            generation_id: generation,
            member_id: member_id.to_string(),
            group_instance_id: None,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some("range".to_string()),
            assignments,
        }))
    }

    fn heartbeat(&mut self, group: &str, member_id: &str, generation: i32) -> GroupErrorCode {
        let request = self.send(GroupRequest::Heartbeat(HeartbeatRequest {
            group_id: group.to_string(),
            generation_id: generation,
            member_id: member_id.to_string(),
            group_instance_id: None,
        }));
        match self.answer(request) {
            Some(GroupResponse::Heartbeat(answer)) => answer.error,
            other => panic!("expected a heartbeat answer, got {other:?}"),
        }
    }

    fn commit(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
    ) -> RequestId {
        self.send(GroupRequest::OffsetCommit(OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id: generation,
            member_id: member_id.to_string(),
            group_instance_id: None,
            partitions: offsets
                .iter()
                .map(|(topic, partition, offset)| OffsetCommitPartition {
                    topic: topic.to_string(),
                    partition: *partition,
                    offset: *offset,
                    leader_epoch: 1,
                    metadata: None,
                })
                .collect(),
        }))
    }

    fn commit_errors(&mut self, request: RequestId) -> Vec<GroupErrorCode> {
        match self.answer(request) {
            Some(GroupResponse::OffsetCommit(answer)) => answer
                .partitions
                .iter()
                .map(|partition| partition.error)
                .collect(),
            other => panic!("expected an OffsetCommit answer, got {other:?}"),
        }
    }

    fn fetch(&mut self, group: &str) -> Vec<(String, i32, i64)> {
        let request = self.send(GroupRequest::OffsetFetch(OffsetFetchRequest {
            group_id: group.to_string(),
            partitions: None,
        }));
        match self.answer(request) {
            Some(GroupResponse::OffsetFetch(answer)) => answer
                .partitions
                .into_iter()
                .map(|partition| (partition.topic, partition.partition, partition.offset))
                .collect(),
            other => panic!("expected an OffsetFetch answer, got {other:?}"),
        }
    }

    fn leave(&mut self, group: &str, member_id: &str) -> LeaveGroupResponse {
        let request = self.send(GroupRequest::Leave(LeaveGroupRequest {
            group_id: group.to_string(),
            members: vec![LeavingMember {
                member_id: member_id.to_string(),
                group_instance_id: None,
            }],
        }));
        match self.answer(request) {
            Some(GroupResponse::Leave(answer)) => answer,
            other => panic!("expected a LeaveGroup answer, got {other:?}"),
        }
    }

    /// Forms a Stable group of `count` members over topic "t": every member joins, the join
    /// phase ends after the initial delay, the leader assigns partition i to member i. Returns
    /// the member ids (leader first) and the generation.
    fn stable_group(&mut self, group: &str, count: usize) -> (Vec<String>, i32) {
        let joined: Vec<(String, RequestId)> =
            (0..count).map(|_| self.new_member(group, &["t"])).collect();
        // The initial delay is extended once per round in which members arrived.
        for _ in 0..3 {
            self.advance(DELAY_MS);
        }
        let mut generation = 0;
        let mut leader = String::new();
        for (_, request) in &joined {
            let answer = self.join_answer(*request);
            assert_eq!(answer.error, GroupErrorCode::None);
            generation = answer.generation_id;
            leader = answer.leader.clone();
        }
        let mut members: Vec<String> = joined.into_iter().map(|(id, _)| id).collect();
        members.sort_by_key(|id| *id != leader);
        let assignments = members
            .iter()
            .enumerate()
            .map(|(index, member_id)| MemberAssignment {
                member_id: member_id.clone(),
                assignment: assignment_of(&[i32::try_from(index).unwrap()]),
            })
            .collect();
        let followers: Vec<RequestId> = members[1..]
            .iter()
            .map(|member_id| self.sync(group, member_id, generation, Vec::new()))
            .collect();
        let leader_sync = self.sync(group, &members[0], generation, assignments);
        for request in followers.into_iter().chain([leader_sync]) {
            assert_eq!(self.sync_answer(request).error, GroupErrorCode::None);
        }
        assert_eq!(self.state(group), Some(GroupState::Stable));
        (members, generation)
    }
}

fn subscription(topics: &[&str]) -> Vec<u8> {
    Subscription {
        topics: topics.iter().map(|topic| topic.to_string()).collect(),
        generation_id: -1,
        ..Subscription::default()
    }
    .encode()
}

fn assignment_of(partitions: &[i32]) -> Vec<u8> {
    Assignment {
        partitions: vec![TopicPartitions {
            topic: "t".to_string(),
            partitions: partitions.to_vec(),
        }],
        user_data: None,
    }
    .encode()
}

fn join_request(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    topics: &[&str],
) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        protocol_type: "consumer".to_string(),
        protocols: vec![Protocol {
            name: "range".to_string(),
            metadata: subscription(topics),
        }],
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        require_known_member_id: true,
    }
}

// Proves the whole first rebalance: MEMBER_ID_REQUIRED (KIP-394), the initial delay gathering
// members, CompletingRebalance with the member list for the leader only, the assignment
// written before anyone gets it, Stable, generation 1.
#[test]
fn first_rebalance_reaches_stable() {
    let mut harness = Harness::new();
    let (first, first_join) = harness.new_member("g", &["t"]);
    assert_eq!(harness.state("g"), Some(GroupState::PreparingRebalance));
    harness.advance(DELAY_MS / 2);
    let (second, second_join) = harness.new_member("g", &["t"]);
    harness.advance(DELAY_MS / 2);
    assert!(
        harness.answer(first_join).is_none(),
        "a member joined during the delay: extended"
    );
    harness.advance(DELAY_MS);
    let leader_answer = harness.join_answer(first_join);
    let follower_answer = harness.join_answer(second_join);
    assert_eq!(harness.state("g"), Some(GroupState::CompletingRebalance));
    assert_eq!(leader_answer.generation_id, 1);
    assert_eq!(leader_answer.leader, first);
    assert_eq!(leader_answer.protocol_name.as_deref(), Some("range"));
    let listed: Vec<&str> = leader_answer
        .members
        .iter()
        .map(|member| member.member_id.as_str())
        .collect();
    assert_eq!(listed, vec![first.as_str(), second.as_str()]);
    assert_eq!(leader_answer.members[0].metadata, subscription(&["t"]));
    assert!(follower_answer.members.is_empty());

    harness.hold_writes = true;
    let follower_sync = harness.sync("g", &second, 1, Vec::new());
    let assignments = vec![
        MemberAssignment {
            member_id: first.clone(),
            assignment: assignment_of(&[0]),
        },
        MemberAssignment {
            member_id: second.clone(),
            assignment: assignment_of(&[1]),
        },
    ];
    let leader_sync = harness.sync("g", &first, 1, assignments);
    assert!(
        harness.answer(follower_sync).is_none(),
        "nobody is answered before the write"
    );
    assert_eq!(harness.state("g"), Some(GroupState::CompletingRebalance));
    harness.finish_write(Ok(()));
    assert_eq!(harness.state("g"), Some(GroupState::Stable));
    assert_eq!(
        harness.sync_answer(follower_sync).assignment,
        assignment_of(&[1])
    );
    assert_eq!(
        harness.sync_answer(leader_sync).assignment,
        assignment_of(&[0])
    );
    let events = harness.coordinator.take_events();
    assert_eq!(events.rebalances, 1);
    assert_eq!(harness.heartbeat("g", &second, 1), GroupErrorCode::None);
}

// Proves a member joining a Stable group starts a rebalance: the others learn it from their
// heartbeat (REBALANCE_IN_PROGRESS), rejoin, and the join phase ends as soon as all did, with
// the generation bumped; a commit while the rebalance is prepared is still accepted.
#[test]
fn member_joining_during_stable_triggers_rebalance() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let (newcomer, newcomer_join) = harness.new_member("g", &["t"]);
    assert_eq!(harness.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        harness.heartbeat("g", &members[1], generation),
        GroupErrorCode::RebalanceInProgress
    );
    let commit = harness.commit("g", &members[1], generation, &[("t", 1, 10)]);
    assert_eq!(harness.commit_errors(commit), vec![GroupErrorCode::None]);
    let rejoins: Vec<RequestId> = members
        .iter()
        .map(|member| harness.join("g", member, &["t"]))
        .collect();
    for request in rejoins.iter().chain([&newcomer_join]) {
        let answer = harness.join_answer(*request);
        assert_eq!(answer.generation_id, generation + 1);
    }
    assert_eq!(harness.state("g"), Some(GroupState::CompletingRebalance));
    assert!(!newcomer.is_empty());
}

// Proves a member joining while a rebalance is being prepared just joins that rebalance, and
// that a second JoinGroup of the same member replaces the first (which is told to rejoin).
#[test]
fn member_joining_during_rebalance_joins_it() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let first_rejoin = harness.join("g", &members[0], &["t"]);
    assert_eq!(harness.state("g"), Some(GroupState::PreparingRebalance));
    let (_, late_join) = harness.new_member("g", &["t"]);
    let second_rejoin = harness.join("g", &members[0], &["t"]);
    assert_eq!(
        harness.join_answer(first_rejoin).error,
        GroupErrorCode::RebalanceInProgress
    );
    let other = harness.join("g", &members[1], &["t"]);
    for request in [second_rejoin, late_join, other] {
        let answer = harness.join_answer(request);
        assert_eq!(
            (answer.error, answer.generation_id),
            (GroupErrorCode::None, generation + 1)
        );
    }
}

// Proves the leader leaving makes the group rebalance and a remaining member lead the next
// generation; the last member leaving makes it Empty with the generation still bumped.
#[test]
fn leader_leaving_hands_over_leadership() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let left = harness.leave("g", &members[0]);
    assert_eq!(left.members[0].error, GroupErrorCode::None);
    assert_eq!(harness.state("g"), Some(GroupState::PreparingRebalance));
    let rejoin = harness.join("g", &members[1], &["t"]);
    let answer = harness.join_answer(rejoin);
    assert_eq!(answer.leader, members[1]);
    assert_eq!(answer.generation_id, generation + 1);
    assert_eq!(answer.members.len(), 1);
    assert_eq!(
        harness.leave("g", &members[1]).members[0].error,
        GroupErrorCode::None
    );
    assert_eq!(harness.state("g"), Some(GroupState::Empty));
    let unknown = harness.leave("g", "nobody");
    assert_eq!(unknown.members[0].error, GroupErrorCode::UnknownMemberId);
    let no_group = harness.leave("missing", "nobody");
    assert_eq!(no_group.members[0].error, GroupErrorCode::UnknownMemberId);
}

// Proves commits are fenced: a stale generation gets ILLEGAL_GENERATION, an unknown member
// UNKNOWN_MEMBER_ID, a commit between the JoinGroup answer and the assignment
// REBALANCE_IN_PROGRESS; none of them changes the committed offsets.
#[test]
fn stale_and_unknown_commits_are_refused() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let ok = harness.commit("g", &members[0], generation, &[("t", 0, 5)]);
    assert_eq!(harness.commit_errors(ok), vec![GroupErrorCode::None]);
    let stale = harness.commit("g", &members[0], generation - 1, &[("t", 0, 99)]);
    assert_eq!(
        harness.commit_errors(stale),
        vec![GroupErrorCode::IllegalGeneration]
    );
    let unknown = harness.commit("g", "ghost", generation, &[("t", 0, 99)]);
    assert_eq!(
        harness.commit_errors(unknown),
        vec![GroupErrorCode::UnknownMemberId]
    );
    let no_group = harness.commit("other", "ghost", 3, &[("t", 0, 99)]);
    assert_eq!(
        harness.commit_errors(no_group),
        vec![GroupErrorCode::IllegalGeneration]
    );
    assert_eq!(
        harness.state("other"),
        None,
        "a refused commit creates no group"
    );
    let standalone = harness.commit("g", "", NO_GENERATION, &[("t", 0, 99)]);
    assert_eq!(
        harness.commit_errors(standalone),
        vec![GroupErrorCode::UnknownMemberId]
    );
    let rejoins: Vec<RequestId> = members
        .iter()
        .map(|member| harness.join("g", member, &["t"]))
        .collect();
    for request in rejoins {
        harness.join_answer(request);
    }
    assert_eq!(harness.state("g"), Some(GroupState::CompletingRebalance));
    let between = harness.commit("g", &members[0], generation + 1, &[("t", 0, 99)]);
    assert_eq!(
        harness.commit_errors(between),
        vec![GroupErrorCode::RebalanceInProgress]
    );
    assert_eq!(harness.fetch("g"), vec![("t".to_string(), 0, 5)]);
}

// Proves a member of the current generation may commit a partition that is not in its
// assignment: the classic protocol's assignments are opaque to the coordinator, so it accepts
// the commit as Kafka does (zombies are fenced by the generation instead).
#[test]
fn commit_for_a_partition_not_owned_is_accepted_as_kafka_does() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let foreign = harness.commit("g", &members[1], generation, &[("t", 0, 42)]);
    assert_eq!(harness.commit_errors(foreign), vec![GroupErrorCode::None]);
    assert_eq!(harness.fetch("g"), vec![("t".to_string(), 0, 42)]);
}

// Proves a standalone consumer (generation -1, no member id) commits to a group without
// members, creating it, and that the offsets are fetched back; and that offsets are visible
// only once written, and not at all when the write fails.
#[test]
fn standalone_commits_and_write_failures() {
    let mut harness = Harness::new();
    let first = harness.commit("solo", "", NO_GENERATION, &[("t", 0, 3), ("t", 1, 4)]);
    assert_eq!(harness.commit_errors(first), vec![GroupErrorCode::None; 2]);
    assert_eq!(harness.state("solo"), Some(GroupState::Empty));
    harness.hold_writes = true;
    let pending = harness.commit("solo", "", NO_GENERATION, &[("t", 0, 30)]);
    assert!(harness.answer(pending).is_none());
    assert_eq!(
        harness.fetch("solo")[0].2,
        3,
        "not visible before it is written"
    );
    harness.finish_write(Err(GroupErrorCode::CoordinatorNotAvailable));
    assert_eq!(
        harness.commit_errors(pending),
        vec![GroupErrorCode::CoordinatorNotAvailable]
    );
    assert_eq!(harness.fetch("solo")[0].2, 3);
    let unknown_group = harness.fetch("never");
    assert!(unknown_group.is_empty());
}

// Proves bad commit input is refused per partition with a clear code while the valid
// partitions of the same request are committed: oversized metadata, a negative offset.
#[test]
fn bad_commit_partitions_are_refused_alone() {
    let mut harness = Harness::new();
    let request = harness.send(GroupRequest::OffsetCommit(OffsetCommitRequest {
        group_id: "g".to_string(),
        generation_id: NO_GENERATION,
        member_id: String::new(),
        group_instance_id: None,
        partitions: vec![
            OffsetCommitPartition {
                topic: "t".to_string(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: Some("x".repeat(5_000)),
            },
            OffsetCommitPartition {
                topic: "t".to_string(),
                partition: 1,
                offset: -5,
                leader_epoch: -1,
                metadata: None,
            },
            OffsetCommitPartition {
                topic: "t".to_string(),
                partition: 2,
                offset: 7,
                leader_epoch: -1,
                metadata: Some("ok".to_string()),
            },
        ],
    }));
    assert_eq!(
        harness.commit_errors(request),
        vec![
            GroupErrorCode::OffsetMetadataTooLarge,
            GroupErrorCode::InvalidRequest,
            GroupErrorCode::None
        ]
    );
    assert_eq!(harness.fetch("g"), vec![("t".to_string(), 2, 7)]);
}

// Proves a member that stops heartbeating is removed after its session timeout and the group
// rebalances without it, while a member that keeps heartbeating stays.
#[test]
fn silent_member_is_evicted_after_its_session() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    for _ in 0..3 {
        harness.advance(i64::from(SESSION_MS) / 3);
        assert_eq!(
            harness.heartbeat("g", &members[0], generation),
            GroupErrorCode::None
        );
    }
    harness.advance(i64::from(SESSION_MS) / 3);
    assert_eq!(
        harness.heartbeat("g", &members[0], generation),
        GroupErrorCode::RebalanceInProgress
    );
    assert_eq!(
        harness.state("g"),
        Some(GroupState::PreparingRebalance),
        "member 1 expired"
    );
    assert_eq!(harness.coordinator.take_events().members_expired, 1);
    assert_eq!(
        harness.heartbeat("g", &members[1], generation),
        GroupErrorCode::UnknownMemberId
    );
    let rejoin = harness.join("g", &members[0], &["t"]);
    let answer = harness.join_answer(rejoin);
    assert_eq!(answer.members.len(), 1);
}

// Proves members that do not rejoin within the rebalance timeout are removed when the join
// phase ends, and the rest carry on in the next generation.
#[test]
fn members_not_rejoining_are_dropped_at_the_rebalance_timeout() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 3);
    let rejoin = harness.join("g", &members[0], &["t"]);
    // Members 1 and 2 keep heartbeating (and are told to rejoin) but never rejoin.
    let step = i64::from(SESSION_MS) / 4;
    let mut waited = 0;
    while waited + step < i64::from(REBALANCE_MS) {
        harness.advance(step);
        waited += step;
        for member in &members[1..] {
            assert_eq!(
                harness.heartbeat("g", member, generation),
                GroupErrorCode::RebalanceInProgress
            );
        }
    }
    assert!(harness.answer(rejoin).is_none());
    harness.advance(i64::from(REBALANCE_MS) - waited);
    let answer = harness.join_answer(rejoin);
    assert_eq!(answer.generation_id, generation + 1);
    assert_eq!(answer.members.len(), 1);
    assert_eq!(
        harness.heartbeat("g", &members[1], generation + 1),
        GroupErrorCode::UnknownMemberId
    );
}

// Proves a leader that never sends its assignment does not wedge the group: after the
// rebalance timeout the members that did not sync are removed and the group rebalances, the
// waiting followers being told to rejoin.
#[test]
fn missing_leader_sync_times_out() {
    let mut harness = Harness::new();
    let (first, first_join) = harness.new_member("g", &["t"]);
    let (second, second_join) = harness.new_member("g", &["t"]);
    harness.advance(DELAY_MS);
    harness.advance(DELAY_MS);
    let generation = harness.join_answer(first_join).generation_id;
    harness.join_answer(second_join);
    let follower_sync = harness.sync("g", &second, generation, Vec::new());
    harness.advance(i64::from(REBALANCE_MS));
    assert_eq!(
        harness.sync_answer(follower_sync).error,
        GroupErrorCode::RebalanceInProgress
    );
    assert_eq!(
        harness.heartbeat("g", &first, generation),
        GroupErrorCode::UnknownMemberId
    );
    assert_eq!(harness.state("g"), Some(GroupState::PreparingRebalance));
}

// Proves heartbeat answers in every state: NONE in Stable and CompletingRebalance,
// REBALANCE_IN_PROGRESS while preparing, ILLEGAL_GENERATION for another generation,
// UNKNOWN_MEMBER_ID for an unknown member or group.
#[test]
fn heartbeat_answers_by_state() {
    let mut harness = Harness::new();
    let (first, first_join) = harness.new_member("g", &["t"]);
    harness.advance(DELAY_MS);
    let generation = harness.join_answer(first_join).generation_id;
    assert_eq!(
        harness.heartbeat("g", &first, generation),
        GroupErrorCode::None,
        "CompletingRebalance"
    );
    assert_eq!(
        harness.heartbeat("g", &first, generation + 1),
        GroupErrorCode::IllegalGeneration
    );
    assert_eq!(
        harness.heartbeat("g", "ghost", generation),
        GroupErrorCode::UnknownMemberId
    );
    assert_eq!(
        harness.heartbeat("nothing", &first, generation),
        GroupErrorCode::UnknownMemberId
    );
    let sync = harness.sync("g", &first, generation, Vec::new());
    assert_eq!(harness.sync_answer(sync).error, GroupErrorCode::None);
    assert_eq!(
        harness.heartbeat("g", &first, generation),
        GroupErrorCode::None,
        "Stable"
    );
}

// Proves SyncGroup errors: REBALANCE_IN_PROGRESS while preparing, ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID, INCONSISTENT_GROUP_PROTOCOL for another protocol name, and that a Stable
// member gets its assignment again.
#[test]
fn sync_errors_and_stable_resync() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let again = harness.sync("g", &members[1], generation, Vec::new());
    assert_eq!(harness.sync_answer(again).assignment, assignment_of(&[1]));
    let stale = harness.sync("g", &members[1], generation - 1, Vec::new());
    assert_eq!(
        harness.sync_answer(stale).error,
        GroupErrorCode::IllegalGeneration
    );
    let ghost = harness.sync("g", "ghost", generation, Vec::new());
    assert_eq!(
        harness.sync_answer(ghost).error,
        GroupErrorCode::UnknownMemberId
    );
    let other_protocol = harness.send(GroupRequest::Sync(SyncGroupRequest {
        group_id: "g".to_string(),
        generation_id: generation,
        member_id: members[0].clone(),
        group_instance_id: None,
        protocol_type: Some("consumer".to_string()),
        protocol_name: Some("roundrobin".to_string()),
        assignments: Vec::new(),
    }));
    assert_eq!(
        harness.sync_answer(other_protocol).error,
        GroupErrorCode::InconsistentGroupProtocol
    );
    harness.join("g", &members[0], &["t"]);
    let preparing = harness.sync("g", &members[1], generation, Vec::new());
    assert_eq!(
        harness.sync_answer(preparing).error,
        GroupErrorCode::RebalanceInProgress
    );
}

// Proves JoinGroup refuses bad input with Kafka's codes and creates nothing: empty group id,
// session timeout out of bounds, oversized metadata, a protocol type or protocols that do not
// match the group's, a member id the group does not know, a known id for a missing group.
#[test]
fn join_refuses_bad_input() {
    let mut harness = Harness::new();
    harness.stable_group("g", 1);
    let cases: Vec<(JoinGroupRequest, GroupErrorCode)> = vec![
        (
            join_request("", "", None, &["t"]),
            GroupErrorCode::InvalidGroupId,
        ),
        (
            JoinGroupRequest {
                session_timeout_ms: 10,
                ..join_request("h", "", None, &["t"])
            },
            GroupErrorCode::InvalidSessionTimeout,
        ),
        (
            JoinGroupRequest {
                protocols: vec![Protocol {
                    name: "range".to_string(),
                    metadata: vec![0; 70_000],
                }],
                ..join_request("h", "", None, &["t"])
            },
            GroupErrorCode::InvalidRequest,
        ),
        (
            JoinGroupRequest {
                protocol_type: "connect".to_string(),
                ..join_request("g", "", None, &["t"])
            },
            GroupErrorCode::InconsistentGroupProtocol,
        ),
        (
            JoinGroupRequest {
                protocols: vec![Protocol {
                    name: "sticky".to_string(),
                    metadata: Vec::new(),
                }],
                ..join_request("g", "", None, &["t"])
            },
            GroupErrorCode::InconsistentGroupProtocol,
        ),
        (
            join_request("g", "ghost", None, &["t"]),
            GroupErrorCode::UnknownMemberId,
        ),
        (
            join_request("missing", "ghost", None, &["t"]),
            GroupErrorCode::UnknownMemberId,
        ),
    ];
    for (request, expected) in cases {
        let id = harness.send(GroupRequest::Join(request.clone()));
        let answer = harness.join_answer(id);
        assert_eq!(answer.error, expected, "{request:?}");
    }
    assert_eq!(harness.state("h"), None);
    assert_eq!(harness.state("missing"), None);
    assert_eq!(
        harness.state("g"),
        Some(GroupState::Stable),
        "the group was not disturbed"
    );
}

// Proves a JoinGroup storm from one client is bounded: member ids handed out count toward
// group_members_max, so further joins get GROUP_MAX_SIZE_REACHED; another group is
// unaffected; the unused ids expire after the session timeout and the storm's group, which
// stored nothing, is forgotten.
#[test]
fn join_storm_is_bounded_and_forgotten() {
    let mut harness = Harness::new();
    let mut codes = Vec::new();
    for _ in 0..20 {
        let request = harness.join("storm", UNKNOWN_MEMBER_ID, &["t"]);
        codes.push(harness.join_answer(request).error);
    }
    assert_eq!(
        codes
            .iter()
            .filter(|code| **code == GroupErrorCode::MemberIdRequired)
            .count(),
        5
    );
    assert_eq!(
        codes
            .iter()
            .filter(|code| **code == GroupErrorCode::GroupMaxSizeReached)
            .count(),
        15
    );
    let (calm, generation) = harness.stable_group("calm", 2);
    assert_eq!(generation, 1);
    for _ in 0..4 {
        harness.advance(i64::from(SESSION_MS) / 4);
        for member in &calm {
            assert_eq!(
                harness.heartbeat("calm", member, generation),
                GroupErrorCode::None
            );
        }
    }
    assert_eq!(harness.state("storm"), None, "nothing of the storm is left");
    assert_eq!(harness.state("calm"), Some(GroupState::Stable));
}

// Proves the groups_max bound: a join or standalone commit that would create a group beyond
// it gets POLICY_VIOLATION with a message naming the setting.
#[test]
fn groups_max_is_enforced() {
    let mut harness = Harness::with_config(GroupConfig {
        groups_max: 1,
        ..config()
    });
    harness.stable_group("one", 1);
    let request = harness.join("two", UNKNOWN_MEMBER_ID, &["t"]);
    let answer = harness.join_answer(request);
    assert_eq!(answer.error, GroupErrorCode::PolicyViolation);
    assert!(answer.error_message.unwrap().contains("groups_max"));
    let commit = harness.commit("two", "", NO_GENERATION, &[("t", 0, 1)]);
    assert_eq!(
        harness.commit_errors(commit),
        vec![GroupErrorCode::PolicyViolation]
    );
}

// Proves static membership (KIP-345): a static member that restarts (no member id, same
// instance id) takes its place under a new id without a rebalance, the old instance is fenced
// (FENCED_INSTANCE_ID), and a static member can leave by instance id alone.
#[test]
fn static_member_replacement_fences_the_old_instance() {
    let mut harness = Harness::new();
    let first = harness.send(GroupRequest::Join(join_request(
        "g",
        "",
        Some("i-1"),
        &["t"],
    )));
    harness.advance(DELAY_MS);
    let answer = harness.join_answer(first);
    let (old_id, generation) = (answer.member_id.clone(), answer.generation_id);
    let sync = harness.sync(
        "g",
        &old_id,
        generation,
        vec![MemberAssignment {
            member_id: old_id.clone(),
            assignment: assignment_of(&[0]),
        }],
    );
    assert_eq!(harness.sync_answer(sync).error, GroupErrorCode::None);
    let restarted = harness.send(GroupRequest::Join(join_request(
        "g",
        "",
        Some("i-1"),
        &["t"],
    )));
    let answer = harness.join_answer(restarted);
    assert_eq!(answer.error, GroupErrorCode::None);
    assert_ne!(answer.member_id, old_id);
    assert_eq!(answer.generation_id, generation, "no rebalance");
    assert_eq!(harness.state("g"), Some(GroupState::Stable));
    let fenced = harness.send(GroupRequest::Heartbeat(HeartbeatRequest {
        group_id: "g".to_string(),
        generation_id: generation,
        member_id: old_id.clone(),
        group_instance_id: Some("i-1".to_string()),
    }));
    assert_eq!(
        harness.answer(fenced),
        Some(GroupResponse::Heartbeat(HeartbeatResponse {
            error: GroupErrorCode::FencedInstanceId
        }))
    );
    let leave = harness.send(GroupRequest::Leave(LeaveGroupRequest {
        group_id: "g".to_string(),
        members: vec![LeavingMember {
            member_id: String::new(),
            group_instance_id: Some("i-1".to_string()),
        }],
    }));
    let Some(GroupResponse::Leave(left)) = harness.answer(leave) else {
        panic!("no leave answer")
    };
    assert_eq!(left.members[0].error, GroupErrorCode::None);
    assert_eq!(harness.state("g"), Some(GroupState::Empty));
}

// Proves the leader rejoining a Stable group forces a rebalance (Kafka lets the leader trigger
// one for metadata changes), while a follower rejoining unchanged just gets the current
// generation.
#[test]
fn leader_rejoin_rebalances_follower_rejoin_does_not() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let follower = harness.join("g", &members[1], &["t"]);
    let answer = harness.join_answer(follower);
    assert_eq!(
        (answer.generation_id, answer.leader.as_str()),
        (generation, members[0].as_str())
    );
    assert_eq!(harness.state("g"), Some(GroupState::Stable));
    harness.join("g", &members[0], &["t"]);
    assert_eq!(harness.state("g"), Some(GroupState::PreparingRebalance));
    let changed = harness.join("g", &members[1], &["t", "u"]);
    assert_eq!(harness.join_answer(changed).generation_id, generation + 1);
}

// Proves a failed assignment write tells every waiting member the error and sends the group
// back to PreparingRebalance, so nobody acts on an assignment that was not stored.
#[test]
fn failed_assignment_write_rebalances() {
    let mut harness = Harness::new();
    let (first, first_join) = harness.new_member("g", &["t"]);
    harness.advance(DELAY_MS);
    let generation = harness.join_answer(first_join).generation_id;
    harness.hold_writes = true;
    let sync = harness.sync(
        "g",
        &first,
        generation,
        vec![MemberAssignment {
            member_id: first.clone(),
            assignment: assignment_of(&[0]),
        }],
    );
    harness.finish_write(Err(GroupErrorCode::NotCoordinator));
    assert_eq!(
        harness.sync_answer(sync).error,
        GroupErrorCode::NotCoordinator
    );
    assert_eq!(harness.state("g"), Some(GroupState::PreparingRebalance));
}

// Proves the records written are enough to rebuild the coordinator: a new coordinator that
// replays the log has the same committed offsets, and the Stable group with its generation,
// leader and assignments, whose members carry on without a rebalance.
#[test]
fn replaying_the_log_restores_groups_and_offsets() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let commit = harness.commit("g", &members[0], generation, &[("t", 0, 11), ("t", 1, 12)]);
    harness.commit_errors(commit);
    let again = harness.commit("g", &members[0], generation, &[("t", 0, 21)]);
    harness.commit_errors(again);
    let solo = harness.commit("solo", "", NO_GENERATION, &[("u", 3, 5)]);
    harness.commit_errors(solo);
    let mut restored = Harness::new();
    for record in &harness.log {
        restored
            .coordinator
            .replay(&record.key, record.value.as_deref())
            .unwrap();
    }
    restored.coordinator.finish_load(restored.now);
    assert_eq!(restored.state("g"), Some(GroupState::Stable));
    assert_eq!(
        restored.fetch("g"),
        vec![("t".to_string(), 0, 21), ("t".to_string(), 1, 12)]
    );
    assert_eq!(restored.fetch("solo"), vec![("u".to_string(), 3, 5)]);
    assert_eq!(
        restored.heartbeat("g", &members[1], generation),
        GroupErrorCode::None
    );
    let resync = restored.sync("g", &members[1], generation, Vec::new());
    assert_eq!(restored.sync_answer(resync).assignment, assignment_of(&[1]));
    // Member 0 never heartbeats: its session, started at load, expires.
    for _ in 0..4 {
        restored.advance(i64::from(SESSION_MS) / 3);
        restored.heartbeat("g", &members[1], generation);
    }
    assert_eq!(restored.state("g"), Some(GroupState::PreparingRebalance));
}

// Proves DeleteGroups: a group with members gets NON_EMPTY_GROUP, an unknown one
// GROUP_ID_NOT_FOUND, an empty one is Dead while its tombstones are written and gone after,
// and a failed write gives the group back.
#[test]
fn delete_groups_follows_kafka() {
    let mut harness = Harness::new();
    harness.stable_group("busy", 1);
    let commit = harness.commit("idle", "", NO_GENERATION, &[("t", 0, 4)]);
    harness.commit_errors(commit);
    harness.hold_writes = true;
    let request = harness.send(GroupRequest::DeleteGroups(DeleteGroupsRequest {
        groups: vec!["busy".to_string(), "idle".to_string(), "none".to_string()],
    }));
    assert_eq!(harness.state("idle"), Some(GroupState::Dead));
    let join = harness.join("idle", UNKNOWN_MEMBER_ID, &["t"]);
    assert_eq!(
        harness.join_answer(join).error,
        GroupErrorCode::CoordinatorNotAvailable
    );
    harness.finish_write(Err(GroupErrorCode::CoordinatorNotAvailable));
    let Some(GroupResponse::DeleteGroups(failed)) = harness.answer(request) else {
        panic!("no answer")
    };
    let codes: Vec<GroupErrorCode> = failed.results.iter().map(|result| result.error).collect();
    assert_eq!(
        codes,
        vec![
            GroupErrorCode::NonEmptyGroup,
            GroupErrorCode::CoordinatorNotAvailable,
            GroupErrorCode::GroupIdNotFound
        ]
    );
    assert_eq!(harness.state("idle"), Some(GroupState::Empty));
    harness.hold_writes = false;
    let retry = harness.send(GroupRequest::DeleteGroups(DeleteGroupsRequest {
        groups: vec!["idle".to_string()],
    }));
    let Some(GroupResponse::DeleteGroups(done)) = harness.answer(retry) else {
        panic!("no answer")
    };
    assert_eq!(done.results[0].error, GroupErrorCode::None);
    assert_eq!(harness.state("idle"), None);
    let last = harness.log.last().unwrap();
    assert!(
        last.value.is_none(),
        "the group's tombstone is the last record"
    );
}

// Proves OffsetDelete refuses topics the group's members subscribe to
// (GROUP_SUBSCRIBED_TO_TOPIC), deletes others, and answers GROUP_ID_NOT_FOUND for an unknown
// group.
#[test]
fn offset_delete_respects_subscriptions() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 1);
    let commit = harness.commit("g", &members[0], generation, &[("t", 0, 1), ("old", 0, 2)]);
    harness.commit_errors(commit);
    let request = harness.send(GroupRequest::OffsetDelete(OffsetDeleteRequest {
        group_id: "g".to_string(),
        partitions: vec![
            TopicPartition {
                topic: "t".to_string(),
                partition: 0,
            },
            TopicPartition {
                topic: "old".to_string(),
                partition: 0,
            },
        ],
    }));
    let Some(GroupResponse::OffsetDelete(answer)) = harness.answer(request) else {
        panic!("no answer")
    };
    let codes: Vec<GroupErrorCode> = answer
        .partitions
        .iter()
        .map(|partition| partition.error)
        .collect();
    assert_eq!(
        codes,
        vec![GroupErrorCode::GroupSubscribedToTopic, GroupErrorCode::None]
    );
    assert_eq!(harness.fetch("g"), vec![("t".to_string(), 0, 1)]);
    let unknown = harness.send(GroupRequest::OffsetDelete(OffsetDeleteRequest {
        group_id: "x".to_string(),
        partitions: Vec::new(),
    }));
    let Some(GroupResponse::OffsetDelete(answer)) = harness.answer(unknown) else {
        panic!("no answer")
    };
    assert_eq!(answer.error, GroupErrorCode::GroupIdNotFound);
}

// Proves unloading (leadership moved) answers every waiting JoinGroup and SyncGroup and every
// unfinished commit with NOT_COORDINATOR, and leaves nothing behind.
#[test]
fn unload_answers_every_waiting_request() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 2);
    let rejoin = harness.join("g", &members[0], &["t"]);
    harness.hold_writes = true;
    let commit = harness.commit("g", &members[1], generation, &[("t", 1, 8)]);
    harness.coordinator.unload();
    harness.pump();
    assert_eq!(
        harness.join_answer(rejoin).error,
        GroupErrorCode::NotCoordinator
    );
    assert_eq!(
        harness.commit_errors(commit),
        vec![GroupErrorCode::NotCoordinator]
    );
    assert_eq!(harness.coordinator.group_count(), 0);
    assert_eq!(harness.coordinator.next_deadline_ms(), None);
}

// Proves ListGroups (with a state filter) and DescribeGroups (members with their decoded
// metadata and Stable assignments; GROUP_ID_NOT_FOUND for unknown groups).
#[test]
fn list_and_describe_groups() {
    let mut harness = Harness::new();
    let (members, _) = harness.stable_group("g", 2);
    let commit = harness.commit("solo", "", NO_GENERATION, &[("t", 0, 1)]);
    harness.commit_errors(commit);
    let list = harness.send(GroupRequest::ListGroups(ListGroupsRequest {
        states: vec![GroupState::Stable],
    }));
    let Some(GroupResponse::ListGroups(listed)) = harness.answer(list) else {
        panic!("no answer")
    };
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_id, "g");
    let describe = harness.send(GroupRequest::DescribeGroups(DescribeGroupsRequest {
        groups: vec!["g".to_string(), "nope".to_string()],
    }));
    let Some(GroupResponse::DescribeGroups(described)) = harness.answer(describe) else {
        panic!("no answer")
    };
    let group = &described.groups[0];
    assert_eq!(
        (group.state, group.protocol.as_str()),
        (GroupState::Stable, "range")
    );
    assert_eq!(group.members[0].member_id, members[0]);
    assert_eq!(
        Assignment::decode(&group.members[1].assignment)
            .unwrap()
            .topic_partitions()
            .collect::<Vec<_>>(),
        vec![("t", 1)]
    );
    assert_eq!(described.groups[1].error, GroupErrorCode::GroupIdNotFound);
    let gauges = harness.coordinator.gauges();
    assert_eq!(gauges.members, 2);
    assert_eq!(gauges.groups_by_state[0] + gauges.groups_by_state[3], 2);
}

// Proves deleting a topic removes every group's committed offsets for it (tombstones written),
// leaving other topics' offsets alone.
#[test]
fn deleted_topics_lose_their_offsets() {
    let mut harness = Harness::new();
    let commit = harness.commit("g", "", NO_GENERATION, &[("gone", 0, 1), ("kept", 0, 2)]);
    harness.commit_errors(commit);
    harness
        .coordinator
        .delete_topic_offsets(&["gone".to_string()]);
    harness.pump();
    assert_eq!(harness.fetch("g"), vec![("kept".to_string(), 0, 2)]);
    assert!(harness.log.last().unwrap().value.is_none());
}

// Proves the timers stay bounded under heartbeats: each member has one session deadline at a
// time, however often it heartbeats.
#[test]
fn heartbeats_do_not_grow_the_timers() {
    let mut harness = Harness::new();
    let (members, generation) = harness.stable_group("g", 3);
    let before = harness.coordinator.timers.len();
    for _ in 0..100 {
        harness.now += 10;
        for member in &members {
            harness.heartbeat("g", member, generation);
        }
    }
    assert_eq!(harness.coordinator.timers.len(), before);
}
