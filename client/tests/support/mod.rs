//! A tiny in-memory broker speaking the native protocol through sluice-net's `Connection`, for
//! loopback tests of the client. It answers Metadata, CreateTopics, DeleteTopics, Produce, Fetch
//! and ListOffsets, keeps stamped batches in memory, and can inject faults.

// Test support: a failed unwrap is a failed test, which is what these helpers want; each test
// file uses a different subset of them.
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::net::TcpListener;
use sluice_net::api::{ApiKey, ErrorCode};
use sluice_net::frame::{ControlEncode, Frame, FrameHeader};
use sluice_net::messages::*;
use sluice_net::Connection;
use sluice_storage::batch::{stamp, BatchIter};

/// What the fake broker saw and how it misbehaves.
#[derive(Default)]
pub struct FakeState {
    /// topic -> partition count.
    pub topics: RefCell<HashMap<String, i32>>,
    /// (topic, partition) -> stamped batches in offset order.
    pub logs: RefCell<HashMap<(String, i32), Vec<Bytes>>>,
    /// Produce answers still to fail with `produce_error` (one per produce request).
    pub produce_failures_left: Cell<u32>,
    /// The error code those failures carry.
    pub produce_error: Cell<i16>,
    /// Produce requests still to answer by closing the connection without a response.
    pub produce_drops_left: Cell<u32>,
    /// Produce responses are held until this many are waiting on one connection (1 = answer
    /// at once); a held response is released anyway after `HOLD_WAIT`.
    pub produce_hold: Cell<usize>,
    /// The most produce requests seen waiting for their responses on one connection at once.
    pub produce_pending_max: Cell<usize>,
    pub metadata_requests: Cell<u32>,
    pub produce_requests: Cell<u32>,
    pub fetch_requests: Cell<u32>,
    /// (listener index, topic, partition) of every produced partition entry.
    pub produce_routes: RefCell<Vec<(usize, String, i32)>>,
    /// Connections accepted per listener (0 = main port, 1.. = shard ports).
    pub connections: RefCell<Vec<u32>>,
    pub ports: RefCell<Vec<u16>>,
}

/// How long a held produce response waits for companions before it is sent anyway.
const HOLD_WAIT: Duration = Duration::from_secs(5);

/// Largest frame the fake broker accepts.
const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Starts the fake broker on this executor with one main port and `shards` shard ports;
/// `topic` has `partitions` partitions, partition p owned by shard p % shards.
pub fn start(shards: usize, topic: &str, partitions: i32) -> Rc<FakeState> {
    let state = Rc::new(FakeState::default());
    state.produce_hold.set(1);
    state
        .topics
        .borrow_mut()
        .insert(topic.to_string(), partitions);
    let mut listeners = Vec::new();
    for _ in 0..=shards {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        state
            .ports
            .borrow_mut()
            .push(listener.local_addr().unwrap().port());
        state.connections.borrow_mut().push(0);
        listeners.push(listener);
    }
    for (index, listener) in listeners.into_iter().enumerate() {
        let state = Rc::clone(&state);
        glommio::spawn_local(async move {
            loop {
                let Ok(stream) = listener.accept().await else {
                    return;
                };
                state.connections.borrow_mut()[index] += 1;
                let connection = Connection::new(stream, FRAME_BYTES_MAX);
                glommio::spawn_local(serve(Rc::clone(&state), index, connection)).detach();
            }
        })
        .detach();
    }
    state
}

impl FakeState {
    pub fn main_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.borrow()[0])
    }

    /// Every record value of a partition's log, in offset order, with its offset.
    pub fn records(&self, topic: &str, partition: i32) -> Vec<(i64, Bytes)> {
        let logs = self.logs.borrow();
        let Some(batches) = logs.get(&(topic.to_string(), partition)) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        for batch in batches {
            for record in sluice_storage::batch::decode_records(batch).unwrap() {
                records.push((record.offset, record.value.unwrap_or_default()));
            }
        }
        records
    }

    fn next_offset(&self, topic: &str, partition: i32) -> i64 {
        self.logs
            .borrow()
            .get(&(topic.to_string(), partition))
            .and_then(|batches| batches.last())
            .map_or(0, |last| {
                let header = sluice_storage::batch::BatchHeader::parse(last).unwrap();
                header.last_offset() + 1
            })
    }
}

/// A response waiting to be written: header, encoded by the closure.
type Held = (FrameHeader, ProduceResponse);

async fn serve(state: Rc<FakeState>, listener: usize, mut connection: Connection) {
    let mut held: Vec<Held> = Vec::new();
    loop {
        let next = if held.is_empty() {
            Some(connection.read_frame().await)
        } else {
            futures_lite::future::or(async { Some(connection.read_frame().await) }, async {
                glommio::timer::sleep(HOLD_WAIT).await;
                None
            })
            .await
        };
        let frame = match next {
            None => {
                flush_held(&mut connection, &mut held).await;
                continue;
            }
            Some(Ok(Some(frame))) => frame,
            Some(_) => return,
        };
        if frame.header.api == ApiKey::Produce.code() {
            let request: ProduceRequest = frame.decode().unwrap();
            if state.produce_drops_left.get() > 0 {
                state
                    .produce_drops_left
                    .set(state.produce_drops_left.get() - 1);
                return;
            }
            let response = produce(&state, listener, &request, &frame.payload.clone().freeze());
            if request.acks == 0 {
                continue;
            }
            held.push((frame.header.response(), response));
            state
                .produce_pending_max
                .set(state.produce_pending_max.get().max(held.len()));
            if held.len() >= state.produce_hold.get() {
                flush_held(&mut connection, &mut held).await;
            }
            continue;
        }
        flush_held(&mut connection, &mut held).await;
        if answer(&state, &mut connection, frame).await.is_err() {
            return;
        }
    }
}

async fn flush_held(connection: &mut Connection, held: &mut Vec<Held>) {
    for (header, response) in held.drain(..) {
        let _ = connection.write_frame(header, &response, &[]).await;
    }
}

async fn reply<T: Message + ControlEncode>(
    connection: &mut Connection,
    frame: &Frame,
    body: &T,
    payload: &[Bytes],
) -> Result<(), sluice_net::NetError> {
    connection
        .write_frame(frame.header.response(), body, payload)
        .await
}

async fn answer(
    state: &FakeState,
    connection: &mut Connection,
    frame: Frame,
) -> Result<(), sluice_net::NetError> {
    match ApiKey::try_from(frame.header.api)? {
        ApiKey::Metadata => {
            state
                .metadata_requests
                .set(state.metadata_requests.get() + 1);
            let request: MetadataRequest = frame.decode()?;
            reply(connection, &frame, &metadata(state, &request), &[]).await
        }
        ApiKey::CreateTopics => {
            let request: CreateTopicsRequest = frame.decode()?;
            reply(connection, &frame, &create_topics(state, &request), &[]).await
        }
        ApiKey::DeleteTopics => {
            let request: DeleteTopicsRequest = frame.decode()?;
            reply(connection, &frame, &delete_topics(state, &request), &[]).await
        }
        ApiKey::Fetch => {
            state.fetch_requests.set(state.fetch_requests.get() + 1);
            let request: FetchRequest = frame.decode()?;
            let (response, payload) = fetch(state, &request).await;
            reply(connection, &frame, &response, &payload).await
        }
        ApiKey::ListOffsets => {
            let request: ListOffsetsRequest = frame.decode()?;
            reply(connection, &frame, &list_offsets(state, &request), &[]).await
        }
        other => panic!("fake broker got an unexpected {other} request"),
    }
}

fn create_topics(state: &FakeState, request: &CreateTopicsRequest) -> CreateTopicsResponse {
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let exists = state.topics.borrow().contains_key(&topic.name);
            if !exists {
                state
                    .topics
                    .borrow_mut()
                    .insert(topic.name.clone(), topic.partitions);
            }
            TopicResult {
                name: topic.name.clone(),
                error: if exists {
                    ErrorCode::TopicAlreadyExists.code()
                } else {
                    0
                },
                message: exists.then(|| format!("topic {} already exists", topic.name)),
            }
        })
        .collect();
    CreateTopicsResponse { results }
}

fn delete_topics(state: &FakeState, request: &DeleteTopicsRequest) -> DeleteTopicsResponse {
    let results = request
        .names
        .iter()
        .map(|name| {
            let existed = state.topics.borrow_mut().remove(name).is_some();
            TopicResult {
                name: name.clone(),
                error: if existed {
                    0
                } else {
                    ErrorCode::UnknownTopicOrPartition.code()
                },
                message: None,
            }
        })
        .collect();
    DeleteTopicsResponse { results }
}

fn list_offsets(state: &FakeState, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let partitions = request
        .partitions
        .iter()
        .map(|query| ListOffsetsPartitionResult {
            topic: query.topic.clone(),
            partition: query.partition,
            error: 0,
            offset: match query.timestamp {
                -2 => 0,
                -1 => state.next_offset(&query.topic, query.partition),
                timestamp => offset_for_timestamp(state, &query.topic, query.partition, timestamp),
            },
            timestamp: query.timestamp,
        })
        .collect();
    ListOffsetsResponse { partitions }
}

fn metadata(state: &FakeState, request: &MetadataRequest) -> MetadataResponse {
    let ports = state.ports.borrow();
    let shards = ports.len() - 1;
    let topics_known = state.topics.borrow();
    let names: Vec<String> = match &request.topics {
        Some(names) => names.clone(),
        None => topics_known.keys().cloned().collect(),
    };
    let topics = names
        .into_iter()
        .map(|name| match topics_known.get(&name) {
            Some(&count) => TopicMeta {
                name,
                error: 0,
                partitions: (0..count)
                    .map(|partition| PartitionMeta {
                        partition,
                        error: 0,
                        leader: 0,
                        leader_epoch: 0,
                        replicas: vec![0],
                        isr: vec![0],
                        shard: (partition as usize % shards) as u32,
                    })
                    .collect(),
                configs: vec![],
            },
            None => TopicMeta {
                name,
                error: ErrorCode::UnknownTopicOrPartition.code(),
                partitions: vec![],
                configs: vec![],
            },
        })
        .collect();
    MetadataResponse {
        brokers: vec![BrokerMeta {
            node_id: 0,
            host: "127.0.0.1".into(),
            port: ports[0],
            shard_ports: ports[1..].to_vec(),
        }],
        controller_id: 0,
        cluster_id: "fake".into(),
        topics,
    }
}

fn produce(
    state: &FakeState,
    listener: usize,
    request: &ProduceRequest,
    payload: &Bytes,
) -> ProduceResponse {
    state.produce_requests.set(state.produce_requests.get() + 1);
    let payloads = request.partition_payloads(payload).unwrap();
    let fail = state.produce_failures_left.get() > 0;
    if fail {
        state
            .produce_failures_left
            .set(state.produce_failures_left.get() - 1);
    }
    let partitions = request
        .partitions
        .iter()
        .zip(payloads)
        .map(|(entry, records)| {
            state.produce_routes.borrow_mut().push((
                listener,
                entry.topic.clone(),
                entry.partition,
            ));
            let base_offset = state.next_offset(&entry.topic, entry.partition);
            if !fail {
                append(state, &entry.topic, entry.partition, &records, base_offset);
            }
            ProducePartitionResult {
                topic: entry.topic.clone(),
                partition: entry.partition,
                error: if fail { state.produce_error.get() } else { 0 },
                base_offset: if fail { -1 } else { base_offset },
                log_start_offset: 0,
                message: fail.then(|| "injected failure".to_string()),
            }
        })
        .collect();
    ProduceResponse { partitions }
}

fn append(state: &FakeState, topic: &str, partition: i32, records: &Bytes, mut offset: i64) {
    let mut logs = state.logs.borrow_mut();
    let log = logs.entry((topic.to_string(), partition)).or_default();
    for batch in BatchIter::new(records, usize::MAX) {
        let (header, bytes) = batch.unwrap();
        let mut stamped = BytesMut::from(bytes);
        stamp(&mut stamped, offset, 0).unwrap();
        offset += i64::from(header.last_offset_delta) + 1;
        log.push(stamped.freeze());
    }
}

fn offset_for_timestamp(state: &FakeState, topic: &str, partition: i32, timestamp: i64) -> i64 {
    state
        .records_with_timestamps(topic, partition)
        .into_iter()
        .find(|(_, record_timestamp)| *record_timestamp >= timestamp)
        .map_or(-1, |(offset, _)| offset)
}

impl FakeState {
    fn records_with_timestamps(&self, topic: &str, partition: i32) -> Vec<(i64, i64)> {
        let logs = self.logs.borrow();
        let Some(batches) = logs.get(&(topic.to_string(), partition)) else {
            return Vec::new();
        };
        batches
            .iter()
            .flat_map(|batch| sluice_storage::batch::decode_records(batch).unwrap())
            .map(|record| (record.offset, record.timestamp))
            .collect()
    }
}

async fn fetch(state: &FakeState, request: &FetchRequest) -> (FetchResponse, Vec<Bytes>) {
    let has_data = request
        .partitions
        .iter()
        .any(|query| state.next_offset(&query.topic, query.partition) > query.fetch_offset);
    if !has_data && request.max_wait_ms > 0 {
        // A short long-poll, so an empty consumer loop does not spin.
        glommio::timer::sleep(Duration::from_millis(
            u64::from(request.max_wait_ms).min(20),
        ))
        .await;
    }
    let mut payload = Vec::new();
    let partitions = request
        .partitions
        .iter()
        .map(|query| {
            let high_watermark = state.next_offset(&query.topic, query.partition);
            if query.fetch_offset > high_watermark {
                return FetchPartitionResult {
                    topic: query.topic.clone(),
                    partition: query.partition,
                    error: ErrorCode::OffsetOutOfRange.code(),
                    high_watermark,
                    log_start_offset: 0,
                    log_end_offset: high_watermark,
                    records_bytes: 0,
                };
            }
            let logs = state.logs.borrow();
            let mut bytes = 0;
            for batch in logs
                .get(&(query.topic.clone(), query.partition))
                .into_iter()
                .flatten()
            {
                let header = sluice_storage::batch::BatchHeader::parse(batch).unwrap();
                if header.last_offset() >= query.fetch_offset
                    && bytes < query.partition_max_bytes as usize
                {
                    bytes += batch.len();
                    payload.push(batch.clone());
                }
            }
            FetchPartitionResult {
                topic: query.topic.clone(),
                partition: query.partition,
                error: 0,
                high_watermark,
                log_start_offset: 0,
                log_end_offset: high_watermark,
                records_bytes: bytes as u32,
            }
        })
        .collect();
    (FetchResponse { partitions }, payload)
}
