//! The broker's listening ports: the shared native port and each shard's own port.
//!
//! The shared native port is one SO_REUSEPORT group with one listening socket per shard. All of
//! them are bound and listening on the main thread before any shard starts, so the port is
//! never released between picking it and using it: with port 0 the kernel picks a port no other
//! socket uses (it never auto-binds into an existing group), and the other shards join the port
//! it picked. SO_REUSEPORT lets any process of the same user join a group, so after binding, the
//! broker reads the kernel's listening sockets (`/proc/net/tcp`, `/proc/net/tcp6`) and refuses
//! to start when a socket that is not its own listens on the same address and port: two brokers
//! started at once on one configured port both bind before they check, so at least one of them
//! sees the other and fails, instead of both silently sharing connections.
//!
//! A shard's own port is OS-assigned by default (port 0), or taken from the `shard_ports` list;
//! it is bound without SO_REUSEPORT, so it is exclusive. Clients learn every port from the
//! Metadata response (and other brokers from the broker's etcd registration), never by
//! arithmetic on the native port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt as _;

use socket2::{Domain, Protocol, Socket, Type};

use crate::BrokerError;

/// Listen backlog of every listener, in connections.
const LISTEN_QUEUE_CONNECTIONS_MAX: i32 = 1024;

/// The kernel's state number of a listening TCP socket in `/proc/net/tcp`.
const TCP_STATE_LISTEN: &str = "0A";

/// The kernel's tables of TCP sockets, IPv4 and IPv6.
const PROC_NET_TCP_TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// Binds a socket. `reuse_port` makes it a member of an SO_REUSEPORT group (the shared native
/// port); SO_REUSEADDR lets a restarted broker bind while old connections sit in TIME_WAIT.
pub fn bind_socket(addr: SocketAddr, reuse_port: bool, listen: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    if listen {
        socket.listen(LISTEN_QUEUE_CONNECTIONS_MAX)?;
    }
    Ok(socket)
}

/// The address a bound socket got from the kernel.
fn bound_addr(socket: &Socket, requested: SocketAddr) -> Result<SocketAddr, BrokerError> {
    socket
        .local_addr()
        .ok()
        .and_then(|local| local.as_socket())
        .ok_or_else(|| BrokerError::Bind {
            addr: requested,
            source: std::io::Error::other("bound socket has no address"),
        })
}

/// The shared native port's listening sockets, one per shard, bound before the shards start.
#[derive(Debug)]
pub struct NativeListeners {
    /// The bound address (the kernel's pick when the configured port was 0).
    pub addr: SocketAddr,
    /// One listening SO_REUSEPORT socket per shard, by shard index.
    pub sockets: Vec<Socket>,
}

/// Binds `count` listening sockets on `addr` as one SO_REUSEPORT group and checks that no
/// other process's socket listens on the same address and port.
pub fn bind_native_listeners(
    addr: SocketAddr,
    count: usize,
) -> Result<NativeListeners, BrokerError> {
    let first =
        bind_socket(addr, true, true).map_err(|source| BrokerError::Bind { addr, source })?;
    let bound = bound_addr(&first, addr)?;
    let mut sockets = Vec::with_capacity(count.max(1));
    sockets.push(first);
    for _ in 1..count {
        let socket = bind_socket(bound, true, true).map_err(|source| BrokerError::Bind {
            addr: bound,
            source,
        })?;
        sockets.push(socket);
    }
    let ours: Vec<u64> = sockets
        .iter()
        .map(socket_inode)
        .collect::<std::io::Result<_>>()
        .map_err(|source| BrokerError::Bind {
            addr: bound,
            source,
        })?;
    let listeners = read_listeners().map_err(|source| BrokerError::Bind {
        addr: bound,
        source,
    })?;
    if let Some(foreign) = foreign_listener(&listeners, bound, &ours) {
        return Err(BrokerError::Bind {
            addr: bound,
            source: std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another process listens on {} (socket inode {}) in the same SO_REUSEPORT \
                     port; refusing to share it",
                    foreign.addr, foreign.inode
                ),
            ),
        });
    }
    Ok(NativeListeners {
        addr: bound,
        sockets,
    })
}

/// The inode number of a socket, as `/proc/net/tcp` lists it.
fn socket_inode(socket: &Socket) -> std::io::Result<u64> {
    let path = format!("/proc/self/fd/{}", socket.as_raw_fd());
    Ok(std::fs::metadata(path)?.ino())
}

/// One listening TCP socket of this network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listener {
    /// Its local address.
    pub(crate) addr: SocketAddr,
    /// Its inode number.
    pub(crate) inode: u64,
}

/// Every listening TCP socket of this network namespace, IPv4 and IPv6.
fn read_listeners() -> std::io::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    for table in PROC_NET_TCP_TABLES {
        match std::fs::read_to_string(table) {
            Ok(text) => listeners.extend(parse_tcp_table(&text)),
            // IPv6 may be disabled: its table is then missing, and nothing can listen there.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(std::io::Error::new(
                    error.kind(),
                    format!("cannot read {table} to check the port is not shared: {error}"),
                ))
            }
        }
    }
    Ok(listeners)
}

/// The listening sockets of one `/proc/net/tcp` or `/proc/net/tcp6` table. Lines that do not
/// parse are skipped: the table's format is the kernel's, not input to trust blindly.
pub(crate) fn parse_tcp_table(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&TCP_STATE_LISTEN) {
                return None;
            }
            let addr = parse_hex_addr(fields.get(1)?)?;
            let inode = fields.get(9)?.parse().ok()?;
            Some(Listener { addr, inode })
        })
        .collect()
}

/// Parses the kernel's `ADDRESS:PORT` hex form: the address as 32-bit words in the host's byte
/// order (8 hex digits for IPv4, 32 for IPv6), the port big-endian.
fn parse_hex_addr(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in 0..address.len() / 8 {
        let value = u32::from_str_radix(address.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&value.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A listener that is not one of `ours` and would take connections meant for `addr`: same
/// port, and the same address or a wildcard on either side.
pub(crate) fn foreign_listener(
    listeners: &[Listener],
    addr: SocketAddr,
    ours: &[u64],
) -> Option<Listener> {
    listeners.iter().copied().find(|listener| {
        listener.addr.port() == addr.port()
            && !ours.contains(&listener.inode)
            && addresses_overlap(listener.addr.ip(), addr.ip())
    })
}

fn addresses_overlap(left: IpAddr, right: IpAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    left.is_unspecified() || right.is_unspecified() || plain(left) == plain(right)
}

/// The address shard `index` listens on for its own port: the native address's IP with the
/// configured port for that shard, or port 0 (the OS picks) when no list is configured.
pub fn shard_addr(shard_ports: &[u16], native_addr: SocketAddr, index: usize) -> SocketAddr {
    let port = shard_ports.get(index).copied().unwrap_or(0);
    SocketAddr::new(native_addr.ip(), port)
}

/// Binds shard `index`'s own port (exclusive: no SO_REUSEPORT) and returns the socket with the
/// address it got.
pub fn bind_shard_listener(
    shard_ports: &[u16],
    native_addr: SocketAddr,
    index: usize,
) -> Result<(Socket, SocketAddr), BrokerError> {
    let addr = shard_addr(shard_ports, native_addr, index);
    let socket =
        bind_socket(addr, false, true).map_err(|source| BrokerError::Bind { addr, source })?;
    let bound = bound_addr(&socket, addr)?;
    Ok((socket, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:23E0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:23E0 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   garbage line
";

    // Proves the kernel's table parses into listening sockets only (established connections and
    // malformed lines are skipped), with addresses in the host's byte order and ports decoded.
    #[test]
    fn proc_net_tcp_lists_listeners() {
        let listeners = parse_tcp_table(TABLE);
        let expected_loopback = if cfg!(target_endian = "little") {
            "127.0.0.1:9184"
        } else {
            "1.0.0.127:9184"
        };
        assert_eq!(
            listeners,
            vec![
                Listener {
                    addr: expected_loopback.parse::<SocketAddr>().unwrap(),
                    inode: 4242
                },
                Listener {
                    addr: "0.0.0.0:8080".parse::<SocketAddr>().unwrap(),
                    inode: 4444
                },
            ]
        );
        let v6 = parse_hex_addr("00000000000000000000000001000000:1F90").unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(v6, "[::1]:8080".parse::<SocketAddr>().unwrap());
        }
    }

    // Proves a foreign listener is one on the same port whose inode is not ours and whose
    // address overlaps ours (equal, or a wildcard on either side); our own sockets, other
    // ports and other specific addresses are not.
    #[test]
    fn foreign_listeners_are_detected() {
        let addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let listener = |text: &str, inode| Listener {
            addr: text.parse().unwrap(),
            inode,
        };
        let ours = [1, 2];
        let table = vec![
            listener("127.0.0.1:9000", 1),
            listener("127.0.0.1:9000", 2),
            listener("127.0.0.2:9000", 3),
            listener("127.0.0.1:9001", 4),
        ];
        assert_eq!(foreign_listener(&table, addr, &ours), None);
        let mut shared = table.clone();
        shared.push(listener("127.0.0.1:9000", 5));
        assert_eq!(foreign_listener(&shared, addr, &ours).unwrap().inode, 5);
        let mut wildcard = table;
        wildcard.push(listener("[::]:9000", 6));
        assert_eq!(foreign_listener(&wildcard, addr, &ours).unwrap().inode, 6);
    }

    // Proves the real check: a group bound on port 0 gets a port of its own, every socket of the
    // group is ours, and a second group joining that port with SO_REUSEPORT is refused.
    #[test]
    fn a_second_group_on_the_same_port_is_refused() {
        let first = bind_native_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_ne!(first.addr.port(), 0);
        assert_eq!(first.sockets.len(), 3);
        match bind_native_listeners(first.addr, 2) {
            Err(BrokerError::Bind { addr, source }) => {
                assert_eq!(addr, first.addr);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
            }
            other => panic!("a second group must be refused, got {other:?}"),
        }
        let shard = bind_shard_listener(&[], first.addr, 0).unwrap();
        assert_ne!(shard.1.port(), 0);
        assert_ne!(shard.1.port(), first.addr.port());
    }
}
