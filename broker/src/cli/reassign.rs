//! `sluice topic reassign`, `sluice cluster rebalance` and `sluice cluster decommission`: plans
//! made here from one Metadata answer (see `cluster::rebalance`), submitted with
//! AlterPartitionReassignments, and followed with ListPartitionReassignments until every moved
//! partition is done (the brokers move the data; this only watches).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use sluice_client::Client;
use sluice_net::messages::{MetadataResponse, OngoingReassignment, ReassignPartition};
use sluice_net::ErrorCode;

use super::args::ConnectArgs;
use super::connect;
use crate::cluster::rebalance::{self, PartitionReplicas, PlannedMove};

/// Pause between two progress reads while waiting for reassignments, milliseconds.
const PROGRESS_POLL_MS: u64 = 1_000;

/// Default bound on waiting for reassignments to finish, seconds.
const WAIT_TIMEOUT_S_DEFAULT: u64 = 3_600;

/// `sluice topic reassign`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct TopicReassignArgs {
    /// Topic name.
    pub name: String,
    /// The partition to move.
    #[arg(long)]
    pub partition: i32,
    /// The target replicas, preferred leader first: broker ids separated by commas.
    #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
    pub replicas: Vec<i32>,
    /// Cancel the partition's reassignment in progress (back to its original replicas).
    #[arg(long, conflicts_with = "replicas")]
    pub cancel: bool,
    /// Wait until the move is done, showing progress.
    #[arg(long)]
    pub wait: bool,
    /// Longest wait with --wait, seconds.
    #[arg(long, default_value_t = WAIT_TIMEOUT_S_DEFAULT)]
    pub timeout_s: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `sluice cluster rebalance`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RebalanceArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Longest wait for the moves to finish, seconds.
    #[arg(long, default_value_t = WAIT_TIMEOUT_S_DEFAULT)]
    pub timeout_s: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `sluice cluster decommission`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DecommissionArgs {
    /// The broker to empty.
    pub broker: i32,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Longest wait for the moves to finish, seconds.
    #[arg(long, default_value_t = WAIT_TIMEOUT_S_DEFAULT)]
    pub timeout_s: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// `sluice topic reassign`.
pub(crate) async fn topic_reassign(args: TopicReassignArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.connect).await?;
    let replicas = (!args.cancel).then(|| args.replicas.clone());
    let request = ReassignPartition {
        topic: args.name.clone(),
        partition: args.partition,
        replicas,
    };
    submit(&client, vec![request]).await?;
    let mut out = std::io::stdout().lock();
    if args.cancel {
        writeln!(
            out,
            "cancelled the reassignment of {}-{}",
            args.name, args.partition
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "reassignment of {}-{} to {} submitted",
        args.name,
        args.partition,
        join(&args.replicas)
    )?;
    drop(out);
    if args.wait {
        let moving = BTreeSet::from([(args.name, args.partition)]);
        wait_done(&client, &moving, Duration::from_secs(args.timeout_s)).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits `requests`; fails naming every refused partition and the broker's reason.
async fn submit(client: &Client, requests: Vec<ReassignPartition>) -> anyhow::Result<()> {
    let results = client
        .alter_partition_reassignments(requests)
        .await
        .context("cannot submit the reassignment")?;
    let refused: Vec<String> = results
        .iter()
        .filter(|result| result.error != ErrorCode::None.code())
        .map(|result| {
            let code = ErrorCode::from_i16(result.error)
                .map_or_else(|| result.error.to_string(), |code| format!("{code:?}"));
            format!(
                "{}-{}: {code}: {}",
                result.topic,
                result.partition,
                result.message.clone().unwrap_or_default()
            )
        })
        .collect();
    if !refused.is_empty() {
        bail!("reassignment refused:\n  {}", refused.join("\n  "));
    }
    Ok(())
}

/// Polls the reassignments in progress until none of `moving` is left, printing one progress
/// line per poll.
async fn wait_done(
    client: &Client,
    moving: &BTreeSet<(String, i32)>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ongoing = client
            .list_partition_reassignments()
            .await
            .context("cannot read the reassignments in progress")?;
        let left: Vec<&OngoingReassignment> = ongoing
            .iter()
            .filter(|r| moving.contains(&(r.topic.clone(), r.partition)))
            .collect();
        let mut out = std::io::stdout().lock();
        if left.is_empty() {
            writeln!(out, "done: {} partitions moved", moving.len())?;
            return Ok(());
        }
        let catching_up: Vec<String> = left
            .iter()
            .map(|r| {
                format!(
                    "{}-{} (catching up: {}; {} left)",
                    r.topic,
                    r.partition,
                    join(&r.catching_up),
                    bytes_left(r.bytes_remaining)
                )
            })
            .collect();
        writeln!(
            out,
            "{} of {} partitions moved; in progress: {}",
            moving.len() - left.len(),
            moving.len(),
            catching_up.join(", ")
        )?;
        drop(out);
        if Instant::now() >= deadline {
            bail!("reassignments still in progress after {} s; they continue in the cluster (see `sluice cluster info`)", timeout.as_secs());
        }
        glommio::timer::sleep(Duration::from_millis(PROGRESS_POLL_MS)).await;
    }
}

/// Every partition's replicas and the live brokers, from one Metadata answer.
fn layout(metadata: &MetadataResponse) -> (BTreeSet<i32>, Vec<PartitionReplicas>) {
    let live = metadata
        .brokers
        .iter()
        .map(|broker| broker.node_id)
        .collect();
    let partitions = metadata
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| PartitionReplicas {
                topic: topic.name.clone(),
                partition: partition.partition,
                replicas: partition.replicas.clone(),
            })
        })
        .collect();
    (live, partitions)
}

/// Reads the layout, refusing while reassignments are in progress (the metadata then shows
/// replica sets mid-move).
async fn current_layout(
    client: &Rc<Client>,
) -> anyhow::Result<(BTreeSet<i32>, Vec<PartitionReplicas>)> {
    let ongoing = client
        .list_partition_reassignments()
        .await
        .context("cannot read the reassignments in progress")?;
    if let Some(first) = ongoing.first() {
        bail!(
            "{} reassignments are in progress (first: {}-{}); wait for them or cancel them first",
            ongoing.len(),
            first.topic,
            first.partition
        );
    }
    let metadata = client
        .metadata(None)
        .await
        .context("cannot read the cluster metadata")?;
    Ok(layout(&metadata))
}

fn print_plan(plan: &[PlannedMove]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "plan: {} partitions to move", plan.len())?;
    for planned in plan {
        writeln!(
            out,
            "  {}-{}  {} -> {}",
            planned.topic,
            planned.partition,
            join(&planned.from),
            join(&planned.target)
        )?;
    }
    Ok(())
}

/// Prints `plan`, and unless `dry_run` submits it and waits for it to finish.
async fn execute(
    client: &Client,
    plan: Vec<PlannedMove>,
    dry_run: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    print_plan(&plan)?;
    if dry_run || plan.is_empty() {
        return Ok(());
    }
    let moving: BTreeSet<(String, i32)> = plan
        .iter()
        .map(|planned| (planned.topic.clone(), planned.partition))
        .collect();
    let requests = plan
        .into_iter()
        .map(|planned| ReassignPartition {
            topic: planned.topic,
            partition: planned.partition,
            replicas: Some(planned.target),
        })
        .collect();
    submit(client, requests).await?;
    wait_done(client, &moving, timeout).await
}

/// `sluice cluster rebalance`.
pub(crate) async fn cluster_rebalance(args: RebalanceArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.connect).await?;
    let (live, partitions) = current_layout(&client).await?;
    let plan = rebalance::rebalance(&live, &partitions).context("cannot plan a rebalance")?;
    execute(
        &client,
        plan,
        args.dry_run,
        Duration::from_secs(args.timeout_s),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice cluster decommission`.
pub(crate) async fn cluster_decommission(args: DecommissionArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.connect).await?;
    let (live, partitions) = current_layout(&client).await?;
    let plan = rebalance::decommission(&live, args.broker, &partitions)
        .with_context(|| format!("cannot move every replica off broker {}", args.broker))?;
    execute(
        &client,
        plan,
        args.dry_run,
        Duration::from_secs(args.timeout_s),
    )
    .await?;
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let metadata = client
        .metadata(None)
        .await
        .context("cannot read the cluster metadata")?;
    let (_, after) = layout(&metadata);
    if let Some(left) = after.iter().find(|p| p.replicas.contains(&args.broker)) {
        bail!(
            "broker {} still holds a replica of {}-{}; run decommission again",
            args.broker,
            left.topic,
            left.partition
        );
    }
    writeln!(
        std::io::stdout().lock(),
        "broker {} holds no replicas; it can be stopped",
        args.broker
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The reassignments section of `cluster info`.
pub(crate) fn info_section(ongoing: &[OngoingReassignment]) -> String {
    let mut text = format!("reassignments in progress: {}\n", ongoing.len());
    for reassignment in ongoing {
        text.push_str(&format!(
            "  {}-{}  replicas {}  target {}  adding {}  removing {}  catching up {}  left {}\n",
            reassignment.topic,
            reassignment.partition,
            join(&reassignment.replicas),
            join(&reassignment.target),
            join(&reassignment.adding),
            join(&reassignment.removing),
            join(&reassignment.catching_up),
            bytes_left(reassignment.bytes_remaining)
        ));
    }
    text
}

/// Bytes left of a move as people read them (`unknown` for -1).
fn bytes_left(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let Ok(mut value) = u64::try_from(bytes) else {
        return "unknown".to_string();
    };
    let mut unit = 0;
    let mut tenths = 0;
    while value >= 1024 && unit + 1 < UNITS.len() {
        tenths = (value % 1024) * 10 / 1024;
        value /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{value} B");
    }
    format!("{value}.{tenths} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves bytes left read as people expect: exact bytes, one decimal above a KiB, and
    // "unknown" for a move whose brokers did not report.
    #[test]
    fn bytes_left_reads_naturally() {
        assert_eq!(bytes_left(0), "0 B");
        assert_eq!(bytes_left(1023), "1023 B");
        assert_eq!(bytes_left(1536), "1.5 KiB");
        assert_eq!(bytes_left(5 << 20), "5.0 MiB");
        assert_eq!(bytes_left(3 << 40), "3072.0 GiB");
        assert_eq!(bytes_left(-1), "unknown");
    }
}
