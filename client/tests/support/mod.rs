//! A tiny in-memory cluster speaking the native protocol through sluice-net's `Connection`, for
//! loopback tests of the client. It answers Metadata, CreateTopics, DeleteTopics, Produce, Fetch
//! and ListOffsets, keeps stamped batches in memory, and injects faults.
//!
//! A fake cluster has one or more nodes (node id = index), each with a main port and one port
//! per shard, all on this executor. The logs are shared by every node, as if every replica were
//! in sync, so moving a partition's leadership to another node loses nothing. Each partition has
//! a leader that serves it (the truth) and a leader the Metadata answers name (which a test can
//! leave stale for a while); a node that does not lead a partition answers NotLeaderOrFollower,
//! naming the true leader when `name_leader_in_errors` is on. A killed node closes its listeners
//! (connections are refused) and drops every connection it had; Metadata stops listing it.
//!
//! Idempotent producers: InitProducerId hands out ids 1000, 1001, ...; produce runs the broker's
//! own sequence check (`ProducerStateManager`), so a retried batch is answered with its original
//! offsets and not appended again, and a gap is OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! Faults: produce and fetch answers with an error code, produce and fetch requests answered by
//! closing the connection (before or after appending), held produce answers (to observe
//! pipelining).

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
use sluice_storage::producer_state::{
    AppendDecision, ProducerBatch, ProducerStateError, ProducerStateManager,
    PRODUCER_ID_EXPIRATION_MS_DEFAULT,
};

/// One node of the fake cluster.
#[derive(Debug, Default)]
pub struct Node {
    /// Main port first, then one port per shard.
    pub ports: Vec<u16>,
    /// Connections accepted per listener (0 = main port, 1.. = shard ports).
    pub connections: Vec<u32>,
    /// False once killed: listeners closed, connections dropped, not in Metadata.
    pub alive: bool,
}

/// What the fake cluster saw and how it misbehaves.
#[derive(Default)]
pub struct FakeState {
    /// topic -> partition count.
    pub topics: RefCell<HashMap<String, i32>>,
    /// (topic, partition) -> stamped batches in offset order, shared by every node.
    pub logs: RefCell<HashMap<(String, i32), Vec<Bytes>>>,
    /// The nodes, by node id.
    pub nodes: RefCell<Vec<Node>>,
    /// Shards per node.
    pub shards: Cell<usize>,
    /// (topic, partition) -> the node that serves it; node 0 when absent.
    pub leaders: RefCell<HashMap<(String, i32), i32>>,
    /// (topic, partition) -> the leader Metadata names, when it differs from `leaders` (stale
    /// metadata).
    pub advertised_leaders: RefCell<HashMap<(String, i32), i32>>,
    /// NotLeaderOrFollower answers name the true leader in `current_leader` (else -1).
    pub name_leader_in_errors: Cell<bool>,
    /// Produce answers still to fail with `produce_error` (one per produce request).
    pub produce_failures_left: Cell<u32>,
    /// The error code those failures carry.
    pub produce_error: Cell<i16>,
    /// Produce requests still to answer by closing the connection without a response.
    pub produce_drops_left: Cell<u32>,
    /// The produce request (counted from 1 over the cluster's life, as `produce_requests`)
    /// after whose append the connection is closed, losing its response and those held with
    /// it; 0 for none. Answers are no longer held after that (`produce_hold` drops to 1).
    pub produce_drop_after_request: Cell<u32>,
    /// (topic, partition) -> the idempotent producers' sequence state.
    pub producer_states: RefCell<HashMap<(String, i32), ProducerStateManager>>,
    /// Producer ids handed out so far.
    pub producer_ids_issued: Cell<i64>,
    /// Produce batches answered as duplicates (original offsets, nothing appended).
    pub duplicates_answered: Cell<u32>,
    /// Fetch answers still to fail with `fetch_error` for every partition (one per request).
    pub fetch_failures_left: Cell<u32>,
    /// The error code those failures carry.
    pub fetch_error: Cell<i16>,
    /// Fetch requests still to answer by closing the connection without a response.
    pub fetch_drops_left: Cell<u32>,
    /// Produce responses are held until this many are waiting on one connection (1 = answer
    /// at once); a held response is released anyway after `HOLD_WAIT`.
    pub produce_hold: Cell<usize>,
    /// The most produce requests seen waiting for their responses on one connection at once.
    pub produce_pending_max: Cell<usize>,
    pub metadata_requests: Cell<u32>,
    pub produce_requests: Cell<u32>,
    pub fetch_requests: Cell<u32>,
    /// Fetch requests answered NotLeaderOrFollower (sent to a node that is not the leader).
    pub fetch_not_leader_answers: Cell<u32>,
    /// (node, listener index, topic, partition) of every produced partition entry.
    pub produce_routes: RefCell<Vec<(usize, usize, String, i32)>>,
    /// (node, topic, partition, fetch offset) of every fetched partition entry.
    pub fetch_routes: RefCell<Vec<(usize, String, i32, i64)>>,
}

/// How long a held produce response waits for companions before it is sent anyway.
const HOLD_WAIT: Duration = Duration::from_secs(5);

/// How often a node's tasks look whether the node was killed.
const KILL_POLL: Duration = Duration::from_millis(5);

/// Largest frame the fake broker accepts.
const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Starts a one-node fake cluster on this executor with one main port and `shards` shard ports;
/// `topic` has `partitions` partitions, partition p owned by shard p % shards.
pub fn start(shards: usize, topic: &str, partitions: i32) -> Rc<FakeState> {
    start_cluster(1, shards, topic, partitions)
}

/// Starts a fake cluster of `nodes` nodes, each with a main port and `shards` shard ports; every
/// partition of `topic` is led by node 0 at first.
pub fn start_cluster(nodes: usize, shards: usize, topic: &str, partitions: i32) -> Rc<FakeState> {
    let state = Rc::new(FakeState::default());
    state.produce_hold.set(1);
    state.shards.set(shards);
    state
        .topics
        .borrow_mut()
        .insert(topic.to_string(), partitions);
    for node in 0..nodes {
        start_node(&state, node);
    }
    state
}

fn start_node(state: &Rc<FakeState>, node: usize) {
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..=state.shards.get() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ports.push(listener.local_addr().unwrap().port());
        listeners.push(listener);
    }
    state.nodes.borrow_mut().push(Node {
        connections: vec![0; ports.len()],
        ports,
        alive: true,
    });
    for (index, listener) in listeners.into_iter().enumerate() {
        let state = Rc::clone(state);
        glommio::spawn_local(async move {
            loop {
                let accepted = until_killed(&state, node, listener.accept()).await;
                let Some(Ok(stream)) = accepted else {
                    // Killed: dropping the listener closes the port.
                    return;
                };
                state.nodes.borrow_mut()[node].connections[index] += 1;
                let connection = Connection::new(stream, FRAME_BYTES_MAX);
                let serving = serve(Rc::clone(&state), node, index, connection);
                let state = Rc::clone(&state);
                glommio::spawn_local(async move { until_killed(&state, node, serving).await })
                    .detach();
            }
        })
        .detach();
    }
}

/// Runs `future` until it finishes or `node` is killed (`None`).
async fn until_killed<T>(
    state: &FakeState,
    node: usize,
    future: impl std::future::Future<Output = T>,
) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        while state.nodes.borrow()[node].alive {
            glommio::timer::sleep(KILL_POLL).await;
        }
        None
    })
    .await
}

impl FakeState {
    /// `host:port` of node 0's main port.
    pub fn main_addr(&self) -> String {
        self.node_addr(0)
    }

    /// `host:port` of a node's main port.
    pub fn node_addr(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.nodes.borrow()[node].ports[0])
    }

    /// Connections a node accepted on one of its listeners (0 = main port, 1.. = shards).
    pub fn connections(&self, node: usize, listener: usize) -> u32 {
        self.nodes.borrow()[node].connections[listener]
    }

    /// Kills a node: its ports refuse connections and its connections close.
    pub fn kill(&self, node: usize) {
        self.nodes.borrow_mut()[node].alive = false;
    }

    /// Moves the leadership of a partition to `node`, in truth and in Metadata.
    pub fn set_leader(&self, topic: &str, partition: i32, node: i32) {
        self.set_true_leader(topic, partition, node);
        self.advertised_leaders
            .borrow_mut()
            .remove(&(topic.to_string(), partition));
    }

    /// Moves the leadership of a partition to `node` while Metadata keeps naming the old one,
    /// until `set_leader` or `publish_leaders`.
    pub fn set_true_leader(&self, topic: &str, partition: i32, node: i32) {
        let key = (topic.to_string(), partition);
        let old = self.leader(topic, partition);
        self.advertised_leaders
            .borrow_mut()
            .entry(key.clone())
            .or_insert(old);
        self.leaders.borrow_mut().insert(key, node);
    }

    /// Metadata names the true leader of every partition again.
    pub fn publish_leaders(&self) {
        self.advertised_leaders.borrow_mut().clear();
    }

    /// The node serving a partition.
    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        self.leaders
            .borrow()
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }

    fn advertised_leader(&self, topic: &str, partition: i32) -> i32 {
        self.advertised_leaders
            .borrow()
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or_else(|| self.leader(topic, partition))
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

    /// The `current_leader` a NotLeaderOrFollower answer carries.
    fn leader_hint(&self, topic: &str, partition: i32) -> i32 {
        if self.name_leader_in_errors.get() {
            self.leader(topic, partition)
        } else {
            -1
        }
    }

    fn is_leader(&self, node: usize, topic: &str, partition: i32) -> bool {
        usize::try_from(self.leader(topic, partition)).ok() == Some(node)
    }
}

/// Takes one unit from a fault counter; true when there was one.
fn take(counter: &Cell<u32>) -> bool {
    let left = counter.get();
    if left > 0 {
        counter.set(left - 1);
    }
    left > 0
}

/// A response waiting to be written: header, encoded by the closure.
type Held = (FrameHeader, ProduceResponse);

async fn serve(state: Rc<FakeState>, node: usize, listener: usize, mut connection: Connection) {
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
            if take(&state.produce_drops_left) {
                return;
            }
            let payload = frame.payload.clone().freeze();
            let response = produce(&state, node, listener, &request, &payload);
            if state.produce_drop_after_request.get() == state.produce_requests.get() {
                // This request was waiting for its answer too. Later requests (the resends, one
                // at a time) are answered at once.
                state
                    .produce_pending_max
                    .set(state.produce_pending_max.get().max(held.len() + 1));
                state.produce_hold.set(1);
                return;
            }
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
        if frame.header.api == ApiKey::Fetch.code() && take(&state.fetch_drops_left) {
            return;
        }
        if answer(&state, node, &mut connection, frame).await.is_err() {
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
    node: usize,
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
            let (response, payload) = fetch(state, node, &request).await;
            reply(connection, &frame, &response, &payload).await
        }
        ApiKey::ListOffsets => {
            let request: ListOffsetsRequest = frame.decode()?;
            reply(connection, &frame, &list_offsets(state, &request), &[]).await
        }
        ApiKey::InitProducerId => {
            let _: InitProducerIdRequest = frame.decode()?;
            let issued = state.producer_ids_issued.get();
            state.producer_ids_issued.set(issued + 1);
            let response = InitProducerIdResponse {
                error: 0,
                message: None,
                producer_id: FIRST_PRODUCER_ID + issued,
                producer_epoch: 0,
            };
            reply(connection, &frame, &response, &[]).await
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
    let nodes = state.nodes.borrow();
    let shards = state.shards.get();
    let topics_known = state.topics.borrow();
    let names: Vec<String> = match &request.topics {
        Some(names) => names.clone(),
        None => topics_known.keys().cloned().collect(),
    };
    let topics = names
        .into_iter()
        .map(|name| match topics_known.get(&name) {
            Some(&count) => TopicMeta {
                partitions: (0..count)
                    .map(|partition| {
                        let leader = state.advertised_leader(&name, partition);
                        PartitionMeta {
                            partition,
                            error: 0,
                            leader,
                            leader_epoch: 0,
                            replicas: vec![leader],
                            isr: vec![leader],
                            shard: (partition as usize % shards) as u32,
                        }
                    })
                    .collect(),
                name,
                error: 0,
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
        brokers: nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.alive)
            .map(|(id, node)| BrokerMeta {
                node_id: id as i32,
                host: "127.0.0.1".into(),
                port: node.ports[0],
                shard_ports: node.ports[1..].to_vec(),
            })
            .collect(),
        controller_id: 0,
        cluster_id: "fake".into(),
        topics,
    }
}

fn produce(
    state: &FakeState,
    node: usize,
    listener: usize,
    request: &ProduceRequest,
    payload: &Bytes,
) -> ProduceResponse {
    state.produce_requests.set(state.produce_requests.get() + 1);
    let payloads = request.partition_payloads(payload).unwrap();
    let fail = take(&state.produce_failures_left);
    let partitions = request
        .partitions
        .iter()
        .zip(payloads)
        .map(|(entry, records)| {
            let (topic, partition) = (&entry.topic, entry.partition);
            state
                .produce_routes
                .borrow_mut()
                .push((node, listener, topic.clone(), partition));
            let mut result = ProducePartitionResult {
                topic: topic.clone(),
                partition,
                error: 0,
                base_offset: -1,
                log_start_offset: 0,
                message: None,
                current_leader: -1,
            };
            if !state.is_leader(node, topic, partition) {
                result.error = ErrorCode::NotLeaderOrFollower.code();
                result.current_leader = state.leader_hint(topic, partition);
                result.message = Some(format!("node {node} is not the leader"));
            } else if fail {
                result.error = state.produce_error.get();
                result.message = Some("injected failure".to_string());
            } else {
                let offset = state.next_offset(topic, partition);
                match check_sequences(state, topic, partition, &records, offset) {
                    Ok(AppendDecision::Append) => {
                        result.base_offset = offset;
                        append(state, topic, partition, &records, offset);
                    }
                    Ok(AppendDecision::Duplicate { first_offset, .. }) => {
                        state
                            .duplicates_answered
                            .set(state.duplicates_answered.get() + 1);
                        result.base_offset = first_offset;
                    }
                    Err(error) => {
                        result.error = sequence_error_code(&error).code();
                        result.message = Some(error.to_string());
                    }
                }
            }
            result
        })
        .collect();
    ProduceResponse { partitions }
}

/// The first producer id InitProducerId hands out.
pub const FIRST_PRODUCER_ID: i64 = 1000;

/// The broker's sequence check of one partition's batches, which would get offsets from
/// `offset` on.
fn check_sequences(
    state: &FakeState,
    topic: &str,
    partition: i32,
    records: &Bytes,
    mut offset: i64,
) -> Result<AppendDecision, ProducerStateError> {
    let mut batches = Vec::new();
    for batch in BatchIter::new(records, usize::MAX) {
        let (header, _) = batch.unwrap();
        let last = offset + i64::from(header.last_offset_delta);
        if let Some(producer) = ProducerBatch::from_header(&header) {
            batches.push((producer, offset, last));
        }
        offset = last + 1;
    }
    let mut states = state.producer_states.borrow_mut();
    let manager = states
        .entry((topic.to_string(), partition))
        .or_insert_with(|| ProducerStateManager::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT));
    let decision = manager.check_append(&batches)?;
    if decision == AppendDecision::Append {
        for (batch, first, last) in &batches {
            manager.record(batch, *first, *last);
        }
    }
    Ok(decision)
}

/// The Kafka code the broker answers a refused idempotent batch with.
fn sequence_error_code(error: &ProducerStateError) -> ErrorCode {
    match error {
        ProducerStateError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
        ProducerStateError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
        ProducerStateError::UnknownProducerId { .. } => ErrorCode::UnknownProducerId,
        ProducerStateError::PartialDuplicate { .. } => ErrorCode::InvalidRequest,
    }
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

/// A fetch result for a partition that failed with `code`.
fn fetch_error(
    query: &FetchPartition,
    code: ErrorCode,
    current_leader: i32,
) -> FetchPartitionResult {
    FetchPartitionResult {
        topic: query.topic.clone(),
        partition: query.partition,
        error: code.code(),
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        records_bytes: 0,
        current_leader,
    }
}

async fn fetch(
    state: &FakeState,
    node: usize,
    request: &FetchRequest,
) -> (FetchResponse, Vec<Bytes>) {
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
    let fail = take(&state.fetch_failures_left);
    let mut payload = Vec::new();
    let partitions = request
        .partitions
        .iter()
        .map(|query| {
            state.fetch_routes.borrow_mut().push((
                node,
                query.topic.clone(),
                query.partition,
                query.fetch_offset,
            ));
            if !state.is_leader(node, &query.topic, query.partition) {
                state
                    .fetch_not_leader_answers
                    .set(state.fetch_not_leader_answers.get() + 1);
                let hint = state.leader_hint(&query.topic, query.partition);
                return fetch_error(query, ErrorCode::NotLeaderOrFollower, hint);
            }
            if fail {
                let code = ErrorCode::from_i16(state.fetch_error.get()).unwrap();
                return fetch_error(query, code, -1);
            }
            read_partition(state, query, &mut payload)
        })
        .collect();
    (FetchResponse { partitions }, payload)
}

/// One partition's fetch result, its batches appended to `payload`.
fn read_partition(
    state: &FakeState,
    query: &FetchPartition,
    payload: &mut Vec<Bytes>,
) -> FetchPartitionResult {
    let high_watermark = state.next_offset(&query.topic, query.partition);
    if query.fetch_offset > high_watermark {
        return FetchPartitionResult {
            log_end_offset: high_watermark,
            high_watermark,
            log_start_offset: 0,
            ..fetch_error(query, ErrorCode::OffsetOutOfRange, -1)
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
        if header.last_offset() >= query.fetch_offset && bytes < query.partition_max_bytes as usize
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
        current_leader: -1,
    }
}
