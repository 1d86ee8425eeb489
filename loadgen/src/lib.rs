//! Sluice load generator: OpenMessaging-Benchmark-style workloads over the native client, or
//! over librdkafka against any Kafka-protocol broker ([`kafka`], `--driver kafka`).
//!
//! A run spreads producers and consumers over glommio executors (one per CPU, thread-per-core),
//! paces producers by a schedule of intended send times, measures publish and end-to-end latency
//! from those times (coordinated-omission corrected) in HdrHistograms, reports a progress line per
//! window, a summary, a JSON report and an SVG plot, and checks by sequence numbers that every
//! acknowledged message was consumed. The `sluice-loadgen` binary is a thin shell over [`cli`];
//! tests drive [`runner::run`] directly.

pub mod accounting;
pub mod admin;
pub mod cli;
pub mod control;
pub mod coordinator;
pub mod cpu;
pub mod embedded;
pub mod error;
pub mod groups_bench;
pub mod histogram;
pub mod kafka;
pub mod payload;
pub mod plan;
pub mod plot;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod worker;
pub mod workload;

pub use error::LoadgenError;
pub use report::Report;
pub use runner::{run, BrokerTarget, Driver, RunOptions};
pub use workload::Workload;
