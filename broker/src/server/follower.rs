//! The follower side of replication on a shard: replica fetchers (DESIGN.md section 6).
//!
//! A shard runs one fetcher per leader endpoint it follows partitions from: the shard of the
//! leader broker that owns them (so the leader serves the fetch zero-copy, with no cross-core
//! hop). When every broker runs the same number of shards that is exactly one connection per
//! (follower shard, leader broker). A fetcher multiplexes all its partitions on one connection,
//! one request at a time:
//!
//! 1. A partition that just started following (or whose leader or epoch changed) first asks
//!    the leader OffsetForLeaderEpoch(its latest local epoch) and truncates its log to the
//!    answer when that is lower (KIP-101/279), repeating while the truncation is not settled.
//! 2. Then it fetches with replica_id = this broker's node id from its log end offset, appends
//!    the batches as they are (offsets and epochs kept), and takes the leader's high watermark
//!    (capped by its own log end).
//!
//! A partition whose log ends below the leader's log start (retention on the leader deleted
//! what it needs) is emptied and restarted at the leader's log start (Kafka's
//! `truncateFullyAndStartAt`).
//!
//! A replica a reassignment adds on this broker fetches under the shard's share of the
//! reassignment throttle until it joins the ISR (see [`super::throttle`]), and reports the bytes
//! it estimates it still lacks in the shard's metrics.
//!
//! Errors back off (bounded, doubling); a broken connection is reopened. Each truncation and
//! append holds the partition's role (`Partition::hold_role`), which a role change waits for,
//! and every response is checked against the partition's role generation before it is used, so
//! nothing fetched under an old role lands in the log.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_net::{
    Connection, ControlDecode, ControlEncode, EpochQuery, ErrorCode, FetchPartition,
    FetchPartitionResult, FetchRequest, FetchResponse, FrameHeader, Message, NetError,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use sluice_shard::replica::truncation_point;
use sluice_shard::{Partition, PartitionCatchUp, PartitionError, RoleView, ShardTable};

use super::throttle::{bytes_remaining_estimate, is_throttled, TokenBucket};
use super::trigger::Trigger;
use super::ShardServer;

/// Bytes a replica fetch response may carry over all its partitions.
pub const REPLICA_FETCH_RESPONSE_BYTES_MAX: u32 = 10 << 20;

/// First and largest pause after a failed exchange with a leader, milliseconds.
const REPLICA_BACKOFF_MS_MIN: u64 = 50;
const REPLICA_BACKOFF_MS_MAX: u64 = 2_000;

/// Bound on opening a connection to a leader, milliseconds.
const REPLICA_CONNECT_TIMEOUT_MS: u64 = 3_000;

/// How long a follower waits for a response beyond the wait it asked the leader for,
/// milliseconds; past it the connection is taken as broken and reopened.
const REPLICA_RESPONSE_MARGIN_MS: u64 = 10_000;

/// How long a partition whose leader refused it (not leader yet, stale epoch, unknown) waits
/// before it is tried again, milliseconds.
const PARTITION_RETRY_MS: u64 = 200;

/// Where a fetcher fetches from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetcherKey {
    /// The leader's node id.
    pub leader: i32,
    /// `host:port` of the leader's shard that owns the partitions.
    pub addr: String,
}

/// One partition a fetcher replicates.
struct Followed {
    partition: Rc<Partition>,
    /// The leader epoch it follows in.
    epoch: i32,
    /// The partition's role generation when it was handed to the fetcher.
    generation: u64,
    needs_truncation: bool,
    /// Not tried again before this instant (the leader refused it, or the throttle is spent).
    not_before: Option<Instant>,
    /// What a reassignment makes of this replica.
    moving: Moving,
    /// Estimated bytes it lacks (a replica a reassignment adds), once it holds records.
    bytes_remaining: Option<u64>,
}

/// What a reassignment in progress makes of one followed replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Moving {
    /// A reassignment adds this replica: its progress is reported.
    adding: bool,
    /// It fetches under the reassignment throttle (adding and not in the ISR).
    throttled: bool,
}

impl Followed {
    fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| at <= now) && self.current()
    }

    /// True while the partition's role is the one it was followed in.
    fn current(&self) -> bool {
        self.partition.generation() == self.generation
    }

    fn delay(&mut self) {
        self.not_before = Some(Instant::now() + Duration::from_millis(PARTITION_RETRY_MS));
    }
}

type PartitionKey = (String, i32);

/// A fetcher's state, shared by its task and the shard's reconciliation.
struct Fetcher {
    key: FetcherKey,
    partitions: RefCell<BTreeMap<PartitionKey, Followed>>,
    /// Set when the partition set changed, so a waiting fetcher looks again.
    changed: Cell<bool>,
    wake: RefCell<Option<futures_channel::oneshot::Sender<()>>>,
    stop: Trigger,
}

impl Fetcher {
    fn notify(&self) {
        self.changed.set(true);
        if let Some(wake) = self.wake.borrow_mut().take() {
            let _ = wake.send(());
        }
    }

    /// Completes when [`Fetcher::notify`] is called (at once if it was since the last wait).
    async fn changed(&self) {
        if self.changed.replace(false) {
            return;
        }
        let (sender, receiver) = futures_channel::oneshot::channel();
        *self.wake.borrow_mut() = Some(sender);
        let _ = receiver.await;
        self.changed.set(false);
    }
}

/// The replica fetchers of one shard. Lives on that shard.
pub struct Followers {
    fetchers: RefCell<HashMap<FetcherKey, Rc<Fetcher>>>,
    /// The shard's share of the reassignment throttle; `None`: unlimited.
    throttle: Option<RefCell<TokenBucket>>,
}

impl Followers {
    /// No fetchers yet; replicas reassignments add fetch at most `throttle_bytes_per_second`
    /// (this shard's share; `None`: unlimited).
    pub fn new(throttle_bytes_per_second: Option<u64>) -> Followers {
        Followers {
            fetchers: RefCell::new(HashMap::new()),
            throttle: throttle_bytes_per_second
                .map(|rate| RefCell::new(TokenBucket::new(rate, Instant::now()))),
        }
    }

    /// Makes the fetchers match the partitions this shard follows now: each follower partition
    /// goes to the fetcher of its leader's endpoint (a partition whose role generation changed
    /// starts over with truncation), fetchers left without partitions stop. Called after every
    /// table the shard applies.
    pub fn reconcile(&self, server: &Rc<ShardServer>) {
        let wanted = wanted_fetchers(server);
        let mut fetchers = self.fetchers.borrow_mut();
        fetchers.retain(|key, fetcher| {
            let keep = wanted.contains_key(key);
            if !keep {
                fetcher.stop.fire();
                fetcher.notify();
            }
            keep
        });
        for (key, partitions) in wanted {
            let fetcher = fetchers.entry(key.clone()).or_insert_with(|| {
                let fetcher = Rc::new(Fetcher {
                    key,
                    partitions: RefCell::new(BTreeMap::new()),
                    changed: Cell::new(false),
                    wake: RefCell::new(None),
                    stop: Trigger::default(),
                });
                glommio::spawn_local(run(server.clone(), fetcher.clone())).detach();
                fetcher
            });
            update_partitions(fetcher, partitions);
        }
        drop(fetchers);
        self.publish_progress(server);
    }

    /// Puts the catch-up progress of every replica a reassignment adds on this shard into the
    /// shard's metrics.
    fn publish_progress(&self, server: &ShardServer) {
        let mut progress = Vec::new();
        for fetcher in self.fetchers.borrow().values() {
            for ((topic, partition), followed) in fetcher.partitions.borrow().iter() {
                if let (true, Some(bytes_remaining)) =
                    (followed.moving.adding, followed.bytes_remaining)
                {
                    progress.push(PartitionCatchUp {
                        topic: topic.clone(),
                        partition: *partition,
                        bytes_remaining,
                    });
                }
            }
        }
        server.metrics().set_reassignment_progress(progress);
    }

    /// Bytes the shard's reassignment throttle lets throttled replicas fetch now; `None`:
    /// unlimited.
    fn available_bytes(&self, now: Instant) -> Option<u64> {
        self.throttle
            .as_ref()
            .map(|bucket| bucket.borrow_mut().available_bytes(now))
    }

    /// When the shard's reassignment throttle holds bytes again (`now` when unlimited).
    fn ready_at(&self, now: Instant) -> Instant {
        self.throttle
            .as_ref()
            .map_or(now, |bucket| bucket.borrow_mut().ready_at(now))
    }

    /// Charges `bytes` a throttled replica received to the shard's throttle and metrics.
    fn charge(&self, server: &ShardServer, bytes: u64) {
        if let Some(bucket) = &self.throttle {
            bucket.borrow_mut().charge(bytes);
        }
        server.metrics().reassignment_throttled_bytes.add(bytes);
    }

    /// Stops every fetcher (drain and close).
    pub fn stop_all(&self) {
        for (_, fetcher) in self.fetchers.borrow_mut().drain() {
            fetcher.stop.fire();
            fetcher.notify();
        }
    }
}

/// The partitions this shard follows (and what a reassignment makes of each), grouped by the
/// leader endpoint they fetch from.
fn wanted_fetchers(server: &ShardServer) -> HashMap<FetcherKey, Vec<(Rc<Partition>, Moving)>> {
    let mut wanted: HashMap<FetcherKey, Vec<(Rc<Partition>, Moving)>> = HashMap::new();
    server.shard.with_table(|table| {
        let Some(cluster) = table.cluster() else {
            return;
        };
        for partition in server.shard.registry().all() {
            let RoleView::Follower { leader, .. } = partition.role() else {
                continue;
            };
            let Some(broker) = cluster.brokers.get(&leader) else {
                continue;
            };
            let key = FetcherKey {
                leader,
                addr: broker.owner_addr(partition.topic(), partition.partition()),
            };
            let moving = moving(table, cluster.node_id, &partition);
            wanted.entry(key).or_default().push((partition, moving));
        }
    });
    wanted
}

/// What the reassignment of `partition` (if any) makes of broker `node_id`'s replica.
fn moving(table: &ShardTable, node_id: i32, partition: &Partition) -> Moving {
    let index = usize::try_from(partition.partition()).unwrap_or(usize::MAX);
    let Some(info) = table
        .topic(partition.topic())
        .and_then(|topic| topic.replica_info(index))
    else {
        return Moving::default();
    };
    Moving {
        adding: info.adding.contains(&node_id),
        throttled: is_throttled(info, node_id),
    }
}

/// Replaces a fetcher's partitions, keeping the progress of those whose role is unchanged.
fn update_partitions(fetcher: &Fetcher, partitions: Vec<(Rc<Partition>, Moving)>) {
    let mut current = fetcher.partitions.borrow_mut();
    let mut next = BTreeMap::new();
    for (partition, moving) in partitions {
        let key = (partition.topic().to_string(), partition.partition());
        let generation = partition.generation();
        let RoleView::Follower { epoch, .. } = partition.role() else {
            continue;
        };
        let mut followed = match current.remove(&key) {
            Some(kept) if kept.generation == generation => kept,
            _ => Followed {
                partition,
                epoch,
                generation,
                needs_truncation: true,
                not_before: None,
                moving,
                bytes_remaining: None,
            },
        };
        if followed.moving != moving {
            tracing::info!(
                topic = key.0,
                partition = key.1,
                adding = moving.adding,
                throttled = moving.throttled,
                "replica's reassignment state changed"
            );
        }
        followed.moving = moving;
        if !moving.adding {
            followed.bytes_remaining = None;
        }
        next.insert(key, followed);
    }
    *current = next;
    drop(current);
    fetcher.notify();
}

/// Why one exchange with the leader failed.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no response within {0} ms")]
    Timeout(u64),
    #[error("the leader closed the connection")]
    Closed,
    #[error("response {got} does not answer request {expected}")]
    Mismatch { expected: u32, got: u32 },
    #[error("stopping")]
    Stopped,
}

/// One connection to a leader endpoint, one request at a time.
struct LeaderLink {
    connection: Connection,
    next_correlation_id: u32,
}

impl LeaderLink {
    async fn open(addr: &str, frame_bytes_max: usize) -> Result<LeaderLink, ExchangeError> {
        let failed = |reason: String| ExchangeError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let socket_addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .map_err(|error| failed(error.to_string()))?
            .next()
            .ok_or_else(|| failed("resolves to no address".to_string()))?;
        let timeout = Duration::from_millis(REPLICA_CONNECT_TIMEOUT_MS);
        let stream = glommio::net::TcpStream::connect_timeout(socket_addr, timeout)
            .await
            .map_err(|error| failed(error.to_string()))?;
        // A fetch is a small request: with Nagle's algorithm it could wait for the ACK of the
        // previous one (see `admit`).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a replica fetch connection");
        }
        Ok(LeaderLink {
            connection: Connection::new(stream, frame_bytes_max),
            next_correlation_id: 1,
        })
    }

    /// Sends `request` and reads its response within `timeout`.
    async fn exchange<Req, Resp>(
        &mut self,
        request: &Req,
        timeout: Duration,
    ) -> Result<(Resp, BytesMut), ExchangeError>
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = correlation_id.wrapping_add(1);
        let header = FrameHeader::request(Req::API, 0, correlation_id);
        let exchange = async {
            self.connection.write_frame(header, request, &[]).await?;
            let frame = self
                .connection
                .read_frame()
                .await?
                .ok_or(ExchangeError::Closed)?;
            if frame.header.correlation_id != correlation_id || !frame.header.is_response() {
                return Err(ExchangeError::Mismatch {
                    expected: correlation_id,
                    got: frame.header.correlation_id,
                });
            }
            let response = frame.decode::<Resp>()?;
            Ok((response, frame.payload))
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        futures_lite::future::or(exchange, async {
            glommio::timer::sleep(timeout).await;
            Err(ExchangeError::Timeout(timeout_ms))
        })
        .await
    }
}

/// The fetcher task: rounds of truncation and fetching until stopped.
async fn run(server: Rc<ShardServer>, fetcher: Rc<Fetcher>) {
    let mut link: Option<LeaderLink> = None;
    let mut backoff_ms = REPLICA_BACKOFF_MS_MIN;
    let frame_bytes_max = server.shared.config.limits.frame_bytes_max;
    loop {
        if fetcher.stop.is_fired() || server.stop.is_fired() {
            return;
        }
        // A round can finish without waiting (nothing admitted, or every answer at hand): let
        // the shard's other tasks run when this one has had its share.
        glommio::yield_if_needed().await;
        if !has_work(&fetcher) {
            idle(&server, &fetcher).await;
            continue;
        }
        let outcome = match link.as_mut() {
            Some(open) => round(&server, &fetcher, open).await,
            None => match stoppable(
                &server,
                &fetcher,
                LeaderLink::open(&fetcher.key.addr, frame_bytes_max),
            )
            .await
            {
                Ok(opened) => {
                    link = Some(opened);
                    continue;
                }
                Err(error) => Err(error),
            },
        };
        match outcome {
            Ok(()) => backoff_ms = REPLICA_BACKOFF_MS_MIN,
            Err(ExchangeError::Stopped) => return,
            Err(error) => {
                tracing::debug!(leader = fetcher.key.leader, addr = fetcher.key.addr, %error, backoff_ms, "replica fetch failed; retrying");
                link = None;
                pause(&server, &fetcher, Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(REPLICA_BACKOFF_MS_MAX);
            }
        }
    }
}

/// Runs `work` unless the fetcher or the shard stops first.
async fn stoppable<T>(
    server: &ShardServer,
    fetcher: &Fetcher,
    work: impl std::future::Future<Output = Result<T, ExchangeError>>,
) -> Result<T, ExchangeError> {
    futures_lite::future::or(work, async {
        futures_lite::future::or(fetcher.stop.wait(), server.stop.wait()).await;
        Err(ExchangeError::Stopped)
    })
    .await
}

fn has_work(fetcher: &Fetcher) -> bool {
    let now = Instant::now();
    fetcher
        .partitions
        .borrow()
        .values()
        .any(|followed| followed.ready(now))
}

/// Waits until the partition set changes, the earliest delayed partition is due, or a stop.
async fn idle(server: &ShardServer, fetcher: &Fetcher) {
    let due = earliest_due(
        fetcher
            .partitions
            .borrow()
            .values()
            .map(|followed| (followed.current(), followed.not_before)),
    );
    let wait = due.map_or(Duration::from_millis(REPLICA_BACKOFF_MS_MAX), |due| {
        due.saturating_duration_since(Instant::now())
    });
    pause(server, fetcher, wait).await;
}

/// When the earliest delayed partition is due, over `(current, not_before)` pairs. A partition
/// whose role changed since it was followed (not current) is left out: it becomes ready only
/// when the shard's reconciliation replaces it, which wakes the fetcher, so its past
/// `not_before` must not make the fetcher wait for nothing and loop without ever yielding
/// (that starved the whole shard, reconciliation included).
fn earliest_due(partitions: impl Iterator<Item = (bool, Option<Instant>)>) -> Option<Instant> {
    partitions
        .filter_map(|(current, not_before)| not_before.filter(|_| current))
        .min()
}

async fn pause(server: &ShardServer, fetcher: &Fetcher, wait: Duration) {
    futures_lite::future::or(
        futures_lite::future::or(glommio::timer::sleep(wait), fetcher.changed()),
        futures_lite::future::or(fetcher.stop.wait(), server.stop.wait()),
    )
    .await;
}

/// One round: settle truncations, then one fetch.
async fn round(
    server: &ShardServer,
    fetcher: &Fetcher,
    link: &mut LeaderLink,
) -> Result<(), ExchangeError> {
    truncate_round(server, fetcher, link).await?;
    fetch_round(server, fetcher, link).await
}

/// The partitions ready now whose truncation state is `truncating`, with their generation.
fn ready_partitions(
    fetcher: &Fetcher,
    truncating: bool,
) -> Vec<(PartitionKey, Rc<Partition>, u64, i32)> {
    let now = Instant::now();
    fetcher
        .partitions
        .borrow()
        .iter()
        .filter(|(_, followed)| followed.needs_truncation == truncating && followed.ready(now))
        .map(|(key, followed)| {
            (
                key.clone(),
                followed.partition.clone(),
                followed.generation,
                followed.epoch,
            )
        })
        .collect()
}

/// Applies `change` to the followed partition `key` if it is still followed in generation
/// `generation`.
fn with_followed(
    fetcher: &Fetcher,
    key: &PartitionKey,
    generation: u64,
    change: impl FnOnce(&mut Followed),
) {
    if let Some(followed) = fetcher.partitions.borrow_mut().get_mut(key) {
        if followed.generation == generation {
            change(followed);
        }
    }
}

async fn truncate_round(
    server: &ShardServer,
    fetcher: &Fetcher,
    link: &mut LeaderLink,
) -> Result<(), ExchangeError> {
    let mut queries = Vec::new();
    let mut asked = Vec::new();
    for (key, partition, generation, _) in ready_partitions(fetcher, true) {
        let Some(epoch) = partition.log().latest_epoch() else {
            // No epoch in the log: empty, or written without epochs. Only an empty log is
            // known to agree with the leader; anything else starts over from scratch.
            let cleared = truncate_unknown(&partition, generation).await;
            with_followed(fetcher, &key, generation, |followed| {
                followed.needs_truncation = !cleared;
            });
            continue;
        };
        queries.push(EpochQuery {
            topic: key.0.clone(),
            partition: key.1,
            leader_epoch: epoch,
        });
        asked.push((key, partition, generation));
    }
    if queries.is_empty() {
        return Ok(());
    }
    let request = OffsetForLeaderEpochRequest {
        partitions: queries,
    };
    let timeout = Duration::from_millis(REPLICA_RESPONSE_MARGIN_MS);
    let (response, _): (OffsetForLeaderEpochResponse, _) =
        stoppable(server, fetcher, link.exchange(&request, timeout)).await?;
    for (key, partition, generation) in asked {
        let answer = response
            .partitions
            .iter()
            .find(|answer| answer.topic == key.0 && answer.partition == key.1);
        let leader = answer
            .filter(|answer| answer.error == ErrorCode::None.code())
            .filter(|answer| answer.leader_epoch >= 0 && answer.end_offset >= 0)
            .map(|answer| (answer.leader_epoch, answer.end_offset));
        let Some(leader) = leader else {
            // Refused or undefined: the leader has not caught up with the metadata yet.
            with_followed(fetcher, &key, generation, Followed::delay);
            continue;
        };
        let done = truncate_to_answer(&partition, generation, leader).await;
        with_followed(fetcher, &key, generation, |followed| match done {
            Some(done) => followed.needs_truncation = !done,
            None => followed.delay(),
        });
    }
    Ok(())
}

/// Truncates `partition` as the leader's answer says (see [`truncation_point`]). Returns whether
/// truncation is settled, or `None` when it could not be done now (role changed, log error).
async fn truncate_to_answer(
    partition: &Partition,
    generation: u64,
    leader: (i32, i64),
) -> Option<bool> {
    let _held = partition.hold_role().await?;
    if partition.generation() != generation {
        return None;
    }
    let log = partition.log();
    let log_end = log.log_end_offset();
    let step = truncation_point(leader, log.end_offset_for_epoch(leader.0), log_end);
    let high_watermark = partition.high_watermark();
    if step.offset < high_watermark {
        // Below the high watermark every record is committed: a leader that lacks one lost
        // acknowledged data (a wiped disk it still leads with); keep ours and ask again later.
        tracing::error!(
            topic = partition.topic(),
            partition = partition.partition(),
            high_watermark,
            to = step.offset,
            leader_epoch = leader.0,
            "follower refuses to truncate committed records the leader does not have"
        );
        return None;
    }
    if step.offset < log_end {
        tracing::info!(
            topic = partition.topic(),
            partition = partition.partition(),
            from = log_end,
            to = step.offset,
            leader_epoch = leader.0,
            "follower truncating its log to the leader's"
        );
        if let Err(error) = partition.truncate_to(step.offset).await {
            tracing::warn!(topic = partition.topic(), partition = partition.partition(), %error, "follower truncation failed");
            return None;
        }
    }
    Some(step.done)
}

/// A log with records but no leader epochs cannot be compared with the leader: empty it. Returns
/// whether the partition may fetch now.
async fn truncate_unknown(partition: &Partition, generation: u64) -> bool {
    let Some(_held) = partition.hold_role().await else {
        return false;
    };
    if partition.generation() != generation {
        return false;
    }
    let log = partition.log();
    let start = log.log_start_offset();
    if log.log_end_offset() == start {
        return true;
    }
    tracing::warn!(
        topic = partition.topic(),
        partition = partition.partition(),
        "follower log has records but no leader epochs; replicating it again from its start"
    );
    partition.truncate_to(start).await.is_ok()
}

/// A partition one fetch round asks for.
struct RoundPartition {
    key: PartitionKey,
    partition: Rc<Partition>,
    generation: u64,
    epoch: i32,
    moving: Moving,
    max_bytes: u32,
}

async fn fetch_round(
    server: &ShardServer,
    fetcher: &Fetcher,
    link: &mut LeaderLink,
) -> Result<(), ExchangeError> {
    let ready = admit(server, fetcher, ready_partitions(fetcher, false));
    if ready.is_empty() {
        return Ok(());
    }
    let cluster = &server.shared.config.cluster;
    let request = FetchRequest {
        replica_id: server.shared.config.node_id,
        max_wait_ms: cluster.replica_fetch_wait_max_ms,
        min_bytes: 1,
        max_bytes: REPLICA_FETCH_RESPONSE_BYTES_MAX,
        partitions: ready
            .iter()
            .map(|round| FetchPartition {
                topic: round.key.0.clone(),
                partition: round.key.1,
                fetch_offset: round.partition.log().log_end_offset(),
                partition_max_bytes: round.max_bytes,
                current_leader_epoch: round.epoch,
            })
            .collect(),
    };
    let timeout = Duration::from_millis(
        u64::from(cluster.replica_fetch_wait_max_ms) + REPLICA_RESPONSE_MARGIN_MS,
    );
    let (response, payload): (FetchResponse, _) =
        stoppable(server, fetcher, link.exchange(&request, timeout)).await?;
    let payloads = response.partition_payloads_mut(payload)?;
    for (result, records) in response.partitions.iter().zip(payloads) {
        let key = (result.topic.clone(), result.partition);
        let Some(round) = ready.iter().find(|round| round.key == key) else {
            continue;
        };
        if round.moving.throttled {
            server.followers.charge(server, records.len() as u64);
        }
        apply_fetched(
            server,
            fetcher,
            &key,
            &round.partition,
            round.generation,
            result,
            records,
        )
        .await;
        if round.moving.adding && result.error == ErrorCode::None.code() {
            note_progress(fetcher, round, result.log_end_offset);
        }
    }
    if ready.iter().any(|round| round.moving.adding) {
        server.followers.publish_progress(server);
    }
    Ok(())
}

/// The ready partitions one fetch round asks for, with the bytes each may bring: throttled
/// ones share what the shard's reassignment throttle holds now, and are held back until it
/// refills when it holds nothing; the others ask for `replica_fetch_max_bytes`.
fn admit(
    server: &ShardServer,
    fetcher: &Fetcher,
    ready: Vec<(PartitionKey, Rc<Partition>, u64, i32)>,
) -> Vec<RoundPartition> {
    let fetch_max_bytes = server.shared.config.cluster.replica_fetch_max_bytes;
    let now = Instant::now();
    let mut budget_bytes = server.followers.available_bytes(now);
    let mut admitted = Vec::with_capacity(ready.len());
    for (key, partition, generation, epoch) in ready {
        let moving = fetcher
            .partitions
            .borrow()
            .get(&key)
            .map(|followed| followed.moving)
            .unwrap_or_default();
        let mut max_bytes = fetch_max_bytes;
        if let (true, Some(budget)) = (moving.throttled, budget_bytes.as_mut()) {
            if *budget == 0 {
                let due = server.followers.ready_at(now);
                with_followed(fetcher, &key, generation, |followed| {
                    followed.not_before = Some(due);
                });
                server.metrics().reassignment_throttle_delays.increment();
                continue;
            }
            max_bytes = u32::try_from(*budget)
                .unwrap_or(u32::MAX)
                .min(fetch_max_bytes);
            *budget -= u64::from(max_bytes);
        }
        admitted.push(RoundPartition {
            key,
            partition,
            generation,
            epoch,
            moving,
            max_bytes,
        });
    }
    admitted
}

/// Records how many bytes a replica a reassignment adds still lacks, now that the leader said
/// where its log ends.
fn note_progress(fetcher: &Fetcher, round: &RoundPartition, leader_log_end_offset: i64) {
    let log = round.partition.log();
    let estimate = bytes_remaining_estimate(
        leader_log_end_offset,
        log.log_start_offset(),
        log.log_end_offset(),
        log.size_bytes(),
    );
    if estimate.is_some() {
        with_followed(fetcher, &round.key, round.generation, |followed| {
            followed.bytes_remaining = estimate;
        });
    }
}

/// Takes in one partition's fetch result.
async fn apply_fetched(
    server: &ShardServer,
    fetcher: &Fetcher,
    key: &PartitionKey,
    partition: &Partition,
    generation: u64,
    result: &FetchPartitionResult,
    records: BytesMut,
) {
    match ErrorCode::from_i16(result.error) {
        Some(ErrorCode::None) => {
            if let Err(error) = append_fetched(server, partition, generation, result, records).await
            {
                tracing::warn!(topic = key.0, partition = key.1, %error, "replicated append failed; checking the log against the leader again");
                with_followed(fetcher, key, generation, |followed| {
                    followed.needs_truncation = true;
                    followed.delay();
                });
            }
        }
        Some(ErrorCode::OffsetOutOfRange) => {
            let restarted = restart_at_leader_start(partition, generation, result).await;
            with_followed(fetcher, key, generation, |followed| {
                if !restarted {
                    followed.needs_truncation = true;
                }
                followed.delay();
            });
        }
        _ => {
            tracing::debug!(
                topic = key.0,
                partition = key.1,
                error = result.error,
                "leader refused the replica fetch; retrying"
            );
            with_followed(fetcher, key, generation, Followed::delay);
        }
    }
}

/// The leader refused the fetch offset as out of range: when this log ends below the leader's
/// log start (retention on the leader deleted what it would fetch next, while this replica was
/// away), empty it and continue from the leader's log start, as Kafka's follower does
/// (`truncateFullyAndStartAt`). Returns whether it did; otherwise the log is checked against
/// the leader again (it may be ahead of a new leader's log end).
async fn restart_at_leader_start(
    partition: &Partition,
    generation: u64,
    result: &FetchPartitionResult,
) -> bool {
    let Some(_held) = partition.hold_role().await else {
        return false;
    };
    let log_end = partition.log().log_end_offset();
    let leader_start = result.log_start_offset;
    if partition.generation() != generation || log_end >= leader_start {
        return false;
    }
    tracing::warn!(
        topic = partition.topic(),
        partition = partition.partition(),
        log_end,
        leader_log_start = leader_start,
        "follower is behind the leader's log start (retention deleted what it needs); emptying it to continue from the leader's log start"
    );
    match partition.truncate_fully_and_start_at(leader_start).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(topic = partition.topic(), partition = partition.partition(), %error, "follower could not restart its log at the leader's log start");
            false
        }
    }
}

/// Appends fetched batches (if the role is unchanged) and takes the leader's high watermark.
async fn append_fetched(
    server: &ShardServer,
    partition: &Partition,
    generation: u64,
    result: &FetchPartitionResult,
    records: BytesMut,
) -> Result<(), PartitionError> {
    let Some(_held) = partition.hold_role().await else {
        return Ok(());
    };
    if partition.generation() != generation {
        return Ok(());
    }
    if !records.is_empty() {
        let bytes = records.len() as u64;
        partition.append_replicated(records).await?;
        server.shard.metrics().replicated_bytes.add(bytes);
    }
    partition.set_follower_high_watermark(result.high_watermark);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the fetcher's idle wait ignores the delays of partitions whose role changed: with
    // a past delay counted, it waited zero, found no work and looped without yielding forever.
    #[test]
    fn stale_partitions_do_not_set_the_idle_wait() {
        let now = Instant::now();
        let past = now.checked_sub(Duration::from_millis(5)).unwrap_or(now);
        let later = now + Duration::from_millis(40);
        assert_eq!(earliest_due([(false, Some(past))].into_iter()), None);
        assert_eq!(
            earliest_due([(false, Some(past)), (true, Some(later)), (true, None)].into_iter()),
            Some(later)
        );
        assert_eq!(
            earliest_due([(true, Some(later)), (true, Some(past))].into_iter()),
            Some(past)
        );
    }
}
