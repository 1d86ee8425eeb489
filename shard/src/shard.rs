//! [`Shard`]: the state one shard's tasks share, and the routing of partition operations to
//! the owning shard (locally, or as an owned message over the mesh).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::sync::Semaphore;
use glommio::Task;

use crate::error::{PartitionError, ShardError};
use crate::message::{AppendOutcome, OffsetQuery, RemoteRead, Reply, ShardRequest};
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
    /// No shard owns it (unknown topic or partition, or not open yet).
    Unknown,
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
        })
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
        match self.table.borrow().owner(topic, partition) {
            None => Route::Unknown,
            Some(owner) if owner != self.id => Route::Remote(owner),
            Some(_) => match self.registry.get(topic, partition) {
                Some(local) => Route::Local(local),
                None => Route::Unknown,
            },
        }
    }

    /// Installs `table` unless it is older than the one held, then opens and deletes logs to
    /// match it. Answers once this shard's partitions match the table.
    pub async fn apply_table(&self, table: ShardTable) -> Result<(), ShardError> {
        let applied = self.table.borrow_mut().apply(table);
        if !applied {
            tracing::debug!(shard = self.id.0, "ignored a stale shard table");
            return Ok(());
        }
        let current = self.table();
        let result = self.registry.reconcile(&current, self.id).await;
        self.metrics.partitions.set(self.registry.len() as u64);
        result
    }

    /// Appends record batches to `topic`-`partition` on whichever shard owns it.
    pub async fn append(
        &self,
        topic: &str,
        partition: i32,
        batches: Bytes,
    ) -> Result<AppendOutcome, PartitionError> {
        match self.route(topic, partition) {
            // Converting to BytesMut moves the bytes when this is the only reference to them,
            // and copies them once otherwise (several partitions sliced from one frame).
            Route::Local(local) => local.append(BytesMut::from(batches)).await,
            Route::Remote(owner) => {
                self.forward(owner, |reply| ShardRequest::Append {
                    topic: topic.to_string(),
                    partition,
                    batches,
                    reply,
                })
                .await
            }
            Route::Unknown => Err(PartitionError::unknown(topic, partition)),
        }
    }

    /// Reads whole batches of a partition `owner` owns (a copying read on the owner).
    pub async fn read_remote(
        &self,
        owner: ShardId,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<RemoteRead, PartitionError> {
        self.forward(owner, |reply| ShardRequest::Read {
            topic: topic.to_string(),
            partition,
            offset,
            max_bytes,
            reply,
        })
        .await
    }

    /// Waits until the high watermark of a partition `owner` owns passes `offset`, for at most
    /// `wait`. Dropping the returned future cancels the wait on the owner too.
    pub async fn wait_remote(
        &self,
        owner: ShardId,
        topic: &str,
        partition: i32,
        offset: i64,
        wait: Duration,
    ) {
        let (reply, answer) = oneshot::channel();
        let request = ShardRequest::WaitForData {
            topic: topic.to_string(),
            partition,
            offset,
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
            Route::Local(local) => Ok(local.log().end_offset_for_epoch(epoch)),
            Route::Remote(owner) => {
                self.forward(owner, |reply| ShardRequest::EpochEnd {
                    topic: topic.to_string(),
                    partition,
                    epoch,
                    reply,
                })
                .await
            }
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
        if let ShardRequest::WaitForData { .. } = request {
            let shard = self.clone();
            glommio::spawn_local(async move { shard.serve(request).await }).detach();
            return;
        }
        let Ok(permit) = self.forwarded_permits.acquire_static_permit(1).await else {
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
                reply,
            } => {
                let result = match self.registry.get(&topic, partition) {
                    Some(local) => local.append(BytesMut::from(batches)).await,
                    None => Err(PartitionError::unknown(&topic, partition)),
                };
                let _ = reply.send(result);
            }
            ShardRequest::Read {
                topic,
                partition,
                offset,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.serve_read(&topic, partition, offset, max_bytes).await);
            }
            ShardRequest::WaitForData {
                topic,
                partition,
                offset,
                wait_ms,
                mut reply,
            } => {
                if let Some(local) = self.registry.get(&topic, partition) {
                    let waited = local.wait_for_data(offset, Duration::from_millis(wait_ms));
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
                    Some(local) => Ok(local.log().end_offset_for_epoch(epoch)),
                    None => Err(PartitionError::unknown(&topic, partition)),
                };
                let _ = reply.send(result);
            }
        }
    }

    async fn serve_read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<RemoteRead, PartitionError> {
        let local = self
            .registry
            .get(topic, partition)
            .ok_or_else(|| PartitionError::unknown(topic, partition))?;
        // A zero budget asks for the partition's offsets only (the fetch's byte budget is spent).
        let records = if max_bytes == 0 {
            Bytes::new()
        } else {
            local.read_bytes(offset, max_bytes).await?
        };
        Ok(RemoteRead {
            records,
            state: local.state(),
        })
    }

    /// Periodic upkeep of every partition this shard owns: time-based flush and segment roll,
    /// then retention. Errors are logged, not returned: one failing partition must not stop the
    /// upkeep of the others.
    pub async fn maintenance(&self, now_ms: i64) {
        for partition in self.registry.all() {
            let log = partition.log();
            if let Err(error) = log.maintenance(now_ms).await {
                tracing::warn!(topic = partition.topic(), partition = partition.partition(), %error, "log maintenance failed");
            }
            match log.apply_retention(now_ms).await {
                Ok(0) => {}
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
        }
    }

    /// Flushes and closes every log this shard owns (clean-shutdown markers).
    pub async fn close(&self) -> Result<(), ShardError> {
        let result = self.registry.close_all().await;
        self.metrics.partitions.set(0);
        result
    }
}
