//! `sluice topic alter` on a single-node broker (a real `sluice broker` process): adding
//! partitions keeps every existing message where it was, new partitions take writes; topic
//! configs change and refusals change nothing; confluent-kafka's AdminClient does the same
//! through Kafka's CreatePartitions and IncrementalAlterConfigs.
#![allow(clippy::unwrap_used)]

mod common;
mod e2e_support;

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use common::BrokerProcess;
use e2e_support::*;
use sluice_client::blocking::{BlockingClient, BlockingProducer};
use sluice_client::{ProducerConfig, ProducerRecord};

/// A record value larger than the `max.message.bytes` the config test sets, bytes.
const BIG_VALUE_BYTES: usize = 4096;

/// Messages produced before and after the partition count grows, each.
const MESSAGES_PER_PHASE: u64 = 2_000;

fn start_broker(dir: &tempfile::TempDir) -> BrokerProcess {
    BrokerProcess::start(&dir.path().join("data"), &["--shards", "2"])
}

/// `sluice ARGS --bootstrap NATIVE`.
fn cli(broker: &BrokerProcess, args: &[&str]) -> std::process::Output {
    let native = broker.native.to_string();
    let mut all = args.to_vec();
    all.extend(["--bootstrap", native.as_str()]);
    sluice_cli(&all, b"")
}

/// Runs a CLI command that must fail; returns its stderr.
fn refused(broker: &BrokerProcess, args: &[&str]) -> String {
    let output = cli(broker, args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} succeeded: {output:?}");
    stderr
}

/// Partition count and configs of `topic` as the broker describes them.
fn described(broker: &BrokerProcess, topic: &str) -> (usize, Vec<(String, String)>) {
    let client = BlockingClient::connect(client_config(broker.native, true)).unwrap();
    let meta = client.describe_topic(topic).unwrap();
    (meta.partitions.len(), meta.configs)
}

// Proves adding partitions on a single node keeps every existing message at its partition and
// offset and makes the new partitions writable and readable: 2 partitions get 2,000 keyed
// messages, the topic grows to 4 (`topic alter --partitions 4`), 2,000 more land on all 4, and
// reading everything back finds exactly the acknowledged messages, offsets contiguous, bytes
// equal. Shrinking, an equal count, an unknown topic and a bad config key are refused with a
// clear error and a non-zero exit, and change nothing.
#[test]
fn adding_partitions_keeps_existing_messages_and_refuses_shrinking() {
    const TOPIC: &str = "grown";
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let config = client_config(broker.native, true);
    sluice_ok(
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            "2",
            "--bootstrap",
            &broker.native.to_string(),
        ],
        b"",
    );
    let before = produce_numbered(
        &config,
        ProducerConfig::default(),
        TOPIC,
        0..MESSAGES_PER_PHASE,
    );

    let stderr = refused(&broker, &["topic", "alter", TOPIC, "--partitions", "1"]);
    assert!(stderr.contains("has 2 partitions"), "{stderr}");
    let stderr = refused(&broker, &["topic", "alter", TOPIC, "--partitions", "2"]);
    assert!(stderr.contains("has 2 partitions"), "{stderr}");
    let stderr = refused(
        &broker,
        &["topic", "alter", "no-such-topic", "--partitions", "3"],
    );
    assert!(
        stderr.contains("unknown topic \"no-such-topic\""),
        "{stderr}"
    );
    let stderr = refused(
        &broker,
        &["topic", "alter", TOPIC, "--config", "bogus.key=1"],
    );
    assert!(stderr.contains("unknown topic config"), "{stderr}");
    let stderr = refused(
        &broker,
        &["topic", "alter", TOPIC, "--config", "retention.ms=soon"],
    );
    assert!(stderr.contains("retention.ms"), "{stderr}");
    assert_eq!(
        described(&broker, TOPIC),
        (2, Vec::new()),
        "a refusal changed the topic"
    );

    let output = cli(&broker, &["topic", "alter", TOPIC, "--partitions", "4"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(described(&broker, TOPIC).0, 4);
    let after = produce_numbered(
        &config,
        ProducerConfig::default(),
        TOPIC,
        MESSAGES_PER_PHASE..2 * MESSAGES_PER_PHASE,
    );
    assert!(
        partitions_used(&after).is_superset(&[2, 3].into()),
        "the new partitions took no writes: {:?}",
        partitions_used(&after)
    );
    assert_continues(&before, &after, 2);
    let mut acknowledged = before;
    acknowledged.extend(after);
    let records = consume_all(&config, TOPIC, 4, acknowledged.len());
    assert_exactly_acknowledged(&records, &acknowledged);
    assert_log_ends(&config, TOPIC, 4, &acknowledged);
}

/// Sends one record with a `value_bytes` value to `topic`; whether it was acknowledged.
fn send_value(broker: &BrokerProcess, topic: &str, value_bytes: usize) -> Result<(), String> {
    let config = client_config(broker.native, true);
    let producer = BlockingProducer::new(config, ProducerConfig::default()).unwrap();
    // Pseudo-random bytes, so a compressing producer cannot shrink the batch under the bound.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let value: Bytes = (0..value_bytes)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect();
    let sent = producer
        .send(ProducerRecord::new(topic, value))
        .map_err(|error| error.to_string())
        .and_then(|handle| handle.wait().map_err(|error| error.to_string()));
    let _ = producer.close();
    sent.map(drop)
}

// Proves `topic alter --config` sets and removes topic configs on a live topic and that they
// survive a broker restart: max.message.bytes=1000 makes the open partition refuse a 4 KiB
// record it accepted before (the change reaches the open log at once), describe shows the
// config, it is still set after the broker restarts on its data directory, and --delete-config
// removes it (the 4 KiB record is accepted again).
#[test]
fn topic_configs_change_and_persist() {
    const TOPIC: &str = "configured";
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start_broker(&dir);
    sluice_ok(
        &[
            "topic",
            "create",
            TOPIC,
            "--bootstrap",
            &broker.native.to_string(),
        ],
        b"",
    );
    send_value(&broker, TOPIC, BIG_VALUE_BYTES).unwrap();
    let output = cli(
        &broker,
        &[
            "topic",
            "alter",
            TOPIC,
            "--config",
            "max.message.bytes=1000",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let wanted = vec![("max.message.bytes".to_string(), "1000".to_string())];
    assert_eq!(described(&broker, TOPIC), (1, wanted.clone()));
    let error = send_value(&broker, TOPIC, BIG_VALUE_BYTES).unwrap_err();
    assert!(error.contains("larger than the maximum"), "{error}");
    broker.signal_and_wait(libc::SIGTERM);
    drop(broker);
    broker = start_broker(&dir);
    assert_eq!(described(&broker, TOPIC), (1, wanted));
    assert!(send_value(&broker, TOPIC, BIG_VALUE_BYTES).is_err());
    let output = cli(
        &broker,
        &[
            "topic",
            "alter",
            TOPIC,
            "--delete-config",
            "max.message.bytes",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(described(&broker, TOPIC), (1, Vec::new()));
    send_value(&broker, TOPIC, BIG_VALUE_BYTES).unwrap();
}

// Proves Kafka's CreatePartitions, IncrementalAlterConfigs and ElectLeaders work from a real
// Kafka client: confluent-kafka's AdminClient grows a 2-partition topic to 3, sees 3 partitions
// in its own metadata, is refused when it asks for 1, sets retention.ms (which the native
// client then sees on the topic), and a preferred election on the single node answers
// ELECTION_NOT_NEEDED (its only replica leads already).
#[test]
fn confluent_kafka_admin_adds_partitions_and_sets_configs() {
    const TOPIC: &str = "kafka-grown";
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    sluice_ok(
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            "2",
            "--bootstrap",
            &broker.native.to_string(),
        ],
        b"",
    );
    let clients = std::env::var_os("SLUICE_KAFKA_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.kafka-clients"));
    let python = clients.join("venv/bin/python");
    assert!(
        python.exists(),
        "confluent-kafka is not installed: run scripts/kafka-clients.sh install"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka_clients/confluent_kafka_admin.py");
    let kafka = broker.kafka.unwrap().to_string();
    let output = Command::new(python)
        .arg(script)
        .args([kafka.as_str(), TOPIC, "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let line = stdout.lines().last().unwrap();
    let seen: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(seen["partitions"], 3, "{line}");
    assert!(
        seen["shrink"]
            .as_str()
            .unwrap()
            .contains("INVALID_PARTITIONS"),
        "{line}"
    );
    assert_eq!(
        seen["election"][format!("{TOPIC}-0")],
        "ELECTION_NOT_NEEDED",
        "{line}"
    );
    let wanted = vec![("retention.ms".to_string(), "3600000".to_string())];
    assert_eq!(described(&broker, TOPIC), (3, wanted));
}
