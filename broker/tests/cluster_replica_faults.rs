//! Replica faults against real processes that the scripted failover tests do not reach: a
//! follower restarted with a wiped data directory, a leader restarted with one before the
//! controller could fail it over, a topic deleted and created again while a
//! replica's broker is away, a follower that fell behind the leader's log start, and the
//! committed offsets a restarted broker serves.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::time::{Duration, Instant};

use sluice_client::blocking::{BlockingClient, BlockingProducer};
use sluice_client::{Acks, Compression, OffsetSpec, ProducerConfig, ProducerRecord};
use support_cluster::logs::{read_batches, StoredBatch};
use support_cluster::*;

/// Poll interval of this file's own waits.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long a follower keeps meeting a restarted leader before the test moves on.
const FOLLOWER_RETRIES_WINDOW: Duration = Duration::from_secs(3);

/// Sends messages `first..first + count` to partition 0 of `topic` with `acks` (the client
/// retries through failovers) and returns each one's (number, offset) once all are answered.
fn produce(cluster: &Cluster, topic: &str, first: u64, count: u64, acks: Acks) -> Vec<(u64, i64)> {
    let config = ProducerConfig {
        acks,
        linger_ms: 0,
        ..ProducerConfig::default()
    };
    produce_with(cluster, (topic, 0), first, count, config)
}

/// Like [`produce`], to any partition, with the producer's settings given.
fn produce_with(
    cluster: &Cluster,
    (topic, partition): (&str, i32),
    first: u64,
    count: u64,
    config: ProducerConfig,
) -> Vec<(u64, i64)> {
    let producer = BlockingProducer::new(cluster.client_config(), config).unwrap();
    let handles: Vec<_> = (first..first + count)
        .map(|seq| {
            let record = ProducerRecord {
                partition: Some(partition),
                ..ProducerRecord::new(topic, message_value(seq))
            };
            (seq, producer.send(record).unwrap())
        })
        .collect();
    handles
        .into_iter()
        .map(|(seq, handle)| {
            let offset = handle
                .wait()
                .unwrap_or_else(|error| panic!("message {seq} to {topic} failed: {error}"))
                .offset;
            (seq, offset)
        })
        .collect()
}

/// Panics unless every acknowledged (number, offset) is among `consumed` at that offset.
fn assert_present(consumed: &[(i64, Option<bytes::Bytes>)], acknowledged: &[(u64, i64)]) {
    for (seq, offset) in acknowledged {
        let found = consumed
            .iter()
            .find(|(at, _)| at == offset)
            .map(|(_, value)| value.clone());
        assert_eq!(
            found,
            Some(Some(message_value(*seq))),
            "message {seq}, acknowledged at offset {offset}, is not there"
        );
    }
}

/// The broker epoch etcd records for ISR member `member` of `topic`-0 (from the partition
/// key's JSON), `None` when it records none.
fn isr_epoch_in_etcd(cluster: &Cluster, topic: &str, member: i32) -> Option<i64> {
    let key = format!("/sluice/{}/partitions/{topic}/0", cluster.name);
    let value = cluster
        .etcd
        .get(&key)
        .unwrap_or_else(|| panic!("{key} is missing"));
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    json["isr_epochs"][member.to_string()].as_i64()
}

/// Whether process `pid` exists and is not a zombie (it has not exited).
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z')
    })
}

// Proves a follower restarted with a wiped data directory (a new broker epoch, KIP-903) does
// not stay in the ISR, and that no acknowledged record is lost when the leader then dies:
// topic rf 3 with min.insync.replicas 2 and a lag bound longer than the test (so only the
// broker epoch can take the follower out); records are acknowledged with acks=all; the
// follower first in line for election is killed and wiped; once its registration lapsed the
// leader is frozen with SIGSTOP (so the wiped follower cannot catch up from it) and the
// follower restarts, registered again before the frozen leader's lease lapses; then the
// controller must elect the replica that kept its log, not the wiped one (which is live and,
// without broker epochs, still in the ISR), and every acknowledged record is read back. The frozen leader then resumes (its lease long gone, the
// process must carry on and rejoin as a follower); in the end the wiped follower is back in
// the ISR only under its new broker epoch (it caught up again), and every replica is
// byte-identical below the high watermark.
#[test]
fn wiped_follower_leaves_the_isr_and_is_never_elected() {
    const TOPIC: &str = "wiped";
    let spec = ClusterSpec {
        replica_lag_time_max_ms: 600_000,
        ..ClusterSpec::default()
    };
    let mut cluster = Cluster::start(spec);
    cluster.create_topic(TOPIC, 1, 3, &[("min.insync.replicas", "2")]);
    let meta = cluster.partition(TOPIC, 0);
    let leader = meta.leader;
    let in_line: Vec<i32> = meta
        .replicas
        .iter()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let (wiped, keeper) = (in_line[0], in_line[1]);
    let acknowledged = produce(&cluster, TOPIC, 0, 200, Acks::All);

    cluster.kill(wiped);
    std::fs::remove_dir_all(&cluster.node(wiped).data_dir).unwrap();
    let registration = format!("/sluice/{}/brokers/{wiped}", cluster.name);
    let deadline = Instant::now() + CLUSTER_WAIT;
    while cluster.etcd.get(&registration).is_some() {
        assert!(
            Instant::now() < deadline,
            "the killed follower's registration did not lapse within {CLUSTER_WAIT:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    cluster.node_mut(leader).stop();
    cluster.restart(wiped);
    let failed_over = cluster.wait_partition(TOPIC, 0, "a new leader", |meta| {
        meta.leader >= 0 && meta.leader != leader
    });
    assert_eq!(
        failed_over.leader, keeper,
        "only the replica that kept its log may be elected"
    );
    let consumed = read_partition(cluster.client_config(), TOPIC, 0, 200);
    assert_present(&consumed, &acknowledged);

    cluster.node_mut(leader).cont();
    cluster.wait_in_sync(TOPIC, 1);
    assert!(
        process_alive(cluster.node(leader).pid()),
        "the broker that lost its lease while frozen exited"
    );
    let more = produce(&cluster, TOPIC, 200, 20, Acks::All);
    let high_watermark = cluster.assert_replicas_identical(TOPIC, 0, &meta.replicas);
    let registered = cluster.etcd.create_revision(&registration).unwrap();
    assert_eq!(
        isr_epoch_in_etcd(&cluster, TOPIC, wiped),
        Some(registered),
        "the wiped follower is in the ISR under an old broker epoch"
    );
    let consumed = read_partition(cluster.client_config(), TOPIC, 0, high_watermark);
    assert_present(&consumed, &acknowledged);
    assert_present(&consumed, &more);
}

// Proves a leader restarted with a wiped disk before the controller failed its partition over
// never leads with its empty log, so no follower truncates acknowledged records to it (a loss
// the chaos suite found: a wiped broker re-registered, took the leadership the state still gave
// it, and its followers truncated to nothing): rf 3, min.insync.replicas 2, 200 records
// acknowledged by all on a partition whose leader is not the controller; the controller is
// frozen with its lease held by the test (no failover can happen), the leader is killed, wiped
// and restarted, and re-registers under a new broker epoch while the state still names it
// leader; the third replica keeps trying to follow it meanwhile. Then the controller dies, the
// restarted broker must not be elected, and every acknowledged record is read back from the
// replica that kept its log. (Without the fix the keeper truncates to the empty log and the
// read stops short of offset 200.)
#[test]
fn wiped_leader_never_leads_before_failover() {
    const TOPIC: &str = "wiped-leader";
    const PARTITIONS: i32 = 3;
    let spec = ClusterSpec {
        replica_lag_time_max_ms: 600_000,
        ..ClusterSpec::default()
    };
    let mut cluster = Cluster::start(spec);
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    cluster.wait_in_sync(TOPIC, PARTITIONS);
    let controller = cluster
        .wait_controller("a controller", |id| id.is_some())
        .unwrap();
    let partition = (0..PARTITIONS)
        .find(|p| cluster.partition(TOPIC, *p).leader != controller)
        .expect("a partition led by another broker than the controller");
    let meta = cluster.partition(TOPIC, partition);
    let wiped = meta.leader;
    let keeper = meta
        .replicas
        .iter()
        .copied()
        .find(|id| ![wiped, controller].contains(id))
        .unwrap();
    let config = ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        ..ProducerConfig::default()
    };
    let acknowledged = produce_with(&cluster, (TOPIC, partition), 0, 200, config);

    let held = cluster
        .etcd
        .hold_lease(&format!("/sluice/{}/brokers/{controller}", cluster.name));
    cluster.node_mut(controller).stop();
    let registration = format!("/sluice/{}/brokers/{wiped}", cluster.name);
    let old_epoch = cluster.etcd.create_revision(&registration);
    cluster.kill(wiped);
    cluster.node_mut(wiped).wipe_data();
    cluster.restart(wiped);
    let deadline = Instant::now() + CLUSTER_WAIT;
    while cluster
        .etcd
        .create_revision(&registration)
        .is_none_or(|epoch| Some(epoch) == old_epoch)
    {
        assert!(
            Instant::now() < deadline,
            "the wiped broker did not register again within {CLUSTER_WAIT:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    // The keeper's fetcher retries the restarted broker every few hundred milliseconds.
    std::thread::sleep(FOLLOWER_RETRIES_WINDOW);
    let log = std::fs::read_to_string(cluster.node(wiped).log_path()).unwrap();
    assert!(
        log.contains("not taking a leadership recorded under another broker epoch"),
        "the restarted broker never saw the state name it leader under its old epoch"
    );

    drop(held);
    cluster.kill(controller);
    let failed_over = cluster.wait_partition(TOPIC, partition, "a new leader", |meta| {
        meta.leader >= 0 && meta.leader != wiped
    });
    assert_eq!(
        failed_over.leader, keeper,
        "only the replica that kept its log may be elected"
    );
    let consumed = read_partition(cluster.client_config(), TOPIC, partition, 200);
    assert_present(&consumed, &acknowledged);
}

// Proves a topic deleted and created again while one replica's broker was down never serves
// the old incarnation's records (topic ids, KIP-516): the preferred leader is killed, the topic
// deleted, the broker restarted on its data (the old log still on its disk), the topic created
// again with that broker as its leader; a record produced then is at offset 0 and is all a
// consumer reads, and every replica holds just that.
#[test]
fn recreated_topic_never_serves_the_old_incarnation() {
    const TOPIC: &str = "again";
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, 1, 3, &[]);
    let meta = cluster.partition(TOPIC, 0);
    let first = meta.replicas[0];
    assert_eq!(meta.leader, first);
    produce(&cluster, TOPIC, 0, 10, Acks::All);
    cluster.kill(first);
    cluster.wait_view("the killed broker gone", |view| {
        !live_brokers(view).contains(&first)
    });
    let client = BlockingClient::connect(cluster.client_config()).unwrap();
    client.delete_topic(TOPIC).unwrap();
    drop(client);
    cluster.wait_view("the topic deleted", |view| {
        view.topics.iter().all(|topic| topic.name != TOPIC)
    });
    cluster.restart(first);
    let all = as_set(&cluster.ids());
    cluster.wait_view("every broker back", |view| live_brokers(view) == all);
    assert!(
        !read_batches(&cluster.partition_dir(first, TOPIC, 0)).is_empty(),
        "the old incarnation's log should still be on the restarted broker's disk"
    );

    cluster.create_topic(TOPIC, 1, 3, &[]);
    assert_eq!(cluster.partition(TOPIC, 0).leader, first);
    let fresh = produce(&cluster, TOPIC, 100, 1, Acks::All);
    assert_eq!(
        fresh,
        vec![(100, 0)],
        "the new incarnation starts at offset 0"
    );
    let consumed = read_partition(cluster.client_config(), TOPIC, 0, 1);
    assert_eq!(consumed, vec![(0, Some(message_value(100)))]);
    cluster.assert_replicas_identical(TOPIC, 0, &meta.replicas);
}

// Proves a follower whose log ends below the leader's log start (retention deleted what it
// needs while it was down) empties its log, restarts at the leader's log start, catches up and
// rejoins the ISR, and that retention never deletes past the high watermark: topic rf 3 with
// tiny segments and a small retention.bytes; a follower is killed, the others take enough
// records for retention to move the log start past its end; after its restart the ISR is whole
// again and the follower's log holds exactly the leader's batches from its log start on.
#[test]
fn follower_behind_the_leader_log_start_catches_up() {
    const TOPIC: &str = "retained";
    let mut cluster = Cluster::start(ClusterSpec::default());
    let configs = [
        ("segment.bytes", "1024"),
        ("retention.bytes", "4096"),
        ("min.insync.replicas", "2"),
    ];
    cluster.create_topic(TOPIC, 1, 3, &configs);
    let meta = cluster.partition(TOPIC, 0);
    let leader = meta.leader;
    let follower = meta
        .replicas
        .iter()
        .copied()
        .find(|id| *id != leader)
        .unwrap();
    // Uncompressed batches of a few records, so the log spans many segments.
    let small_batches = ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        compression: Compression::None,
        batch_bytes_max: 256,
        ..ProducerConfig::default()
    };
    produce_with(&cluster, (TOPIC, 0), 0, 20, small_batches.clone());
    cluster.kill(follower);
    let follower_end = read_batches(&cluster.partition_dir(follower, TOPIC, 0))
        .last()
        .map_or(0, |batch| batch.last_offset + 1);
    let acknowledged = produce_with(&cluster, (TOPIC, 0), 20, 1_000, small_batches);
    let deadline = Instant::now() + CLUSTER_WAIT;
    let client = BlockingClient::connect(cluster.client_config()).unwrap();
    loop {
        let start = client.list_offset(TOPIC, 0, OffsetSpec::Earliest).unwrap();
        if start > follower_end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not move the log start ({start}) past the stopped follower's end \
             ({follower_end}) within {CLUSTER_WAIT:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    drop(client);

    cluster.restart(follower);
    cluster.wait_in_sync(TOPIC, 1);
    let leader = cluster.partition(TOPIC, 0).leader;
    // Nothing was produced after the last acknowledged record, so it ends the committed log.
    let high_watermark = acknowledged.last().unwrap().1 + 1;
    let follower_batches = wait_replicated(&cluster, follower, high_watermark);
    let follower_start = follower_batches[0].base_offset;
    assert!(
        follower_start > follower_end,
        "the follower kept its stale log (it starts at {follower_start})"
    );
    assert_contiguous(&follower_batches, high_watermark);
    let leader_batches = read_batches(&cluster.partition_dir(leader, TOPIC, 0));
    assert_contiguous(&leader_batches, high_watermark);
    // Retention runs on each replica on its own, so the logs may start apart: compare where
    // both hold records.
    let common_start = follower_start.max(leader_batches[0].base_offset);
    let in_common = |batches: &[StoredBatch]| -> Vec<StoredBatch> {
        batches
            .iter()
            .filter(|batch| batch.base_offset >= common_start && batch.last_offset < high_watermark)
            .cloned()
            .collect()
    };
    assert_eq!(
        in_common(&leader_batches),
        in_common(&follower_batches),
        "the follower's log differs from the leader's from offset {common_start} on"
    );
}

/// Panics unless `batches` follow each other without a gap up to `end`.
fn assert_contiguous(batches: &[StoredBatch], end: i64) {
    for pair in batches.windows(2) {
        assert_eq!(
            pair[1].base_offset,
            pair[0].last_offset + 1,
            "a gap between batches"
        );
    }
    let last = batches.last().map_or(0, |batch| batch.last_offset + 1);
    assert!(last >= end, "the log ends at {last}, below {end}");
}

/// Broker `id`'s batches of `TOPIC`-0 once they reach `high_watermark` (as written by the
/// follower fetcher, possibly a moment after the leader).
fn wait_replicated(cluster: &Cluster, id: i32, high_watermark: i64) -> Vec<StoredBatch> {
    let dir = cluster.partition_dir(id, "retained", 0);
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let batches = read_batches(&dir);
        let end = batches.last().map_or(0, |batch| batch.last_offset + 1);
        if end >= high_watermark && !batches.is_empty() {
            return batches;
        }
        assert!(
            Instant::now() < deadline,
            "broker {id}'s log ends at {end}, below the high watermark {high_watermark}, after \
             {CLUSTER_WAIT:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

// Proves a restarted broker serves its committed offsets at once (the high watermark is
// checkpointed and recomputed when the replica leads again): a one-broker cluster, a topic rf
// 1, records acknowledged with acks=all; after a SIGKILL and a restart, ListOffsets(latest)
// answers the end of the acknowledged records, not the log start, and a consumer reads them
// all without any new produce.
#[test]
fn restarted_leader_serves_its_committed_offsets() {
    const TOPIC: &str = "restarted";
    let mut cluster = Cluster::start(ClusterSpec {
        brokers: 1,
        ..ClusterSpec::default()
    });
    cluster.create_topic(TOPIC, 1, 1, &[]);
    let acknowledged = produce(&cluster, TOPIC, 0, 50, Acks::All);
    let end = acknowledged.last().unwrap().1 + 1;
    cluster.kill(1);
    cluster.restart(1);
    cluster.partition(TOPIC, 0);
    let client = BlockingClient::connect(cluster.client_config()).unwrap();
    assert_eq!(
        client.list_offset(TOPIC, 0, OffsetSpec::Latest).unwrap(),
        end
    );
    let consumed = read_partition(cluster.client_config(), TOPIC, 0, end);
    assert_present(&consumed, &acknowledged);
}
