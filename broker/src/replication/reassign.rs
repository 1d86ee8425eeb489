//! The control thread's side of the reassignment apis (cluster mode): each partition's
//! request checked and written through the cluster handle (see `cluster::reassign`), and the
//! reassignments in progress listed from the snapshot.

use sluice_net::{
    ErrorCode, ListPartitionReassignmentsResponse, OngoingReassignment, ReassignPartition,
    ReassignResult,
};

use super::progress;
use crate::cluster::reassign::{statuses, ReassignRequest};
use crate::cluster::{ClusterError, ClusterHandle, Refusal};

/// The wire error code for a refused or failed request.
fn error_code(error: &ClusterError) -> ErrorCode {
    match error {
        ClusterError::UnknownTopic(_) | ClusterError::UnknownPartition { .. } => {
            ErrorCode::UnknownTopicOrPartition
        }
        ClusterError::ReassignmentRefused { kind, .. } => match kind {
            Refusal::InvalidAssignment => ErrorCode::InvalidReplicaAssignment,
            Refusal::InProgress => ErrorCode::ReassignmentInProgress,
            Refusal::NotInProgress => ErrorCode::NoReassignmentInProgress,
            Refusal::Other => ErrorCode::InvalidRequest,
        },
        ClusterError::Disconnected { .. } | ClusterError::Timeout { .. } => {
            ErrorCode::RequestTimedOut
        }
        _ => ErrorCode::UnknownServerError,
    }
}

/// Submits or cancels each partition's reassignment, one result per partition in order. A
/// partition named twice is refused (the second time) so the request means one thing.
pub fn alter(
    handle: &ClusterHandle,
    min_insync_replicas_default: usize,
    partitions: Vec<ReassignPartition>,
) -> Vec<ReassignResult> {
    let mut seen = std::collections::BTreeSet::new();
    partitions
        .into_iter()
        .map(|partition| {
            let (topic, index) = (partition.topic.clone(), partition.partition);
            let outcome = if seen.insert((topic.clone(), index)) {
                let request = match partition.replicas {
                    Some(target) => ReassignRequest::Move {
                        topic: topic.clone(),
                        partition: index,
                        target,
                        min_insync_replicas_default,
                    },
                    None => ReassignRequest::Cancel {
                        topic: topic.clone(),
                        partition: index,
                    },
                };
                handle.reassign(request)
            } else {
                Err(ClusterError::ReassignmentRefused {
                    topic: topic.clone(),
                    partition: index,
                    kind: Refusal::Other,
                    reason: "the partition is named twice in the request".to_string(),
                })
            };
            let (error, message) = match outcome {
                Ok(()) => (ErrorCode::None, None),
                Err(error) => (error_code(&error), Some(error.to_string())),
            };
            ReassignResult {
                topic,
                partition: index,
                error: error.code(),
                message,
            }
        })
        .collect()
}

/// Every reassignment in progress in the handle's snapshot, with the bytes left each move
/// has as the brokers of its added replicas report them (see [`super::progress`]).
pub fn list(handle: &ClusterHandle) -> ListPartitionReassignmentsResponse {
    let snapshot = handle.snapshot();
    let statuses = statuses(&snapshot);
    let reporting = statuses
        .iter()
        .flat_map(progress::reporting_replicas)
        .collect();
    let reports = progress::read_reports(&snapshot, reporting);
    let reassignments = statuses
        .into_iter()
        .map(|status| OngoingReassignment {
            bytes_remaining: progress::bytes_remaining(&status, &reports),
            topic: status.topic,
            partition: status.partition,
            replicas: status.replicas,
            target: status.target,
            adding: status.adding,
            removing: status.removing,
            catching_up: status.catching_up,
            leader: status.leader,
        })
        .collect();
    ListPartitionReassignmentsResponse {
        error: ErrorCode::None.code(),
        message: None,
        reassignments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: Refusal) -> ClusterError {
        ClusterError::ReassignmentRefused {
            topic: "t".to_string(),
            partition: 0,
            kind,
            reason: "why".to_string(),
        }
    }

    // Proves each refusal answers with Kafka's own code for it (what admin clients such as
    // kafkajs report by name), none of them retriable, and every code decodes on the client.
    #[test]
    fn refusals_answer_with_kafkas_codes() {
        let cases = [
            (
                Refusal::InvalidAssignment,
                ErrorCode::InvalidReplicaAssignment,
                39,
            ),
            (Refusal::InProgress, ErrorCode::ReassignmentInProgress, 60),
            (
                Refusal::NotInProgress,
                ErrorCode::NoReassignmentInProgress,
                85,
            ),
            (Refusal::Other, ErrorCode::InvalidRequest, 42),
        ];
        for (kind, code, wire) in cases {
            assert_eq!(error_code(&refused(kind)), code, "{kind:?}");
            assert_eq!(code.code(), wire);
            assert_eq!(ErrorCode::from_i16(wire), Some(code));
            assert!(!code.is_retriable(), "{code:?}");
        }
    }
}
