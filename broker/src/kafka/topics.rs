//! Topic administration on the Kafka port: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, IncrementalAlterConfigs, ElectLeaders (preferred). Topic changes go to the control plane, as on the
//! native protocol, and are answered once every shard applied them.
//!
//! Differences from Kafka, each answered with a clear error rather than ignored: manual replica
//! assignments are refused (placement is Sluice's own, in CreateTopics and CreatePartitions),
//! IncrementalAlterConfigs does SET and DELETE of topic configs only, and a default partition count or
//! replication factor (-1) means 1, as Kafka's `num.partitions` and
//! `default.replication.factor` defaults do.

use std::rc::Rc;

use sluice_kafka::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use sluice_kafka::kafka_protocol::messages::create_topics_request::CreatableTopic;
use sluice_kafka::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use sluice_kafka::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use sluice_kafka::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use sluice_kafka::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use sluice_kafka::kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use sluice_kafka::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use sluice_kafka::kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    ElectLeadersRequest, ElectLeadersResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, TopicName,
};
use sluice_kafka::kafka_protocol::protocol::StrBytes;
use sluice_kafka::kafka_protocol::ResponseError;
use sluice_kafka::RequestHeader;
use sluice_net::{ElectionResult, NewPartitions, NewTopic, TopicConfigChange, TopicResult};
use sluice_shard::partition::{topic_log_config, MIN_INSYNC_REPLICAS_KEY};
use sluice_storage::LogConfig;

use super::dispatch::{respond, Answer};
use crate::control::{check_topic_request, ControlRequest};
use crate::server::handlers::ask_control;
use crate::server::ShardServer;

/// Kafka's config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's config sources (DescribeConfigs).
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;

/// First CreateTopics version whose answer repeats the partition count, replication factor and
/// configs of a created topic.
const FIRST_CREATE_DETAILS_VERSION: i16 = 5;

/// A partition count or replication factor of -1 asks for the broker default.
const USE_DEFAULT: i32 = -1;
/// The default partition count and replication factor (Kafka's defaults too).
const PARTITIONS_DEFAULT: i32 = 1;
const REPLICATION_FACTOR_DEFAULT: i16 = 1;

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// The topic a CreateTopics entry asks for, or why it cannot be asked for.
fn new_topic(topic: &CreatableTopic) -> Result<NewTopic, (ResponseError, String)> {
    if !topic.assignments.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignments are not supported; Sluice places replicas itself"
                .to_string(),
        ));
    }
    let partitions = match topic.num_partitions {
        USE_DEFAULT => PARTITIONS_DEFAULT,
        count => count,
    };
    let replication_factor = match topic.replication_factor {
        -1 => REPLICATION_FACTOR_DEFAULT,
        factor => factor,
    };
    let configs = topic
        .configs
        .iter()
        .filter_map(|config| {
            config
                .value
                .as_ref()
                .map(|value| (config.name.as_str().to_string(), value.as_str().to_string()))
        })
        .collect();
    Ok(NewTopic {
        name: topic.name.0.as_str().to_string(),
        partitions,
        replication_factor,
        configs,
    })
}

/// CreateTopics (validate_only checks everything a creation would without creating).
pub async fn create_topics(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: CreateTopicsRequest,
) -> Answer {
    let mut results: Vec<Option<TopicResult>> = Vec::with_capacity(request.topics.len());
    let mut creatable = Vec::new();
    for topic in &request.topics {
        match new_topic(topic) {
            Err((error, message)) => results.push(Some(TopicResult {
                name: topic.name.0.as_str().to_string(),
                error: error.code(),
                message: Some(message),
            })),
            Ok(new) if request.validate_only => results.push(Some(validate(server, &new))),
            Ok(new) => {
                results.push(None);
                creatable.push(new);
            }
        }
    }
    let created = if creatable.is_empty() {
        Vec::new()
    } else {
        let names = creatable.iter().map(|topic| topic.name.clone()).collect();
        ask_control(server, names, |reply| ControlRequest::CreateTopics {
            topics: creatable,
            reply,
        })
        .await
    };
    let mut created = created.into_iter();
    let results: Vec<TopicResult> = results
        .into_iter()
        .filter_map(|result| result.or_else(|| created.next()))
        .collect();
    let failed = results.iter().any(|result| result.error != 0);
    let topics = results
        .iter()
        .zip(&request.topics)
        .map(|(result, asked)| creatable_result(server, header.api_version, result, asked))
        .collect();
    respond(
        header,
        &CreateTopicsResponse::default().with_topics(topics),
        failed,
    )
}

/// What a validate-only creation answers: the same checks as a creation.
fn validate(server: &ShardServer, topic: &NewTopic) -> TopicResult {
    let shared = &server.shared;
    if let Err(refused) = check_topic_request(
        topic,
        shared.config.limits.partitions_max,
        &shared.log_config,
    ) {
        return refused;
    }
    if server
        .shard
        .with_table(|table| table.topic(&topic.name).is_some())
    {
        return TopicResult {
            name: topic.name.clone(),
            error: ResponseError::TopicAlreadyExists.code(),
            message: Some(format!("topic {} already exists", topic.name)),
        };
    }
    TopicResult {
        name: topic.name.clone(),
        error: 0,
        message: None,
    }
}

fn creatable_result(
    server: &ShardServer,
    version: i16,
    result: &TopicResult,
    asked: &CreatableTopic,
) -> CreatableTopicResult {
    let topic_id = server
        .shard
        .with_table(|table| table.topic_id(&result.name))
        .unwrap_or_default();
    let answer = CreatableTopicResult::default()
        .with_name(TopicName(str_bytes(&result.name)))
        .with_topic_id(topic_id)
        .with_error_code(result.error)
        .with_error_message(result.message.as_deref().map(str_bytes));
    if result.error != 0 || version < FIRST_CREATE_DETAILS_VERSION {
        return answer.with_configs(None);
    }
    let partitions = match asked.num_partitions {
        USE_DEFAULT => PARTITIONS_DEFAULT,
        count => count,
    };
    let factor = match asked.replication_factor {
        -1 => REPLICATION_FACTOR_DEFAULT,
        factor => factor,
    };
    let overrides: Vec<(String, String)> = asked
        .configs
        .iter()
        .filter_map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.as_str().to_string(), v.as_str().to_string()))
        })
        .collect();
    let configs = topic_entries(server, &overrides)
        .into_iter()
        .map(|entry| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(entry.name))
                .with_value(Some(StrBytes::from_string(entry.value)))
                .with_config_source(entry.source)
        })
        .collect();
    answer
        .with_num_partitions(partitions)
        .with_replication_factor(factor)
        .with_configs(Some(configs))
}

/// The name of the topic whose current incarnation is `topic_id`.
fn topic_named_by(server: &ShardServer, topic_id: uuid::Uuid) -> Option<String> {
    if topic_id.is_nil() {
        return None;
    }
    server.shard.with_table(|table| {
        table
            .topics()
            .find(|(_, assignment)| assignment.topic_id == topic_id)
            .map(|(name, _)| name.to_string())
    })
}

/// DeleteTopics, by name or (v6) by topic id: an id that names no current topic incarnation is
/// UNKNOWN_TOPIC_ID.
pub async fn delete_topics(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &DeleteTopicsRequest,
) -> Answer {
    let mut names: Vec<String> = request
        .topic_names
        .iter()
        .map(|name| name.0.as_str().to_string())
        .collect();
    let mut unknown_ids = Vec::new();
    for topic in &request.topics {
        match &topic.name {
            Some(name) => names.push(name.0.as_str().to_string()),
            None => match topic_named_by(server, topic.topic_id) {
                Some(name) => names.push(name),
                None => unknown_ids.push(topic.topic_id),
            },
        }
    }
    let results = if names.is_empty() {
        Vec::new()
    } else {
        ask_control(server, names.clone(), |reply| {
            ControlRequest::DeleteTopics { names, reply }
        })
        .await
    };
    let mut responses: Vec<DeletableTopicResult> = results
        .iter()
        .map(|result| {
            DeletableTopicResult::default()
                .with_name(Some(TopicName(str_bytes(&result.name))))
                .with_error_code(result.error)
                .with_error_message(result.message.as_deref().map(str_bytes))
        })
        .collect();
    responses.extend(unknown_ids.into_iter().map(|id| {
        DeletableTopicResult::default()
            .with_name(None)
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code())
    }));
    let failed = responses.iter().any(|response| response.error_code != 0);
    respond(
        header,
        &DeleteTopicsResponse::default().with_responses(responses),
        failed,
    )
}

/// CreatePartitions: grows each topic to its new count through the control plane, as the
/// native api does (new partitions placed by Sluice; manual assignments are refused). With
/// `validate_only`, the same checks against this broker's table, without a change.
pub async fn create_partitions(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &CreatePartitionsRequest,
) -> Answer {
    let mut refused: Vec<Option<TopicResult>> = Vec::with_capacity(request.topics.len());
    let mut asked = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str().to_string();
        let refusal = if topic.assignments.is_some() {
            Some(result_of(
                &name,
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignments are not supported; Sluice places replicas itself",
            ))
        } else if request.validate_only {
            Some(validate_partitions(server, &name, topic.count))
        } else {
            None
        };
        if refusal.is_none() {
            asked.push(NewPartitions {
                name,
                count: topic.count,
            });
        }
        refused.push(refusal);
    }
    let done = if asked.is_empty() {
        Vec::new()
    } else {
        let names = asked.iter().map(|topic| topic.name.clone()).collect();
        ask_control(server, names, |reply| ControlRequest::CreatePartitions {
            topics: asked,
            reply,
        })
        .await
    };
    let mut done = done.into_iter();
    let results: Vec<CreatePartitionsTopicResult> = refused
        .into_iter()
        .filter_map(|result| result.or_else(|| done.next()))
        .map(|result| {
            CreatePartitionsTopicResult::default()
                .with_name(TopicName(str_bytes(&result.name)))
                .with_error_code(result.error)
                .with_error_message(result.message.as_deref().map(str_bytes))
        })
        .collect();
    let failed = results.iter().any(|result| result.error_code != 0);
    respond(
        header,
        &CreatePartitionsResponse::default().with_results(results),
        failed,
    )
}

fn result_of(name: &str, error: ResponseError, message: &str) -> TopicResult {
    TopicResult {
        name: name.to_string(),
        error: error.code(),
        message: Some(message.to_string()),
    }
}

/// What a validate-only CreatePartitions answers for one topic, from this broker's table.
fn validate_partitions(server: &ShardServer, name: &str, count: i32) -> TopicResult {
    let current = server
        .shard
        .with_table(|table| table.topic(name).map(|topic| topic.owners.len()));
    let partitions_max = server.shared.config.limits.partitions_max;
    match current {
        None => result_of(
            name,
            ResponseError::UnknownTopicOrPartition,
            &format!("topic {name} does not exist"),
        ),
        Some(now) if i64::from(count) <= i64::try_from(now).unwrap_or(i64::MAX) => result_of(
            name,
            ResponseError::InvalidPartitions,
            &format!("topic {name} has {now} partitions; the count can only grow"),
        ),
        Some(_) if count > partitions_max => result_of(
            name,
            ResponseError::InvalidPartitions,
            &format!("partitions must be at most {partitions_max} (partitions_max)"),
        ),
        Some(_) => TopicResult {
            name: name.to_string(),
            error: 0,
            message: None,
        },
    }
}

/// One config entry as DescribeConfigs shows it.
struct ConfigEntry {
    name: &'static str,
    value: String,
    source: i8,
    config_type: i8,
    read_only: bool,
}

fn optional_limit(value: Option<u64>) -> String {
    value.map_or("-1".to_string(), |value| value.to_string())
}

/// Every config of a topic with `overrides`: the effective value and where it comes from.
fn topic_entries(server: &ShardServer, overrides: &[(String, String)]) -> Vec<ConfigEntry> {
    let base = &server.shared.log_config;
    let effective = topic_log_config(base, overrides).unwrap_or_else(|_| base.clone());
    let source = |key: &str| {
        if overrides.iter().any(|(name, _)| name == key) {
            SOURCE_TOPIC_CONFIG
        } else {
            SOURCE_DEFAULT_CONFIG
        }
    };
    let min_insync = overrides
        .iter()
        .rev()
        .find(|(key, _)| key == MIN_INSYNC_REPLICAS_KEY)
        .map_or_else(
            || server.shared.config.cluster.min_insync_replicas.to_string(),
            |(_, value)| value.clone(),
        );
    let entry = |name: &'static str, value: String, config_type: i8| ConfigEntry {
        name,
        value,
        source: source(name),
        config_type,
        read_only: false,
    };
    vec![
        entry(
            "retention.ms",
            optional_limit(effective.retention_ms),
            TYPE_LONG,
        ),
        entry(
            "retention.bytes",
            optional_limit(effective.retention_bytes),
            TYPE_LONG,
        ),
        entry(
            "segment.bytes",
            effective.segment_bytes_max.to_string(),
            TYPE_INT,
        ),
        entry(
            "segment.ms",
            effective.segment_ms_max.to_string(),
            TYPE_LONG,
        ),
        entry(
            "max.message.bytes",
            effective.batch_bytes_max.to_string(),
            TYPE_INT,
        ),
        entry(MIN_INSYNC_REPLICAS_KEY, min_insync, TYPE_INT),
        fixed("cleanup.policy", "delete", TYPE_STRING),
        fixed("compression.type", "producer", TYPE_STRING),
    ]
}

/// A config Sluice does not let a topic change.
fn fixed(name: &'static str, value: &str, config_type: i8) -> ConfigEntry {
    ConfigEntry {
        name,
        value: value.to_string(),
        source: SOURCE_DEFAULT_CONFIG,
        config_type,
        read_only: true,
    }
}

/// The broker-wide settings a Kafka tool may ask about, under Kafka's names.
fn broker_entries(server: &ShardServer) -> Vec<ConfigEntry> {
    let base: &LogConfig = &server.shared.log_config;
    let config = &server.shared.config;
    let entry = |name: &'static str, value: String, config_type: i8| ConfigEntry {
        name,
        value,
        source: SOURCE_STATIC_BROKER_CONFIG,
        config_type,
        read_only: true,
    };
    vec![
        entry("broker.id", config.node_id.to_string(), TYPE_INT),
        entry(
            "log.retention.ms",
            optional_limit(base.retention_ms),
            TYPE_LONG,
        ),
        entry(
            "log.retention.bytes",
            optional_limit(base.retention_bytes),
            TYPE_LONG,
        ),
        entry(
            "log.segment.bytes",
            base.segment_bytes_max.to_string(),
            TYPE_INT,
        ),
        entry(
            "message.max.bytes",
            base.batch_bytes_max.to_string(),
            TYPE_INT,
        ),
        entry(
            "min.insync.replicas",
            config.cluster.min_insync_replicas.to_string(),
            TYPE_INT,
        ),
        entry("num.partitions", PARTITIONS_DEFAULT.to_string(), TYPE_INT),
        entry(
            "default.replication.factor",
            REPLICATION_FACTOR_DEFAULT.to_string(),
            TYPE_INT,
        ),
        entry(
            "auto.create.topics.enable",
            "false".to_string(),
            TYPE_BOOLEAN,
        ),
    ]
}

/// DescribeConfigs for topics and for this broker.
pub fn describe_configs(
    server: &ShardServer,
    header: &RequestHeader,
    request: &DescribeConfigsRequest,
) -> Answer {
    let mut failed = false;
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.as_str();
            let answer = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource_entries(server, resource.resource_type, name) {
                Ok(entries) => entries,
                Err((error, message)) => {
                    failed = true;
                    return answer
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message)));
                }
            };
            let wanted = resource.configuration_keys.as_ref();
            let configs = entries
                .into_iter()
                .filter(|entry| {
                    wanted.is_none_or(|keys| keys.iter().any(|key| key.as_str() == entry.name))
                })
                .map(|entry| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(entry.name))
                        .with_value(Some(StrBytes::from_string(entry.value)))
                        .with_read_only(entry.read_only)
                        .with_config_source(entry.source)
                        .with_config_type(entry.config_type)
                })
                .collect();
            answer.with_configs(configs)
        })
        .collect();
    respond(
        header,
        &DescribeConfigsResponse::default().with_results(results),
        failed,
    )
}

type Refusal = (ResponseError, String);

fn resource_entries(
    server: &ShardServer,
    kind: i8,
    name: &str,
) -> Result<Vec<ConfigEntry>, Refusal> {
    match kind {
        RESOURCE_TOPIC => server.shard.with_table(|table| {
            table
                .topic(name)
                .map(|assignment| topic_entries(server, &assignment.configs))
                .ok_or_else(|| {
                    (
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )
                })
        }),
        RESOURCE_BROKER if name.is_empty() || name == server.shared.config.node_id.to_string() => {
            Ok(broker_entries(server))
        }
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest,
            format!("broker {name} is not this broker; ask it directly"),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("config resource type {other} is not supported (topics 2 and brokers 4 are)"),
        )),
    }
}

/// Kafka's config operations (IncrementalAlterConfigs).
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;

/// One IncrementalAlterConfigs resource as a topic config change, or why it cannot be one.
fn config_change(resource: &AlterConfigsResource) -> Result<TopicConfigChange, Refusal> {
    let name = resource.resource_name.as_str();
    if resource.resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            format!(
                "only topic configs (resource type {RESOURCE_TOPIC}) can be altered; broker settings are static"
            ),
        ));
    }
    let mut change = TopicConfigChange {
        name: name.to_string(),
        set: Vec::new(),
        delete: Vec::new(),
    };
    for config in &resource.configs {
        let key = config.name.as_str().to_string();
        match (config.config_operation, &config.value) {
            (OPERATION_SET, Some(value)) => change.set.push((key, value.as_str().to_string())),
            (OPERATION_SET, None) => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("config {key}: SET needs a value"),
                ))
            }
            (OPERATION_DELETE, _) => change.delete.push(key),
            (other, _) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!(
                        "config {key}: operation {other} is not supported (SET 0 and DELETE 1 are)"
                    ),
                ))
            }
        }
    }
    Ok(change)
}

/// IncrementalAlterConfigs: SET and DELETE of topic configs, through the control plane as the
/// native AlterTopicConfigs; an invalid entry leaves its topic unchanged. `validate_only` runs
/// the checks against this broker's table without a change.
pub async fn alter_configs(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &IncrementalAlterConfigsRequest,
) -> Answer {
    let mut answers: Vec<Option<TopicResult>> = Vec::with_capacity(request.resources.len());
    let mut changes = Vec::new();
    for resource in &request.resources {
        let name = resource.resource_name.as_str();
        match config_change(resource) {
            Err((error, message)) => answers.push(Some(result_of(name, error, &message))),
            Ok(change) if request.validate_only => {
                answers.push(Some(validate_change(server, &change)));
            }
            Ok(change) => {
                answers.push(None);
                changes.push(change);
            }
        }
    }
    let done = if changes.is_empty() {
        Vec::new()
    } else {
        let names = changes.iter().map(|change| change.name.clone()).collect();
        ask_control(server, names, |reply| ControlRequest::AlterTopicConfigs {
            changes,
            reply,
        })
        .await
    };
    let mut done = done.into_iter();
    let responses: Vec<AlterConfigsResourceResponse> = answers
        .into_iter()
        .filter_map(|answer| answer.or_else(|| done.next()))
        .zip(&request.resources)
        .map(|(result, resource)| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(result.error)
                .with_error_message(result.message.as_deref().map(str_bytes))
        })
        .collect();
    let failed = responses.iter().any(|response| response.error_code != 0);
    respond(
        header,
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
        failed,
    )
}

/// What a validate-only config change answers, from this broker's table.
fn validate_change(server: &ShardServer, change: &TopicConfigChange) -> TopicResult {
    let topic = server.shard.with_table(|table| {
        table
            .topic(&change.name)
            .map(|topic| (topic.configs.clone(), topic.replication_factor))
    });
    let Some((configs, replication_factor)) = topic else {
        return result_of(
            &change.name,
            ResponseError::UnknownTopicOrPartition,
            &format!("topic {} does not exist", change.name),
        );
    };
    let mut merged: std::collections::BTreeMap<String, String> = configs.into_iter().collect();
    for key in &change.delete {
        merged.remove(key);
    }
    merged.extend(change.set.iter().cloned());
    let as_new = NewTopic {
        name: change.name.clone(),
        partitions: 1,
        replication_factor,
        configs: merged.into_iter().collect(),
    };
    check_topic_request(&as_new, i32::MAX, &server.shared.log_config).map_or_else(
        |refused| refused,
        |()| TopicResult {
            name: change.name.clone(),
            error: 0,
            message: None,
        },
    )
}

/// Kafka's election types (ElectLeaders v1+; v0 is always preferred).
const ELECTION_PREFERRED: i8 = 0;

/// ElectLeaders: a preferred election through the control plane, as the native api does, for
/// every partition (no topic list) or the listed ones. Unclean elections are refused: Sluice
/// never elects a replica outside the ISR.
pub async fn elect_leaders(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &ElectLeadersRequest,
) -> Answer {
    if header.api_version >= 1 && request.election_type != ELECTION_PREFERRED {
        let answer =
            ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        return respond(header, &answer, true);
    }
    let asked: Option<Vec<(String, Vec<i32>)>> = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.topic.0.as_str().to_string(), topic.partitions.clone()))
            .collect()
    });
    let mut request_error = 0;
    let results = match &asked {
        None => {
            let answer = crate::server::topic_admin::elect_leaders(
                server,
                sluice_net::ElectLeadersRequest { topic: None },
            )
            .await;
            request_error = answer.error;
            answer.partitions
        }
        Some(topics) => {
            let mut results = Vec::new();
            for (topic, partitions) in topics {
                results.extend(elect_partitions(server, topic, partitions).await);
            }
            results
        }
    };
    let failed = request_error != 0 || results.iter().any(|result| result.error != 0);
    let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> =
        std::collections::BTreeMap::new();
    for result in results {
        by_topic.entry(result.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(result.partition)
                .with_error_code(result.error)
                .with_error_message(result.message.map(StrBytes::from_string)),
        );
    }
    let replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partition_result(partitions)
        })
        .collect();
    let mut answer =
        ElectLeadersResponse::default().with_replica_election_results(replica_election_results);
    if header.api_version >= 1 {
        answer.error_code = request_error;
    }
    respond(header, &answer, failed)
}

/// The election of the listed partitions of `topic`; a partition the topic does not have is
/// UNKNOWN_TOPIC_OR_PARTITION.
async fn elect_partitions(
    server: &ShardServer,
    topic: &str,
    partitions: &[i32],
) -> Vec<ElectionResult> {
    let answer = crate::server::topic_admin::elect_leaders(
        server,
        sluice_net::ElectLeadersRequest {
            topic: Some(topic.to_string()),
        },
    )
    .await;
    partitions
        .iter()
        .map(|partition| {
            answer
                .partitions
                .iter()
                .find(|result| result.partition == *partition)
                .cloned()
                .unwrap_or_else(|| ElectionResult {
                    topic: topic.to_string(),
                    partition: *partition,
                    error: if answer.error != 0 {
                        answer.error
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    },
                    message: answer
                        .message
                        .clone()
                        .or_else(|| Some(format!("{topic} has no partition {partition}"))),
                })
        })
        .collect()
}
