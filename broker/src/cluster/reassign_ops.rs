//! The etcd side of partition reassignment: each step one transaction guarded by the
//! revisions its decision was based on (see `reassign` for the decisions).

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnResponse};

use super::ops::timed;
use super::reassign::{
    check_cancel, check_submit, completions, Cancel, Completion, ReassignRequest, Submit,
};
use super::state::{encode, ClusterKeys, ClusterState};
use super::{ClusterError, Refusal};

fn revision_of(response: &TxnResponse) -> i64 {
    response.header().map_or(0, |header| header.revision())
}

/// Checks `request` against `state` and writes it. Returns the revision of the write, `None`
/// when nothing had to change.
pub(crate) async fn execute(
    client: &mut Client,
    keys: &ClusterKeys,
    state: &ClusterState,
    request: &ReassignRequest,
    timeout: Duration,
) -> Result<Option<i64>, ClusterError> {
    match request {
        ReassignRequest::Move {
            topic,
            partition,
            target,
            min_insync_replicas_default,
        } => match check_submit(
            state,
            topic,
            *partition,
            target,
            *min_insync_replicas_default,
        )? {
            Some(submit) => submit_move(client, keys, &submit, timeout).await.map(Some),
            None => Ok(None),
        },
        ReassignRequest::Cancel { topic, partition } => {
            let cancel = check_cancel(state, topic, *partition)?;
            write_cancel(client, keys, &cancel, timeout).await.map(Some)
        }
    }
}

/// The error for a write whose basis moved meanwhile.
fn moved(topic: &str, partition: i32) -> ClusterError {
    ClusterError::ReassignmentRefused {
        topic: topic.to_string(),
        partition,
        kind: Refusal::Other,
        reason: "the partition or its reassignment changed meanwhile; nothing was written, retry"
            .to_string(),
    }
}

async fn submit_move(
    client: &mut Client,
    keys: &ClusterKeys,
    submit: &Submit,
    timeout: Duration,
) -> Result<i64, ClusterError> {
    let key = keys.reassignment(&submit.topic, submit.partition);
    let txn = Txn::new()
        .when([
            Compare::create_revision(
                keys.topic(&submit.topic),
                CompareOp::Equal,
                submit.topic_create_revision,
            ),
            Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put(key.as_str(), encode(&submit.record), None)]);
    let response = timed(timeout, "submit reassignment", &key, client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(moved(&submit.topic, submit.partition));
    }
    tracing::info!(topic = submit.topic, partition = submit.partition, target = ?submit.record.target, "reassignment submitted");
    Ok(revision_of(&response))
}

async fn write_cancel(
    client: &mut Client,
    keys: &ClusterKeys,
    cancel: &Cancel,
    timeout: Duration,
) -> Result<i64, ClusterError> {
    let key = keys.reassignment(&cancel.topic, cancel.partition);
    let partition_key = keys.partition(&cancel.topic, cancel.partition);
    let mut compares = vec![
        Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            cancel.reassignment_mod_revision,
        ),
        Compare::mod_revision(
            partition_key.as_str(),
            CompareOp::Equal,
            cancel.partition_mod_revision,
        ),
    ];
    if let Some((leader, epoch)) = cancel.elected {
        compares.push(Compare::create_revision(
            keys.broker(leader),
            CompareOp::Equal,
            epoch,
        ));
    }
    let txn = Txn::new().when(compares).and_then([
        TxnOp::delete(key.as_str(), None),
        TxnOp::put(partition_key.as_str(), encode(&cancel.next), None),
    ]);
    let response = timed(timeout, "cancel reassignment", &key, client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(moved(&cancel.topic, cancel.partition));
    }
    tracing::info!(topic = cancel.topic, partition = cancel.partition, isr = ?cancel.next.isr, "reassignment cancelled");
    Ok(revision_of(&response))
}

/// Ends every reassignment `state` allows (controller duty), fenced by `controller_epoch`. A
/// lost compare-and-swap is decided again on the next event.
pub(crate) async fn complete_all(
    client: &mut Client,
    keys: &ClusterKeys,
    state: &ClusterState,
    controller_epoch: i64,
    timeout: Duration,
) -> Result<(), ClusterError> {
    for completion in completions(state, controller_epoch) {
        let written =
            write_completion(client, keys, controller_epoch, &completion, timeout).await?;
        if written {
            tracing::info!(
                topic = completion.topic,
                partition = completion.partition,
                replicas = ?completion.next.isr,
                leader = completion.next.leader,
                leader_epoch = completion.next.leader_epoch,
                "reassignment completed"
            );
        } else {
            tracing::debug!(
                topic = completion.topic,
                partition = completion.partition,
                "reassignment moved meanwhile; deciding again"
            );
        }
    }
    Ok(())
}

async fn write_completion(
    client: &mut Client,
    keys: &ClusterKeys,
    controller_epoch: i64,
    completion: &Completion,
    timeout: Duration,
) -> Result<bool, ClusterError> {
    let (topic, partition) = (&completion.topic, completion.partition);
    let key = keys.reassignment(topic, partition);
    let topic_key = keys.topic(topic);
    let partition_key = keys.partition(topic, partition);
    let mut compares = vec![
        Compare::mod_revision(keys.controller(), CompareOp::Equal, controller_epoch),
        Compare::mod_revision(
            topic_key.as_str(),
            CompareOp::Equal,
            completion.topic_mod_revision,
        ),
        Compare::mod_revision(
            partition_key.as_str(),
            CompareOp::Equal,
            completion.partition_mod_revision,
        ),
        Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            completion.reassignment_mod_revision,
        ),
    ];
    if let Some((leader, epoch)) = completion.elected {
        compares.push(Compare::create_revision(
            keys.broker(leader),
            CompareOp::Equal,
            epoch,
        ));
    }
    let txn = Txn::new().when(compares).and_then([
        TxnOp::put(topic_key.as_str(), encode(&completion.assignment), None),
        TxnOp::put(partition_key.as_str(), encode(&completion.next), None),
        TxnOp::delete(key.as_str(), None),
    ]);
    let response = timed(timeout, "complete reassignment", &key, client.txn(txn)).await?;
    Ok(response.succeeded())
}
