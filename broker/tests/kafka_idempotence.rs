//! Idempotent Kafka producers against a real cluster: librdkafka (confluent-kafka) with
//! `enable.idempotence=true` on Sluice's Kafka port, through a partition leader's SIGKILL and
//! a leader paused past the client's request timeout.
//! Needs etcd and the Kafka clients `scripts/kafka-clients.sh install` puts in `.kafka-clients/`.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support_cluster::*;

/// Messages the client sends, round-robin over the partitions.
const MESSAGES: u64 = 9_000;

/// The client's send rate, messages per second: the run lasts about 15 s.
const RATE_PER_S: u64 = 600;

/// Acknowledged messages before the leader is killed, and again after its successor leads.
const ACKED_PER_PHASE: u64 = 1_500;

/// How long a leader is paused (SIGSTOP): past the client's 1 s request timeout, within the
/// brokers' session TTL, so it stays leader and the originals land after the client gave up.
const PAUSE: Duration = Duration::from_millis(2_500);

/// Bound on the client's whole run (its own flush deadline is 120 s).
const CLIENT_DEADLINE: Duration = Duration::from_secs(240);

/// Bound on waiting for the client's progress across the failover.
const PROGRESS_WAIT: Duration = Duration::from_secs(90);

/// The client as it runs: its process, acknowledged count and final report line.
struct IdempotentClient {
    child: Child,
    acked: Arc<AtomicU64>,
    report: Arc<Mutex<Option<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl IdempotentClient {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> IdempotentClient {
        let clients = std::env::var_os("SLUICE_KAFKA_CLIENTS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.kafka-clients"));
        let python = clients.join("venv/bin/python");
        assert!(
            python.exists(),
            "confluent-kafka is not installed ({} missing): run scripts/kafka-clients.sh install",
            python.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/kafka_clients/confluent_kafka_idempotent.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--bootstrap", bootstrap, "--topic", topic])
            .args(["--partitions", &partitions.to_string()])
            .args(["--count", &MESSAGES.to_string()])
            .args(["--rate", &RATE_PER_S.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let (acked, report) = (Arc::clone(&acked), Arc::clone(&report));
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(count) = line.strip_prefix("progress ") {
                        acked.store(count.parse().unwrap_or(0), Ordering::SeqCst);
                    } else if line.starts_with('{') {
                        *report.lock().unwrap() = Some(line);
                    }
                }
            })
        };
        IdempotentClient {
            child,
            acked,
            report,
            reader: Some(reader),
        }
    }

    fn wait_acked(&self, count: u64, what: &str) {
        let deadline = Instant::now() + PROGRESS_WAIT;
        while self.acked.load(Ordering::SeqCst) < count {
            assert!(
                Instant::now() < deadline,
                "{what}: the client acknowledged {} of {count} within {PROGRESS_WAIT:?}",
                self.acked.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the client to finish; returns its report.
    fn finish(mut self) -> serde_json::Value {
        let deadline = Instant::now() + CLIENT_DEADLINE;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the idempotent client did not finish within {CLIENT_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        assert!(status.success(), "the idempotent client failed: {status}");
        let line = self.report.lock().unwrap().take();
        serde_json::from_str(&line.expect("the client printed no report")).unwrap()
    }
}

impl Drop for IdempotentClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every acknowledged (offset, sequence number) per partition, from the client's report;
/// panics on a delivery error or an unflushed message.
fn acknowledged(report: &serde_json::Value) -> BTreeMap<i32, Vec<(i64, u64)>> {
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "delivery errors: {errors:?}");
    assert_eq!(
        report["unflushed"].as_i64(),
        Some(0),
        "messages left unflushed"
    );
    let mut by_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    for entry in report["acked"].as_array().unwrap() {
        let partition = i32::try_from(entry[0].as_i64().unwrap()).unwrap();
        let offset = entry[1].as_i64().unwrap();
        by_partition
            .entry(partition)
            .or_default()
            .push((offset, entry[2].as_u64().unwrap()));
    }
    by_partition
}

/// The sequence number of a stored value (`idem-00000042`).
fn number_of(value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).unwrap();
    text.strip_prefix("idem-").unwrap().parse().unwrap()
}

/// Checks one partition's log against what the client was told: the log holds exactly the
/// acknowledged messages, each once, in send order, at contiguous offsets, each at the offset
/// its acknowledgement named. librdkafka acknowledges without an offset a message whose own
/// answer it never got once a later batch of the same producer succeeded (its sequence proves
/// the earlier one was appended): such messages must still be in the log exactly once.
fn check_partition(partition: i32, log: &[(i64, u64)], acked: &[(i64, u64)]) {
    let mut sent: Vec<u64> = acked.iter().map(|(_, number)| *number).collect();
    sent.sort_unstable();
    let stored: Vec<u64> = log.iter().map(|(_, number)| *number).collect();
    assert_eq!(
        stored.len(),
        sent.len(),
        "partition {partition}: the log holds {} records, {} were acknowledged (duplicates or \
         losses)",
        stored.len(),
        sent.len()
    );
    assert_eq!(
        stored, sent,
        "partition {partition}: not each once in send order"
    );
    let contiguous = log
        .iter()
        .enumerate()
        .all(|(index, (offset, _))| *offset == i64::try_from(index).unwrap());
    assert!(
        contiguous,
        "partition {partition}: offsets are not contiguous from 0"
    );
    for (offset, number) in acked.iter().filter(|(offset, _)| *offset >= 0) {
        let at = usize::try_from(*offset).unwrap();
        assert_eq!(
            log[at].1, *number,
            "partition {partition}: message {number} was acknowledged at offset {offset}"
        );
    }
}

// Proves librdkafka's idempotent producer gets exactly-once, in-order delivery through a leader
// failover: etcd + 3 brokers, a topic of 3 partitions (RF 3, min.insync.replicas 2), a
// confluent-kafka producer with enable.idempotence=true and 5 requests in flight on the Kafka
// ports; partition 0's leader is SIGKILLed mid-stream and restarted, then partition 1's leader
// is paused past the client's request timeout (the client retries while the broker still holds
// the originals, which it appends when resumed). Every message is
// acknowledged, and each partition holds exactly the acknowledged messages, once each, at their
// acknowledged offsets, in send order: no duplicate from the retries. (With idempotence off,
// the pause leaves duplicates and this test fails.)
#[test]
fn librdkafka_idempotent_producer_survives_leader_sigkill_without_duplicates() {
    const TOPIC: &str = "idempotent";
    const PARTITIONS: i32 = 3;
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let bootstrap: Vec<String> = cluster
        .ids()
        .iter()
        .map(|id| cluster.node(*id).kafka_addr())
        .collect();
    let client = IdempotentClient::start(&bootstrap.join(","), TOPIC, PARTITIONS);
    client.wait_acked(ACKED_PER_PHASE, "before the kill");

    let victim = cluster.partition(TOPIC, 0).leader;
    cluster.kill(victim);
    cluster.wait_partition(TOPIC, 0, "a new leader", |meta| {
        meta.leader >= 0 && meta.leader != victim
    });
    client.wait_acked(2 * ACKED_PER_PHASE, "after the kill");
    cluster.restart(victim);

    let paused = cluster.partition(TOPIC, 1).leader;
    cluster.node_mut(paused).stop();
    std::thread::sleep(PAUSE);
    cluster.node_mut(paused).cont();
    client.wait_acked(4 * ACKED_PER_PHASE, "after the pause");
    let report = client.finish();

    let acked = acknowledged(&report);
    let total: usize = acked.values().map(Vec::len).sum();
    assert_eq!(total as u64, MESSAGES, "every message is acknowledged");
    for partition in 0..PARTITIONS {
        let (_, high_watermark) = cluster.wait_settled(TOPIC, partition);
        let log: Vec<(i64, u64)> =
            read_partition(cluster.client_config(), TOPIC, partition, high_watermark)
                .into_iter()
                .map(|(offset, value)| (offset, number_of(&value.unwrap())))
                .collect();
        check_partition(partition, &log, &acked[&partition]);
    }
}
