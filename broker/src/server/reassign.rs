//! The native reassignment apis on a shard: AlterPartitionReassignments (23) and
//! ListPartitionReassignments (24). Both go to the broker's control thread as owned messages
//! (in cluster mode it writes etcd through the cluster handle; a single-node broker refuses
//! them), so the shard never blocks.

use futures_channel::oneshot;
use sluice_net::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, Connection,
    ErrorCode, Frame, FrameHeader, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, NetError, ReassignResult,
};

use super::ShardServer;
use crate::control::ControlRequest;

/// A reassignment api's response body.
pub enum ReassignBody {
    /// AlterPartitionReassignments.
    Alter(AlterPartitionReassignmentsResponse),
    /// ListPartitionReassignments.
    List(ListPartitionReassignmentsResponse),
}

impl ReassignBody {
    /// Writes the body as a response frame.
    pub async fn write(self, header: FrameHeader, writer: &mut Connection) -> Result<(), NetError> {
        match self {
            ReassignBody::Alter(body) => writer.write_frame(header, &body, &[]).await,
            ReassignBody::List(body) => writer.write_frame(header, &body, &[]).await,
        }
    }

    /// A body of `api`'s type carrying `code` and `message` in place of results.
    pub fn error(api: ApiKey, code: ErrorCode, message: Option<String>) -> ReassignBody {
        if api == ApiKey::ListPartitionReassignments {
            return ReassignBody::List(list_failed(code, message));
        }
        ReassignBody::Alter(AlterPartitionReassignmentsResponse {
            results: vec![ReassignResult {
                topic: String::new(),
                partition: -1,
                error: code.code(),
                message,
            }],
        })
    }
}

fn list_failed(code: ErrorCode, message: Option<String>) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse {
        error: code.code(),
        message,
        reassignments: Vec::new(),
    }
}

/// Runs a reassignment api.
pub async fn handle(
    server: &ShardServer,
    api: ApiKey,
    frame: &Frame,
) -> Result<ReassignBody, NetError> {
    if api == ApiKey::ListPartitionReassignments {
        frame.decode::<ListPartitionReassignmentsRequest>()?;
        return Ok(ReassignBody::List(list(server).await));
    }
    let request = frame.decode::<AlterPartitionReassignmentsRequest>()?;
    Ok(ReassignBody::Alter(alter(server, request).await))
}

/// The message for a control plane that cannot take the request.
const BUSY: &str = "the control plane is busy or stopping; retry";

/// The message for a control plane that stopped before answering.
const STOPPED: &str = "the control plane stopped before answering";

pub(crate) async fn alter(
    server: &ShardServer,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let failed = |code: ErrorCode, message: &str| {
        let results = request
            .partitions
            .iter()
            .map(|partition| ReassignResult {
                topic: partition.topic.clone(),
                partition: partition.partition,
                error: code.code(),
                message: Some(message.to_string()),
            })
            .collect();
        AlterPartitionReassignmentsResponse { results }
    };
    let (reply, answer) = oneshot::channel();
    let sent = server
        .shared
        .control
        .try_send(ControlRequest::AlterReassignments {
            partitions: request.partitions.clone(),
            reply,
        });
    if !sent {
        return failed(ErrorCode::RequestTimedOut, BUSY);
    }
    match answer.await {
        Ok(results) => AlterPartitionReassignmentsResponse { results },
        Err(_) => failed(ErrorCode::UnknownServerError, STOPPED),
    }
}

pub(crate) async fn list(server: &ShardServer) -> ListPartitionReassignmentsResponse {
    let (reply, answer) = oneshot::channel();
    if !server
        .shared
        .control
        .try_send(ControlRequest::ListReassignments { reply })
    {
        return list_failed(ErrorCode::RequestTimedOut, Some(BUSY.to_string()));
    }
    answer
        .await
        .unwrap_or_else(|_| list_failed(ErrorCode::UnknownServerError, Some(STOPPED.to_string())))
}
