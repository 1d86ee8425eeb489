//! `sluice cluster info`: the brokers (id, address, alive), the controller, and the
//! under-replicated and offline partitions, from one Metadata request.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sluice_net::messages::ElectionResult;
use sluice_net::messages::{MetadataResponse, PartitionMeta};
use sluice_net::ErrorCode;

use super::args::ConnectArgs;
use super::connect;
use super::reassign::{DecommissionArgs, RebalanceArgs};

/// `sluice cluster ...`
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// Brokers (id, address, alive), the controller, under-replicated and offline partitions,
    /// reassignments in progress.
    Info(ConnectArgs),
    /// Spread replicas and preferred leaders evenly over the live brokers (moving as little as
    /// possible), show the plan, run it and follow it until done.
    Rebalance(RebalanceArgs),
    /// Move every replica off one broker, then say when it can be stopped.
    Decommission(DecommissionArgs),
    /// Move leadership of every partition (or one topic's) back to its preferred replica (the
    /// first of its replicas) where that replica is live and in the ISR.
    ElectLeaders(ElectLeadersArgs),
}

/// `sluice cluster elect-leaders`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ElectLeadersArgs {
    /// Only this topic's partitions.
    #[arg(long)]
    pub topic: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs one cluster command.
pub(crate) async fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Info(connect_args) => {
            let client = connect(&connect_args).await?;
            let metadata = client
                .metadata(None)
                .await
                .context("cannot read the cluster metadata")?;
            // A single-node broker has no reassignments (it refuses the request).
            let ongoing = client.list_partition_reassignments().await.ok();
            let mut out = std::io::stdout().lock();
            out.write_all(info(&metadata).as_bytes())?;
            if let Some(ongoing) = ongoing {
                out.write_all(super::reassign::info_section(&ongoing).as_bytes())?;
            }
            out.flush()?;
        }
        ClusterCommand::Rebalance(args) => return super::reassign::cluster_rebalance(args).await,
        ClusterCommand::Decommission(args) => {
            return super::reassign::cluster_decommission(args).await
        }
        ClusterCommand::ElectLeaders(args) => {
            let client = connect(&args.connect).await?;
            let results = client
                .elect_leaders(args.topic.as_deref())
                .await
                .context("cannot elect preferred leaders")?;
            let mut out = std::io::stdout().lock();
            out.write_all(election_report(&results).as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `cluster elect-leaders`: one line per partition with its outcome, then counts.
pub(crate) fn election_report(results: &[ElectionResult]) -> String {
    let mut text = String::new();
    let mut counts = [0usize; 3];
    for result in results {
        let (slot, outcome) = match ErrorCode::from_i16(result.error) {
            Some(ErrorCode::None) => (0, "elected".to_string()),
            Some(ErrorCode::ElectionNotNeeded) => (1, "already preferred".to_string()),
            _ => (
                2,
                format!(
                    "preferred leader not available: {}",
                    result.message.as_deref().unwrap_or("unknown reason")
                ),
            ),
        };
        counts[slot] += 1;
        text.push_str(&format!(
            "{}-{}  {outcome}\n",
            result.topic, result.partition
        ));
    }
    text.push_str(&format!(
        "elected {}  already preferred {}  not available {}\n",
        counts[0], counts[1], counts[2]
    ));
    text
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// One line describing a partition: name, leader, epoch, replicas, ISR.
fn partition_line(topic: &str, partition: &PartitionMeta) -> String {
    let leader = if partition.leader < 0 {
        "none".to_string()
    } else {
        partition.leader.to_string()
    };
    format!(
        "  {topic}-{}  leader {leader}  epoch {}  replicas {}  isr {}\n",
        partition.partition,
        partition.leader_epoch,
        join(&partition.replicas),
        join(&partition.isr)
    )
}

/// The text of `cluster info`. Live brokers come from the metadata's broker list; a broker
/// named as a replica but missing from it is listed as not alive.
pub(crate) fn info(metadata: &MetadataResponse) -> String {
    let controller = if metadata.controller_id < 0 {
        "none".to_string()
    } else {
        metadata.controller_id.to_string()
    };
    let mut text = format!(
        "cluster {}  controller {controller}\nbrokers:\n  id  address  alive\n",
        metadata.cluster_id
    );
    let live: BTreeSet<i32> = metadata.brokers.iter().map(|b| b.node_id).collect();
    let mut brokers: Vec<_> = metadata.brokers.iter().collect();
    brokers.sort_by_key(|broker| broker.node_id);
    for broker in brokers {
        text.push_str(&format!(
            "  {}  {}:{}  yes\n",
            broker.node_id, broker.host, broker.port
        ));
    }
    let partitions = || {
        metadata
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (&topic.name, p)))
    };
    let missing: BTreeSet<i32> = partitions()
        .flat_map(|(_, partition)| partition.replicas.iter().copied())
        .filter(|replica| !live.contains(replica))
        .collect();
    for id in missing {
        text.push_str(&format!("  {id}  -  no\n"));
    }
    let under: Vec<String> = partitions()
        .filter(|(_, p)| p.leader >= 0 && p.isr.len() < p.replicas.len())
        .map(|(topic, p)| partition_line(topic, p))
        .collect();
    let offline: Vec<String> = partitions()
        .filter(|(_, p)| p.leader < 0)
        .map(|(topic, p)| partition_line(topic, p))
        .collect();
    text.push_str(&format!("under-replicated partitions: {}\n", under.len()));
    text.extend(under);
    text.push_str(&format!("offline partitions: {}\n", offline.len()));
    text.extend(offline);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::messages::{BrokerMeta, TopicMeta};

    // Proves `cluster elect-leaders` prints one line per partition naming its outcome (with the
    // broker's reason when the preferred replica cannot lead) and the counts of each outcome.
    #[test]
    fn election_report_names_each_outcome() {
        let result = |partition: i32, error: ErrorCode, message: Option<&str>| ElectionResult {
            topic: "orders".into(),
            partition,
            error: error.code(),
            message: message.map(str::to_string),
        };
        let text = election_report(&[
            result(0, ErrorCode::None, None),
            result(1, ErrorCode::ElectionNotNeeded, None),
            result(
                2,
                ErrorCode::PreferredLeaderNotAvailable,
                Some("not in the ISR"),
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "orders-0  elected");
        assert_eq!(lines[1], "orders-1  already preferred");
        assert_eq!(
            lines[2],
            "orders-2  preferred leader not available: not in the ISR"
        );
        assert_eq!(lines[3], "elected 1  already preferred 1  not available 1");
        assert_eq!(lines.len(), 4);
    }

    // Proves `cluster info` lists live brokers with their addresses, a replica broker missing
    // from the live list as not alive, the controller, and exactly the under-replicated and the
    // offline partitions.
    #[test]
    fn info_lists_brokers_and_troubled_partitions() {
        let broker = |id: i32| BrokerMeta {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
            shard_ports: vec![],
        };
        let partition = |index: i32, leader: i32, isr: Vec<i32>| PartitionMeta {
            partition: index,
            error: 0,
            leader,
            leader_epoch: 2,
            replicas: vec![1, 2, 3],
            isr,
            shard: 0,
        };
        let metadata = MetadataResponse {
            brokers: vec![broker(2), broker(1)],
            controller_id: 2,
            cluster_id: "prod".into(),
            topics: vec![TopicMeta {
                name: "orders".into(),
                error: 0,
                partitions: vec![
                    partition(0, 1, vec![1, 2, 3]),
                    partition(1, 2, vec![2, 1]),
                    partition(2, -1, vec![3]),
                ],
                configs: vec![],
            }],
        };
        let text = info(&metadata);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "cluster prod  controller 2");
        assert_eq!(lines[3], "  1  127.0.0.1:9001  yes");
        assert_eq!(lines[4], "  2  127.0.0.1:9002  yes");
        assert_eq!(lines[5], "  3  -  no");
        assert_eq!(lines[6], "under-replicated partitions: 1");
        assert_eq!(
            lines[7],
            "  orders-1  leader 2  epoch 2  replicas 1,2,3  isr 2,1"
        );
        assert_eq!(lines[8], "offline partitions: 1");
        assert_eq!(
            lines[9],
            "  orders-2  leader none  epoch 2  replicas 1,2,3  isr 3"
        );
        assert_eq!(lines.len(), 10);
    }
}
