//! The leader side of replication on a shard: proposing ISR changes (decided by the partition,
//! written by the ISR worker with compare-and-swap) and the periodic check that shrinks lagging
//! followers out and publishes each partition's follower lag.

use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use sluice_shard::{IsrChangeKind, IsrOutcome, Partition, PartitionLag};

use super::ShardServer;
use crate::replication::IsrCommand;

/// Bounds of the interval between two ISR checks, milliseconds. The interval is a quarter of
/// `replica_lag_time_max_ms`, so a lagging follower leaves the ISR at most a quarter late.
const ISR_CHECK_INTERVAL_MS_MIN: u64 = 50;
const ISR_CHECK_INTERVAL_MS_MAX: u64 = 2_500;

/// Sends the ISR change `partition` wants now, if it leads and wants one (or wants to send
/// again a change whose outcome is in doubt), to the ISR worker, and settles it on the
/// partition when etcd answers. A full worker queue settles it as not sent at once; the next
/// check proposes again.
pub fn propose_isr_change(server: &ShardServer, partition: &Rc<Partition>) {
    let Some(isr) = &server.shared.isr else {
        return;
    };
    let lag_max_ms = server.shared.config.cluster.replica_lag_time_max_ms;
    let Some(proposal) = partition.propose_isr_change(sluice_shard::now_ms(), lag_max_ms) else {
        return;
    };
    let (reply, answer) = oneshot::channel();
    let command = IsrCommand::Update {
        topic: partition.topic().to_string(),
        partition: partition.partition(),
        proposal: proposal.clone(),
        reply,
    };
    if isr.try_send(command).is_err() {
        partition.settle_isr_change(&proposal, IsrOutcome::NotSent);
        return;
    }
    let partition = partition.clone();
    let metrics = server.shard.metrics().clone();
    glommio::spawn_local(async move {
        // A dropped reply means the worker stopped, possibly after sending the change.
        let outcome = answer.await.unwrap_or(IsrOutcome::Unknown);
        partition.settle_isr_change(&proposal, outcome);
        if outcome == IsrOutcome::Committed {
            match proposal.kind {
                IsrChangeKind::Shrink => metrics.isr_shrinks.increment(),
                IsrChangeKind::Expand => metrics.isr_expands.increment(),
            }
        }
    })
    .detach();
}

/// The periodic replication check of one shard (cluster mode): every partition it leads may
/// shrink or expand its ISR, and its follower lag is published for `/metrics`. Ends when the
/// shard aborts its connections (shutdown).
pub async fn check_loop(server: Rc<ShardServer>) {
    let lag_max_ms = server.shared.config.cluster.replica_lag_time_max_ms;
    let interval = Duration::from_millis(
        (lag_max_ms / 4).clamp(ISR_CHECK_INTERVAL_MS_MIN, ISR_CHECK_INTERVAL_MS_MAX),
    );
    while super::sleep_unless_aborted(&server, interval).await {
        let mut lags = Vec::new();
        for partition in server.shard.registry().all() {
            propose_isr_change(&server, &partition);
            if let Some((lag_messages, _)) = partition.replication_lag() {
                lags.push(PartitionLag {
                    topic: partition.topic().to_string(),
                    partition: partition.partition(),
                    lag_messages,
                });
            }
        }
        lags.sort_by(|left, right| {
            (&left.topic, left.partition).cmp(&(&right.topic, right.partition))
        });
        server.shard.metrics().set_replica_lag(lags);
    }
}
