//! `Client`: metadata, connections and the admin operations, shared by producers and consumers
//! on one executor.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::sync::Semaphore;
use sluice_net::api::ErrorCode;
use sluice_net::frame::{ControlDecode, ControlEncode};
use sluice_net::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, OngoingReassignment,
    ReassignPartition, ReassignResult,
};
use sluice_net::messages::{
    AlterTopicConfigsRequest, AlterTopicConfigsResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, ElectLeadersRequest, ElectLeadersResponse, ElectionResult, FetchRequest,
    FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsResponse, Message, MetadataRequest, MetadataResponse,
    NewPartitions, NewTopic, TopicConfigChange, TopicMeta, TopicResult,
};

use crate::config::{ClientConfig, OffsetSpec};
use crate::connection::BrokerConnection;
use crate::error::ClientError;
use crate::fetch::FetchCheck;
use crate::metadata::MetadataCache;
use crate::retry::Backoff;

/// What a connection carries.
///
/// A broker answers the requests of one connection strictly in order, and it holds a fetch
/// for up to the fetch's wait (long polling, up to the broker's `fetch_max_wait_ms_max`). A
/// produce acknowledgement or a metadata answer queued behind such a fetch would wait as long,
/// up to the client's request timeout, which then tears the connection down and makes the
/// producer resend (the produce stall seen with a consumer sharing the client). So fetches get
/// connections of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// Produce, metadata, admin and offset requests: answered without waiting for data.
    Requests,
    /// Fetches, which may long-poll.
    Fetches,
}

/// The native client: a metadata cache and, per broker port in use (one per shard with
/// `shard_aware`), one connection for fetches and one for every other request. It is `!Send`
/// and lives on the glommio executor that created it; producers and consumers on that executor
/// share it through `Rc`.
pub struct Client {
    config: ClientConfig,
    metadata: RefCell<MetadataCache>,
    connections: RefCell<HashMap<(String, Lane), Rc<BrokerConnection>>>,
    /// One connect at a time per address and lane.
    connect_gates: RefCell<HashMap<(String, Lane), Rc<Semaphore>>>,
    /// One metadata refresh at a time; callers that waited behind one reuse its result.
    refresh_lock: Semaphore,
    refresh_generation: Cell<u64>,
    /// A refresh started by `refresh_soon` is running.
    background_refresh: Cell<bool>,
    /// When the metadata of every topic was last fetched.
    refreshed_at: Cell<Instant>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("bootstrap", &self.config.bootstrap)
            .field("connections", &self.connections.borrow().len())
            .finish()
    }
}

impl Client {
    /// Connects to the first reachable bootstrap broker and fetches the cluster's metadata.
    pub async fn connect(config: ClientConfig) -> Result<Rc<Client>, ClientError> {
        config.validate()?;
        let client = Rc::new(Client {
            metadata: RefCell::new(MetadataCache::new(config.shard_aware)),
            config,
            connections: RefCell::new(HashMap::new()),
            connect_gates: RefCell::new(HashMap::new()),
            refresh_lock: Semaphore::new(1),
            refresh_generation: Cell::new(0),
            background_refresh: Cell::new(false),
            refreshed_at: Cell::new(Instant::now()),
        });
        client.metadata(None).await?;
        glommio::spawn_local(keep_metadata_fresh(Rc::downgrade(&client))).detach();
        Ok(client)
    }

    /// The configuration the client was created with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Fetches metadata for `topics` (all topics when `None`) from any reachable broker and
    /// updates the client's cache with it.
    pub async fn metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, ClientError> {
        let full = topics.is_none();
        let (response, _) = self
            .request_any::<_, MetadataResponse>(&MetadataRequest { topics })
            .await?;
        self.metadata.borrow_mut().update(&response, full);
        if full {
            self.refreshed_at.set(Instant::now());
        }
        Ok(response)
    }

    /// Refreshes the cached metadata of every topic. Concurrent callers share one request.
    pub async fn refresh_metadata(&self) -> Result<(), ClientError> {
        let seen = self.refresh_generation.get();
        let _permit = self
            .refresh_lock
            .acquire_permit(1)
            .await
            .map_err(|_| ClientError::Closed)?;
        if self.refresh_generation.get() != seen {
            // Another task refreshed while this one waited: its answer is as fresh as ours.
            return Ok(());
        }
        let result = self.metadata(None).await.map(|_| ());
        self.refresh_generation.set(seen.wrapping_add(1));
        result
    }

    /// Starts a metadata refresh in a task of its own unless one started this way is still
    /// running, and returns at once: a caller bounded by its own deadline (a consumer's poll)
    /// does not cut the refresh short, so a slow broker cannot keep the metadata stale.
    pub(crate) fn refresh_soon(self: &Rc<Self>) {
        if self.background_refresh.replace(true) {
            return;
        }
        let client = Rc::clone(self);
        glommio::spawn_local(async move {
            if let Err(error) = client.refresh_metadata().await {
                tracing::debug!(%error, "background metadata refresh failed");
            }
            client.background_refresh.set(false);
        })
        .detach();
    }

    /// Creates a topic. Fails with the broker's error (for example `TopicAlreadyExists` or
    /// `InvalidReplicationFactor`) and its message.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
    ) -> Result<(), ClientError> {
        let request = CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.to_string(),
                partitions,
                replication_factor,
                configs,
            }],
            timeout_ms: self.timeout_ms_u32(),
        };
        let (response, _) = self
            .request_any::<_, CreateTopicsResponse>(&request)
            .await?;
        topic_result(&response.results, name, "create topic")?;
        // Learn the new topic's partitions now, so a producer can use it at once. A failure
        // here only means the first send refreshes instead.
        if let Err(error) = self.metadata(Some(vec![name.to_string()])).await {
            tracing::debug!(%error, topic = name, "metadata refresh after create failed");
        }
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = DeleteTopicsRequest {
            names: vec![name.to_string()],
            timeout_ms: self.timeout_ms_u32(),
        };
        let (response, _) = self
            .request_any::<_, DeleteTopicsResponse>(&request)
            .await?;
        topic_result(&response.results, name, "delete topic")?;
        if let Err(error) = self.metadata(Some(vec![name.to_string()])).await {
            tracing::debug!(%error, topic = name, "metadata refresh after delete failed");
        }
        Ok(())
    }

    /// Grows topic `name` to `count` partitions (the new total). Existing partitions keep their
    /// records and offsets; keys of new writes may map to new partitions. Fails with
    /// `InvalidPartitions` when `count` is not more than now.
    pub async fn create_partitions(&self, name: &str, count: i32) -> Result<(), ClientError> {
        let request = CreatePartitionsRequest {
            topics: vec![NewPartitions {
                name: name.to_string(),
                count,
            }],
            timeout_ms: self.timeout_ms_u32(),
        };
        let (response, _) = self
            .request_any::<_, CreatePartitionsResponse>(&request)
            .await?;
        topic_result(&response.results, name, "add partitions to")?;
        if let Err(error) = self.metadata(Some(vec![name.to_string()])).await {
            tracing::debug!(%error, topic = name, "metadata refresh after adding partitions failed");
        }
        Ok(())
    }

    /// Sets the entries `set` and removes the keys `delete` of topic `name`'s configs. An
    /// invalid entry fails the whole change and leaves the topic as it was.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    ) -> Result<(), ClientError> {
        let request = AlterTopicConfigsRequest {
            changes: vec![TopicConfigChange {
                name: name.to_string(),
                set,
                delete,
            }],
            timeout_ms: self.timeout_ms_u32(),
        };
        let (response, _) = self
            .request_any::<_, AlterTopicConfigsResponse>(&request)
            .await?;
        topic_result(&response.results, name, "alter configs of")
    }

    /// Moves leadership of every partition (of `topic` only, when given) to its preferred
    /// replica where possible; one result per partition (cluster mode).
    pub async fn elect_leaders(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<ElectionResult>, ClientError> {
        let request = ElectLeadersRequest {
            topic: topic.map(str::to_string),
        };
        let (response, _) = self
            .request_any::<_, ElectLeadersResponse>(&request)
            .await?;
        if response.error != ErrorCode::None.code() {
            let detail = response.message.unwrap_or_default();
            return Err(ClientError::from_code(
                response.error,
                format!("elect leaders: {detail}"),
            ));
        }
        Ok(response.partitions)
    }

    /// A new idempotent producer id and its epoch (InitProducerId, no transactional id): unique
    /// in the cluster, never handed out again.
    pub async fn init_producer_id(&self) -> Result<(i64, i16), ClientError> {
        let request = InitProducerIdRequest {
            transactional_id: None,
            producer_id: -1,
            producer_epoch: -1,
        };
        let (response, _) = self
            .request_any::<_, InitProducerIdResponse>(&request)
            .await?;
        if response.error != ErrorCode::None.code() {
            let detail = response.message.unwrap_or_default();
            return Err(ClientError::from_code(
                response.error,
                format!("init producer id: {detail}"),
            ));
        }
        Ok((response.producer_id, response.producer_epoch))
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicMeta>, ClientError> {
        let mut topics = self.metadata(None).await?.topics;
        topics.retain(|topic| topic.error == ErrorCode::None.code());
        topics.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(topics)
    }

    /// One topic's partitions (leader, epoch, replicas, ISR, shard) and configs.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicMeta, ClientError> {
        let response = self.metadata(Some(vec![name.to_string()])).await?;
        let topic = response
            .topics
            .into_iter()
            .find(|topic| topic.name == name)
            .ok_or_else(|| ClientError::UnknownTopic(name.to_string()))?;
        match ErrorCode::from_i16(topic.error) {
            Some(ErrorCode::None) => Ok(topic),
            Some(ErrorCode::UnknownTopicOrPartition) => {
                Err(ClientError::UnknownTopic(name.to_string()))
            }
            _ => Err(ClientError::from_code(
                topic.error,
                format!("describe topic {name}"),
            )),
        }
    }

    /// The topic's partition count, from the cache when known, else from the cluster.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, ClientError> {
        if let Some(count) = self.cached_partition_count(topic) {
            return Ok(count);
        }
        self.metadata(Some(vec![topic.to_string()])).await?;
        self.cached_partition_count(topic)
            .ok_or_else(|| ClientError::UnknownTopic(topic.to_string()))
    }

    /// The offset `spec` designates in `topic`/`partition`: the log start, the log end (the
    /// next offset to be written), or the first offset at or after a timestamp (-1 when no
    /// record is that recent).
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64, ClientError> {
        let offsets = self
            .list_offsets(&[(topic.to_string(), partition)], spec)
            .await?;
        offsets
            .first()
            .copied()
            .ok_or_else(|| ClientError::InvalidResponse {
                op: "list offsets",
                reason: format!("no answer for {topic}-{partition}"),
            })
    }

    /// `list_offset` for many partitions, one request per serving broker port, retried on
    /// retriable errors. Offsets come back in the order of `partitions`.
    pub(crate) async fn list_offsets(
        &self,
        partitions: &[(String, i32)],
        spec: OffsetSpec,
    ) -> Result<Vec<i64>, ClientError> {
        let timestamp = spec.wire_timestamp()?;
        self.retrying(|| self.list_offsets_once(partitions, timestamp))
            .await
    }

    async fn list_offsets_once(
        &self,
        partitions: &[(String, i32)],
        timestamp: i64,
    ) -> Result<Vec<i64>, ClientError> {
        let mut by_addr: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, (topic, partition)) in partitions.iter().enumerate() {
            let addr = self.route(topic, *partition)?;
            by_addr.entry(addr).or_default().push(index);
        }
        let mut offsets = vec![-1; partitions.len()];
        for (addr, indexes) in by_addr {
            let request = ListOffsetsRequest {
                partitions: indexes
                    .iter()
                    .map(|&index| ListOffsetsPartition {
                        topic: partitions[index].0.clone(),
                        partition: partitions[index].1,
                        timestamp,
                    })
                    .collect(),
            };
            let (response, _) = self
                .request_to::<_, ListOffsetsResponse>(&addr, &request, &[], self.request_timeout())
                .await?;
            for index in indexes {
                let (topic, partition) = &partitions[index];
                let result = response
                    .partitions
                    .iter()
                    .find(|result| &result.topic == topic && result.partition == *partition)
                    .ok_or_else(|| ClientError::InvalidResponse {
                        op: "list offsets",
                        reason: format!("no result for {topic}-{partition}"),
                    })?;
                if result.error != ErrorCode::None.code() {
                    return Err(ClientError::from_code(
                        result.error,
                        format!("list offsets of {topic}-{partition}"),
                    ));
                }
                offsets[index] = result.offset;
            }
        }
        Ok(offsets)
    }

    /// The cached partition count of `topic`.
    pub(crate) fn cached_partition_count(&self, topic: &str) -> Option<i32> {
        self.metadata.borrow().partition_count(topic)
    }

    /// The `host:port` serving `topic`/`partition`, from the cache.
    pub(crate) fn route(&self, topic: &str, partition: i32) -> Result<String, ClientError> {
        self.metadata.borrow().route(topic, partition)
    }

    /// The request timeout.
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    fn timeout_ms_u32(&self) -> u32 {
        u32::try_from(self.config.request_timeout_ms).unwrap_or(u32::MAX)
    }

    /// The retry backoff settings.
    pub(crate) fn backoff_policy(&self) -> Backoff {
        Backoff {
            base_ms: self.config.retry_backoff_ms,
            max_ms: self.config.retry_backoff_ms_max,
        }
    }

    /// The wait before retry number `attempt` (0 for the first): the configured backoff,
    /// doubled per earlier retry, capped at `retry_backoff_ms_max`, with jitter.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.backoff_policy().delay(attempt, rand::random::<f64>())
    }

    /// Takes in a leader named by a NotLeaderOrFollower answer (`current_leader`, -1 when the
    /// broker did not know it): requests for the partition go to that broker until the next
    /// metadata refresh says otherwise.
    pub(crate) fn note_leader(&self, topic: &str, partition: i32, leader: i32) {
        if leader >= 0 {
            self.metadata
                .borrow_mut()
                .note_leader(topic, partition, leader);
        }
    }

    /// Runs `attempt` until it succeeds, fails with a non-retriable error, or failed
    /// `retries_max` more times; refreshes metadata and backs off between tries.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(error) if error.is_retriable() && retries < self.config.retries_max => {
                    tracing::debug!(%error, retries, "retrying after a retriable error");
                    glommio::timer::sleep(self.backoff(retries)).await;
                    retries += 1;
                    if let Err(refresh) = self.refresh_metadata().await {
                        tracing::debug!(error = %refresh, "metadata refresh before retry failed");
                    }
                }
                result => return result,
            }
        }
    }

    /// A live connection to `addr` for every request but fetches, opened if there is none.
    pub(crate) async fn connection(&self, addr: &str) -> Result<Rc<BrokerConnection>, ClientError> {
        self.lane_connection(addr, Lane::Requests).await
    }

    /// A live connection to `addr` of `lane`, opened if there is none. Concurrent callers for
    /// the same address and lane wait for one connect rather than each opening a connection.
    async fn lane_connection(
        &self,
        addr: &str,
        lane: Lane,
    ) -> Result<Rc<BrokerConnection>, ClientError> {
        let key = (addr.to_string(), lane);
        if let Some(connection) = self.live_connection(&key) {
            return Ok(connection);
        }
        let gate = Rc::clone(
            self.connect_gates
                .borrow_mut()
                .entry(key.clone())
                .or_insert_with(|| Rc::new(Semaphore::new(1))),
        );
        let _turn = gate
            .acquire_permit(1)
            .await
            .map_err(|_| ClientError::Closed)?;
        if let Some(connection) = self.live_connection(&key) {
            return Ok(connection);
        }
        let connection = BrokerConnection::connect(
            addr,
            self.config.frame_bytes_max,
            Duration::from_millis(self.config.connect_timeout_ms),
        )
        .await?;
        self.connections
            .borrow_mut()
            .insert(key, Rc::clone(&connection));
        Ok(connection)
    }

    fn live_connection(&self, key: &(String, Lane)) -> Option<Rc<BrokerConnection>> {
        self.connections
            .borrow()
            .get(key)
            .filter(|connection| connection.is_alive())
            .cloned()
    }

    /// Sends a request to `addr` and waits up to `timeout` for the response.
    pub(crate) async fn request_to<Req, Resp>(
        &self,
        addr: &str,
        request: &Req,
        payload: &[Bytes],
        timeout: Duration,
    ) -> Result<(Resp, Bytes), ClientError>
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        let connection = self.connection(addr).await?;
        connection.request(request, payload, timeout).await
    }

    /// Sends a fetch to `addr` on the fetch connection (see [`Lane`]) and waits up to
    /// `timeout` for the response. Its batches' CRCs are checked while it arrives; the third
    /// part is, per partition of the response, the length of the prefix of its records so
    /// checked (see [`FetchCheck`]).
    pub(crate) async fn fetch_from(
        &self,
        addr: &str,
        request: &FetchRequest,
        timeout: Duration,
    ) -> Result<(FetchResponse, Bytes, Vec<usize>), ClientError> {
        let connection = self.lane_connection(addr, Lane::Fetches).await?;
        let check = Rc::new(RefCell::new(FetchCheck::new(self.config.frame_bytes_max)));
        let observer = {
            let check = Rc::clone(&check);
            Box::new(move |frame: &[u8]| check.borrow_mut().observe(frame))
        };
        let (response, payload) = connection
            .request_observed(request, &[], timeout, Some(observer))
            .await?;
        let verified = check.borrow().verified_bytes();
        Ok((response, payload, verified))
    }

    /// Sends a request to the first broker that answers: known brokers first, then the
    /// bootstrap list. Only connection failures move on to the next broker.
    pub(crate) async fn request_any<Req, Resp>(
        &self,
        request: &Req,
    ) -> Result<(Resp, Bytes), ClientError>
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        let mut candidates = self.metadata.borrow().broker_addresses();
        for addr in &self.config.bootstrap {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        let mut last_error = None;
        for addr in candidates {
            match self
                .request_to(&addr, request, &[], self.request_timeout())
                .await
            {
                Err(error @ (ClientError::Connect { .. } | ClientError::ConnectionLost { .. })) => {
                    tracing::debug!(%addr, %error, "broker unreachable, trying the next one");
                    last_error = Some(error);
                }
                result => return result,
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Config {
            reason: "no broker address to send the request to".to_string(),
        }))
    }
}

/// The result for topic `name` in a CreateTopics/DeleteTopics response, as an error if the
/// broker refused.
impl Client {
    /// Starts (`replicas: Some(target)`) or cancels (`replicas: None`) partition reassignments
    /// (cluster mode). Answers once each change is recorded, one result per partition in
    /// request order; a refused partition carries the broker's error code and reason and
    /// changed nothing.
    pub async fn alter_partition_reassignments(
        &self,
        partitions: Vec<ReassignPartition>,
    ) -> Result<Vec<ReassignResult>, ClientError> {
        let request = AlterPartitionReassignmentsRequest {
            partitions,
            timeout_ms: self.timeout_ms_u32(),
        };
        let (response, _) = self
            .request_any::<_, AlterPartitionReassignmentsResponse>(&request)
            .await?;
        Ok(response.results)
    }

    /// The partition reassignments in progress (cluster mode).
    pub async fn list_partition_reassignments(
        &self,
    ) -> Result<Vec<OngoingReassignment>, ClientError> {
        let (response, _) = self
            .request_any::<_, ListPartitionReassignmentsResponse>(
                &ListPartitionReassignmentsRequest {},
            )
            .await?;
        if response.error != ErrorCode::None.code() {
            let message = response.message.unwrap_or_default();
            return Err(ClientError::from_code(
                response.error,
                format!("list partition reassignments: {message}"),
            ));
        }
        Ok(response.reassignments)
    }
}

/// Refreshes the client's metadata whenever it is older than `metadata_max_age_ms`, for as
/// long as the client lives (the task holds it weakly).
async fn keep_metadata_fresh(client: Weak<Client>) {
    loop {
        let due = match client.upgrade() {
            Some(client) => {
                let max_age = Duration::from_millis(client.config.metadata_max_age_ms);
                let due = client.refreshed_at.get() + max_age;
                if due <= Instant::now() {
                    client.refresh_soon();
                    Instant::now() + max_age
                } else {
                    due
                }
            }
            None => return,
        };
        glommio::timer::sleep(due.saturating_duration_since(Instant::now())).await;
    }
}

fn topic_result(results: &[TopicResult], name: &str, op: &'static str) -> Result<(), ClientError> {
    let result = results
        .iter()
        .find(|result| result.name == name)
        .ok_or_else(|| ClientError::InvalidResponse {
            op,
            reason: format!("no result for topic {name:?}"),
        })?;
    if result.error == ErrorCode::None.code() {
        return Ok(());
    }
    let detail = result.message.clone().unwrap_or_default();
    Err(ClientError::from_code(
        result.error,
        if detail.is_empty() {
            format!("{op} {name}")
        } else {
            format!("{op} {name}: {detail}")
        },
    ))
}
