//! The ISR worker: one thread that writes the ISR changes partition leaders propose, each a
//! compare-and-swap of the partition state in etcd, so a slow etcd never delays the control
//! thread's broadcasts of leadership changes.

use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use sluice_shard::{IsrChangeKind, IsrProposal};

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
        /// `Ok` once etcd holds the new ISR; `Err` with the reason otherwise.
        reply: oneshot::Sender<Result<(), String>>,
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
        let result = handle.update_isr_at(&topic, partition, proposal.isr.clone(), expected);
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
        let _ = reply.send(result.map(drop).map_err(|error| error.to_string()));
    }
}
