//! The workload's reader: one consumer-group member (the native client's `GroupConsumer`) on a
//! glommio thread of its own, polling the topic and committing its positions by hand every
//! `COMMIT_INTERVAL`. It records every record it was given, every commit the coordinator
//! acknowledged, and what the group's committed offsets read back as after each commit, for
//! the checker. A member whose client fails for good is replaced by a new one (it resumes from
//! the committed offsets, so records may be given twice: at-least-once).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_client::{Client, ClientConfig, ConsumerConfig, GroupConsumer, GroupConsumerConfig};

/// How often the member commits its positions.
const COMMIT_INTERVAL: Duration = Duration::from_millis(1_000);

/// How long one poll waits for records.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// Pause after a failed poll or connect.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// The member's session timeout, ms: longer than any pause of a coordinator, so the member is
/// not dropped for the coordinator's silence.
const SESSION_TIMEOUT_MS: u64 = 20_000;

/// Heartbeat interval, ms.
const HEARTBEAT_INTERVAL_MS: u64 = 1_000;

/// Longest the reader may take to stop after being told to.
const FINISH_WAIT: Duration = Duration::from_secs(60);

/// The group's name.
pub const GROUP: &str = "chaos-readers";

/// What the reader saw.
#[derive(Debug, Default)]
pub struct ReaderLog {
    /// Every record given to the member: (partition, offset, value).
    pub records: Vec<(i32, i64, Option<Bytes>)>,
    /// Every acknowledged commit, in order: (partition, committed offset).
    pub commits: Vec<(i32, i64)>,
    /// The committed offsets read back after each acknowledged commit, in order.
    pub read_back: Vec<(i32, i64)>,
    /// Failed polls, commits and connects.
    pub errors: Vec<String>,
    /// Members created (1 + replacements).
    pub members: usize,
}

/// The running reader.
pub struct Reader {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<ReaderLog>,
}

impl Reader {
    /// Starts the reader of `topic`.
    pub fn start(client: ClientConfig, topic: &str) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, done) = mpsc::channel();
        let topic = topic.to_string();
        let thread_stop = Arc::clone(&stop);
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name("chaos-reader")
            .spawn(move || async move {
                let log = read(client, topic, thread_stop).await;
                let _ = sender.send(log);
            })
            .unwrap();
        drop(handle);
        Reader { stop, done }
    }

    /// Stops the reader and returns what it saw.
    pub fn finish(self) -> ReaderLog {
        self.stop.store(true, Ordering::SeqCst);
        self.done
            .recv_timeout(FINISH_WAIT)
            .unwrap_or_else(|_| panic!("the reader did not stop within {FINISH_WAIT:?}"))
    }
}

fn member_config() -> GroupConsumerConfig {
    GroupConsumerConfig {
        session_timeout_ms: SESSION_TIMEOUT_MS,
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        enable_auto_commit: false,
        ..GroupConsumerConfig::new(GROUP)
    }
}

/// The reader thread's body: members one after the other until told to stop.
async fn read(client: ClientConfig, topic: String, stop: Arc<AtomicBool>) -> ReaderLog {
    let mut log = ReaderLog::default();
    while !stop.load(Ordering::SeqCst) {
        let connected = Client::connect(client.clone()).await;
        let member = connected.and_then(|client| {
            GroupConsumer::new(
                client,
                ConsumerConfig {
                    fetch_max_wait_ms: 200,
                    ..ConsumerConfig::default()
                },
                member_config(),
            )
        });
        match member {
            Ok(mut member) => {
                log.members += 1;
                member.subscribe(vec![topic.clone()]);
                run_member(&mut member, &topic, &stop, &mut log).await;
                let _ = member.close().await;
            }
            Err(error) => {
                log.errors.push(format!("connect: {error}"));
                glommio::timer::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    log
}

/// Polls and commits with one member until told to stop or its client fails for good.
async fn run_member(
    member: &mut GroupConsumer,
    topic: &str,
    stop: &AtomicBool,
    log: &mut ReaderLog,
) {
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match member.poll(POLL_TIMEOUT).await {
            Ok(records) => log.records.extend(
                records
                    .into_iter()
                    .map(|record| (record.partition, record.offset, record.value)),
            ),
            Err(error) => {
                log.errors.push(format!("poll: {error}"));
                if !error.is_retriable() {
                    return;
                }
                glommio::timer::sleep(ERROR_BACKOFF).await;
            }
        }
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            last_commit = Instant::now();
            commit(member, topic, log).await;
        }
    }
}

/// Commits the member's positions; when acknowledged, records them and reads them back.
async fn commit(member: &mut GroupConsumer, topic: &str, log: &mut ReaderLog) {
    let assignment = member.assignment();
    let positions: BTreeMap<i32, i64> = assignment
        .iter()
        .filter(|(name, _)| name == topic)
        .filter_map(|(name, partition)| Some((*partition, member.position(name, *partition)?)))
        .collect();
    if positions.is_empty() {
        return;
    }
    let offsets = positions
        .iter()
        .map(|(partition, offset)| (topic.to_string(), *partition, *offset))
        .collect();
    if let Err(error) = member.commit_offsets(offsets).await {
        log.errors.push(format!("commit: {error}"));
        return;
    }
    log.commits.extend(positions.iter().map(|(p, o)| (*p, *o)));
    let partitions: Vec<(String, i32)> = positions
        .keys()
        .map(|partition| (topic.to_string(), *partition))
        .collect();
    match member.committed(&partitions).await {
        Ok(committed) => log.read_back.extend(
            partitions
                .iter()
                .zip(committed)
                .filter_map(|((_, partition), offset)| Some((*partition, offset?))),
        ),
        Err(error) => log.errors.push(format!("read back commits: {error}")),
    }
}
