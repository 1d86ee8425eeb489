//! Sluice native client: admin operations, a batching producer and a consumer, speaking the
//! native protocol (`sluice-net`) straight to the shard that owns each partition.
//!
//! Everything here is `!Send` and runs on one glommio executor: create a [`Client`] with
//! [`Client::connect`] inside `LocalExecutor::run` (or a `LocalExecutorBuilder::spawn`ed
//! thread), then share it through `Rc` with any number of [`Producer`]s and [`Consumer`]s on the
//! same executor. Programs without glommio use the [`blocking`] wrappers.
//!
//! - Connections: per broker shard port (from the metadata's `shard_ports`; only the broker's
//!   native port when `shard_aware` is off) one TCP connection for fetches and one for every
//!   other request, each pipelining requests with a writer task and a reader task that matches
//!   responses by correlation id. Fetches get their own because a broker answers a connection's
//!   requests in order and holds a fetch while it long-polls: an acknowledgement queued behind
//!   one would wait that long.
//! - Producer: per-partition batches closed at `batch_bytes_max` or after `linger_ms`; one
//!   request per connection carries every ready partition; retriable errors (connection
//!   errors included) refresh metadata and retry with backoff until `delivery_timeout_ms`,
//!   going straight to the leader a NotLeaderOrFollower answer names. Idempotent by default
//!   (`idempotence`: producer id, per-partition sequences, up to 5 requests per partition in
//!   flight), so a retry never writes a record twice; records of one partition stay in order.
//! - Consumer: explicit assignment, one fetch per owning shard per round, long polling; a
//!   partition whose fetch fails with a retriable error backs off, the metadata is refreshed,
//!   and reading resumes from the same position on the new leader.
//! - Retry rules (`retry`) are pure functions of the error, the attempt count and the time.
//! - Group member ([`GroupConsumer`]): subscribes, joins its group through the group's
//!   coordinator (FindCoordinator, a connection of its own), heartbeats, commits; the leader
//!   member assigns partitions (range, round-robin, cooperative-sticky).
//!
//! **Invariant:** every queue is bounded: requests in flight per connection, produce requests
//! per connection (`inflight_requests_max`), unsent record bytes (`buffer_bytes_max`), commands
//! to a blocking wrapper's thread.

mod accumulator;
pub mod blocking;
mod client;
mod config;
mod connection;
mod consumer;
mod delivery;
mod error;
mod fetch;
pub mod group;
mod idempotence;
mod metadata;
mod notify;
mod partitioner;
mod producer;
mod retry;

/// A map keyed by topic names (or broker addresses) that the producer looks up for every record
/// or every batch: foldhash instead of SipHash. At max rate SipHash was about 2.8 % of a
/// producer's core (three topic lookups per record), foldhash about 1.2 %. Keys come from the
/// application and the cluster's metadata, not from untrusted peers.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use client::Client;
pub use config::{
    Acks, ClientConfig, ConsumerConfig, OffsetSpec, Partitioner, ProducerConfig, SeekTo,
    IDEMPOTENT_IN_FLIGHT_MAX,
};
pub use consumer::{Consumer, FailingPartition};
pub use delivery::{DeliveryFuture, RecordMetadata};
pub use error::ClientError;
pub use fetch::{ConsumerRecord, FetchedBatches};
pub use group::{
    Assignor, AutoOffsetReset, GroupAdmin, GroupConsumer, GroupConsumerConfig, GroupInfo,
    GroupMemberInfo, RebalanceListener, RebalanceStats,
};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{Producer, ProducerRecord, RecordRef};
/// The batch codec setting of `ProducerConfig::compression`.
pub use sluice_storage::batch::{Compression, HeaderViews, RecordView};
