//! Consumer groups on the client: a group member ([`GroupConsumer`]) with Kafka's classic
//! group protocol, the assignors its leader runs, and [`GroupAdmin`] for listing, describing
//! and deleting groups and setting their offsets.
//!
//! - [`member`]: [`GroupConsumer`] on top of the assigned [`Consumer`](crate::Consumer):
//!   subscribe, join and sync inside `poll`, heartbeats, automatic and manual commits, the
//!   rebalance listener.
//! - [`assignor`]: range, round-robin and cooperative-sticky (KIP-429), pure and unit tested.
//! - [`link`]: finding a group's coordinator and a member's own connection to it.
//! - [`admin`]: listing, describing and deleting groups ([`GroupAdmin`]).
//! - [`config`]: the member's settings ([`GroupConsumerConfig`]).
//!
//! Subscriptions and assignments travel in Kafka's consumer-protocol format, so Sluice members
//! and Kafka consumers can share a group.

pub mod admin;
pub mod assignor;
pub mod config;
pub(crate) mod link;
pub mod member;

pub use admin::{GroupAdmin, GroupInfo, GroupMemberInfo};
pub use config::{Assignor, AutoOffsetReset, GroupConsumerConfig};
pub use member::{GroupConsumer, RebalanceListener, RebalanceStats};
