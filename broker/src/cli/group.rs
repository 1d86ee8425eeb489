//! `sluice group list|describe|reset-offsets|delete`: the shape and column names of Kafka's
//! `kafka-consumer-groups.sh`, so operators feel at home.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::{bail, Context as _};
use sluice_client::{Client, ClientError, GroupAdmin, GroupInfo, OffsetSpec};
use sluice_net::api::ErrorCode;

use super::args::{GroupCommand, ResetOffsetsArgs};
use super::connect;

/// The columns of `group describe`, as Kafka's tool names them.
pub const DESCRIBE_HEADER: [&str; 9] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];

/// Runs one group command.
pub(crate) async fn run(command: GroupCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        GroupCommand::List(connect_args) => {
            let client = connect(&connect_args).await?;
            let groups = GroupAdmin::new(client)
                .list_groups()
                .await
                .context("cannot list groups")?;
            for group in groups {
                writeln!(out, "{}", group.group_id)?;
            }
        }
        GroupCommand::Describe(args) => {
            let client = connect(&args.connect).await?;
            let text = describe(&client, &args.group).await?;
            out.write_all(text.as_bytes())?;
        }
        GroupCommand::ResetOffsets(args) => {
            let client = connect(&args.connect).await?;
            let text = reset_offsets(&client, &args).await?;
            out.write_all(text.as_bytes())?;
        }
        GroupCommand::Delete(args) => {
            let client = connect(&args.connect).await?;
            GroupAdmin::new(client)
                .delete_group(&args.group)
                .await
                .map_err(|error| explain(error, &args.group))
                .with_context(|| format!("cannot delete group {}", args.group))?;
            writeln!(out, "deleted group {}", args.group)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Adds what an operator should do to the group errors that have an obvious remedy.
fn explain(error: ClientError, group: &str) -> anyhow::Error {
    let hint = match &error {
        ClientError::Broker {
            code: ErrorCode::NonEmptyGroup,
            ..
        } => Some(format!(
            "group {group} has active members; stop its consumers first"
        )),
        ClientError::Broker {
            code: ErrorCode::GroupIdNotFound,
            ..
        } => Some(format!("group {group} does not exist")),
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::Error::new(error).context(hint),
        None => anyhow::Error::new(error),
    }
}

/// One row of `group describe`.
struct Row {
    topic: String,
    partition: i32,
    current: Option<i64>,
    log_end: Option<i64>,
    owner: Option<(String, String, String)>,
}

/// The state line and the table of `group describe`.
async fn describe(client: &Rc<Client>, group: &str) -> anyhow::Result<String> {
    let admin = GroupAdmin::new(client.clone());
    let info = admin
        .describe_group(group)
        .await
        .map_err(|error| explain(error, group))
        .with_context(|| format!("cannot describe group {group}"))?;
    let committed = admin
        .committed_offsets(group, None)
        .await
        .with_context(|| format!("cannot read the committed offsets of group {group}"))?;
    let mut rows: BTreeMap<(String, i32), Row> = BTreeMap::new();
    for offset in committed.into_iter().filter(|offset| offset.offset >= 0) {
        rows.insert(
            (offset.topic.clone(), offset.partition),
            Row {
                topic: offset.topic,
                partition: offset.partition,
                current: Some(offset.offset),
                log_end: None,
                owner: None,
            },
        );
    }
    for member in &info.members {
        for (topic, partition) in &member.assignment {
            let row = rows
                .entry((topic.clone(), *partition))
                .or_insert_with(|| Row {
                    topic: topic.clone(),
                    partition: *partition,
                    current: None,
                    log_end: None,
                    owner: None,
                });
            row.owner = Some((
                member.member_id.clone(),
                member.client_host.clone(),
                member.client_id.clone(),
            ));
        }
    }
    for row in rows.values_mut() {
        row.log_end = client
            .list_offset(&row.topic, row.partition, OffsetSpec::Latest)
            .await
            .ok();
    }
    Ok(render_describe(&info, rows.into_values().collect()))
}

fn render_describe(info: &GroupInfo, rows: Vec<Row>) -> String {
    let members = info.members.len();
    let mut text = format!(
        "Consumer group '{}' is {} (generation {}, assignor {}, {members} member{}).\n\n",
        info.group_id,
        info.state,
        info.generation_id,
        if info.protocol.is_empty() {
            "-"
        } else {
            &info.protocol
        },
        if members == 1 { "" } else { "s" },
    );
    let dash = || "-".to_string();
    let mut table = vec![DESCRIBE_HEADER
        .iter()
        .map(|name| name.to_string())
        .collect::<Vec<_>>()];
    for row in rows {
        let lag = match (row.current, row.log_end) {
            (Some(current), Some(end)) => (end - current).max(0).to_string(),
            _ => dash(),
        };
        let (member, host, client_id) = row.owner.unwrap_or_else(|| (dash(), dash(), dash()));
        table.push(vec![
            info.group_id.clone(),
            row.topic,
            row.partition.to_string(),
            row.current.map_or_else(dash, |offset| offset.to_string()),
            row.log_end.map_or_else(dash, |offset| offset.to_string()),
            lag,
            member,
            host,
            client_id,
        ]);
    }
    text.push_str(&align(&table));
    text
}

/// Left-aligned columns separated by two spaces.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Sets the group's committed offsets of a topic; refused while the group has members.
async fn reset_offsets(client: &Rc<Client>, args: &ResetOffsetsArgs) -> anyhow::Result<String> {
    let admin = GroupAdmin::new(client.clone());
    match admin.describe_group(&args.group).await {
        Ok(info) if !info.members.is_empty() => bail!(
            "group {} has {} active member(s); reset-offsets needs an inactive group (stop its consumers first)",
            args.group,
            info.members.len()
        ),
        Ok(_) | Err(ClientError::Broker { code: ErrorCode::GroupIdNotFound, .. }) => {}
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("cannot describe group {}", args.group)))
        }
    }
    let topic = client
        .describe_topic(&args.topic)
        .await
        .with_context(|| format!("cannot read topic {}", args.topic))?;
    let partitions: Vec<i32> = match args.partition {
        Some(partition)
            if topic
                .partitions
                .iter()
                .any(|meta| meta.partition == partition) =>
        {
            vec![partition]
        }
        Some(partition) => bail!("topic {} has no partition {partition}", args.topic),
        None => topic.partitions.iter().map(|meta| meta.partition).collect(),
    };
    let mut targets = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let offset = target_offset(client, args, partition)
            .await
            .with_context(|| {
                format!(
                    "cannot find the target offset of {}-{partition}",
                    args.topic
                )
            })?;
        targets.push((args.topic.clone(), partition, offset));
    }
    admin
        .commit_offsets(&args.group, &targets)
        .await
        .map_err(|error| explain(error, &args.group))
        .with_context(|| format!("cannot set the offsets of group {}", args.group))?;
    let mut table = vec![vec![
        "GROUP".to_string(),
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "NEW-OFFSET".to_string(),
    ]];
    for (topic, partition, offset) in targets {
        table.push(vec![
            args.group.clone(),
            topic,
            partition.to_string(),
            offset.to_string(),
        ]);
    }
    Ok(align(&table))
}

/// The offset one partition is reset to.
async fn target_offset(
    client: &Client,
    args: &ResetOffsetsArgs,
    partition: i32,
) -> Result<i64, ClientError> {
    let topic = &args.topic;
    if args.to_earliest {
        return client
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await;
    }
    if let Some(offset) = args.to_offset {
        let earliest = client
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await?;
        let latest = client
            .list_offset(topic, partition, OffsetSpec::Latest)
            .await?;
        return Ok(offset.clamp(earliest, latest));
    }
    if let Some(timestamp_ms) = args.to_datetime {
        let found = client
            .list_offset(topic, partition, OffsetSpec::Timestamp(timestamp_ms))
            .await?;
        if found >= 0 {
            return Ok(found);
        }
    }
    // --to-latest, or no message at or after the date-time: the log end.
    client
        .list_offset(topic, partition, OffsetSpec::Latest)
        .await
}
