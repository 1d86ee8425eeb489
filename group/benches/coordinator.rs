//! The coordinator's own cost, without I/O (writes complete at once, time is virtual):
//! - `rebalance/10_members_to_stable`: 10 members join an empty group and sync, to Stable;
//! - `rebalance/one_member_leaves`: one of 10 members leaves a Stable group, the other 9 rejoin
//!   and sync, to Stable again;
//! - `offset_commit/10_partitions`: one OffsetCommit of 10 partitions by a Stable member,
//!   written and answered (throughput = commits per second per coordinator, CPU only).
//!
//! Run: `cargo bench -p sluice-group --bench coordinator`. The end-to-end numbers (network,
//! replication, disk) come from `sluice-loadgen groups` against a real broker.

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_group::consumer_protocol::Subscription;
use sluice_group::{
    GroupConfig, GroupCoordinator, GroupRequest, GroupResponse, JoinGroupRequest,
    LeaveGroupRequest, LeavingMember, MemberAssignment, OffsetCommitPartition, OffsetCommitRequest,
    Output, Protocol, SyncGroupRequest, UNKNOWN_MEMBER_ID,
};

const GROUP: &str = "bench";

/// Drives a coordinator: completes every write at once, keeps the answers.
struct Driver {
    coordinator: GroupCoordinator,
    now: i64,
    next: u64,
    answers: HashMap<u64, GroupResponse>,
}

impl Driver {
    fn new() -> Driver {
        let config = GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        };
        Driver {
            coordinator: GroupCoordinator::new(config, 1),
            now: 1,
            next: 1,
            answers: HashMap::new(),
        }
    }

    fn send(&mut self, request: GroupRequest) -> u64 {
        let id = self.next;
        self.next += 1;
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
                        self.answers.insert(request, response);
                    }
                    Output::Write { write, .. } => {
                        self.coordinator.write_done(self.now, write, Ok(()));
                    }
                }
            }
        }
    }

    fn join(&mut self, member_id: &str) -> u64 {
        let metadata = Subscription {
            topics: vec!["t".to_string()],
            generation_id: -1,
            ..Subscription::default()
        }
        .encode();
        self.send(GroupRequest::Join(JoinGroupRequest {
            group_id: GROUP.to_string(),
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 60_000,
            member_id: member_id.to_string(),
            group_instance_id: None,
            protocol_type: "consumer".to_string(),
            protocols: vec![Protocol {
                name: "range".to_string(),
                metadata,
            }],
            client_id: "bench".to_string(),
            client_host: "/127.0.0.1".to_string(),
            require_known_member_id: false,
        }))
    }

    /// Answers of `requests` as JoinGroup answers: (member id, generation, leader).
    fn joined(&mut self, requests: &[u64]) -> Vec<(String, i32, String)> {
        requests
            .iter()
            .map(|request| match self.answers.remove(request) {
                Some(GroupResponse::Join(answer)) => {
                    (answer.member_id, answer.generation_id, answer.leader)
                }
                other => panic!("no join answer: {other:?}"),
            })
            .collect()
    }

    fn sync_all(&mut self, members: &[(String, i32, String)]) {
        for (member_id, generation, leader) in members {
            let assignments = if member_id == leader {
                members
                    .iter()
                    .map(|(id, _, _)| MemberAssignment {
                        member_id: id.clone(),
                        assignment: vec![0; 32],
                    })
                    .collect()
            } else {
                Vec::new()
            };
            self.send(GroupRequest::Sync(SyncGroupRequest {
                group_id: GROUP.to_string(),
                generation_id: *generation,
                member_id: member_id.clone(),
                group_instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments,
            }));
        }
    }

    /// 10 members to Stable; returns them.
    fn stable_group(&mut self, count: usize) -> Vec<(String, i32, String)> {
        let requests: Vec<u64> = (0..count).map(|_| self.join(UNKNOWN_MEMBER_ID)).collect();
        self.now += 1;
        self.coordinator.tick(self.now);
        self.pump();
        let members = self.joined(&requests);
        self.sync_all(&members);
        members
    }
}

fn rebalances(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("rebalance");
    group.bench_function("10_members_to_stable", |bench| {
        bench.iter_batched(
            Driver::new,
            |mut driver| {
                driver.stable_group(10);
                driver
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("one_member_leaves", |bench| {
        bench.iter_batched(
            || {
                let mut driver = Driver::new();
                let members = driver.stable_group(10);
                (driver, members)
            },
            |(mut driver, members)| {
                driver.send(GroupRequest::Leave(LeaveGroupRequest {
                    group_id: GROUP.to_string(),
                    members: vec![LeavingMember {
                        member_id: members[0].0.clone(),
                        group_instance_id: None,
                    }],
                }));
                let requests: Vec<u64> = members[1..]
                    .iter()
                    .map(|(member_id, _, _)| driver.join(member_id))
                    .collect();
                let rejoined = driver.joined(&requests);
                driver.sync_all(&rejoined);
                driver
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn commits(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("offset_commit");
    group.throughput(Throughput::Elements(1));
    let mut driver = Driver::new();
    let members = driver.stable_group(10);
    let (member_id, generation, _) = members[0].clone();
    let mut offset = 0;
    group.bench_function("10_partitions", |bench| {
        bench.iter(|| {
            offset += 1;
            let request = driver.send(GroupRequest::OffsetCommit(OffsetCommitRequest {
                group_id: GROUP.to_string(),
                generation_id: generation,
                member_id: member_id.clone(),
                group_instance_id: None,
                partitions: (0..10)
                    .map(|partition| OffsetCommitPartition {
                        topic: "t".to_string(),
                        partition,
                        offset,
                        leader_epoch: 0,
                        metadata: None,
                    })
                    .collect(),
            }));
            driver.answers.remove(&request)
        });
    });
    group.finish();
}

criterion_group!(benches, rebalances, commits);
criterion_main!(benches);
