//! Cluster mode's control side (DESIGN.md sections 3, 5 and 6): the thread that turns every
//! cluster state the etcd control plane publishes into a shard table and broadcasts it to the
//! shards, answers topic changes through [`EtcdMetadataStore`], and the worker that writes the
//! ISR changes shards propose (compare-and-swap through [`ClusterHandle::update_isr_at`]).
//!
//! Threads: the control thread (this module's [`ClusterControl`]), a watcher thread that
//! blocks on [`ClusterHandle::subscribe`] and wakes the control thread, and the ISR worker.
//! None of them touches a shard's state: shards get owned messages (the table) and answer on
//! oneshot channels. The shards never touch etcd or tokio.
//!
//! **Invariant:** a shard learns a partition's leader, epoch and ISR only from etcd's state
//! (through the table); its own ISR proposals take effect only once etcd recorded them.

pub mod control;
mod isr;
mod metrics;
pub mod progress;
mod reassign;
mod table;

pub use control::{spawn_watcher, ClusterControl};
pub use isr::{spawn_isr_worker, IsrClient, IsrCommand, ISR_QUEUE_DEPTH_MAX};
pub use metrics::ClusterMetrics;
pub use table::table_from_cluster;
