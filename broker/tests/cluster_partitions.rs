//! Adding partitions and altering topic configs in cluster mode, against real processes: etcd
//! plus three `sluice broker --etcd` processes, changed with the `sluice` CLI.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sluice_client::blocking::BlockingClient;
use sluice_client::Acks;
use support_cluster::*;

/// Producer rate, messages per second over all partitions.
const RATE_PER_S: u64 = 400;

/// Messages sent but not yet answered, at most.
const WINDOW: usize = 128;

/// Acknowledged messages per partition in each phase.
const ACKED_PER_PHASE: u64 = 100;

/// Bound on waiting for the producer's progress.
const PROGRESS_WAIT: Duration = Duration::from_secs(90);

/// Sequence numbers of the second producer start here, past every number of the first.
const SECOND_FIRST_SEQ: u64 = 1_000_000;

/// Runs the `sluice` CLI with `args`, bootstrapping from `cluster`.
fn cli(cluster: &Cluster, args: &[&str]) -> Output {
    let bootstrap = cluster.client_config().bootstrap.join(",");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", &bootstrap])
        .output()
        .unwrap()
}

/// Runs a CLI command that must fail; returns its stderr.
fn refused(cluster: &Cluster, args: &[&str]) -> String {
    let output = cli(cluster, args);
    assert!(!output.status.success(), "{args:?} succeeded: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn producer(cluster: &Cluster, topic: &str, partitions: i32, first_seq: u64) -> NumberedProducer {
    NumberedProducer::start(ProducerOptions {
        client: cluster.client_config(),
        topic: topic.to_string(),
        partitions,
        acks: Acks::All,
        rate_per_s: RATE_PER_S,
        window: WINDOW,
        first_seq,
        keys: None,
    })
}

/// Partition count and configs of `topic` as a broker describes it.
fn described(cluster: &Cluster, topic: &str) -> (usize, Vec<(String, String)>) {
    let client = BlockingClient::connect(cluster.client_config()).unwrap();
    let meta = client.describe_topic(topic).unwrap();
    (meta.partitions.len(), meta.configs)
}

// Proves adding partitions in cluster mode: 3 brokers, a topic of 2 partitions with replication
// factor 2 gets acks=all messages; shrinking, an equal count, an unknown topic and a bad config
// are refused with a clear error and change nothing; `topic alter --partitions 4` places the new
// partitions with the seed's rule (replica j of partition i on broker (i + j) mod 3, continuing
// the existing layout), every broker's metadata shows them led and in sync, a second producer
// writes to all 4, and every partition read back holds exactly the acknowledged messages at
// their offsets (the old ones where they were).
#[test]
fn adding_partitions_in_cluster_mode_keeps_existing_messages() {
    const TOPIC: &str = "grow";
    let cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, 2, 2, &[]);
    let first = producer(&cluster, TOPIC, 2, 0);
    first.wait_progress(&[0; 2], ACKED_PER_PHASE, PROGRESS_WAIT, "before growing");
    let mut outcomes = first.finish();
    assert_all_acknowledged(&outcomes);

    let stderr = refused(&cluster, &["topic", "alter", TOPIC, "--partitions", "1"]);
    assert!(stderr.contains("has 2 partitions"), "{stderr}");
    let stderr = refused(&cluster, &["topic", "alter", TOPIC, "--partitions", "2"]);
    assert!(stderr.contains("has 2 partitions"), "{stderr}");
    let stderr = refused(
        &cluster,
        &["topic", "alter", "no-such-topic", "--partitions", "3"],
    );
    assert!(
        stderr.contains("unknown topic \"no-such-topic\""),
        "{stderr}"
    );
    let stderr = refused(
        &cluster,
        &["topic", "alter", TOPIC, "--config", "bogus.key=1"],
    );
    assert!(stderr.contains("unknown topic config"), "{stderr}");
    let stderr = refused(
        &cluster,
        &["topic", "alter", TOPIC, "--config", "min.insync.replicas=3"],
    );
    assert!(stderr.contains("replication factor"), "{stderr}");
    assert_eq!(
        described(&cluster, TOPIC),
        (2, Vec::new()),
        "a refusal changed the topic"
    );

    let grown_at = Instant::now();
    let output = cli(&cluster, &["topic", "alter", TOPIC, "--partitions", "4"]);
    assert!(output.status.success(), "{output:?}");
    let view = cluster.wait_in_sync(TOPIC, 4);
    let replicas: Vec<Vec<i32>> = (0..4)
        .map(|partition| {
            partition_of(&view, TOPIC, partition)
                .unwrap()
                .replicas
                .clone()
        })
        .collect();
    assert_eq!(
        replicas,
        vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
    );

    let second = producer(&cluster, TOPIC, 4, SECOND_FIRST_SEQ);
    second.wait_progress(&[0; 4], ACKED_PER_PHASE, PROGRESS_WAIT, "after growing");
    let added = second.finish();
    assert_all_acknowledged(&added);
    outcomes.extend(added);
    for partition in 0..4 {
        let (leader, high_watermark) = cluster.wait_settled(TOPIC, partition);
        let consumed = read_partition(cluster.client_config(), TOPIC, partition, high_watermark);
        let summary = check_history(partition, &consumed, &outcomes, grown_at);
        eprintln!("{TOPIC}-{partition} (leader {leader}): {summary:?}");
        assert_eq!(
            (summary.duplicates, summary.records),
            (0, summary.acknowledged)
        );
        assert!(
            summary.acknowledged > 0,
            "{TOPIC}-{partition} took no writes"
        );
    }
}

// Proves altering topic configs in cluster mode: `topic alter --config retention.ms=...` is
// written to etcd and every broker's metadata shows it, and --delete-config removes it again.
#[test]
fn altering_topic_configs_in_cluster_mode_reaches_every_broker() {
    const TOPIC: &str = "configs";
    let cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, 2, 3, &[]);
    let output = cli(
        &cluster,
        &["topic", "alter", TOPIC, "--config", "retention.ms=3600000"],
    );
    assert!(output.status.success(), "{output:?}");
    cluster.wait_view("every broker showing retention.ms", |view| {
        view.topics.iter().any(|topic| {
            topic.name == TOPIC
                && topic.configs == vec![("retention.ms".to_string(), "3600000".to_string())]
        })
    });
    let output = cli(
        &cluster,
        &["topic", "alter", TOPIC, "--delete-config", "retention.ms"],
    );
    assert!(output.status.success(), "{output:?}");
    cluster.wait_view("every broker showing no configs", |view| {
        view.topics
            .iter()
            .any(|topic| topic.name == TOPIC && topic.configs.is_empty())
    });
}
