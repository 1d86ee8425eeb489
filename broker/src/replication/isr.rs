//! The ISR worker: one thread that writes the ISR changes partition leaders propose, each a
//! compare-and-swap of the partition state in etcd, so a slow etcd never delays the control
//! thread's broadcasts of leadership changes.

use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use sluice_shard::{IsrChangeKind, IsrOutcome, IsrProposal};

use crate::cluster::{ClusterError, ClusterHandle, PartitionVersion};

/// ISR changes queued for the worker at most; a shard finding the queue full proposes again at
/// its next check.
pub const ISR_QUEUE_DEPTH_MAX: usize = 1024;

/// Shortest interval between two warnings that ISR changes fail because etcd is unreachable,
/// milliseconds (one per failing partition and check would flood the log).
const ISR_FAILURE_LOG_INTERVAL_MS: u64 = 10_000;

/// What the ISR worker is asked to do.
#[derive(Debug)]
pub enum IsrCommand {
    /// Write `proposal` for `topic`-`partition`; the reply says whether etcd recorded it.
    Update {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The change, with the epoch and revision it is based on.
        proposal: IsrProposal,
        /// What etcd did with it (see [`IsrOutcome`]).
        reply: oneshot::Sender<IsrOutcome>,
    },
    /// Leave the loop.
    Stop,
}

/// The sending side shards use (non-blocking `try_send` only).
pub type IsrClient = SyncSender<IsrCommand>;

/// Starts the ISR worker on its own thread.
pub fn spawn_isr_worker(
    handle: ClusterHandle,
    commands: Receiver<IsrCommand>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sluice-isr".to_string())
        .spawn(move || run(&handle, &commands))
}

fn run(handle: &ClusterHandle, commands: &Receiver<IsrCommand>) {
    let mut last_warning: Option<Instant> = None;
    while let Ok(command) = commands.recv() {
        let IsrCommand::Update {
            topic,
            partition,
            proposal,
            reply,
        } = command
        else {
            break;
        };
        let expected = PartitionVersion {
            leader_epoch: proposal.leader_epoch,
            mod_revision: proposal.version,
        };
        let result = handle.update_isr_adding(
            &topic,
            partition,
            proposal.isr.clone(),
            expected,
            proposal.added_broker_epochs.clone(),
        );
        match &result {
            Ok(state) => {
                let change = match proposal.kind {
                    IsrChangeKind::Shrink => "shrank",
                    IsrChangeKind::Expand => "expanded",
                };
                tracing::info!(topic, partition, isr = ?state.isr, leader_epoch = state.leader_epoch, "ISR {change}");
            }
            Err(ClusterError::Disconnected { .. } | ClusterError::Stopped { .. }) => {
                let quiet = Duration::from_millis(ISR_FAILURE_LOG_INTERVAL_MS);
                if last_warning.is_none_or(|at| at.elapsed() >= quiet) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(topic, partition, isr = ?proposal.isr, "cannot change the ISR: etcd is unreachable; leadership is kept, ISR changes wait for etcd");
                }
            }
            Err(error) => {
                tracing::debug!(topic, partition, %error, "ISR change refused; the leader decides again on the current state");
            }
        }
        let _ = reply.send(outcome(&result));
    }
}

/// What an ISR change's answer tells about etcd: only an answer that cannot follow a commit
/// counts as a refusal. A timeout, a broken connection or a stopped control plane may come
/// after etcd recorded the change, so their outcome is unknown.
pub fn outcome<T>(result: &Result<T, ClusterError>) -> IsrOutcome {
    match result {
        Ok(_) => IsrOutcome::Committed,
        Err(ClusterError::StaleBrokerEpoch { .. } | ClusterError::InvalidIsr { .. }) => {
            IsrOutcome::Rejected
        }
        Err(
            ClusterError::Conflict { .. }
            | ClusterError::StaleLeaderEpoch { .. }
            | ClusterError::NotLeader { .. }
            | ClusterError::UnknownPartition { .. }
            | ClusterError::UnknownTopic(_),
        ) => IsrOutcome::Superseded,
        // Refused while disconnected: the command was never sent to etcd.
        Err(ClusterError::Disconnected { .. }) => IsrOutcome::NotSent,
        Err(_) => IsrOutcome::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a timeout or a transport error is never taken as a refusal (a commit may precede
    // it), while answers that prove nothing was written are, by classifying each error kind.
    #[test]
    fn only_certain_refusals_count_as_refused() {
        let timeout = ClusterError::Timeout {
            operation: "update isr",
            key: "k".into(),
            timeout_ms: 1,
        };
        assert_eq!(outcome::<()>(&Err(timeout)), IsrOutcome::Unknown);
        let stopped = ClusterError::Stopped {
            operation: "update isr",
        };
        assert_eq!(outcome::<()>(&Err(stopped)), IsrOutcome::Unknown);
        let lost = ClusterError::SessionLost {
            reason: "gone".into(),
        };
        assert_eq!(outcome::<()>(&Err(lost)), IsrOutcome::Unknown);
        let disconnected = ClusterError::Disconnected {
            operation: "update isr",
        };
        assert_eq!(outcome::<()>(&Err(disconnected)), IsrOutcome::NotSent);
        let stale = ClusterError::StaleBrokerEpoch {
            topic: "t".into(),
            partition: 0,
            broker: 2,
            expected: 5,
        };
        assert_eq!(outcome::<()>(&Err(stale)), IsrOutcome::Rejected);
        let moved = ClusterError::StaleLeaderEpoch {
            topic: "t".into(),
            partition: 0,
            expected: 1,
            current: 2,
        };
        assert_eq!(outcome::<()>(&Err(moved)), IsrOutcome::Superseded);
        assert_eq!(outcome(&Ok(())), IsrOutcome::Committed);
    }
}
