//! The `sluice` binary: `sluice broker [flags]` runs a broker (single node, or a cluster member
//! with `--etcd`) until SIGTERM or SIGINT, then shuts it down gracefully. Should a shard or the
//! control thread stop on its own (a fatal error or a panic), it shuts down what is left and
//! exits with status 1 instead of serving on without them.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sluice_broker::{Broker, BrokerConfig, ConfigOverlay};

/// How often the main thread checks that every shard and the control thread still run, in
/// milliseconds (it also takes signals at this pace).
const SUPERVISE_POLL_MS: u64 = 100;

/// Sluice: a Kafka-family commit-log broker.
#[derive(Parser)]
#[command(name = "sluice", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker: single node with its metadata in the data directory, or a member of a
    /// replicated cluster with --etcd.
    Broker(Box<BrokerArgs>),
    /// Client commands (topics, produce, consume) against a running broker.
    #[command(flatten)]
    Client(sluice_broker::cli::ClientCommand),
}

#[derive(Args)]
struct BrokerArgs {
    /// TOML configuration file. Flags and SLUICE_* environment variables override its keys.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (TOML) and exit without starting.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    overlay: ConfigOverlay,
}

fn main() -> ExitCode {
    sluice_shard::keep_freed_memory();
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Broker(args) => run_broker(*args),
        Command::Client(command) => sluice_broker::cli::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sluice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run_broker(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let config = BrokerConfig::load(args.config.as_deref(), args.overlay)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    // Registered before the broker starts so a signal during startup is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    let broker = Broker::start(config)?;
    print_addresses(&broker)?;
    match supervise(&broker, &mut signals) {
        Ok(signal) => {
            tracing::info!(signal, "shutting down");
            broker.shutdown()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(stopped) => {
            tracing::error!(
                part = %stopped,
                "part of the broker stopped on its own (see the error or panic above): the \
                 broker shuts down and exits, so its partitions fail over and a restart \
                 recovers its logs"
            );
            if let Err(error) = broker.shutdown() {
                tracing::error!(%error, "shutdown after the failure was not clean");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Waits for SIGTERM or SIGINT (returned as `Ok`), or for part of the broker to stop on its own
/// (a shard's thread or the control thread ended: a fatal error or a panic), returned as `Err`
/// naming the part. A broker missing a shard would keep its etcd registration alive while the
/// partitions of that shard no longer answer, so it must not go on serving.
fn supervise(broker: &sluice_broker::BrokerHandle, signals: &mut Signals) -> Result<i32, String> {
    loop {
        if let Some(signal) = signals.pending().next() {
            return Ok(signal);
        }
        if let Some(stopped) = broker.stopped_part() {
            return Err(stopped);
        }
        std::thread::sleep(Duration::from_millis(SUPERVISE_POLL_MS));
    }
}

/// Prints where the broker listens, one line each, then `ready` (scripts and tests wait for it).
fn print_addresses(broker: &sluice_broker::BrokerHandle) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "native {}", broker.native_addr())?;
    for (shard, addr) in broker.shard_addrs().iter().enumerate() {
        writeln!(out, "shard {shard} {addr}")?;
    }
    match broker.kafka_addr() {
        Some(addr) => writeln!(out, "kafka {addr}")?,
        None => writeln!(out, "kafka off")?,
    }
    match broker.admin_addr() {
        Some(addr) => writeln!(out, "admin {addr}")?,
        None => writeln!(out, "admin off")?,
    }
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}
