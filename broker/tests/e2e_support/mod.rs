//! Helpers of the end-to-end single-node tests: the `sluice` CLI as a child process, a numbered
//! workload with a known value at every sequence number, a blocking producer that records where
//! every acknowledged message landed, a blocking consumer that reads a topic back, and the
//! checks that compare the two.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::ops::Range;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use sluice_client::blocking::{BlockingClient, BlockingConsumer, BlockingProducer, OwnedRecord};
use sluice_client::{
    ClientConfig, ConsumerConfig, OffsetSpec, ProducerConfig, ProducerRecord, SeekTo,
};

use crate::common::{http_get, metric};

/// Largest value the numbered workload writes, in bytes (the brief's 4 KiB).
pub const VALUE_BYTES_MAX: usize = 4096;

/// Values of the numbered workload start with the sequence number in this many decimal digits
/// and a `|`, when the value is long enough to hold them.
const SEQUENCE_PREFIX_BYTES: usize = 11;

/// Distinct keys of the numbered workload.
const NUMBERED_KEYS: u64 = 101;

/// How long one consumer poll may wait for records before the test decides the records it still
/// expects are missing, in milliseconds. A bound on a hang, not a speed assertion.
pub const POLL_WAIT_MS_MAX: u64 = 10_000;

/// Acknowledged messages: (partition, offset) -> the sequence number written there.
pub type Acknowledged = BTreeMap<(i32, i64), u64>;

/// A client configuration bootstrapping from `native`.
pub fn client_config(native: SocketAddr, shard_aware: bool) -> ClientConfig {
    ClientConfig {
        bootstrap: vec![native.to_string()],
        shard_aware,
        ..ClientConfig::default()
    }
}

/// Runs `sluice ARGS` with `stdin` as its input and waits for it.
pub fn sluice_cli(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_BOOTSTRAP")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A separate writer thread, so a child that answers before reading all of its input never
    // waits on us while we wait on it.
    let writer = std::thread::spawn(move || {
        let mut input = input;
        // A command that fails early stops reading stdin; its exit status and stderr say why.
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// Runs a CLI command that must exit 0; returns (stdout, stderr).
pub fn sluice_ok(args: &[&str], stdin: &[u8]) -> (String, String) {
    let output = sluice_cli(args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "sluice {args:?} exited {:?}: {stderr}",
        output.status
    );
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

/// Size of message `seq`'s value: mostly tens to hundreds of bytes, with the 1 B and 4 KiB
/// extremes and sizes spread over the whole range mixed in.
pub fn value_bytes(seq: u64) -> usize {
    let spread = seq.wrapping_mul(2_654_435_761);
    match seq % 50 {
        0 => 1 + (spread % VALUE_BYTES_MAX as u64) as usize,
        1 => 1,
        2 => VALUE_BYTES_MAX,
        _ => 8 + (spread % 200) as usize,
    }
}

/// Message `seq`'s value: its sequence number, then letters that depend on it, cut to
/// `value_bytes(seq)`.
pub fn value_for(seq: u64) -> Bytes {
    let size = value_bytes(seq);
    let mut value = format!("{seq:010}|").into_bytes();
    value.resize(size.max(SEQUENCE_PREFIX_BYTES), 0);
    for (index, byte) in value.iter_mut().enumerate().skip(SEQUENCE_PREFIX_BYTES) {
        *byte = b'a' + ((seq as usize + index * 7) % 26) as u8;
    }
    value.truncate(size);
    Bytes::from(value)
}

/// Message `seq`'s key: none for one in ten, else one of `NUMBERED_KEYS` keys.
pub fn key_for(seq: u64) -> Option<Bytes> {
    (seq % 10 != 3).then(|| Bytes::from(format!("key-{}", seq % NUMBERED_KEYS)))
}

/// Key and value bytes of message `seq`.
pub fn message_bytes(seq: u64) -> usize {
    key_for(seq).map_or(0, |key| key.len()) + value_bytes(seq)
}

/// The numbered message `seq` for `topic`, placed by the default partitioner.
pub fn numbered_record(topic: &str, seq: u64) -> ProducerRecord {
    ProducerRecord {
        key: key_for(seq),
        ..ProducerRecord::new(topic, value_for(seq))
    }
}

/// Produces the numbered messages `seqs` through a `BlockingProducer` and waits for every
/// acknowledgement; returns where each landed. Panics if one is not acknowledged or two land on
/// the same offset.
pub fn produce_numbered(
    config: &ClientConfig,
    producer_config: ProducerConfig,
    topic: &str,
    seqs: Range<u64>,
) -> Acknowledged {
    let producer = BlockingProducer::new(config.clone(), producer_config).unwrap();
    let handles: Vec<_> = seqs
        .map(|seq| (seq, producer.send(numbered_record(topic, seq)).unwrap()))
        .collect();
    producer.flush().unwrap();
    let mut acknowledged = Acknowledged::new();
    for (seq, handle) in handles {
        let metadata = handle
            .wait()
            .unwrap_or_else(|error| panic!("message {seq} was not acknowledged: {error}"));
        assert!(
            metadata.offset >= 0,
            "message {seq} acknowledged without an offset"
        );
        let earlier = acknowledged.insert((metadata.partition, metadata.offset), seq);
        assert!(
            earlier.is_none(),
            "messages {earlier:?} and {seq} both acknowledged at {}/{}",
            metadata.partition,
            metadata.offset
        );
    }
    producer.close().unwrap();
    acknowledged
}

/// Reads every partition of `topic` from the earliest offset with a `BlockingConsumer` until
/// `expected` records arrived; panics if a poll waits `POLL_WAIT_MS_MAX` for nothing.
pub fn consume_all(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<OwnedRecord> {
    let consumer = BlockingConsumer::new(config.clone(), ConsumerConfig::default()).unwrap();
    let assignment = (0..partitions)
        .map(|partition| (topic.to_string(), partition))
        .collect();
    consumer.assign(assignment, SeekTo::Earliest).unwrap();
    let mut records = Vec::with_capacity(expected);
    while records.len() < expected {
        let polled = consumer
            .poll(Duration::from_millis(POLL_WAIT_MS_MAX))
            .unwrap();
        assert!(
            !polled.is_empty(),
            "only {} of {expected} records of {topic} came back",
            records.len()
        );
        records.extend(polled);
    }
    records
}

/// Checks that `records` are exactly the acknowledged messages: offsets contiguous from 0 in
/// every partition, every acknowledged (partition, offset) holding the key and value
/// acknowledged there, nothing else, and bytes consumed equal to bytes produced.
pub fn assert_exactly_acknowledged(records: &[OwnedRecord], acknowledged: &Acknowledged) {
    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut consumed_bytes = 0;
    for record in records {
        let (partition, offset) = (record.partition, record.offset);
        let next = next_offsets.entry(partition).or_insert(0);
        assert_eq!(
            offset, *next,
            "partition {partition}: offsets not contiguous"
        );
        *next += 1;
        let seq = *acknowledged
            .get(&(partition, offset))
            .unwrap_or_else(|| panic!("record at {partition}/{offset} was never acknowledged"));
        assert!(
            record.value.as_ref() == Some(&value_for(seq)),
            "{partition}/{offset} holds a value that is not message {seq}'s"
        );
        assert_eq!(
            record.key,
            key_for(seq),
            "{partition}/{offset} key is not message {seq}'s"
        );
        consumed_bytes +=
            record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len);
    }
    assert_eq!(
        records.len(),
        acknowledged.len(),
        "records consumed vs acknowledged"
    );
    let produced_bytes: usize = acknowledged.values().map(|&seq| message_bytes(seq)).sum();
    assert_eq!(consumed_bytes, produced_bytes, "bytes consumed vs produced");
}

/// Checks that every partition's log ends exactly after its acknowledged messages: nothing
/// beyond them was appended (a duplicate would be).
pub fn assert_log_ends(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    acknowledged: &Acknowledged,
) {
    let admin = BlockingClient::connect(config.clone()).unwrap();
    for partition in 0..partitions {
        let end = admin
            .list_offset(topic, partition, OffsetSpec::Latest)
            .unwrap();
        assert_eq!(
            end,
            end_offset(acknowledged, partition),
            "partition {partition} log end vs acknowledged"
        );
    }
}

/// One past the highest acknowledged offset of `partition` (0 when none).
pub fn end_offset(acknowledged: &Acknowledged, partition: i32) -> i64 {
    acknowledged
        .range((partition, i64::MIN)..=(partition, i64::MAX))
        .next_back()
        .map_or(0, |(&(_, offset), _)| offset + 1)
}

/// Checks that `added` continues every partition of `before` without a gap or an overlap: its
/// offsets in partition p are exactly `end_offset(before, p)..` in order.
pub fn assert_continues(before: &Acknowledged, added: &Acknowledged, partitions: i32) {
    for partition in 0..partitions {
        let start = end_offset(before, partition);
        let offsets: Vec<i64> = added
            .range((partition, i64::MIN)..=(partition, i64::MAX))
            .map(|(&(_, offset), _)| offset)
            .collect();
        let expected: Vec<i64> = (start..start + offsets.len() as i64).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: new messages do not continue at offset {start}"
        );
    }
}

/// The partitions that received at least one acknowledged message.
pub fn partitions_used(acknowledged: &Acknowledged) -> BTreeSet<i32> {
    acknowledged
        .keys()
        .map(|&(partition, _)| partition)
        .collect()
}

/// Requests this broker's shards forwarded to each other over the mesh, summed over shards,
/// from the admin endpoint's `/metrics`.
pub fn forwarded_requests(admin: SocketAddr) -> u64 {
    let (status, body) = http_get(admin, "/metrics");
    assert!(status.contains("200"), "/metrics answered {status}");
    assert!(
        body.contains("sluice_forwarded_requests_total{"),
        "/metrics has no forwarded-request counter:\n{body}"
    );
    metric(&body, "sluice_forwarded_requests_total{")
}
