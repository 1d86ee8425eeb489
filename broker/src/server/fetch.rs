//! Fetch: read whole batches from each requested partition, long-polling when fewer than
//! `min_bytes` are available.
//!
//! Consumers (replica id -1) read from leaders only, below the high watermark. A follower
//! replica (replica id = its node id) reads up to the leader's log end offset; its fetch offset
//! is its own log end, which the leader records to move the high watermark (waking acks=all
//! producers and consumers) and to decide ISR changes. A follower's fetch long-polls for the
//! log end to move.
//!
//! Partitions this shard owns are sent zero-copy: file ranges spliced to the socket, or the
//! direct-mode tail cache's memory. Partitions another shard owns come back over the mesh as
//! copied bytes (the owner's file descriptors cannot cross cores). When a round finds fewer than
//! `min_bytes`, the fetch waits until any of its partitions' high watermark moves past what this
//! round saw, the wait bound (`max_wait_ms`, capped by `fetch_max_wait_ms_max`) expires, or the
//! shard drains, then reads again.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use sluice_net::{
    ErrorCode, FetchPartition, FetchPartitionResult, FetchRequest, FetchResponse, Frame, NetError,
    PayloadPart,
};
use sluice_shard::{PartitionError, PartitionState, Reader, Route, Visibility};
use sluice_storage::ReadSlice;

use super::handlers;
use super::ShardServer;

/// Who a fetch request reads as: a negative replica id is a consumer.
fn reader_of(request: &FetchRequest, wanted: &FetchPartition) -> Reader {
    if request.replica_id < 0 {
        Reader::Consumer
    } else {
        Reader::Replica {
            node_id: request.replica_id,
            leader_epoch: wanted.current_leader_epoch,
        }
    }
}

/// A fetch result for a partition that failed with `code` (offsets unknown).
pub fn error_result(topic: &str, partition: i32, code: ErrorCode) -> FetchPartitionResult {
    FetchPartitionResult {
        topic: topic.to_string(),
        partition,
        error: code.code(),
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        records_bytes: 0,
        current_leader: -1,
    }
}

/// One pass over the requested partitions.
struct Round {
    results: Vec<FetchPartitionResult>,
    parts: Vec<PayloadPart>,
    bytes: usize,
    failed: bool,
    /// The watched offset each partition had in this round: the high watermark for consumers,
    /// the log end for followers (`None` for failed partitions).
    watermarks: Vec<Option<i64>>,
}

/// Handles one Fetch request.
pub async fn handle(
    server: &Rc<ShardServer>,
    frame: &Frame,
) -> Result<(FetchResponse, Vec<PayloadPart>), NetError> {
    let request: FetchRequest = frame.decode()?;
    server.metrics().fetch_requests.increment();
    let wait_ms_max = server.shared.config.limits.fetch_max_wait_ms_max;
    let wait = Duration::from_millis(u64::from(request.max_wait_ms.min(wait_ms_max)));
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes as usize;
    loop {
        let round = read_round(server, &request).await;
        let now = Instant::now();
        let done =
            round.bytes >= min_bytes || round.failed || now >= deadline || server.stop.is_fired();
        if done {
            return Ok((
                FetchResponse {
                    partitions: round.results,
                },
                round.parts,
            ));
        }
        let _waiting = WaitingFetch::start(server.metrics());
        wait_for_data(server, &request, &round.watermarks, deadline - now).await;
    }
}

/// Counts a fetch in `fetches_waiting` while it is parked, and stops counting it when dropped
/// (answered, or cancelled with its connection).
struct WaitingFetch<'a>(&'a sluice_shard::ShardMetrics);

impl<'a> WaitingFetch<'a> {
    fn start(metrics: &'a sluice_shard::ShardMetrics) -> Self {
        metrics.fetches_waiting.increment();
        WaitingFetch(metrics)
    }
}

impl Drop for WaitingFetch<'_> {
    fn drop(&mut self) {
        self.0.fetches_waiting.decrement();
    }
}

async fn read_round(server: &ShardServer, request: &FetchRequest) -> Round {
    let mut round = Round {
        results: Vec::with_capacity(request.partitions.len()),
        parts: Vec::new(),
        bytes: 0,
        failed: false,
        watermarks: Vec::with_capacity(request.partitions.len()),
    };
    let mut remaining = request.max_bytes as usize;
    for wanted in &request.partitions {
        let budget = (wanted.partition_max_bytes as usize).min(remaining);
        let reader = reader_of(request, wanted);
        let read = read_partition(
            server,
            &wanted.topic,
            wanted.partition,
            wanted.fetch_offset,
            budget,
            reader,
        );
        match read.await {
            Ok((state, parts)) => {
                let length = PayloadPart::total_len(&parts);
                remaining = remaining.saturating_sub(length);
                round.bytes += length;
                let watched = match reader {
                    Reader::Consumer => state.high_watermark,
                    Reader::Replica { .. } => state.log_end_offset,
                };
                round.watermarks.push(Some(watched));
                round.results.push(FetchPartitionResult {
                    topic: wanted.topic.clone(),
                    partition: wanted.partition,
                    error: ErrorCode::None.code(),
                    high_watermark: state.high_watermark,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: state.log_end_offset,
                    // A part is at most one read's max_bytes, itself bounded by a u32 field.
                    records_bytes: u32::try_from(length).unwrap_or(u32::MAX),
                    current_leader: -1,
                });
                round.parts.extend(parts);
            }
            Err(error) => {
                round.failed = true;
                round.watermarks.push(None);
                round.results.push(failed_result(server, wanted, &error));
            }
        }
    }
    round
}

fn failed_result(
    server: &ShardServer,
    wanted: &FetchPartition,
    error: &PartitionError,
) -> FetchPartitionResult {
    let code = handlers::count_partition_error(server, error);
    let mut result = error_result(&wanted.topic, wanted.partition, code);
    result.current_leader = handlers::leader_hint(error);
    if let PartitionError::OffsetOutOfRange {
        log_start_offset,
        log_end_offset,
        ..
    } = error
    {
        result.log_start_offset = *log_start_offset;
        result.log_end_offset = *log_end_offset;
        result.high_watermark = *log_end_offset;
    }
    result
}

/// Reads one partition: its state, and up to `budget` bytes of whole batches from the fetch
/// offset (`budget` 0 reads nothing: the request's byte budget is spent). A follower's read
/// first records its fetch offset on the leader (and may start an ISR expansion).
pub(crate) async fn read_partition(
    server: &ShardServer,
    topic: &str,
    index: i32,
    fetch_offset: i64,
    budget: usize,
    reader: Reader,
) -> Result<(PartitionState, Vec<PayloadPart>), PartitionError> {
    match server.shard.route(topic, index) {
        Route::Local(partition) => {
            partition.record_fetch(reader, fetch_offset, sluice_shard::now_ms())?;
            if let Reader::Replica { .. } = reader {
                super::replication::propose_isr_change(server, &partition);
            }
            if budget == 0 {
                partition.check_leader()?;
                return Ok((partition.state(), Vec::new()));
            }
            let slice = partition.read_as(reader, fetch_offset, budget)?;
            let parts = match slice {
                ReadSlice::Empty => Vec::new(),
                ReadSlice::File(file) => vec![PayloadPart::File {
                    file: file.file,
                    position: file.position,
                    len: file.len,
                }],
                ReadSlice::Memory(pieces) => pieces.into_iter().map(PayloadPart::Memory).collect(),
            };
            Ok((partition.state(), non_empty(parts)))
        }
        Route::Remote(owner) => {
            let read = server
                .shard
                .read_remote_as(owner, topic, index, fetch_offset, budget, reader)
                .await?;
            Ok((
                read.state,
                non_empty(vec![PayloadPart::Memory(read.records)]),
            ))
        }
        Route::NotHosted => Err(PartitionError::not_leader(topic, index, -1)),
        Route::Unknown => Err(PartitionError::unknown(topic, index)),
    }
}

/// `parts` without its empty parts.
fn non_empty(mut parts: Vec<PayloadPart>) -> Vec<PayloadPart> {
    parts.retain(|part| !part.is_empty());
    parts
}

type Wait<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Waits until any partition's watched offset passes what the last round saw, `timeout` passes,
/// or the shard starts draining.
async fn wait_for_data(
    server: &ShardServer,
    request: &FetchRequest,
    watermarks: &[Option<i64>],
    timeout: Duration,
) {
    let visibility = if request.replica_id < 0 {
        Visibility::Committed
    } else {
        Visibility::LogEnd
    };
    let watched = request
        .partitions
        .iter()
        .zip(watermarks)
        .filter_map(|(wanted, seen)| {
            seen.map(|seen| (wanted.topic.as_str(), wanted.partition, seen))
        });
    wait_for_change(server, visibility, watched, timeout).await;
}

/// Waits until the watched offset of any of `watched` (topic, partition, offset seen) passes
/// the offset seen, `timeout` passes, or the shard starts draining. Partitions on other shards
/// are watched by a wait forwarded to their owner.
pub(crate) async fn wait_for_change<'a>(
    server: &'a ShardServer,
    visibility: Visibility,
    watched: impl Iterator<Item = (&'a str, i32, i64)>,
    timeout: Duration,
) {
    let mut waits: Vec<Wait<'a>> = Vec::new();
    waits.push(Box::pin(glommio::timer::sleep(timeout)));
    waits.push(Box::pin(server.stop.wait()));
    for (topic, index, seen) in watched {
        match server.shard.route(topic, index) {
            // The one timer above bounds every local wait.
            Route::Local(partition) => waits.push(Box::pin(async move {
                partition.moved_past(visibility, seen).await;
            })),
            Route::Remote(owner) => waits.push(Box::pin(
                server
                    .shard
                    .wait_remote(owner, topic, index, seen, visibility, timeout),
            )),
            Route::NotHosted | Route::Unknown => {}
        }
    }
    futures_lite::future::poll_fn(|context| {
        for wait in waits.iter_mut() {
            if wait.as_mut().poll(context).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}
