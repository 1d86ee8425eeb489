//! In-process control-plane tests (`cluster_leadership.rs`, `cluster_membership.rs`,
//! `cluster_rejoin.rs`, `cluster_topics.rs`, `replication.rs`): the same etcd process as the
//! multi-process tests in a temporary directory of its own, cluster configs with short TTLs for
//! `ClusterHandle`s started inside the test process, and raw etcd reads for checking what the
//! control plane wrote.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, GetOptions, KeyValue, WatchOptions};
use sluice_broker::cluster::ClusterConfig;

use super::etcd::Etcd;
use super::ports::free_ports;

/// Upper bound for every wait on the cluster in these tests. It is a safety net against a hung
/// test, not a speed requirement: failover is expected within a few seconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// A throwaway single-member etcd on 127.0.0.1 with a temporary data directory.
pub struct EtcdServer {
    // Declared before `dir` so etcd is killed before its directory is removed.
    etcd: Etcd,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd on free ports.
    pub fn start() -> EtcdServer {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path(), "127.0.0.1");
        EtcdServer { etcd, dir }
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// Kills etcd (SIGKILL) and waits for it to exit; the data directory stays.
    pub fn kill(&mut self) {
        self.etcd.kill();
    }

    /// Starts etcd again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.etcd.restart();
    }
}

/// A port nothing listens on now (and that this test process has not handed out before).
pub fn free_port() -> u16 {
    free_ports("127.0.0.1", 1)[0]
}

/// Runs `future` on a fresh tokio runtime (for raw etcd access from a test thread).
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Session TTL of the tests' brokers, seconds: short enough that a dead broker's lease expires
/// within a test, long enough that a broker on a loaded 2-core machine (keepalives every third
/// of it) does not lose its lease to a scheduling stall.
pub const SESSION_TTL_S: u64 = 5;

/// A cluster config for tests: `SESSION_TTL_S`, bounded timeouts, short backoff.
pub fn config(endpoint: &str, cluster: &str, node_id: i32) -> ClusterConfig {
    let mut config = ClusterConfig::new(vec![endpoint.to_string()], cluster, node_id, "127.0.0.1");
    config.native_port = 9000 + node_id as u16;
    config.shard_ports = vec![9100 + node_id as u16, 9200 + node_id as u16];
    config.admin_addr = Some(format!("127.0.0.1:{}", 9600 + node_id));
    config.broker_session_ttl_s = SESSION_TTL_S;
    config.connect_timeout_ms = 3_000;
    config.request_timeout_ms = 5_000;
    config.reconnect_backoff_ms_max = 500;
    // A start keeps retrying an unreachable etcd this long before it fails.
    config.start_timeout_ms = 5_000;
    config
}

/// Reads one key straight from etcd.
pub fn etcd_get(endpoint: &str, key: &str) -> Option<KeyValue> {
    block_on(async {
        let mut client = Client::connect([endpoint], None).await.unwrap();
        client
            .get(key, None)
            .await
            .unwrap()
            .take_kvs()
            .into_iter()
            .next()
    })
}

/// Counts the keys under a prefix, straight from etcd.
pub fn etcd_count(endpoint: &str, prefix: &str) -> usize {
    block_on(async {
        let mut client = Client::connect([endpoint], None).await.unwrap();
        let options = GetOptions::new().with_prefix().with_count_only();
        let response = client.get(prefix, Some(options)).await.unwrap();
        usize::try_from(response.count()).unwrap()
    })
}

/// Every value `key` has held from revision `from` up to now, oldest first (from etcd's
/// history, so no intermediate state can be missed).
pub fn etcd_history(endpoint: &str, key: &str, from: i64) -> Vec<Vec<u8>> {
    let last = etcd_get(endpoint, key).map_or(0, |kv| kv.mod_revision());
    if last < from {
        return Vec::new();
    }
    block_on(async {
        let mut client = Client::connect([endpoint], None).await.unwrap();
        let options = WatchOptions::new().with_start_revision(from);
        let mut stream = client.watch(key, Some(options)).await.unwrap();
        let mut values = Vec::new();
        while let Some(response) = stream.message().await.unwrap() {
            for event in response.events() {
                let kv = event.kv().unwrap();
                values.push(kv.value().to_vec());
                if kv.mod_revision() >= last {
                    return values;
                }
            }
        }
        values
    })
}
