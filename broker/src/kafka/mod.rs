//! The Kafka protocol listener: every shard accepts on the shared Kafka port (SO_REUSEPORT), so
//! any existing Kafka client or tool works against Sluice unchanged.
//!
//! Kafka clients route by broker, not by core: a connection lands on whichever shard the
//! kernel picked, and a request for a partition another shard owns is forwarded to the owner
//! over the channel mesh (one hop there, one back), exactly as on the shared native port. The
//! other choice, presenting every (broker, shard) pair as its own Kafka node with its own
//! port, would expose per-core node ids to every Kafka tool; ARCHITECTURE.md says why
//! forwarding was kept and what it costs (measured with the load generator's
//! `--no-shard-aware`).
//!
//! - [`connection`]: framing, in-order pipelined answers, bad input closes the connection.
//! - [`dispatch`]: one handler per API; the consumer-group APIs ([`groups`], [`group_admin`])
//!   are thin mappings onto the group coordinator.
//! - [`metrics`]: requests, errors and latency per API key and version.

pub mod connection;
pub mod dispatch;
pub mod fetch;
pub mod group_admin;
pub mod groups;
pub mod metadata;
pub mod metrics;
pub mod offsets;
pub mod produce;
pub mod producer_id;
pub mod reassign;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_kafka::ApiTable;

pub use metrics::{render_kafka_metrics, KafkaMetrics};

/// What every shard shares about the Kafka port. Read-only after startup.
#[derive(Debug)]
pub struct KafkaShared {
    /// The bound Kafka address.
    pub addr: SocketAddr,
    /// The Kafka port's listening sockets (one SO_REUSEPORT group), one per shard by shard
    /// index, each taken by its shard when it starts listening.
    pub listeners: std::sync::Mutex<Vec<Option<socket2::Socket>>>,
    /// The host Kafka clients are told to connect to.
    pub advertised_host: String,
    /// The port Kafka clients are told to connect to.
    pub advertised_port: u16,
    /// The APIs and versions served (what ApiVersions answers).
    pub apis: ApiTable,
    /// Every shard's Kafka metrics, by shard id.
    pub metrics: Vec<Arc<KafkaMetrics>>,
}
