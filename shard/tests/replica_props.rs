//! Property tests of the leader's high-watermark and ISR rules (`LeaderState`), against a
//! model of the replicas and of etcd: random sequences of appends, follower fetches, ISR
//! checks, etcd answers (committed, refused, unknown with or without a commit behind it),
//! metadata deliveries, follower restarts that lose their logs (new broker epochs), the
//! controller removing such restarted members, and leader epoch changes.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sluice_shard::replica::IsrOutcome;
use sluice_shard::{IsrProposal, LeaderState, ReplicaInfo};

const LEADER: i32 = 1;
const FOLLOWERS: [i32; 2] = [2, 3];
const LAG_MS: u64 = 1_000;

/// One step of a history.
#[derive(Debug, Clone)]
enum Action {
    /// The leader appends this many records.
    Append(i64),
    /// A follower fetches from its log end, then receives up to this many records.
    Fetch { follower: usize, records: i64 },
    /// The clock moves on.
    Tick(i64),
    /// The leader's periodic ISR check (it sends what it wants).
    Check,
    /// etcd takes up the oldest sending and answers it.
    Answer(Answer),
    /// The leader learns etcd's current partition state.
    Deliver,
    /// A follower restarts with an empty log and registers with a new broker epoch.
    Wipe(usize),
    /// The controller removes ISR members registered with another epoch than recorded.
    Controller,
    /// A new leader epoch begins on the same broker (an election it won again).
    NewEpoch,
}

/// How etcd treats a sending.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Applies it if the compare-and-swap holds, and says what happened.
    Commit,
    /// Applies it if the compare-and-swap holds, but the answer is lost (timeout).
    CommitUnknown,
    /// Never applies it, and the answer is lost.
    LostUnknown,
    /// Never gets it (the queue was full, etcd unreachable).
    NotSent,
}

fn action() -> impl Strategy<Value = Action> {
    let answer = prop_oneof![
        Just(Answer::Commit),
        Just(Answer::CommitUnknown),
        Just(Answer::LostUnknown),
        Just(Answer::NotSent),
    ];
    prop_oneof![
        4 => (1..20_i64).prop_map(Action::Append),
        6 => (0..2_usize, 0..30_i64).prop_map(|(follower, records)| Action::Fetch { follower, records }),
        3 => (1..800_i64).prop_map(Action::Tick),
        3 => Just(Action::Check),
        4 => answer.prop_map(Action::Answer),
        2 => Just(Action::Deliver),
        1 => (0..2_usize).prop_map(Action::Wipe),
        1 => Just(Action::Controller),
        1 => Just(Action::NewEpoch),
    ]
}

/// etcd's record of the partition.
#[derive(Debug, Clone)]
struct EtcdPartition {
    leader_epoch: i32,
    isr: Vec<i32>,
    /// The broker epoch each ISR member had when it joined.
    isr_epochs: BTreeMap<i32, i64>,
    version: i64,
}

/// The world the leader lives in.
struct Model {
    leader: LeaderState,
    leader_leo: i64,
    /// Each follower's real log end offset.
    follower_leo: BTreeMap<i32, i64>,
    /// Each follower's current broker epoch.
    broker_epochs: BTreeMap<i32, i64>,
    etcd: EtcdPartition,
    /// The last etcd revision handed out.
    revision: i64,
    /// Sendings etcd has not taken up yet, oldest first.
    in_flight: Vec<IsrProposal>,
    now_ms: i64,
    /// The high watermark after the previous step, and the epoch it was in.
    last_high_watermark: (i32, i64),
}

impl Model {
    fn new() -> Model {
        let broker_epochs: BTreeMap<i32, i64> = [(LEADER, 100), (2, 200), (3, 300)].into();
        let etcd = EtcdPartition {
            leader_epoch: 0,
            isr: vec![LEADER, 2, 3],
            isr_epochs: broker_epochs.clone(),
            version: 1,
        };
        let leader = LeaderState::new(LEADER, &info_of(&etcd, &broker_epochs), 0, 0, 0);
        Model {
            leader,
            leader_leo: 0,
            follower_leo: FOLLOWERS.iter().map(|id| (*id, 0)).collect(),
            broker_epochs,
            etcd,
            revision: 1,
            in_flight: Vec::new(),
            now_ms: 0,
            last_high_watermark: (0, 0),
        }
    }

    /// The partition as the leader's metadata describes it now.
    fn info(&self) -> ReplicaInfo {
        info_of(&self.etcd, &self.broker_epochs)
    }

    fn write(&mut self, isr: Vec<i32>, isr_epochs: BTreeMap<i32, i64>) {
        self.revision += 1;
        self.etcd.isr = isr;
        self.etcd.isr_epochs = isr_epochs;
        self.etcd.version = self.revision;
    }

    /// etcd's compare-and-swap of a sending, with the broker-epoch check of added members.
    fn applies(&self, proposal: &IsrProposal) -> bool {
        proposal.version == self.etcd.version
            && proposal.leader_epoch == self.etcd.leader_epoch
            && proposal
                .added_broker_epochs
                .iter()
                .all(|(member, epoch)| self.broker_epochs.get(member) == Some(epoch))
    }

    fn commit(&mut self, proposal: &IsrProposal) {
        let mut epochs: BTreeMap<i32, i64> = self
            .etcd
            .isr_epochs
            .iter()
            .filter(|(member, _)| proposal.isr.contains(member))
            .map(|(member, epoch)| (*member, *epoch))
            .collect();
        epochs.extend(proposal.added_broker_epochs.iter().copied());
        self.write(proposal.isr.clone(), epochs);
    }

    fn step(&mut self, action: &Action) {
        match action {
            Action::Append(records) => {
                self.leader_leo += records;
                self.leader.advance_high_watermark(self.leader_leo);
            }
            Action::Fetch { follower, records } => {
                let id = FOLLOWERS[*follower];
                let offset = self.follower_leo[&id];
                self.leader
                    .on_fetch(id, offset, self.leader_leo, self.now_ms);
                let received = (offset + records).min(self.leader_leo);
                self.follower_leo.insert(id, received);
            }
            Action::Tick(ms) => self.now_ms += ms,
            Action::Check => {
                if let Some(proposal) = self.leader.isr_change(self.now_ms, LAG_MS) {
                    self.leader.propose(&proposal);
                    self.in_flight.push(proposal);
                }
            }
            Action::Answer(answer) => self.answer(*answer),
            Action::Deliver => {
                let info = self.info();
                self.leader.update(&info, self.now_ms);
                self.leader.advance_high_watermark(self.leader_leo);
            }
            Action::Wipe(follower) => {
                let id = FOLLOWERS[*follower];
                self.follower_leo.insert(id, 0);
                *self.broker_epochs.get_mut(&id).unwrap() += 1;
            }
            Action::Controller => self.controller(),
            Action::NewEpoch => {
                self.revision += 1;
                self.etcd.leader_epoch += 1;
                self.etcd.version = self.revision;
                let high_watermark = self.leader.high_watermark();
                self.leader = LeaderState::new(
                    LEADER,
                    &self.info(),
                    self.leader_leo,
                    high_watermark,
                    self.now_ms,
                );
            }
        }
    }

    fn answer(&mut self, answer: Answer) {
        if self.in_flight.is_empty() {
            return;
        }
        let proposal = self.in_flight.remove(0);
        let applies = self.applies(&proposal);
        let at_basis = proposal.version == self.etcd.version;
        let outcome = match answer {
            Answer::Commit | Answer::CommitUnknown if applies => {
                self.commit(&proposal);
                match answer {
                    Answer::Commit => IsrOutcome::Committed,
                    _ => IsrOutcome::Unknown,
                }
            }
            Answer::Commit if at_basis => IsrOutcome::Rejected,
            Answer::Commit => IsrOutcome::Superseded,
            Answer::NotSent => IsrOutcome::NotSent,
            Answer::CommitUnknown | Answer::LostUnknown => IsrOutcome::Unknown,
        };
        // The broker drops answers to sendings of an earlier leader epoch the same way.
        if proposal.leader_epoch == self.leader.epoch() {
            self.leader.settle(proposal.attempt, outcome);
        }
    }

    fn controller(&mut self) {
        let stale: Vec<i32> = self
            .etcd
            .isr
            .iter()
            .copied()
            .filter(|member| {
                *member != LEADER
                    && self.etcd.isr_epochs.get(member) != self.broker_epochs.get(member)
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let isr = self
            .etcd
            .isr
            .iter()
            .copied()
            .filter(|member| !stale.contains(member))
            .collect();
        let mut epochs = self.etcd.isr_epochs.clone();
        epochs.retain(|member, _| !stale.contains(member));
        self.write(isr, epochs);
    }

    /// Every ISR etcd may hold now or later, with the broker epoch recorded for each member:
    /// the one it holds, and the result of each sending it may still apply.
    fn possible_isrs(&self) -> Vec<BTreeMap<i32, Option<i64>>> {
        let recorded = |isr: &[i32], added: &[(i32, i64)]| {
            isr.iter()
                .map(|member| {
                    let epoch = added
                        .iter()
                        .find(|(id, _)| id == member)
                        .map(|(_, epoch)| *epoch)
                        .or_else(|| self.etcd.isr_epochs.get(member).copied());
                    (*member, epoch)
                })
                .collect()
        };
        let mut possible = vec![recorded(&self.etcd.isr, &[])];
        for proposal in self.in_flight.iter().filter(|p| self.applies(p)) {
            possible.push(recorded(&proposal.isr, &proposal.added_broker_epochs));
        }
        possible
    }

    fn check(&mut self) {
        let high_watermark = self.leader.high_watermark();
        let epoch = self.leader.epoch();
        let (last_epoch, last) = self.last_high_watermark;
        if epoch == last_epoch {
            assert!(
                high_watermark >= last,
                "the high watermark went back from {last} to {high_watermark} in epoch {epoch}"
            );
        }
        self.last_high_watermark = (epoch, high_watermark);
        assert!(
            high_watermark <= self.leader_leo,
            "high watermark {high_watermark} passed the leader's log end {}",
            self.leader_leo
        );
        let maximal = self.leader.maximal_isr();
        for isr in self.possible_isrs() {
            for (member, recorded_epoch) in &isr {
                assert!(
                    maximal.contains(member),
                    "etcd may hold {member} in the ISR {isr:?}, but the leader's maximal ISR \
                     {maximal:?} left it out"
                );
                if *member == LEADER || recorded_epoch.as_ref() != self.broker_epochs.get(member) {
                    // A member that restarted since it joined is not electable (the controller
                    // skips and removes it): its new log owes the high watermark nothing.
                    continue;
                }
                let member_leo = self.follower_leo[member];
                assert!(
                    member_leo >= high_watermark,
                    "high watermark {high_watermark} passed ISR member {member}'s log end \
                     {member_leo} (etcd may hold {isr:?})"
                );
            }
        }
    }
}

/// The partition as a leader's metadata describes `etcd` with brokers registered at
/// `broker_epochs`.
fn info_of(etcd: &EtcdPartition, broker_epochs: &BTreeMap<i32, i64>) -> ReplicaInfo {
    ReplicaInfo {
        leader: LEADER,
        leader_epoch: etcd.leader_epoch,
        replicas: vec![LEADER, 2, 3],
        isr: etcd.isr.clone(),
        version: etcd.version,
        min_insync_replicas: 2,
        broker_epochs: broker_epochs
            .iter()
            .map(|(id, epoch)| (*id, *epoch))
            .collect(),
        adding: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // Proves the leader's rules hold over random histories: the high watermark never decreases
    // within an epoch, never passes the leader's log end nor the log end of any electable
    // member of any ISR etcd may hold (now, or once a sending in flight lands), and every
    // member etcd may hold is in the leader's maximal ISR (a member leaves the high-watermark
    // set only once etcd recorded the removal; an unknown outcome keeps an added member).
    #[test]
    fn high_watermark_and_isr_rules_hold(actions in prop::collection::vec(action(), 1..300)) {
        let mut model = Model::new();
        model.check();
        for action in &actions {
            model.step(action);
            model.check();
        }
    }

    // Proves liveness of the same rules when the world calms down: after any history, once
    // etcd answers truthfully, the metadata is delivered, and every follower fetches to the
    // end, the high watermark reaches the leader's log end and the ISR is whole again.
    #[test]
    fn the_high_watermark_catches_up_once_calm(actions in prop::collection::vec(action(), 1..200)) {
        let mut model = Model::new();
        for action in &actions {
            model.step(action);
        }
        for _ in 0..8 {
            while !model.in_flight.is_empty() {
                model.step(&Action::Answer(Answer::Commit));
            }
            model.step(&Action::Controller);
            model.step(&Action::Deliver);
            for follower in 0..FOLLOWERS.len() {
                model.step(&Action::Fetch { follower, records: i64::MAX / 4 });
                model.step(&Action::Fetch { follower, records: 0 });
            }
            model.step(&Action::Tick(1));
            model.step(&Action::Check);
            model.check();
        }
        prop_assert_eq!(model.leader.high_watermark(), model.leader_leo);
        prop_assert_eq!(model.etcd.isr.len(), 3, "the ISR is whole: {:?}", model.etcd.isr);
    }
}
