//! ApiVersions, Metadata and DescribeCluster.
//!
//! Metadata lists this broker (single node) or every live broker (cluster mode) at its Kafka
//! address, and for each partition its leader, leader epoch, replicas and ISR as the shard
//! table holds them. Topics are never created by a Metadata request (Kafka's
//! `auto.create.topics.enable` is off here): an unknown topic is UNKNOWN_TOPIC_OR_PARTITION.
//! Each topic carries its topic id (KIP-516: a UUID per incarnation, from the shard table); a
//! topic asked for by id alone (v12) is found by it, or is UNKNOWN_TOPIC_ID.

use sluice_kafka::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use sluice_kafka::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_kafka::kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use sluice_kafka::kafka_protocol::protocol::StrBytes;
use sluice_kafka::kafka_protocol::ResponseError;
use sluice_kafka::{api_versions_body, RequestHeader};
use sluice_shard::partition::SINGLE_NODE_LEADER_EPOCH;
use sluice_shard::{ClusterView, ShardTable, TopicAssignment, NO_LEADER};
use uuid::Uuid;

use super::dispatch::{respond, Answer};
use crate::server::ShardServer;

/// DescribeCluster's endpoint type for brokers (1); controllers (2) are not separate here.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// ApiVersions: exactly the APIs and versions this broker serves.
pub fn api_versions(server: &ShardServer, header: &RequestHeader) -> Answer {
    let Some(kafka) = server.shared.kafka.as_ref() else {
        return Answer::Close;
    };
    respond(header, &api_versions_body(&kafka.apis, 0), false)
}

/// A broker as Kafka clients reach it.
struct Endpoint {
    node_id: i32,
    host: String,
    port: u16,
}

/// Every broker Kafka clients can reach: this one alone, or (cluster mode) every live broker
/// that registered a Kafka address.
fn endpoints(server: &ShardServer, cluster: Option<&ClusterView>) -> Vec<Endpoint> {
    let Some(kafka) = server.shared.kafka.as_ref() else {
        return Vec::new();
    };
    let own = Endpoint {
        node_id: server.shared.config.node_id,
        host: kafka.advertised_host.clone(),
        port: kafka.advertised_port,
    };
    let Some(cluster) = cluster else {
        return vec![own];
    };
    let mut endpoints: Vec<Endpoint> = cluster
        .brokers
        .values()
        .filter(|broker| broker.node_id != own.node_id)
        .filter_map(|broker| {
            broker.kafka_port.map(|port| Endpoint {
                node_id: broker.node_id,
                host: broker.host.clone(),
                port,
            })
        })
        .collect();
    endpoints.push(own);
    endpoints.sort_by_key(|endpoint| endpoint.node_id);
    endpoints
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Metadata.
pub fn metadata(server: &ShardServer, header: &RequestHeader, request: &MetadataRequest) -> Answer {
    let (response, failed) = server.shard.with_table(|table| {
        let cluster = table.cluster();
        let brokers = endpoints(server, cluster)
            .into_iter()
            .map(|endpoint| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(endpoint.node_id))
                    .with_host(str_bytes(&endpoint.host))
                    .with_port(i32::from(endpoint.port))
            })
            .collect();
        let topics: Vec<MetadataResponseTopic> = match &request.topics {
            None => table
                .topics()
                .map(|(name, assignment)| topic_metadata(server, cluster, name, assignment))
                .collect(),
            Some(wanted) => wanted
                .iter()
                .map(|topic| match &topic.name {
                    Some(name) => named_topic(server, table, name.0.as_str()),
                    None => topic_by_id(server, table, topic.topic_id),
                })
                .collect(),
        };
        let failed = topics.iter().any(|topic| {
            topic.error_code != 0 || topic.partitions.iter().any(|p| p.error_code != 0)
        });
        let controller = cluster.map_or(server.shared.config.node_id, |c| c.controller_id);
        let response = MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(&server.shared.cluster_id)))
            .with_controller_id(BrokerId(controller))
            .with_topics(topics);
        (response, failed)
    });
    respond(header, &response, failed)
}

fn named_topic(server: &ShardServer, table: &ShardTable, name: &str) -> MetadataResponseTopic {
    match table.topic(name) {
        Some(assignment) => topic_metadata(server, table.cluster(), name, assignment),
        None => MetadataResponseTopic::default()
            .with_name(Some(TopicName(str_bytes(name))))
            .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
    }
}

/// The metadata of the topic whose current incarnation is `topic_id` (Metadata v12 names
/// topics by id alone), or UNKNOWN_TOPIC_ID.
fn topic_by_id(server: &ShardServer, table: &ShardTable, topic_id: Uuid) -> MetadataResponseTopic {
    let found = table
        .topics()
        .find(|(_, assignment)| !topic_id.is_nil() && assignment.topic_id == topic_id);
    match found {
        Some((name, assignment)) => topic_metadata(server, table.cluster(), name, assignment),
        None => MetadataResponseTopic::default()
            .with_name(None)
            .with_topic_id(topic_id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

fn topic_metadata(
    server: &ShardServer,
    cluster: Option<&ClusterView>,
    name: &str,
    assignment: &TopicAssignment,
) -> MetadataResponseTopic {
    let node_id = server.shared.config.node_id;
    let partitions = (0..assignment.partition_count())
        .map(|index| {
            let partition = i32::try_from(index).unwrap_or(i32::MAX);
            let response = MetadataResponsePartition::default().with_partition_index(partition);
            let Some(cluster) = cluster else {
                return response
                    .with_leader_id(BrokerId(node_id))
                    .with_leader_epoch(SINGLE_NODE_LEADER_EPOCH)
                    .with_replica_nodes(vec![BrokerId(node_id)])
                    .with_isr_nodes(vec![BrokerId(node_id)]);
            };
            let info = assignment.replica_info(index);
            let leader = info.map_or(NO_LEADER, |info| info.leader);
            let reachable = cluster
                .brokers
                .get(&leader)
                .is_some_and(|broker| broker.kafka_port.is_some() || leader == node_id);
            let error = if reachable {
                0
            } else {
                ResponseError::LeaderNotAvailable.code()
            };
            let ids = |nodes: &[i32]| nodes.iter().copied().map(BrokerId).collect::<Vec<_>>();
            response
                .with_error_code(error)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(info.map_or(-1, |info| info.leader_epoch))
                .with_replica_nodes(info.map(|info| ids(&info.replicas)).unwrap_or_default())
                .with_isr_nodes(info.map(|info| ids(&info.isr)).unwrap_or_default())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_topic_id(assignment.topic_id)
        .with_is_internal(name.starts_with("__"))
        .with_partitions(partitions)
}

/// DescribeCluster: the brokers, the controller and the cluster id.
pub fn describe_cluster(
    server: &ShardServer,
    header: &RequestHeader,
    request: &DescribeClusterRequest,
) -> Answer {
    if header.api_version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        let response = DescribeClusterResponse::default()
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(
                "this cluster has no separate controller endpoints; ask for brokers (1)",
            )))
            .with_endpoint_type(request.endpoint_type)
            .with_cluster_id(str_bytes(&server.shared.cluster_id));
        return respond(header, &response, true);
    }
    let (brokers, controller) = server.shard.with_table(|table| {
        let cluster = table.cluster();
        let brokers: Vec<DescribeClusterBroker> = endpoints(server, cluster)
            .into_iter()
            .map(|endpoint| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(endpoint.node_id))
                    .with_host(str_bytes(&endpoint.host))
                    .with_port(i32::from(endpoint.port))
            })
            .collect();
        let controller = cluster.map_or(server.shared.config.node_id, |c| c.controller_id);
        (brokers, controller)
    });
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_cluster_id(str_bytes(&server.shared.cluster_id))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers);
    respond(header, &response, false)
}
