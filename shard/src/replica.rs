//! Replication decisions, free of I/O (DESIGN.md section 6, Kafka's replication protocol):
//! the leader's view of its followers, the high watermark, in-sync replica (ISR) shrink and
//! expand decisions, the leader's answer to OffsetForLeaderEpoch, and the follower's truncation
//! point. Every function takes the clock and the log offsets as arguments, so tests drive them
//! deterministically. The state lives inside a [`Partition`](crate::Partition) on its owning
//! shard.
//!
//! **Invariant:** the high watermark never decreases while one leader epoch lasts, never passes
//! the leader's log end offset, and never passes the log end offset of any replica of the
//! *maximal* ISR: the ISR etcd holds plus any member a pending change adds. A member leaves the
//! set the high watermark is computed over only once etcd recorded its removal, so a replica
//! that etcd may elect leader always holds every record below the high watermark.
//! **Invariant:** an ISR change whose outcome is unknown (a timeout can follow a commit) stays
//! pending, and keeps counting the member it adds, until etcd's answer to a later sending or
//! newer metadata settles it.
//! **Invariant:** what the leader knows of a follower belongs to one broker epoch (KIP-903): a
//! follower registered anew starts over, and an expansion names the epoch etcd must still see.

use std::collections::BTreeMap;

/// The leader id of a partition that has no leader.
pub const NO_LEADER: i32 = -1;

/// One partition's replication state as the cluster metadata records it (cluster mode). It is
/// what the control plane sends the shards in the shard table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// The leader's node id, or [`NO_LEADER`].
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// Every replica, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas etcd holds.
    pub isr: Vec<i32>,
    /// The etcd mod_revision of the partition state (what an ISR change compares against).
    pub version: i64,
    /// The topic's `min.insync.replicas` (or the broker default): acks=all writes are refused
    /// while the ISR is smaller.
    pub min_insync_replicas: usize,
    /// The broker epoch (KIP-903) of each replica whose broker is registered now, by node id: a
    /// new value at every fresh registration, so a replica that restarted (and may have lost
    /// its log) is told apart from the one the leader knew.
    pub broker_epochs: Vec<(i32, i64)>,
    /// The replicas a reassignment in progress adds (in `replicas` through the reassignment's
    /// target, not in the assignment): they catch up under the reassignment throttle until
    /// they are in the ISR.
    pub adding: Vec<i32>,
}

impl ReplicaInfo {
    /// The broker epoch `replica` is registered with now, `None` when it is not registered.
    pub fn broker_epoch(&self, replica: i32) -> Option<i64> {
        self.broker_epochs
            .iter()
            .find(|(id, _)| *id == replica)
            .map(|(_, epoch)| *epoch)
    }
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset: the offset of its latest fetch in this epoch, `None` until
    /// it has fetched from this leader.
    pub log_end_offset: Option<i64>,
    /// The last time, in ms, the follower was known to be caught up with the leader.
    pub last_caught_up_ms: i64,
    /// Whether its latest fetch showed it caught up (see [`LeaderState::on_fetch`]).
    pub caught_up: bool,
    /// The broker epoch of the follower's registration this progress belongs to (`None`: the
    /// follower is not registered). A new registration starts the progress over.
    pub broker_epoch: Option<i64>,
    /// The leader's log end offset when the follower fetched last, and when.
    last_fetch_leader_leo: i64,
    last_fetch_ms: i64,
}

impl FollowerProgress {
    fn new(now_ms: i64, broker_epoch: Option<i64>) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: None,
            // A follower gets a whole lag window from the start of the epoch to show up.
            last_caught_up_ms: now_ms,
            caught_up: false,
            broker_epoch,
            last_fetch_leader_leo: i64::MAX,
            last_fetch_ms: now_ms,
        }
    }
}

/// Whether an ISR change removes or adds members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrChangeKind {
    /// Lagging followers leave the ISR.
    Shrink,
    /// A caught-up follower joins the ISR.
    Expand,
}

/// An ISR change the leader wants written to etcd (compare-and-swap on `version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// The new ISR.
    pub isr: Vec<i32>,
    /// The leader epoch the change is made in.
    pub leader_epoch: i32,
    /// The mod_revision of the partition state the decision was based on.
    pub version: i64,
    /// Shrink or expand.
    pub kind: IsrChangeKind,
    /// The broker epoch of each member being added, as the leader knew it when the member
    /// caught up: etcd refuses the change when the member is registered with another epoch
    /// now (it restarted since, and may have lost its log). Empty for a shrink.
    pub added_broker_epochs: Vec<(i32, i64)>,
    /// Which sending of the pending change this is: an answer to an older sending is ignored.
    pub attempt: u64,
}

/// How etcd answered one sending of an ISR change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrOutcome {
    /// etcd recorded the change.
    Committed,
    /// etcd still holds the state the change was based on and refused the change (a member
    /// being added is registered with another broker epoch now, or the ISR is invalid): no
    /// sending of it is recorded.
    Rejected,
    /// etcd's partition state moved on since the change's basis (another write, a new leader
    /// epoch): this sending changed nothing, and whether an earlier one did only newer
    /// metadata tells.
    Superseded,
    /// The sending never reached etcd (the ISR queue was full, etcd was unreachable).
    NotSent,
    /// Nobody knows whether etcd recorded it (a timeout, a broken connection): a commit may
    /// have happened, so the change stays pending until the metadata settles it.
    Unknown,
}

/// A proposal on its way to etcd, or whose outcome is in doubt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingIsr {
    proposal: IsrProposal,
    /// An earlier sending's outcome is unknown: etcd may hold this change, so the proposal is
    /// sent again (same basis) until an answer or newer metadata settles it, and until then
    /// every member it adds keeps counting toward the high watermark.
    in_doubt: bool,
    /// A sending is on its way (no new one is made until it is answered).
    in_flight: bool,
    /// etcd moved past the basis while the outcome of an earlier sending is in doubt: no
    /// sending can be recorded any more, and only the metadata (a state newer than the basis,
    /// which settles the change in [`LeaderState::update`]) tells what etcd holds.
    awaiting_metadata: bool,
}

/// Why a produce is refused before it is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotEnoughReplicas {
    /// Members of the ISR now.
    pub isr: usize,
    /// The required minimum.
    pub required: usize,
}

/// The leader's replication state of one partition, for one leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    node_id: i32,
    epoch: i32,
    /// The leader's log end offset when it became leader: where its epoch starts.
    epoch_start_offset: i64,
    replicas: Vec<i32>,
    /// The ISR etcd holds (as far as this leader knows).
    isr: Vec<i32>,
    /// The mod_revision `isr` was read at.
    version: i64,
    min_insync_replicas: usize,
    followers: BTreeMap<i32, FollowerProgress>,
    high_watermark: i64,
    pending: Option<PendingIsr>,
    /// Sendings of ISR changes made in this epoch (the attempt number of the next one).
    attempts: u64,
}

impl LeaderState {
    /// The state of `node_id` becoming leader of a partition described by `info`, whose log
    /// ends at `leader_leo` and whose high watermark was `high_watermark` (what it knew as a
    /// follower, or its checkpoint after a restart). The high watermark is recomputed at once:
    /// it moves to the log end when the leader is the only ISR member; otherwise followers'
    /// offsets are unknown until they fetch, so it stays where it is until every ISR member has
    /// fetched.
    pub fn new(
        node_id: i32,
        info: &ReplicaInfo,
        leader_leo: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> LeaderState {
        let followers = info
            .replicas
            .iter()
            .filter(|replica| **replica != node_id)
            .map(|replica| {
                let progress = FollowerProgress::new(now_ms, info.broker_epoch(*replica));
                (*replica, progress)
            })
            .collect();
        let mut state = LeaderState {
            node_id,
            epoch: info.leader_epoch,
            epoch_start_offset: leader_leo,
            replicas: info.replicas.clone(),
            isr: info.isr.clone(),
            version: info.version,
            min_insync_replicas: info.min_insync_replicas.max(1),
            followers,
            high_watermark: high_watermark.min(leader_leo),
            pending: None,
            attempts: 0,
        };
        state.advance_high_watermark(leader_leo);
        state
    }

    /// The leader epoch.
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// Where this leader's epoch starts in the log.
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    /// The high watermark: offsets below it are committed (on every maximal-ISR member).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Whether the high watermark still lags the start of this leader's epoch: the records of
    /// earlier epochs below the log end may be committed, but this leader does not know it yet
    /// (Kafka answers OFFSET_NOT_AVAILABLE to offset queries meanwhile).
    pub fn high_watermark_lags_epoch_start(&self) -> bool {
        self.high_watermark < self.epoch_start_offset
    }

    /// The ISR etcd holds, as far as this leader knows.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// Every replica.
    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    /// The mod_revision the ISR was read at.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The required ISR size for acks=all writes.
    pub fn min_insync_replicas(&self) -> usize {
        self.min_insync_replicas
    }

    /// What the leader knows of `follower`.
    pub fn progress(&self, follower: i32) -> Option<&FollowerProgress> {
        self.followers.get(&follower)
    }

    /// Whether an ISR change is on its way to etcd or in doubt.
    pub fn has_pending_change(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether a pending change's outcome is in doubt (an earlier sending of it may have been
    /// recorded by etcd).
    pub fn pending_in_doubt(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|pending| pending.in_doubt)
    }

    /// Takes in a newer partition state of the same epoch from the metadata. A state read at or
    /// before the revision a pending change was based on is stale (the change may already be
    /// written) and is ignored; a newer one is authoritative and settles the pending change
    /// (once the partition state moved past the revision a change compares against, that
    /// change can never be written any more). The broker epochs are taken in either way.
    pub fn update(&mut self, info: &ReplicaInfo, now_ms: i64) {
        self.set_broker_epochs(info, now_ms);
        // The replica set can change without the partition state (a reassignment adds its
        // target replicas under its own key), so it is taken before the version check.
        if self.replicas != info.replicas {
            self.replicas = info.replicas.clone();
            let node_id = self.node_id;
            self.followers.retain(|id, _| info.replicas.contains(id));
            for replica in info.replicas.iter().filter(|id| **id != node_id) {
                self.followers
                    .entry(*replica)
                    .or_insert_with(|| FollowerProgress::new(now_ms, info.broker_epoch(*replica)));
            }
        }
        if info.version <= self.version {
            return;
        }
        self.isr = info.isr.clone();
        self.version = info.version;
        self.min_insync_replicas = info.min_insync_replicas.max(1);
        self.pending = None;
    }

    /// Takes in the followers' broker epochs: a follower registered with a new epoch is a new
    /// incarnation whose log may have been lost, so what the leader knew of it starts over
    /// (its offset unknown, which holds the high watermark while it is an ISR member, and a
    /// fresh lag window).
    fn set_broker_epochs(&mut self, info: &ReplicaInfo, now_ms: i64) {
        for (follower, progress) in &mut self.followers {
            let epoch = info.broker_epoch(*follower);
            if progress.broker_epoch != epoch {
                *progress = FollowerProgress::new(now_ms, epoch);
            }
        }
    }

    /// The members the high watermark is computed over: the ISR plus any member a pending
    /// change adds (etcd may hold it already). A member being removed stays until etcd recorded
    /// the removal.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut members = self.isr.clone();
        if let Some(pending) = &self.pending {
            for member in &pending.proposal.isr {
                if !members.contains(member) {
                    members.push(*member);
                }
            }
        }
        members
    }

    /// Records a fetch by `follower` at `fetch_offset` (its log end offset) when the leader's
    /// log ends at `leader_leo`, then moves the high watermark if it can. Returns whether the
    /// high watermark moved.
    ///
    /// Caught up, as Kafka defines it: at the leader's log end now, or at least where the
    /// leader's log ended at the follower's previous fetch (then it was caught up as of that
    /// fetch). Under steady writes a healthy follower is never exactly at the end, but always
    /// reaches where the end was one fetch ago.
    pub fn on_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> bool {
        let Some(progress) = self.followers.get_mut(&follower) else {
            return false;
        };
        let at_end = fetch_offset >= leader_leo;
        let at_previous_end = fetch_offset >= progress.last_fetch_leader_leo;
        if at_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        } else if at_previous_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.caught_up = at_end || at_previous_end;
        progress.log_end_offset = Some(fetch_offset);
        progress.last_fetch_leader_leo = leader_leo;
        progress.last_fetch_ms = now_ms;
        self.advance_high_watermark(leader_leo)
    }

    /// Moves the high watermark to the smallest log end offset over the maximal ISR (the leader
    /// included) if that is higher. It stays put while a member's offset is unknown. Returns
    /// whether it moved.
    pub fn advance_high_watermark(&mut self, leader_leo: i64) -> bool {
        let mut lowest = leader_leo;
        for member in self.maximal_isr() {
            if member == self.node_id {
                continue;
            }
            match self
                .followers
                .get(&member)
                .and_then(|progress| progress.log_end_offset)
            {
                Some(offset) => lowest = lowest.min(offset),
                None => return false,
            }
        }
        if lowest > self.high_watermark {
            self.high_watermark = lowest;
            return true;
        }
        false
    }

    /// Refuses an acks=all write while the ISR etcd holds is smaller than the minimum.
    pub fn check_min_insync(&self) -> Result<(), NotEnoughReplicas> {
        if self.isr.len() < self.min_insync_replicas {
            return Err(NotEnoughReplicas {
                isr: self.isr.len(),
                required: self.min_insync_replicas,
            });
        }
        Ok(())
    }

    /// The ISR change to send now, if any: a pending change whose outcome is in doubt is sent
    /// again (same basis, so etcd either records it now or shows it already did, or moved on);
    /// otherwise, when nothing is pending, followers of the ISR not caught up within
    /// `lag_max_ms` leave it, or else the first registered replica outside the ISR that is
    /// caught up (within `lag_max_ms`, so a follower that stopped fetching stays out), at or
    /// past the high watermark and past the start of this epoch joins it.
    /// Record the sending with [`LeaderState::propose`].
    pub fn isr_change(&self, now_ms: i64, lag_max_ms: u64) -> Option<IsrProposal> {
        if let Some(pending) = &self.pending {
            if pending.in_doubt && !pending.in_flight && !pending.awaiting_metadata {
                return Some(IsrProposal {
                    attempt: self.attempts,
                    ..pending.proposal.clone()
                });
            }
            return None;
        }
        let lag_max_ms = i64::try_from(lag_max_ms).unwrap_or(i64::MAX);
        let lagging = |member: &i32| {
            *member != self.node_id
                && self.followers.get(member).is_some_and(|progress| {
                    now_ms.saturating_sub(progress.last_caught_up_ms) > lag_max_ms
                })
        };
        if self.isr.iter().any(lagging) {
            let isr = self.isr.iter().copied().filter(|m| !lagging(m)).collect();
            return Some(self.proposal(isr, IsrChangeKind::Shrink, Vec::new()));
        }
        // Only a follower caught up within the lag bound joins: one that stopped fetching
        // keeps the progress of its last fetch, which must not bring it back.
        let (joining, broker_epoch) = self.replicas.iter().find_map(|replica| {
            let progress = self.followers.get(replica)?;
            let joins = !self.isr.contains(replica)
                && progress.caught_up
                && now_ms.saturating_sub(progress.last_caught_up_ms) <= lag_max_ms
                && progress.log_end_offset.is_some_and(|offset| {
                    offset >= self.high_watermark && offset >= self.epoch_start_offset
                });
            joins.then_some((*replica, progress.broker_epoch?))
        })?;
        let isr = self
            .replicas
            .iter()
            .copied()
            .filter(|replica| self.isr.contains(replica) || *replica == joining)
            .collect();
        Some(self.proposal(isr, IsrChangeKind::Expand, vec![(joining, broker_epoch)]))
    }

    fn proposal(
        &self,
        isr: Vec<i32>,
        kind: IsrChangeKind,
        added_broker_epochs: Vec<(i32, i64)>,
    ) -> IsrProposal {
        IsrProposal {
            isr,
            leader_epoch: self.epoch,
            version: self.version,
            kind,
            added_broker_epochs,
            attempt: self.attempts,
        }
    }

    /// Marks `proposal` (from [`LeaderState::isr_change`]) as on its way to etcd: from now on
    /// the high watermark also waits for a member being added, and no other change is proposed
    /// until this one is settled.
    pub fn propose(&mut self, proposal: &IsrProposal) {
        let in_doubt = self.pending_in_doubt();
        self.pending = Some(PendingIsr {
            proposal: proposal.clone(),
            in_doubt,
            in_flight: true,
            awaiting_metadata: false,
        });
        self.attempts = proposal.attempt + 1;
    }

    /// etcd answered sending `attempt` of the pending change with `outcome`:
    /// - committed: the change is the ISR now. It stays marked pending until the metadata shows
    ///   a state newer than the one it was based on, so no duplicate is proposed and a stale
    ///   metadata update cannot drop a member being added;
    /// - rejected: etcd still holds the basis, so no sending of the change is recorded: it is
    ///   dropped (the next check decides again);
    /// - superseded: dropped when no earlier sending is in doubt; otherwise it stays pending
    ///   (its members counted) until newer metadata settles it;
    /// - not sent: dropped unless an earlier sending is in doubt (then it is sent again);
    /// - unknown: the change stays pending, in doubt, and is sent again at the next check.
    ///
    /// An answer to an older sending, or with nothing pending, is ignored.
    pub fn settle(&mut self, attempt: u64, outcome: IsrOutcome) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if pending.proposal.attempt != attempt || !pending.in_flight {
            return;
        }
        pending.in_flight = false;
        match outcome {
            IsrOutcome::Committed => {
                pending.in_doubt = false;
                if pending.proposal.version == self.version {
                    self.isr = pending.proposal.isr.clone();
                }
            }
            IsrOutcome::Superseded if pending.in_doubt => pending.awaiting_metadata = true,
            IsrOutcome::NotSent if pending.in_doubt => {}
            IsrOutcome::Rejected | IsrOutcome::Superseded | IsrOutcome::NotSent => {
                self.pending = None;
            }
            IsrOutcome::Unknown => pending.in_doubt = true,
        }
    }

    /// The largest lag, in messages, of any follower behind the leader's log end offset (a
    /// follower that has not fetched yet counts from the start of this epoch).
    pub fn max_follower_lag(&self, leader_leo: i64) -> i64 {
        self.followers
            .values()
            .map(|progress| {
                let offset = progress.log_end_offset.unwrap_or(self.epoch_start_offset);
                leader_leo.saturating_sub(offset).max(0)
            })
            .max()
            .unwrap_or(0)
    }
}

/// The leader's answer to OffsetForLeaderEpoch(`requested`) (KIP-101/279): `(epoch, end
/// offset)` where `epoch` is the largest epoch at or below `requested` the leader knows and
/// `end offset` is where the next epoch starts (or the log end offset for the current epoch).
///
/// `log_answer` is the log's own answer from its epoch cache and `log_latest_epoch` the newest
/// epoch in it. The log learns the leader's current epoch only with the first batch appended in
/// it, so until then the current epoch is treated as starting at the log end offset, as Kafka's
/// leader does by recording its epoch when it takes over. `None`: undefined (a negative epoch,
/// or one newer than this leader's: the asker knows more than this leader does).
pub fn leader_epoch_end(
    requested: i32,
    current_epoch: i32,
    log_answer: Option<(i32, i64)>,
    log_latest_epoch: Option<i32>,
    log_end_offset: i64,
) -> Option<(i32, i64)> {
    if requested < 0 || requested > current_epoch {
        return None;
    }
    if requested == current_epoch {
        return Some((current_epoch, log_end_offset));
    }
    if log_latest_epoch.is_some_and(|latest| latest > requested) {
        return log_answer;
    }
    // No epoch in the log is newer than the requested one: the next epoch is the current one,
    // which starts at the log end offset.
    Some((
        log_latest_epoch.unwrap_or(requested).min(requested),
        log_end_offset,
    ))
}

/// One step of a follower's truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncationStep {
    /// Truncate the log to this offset (nothing to do when it is at or past the log end).
    pub offset: i64,
    /// No further OffsetForLeaderEpoch round is needed.
    pub done: bool,
}

/// The truncation point after the leader answered `leader` = `(epoch, end offset)` for the
/// follower's latest epoch (Kafka's `AbstractFetcherThread` rules). `local` is the follower's
/// own answer for the leader's epoch (`end_offset_for_epoch(epoch)` of its log), `log_end_offset`
/// its log end.
///
/// - The follower knows the leader's epoch: both agree up to the smaller end offset; done.
/// - It does not (its floor is an older epoch): truncate to where its floor epoch ends and ask
///   again with that epoch.
/// - It knows no epoch at or below the leader's: truncate to the leader's end offset; done.
pub fn truncation_point(
    leader: (i32, i64),
    local: Option<(i32, i64)>,
    log_end_offset: i64,
) -> TruncationStep {
    let (leader_epoch, leader_end) = leader;
    match local {
        Some((local_epoch, local_end)) if local_epoch == leader_epoch => TruncationStep {
            offset: leader_end.min(local_end).min(log_end_offset),
            done: true,
        },
        Some((_, local_end)) => TruncationStep {
            offset: local_end.min(log_end_offset),
            done: false,
        },
        None => TruncationStep {
            offset: leader_end.min(log_end_offset),
            done: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG_MS: u64 = 10_000;

    fn info(isr: &[i32], version: i64) -> ReplicaInfo {
        ReplicaInfo {
            leader: 1,
            leader_epoch: 3,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            version,
            min_insync_replicas: 2,
            broker_epochs: vec![(1, 10), (2, 20), (3, 30)],
            adding: Vec::new(),
        }
    }

    // Proves the high watermark is the smallest log end offset over the ISR, waits for every
    // ISR member to have fetched once, never decreases, and ignores replicas outside the ISR.
    #[test]
    fn high_watermark_is_min_leo_over_isr() {
        let mut leader = LeaderState::new(1, &info(&[1, 2], 7), 100, 40, 0);
        assert_eq!(leader.high_watermark(), 40);
        assert!(
            !leader.on_fetch(3, 10, 100, 1),
            "replica 3 is outside the ISR"
        );
        assert!(leader.on_fetch(2, 90, 100, 1));
        assert_eq!(leader.high_watermark(), 90);
        assert!(
            !leader.on_fetch(2, 60, 100, 2),
            "a lower fetch never lowers it"
        );
        assert_eq!(leader.high_watermark(), 90);
        assert!(leader.on_fetch(2, 100, 100, 3));
        assert_eq!(leader.high_watermark(), 100);
        let mut three = LeaderState::new(1, &info(&[1, 2, 3], 7), 100, 0, 0);
        assert!(
            !three.on_fetch(2, 100, 100, 1),
            "member 3 has not fetched yet"
        );
        assert!(three.on_fetch(3, 80, 100, 1));
        assert_eq!(three.high_watermark(), 80);
        let mut alone = LeaderState::new(1, &info(&[1], 7), 100, 0, 0);
        assert_eq!(
            alone.high_watermark(),
            100,
            "recomputed when it became leader"
        );
        assert!(alone.advance_high_watermark(120));
        assert_eq!(alone.high_watermark(), 120);
    }

    // Proves a follower that keeps reaching where the leader's log ended at its previous fetch
    // counts as caught up under steady writes, while one that stops fetching or falls behind is
    // removed after the lag bound, and that the leader never removes itself.
    #[test]
    fn lagging_followers_are_shrunk_out() {
        let mut leader = LeaderState::new(1, &info(&[1, 2, 3], 7), 0, 0, 0);
        let mut leo = 0;
        for step in 1..=30 {
            let now = step * 1_000;
            leader.on_fetch(2, leo, leo + 5, now);
            leo += 5;
            if step <= 3 {
                leader.on_fetch(3, leo - 5, leo, now);
            }
        }
        let proposal = leader.isr_change(30_000, LAG_MS).unwrap();
        assert_eq!(proposal.kind, IsrChangeKind::Shrink);
        assert_eq!(proposal.isr, vec![1, 2]);
        assert_eq!(proposal.version, 7);
        assert_eq!(proposal.leader_epoch, 3);
        let mut slow = LeaderState::new(1, &info(&[1, 2], 7), 0, 0, 0);
        for step in 1..=30 {
            slow.on_fetch(2, step, step * 100, step * 1_000);
        }
        assert_eq!(slow.isr_change(30_000, LAG_MS).unwrap().isr, vec![1]);
        let alone = LeaderState::new(1, &info(&[1], 7), 0, 0, 0);
        assert_eq!(alone.isr_change(1_000_000, LAG_MS), None);
    }

    // Proves a removed follower that catches up is proposed back, only once it is past the high
    // watermark and the start of the leader's epoch, and that a proposal blocks the next one.
    #[test]
    fn caught_up_followers_are_expanded_back() {
        let mut leader = LeaderState::new(1, &info(&[1, 2], 7), 50, 0, 0);
        leader.on_fetch(2, 50, 50, 1);
        assert_eq!(leader.high_watermark(), 50);
        leader.on_fetch(3, 20, 50, 1);
        assert_eq!(
            leader.isr_change(2, LAG_MS),
            None,
            "behind the high watermark"
        );
        leader.on_fetch(3, 50, 50, 2);
        let proposal = leader.isr_change(3, LAG_MS).unwrap();
        assert_eq!(proposal.kind, IsrChangeKind::Expand);
        assert_eq!(proposal.isr, vec![1, 2, 3]);
        leader.propose(&proposal);
        assert_eq!(leader.isr_change(4, LAG_MS), None);
        assert_eq!(leader.maximal_isr(), vec![1, 2, 3]);
    }

    // Proves a follower that was caught up and then died is shrunk out once its lag bound
    // passes and is not proposed back on its stale progress, until it fetches again.
    #[test]
    fn dead_followers_stay_out() {
        let mut leader = LeaderState::new(1, &info(&[1, 2, 3], 7), 50, 0, 0);
        leader.on_fetch(2, 50, 50, 1_000);
        leader.on_fetch(3, 50, 50, 1_000);
        let shrink = leader.isr_change(12_000, LAG_MS).unwrap();
        assert_eq!(shrink.isr, vec![1]);
        leader.propose(&shrink);
        leader.settle(shrink.attempt, IsrOutcome::Committed);
        leader.update(&info(&[1], 8), 12_000);
        for now in [12_100, 20_000, 60_000] {
            assert_eq!(leader.isr_change(now, LAG_MS), None, "at {now}");
        }
        leader.on_fetch(3, 50, 50, 60_000);
        let expand = leader.isr_change(60_001, LAG_MS).unwrap();
        assert_eq!(expand.isr, vec![1, 3]);
        assert_eq!(expand.added_broker_epochs, vec![(3, 30)]);
    }

    // Proves a member being added holds the high watermark back at once (before etcd answers),
    // a member being removed keeps holding it until etcd recorded the removal, and a stale
    // metadata update after the commit does not drop the added member.
    #[test]
    fn pending_changes_keep_the_high_watermark_safe() {
        let mut leader = LeaderState::new(1, &info(&[1, 2], 7), 50, 0, 0);
        leader.on_fetch(2, 50, 50, 1);
        leader.on_fetch(3, 50, 50, 2);
        let expand = leader.isr_change(3, LAG_MS).unwrap();
        leader.propose(&expand);
        leader.on_fetch(2, 80, 80, 4);
        assert_eq!(leader.high_watermark(), 50, "member 3 is at 50");
        leader.settle(expand.attempt, IsrOutcome::Committed);
        leader.update(&info(&[1, 2], 7), 5);
        assert_eq!(leader.isr(), &[1, 2, 3], "a stale state is ignored");
        leader.update(&info(&[1, 2, 3], 9), 5);
        assert!(!leader.has_pending_change());

        let mut shrinking = LeaderState::new(1, &info(&[1, 2], 7), 50, 0, 0);
        shrinking.on_fetch(2, 50, 50, 1);
        let shrink = shrinking.isr_change(20_000, LAG_MS).unwrap();
        assert_eq!(shrink.isr, vec![1]);
        shrinking.propose(&shrink);
        assert!(!shrinking.advance_high_watermark(90), "2 still counts");
        shrinking.settle(shrink.attempt, IsrOutcome::Committed);
        assert!(shrinking.advance_high_watermark(90));
        assert_eq!(shrinking.high_watermark(), 90);
        let mut refused = LeaderState::new(1, &info(&[1, 2], 7), 50, 0, 0);
        let shrink = IsrProposal {
            isr: vec![1],
            leader_epoch: 3,
            version: 7,
            kind: IsrChangeKind::Shrink,
            added_broker_epochs: Vec::new(),
            attempt: 0,
        };
        refused.propose(&shrink);
        refused.settle(shrink.attempt, IsrOutcome::Superseded);
        assert!(!refused.has_pending_change());
        assert_eq!(refused.isr(), &[1, 2]);
    }

    // Proves an ISR change whose etcd outcome is unknown (a timeout can follow a commit) is not
    // taken as refused: the member it adds keeps holding the high watermark, the change is sent
    // again with the same basis, a resend that is not sent or finds etcd moved on does not drop
    // it (the first sending may have been recorded), and only newer metadata settles it; while
    // a rejection with etcd still at the basis proves nothing was recorded and drops it.
    #[test]
    fn unknown_outcomes_keep_the_change_pending() {
        let mut leader = LeaderState::new(1, &info(&[1, 2], 7), 50, 0, 0);
        leader.on_fetch(2, 50, 50, 1);
        leader.on_fetch(3, 50, 50, 2);
        let expand = leader.isr_change(3, LAG_MS).unwrap();
        leader.propose(&expand);
        assert_eq!(leader.isr_change(3, LAG_MS), None, "one sending at a time");
        leader.settle(expand.attempt, IsrOutcome::Unknown);
        leader.on_fetch(2, 80, 80, 4);
        assert_eq!(leader.high_watermark(), 50, "member 3 may be in etcd's ISR");
        let again = leader.isr_change(5, LAG_MS).unwrap();
        assert_eq!((again.isr.clone(), again.version), (expand.isr.clone(), 7));
        assert_ne!(again.attempt, expand.attempt);
        leader.propose(&again);
        leader.settle(expand.attempt, IsrOutcome::Rejected);
        assert!(
            leader.has_pending_change(),
            "an answer to an old sending is ignored"
        );
        leader.settle(again.attempt, IsrOutcome::NotSent);
        assert!(
            leader.pending_in_doubt(),
            "the first sending may have been recorded"
        );
        let third = leader.isr_change(6, LAG_MS).unwrap();
        leader.propose(&third);
        leader.settle(third.attempt, IsrOutcome::Superseded);
        assert!(leader.pending_in_doubt());
        assert_eq!(
            leader.isr_change(7, LAG_MS),
            None,
            "no sending can land any more"
        );
        assert_eq!(leader.maximal_isr(), vec![1, 2, 3]);
        leader.update(&info(&[1, 2], 9), 6);
        assert!(!leader.has_pending_change(), "newer metadata settles it");
        assert_eq!(leader.maximal_isr(), vec![1, 2]);
        assert!(leader.advance_high_watermark(80));

        let mut rejected = LeaderState::new(1, &info(&[1, 2], 7), 50, 0, 0);
        rejected.on_fetch(2, 50, 50, 1);
        rejected.on_fetch(3, 50, 50, 2);
        let expand = rejected.isr_change(3, LAG_MS).unwrap();
        rejected.propose(&expand);
        rejected.settle(expand.attempt, IsrOutcome::Unknown);
        let again = rejected.isr_change(4, LAG_MS).unwrap();
        rejected.propose(&again);
        rejected.settle(again.attempt, IsrOutcome::Rejected);
        assert!(
            !rejected.has_pending_change(),
            "etcd is at the basis: nothing landed"
        );
    }

    // Proves a follower registered with a new broker epoch (a restart that may have lost its
    // log) starts over: its old progress no longer counts (an ISR member's unknown offset holds
    // the high watermark), it is not proposed back on it, and a later expansion names the new
    // epoch.
    #[test]
    fn a_new_broker_epoch_starts_the_follower_over() {
        let mut leader = LeaderState::new(1, &info(&[1, 2], 7), 50, 0, 0);
        leader.on_fetch(2, 50, 50, 1);
        leader.on_fetch(3, 50, 50, 1);
        assert_eq!(leader.high_watermark(), 50);
        let mut restarted = info(&[1, 2], 7);
        restarted.broker_epochs = vec![(1, 10), (2, 21), (3, 31)];
        leader.update(&restarted, 2);
        assert_eq!(leader.progress(2).unwrap().log_end_offset, None);
        assert!(
            !leader.advance_high_watermark(60),
            "member 2's offset is unknown now"
        );
        assert_eq!(
            leader.isr_change(3, LAG_MS),
            None,
            "3's progress was dropped"
        );
        leader.on_fetch(2, 0, 60, 4);
        leader.on_fetch(3, 60, 60, 4);
        let expand = leader.isr_change(5, LAG_MS).unwrap();
        assert_eq!(expand.added_broker_epochs, vec![(3, 31)]);
        let mut gone = info(&[1, 2], 7);
        gone.broker_epochs = vec![(1, 10), (2, 21)];
        let mut unregistered = LeaderState::new(1, &gone, 50, 50, 0);
        unregistered.on_fetch(3, 50, 50, 1);
        assert_eq!(
            unregistered.isr_change(2, LAG_MS),
            None,
            "an unregistered replica never joins"
        );
    }

    // Proves a new leader recomputes its high watermark at once: alone in the ISR it is its
    // log end; with followers it stays at what it knew until they fetch, and it reports that it
    // lags the start of its epoch meanwhile.
    #[test]
    fn a_new_leader_recomputes_its_high_watermark() {
        let alone = LeaderState::new(1, &info(&[1], 7), 100, 10, 0);
        assert_eq!(alone.high_watermark(), 100);
        assert!(!alone.high_watermark_lags_epoch_start());
        let mut with_followers = LeaderState::new(1, &info(&[1, 2], 7), 100, 10, 0);
        assert_eq!(with_followers.high_watermark(), 10);
        assert!(with_followers.high_watermark_lags_epoch_start());
        with_followers.on_fetch(2, 100, 100, 1);
        assert!(!with_followers.high_watermark_lags_epoch_start());
    }

    // Proves acks=all writes are refused while the ISR is below min.insync.replicas.
    #[test]
    fn min_insync_is_checked_on_the_committed_isr() {
        let leader = LeaderState::new(1, &info(&[1], 7), 0, 0, 0);
        assert_eq!(
            leader.check_min_insync(),
            Err(NotEnoughReplicas {
                isr: 1,
                required: 2
            })
        );
        let leader = LeaderState::new(1, &info(&[1, 3], 7), 0, 0, 0);
        assert_eq!(leader.check_min_insync(), Ok(()));
    }

    // Proves the leader's OffsetForLeaderEpoch answers: its current epoch ends at its log end,
    // an epoch the log knows is answered by the log, an epoch between the log's newest and the
    // current one ends where the current epoch starts (the log end), and newer or negative
    // epochs are undefined.
    #[test]
    fn leader_answers_epoch_queries() {
        // Log epochs: 2 from 10, 4 from 30; current epoch 6 not yet appended; log end 55.
        let log = |epoch: i32| match epoch {
            2 | 3 => Some((2, 30)),
            0 | 1 => Some((epoch, 10)),
            4 | 5 => Some((4, 55)),
            _ => None,
        };
        assert_eq!(leader_epoch_end(6, 6, log(6), Some(4), 55), Some((6, 55)));
        assert_eq!(leader_epoch_end(3, 6, log(3), Some(4), 55), Some((2, 30)));
        assert_eq!(leader_epoch_end(5, 6, log(5), Some(4), 55), Some((4, 55)));
        assert_eq!(leader_epoch_end(4, 6, log(4), Some(4), 55), Some((4, 55)));
        assert_eq!(leader_epoch_end(7, 6, None, Some(4), 55), None);
        assert_eq!(leader_epoch_end(-1, 6, None, Some(4), 55), None);
        assert_eq!(leader_epoch_end(2, 3, None, None, 0), Some((2, 0)));
    }

    // Proves the truncation point: agreement on the epoch truncates to the smaller end and is
    // done; a follower that lacks the leader's epoch truncates to its own floor epoch's end and
    // asks again; a follower with nothing at or below the epoch truncates to the leader's end;
    // and nothing ever goes past the follower's log end.
    #[test]
    fn truncation_point_follows_kafka() {
        // The follower led epoch 5 (from 40, log end 70) that the new leader never saw; the
        // leader answers epoch 4 ending at 55, the follower knows epoch 4 ending at 40.
        assert_eq!(
            truncation_point((4, 55), Some((4, 40)), 70),
            TruncationStep {
                offset: 40,
                done: true
            }
        );
        assert_eq!(
            truncation_point((4, 55), Some((4, 60)), 70),
            TruncationStep {
                offset: 55,
                done: true
            }
        );
        assert_eq!(
            truncation_point((4, 55), Some((2, 30)), 70),
            TruncationStep {
                offset: 30,
                done: false
            }
        );
        assert_eq!(
            truncation_point((4, 55), None, 20),
            TruncationStep {
                offset: 20,
                done: true
            }
        );
        assert_eq!(
            truncation_point((6, 90), Some((6, 80)), 80),
            TruncationStep {
                offset: 80,
                done: true
            }
        );
    }
}
