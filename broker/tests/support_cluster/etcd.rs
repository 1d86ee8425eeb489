//! A throwaway single-member etcd (Debian's etcd-server, installed through scripts/etcd.sh when
//! missing) on free ports of one host address, with its data directory inside the test's
//! temporary directory, so it can be killed and restarted on the same data. Killed when dropped.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use super::ports::free_ports;

/// The etcd binary Debian's etcd-server package installs.
const ETCD_BINARY: &str = "/usr/bin/etcd";

/// How long a starting etcd may take to answer.
const ETCD_START_WAIT: Duration = Duration::from_secs(30);

/// Bound on one etcd request made by the tests themselves.
const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts at most this many etcd processes before giving up (another process can take a free
/// port between the check and etcd's bind).
const ETCD_START_ATTEMPTS_MAX: usize = 5;

/// How often [`Etcd::hold_lease`] renews the lease it holds.
const LEASE_HOLD_INTERVAL: Duration = Duration::from_millis(500);

/// A lease the test keeps alive; renewal stops when this is dropped.
pub struct LeaseHold {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

/// One etcd member listening on `host`.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    host: String,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd on free ports of `host`, keeping its data and log under `dir`.
    pub fn start(dir: &Path, host: &str) -> Etcd {
        ensure_etcd_installed();
        std::fs::create_dir_all(dir).unwrap();
        let mut etcd = Etcd {
            child: None,
            dir: dir.to_path_buf(),
            host: host.to_string(),
            client_port: 0,
            peer_port: 0,
        };
        for _ in 0..ETCD_START_ATTEMPTS_MAX {
            let ports = free_ports(host, 2);
            etcd.client_port = ports[0];
            etcd.peer_port = ports[1];
            if etcd.spawn() {
                return etcd;
            }
            etcd.kill();
            std::fs::remove_dir_all(etcd.data_dir()).ok();
        }
        panic!(
            "etcd did not start on {host}; log: {}",
            etcd.log_path().display()
        );
    }

    /// The client URL brokers are given (`--etcd`).
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }

    /// True while the etcd process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs etcd and waits for it to exit; the data directory stays.
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

    /// The value of `key`, or `None` when it does not exist. Panics when etcd does not answer.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let endpoint = self.endpoint();
        let key = key.to_string();
        block_on_bounded("etcd get", async move {
            let options = ConnectOptions::new().with_connect_timeout(ETCD_REQUEST_TIMEOUT);
            let mut client = Client::connect([endpoint], Some(options)).await?;
            let response = client.get(key, None).await?;
            Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
        })
        .unwrap_or_else(|error| panic!("etcd at {} did not answer: {error}", self.endpoint()))
    }

    /// The create revision of `key`, or `None` when it does not exist (for a broker's
    /// registration key, its broker epoch). Panics when etcd does not answer.
    pub fn create_revision(&self, key: &str) -> Option<i64> {
        let endpoint = self.endpoint();
        let key = key.to_string();
        block_on_bounded("etcd get", async move {
            let options = ConnectOptions::new().with_connect_timeout(ETCD_REQUEST_TIMEOUT);
            let mut client = Client::connect([endpoint], Some(options)).await?;
            let response = client.get(key, None).await?;
            Ok(response.kvs().first().map(|kv| kv.create_revision()))
        })
        .unwrap_or_else(|error| panic!("etcd at {} did not answer: {error}", self.endpoint()))
    }

    /// Keeps the lease `key` is bound to alive from the test, as if its owner still renewed it
    /// (a frozen broker keeps its registration and controllership), until the guard is
    /// dropped. Panics when the key does not exist or has no lease.
    pub fn hold_lease(&self, key: &str) -> LeaseHold {
        let endpoint = self.endpoint();
        let lookup = key.to_string();
        let lease = block_on_bounded("etcd get", async move {
            let options = ConnectOptions::new().with_connect_timeout(ETCD_REQUEST_TIMEOUT);
            let mut client = Client::connect([endpoint], Some(options)).await?;
            let response = client.get(lookup, None).await?;
            Ok(response.kvs().first().map(|kv| kv.lease()))
        })
        .unwrap_or_else(|error| panic!("etcd at {} did not answer: {error}", self.endpoint()))
        .filter(|lease| *lease != 0)
        .unwrap_or_else(|| panic!("{key} does not exist or has no lease"));
        let stop = Arc::new(AtomicBool::new(false));
        let endpoint = self.endpoint();
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let endpoint = endpoint.clone();
                let renewed = block_on_bounded("etcd lease keep-alive", async move {
                    let options = ConnectOptions::new().with_connect_timeout(ETCD_REQUEST_TIMEOUT);
                    let mut client = Client::connect([endpoint], Some(options)).await?;
                    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    answers.message().await
                });
                if let Err(error) = renewed {
                    eprintln!("holding lease {lease:x}: {error}");
                }
                std::thread::sleep(LEASE_HOLD_INTERVAL);
            }
        });
        LeaseHold {
            stop,
            thread: Some(thread),
        }
    }

    /// The last lines of etcd's log, for failure reports.
    pub fn log_tail(&self, lines: usize) -> String {
        super::node::tail(&self.log_path(), lines)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Spawns etcd and waits until it answers; false if it exited or never answered.
    fn spawn(&mut self) -> bool {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let client = self.endpoint();
        let peer = format!("http://{}:{}", self.host, self.peer_port);
        let child = Command::new(ETCD_BINARY)
            .arg("--name=sluice-cluster-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=sluice-cluster-test={peer}"))
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

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Installs etcd-server through the project's script when the binary is missing. Once per test
/// binary: two apt-get runs would fight over dpkg's lock.
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

/// Runs an etcd request on a fresh tokio runtime, bounded by `ETCD_REQUEST_TIMEOUT` (and the
/// connect timeout inside it), so a test never hangs on a dead etcd.
fn block_on_bounded<T>(
    what: &str,
    future: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match tokio::time::timeout(ETCD_REQUEST_TIMEOUT * 2, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(format!("{what}: {error}")),
            Err(_) => Err(format!("{what}: no answer within {ETCD_REQUEST_TIMEOUT:?}")),
        }
    })
}

fn answers(endpoint: &str) -> bool {
    let endpoint = endpoint.to_string();
    block_on_bounded("etcd status", async move {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
        let mut client = Client::connect([endpoint], Some(options)).await?;
        client.status().await
    })
    .is_ok()
}
