//! Harness of the multi-process cluster fault-injection tests (`cluster_failover*.rs`): a real
//! etcd and N real `sluice broker --etcd ... --node-id N` processes on free ports with temporary
//! data directories, fault injection (SIGKILL, SIGSTOP/SIGCONT, restart on the same data,
//! killing and restarting etcd, cutting a network namespace's link), waits on what the brokers
//! report through Metadata and on etcd's controller key, traffic through the native client, and
//! byte-for-byte comparison of replica logs. Every wait has a deadline and panics saying what
//! it waited for; every process dies with the test, pass or fail. `control` serves the tests
//! that run the control plane (`ClusterHandle`) or whole brokers inside the test process
//! against the same etcd.
// Each test file uses a different subset of the harness; tests may unwrap.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

pub mod cluster;
pub mod control;
pub mod etcd;
pub mod logs;
pub mod netns;
pub mod node;
pub mod ports;
pub mod proxy;
pub mod traffic;
pub mod verify;
pub mod wire;

pub use cluster::{as_set, live_brokers, partition_of, Cluster, ClusterSpec, CLUSTER_WAIT};
pub use netns::NetnsLink;
pub use traffic::{
    message_value, read_partition, send_once, ConsumedRecords, NumberedProducer, Outcome,
    PollingConsumer, ProducerOptions,
};
pub use verify::{assert_all_acknowledged, check_history, HistorySummary};
