//! Free TCP ports for etcd, which must be told its ports up front (brokers bind port 0 and print
//! what they got). Ports are picked below the kernel's ephemeral range (32768 and up on Linux),
//! so outgoing connections never take one between the check and etcd's bind, and an etcd
//! restarted on its data directory gets its old ports back. Another process can still take one
//! in between: etcd then fails to bind, and the harness starts it again on other ports.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

use rand::Rng;

/// Lowest port handed out.
const PORT_FIRST: u16 = 20_000;

/// One past the highest port handed out: the start of Linux's default ephemeral range.
const PORT_END: u16 = 32_768;

/// Random blocks tried before giving up.
const PORT_BLOCK_ATTEMPTS_MAX: usize = 1_000;

/// Ports this test process already handed out: tests of one binary run in parallel threads,
/// and a port given to a process that has not bound it yet still looks free.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `count` consecutive ports, each free on `host` now and never handed out before in this
/// process. Hosts that are not local addresses (a network namespace's) are not checked.
pub fn free_ports(host: &str, count: usize) -> Vec<u16> {
    let count = u16::try_from(count).unwrap();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|error| error.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let mut rng = rand::thread_rng();
    for _ in 0..PORT_BLOCK_ATTEMPTS_MAX {
        let first = rng.gen_range(PORT_FIRST..PORT_END - count);
        let block: Vec<u16> = (first..first + count).collect();
        let usable = block
            .iter()
            .all(|port| !handed_out.contains(port) && bindable(host, *port));
        if usable {
            handed_out.extend(block.iter().copied());
            return block;
        }
    }
    panic!("no {count} consecutive free ports on {host} in {PORT_FIRST}..{PORT_END}");
}

/// True when `host:port` can be bound here, or when `host` is not an address of this network
/// namespace (nothing can be checked from here then).
fn bindable(host: &str, port: u16) -> bool {
    match TcpListener::bind((host, port)) {
        Ok(_) => true,
        Err(error) => error.kind() == std::io::ErrorKind::AddrNotAvailable,
    }
}
