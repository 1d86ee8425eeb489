//! Produce: validate every batch (the network layer does not), append each partition's batches
//! on the partition's owning shard (forwarded over the mesh when that is another shard), and
//! answer per partition.
//!
//! acks: 1 is answered once the batches are appended to the leader's log. -1 ("all") is
//! refused up front with NotEnoughReplicas while the ISR is smaller than
//! `min.insync.replicas`, and otherwise answered once the high watermark passes the batches
//! (every in-sync replica has them), or with RequestTimedOut after the request's `timeout_ms`.
//! A single-node broker's in-sync replica set is the leader alone, so there acks=all is
//! answered at the same moment as acks=1. What the answer promises is the `durability`
//! setting's: `durable` answers only once the batches are fsynced (and the log shows them to
//! nobody before), `interval` once they are written (see `config::DURABILITY_HELP`); either way
//! a killed process loses nothing acknowledged.
//! acks=0 gets no response at all. Only the partition's leader accepts writes; any other
//! broker answers NotLeaderOrFollower.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use sluice_net::{
    received_api, received_payload_parts, ErrorCode, Frame, FrameHeader, ProducePartitionResult,
    ProduceRequest, ProduceResponse,
};
use sluice_shard::ProtocolErrorKind;
use sluice_storage::batch::PartsCheck;
use sluice_storage::AppendBatches;

use super::handlers::{self, Body, Outcome, Outgoing};
use super::ShardServer;

/// Produce acks values.
const ACKS_NONE: i8 = 0;
const ACKS_LEADER: i8 = 1;
const ACKS_ALL: i8 = -1;

/// Checks the CRCs of a Produce request's batches while the request arrives, each socket
/// read's bytes while they are still in the cache (a request of many megabytes checked once it
/// is whole is checked at memory speed). Fed the head frame's received prefix by
/// `Connection::read_frame_observed`; taken once the frame is whole. The logs skip the CRCs it
/// matched and fully check everything else.
pub struct ProduceCheck {
    /// The head frame's partitions: none for another api.
    parts: PartsCheck,
}

impl ProduceCheck {
    /// A check whose batches are at most `batch_bytes_max` bytes each (larger ones are left to
    /// the logs, which apply their own bound anyway).
    pub fn new(batch_bytes_max: usize) -> Self {
        ProduceCheck {
            parts: PartsCheck::new(batch_bytes_max),
        }
    }

    /// Checks what `frame` (the head frame's bytes so far, prefix included) adds.
    pub fn observe(&mut self, frame: &[u8]) {
        self.parts.feed(frame, |frame| {
            if received_api(frame)? != sluice_net::ApiKey::Produce.code() {
                return Some((0, Vec::new()));
            }
            received_payload_parts(frame, |request: ProduceRequest| {
                let partitions = request.partitions.iter();
                partitions
                    .map(|partition| partition.records_bytes as usize)
                    .collect()
            })
        });
    }

    /// For the frame just read whole: per partition, in the request's order, the length of the
    /// prefix of its batches whose CRCs matched. Starts over for the next frame.
    pub fn take(&mut self) -> Vec<usize> {
        self.parts.take_verified_bytes()
    }
}

/// Handles one Produce request; `crc_verified` is its [`ProduceCheck`]'s.
pub async fn handle(
    server: &Rc<ShardServer>,
    header: FrameHeader,
    frame: Frame,
    crc_verified: Vec<usize>,
) -> Outcome {
    let request = match frame.decode::<ProduceRequest>() {
        Ok(request) => request,
        Err(error) => {
            server
                .metrics()
                .protocol_error(ProtocolErrorKind::InvalidRequest);
            return handlers::error_response(
                server,
                sluice_net::ApiKey::Produce,
                header,
                ErrorCode::InvalidRequest,
                &error,
            );
        }
    };
    server.metrics().produce_requests.increment();
    let acks = request.acks;
    let results = if !matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL) {
        server
            .metrics()
            .protocol_error(ProtocolErrorKind::InvalidRequest);
        let message = format!("acks must be 0, 1 or -1, got {acks}");
        all_failed(&request, ErrorCode::InvalidRequiredAcks, &message)
    } else {
        match split_payload(&request, frame.payload) {
            Ok(payloads) => {
                let batches = payloads
                    .into_iter()
                    .enumerate()
                    .map(|(at, bytes)| AppendBatches {
                        bytes,
                        crc_verified_bytes: crc_verified.get(at).copied().unwrap_or(0),
                    })
                    .collect();
                append_all(server, &request, batches).await
            }
            Err(message) => {
                server
                    .metrics()
                    .protocol_error(ProtocolErrorKind::InvalidRequest);
                all_failed(&request, ErrorCode::InvalidRequest, &message)
            }
        }
    };
    if acks == ACKS_NONE {
        let failed = results
            .iter()
            .any(|result| result.error != ErrorCode::None.code());
        return if failed {
            Outcome::Close
        } else {
            Outcome::Silent
        };
    }
    Outcome::Respond(Outgoing {
        header,
        body: Body::Produce(ProduceResponse {
            partitions: results,
        }),
    })
}

/// Splits the payload into each partition's bytes; the byte counts must cover it exactly.
fn split_payload(request: &ProduceRequest, payload: BytesMut) -> Result<Vec<BytesMut>, String> {
    let total: u64 = request
        .partitions
        .iter()
        .map(|partition| u64::from(partition.records_bytes))
        .sum();
    if total != payload.len() as u64 {
        return Err(format!(
            "the partitions' records_bytes add up to {total} but the payload holds {} bytes",
            payload.len()
        ));
    }
    request
        .partition_payloads_mut(payload)
        .map_err(|error| error.to_string())
}

fn all_failed(
    request: &ProduceRequest,
    code: ErrorCode,
    message: &str,
) -> Vec<ProducePartitionResult> {
    request
        .partitions
        .iter()
        .map(|partition| {
            failed(
                &partition.topic,
                partition.partition,
                code,
                Some(message.to_string()),
            )
        })
        .collect()
}

fn failed(
    topic: &str,
    partition: i32,
    code: ErrorCode,
    message: Option<String>,
) -> ProducePartitionResult {
    ProducePartitionResult {
        topic: topic.to_string(),
        partition,
        error: code.code(),
        base_offset: -1,
        log_start_offset: -1,
        message,
        current_leader: -1,
    }
}

/// Appends every partition's batches concurrently (each on its owning shard) and collects the
/// results in request order.
async fn append_all(
    server: &Rc<ShardServer>,
    request: &ProduceRequest,
    payloads: Vec<AppendBatches>,
) -> Vec<ProducePartitionResult> {
    let acks_all =
        (request.acks == ACKS_ALL).then(|| Duration::from_millis(u64::from(request.timeout_ms)));
    let appends: Vec<_> = request
        .partitions
        .iter()
        .zip(payloads)
        .map(|(partition, batches)| {
            let server = server.clone();
            let topic = partition.topic.clone();
            let index = partition.partition;
            glommio::spawn_local(async move {
                append_one(&server, topic, index, batches, acks_all).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(appends.len());
    for append in appends {
        results.push(append.await);
    }
    results
}

async fn append_one(
    server: &ShardServer,
    topic: String,
    partition: i32,
    batches: AppendBatches,
    acks_all: Option<Duration>,
) -> ProducePartitionResult {
    // The owning log validates every batch (sizes, header, CRC unless the ProduceCheck matched
    // it) before writing anything, and its errors map to the same codes and metrics;
    // validating here as well would checksum every produced byte twice.
    let length = batches.bytes.len() as u64;
    let appended = server
        .shard
        .append_acked(&topic, partition, batches, acks_all)
        .await;
    match appended {
        Ok(outcome) => {
            server.metrics().bytes_in.add(length);
            ProducePartitionResult {
                topic,
                partition,
                error: ErrorCode::None.code(),
                base_offset: outcome.base_offset,
                log_start_offset: outcome.state.log_start_offset,
                message: None,
                current_leader: -1,
            }
        }
        Err(error) => {
            let code = handlers::count_partition_error(server, &error);
            ProducePartitionResult {
                current_leader: handlers::leader_hint(&error),
                ..failed(&topic, partition, code, Some(error.to_string()))
            }
        }
    }
}
