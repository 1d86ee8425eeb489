//! Client traffic through the native client (`sluice_client`): a paced, idempotent producer of
//! numbered messages on its own glommio executor thread that records, per message, whether and when it
//! was acknowledged and at which offset; single sends with a chosen acks level; a consumer that
//! reads a partition from the beginning; and a consumer of every partition polling on its own
//! thread while faults are injected.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_client::blocking::{BlockingConsumer, BlockingProducer};
use sluice_client::{
    Acks, Client, ClientConfig, ClientError, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, SeekTo,
};

/// Longest a stopped producer may take to get every outstanding message answered.
const PRODUCER_FINISH_WAIT: Duration = Duration::from_secs(180);

/// Longest reading a partition up to a given offset may take.
const CONSUME_WAIT: Duration = Duration::from_secs(90);

/// How long one consumer poll waits for records.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// Poll interval of the waits in this file.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How far the paced producer may fall behind its schedule before it stops trying to catch up
/// (after a stall it resumes at its rate instead of bursting).
const PACING_SLACK: Duration = Duration::from_millis(100);

/// The value of numbered message `seq`.
pub fn message_value(seq: u64) -> Bytes {
    Bytes::from(format!("m-{seq:010}"))
}

/// Key number `key` of keyed numbered messages.
pub fn message_key(key: u64) -> Bytes {
    Bytes::from(format!("k-{key}"))
}

/// The number in a message value, if it is one of ours.
pub fn parse_message(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value)
        .ok()?
        .strip_prefix("m-")?
        .parse()
        .ok()
}

/// What happened to one numbered message.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its number (message `seq` goes to partition `seq % partitions`).
    pub seq: u64,
    /// Its partition.
    pub partition: i32,
    /// The offset it was acknowledged at, or the error it finally failed with.
    pub result: Result<i64, String>,
    /// When the producer learned the result.
    pub answered_at: Instant,
}

/// How to run a [`NumberedProducer`].
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Client settings (bootstrap, retries).
    pub client: ClientConfig,
    /// Topic.
    pub topic: String,
    /// Messages go round-robin to partitions 0..partitions, by number.
    pub partitions: i32,
    /// Acknowledgement level.
    pub acks: Acks,
    /// Messages per second.
    pub rate_per_s: u64,
    /// Messages sent but not yet answered, at most.
    pub window: usize,
    /// Number of the first message (so several runs on one topic send distinct messages).
    pub first_seq: u64,
    /// Keys: message `seq` gets key [`message_key`]`(seq % keys)`; None sends no keys.
    pub keys: Option<u64>,
}

/// A producer of numbered messages running until told to finish.
pub struct NumberedProducer {
    stop: Arc<AtomicBool>,
    acked: Arc<Vec<AtomicU64>>,
    outstanding: Arc<AtomicU64>,
    done: mpsc::Receiver<Result<Vec<Outcome>, String>>,
    partitions: i32,
}

/// Counters the producer thread updates for the test thread.
struct Progress {
    stop: Arc<AtomicBool>,
    acked: Arc<Vec<AtomicU64>>,
    outstanding: Arc<AtomicU64>,
}

impl NumberedProducer {
    /// Starts the producer thread with `options.acks`, a 1 ms linger, idempotence and the
    /// client's other producer defaults.
    pub fn start(options: ProducerOptions) -> NumberedProducer {
        let producer = ProducerConfig {
            acks: options.acks,
            linger_ms: 1,
            enable_idempotence: true,
            ..ProducerConfig::default()
        };
        NumberedProducer::start_with(options, producer)
    }

    /// Starts the producer thread with these producer settings (`options.acks` is ignored).
    pub fn start_with(options: ProducerOptions, producer: ProducerConfig) -> NumberedProducer {
        let partitions = options.partitions;
        let acked: Arc<Vec<AtomicU64>> =
            Arc::new((0..partitions).map(|_| AtomicU64::new(0)).collect());
        let progress = Progress {
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::clone(&acked),
            outstanding: Arc::new(AtomicU64::new(0)),
        };
        let stop = Arc::clone(&progress.stop);
        let outstanding = Arc::clone(&progress.outstanding);
        let (sender, done) = mpsc::channel();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name("numbered-producer")
            .spawn(move || async move {
                let result = produce(options, producer, progress).await;
                let _ = sender.send(result);
            })
            .unwrap();
        // The result comes through the channel (with a bounded wait in `finish`), so the join
        // handle is not needed.
        drop(handle);
        NumberedProducer {
            stop,
            acked,
            outstanding,
            done,
            partitions,
        }
    }

    /// Runs a producer until every partition has `per_partition` acknowledged messages, then
    /// finishes it and returns the outcomes.
    pub fn run_until(
        options: ProducerOptions,
        per_partition: u64,
        timeout: Duration,
    ) -> Vec<Outcome> {
        let partitions = usize::try_from(options.partitions).unwrap();
        let producer = NumberedProducer::start(options);
        producer.wait_progress(
            &vec![0; partitions],
            per_partition,
            timeout,
            "the first messages",
        );
        producer.finish()
    }

    /// Messages of `partition` acknowledged so far.
    pub fn acked(&self, partition: i32) -> u64 {
        self.acked[usize::try_from(partition).unwrap()].load(Ordering::SeqCst)
    }

    /// Waits until `partition` has at least `count` acknowledged messages; panics after
    /// `timeout`, naming `what` it waited for.
    pub fn wait_acked(&self, partition: i32, count: u64, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while self.acked(partition) < count {
            if let Ok(result) = self.done.try_recv() {
                panic!("the producer ended early while waiting for {what}: {result:?}");
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {what}: partition {partition} has {} of {count} \
                 acknowledged messages, {} outstanding",
                self.acked(partition),
                self.outstanding.load(Ordering::SeqCst)
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until every partition has `more` acknowledged messages beyond `from` (one count
    /// per partition, as returned by [`NumberedProducer::acked_all`]).
    pub fn wait_progress(&self, from: &[u64], more: u64, timeout: Duration, what: &str) {
        for partition in 0..self.partitions {
            let base = from[usize::try_from(partition).unwrap()];
            self.wait_acked(partition, base + more, timeout, what);
        }
    }

    /// Acknowledged messages per partition.
    pub fn acked_all(&self) -> Vec<u64> {
        (0..self.partitions)
            .map(|partition| self.acked(partition))
            .collect()
    }

    /// Stops sending, waits until every message sent was answered, and returns the outcomes in
    /// message order.
    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        match self.done.recv_timeout(PRODUCER_FINISH_WAIT) {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(error)) => panic!("the producer failed: {error}"),
            Err(_) => panic!(
                "the producer did not finish within {PRODUCER_FINISH_WAIT:?}: {} messages still \
                 unanswered",
                self.outstanding.load(Ordering::SeqCst)
            ),
        }
    }
}

/// The producer thread's body.
async fn produce(
    options: ProducerOptions,
    config: ProducerConfig,
    progress: Progress,
) -> Result<Vec<Outcome>, String> {
    let client = Client::connect(options.client.clone())
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let producer = Producer::new(client, config);
    let window_units = u64::try_from(options.window).unwrap();
    let window = Rc::new(Semaphore::new(window_units));
    let outcomes: Rc<RefCell<Vec<Outcome>>> = Rc::new(RefCell::new(Vec::new()));
    let progress = Rc::new(progress);
    let interval = Duration::from_secs_f64(1.0 / options.rate_per_s as f64);
    let mut next_due = Instant::now();
    let mut seq = options.first_seq;
    while !progress.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if next_due > now {
            glommio::timer::sleep(next_due - now).await;
        }
        next_due = next_due.max(Instant::now() - PACING_SLACK) + interval;
        let permit = window
            .acquire_static_permit(1)
            .await
            .map_err(|error| format!("window: {error}"))?;
        let partition = i32::try_from(seq % u64::try_from(options.partitions).unwrap()).unwrap();
        let record = ProducerRecord {
            partition: Some(partition),
            key: options.keys.map(|keys| message_key(seq % keys)),
            ..ProducerRecord::new(options.topic.clone(), message_value(seq))
        };
        progress.outstanding.fetch_add(1, Ordering::SeqCst);
        let sent = producer.send(record).await;
        let outcomes = Rc::clone(&outcomes);
        let progress = Rc::clone(&progress);
        glommio::spawn_local(async move {
            let result = match sent {
                Ok(delivery) => delivery.await.map(|metadata| metadata.offset),
                Err(error) => Err(error),
            };
            if result.is_ok() {
                progress.acked[usize::try_from(partition).unwrap()].fetch_add(1, Ordering::SeqCst);
            }
            outcomes.borrow_mut().push(Outcome {
                seq,
                partition,
                result: result.map_err(|error| error.to_string()),
                answered_at: Instant::now(),
            });
            progress.outstanding.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        })
        .detach();
        seq += 1;
    }
    producer
        .flush()
        .await
        .map_err(|error| format!("flush: {error}"))?;
    // Every answer task holds one unit until it recorded its outcome.
    window
        .acquire(window_units)
        .await
        .map_err(|error| format!("window: {error}"))?;
    producer
        .close()
        .await
        .map_err(|error| format!("close: {error}"))?;
    let mut outcomes = outcomes.take();
    outcomes.sort_by_key(|outcome| outcome.seq);
    Ok(outcomes)
}

/// Sends one record to `topic`/`partition` with `acks`, without retries, and waits for the
/// answer: the offset, or the error as the client reports it.
pub fn send_once(
    client: ClientConfig,
    topic: &str,
    partition: i32,
    acks: Acks,
    value: Bytes,
) -> Result<i64, ClientError> {
    let producer = BlockingProducer::new(
        ClientConfig {
            retries_max: 0,
            ..client
        },
        ProducerConfig {
            acks,
            linger_ms: 0,
            retries_max: 0,
            ..ProducerConfig::default()
        },
    )?;
    let record = ProducerRecord {
        partition: Some(partition),
        ..ProducerRecord::new(topic, value)
    };
    producer
        .send(record)?
        .wait()
        .map(|metadata| metadata.offset)
}

/// Reads `topic`/`partition` from its first offset until the position reaches `end`; returns
/// every record's (offset, value). Panics when that takes longer than `CONSUME_WAIT` or a
/// non-retriable error occurs.
pub fn read_partition(
    client: ClientConfig,
    topic: &str,
    partition: i32,
    end: i64,
) -> Vec<(i64, Option<Bytes>)> {
    let consumer = BlockingConsumer::new(
        client,
        ConsumerConfig {
            fetch_max_wait_ms: 200,
            ..ConsumerConfig::default()
        },
    )
    .unwrap();
    consumer
        .assign(vec![(topic.to_string(), partition)], SeekTo::Earliest)
        .unwrap();
    let deadline = Instant::now() + CONSUME_WAIT;
    let mut records = Vec::new();
    loop {
        let position = consumer.position(topic, partition).unwrap().unwrap_or(0);
        if position >= end {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic}-{partition} reached offset {position} of {end} within \
             {CONSUME_WAIT:?}"
        );
        match consumer.poll(POLL_TIMEOUT) {
            Ok(batch) => records.extend(
                batch
                    .into_iter()
                    .map(|record| (record.offset, record.value)),
            ),
            Err(error) if error.is_retriable() => std::thread::sleep(POLL_INTERVAL),
            Err(error) => panic!("reading {topic}-{partition} at {position}: {error}"),
        }
    }
}

/// Records per partition, each with its offset, in the order they were consumed.
pub type ConsumedRecords = Vec<Vec<(i64, Option<Bytes>)>>;

/// What the polling consumer's thread shares with the test.
#[derive(Default)]
struct Consumed {
    records: Mutex<ConsumedRecords>,
    errors: Mutex<Vec<String>>,
}

/// A consumer of every partition of a topic from its first offset, polling on a thread of its
/// own until finished: the records it returned (per partition, in order) and every poll that
/// failed are recorded for the test.
pub struct PollingConsumer {
    stop: Arc<AtomicBool>,
    consumed: Arc<Consumed>,
    thread: std::thread::JoinHandle<()>,
}

impl PollingConsumer {
    /// Assigns every partition of `topic` from its first offset and starts polling.
    pub fn start(client: ClientConfig, topic: &str, partitions: i32) -> PollingConsumer {
        let consumer = BlockingConsumer::new(
            client,
            ConsumerConfig {
                fetch_max_wait_ms: 200,
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
        let assignment = (0..partitions).map(|p| (topic.to_string(), p)).collect();
        consumer.assign(assignment, SeekTo::Earliest).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let consumed = Arc::new(Consumed::default());
        *consumed.records.lock().unwrap() = vec![Vec::new(); usize::try_from(partitions).unwrap()];
        let thread = {
            let (stop, consumed) = (Arc::clone(&stop), Arc::clone(&consumed));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match consumer.poll(POLL_TIMEOUT) {
                        Ok(batch) => {
                            let mut records = consumed.records.lock().unwrap();
                            for record in batch {
                                let index = usize::try_from(record.partition).unwrap();
                                records[index].push((record.offset, record.value));
                            }
                        }
                        Err(error) => {
                            consumed.errors.lock().unwrap().push(error.to_string());
                            std::thread::sleep(POLL_INTERVAL);
                        }
                    }
                }
            })
        };
        PollingConsumer {
            stop,
            consumed,
            thread,
        }
    }

    /// The offset after the last record consumed from `partition` (0 before the first).
    pub fn position(&self, partition: i32) -> i64 {
        self.consumed
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[usize::try_from(partition).unwrap()]
        .last()
        .map_or(0, |(offset, _)| offset + 1)
    }

    /// Waits until every partition's position reached `ends[partition]`, panicking with `what`
    /// after `timeout`.
    pub fn wait_positions(&self, ends: &[i64], timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            let positions: Vec<i64> = (0..ends.len())
                .map(|partition| self.position(i32::try_from(partition).unwrap()))
                .collect();
            if positions
                .iter()
                .zip(ends)
                .all(|(position, end)| position >= end)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {what}: the consumer is at {positions:?} of {ends:?}; \
                 poll errors: {:?}",
                self.consumed
                    .errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops polling; returns the records consumed per partition and the errors of every poll
    /// that failed.
    pub fn finish(self) -> (ConsumedRecords, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let consumed = Arc::into_inner(self.consumed).unwrap();
        (
            consumed.records.into_inner().unwrap(),
            consumed.errors.into_inner().unwrap(),
        )
    }
}
