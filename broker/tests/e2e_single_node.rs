//! End-to-end acceptance tests of the single-node broker: each test runs a real
//! `sluice broker --shards 2` process on a temporary data directory and drives it the way a
//! user would, through the `sluice` CLI or the blocking client library.
#![allow(clippy::unwrap_used)]

mod common;
mod e2e_support;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::BrokerProcess;
use e2e_support::*;
use sluice_client::blocking::{BlockingClient, BlockingProducer};
use sluice_client::{
    partition_for_key, Acks, ClientConfig, Compression, OffsetSpec, ProducerConfig, ProducerRecord,
};

/// Every broker in this file runs two shards, so partitions are spread over two cores.
const BROKER_ARGS: [&str; 2] = ["--shards", "2"];

/// Lines the CLI test pipes through `sluice produce`.
const CLI_MESSAGES: usize = 100_000;

/// Distinct keys among the CLI test's lines.
const CLI_KEYS: usize = 1_000;

/// Partitions of every topic here but the timestamp test's.
const PARTITIONS: i32 = 4;

/// Messages the client-library and restart tests produce through `BlockingProducer`.
const NUMBERED_MESSAGES: u64 = 100_000;

/// Messages each half of the shard-awareness test produces.
const SHARD_TEST_MESSAGES: u64 = 10_000;

fn start_broker(dir: &tempfile::TempDir) -> BrokerProcess {
    BrokerProcess::start(&dir.path().join("data"), &BROKER_ARGS)
}

fn create_topic(config: &ClientConfig, topic: &str, partitions: i32) {
    let admin = BlockingClient::connect(config.clone()).unwrap();
    admin
        .create_topic(topic, partitions, 1, Vec::new())
        .unwrap();
}

fn cli_key(index: usize) -> String {
    format!("user-{}", index % CLI_KEYS)
}

/// Line `index`'s value: its number and a filler of varying length, so every line is distinct.
fn cli_value(index: usize) -> String {
    format!("line-{index}-{}", "x".repeat(index % 40))
}

/// Checks `consume --print-offsets` output against the CLI test's lines: every line exactly
/// once with its exact value, offsets contiguous from 0 in every partition, every partition's
/// lines in produce order, and every key on the one partition murmur2 gives it.
fn assert_cli_lines_exactly_once(consumed: &str) {
    let mut seen = vec![false; CLI_MESSAGES];
    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_line: BTreeMap<i32, usize> = BTreeMap::new();
    let mut key_partitions: BTreeMap<usize, i32> = BTreeMap::new();
    for line in consumed.lines() {
        let fields: Vec<&str> = line.splitn(3, '\t').collect();
        assert_eq!(fields.len(), 3, "not partition, offset and value: {line:?}");
        let partition: i32 = fields[0].parse().unwrap();
        let offset: i64 = fields[1].parse().unwrap();
        let index: usize = fields[2]
            .strip_prefix("line-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("not a produced line: {line:?}"));
        assert_eq!(
            fields[2],
            cli_value(index),
            "line {index} came back changed"
        );
        assert!(!seen[index], "line {index} consumed twice");
        seen[index] = true;
        let next = next_offsets.entry(partition).or_insert(0);
        assert_eq!(
            offset, *next,
            "partition {partition}: offsets not contiguous"
        );
        *next += 1;
        if let Some(previous) = last_line.insert(partition, index) {
            assert!(
                previous < index,
                "partition {partition}: line {index} after line {previous}, not in produce order"
            );
        }
        let key_partition = *key_partitions.entry(index % CLI_KEYS).or_insert(partition);
        assert_eq!(
            key_partition,
            partition,
            "key {} on two partitions",
            cli_key(index)
        );
        assert_eq!(
            partition,
            partition_for_key(cli_key(index).as_bytes(), PARTITIONS),
            "key {} not on its murmur2 partition",
            cli_key(index)
        );
    }
    let missing = seen.iter().filter(|&&consumed| !consumed).count();
    assert_eq!(missing, 0, "{missing} produced lines never came back");
}

// Proves the CLI round trip at scale: 100,000 keyed lines piped into `sluice produce --acks all`
// are all acknowledged (exit 0), and `sluice consume --count 100000 --print-offsets` prints each
// exactly once, per partition in produce order at offsets contiguous from 0, with nothing more
// in the logs.
#[test]
fn cli_produces_and_consumes_100k_keyed_lines_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let bootstrap = broker.native.to_string();
    let create = [
        "topic",
        "create",
        "t",
        "--partitions",
        "4",
        "--bootstrap",
        &bootstrap,
    ];
    let (created, _) = sluice_ok(&create, b"");
    assert!(created.contains("created topic t"), "{created}");
    let input: String = (0..CLI_MESSAGES)
        .map(|index| format!("{}:{}\n", cli_key(index), cli_value(index)))
        .collect();
    let produce = [
        "produce",
        "t",
        "--acks",
        "all",
        "--key-separator",
        ":",
        "--bootstrap",
        &bootstrap,
    ];
    let (_, summary) = sluice_ok(&produce, input.as_bytes());
    assert!(
        summary.contains(&format!("produced {CLI_MESSAGES} messages"))
            && summary.contains("; 0 failed"),
        "{summary}"
    );

    let count = CLI_MESSAGES.to_string();
    let consume = [
        "consume",
        "t",
        "--from",
        "earliest",
        "--count",
        &count,
        "--print-offsets",
        // Only a bound on a hang should messages be missing; --count ends the run.
        "--timeout-ms",
        "10000",
        "--bootstrap",
        &bootstrap,
    ];
    let (consumed, summary) = sluice_ok(&consume, b"");
    assert!(
        summary.contains(&format!("consumed {CLI_MESSAGES} messages")),
        "{summary}"
    );
    assert_cli_lines_exactly_once(&consumed);

    let admin = BlockingClient::connect(client_config(broker.native, true)).unwrap();
    let logged: i64 = (0..PARTITIONS)
        .map(|partition| {
            admin
                .list_offset("t", partition, OffsetSpec::Latest)
                .unwrap()
        })
        .sum();
    assert_eq!(
        logged, CLI_MESSAGES as i64,
        "records in the logs vs lines produced"
    );
}

/// Producer settings of the numbered workload: acks=all with `compression`.
fn acks_all(compression: Compression) -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        compression,
        ..ProducerConfig::default()
    }
}

/// Produces the numbered messages `seqs` to `topic`, the first half zstd-compressed and the
/// second half uncompressed, all with acks=all; returns where each was acknowledged.
fn produce_both_codecs(
    config: &ClientConfig,
    topic: &str,
    seqs: std::ops::Range<u64>,
) -> Acknowledged {
    let middle = seqs.start + (seqs.end - seqs.start) / 2;
    let mut acknowledged = produce_numbered(
        config,
        acks_all(Compression::Zstd),
        topic,
        seqs.start..middle,
    );
    let uncompressed =
        produce_numbered(config, acks_all(Compression::None), topic, middle..seqs.end);
    assert_continues(&acknowledged, &uncompressed, PARTITIONS);
    acknowledged.extend(uncompressed);
    acknowledged
}

/// Reads `topic` back from the earliest offsets and checks it holds exactly `acknowledged`.
fn assert_topic_holds(config: &ClientConfig, topic: &str, acknowledged: &Acknowledged) {
    let records = consume_all(config, topic, PARTITIONS, acknowledged.len());
    assert_exactly_acknowledged(&records, acknowledged);
    assert_log_ends(config, topic, PARTITIONS, acknowledged);
}

// Proves the client library round trip: 100,000 numbered messages of 1 B to 4 KiB, some
// without a key, produced with acks=all (half zstd, half uncompressed) through BlockingProducer,
// read back by a BlockingConsumer from the earliest offsets: every acknowledged (partition,
// offset) holds exactly the message acknowledged there, and bytes consumed equal bytes produced.
#[test]
fn blocking_client_round_trips_100k_numbered_messages() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let config = client_config(broker.native, true);
    create_topic(&config, "numbered", PARTITIONS);
    let acknowledged = produce_both_codecs(&config, "numbered", 0..NUMBERED_MESSAGES);
    assert_eq!(acknowledged.len() as u64, NUMBERED_MESSAGES);
    assert_eq!(partitions_used(&acknowledged).len(), PARTITIONS as usize);
    assert_topic_holds(&config, "numbered", &acknowledged);
}

// Proves nothing acknowledged is lost across a SIGKILL sent right after the last acknowledgement
// nor across a graceful SIGTERM (exit 0): after each restart on the same data directory the
// topic holds exactly what was acknowledged, and new messages continue at the old log ends.
#[test]
fn acknowledged_messages_survive_sigkill_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start_broker(&dir);
    let config = client_config(broker.native, true);
    create_topic(&config, "durable", PARTITIONS);
    let mut acknowledged = produce_both_codecs(&config, "durable", 0..NUMBERED_MESSAGES);
    let killed = broker.signal_and_wait(libc::SIGKILL);
    assert!(
        !killed.success(),
        "SIGKILL ended the broker with {killed:?}"
    );

    let mut broker = start_broker(&dir);
    let config = client_config(broker.native, true);
    assert_topic_holds(&config, "durable", &acknowledged);
    let after_kill = produce_numbered(
        &config,
        acks_all(Compression::Zstd),
        "durable",
        NUMBERED_MESSAGES..NUMBERED_MESSAGES + 5_000,
    );
    assert_continues(&acknowledged, &after_kill, PARTITIONS);
    acknowledged.extend(after_kill);
    let stopped = broker.signal_and_wait(libc::SIGTERM);
    assert!(
        stopped.success(),
        "SIGTERM: the broker exited {stopped:?}\n{}",
        broker.log()
    );

    let broker = start_broker(&dir);
    let config = client_config(broker.native, true);
    assert_topic_holds(&config, "durable", &acknowledged);
    let after_term = produce_numbered(
        &config,
        acks_all(Compression::None),
        "durable",
        NUMBERED_MESSAGES + 5_000..NUMBERED_MESSAGES + 6_000,
    );
    assert_continues(&acknowledged, &after_term, PARTITIONS);
    acknowledged.extend(after_term);
    assert_log_ends(&config, "durable", PARTITIONS, &acknowledged);
}

/// Creates `topic` over both shards, then produces and consumes `SHARD_TEST_MESSAGES` numbered
/// messages through clients configured by `config`, checking the data is exactly right; returns
/// how many requests the broker forwarded between shards meanwhile.
fn forwarded_during_round_trip(broker: &BrokerProcess, config: &ClientConfig, topic: &str) -> u64 {
    let admin_addr = broker.admin.unwrap();
    create_topic(config, topic, PARTITIONS);
    let admin = BlockingClient::connect(config.clone()).unwrap();
    let shards: std::collections::BTreeSet<u32> = admin
        .describe_topic(topic)
        .unwrap()
        .partitions
        .iter()
        .map(|partition| partition.shard)
        .collect();
    assert_eq!(
        shards.len(),
        2,
        "{topic}'s partitions are not on both shards: {shards:?}"
    );
    drop(admin);

    let before = forwarded_requests(admin_addr);
    let acknowledged = produce_numbered(
        config,
        acks_all(Compression::Zstd),
        topic,
        0..SHARD_TEST_MESSAGES,
    );
    assert_eq!(partitions_used(&acknowledged).len(), PARTITIONS as usize);
    let records = consume_all(config, topic, PARTITIONS, acknowledged.len());
    assert_exactly_acknowledged(&records, &acknowledged);
    let after = forwarded_requests(admin_addr);
    assert_log_ends(config, topic, PARTITIONS, &acknowledged);
    after - before
}

// Proves the shard-aware client reaches every partition on its owning shard's own port (the
// broker's forwarded-request counter does not move over 10,000 messages produced and consumed),
// while a client with shard_aware = false, on the shared port only, makes the broker forward
// requests between shards, and the data is exactly right both ways.
#[test]
fn shard_aware_client_is_never_forwarded_and_plain_client_is() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let aware = forwarded_during_round_trip(&broker, &client_config(broker.native, true), "aware");
    assert_eq!(
        aware, 0,
        "the shard-aware client's requests were forwarded {aware} times"
    );
    let plain = forwarded_during_round_trip(&broker, &client_config(broker.native, false), "plain");
    assert!(
        plain > 0,
        "no request through the shared port was forwarded"
    );
}

/// Timestamp of the first message of the timestamp test, in Unix milliseconds: a minute ago,
/// so retention never considers it old.
fn clock_start_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap() - 60_000
}

/// Messages per batch in the timestamp test; the producer is flushed after each batch.
const CLOCK_BATCH_RECORDS: i64 = 10;

/// Batches written to partition 0 of the timestamp test's topic.
const CLOCK_BATCHES: i64 = 3;

/// Milliseconds between consecutive messages of partition 0 of the timestamp test.
const CLOCK_STEP_MS: i64 = 100;

/// Writes the timestamp test's topic `clock`: partition 0 gets `CLOCK_BATCHES` batches of
/// `CLOCK_BATCH_RECORDS` messages, message i stamped `start + i * CLOCK_STEP_MS`; partition 1
/// gets one batch stamped well before `start`.
fn produce_clock(config: &ClientConfig, start_ms: i64) {
    let producer = BlockingProducer::new(
        config.clone(),
        ProducerConfig {
            // Batches are closed by the flushes below, never by time (the linger stays within
            // the delivery timeout, which the producer checks).
            linger_ms: 60_000,
            ..acks_all(Compression::None)
        },
    )
    .unwrap();
    let record = |partition: i32, index: i64, timestamp_ms: i64| ProducerRecord {
        partition: Some(partition),
        timestamp_ms: Some(timestamp_ms),
        ..ProducerRecord::new("clock", Bytes::from(format!("clock-{partition}-{index}")))
    };
    let mut handles = Vec::new();
    for index in 0..CLOCK_BATCH_RECORDS {
        handles.push((
            1,
            index,
            producer
                .send(record(1, index, start_ms - 10_000 + index))
                .unwrap(),
        ));
    }
    for batch in 0..CLOCK_BATCHES {
        for in_batch in 0..CLOCK_BATCH_RECORDS {
            let index = batch * CLOCK_BATCH_RECORDS + in_batch;
            let handle = producer
                .send(record(0, index, start_ms + index * CLOCK_STEP_MS))
                .unwrap();
            handles.push((0, index, handle));
        }
        producer.flush().unwrap();
    }
    for (partition, index, handle) in handles {
        let metadata = handle.wait().unwrap();
        assert_eq!((metadata.partition, metadata.offset), (partition, index));
    }
    producer.close().unwrap();
}

/// Runs `sluice consume clock --from @from_ms` and checks it prints exactly partition 0 from
/// `first_offset` on and, when `with_old` is set, all of partition 1.
fn assert_seek(bootstrap: &str, from_ms: i64, first_offset: i64, with_old: bool) {
    let mut expected: Vec<String> = Vec::new();
    if with_old {
        expected
            .extend((0..CLOCK_BATCH_RECORDS).map(|index| format!("1\t{index}\tclock-1-{index}")));
    }
    let last = CLOCK_BATCHES * CLOCK_BATCH_RECORDS;
    expected.extend((first_offset..last).map(|index| format!("0\t{index}\tclock-0-{index}")));
    let from = format!("@{from_ms}");
    let count = expected.len().to_string();
    let consume = [
        "consume",
        "clock",
        "--from",
        &from,
        "--count",
        &count,
        "--print-offsets",
        "--timeout-ms",
        "3000",
        "--bootstrap",
        bootstrap,
    ];
    let (consumed, _) = sluice_ok(&consume, b"");
    let mut lines: Vec<String> = consumed.lines().map(str::to_string).collect();
    // Partitions interleave in the output: a stable sort puts partition 1's lines first and keeps
    // each partition's order as printed, which must be the log's.
    lines.sort_by_key(|line| line.starts_with("0\t"));
    assert_eq!(
        lines, expected,
        "--from @{from_ms} must start partition 0 at offset {first_offset}, the first whose \
         timestamp is at or after it"
    );
}

// Proves `sluice consume --from @ms` starts each partition at the first offset whose timestamp
// is at or after ms: at a batch's first message, in the middle of a batch (messages of that
// batch stamped earlier are not printed), and at the end for a partition holding only older
// messages; a time before everything starts at offset 0.
#[test]
fn consume_from_timestamp_starts_at_first_offset_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let config = client_config(broker.native, true);
    create_topic(&config, "clock", 2);
    let start_ms = clock_start_ms();
    produce_clock(&config, start_ms);
    let bootstrap = broker.native.to_string();
    assert_seek(&bootstrap, start_ms - 20_000, 0, true);
    let second_batch = CLOCK_BATCH_RECORDS;
    assert_seek(
        &bootstrap,
        start_ms + second_batch * CLOCK_STEP_MS,
        second_batch,
        false,
    );
    let inside = CLOCK_BATCH_RECORDS + 5;
    assert_seek(
        &bootstrap,
        start_ms + (inside - 1) * CLOCK_STEP_MS + 1,
        inside,
        false,
    );
}
