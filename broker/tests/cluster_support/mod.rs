//! Helpers for the cluster control-plane tests: a real etcd (Debian's etcd-server, installed
//! through scripts/etcd.sh when missing) on free 127.0.0.1 ports with a temporary data
//! directory, killed when dropped; cluster configs with short TTLs; and raw etcd reads for
//! checking what the control plane wrote.
// Each test file uses a different subset of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, KeyValue, WatchOptions};
use sluice_broker::cluster::ClusterConfig;

/// Upper bound for every wait on the cluster in these tests. It is a safety net against a hung
/// test, not a speed requirement: failover is expected within a few seconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// The etcd binary Debian's etcd-server package installs.
const ETCD_BINARY: &str = "/usr/bin/etcd";

/// How long a starting etcd may take to answer.
const ETCD_START_WAIT: Duration = Duration::from_secs(30);

/// Starts at most this many etcd processes, on new ports each, before giving up (another
/// process can take a free port between the check and etcd's bind).
const ETCD_START_ATTEMPTS_MAX: usize = 5;

/// A throwaway single-member etcd.
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts etcd on free ports.
    pub fn start() -> EtcdServer {
        ensure_etcd_installed();
        let dir = tempfile::tempdir().unwrap();
        let mut server = EtcdServer {
            child: None,
            dir,
            client_port: 0,
            peer_port: 0,
        };
        for _ in 0..ETCD_START_ATTEMPTS_MAX {
            server.client_port = free_port();
            server.peer_port = free_port();
            if server.client_port != server.peer_port && server.spawn() {
                return server;
            }
            server.kill();
            std::fs::remove_dir_all(server.data_dir()).ok();
        }
        panic!("etcd did not start; log: {}", server.log_path().display());
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd (SIGKILL) and waits for it to exit; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts etcd again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..ETCD_START_ATTEMPTS_MAX {
            if self.spawn() {
                return;
            }
            self.kill();
        }
        panic!("etcd did not restart; log: {}", self.log_path().display());
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Spawns etcd and waits until it answers; false if it exited or never answered.
    fn spawn(&mut self) -> bool {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(ETCD_BINARY)
            .arg("--name=sluice-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=sluice-test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + ETCD_START_WAIT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            if answers(&client) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Installs etcd-server through the project's script when the binary is missing. Once per test
/// binary: the tests of a binary run in parallel threads, and two apt-get runs would fight over
/// dpkg's lock.
fn ensure_etcd_installed() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if Path::new(ETCD_BINARY).exists() {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/etcd.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg("install")
            .status()
            .unwrap();
        assert!(status.success(), "{} install failed", script.display());
    });
    assert!(Path::new(ETCD_BINARY).exists(), "{ETCD_BINARY} is missing");
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `future` on a fresh tokio runtime (for raw etcd access from a test thread).
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn answers(endpoint: &str) -> bool {
    block_on(async {
        let attempt = async {
            let mut client = Client::connect([endpoint], None).await?;
            client.status().await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Ok(_))
        )
    })
}

/// A cluster config for tests: TTL 2 s, short timeouts and backoff.
pub fn config(endpoint: &str, cluster: &str, node_id: i32) -> ClusterConfig {
    let mut config = ClusterConfig::new(vec![endpoint.to_string()], cluster, node_id, "127.0.0.1");
    config.native_port = 9000 + node_id as u16;
    config.shard_ports = vec![9100 + node_id as u16, 9200 + node_id as u16];
    config.admin_addr = Some(format!("127.0.0.1:{}", 9600 + node_id));
    config.broker_session_ttl_s = 2;
    config.connect_timeout_ms = 1_500;
    config.request_timeout_ms = 2_000;
    config.reconnect_backoff_ms_max = 500;
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
