//! The `sluice` binary: `sluice broker [flags]` runs a broker (single node, or a cluster member
//! with `--etcd`) until SIGTERM or SIGINT, then shuts it down gracefully.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sluice_broker::{Broker, BrokerConfig, ConfigOverlay};

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
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    broker.shutdown()?;
    Ok(ExitCode::SUCCESS)
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
