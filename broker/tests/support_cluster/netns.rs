//! A network namespace joined to this one by a veth pair, for network-partition tests: the
//! host end gets 10.201.X.1/24, the namespace end 10.201.X.2/24 (X random and unused here).
//! `cut` takes the host end down, which drops the link in both directions; `restore` brings it
//! back. Dropping it deletes the veth pair and the namespace.

use std::process::Command;

use rand::Rng;

/// Subnets tried before giving up on finding an unused 10.201.X.0/24.
const SUBNET_ATTEMPTS_MAX: usize = 50;

/// A namespace and the veth pair that joins it to this one.
pub struct NetnsLink {
    /// Namespace name (for `ip netns exec`).
    pub name: String,
    /// Address of the host end, reachable from inside the namespace.
    pub host_ip: String,
    /// Address of the namespace end, reachable from the host.
    pub netns_ip: String,
    /// A second address of the host end, for etcd: so the namespace can lose etcd alone, or
    /// everyone but etcd ([`NetnsLink::drop_outgoing`]).
    pub etcd_ip: String,
    host_if: String,
}

impl NetnsLink {
    /// Why network namespaces cannot be used here, or `None` when they can: it takes root and
    /// a working `ip netns`.
    pub fn unavailable_reason() -> Option<String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Some(format!(
                "not running as root (euid {euid}); network namespaces need root"
            ));
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(output) if output.status.success() => None,
            Ok(output) => Some(format!(
                "`ip netns list` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => Some(format!("cannot run `ip` (iproute2): {error}")),
        }
    }

    /// Creates the namespace and the veth pair, addressed and up. Err: what failed (the
    /// partial setup is removed).
    pub fn create() -> Result<NetnsLink, String> {
        let tag: u32 = rand::thread_rng().gen_range(0..0x00ff_ffff);
        let subnet = unused_subnet()?;
        let link = NetnsLink {
            name: format!("sluice-test-{tag:06x}"),
            host_ip: format!("10.201.{subnet}.1"),
            netns_ip: format!("10.201.{subnet}.2"),
            etcd_ip: format!("10.201.{subnet}.3"),
            host_if: format!("slh{tag:06x}"),
        };
        // Interface names are at most 15 bytes: "slh" or "sln" and six hex digits.
        let netns_if = format!("sln{tag:06x}");
        let steps: Vec<Vec<String>> = vec![
            args(&["netns", "add", &link.name]),
            args(&[
                "link",
                "add",
                &link.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &netns_if,
            ]),
            args(&["link", "set", &netns_if, "netns", &link.name]),
            args(&[
                "addr",
                "add",
                &format!("{}/24", link.host_ip),
                "dev",
                &link.host_if,
            ]),
            args(&[
                "addr",
                "add",
                &format!("{}/24", link.etcd_ip),
                "dev",
                &link.host_if,
            ]),
            args(&["link", "set", &link.host_if, "up"]),
            netns_args(&link.name, &["link", "set", "lo", "up"]),
            netns_args(
                &link.name,
                &[
                    "addr",
                    "add",
                    &format!("{}/24", link.netns_ip),
                    "dev",
                    &netns_if,
                ],
            ),
            netns_args(&link.name, &["link", "set", &netns_if, "up"]),
        ];
        for step in steps {
            // On failure `link` is dropped, which removes whatever was created.
            ip(&step)?;
        }
        Ok(link)
    }

    /// Cuts the link: the host end goes down, so no packet passes either way.
    pub fn cut(&self) {
        ip(&args(&["link", "set", &self.host_if, "down"])).unwrap();
    }

    /// Restores the link.
    pub fn restore(&self) {
        ip(&args(&["link", "set", &self.host_if, "up"])).unwrap();
    }

    /// Drops every packet the namespace sends to `address` (a blackhole route inside it), while
    /// packets from `address` still arrive: a one-way partition. TCP connections between the
    /// two then hang in both directions (no SYN-ACK or ACK gets back), but what was already
    /// sent towards the namespace is delivered, and nothing is refused outright.
    pub fn drop_outgoing(&self, address: &str) {
        let route = format!("{address}/32");
        ip(&netns_args(
            &self.name,
            &["route", "add", "blackhole", &route],
        ))
        .unwrap();
    }

    /// Undoes [`NetnsLink::drop_outgoing`].
    pub fn restore_outgoing(&self, address: &str) {
        let route = format!("{address}/32");
        ip(&netns_args(
            &self.name,
            &["route", "del", "blackhole", &route],
        ))
        .unwrap();
    }
}

impl Drop for NetnsLink {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; errors mean it was never created.
        let _ = ip(&args(&["link", "del", &self.host_if]));
        let _ = ip(&args(&["netns", "del", &self.name]));
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

fn netns_args(netns: &str, words: &[&str]) -> Vec<String> {
    let mut all = args(&["netns", "exec", netns, "ip"]);
    all.extend(args(words));
    all
}

/// Runs `ip` with `arguments`; Err carries the command and its stderr.
fn ip(arguments: &[String]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(arguments)
        .output()
        .map_err(|error| format!("ip {}: {error}", arguments.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// An X such that no address of this namespace is in 10.201.X.0/24.
fn unused_subnet() -> Result<u8, String> {
    let output = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|error| format!("ip -o -4 addr show: {error}"))?;
    let addresses = String::from_utf8_lossy(&output.stdout).to_string();
    let mut rng = rand::thread_rng();
    for _ in 0..SUBNET_ATTEMPTS_MAX {
        let subnet: u8 = rng.gen_range(1..=254);
        if !addresses.contains(&format!("10.201.{subnet}.")) {
            return Ok(subnet);
        }
    }
    Err("every 10.201.X.0/24 tried is in use".to_string())
}
