//! End-to-end consumer groups on a real single-node broker process: `sluice consume --group`
//! processes share a topic's partitions and together print every message once, another group
//! reads everything again, `sluice group describe` shows lag 0, a SIGKILLed member's partitions
//! are taken over with nothing acknowledged skipped, committed offsets survive a broker SIGKILL
//! and restart, and bad input gets clear errors.
#![allow(clippy::unwrap_used)]

mod common;
mod e2e_support;
mod group_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::BrokerProcess;
use e2e_support::{sluice_cli, sluice_ok};
use group_support::*;

/// A broker with two shards, a small `__consumer_offsets` and a short first-rebalance delay.
fn start_broker(data_dir: &std::path::Path) -> BrokerProcess {
    BrokerProcess::start(
        data_dir,
        &[
            "--shards",
            "2",
            "--offsets-topic-partitions",
            "6",
            "--initial-rebalance-delay-ms",
            "500",
            "--session-timeout-ms-min",
            "1000",
        ],
    )
}

// Proves the main scenario on a real broker: three `sluice consume --group` processes
// over a 12-partition topic split it 4/4/4 (each prints only its own partitions) and together
// print every produced message exactly once; a second group prints them all again; afterwards
// `sluice group describe` shows LAG 0 on all 12 partitions and `group list` lists both groups.
#[test]
fn three_members_split_twelve_partitions_and_print_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"));
    let bootstrap = broker.native.to_string();
    sluice_ok(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "12",
            "--bootstrap",
            &bootstrap,
        ],
        b"",
    );
    let members: Vec<Member> = (0..3)
        .map(|_| Member::start(&bootstrap, "orders", "billing", &["--timeout-ms", "4000"]))
        .collect();
    let owners = wait_stable(&bootstrap, "billing", 3, 12);
    let produced = produce(&bootstrap, "orders", "m", 3_000);
    let printed: Vec<Vec<(i32, i64, String)>> = members.into_iter().map(Member::finish).collect();
    let mut all: Vec<String> = printed.iter().flat_map(|lines| values(lines)).collect();
    assert_eq!(all.len(), produced.len(), "no message printed twice");
    all.sort();
    assert_eq!(
        all.into_iter().collect::<BTreeSet<_>>(),
        produced,
        "every message printed"
    );
    let mut seen_partitions = BTreeSet::new();
    for lines in &printed {
        let partitions: BTreeSet<i32> = lines.iter().map(|(partition, _, _)| *partition).collect();
        assert_eq!(
            partitions.len(),
            4,
            "each member reads its 4 partitions: {partitions:?}"
        );
        assert!(partitions.is_disjoint(&seen_partitions));
        seen_partitions.extend(partitions);
    }
    assert_eq!(owners.len(), 12);

    let auditor = Member::start(&bootstrap, "orders", "audit", &["--timeout-ms", "3000"]);
    let again = values(&auditor.finish());
    assert_eq!(again.len(), produced.len());
    assert_eq!(again.into_iter().collect::<BTreeSet<_>>(), produced);

    let (state, rows) = describe_rows(&bootstrap, "billing");
    assert!(state.contains("is Empty"), "{state}");
    assert_eq!(rows.len(), 12);
    for row in &rows {
        assert_eq!(row[5], "0", "LAG 0: {row:?}");
        assert_eq!(row[3], row[4], "CURRENT-OFFSET = LOG-END-OFFSET: {row:?}");
    }
    let (listed, _) = sluice_ok(&["group", "list", "--bootstrap", &bootstrap], b"");
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec!["audit", "billing"]);
}

// Proves at-least-once through a member's death: of two members, one is SIGKILLed while
// messages flow; the survivor takes its partitions over (after the session timeout) and
// resumes at the last commit, so every produced message is printed by one of them, and the
// only repeats are of the killed member's partitions.
#[test]
fn killed_member_is_taken_over_without_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"));
    let bootstrap = broker.native.to_string();
    sluice_ok(
        &[
            "topic",
            "create",
            "jobs",
            "--partitions",
            "4",
            "--bootstrap",
            &bootstrap,
        ],
        b"",
    );
    let doomed = Member::start(&bootstrap, "jobs", "workers", &["--timeout-ms", "60000"]);
    let survivor = Member::start(&bootstrap, "jobs", "workers", &["--timeout-ms", "12000"]);
    let owners = wait_stable(&bootstrap, "workers", 2, 4);
    let mut produced = produce(&bootstrap, "jobs", "before", 2_000);
    // Let both print and commit some of it, then kill one without warning.
    std::thread::sleep(Duration::from_millis(1_500));
    let killed = doomed.kill();
    produced.extend(produce(&bootstrap, "jobs", "after", 2_000));
    let surviving = survivor.finish();
    let killed_partitions: BTreeSet<i32> =
        killed.iter().map(|(partition, _, _)| *partition).collect();
    let mut union: BTreeSet<String> = values(&killed).into_iter().collect();
    union.extend(values(&surviving));
    assert_eq!(union, produced, "nothing acknowledged was skipped");
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, _, value) in killed.iter().chain(&surviving) {
        *counts.entry(value).or_default() += 1;
    }
    for (partition, offset, value) in &surviving {
        if counts[value] > 1 {
            assert!(
                killed_partitions.contains(partition),
                "repeat {value} at {partition}/{offset} is not from the killed member's partitions"
            );
        }
    }
    assert_eq!(owners.len(), 4);
}

// Proves committed offsets are durable and resumption is exact: a member prints 300 of 1,000
// messages and exits (committing what it printed), the broker is SIGKILLed and restarted on
// the same data, and a new member of the group prints exactly the other 700.
#[test]
fn committed_offsets_survive_a_broker_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = start_broker(&data);
    let bootstrap = broker.native.to_string();
    sluice_ok(
        &[
            "topic",
            "create",
            "ledger",
            "--partitions",
            "4",
            "--bootstrap",
            &bootstrap,
        ],
        b"",
    );
    let produced = produce(&bootstrap, "ledger", "entry", 1_000);
    let first = Member::start(&bootstrap, "ledger", "readers", &["--count", "300"]).finish();
    assert_eq!(first.len(), 300);
    broker.signal_and_wait(libc::SIGKILL);
    drop(broker);
    let broker = start_broker(&data);
    let bootstrap = broker.native.to_string();
    let rest = Member::start(&bootstrap, "ledger", "readers", &["--timeout-ms", "3000"]).finish();
    let first: BTreeSet<String> = values(&first).into_iter().collect();
    let rest_values = values(&rest);
    assert_eq!(rest_values.len(), 700, "exactly the uncommitted rest");
    let rest: BTreeSet<String> = rest_values.into_iter().collect();
    assert!(first.is_disjoint(&rest), "nothing committed is read again");
    assert_eq!(
        first.union(&rest).cloned().collect::<BTreeSet<_>>(),
        produced
    );
}

// Proves the group commands refuse bad input with a clear message and change nothing: an
// unknown group, deleting or resetting a group that has members, --from OFFSET with --group;
// and that reset-offsets on an inactive group sets offsets describe then shows.
#[test]
fn group_commands_refuse_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"));
    let bootstrap = broker.native.to_string();
    let b = bootstrap.as_str();
    sluice_ok(
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "2",
            "--bootstrap",
            b,
        ],
        b"",
    );
    produce(b, "t", "x", 100);
    let failed = |args: &[&str]| {
        let output = sluice_cli(args, b"");
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = failed(&["group", "describe", "nosuch", "--bootstrap", b]);
    assert!(error.contains("does not exist"), "{error}");
    let error = failed(&[
        "consume",
        "t",
        "--group",
        "g",
        "--from",
        "5",
        "--bootstrap",
        b,
    ]);
    assert!(error.contains("earliest or latest"), "{error}");
    let member = Member::start(b, "t", "g", &["--timeout-ms", "60000"]);
    wait_stable(b, "g", 1, 2);
    let error = failed(&["group", "delete", "g", "--bootstrap", b]);
    assert!(error.contains("active members"), "{error}");
    let error = failed(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-earliest",
        "--bootstrap",
        b,
    ]);
    assert!(error.contains("active member"), "{error}");
    drop(member);
    // The killed member's session expires; then the group is inactive.
    reset_when_inactive(b, "g", "t", "10");
    let (_, rows) = describe_rows(b, "g");
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row[3], "10", "{row:?}");
    }
    sluice_ok(&["group", "delete", "g", "--bootstrap", b], b"");
    let error = failed(&["group", "describe", "g", "--bootstrap", b]);
    assert!(error.contains("does not exist"), "{error}");
}
