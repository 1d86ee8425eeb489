//! Command-line arguments of the client commands, and the parsers of their values.

use clap::{Args, Subcommand, ValueEnum};
use sluice_client::{Acks, Assignor, Compression, SeekTo};

/// Default bootstrap broker: the broker's default native address.
pub const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9192";

/// Where to find the cluster.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ConnectArgs {
    /// Broker(s) to bootstrap from: the native port, comma-separated for several.
    #[arg(
        long,
        env = "SLUICE_BOOTSTRAP",
        default_value = BOOTSTRAP_DEFAULT,
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// How long a request may wait for its answer before the connection is considered broken,
    /// in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub request_timeout_ms: u64,
}

impl ConnectArgs {
    /// The bootstrap addresses, split at commas.
    pub fn bootstrap_list(&self) -> Vec<String> {
        self.bootstrap
            .split(',')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// `sluice topic ...`
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum TopicCommand {
    /// Create a topic.
    Create(TopicCreateArgs),
    /// List every topic, one name per line.
    List(ConnectArgs),
    /// Show a topic's partitions: leader, leader epoch, replicas, in-sync replicas, shard.
    Describe(TopicNameArgs),
    /// Delete a topic and its data.
    Delete(TopicNameArgs),
    /// Move one partition onto other brokers (or cancel its move in progress).
    Reassign(super::reassign::TopicReassignArgs),
    /// Add partitions to a topic (never fewer) and/or change its configs.
    Alter(TopicAlterArgs),
}

/// `sluice topic alter`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct TopicAlterArgs {
    /// Topic name.
    pub name: String,
    /// The partition count the topic should have (more than now). Existing partitions keep
    /// their records and offsets; keys of new writes may map to new partitions.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// A topic setting to set, `key=value`; repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_entry)]
    pub configs: Vec<(String, String)>,
    /// A topic setting to remove (back to the broker default); repeat for several.
    #[arg(long = "delete-config", value_name = "KEY")]
    pub delete_configs: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `sluice topic create`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct TopicCreateArgs {
    /// Topic name: letters, digits, '.', '_' and '-'.
    pub name: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Number of replicas of each partition.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// A topic setting, `key=value`; repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_entry)]
    pub configs: Vec<(String, String)>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A command that names one topic.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct TopicNameArgs {
    /// Topic name.
    pub name: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Batch codec choice.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionArg {
    /// Records as they are.
    None,
    /// Zstandard.
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(choice: CompressionArg) -> Compression {
        match choice {
            CompressionArg::None => Compression::None,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// `sluice produce`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// Write every message to this partition (default: by key hash, or sticky for unkeyed).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Split each line at the first occurrence of this text: the part before is the key, the
    /// rest the value. A line without it is sent whole as the value, with no key.
    #[arg(long, value_name = "SEPARATOR")]
    pub key_separator: Option<String>,
    /// Acknowledgement: 0 (none), 1 (leader) or all.
    #[arg(long, default_value = "all", value_parser = parse_acks, value_name = "0|1|all")]
    pub acks: Acks,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    pub compression: CompressionArg,
    /// A partition's batch is sent when it reaches this many bytes (uncompressed).
    #[arg(long, default_value_t = 256 * 1024)]
    pub batch_bytes: usize,
    /// A batch that is not full is sent this many milliseconds after its first message.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// How long a message may take to be acknowledged, retries included (leader changes and
    /// lost connections are retried until then), in milliseconds. At least linger-ms plus
    /// request-timeout-ms.
    #[arg(long, default_value_t = 120_000, value_name = "MS")]
    pub delivery_timeout_ms: u64,
    /// At-least-once: turn the idempotent producer off, so a retry may write a message twice.
    /// Idempotence (the default) needs acks 1 or all; with acks 0 it is always off.
    #[arg(long)]
    pub no_idempotence: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `sluice consume`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read only this partition (default: all of them).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Where to start: earliest, latest, an offset, or @UNIX_MS for the first message at or
    /// after that time.
    #[arg(
        long,
        default_value = "earliest",
        value_parser = parse_start,
        value_name = "earliest|latest|OFFSET|@UNIX_MS"
    )]
    pub from: SeekTo,
    /// Stop after this many messages. Exits 1 when fewer arrive before --timeout-ms.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop when no message arrived for this many milliseconds (default 5000 without --count;
    /// with --count, wait for the count). Exits 1 when it stops short of --count, or while
    /// fetches were failing (the broker unreachable or without a leader).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Print `partition<TAB>offset<TAB>value` instead of the value alone.
    #[arg(long)]
    pub print_offsets: bool,
    /// Read as a member of this consumer group: only the partitions the group assigns, from
    /// its committed offsets (`--from` applies where it has none: earliest or latest), and
    /// commit what was printed (periodically, on exit and on Ctrl-C).
    #[arg(long, conflicts_with = "partition")]
    pub group: Option<String>,
    /// With --group: the member is removed when the group hears nothing from it for this long.
    #[arg(long, default_value_t = 45_000, requires = "group")]
    pub session_timeout_ms: u64,
    /// With --group: how the group's partitions are assigned.
    #[arg(long, value_enum, default_value_t = AssignorArg::Range, requires = "group")]
    pub assignor: AssignorArg,
    /// With --group: commit what was printed this often, ms.
    #[arg(long, default_value_t = 5_000, requires = "group")]
    pub commit_interval_ms: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A consumer-group assignor.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignorArg {
    /// Consecutive partitions per member (Kafka's range).
    Range,
    /// Partitions dealt in turn (Kafka's roundrobin).
    Roundrobin,
    /// Sticky and incremental (Kafka's cooperative-sticky, KIP-429).
    CooperativeSticky,
}

impl From<AssignorArg> for Assignor {
    fn from(choice: AssignorArg) -> Assignor {
        match choice {
            AssignorArg::Range => Assignor::Range,
            AssignorArg::Roundrobin => Assignor::RoundRobin,
            AssignorArg::CooperativeSticky => Assignor::CooperativeSticky,
        }
    }
}

/// `sluice group ...` (the shape of Kafka's consumer-groups tool).
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    /// List every consumer group, one name per line.
    List(ConnectArgs),
    /// Show a group's state and, per partition, its committed offset, the log end, the lag and
    /// the member that owns it.
    Describe(GroupNameArgs),
    /// Set a group's committed offsets of a topic (refused while the group has members).
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group and its committed offsets (refused while it has members).
    Delete(GroupNameArgs),
}

/// A command that names one group.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct GroupNameArgs {
    /// The group.
    pub group: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `sluice group reset-offsets`
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
pub struct ResetOffsetsArgs {
    /// The group.
    pub group: String,
    /// The topic whose offsets are set.
    #[arg(long)]
    pub topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long)]
    pub partition: Option<i32>,
    /// The first offset each partition still holds.
    #[arg(long, group = "target")]
    pub to_earliest: bool,
    /// The log end: skip everything produced so far.
    #[arg(long, group = "target")]
    pub to_latest: bool,
    /// This offset (clamped to the partition's log start and end).
    #[arg(long, group = "target", value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// The first message at or after this time, RFC 3339 (2026-12-01T00:00:00Z).
    #[arg(long, group = "target", value_name = "DATETIME", value_parser = parse_datetime_ms)]
    pub to_datetime: Option<i64>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Parses an RFC 3339 date-time (`2026-12-01T00:00:00Z`, fractional seconds and a `+HH:MM`
/// offset allowed) into Unix milliseconds.
pub fn parse_datetime_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an RFC 3339 date-time like 2026-12-01T00:00:00Z");
    let (date, time) = text.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let mut date_parts = date.splitn(3, '-');
    let field = |parts: &mut std::str::SplitN<'_, char>| -> Result<i64, String> {
        parts
            .next()
            .and_then(|part| part.parse().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (
        field(&mut date_parts)?,
        field(&mut date_parts)?,
        field(&mut date_parts)?,
    );
    let (clock, offset_minutes) = split_zone(time).ok_or_else(bad)?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = hms.splitn(3, ':');
    let (hour, minute, second) = (
        field(&mut clock_parts)?,
        field(&mut clock_parts)?,
        field(&mut clock_parts)?,
    );
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..=60).contains(&second)
        && fraction.chars().all(|digit| digit.is_ascii_digit());
    if !valid {
        return Err(bad());
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().map_err(|_| bad())?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Splits the zone off a time of day: `Z` or `±HH:MM`, as minutes east of UTC.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let position = time.rfind(['+', '-'])?;
    let (clock, zone) = time.split_at(position);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone[1..].split_once(':')?;
    let minutes = hours.parse::<i64>().ok()? * 60 + minutes.parse::<i64>().ok()?;
    Some((clock, sign * minutes))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses `--acks`: 0, 1, all (or -1).
pub fn parse_acks(text: &str) -> Result<Acks, String> {
    match text {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
    }
}

/// Parses `--from`: earliest, latest, OFFSET or @UNIX_MS.
pub fn parse_start(text: &str) -> Result<SeekTo, String> {
    match text {
        "earliest" => return Ok(SeekTo::Earliest),
        "latest" => return Ok(SeekTo::Latest),
        _ => {}
    }
    if let Some(timestamp) = text.strip_prefix('@') {
        return match timestamp.parse::<i64>() {
            Ok(timestamp_ms) if timestamp_ms >= 0 => Ok(SeekTo::Timestamp(timestamp_ms)),
            _ => Err(format!("{text:?} is not @ followed by Unix milliseconds")),
        };
    }
    match text.parse::<i64>() {
        Ok(offset) if offset >= 0 => Ok(SeekTo::Offset(offset)),
        _ => Err(format!(
            "{text:?} is not earliest, latest, an offset or @UNIX_MS"
        )),
    }
}

/// Parses `--config key=value`.
pub fn parse_config_entry(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?} is not key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ClientCommand;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    // Proves every --from form parses to its seek target and bad forms are refused.
    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("earliest"), Ok(SeekTo::Earliest));
        assert_eq!(parse_start("latest"), Ok(SeekTo::Latest));
        assert_eq!(parse_start("42"), Ok(SeekTo::Offset(42)));
        assert_eq!(
            parse_start("@1700000000000"),
            Ok(SeekTo::Timestamp(1_700_000_000_000))
        );
        for bad in ["-1", "@", "@x", "first", ""] {
            assert!(parse_start(bad).is_err(), "{bad:?} was accepted");
        }
    }

    // Proves RFC 3339 date-times convert to Unix milliseconds (UTC, offsets, fractions) and
    // that malformed ones are refused.
    #[test]
    fn datetimes_parse() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_datetime_ms("2026-12-01T00:00:00Z"),
            Ok(1_796_083_200_000)
        );
        assert_eq!(
            parse_datetime_ms("2000-02-29T12:30:15.250Z"),
            Ok(951_827_415_250)
        );
        assert_eq!(
            parse_datetime_ms("2026-12-01T01:00:00+01:00"),
            Ok(1_796_083_200_000)
        );
        for bad in [
            "2026-12-01",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-12-01T00:00Z",
        ] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad:?} was accepted");
        }
    }

    // Proves the group command lines of the issue parse: consume with --group, and every
    // `sluice group` subcommand, with exactly one reset target.
    #[test]
    fn group_command_lines_parse() {
        let consume = parse(&[
            "consume", "t", "--group", "g", "--from", "latest", "--count", "5",
        ])
        .unwrap();
        let ClientCommand::Consume(consume) = consume else {
            panic!("not a consume: {consume:?}");
        };
        assert_eq!(consume.group.as_deref(), Some("g"));
        assert_eq!(consume.from, SeekTo::Latest);
        assert!(parse(&["consume", "t", "--group", "g", "--partition", "1"]).is_err());
        assert!(
            parse(&["consume", "t", "--session-timeout-ms", "6000"]).is_err(),
            "needs --group"
        );
        for line in [
            &["group", "list"][..],
            &["group", "describe", "g"],
            &["group", "delete", "g"],
            &[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-earliest",
            ],
            &[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-offset",
                "7",
                "--partition",
                "2",
            ],
            &[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-datetime",
                "2026-12-01T00:00:00Z",
            ],
        ] {
            assert!(parse(line).is_ok(), "{line:?}");
        }
        assert!(
            parse(&["group", "reset-offsets", "g", "--topic", "t"]).is_err(),
            "no target"
        );
        assert!(parse(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
    }

    // Proves --acks and --config accept exactly their documented forms.
    #[test]
    fn acks_and_configs_parse() {
        assert_eq!(parse_acks("0"), Ok(Acks::None));
        assert_eq!(parse_acks("1"), Ok(Acks::Leader));
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert!(parse_acks("2").is_err());
        assert_eq!(
            parse_config_entry("retention.ms=1000"),
            Ok(("retention.ms".to_string(), "1000".to_string()))
        );
        assert_eq!(
            parse_config_entry("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert!(parse_config_entry("novalue").is_err());
        assert!(parse_config_entry("=x").is_err());
    }

    // Proves the command lines of the brief parse, with their defaults, and that the bootstrap
    // flag takes several comma-separated brokers.
    #[test]
    fn command_lines_parse() {
        let create = parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "8",
            "--config",
            "retention.ms=60000",
            "--bootstrap",
            "h:1,h:2",
        ])
        .unwrap();
        let ClientCommand::Topic(TopicCommand::Create(create)) = create else {
            panic!("not a topic create: {create:?}");
        };
        assert_eq!(create.partitions, 8);
        assert_eq!(create.replication_factor, 1);
        assert_eq!(
            create.configs,
            vec![("retention.ms".to_string(), "60000".to_string())]
        );
        assert_eq!(
            create.connect.bootstrap_list(),
            vec!["h:1".to_string(), "h:2".to_string()]
        );

        let produce = parse(&[
            "produce",
            "t",
            "--acks",
            "1",
            "--compression",
            "none",
            "--key-separator",
            ":",
        ])
        .unwrap();
        let ClientCommand::Produce(produce) = produce else {
            panic!("not a produce: {produce:?}");
        };
        assert_eq!(produce.acks, Acks::Leader);
        assert_eq!(produce.compression, CompressionArg::None);
        assert_eq!(produce.key_separator.as_deref(), Some(":"));
        assert_eq!(produce.linger_ms, 5);

        let consume = parse(&[
            "consume",
            "t",
            "--from",
            "@5",
            "--count",
            "3",
            "--print-offsets",
        ])
        .unwrap();
        let ClientCommand::Consume(consume) = consume else {
            panic!("not a consume: {consume:?}");
        };
        assert_eq!(consume.from, SeekTo::Timestamp(5));
        assert_eq!(consume.count, Some(3));
        assert!(consume.print_offsets);
        assert!(parse(&["consume", "t", "--from", "yesterday"]).is_err());
        assert!(
            parse(&["topic", "describe"]).is_err(),
            "describe needs a name"
        );
    }
}
