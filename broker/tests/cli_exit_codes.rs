//! Exit codes of `sluice produce` and `sluice consume` when things go wrong, as a script would
//! see them: a real `sluice broker` process, SIGKILLed while the CLI streams to or from it.
#![allow(clippy::unwrap_used)]

mod common;
mod e2e_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::BrokerProcess;
use e2e_support::sluice_ok;
use sluice_client::blocking::BlockingClient;
use sluice_client::{ClientConfig, OffsetSpec};

/// Longest any CLI process here may run after what should end it; a bound on a hang, not a
/// speed requirement.
const EXIT_WAIT: Duration = Duration::from_secs(90);

/// Longest a test waits for the CLI to have made progress (lines printed, records appended).
const PROGRESS_WAIT: Duration = Duration::from_secs(60);

/// Idle timeout given to `sluice consume`, in milliseconds.
const CONSUME_IDLE_MS: &str = "3000";

/// A `sluice` CLI process whose stdout lines arrive on a channel, read by a thread of its own.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn start(args: &[&str], stdin: Stdio) -> Streaming {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env_remove("SLUICE_BOOTSTRAP")
            .env("RUST_LOG", "warn")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Streaming { child, lines }
    }

    /// Waits for the next `count` stdout lines.
    fn read_lines(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + PROGRESS_WAIT;
        (0..count)
            .map(|index| {
                let left = deadline.saturating_duration_since(Instant::now());
                self.lines.recv_timeout(left).unwrap_or_else(|_| {
                    panic!("only {index} of {count} lines within {PROGRESS_WAIT:?}")
                })
            })
            .collect()
    }

    /// Waits for the process to exit; returns its status, the stdout lines not read yet and
    /// its stderr.
    fn wait(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + EXIT_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                self.child.kill().ok();
                panic!("the CLI did not exit within {EXIT_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let rest: Vec<String> = self.lines.try_iter().collect();
        (status, rest, stderr)
    }
}

fn start_broker(dir: &tempfile::TempDir) -> (BrokerProcess, String) {
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--shards", "1"]);
    let bootstrap = broker.native.to_string();
    (broker, bootstrap)
}

fn create_topic(bootstrap: &str, topic: &str) {
    sluice_ok(
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            "1",
            "--bootstrap",
            bootstrap,
        ],
        b"",
    );
}

fn produce_lines(bootstrap: &str, topic: &str, lines: std::ops::Range<usize>) {
    let input: String = lines.map(|index| format!("line-{index}\n")).collect();
    sluice_ok(
        &["produce", topic, "--bootstrap", bootstrap],
        input.as_bytes(),
    );
}

fn expected_lines(lines: std::ops::Range<usize>) -> Vec<String> {
    lines.map(|index| format!("line-{index}")).collect()
}

// Proves `consume --count N` exits 1 when fewer than N messages arrive before the idle timeout,
// after printing the ones that did, and names the shortfall; and exits 0 when N arrive.
#[test]
fn consume_count_fails_when_fewer_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir);
    create_topic(&bootstrap, "short");
    produce_lines(&bootstrap, "short", 0..5);
    let consume = |count: &str| {
        let args = [
            "consume",
            "short",
            "--count",
            count,
            "--timeout-ms",
            CONSUME_IDLE_MS,
            "--bootstrap",
            &bootstrap,
        ];
        Streaming::start(&args, Stdio::null()).wait()
    };
    let (status, printed, stderr) = consume("10");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(printed, expected_lines(0..5));
    assert!(
        stderr.contains("consumed 5 of 10 messages from short"),
        "{stderr}"
    );
    let (status, printed, stderr) = consume("5");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(printed, expected_lines(0..5));
}

// Proves `consume` exits 1 when its broker dies mid-stream: with --count it stops short of the
// count, without it the idle timeout ends a run whose fetches were failing; both print every
// message the broker had served first, and say why they stopped.
#[test]
fn consume_fails_when_the_broker_dies_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, bootstrap) = start_broker(&dir);
    create_topic(&bootstrap, "cut");
    produce_lines(&bootstrap, "cut", 0..50);
    let with_count = Streaming::start(
        &[
            "consume",
            "cut",
            "--count",
            "100",
            "--timeout-ms",
            CONSUME_IDLE_MS,
            "--bootstrap",
            &bootstrap,
        ],
        Stdio::null(),
    );
    let without_count = Streaming::start(
        &[
            "consume",
            "cut",
            "--timeout-ms",
            CONSUME_IDLE_MS,
            "--bootstrap",
            &bootstrap,
        ],
        Stdio::null(),
    );
    assert_eq!(with_count.read_lines(50), expected_lines(0..50));
    assert_eq!(without_count.read_lines(50), expected_lines(0..50));
    broker.signal_and_wait(libc::SIGKILL);

    let (status, rest, stderr) = with_count.wait();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        stderr.contains("consumed 50 of 100 messages from cut"),
        "{stderr}"
    );
    assert!(stderr.contains("fetches were failing: cut-0"), "{stderr}");
    let (status, rest, stderr) = without_count.wait();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        stderr.contains("while fetches were failing: cut-0"),
        "{stderr}"
    );
}

// Proves `produce` exits 1 when its broker dies mid-stream: the lines sent after the SIGKILL
// are retried until the delivery timeout, then counted as failed, and the first failure is
// named; the lines acknowledged before the kill are not counted as failed.
#[test]
fn produce_fails_when_the_broker_dies_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, bootstrap) = start_broker(&dir);
    create_topic(&bootstrap, "doomed");
    let producing = Streaming::start(
        &[
            "produce",
            "doomed",
            "--linger-ms",
            "0",
            "--request-timeout-ms",
            "2000",
            "--delivery-timeout-ms",
            "5000",
            "--bootstrap",
            &bootstrap,
        ],
        Stdio::piped(),
    );
    let mut stdin = producing.child.stdin.as_ref().unwrap();
    let first: String = (0..20).map(|index| format!("line-{index}\n")).collect();
    stdin.write_all(first.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let client = BlockingClient::connect(ClientConfig {
        bootstrap: vec![bootstrap.clone()],
        ..ClientConfig::default()
    })
    .unwrap();
    let deadline = Instant::now() + PROGRESS_WAIT;
    while client.list_offset("doomed", 0, OffsetSpec::Latest).unwrap() < 20 {
        assert!(
            Instant::now() < deadline,
            "the first 20 lines were not appended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    broker.signal_and_wait(libc::SIGKILL);
    let second: String = (20..30).map(|index| format!("line-{index}\n")).collect();
    stdin.write_all(second.as_bytes()).unwrap();
    let mut producing = producing;
    drop(producing.child.stdin.take());
    let (status, _, stderr) = producing.wait();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("produced 30 messages"), "{stderr}");
    assert!(stderr.contains("; 10 failed"), "{stderr}");
    assert!(
        stderr.contains("first failure: delivery to doomed-0 timed out"),
        "{stderr}"
    );
}
