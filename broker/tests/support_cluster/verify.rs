//! The no-loss check of a partition's history against what the producer was told.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;

use super::traffic::{parse_message, Outcome};

/// What the check found, for the test's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistorySummary {
    /// Records read.
    pub records: usize,
    /// Messages acknowledged to the producer (each found at its offset).
    pub acknowledged: usize,
    /// Messages the producer saw fail.
    pub failed: usize,
    /// Extra copies of retried messages.
    pub duplicates: usize,
    /// Messages present although never acknowledged (their answer was lost).
    pub unacknowledged_present: usize,
}

/// Panics with the first few failures when any message failed for good (the producers of these
/// tests retry through every failover, so none may).
pub fn assert_all_acknowledged(outcomes: &[Outcome]) {
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| outcome.result.is_err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} messages failed although the producer retries through a failover; first: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
}

/// Checks the records of `partition` read from its first offset (`consumed`) against what the
/// producers were told (`outcomes`, every message sent to any partition, each number once),
/// where `first_fault` is when the first fault was injected. Panics, naming the offset and
/// message, when:
/// - offsets are not contiguous from 0;
/// - a record is not a message the producer sent to this partition;
/// - an acknowledged message is not at exactly the offset it was acknowledged at;
/// - messages appear out of order (first copies not in increasing message order);
/// - a message appears more than once although it was acknowledged before the first fault
///   (only a send whose answer was lost, and so was retried, may leave a copy), or a copy sits
///   after the offset the message was acknowledged at.
pub fn check_history(
    partition: i32,
    consumed: &[(i64, Option<Bytes>)],
    outcomes: &[Outcome],
    first_fault: Instant,
) -> HistorySummary {
    let sent_here: BTreeSet<u64> = outcomes
        .iter()
        .filter(|outcome| outcome.partition == partition)
        .map(|outcome| outcome.seq)
        .collect();
    let mut offsets_of: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for (index, (offset, value)) in consumed.iter().enumerate() {
        assert_eq!(
            *offset,
            i64::try_from(index).unwrap(),
            "partition {partition}: offsets are not contiguous from 0"
        );
        let seq = value.as_deref().and_then(parse_message).unwrap_or_else(|| {
            panic!("partition {partition} offset {offset}: {value:?} was never sent")
        });
        assert!(
            sent_here.contains(&seq),
            "partition {partition} offset {offset}: message {seq} was never sent to this partition"
        );
        offsets_of.entry(seq).or_default().push(*offset);
    }
    check_order(partition, &offsets_of);
    let mut summary = HistorySummary {
        records: consumed.len(),
        ..HistorySummary::default()
    };
    for outcome in outcomes
        .iter()
        .filter(|outcome| outcome.partition == partition)
    {
        let copies = offsets_of.get(&outcome.seq).map_or(&[][..], Vec::as_slice);
        match &outcome.result {
            Ok(offset) => {
                summary.acknowledged += 1;
                check_acknowledged(
                    partition,
                    outcome,
                    *offset,
                    copies,
                    consumed.len(),
                    first_fault,
                );
                summary.duplicates += copies.len() - 1;
            }
            Err(_) => {
                summary.failed += 1;
                summary.unacknowledged_present += usize::from(!copies.is_empty());
                summary.duplicates += copies.len().saturating_sub(1);
            }
        }
    }
    summary
}

/// The first copy of each message must come in increasing message order: the producer keeps
/// a partition's batches in order (one request in flight without idempotence; with it, up to 5
/// whose sequence numbers the leader checks), so a later message is never appended before an
/// earlier one's first copy.
fn check_order(partition: i32, offsets_of: &BTreeMap<u64, Vec<i64>>) {
    let mut firsts: Vec<(i64, u64)> = offsets_of
        .iter()
        .map(|(seq, offsets)| (offsets[0], *seq))
        .collect();
    firsts.sort_unstable();
    for pair in firsts.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "partition {partition}: message {} (offset {}) comes after message {} (offset {})",
            pair[1].1,
            pair[1].0,
            pair[0].1,
            pair[0].0
        );
    }
}

fn check_acknowledged(
    partition: i32,
    outcome: &Outcome,
    offset: i64,
    copies: &[i64],
    readable: usize,
    first_fault: Instant,
) {
    let seq = outcome.seq;
    assert!(
        copies.contains(&offset),
        "partition {partition}: message {seq} was acknowledged at offset {offset} but is not \
         there (found at {copies:?}; {readable} records readable)"
    );
    if copies.len() > 1 {
        assert!(
            outcome.answered_at >= first_fault,
            "partition {partition}: message {seq} was acknowledged before any fault, yet it \
             appears at offsets {copies:?}"
        );
        assert!(
            copies.iter().all(|copy| *copy <= offset),
            "partition {partition}: message {seq} was acknowledged at offset {offset} but \
             appears again after it, at {copies:?}"
        );
    }
}
