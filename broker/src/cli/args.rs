//! Command-line arguments of the client commands, and the parsers of their values.

use clap::{Args, Subcommand, ValueEnum};
use sluice_client::{Acks, Compression, SeekTo};

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
    #[command(flatten)]
    pub connect: ConnectArgs,
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
