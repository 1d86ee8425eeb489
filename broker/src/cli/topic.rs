//! `sluice topic create|list|describe|delete|reassign`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use sluice_net::messages::TopicMeta;

use super::args::{TopicAlterArgs, TopicCommand};
use super::connect;

/// Runs one topic command.
pub(crate) async fn run(command: TopicCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        TopicCommand::Create(args) => {
            let client = connect(&args.connect).await?;
            client
                .create_topic(
                    &args.name,
                    args.partitions,
                    args.replication_factor,
                    args.configs,
                )
                .await
                .with_context(|| format!("cannot create topic {}", args.name))?;
            writeln!(
                out,
                "created topic {} ({} partitions, replication factor {})",
                args.name, args.partitions, args.replication_factor
            )?;
        }
        TopicCommand::List(connect_args) => {
            let client = connect(&connect_args).await?;
            let topics = client.list_topics().await.context("cannot list topics")?;
            for topic in topics {
                writeln!(out, "{}", topic.name)?;
            }
        }
        TopicCommand::Describe(args) => {
            let client = connect(&args.connect).await?;
            let topic = client
                .describe_topic(&args.name)
                .await
                .with_context(|| format!("cannot describe topic {}", args.name))?;
            out.write_all(describe(&topic).as_bytes())?;
        }
        TopicCommand::Reassign(args) => return super::reassign::topic_reassign(args).await,
        TopicCommand::Delete(args) => {
            let client = connect(&args.connect).await?;
            client
                .delete_topic(&args.name)
                .await
                .with_context(|| format!("cannot delete topic {}", args.name))?;
            writeln!(out, "deleted topic {}", args.name)?;
        }
        TopicCommand::Alter(args) => alter(args, &mut out).await?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `topic alter`: configs first (so a refused config leaves the partition count alone too),
/// then the partition count.
async fn alter(args: TopicAlterArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let changes_configs = !args.configs.is_empty() || !args.delete_configs.is_empty();
    if args.partitions.is_none() && !changes_configs {
        anyhow::bail!(
            "nothing to change: give --partitions N, --config KEY=VALUE or --delete-config KEY"
        );
    }
    let client = connect(&args.connect).await?;
    if let Some(count) = args.partitions {
        let topic = client
            .describe_topic(&args.name)
            .await
            .with_context(|| format!("cannot alter topic {}", args.name))?;
        let now = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if count <= now {
            anyhow::bail!(
                "cannot alter topic {}: it has {now} partitions; --partitions must be more \
                 (partitions can be added, never removed)",
                args.name
            );
        }
    }
    if changes_configs {
        client
            .alter_topic_configs(
                &args.name,
                args.configs.clone(),
                args.delete_configs.clone(),
            )
            .await
            .with_context(|| format!("cannot alter the configs of topic {}", args.name))?;
        writeln!(out, "altered the configs of topic {}", args.name)?;
    }
    if let Some(count) = args.partitions {
        client
            .create_partitions(&args.name, count)
            .await
            .with_context(|| format!("cannot add partitions to topic {}", args.name))?;
        writeln!(out, "topic {} has {count} partitions now", args.name)?;
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The text of `topic describe`: a summary line, the configs, and one aligned row per
/// partition (partition, leader, epoch, replicas, isr, shard).
pub(crate) fn describe(topic: &TopicMeta) -> String {
    let replication_factor = topic
        .partitions
        .first()
        .map_or(0, |partition| partition.replicas.len());
    let mut text = format!(
        "topic {}  partitions {}  replication-factor {}\n",
        topic.name,
        topic.partitions.len(),
        replication_factor
    );
    if !topic.configs.is_empty() {
        let configs: Vec<String> = topic
            .configs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        text.push_str(&format!("configs {}\n", configs.join(" ")));
    }
    let rows: Vec<[String; 6]> = topic
        .partitions
        .iter()
        .map(|partition| {
            [
                partition.partition.to_string(),
                partition.leader.to_string(),
                partition.leader_epoch.to_string(),
                join(&partition.replicas),
                join(&partition.isr),
                partition.shard.to_string(),
            ]
        })
        .collect();
    let header = ["partition", "leader", "epoch", "replicas", "isr", "shard"].map(str::to_string);
    let mut widths = header.clone().map(|title| title.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::messages::PartitionMeta;

    // Proves `topic describe` prints one aligned row per partition with leader, epoch,
    // replicas, ISR and shard, under a header, after a summary and the configs.
    #[test]
    fn describe_lists_every_partition() {
        let partition = |index: i32, shard: u32| PartitionMeta {
            partition: index,
            error: 0,
            leader: 0,
            leader_epoch: 3,
            replicas: vec![0, 1],
            isr: vec![0],
            shard,
        };
        let topic = TopicMeta {
            name: "orders".into(),
            error: 0,
            partitions: vec![partition(0, 0), partition(1, 1), partition(10, 0)],
            configs: vec![("retention.ms".into(), "1000".into())],
        };
        let text = describe(&topic);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "topic orders  partitions 3  replication-factor 2");
        assert_eq!(lines[1], "configs retention.ms=1000");
        assert_eq!(lines[2], "partition  leader  epoch  replicas  isr  shard");
        assert_eq!(lines[3], "0          0       3      0,1       0    0");
        assert_eq!(lines[5], "10         0       3      0,1       0    0");
        assert_eq!(lines.len(), 6);
    }
}
