//! The `sluice` CLI's client commands (`topic`, `produce`, `consume`) run as child processes
//! against an in-process broker on ephemeral ports.

mod common;
mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};

use e2e_support::sluice_cli as sluice;
use sluice_broker::{Broker, BrokerConfig, BrokerHandle};

fn start_broker(data_dir: &std::path::Path) -> BrokerHandle {
    let config = BrokerConfig {
        data_dir: data_dir.to_path_buf(),
        native_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_addr: None,
        kafka_addr: None,
        shards: 2,
        pin: false,
        ..BrokerConfig::default()
    };
    Broker::start(config).expect("cannot start the broker")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(args: &[&str], stdin: &[u8]) -> String {
    let output = sluice(args, stdin);
    assert!(
        output.status.success(),
        "sluice {args:?} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs a command that must succeed against the broker at `bootstrap`; returns its stdout.
fn ok_at(bootstrap: &str, args: &[&str], stdin: &[u8]) -> String {
    ok(&[args, &["--bootstrap", bootstrap]].concat(), stdin)
}

/// Checks `consume --print-offsets` output of the messages "message-0".."message-{count-1}",
/// keyed "user-{index % 37}": each message exactly once, offsets contiguous from 0 in every
/// partition, and all messages of a key in one partition.
fn check_consumed(consumed: &str, count: usize) {
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut key_partitions: BTreeMap<usize, BTreeSet<i32>> = BTreeMap::new();
    let mut seen = vec![0_u32; count];
    for line in consumed.lines() {
        let fields: Vec<&str> = line.splitn(3, '\t').collect();
        let partition: i32 = fields[0].parse().expect("partition column");
        offsets
            .entry(partition)
            .or_default()
            .push(fields[1].parse().expect("offset column"));
        let index: usize = fields[2]
            .strip_prefix("message-")
            .and_then(|index| index.parse().ok())
            .expect("value column holds message-N");
        seen[index] += 1;
        key_partitions
            .entry(index % 37)
            .or_default()
            .insert(partition);
    }
    assert!(
        seen.iter().all(|&times| times == 1),
        "a message was lost or duplicated"
    );
    for (partition, offsets) in &offsets {
        let contiguous: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, &contiguous,
            "partition {partition} offsets not contiguous"
        );
    }
    for (key, partitions) in &key_partitions {
        assert_eq!(
            partitions.len(),
            1,
            "key user-{key} spread over {partitions:?}"
        );
    }
}

// Proves the topic commands, then that 10 000 keyed lines produced through the CLI are consumed
// back through the CLI exactly once each, with contiguous offsets per partition and every key's
// messages on one partition; and that --count stops after that many messages.
#[test]
fn cli_produce_consume_round_trip() {
    let data = tempfile::tempdir().unwrap();
    let broker = start_broker(data.path());
    let bootstrap = broker.native_addr().to_string();

    let created = ok_at(
        &bootstrap,
        &["topic", "create", "events", "--partitions", "3"],
        b"",
    );
    assert!(created.contains("created topic events"), "{created}");
    let listed = ok_at(&bootstrap, &["topic", "list"], b"");
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec!["events"]);
    let described = ok_at(&bootstrap, &["topic", "describe", "events"], b"");
    assert_eq!(described.lines().count(), 2 + 3, "{described}");

    let mut input = String::new();
    for index in 0..10_000 {
        input.push_str(&format!("user-{}:message-{index}\n", index % 37));
    }
    let produce_args = [
        "produce",
        "events",
        "--key-separator",
        ":",
        "--bootstrap",
        &bootstrap,
    ];
    let produced = sluice(&produce_args, input.as_bytes());
    let summary = text(&produced.stderr);
    assert!(produced.status.success(), "{summary}");
    assert!(
        summary.contains("produced 10000 messages") && summary.contains("0 failed"),
        "{summary}"
    );

    let consume_args = [
        "consume",
        "events",
        "--print-offsets",
        "--timeout-ms",
        "1000",
    ];
    check_consumed(&ok_at(&bootstrap, &consume_args, b""), 10_000);
    let first_three = ok_at(
        &bootstrap,
        &["consume", "events", "--partition", "0", "--count", "3"],
        b"",
    );
    assert_eq!(first_three.lines().count(), 3);

    let deleted = ok_at(&bootstrap, &["topic", "delete", "events"], b"");
    assert!(deleted.contains("deleted topic events"), "{deleted}");
    broker.shutdown().unwrap();
}

// Proves the CLI fails with a non-zero exit and a message naming the problem: an unreachable
// broker, a missing topic to describe, and a produce whose records cannot be delivered.
#[test]
fn cli_errors_are_clear() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);
    let output = sluice(&["topic", "list", "--bootstrap", &closed], b"");
    assert!(!output.status.success());
    let message = text(&output.stderr);
    assert!(
        message.contains(&format!("cannot reach broker at {closed}")),
        "{message}"
    );

    let data = tempfile::tempdir().unwrap();
    let broker = start_broker(data.path());
    let bootstrap = broker.native_addr().to_string();
    let output = sluice(
        &["topic", "describe", "missing", "--bootstrap", &bootstrap],
        b"",
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("unknown topic \"missing\""),
        "{}",
        text(&output.stderr)
    );

    ok(&["topic", "create", "one", "--bootstrap", &bootstrap], b"");
    let output = sluice(
        &[
            "produce",
            "one",
            "--partition",
            "5",
            "--bootstrap",
            &bootstrap,
        ],
        b"x\n",
    );
    assert!(
        !output.status.success(),
        "producing to a missing partition succeeded"
    );
    assert!(
        text(&output.stderr).contains("no partition 5"),
        "{}",
        text(&output.stderr)
    );
    broker.shutdown().unwrap();
}
