//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use sluice_broker::config::WriteModeSetting;
use sluice_broker::ConfigOverlay;

/// Runs `sluice broker --print-config` with `args` and `env`, with no other SLUICE_* variables.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.arg("broker").arg("--print-config").args(args);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("SLUICE_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

// Proves the precedence flag > environment > file > default, key by key, by printing the
// effective configuration of the real binary.
#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        "node_id = 1\nshards = 3\n[storage]\nwrite_mode = \"buffered\"\nsegment_bytes_max = 4096\n\
         [limits]\nconnections_max = 10\n",
    )
    .unwrap();
    let output = print_config(
        &[
            "--config",
            file.to_str().unwrap(),
            "--segment-bytes-max",
            "16384",
        ],
        &[("SLUICE_SHARDS", "5"), ("SLUICE_SEGMENT_BYTES_MAX", "8192")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = ConfigOverlay::from_toml(&String::from_utf8(output.stdout).unwrap()).unwrap();
    assert_eq!(printed.node_id, Some(1), "file over default");
    assert_eq!(printed.shards, Some(5), "environment over file");
    assert_eq!(
        printed.storage.segment_bytes_max,
        Some(16384),
        "flag over environment"
    );
    assert_eq!(printed.storage.write_mode, Some(WriteModeSetting::Buffered));
    assert_eq!(printed.limits.connections_max, Some(10));
    assert_eq!(
        printed.limits.connection_inflight_requests_max,
        Some(16),
        "default"
    );
}

// Proves an unknown key in the file (top level or in a section) and an out-of-bounds value
// from the environment stop the broker with a message naming the key.
#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("node_id = 1\nsegment_size = 5\n", "segment_size"),
        ("[limits]\nframe_bytes = 5\n", "frame_bytes"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let output = print_config(&["--config", file.to_str().unwrap()], &[]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{stderr}");
    }
    let output = print_config(&[], &[("SLUICE_CONNECTIONS_MAX", "0")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connections_max"), "{stderr}");
}

// Proves the sample config shipped in deploy/ parses (every key known) and states exactly the
// built-in defaults, so the documentation cannot drift from the code.
#[test]
fn deploy_sample_config_documents_the_defaults() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sluice.toml");
    let from_sample = print_config(&["--config", sample], &[]);
    assert!(
        from_sample.status.success(),
        "{}",
        String::from_utf8_lossy(&from_sample.stderr)
    );
    let defaults = print_config(&[], &[]);
    assert_eq!(from_sample.stdout, defaults.stdout);
}
