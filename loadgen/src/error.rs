//! The load generator's error type.

use std::path::PathBuf;

use crate::workload::WorkloadError;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The workload (file or flags) is unusable.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// A command-line option is unusable.
    #[error("invalid option {option}: {message}")]
    Option {
        /// The flag.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The broker did not answer.
    #[error("cannot reach broker at {bootstrap}: {message}")]
    Unreachable {
        /// Address tried.
        bootstrap: String,
        /// What went wrong (connection refused, timeout, ...).
        message: String,
    },
    /// A client operation failed.
    #[error("{operation} failed: {source}")]
    Client {
        /// What the load generator was doing.
        operation: String,
        /// The client's error.
        source: sluice_client::ClientError,
    },
    /// An existing topic named with `--topic` does not fit the workload.
    #[error(
        "topic {topic} already exists with {actual} partitions; the workload needs {expected}"
    )]
    TopicMismatch {
        /// Topic.
        topic: String,
        /// Its partitions.
        actual: i32,
        /// Partitions the workload asks for.
        expected: u32,
    },
    /// The embedded broker could not start or stop.
    #[error("embedded broker: {operation}: {message}")]
    EmbeddedBroker {
        /// start, shutdown, ...
        operation: &'static str,
        /// The broker's error.
        message: String,
    },
    /// A load generator executor thread could not start or died.
    #[error("load generator executor {index}: {message}")]
    Executor {
        /// Executor number.
        index: usize,
        /// What happened.
        message: String,
    },
    /// The Kafka driver's client (librdkafka) refused an operation.
    #[error("Kafka driver: {operation} failed: {message}")]
    Kafka {
        /// What was being done.
        operation: String,
        /// librdkafka's message.
        message: String,
    },
    /// The run could not go on (an executor failed, executors did not start or stop in time).
    #[error("run failed: {message}")]
    Run {
        /// What happened.
        message: String,
    },
    /// A file could not be read or written.
    #[error("cannot {operation} {path}: {source}")]
    Io {
        /// read, write, create, ...
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl LoadgenError {
    /// Wraps a client error with what the load generator was doing.
    pub fn client(
        operation: impl Into<String>,
        source: sluice_client::ClientError,
    ) -> LoadgenError {
        LoadgenError::Client {
            operation: operation.into(),
            source,
        }
    }
}
