//! Helpers of the consumer-group end-to-end tests: `sluice consume --group` child processes,
//! `sluice group describe` parsing, waiting for a group to be stable, producing numbered lines.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::e2e_support::{sluice_cli, sluice_ok};

/// How long a test waits for a condition (members stable, processes done) before failing: a
/// bound on a hang, not a speed assertion.
pub const WAIT_MAX: Duration = Duration::from_secs(90);

/// Session timeout of the members here, ms (short, so a killed member is noticed quickly).
pub const SESSION_MS: &str = "6000";

/// A running `sluice consume --group` process whose stdout is collected by a thread.
pub struct Member {
    child: Child,
    output: Option<JoinHandle<String>>,
}

impl Member {
    pub fn start(bootstrap: &str, topic: &str, group: &str, extra: &[&str]) -> Member {
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
    pub fn finish(mut self) -> Vec<(i32, i64, String)> {
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
    pub fn kill(mut self) -> Vec<(i32, i64, String)> {
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
pub fn parse_lines(text: &str) -> Vec<(i32, i64, String)> {
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
pub fn produce(bootstrap: &str, topic: &str, tag: &str, count: usize) -> BTreeSet<String> {
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
pub fn describe_rows(bootstrap: &str, group: &str) -> (String, Vec<Vec<String>>) {
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
pub fn wait_stable(
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

pub fn values(printed: &[(i32, i64, String)]) -> Vec<String> {
    printed.iter().map(|(_, _, value)| value.clone()).collect()
}

/// Runs `group reset-offsets GROUP --topic TOPIC --to-offset OFFSET` until the group has no
/// members left and it succeeds.
pub fn reset_when_inactive(bootstrap: &str, group: &str, topic: &str, offset: &str) {
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
