//! Partition reassignment against real processes (issue 14, part B): etcd plus `sluice broker
//! --etcd` processes, the `sluice` CLI's `cluster rebalance`, `cluster decommission` and `topic
//! reassign`, an idempotent acks=all producer running throughout, SIGKILLs of the controller
//! and of a moving replica mid-move.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sluice_client::Acks;
use support_cluster::*;

/// Producer rate, messages per second over all partitions.
const RATE_PER_S: u64 = 600;

/// Messages sent but not yet answered, at most.
const WINDOW: usize = 256;

/// Acknowledged messages per partition before the move, and again after it.
const ACKED_PER_PHASE: u64 = 150;

/// Bound on waiting for the producer's progress (a failover takes a session TTL or two).
const PROGRESS_WAIT: Duration = Duration::from_secs(90);

/// Partitions of the moved topic.
const PARTITIONS: i32 = 6;

fn producer(cluster: &Cluster, topic: &str) -> NumberedProducer {
    NumberedProducer::start(ProducerOptions {
        client: cluster.client_config(),
        topic: topic.to_string(),
        partitions: PARTITIONS,
        acks: Acks::All,
        rate_per_s: RATE_PER_S,
        window: WINDOW,
        first_seq: 0,
        keys: None,
    })
}

/// Every acknowledged message is in its partition exactly once, at its acknowledged offset,
/// in order; every replica of each partition holds the leader's batches byte for byte; and a
/// broker that left a partition's replica set no longer has its directory.
fn verify(cluster: &Cluster, topic: &str, outcomes: &[Outcome], fault_at: Instant) {
    assert_all_acknowledged(outcomes);
    let view = cluster.wait_in_sync(topic, PARTITIONS);
    for partition in 0..PARTITIONS {
        let meta = partition_of(&view, topic, partition).unwrap().clone();
        let (_, high_watermark) = cluster.wait_settled(topic, partition);
        let consumed = read_partition(cluster.client_config(), topic, partition, high_watermark);
        let summary = check_history(partition, &consumed, outcomes, fault_at);
        assert_eq!(
            (summary.duplicates, summary.records),
            (0, summary.acknowledged),
            "{topic}-{partition}: {summary:?}"
        );
        cluster.assert_replicas_identical(topic, partition, &meta.replicas);
        for id in cluster.ids() {
            if meta.replicas.contains(&id) || !cluster.node(id).is_running() {
                continue;
            }
            let dir = cluster.partition_dir(id, topic, partition);
            wait_until(&format!("{} deleted", dir.display()), || !dir.exists());
        }
    }
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + CLUSTER_WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "waited {CLUSTER_WAIT:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Replicas and actual leaders per broker in `view` for `topic`.
fn load(view: &sluice_net::MetadataResponse, topic: &str) -> (Vec<i32>, Vec<i32>) {
    let topic = view.topics.iter().find(|t| t.name == topic).unwrap();
    let replicas = topic
        .partitions
        .iter()
        .flat_map(|p| p.replicas.clone())
        .collect();
    let leaders = topic.partitions.iter().map(|p| p.leader).collect();
    (replicas, leaders)
}

fn count(ids: &[i32], id: i32) -> usize {
    ids.iter().filter(|each| **each == id).count()
}

// Proves `cluster rebalance` moves replicas and leaders onto a broker that joined, under
// steady idempotent acks=all produce, losing and duplicating nothing: 3 brokers, a topic of 6
// partitions with replication factor 2 and min.insync.replicas 2; a 4th broker starts; the
// rebalance's plan gives it its fair share (3 of 12 replicas) and at least one leader; then
// every acknowledged message is read back once at its offset and every replica matches the
// leader byte for byte, and the replicas that moved away deleted their directories.
#[test]
fn rebalance_onto_a_new_broker_loses_nothing() {
    const TOPIC: &str = "grow";
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 2, &[("min.insync.replicas", "2")]);
    let producer = producer(&cluster, TOPIC);
    producer.wait_progress(&[0; 6], ACKED_PER_PHASE, PROGRESS_WAIT, "before the move");
    let added = cluster.add_broker();
    let (ok, stdout, stderr) = cluster.cli(&["cluster", "rebalance", "--dry-run"]);
    assert!(ok, "dry run failed: {stdout}{stderr}");
    let (ok, stdout, stderr) = cluster.cli(&["cluster", "rebalance", "--timeout-s", "120"]);
    assert!(ok, "rebalance failed: {stdout}{stderr}");
    assert!(stdout.contains("done:"), "{stdout}");
    let moved_at = Instant::now();
    let acked = producer.acked_all();
    producer.wait_progress(&acked, ACKED_PER_PHASE, PROGRESS_WAIT, "after the move");
    let outcomes = producer.finish();
    let view = cluster.wait_in_sync(TOPIC, PARTITIONS);
    let (replicas, leaders) = load(&view, TOPIC);
    assert_eq!(
        count(&replicas, added),
        3,
        "the new broker's share: {view:?}"
    );
    assert!(
        count(&leaders, added) >= 1,
        "no leader on the new broker: {view:?}"
    );
    verify(&cluster, TOPIC, &outcomes, moved_at);
}

// Proves a move survives SIGKILLs of the controller and of the replica being added: 3
// brokers, a topic of 6 partitions (RF 2, min.insync.replicas 2) under idempotent acks=all
// produce; a 4th broker starts and is paused (SIGSTOP) so it cannot catch up; partition 0 is
// reassigned onto it (the move is recorded but cannot end); the controller is SIGKILLed, then
// the paused new broker too; both restart on their data. The new controller ends the move from
// etcd alone once the new broker caught up: it holds partition 0, and nothing acknowledged is
// lost or duplicated, every replica byte-identical.
#[test]
fn move_survives_controller_and_moving_replica_sigkill() {
    const TOPIC: &str = "faults";
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 2, &[("min.insync.replicas", "2")]);
    let producer = producer(&cluster, TOPIC);
    producer.wait_progress(&[0; 6], ACKED_PER_PHASE, PROGRESS_WAIT, "before the move");
    let added = cluster.add_broker();
    cluster.node_mut(added).stop();
    let before = cluster.partition(TOPIC, 0);
    let target = vec![added, before.replicas[1]];
    let replicas = target
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let (ok, stdout, stderr) = cluster.cli(&[
        "topic",
        "reassign",
        TOPIC,
        "--partition",
        "0",
        "--replicas",
        &replicas,
    ]);
    assert!(ok, "reassign failed: {stdout}{stderr}");
    let (_, info, _) = cluster.cli(&["cluster", "info"]);
    assert!(info.contains("reassignments in progress: 1"), "{info}");
    let fault_at = Instant::now();
    let controller = cluster.controller_in_etcd().unwrap();
    cluster.kill(controller);
    cluster.wait_controller("a new controller", |now| {
        now.is_some_and(|id| id != controller)
    });
    cluster.kill(added);
    cluster.restart(controller);
    cluster.restart(added);
    cluster.wait_partition(TOPIC, 0, "the move ended", |meta| meta.replicas == target);
    let acked = producer.acked_all();
    producer.wait_progress(&acked, ACKED_PER_PHASE, PROGRESS_WAIT, "after the move");
    let outcomes = producer.finish();
    verify(&cluster, TOPIC, &outcomes, fault_at);
}

// Proves `cluster decommission` empties a broker so that SIGKILLing it loses nothing: 3
// brokers, a topic of 6 partitions (RF 2, min.insync.replicas 2) under idempotent acks=all
// produce; broker 3 is decommissioned (every replica moves to brokers 1 and 2, the CLI says it
// can be stopped), then SIGKILLed; the producer keeps going without a failure and every
// acknowledged message is read back once, replicas byte-identical.
#[test]
fn decommissioned_broker_can_be_killed_without_loss() {
    const TOPIC: &str = "retire";
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 2, &[("min.insync.replicas", "2")]);
    let producer = producer(&cluster, TOPIC);
    producer.wait_progress(&[0; 6], ACKED_PER_PHASE, PROGRESS_WAIT, "before the move");
    let (ok, stdout, stderr) = cluster.cli(&["cluster", "decommission", "3", "--timeout-s", "120"]);
    assert!(ok, "decommission failed: {stdout}{stderr}");
    assert!(
        stdout.contains("broker 3 holds no replicas; it can be stopped"),
        "{stdout}"
    );
    let view = cluster.wait_in_sync(TOPIC, PARTITIONS);
    assert_eq!(count(&load(&view, TOPIC).0, 3), 0, "{view:?}");
    let killed_at = Instant::now();
    cluster.kill(3);
    let acked = producer.acked_all();
    producer.wait_progress(&acked, ACKED_PER_PHASE, PROGRESS_WAIT, "after the kill");
    let outcomes = producer.finish();
    verify(&cluster, TOPIC, &outcomes, killed_at);
}

// Proves bad reassignments are refused with a clear error and change nothing: a broker that
// is not registered, fewer replicas than min.insync.replicas, a broker listed twice, an unknown
// topic and partition, and a cancel when nothing moves each make the CLI fail naming the
// problem and Kafka's error code for it, while the replica sets stay and no reassignment is
// recorded.
#[test]
fn bad_reassignments_are_refused_and_change_nothing() {
    const TOPIC: &str = "refuse";
    let cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, 2, 2, &[("min.insync.replicas", "2")]);
    let before = cluster.wait_in_sync(TOPIC, 2);
    let reassign = |cluster: &Cluster, replicas: &str| {
        cluster.cli(&[
            "topic",
            "reassign",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            replicas,
        ])
    };
    let invalid = "InvalidReplicaAssignment";
    let cases = [
        (
            reassign(&cluster, "1,9"),
            invalid,
            "broker 9 is not registered",
        ),
        (
            reassign(&cluster, "3"),
            invalid,
            "fewer than the topic's min.insync.replicas (2)",
        ),
        (
            reassign(&cluster, "3,3"),
            invalid,
            "broker 3 is listed twice",
        ),
        (
            cluster.cli(&[
                "topic",
                "reassign",
                "nope",
                "--partition",
                "0",
                "--replicas",
                "1,2",
            ]),
            "UnknownTopicOrPartition",
            "",
        ),
        (
            cluster.cli(&[
                "topic",
                "reassign",
                TOPIC,
                "--partition",
                "7",
                "--replicas",
                "1,2",
            ]),
            "UnknownTopicOrPartition",
            "",
        ),
        (
            cluster.cli(&["topic", "reassign", TOPIC, "--partition", "0", "--cancel"]),
            "NoReassignmentInProgress",
            "no reassignment of this partition is in progress",
        ),
    ];
    for ((ok, stdout, stderr), code, reason) in cases {
        assert!(!ok, "accepted although {code} {reason}: {stdout}");
        assert!(
            stderr.contains(code) && stderr.contains(reason),
            "expected {code:?} and {reason:?} in: {stderr}"
        );
    }
    let (_, info, _) = cluster.cli(&["cluster", "info"]);
    assert!(info.contains("reassignments in progress: 0"), "{info}");
    let after = cluster.wait_in_sync(TOPIC, 2);
    for partition in 0..2 {
        assert_eq!(
            partition_of(&before, TOPIC, partition).unwrap().replicas,
            partition_of(&after, TOPIC, partition).unwrap().replicas
        );
    }
}

// Proves a move can be cancelled: partition 0 of a 2-replica topic is reassigned onto a new
// broker that is paused (SIGSTOP) so the move cannot end; the cancel is accepted, and once the
// broker resumes the partition is back on its original replicas, its ISR within them, and the
// new broker holds no directory of it.
#[test]
fn cancel_returns_a_move_to_the_original_replicas() {
    const TOPIC: &str = "cancel";
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, 2, 2, &[("min.insync.replicas", "2")]);
    let before = cluster.wait_in_sync(TOPIC, 2);
    let reassign = |cluster: &Cluster, replicas: &str| {
        cluster.cli(&[
            "topic",
            "reassign",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            replicas,
        ])
    };
    let original = partition_of(&before, TOPIC, 0).unwrap().replicas.clone();
    let added = cluster.add_broker();
    cluster.node_mut(added).stop();
    let target = format!("{added},{}", original[0]);
    let (ok, stdout, stderr) = reassign(&cluster, &target);
    assert!(ok, "{stdout}{stderr}");
    cluster.wait_partition(TOPIC, 0, "the added replica listed", |meta| {
        meta.replicas.contains(&added)
    });
    let (ok, stdout, stderr) =
        cluster.cli(&["topic", "reassign", TOPIC, "--partition", "0", "--cancel"]);
    assert!(ok, "cancel failed: {stdout}{stderr}");
    cluster.node_mut(added).cont();
    let meta = cluster.wait_partition(TOPIC, 0, "back on the original replicas", |meta| {
        meta.replicas == original
    });
    let isr: BTreeSet<i32> = meta.isr.iter().copied().collect();
    assert!(isr.is_subset(&as_set(&original)), "{meta:?}");
    let dir = cluster.partition_dir(added, TOPIC, 0);
    wait_until("the cancelled replica's directory deleted", || {
        !dir.exists()
    });
}

/// The reassignment throttle of every broker in the throttle test, bytes per second (each of a
/// broker's 2 shards gets half).
const THROTTLE_BYTES_PER_S: u64 = 256 * 1024;

/// Records and bytes per record the throttled partition holds before it moves: 3 MiB, which
/// the throttle copies in no less than ~23 s (a shard's 128 KiB/s, after its 128 KiB burst).
const THROTTLED_RECORDS: usize = 768;
const THROTTLED_RECORD_BYTES: usize = 4096;

/// How long after the move starts it must still be in progress, well under what the throttle
/// allows and far over what an unthrottled local copy of 3 MiB takes.
const THROTTLED_STILL_MOVING_AFTER: Duration = Duration::from_secs(3);

/// Record `seq` of the throttled partition: its number, then padding to the record size.
fn padded_value(seq: usize) -> bytes::Bytes {
    let mut value = format!("p-{seq:010}-").into_bytes();
    value.resize(THROTTLED_RECORD_BYTES, b'x');
    bytes::Bytes::from(value)
}

/// The sum over every sample (every shard) of the metric family `name` on broker `id`.
fn metric_sum(cluster: &Cluster, id: i32, name: &str) -> u64 {
    let (_, body) =
        support_cluster::wire::http_get(&cluster.node(id).admin_addr(), "/metrics").unwrap();
    body.lines()
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Writes `THROTTLED_RECORDS` padded records to `topic`-0 with acks=all, uncompressed (so the
/// partition holds their full size); returns their offsets.
fn fill_partition(cluster: &Cluster, topic: &str) -> Vec<i64> {
    let producer = sluice_client::blocking::BlockingProducer::new(
        cluster.client_config(),
        sluice_client::ProducerConfig {
            acks: Acks::All,
            compression: sluice_client::Compression::None,
            ..sluice_client::ProducerConfig::default()
        },
    )
    .unwrap();
    let handles: Vec<_> = (0..THROTTLED_RECORDS)
        .map(|seq| {
            let record = sluice_client::ProducerRecord {
                partition: Some(0),
                ..sluice_client::ProducerRecord::new(topic, padded_value(seq))
            };
            producer.send(record).unwrap()
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.wait().unwrap().offset)
        .collect()
}

// Proves the reassignment throttle holds a move's copy back and the move still completes
// whole: 3 brokers with reassignment_throttle_bytes_per_second = 256 KiB; a partition (RF 1)
// holding 3 MiB moves to a new broker; 3 s later (an unthrottled local copy takes well under
// one) the move is still in progress, `cluster info` shows a known, non-zero number of bytes
// left, and the new broker's throttled-bytes and throttle-delay metrics have grown; then the
// move ends, the bytes-left gauge returns to 0, every acknowledged record is read back once at
// its offset with its bytes, and the new replica matches the leader byte for byte.
#[test]
fn throttled_move_is_held_back_and_then_completes() {
    const TOPIC: &str = "slow";
    let mut cluster = Cluster::start(ClusterSpec {
        extra_flags: vec![
            "--reassignment-throttle-bytes-per-second".to_string(),
            THROTTLE_BYTES_PER_S.to_string(),
        ],
        ..ClusterSpec::default()
    });
    cluster.create_topic(TOPIC, 1, 1, &[]);
    cluster.wait_in_sync(TOPIC, 1);
    let offsets = fill_partition(&cluster, TOPIC);
    let added = cluster.add_broker();
    let (ok, stdout, stderr) = cluster.cli(&[
        "topic",
        "reassign",
        TOPIC,
        "--partition",
        "0",
        "--replicas",
        &added.to_string(),
    ]);
    assert!(ok, "reassign failed: {stdout}{stderr}");
    let started = Instant::now();
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let (_, info, stderr) = cluster.cli(&["cluster", "info"]);
        let known = info.contains("reassignments in progress: 1")
            && !info.contains("left unknown")
            && !info.contains("left 0 B");
        if known {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waited {CLUSTER_WAIT:?} for a known, non-zero number of bytes left: {info}{stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(THROTTLED_STILL_MOVING_AFTER.saturating_sub(started.elapsed()));
    let (_, info, _) = cluster.cli(&["cluster", "info"]);
    assert!(
        info.contains("reassignments in progress: 1"),
        "the throttled move ended within {THROTTLED_STILL_MOVING_AFTER:?}: {info}"
    );
    let throttled = metric_sum(&cluster, added, "sluice_reassignment_throttled_bytes_total");
    assert!(throttled > 0, "no throttled bytes counted");
    assert!(
        metric_sum(&cluster, added, "sluice_reassignment_bytes_remaining") > 0,
        "no bytes remaining reported while moving"
    );
    assert!(
        metric_sum(&cluster, added, "sluice_reassignment_throttle_delays_total") > 0,
        "the throttle never held the copy back"
    );
    let target = vec![added];
    cluster.wait_partition(TOPIC, 0, "the move ended", |meta| meta.replicas == target);
    wait_until("the bytes-left gauge back to 0", || {
        metric_sum(&cluster, added, "sluice_reassignment_bytes_remaining") == 0
    });
    let high_watermark = cluster.assert_replicas_identical(TOPIC, 0, &target);
    let expected: Vec<i64> = (0..THROTTLED_RECORDS as i64).collect();
    assert_eq!(
        offsets, expected,
        "acknowledged offsets are contiguous from 0"
    );
    let consumed = read_partition(cluster.client_config(), TOPIC, 0, high_watermark);
    assert_eq!(consumed.len(), THROTTLED_RECORDS, "records read back");
    for (seq, (offset, value)) in consumed.iter().enumerate() {
        assert_eq!(*offset, offsets[seq]);
        assert_eq!(
            value.as_ref(),
            Some(&padded_value(seq)),
            "record {seq}'s bytes"
        );
    }
}

/// The folder `scripts/kafka-clients.sh install` put the Kafka clients in.
fn kafka_clients_dir() -> std::path::PathBuf {
    std::env::var_os("SLUICE_KAFKA_CLIENTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.kafka-clients")
        })
}

// Proves a Kafka admin client moves a partition through the Kafka port (KIP-455) under steady
// idempotent acks=all produce: kafkajs's AlterPartitionReassignments onto a broker that does
// not exist is refused; its move of partition 0 onto a 4th broker (paused, so the move cannot
// end at once) is listed in progress by ListPartitionReassignments with that broker adding,
// then, once the broker resumes, no longer listed; the metadata kafkajs reads names the target
// replicas, and nothing acknowledged is lost or duplicated, every replica byte-identical.
#[test]
fn kafka_admin_client_reassigns_a_partition() {
    const TOPIC: &str = "kafkajs-move";
    let modules = kafka_clients_dir().join("node/node_modules");
    assert!(
        modules.join("kafkajs").exists(),
        "kafkajs is not installed: run scripts/kafka-clients.sh install"
    );
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 2, &[("min.insync.replicas", "2")]);
    let producer = producer(&cluster, TOPIC);
    producer.wait_progress(&[0; 6], ACKED_PER_PHASE, PROGRESS_WAIT, "before the move");
    let original = cluster.partition(TOPIC, 0).replicas;
    let added = cluster.add_broker();
    cluster.node_mut(added).stop();
    let bootstrap: Vec<String> = original
        .iter()
        .map(|id| cluster.node(*id).kafka_addr())
        .collect();
    let target = [added, original[0]];
    let mut client = std::process::Command::new("node")
        .env("NODE_PATH", &modules)
        .arg(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/kafka_clients/kafkajs_reassign.mjs"),
        )
        .args(["--bootstrap", &bootstrap.join(","), "--topic", TOPIC])
        .args(["--partition", "0", "--replicas"])
        .arg(format!("{},{}", target[0], target[1]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The move cannot end while the added broker is paused: resume it once the client has
    // listed the move in progress (or has ended, which the checks below report).
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(client.stdout.take().unwrap()));
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    cluster.node_mut(added).cont();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success(), "{first} {rest:?} {output:?}");
    assert_eq!(
        first, "moving",
        "the client never listed the move in progress: {rest:?}"
    );
    let stdout = rest.join("\n");
    let moved_at = Instant::now();
    let seen: serde_json::Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    let refused = seen["refused"].as_str().unwrap();
    assert!(
        refused.contains("INVALID_REPLICA_ASSIGNMENT"),
        "a move onto broker 99: {stdout}"
    );
    assert_eq!(
        seen["seen"]["addingReplicas"],
        serde_json::json!([added]),
        "{stdout}"
    );
    assert_eq!(seen["replicas"], serde_json::json!(target), "{stdout}");
    let acked = producer.acked_all();
    producer.wait_progress(&acked, ACKED_PER_PHASE, PROGRESS_WAIT, "after the move");
    let outcomes = producer.finish();
    assert_eq!(cluster.partition(TOPIC, 0).replicas, target.to_vec());
    verify(&cluster, TOPIC, &outcomes, moved_at);
}
