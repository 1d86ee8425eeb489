//! Produce on the Kafka port, with the native protocol's semantics (see
//! `server/produce.rs`): acks=1 is answered once the batches are in the leader's log, acks=-1
//! once the high watermark passes them (refused up front with NOT_ENOUGH_REPLICAS below
//! `min.insync.replicas`), acks=0 gets no answer and a failure closes the connection.
//!
//! Every partition's record batches are appended as the client sent them, on the shard that
//! owns the partition: the log checks each batch's header and CRC, stamps the base offset and
//! leader epoch in place (outside the CRC) and writes the client's bytes; nothing is
//! decompressed or recompressed, whatever the codec. A v0/v1 message set (magic 0 or 1, which
//! Kafka 4.0 no longer accepts either) is refused with INVALID_RECORD, a bad CRC with
//! CORRUPT_MESSAGE. Transactions are not supported: a transactional produce is refused.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use sluice_kafka::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use sluice_kafka::kafka_protocol::messages::{ProduceResponse, TopicName};
use sluice_kafka::kafka_protocol::protocol::StrBytes;
use sluice_kafka::kafka_protocol::ResponseError;
use sluice_kafka::{ProduceRequest, RequestHeader};
use sluice_shard::{PartitionError, ProtocolErrorKind};
use sluice_storage::batch::BatchError;

use super::dispatch::{respond, Answer};
use crate::server::{handlers, ShardServer};

const ACKS_NONE: i16 = 0;
const ACKS_LEADER: i16 = 1;
const ACKS_ALL: i16 = -1;

/// The outcome for one partition.
struct PartitionOutcome {
    index: i32,
    error_code: i16,
    base_offset: i64,
    log_start_offset: i64,
    message: Option<String>,
}

impl PartitionOutcome {
    fn failed(index: i32, error: ResponseError, message: impl Into<String>) -> Self {
        PartitionOutcome {
            index,
            error_code: error.code(),
            base_offset: -1,
            log_start_offset: -1,
            message: Some(message.into()),
        }
    }
}

/// Handles one Produce request.
pub async fn handle(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: ProduceRequest,
) -> Answer {
    server.metrics().produce_requests.increment();
    let acks = request.acks;
    let refusal = if !matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL) {
        Some((
            ResponseError::InvalidRequiredAcks,
            format!("acks must be 0, 1 or -1, got {acks}"),
        ))
    } else if request.transactional_id.is_some() {
        Some((
            ResponseError::InvalidRequest,
            "transactions are not supported by this broker".to_string(),
        ))
    } else {
        None
    };
    let acks_all = (acks == ACKS_ALL)
        .then(|| Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0)));
    // Every partition of every topic is appended concurrently, each on its owning shard.
    let mut started = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let appends: Vec<Started> = topic
            .partitions
            .into_iter()
            .map(|partition| match &refusal {
                Some((error, message)) => {
                    server
                        .metrics()
                        .protocol_error(ProtocolErrorKind::InvalidRequest);
                    Started::Done(PartitionOutcome::failed(partition.index, *error, message))
                }
                None => {
                    let server = server.clone();
                    let name = topic.name.clone();
                    Started::Running(glommio::spawn_local(async move {
                        append_one(&server, &name, partition.index, partition.records, acks_all)
                            .await
                    }))
                }
            })
            .collect();
        started.push((topic.name, appends));
    }
    let mut topics = Vec::with_capacity(started.len());
    for (name, appends) in started {
        let mut outcomes = Vec::with_capacity(appends.len());
        for append in appends {
            outcomes.push(match append {
                Started::Done(outcome) => outcome,
                Started::Running(task) => task.await,
            });
        }
        topics.push((name, outcomes));
    }
    let failed = topics
        .iter()
        .any(|(_, outcomes)| outcomes.iter().any(|outcome| outcome.error_code != 0));
    if acks == ACKS_NONE {
        return if failed {
            Answer::Close
        } else {
            Answer::Silent
        };
    }
    respond(header, &response(topics), failed)
}

/// A partition's append: answered without appending, or running on its task.
enum Started {
    Done(PartitionOutcome),
    Running(glommio::Task<PartitionOutcome>),
}

async fn append_one(
    server: &ShardServer,
    topic: &str,
    index: i32,
    records: Option<BytesMut>,
    acks_all: Option<Duration>,
) -> PartitionOutcome {
    let Some(batches) = records.filter(|records| !records.is_empty()) else {
        server
            .metrics()
            .protocol_error(ProtocolErrorKind::InvalidRequest);
        return PartitionOutcome::failed(index, ResponseError::InvalidRequest, "no record batches");
    };
    let length = batches.len() as u64;
    match server
        .shard
        .append_acked(topic, index, batches, acks_all)
        .await
    {
        Ok(outcome) => {
            server.metrics().bytes_in.add(length);
            PartitionOutcome {
                index,
                error_code: 0,
                base_offset: outcome.base_offset,
                log_start_offset: outcome.state.log_start_offset,
                message: None,
            }
        }
        Err(error) => PartitionOutcome {
            index,
            error_code: partition_error_code(server, &error),
            base_offset: -1,
            log_start_offset: -1,
            message: Some(error.to_string()),
        },
    }
}

/// Kafka's error code for a partition error, counting bad input. Differs from the native
/// protocol's mapping only for old message formats, which Kafka answers INVALID_RECORD.
pub fn partition_error_code(server: &ShardServer, error: &PartitionError) -> i16 {
    if let PartitionError::InvalidBatch {
        source: BatchError::BadMagic(_),
        ..
    } = error
    {
        server
            .metrics()
            .protocol_error(ProtocolErrorKind::CorruptBatch);
        return ResponseError::InvalidRecord.code();
    }
    handlers::count_partition_error(server, error).code()
}

fn response(topics: Vec<(String, Vec<PartitionOutcome>)>) -> ProduceResponse {
    let responses = topics
        .into_iter()
        .map(|(name, outcomes)| {
            let partitions = outcomes
                .into_iter()
                .map(|outcome| {
                    PartitionProduceResponse::default()
                        .with_index(outcome.index)
                        .with_error_code(outcome.error_code)
                        .with_base_offset(outcome.base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(outcome.log_start_offset)
                        .with_error_message(outcome.message.map(StrBytes::from_string))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
