//! A whole cluster: etcd plus N `sluice broker --etcd ... --node-id N` processes, with waits on
//! what the brokers report through Metadata (leaders, ISR, live brokers) and on the controller
//! key in etcd. Dropping it kills every process; when the test is failing it first prints the
//! tail of every log, so a failure report shows what the brokers did.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_client::blocking::BlockingClient;
use sluice_client::ClientConfig;
use sluice_net::{MetadataResponse, PartitionMeta};

use super::etcd::Etcd;
use super::logs::{below, common_prefix, contiguous_end, read_batches, StoredBatch};
use super::netns::NetnsLink;
use super::node::{BrokerNode, NodeSpec};
use super::wire;

/// Upper bound of every wait on the cluster's state. It is a safety net against a hung test,
/// not a speed requirement: changes are expected within a few session TTLs.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(90);

/// Poll interval of the waits.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Log lines of each process printed when a test fails.
const FAILURE_LOG_LINES: usize = 60;

/// Set this environment variable to keep the test's directory (logs, data) after the run.
const KEEP_ENV: &str = "SLUICE_CLUSTER_TEST_KEEP";

/// One cluster at a time per test binary: the tests of a binary run in parallel threads, and
/// several 3-broker clusters at once would starve each other on a small machine, turning
/// scheduling delays into spurious session expiries.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Default session TTL of the tests' brokers, seconds: a killed broker's partitions move within
/// it, and a broker on a loaded 2-core machine (keepalives every third of it) does not lose its
/// lease to a scheduling stall of a few seconds.
pub const SESSION_TTL_S_DEFAULT: u64 = 6;

/// Default `replica_lag_time_max_ms` of the tests' brokers: a follower that is running but
/// starved of CPU for a few seconds stays in the ISR, so acks=all writes do not fail spuriously.
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: u64 = 10_000;

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of brokers, ids 1..=brokers.
    pub brokers: usize,
    /// Shards per broker.
    pub shards: usize,
    /// `--broker-session-ttl-s`: how long a silent broker keeps its registration.
    pub session_ttl_s: u64,
    /// `--replica-lag-time-max-ms`: how long a follower may fail to catch up before the leader
    /// drops it from the ISR.
    pub replica_lag_time_max_ms: u64,
    /// More flags for every broker.
    pub extra_flags: Vec<String>,
    /// When set, each broker's data directory is its own tmpfs of this many bytes (root only;
    /// see [`Cluster::own_disks_unavailable_reason`]), so a test can fill one broker's disk.
    pub disk_bytes: Option<u64>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            brokers: 3,
            shards: 2,
            session_ttl_s: SESSION_TTL_S_DEFAULT,
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            extra_flags: Vec::new(),
            disk_bytes: None,
        }
    }
}

/// etcd and the brokers. Field order is drop order: brokers first, then etcd, then the
/// network namespace, then the directory, and the serialising lock last.
pub struct Cluster {
    nodes: Vec<BrokerNode>,
    /// The cluster's etcd.
    pub etcd: Etcd,
    link: Option<NetnsLink>,
    /// The cluster name (`--cluster`), unique per test.
    pub name: String,
    spec: ClusterSpec,
    dir: Option<tempfile::TempDir>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts etcd and the brokers on 127.0.0.1 and waits until every broker is registered.
    pub fn start(spec: ClusterSpec) -> Cluster {
        Cluster::launch(spec, None)
    }

    /// Like `start`, but broker `netns_broker` runs inside `link`'s network namespace, and etcd
    /// and the other brokers listen on the host end of the link so it can reach them.
    pub fn start_with_netns(spec: ClusterSpec, link: NetnsLink, netns_broker: i32) -> Cluster {
        Cluster::launch(spec, Some((link, netns_broker)))
    }

    fn launch(spec: ClusterSpec, netns: Option<(NetnsLink, i32)>) -> Cluster {
        let one_at_a_time = ONE_CLUSTER_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("sluice-cluster-")
            .tempdir()
            .unwrap();
        let host = netns
            .as_ref()
            .map_or("127.0.0.1".to_string(), |(link, _)| link.host_ip.clone());
        let etcd_host = netns
            .as_ref()
            .map_or(host.clone(), |(link, _)| link.etcd_ip.clone());
        let etcd = Etcd::start(&dir.path().join("etcd"), &etcd_host);
        let name = format!("h10-{:08x}", rand::random::<u32>());
        let mut cluster = Cluster {
            nodes: Vec::new(),
            etcd,
            link: None,
            name,
            spec: spec.clone(),
            dir: Some(dir),
            _one_at_a_time: one_at_a_time,
        };
        let netns_broker = netns.as_ref().map(|(_, id)| *id);
        cluster.link = netns.map(|(link, _)| link);
        for id in 1..=i32::try_from(spec.brokers).unwrap() {
            let in_netns = netns_broker == Some(id);
            let node_spec = NodeSpec {
                id,
                host: match (&cluster.link, in_netns) {
                    (Some(link), true) => link.netns_ip.clone(),
                    _ => host.clone(),
                },
                netns: cluster
                    .link
                    .as_ref()
                    .filter(|_| in_netns)
                    .map(|link| link.name.clone()),
                shards: spec.shards,
                flags: cluster.broker_flags(&spec),
                disk_bytes: spec.disk_bytes,
            };
            let node = BrokerNode::start(node_spec, cluster.dir());
            cluster.nodes.push(node);
        }
        let all: BTreeSet<i32> = cluster.ids().into_iter().collect();
        cluster.wait_view("every broker registered", |view| live_brokers(view) == all);
        cluster
    }

    fn broker_flags(&self, spec: &ClusterSpec) -> Vec<String> {
        let mut flags: Vec<String> = [
            "--etcd".to_string(),
            self.etcd.endpoint(),
            "--cluster".to_string(),
            self.name.clone(),
            "--broker-session-ttl-s".to_string(),
            spec.session_ttl_s.to_string(),
            "--replica-lag-time-max-ms".to_string(),
            spec.replica_lag_time_max_ms.to_string(),
        ]
        .into();
        flags.extend(spec.extra_flags.iter().cloned());
        flags
    }

    fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Every broker id.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(BrokerNode::id).collect()
    }

    /// Broker `id`.
    pub fn node(&self, id: i32) -> &BrokerNode {
        self.nodes
            .iter()
            .find(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    /// Why brokers cannot have disks of their own ([`ClusterSpec::disk_bytes`]) here, or `None`
    /// when they can: mounting a tmpfs takes root.
    pub fn own_disks_unavailable_reason() -> Option<String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        (euid != 0).then(|| format!("not running as root (euid {euid}); a tmpfs mount needs root"))
    }

    /// Broker `id`, mutably (to signal it).
    pub fn node_mut(&mut self, id: i32) -> &mut BrokerNode {
        self.nodes
            .iter_mut()
            .find(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    /// The network namespace link, for clusters started with one.
    pub fn link(&self) -> &NetnsLink {
        self.link
            .as_ref()
            .expect("cluster started without a network namespace")
    }

    /// Starts one more broker (the next id) like the others and waits until the brokers see it
    /// registered. Returns its id.
    pub fn add_broker(&mut self) -> i32 {
        let id = self.ids().into_iter().max().unwrap_or(0) + 1;
        let host = self.nodes[0].host().to_string();
        let node_spec = NodeSpec {
            id,
            host,
            netns: None,
            shards: self.spec.shards,
            flags: self.broker_flags(&self.spec),
            disk_bytes: self.spec.disk_bytes,
        };
        let node = BrokerNode::start(node_spec, self.dir());
        self.nodes.push(node);
        self.wait_view("the new broker registered", |view| {
            live_brokers(view).contains(&id)
        });
        id
    }

    /// Runs the `sluice` CLI with `args` then `--bootstrap` (every serving broker); returns
    /// (exit success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let bootstrap = self.client_config().bootstrap.join(",");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--bootstrap", &bootstrap])
            .output()
            .expect("run the sluice CLI");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// SIGKILLs broker `id`.
    pub fn kill(&mut self, id: i32) {
        self.node_mut(id).kill();
    }

    /// Restarts broker `id` on its data directory and ports.
    pub fn restart(&mut self, id: i32) {
        self.node_mut(id).restart();
    }

    /// Client settings: bootstrap from every broker that is serving, generous retries so a
    /// failover (a session TTL plus an election) is ridden out.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            bootstrap: self
                .nodes
                .iter()
                .filter(|node| node.is_serving())
                .map(BrokerNode::native_addr)
                .collect(),
            request_timeout_ms: 15_000,
            retries_max: 30,
            retry_backoff_ms: 100,
            connect_timeout_ms: 2_000,
            ..ClientConfig::default()
        }
    }

    /// Creates a topic through the native client and waits until every partition has a leader
    /// and all its replicas in the ISR.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) {
        let client = BlockingClient::connect(self.client_config()).unwrap();
        let configs = configs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        client
            .create_topic(topic, partitions, replication_factor, configs)
            .unwrap_or_else(|error| panic!("create topic {topic}: {error}"));
        self.wait_in_sync(topic, partitions);
    }

    /// Metadata for every topic from each serving broker that answers: (broker id, response).
    pub fn views(&self) -> Vec<(i32, Result<MetadataResponse, String>)> {
        self.nodes
            .iter()
            .filter(|node| node.is_serving())
            .map(|node| (node.id(), wire::metadata(&node.native_addr(), None)))
            .collect()
    }

    /// Waits until at least one serving broker answers Metadata and every one that answers
    /// satisfies `check`; returns the first such view. Brokers that cannot be reached (killed,
    /// stopped, cut off) are not asked or not counted, and a broker that lost etcd may still
    /// show an old state, which is why all the others must agree too.
    pub fn wait_view(
        &self,
        what: &str,
        check: impl Fn(&MetadataResponse) -> bool,
    ) -> MetadataResponse {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let views = self.views();
            let answered: Vec<&MetadataResponse> = views
                .iter()
                .filter_map(|(_, view)| view.as_ref().ok())
                .collect();
            if !answered.is_empty() && answered.iter().all(|view| check(view)) {
                return answered[0].clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {CLUSTER_WAIT:?} for {what}; the brokers last reported:\n{}",
                    describe_views(&views)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until every serving broker reports `topic`/`partition` satisfying `check`.
    pub fn wait_partition(
        &self,
        topic: &str,
        partition: i32,
        what: &str,
        check: impl Fn(&PartitionMeta) -> bool,
    ) -> PartitionMeta {
        let view = self.wait_view(&format!("{topic}-{partition}: {what}"), |view| {
            partition_of(view, topic, partition).is_some_and(&check)
        });
        partition_of(&view, topic, partition).unwrap().clone()
    }

    /// The partition as the serving brokers agree on it now (leader live and known).
    pub fn partition(&self, topic: &str, partition: i32) -> PartitionMeta {
        self.wait_partition(topic, partition, "a live leader", |meta| meta.leader >= 0)
    }

    /// Waits until every partition of `topic` has a leader and its whole replica set in the
    /// ISR.
    pub fn wait_in_sync(&self, topic: &str, partitions: i32) -> MetadataResponse {
        self.wait_view(
            &format!("every partition of {topic} led, with all replicas in sync"),
            |view| {
                (0..partitions).all(|partition| {
                    partition_of(view, topic, partition).is_some_and(|meta| {
                        meta.error == 0
                            && meta.leader >= 0
                            && as_set(&meta.isr) == as_set(&meta.replicas)
                    })
                })
            },
        )
    }

    /// Waits until the ISR of `topic`/`partition` is exactly `isr` (in any order).
    pub fn wait_isr(&self, topic: &str, partition: i32, isr: &[i32]) -> PartitionMeta {
        let wanted = as_set(isr);
        self.wait_partition(topic, partition, &format!("ISR {wanted:?}"), |meta| {
            as_set(&meta.isr) == wanted
        })
    }

    /// The controller's id from its etcd key (`/sluice/<cluster>/controller`, `{"id": N}`).
    pub fn controller_in_etcd(&self) -> Option<i32> {
        let key = format!("/sluice/{}/controller", self.name);
        let value = self.etcd.get(&key)?;
        let json: serde_json::Value = serde_json::from_slice(&value)
            .unwrap_or_else(|error| panic!("{key} is not JSON ({error}): {value:?}"));
        let id = json["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} has no numeric id: {json}"));
        Some(i32::try_from(id).unwrap())
    }

    /// Waits until the controller key in etcd satisfies `check`; returns its id.
    pub fn wait_controller(&self, what: &str, check: impl Fn(Option<i32>) -> bool) -> Option<i32> {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let controller = self.controller_in_etcd();
            if check(controller) {
                return controller;
            }
            assert!(
                Instant::now() < deadline,
                "waited {CLUSTER_WAIT:?} for {what}; the controller key names {controller:?}"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the leader of `topic`/`partition` has stopped moving data: its high
    /// watermark equals its log end offset. Returns (leader, high watermark).
    pub fn wait_settled(&self, topic: &str, partition: i32) -> (i32, i64) {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let leader = self.partition(topic, partition).leader;
            let offsets =
                wire::partition_offsets(&self.node(leader).native_addr(), topic, partition);
            match &offsets {
                Ok(offsets)
                    if offsets.error == 0 && offsets.high_watermark == offsets.log_end_offset =>
                {
                    return (leader, offsets.high_watermark);
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "waited {CLUSTER_WAIT:?} for {topic}-{partition}'s high watermark to reach its \
                 log end on leader {leader}; last answer: {offsets:?}"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until `topic`/`partition` is settled (high watermark at the log end), then checks
    /// that each of `replicas` holds exactly the leader's batches, byte for byte, below the high
    /// watermark (waiting for a follower that has not written them all yet). Returns the high
    /// watermark.
    pub fn assert_replicas_identical(&self, topic: &str, partition: i32, replicas: &[i32]) -> i64 {
        let (leader, high_watermark) = self.wait_settled(topic, partition);
        let leader_batches = below(
            &read_batches(&self.partition_dir(leader, topic, partition)),
            high_watermark,
        );
        assert_eq!(
            contiguous_end(&leader_batches),
            high_watermark,
            "leader {leader}'s files of {topic}-{partition} do not hold every offset below the \
             high watermark {high_watermark}"
        );
        for &replica in replicas.iter().filter(|replica| **replica != leader) {
            let dir = self.partition_dir(replica, topic, partition);
            let deadline = Instant::now() + CLUSTER_WAIT;
            let batches = loop {
                let batches = below(&read_batches(&dir), high_watermark);
                if contiguous_end(&batches) == high_watermark {
                    break batches;
                }
                assert!(
                    Instant::now() < deadline,
                    "waited {CLUSTER_WAIT:?} for broker {replica}'s files of {topic}-{partition} \
                     to reach the high watermark {high_watermark}; they end at {}",
                    contiguous_end(&batches)
                );
                std::thread::sleep(POLL_INTERVAL);
            };
            let same = common_prefix(&leader_batches, &batches);
            if same != leader_batches.len() || same != batches.len() {
                let describe = |batch: Option<&StoredBatch>| {
                    batch.map(|batch| {
                        format!(
                            "offsets {}..={} epoch {} ({} bytes)",
                            batch.base_offset,
                            batch.last_offset,
                            batch.leader_epoch,
                            batch.bytes.len()
                        )
                    })
                };
                panic!(
                    "{topic}-{partition}: broker {replica}'s log differs from leader {leader}'s \
                     below the high watermark {high_watermark} at batch {same}: leader has \
                     {:?}, replica has {:?}",
                    describe(leader_batches.get(same)),
                    describe(batches.get(same))
                );
            }
        }
        high_watermark
    }

    /// The directory of broker `id`'s replica of `topic`/`partition`.
    pub fn partition_dir(&self, id: i32, topic: &str, partition: i32) -> std::path::PathBuf {
        self.node(id).data_dir.join(format!("{topic}-{partition}"))
    }

    /// Prints the tail of every process's log to stderr.
    pub fn print_logs(&self) {
        for node in &self.nodes {
            eprintln!(
                "----- broker {} ({}) log tail -----\n{}",
                node.id(),
                node.log_path().display(),
                node.log_tail(FAILURE_LOG_LINES)
            );
        }
        eprintln!("----- etcd log tail -----\n{}", self.etcd.log_tail(20));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        for node in &mut self.nodes {
            node.kill();
        }
        self.etcd.kill();
        if std::env::var_os(KEEP_ENV).is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept the cluster's directory {}", dir.keep().display());
            }
        }
    }
}

/// The ids of the brokers a view lists as live.
pub fn live_brokers(view: &MetadataResponse) -> BTreeSet<i32> {
    view.brokers.iter().map(|broker| broker.node_id).collect()
}

/// One partition of a view.
pub fn partition_of<'a>(
    view: &'a MetadataResponse,
    topic: &str,
    partition: i32,
) -> Option<&'a PartitionMeta> {
    view.topics
        .iter()
        .find(|meta| meta.name == topic)?
        .partitions
        .iter()
        .find(|meta| meta.partition == partition)
}

/// A list of ids as a set.
pub fn as_set(ids: &[i32]) -> BTreeSet<i32> {
    ids.iter().copied().collect()
}

/// Views in a few lines, for failure messages.
fn describe_views(views: &[(i32, Result<MetadataResponse, String>)]) -> String {
    let mut out = String::new();
    for (id, view) in views {
        match view {
            Err(error) => out.push_str(&format!("  broker {id}: no answer: {error}\n")),
            Ok(view) => {
                out.push_str(&format!(
                    "  broker {id}: live {:?}, controller {}\n",
                    live_brokers(view),
                    view.controller_id
                ));
                for topic in &view.topics {
                    for meta in &topic.partitions {
                        out.push_str(&format!(
                            "    {}-{}: error {} leader {} epoch {} replicas {:?} isr {:?}\n",
                            topic.name,
                            meta.partition,
                            meta.error,
                            meta.leader,
                            meta.leader_epoch,
                            meta.replicas,
                            meta.isr
                        ));
                    }
                }
            }
        }
    }
    out
}
