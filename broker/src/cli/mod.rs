//! The `sluice` CLI's client commands: `topic create|list|describe|delete`, `produce`,
//! `consume` (alone, or as a member of a consumer group with `--group`), `group
//! list|describe|reset-offsets|delete`, `topic reassign` and `cluster
//! info|rebalance|decommission`. Each runs the native client (`sluice-client`) on one glommio executor on the
//! calling thread; errors are `anyhow` errors that say what could not be done and why.

mod args;
mod cluster;
mod consume;
mod group;
mod produce;
mod reassign;
mod topic;

use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context as _;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_client::{Client, ClientConfig, ClientError};

pub use args::{
    parse_acks, parse_config_entry, parse_datetime_ms, parse_start, AssignorArg, CompressionArg,
    ConnectArgs, ConsumeArgs, GroupCommand, GroupNameArgs, ProduceArgs, ResetOffsetsArgs,
    TopicCommand, TopicCreateArgs, TopicNameArgs,
};
pub use cluster::ClusterCommand;

/// The client-side commands of the `sluice` binary, flattened beside its `broker` command.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClientCommand {
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send stdin to a topic, one message per line.
    Produce(ProduceArgs),
    /// Print a topic's messages to stdout, one value per line.
    Consume(ConsumeArgs),
    /// Show the cluster: brokers, controller, under-replicated and offline partitions.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List, describe or delete consumer groups, or reset their offsets.
    #[command(subcommand)]
    Group(GroupCommand),
}

/// Runs a client command to completion and returns the process exit code.
pub fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("sluice-cli")
        .make()
        .map_err(std::io::Error::from)
        .context("cannot start the client's executor")?;
    executor.run(async move {
        match command {
            ClientCommand::Topic(command) => topic::run(command).await,
            ClientCommand::Produce(args) => produce::run(args).await,
            ClientCommand::Consume(args) => consume::run(args).await,
            ClientCommand::Cluster(command) => cluster::run(command).await,
            ClientCommand::Group(command) => group::run(command).await,
        }
    })
}

/// Connects a client to the bootstrap brokers, with an error that names them when none
/// answers.
pub(crate) async fn connect(connect: &ConnectArgs) -> anyhow::Result<Rc<Client>> {
    let config = ClientConfig {
        bootstrap: connect.bootstrap_list(),
        request_timeout_ms: connect.request_timeout_ms,
        ..ClientConfig::default()
    };
    Client::connect(config).await.map_err(|error| match error {
        // The operating system's reason is enough detail after naming the brokers.
        ClientError::Connect { source, .. } => anyhow::Error::new(source)
            .context(format!("cannot reach broker at {}", connect.bootstrap)),
        ClientError::ConnectionLost { .. } | ClientError::Timeout { .. } => {
            anyhow::Error::new(error)
                .context(format!("cannot reach broker at {}", connect.bootstrap))
        }
        other => anyhow::Error::new(other).context(format!(
            "cannot read cluster metadata from {}",
            connect.bootstrap
        )),
    })
}
