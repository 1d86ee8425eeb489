//! One `sluice broker` child process (env!("CARGO_BIN_EXE_sluice")) with its own data directory,
//! optionally inside a network namespace: start, SIGKILL, SIGSTOP, SIGCONT and restart on the
//! same data directory. Every port is OS-assigned (port 0) on every start, so no other process
//! on the machine can collide with it; the harness reads the bound addresses from what the
//! broker prints before `ready`, and other brokers and clients learn them from etcd and
//! metadata. Killed when dropped, even on a failed assertion.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting broker may take to print `ready`.
const BROKER_START_WAIT: Duration = Duration::from_secs(60);

/// How long SIGSTOP may take to show in /proc.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Block size of writes that fill a disk.
const FILL_BLOCK_BYTES: usize = 64 * 1024;

/// Poll interval of the waits in this file.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Log filter of the brokers, unless `SLUICE_CLUSTER_TEST_LOG` says otherwise.
const BROKER_LOG_FILTER_DEFAULT: &str = "info";

/// What a broker is started with, every start the same.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id (`--node-id`).
    pub id: i32,
    /// The address it binds and advertises.
    pub host: String,
    /// The network namespace to run it in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// Shards (`--shards`).
    pub shards: usize,
    /// Further flags: etcd, cluster name, replication settings.
    pub flags: Vec<String>,
    /// When set, the data directory is its own tmpfs of this many bytes (root only), so a test
    /// can fill the broker's disk ([`BrokerNode::fill_disk`]) without touching anyone else's.
    pub disk_bytes: Option<u64>,
}

/// A broker process and where it lives.
pub struct BrokerNode {
    spec: NodeSpec,
    /// Where the current (or last) start listens, as the broker printed it.
    addresses: Addresses,
    /// Its data directory.
    pub data_dir: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    stopped: bool,
    starts: u32,
    /// The data directory is a tmpfs this node mounted (and unmounts when dropped).
    mounted: bool,
    /// Restarts bind the previous start's native port (see `native_addr_to_bind`).
    reuse_native: bool,
}

impl BrokerNode {
    /// Makes its directory under `dir` and starts the broker; returns once it printed `ready`.
    pub fn start(spec: NodeSpec, dir: &Path) -> BrokerNode {
        let node_dir = dir.join(format!("broker-{}", spec.id));
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut node = BrokerNode {
            addresses: Addresses::default(),
            data_dir: node_dir.join("data"),
            dir: node_dir,
            spec,
            child: None,
            stopped: false,
            reuse_native: true,
            starts: 0,
            mounted: false,
        };
        if let Some(bytes) = node.spec.disk_bytes {
            mount_tmpfs(&node.data_dir, bytes);
            node.mounted = true;
        }
        node.spawn();
        node
    }

    /// Node id.
    pub fn id(&self) -> i32 {
        self.spec.id
    }

    /// The address it binds and advertises.
    pub fn host(&self) -> &str {
        &self.spec.host
    }

    /// `host:port` of its native port (this start's: a restart gets a new one).
    pub fn native_addr(&self) -> String {
        self.addresses.native.clone()
    }

    /// `host:port` of its Kafka port (this start's: a restart gets a new one).
    pub fn kafka_addr(&self) -> String {
        self.addresses.kafka.clone()
    }

    /// `host:port` of each shard's own port, by shard (this start's).
    pub fn shard_addrs(&self) -> Vec<String> {
        self.addresses.shards.clone()
    }

    /// `host:port` of its admin endpoint (this start's).
    pub fn admin_addr(&self) -> String {
        self.addresses.admin.clone()
    }

    /// True while the process exists (it may be stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// True while the process exists and is not stopped: it can answer requests.
    pub fn is_serving(&self) -> bool {
        self.child.is_some() && !self.stopped
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("broker not running").id()).unwrap()
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        self.stopped = false;
    }

    /// SIGSTOP, and wait until the kernel shows it stopped.
    pub fn stop(&mut self) {
        self.signal(libc::SIGSTOP);
        self.stopped = true;
        let deadline = Instant::now() + STOP_WAIT;
        while process_state(self.pid()) != Some('T') {
            assert!(
                Instant::now() < deadline,
                "broker {} (pid {}) did not stop within {STOP_WAIT:?} of SIGSTOP",
                self.id(),
                self.pid()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGCONT.
    pub fn cont(&mut self) {
        self.signal(libc::SIGCONT);
        self.stopped = false;
    }

    /// Starts the broker again on the same data directory, on its native port and new
    /// OS-assigned shard, Kafka and admin ports (it must not be running).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "broker {} is still running",
            self.id()
        );
        self.spawn();
    }

    /// Deletes its data directory, as a lost disk (it must not be running): the next start
    /// begins with no logs and no checkpoints.
    pub fn wipe_data(&mut self) {
        assert!(
            self.child.is_none(),
            "broker {} is still running",
            self.id()
        );
        // Its contents, not the directory: it may be a mount point.
        if let Ok(entries) = std::fs::read_dir(&self.data_dir) {
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
    }

    /// Fills the broker's own disk (its data directory's tmpfs, see [`NodeSpec::disk_bytes`])
    /// to the last byte with a file the broker does not know; [`BrokerNode::free_disk`] removes
    /// it.
    pub fn fill_disk(&self) {
        assert!(self.mounted, "broker {} has no disk of its own", self.id());
        let free = free_bytes(&self.data_dir);
        let file = File::create(self.filler_path()).unwrap();
        if free > 0 {
            // SAFETY: fallocate(2) on a file we own, with a valid descriptor.
            let result = unsafe {
                libc::fallocate(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    0,
                    0,
                    libc::off_t::try_from(free).unwrap(),
                )
            };
            // The broker may have taken some of the space meanwhile: whatever is left is taken.
            if result != 0 {
                fill_by_writing(&file);
            }
        }
    }

    /// Removes what [`BrokerNode::fill_disk`] wrote.
    pub fn free_disk(&self) {
        std::fs::remove_file(self.filler_path()).unwrap();
    }

    fn filler_path(&self) -> PathBuf {
        self.data_dir.join(".test-disk-filler")
    }

    /// The last `lines` lines of everything the broker logged, over all its starts.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// Path of the broker's log (stderr of every start, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "kill({}, {signal}) failed", self.pid());
    }

    fn command(&self) -> Command {
        let binary = env!("CARGO_BIN_EXE_sluice");
        let mut command = match &self.spec.netns {
            Some(netns) => {
                // `ip netns exec` execs the program in place, so the child's pid is the
                // broker's and signals reach it directly.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, binary]);
                command
            }
            None => Command::new(binary),
        };
        let host = &self.spec.host;
        command
            .arg("broker")
            .arg("--node-id")
            .arg(self.spec.id.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--native-addr")
            .arg(self.native_addr_to_bind())
            .arg("--admin-addr")
            .arg(format!("{host}:0"))
            // An OS-picked Kafka port: the cluster tests speak the native protocol, and several
            // run in parallel.
            .arg("--kafka-addr")
            .arg(format!("{host}:0"))
            .arg("--shards")
            .arg(self.spec.shards.to_string())
            .args(["--pin", "false"])
            .args(&self.spec.flags);
        let filter = std::env::var("SLUICE_CLUSTER_TEST_LOG")
            .unwrap_or_else(|_| BROKER_LOG_FILTER_DEFAULT.to_string());
        command.env("RUST_LOG", filter);
        command
    }

    /// The native address a start binds: the one the previous start had (as a restarted
    /// broker of a real deployment keeps its configured port, so clients that know only
    /// addresses from before can still bootstrap), or an OS-picked port on the first start
    /// and when `reuse_native` is off.
    fn native_addr_to_bind(&self) -> String {
        if self.reuse_native && !self.addresses.native.is_empty() {
            return self.addresses.native.clone();
        }
        format!("{}:0", self.spec.host)
    }

    /// Starts the process and waits for `ready`; panics with its log when it exits first. A
    /// restart that cannot bind its previous native port (taken meanwhile) starts again on an
    /// OS-picked one.
    fn spawn(&mut self) {
        let mut started = self.spawn_once();
        if started.is_err() && self.reuse_native && !self.addresses.native.is_empty() {
            self.reuse_native = false;
            started = self.spawn_once();
            self.reuse_native = true;
        }
        if let Err(log) = started {
            panic!(
                "broker {} exited during start; log of this start:\n{log}",
                self.id()
            );
        }
    }

    /// One start with stdout in a fresh file and stderr appended to the log; waits for
    /// `ready` on stdout. Err: the process exited first, with what it logged. Panics when it
    /// neither exits nor gets ready in time.
    fn spawn_once(&mut self) -> Result<(), String> {
        self.starts += 1;
        let stdout_path = self.dir.join(format!("stdout-{}", self.starts));
        let stdout = File::create(&stdout_path).unwrap();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let log_start = log.metadata().unwrap().len();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.stopped = false;
        let deadline = Instant::now() + BROKER_START_WAIT;
        loop {
            let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if printed.lines().any(|line| line == "ready") {
                self.addresses = Addresses::parse(&printed);
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let logged = std::fs::read(self.log_path()).unwrap_or_default();
                let start = usize::try_from(log_start).unwrap().min(logged.len());
                return Err(format!(
                    "{}(exit status: {status})",
                    String::from_utf8_lossy(&logged[start..])
                ));
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail(40);
                self.kill();
                panic!(
                    "broker {} did not print `ready` within {BROKER_START_WAIT:?}; log:\n{tail}",
                    self.id()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for BrokerNode {
    fn drop(&mut self) {
        self.kill();
        if self.mounted {
            let path =
                std::ffi::CString::new(self.data_dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: umount2(2) with a valid C string; a lazy unmount cannot fail on a busy
            // mount, and a failure leaves a tmpfs behind, which is harmless.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Mounts a tmpfs of `bytes` at `dir` (created).
fn mount_tmpfs(dir: &Path, bytes: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let options = std::ffi::CString::new(format!("size={bytes}")).unwrap();
    // SAFETY: mount(2) with valid C strings.
    let result = unsafe {
        libc::mount(
            c"sluice-test".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    assert_eq!(
        result,
        0,
        "mount tmpfs at {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}

/// Free bytes of the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs is plain old data, for which all zeroes is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(2) with a valid C string and out-parameter.
    let result = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    assert_eq!(result, 0, "statvfs {}", dir.display());
    stat.f_bavail * stat.f_frsize
}

/// Appends zeros to `file` until the disk refuses more.
fn fill_by_writing(mut file: &File) {
    use std::io::Write as _;
    let block = vec![0u8; FILL_BLOCK_BYTES];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&block[..1]).is_ok() {}
}

/// Where one start of a broker listens: the lines it prints before `ready` (`native ADDR`,
/// `shard N ADDR`, `kafka ADDR`, `admin ADDR`).
#[derive(Debug, Clone, Default)]
struct Addresses {
    native: String,
    kafka: String,
    shards: Vec<String>,
    admin: String,
}

impl Addresses {
    fn parse(printed: &str) -> Addresses {
        let mut addresses = Addresses::default();
        for line in printed.lines() {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["native", addr] => addresses.native = (*addr).to_string(),
                ["shard", _, addr] => addresses.shards.push((*addr).to_string()),
                ["admin", addr] => addresses.admin = (*addr).to_string(),
                ["kafka", addr] => addresses.kafka = (*addr).to_string(),
                _ => {}
            }
        }
        assert!(
            !addresses.native.is_empty(),
            "the broker printed `ready` without its native address:\n{printed}"
        );
        addresses
    }
}

/// The state letter of /proc/<pid>/stat (R, S, T, ...).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain spaces; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The last `lines` lines of a text file ("" when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
