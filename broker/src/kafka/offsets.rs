//! ListOffsets and OffsetForLeaderEpoch.
//!
//! ListOffsets answers the log start offset for EARLIEST (-2), the high watermark for LATEST
//! (-1; also the last stable offset, since there are no transactions), and for a timestamp the
//! offset and timestamp of the first record whose timestamp is at or after it, as Kafka does:
//! the log's time index finds the first batch whose max timestamp reaches it, and that batch's
//! records are decoded (any codec) to find the record. No such record: offset -1.

use std::rc::Rc;

use bytes::Bytes;
use sluice_kafka::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use sluice_kafka::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use sluice_kafka::kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use sluice_kafka::kafka_protocol::ResponseError;
use sluice_kafka::RequestHeader;
use sluice_shard::partition::SINGLE_NODE_LEADER_EPOCH;
use sluice_shard::{OffsetQuery, PartitionError, ProtocolErrorKind, Route};
use sluice_storage::batch::{decode_records_shared, BatchHeader};

use super::dispatch::{respond, Answer};
use super::produce::partition_error_code;
use crate::server::ShardServer;

/// ListOffsets' special timestamps.
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;
/// Kafka's "unknown" timestamp and epoch in answers.
const NO_TIMESTAMP: i64 = -1;
const NO_EPOCH: i32 = -1;
/// First ListOffsets version whose answer carries the leader epoch.
const FIRST_EPOCH_VERSION: i16 = 4;

/// ListOffsets.
pub async fn list_offsets(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &ListOffsetsRequest,
) -> Answer {
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut failed = false;
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let index = wanted.partition_index;
            let answer = ListOffsetsPartitionResponse::default().with_partition_index(index);
            let answer = match list_one(server, name, index, wanted.timestamp).await {
                Ok((offset, timestamp)) if header.api_version >= FIRST_EPOCH_VERSION => answer
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    .with_leader_epoch(leader_epoch(server, name, index)),
                Ok((offset, timestamp)) => answer.with_offset(offset).with_timestamp(timestamp),
                Err(code) => {
                    failed = true;
                    answer
                        .with_error_code(code)
                        .with_offset(-1)
                        .with_timestamp(NO_TIMESTAMP)
                }
            };
            partitions.push(answer);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    respond(
        header,
        &ListOffsetsResponse::default().with_topics(topics),
        failed,
    )
}

/// The offset and timestamp one query answers, or the error code.
async fn list_one(
    server: &ShardServer,
    topic: &str,
    index: i32,
    timestamp: i64,
) -> Result<(i64, i64), i16> {
    let query = match timestamp {
        EARLIEST_TIMESTAMP => OffsetQuery::Earliest,
        LATEST_TIMESTAMP => OffsetQuery::Latest,
        timestamp if timestamp >= 0 => OffsetQuery::Timestamp(timestamp),
        _ => {
            // -3 (max timestamp) and below need ListOffsets v7+, which is not advertised.
            server
                .metrics()
                .protocol_error(ProtocolErrorKind::InvalidRequest);
            return Err(ResponseError::InvalidRequest.code());
        }
    };
    let found = server
        .shard
        .list_offset(topic, index, query)
        .await
        .map_err(|error| partition_error_code(server, &error))?;
    match (query, found) {
        (OffsetQuery::Timestamp(target), Some(batch_offset)) => {
            record_at_or_after(server, topic, index, batch_offset, target)
                .await
                .map_err(|error| partition_error_code(server, &error))
        }
        (_, Some(offset)) => Ok((offset, NO_TIMESTAMP)),
        (_, None) => Ok((-1, NO_TIMESTAMP)),
    }
}

/// The first record at or after `batch_offset` whose timestamp reaches `target`: its offset and
/// timestamp. The time index points at the batch; the record is found inside it.
async fn record_at_or_after(
    server: &ShardServer,
    topic: &str,
    index: i32,
    batch_offset: i64,
    target: i64,
) -> Result<(i64, i64), PartitionError> {
    // A budget of one byte reads exactly one whole batch.
    let bytes = read_copy(server, topic, index, batch_offset, 1).await?;
    let Ok(header) = BatchHeader::parse(&bytes) else {
        return Ok((batch_offset, NO_TIMESTAMP));
    };
    let batch = bytes.slice(..header.total_bytes().min(bytes.len()));
    let found = decode_records_shared(&batch).ok().and_then(|records| {
        records
            .iter()
            .find(|record| record.offset >= batch_offset && record.timestamp >= target)
            .map(|record| (record.offset, record.timestamp))
    });
    Ok(found.unwrap_or((batch_offset, header.max_timestamp)))
}

/// Copies whole batches of a partition from `offset`, wherever it lives.
async fn read_copy(
    server: &ShardServer,
    topic: &str,
    index: i32,
    offset: i64,
    max_bytes: usize,
) -> Result<Bytes, PartitionError> {
    match server.shard.route(topic, index) {
        Route::Local(partition) => partition.read_bytes(offset, max_bytes).await,
        Route::Remote(owner) => server
            .shard
            .read_remote(owner, topic, index, offset, max_bytes)
            .await
            .map(|read| read.records),
        Route::NotHosted => Err(PartitionError::not_leader(topic, index, -1)),
        Route::Unknown => Err(PartitionError::unknown(topic, index)),
    }
}

/// The leader epoch the shard table records for a partition.
fn leader_epoch(server: &ShardServer, topic: &str, index: i32) -> i32 {
    server.shard.with_table(|table| {
        if table.cluster().is_none() {
            return SINGLE_NODE_LEADER_EPOCH;
        }
        usize::try_from(index)
            .ok()
            .and_then(|index| table.topic(topic)?.replica_info(index))
            .map_or(NO_EPOCH, |info| info.leader_epoch)
    })
}

/// OffsetForLeaderEpoch: the end offset of the asked epoch (KIP-101), as the native protocol
/// answers it.
pub async fn epochs(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &OffsetForLeaderEpochRequest,
) -> Answer {
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut failed = false;
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let answer = EpochEndOffset::default().with_partition(wanted.partition);
            let result = server
                .shard
                .end_offset_for_epoch(name, wanted.partition, wanted.leader_epoch)
                .await;
            partitions.push(match result {
                Ok(Some((epoch, end_offset))) => {
                    answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                }
                Ok(None) => answer.with_leader_epoch(NO_EPOCH).with_end_offset(-1),
                Err(error) => {
                    failed = true;
                    answer
                        .with_error_code(partition_error_code(server, &error))
                        .with_leader_epoch(NO_EPOCH)
                        .with_end_offset(-1)
                }
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
    respond(header, &response, failed)
}
