//! Request dispatch and the control-type handlers (ApiVersions, Metadata, CreateTopics,
//! DeleteTopics, ListOffsets, OffsetForLeaderEpoch). Produce and Fetch have their own modules.

use std::rc::Rc;

use futures_channel::oneshot;
use sluice_net::{
    check_version, AlterTopicConfigsResponse, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
    BrokerMeta, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ElectLeadersResponse, EpochAnswer, ErrorCode,
    FetchResponse, Frame, FrameHeader, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsPartitionResult, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, NetError, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    PartitionMeta, PayloadPart, ProducePartitionResult, ProduceResponse, TopicMeta, TopicResult,
};
use sluice_shard::partition::SINGLE_NODE_LEADER_EPOCH;
use sluice_shard::{
    ClusterView, OffsetQuery, PartitionError, ProtocolErrorKind, ShardTable, NO_LEADER,
};
use sluice_storage::{producer_state::ProducerStateError, StorageError};

use super::{fetch, groups, produce, reassign, topic_admin, ShardServer};
use crate::control::ControlRequest;

/// A response body, one variant per api.
pub enum Body {
    /// ApiVersions.
    ApiVersions(ApiVersionsResponse),
    /// Metadata.
    Metadata(MetadataResponse),
    /// CreateTopics.
    CreateTopics(CreateTopicsResponse),
    /// DeleteTopics.
    DeleteTopics(DeleteTopicsResponse),
    /// Produce.
    Produce(ProduceResponse),
    /// Fetch, with its payload parts (file ranges to splice, or memory).
    Fetch(FetchResponse, Vec<PayloadPart>),
    /// ListOffsets.
    ListOffsets(ListOffsetsResponse),
    /// OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(OffsetForLeaderEpochResponse),
    /// InitProducerId.
    InitProducerId(InitProducerIdResponse),
    /// A consumer-group api.
    Group(groups::GroupBody),
    /// A partition-reassignment api.
    Reassign(reassign::ReassignBody),
    /// CreatePartitions.
    CreatePartitions(CreatePartitionsResponse),
    /// AlterTopicConfigs.
    AlterTopicConfigs(AlterTopicConfigsResponse),
    /// ElectLeaders.
    ElectLeaders(ElectLeadersResponse),
}

/// A response ready to be written.
pub struct Outgoing {
    /// The response header (api, version and correlation id echoed, RESPONSE flag set).
    pub header: FrameHeader,
    /// The body.
    pub body: Body,
}

/// What the writer does for one request.
pub enum Outcome {
    /// Write this response.
    Respond(Outgoing),
    /// Write nothing (a successful acks=0 produce).
    Silent,
    /// Close the connection after the earlier responses (a failed acks=0 produce: the producer
    /// gets no response, so, as in Kafka, the closed connection is how it learns).
    Close,
}

/// The api names that label the latency histograms, by api key.
pub const API_NAMES: [&str; 25] = [
    "api_versions",
    "metadata",
    "create_topics",
    "delete_topics",
    "produce",
    "fetch",
    "list_offsets",
    "offset_for_leader_epoch",
    "init_producer_id",
    "find_coordinator",
    "join_group",
    "sync_group",
    "heartbeat",
    "leave_group",
    "offset_commit",
    "offset_fetch",
    "list_groups",
    "describe_groups",
    "delete_groups",
    "offset_delete",
    "create_partitions",
    "alter_topic_configs",
    "elect_leaders",
    "alter_partition_reassignments",
    "list_partition_reassignments",
];

/// Runs the handler of `frame`'s api (the reader already checked the api key is known);
/// `crc_verified` is its `ProduceCheck`'s (empty for other apis); `peer` is the client's address
/// (group members are described by it).
pub async fn handle(
    server: &Rc<ShardServer>,
    frame: Frame,
    crc_verified: Vec<usize>,
    peer: Option<std::net::SocketAddr>,
) -> Outcome {
    let header = frame.header.response();
    let Ok(api) = ApiKey::try_from(frame.header.api) else {
        return Outcome::Close;
    };
    if let Err(error) = check_version(api, frame.header.version) {
        server
            .metrics()
            .protocol_error(ProtocolErrorKind::UnsupportedVersion);
        return error_response(server, api, header, ErrorCode::UnsupportedVersion, &error);
    }
    let result = match api {
        ApiKey::ApiVersions => frame
            .decode::<ApiVersionsRequest>()
            .map(|_| Body::ApiVersions(ApiVersionsResponse::from_supported())),
        ApiKey::Metadata => match frame.decode::<MetadataRequest>() {
            Ok(request) => Ok(Body::Metadata(metadata(server, request))),
            Err(error) => Err(error),
        },
        ApiKey::CreateTopics => match frame.decode::<CreateTopicsRequest>() {
            Ok(request) => Ok(Body::CreateTopics(create_topics(server, request).await)),
            Err(error) => Err(error),
        },
        ApiKey::DeleteTopics => match frame.decode::<DeleteTopicsRequest>() {
            Ok(request) => Ok(Body::DeleteTopics(delete_topics(server, request).await)),
            Err(error) => Err(error),
        },
        ApiKey::Produce => return produce::handle(server, header, frame, crc_verified).await,
        ApiKey::Fetch => match fetch::handle(server, &frame).await {
            Ok((body, parts)) => Ok(Body::Fetch(body, parts)),
            Err(error) => Err(error),
        },
        ApiKey::ListOffsets => match frame.decode::<ListOffsetsRequest>() {
            Ok(request) => Ok(Body::ListOffsets(list_offsets(server, request).await)),
            Err(error) => Err(error),
        },
        ApiKey::OffsetForLeaderEpoch => match frame.decode::<OffsetForLeaderEpochRequest>() {
            Ok(request) => Ok(Body::OffsetForLeaderEpoch(epochs(server, request).await)),
            Err(error) => Err(error),
        },
        ApiKey::InitProducerId => match frame.decode::<InitProducerIdRequest>() {
            Ok(request) => Ok(Body::InitProducerId(
                init_producer_id(server, request).await,
            )),
            Err(error) => Err(error),
        },
        ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete => groups::handle(server, api, &frame, peer)
            .await
            .map(Body::Group),
        ApiKey::AlterPartitionReassignments | ApiKey::ListPartitionReassignments => {
            reassign::handle(server, api, &frame)
                .await
                .map(Body::Reassign)
        }
        ApiKey::CreatePartitions | ApiKey::AlterTopicConfigs | ApiKey::ElectLeaders => {
            topic_admin::handle(server, api, &frame).await
        }
    };
    match result {
        Ok(body) => Outcome::Respond(Outgoing { header, body }),
        Err(error) => {
            server
                .metrics()
                .protocol_error(ProtocolErrorKind::InvalidRequest);
            error_response(server, api, header, ErrorCode::InvalidRequest, &error)
        }
    }
}

/// A response of `api`'s type that carries `code` (and a message where the type has room for
/// one) in place of results, for a request that could not be decoded or is of an unsupported
/// version.
pub fn error_response(
    server: &ShardServer,
    api: ApiKey,
    header: FrameHeader,
    code: ErrorCode,
    error: &NetError,
) -> Outcome {
    let error_code = code.code();
    let message = Some(error.to_string());
    let body = match api {
        ApiKey::ApiVersions => Body::ApiVersions(ApiVersionsResponse {
            error: error_code,
            ..ApiVersionsResponse::from_supported()
        }),
        ApiKey::Metadata => Body::Metadata(MetadataResponse {
            brokers: Vec::new(),
            controller_id: server.shared.config.node_id,
            cluster_id: server.shared.cluster_id.clone(),
            topics: vec![TopicMeta {
                name: String::new(),
                error: error_code,
                partitions: Vec::new(),
                configs: Vec::new(),
            }],
        }),
        ApiKey::CreateTopics => Body::CreateTopics(CreateTopicsResponse {
            results: vec![topic_result("", code, message)],
        }),
        ApiKey::DeleteTopics => Body::DeleteTopics(DeleteTopicsResponse {
            results: vec![topic_result("", code, message)],
        }),
        ApiKey::Produce => Body::Produce(ProduceResponse {
            partitions: vec![ProducePartitionResult {
                topic: String::new(),
                partition: -1,
                error: error_code,
                base_offset: -1,
                log_start_offset: -1,
                message,
                current_leader: -1,
            }],
        }),
        ApiKey::Fetch => Body::Fetch(
            FetchResponse {
                partitions: vec![fetch::error_result("", -1, code)],
            },
            Vec::new(),
        ),
        ApiKey::ListOffsets => Body::ListOffsets(ListOffsetsResponse {
            partitions: vec![offset_result("", -1, code, -1)],
        }),
        ApiKey::OffsetForLeaderEpoch => Body::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse {
            partitions: vec![epoch_answer("", -1, code, -1, -1)],
        }),
        ApiKey::InitProducerId => Body::InitProducerId(producer_id_failed(code, message)),
        ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete => match groups::error_body(api, code, message) {
            Some(body) => Body::Group(body),
            None => return Outcome::Close,
        },
        ApiKey::AlterPartitionReassignments | ApiKey::ListPartitionReassignments => {
            Body::Reassign(reassign::ReassignBody::error(api, code, message))
        }
        ApiKey::CreatePartitions => Body::CreatePartitions(CreatePartitionsResponse {
            results: vec![topic_result("", code, message)],
        }),
        ApiKey::AlterTopicConfigs => Body::AlterTopicConfigs(AlterTopicConfigsResponse {
            results: vec![topic_result("", code, message)],
        }),
        ApiKey::ElectLeaders => {
            Body::ElectLeaders(topic_admin::election_failed(code, error.to_string()))
        }
    };
    Outcome::Respond(Outgoing { header, body })
}

fn topic_result(name: &str, code: ErrorCode, message: Option<String>) -> TopicResult {
    TopicResult {
        name: name.to_string(),
        error: code.code(),
        message,
    }
}

/// The leader a NotLeaderOrFollower answer names (the `current_leader` of produce and fetch
/// results, so a client can go there before its metadata refresh answers); -1 for other errors
/// or an unknown leader.
pub fn leader_hint(error: &PartitionError) -> i32 {
    match error {
        PartitionError::NotLeaderOrFollower { leader, .. } => *leader,
        _ => -1,
    }
}

/// The error code (and the protocol-error kind to count, if any) for a partition error.
pub fn partition_error_code(error: &PartitionError) -> (ErrorCode, Option<ProtocolErrorKind>) {
    match error {
        PartitionError::UnknownTopicOrPartition { .. } => (
            ErrorCode::UnknownTopicOrPartition,
            Some(ProtocolErrorKind::UnknownTopicOrPartition),
        ),
        PartitionError::OffsetOutOfRange { .. } => (
            ErrorCode::OffsetOutOfRange,
            Some(ProtocolErrorKind::OffsetOutOfRange),
        ),
        PartitionError::InvalidBatch { source, .. } => batch_error_code(source),
        PartitionError::Storage { source, .. } => match source {
            StorageError::AppendTooLarge { .. } => (ErrorCode::RecordListTooLarge, None),
            StorageError::EmptyAppend => (
                ErrorCode::InvalidRequest,
                Some(ProtocolErrorKind::InvalidRequest),
            ),
            // The partition is being deleted or the broker is shutting down.
            StorageError::Closed => (ErrorCode::NotLeaderOrFollower, None),
            StorageError::MissingKey { .. } => (
                ErrorCode::InvalidRecord,
                Some(ProtocolErrorKind::InvalidRequest),
            ),
            StorageError::Producer(error) => producer_error_code(error),
            _ => (ErrorCode::KafkaStorageError, None),
        },
        PartitionError::NotLeaderOrFollower { .. } => (ErrorCode::NotLeaderOrFollower, None),
        PartitionError::FencedLeaderEpoch { .. } => (ErrorCode::FencedLeaderEpoch, None),
        PartitionError::NotEnoughReplicas { .. } => (ErrorCode::NotEnoughReplicas, None),
        PartitionError::NotEnoughReplicasAfterAppend { .. } => {
            (ErrorCode::NotEnoughReplicasAfterAppend, None)
        }
        PartitionError::ReplicationTimeout { .. } => (ErrorCode::RequestTimedOut, None),
        PartitionError::OffsetNotAvailable { .. } => (ErrorCode::OffsetNotAvailable, None),
        PartitionError::Forward { .. } => (ErrorCode::UnknownServerError, None),
    }
}

/// The error code for a batch the idempotent-producer check refused (Kafka's codes).
fn producer_error_code(error: &ProducerStateError) -> (ErrorCode, Option<ProtocolErrorKind>) {
    match error {
        ProducerStateError::InvalidProducerEpoch { .. } => (ErrorCode::InvalidProducerEpoch, None),
        ProducerStateError::OutOfOrderSequence { .. } => {
            (ErrorCode::OutOfOrderSequenceNumber, None)
        }
        ProducerStateError::UnknownProducerId { .. } => (ErrorCode::UnknownProducerId, None),
        ProducerStateError::PartialDuplicate { .. } => (
            ErrorCode::InvalidRequest,
            Some(ProtocolErrorKind::InvalidRequest),
        ),
    }
}

/// The error code for a record batch that failed validation.
pub fn batch_error_code(
    error: &sluice_storage::batch::BatchError,
) -> (ErrorCode, Option<ProtocolErrorKind>) {
    match error {
        sluice_storage::batch::BatchError::TooLarge { .. } => (
            ErrorCode::MessageTooLarge,
            Some(ProtocolErrorKind::MessageTooLarge),
        ),
        _ => (
            ErrorCode::CorruptMessage,
            Some(ProtocolErrorKind::CorruptBatch),
        ),
    }
}

/// Counts the protocol-error kind of `error` (if it is bad input) and returns its code.
pub fn count_partition_error(server: &ShardServer, error: &PartitionError) -> ErrorCode {
    let (code, kind) = partition_error_code(error);
    if let Some(kind) = kind {
        server.metrics().protocol_error(kind);
    }
    code
}

fn metadata(server: &ShardServer, request: MetadataRequest) -> MetadataResponse {
    server.shard.with_table(|table| match table.cluster() {
        None => single_node_metadata(server, table, request),
        Some(cluster) => cluster_metadata(server, table, cluster, request),
    })
}

/// The topics a metadata request names, or every topic.
fn requested_topics(table: &ShardTable, request: MetadataRequest) -> Vec<String> {
    match request.topics {
        None => table.topics().map(|(name, _)| name.to_string()).collect(),
        Some(names) => names,
    }
}

fn unknown_topic_meta(name: &str) -> TopicMeta {
    TopicMeta {
        name: name.to_string(),
        error: ErrorCode::UnknownTopicOrPartition.code(),
        partitions: Vec::new(),
        configs: Vec::new(),
    }
}

fn single_node_metadata(
    server: &ShardServer,
    table: &ShardTable,
    request: MetadataRequest,
) -> MetadataResponse {
    let shared = &server.shared;
    let node_id = shared.config.node_id;
    let broker = BrokerMeta {
        node_id,
        host: shared.advertised_host.clone(),
        port: shared.native_addr.port(),
        shard_ports: shared.shard_ports.get().cloned().unwrap_or_default(),
    };
    let topics = requested_topics(table, request)
        .iter()
        .map(|name| topic_meta(table, name, node_id))
        .collect();
    MetadataResponse {
        brokers: vec![broker],
        controller_id: node_id,
        cluster_id: shared.cluster_id.clone(),
        topics,
    }
}

fn topic_meta(table: &ShardTable, name: &str, node_id: i32) -> TopicMeta {
    let Some(assignment) = table.topic(name) else {
        return unknown_topic_meta(name);
    };
    let partitions = assignment
        .owners
        .iter()
        .enumerate()
        .map(|(index, owner)| PartitionMeta {
            partition: i32::try_from(index).unwrap_or(i32::MAX),
            error: ErrorCode::None.code(),
            leader: node_id,
            leader_epoch: SINGLE_NODE_LEADER_EPOCH,
            replicas: vec![node_id],
            isr: vec![node_id],
            shard: owner.0,
        })
        .collect();
    TopicMeta {
        name: name.to_string(),
        error: ErrorCode::None.code(),
        partitions,
        configs: assignment.configs.clone(),
    }
}

/// Metadata from the cluster state this shard last received: every live broker, and for each
/// partition its leader, epoch, replicas, ISR and the shard that owns it on the leader.
fn cluster_metadata(
    server: &ShardServer,
    table: &ShardTable,
    cluster: &ClusterView,
    request: MetadataRequest,
) -> MetadataResponse {
    let brokers = cluster
        .brokers
        .values()
        .map(|broker| BrokerMeta {
            node_id: broker.node_id,
            host: broker.host.clone(),
            port: broker.native_port,
            shard_ports: broker.shard_ports.clone(),
        })
        .collect();
    let topics = requested_topics(table, request)
        .iter()
        .map(|name| cluster_topic_meta(table, cluster, name))
        .collect();
    MetadataResponse {
        brokers,
        controller_id: cluster.controller_id,
        cluster_id: server.shared.cluster_id.clone(),
        topics,
    }
}

fn cluster_topic_meta(table: &ShardTable, cluster: &ClusterView, name: &str) -> TopicMeta {
    let Some(assignment) = table.topic(name) else {
        return unknown_topic_meta(name);
    };
    let partitions = (0..assignment.partition_count())
        .map(|index| {
            let partition = i32::try_from(index).unwrap_or(i32::MAX);
            let info = assignment.replica_info(index);
            let leader = info.map_or(NO_LEADER, |info| info.leader);
            let owner = cluster
                .brokers
                .get(&leader)
                .and_then(|broker| broker.owner_shard(name, partition));
            PartitionMeta {
                partition,
                error: match owner {
                    Some(_) => ErrorCode::None.code(),
                    None => ErrorCode::LeaderNotAvailable.code(),
                },
                leader,
                leader_epoch: info.map_or(-1, |info| info.leader_epoch),
                replicas: info.map(|info| info.replicas.clone()).unwrap_or_default(),
                isr: info.map(|info| info.isr.clone()).unwrap_or_default(),
                shard: owner.map_or(0, |shard| shard.0),
            }
        })
        .collect();
    TopicMeta {
        name: name.to_string(),
        error: ErrorCode::None.code(),
        partitions,
        configs: assignment.configs.clone(),
    }
}

/// Hands a topic change to the control plane and waits for its answer. The request's
/// `timeout_ms` is not used: the answer comes once every shard applied the change (or failed),
/// which on a single node takes as long as opening or deleting the logs.
pub(crate) async fn ask_control(
    server: &ShardServer,
    names: Vec<String>,
    make: impl FnOnce(oneshot::Sender<Vec<TopicResult>>) -> ControlRequest,
) -> Vec<TopicResult> {
    let (reply, answer) = oneshot::channel();
    let failed = |code: ErrorCode, message: &str| {
        names
            .iter()
            .map(|name| topic_result(name, code, Some(message.to_string())))
            .collect()
    };
    if !server.shared.control.try_send(make(reply)) {
        return failed(
            ErrorCode::RequestTimedOut,
            "the control plane is busy or stopping; retry",
        );
    }
    match answer.await {
        Ok(results) => results,
        Err(_) => failed(
            ErrorCode::UnknownServerError,
            "the control plane stopped before answering",
        ),
    }
}

async fn create_topics(server: &ShardServer, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let names = request
        .topics
        .iter()
        .map(|topic| topic.name.clone())
        .collect();
    let results = ask_control(server, names, |reply| ControlRequest::CreateTopics {
        topics: request.topics,
        reply,
    })
    .await;
    CreateTopicsResponse { results }
}

async fn delete_topics(server: &ShardServer, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // The internal topic holds every group's offsets: as in Kafka, clients cannot delete it.
    if request
        .names
        .iter()
        .any(|name| name == sluice_group::CONSUMER_OFFSETS_TOPIC)
    {
        server
            .metrics()
            .protocol_error(ProtocolErrorKind::InvalidRequest);
        let results = request
            .names
            .iter()
            .map(|name| {
                topic_result(
                    name,
                    ErrorCode::InvalidTopic,
                    Some(format!(
                        "{} is internal and cannot be deleted",
                        sluice_group::CONSUMER_OFFSETS_TOPIC
                    )),
                )
            })
            .collect();
        return DeleteTopicsResponse { results };
    }
    let names = request.names.clone();
    let results = ask_control(server, names, |reply| ControlRequest::DeleteTopics {
        names: request.names,
        reply,
    })
    .await;
    DeleteTopicsResponse { results }
}

fn producer_id_failed(code: ErrorCode, message: Option<String>) -> InitProducerIdResponse {
    InitProducerIdResponse {
        error: code.code(),
        message,
        producer_id: -1,
        producer_epoch: -1,
    }
}

/// InitProducerId: a new producer id with epoch 0 from the broker's reserved block (the
/// control plane reserves blocks in the metadata store, so ids are unique in the cluster and
/// never repeat after a restart). Without a transactional id every call gets a new id, as in
/// Kafka; a transactional id (re-initialisation bumping the epoch and fencing the previous
/// instance) belongs to transactions, which are not implemented yet, so it is refused.
pub(crate) async fn init_producer_id(
    server: &ShardServer,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Some(transactional_id) = request.transactional_id {
        server
            .metrics()
            .protocol_error(ProtocolErrorKind::InvalidRequest);
        return producer_id_failed(
            ErrorCode::InvalidRequest,
            Some(format!(
                "transactional id {transactional_id:?}: transactions are not supported yet"
            )),
        );
    }
    let (reply, answer) = oneshot::channel();
    if !server
        .shared
        .control
        .try_send(ControlRequest::AllocateProducerId { reply })
    {
        return producer_id_failed(
            ErrorCode::CoordinatorNotAvailable,
            Some("the control plane is busy or stopping; retry".to_string()),
        );
    }
    match answer.await {
        Ok(Ok(producer_id)) => InitProducerIdResponse {
            error: ErrorCode::None.code(),
            message: None,
            producer_id,
            producer_epoch: 0,
        },
        Ok(Err(message)) => producer_id_failed(ErrorCode::CoordinatorNotAvailable, Some(message)),
        Err(_) => producer_id_failed(
            ErrorCode::CoordinatorNotAvailable,
            Some("the control plane stopped before answering".to_string()),
        ),
    }
}

fn offset_result(
    topic: &str,
    partition: i32,
    code: ErrorCode,
    offset: i64,
) -> ListOffsetsPartitionResult {
    ListOffsetsPartitionResult {
        topic: topic.to_string(),
        partition,
        error: code.code(),
        offset,
        timestamp: -1,
    }
}

/// Kafka's ListOffsets timestamps: -2 asks for the earliest offset, -1 for the latest.
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;

async fn list_offsets(server: &ShardServer, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut partitions = Vec::with_capacity(request.partitions.len());
    for query in request.partitions {
        let offset_query = match query.timestamp {
            EARLIEST_TIMESTAMP => OffsetQuery::Earliest,
            LATEST_TIMESTAMP => OffsetQuery::Latest,
            timestamp if timestamp >= 0 => OffsetQuery::Timestamp(timestamp),
            _ => {
                server
                    .metrics()
                    .protocol_error(ProtocolErrorKind::InvalidRequest);
                partitions.push(offset_result(
                    &query.topic,
                    query.partition,
                    ErrorCode::InvalidRequest,
                    -1,
                ));
                continue;
            }
        };
        let result = server
            .shard
            .list_offset(&query.topic, query.partition, offset_query)
            .await;
        partitions.push(match result {
            // No record at or after the timestamp: Kafka answers offset -1.
            Ok(offset) => offset_result(
                &query.topic,
                query.partition,
                ErrorCode::None,
                offset.unwrap_or(-1),
            ),
            Err(error) => {
                let code = count_partition_error(server, &error);
                offset_result(&query.topic, query.partition, code, -1)
            }
        });
    }
    ListOffsetsResponse { partitions }
}

fn epoch_answer(
    topic: &str,
    partition: i32,
    code: ErrorCode,
    epoch: i32,
    end_offset: i64,
) -> EpochAnswer {
    EpochAnswer {
        topic: topic.to_string(),
        partition,
        error: code.code(),
        leader_epoch: epoch,
        end_offset,
    }
}

async fn epochs(
    server: &ShardServer,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut partitions = Vec::with_capacity(request.partitions.len());
    for query in request.partitions {
        let result = server
            .shard
            .end_offset_for_epoch(&query.topic, query.partition, query.leader_epoch)
            .await;
        partitions.push(match result {
            Ok(Some((epoch, end_offset))) => epoch_answer(
                &query.topic,
                query.partition,
                ErrorCode::None,
                epoch,
                end_offset,
            ),
            // Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET: the log knows no such epoch.
            Ok(None) => epoch_answer(&query.topic, query.partition, ErrorCode::None, -1, -1),
            Err(error) => {
                let code = count_partition_error(server, &error);
                epoch_answer(&query.topic, query.partition, code, -1, -1)
            }
        });
    }
    OffsetForLeaderEpochResponse { partitions }
}
