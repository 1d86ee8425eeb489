//! Preferred leaders against real processes: etcd plus three `sluice broker --etcd` processes,
//! the preferred leader of a partition SIGKILLed and restarted, and leadership moved back by
//! the controller's automatic rebalance or by `sluice cluster elect-leaders`, under steady
//! acks=all idempotent produce.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sluice_client::Acks;
use sluice_net::MetadataResponse;
use support_cluster::*;

/// Producer rate, messages per second over all partitions.
const RATE_PER_S: u64 = 300;

/// Messages sent but not yet answered, at most.
const WINDOW: usize = 128;

/// Acknowledged messages per partition in each phase (before the kill, while the broker is
/// down, after leadership came back).
const ACKED_PER_PHASE: u64 = 100;

/// Bound on waiting for the producer's progress (a failover takes a session TTL).
const PROGRESS_WAIT: Duration = Duration::from_secs(90);

/// The test's leader imbalance check interval, milliseconds (the default is 30 s).
const CHECK_INTERVAL_MS: &str = "1000";

const PARTITIONS: i32 = 3;

/// Whether every partition of `topic` in `view` is led by its preferred (first) replica.
fn preferred_leads(view: &MetadataResponse, topic: &str) -> bool {
    (0..PARTITIONS).all(|partition| {
        partition_of(view, topic, partition)
            .is_some_and(|meta| meta.replicas.first() == Some(&meta.leader))
    })
}

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

/// Kills the preferred leader of partition 0 under `producer`, waits for a failover and more
/// acknowledgements, restarts it and waits until it is back in the ISR of every partition.
/// Returns the victim and when it was killed.
fn fail_over_and_return(
    cluster: &mut Cluster,
    producer: &NumberedProducer,
    topic: &str,
) -> (i32, Instant) {
    producer.wait_progress(&[0; 3], ACKED_PER_PHASE, PROGRESS_WAIT, "before the kill");
    let victim = cluster.partition(topic, 0).replicas[0];
    let killed_at = Instant::now();
    cluster.kill(victim);
    let failed_over = cluster.wait_partition(topic, 0, "a leader other than the victim", |meta| {
        meta.leader >= 0 && meta.leader != victim
    });
    wait_imbalance(cluster, failed_over.leader, "at least 1", |value| {
        value >= 1.0
    });
    let acked = producer.acked_all();
    producer.wait_progress(&acked, ACKED_PER_PHASE, PROGRESS_WAIT, "while it is down");
    cluster.restart(victim);
    cluster.wait_in_sync(topic, PARTITIONS);
    (victim, killed_at)
}

/// Stops the producer and checks every partition: every acknowledged message exactly once, at
/// its acknowledged offset, in order, nothing else.
fn finish_and_check(
    cluster: &Cluster,
    producer: NumberedProducer,
    topic: &str,
    killed_at: Instant,
) {
    let acked = producer.acked_all();
    producer.wait_progress(&acked, ACKED_PER_PHASE, PROGRESS_WAIT, "after the election");
    let outcomes = producer.finish();
    assert_all_acknowledged(&outcomes);
    for partition in 0..PARTITIONS {
        let (leader, high_watermark) = cluster.wait_settled(topic, partition);
        let consumed = read_partition(cluster.client_config(), topic, partition, high_watermark);
        let summary = check_history(partition, &consumed, &outcomes, killed_at);
        eprintln!("{topic}-{partition} (leader {leader}): {summary:?}");
        assert_eq!(
            (summary.duplicates, summary.records),
            (0, summary.acknowledged),
            "{topic}-{partition}: a message was lost, duplicated or invented across the election"
        );
    }
}

/// Waits until broker `id`'s `sluice_preferred_leader_imbalance` satisfies `check`.
fn wait_imbalance(cluster: &Cluster, id: i32, what: &str, check: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let admin = cluster.node(id).admin_addr();
        let value = wire::http_get(&admin, "/metrics")
            .ok()
            .and_then(|(_, body)| wire::metric_ending_with(&body, "preferred_leader_imbalance"));
        if value.is_some_and(&check) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "broker {id}: preferred leader imbalance never became {what} (last {value:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the `sluice` CLI with `args`, bootstrapping from `cluster`.
fn cli(cluster: &Cluster, args: &[&str]) -> Output {
    let bootstrap = cluster.client_config().bootstrap.join(",");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", &bootstrap])
        .output()
        .unwrap()
}

// Proves the automatic rebalance brings leadership home: 3 brokers, a topic of 3 partitions
// with replication factor 3, an idempotent acks=all producer; partition 0's preferred leader
// is SIGKILLed (another ISR member takes over) and restarted; with a 1 s imbalance check the
// controller moves leadership back to every preferred replica once it is in the ISR again, and
// every acknowledged message is read back exactly once, in order, at its offset;
// `sluice_preferred_leader_imbalance` counts the moved partition meanwhile and 0 afterwards on
// every broker.
#[test]
fn auto_rebalance_moves_leadership_back_after_a_failover() {
    const TOPIC: &str = "preferred-auto";
    let mut cluster = Cluster::start(ClusterSpec {
        extra_flags: vec![
            "--leader-imbalance-check-interval-ms".to_string(),
            CHECK_INTERVAL_MS.to_string(),
        ],
        ..ClusterSpec::default()
    });
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer = producer(&cluster, TOPIC);
    let (victim, killed_at) = fail_over_and_return(&mut cluster, &producer, TOPIC);
    let view = cluster.wait_view("every partition led by its preferred replica", |view| {
        preferred_leads(view, TOPIC)
    });
    assert_eq!(partition_of(&view, TOPIC, 0).unwrap().leader, victim);
    for id in cluster.ids() {
        wait_imbalance(&cluster, id, "0", |value| value == 0.0);
    }
    finish_and_check(&cluster, producer, TOPIC, killed_at);
}

// Proves `sluice cluster elect-leaders` with the automatic rebalance off: after the preferred
// leader of partition 0 was SIGKILLed and came back into the ISR, leadership stays where the
// failover put it; the command moves it back (printing `elected` for that partition), a second
// run finds nothing to do (`already preferred`), an unknown topic is a clear error with a
// non-zero exit, and every acknowledged message of the idempotent acks=all producer running
// throughout is read back exactly once, in order.
#[test]
fn elect_leaders_moves_leadership_back_on_demand() {
    const TOPIC: &str = "preferred-demand";
    let mut cluster = Cluster::start(ClusterSpec {
        extra_flags: vec![
            "--auto-leader-rebalance-enable".to_string(),
            "false".to_string(),
            "--leader-imbalance-check-interval-ms".to_string(),
            CHECK_INTERVAL_MS.to_string(),
        ],
        ..ClusterSpec::default()
    });
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer = producer(&cluster, TOPIC);
    let (victim, killed_at) = fail_over_and_return(&mut cluster, &producer, TOPIC);
    let before = cluster.partition(TOPIC, 0);
    assert_ne!(
        before.leader, victim,
        "nothing may move leadership back by itself"
    );

    let output = cli(&cluster, &["cluster", "elect-leaders", "--topic", TOPIC]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains(&format!("{TOPIC}-0  elected")), "{stdout}");
    let after = cluster.wait_view("every partition led by its preferred replica", |view| {
        preferred_leads(view, TOPIC)
    });
    let moved = partition_of(&after, TOPIC, 0).unwrap();
    assert_eq!(moved.leader, victim);
    assert!(moved.leader_epoch > before.leader_epoch);

    let again = cli(&cluster, &["cluster", "elect-leaders", "--topic", TOPIC]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{again:?}");
    assert!(
        stdout.contains(&format!("{TOPIC}-0  already preferred")),
        "{stdout}"
    );

    let unknown = cli(
        &cluster,
        &["cluster", "elect-leaders", "--topic", "no-such-topic"],
    );
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "{unknown:?}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    finish_and_check(&cluster, producer, TOPIC, killed_at);
}
