//! Fetch on the Kafka port: whole batches from each requested partition, long-polling while
//! fewer than `min_bytes` are available, answered with our own encoder so each partition's
//! records go out as a file range spliced from the log (or tail-cache memory) between the small
//! per-partition headers, as on the native protocol.
//!
//! Semantics as Kafka's: consumers read from the leader, below the high watermark; the wait is
//! `max_wait_ms` capped by `fetch_max_wait_ms_max`; `max_bytes` bounds the whole response and
//! `partition_max_bytes` each partition, but the first batch of a partition is returned whole
//! even when larger, so a consumer always progresses. read_committed reads the same records
//! as read_uncommitted, since there are no transactions (the last stable offset is the high
//! watermark). Incremental fetch sessions (KIP-227) are not kept: every answer carries session
//! id 0, which tells the client to send full fetch requests; a request naming a session gets
//! FETCH_SESSION_ID_NOT_FOUND. Replica fetches belong to the native protocol: a replica id in a
//! Kafka Fetch is read as a consumer.

use std::rc::Rc;
use std::time::{Duration, Instant};

use sluice_kafka::kafka_protocol::messages::FetchRequest;
use sluice_kafka::kafka_protocol::ResponseError;
use sluice_kafka::{FetchPartitionAnswer, FetchResponseBuilder, RequestHeader};
use sluice_net::PayloadPart;
use sluice_shard::{PartitionError, Reader, Visibility};

use super::dispatch::Answer;
use super::produce::partition_error_code;
use crate::server::fetch::{read_partition, wait_for_change};
use crate::server::ShardServer;

/// Isolation level read_committed.
const READ_COMMITTED: i8 = 1;
/// "No fetch session" in requests and answers.
const NO_SESSION: i32 = 0;
/// Fetch versions before this one carry no response-wide byte limit.
const FIRST_MAX_BYTES_VERSION: i16 = 3;

/// One pass over the requested partitions.
struct Round {
    /// Per topic of the request, its partitions' answers.
    topics: Vec<Vec<FetchPartitionAnswer>>,
    bytes: usize,
    failed: bool,
    /// (topic, partition, high watermark seen) of the partitions that answered.
    watched: Vec<(String, i32, i64)>,
}

/// Handles one Fetch request.
pub async fn handle(
    server: &Rc<ShardServer>,
    header: &RequestHeader,
    request: &FetchRequest,
) -> Answer {
    server.metrics().fetch_requests.increment();
    let read_committed = request.isolation_level == READ_COMMITTED;
    if request.session_id != NO_SESSION {
        let builder = FetchResponseBuilder::new(
            header.correlation_id,
            header.api_version,
            ResponseError::FetchSessionIdNotFound.code(),
            NO_SESSION,
            0,
            read_committed,
        );
        return Answer::Respond {
            parts: builder.finish(),
            failed: true,
        };
    }
    let wait_ms_max = server.shared.config.limits.fetch_max_wait_ms_max;
    let wait_ms = u32::try_from(request.max_wait_ms)
        .unwrap_or(0)
        .min(wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = if header.api_version >= FIRST_MAX_BYTES_VERSION {
        usize::try_from(request.max_bytes).unwrap_or(0)
    } else {
        usize::try_from(i32::MAX).unwrap_or(usize::MAX)
    };
    loop {
        let round = read_round(server, request, max_bytes).await;
        let now = Instant::now();
        let done =
            round.bytes >= min_bytes || round.failed || now >= deadline || server.stop.is_fired();
        if done {
            return answer(server, header, request, round, read_committed);
        }
        let watched = round
            .watched
            .iter()
            .map(|(topic, index, seen)| (topic.as_str(), *index, *seen));
        wait_for_change(server, Visibility::Committed, watched, deadline - now).await;
    }
}

async fn read_round(server: &ShardServer, request: &FetchRequest, max_bytes: usize) -> Round {
    let mut round = Round {
        topics: Vec::with_capacity(request.topics.len()),
        bytes: 0,
        failed: false,
        watched: Vec::new(),
    };
    let mut remaining = max_bytes;
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let mut answers = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let partition_max = usize::try_from(wanted.partition_max_bytes).unwrap_or(0);
            // A response already holding records stops at max_bytes; the first batch always
            // goes out whole, so a consumer progresses past a batch larger than its limits.
            let budget = if round.bytes == 0 {
                partition_max.min(remaining).max(1)
            } else {
                partition_max.min(remaining)
            };
            let read = read_partition(
                server,
                name,
                wanted.partition,
                wanted.fetch_offset,
                budget,
                Reader::Consumer,
            );
            match read.await {
                Ok((state, records)) => {
                    let length = PayloadPart::total_len(&records);
                    remaining = remaining.saturating_sub(length);
                    round.bytes += length;
                    round
                        .watched
                        .push((name.to_string(), wanted.partition, state.high_watermark));
                    answers.push(FetchPartitionAnswer {
                        partition: wanted.partition,
                        error_code: 0,
                        high_watermark: state.high_watermark,
                        last_stable_offset: state.high_watermark,
                        log_start_offset: state.log_start_offset,
                        records,
                    });
                }
                Err(error) => {
                    round.failed = true;
                    answers.push(failed_answer(server, wanted.partition, &error));
                }
            }
        }
        round.topics.push(answers);
    }
    round
}

fn failed_answer(
    server: &ShardServer,
    partition: i32,
    error: &PartitionError,
) -> FetchPartitionAnswer {
    let mut answer = FetchPartitionAnswer {
        partition,
        error_code: partition_error_code(server, error),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: Vec::new(),
    };
    if let PartitionError::OffsetOutOfRange {
        log_start_offset,
        log_end_offset,
        ..
    } = error
    {
        answer.log_start_offset = *log_start_offset;
        answer.high_watermark = *log_end_offset;
        answer.last_stable_offset = *log_end_offset;
    }
    answer
}

fn answer(
    server: &ShardServer,
    header: &RequestHeader,
    request: &FetchRequest,
    round: Round,
    read_committed: bool,
) -> Answer {
    let mut builder = FetchResponseBuilder::new(
        header.correlation_id,
        header.api_version,
        0,
        NO_SESSION,
        request.topics.len(),
        read_committed,
    );
    let mut memory_bytes = 0u64;
    for (topic, answers) in request.topics.iter().zip(round.topics) {
        builder.topic(topic.topic.0.as_str(), answers.len());
        for answer in answers {
            for part in &answer.records {
                if let PayloadPart::Memory(bytes) = part {
                    memory_bytes += bytes.len() as u64;
                }
            }
            builder.partition(answer);
        }
        builder.end_topic();
    }
    let metrics = server.metrics();
    metrics.bytes_out.add(builder.records_bytes() as u64);
    metrics.bytes_copied.add(memory_bytes);
    Answer::Respond {
        parts: builder.finish(),
        failed: round.failed,
    }
}
