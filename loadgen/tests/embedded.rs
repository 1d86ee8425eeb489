//! End-to-end runs of the load generator's library API against an in-process broker.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_loadgen::embedded::EmbeddedOptions;
use sluice_loadgen::report::Report;
use sluice_loadgen::workload::KeyDistribution;
use sluice_loadgen::{run, BrokerTarget, LoadgenError, RunOptions, Workload};

/// Runs one embedded broker at a time: each locks memory for its rings, and the machine is small.
static EMBEDDED: Mutex<()> = Mutex::new(());

fn short_workload(name: &str) -> Workload {
    Workload {
        name: name.to_string(),
        topics: 1,
        partitions_per_topic: 2,
        message_size: 256,
        keys: KeyDistribution::RoundRobin,
        producers_per_topic: 1,
        subscriptions_per_topic: 1,
        consumers_per_subscription: 1,
        producer_rate: 500.0,
        warmup_s: 0.0,
        duration_s: 3.0,
        ..Workload::default()
    }
}

fn embedded_options(workload: Workload) -> RunOptions {
    let mut options = RunOptions::new(
        workload,
        BrokerTarget::Embedded(EmbeddedOptions {
            shards: Some(1),
            ..EmbeddedOptions::default()
        }),
    );
    options.pin = false;
    options.progress_interval = Duration::from_secs(1);
    options
}

// Proves a short embedded run (3 s, 2 partitions, 500 msg/s) delivers every produced message
// exactly once through a real consumer group (which counts its rebalance) and the report's
// counts agree (sent == acked == consumed, no duplicates or
// missing, per partition too), by running the library API and reading its report, including
// after a JSON round trip.
#[test]
fn embedded_run_consumes_every_message() {
    let _guard = EMBEDDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let report = run(&embedded_options(short_workload("it-embedded"))).unwrap();
    let counts = &report.counts;
    assert!(counts.sent > 0, "nothing was sent");
    assert_eq!(
        counts.sent, counts.acked,
        "every sent message is acknowledged"
    );
    assert_eq!(
        counts.acked, counts.consumed,
        "every acknowledged message is consumed once"
    );
    assert_eq!(
        (
            counts.failed,
            counts.duplicates,
            counts.missing,
            counts.foreign
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(counts.partitions.len(), 2);
    // The subscription is a real consumer group: its member joined it (one rebalance at least).
    assert!(counts.groups.rebalances >= 1, "{:?}", counts.groups);
    for partition in &counts.partitions {
        assert!(
            partition.acked > 0,
            "partition {} got no message",
            partition.partition
        );
        assert_eq!(
            partition.acked, partition.consumed,
            "partition {}",
            partition.partition
        );
    }
    assert!(
        report.correctness.checked && report.correctness.passed,
        "{}",
        report.correctness.message
    );
    assert!(!report.interrupted);
    assert_eq!(report.aggregate.publish_latency.count, counts.acked);
    assert_eq!(report.aggregate.end_to_end_latency.count, counts.consumed);
    let window_acked: u64 = report.windows.iter().map(|window| window.acked).sum();
    assert_eq!(window_acked, counts.acked, "windows add up to the totals");
    assert_eq!(report.broker.mode, "embedded");
    assert!(report.broker.write_mode.is_some() && report.broker.durability.is_some());

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("report.json");
    report.write_json(&path).unwrap();
    let back: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(back == report, "the written report reads back unchanged");
}

/// Longest the interrupt test waits for a broker it started to have served the run's first
/// requests; a bound on a hang, not a speed requirement.
const RUN_START_WAIT: Duration = Duration::from_secs(120);

/// Longest an interrupted run may take to stop and report. A run that ignores the interrupt
/// would go on for its whole duration (ten minutes), far past this.
const INTERRUPT_STOP_WAIT: Duration = Duration::from_secs(60);

/// Produce and fetch requests the broker must have served before the interrupt is raised, so
/// the run has acknowledged and consumed messages to report.
const REQUESTS_BEFORE_INTERRUPT: u64 = 50;

// Proves an interrupt stops a run early and still returns what was measured, with the
// exactly-once check marked as not applicable: a ten-minute run against a broker this test
// started is interrupted once that broker has served produce and fetch requests, and must stop
// and report, with messages acknowledged and consumed, well before its duration.
#[test]
fn interrupt_stops_and_still_reports() {
    let _guard = EMBEDDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = tempfile::tempdir().unwrap();
    let broker = sluice_broker::Broker::start(sluice_broker::BrokerConfig {
        data_dir: directory.path().to_path_buf(),
        native_addr: "127.0.0.1:0".parse().unwrap(),
        // An OS-picked Kafka port: the default 9092 may be taken (another test run, a Kafka).
        kafka_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_addr: None,
        shards: 1,
        pin: false,
        ..sluice_broker::BrokerConfig::default()
    })
    .unwrap();
    let mut workload = short_workload("it-interrupt");
    workload.duration_s = 600.0;
    let mut options = RunOptions::new(
        workload,
        BrokerTarget::Remote {
            bootstrap: broker.native_addr().to_string(),
        },
    );
    options.pin = false;
    options.print_progress = false;
    let interrupt = options.interrupt.clone();
    let (reports, report) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let _ = reports.send(run(&options));
    });
    let metrics = broker.metrics()[0].clone();
    let deadline = std::time::Instant::now() + RUN_START_WAIT;
    while metrics.produce_requests.get() < REQUESTS_BEFORE_INTERRUPT
        || metrics.fetch_requests.get() < REQUESTS_BEFORE_INTERRUPT
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not produce and fetch within {RUN_START_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    interrupt.store(true, Ordering::Relaxed);
    let report = report
        .recv_timeout(INTERRUPT_STOP_WAIT)
        .expect("the interrupted run did not stop")
        .unwrap();
    runner.join().unwrap();
    assert!(report.interrupted);
    assert!(
        !report.correctness.checked,
        "{}",
        report.correctness.message
    );
    assert!(report.counts.acked > 0, "nothing acknowledged was reported");
    assert!(report.counts.consumed > 0, "nothing consumed was reported");
    broker.shutdown().unwrap();
}

// Proves --no-shard-aware sends everything through the broker's shared port: against a 2-shard
// broker, a short run still delivers every message exactly once, its report names the mode,
// and the broker forwarded requests between its shards (which the shard-aware client never
// causes).
#[test]
fn shared_port_only_run_is_forwarded_and_exactly_once() {
    let _guard = EMBEDDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = tempfile::tempdir().unwrap();
    let broker = sluice_broker::Broker::start(sluice_broker::BrokerConfig {
        data_dir: directory.path().to_path_buf(),
        native_addr: "127.0.0.1:0".parse().unwrap(),
        // An OS-picked Kafka port: the default 9092 may be taken (another test run, a Kafka).
        kafka_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_addr: None,
        shards: 2,
        pin: false,
        ..sluice_broker::BrokerConfig::default()
    })
    .unwrap();
    let mut options = RunOptions::new(
        short_workload("it-forwarded"),
        BrokerTarget::Remote {
            bootstrap: broker.native_addr().to_string(),
        },
    );
    options.pin = false;
    options.print_progress = false;
    options.shard_aware = false;
    let report = run(&options).unwrap();
    assert!(report.correctness.passed, "{}", report.correctness.message);
    assert!(report.driver.contains("forwarded"), "{}", report.driver);
    let forwarded: u64 = broker
        .metrics()
        .iter()
        .map(|metrics| metrics.forwarded_requests.get())
        .sum();
    assert!(forwarded > 0, "no request was forwarded between shards");
    broker.shutdown().unwrap();
}

// Proves --bootstrap takes a list: a run whose first address refuses connections bootstraps from
// the next one and delivers every message exactly once.
#[test]
fn bootstrap_list_skips_an_unreachable_broker() {
    let _guard = EMBEDDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = tempfile::tempdir().unwrap();
    let broker = sluice_broker::Broker::start(sluice_broker::BrokerConfig {
        data_dir: directory.path().to_path_buf(),
        native_addr: "127.0.0.1:0".parse().unwrap(),
        // An OS-picked Kafka port: the default 9092 may be taken (another test run, a Kafka).
        kafka_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_addr: None,
        shards: 1,
        pin: false,
        ..sluice_broker::BrokerConfig::default()
    })
    .unwrap();
    let mut workload = short_workload("it-bootstrap-list");
    workload.duration_s = 1.0;
    let mut options = RunOptions::new(
        workload,
        BrokerTarget::Remote {
            bootstrap: format!("127.0.0.1:1,{}", broker.native_addr()),
        },
    );
    options.pin = false;
    options.print_progress = false;
    let report = run(&options).unwrap();
    let counts = &report.counts;
    assert!(counts.acked > 0, "nothing was acknowledged");
    assert_eq!(counts.acked, counts.consumed);
    assert_eq!(
        (counts.failed, counts.duplicates, counts.missing),
        (0, 0, 0)
    );
    broker.shutdown().unwrap();
}

// Proves an unreachable broker is a clear error, not a hang or a panic, by pointing a run at a
// port nobody listens on.
#[test]
fn unreachable_broker_is_a_clear_error() {
    let mut options = RunOptions::new(
        short_workload("it-unreachable"),
        BrokerTarget::Remote {
            bootstrap: "127.0.0.1:1".to_string(),
        },
    );
    options.connect_timeout = Duration::from_millis(500);
    let error = run(&options).unwrap_err();
    assert!(
        matches!(error, LoadgenError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("cannot reach broker at 127.0.0.1:1"),
        "{error}"
    );
}

// Proves the binary exits non-zero with a readable message for an unreachable broker and for a
// bad workload, by running it as a user would.
#[test]
fn binary_reports_errors_with_exit_codes() {
    let binary = env!("CARGO_BIN_EXE_sluice-loadgen");
    let output = std::process::Command::new(binary)
        .args([
            "--bootstrap",
            "127.0.0.1:1",
            "--connect-timeout-ms",
            "500",
            "--duration-s",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach broker at 127.0.0.1:1"),
        "{stderr}"
    );

    let output = std::process::Command::new(binary)
        .args(["--embedded", "--message-size", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("message_size must be > 0"), "{stderr}");
}

/// The binary on a small embedded run: one shard, 2 partitions, 200 msg/s for 60 s, progress
/// every second, stdout piped.
fn small_run() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"));
    command
        .args([
            "--embedded",
            "--shards",
            "1",
            "--no-pin",
            "--partitions",
            "2",
        ])
        .args(["--rate", "200", "--warmup-s", "0", "--duration-s", "60"])
        .args(["--progress-interval-s", "1"])
        .stdout(std::process::Stdio::piped());
    command
}

/// Starts `command` and reads its stdout up to its first progress line; returns the child, the
/// rest of its stdout, and what was read.
fn start_until_progress(
    command: &mut std::process::Command,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    use std::io::BufRead;
    let mut child = command.spawn().expect("the load generator starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut seen = String::new();
    while !seen.contains("Pub rate") {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).expect("stdout reads");
        assert!(read > 0, "the run ended before any progress line: {seen}");
        seen.push_str(&line);
    }
    (child, stdout, seen)
}

// Proves Ctrl-C on the binary stops the run, still prints the summary and writes the report,
// and exits with 130, by sending SIGINT once the first progress line appeared.
#[test]
fn sigint_to_binary_still_reports() {
    use std::io::Read;
    let _guard = EMBEDDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = tempfile::tempdir().unwrap();
    let report_path = directory.path().join("report.json");
    let mut command = small_run();
    command
        .arg("--report")
        .arg(&report_path)
        .stderr(std::process::Stdio::null());
    let (mut child, mut stdout, mut seen) = start_until_progress(&mut command);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    stdout.read_to_string(&mut seen).unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "{seen}");
    assert!(
        seen.contains("Correctness: not checked: interrupted"),
        "{seen}"
    );
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert!(report.interrupted);
    assert!(report.counts.acked > 0);
}

// Proves the group bench measures what it says on a real (embedded) broker: 3 members of a
// 6-partition topic form a Stable group, one leaves and the other two take every partition,
// and commits go through; the figures are positive (their size is for benchmarks to judge).
#[test]
fn groups_bench_forms_rebalances_and_commits() {
    let _guard = EMBEDDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut workload = short_workload("it-groups-bench");
    workload.partitions_per_topic = 6;
    let options = embedded_options(workload);
    let report =
        sluice_loadgen::groups_bench::run_groups_bench_on(&options, 3, Duration::from_secs(1))
            .unwrap();
    assert_eq!((report.members, report.partitions), (3, 6));
    assert!(
        report.formation_ms > 0.0 && report.leave_ms > 0.0,
        "{report}"
    );
    assert!(
        report.commits_per_s > 0.0 && report.offsets_per_s >= report.commits_per_s,
        "{report}"
    );
}

/// Longest wait for the binary to end once its embedded broker's shard panicked.
const BROKER_FAILURE_EXIT_WAIT_S: u64 = 60;

// Proves a run whose embedded broker loses its shard ends at once with exit code 1 and an error
// naming the shard, instead of waiting out its flush timeouts or hanging in the broker's
// shutdown: the shard panics (an injected fault) once the run has printed its first progress.
#[test]
fn binary_fails_fast_when_the_embedded_broker_loses_a_shard() {
    let _guard = EMBEDDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = tempfile::tempdir().unwrap();
    let trigger = directory.path().join("panic-now");
    let stderr_path = directory.path().join("stderr");
    let mut command = small_run();
    command
        .env(
            "SLUICE_FAULT_SHARD_PANIC",
            format!("0:{}", trigger.display()),
        )
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let (mut child, _stdout, _seen) = start_until_progress(&mut command);
    std::fs::write(&trigger, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(BROKER_FAILURE_EXIT_WAIT_S);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run still goes {BROKER_FAILURE_EXIT_WAIT_S} s after the shard panicked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(exit.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the embedded broker's shard-0 stopped on its own"),
        "{stderr}"
    );
}
