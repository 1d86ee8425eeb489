//! Dispatch of decoded Kafka requests to their handlers, and the shape of an answer.
//!
//! Handlers map Kafka requests onto the same shard operations the native protocol uses
//! (append, read, list offset, epoch end, topic changes through the control plane) and map the
//! outcome back to Kafka's structures and error codes. Every handler answers; none closes the
//! connection except a failed acks=0 produce (the only way such a producer learns of it).
//!
//! The consumer-group APIs arrive decoded as [`sluice_kafka::GroupRequest`]; [`groups`] maps
//! each one onto the group coordinator's own request type and back.

use std::net::SocketAddr;
use std::rc::Rc;

use sluice_kafka::kafka_protocol::protocol::Encodable;
use sluice_kafka::{encode_response, Request, RequestHeader};
use sluice_net::PayloadPart;

use super::{fetch, groups, metadata, offsets, produce, producer_id, reassign, topics};
use crate::server::ShardServer;

/// What the writer does for one request.
pub enum Answer {
    /// Write these bytes (memory, or file ranges to splice); `failed` when the answer carries
    /// an error code anywhere (for the error metric).
    Respond {
        /// The whole response, size prefix first.
        parts: Vec<PayloadPart>,
        /// The answer reports an error.
        failed: bool,
    },
    /// Write nothing (a successful acks=0 produce).
    Silent,
    /// Close the connection after the earlier answers.
    Close,
}

/// Encodes `body` as the answer to `header`; an encoding failure (a value a field of this
/// version cannot carry) closes the connection rather than send a wrong answer.
pub fn respond<R: Encodable>(header: &RequestHeader, body: &R, failed: bool) -> Answer {
    match encode_response(header, body) {
        Ok(bytes) => Answer::Respond {
            parts: vec![PayloadPart::Memory(bytes)],
            failed,
        },
        Err(error) => {
            tracing::error!(%error, "cannot encode a Kafka response; closing the connection");
            Answer::Close
        }
    }
}

/// Runs the handler of `request`, which came from `peer`.
pub async fn handle(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: Request,
    peer: Option<SocketAddr>,
) -> Answer {
    match request {
        Request::ApiVersions(_) => metadata::api_versions(server, header),
        Request::Metadata(request) => metadata::metadata(server, header, &request),
        Request::DescribeCluster(request) => metadata::describe_cluster(server, header, &request),
        Request::Produce(request) => produce::handle(server, header, request).await,
        Request::Fetch(request) => fetch::handle(server, header, &request).await,
        Request::ListOffsets(request) => offsets::list_offsets(server, header, &request).await,
        Request::OffsetForLeaderEpoch(request) => offsets::epochs(server, header, &request).await,
        Request::CreateTopics(request) => topics::create_topics(server, header, request).await,
        Request::DeleteTopics(request) => topics::delete_topics(server, header, &request).await,
        Request::CreatePartitions(request) => {
            topics::create_partitions(server, header, &request).await
        }
        Request::DescribeConfigs(request) => topics::describe_configs(server, header, &request),
        Request::IncrementalAlterConfigs(request) => {
            topics::alter_configs(server, header, &request).await
        }
        Request::InitProducerId(request) => producer_id::init(server, header, &request).await,
        Request::ElectLeaders(request) => topics::elect_leaders(server, header, &request).await,
        Request::AlterPartitionReassignments(request) => {
            reassign::alter(server, header, &request).await
        }
        Request::ListPartitionReassignments(request) => {
            reassign::list(server, header, &request).await
        }
        Request::Group(request) => groups::handle(server, header, request, peer).await,
    }
}
