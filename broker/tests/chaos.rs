//! The randomized fault suite (issue 13): etcd and three brokers as real processes, an acks=all
//! workload and a committing group member, a nemesis drawing faults from a seeded schedule, and
//! a checker reading everything back. `CHAOS_SEED` and `CHAOS_SECONDS` choose the run
//! (defaults: two fixed seeds of 30 s each, for CI); `scripts/chaos.sh` runs long ones.
#![allow(clippy::unwrap_used)]

mod chaos_support;
mod support_cluster;

use chaos_support::run::run_seed;
use chaos_support::Settings;

// Proves acks=all with min.insync.replicas 2 and replication factor 3 loses no acknowledged
// record under random faults (SIGKILL and restart of leaders, followers and the controller,
// SIGSTOP past the session lease, a broker cut off by a network namespace, etcd SIGKILL, a
// replica restarted with a wiped disk while the others are in sync, a leader killed right after
// a segment roll), by running each seed's schedule, healing, and checking that every
// acknowledged value is at its offset, offsets have no gaps, acknowledged values keep their
// send order, replicas are byte-identical below the high watermark, what the reader was given
// is what the log holds, committed offsets never move backwards, and the cluster recovers after
// every fault; duplicates fail only an idempotent producer.
#[test]
fn randomized_faults_lose_no_acknowledged_write() {
    trace_clients();
    let settings = Settings::from_env();
    let mut failures = Vec::new();
    for seed in &settings.seeds {
        let report = run_seed(*seed, settings.duration);
        eprintln!("{report}");
        failures.extend(
            report
                .failures()
                .into_iter()
                .map(|failure| format!("seed {seed}: {failure}")),
        );
    }
    assert!(
        failures.is_empty(),
        "the chaos run found:\n{}",
        failures.join("\n")
    );
}

/// With `CHAOS_CLIENT_LOG=<file>`, the clients of this process (producers, reader) log at the
/// level `RUST_LOG` names (default `sluice_client=debug`) into that file, for diagnosing a run.
fn trace_clients() {
    let Ok(path) = std::env::var("CHAOS_CLIENT_LOG") else {
        return;
    };
    let file = std::fs::File::create(&path).expect("create the client log");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sluice_client=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
}
