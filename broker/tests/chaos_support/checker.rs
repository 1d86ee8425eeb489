//! The checker: what the workload was told (every acknowledgement with its offset and time),
//! what the reader was given and committed, and what the healed cluster holds at the end (each
//! partition read back from offset 0 to its high watermark, and every replica's segment files
//! below the high watermark compared byte for byte with the leader's), reduced to a report.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::consumer::ReaderLog;
use super::nemesis::FaultRecord;
use super::schedule::FaultKind;
use crate::support_cluster::logs::{below, common_prefix, contiguous_end, read_batches};
use crate::support_cluster::traffic::parse_message;
use crate::support_cluster::{Cluster, Outcome, CLUSTER_WAIT};

/// Poll interval while waiting for a follower's files to reach the high watermark.
const FILES_POLL: Duration = Duration::from_millis(200);

/// One partition as the healed cluster holds it.
pub struct PartitionEnd {
    /// Its high watermark.
    pub high_watermark: i64,
    /// Its records from offset 0 up to the high watermark, read through the client.
    pub records: Vec<(i64, Option<Bytes>)>,
    /// Why a replica's log differs from the leader's below the high watermark, if one does.
    pub divergence: Option<String>,
}

/// Compares every replica's files of `topic`/`partition` below the settled high watermark with
/// the leader's, byte for byte; returns the high watermark, or how they differ.
pub fn compare_replicas(cluster: &Cluster, topic: &str, partition: i32) -> (i64, Option<String>) {
    let (leader, high_watermark) = cluster.wait_settled(topic, partition);
    let leader_batches = below(
        &read_batches(&cluster.partition_dir(leader, topic, partition)),
        high_watermark,
    );
    if contiguous_end(&leader_batches) != high_watermark {
        return (
            high_watermark,
            Some(format!(
                "leader {leader}'s files end at {} below the high watermark {high_watermark}",
                contiguous_end(&leader_batches)
            )),
        );
    }
    let replicas = cluster.partition(topic, partition).replicas;
    for replica in replicas.into_iter().filter(|replica| *replica != leader) {
        let dir = cluster.partition_dir(replica, topic, partition);
        let deadline = Instant::now() + CLUSTER_WAIT;
        let mut batches = below(&read_batches(&dir), high_watermark);
        while contiguous_end(&batches) < high_watermark && Instant::now() < deadline {
            std::thread::sleep(FILES_POLL);
            batches = below(&read_batches(&dir), high_watermark);
        }
        let same = common_prefix(&leader_batches, &batches);
        if same != leader_batches.len() || same != batches.len() {
            let describe = |batch: Option<&crate::support_cluster::logs::StoredBatch>| {
                batch.map(|batch| {
                    format!(
                        "{}..={} epoch {}",
                        batch.base_offset, batch.last_offset, batch.leader_epoch
                    )
                })
            };
            return (
                high_watermark,
                Some(format!(
                    "broker {replica} differs from leader {leader} below {high_watermark} at \
                     batch {same}: leader {:?}, replica {:?}",
                    describe(leader_batches.get(same)),
                    describe(batches.get(same))
                )),
            );
        }
    }
    (high_watermark, None)
}

/// Counts of what the checker found in one run.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    /// Messages sent.
    pub sent: usize,
    /// Messages acknowledged.
    pub acknowledged: usize,
    /// Messages that failed for good (retries exhausted).
    pub failed: usize,
    /// Acknowledged messages not at their acknowledged offset.
    pub lost: Vec<String>,
    /// Extra copies of a message (retries of non-idempotent sends may leave them).
    pub duplicates: usize,
    /// Acknowledged messages whose offsets are not in their send order.
    pub reordered: Vec<String>,
    /// Offsets missing, or records that are not messages sent to that partition.
    pub gaps: Vec<String>,
    /// Partitions whose replicas differ below the high watermark.
    pub diverged: Vec<String>,
    /// Records the reader was given that are not in the final log at that offset.
    pub reader_mismatch: Vec<String>,
    /// Records the reader was given.
    pub reader_records: usize,
    /// Group members the reader ran (1 + replacements after fatal errors).
    pub reader_members: usize,
    /// Polls, commits and connects of the reader that failed (retried).
    pub reader_errors: usize,
    /// Commits acknowledged.
    pub commits: usize,
    /// Committed offsets that moved backwards (acknowledged or read back).
    pub commits_backwards: Vec<String>,
    /// Partitions read back with no record.
    pub empty_partitions: usize,
    /// The compacted topic: keys whose newest acknowledged value is gone (neither it nor a
    /// later value of the key is in the log), and acknowledged values not at their offset.
    pub compacted_lost: Vec<String>,
    /// The compacted topic: records read back, and writes acknowledged.
    pub compacted_records: usize,
    /// The compacted topic: writes acknowledged.
    pub compacted_acknowledged: usize,
    /// The compacted topic: writes that failed for good.
    pub compacted_failed: usize,
    /// Producers that acknowledged nothing once every fault was healed (a client left broken),
    /// with their most frequent errors.
    pub stuck_producers: Vec<String>,
}

/// Checks one partition's final records against the acknowledgements.
pub fn check_partition(
    partition: i32,
    end: &PartitionEnd,
    outcomes: &[Outcome],
    findings: &mut Findings,
) {
    findings.empty_partitions += usize::from(end.records.is_empty());
    let mut offsets_of: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    let mut seq_at: BTreeMap<i64, u64> = BTreeMap::new();
    let sent_here = |seq: u64| {
        outcomes
            .binary_search_by_key(&seq, |outcome| outcome.seq)
            .is_ok_and(|index| outcomes[index].partition == partition)
    };
    for (index, (offset, value)) in end.records.iter().enumerate() {
        if *offset != i64::try_from(index).unwrap() {
            findings.gaps.push(format!(
                "p{partition}: offset {offset} read at position {index}"
            ));
            break;
        }
        match value.as_deref().and_then(parse_message) {
            Some(seq) if sent_here(seq) => {
                offsets_of.entry(seq).or_default().push(*offset);
                seq_at.insert(*offset, seq);
            }
            _ => findings.gaps.push(format!(
                "p{partition}: offset {offset} holds {value:?}, never sent here"
            )),
        }
    }
    let mut last_acked: Option<(u64, i64)> = None;
    for outcome in outcomes.iter().filter(|o| o.partition == partition) {
        let copies = offsets_of.get(&outcome.seq).map_or(0, Vec::len);
        findings.duplicates += copies.saturating_sub(1);
        let Ok(offset) = outcome.result else {
            continue;
        };
        if seq_at.get(&offset) != Some(&outcome.seq) {
            findings.lost.push(format!(
                "p{partition}: message {} acknowledged at offset {offset}, found at {:?}",
                outcome.seq,
                offsets_of.get(&outcome.seq)
            ));
        }
        if let Some((seq, previous)) = last_acked {
            if offset <= previous {
                findings.reordered.push(format!(
                    "p{partition}: message {} acknowledged at {offset}, after message {seq} at \
                     {previous}",
                    outcome.seq
                ));
            }
        }
        last_acked = Some((outcome.seq, offset));
    }
    if let Some(divergence) = &end.divergence {
        findings
            .diverged
            .push(format!("p{partition}: {divergence}"));
    }
}

/// How many distinct errors a stuck producer's finding names.
const STUCK_ERRORS_NAMED_MAX: usize = 3;

/// Checks that `producer` works again once every fault was healed (`healed_at`): one of its
/// writes answered afterwards is acknowledged. Otherwise the client stayed broken, and the
/// finding names its most frequent errors.
pub fn check_live_after_healing(
    producer: &str,
    outcomes: &[Outcome],
    healed_at: Instant,
    findings: &mut Findings,
) {
    let after: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| outcome.answered_at >= healed_at)
        .collect();
    if after.iter().any(|outcome| outcome.result.is_ok()) {
        return;
    }
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in outcomes {
        if let Err(error) = &outcome.result {
            *errors.entry(error.as_str()).or_default() += 1;
        }
    }
    let mut errors: Vec<(&str, usize)> = errors.into_iter().collect();
    errors.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let named: Vec<String> = errors
        .iter()
        .take(STUCK_ERRORS_NAMED_MAX)
        .map(|(error, count)| format!("{count}x {error}"))
        .collect();
    let last_ack = outcomes
        .iter()
        .filter(|outcome| outcome.result.is_ok())
        .map(|outcome| outcome.seq)
        .max();
    findings.stuck_producers.push(format!(
        "{producer}: nothing acknowledged after healing ({} answered since; last acknowledged \
         message {last_ack:?}); errors: {}",
        after.len(),
        named.join("; ")
    ));
}

/// Checks the compacted topic's one partition: compaction may drop any record but the newest
/// of its key, so every key's newest acknowledged value, or a later value of that key, must
/// still be there, and every acknowledged value still there must be at its offset, in offset
/// order. Message `seq` has key `seq % keys`.
pub fn check_compacted(
    records: &[(i64, Option<Bytes>)],
    outcomes: &[Outcome],
    keys: u64,
    findings: &mut Findings,
) {
    findings.compacted_records = records.len();
    let mut at: BTreeMap<u64, i64> = BTreeMap::new();
    let mut newest_held: BTreeMap<u64, u64> = BTreeMap::new();
    let mut previous = -1;
    for (offset, value) in records {
        let seq = value.as_deref().and_then(parse_message);
        let Some(seq) = seq.filter(|_| *offset > previous) else {
            findings
                .compacted_lost
                .push(format!("compacted: offset {offset} holds {value:?}"));
            continue;
        };
        previous = *offset;
        at.insert(seq, *offset);
        let newest = newest_held.entry(seq % keys).or_insert(seq);
        *newest = (*newest).max(seq);
    }
    let mut newest_acked: BTreeMap<u64, u64> = BTreeMap::new();
    for outcome in outcomes {
        let Ok(offset) = outcome.result else {
            findings.compacted_failed += 1;
            continue;
        };
        findings.compacted_acknowledged += 1;
        newest_acked.insert(outcome.seq % keys, outcome.seq);
        if at.get(&outcome.seq).is_some_and(|held| *held != offset) {
            findings.compacted_lost.push(format!(
                "compacted: message {} acknowledged at {offset}, found at {:?}",
                outcome.seq,
                at.get(&outcome.seq)
            ));
        }
    }
    for (key, acked) in newest_acked {
        if newest_held.get(&key).is_none_or(|held| *held < acked) {
            findings.compacted_lost.push(format!(
                "compacted: key {key}'s newest acknowledged value {acked} is gone (newest held: \
                 {:?})",
                newest_held.get(&key)
            ));
        }
    }
}

/// Checks the reader's records against the final logs, and its commits for moving backwards.
pub fn check_reader(log: &ReaderLog, ends: &[PartitionEnd], findings: &mut Findings) {
    findings.reader_records = log.records.len();
    findings.reader_members = log.members;
    findings.reader_errors = log.errors.len();
    findings.commits = log.commits.len();
    for (partition, offset, value) in &log.records {
        let end = &ends[usize::try_from(*partition).unwrap()];
        let held = usize::try_from(*offset)
            .ok()
            .and_then(|index| end.records.get(index));
        if held.map(|(_, held)| held) != Some(value) {
            findings.reader_mismatch.push(format!(
                "p{partition}: the reader was given {value:?} at offset {offset}, the log holds \
                 {:?}",
                held.map(|(_, held)| held)
            ));
        }
    }
    for (what, sequence) in [
        ("acknowledged", &log.commits),
        ("read back", &log.read_back),
    ] {
        let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, offset) in sequence {
            let high = highest.entry(*partition).or_insert(*offset);
            if offset < high {
                findings
                    .commits_backwards
                    .push(format!("p{partition}: {what} commit {offset} after {high}"));
            }
            *high = (*high).max(*offset);
        }
    }
}

/// A run's report: the seed, the faults, the findings and the availability.
pub struct Report {
    /// The seed of the schedule.
    pub seed: u64,
    /// How long the faults ran.
    pub ran: Duration,
    /// Every fault.
    pub faults: Vec<FaultRecord>,
    /// What the checker found.
    pub findings: Findings,
    /// For each fault: from its injection until every partition acknowledged a write sent
    /// after it (None: none did before the run ended).
    pub unavailable: Vec<Option<Duration>>,
    /// The producer is idempotent: duplicates are failures.
    pub idempotent: bool,
}

/// For each fault, the time from its injection until every partition had a write acknowledged
/// after it.
pub fn availability(
    faults: &[FaultRecord],
    outcomes: &[Outcome],
    partitions: i32,
) -> Vec<Option<Duration>> {
    faults
        .iter()
        .map(|fault| {
            let mut worst = Duration::ZERO;
            for partition in 0..partitions {
                let first = outcomes
                    .iter()
                    .filter(|o| o.partition == partition && o.result.is_ok())
                    .map(|o| o.answered_at)
                    .filter(|at| *at > fault.injected_at)
                    .min()?;
                worst = worst.max(first - fault.injected_at);
            }
            Some(worst)
        })
        .collect()
}

impl Report {
    /// Why the run fails, if it does.
    pub fn failures(&self) -> Vec<String> {
        let findings = &self.findings;
        let mut failures: Vec<String> = Vec::new();
        for list in [
            &findings.lost,
            &findings.reordered,
            &findings.gaps,
            &findings.diverged,
            &findings.reader_mismatch,
            &findings.commits_backwards,
            &findings.compacted_lost,
            &findings.stuck_producers,
        ] {
            failures.extend(list.iter().take(5).cloned());
        }
        if self.idempotent && findings.duplicates > 0 {
            failures.push(format!(
                "{} duplicates from an idempotent producer",
                findings.duplicates
            ));
        }
        failures.extend(self.vacuous());
        for fault in self.faults.iter().filter(|f| f.recovered_in.is_none()) {
            failures.push(format!(
                "no recovery within {:?} after {} (broker {:?})",
                super::nemesis::RECOVERY_WAIT,
                fault.fault,
                fault.target
            ));
        }
        failures
    }
}

impl Report {
    /// Why the run proved nothing, if it did not: no fault, no acknowledged write, nothing
    /// read or committed by the reader, or a partition read back empty.
    fn vacuous(&self) -> Vec<String> {
        let findings = &self.findings;
        [
            (self.faults.is_empty(), "no fault was injected"),
            (findings.acknowledged == 0, "no write was acknowledged"),
            (
                findings.reader_records == 0,
                "the reader was given no record",
            ),
            (findings.commits == 0, "the reader committed nothing"),
            (
                findings.compacted_acknowledged == 0,
                "no write to the compacted topic was acknowledged",
            ),
            (
                findings.empty_partitions > 0,
                "a partition was read back empty",
            ),
        ]
        .into_iter()
        .filter(|(vacuous, _)| *vacuous)
        .map(|(_, what)| format!("vacuous run: {what}"))
        .collect()
    }
}

/// p50 and max of some durations, ms ("-" when there are none).
fn p50_max(durations: &[Duration]) -> String {
    let mut sorted: Vec<u128> = durations.iter().map(Duration::as_millis).collect();
    sorted.sort_unstable();
    match (sorted.get(sorted.len() / 2), sorted.last()) {
        (Some(p50), Some(max)) => format!("p50 {p50} ms, max {max} ms"),
        _ => "-".to_string(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let findings = &self.findings;
        let by_kind: Vec<String> = FaultKind::ALL
            .iter()
            .map(|kind| {
                let count = self.faults.iter().filter(|f| f.injected == *kind).count();
                format!("{kind:?} {count}")
            })
            .collect();
        writeln!(
            f,
            "chaos report: seed {}, {} s, {} faults ({})",
            self.seed,
            self.ran.as_secs(),
            self.faults.len(),
            by_kind.join(", ")
        )?;
        writeln!(
            f,
            "  writes: {} sent, {} acknowledged, {} failed for good",
            findings.sent, findings.acknowledged, findings.failed
        )?;
        writeln!(
            f,
            "  lost {}, reordered {}, gaps {}, diverged {}, duplicates {} (idempotent producer: \
             {})",
            findings.lost.len(),
            findings.reordered.len(),
            findings.gaps.len(),
            findings.diverged.len(),
            findings.duplicates,
            self.idempotent
        )?;
        writeln!(
            f,
            "  reader: {} records, {} not in the log, {} commits, {} backwards ({} members, {} \
             failed requests retried)",
            findings.reader_records,
            findings.reader_mismatch.len(),
            findings.commits,
            findings.commits_backwards.len(),
            findings.reader_members,
            findings.reader_errors
        )?;
        writeln!(
            f,
            "  compacted topic: {} writes acknowledged, {} failed for good, {} records left, {} \
             lost",
            findings.compacted_acknowledged,
            findings.compacted_failed,
            findings.compacted_records,
            findings.compacted_lost.len()
        )?;
        let unavailable: Vec<Duration> = self.unavailable.iter().flatten().copied().collect();
        let recovered: Vec<Duration> = self.faults.iter().filter_map(|f| f.recovered_in).collect();
        writeln!(
            f,
            "  availability, fault to a write on every partition: {} ({} faults without one)",
            p50_max(&unavailable),
            self.unavailable.len() - unavailable.len()
        )?;
        write!(f, "  recovery after healing: {}", p50_max(&recovered))
    }
}
