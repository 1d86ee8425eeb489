//! A TCP proxy that loses produce answers: it forwards frames both ways and, for the produce
//! requests its `DropRule` picks, lets the broker append and answer, then closes the connection
//! instead of returning the answer (and everything queued behind it). Clients reach it when the
//! brokers bind 127.0.0.1 and advertise another loopback address (`--advertised-host`) on which
//! the proxy listens at the same ports.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sluice_net::api::ApiKey;
use sluice_net::frame::{FLAG_RESPONSE, FRAME_PREFIX_BYTES};

/// How often the accept loops look for a new connection or the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Which produce requests lose their answer.
#[derive(Debug, Clone, Copy)]
pub struct DropRule {
    /// Every this many-th produce request (counted over all connections) loses its answer.
    pub every_produce: u32,
    /// Connections cut at most.
    pub drops_max: u32,
}

/// What the proxy threads share.
struct ProxyState {
    stop: AtomicBool,
    /// Produce requests forwarded so far, over every connection.
    produce_requests: AtomicU32,
    /// Connections cut after an appended produce request.
    drops: AtomicU32,
    /// Which produce requests lose their answer.
    rule: DropRule,
}

/// Forwards `host:port` to each target `127.0.0.1:port`, cutting connections as its
/// `DropRule` says. Stops its accept threads when dropped (connection threads end with their
/// connections).
pub struct DropProxy {
    state: Arc<ProxyState>,
    accept_threads: Vec<JoinHandle<()>>,
}

impl DropProxy {
    /// Listens on `host` at each target's port.
    pub fn start(host: &str, targets: &[SocketAddr], rule: DropRule) -> DropProxy {
        let state = Arc::new(ProxyState {
            stop: AtomicBool::new(false),
            produce_requests: AtomicU32::new(0),
            drops: AtomicU32::new(0),
            rule,
        });
        let accept_threads = targets
            .iter()
            .map(|target| {
                let listen: SocketAddr = format!("{host}:{}", target.port()).parse().unwrap();
                let listener = TcpListener::bind(listen).unwrap();
                listener.set_nonblocking(true).unwrap();
                let (state, target) = (Arc::clone(&state), *target);
                std::thread::spawn(move || accept_loop(&listener, target, &state))
            })
            .collect();
        DropProxy {
            state,
            accept_threads,
        }
    }

    /// Connections cut so far, each after the broker answered an appended produce request.
    pub fn drops(&self) -> u32 {
        self.state.drops.load(Ordering::SeqCst)
    }

    /// Produce requests forwarded so far.
    pub fn produce_requests(&self) -> u32 {
        self.state.produce_requests.load(Ordering::SeqCst)
    }
}

impl Drop for DropProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for thread in self.accept_threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, state: &Arc<ProxyState>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                let Ok(broker) = TcpStream::connect(target) else {
                    continue;
                };
                start_pumps(client, broker, state);
            }
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Reads one whole frame (length prefix included), or `None` at the end of the stream.
fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut prefix = [0_u8; FRAME_PREFIX_BYTES];
    stream.read_exact(&mut prefix).ok()?;
    let length = u32::from_be_bytes(prefix) as usize;
    let mut frame = vec![0_u8; FRAME_PREFIX_BYTES + length];
    frame[..FRAME_PREFIX_BYTES].copy_from_slice(&prefix);
    stream.read_exact(&mut frame[FRAME_PREFIX_BYTES..]).ok()?;
    Some(frame)
}

fn api_of(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[4], frame[5]])
}

fn correlation_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]])
}

fn is_response(frame: &[u8]) -> bool {
    u16::from_be_bytes([frame[12], frame[13]]) & FLAG_RESPONSE != 0
}

/// Two threads per connection: requests to the broker (marking the produce requests the rule
/// picks), responses back (cutting both sockets instead of returning a marked one).
fn start_pumps(client: TcpStream, broker: TcpStream, state: &Arc<ProxyState>) {
    let marked: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let (mut client_in, mut broker_out) =
        (client.try_clone().unwrap(), broker.try_clone().unwrap());
    let (requests_state, requests_marked) = (Arc::clone(state), Arc::clone(&marked));
    std::thread::spawn(move || {
        while let Some(frame) = read_frame(&mut client_in) {
            if api_of(&frame) == ApiKey::Produce.code() {
                let seen = requests_state
                    .produce_requests
                    .fetch_add(1, Ordering::SeqCst)
                    + 1;
                let rule = requests_state.rule;
                if seen % rule.every_produce == 0
                    && requests_state.drops.load(Ordering::SeqCst) < rule.drops_max
                {
                    requests_marked
                        .lock()
                        .unwrap()
                        .insert(correlation_of(&frame));
                }
            }
            if broker_out.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = broker_out.shutdown(Shutdown::Both);
        let _ = client_in.shutdown(Shutdown::Both);
    });
    let (mut broker_in, mut client_out) = (broker, client);
    let state = Arc::clone(state);
    std::thread::spawn(move || {
        while let Some(frame) = read_frame(&mut broker_in) {
            let cut = is_response(&frame) && marked.lock().unwrap().remove(&correlation_of(&frame));
            if cut {
                // The broker appended the batch and answered; the client never hears it.
                state.drops.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if client_out.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
        let _ = broker_in.shutdown(Shutdown::Both);
    });
}
