//! Partition reassignment on the Kafka port (KIP-455): AlterPartitionReassignments and
//! ListPartitionReassignments, answered by the same control-plane requests as the native apis
//! (`server::reassign`), so `kafka-reassign-partitions.sh`-style tools and admin clients move
//! replicas as `sluice topic reassign` does. A null replica list cancels a partition's move.
//! Any broker answers (Kafka sends these to the controller; Sluice's control plane writes the
//! move to etcd from whichever broker receives it). A refused move answers Kafka's code for
//! the rule it breaks, as on the native port: INVALID_REPLICA_ASSIGNMENT (a broker that is not
//! registered, fewer replicas than `min.insync.replicas`), REASSIGNMENT_IN_PROGRESS (Kafka
//! would replace the move in progress; Sluice asks for a cancel first),
//! NO_REASSIGNMENT_IN_PROGRESS (a cancel of a partition that is not moving), anything else
//! INVALID_REQUEST. The partition's error message says why.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use sluice_kafka::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use sluice_kafka::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use sluice_kafka::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use sluice_kafka::kafka_protocol::protocol::StrBytes;
use sluice_kafka::RequestHeader;
use sluice_net::{OngoingReassignment, ReassignPartition, ReassignResult};

use super::dispatch::{respond, Answer};
use crate::server::ShardServer;

/// AlterPartitionReassignments: starts (or, with a null replica list, cancels) each listed
/// partition's move; each partition is answered with the control plane's verdict.
pub async fn alter(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &AlterPartitionReassignmentsRequest,
) -> Answer {
    let partitions: Vec<ReassignPartition> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| ReassignPartition {
                topic: topic.name.0.as_str().to_string(),
                partition: partition.partition_index,
                replicas: partition
                    .replicas
                    .as_ref()
                    .map(|replicas| replicas.iter().map(|id| id.0).collect()),
            })
        })
        .collect();
    let results = if partitions.is_empty() {
        Vec::new()
    } else {
        let native = sluice_net::AlterPartitionReassignmentsRequest {
            partitions,
            timeout_ms: u32::try_from(request.timeout_ms).unwrap_or(0),
        };
        crate::server::reassign::alter(server, native).await.results
    };
    let failed = results.iter().any(|result| result.error != 0);
    let answer = AlterPartitionReassignmentsResponse::default().with_responses(by_topic(results));
    respond(header, &answer, failed)
}

/// The per-partition results grouped by topic, topics and partitions in request order.
fn by_topic(results: Vec<ReassignResult>) -> Vec<ReassignableTopicResponse> {
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for result in results {
        let partition = ReassignablePartitionResponse::default()
            .with_partition_index(result.partition)
            .with_error_code(result.error)
            .with_error_message(result.message.map(StrBytes::from_string));
        match topics
            .iter_mut()
            .find(|topic| topic.name.0.as_str() == result.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                ReassignableTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_string(result.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

/// ListPartitionReassignments: the moves in progress, of every partition or of the listed
/// ones; a partition that is not moving (or does not exist) is left out, as Kafka does.
pub async fn list(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &ListPartitionReassignmentsRequest,
) -> Answer {
    let native = crate::server::reassign::list(server).await;
    let wanted: Option<BTreeSet<(String, i32)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|topic| {
                let name = topic.name.0.as_str();
                topic
                    .partition_indexes
                    .iter()
                    .map(move |partition| (name.to_string(), *partition))
            })
            .collect()
    });
    let moving = native.reassignments.into_iter().filter(|ongoing| {
        wanted
            .as_ref()
            .is_none_or(|wanted| wanted.contains(&(ongoing.topic.clone(), ongoing.partition)))
    });
    let answer = ListPartitionReassignmentsResponse::default()
        .with_error_code(native.error)
        .with_error_message(native.message.map(StrBytes::from_string))
        .with_topics(ongoing_by_topic(moving));
    respond(header, &answer, native.error != 0)
}

/// Moves in progress grouped by topic, in topic and partition order.
fn ongoing_by_topic(
    moving: impl Iterator<Item = OngoingReassignment>,
) -> Vec<OngoingTopicReassignment> {
    let brokers = |ids: Vec<i32>| ids.into_iter().map(BrokerId).collect::<Vec<_>>();
    let mut topics: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for ongoing in moving {
        topics.entry(ongoing.topic).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(ongoing.partition)
                .with_replicas(brokers(ongoing.replicas))
                .with_adding_replicas(brokers(ongoing.adding))
                .with_removing_replicas(brokers(ongoing.removing)),
        );
    }
    topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|partition| partition.partition_index);
            OngoingTopicReassignment::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect()
}
