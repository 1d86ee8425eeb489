//! The native client's idempotent producer against a real `sluice broker` process, through a
//! TCP proxy that loses produce responses: the proxy forwards a produce request, lets the broker
//! append it, and closes the connection instead of returning the response. The producer resends
//! (5 requests in flight per partition); the broker answers the batches it already has as
//! duplicates. Read back, the partition holds every acknowledged record once, in send order.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{run, BrokerProcess};
use sluice_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    SeekTo,
};
use sluice_net::api::ApiKey;
use sluice_net::frame::{FLAG_RESPONSE, FRAME_PREFIX_BYTES};

const TOPIC: &str = "proxied";
const PARTITIONS: i32 = 2;
/// Records sent per partition.
const RECORDS_PER_PARTITION: usize = 600;
/// The proxy cuts the connection after the response to every this many-th produce request.
const DROP_EVERY_PRODUCE: u32 = 15;
/// Connections the proxy cuts at most.
const DROPS_MAX: u32 = 4;
/// The sender pauses `SEND_PAUSE` after this many records per partition, so records go out in
/// many requests rather than a few large ones.
const SEND_PAUSE_EVERY: usize = 4;
const SEND_PAUSE: Duration = Duration::from_millis(1);
/// Loopback address the proxy listens on; the broker binds 127.0.0.1 and advertises this one.
const PROXY_HOST: &str = "127.0.0.2";
/// How often the proxy's accept loops look for a new connection or the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Longest the whole read-back may take.
const READ_BACK_WAIT: Duration = Duration::from_secs(60);

/// What the proxy threads share.
#[derive(Default)]
struct ProxyState {
    stop: AtomicBool,
    /// Produce requests forwarded so far, over every connection.
    produce_requests: AtomicU32,
    /// Connections cut after an appended produce request.
    drops: AtomicU32,
}

/// Forwards `PROXY_HOST:port` to `127.0.0.1:port` for each port, cutting connections as
/// `DROP_EVERY_PRODUCE` says. Stops its threads when dropped.
struct DropProxy {
    state: Arc<ProxyState>,
    accept_threads: Vec<JoinHandle<()>>,
}

impl DropProxy {
    fn start(targets: &[SocketAddr]) -> DropProxy {
        let state = Arc::new(ProxyState::default());
        let accept_threads = targets
            .iter()
            .map(|target| {
                let listen: SocketAddr = format!("{PROXY_HOST}:{}", target.port()).parse().unwrap();
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

/// Two threads per connection: requests to the broker (marking every `DROP_EVERY_PRODUCE`-th
/// produce request), responses back (cutting both sockets instead of returning a marked one).
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
                if seen % DROP_EVERY_PRODUCE == 0
                    && requests_state.drops.load(Ordering::SeqCst) < DROPS_MAX
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

fn value(partition: i32, index: usize) -> Bytes {
    Bytes::from(format!("p{partition}-{index:06}"))
}

/// Sends every record (alternating partitions, one batch per few records so many requests are
/// in flight) and returns each record's acknowledged (partition, offset), in send order.
async fn produce_all(client: &Rc<Client>) -> Vec<(i32, i64, Bytes)> {
    let config = ProducerConfig {
        linger_ms: 0,
        batch_bytes_max: 256,
        ..ProducerConfig::default()
    };
    assert!(config.enable_idempotence && config.max_in_flight_requests_per_partition == 5);
    let producer = Producer::new(Rc::clone(client), config);
    let mut deliveries = Vec::new();
    for index in 0..RECORDS_PER_PARTITION {
        for partition in 0..PARTITIONS {
            let record = ProducerRecord {
                partition: Some(partition),
                ..ProducerRecord::new(TOPIC, value(partition, index))
            };
            deliveries.push((
                value(partition, index),
                producer.send(record).await.unwrap(),
            ));
        }
        if index % SEND_PAUSE_EVERY == 0 {
            glommio::timer::sleep(SEND_PAUSE).await;
        }
    }
    producer.flush().await.unwrap();
    let mut acknowledged = Vec::new();
    for (value, delivery) in deliveries {
        let metadata = delivery.await.unwrap();
        acknowledged.push((metadata.partition, metadata.offset, value));
    }
    producer.close().await.unwrap();
    acknowledged
}

/// Every record of the topic as (partition, offset, value), read from the start.
async fn read_back(client: &Rc<Client>, expected: usize) -> Vec<(i32, i64, Bytes)> {
    let mut consumer = Consumer::new(Rc::clone(client), ConsumerConfig::default());
    let assignment = (0..PARTITIONS).map(|partition| (TOPIC.to_string(), partition));
    consumer
        .assign(assignment.collect(), SeekTo::Earliest)
        .await
        .unwrap();
    let deadline = Instant::now() + READ_BACK_WAIT;
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            records.push((
                record.partition,
                record.offset,
                record.value.unwrap_or_default(),
            ));
        }
    }
    // Anything past the expected count would be a duplicate: give it a moment to show.
    for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
        records.push((
            record.partition,
            record.offset,
            record.value.unwrap_or_default(),
        ));
    }
    records
}

#[test]
fn lost_produce_responses_never_duplicate_or_reorder() {
    // Proves exactly once in send order across lost responses against a real broker: a proxy
    // cuts the connection after the broker appended every 15th produce request (up to 4 times),
    // with 5 requests per partition in flight; every record is acknowledged, each partition
    // read back holds each record once, in send order, at the acknowledged offsets.
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--shards", "2", "--advertised-host", PROXY_HOST],
    );
    let mut targets = vec![broker.native];
    targets.extend(broker.shards.iter().copied());
    let proxy = DropProxy::start(&targets);
    let (acknowledged, records) = run(async {
        let client = Client::connect(ClientConfig {
            bootstrap: vec![format!("{PROXY_HOST}:{}", broker.native.port())],
            retry_backoff_ms: 10,
            request_timeout_ms: 10_000,
            ..ClientConfig::default()
        })
        .await
        .unwrap();
        client
            .create_topic(TOPIC, PARTITIONS, 1, Vec::new())
            .await
            .unwrap();
        let acknowledged = produce_all(&client).await;
        let records = read_back(&client, acknowledged.len()).await;
        (acknowledged, records)
    });
    assert!(
        proxy.state.drops.load(Ordering::SeqCst) >= 2,
        "the proxy cut too few connections to prove anything"
    );
    let mut expected = acknowledged.clone();
    expected.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    let mut consumed = records;
    consumed.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    assert_eq!(
        consumed.len(),
        expected.len(),
        "records missing or duplicated"
    );
    assert_eq!(
        consumed, expected,
        "the log differs from what was acknowledged"
    );
    for partition in 0..PARTITIONS {
        let values: Vec<Bytes> = consumed
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, _, value)| value.clone())
            .collect();
        let sent: Vec<Bytes> = (0..RECORDS_PER_PARTITION)
            .map(|index| value(partition, index))
            .collect();
        assert_eq!(values, sent, "partition {partition} is not in send order");
    }
}
