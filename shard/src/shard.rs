//! [`Shard`]: the state one shard's tasks share, and the routing of partition operations to
//! the owning shard (locally, or as an owned message over the mesh).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::sync::Semaphore;
use glommio::Task;

use sluice_group::{GroupErrorCode, GroupRequest, GroupResponse};
use sluice_storage::{AppendBatches, StorageError};

use crate::error::{PartitionError, ShardError};
use crate::message::{
    AppendOutcome, OffsetQuery, Reader, RemoteRead, Reply, ShardRequest, Visibility,
};
use crate::metrics::ShardMetrics;
use crate::partition::{Partition, PartitionRegistry};
use crate::table::{ShardId, ShardTable};

/// Default bound on forwarded requests a shard serves at once for its peers. Waits for data are
/// not counted: they do no I/O, and each is already bounded by its requester's in-flight limit.
pub const FORWARDED_INFLIGHT_MAX_DEFAULT: usize = 1024;

/// Where a partition lives, from one shard's point of view.
pub enum Route {
    /// This shard owns it; here it is.
    Local(Rc<Partition>),
    /// Another shard owns it.
    Remote(ShardId),
    /// The partition exists but this broker holds no replica of it (cluster mode).
    NotHosted,
    /// No shard owns it (unknown topic or partition, or not open yet).
    Unknown,
}

/// The future a [`GroupService`] answers with (it lives on the shard's executor).
pub type GroupAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = GroupResponse>>>;

/// The consumer-group coordinators of one shard, as the broker provides them: group requests
/// forwarded by other shards are handed to it ([`ShardRequest::Group`]).
pub trait GroupService {
    /// Serves `request` for partition `partition` of `__consumer_offsets` (or every
    /// coordinator of the shard for [`crate::message::ALL_COORDINATORS`]).
    fn serve(&self, partition: i32, request: GroupRequest) -> GroupAnswer;
}

/// The state of one shard: its copy of the shard table, its partitions, its mesh senders and its
/// metrics. Exists once per shard, shared by that shard's tasks as `Rc<Shard>`.
pub struct Shard {
    id: ShardId,
    shard_count: u32,
    table: RefCell<ShardTable>,
    registry: PartitionRegistry,
    senders: Senders<ShardRequest>,
    metrics: Arc<ShardMetrics>,
    forwarded_permits: Rc<Semaphore>,
    /// The group coordinators of this shard, set once by the broker at startup.
    group_service: RefCell<Option<Rc<dyn GroupService>>>,
}

impl Shard {
    /// The state of shard `id` of `shard_count`.
    pub fn new(
        id: ShardId,
        shard_count: u32,
        senders: Senders<ShardRequest>,
        registry: PartitionRegistry,
        metrics: Arc<ShardMetrics>,
        forwarded_inflight_max: usize,
    ) -> Rc<Shard> {
        Rc::new(Shard {
            id,
            shard_count,
            table: RefCell::new(ShardTable::default()),
            registry,
            senders,
            metrics,
            forwarded_permits: Rc::new(Semaphore::new(forwarded_inflight_max.max(1) as u64)),
            group_service: RefCell::new(None),
        })
    }

    /// Installs the service that answers group requests forwarded to this shard.
    pub fn set_group_service(&self, service: Rc<dyn GroupService>) {
        *self.group_service.borrow_mut() = Some(service);
    }

    /// Sends a group request to shard `owner` (its coordinator of `partition`) and waits for
    /// the answer, however long the coordinator holds it (JoinGroup and SyncGroup are long
    /// polls). Dropping the future drops the answer, not the request.
    pub async fn group_request(
        &self,
        owner: ShardId,
        partition: i32,
        request: GroupRequest,
    ) -> Result<GroupResponse, PartitionError> {
        let (reply, answer) = oneshot::channel();
        let failed = || PartitionError::Forward {
            shard: owner.0,
            operation: "group",
        };
        self.metrics.forwarded_requests.increment();
        self.senders
            .send_to(
                owner.index(),
                ShardRequest::Group {
                    partition,
                    request,
                    reply,
                },
            )
            .await
            .map_err(|_| failed())?;
        answer.await.map_err(|_| failed())
    }

    /// This shard.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// This shard's metrics.
    pub fn metrics(&self) -> &Arc<ShardMetrics> {
        &self.metrics
    }

    /// This shard's partitions.
    pub fn registry(&self) -> &PartitionRegistry {
        &self.registry
    }

    /// A copy of this shard's table (for answers that list topics).
    pub fn table(&self) -> ShardTable {
        self.table.borrow().clone()
    }

    /// Runs `read` on this shard's table without copying it.
    pub fn with_table<R>(&self, read: impl FnOnce(&ShardTable) -> R) -> R {
        read(&self.table.borrow())
    }

    /// Where `topic`-`partition` lives.
    pub fn route(&self, topic: &str, partition: i32) -> Route {
        let table = self.table.borrow();
        match table.owner(topic, partition) {
            None if table.has_partition(topic, partition) => Route::NotHosted,
            None => Route::Unknown,
            Some(owner) if owner != self.id => Route::Remote(owner),
            Some(_) => match self.registry.get(topic, partition) {
                Some(local) => Route::Local(local),
                None => Route::Unknown,
            },
        }
    }

    /// Installs `table` unless it is older than the one held, then opens and deletes logs to
    /// match it and (cluster mode) gives every partition its replication role. Answers once
    /// this shard's partitions match the table.
    pub async fn apply_table(&self, table: ShardTable) -> Result<(), ShardError> {
        let applied = self.table.borrow_mut().apply(table);
        if !applied {
            tracing::debug!(shard = self.id.0, "ignored a stale shard table");
            return Ok(());
        }
        let current = self.table();
        let result = self.registry.reconcile(&current, self.id).await;
        self.apply_roles(&current).await;
        self.metrics.partitions.set(self.registry.len() as u64);
        result
    }

    /// Gives every open partition the role `table` describes (cluster mode only).
    async fn apply_roles(&self, table: &ShardTable) {
        let Some(cluster) = table.cluster() else {
            return;
        };
        let now_ms = crate::now_ms();
        for partition in self.registry.all() {
            let info = usize::try_from(partition.partition())
                .ok()
                .zip(table.topic(partition.topic()))
                .and_then(|(index, assignment)| assignment.replica_info(index));
            if let Some(info) = info {
                let live = |node: i32| cluster.brokers.contains_key(&node);
                partition
                    .apply_replica_info(cluster.node_id, info, live, now_ms)
                    .await;
            }
        }
    }

    /// Appends record batches to `topic`-`partition` on whichever shard owns it, answering
    /// after the local append (acks=1).
    pub async fn append(
        &self,
        topic: &str,
        partition: i32,
        batches: impl Into<AppendBatches>,
    ) -> Result<AppendOutcome, PartitionError> {
        self.append_acked(topic, partition, batches, None).await
    }

    /// Appends record batches to `topic`-`partition` on whichever shard owns it. With
    /// `acks_all`, answers once the high watermark passes them (at most that long; see
    /// [`Partition::append_as_leader`]).
    pub async fn append_acked(
        &self,
        topic: &str,
        partition: i32,
        batches: impl Into<AppendBatches>,
        acks_all: Option<Duration>,
    ) -> Result<AppendOutcome, PartitionError> {
        let outcome = self
            .route_append(topic, partition, batches.into(), acks_all)
            .await;
        if outcome.as_ref().is_ok_and(|outcome| outcome.duplicate) {
            self.metrics.produce_duplicate_batches.increment();
        }
        outcome
    }

    async fn route_append(
        &self,
        topic: &str,
        partition: i32,
        batches: AppendBatches,
        acks_all: Option<Duration>,
    ) -> Result<AppendOutcome, PartitionError> {
        match self.route(topic, partition) {
            Route::Local(local) => local.append_as_leader(batches, acks_all).await,
            Route::Remote(owner) => {
                self.forward(owner, |reply| ShardRequest::Append {
                    topic: topic.to_string(),
                    partition,
                    batches,
                    acks_all_timeout_ms: acks_all
                        .map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                    reply,
                })
                .await
            }
            Route::NotHosted => Err(PartitionError::not_leader(topic, partition, -1)),
            Route::Unknown => Err(PartitionError::unknown(topic, partition)),
        }
    }

    /// Reads whole batches of a partition `owner` owns (a copying read on the owner), as a
    /// consumer.
    pub async fn read_remote(
        &self,
        owner: ShardId,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<RemoteRead, PartitionError> {
        self.read_remote_as(owner, topic, partition, offset, max_bytes, Reader::Consumer)
            .await
    }

    /// Reads whole batches of a partition `owner` owns as `reader` (a follower's read also
    /// records its progress on the owner).
    pub async fn read_remote_as(
        &self,
        owner: ShardId,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        reader: Reader,
    ) -> Result<RemoteRead, PartitionError> {
        self.forward(owner, |reply| ShardRequest::Read {
            topic: topic.to_string(),
            partition,
            offset,
            max_bytes,
            reader,
            reply,
        })
        .await
    }

    /// Waits until the watched offset of a partition `owner` owns passes `offset`, for at most
    /// `wait`. Dropping the returned future cancels the wait on the owner too.
    pub async fn wait_remote(
        &self,
        owner: ShardId,
        topic: &str,
        partition: i32,
        offset: i64,
        visibility: Visibility,
        wait: Duration,
    ) {
        let (reply, answer) = oneshot::channel();
        let request = ShardRequest::WaitForData {
            topic: topic.to_string(),
            partition,
            offset,
            visibility,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            reply,
        };
        self.metrics.forwarded_requests.increment();
        if self.senders.send_to(owner.index(), request).await.is_ok() {
            let _ = answer.await;
        }
    }

    /// Resolves an offset query on whichever shard owns the partition.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        query: OffsetQuery,
    ) -> Result<Option<i64>, PartitionError> {
        match self.route(topic, partition) {
            Route::Local(local) => local.list_offset(query).await,
            Route::Remote(owner) => {
                self.forward(owner, |reply| ShardRequest::ListOffset {
                    topic: topic.to_string(),
                    partition,
                    query,
                    reply,
                })
                .await
            }
            Route::NotHosted => Err(PartitionError::not_leader(topic, partition, -1)),
            Route::Unknown => Err(PartitionError::unknown(topic, partition)),
        }
    }

    /// The end offset of leader epoch `epoch` on whichever shard owns the partition.
    pub async fn end_offset_for_epoch(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
    ) -> Result<Option<(i32, i64)>, PartitionError> {
        match self.route(topic, partition) {
            Route::Local(local) => local.epoch_end(epoch),
            Route::Remote(owner) => {
                self.forward(owner, |reply| ShardRequest::EpochEnd {
                    topic: topic.to_string(),
                    partition,
                    epoch,
                    reply,
                })
                .await
            }
            Route::NotHosted => Err(PartitionError::not_leader(topic, partition, -1)),
            Route::Unknown => Err(PartitionError::unknown(topic, partition)),
        }
    }

    async fn forward<T>(
        &self,
        owner: ShardId,
        make: impl FnOnce(Reply<T>) -> ShardRequest,
    ) -> Result<T, PartitionError> {
        let (reply, answer) = oneshot::channel();
        let request = make(reply);
        let operation = request.operation();
        let failed = || PartitionError::Forward {
            shard: owner.0,
            operation,
        };
        self.metrics.forwarded_requests.increment();
        self.senders
            .send_to(owner.index(), request)
            .await
            .map_err(|_| failed())?;
        answer.await.map_err(|_| failed())?
    }

    /// Starts serving the requests peers send to this shard: one task per peer reads its
    /// inbox and runs each request as its own task (bounded by the forwarded in-flight limit,
    /// so a full limit backpressures the peer's queue). Dropping the returned tasks stops it.
    pub fn serve_mesh(self: &Rc<Self>, mut receivers: Receivers<ShardRequest>) -> Vec<Task<()>> {
        receivers
            .streams()
            .into_iter()
            .map(|(_peer, inbox)| {
                let shard = self.clone();
                glommio::spawn_local(async move {
                    while let Some(request) = inbox.recv().await {
                        shard.dispatch(request).await;
                    }
                })
            })
            .collect()
    }

    async fn dispatch(self: &Rc<Self>, request: ShardRequest) {
        self.metrics.forwarded_served.increment();
        // Waits for data and group requests (long polls) hold no forwarded permit: they do
        // no I/O while they wait, and each is bounded by its requester's in-flight limit.
        if let ShardRequest::WaitForData { .. } | ShardRequest::Group { .. } = request {
            let shard = self.clone();
            glommio::spawn_local(async move { shard.serve(request).await }).detach();
            return;
        }
        let Ok(permit) =
            sluice_storage::sync::acquire_static_permit(&self.forwarded_permits, 1).await
        else {
            return;
        };
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard.serve(request).await;
            drop(permit);
        })
        .detach();
    }

    async fn serve(&self, request: ShardRequest) {
        match request {
            ShardRequest::Append {
                topic,
                partition,
                batches,
                acks_all_timeout_ms,
                reply,
            } => {
                let acks_all = acks_all_timeout_ms.map(Duration::from_millis);
                let result = match self.registry.get(&topic, partition) {
                    Some(local) => local.append_as_leader(batches, acks_all).await,
                    None => Err(PartitionError::unknown(&topic, partition)),
                };
                let _ = reply.send(result);
            }
            ShardRequest::Read {
                topic,
                partition,
                offset,
                max_bytes,
                reader,
                reply,
            } => {
                let read = self
                    .serve_read(&topic, partition, offset, max_bytes, reader)
                    .await;
                let _ = reply.send(read);
            }
            ShardRequest::WaitForData {
                topic,
                partition,
                offset,
                visibility,
                wait_ms,
                mut reply,
            } => {
                if let Some(local) = self.registry.get(&topic, partition) {
                    let wait = Duration::from_millis(wait_ms);
                    let waited = local.wait_until(visibility, offset, wait);
                    let requester_gone = async {
                        reply.cancellation().await;
                        false
                    };
                    futures_lite::future::or(waited, requester_gone).await;
                }
                let _ = reply.send(());
            }
            ShardRequest::ListOffset {
                topic,
                partition,
                query,
                reply,
            } => {
                let result = match self.registry.get(&topic, partition) {
                    Some(local) => local.list_offset(query).await,
                    None => Err(PartitionError::unknown(&topic, partition)),
                };
                let _ = reply.send(result);
            }
            ShardRequest::EpochEnd {
                topic,
                partition,
                epoch,
                reply,
            } => {
                let result = match self.registry.get(&topic, partition) {
                    Some(local) => local.epoch_end(epoch),
                    None => Err(PartitionError::unknown(&topic, partition)),
                };
                let _ = reply.send(result);
            }
            group @ ShardRequest::Group { .. } => self.serve_group(group).await,
        }
    }

    async fn serve_group(&self, request: ShardRequest) {
        let ShardRequest::Group {
            partition,
            request,
            reply,
        } = request
        else {
            return;
        };
        let service = self.group_service.borrow().clone();
        let response = match service {
            Some(service) => service.serve(partition, request).await,
            None => request.error_response(GroupErrorCode::NotCoordinator),
        };
        let _ = reply.send(response);
    }

    async fn serve_read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        reader: Reader,
    ) -> Result<RemoteRead, PartitionError> {
        let local = self
            .registry
            .get(topic, partition)
            .ok_or_else(|| PartitionError::unknown(topic, partition))?;
        local.record_fetch(reader, offset, crate::now_ms())?;
        // A zero budget asks for the partition's offsets only (the fetch's byte budget is spent).
        let records = if max_bytes == 0 {
            local.check_leader()?;
            Bytes::new()
        } else {
            local.read_bytes_as(reader, offset, max_bytes).await?
        };
        Ok(RemoteRead {
            records,
            state: local.state(),
        })
    }

    /// Periodic upkeep of every partition this shard owns: time-based flush and segment roll,
    /// then retention (never past the high watermark), then the high-watermark checkpoint.
    /// Errors are logged, not returned: one failing partition must not stop the upkeep of the
    /// others.
    pub async fn maintenance(&self, now_ms: i64) {
        let mut offline = 0;
        for partition in self.registry.all() {
            let log = partition.log();
            if log.offline().is_some() {
                // Reported once, when it failed; it stays offline until the broker restarts.
                offline += 1;
                continue;
            }
            match log.maintenance(now_ms).await {
                // A log closed meanwhile (the partition was removed or the shard is shutting
                // down) has nothing left to maintain.
                Ok(()) | Err(StorageError::Closed) => {}
                Err(error) => {
                    tracing::warn!(topic = partition.topic(), partition = partition.partition(), %error, "log maintenance failed");
                }
            }
            match partition.apply_retention(now_ms).await {
                Ok(0) | Err(StorageError::Closed) => {}
                Ok(deleted) => {
                    tracing::info!(
                        topic = partition.topic(),
                        partition = partition.partition(),
                        deleted,
                        "retention deleted segments"
                    );
                }
                Err(error) => {
                    tracing::warn!(topic = partition.topic(), partition = partition.partition(), %error, "retention failed");
                }
            }
            match partition.checkpoint_high_watermark(now_ms, false).await {
                Ok(()) | Err(StorageError::Closed) => {}
                Err(error) => {
                    tracing::warn!(topic = partition.topic(), partition = partition.partition(), %error, "high watermark checkpoint failed");
                }
            }
        }
        self.metrics.partitions_offline.set(offline);
    }

    /// Flushes and closes every log this shard owns (clean-shutdown markers).
    pub async fn close(&self) -> Result<(), ShardError> {
        let result = self.registry.close_all().await;
        self.metrics.partitions.set(0);
        result
    }
}
