//! The etcd operations of the control plane, each bounded by a timeout and each change a
//! transaction guarded by the revision its decision was based on.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchStream,
};

use super::controller::{initial_state, PartitionChange};
use super::handle::{PartitionVersion, TopicSpec};
use super::placement::assign_replicas;
use super::state::{
    encode, ClusterKeys, ClusterState, ControllerRecord, PartitionState, TopicAssignment,
};
use super::{validate_name, ClusterConfig, ClusterError};

/// Operations in one etcd transaction branch at most: etcd's default `--max-txn-ops`.
pub(crate) const TXN_OPS_MAX: usize = 128;

/// Largest etcd response read (the full snapshot at session start), bytes.
pub(crate) const SNAPSHOT_BYTES_MAX: usize = 64 << 20;

/// Pause between two registration attempts while another live process holds the node id,
/// milliseconds.
const REGISTRATION_RETRY_MS: u64 = 250;

/// Runs `future` with a bound; the error names the operation and the key.
pub(crate) async fn timed<T>(
    timeout: Duration,
    operation: &'static str,
    key: &str,
    future: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(ClusterError::Etcd {
            operation,
            key: key.to_string(),
            source,
        }),
        Err(_) => Err(ClusterError::Timeout {
            operation,
            key: key.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

fn revision_of(response: &TxnResponse) -> i64 {
    response.header().map_or(0, |header| header.revision())
}

/// The first key-value of the first `get` in a transaction's answer.
fn first_get(response: &TxnResponse) -> Option<KeyValue> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
        _ => None,
    })
}

fn put_with_lease(key: &str, value: Vec<u8>, lease: i64) -> TxnOp {
    TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))
}

/// Connects and gets a lease of the configured TTL, within `connect_timeout_ms`.
pub(crate) async fn connect(config: &ClusterConfig) -> Result<(Client, i64), ClusterError> {
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let options = ConnectOptions::new().with_connect_timeout(timeout);
    let steps = async {
        let mut client = Client::connect(&config.endpoints, Some(options)).await?;
        let ttl = i64::try_from(config.broker_session_ttl_s).unwrap_or(i64::MAX);
        let lease = client.lease_grant(ttl, None).await?;
        Ok::<_, etcd_client::Error>((client, lease.id()))
    };
    match tokio::time::timeout(timeout, steps).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(error)) => Err(ClusterError::Unreachable {
            endpoints: config.endpoints_text(),
            timeout_ms: config.connect_timeout_ms,
            reason: error.to_string(),
        }),
        Err(_) => Err(ClusterError::Unreachable {
            endpoints: config.endpoints_text(),
            timeout_ms: config.connect_timeout_ms,
            reason: "no answer (is etcd running there?)".to_string(),
        }),
    }
}

/// Writes this broker's registration under `lease`. A registration bound to one of
/// `own_leases` (an earlier session of this process) is taken over; one bound to another lease
/// belongs to another live process with the same node id (or to this broker's previous
/// incarnation, whose lease has not expired yet), so this waits up to twice the TTL for it to
/// lapse before refusing.
pub(crate) async fn register(
    client: &mut Client,
    keys: &ClusterKeys,
    config: &ClusterConfig,
    lease: i64,
    own_leases: &[i64],
) -> Result<(), ClusterError> {
    let key = keys.broker(config.node_id);
    let value = encode(&config.broker_info());
    let deadline = Instant::now() + config.ttl() * 2;
    loop {
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([put_with_lease(&key, value.clone(), lease)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = timed(config.request_timeout(), "register", &key, client.txn(txn)).await?;
        if response.succeeded() {
            return Ok(());
        }
        if let Some(existing) = first_get(&response) {
            if existing.lease() == lease || own_leases.contains(&existing.lease()) {
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        existing.mod_revision(),
                    )])
                    .and_then([put_with_lease(&key, value.clone(), lease)]);
                let response =
                    timed(config.request_timeout(), "register", &key, client.txn(txn)).await?;
                if response.succeeded() {
                    return Ok(());
                }
                continue;
            }
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NodeIdInUse {
                node_id: config.node_id,
                key,
            });
        }
        tokio::time::sleep(Duration::from_millis(REGISTRATION_RETRY_MS)).await;
    }
}

/// Reads every key of the cluster: the state at the returned revision.
pub(crate) async fn load(
    client: &Client,
    keys: &ClusterKeys,
    timeout: Duration,
) -> Result<ClusterState, ClusterError> {
    let root = keys.root();
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(SNAPSHOT_BYTES_MAX);
    let options = GetOptions::new().with_prefix();
    let response = timed(
        timeout,
        "read cluster state",
        root,
        kv.get(root, Some(options)),
    )
    .await?;
    let mut state = ClusterState::new(keys.cluster());
    state.revision = response.header().map_or(0, |header| header.revision());
    for entry in response.kvs() {
        let Ok(key) = entry.key_str() else { continue };
        if let Err(error) = state.apply_put(
            keys,
            key,
            entry.value(),
            entry.mod_revision(),
            entry.create_revision(),
        ) {
            tracing::warn!(%error, "ignoring an unreadable cluster key");
        }
    }
    Ok(state)
}

/// Watches every key of the cluster from `revision` on.
pub(crate) async fn watch(
    client: &Client,
    keys: &ClusterKeys,
    revision: i64,
    timeout: Duration,
) -> Result<WatchStream, ClusterError> {
    let root = keys.root();
    let mut watcher = client
        .watch_client()
        .max_decoding_message_size(SNAPSHOT_BYTES_MAX);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision);
    timed(timeout, "watch", root, watcher.watch(root, Some(options))).await
}

/// Tries to become controller. Returns the controller epoch (the revision of the controller
/// key's write) when this broker is controller afterwards, `None` when another one is.
pub(crate) async fn campaign(
    client: &mut Client,
    keys: &ClusterKeys,
    config: &ClusterConfig,
    lease: i64,
    own_leases: &[i64],
) -> Result<Option<i64>, ClusterError> {
    let key = keys.controller();
    let value = encode(&ControllerRecord { id: config.node_id });
    let timeout = config.request_timeout();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([put_with_lease(&key, value.clone(), lease)])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = timed(timeout, "campaign", &key, client.txn(txn)).await?;
    if response.succeeded() {
        return Ok(Some(revision_of(&response)));
    }
    let Some(existing) = first_get(&response) else {
        // Deleted between the compare and the get: the watch shows the delete and this
        // broker campaigns again then.
        return Ok(None);
    };
    if existing.lease() == lease {
        return Ok(Some(existing.mod_revision()));
    }
    if !own_leases.contains(&existing.lease()) {
        return Ok(None);
    }
    // This broker was controller in an earlier session whose lease is still alive (etcd
    // restarted, or the connection dropped briefly): take the key over under the new lease
    // so the old lease's expiry does not depose it.
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            existing.mod_revision(),
        )])
        .and_then([put_with_lease(&key, value, lease)]);
    let response = timed(timeout, "campaign", &key, client.txn(txn)).await?;
    Ok(response.succeeded().then(|| revision_of(&response)))
}

/// Creates a topic over the live brokers of `state`. Returns the assignment and the revision of
/// the last write.
pub(crate) async fn create_topic(
    client: &mut Client,
    keys: &ClusterKeys,
    state: &ClusterState,
    spec: &TopicSpec,
    timeout: Duration,
) -> Result<(TopicAssignment, i64), ClusterError> {
    validate_name(&spec.name)?;
    let live: Vec<i32> = state.live_brokers().into_iter().collect();
    let assignment = assign_replicas(&live, spec.partitions, spec.replication_factor)?;
    if state.topics.contains_key(&spec.name) {
        return Err(ClusterError::TopicExists(spec.name.clone()));
    }
    let topic = TopicAssignment {
        name: spec.name.clone(),
        topic_id: sluice_shard::new_topic_id(),
        partitions: spec.partitions,
        replication_factor: spec.replication_factor,
        configs: spec.configs.clone(),
        assignment,
    };
    let topic_key = keys.topic(&topic.name);
    let partition_put = |index: usize| {
        let partition = i32::try_from(index).unwrap_or(i32::MAX);
        let state = initial_state(&topic.assignment[index], 0, &state.broker_epochs);
        TxnOp::put(keys.partition(&topic.name, partition), encode(&state), None)
    };
    // The topic key and as many partition states as fit go in one transaction; larger topics
    // continue in more, each guarded by the topic key still being the one created here. If
    // this broker dies in between, the controller writes the missing states.
    let first_count = topic.assignment.len().min(TXN_OPS_MAX - 1);
    let mut operations = vec![TxnOp::put(topic_key.as_str(), encode(&topic), None)];
    operations.extend((0..first_count).map(partition_put));
    let txn = Txn::new()
        .when([Compare::create_revision(
            topic_key.as_str(),
            CompareOp::Equal,
            0,
        )])
        .and_then(operations);
    let response = timed(timeout, "create topic", &topic_key, client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(ClusterError::TopicExists(topic.name.clone()));
    }
    let created = revision_of(&response);
    let mut last = created;
    let mut start = first_count;
    while start < topic.assignment.len() {
        let end = (start + TXN_OPS_MAX - 1).min(topic.assignment.len());
        let mut compares = vec![Compare::create_revision(
            topic_key.as_str(),
            CompareOp::Equal,
            created,
        )];
        compares.extend((start..end).map(|index| {
            let partition = i32::try_from(index).unwrap_or(i32::MAX);
            Compare::create_revision(keys.partition(&topic.name, partition), CompareOp::Equal, 0)
        }));
        let txn = Txn::new()
            .when(compares)
            .and_then((start..end).map(partition_put).collect::<Vec<_>>())
            .or_else([TxnOp::get(topic_key.as_str(), None)]);
        let response = timed(timeout, "create topic", &topic_key, client.txn(txn)).await?;
        if !response.succeeded() {
            // Either the topic was deleted meanwhile, or the controller already wrote some of
            // these states (it fills in what a slow or dead creator left missing) and will
            // write the rest.
            let still_ours = first_get(&response).is_some_and(|kv| kv.create_revision() == created);
            if !still_ours {
                return Err(ClusterError::UnknownTopic(topic.name.clone()));
            }
            break;
        }
        last = revision_of(&response);
        start = end;
    }
    Ok((topic, last))
}

/// Reads topic `name`'s key: its assignment and the key's mod_revision.
async fn read_topic(
    client: &mut Client,
    keys: &ClusterKeys,
    name: &str,
    timeout: Duration,
) -> Result<(TopicAssignment, i64), ClusterError> {
    let key = keys.topic(name);
    let got = timed(timeout, "read topic", &key, client.get(key.as_str(), None)).await?;
    let kv = got
        .kvs()
        .first()
        .ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))?;
    let topic: TopicAssignment =
        serde_json::from_slice(kv.value()).map_err(|error| ClusterError::Corrupt {
            key: key.clone(),
            reason: error.to_string(),
        })?;
    Ok((topic, kv.mod_revision()))
}

/// Grows topic `name` to `count` partitions with one compare-and-swap on the topic key (the
/// assignment grows) that also writes the new partitions' initial states (as many as fit in
/// one transaction; the controller writes any missing ones). New partition i gets the seed's
/// placement over the live brokers: replica j on broker (i + j) mod n, which continues the
/// existing layout while the broker set is the one the topic was created on. Returns the new
/// assignment and the revision of the write.
pub(crate) async fn add_partitions(
    client: &mut Client,
    keys: &ClusterKeys,
    state: &ClusterState,
    name: &str,
    count: i32,
    timeout: Duration,
) -> Result<(TopicAssignment, i64), ClusterError> {
    let (mut topic, mod_revision) = read_topic(client, keys, name, timeout).await?;
    if count <= topic.partitions {
        return Err(ClusterError::PartitionsNotIncreased {
            topic: name.to_string(),
            current: topic.partitions,
            requested: count,
        });
    }
    let live: Vec<i32> = state.live_brokers().into_iter().collect();
    let placed = assign_replicas(&live, count, topic.replication_factor)?;
    let first_new = usize::try_from(topic.partitions).unwrap_or(0);
    topic.assignment.extend(placed.into_iter().skip(first_new));
    topic.partitions = count;
    let topic_key = keys.topic(name);
    let mut operations = vec![TxnOp::put(topic_key.as_str(), encode(&topic), None)];
    let last = topic.assignment.len().min(first_new + TXN_OPS_MAX - 1);
    operations.extend((first_new..last).map(|index| {
        let partition = i32::try_from(index).unwrap_or(i32::MAX);
        let initial = initial_state(&topic.assignment[index], 0, &state.broker_epochs);
        TxnOp::put(keys.partition(name, partition), encode(&initial), None)
    }));
    let txn = Txn::new()
        .when([Compare::mod_revision(
            topic_key.as_str(),
            CompareOp::Equal,
            mod_revision,
        )])
        .and_then(operations);
    let response = timed(timeout, "add partitions", &topic_key, client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(ClusterError::TopicChanged(name.to_string()));
    }
    Ok((topic, revision_of(&response)))
}

/// Replaces topic `name`'s configs with `next`, with a compare-and-swap on the topic key that
/// also requires the configs to still be `expected` (what the caller validated `next`
/// against). Returns the revision of the write.
pub(crate) async fn set_topic_configs(
    client: &mut Client,
    keys: &ClusterKeys,
    name: &str,
    (expected, next): (&BTreeMap<String, String>, BTreeMap<String, String>),
    timeout: Duration,
) -> Result<i64, ClusterError> {
    let (mut topic, mod_revision) = read_topic(client, keys, name, timeout).await?;
    if &topic.configs != expected {
        return Err(ClusterError::TopicChanged(name.to_string()));
    }
    topic.configs = next;
    let topic_key = keys.topic(name);
    let txn = Txn::new()
        .when([Compare::mod_revision(
            topic_key.as_str(),
            CompareOp::Equal,
            mod_revision,
        )])
        .and_then([TxnOp::put(topic_key.as_str(), encode(&topic), None)]);
    let response = timed(timeout, "alter topic configs", &topic_key, client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(ClusterError::TopicChanged(name.to_string()));
    }
    Ok(revision_of(&response))
}

/// Deletes a topic and every partition state of it in one transaction. Returns the revision.
pub(crate) async fn delete_topic(
    client: &mut Client,
    keys: &ClusterKeys,
    name: &str,
    timeout: Duration,
) -> Result<i64, ClusterError> {
    let topic_key = keys.topic(name);
    let txn = Txn::new()
        .when([Compare::create_revision(
            topic_key.as_str(),
            CompareOp::Greater,
            0,
        )])
        .and_then([
            TxnOp::delete(topic_key.as_str(), None),
            TxnOp::delete(
                keys.partitions_of(name),
                Some(DeleteOptions::new().with_prefix()),
            ),
            TxnOp::delete(
                keys.reassignments_of(name),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ]);
    let response = timed(timeout, "delete topic", &topic_key, client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(ClusterError::UnknownTopic(name.to_string()));
    }
    Ok(revision_of(&response))
}

/// Compare-and-swap attempts on the producer-id key before giving up (each lost attempt means
/// another broker reserved a block meanwhile).
const PRODUCER_ID_CAS_ATTEMPTS_MAX: usize = 16;

/// Reserves `count` producer ids: reads `/sluice/<cluster>/producer-ids` (absent: 0) and
/// advances it by `count` with a compare-and-swap on the revision read. Returns the first id.
pub(crate) async fn reserve_producer_ids(
    client: &mut Client,
    keys: &ClusterKeys,
    count: i64,
    timeout: Duration,
) -> Result<i64, ClusterError> {
    let key = keys.producer_ids();
    for _ in 0..PRODUCER_ID_CAS_ATTEMPTS_MAX {
        let got = timed(
            timeout,
            "read producer ids",
            &key,
            client.get(key.as_str(), None),
        )
        .await?;
        let (first, revision) = match got.kvs().first() {
            Some(kv) => {
                let text = String::from_utf8_lossy(kv.value()).into_owned();
                let first: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| ClusterError::ProducerIdsCorrupt(text.clone()))?;
                (first, kv.mod_revision())
            }
            None => (0, 0),
        };
        let next = first
            .checked_add(count)
            .ok_or_else(|| ClusterError::ProducerIdsCorrupt(first.to_string()))?;
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key.as_str(), next.to_string(), None)]);
        let response = timed(timeout, "reserve producer ids", &key, client.txn(txn)).await?;
        if response.succeeded() {
            return Ok(first);
        }
    }
    Err(ClusterError::ProducerIdsContended {
        attempts: PRODUCER_ID_CAS_ATTEMPTS_MAX,
    })
}

/// An ISR change asked for by a partition leader.
pub(crate) struct IsrRequest<'a> {
    pub node_id: i32,
    pub topic: &'a str,
    pub partition: i32,
    pub isr: &'a [i32],
    pub expected: PartitionVersion,
    /// The broker epoch each member being added must still be registered with (KIP-903);
    /// a member added without one is recorded with the epoch the snapshot shows.
    pub added_broker_epochs: &'a [(i32, i64)],
}

/// Checks an ISR change against `state` and writes it with compare-and-swap: the partition
/// state must be the one the change was based on, and every member being added must still be
/// registered with the broker epoch the leader saw it catch up in. Returns the new state and
/// the revision of the write.
pub(crate) async fn update_isr(
    client: &mut Client,
    keys: &ClusterKeys,
    state: &ClusterState,
    request: &IsrRequest<'_>,
    timeout: Duration,
) -> Result<(PartitionState, i64), ClusterError> {
    let (next, added) = checked_isr_change(state, request)?;
    let key = keys.partition(request.topic, request.partition);
    let mut compares = vec![Compare::mod_revision(
        key.as_str(),
        CompareOp::Equal,
        request.expected.mod_revision,
    )];
    compares.extend(added.iter().map(|(member, epoch)| {
        Compare::create_revision(keys.broker(*member), CompareOp::Equal, *epoch)
    }));
    let txn = Txn::new()
        .when(compares)
        .and_then([TxnOp::put(key.as_str(), encode(&next), None)])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = timed(timeout, "update isr", &key, client.txn(txn)).await?;
    if response.succeeded() {
        return Ok((next, revision_of(&response)));
    }
    let Some(current) = first_get(&response) else {
        return Err(ClusterError::UnknownPartition {
            topic: request.topic.to_string(),
            partition: request.partition,
        });
    };
    if current.mod_revision() == request.expected.mod_revision {
        // The partition state is the basis: a member being added is registered anew.
        let (broker, expected) = added.first().copied().unwrap_or((-1, 0));
        return Err(ClusterError::StaleBrokerEpoch {
            topic: request.topic.to_string(),
            partition: request.partition,
            broker,
            expected,
        });
    }
    let current: PartitionState =
        serde_json::from_slice(current.value()).map_err(|error| ClusterError::Corrupt {
            key: key.clone(),
            reason: error.to_string(),
        })?;
    Err(refusal(request, current))
}

/// The error for an ISR change whose base is not `current`.
fn refusal(request: &IsrRequest<'_>, current: PartitionState) -> ClusterError {
    if current.leader_epoch != request.expected.leader_epoch {
        return ClusterError::StaleLeaderEpoch {
            topic: request.topic.to_string(),
            partition: request.partition,
            expected: request.expected.leader_epoch,
            current: current.leader_epoch,
        };
    }
    ClusterError::Conflict {
        topic: request.topic.to_string(),
        partition: request.partition,
        expected_revision: request.expected.mod_revision,
        current: Box::new(current),
    }
}

/// The state an ISR change would write, and the broker epoch of each member it adds, after
/// checking it against the snapshot: the caller leads at the expected epoch, the snapshot is
/// what the caller decided on, and the new ISR is a duplicate-free set of replicas that
/// includes the leader. The ISR is written in assignment order; members staying keep their
/// recorded broker epochs, members added get theirs.
fn checked_isr_change(
    state: &ClusterState,
    request: &IsrRequest<'_>,
) -> Result<(PartitionState, Vec<(i32, i64)>), ClusterError> {
    let (topic, partition) = (request.topic, request.partition);
    let unknown = || ClusterError::UnknownPartition {
        topic: topic.to_string(),
        partition,
    };
    let entry = state.partition(topic, partition).ok_or_else(unknown)?;
    // The full replica set: replicas a reassignment adds join the ISR once caught up.
    let replicas = state.replicas(topic, partition);
    if replicas.is_empty() {
        return Err(unknown());
    }
    if entry.state.leader_epoch != request.expected.leader_epoch {
        return Err(refusal(request, entry.state.clone()));
    }
    if entry.state.leader != request.node_id {
        return Err(ClusterError::NotLeader {
            topic: topic.to_string(),
            partition,
            node_id: request.node_id,
            leader: entry.state.leader,
        });
    }
    let invalid = |reason| ClusterError::InvalidIsr {
        topic: topic.to_string(),
        partition,
        isr: request.isr.to_vec(),
        reason,
    };
    if !request.isr.contains(&request.node_id) {
        return Err(invalid("the leader must be in its ISR"));
    }
    if request.isr.iter().any(|member| !replicas.contains(member)) {
        return Err(invalid("every ISR member must be a replica"));
    }
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|replica| request.isr.contains(replica))
        .collect();
    if isr.len() != request.isr.len() {
        return Err(invalid("an ISR member is listed twice"));
    }
    if entry.mod_revision != request.expected.mod_revision {
        return Err(refusal(request, entry.state.clone()));
    }
    let added: Vec<(i32, i64)> = isr
        .iter()
        .copied()
        .filter(|member| !entry.state.isr.contains(member))
        .filter_map(|member| {
            let named = request
                .added_broker_epochs
                .iter()
                .find(|(id, _)| *id == member)
                .map(|(_, epoch)| *epoch);
            named
                .or_else(|| state.broker_epoch(member))
                .map(|epoch| (member, epoch))
        })
        .collect();
    let mut isr_epochs: BTreeMap<i32, i64> = entry
        .state
        .isr_epochs
        .iter()
        .filter(|(member, _)| isr.contains(member))
        .map(|(member, epoch)| (*member, *epoch))
        .collect();
    isr_epochs.extend(added.iter().copied());
    let next = PartitionState {
        isr,
        isr_epochs,
        ..entry.state.clone()
    };
    Ok((next, added))
}

/// Writes one controller decision, fenced by the controller epoch. Returns whether it was
/// written (false: the state moved or this broker is no longer controller; the watch will show
/// which).
pub(crate) async fn write_change(
    client: &mut Client,
    keys: &ClusterKeys,
    controller_epoch: i64,
    change: &PartitionChange,
    timeout: Duration,
) -> Result<bool, ClusterError> {
    let key = keys.partition(&change.topic, change.partition);
    let mut compares = vec![
        Compare::mod_revision(keys.controller(), CompareOp::Equal, controller_epoch),
        Compare::create_revision(
            keys.topic(&change.topic),
            CompareOp::Equal,
            change.topic_create_revision,
        ),
        Compare::mod_revision(key.as_str(), CompareOp::Equal, change.expected_mod_revision),
    ];
    // A leader is elected only while it is registered with the epoch the decision saw.
    if let Some((leader, epoch)) = change.elected {
        compares.push(Compare::create_revision(
            keys.broker(leader),
            CompareOp::Equal,
            epoch,
        ));
    }
    let txn =
        Txn::new()
            .when(compares)
            .and_then([TxnOp::put(key.as_str(), encode(&change.next), None)]);
    let response = timed(timeout, "write partition state", &key, client.txn(txn)).await?;
    Ok(response.succeeded())
}

/// Gives a lease back (its keys go at once).
pub(crate) async fn revoke(
    client: &mut Client,
    lease: i64,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let key = format!("lease {lease:x}");
    timed(timeout, "revoke lease", &key, client.lease_revoke(lease))
        .await
        .map(drop)
}
