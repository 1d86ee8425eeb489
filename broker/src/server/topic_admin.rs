//! Topic and leadership administration on the native protocol: CreatePartitions,
//! AlterTopicConfigs and ElectLeaders. Each change goes to the control plane (the embedded
//! store on a single node, etcd in cluster mode), which answers once this broker's shards
//! applied it.

use futures_channel::oneshot;
use sluice_net::{
    AlterTopicConfigsRequest, AlterTopicConfigsResponse, ApiKey, CreatePartitionsRequest,
    CreatePartitionsResponse, ElectLeadersRequest, ElectLeadersResponse, ErrorCode, Frame,
    NetError,
};

use super::handlers::{ask_control, Body};
use super::ShardServer;
use crate::control::ControlRequest;

/// Decodes and serves one of this module's apis (the caller checked `api` is one of them).
pub(crate) async fn handle(
    server: &ShardServer,
    api: ApiKey,
    frame: &Frame,
) -> Result<Body, NetError> {
    Ok(match api {
        ApiKey::CreatePartitions => {
            Body::CreatePartitions(create_partitions(server, frame.decode()?).await)
        }
        ApiKey::AlterTopicConfigs => {
            Body::AlterTopicConfigs(alter_topic_configs(server, frame.decode()?).await)
        }
        _ => Body::ElectLeaders(elect_leaders(server, frame.decode()?).await),
    })
}

/// CreatePartitions: grows each named topic to its new partition count.
pub(crate) async fn create_partitions(
    server: &ShardServer,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let names = request
        .topics
        .iter()
        .map(|topic| topic.name.clone())
        .collect();
    let results = ask_control(server, names, |reply| ControlRequest::CreatePartitions {
        topics: request.topics,
        reply,
    })
    .await;
    CreatePartitionsResponse { results }
}

/// AlterTopicConfigs: sets and removes topic config entries.
pub(crate) async fn alter_topic_configs(
    server: &ShardServer,
    request: AlterTopicConfigsRequest,
) -> AlterTopicConfigsResponse {
    let names = request
        .changes
        .iter()
        .map(|change| change.name.clone())
        .collect();
    let results = ask_control(server, names, |reply| ControlRequest::AlterTopicConfigs {
        changes: request.changes,
        reply,
    })
    .await;
    AlterTopicConfigsResponse { results }
}

/// The answer to an ElectLeaders request that failed as a whole.
pub(crate) fn election_failed(code: ErrorCode, message: String) -> ElectLeadersResponse {
    ElectLeadersResponse {
        error: code.code(),
        message: Some(message),
        partitions: Vec::new(),
    }
}

/// ElectLeaders: a preferred election, decided and written by the control plane.
pub(crate) async fn elect_leaders(
    server: &ShardServer,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let (reply, answer) = oneshot::channel();
    let asked = ControlRequest::ElectLeaders {
        topic: request.topic,
        reply,
    };
    if !server.shared.control.try_send(asked) {
        return election_failed(
            ErrorCode::RequestTimedOut,
            "the control plane is busy or stopping; retry".to_string(),
        );
    }
    answer.await.unwrap_or_else(|_| {
        election_failed(
            ErrorCode::UnknownServerError,
            "the control plane stopped before answering".to_string(),
        )
    })
}
