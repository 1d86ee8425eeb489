//! The control plane under faults, against real processes: the controller SIGKILLed, and etcd
//! itself killed and restarted while the cluster serves traffic.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sluice_client::Acks;
use support_cluster::wire::{http_get, metric_ending_with};
use support_cluster::*;

/// Partitions of the topics: with 3 brokers, each leads one at first.
const PARTITIONS: i32 = 3;

/// Producer rate, messages per second over all partitions.
const RATE_PER_S: u64 = 600;

/// Acknowledged messages per partition awaited between two steps.
const ACKED_PER_PHASE: u64 = 200;

/// Bound on waiting for the producer's progress.
const PROGRESS_WAIT: Duration = Duration::from_secs(90);

/// Bound on waiting for a broker's admin endpoint to report the etcd connection state.
const HEALTH_WAIT: Duration = Duration::from_secs(60);

fn start_producer(cluster: &Cluster, topic: &str) -> NumberedProducer {
    NumberedProducer::start(ProducerOptions {
        client: cluster.client_config(),
        topic: topic.to_string(),
        partitions: PARTITIONS,
        acks: Acks::All,
        rate_per_s: RATE_PER_S,
        window: 256,
        first_seq: 0,
        keys: None,
    })
}

/// Stops the producer, requires every message to have been acknowledged, and checks every
/// partition's history against the outcomes.
fn finish_and_check(
    cluster: &Cluster,
    topic: &str,
    producer: NumberedProducer,
    first_fault: Instant,
) {
    let outcomes = producer.finish();
    assert_all_acknowledged(&outcomes);
    for partition in 0..PARTITIONS {
        let (leader, high_watermark) = cluster.wait_settled(topic, partition);
        let consumed = read_partition(cluster.client_config(), topic, partition, high_watermark);
        let summary = check_history(partition, &consumed, &outcomes, first_fault);
        eprintln!("{topic}-{partition} (leader {leader}): {summary:?}");
    }
}

/// Waits until no partition of `topic` is led by any of `gone` (or has no leader) and none of
/// them is in any ISR.
fn wait_moved_away(cluster: &Cluster, topic: &str, gone: &[i32]) {
    let gone: BTreeSet<i32> = gone.iter().copied().collect();
    cluster.wait_view(
        &format!("every partition of {topic} led by a live broker, without {gone:?} in its ISR"),
        |view| {
            (0..PARTITIONS).all(|partition| {
                partition_of(view, topic, partition).is_some_and(|meta| {
                    meta.leader >= 0
                        && !gone.contains(&meta.leader)
                        && meta.isr.iter().all(|id| !gone.contains(id))
                })
            })
        },
    );
}

// Proves controller failover: with a topic rf 3 (min.insync.replicas 2) under acks=all
// traffic, the controller (named by its etcd key) is SIGKILLed; another broker takes the key,
// the brokers report it as controller, it moves the dead broker's partitions to live ISR
// members; after the old controller restarts and rejoins every ISR, a following leader failover
// (SIGKILL of a non-controller leader) is carried out by the new controller; no send fails and
// no acknowledged message is lost.
#[test]
fn controller_sigkill_hands_over_and_later_failover_works() {
    const TOPIC: &str = "control";
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer = start_producer(&cluster, TOPIC);
    producer.wait_progress(
        &[0; 3],
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages before the kill",
    );

    let first = cluster
        .wait_controller("a controller", |controller| controller.is_some())
        .unwrap();
    let first_fault = Instant::now();
    cluster.kill(first);
    let second = cluster
        .wait_controller("a new controller", |controller| {
            controller.is_some_and(|id| id != first)
        })
        .unwrap();
    cluster.wait_view(&format!("brokers naming {second} controller"), |view| {
        view.controller_id == second
    });
    wait_moved_away(&cluster, TOPIC, &[first]);
    let progress = producer.acked_all();
    producer.wait_progress(
        &progress,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages after the controller died",
    );

    cluster.restart(first);
    cluster.wait_in_sync(TOPIC, PARTITIONS);
    let view = cluster.wait_view("a stable view", |_| true);
    let victim = (0..PARTITIONS)
        .filter_map(|partition| partition_of(&view, TOPIC, partition).map(|meta| meta.leader))
        .find(|leader| *leader != second)
        .unwrap_or_else(|| panic!("controller {second} leads every partition: {view:?}"));
    cluster.kill(victim);
    wait_moved_away(&cluster, TOPIC, &[victim]);
    assert_eq!(
        cluster.controller_in_etcd(),
        Some(second),
        "the controller changed although it stayed alive"
    );
    let progress = producer.acked_all();
    producer.wait_progress(
        &progress,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages after the second kill",
    );
    finish_and_check(&cluster, TOPIC, producer, first_fault);
}

/// The etcd connection state broker `id` reports: (`*etcd_connected` metric, /health body).
fn etcd_state(cluster: &Cluster, id: i32) -> Result<(Option<f64>, String), String> {
    let admin = cluster.node(id).admin_addr();
    let (_, metrics) = http_get(&admin, "/metrics")?;
    let connected = metric_ending_with(&metrics, "etcd_connected");
    let (_, health) = http_get(&admin, "/health")?;
    Ok((connected, health))
}

/// Waits until every broker reports `connected` (1 or 0) for etcd, and /health says degraded
/// exactly when disconnected.
fn wait_etcd_state(cluster: &Cluster, connected: bool) {
    let want = if connected { 1.0 } else { 0.0 };
    for id in cluster.ids() {
        let deadline = Instant::now() + HEALTH_WAIT;
        loop {
            let state = etcd_state(cluster, id);
            if let Ok((Some(value), health)) = &state {
                let degraded = health.to_lowercase().contains("degraded");
                if *value == want && degraded != connected {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "waited {HEALTH_WAIT:?} for broker {id} to report etcd_connected {want} and a \
                 /health that {} degraded; last: {state:?}",
                if connected { "is not" } else { "says" }
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

// Proves the cluster rides out an etcd outage: under acks=all traffic on a topic rf 3, etcd is
// SIGKILLed; the brokers keep serving the leadership they have (acks=all writes keep being
// acknowledged), report etcd_connected 0 and a degraded /health; etcd restarts on its data; the
// brokers reconnect, and changes work again: a new topic is created and fully in sync, a killed
// broker leaves every ISR and, restarted, rejoins them all; no send fails and no acknowledged
// message is lost.
#[test]
fn etcd_restart_loses_nothing_and_changes_resume() {
    const TOPIC: &str = "meta";
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer = start_producer(&cluster, TOPIC);
    producer.wait_progress(
        &[0; 3],
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages before etcd died",
    );

    let first_fault = Instant::now();
    cluster.etcd.kill();
    let progress = producer.acked_all();
    producer.wait_progress(
        &progress,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages while etcd is down",
    );
    wait_etcd_state(&cluster, false);

    cluster.etcd.restart();
    wait_etcd_state(&cluster, true);
    cluster.create_topic("meta-after", PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let controller = cluster
        .wait_controller("a controller after etcd returned", |controller| {
            controller.is_some()
        })
        .unwrap();
    let victim = cluster
        .ids()
        .into_iter()
        .find(|id| *id != controller)
        .unwrap();
    cluster.kill(victim);
    wait_moved_away(&cluster, TOPIC, &[victim]);
    let progress = producer.acked_all();
    producer.wait_progress(
        &progress,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages after the ISR shrank",
    );
    cluster.restart(victim);
    cluster.wait_in_sync(TOPIC, PARTITIONS);
    finish_and_check(&cluster, TOPIC, producer, first_fault);
}
