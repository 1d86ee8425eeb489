//! Leader failover against real processes: etcd plus three `sluice broker --etcd` processes, a
//! leader SIGKILLed mid-stream, and the killed broker restarted on its data directory.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::time::{Duration, Instant};

use sluice_client::Acks;
use support_cluster::logs::{common_prefix, read_batches};
use support_cluster::proxy::{DropProxy, DropRule};
use support_cluster::*;

/// Producer rate, messages per second over all partitions.
const RATE_PER_S: u64 = 600;

/// Messages sent but not yet answered, at most.
const WINDOW: usize = 256;

/// Acknowledged messages per partition before a fault is injected, and again after it.
const ACKED_PER_PHASE: u64 = 300;

/// Bound on waiting for the producer's progress (a failover takes a session TTL, a few
/// seconds, plus an ISR shrink for the partitions the dead broker followed).
const PROGRESS_WAIT: Duration = Duration::from_secs(90);

/// Records sent with acks=1 to the old leader alone, while its followers are stopped.
const UNREPLICATED_SENDS: u64 = 10;

/// Loopback address the brokers advertise in the lost-answer test: a proxy listens there and
/// forwards to their ports on 127.0.0.1.
const PROXY_HOST: &str = "127.0.0.2";

/// The proxy cuts the connection after the answer of every this many-th produce request...
const DROP_EVERY_PRODUCE: u32 = 40;

/// ...this many times at most.
const DROPS_MAX: u32 = 6;

/// A default cluster whose brokers advertise `PROXY_HOST`, and the proxy in front of every
/// broker's native and shard ports.
fn proxied_cluster() -> (Cluster, DropProxy) {
    let cluster = Cluster::start(ClusterSpec {
        extra_flags: vec!["--advertised-host".to_string(), PROXY_HOST.to_string()],
        ..ClusterSpec::default()
    });
    let mut targets = Vec::new();
    for id in cluster.ids() {
        let node = cluster.node(id);
        targets.push(node.native_addr().parse().unwrap());
        targets.extend(
            node.shard_addrs()
                .iter()
                .map(|addr| addr.parse::<std::net::SocketAddr>().unwrap()),
        );
    }
    let rule = DropRule {
        every_produce: DROP_EVERY_PRODUCE,
        drops_max: DROPS_MAX,
    };
    let proxy = DropProxy::start(PROXY_HOST, &targets, rule);
    (cluster, proxy)
}

fn producer_options(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    first_seq: u64,
) -> ProducerOptions {
    ProducerOptions {
        client: cluster.client_config(),
        topic: topic.to_string(),
        partitions,
        acks: Acks::All,
        rate_per_s: RATE_PER_S,
        window: WINDOW,
        first_seq,
        keys: None,
    }
}

// Proves a SIGKILLed leader loses no acknowledged message: etcd + 3 brokers, a topic of 3
// partitions with replication factor 3 and min.insync.replicas 2, an acks=all producer of
// numbered messages (idempotent, the client's default, 5 requests per partition in flight);
// partition 0's leader is killed mid-stream; a new leader from the ISR takes over with a higher
// epoch, the producer carries on (retrying, no send fails), and each partition read from offset
// 0 holds every acknowledged message exactly once, at exactly its acknowledged offset, in
// order, and nothing that was never sent: a retry of a batch the old leader had appended (its
// answer died with the leader) is recognised by the new leader, which rebuilt the producer
// state from the replicated batches, and is not written again.
#[test]
fn leader_sigkill_mid_stream_loses_no_acknowledged_message() {
    const TOPIC: &str = "orders";
    const PARTITIONS: i32 = 3;
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer = NumberedProducer::start(producer_options(&cluster, TOPIC, PARTITIONS, 0));
    producer.wait_progress(
        &[0; 3],
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages before the kill",
    );

    let before = cluster.partition(TOPIC, 0);
    let victim = before.leader;
    let acked_at_kill = producer.acked_all();
    let killed_at = Instant::now();
    cluster.kill(victim);
    let after = cluster.wait_partition(TOPIC, 0, "a new leader", |meta| {
        meta.leader >= 0 && meta.leader != victim
    });
    assert!(
        before.isr.contains(&after.leader),
        "new leader {} was not in the ISR {:?} before the kill",
        after.leader,
        before.isr
    );
    assert!(
        after.leader_epoch > before.leader_epoch,
        "the leader epoch did not go up: {before:?} -> {after:?}"
    );
    producer.wait_progress(
        &acked_at_kill,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages after the kill",
    );
    let outcomes = producer.finish();
    assert_all_acknowledged(&outcomes);

    for partition in 0..PARTITIONS {
        let (leader, high_watermark) = cluster.wait_settled(TOPIC, partition);
        let consumed = read_partition(cluster.client_config(), TOPIC, partition, high_watermark);
        let summary = check_history(partition, &consumed, &outcomes, killed_at);
        eprintln!("{TOPIC}-{partition} (leader {leader}): {summary:?}");
        assert_eq!(
            (summary.duplicates, summary.records),
            (0, summary.acknowledged),
            "{TOPIC}-{partition}: an idempotent producer's retry was written twice"
        );
    }
}

// Proves a consumer rides out its leader's SIGKILL: etcd + 3 brokers, a topic of 3 partitions
// with replication factor 3 and min.insync.replicas 2, an acks=all producer of numbered messages
// and a consumer polling every partition from the start; partition 0's leader is killed while
// both run. No poll of the consumer fails; it moves to the new leader on its own and ends up
// having read every acknowledged message at exactly its acknowledged offset, each offset once
// and in order (the history check of the producer's outcomes, on what the consumer returned).
#[test]
fn consumer_polling_through_leader_sigkill_reads_every_acknowledged_message() {
    const TOPIC: &str = "reads";
    const PARTITIONS: i32 = 3;
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer = NumberedProducer::start(producer_options(&cluster, TOPIC, PARTITIONS, 0));
    let consumer = PollingConsumer::start(cluster.client_config(), TOPIC, PARTITIONS);
    producer.wait_progress(
        &[0; 3],
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages before the kill",
    );
    let ends_before: Vec<i64> = vec![i64::try_from(ACKED_PER_PHASE / 2).unwrap(); 3];
    consumer.wait_positions(
        &ends_before,
        PROGRESS_WAIT,
        "the consumer reading before the kill",
    );

    let victim = cluster.partition(TOPIC, 0).leader;
    let acked_at_kill = producer.acked_all();
    let killed_at = Instant::now();
    cluster.kill(victim);
    cluster.wait_partition(TOPIC, 0, "a new leader", |meta| {
        meta.leader >= 0 && meta.leader != victim
    });
    producer.wait_progress(
        &acked_at_kill,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages after the kill",
    );
    let outcomes = producer.finish();
    assert_all_acknowledged(&outcomes);
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|partition| {
            outcomes
                .iter()
                .filter(|outcome| outcome.partition == partition)
                .filter_map(|outcome| outcome.result.as_ref().ok())
                .map(|offset| offset + 1)
                .max()
                .unwrap_or(0)
        })
        .collect();
    consumer.wait_positions(&ends, PROGRESS_WAIT, "every acknowledged message consumed");
    let (consumed, errors) = consumer.finish();
    assert!(
        errors.is_empty(),
        "polls failed during the failover: {errors:?}"
    );
    for (partition, records) in consumed.iter().enumerate() {
        let partition = i32::try_from(partition).unwrap();
        let summary = check_history(partition, records, &outcomes, killed_at);
        eprintln!("{TOPIC}-{partition} as consumed through the failover: {summary:?}");
    }
}

// Proves a killed leader that restarts truncates its divergent tail, catches up and rejoins
// the ISR with a log byte-identical to the leader's: with both followers SIGSTOPped the leader
// appends records acknowledged with acks=1 only, then it is SIGKILLed and the followers resumed,
// so it holds batches the new leader never got (checked before the restart); after more acks=all
// traffic it restarts on its data directory, comes back into the ISR (Metadata), and every
// replica's files hold the same bytes below the high watermark, with every acks=all message at
// its acknowledged offset.
#[test]
fn killed_leader_restarts_truncates_and_rejoins_isr() {
    const TOPIC: &str = "ledger";
    // A lag bound and a session TTL far longer than the followers stay stopped (ten acks=1
    // sends, even on a loaded machine), so they stay registered and in the ISR, and one of
    // them can be elected.
    let spec = ClusterSpec {
        session_ttl_s: 10,
        replica_lag_time_max_ms: 30_000,
        ..ClusterSpec::default()
    };
    let mut cluster = Cluster::start(spec);
    cluster.create_topic(TOPIC, 1, 3, &[("min.insync.replicas", "2")]);
    let mut outcomes = NumberedProducer::run_until(
        producer_options(&cluster, TOPIC, 1, 0),
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
    );
    assert_all_acknowledged(&outcomes);

    let before = cluster.partition(TOPIC, 0);
    let old_leader = before.leader;
    let followers: Vec<i32> = before
        .replicas
        .iter()
        .copied()
        .filter(|id| *id != old_leader)
        .collect();
    let first_fault = Instant::now();
    for follower in &followers {
        cluster.node_mut(*follower).stop();
    }
    outcomes.extend(send_unreplicated(&cluster, TOPIC, outcomes.len() as u64));
    cluster.kill(old_leader);
    for follower in &followers {
        cluster.node_mut(*follower).cont();
    }
    let after = cluster.wait_partition(TOPIC, 0, "a new leader", |meta| {
        meta.leader >= 0 && meta.leader != old_leader
    });
    assert!(followers.contains(&after.leader), "{after:?}");
    assert!(
        after.leader_epoch > before.leader_epoch,
        "{before:?} -> {after:?}"
    );
    let divergent = divergent_batches(&cluster, TOPIC, old_leader, after.leader);
    assert!(
        divergent > 0,
        "setup failed: the killed leader holds no batch the new leader lacks, so there is \
         nothing to truncate"
    );

    let first_seq = outcomes.len() as u64;
    let more = NumberedProducer::run_until(
        producer_options(&cluster, TOPIC, 1, first_seq),
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
    );
    assert_all_acknowledged(&more);
    outcomes.extend(more);
    cluster.restart(old_leader);
    cluster.wait_isr(TOPIC, 0, &before.replicas);
    let high_watermark = cluster.assert_replicas_identical(TOPIC, 0, &before.replicas);
    let consumed = read_partition(cluster.client_config(), TOPIC, 0, high_watermark);
    let summary = check_history(0, &consumed, &outcomes, first_fault);
    eprintln!(
        "{TOPIC}-0: old leader {old_leader} had {divergent} divergent batches; new leader {}; \
         high watermark {high_watermark}; {summary:?}",
        after.leader
    );
}

/// Sends `UNREPLICATED_SENDS` records with acks=1, one request each, to the only serving
/// broker (the leader); returns them as outcomes that are not counted as acknowledged, since
/// acks=1 promises nothing once the leader dies.
fn send_unreplicated(cluster: &Cluster, topic: &str, first_seq: u64) -> Vec<Outcome> {
    (first_seq..first_seq + UNREPLICATED_SENDS)
        .map(|seq| {
            let offset = send_once(
                cluster.client_config(),
                topic,
                0,
                Acks::Leader,
                message_value(seq),
            )
            .unwrap_or_else(|error| panic!("acks=1 send to the leader alone failed: {error}"));
            Outcome {
                seq,
                partition: 0,
                result: Err(format!("written at {offset} with acks=1 only")),
                answered_at: Instant::now(),
            }
        })
        .collect()
}

/// Batches in the dead broker's files that the new leader does not hold byte for byte.
fn divergent_batches(cluster: &Cluster, topic: &str, dead: i32, leader: i32) -> usize {
    let dead_batches = read_batches(&cluster.partition_dir(dead, topic, 0));
    let leader_batches = read_batches(&cluster.partition_dir(leader, topic, 0));
    dead_batches.len() - common_prefix(&dead_batches, &leader_batches)
}

// Proves exactly once in send order across a leader SIGKILL and lost answers: the brokers
// advertise 127.0.0.2, where a proxy forwards to them and cuts the client's connection after
// the answer of every 40th produce request (up to 6 times), so appended batches are resent;
// etcd + 3 brokers, 3 partitions with replication factor 3 and min.insync.replicas 2, the
// idempotent producer of numbered messages (5 requests per partition in flight) carries on
// through the kill of partition 0's leader with no send failing, and every partition read back
// holds each acknowledged message exactly once, at its acknowledged offset, in order.
#[test]
fn leader_sigkill_with_lost_produce_answers_writes_each_message_once() {
    const TOPIC: &str = "lossy";
    const PARTITIONS: i32 = 3;
    let (mut cluster, proxy) = proxied_cluster();
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    // The proxy loses answers from the first produce request on.
    let faults_from = Instant::now();
    let producer = NumberedProducer::start(producer_options(&cluster, TOPIC, PARTITIONS, 0));
    producer.wait_progress(
        &[0; 3],
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages before the kill",
    );
    let victim = cluster.partition(TOPIC, 0).leader;
    let acked_at_kill = producer.acked_all();
    cluster.kill(victim);
    cluster.wait_partition(TOPIC, 0, "a new leader", |meta| {
        meta.leader >= 0 && meta.leader != victim
    });
    producer.wait_progress(
        &acked_at_kill,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages after the kill",
    );
    let outcomes = producer.finish();
    assert_all_acknowledged(&outcomes);
    assert!(
        proxy.drops() >= 2,
        "the proxy cut {} connections ({} produce requests): too few to prove anything",
        proxy.drops(),
        proxy.produce_requests()
    );
    for partition in 0..PARTITIONS {
        let (leader, high_watermark) = cluster.wait_settled(TOPIC, partition);
        let consumed = read_partition(cluster.client_config(), TOPIC, partition, high_watermark);
        let summary = check_history(partition, &consumed, &outcomes, faults_from);
        eprintln!("{TOPIC}-{partition} (leader {leader}): {summary:?}");
        assert_eq!(
            (summary.duplicates, summary.records),
            (0, summary.acknowledged),
            "{TOPIC}-{partition}: a resent batch was written twice"
        );
    }
}
