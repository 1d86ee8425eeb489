//! A run of the load generator's Kafka driver (librdkafka) against the Kafka port of an
//! in-process broker.

use std::time::Duration;

use sluice_loadgen::embedded::EmbeddedOptions;
use sluice_loadgen::workload::{AcksSetting, KeyDistribution};
use sluice_loadgen::{run, BrokerTarget, Driver, RunOptions, Workload};

/// Bound on connecting, topic creation and metadata: generous, as the test machine is shared.
const CONNECT_TIMEOUT_S: u64 = 30;

// Proves the Kafka driver delivers every produced message exactly once through the embedded
// broker's Kafka port (topics made by CreateTopics, acks=all Produce, Fetch), with per-partition
// counts that agree (sent == acked == consumed, no duplicates or missing), by running a 3 s,
// 2-partition, 300 msg/s workload with `Driver::Kafka` and reading its report.
#[test]
fn kafka_driver_consumes_every_message_through_the_kafka_port() {
    let workload = Workload {
        name: "it-kafka-driver".to_string(),
        topics: 1,
        partitions_per_topic: 2,
        message_size: 256,
        keys: KeyDistribution::RoundRobin,
        producers_per_topic: 1,
        subscriptions_per_topic: 1,
        consumers_per_subscription: 1,
        producer_rate: 300.0,
        acks: AcksSetting::All,
        warmup_s: 0.0,
        duration_s: 3.0,
        ..Workload::default()
    };
    let mut options = RunOptions::new(
        workload,
        BrokerTarget::Embedded(EmbeddedOptions {
            shards: Some(1),
            ..EmbeddedOptions::default()
        }),
    );
    options.driver = Driver::Kafka;
    options.pin = false;
    options.progress_interval = Duration::from_secs(1);
    options.connect_timeout = Duration::from_secs(CONNECT_TIMEOUT_S);
    let report = run(&options).unwrap();

    assert!(
        report.driver.starts_with("kafka (librdkafka "),
        "{}",
        report.driver
    );
    let counts = &report.counts;
    assert!(counts.sent > 0, "nothing was sent");
    assert_eq!(
        counts.sent, counts.acked,
        "every sent message is acknowledged"
    );
    assert_eq!(
        counts.acked, counts.consumed,
        "every acknowledged message is consumed once"
    );
    assert_eq!(
        (
            counts.failed,
            counts.duplicates,
            counts.missing,
            counts.foreign
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(counts.partitions.len(), 2);
    for partition in &counts.partitions {
        assert!(
            partition.acked > 0,
            "partition {} got no message",
            partition.partition
        );
        assert_eq!(
            partition.acked, partition.consumed,
            "partition {}",
            partition.partition
        );
    }
    assert!(
        report.correctness.checked && report.correctness.passed,
        "{}",
        report.correctness.message
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.aggregate.publish_latency.count, counts.acked);
    assert_eq!(report.aggregate.end_to_end_latency.count, counts.consumed);
}
