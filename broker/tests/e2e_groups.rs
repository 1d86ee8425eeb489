//! End-to-end consumer groups on a real single-node broker process: `sluice consume --group`
//! processes share a topic's partitions and together print every message once, another group
//! reads everything again, `sluice group describe` shows lag 0, a SIGKILLed member's partitions
//! are taken over with nothing acknowledged skipped, committed offsets survive a broker SIGKILL
//! and restart, and bad input gets clear errors.
#![allow(clippy::unwrap_used)]

mod common;
mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::BrokerProcess;
use e2e_support::{sluice_cli, sluice_ok};

/// How long a test waits for a condition (members stable, processes done) before failing: a
/// bound on a hang, not a speed assertion.
const WAIT_MAX: Duration = Duration::from_secs(90);

/// Session timeout of the members here, ms (short, so a killed member is noticed quickly).
const SESSION_MS: &str = "6000";

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

/// A running `sluice consume --group` process whose stdout is collected by a thread.
struct Member {
    child: Child,
    output: Option<JoinHandle<String>>,
}

impl Member {
    fn start(bootstrap: &str, topic: &str, group: &str, extra: &[&str]) -> Member {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["consume", topic, "--group", group, "--print-offsets"])
            .args([
                "--session-timeout-ms",
                SESSION_MS,
                "--commit-interval-ms",
                "300",
            ])
            .args(["--bootstrap", bootstrap])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Member {
            child,
            output: Some(output),
        }
    }

    /// Waits for the process to end on its own (idle timeout) and returns what it printed.
    fn finish(mut self) -> Vec<(i32, i64, String)> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "consume exited {status:?}");
                break;
            }
            assert!(started.elapsed() < WAIT_MAX, "consume did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
        parse_lines(&self.output.take().unwrap().join().unwrap())
    }

    /// SIGKILLs the process and returns what it printed before.
    fn kill(mut self) -> Vec<(i32, i64, String)> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        parse_lines(&self.output.take().unwrap().join().unwrap())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `partition<TAB>offset<TAB>value` lines.
fn parse_lines(text: &str) -> Vec<(i32, i64, String)> {
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let partition = fields.next().unwrap().parse().unwrap();
            let offset = fields.next().unwrap().parse().unwrap();
            (partition, offset, fields.next().unwrap().to_string())
        })
        .collect()
}

/// Produces `count` lines `<tag>-<i>` through the CLI (acks=all, round-robin by key).
fn produce(bootstrap: &str, topic: &str, tag: &str, count: usize) -> BTreeSet<String> {
    let values: Vec<String> = (0..count).map(|index| format!("{tag}-{index}")).collect();
    let input: String = values
        .iter()
        .map(|value| format!("k{value}:{value}\n"))
        .collect();
    sluice_ok(
        &[
            "produce",
            topic,
            "--key-separator",
            ":",
            "--bootstrap",
            bootstrap,
        ],
        input.as_bytes(),
    );
    values.into_iter().collect()
}

/// The rows of `sluice group describe`: (partition, current offset, log end, lag, consumer id).
fn describe_rows(bootstrap: &str, group: &str) -> (String, Vec<Vec<String>>) {
    let (stdout, _) = sluice_ok(&["group", "describe", group, "--bootstrap", bootstrap], b"");
    let state = stdout.lines().next().unwrap_or_default().to_string();
    let rows = stdout
        .lines()
        .skip_while(|line| !line.starts_with("GROUP"))
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect();
    (state, rows)
}

/// Waits until `group` is Stable with `members` members owning `partitions` partitions
/// between them, each owning `partitions / members`; returns the owner of every partition.
fn wait_stable(
    bootstrap: &str,
    group: &str,
    members: usize,
    partitions: usize,
) -> BTreeMap<String, String> {
    let started = Instant::now();
    loop {
        // Until the first member joined, the group does not exist.
        let described = sluice_cli(&["group", "describe", group, "--bootstrap", bootstrap], b"");
        let (state, rows) = if described.status.success() {
            describe_rows(bootstrap, group)
        } else {
            (String::new(), Vec::new())
        };
        let owners: BTreeMap<String, String> = rows
            .iter()
            .filter(|row| row.len() == 9 && row[6] != "-")
            .map(|row| (row[2].clone(), row[6].clone()))
            .collect();
        let mut per_member: BTreeMap<&String, usize> = BTreeMap::new();
        for owner in owners.values() {
            *per_member.entry(owner).or_default() += 1;
        }
        let balanced = per_member.len() == members
            && per_member
                .values()
                .all(|count| *count == partitions / members);
        if state.contains("is Stable") && owners.len() == partitions && balanced {
            return owners;
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "group {group} never became stable with {members} members: {state} {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn values(printed: &[(i32, i64, String)]) -> Vec<String> {
    printed.iter().map(|(_, _, value)| value.clone()).collect()
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

/// Runs `group reset-offsets GROUP --topic TOPIC --to-offset OFFSET` until the group has no
/// members left and it succeeds.
fn reset_when_inactive(bootstrap: &str, group: &str, topic: &str, offset: &str) {
    let started = Instant::now();
    loop {
        let args = [
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-offset",
            offset,
            "--bootstrap",
            bootstrap,
        ];
        if sluice_cli(&args, b"").status.success() {
            return;
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "group {group} never became inactive"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
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
