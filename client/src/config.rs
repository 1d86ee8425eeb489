//! Settings of the client, the producer and the consumer, with their defaults.

use sluice_storage::batch::Compression;

use crate::error::ClientError;

/// How to reach the cluster and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Brokers to ask for the cluster's metadata first, as `host:port` of their native port.
    pub bootstrap: Vec<String>,
    /// How long a request may wait for its response before the connection is considered
    /// broken, in milliseconds (long-polling fetches get their wait time on top).
    pub request_timeout_ms: u64,
    /// Largest frame accepted from a broker, in bytes.
    pub frame_bytes_max: usize,
    /// Connect to the shard that owns each partition (its own port from the metadata), so a
    /// request never hops between cores on the broker. Off: everything goes to the broker's
    /// shared native port.
    pub shard_aware: bool,
    /// How many times a metadata, admin or offset request failing with a retriable error is
    /// retried. Produce retries are bounded by `ProducerConfig::delivery_timeout_ms` instead,
    /// and a consumer retries its fetches for as long as it polls.
    pub retries_max: u32,
    /// Wait before the first retry, in milliseconds; doubled for every further retry.
    pub retry_backoff_ms: u64,
    /// Longest wait between two retries, in milliseconds (Kafka's `retry.backoff.max.ms`).
    pub retry_backoff_ms_max: u64,
    /// How long opening a TCP connection may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest the cached metadata is kept without a refresh, in milliseconds (Kafka's
    /// `metadata.max.age.ms`): an idle client still learns of new brokers, moved leaders and
    /// added partitions within this time, not only when a request fails.
    pub metadata_max_age_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: vec!["127.0.0.1:9192".to_string()],
            request_timeout_ms: 30_000,
            frame_bytes_max: 64 * 1024 * 1024,
            shard_aware: true,
            retries_max: 5,
            retry_backoff_ms: 100,
            retry_backoff_ms_max: 1_000,
            connect_timeout_ms: 5_000,
            metadata_max_age_ms: 300_000,
        }
    }
}

impl ClientConfig {
    /// Checks the settings that would make the client misbehave rather than fail clearly.
    pub fn validate(&self) -> Result<(), ClientError> {
        let problem = if self.bootstrap.is_empty() {
            Some("bootstrap needs at least one host:port")
        } else if self.request_timeout_ms == 0 {
            Some("request_timeout_ms must be positive")
        } else if self.connect_timeout_ms == 0 {
            Some("connect_timeout_ms must be positive")
        } else if self.metadata_max_age_ms == 0 {
            Some("metadata_max_age_ms must be positive")
        } else if self.retry_backoff_ms_max < self.retry_backoff_ms {
            Some("retry_backoff_ms_max must be at least retry_backoff_ms")
        } else if self.frame_bytes_max < 1024 * 1024 {
            Some("frame_bytes_max must be at least 1 MiB")
        } else {
            None
        };
        match problem {
            Some(reason) => Err(ClientError::Config {
                reason: reason.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// Where to start reading, for `Client::list_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset the partition still holds.
    Earliest,
    /// The offset the next appended record will get.
    Latest,
    /// The first offset whose record timestamp is at or after this Unix time in milliseconds.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The ListOffsets wire value: -2 earliest, -1 latest, else the timestamp.
    pub(crate) fn wire_timestamp(self) -> Result<i64, ClientError> {
        match self {
            OffsetSpec::Earliest => Ok(-2),
            OffsetSpec::Latest => Ok(-1),
            OffsetSpec::Timestamp(timestamp_ms) if timestamp_ms >= 0 => Ok(timestamp_ms),
            OffsetSpec::Timestamp(timestamp_ms) => Err(ClientError::Config {
                reason: format!("timestamp {timestamp_ms} is negative"),
            }),
        }
    }
}

/// How many replicas must have a batch before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// The broker sends no response; delivery futures resolve with offset -1 once the request
    /// is written to the socket.
    None,
    /// The leader appended the batch.
    Leader,
    /// Every in-sync replica has the batch.
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn wire(self) -> i8 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// How the producer picks a partition for a record that does not name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// Keyed records: murmur2 of the key, as Kafka's clients do, so a key lands on the same
    /// partition whichever client wrote it. Unkeyed records: sticky, one partition until its
    /// batch is closed, then another (Kafka's KIP-480), so batches fill up.
    Default,
    /// Every record to the next partition in turn, keyed or not.
    RoundRobin,
}

/// Producer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Acknowledgement level.
    pub acks: Acks,
    /// Codec of the batches; `None` or `Zstd`.
    pub compression: Compression,
    /// A partition's batch is closed and sent once its uncompressed size reaches this, in bytes.
    pub batch_bytes_max: usize,
    /// A batch that is not full is sent this long after its first record, in milliseconds.
    pub linger_ms: u64,
    /// Produce requests in flight on one connection at once.
    pub inflight_requests_max: usize,
    /// Bytes of records accepted but not yet acknowledged; `send` waits while this is reached.
    pub buffer_bytes_max: usize,
    /// Partition choice for records that do not name a partition.
    pub partitioner: Partitioner,
    /// How long a record may take from `send` to its acknowledgement, retries included, in
    /// milliseconds (Kafka's `delivery.timeout.ms`): retriable failures (a leader change, a
    /// lost connection, not enough replicas) are retried with a metadata refresh and backoff
    /// until then, after which the record fails with `DeliveryTimeout`. At least `linger_ms`
    /// plus the client's `request_timeout_ms`.
    pub delivery_timeout_ms: u64,
    /// Sends of a batch after its first that failed with a retriable error, at most (Kafka's
    /// `retries`); the delivery timeout bounds them too. 0: a failed send fails its records
    /// with the broker's error at once.
    pub retries_max: u32,
    /// Idempotent produce (Kafka's `enable.idempotence`, on by default as in the Java client):
    /// the producer gets a producer id and numbers its batches per partition, so the broker
    /// appends a retried batch once and in order. Needs `acks` Leader or All. Off: at least
    /// once, one request per partition in flight.
    pub enable_idempotence: bool,
    /// Produce requests of one partition in flight at once with idempotence, 1 to
    /// `IDEMPOTENT_IN_FLIGHT_MAX` (Kafka's `max.in.flight.requests.per.connection`, per
    /// partition here). Without idempotence the producer sends one at a time whatever this says.
    pub max_in_flight_requests_per_partition: usize,
}

/// Requests in flight per partition an idempotent producer may have, at most: the broker
/// keeps the last 5 batches of a producer per partition to recognise a retry.
pub const IDEMPOTENT_IN_FLIGHT_MAX: usize = 5;

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            compression: Compression::Zstd,
            batch_bytes_max: 256 * 1024,
            linger_ms: 5,
            inflight_requests_max: 5,
            buffer_bytes_max: 64 * 1024 * 1024,
            partitioner: Partitioner::Default,
            delivery_timeout_ms: 120_000,
            retries_max: u32::MAX,
            enable_idempotence: true,
            max_in_flight_requests_per_partition: IDEMPOTENT_IN_FLIGHT_MAX,
        }
    }
}

impl ProducerConfig {
    /// Checks the settings, and that the delivery timeout leaves room for the linger time and
    /// one request of `client` (Kafka's rule).
    pub fn validate_for(&self, client: &ClientConfig) -> Result<(), ClientError> {
        self.validate()?;
        let needed_ms = self.linger_ms.saturating_add(client.request_timeout_ms);
        if self.delivery_timeout_ms < needed_ms {
            return Err(ClientError::Config {
                reason: format!(
                    "delivery_timeout_ms ({}) must be at least linger_ms + request_timeout_ms \
                     ({needed_ms})",
                    self.delivery_timeout_ms
                ),
            });
        }
        Ok(())
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ClientError> {
        let problem = if !matches!(self.compression, Compression::None | Compression::Zstd) {
            Some("compression must be none or zstd")
        } else if self.batch_bytes_max == 0 {
            Some("batch_bytes_max must be positive")
        } else if self.inflight_requests_max == 0 {
            Some("inflight_requests_max must be positive")
        } else if self.buffer_bytes_max < self.batch_bytes_max {
            Some("buffer_bytes_max must be at least batch_bytes_max")
        } else if self.enable_idempotence && self.acks == Acks::None {
            Some("enable_idempotence needs acks Leader or All (turn idempotence off for acks=0)")
        } else if self.enable_idempotence
            && !(1..=IDEMPOTENT_IN_FLIGHT_MAX).contains(&self.max_in_flight_requests_per_partition)
        {
            Some("max_in_flight_requests_per_partition must be 1 to 5 with enable_idempotence")
        } else {
            None
        };
        match problem {
            Some(reason) => Err(ClientError::Config {
                reason: reason.to_string(),
            }),
            None => Ok(()),
        }
    }
}

impl ProducerConfig {
    /// Requests of one partition the producer keeps in flight: the setting with idempotence,
    /// 1 without (a retry could otherwise land after a later batch).
    pub fn in_flight_per_partition(&self) -> usize {
        if self.enable_idempotence {
            self.max_in_flight_requests_per_partition
        } else {
            1
        }
    }
}

/// Consumer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Bytes one fetch request may return, over all its partitions.
    pub fetch_max_bytes: u32,
    /// Bytes one fetch request may return for one partition (at least one whole batch is
    /// always returned, so a larger batch still gets through).
    pub partition_fetch_max_bytes: u32,
    /// How long the broker may hold a fetch waiting for `fetch_min_bytes`, in milliseconds.
    pub fetch_max_wait_ms: u32,
    /// Bytes the broker waits for before answering a fetch.
    pub fetch_min_bytes: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_bytes: 50 * 1024 * 1024,
            partition_fetch_max_bytes: 4 * 1024 * 1024,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
        }
    }
}

/// Where a consumer starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first offset the partition still holds.
    Earliest,
    /// The end: only records appended from now on.
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record at or after this Unix time in milliseconds (the end when none is).
    Timestamp(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: &ProducerConfig) -> String {
        match config.validate() {
            Err(ClientError::Config { reason }) => reason,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    // Proves the idempotence settings are checked in one place: idempotence is on by default
    // with 5 in flight, 0 or 6 in flight and acks=0 are refused with idempotence, and without
    // it any in-flight value is accepted and one request per partition is used.
    #[test]
    fn idempotence_settings_are_validated() {
        let default = ProducerConfig::default();
        assert!(default.enable_idempotence);
        assert_eq!(default.in_flight_per_partition(), IDEMPOTENT_IN_FLIGHT_MAX);
        default.validate().unwrap();
        for in_flight in [0, IDEMPOTENT_IN_FLIGHT_MAX + 1] {
            let config = ProducerConfig {
                max_in_flight_requests_per_partition: in_flight,
                ..ProducerConfig::default()
            };
            assert!(refused(&config).contains("max_in_flight_requests_per_partition"));
        }
        let acks_none = ProducerConfig {
            acks: Acks::None,
            ..ProducerConfig::default()
        };
        assert!(refused(&acks_none).contains("acks"));
        let at_least_once = ProducerConfig {
            acks: Acks::None,
            enable_idempotence: false,
            max_in_flight_requests_per_partition: 9,
            ..ProducerConfig::default()
        };
        at_least_once.validate().unwrap();
        assert_eq!(at_least_once.in_flight_per_partition(), 1);
    }
}
