//! A network partition against real processes: one broker runs in its own network namespace,
//! joined to the others by a veth pair whose link the test cuts and restores.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::time::{Duration, Instant};

use sluice_client::Acks;
use support_cluster::*;

const TOPIC: &str = "split";

/// Partitions: with 3 brokers, the cut-off broker leads one of them at first.
const PARTITIONS: i32 = 3;

/// The broker that runs in the namespace.
const ISOLATED: i32 = 3;

/// Acknowledged messages per partition awaited between two steps.
const ACKED_PER_PHASE: u64 = 200;

/// Bound on waiting for the producer's progress.
const PROGRESS_WAIT: Duration = Duration::from_secs(90);

// Proves a network-partitioned broker is failed over and rejoins: broker 3 runs in its own
// network namespace behind a veth pair (etcd and brokers 1 and 2 on the host end); under
// acks=all traffic on a topic rf 3 (min.insync.replicas 2) the link is cut: broker 3's session
// expires, its partitions move to live ISR members and it leaves every ISR, while traffic goes
// on; when the link returns it re-registers, rejoins every ISR with a log byte-identical to
// the leader's below the high watermark, and no acknowledged message is lost. Skipped, saying
// so, without root or `ip netns`.
#[test]
fn network_partitioned_broker_fails_over_and_rejoins() {
    if let Some(reason) = NetnsLink::unavailable_reason() {
        eprintln!("SKIPPED: network_partitioned_broker_fails_over_and_rejoins: {reason}");
        return;
    }
    let link = NetnsLink::create()
        .unwrap_or_else(|error| panic!("cannot set up the network namespace: {error}"));
    let cluster = Cluster::start_with_netns(ClusterSpec::default(), link, ISOLATED);
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer = NumberedProducer::start(ProducerOptions {
        client: cluster.client_config(),
        topic: TOPIC.to_string(),
        partitions: PARTITIONS,
        acks: Acks::All,
        rate_per_s: 600,
        window: 256,
        first_seq: 0,
        keys: None,
    });
    producer.wait_progress(
        &[0; 3],
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages before the cut",
    );

    let cut_at = Instant::now();
    cluster.link().cut();
    cluster.wait_view(
        &format!("broker {ISOLATED} expired, leading nothing and out of every ISR"),
        |view| {
            !live_brokers(view).contains(&ISOLATED)
                && (0..PARTITIONS).all(|partition| {
                    partition_of(view, TOPIC, partition).is_some_and(|meta| {
                        meta.leader >= 0 && meta.leader != ISOLATED && !meta.isr.contains(&ISOLATED)
                    })
                })
        },
    );
    let progress = producer.acked_all();
    producer.wait_progress(
        &progress,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages during the partition",
    );

    cluster.link().restore();
    cluster.wait_view(
        &format!("broker {ISOLATED} live again and back in every ISR"),
        |view| {
            live_brokers(view).contains(&ISOLATED)
                && (0..PARTITIONS).all(|partition| {
                    partition_of(view, TOPIC, partition)
                        .is_some_and(|meta| meta.isr.contains(&ISOLATED))
                })
        },
    );
    let progress = producer.acked_all();
    producer.wait_progress(
        &progress,
        ACKED_PER_PHASE,
        PROGRESS_WAIT,
        "messages after the link returned",
    );
    let outcomes = producer.finish();
    let failed = outcomes
        .iter()
        .filter(|outcome| outcome.result.is_err())
        .count();
    assert_eq!(failed, 0, "messages failed although the producer retries");
    for partition in 0..PARTITIONS {
        let replicas = cluster.partition(TOPIC, partition).replicas;
        let high_watermark = cluster.assert_replicas_identical(TOPIC, partition, &replicas);
        let consumed = read_partition(cluster.client_config(), TOPIC, partition, high_watermark);
        let summary = check_history(partition, &consumed, &outcomes, cut_at);
        eprintln!("{TOPIC}-{partition}: high watermark {high_watermark}, {summary:?}");
    }
}
