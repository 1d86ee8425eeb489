//! What to run: the workload, read from a TOML file and/or command-line flags.
//!
//! The fields follow the OpenMessaging Benchmark's workload files (topics, partitions per topic,
//! message size, producers per topic, subscriptions per topic, consumers per subscription,
//! producer rate, backlog size) plus the producer settings OMB keeps in its driver file (batch
//! bytes, linger, acks, compression). Unknown keys are an error, and so is every value that cannot
//! describe a real run; each error names the field and says what is allowed.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::payload::PAYLOAD_HEADER_BYTES;

/// Most topics one run may create.
pub const TOPICS_MAX: u32 = 10_000;
/// Most partitions per topic one run may create.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 100_000;
/// Most producers per topic.
pub const PRODUCERS_PER_TOPIC_MAX: u32 = 10_000;
/// Most subscriptions (consumer groups) per topic.
pub const SUBSCRIPTIONS_PER_TOPIC_MAX: u32 = 1_000;
/// Most consumers per subscription.
pub const CONSUMERS_PER_SUBSCRIPTION_MAX: u32 = 10_000;
/// Longest linger a producer batch may wait.
pub const LINGER_MS_MAX: u64 = 60_000;
/// Longest warmup or measured phase: a week, so a typo cannot start a run that never ends.
pub const PHASE_S_MAX: f64 = 7.0 * 24.0 * 3600.0;
/// Longest topic name the broker accepts (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Bytes a run-unique topic suffix may add to the workload name (`-` + 8 hex digits + `-` +
/// topic index), kept free so the full topic name stays within [`TOPIC_NAME_BYTES_MAX`].
pub const TOPIC_SUFFIX_BYTES_MAX: usize = 24;

/// Which keys producers attach to messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    /// No key: each producer fills one partition's batch and then moves to the next (the sticky
    /// partitioning Kafka clients use for unkeyed records).
    #[default]
    None,
    /// Keys cycle through a fixed key set, so partitions are hit in turn by key hash.
    RoundRobin,
    /// Every message gets a random key.
    Random,
}

impl fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyDistribution::None => "none",
            KeyDistribution::RoundRobin => "round-robin",
            KeyDistribution::Random => "random",
        })
    }
}

impl std::str::FromStr for KeyDistribution {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(KeyDistribution::None),
            "round-robin" => Ok(KeyDistribution::RoundRobin),
            "random" => Ok(KeyDistribution::Random),
            other => Err(format!(
                "unknown key distribution `{other}`: use none, round-robin or random"
            )),
        }
    }
}

/// How many replicas must hold a batch before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "AcksRepr", into = "String")]
pub enum AcksSetting {
    /// acks=0: the broker sends no response; a send counts as acknowledged once written.
    None,
    /// acks=1: the leader appended it.
    Leader,
    /// acks=all (-1): every in-sync replica has it.
    #[default]
    All,
}

/// The forms `acks` may take in a workload file: `0`, `1`, `-1`, or a word.
#[derive(Deserialize)]
#[serde(untagged)]
enum AcksRepr {
    Number(i64),
    Text(String),
}

impl TryFrom<AcksRepr> for AcksSetting {
    type Error = String;
    fn try_from(repr: AcksRepr) -> Result<Self, String> {
        match repr {
            AcksRepr::Number(number) => number.to_string().parse(),
            AcksRepr::Text(text) => text.parse(),
        }
    }
}

impl std::str::FromStr for AcksSetting {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "0" | "none" => Ok(AcksSetting::None),
            "1" | "leader" => Ok(AcksSetting::Leader),
            "-1" | "all" => Ok(AcksSetting::All),
            other => Err(format!("unknown acks `{other}`: use 0, 1 or all")),
        }
    }
}

impl From<AcksSetting> for String {
    fn from(acks: AcksSetting) -> String {
        acks.to_string()
    }
}

impl fmt::Display for AcksSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcksSetting::None => "0",
            AcksSetting::Leader => "1",
            AcksSetting::All => "all",
        })
    }
}

/// The batch codec producers use. The native client builds `none` and `zstd` batches only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum CompressionSetting {
    /// Records are stored as they are.
    #[default]
    None,
    /// Each batch's records are compressed with zstd.
    Zstd,
}

impl TryFrom<String> for CompressionSetting {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl std::str::FromStr for CompressionSetting {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(CompressionSetting::None),
            "zstd" => Ok(CompressionSetting::Zstd),
            "gzip" | "snappy" | "lz4" => Err(format!(
                "compression `{text}` is not produced by the native client: use none or zstd"
            )),
            other => Err(format!("unknown compression `{other}`: use none or zstd")),
        }
    }
}

impl From<CompressionSetting> for String {
    fn from(compression: CompressionSetting) -> String {
        compression.to_string()
    }
}

impl fmt::Display for CompressionSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompressionSetting::None => "none",
            CompressionSetting::Zstd => "zstd",
        })
    }
}

/// One benchmark: what to create, how to produce and how to consume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Name of the workload; topic names start with it.
    pub name: String,
    /// Number of topics.
    pub topics: u32,
    /// Partitions of each topic.
    pub partitions_per_topic: u32,
    /// Bytes of each message value (the payload, header included).
    pub message_size: usize,
    /// Fraction (0.0..=1.0) of each random payload that zstd can squeeze out; unset means 0.0
    /// (incompressible random bytes). Exclusive with `payload_file`.
    pub compressible_ratio: Option<f64>,
    /// A file whose bytes fill every payload (repeated or cut to `message_size`), as OMB's
    /// `payloadFile`. Exclusive with `compressible_ratio`.
    pub payload_file: Option<PathBuf>,
    /// Which keys messages carry.
    pub keys: KeyDistribution,
    /// Producers per topic; each writes to every partition of its topic.
    pub producers_per_topic: u32,
    /// Subscriptions (consumer groups) per topic; each one reads every message of the topic.
    pub subscriptions_per_topic: u32,
    /// Consumers per subscription; they split the partitions among themselves.
    pub consumers_per_subscription: u32,
    /// Messages per second over all producers together; 0 means as fast as possible.
    pub producer_rate: f64,
    /// Seconds run before measuring (excluded from the aggregate figures).
    pub warmup_s: f64,
    /// Seconds measured (in backlog mode: the longest the drain may take).
    pub duration_s: f64,
    /// Backlog mode when > 0: produce this many bytes with consumers paused, then start the
    /// consumers and measure how fast they drain it.
    pub backlog_bytes: u64,
    /// Largest producer batch in bytes.
    pub batch_bytes: usize,
    /// How long a producer batch may wait for more records before it is sent.
    pub linger_ms: u64,
    /// Acknowledgement level.
    pub acks: AcksSetting,
    /// Batch codec.
    pub compression: CompressionSetting,
    /// Idempotent producers (the default; with the Kafka driver only at acks=all, which
    /// librdkafka requires): a retry never writes a message
    /// twice. Runs with acks=0 are never idempotent (no answers to dedupe by).
    pub idempotence: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            name: "custom".to_string(),
            topics: 1,
            partitions_per_topic: 16,
            message_size: 1024,
            compressible_ratio: None,
            payload_file: None,
            keys: KeyDistribution::None,
            producers_per_topic: 1,
            subscriptions_per_topic: 1,
            consumers_per_subscription: 1,
            producer_rate: 10_000.0,
            warmup_s: 5.0,
            duration_s: 60.0,
            backlog_bytes: 0,
            batch_bytes: 128 * 1024,
            linger_ms: 1,
            acks: AcksSetting::All,
            compression: CompressionSetting::None,
            idempotence: true,
        }
    }
}

/// Settings given as flags; each one that is set replaces the workload file's value.
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(missing_docs)]
pub struct WorkloadOverrides {
    pub name: Option<String>,
    pub topics: Option<u32>,
    pub partitions_per_topic: Option<u32>,
    pub message_size: Option<usize>,
    pub compressible_ratio: Option<f64>,
    pub payload_file: Option<PathBuf>,
    pub keys: Option<KeyDistribution>,
    pub producers_per_topic: Option<u32>,
    pub subscriptions_per_topic: Option<u32>,
    pub consumers_per_subscription: Option<u32>,
    pub producer_rate: Option<f64>,
    pub warmup_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub backlog_bytes: Option<u64>,
    pub batch_bytes: Option<usize>,
    pub linger_ms: Option<u64>,
    pub acks: Option<AcksSetting>,
    pub compression: Option<CompressionSetting>,
    pub idempotence: Option<bool>,
}

/// Broker-side bounds a workload must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadLimits {
    /// Largest message value the broker can take (its record batch limit less batch overhead).
    pub message_bytes_max: usize,
    /// Largest record batch the broker accepts.
    pub batch_bytes_max: usize,
}

/// Why a workload cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The workload file could not be read.
    #[error("cannot read workload file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The workload file is not valid TOML for a workload (unknown key, wrong type, ...).
    #[error("invalid workload file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// A value that cannot describe a run.
    #[error("invalid workload: {field} {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> WorkloadError {
    WorkloadError::Invalid {
        field,
        message: message.into(),
    }
}

impl Workload {
    /// Parses a workload from TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Workload, WorkloadError> {
        toml::from_str(text).map_err(|error| WorkloadError::Parse {
            path: origin.to_path_buf(),
            message: error.to_string().trim_end().to_string(),
        })
    }

    /// Reads and parses a workload file (not yet validated: apply flags, then [`Self::validate`]).
    pub fn from_file(path: &Path) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Workload::from_toml_str(&text, path)
    }

    /// Replaces every field the flags set.
    pub fn apply(&mut self, overrides: &WorkloadOverrides) {
        let o = overrides.clone();
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(value) = o.$field { self.$field = value; } )* };
        }
        take!(
            name,
            topics,
            partitions_per_topic,
            message_size,
            keys,
            producers_per_topic,
            subscriptions_per_topic,
            consumers_per_subscription,
            producer_rate,
            warmup_s,
            duration_s,
            backlog_bytes,
            batch_bytes,
            linger_ms,
            acks,
            compression,
            idempotence
        );
        // A payload source given as a flag replaces the file's source of the other kind too.
        if let Some(ratio) = o.compressible_ratio {
            self.compressible_ratio = Some(ratio);
            self.payload_file = None;
        }
        if let Some(file) = o.payload_file {
            self.payload_file = Some(file);
            self.compressible_ratio = None;
        }
    }

    /// Checks every value; the first problem found is returned with the field it concerns.
    pub fn validate(&self, limits: &WorkloadLimits) -> Result<(), WorkloadError> {
        self.validate_name()?;
        self.validate_shape()?;
        self.validate_payload(limits)?;
        self.validate_timing()?;
        self.validate_producer(limits)
    }

    fn validate_name(&self) -> Result<(), WorkloadError> {
        if self.name.is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.name.len() > TOPIC_NAME_BYTES_MAX - TOPIC_SUFFIX_BYTES_MAX {
            return Err(invalid(
                "name",
                format!(
                    "is {} bytes; at most {} so topic names fit the broker's {TOPIC_NAME_BYTES_MAX}",
                    self.name.len(),
                    TOPIC_NAME_BYTES_MAX - TOPIC_SUFFIX_BYTES_MAX
                ),
            ));
        }
        if let Some(bad) = self.name.chars().find(|c| !is_topic_char(*c)) {
            return Err(invalid(
                "name",
                format!("contains `{bad}`: topic names use only a-z A-Z 0-9 . _ -"),
            ));
        }
        Ok(())
    }

    fn validate_shape(&self) -> Result<(), WorkloadError> {
        check_count("topics", self.topics, 1, TOPICS_MAX)?;
        check_count(
            "partitions_per_topic",
            self.partitions_per_topic,
            1,
            PARTITIONS_PER_TOPIC_MAX,
        )?;
        check_count(
            "producers_per_topic",
            self.producers_per_topic,
            1,
            PRODUCERS_PER_TOPIC_MAX,
        )?;
        check_count(
            "subscriptions_per_topic",
            self.subscriptions_per_topic,
            0,
            SUBSCRIPTIONS_PER_TOPIC_MAX,
        )?;
        if self.subscriptions_per_topic > 0 {
            check_count(
                "consumers_per_subscription",
                self.consumers_per_subscription,
                1,
                CONSUMERS_PER_SUBSCRIPTION_MAX,
            )?;
        }
        Ok(())
    }

    fn validate_payload(&self, limits: &WorkloadLimits) -> Result<(), WorkloadError> {
        if self.message_size == 0 {
            return Err(invalid("message_size", "must be > 0 bytes"));
        }
        if self.message_size < PAYLOAD_HEADER_BYTES {
            return Err(invalid(
                "message_size",
                format!(
                    "is {} bytes; at least {PAYLOAD_HEADER_BYTES} are needed for the send timestamp, \
                     sequence and producer id every message starts with",
                    self.message_size
                ),
            ));
        }
        if self.message_size > limits.message_bytes_max {
            return Err(invalid(
                "message_size",
                format!(
                    "is {} bytes, over the broker limit of {} bytes per message",
                    self.message_size, limits.message_bytes_max
                ),
            ));
        }
        if self.compressible_ratio.is_some() && self.payload_file.is_some() {
            return Err(invalid(
                "compressible_ratio",
                "and payload_file are both set: choose one payload source",
            ));
        }
        if let Some(ratio) = self.compressible_ratio {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(invalid(
                    "compressible_ratio",
                    format!("is {ratio}; it must be within 0.0..=1.0"),
                ));
            }
        }
        if let Some(path) = &self.payload_file {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() && meta.len() > 0 => {}
                Ok(_) => {
                    return Err(invalid(
                        "payload_file",
                        format!("{} is not a non-empty file", path.display()),
                    ))
                }
                Err(error) => {
                    return Err(invalid(
                        "payload_file",
                        format!("{} cannot be read: {error}", path.display()),
                    ))
                }
            }
        }
        Ok(())
    }

    fn validate_timing(&self) -> Result<(), WorkloadError> {
        if !self.producer_rate.is_finite() || self.producer_rate < 0.0 {
            return Err(invalid(
                "producer_rate",
                format!(
                    "is {}; it must be >= 0 messages per second (0 = as fast as possible)",
                    self.producer_rate
                ),
            ));
        }
        if !self.warmup_s.is_finite() || !(0.0..=PHASE_S_MAX).contains(&self.warmup_s) {
            return Err(invalid(
                "warmup_s",
                format!(
                    "is {}; it must be within 0..={PHASE_S_MAX} seconds",
                    self.warmup_s
                ),
            ));
        }
        if !self.duration_s.is_finite() || self.duration_s <= 0.0 || self.duration_s > PHASE_S_MAX {
            return Err(invalid(
                "duration_s",
                format!(
                    "is {}; it must be > 0 and at most {PHASE_S_MAX} seconds",
                    self.duration_s
                ),
            ));
        }
        if self.backlog_bytes > 0 && self.subscriptions_per_topic == 0 {
            return Err(invalid(
                "backlog_bytes",
                "needs subscriptions_per_topic >= 1: backlog mode measures how fast consumers drain it",
            ));
        }
        Ok(())
    }

    fn validate_producer(&self, limits: &WorkloadLimits) -> Result<(), WorkloadError> {
        if self.batch_bytes == 0 {
            return Err(invalid("batch_bytes", "must be > 0 bytes"));
        }
        if self.batch_bytes > limits.batch_bytes_max {
            return Err(invalid(
                "batch_bytes",
                format!(
                    "is {} bytes, over the broker's record batch limit of {} bytes",
                    self.batch_bytes, limits.batch_bytes_max
                ),
            ));
        }
        if self.linger_ms > LINGER_MS_MAX {
            return Err(invalid(
                "linger_ms",
                format!("is {}; at most {LINGER_MS_MAX} ms", self.linger_ms),
            ));
        }
        Ok(())
    }

    /// Producers over all topics.
    pub fn producers_total(&self) -> u32 {
        self.topics * self.producers_per_topic
    }

    /// Consumers over all topics and subscriptions.
    pub fn consumers_total(&self) -> u32 {
        self.topics * self.subscriptions_per_topic * self.consumers_per_subscription
    }

    /// Whether this is a backlog-drain run.
    pub fn is_backlog_mode(&self) -> bool {
        self.backlog_bytes > 0
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

fn check_count(field: &'static str, value: u32, min: u32, max: u32) -> Result<(), WorkloadError> {
    if value < min || value > max {
        return Err(invalid(
            field,
            format!("is {value}; it must be within {min}..={max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WorkloadLimits = WorkloadLimits {
        message_bytes_max: 1_000_000,
        batch_bytes_max: 8 << 20,
    };

    fn parse(text: &str) -> Result<Workload, WorkloadError> {
        let workload = Workload::from_toml_str(text, Path::new("test.toml"))?;
        workload.validate(&LIMITS)?;
        Ok(workload)
    }

    // Proves a complete workload file parses into the values it states, by parsing one that sets
    // every key.
    #[test]
    fn full_file_parses() {
        let workload = parse(
            r#"
            name = "1-topic-16-partitions-1kb"
            topics = 2
            partitions_per_topic = 16
            message_size = 1024
            compressible_ratio = 0.5
            keys = "round-robin"
            producers_per_topic = 3
            subscriptions_per_topic = 2
            consumers_per_subscription = 4
            producer_rate = 50000
            warmup_s = 1.5
            duration_s = 10
            backlog_bytes = 0
            batch_bytes = 131072
            linger_ms = 1
            acks = 1
            compression = "zstd"
            "#,
        )
        .unwrap();
        assert_eq!(workload.topics, 2);
        assert_eq!(workload.keys, KeyDistribution::RoundRobin);
        assert_eq!(workload.acks, AcksSetting::Leader);
        assert_eq!(workload.compression, CompressionSetting::Zstd);
        assert_eq!(workload.producer_rate, 50_000.0);
        assert_eq!(workload.compressible_ratio, Some(0.5));
        assert_eq!(workload.producers_total(), 6);
        assert_eq!(workload.consumers_total(), 16);
        let defaults = parse("").unwrap();
        assert_eq!(defaults, Workload::default());
        assert_eq!(parse("acks = \"all\"").unwrap().acks, AcksSetting::All);
        assert_eq!(parse("acks = -1").unwrap().acks, AcksSetting::All);
        assert_eq!(parse("acks = 0").unwrap().acks, AcksSetting::None);
    }

    // Proves every impossible or unknown value is refused with a message naming the problem, by
    // parsing one bad file per case and checking the error text.
    #[test]
    fn every_error_case_has_its_message() {
        let cases: &[(&str, &str)] = &[
            ("partitions = 4", "unknown field `partitions`"),
            ("partitions_per_topic = 0", "partitions_per_topic is 0"),
            ("partitions_per_topic = -1", "partitions_per_topic"),
            ("partitions_per_topic = \"many\"", "partitions_per_topic"),
            ("topics = 0", "topics is 0"),
            ("message_size = 0", "message_size must be > 0"),
            ("message_size = 10", "at least 20 are needed"),
            ("message_size = 2000000", "over the broker limit"),
            ("producer_rate = -5", "producer_rate is -5"),
            ("producer_rate = nan", "producer_rate is NaN"),
            ("compressible_ratio = 1.5", "within 0.0..=1.0"),
            (
                "compressible_ratio = 0.5\npayload_file = \"/etc/hostname\"",
                "choose one payload source",
            ),
            (
                "payload_file = \"/nonexistent/payload.bin\"",
                "cannot be read",
            ),
            ("producers_per_topic = 0", "producers_per_topic is 0"),
            (
                "consumers_per_subscription = 0",
                "consumers_per_subscription is 0",
            ),
            (
                "subscriptions_per_topic = 0\nbacklog_bytes = 100",
                "backlog_bytes needs subscriptions_per_topic",
            ),
            ("duration_s = 0", "duration_s is 0"),
            ("warmup_s = -1", "warmup_s is -1"),
            ("batch_bytes = 0", "batch_bytes must be > 0"),
            ("batch_bytes = 100000000", "record batch limit"),
            ("linger_ms = 100000", "linger_ms is 100000"),
            ("name = \"\"", "name must not be empty"),
            ("name = \"a b\"", "contains ` `"),
            ("acks = 2", "unknown acks `2`"),
            (
                "compression = \"gzip\"",
                "not produced by the native client",
            ),
            ("compression = \"brotli\"", "unknown compression"),
            ("keys = \"sticky\"", "unknown variant `sticky`"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text).to_string();
            assert!(
                error.contains(expected),
                "for `{text}`: `{error}` lacks `{expected}`"
            );
        }
    }

    // Proves flags override the file and a payload source given by flag replaces the file's
    // other source, by applying overrides to a parsed workload.
    #[test]
    fn flags_override_file() {
        let mut workload =
            parse("partitions_per_topic = 4\ncompressible_ratio = 0.3\nduration_s = 9").unwrap();
        workload.apply(&WorkloadOverrides {
            partitions_per_topic: Some(8),
            payload_file: Some(PathBuf::from("/etc/hostname")),
            acks: Some(AcksSetting::None),
            ..WorkloadOverrides::default()
        });
        assert_eq!(workload.partitions_per_topic, 8);
        assert_eq!(workload.duration_s, 9.0);
        assert_eq!(workload.acks, AcksSetting::None);
        assert_eq!(workload.compressible_ratio, None);
        assert_eq!(workload.payload_file, Some(PathBuf::from("/etc/hostname")));
    }

    // Proves every workload shipped in workloads/ parses and validates, by loading each file.
    #[test]
    fn shipped_workloads_are_valid() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
        let mut seen = 0;
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let workload = Workload::from_file(&path).unwrap();
                workload
                    .validate(&LIMITS)
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
                seen += 1;
            }
        }
        assert!(
            seen >= 4,
            "expected the OMB classics and quickstart in {}",
            directory.display()
        );
    }
}
