//! The nemesis's schedule: an endless sequence of faults drawn from a seeded RNG, so the same
//! seed replays the same faults (kinds, roles, durations, gaps) in the same order. Which broker
//! a role names is decided when the fault is injected, from the cluster's state at that time.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Shortest SIGSTOP, ms.
const PAUSE_MS_MIN: u64 = 1_000;

/// Longest SIGSTOP, ms: past the brokers' session TTL, so the lease expires while stopped.
const PAUSE_MS_MAX: u64 = 10_000;

/// Longest time a SIGKILLed broker stays down before its restart, ms.
const DOWN_MS_MAX: u64 = 3_000;

/// Shortest etcd outage, ms.
const ETCD_DOWN_MS_MIN: u64 = 1_000;

/// Longest etcd outage, ms.
const ETCD_DOWN_MS_MAX: u64 = 5_000;

/// Shortest network partition, ms.
const PARTITION_MS_MIN: u64 = 3_000;

/// Longest network partition, ms: past the session TTL.
const PARTITION_MS_MAX: u64 = 10_000;

/// Shortest quiet time before a fault, ms.
const GAP_MS_MIN: u64 = 500;

/// Longest quiet time before a fault, ms.
const GAP_MS_MAX: u64 = 2_000;

/// What the nemesis does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL a broker, restart it on its data after `hold`.
    Kill,
    /// SIGSTOP a broker for `hold`, then SIGCONT.
    Pause,
    /// Cut the broker in the network namespace off from everyone for `hold`.
    Partition,
    /// SIGKILL etcd, restart it on its data after `hold`.
    EtcdKill,
    /// SIGKILL a broker, delete its data directory, restart it after `hold` (only while every
    /// partition's ISR is complete).
    Wipe,
    /// SIGKILL a partition leader right after it rolled a segment, restart it after `hold`.
    KillAtRoll,
    /// Fill a broker's disk to the last byte for `hold`, then free it.
    DiskFull,
    /// SIGKILL a replica of the compacted topic while its log cleaner is swapping a cleaned
    /// segment in, restart it after `hold`.
    KillWhileCleaning,
    /// The broker in the network namespace loses etcd alone for `hold` (its packets to etcd
    /// are dropped): brokers and clients still reach it.
    EtcdCut,
    /// The broker in the network namespace can receive but not send to the other brokers and
    /// the clients for `hold` (one-way); it still reaches etcd, so it keeps its registration.
    OneWay,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::EtcdKill,
        FaultKind::Wipe,
        FaultKind::KillAtRoll,
        FaultKind::DiskFull,
        FaultKind::KillWhileCleaning,
        FaultKind::EtcdCut,
        FaultKind::OneWay,
    ];

    /// Relative frequency in the schedule.
    fn weight(self) -> u32 {
        match self {
            FaultKind::Kill | FaultKind::Pause => 3,
            FaultKind::Partition => 2,
            FaultKind::EtcdKill
            | FaultKind::Wipe
            | FaultKind::KillAtRoll
            | FaultKind::DiskFull
            | FaultKind::KillWhileCleaning
            | FaultKind::EtcdCut
            | FaultKind::OneWay => 1,
        }
    }

    /// Range of `hold`, ms.
    fn hold_ms(self) -> (u64, u64) {
        match self {
            FaultKind::Kill
            | FaultKind::Wipe
            | FaultKind::KillAtRoll
            | FaultKind::KillWhileCleaning => (0, DOWN_MS_MAX),
            FaultKind::Pause | FaultKind::DiskFull => (PAUSE_MS_MIN, PAUSE_MS_MAX),
            FaultKind::Partition | FaultKind::EtcdCut | FaultKind::OneWay => {
                (PARTITION_MS_MIN, PARTITION_MS_MAX)
            }
            FaultKind::EtcdKill => (ETCD_DOWN_MS_MIN, ETCD_DOWN_MS_MAX),
        }
    }
}

/// Which broker a fault hits, chosen by its role at injection time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The leader of a partition of the workload's topic.
    Leader,
    /// A follower of a partition of the workload's topic.
    Follower,
    /// The controller (named by etcd's controller key).
    Controller,
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What to do.
    pub kind: FaultKind,
    /// Whom to do it to (broker faults).
    pub role: Role,
    /// Which partition's leader or follower (taken modulo the topic's partitions).
    pub partition: u32,
    /// How long the fault lasts before it is healed.
    pub hold: Duration,
    /// Quiet time before the fault.
    pub gap: Duration,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?}(p{}) hold {} ms after {} ms",
            self.kind,
            self.role,
            self.partition,
            self.hold.as_millis(),
            self.gap.as_millis()
        )
    }
}

/// The seeded fault sequence: every kind once first (in an order the seed shuffles), so even a
/// short run covers them all, then kinds drawn by weight.
pub struct Schedule {
    rng: StdRng,
    /// Kinds of the first round not yet drawn, the next at the end.
    first_round: Vec<FaultKind>,
}

impl Schedule {
    /// The schedule of `seed`.
    pub fn new(seed: u64) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut first_round = FaultKind::ALL.to_vec();
        first_round.shuffle(&mut rng);
        Schedule { rng, first_round }
    }

    /// True once every kind was drawn at least once.
    pub fn covered_every_kind(&self) -> bool {
        self.first_round.is_empty()
    }

    /// The next fault.
    pub fn next_fault(&mut self) -> Fault {
        let kind = match self.first_round.pop() {
            Some(kind) => kind,
            None => self.weighted_kind(),
        };
        let role = match self.rng.gen_range(0..3) {
            0 => Role::Leader,
            1 => Role::Follower,
            _ => Role::Controller,
        };
        let (hold_min, hold_max) = kind.hold_ms();
        Fault {
            kind,
            role,
            partition: self.rng.gen_range(0..u32::MAX),
            hold: Duration::from_millis(self.rng.gen_range(hold_min..=hold_max)),
            gap: Duration::from_millis(self.rng.gen_range(GAP_MS_MIN..=GAP_MS_MAX)),
        }
    }

    fn weighted_kind(&mut self) -> FaultKind {
        let total: u32 = FaultKind::ALL.iter().map(|kind| kind.weight()).sum();
        let mut pick = self.rng.gen_range(0..total);
        for candidate in FaultKind::ALL {
            if pick < candidate.weight() {
                return candidate;
            }
            pick -= candidate.weight();
        }
        unreachable!("pick is below the total weight")
    }
}
