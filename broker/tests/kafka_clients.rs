//! Real Kafka clients against the Kafka port: kcat (librdkafka), confluent-kafka (librdkafka),
//! kafka-python and kafkajs, installed by `scripts/kafka-clients.sh install` (which
//! `scripts/test.sh` runs). A missing client fails its test with the command that installs it:
//! these tests never skip.
//!
//! Each client produces keyed messages with acks=all and every codec it offers, and the native
//! consumer then finds each message at the partition and offset the client was told, with the
//! key hashed to the same partition as Sluice's own murmur2 partitioner; each client reads back
//! what it produced and what the native producer wrote (kafkajs only reads inside consumer
//! groups, which this broker does not serve yet), and looks an offset up by timestamp.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use sluice_broker::BrokerHandle;
use sluice_client::{
    partition_for_key, Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, SeekTo,
};

/// Partitions of every client's topic.
const PARTITIONS: i32 = 4;
/// Messages the native producer writes for the clients to read.
const NATIVE_COUNT: usize = 40;
/// Longest a client run may take.
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);

/// One message a client produced: partition, offset, key, value.
type Produced = (i32, i64, String, String);

fn clients_dir() -> PathBuf {
    std::env::var_os("SLUICE_KAFKA_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.kafka-clients"))
}

fn installed(path: PathBuf, client: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{client} is not installed ({} missing): run scripts/kafka-clients.sh install",
        path.display()
    );
    path
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka_clients")
        .join(name)
}

fn kcat() -> Command {
    let found = Command::new("kcat").arg("-V").output();
    assert!(
        found.is_ok_and(|output| output.status.success()),
        "kcat is not installed: run scripts/kafka-clients.sh install"
    );
    Command::new("kcat")
}

/// Runs a client command to completion (bounded) and returns its stdout; panics with its
/// stderr when it fails.
fn run_client(mut command: Command, stdin: Option<&str>) -> String {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let deadline = Instant::now() + CLIENT_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish within {CLIENT_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stderr}\n{stdout}"
    );
    stdout
}

/// The `produced` list a client script prints as its last JSON line.
fn produced_of(stdout: &str) -> Vec<Produced> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value["produced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry[0].as_i64().unwrap() as i32,
                entry[1].as_i64().unwrap(),
                entry[2].as_str().unwrap().to_string(),
                entry[3].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn native_client(broker: &BrokerHandle) -> ClientConfig {
    ClientConfig {
        bootstrap: vec![broker.native_addr().to_string()],
        ..ClientConfig::default()
    }
}

/// Creates the one-partition `topic` with the native client and writes `native-0` ..
/// `native-{count-1}` to it.
fn native_source(broker: &BrokerHandle, topic: &str, count: usize) {
    let config = native_client(broker);
    let topic = topic.to_string();
    run(async move {
        let client = Client::connect(config).await.unwrap();
        client.create_topic(&topic, 1, 1, Vec::new()).await.unwrap();
        let producer = Producer::new(Rc::clone(&client), ProducerConfig::default());
        let mut deliveries = Vec::new();
        for index in 0..count {
            let record = ProducerRecord::new(topic.clone(), format!("native-{index}").into_bytes());
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await.unwrap();
        for delivery in deliveries {
            delivery.await.unwrap();
        }
    });
}

/// Reads every message of `topic` with the native consumer: (partition, offset) -> (key, value).
fn native_read(
    broker: &BrokerHandle,
    topic: &str,
    partitions: i32,
    total: usize,
) -> BTreeMap<(i32, i64), (Option<String>, String)> {
    let config = native_client(broker);
    let topic = topic.to_string();
    run(async move {
        let client = Client::connect(config).await.unwrap();
        let mut consumer = Consumer::new(client, ConsumerConfig::default());
        let all = (0..partitions).map(|p| (topic.clone(), p)).collect();
        consumer.assign(all, SeekTo::Earliest).await.unwrap();
        let mut seen = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < total {
            assert!(
                Instant::now() < deadline,
                "native consumer read {} of {total}",
                seen.len()
            );
            for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
                let key = record
                    .key
                    .map(|key| String::from_utf8(key.to_vec()).unwrap());
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                seen.insert((record.partition, record.offset), (key, value));
            }
        }
        seen
    })
}

/// Checks with the native consumer that every message a Kafka client produced is at the
/// partition and offset the client was told, that nothing else is there, and that each key
/// landed on the partition Sluice's murmur2 partitioner picks for it.
fn verify_natively(broker: &BrokerHandle, topic: &str, produced: &[Produced], codecs: usize) {
    assert_eq!(
        produced.len(),
        codecs * 25,
        "{topic}: the client produced too few"
    );
    let stored = native_read(broker, topic, PARTITIONS, produced.len());
    assert_eq!(
        stored.len(),
        produced.len(),
        "{topic}: extra messages stored"
    );
    for (partition, offset, key, value) in produced {
        let (stored_key, stored_value) = &stored[&(*partition, *offset)];
        assert_eq!(stored_key.as_deref(), Some(key.as_str()));
        assert_eq!(stored_value, value);
        let expected = partition_for_key(key.as_bytes(), PARTITIONS);
        assert_eq!(*partition, expected, "{key} hashed to another partition");
    }
}

fn kafka_broker(dir: &std::path::Path) -> (BrokerHandle, SocketAddr) {
    let broker = start_broker(dir, 2);
    let kafka = broker.kafka_addr().unwrap();
    (broker, kafka)
}

// Proves confluent-kafka (librdkafka) creates a topic, produces with every codec and acks=all,
// reads its messages back, finds an offset by timestamp and reads the native producer's
// messages; the native consumer finds its messages where it was told, keys hashed by murmur2.
#[test]
fn confluent_kafka_round_trips() {
    let python = installed(clients_dir().join("venv/bin/python"), "confluent-kafka");
    let dir = tempfile::tempdir().unwrap();
    let (broker, kafka) = kafka_broker(dir.path());
    native_source(&broker, "native-for-confluent", NATIVE_COUNT);
    let mut command = Command::new(python);
    command.arg(script("confluent_kafka_client.py")).args([
        "--bootstrap",
        &kafka.to_string(),
        "--topic",
        "confluent",
        "--native-topic",
        "native-for-confluent",
        "--native-count",
        &NATIVE_COUNT.to_string(),
    ]);
    let produced = produced_of(&run_client(command, None));
    verify_natively(&broker, "confluent", &produced, 5);
}

// Proves three confluent-kafka (librdkafka) consumers in one group split a 6-partition topic
// (each gets some partitions), read every acknowledged message exactly once between them while
// committing, and that a new member of the group resumes after what was committed: it reads
// exactly the messages produced after the others closed.
#[test]
fn confluent_kafka_consumer_group_shares_and_resumes() {
    let python = installed(clients_dir().join("venv/bin/python"), "confluent-kafka");
    let dir = tempfile::tempdir().unwrap();
    let (_broker, kafka) = kafka_broker(dir.path());
    let mut command = Command::new(python);
    command.arg(script("confluent_kafka_group.py")).args([
        "--bootstrap",
        &kafka.to_string(),
        "--topic",
        "confluent-group",
    ]);
    let stdout = run_client(command, None);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap();
    let summary: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(summary["resumed"], 60, "{summary}");
    let per_member = summary["per_member"].as_array().unwrap();
    assert_eq!(per_member.len(), 3, "{summary}");
}

// Proves kafka-python administers topics (create with a config, describe it, delete another),
// produces with every codec and acks=all, reads back, finds an offset by timestamp and reads
// the native producer's messages; the native consumer finds its messages where it was told.
#[test]
fn kafka_python_round_trips_and_administers() {
    let python = installed(clients_dir().join("venv/bin/python"), "kafka-python");
    let dir = tempfile::tempdir().unwrap();
    let (broker, kafka) = kafka_broker(dir.path());
    native_source(&broker, "native-for-kafka-python", NATIVE_COUNT);
    let mut command = Command::new(python);
    command.arg(script("kafka_python_client.py")).args([
        "--bootstrap",
        &kafka.to_string(),
        "--topic",
        "kafka-python",
        "--native-topic",
        "native-for-kafka-python",
        "--native-count",
        &NATIVE_COUNT.to_string(),
    ]);
    let produced = produced_of(&run_client(command, None));
    verify_natively(&broker, "kafka-python", &produced, 5);
}

// Proves kafkajs creates topics, produces with acks=all and its codecs (none, gzip, snappy),
// reads the offsets back through its admin client, finds an offset by timestamp, reads every
// message back as a consumer-group member whose committed offsets add up to what it read; the
// native consumer finds its messages where it was told, keys hashed by murmur2.
#[test]
fn kafkajs_produces_and_administers() {
    let modules = installed(clients_dir().join("node/node_modules"), "kafkajs");
    installed(modules.join("kafkajs"), "kafkajs");
    let dir = tempfile::tempdir().unwrap();
    let (broker, kafka) = kafka_broker(dir.path());
    let mut command = Command::new("node");
    command
        .env("NODE_PATH", &modules)
        .arg(script("kafkajs_client.mjs"))
        .args([
            "--bootstrap",
            &kafka.to_string(),
            "--topic",
            "kafkajs",
            "--partitions",
            &PARTITIONS.to_string(),
        ]);
    let produced = produced_of(&run_client(command, None));
    verify_natively(&broker, "kafkajs", &produced, 3);
}

// Proves kcat lists metadata (-L), produces keyed messages with every codec and acks=all
// (murmur2 partitioner), reads them back, starts reading at a timestamp, and reads the native
// producer's messages.
#[test]
fn kcat_round_trips_and_lists_metadata() {
    kcat();
    let dir = tempfile::tempdir().unwrap();
    let (broker, kafka) = kafka_broker(dir.path());
    let bootstrap = kafka.to_string();
    let config = native_client(&broker);
    run(async move {
        let client = Client::connect(config).await.unwrap();
        client
            .create_topic("kcat", PARTITIONS, 1, Vec::new())
            .await
            .unwrap();
    });
    let mut produced_lines = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let lines: Vec<String> = (0..25)
            .map(|i| format!("key-{codec}-{i}:kcat-{codec}-{i}"))
            .collect();
        let mut command = kcat();
        command
            .args(["-b", &bootstrap, "-P", "-t", "kcat", "-K:", "-z", codec])
            .args(["-X", "acks=all", "-X", "partitioner=murmur2_random"]);
        run_client(command, Some(&(lines.join("\n") + "\n")));
        produced_lines.extend(lines);
    }
    let mut command = kcat();
    command
        .args([
            "-b",
            &bootstrap,
            "-C",
            "-t",
            "kcat",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-f", "%p %o %k %s\n"]);
    let consumed: Vec<Produced> = run_client(command, None)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (
                fields[0].parse().unwrap(),
                fields[1].parse().unwrap(),
                fields[2].to_string(),
                fields[3].to_string(),
            )
        })
        .collect();
    let mut read_back: Vec<String> = consumed
        .iter()
        .map(|(_, _, k, v)| format!("{k}:{v}"))
        .collect();
    read_back.sort();
    produced_lines.sort();
    assert_eq!(read_back, produced_lines, "kcat read back other messages");
    verify_natively(&broker, "kcat", &consumed, 5);

    kcat_lists_metadata(&bootstrap);
    kcat_group_resumes_after_commit(&broker, &bootstrap);
    kcat_reads_from_timestamp(&broker, &bootstrap);
    kcat_reads_native_messages(&broker, &bootstrap);
}

/// Produces `values` (one per line, keyed by themselves) to `topic` with kcat.
fn kcat_produce(bootstrap: &str, topic: &str, values: &[String]) {
    let lines: Vec<String> = values
        .iter()
        .map(|value| format!("{value}:{value}"))
        .collect();
    let mut command = kcat();
    command
        .args(["-b", bootstrap, "-P", "-t", topic, "-K:"])
        .args(["-X", "acks=all"]);
    run_client(command, Some(&(lines.join("\n") + "\n")));
}

/// One balanced kcat consumer (`-G`) of `group` reading `topic` to its end, then closing (which
/// commits what it read); returns the values it printed, sorted.
fn kcat_group_read(bootstrap: &str, group: &str, topic: &str) -> Vec<String> {
    let mut command = kcat();
    command
        .args(["-b", bootstrap, "-G", group, "-e", "-q", "-f", "%s\n"])
        .args(["-X", "auto.offset.reset=earliest", topic]);
    let mut values: Vec<String> = run_client(command, None)
        .lines()
        .map(str::to_string)
        .collect();
    values.sort();
    values
}

/// kcat as a consumer-group member (`-G`) reads every message and commits; after more messages,
/// a new kcat member of the same group reads exactly the new ones.
fn kcat_group_resumes_after_commit(broker: &BrokerHandle, bootstrap: &str) {
    let config = native_client(broker);
    run(async move {
        let client = Client::connect(config).await.unwrap();
        client
            .create_topic("kcat-group", 3, 1, Vec::new())
            .await
            .unwrap();
    });
    let mut before: Vec<String> = (0..30).map(|i| format!("before-{i:02}")).collect();
    kcat_produce(bootstrap, "kcat-group", &before);
    before.sort();
    assert_eq!(kcat_group_read(bootstrap, "kcat-g", "kcat-group"), before);
    let mut after: Vec<String> = (0..10).map(|i| format!("after-{i:02}")).collect();
    kcat_produce(bootstrap, "kcat-group", &after);
    after.sort();
    assert_eq!(
        kcat_group_read(bootstrap, "kcat-g", "kcat-group"),
        after,
        "the second member did not resume after the first one's commit"
    );
}

/// kcat -L lists this broker and the topic `kcat` with all its partitions.
fn kcat_lists_metadata(bootstrap: &str) {
    let mut command = kcat();
    command.args(["-b", bootstrap, "-L", "-J"]);
    let listing: serde_json::Value = serde_json::from_str(&run_client(command, None)).unwrap();
    assert_eq!(listing["brokers"][0]["name"], bootstrap.to_string());
    let topic = listing["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "kcat")
        .unwrap();
    assert_eq!(
        topic["partitions"].as_array().unwrap().len(),
        PARTITIONS as usize
    );
}

/// kcat starts reading at a timestamp (`-o s@...`).
fn kcat_reads_from_timestamp(broker: &BrokerHandle, bootstrap: &str) {
    let base_ms = timed_source(broker, "kcat-times");
    let mut command = kcat();
    command
        .args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            "kcat-times",
            "-p",
            "0",
            "-c",
            "1",
            "-q",
        ])
        .args(["-o", &format!("s@{}", base_ms + 4_500), "-f", "%o %s\n"]);
    assert_eq!(run_client(command, None).trim(), "5 t-5");
}

/// kcat reads what the native producer wrote.
fn kcat_reads_native_messages(broker: &BrokerHandle, bootstrap: &str) {
    native_source(broker, "native-for-kcat", NATIVE_COUNT);
    let mut command = kcat();
    command
        .args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            "native-for-kcat",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-f", "%s\n"]);
    let mut values: Vec<String> = run_client(command, None)
        .lines()
        .map(str::to_string)
        .collect();
    values.sort();
    let mut expected: Vec<String> = (0..NATIVE_COUNT).map(|i| format!("native-{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
}

/// Writes ten messages one second apart in time (`t-0` .. `t-9`) to a new one-partition topic
/// with the native producer; returns the first timestamp.
fn timed_source(broker: &BrokerHandle, topic: &str) -> i64 {
    let config = native_client(broker);
    let topic = topic.to_string();
    let base_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 100_000;
    run(async move {
        let client = Client::connect(config).await.unwrap();
        client.create_topic(&topic, 1, 1, Vec::new()).await.unwrap();
        let producer = Producer::new(Rc::clone(&client), ProducerConfig::default());
        for index in 0..10i64 {
            let mut record = ProducerRecord::new(topic.clone(), format!("t-{index}").into_bytes());
            record.timestamp_ms = Some(base_ms + index * 1_000);
            producer.send(record).await.unwrap().await.unwrap();
        }
    });
    base_ms
}
