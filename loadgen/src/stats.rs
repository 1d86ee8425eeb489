//! Per-window measurements and the exactly-once bookkeeping.
//!
//! Each executor keeps its own [`WindowStats`] (no sharing, no lock) and hands the finished
//! window to the main thread at every window boundary. [`SequenceSet`]s record which sequence
//! numbers of a producer were acknowledged or consumed, so the end of the run can count what was
//! lost or delivered twice, partition by partition.

use std::collections::BTreeSet;

use crate::histogram::LatencyHistogram;

/// Message and byte counts of one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages handed to the client.
    pub sent: u64,
    /// Payload bytes handed to the client.
    pub sent_bytes: u64,
    /// Messages the broker acknowledged.
    pub acked: u64,
    /// Payload bytes the broker acknowledged.
    pub acked_bytes: u64,
    /// Messages whose send failed.
    pub failed: u64,
    /// Messages consumers received (over all subscriptions).
    pub consumed: u64,
    /// Payload bytes consumers received.
    pub consumed_bytes: u64,
}

impl Counters {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Counters) {
        self.sent += other.sent;
        self.sent_bytes += other.sent_bytes;
        self.acked += other.acked;
        self.acked_bytes += other.acked_bytes;
        self.failed += other.failed;
        self.consumed += other.consumed;
        self.consumed_bytes += other.consumed_bytes;
    }
}

/// Everything measured in one window on one executor (or, merged, on all of them).
#[derive(Debug, Clone, Default)]
pub struct WindowStats {
    /// Counts.
    pub counters: Counters,
    /// Publish latency: acknowledgement time minus intended send time.
    pub publish_latency: LatencyHistogram,
    /// End-to-end latency: consume time minus intended send time.
    pub end_to_end_latency: LatencyHistogram,
}

impl WindowStats {
    /// Adds `other` to `self`.
    pub fn merge(&mut self, other: &WindowStats) {
        self.counters.add(&other.counters);
        self.publish_latency.merge(&other.publish_latency);
        self.end_to_end_latency.merge(&other.end_to_end_latency);
    }

    /// Returns the finished window and starts an empty one.
    pub fn take(&mut self) -> WindowStats {
        std::mem::take(self)
    }
}

/// A set of sequence numbers that arrive mostly in order: everything below `contiguous` plus
/// the few seen ahead of it. Memory stays small however many messages a run sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceSet {
    contiguous: u64,
    ahead: BTreeSet<u64>,
}

impl SequenceSet {
    /// An empty set.
    pub fn new() -> SequenceSet {
        SequenceSet::default()
    }

    /// Adds `sequence`; returns false if it was already present (a duplicate).
    pub fn insert(&mut self, sequence: u64) -> bool {
        if self.contains(sequence) {
            return false;
        }
        if sequence == self.contiguous {
            self.contiguous += 1;
            while self.ahead.remove(&self.contiguous) {
                self.contiguous += 1;
            }
        } else {
            self.ahead.insert(sequence);
        }
        true
    }

    /// Whether `sequence` is present.
    pub fn contains(&self, sequence: u64) -> bool {
        sequence < self.contiguous || self.ahead.contains(&sequence)
    }

    /// Number of sequences present.
    pub fn len(&self) -> u64 {
        self.contiguous + self.ahead.len() as u64
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many members of `self` are absent from `other`.
    pub fn missing_from(&self, other: &SequenceSet) -> u64 {
        // The contiguous run [0, self.contiguous) overlaps other's run [0, other.contiguous) and
        // whichever of other's ahead-set falls inside it; everything else of the run is missing.
        let run_present = self.contiguous.min(other.contiguous)
            + other
                .ahead
                .range(other.contiguous..self.contiguous.max(other.contiguous))
                .count() as u64;
        let run_missing = self.contiguous - run_present;
        let ahead_missing = self
            .ahead
            .iter()
            .filter(|sequence| !other.contains(**sequence))
            .count() as u64;
        run_missing + ahead_missing
    }

    /// Adds every member of `other` to `self`; returns how many were already present.
    pub fn union_with(&mut self, other: &SequenceSet) -> u64 {
        let mut already = 0;
        if other.contiguous > self.contiguous {
            // Count the overlap of other's run with self's ahead-set before absorbing it.
            already += self.contiguous
                + self.ahead.range(self.contiguous..other.contiguous).count() as u64;
            let kept = self.ahead.split_off(&other.contiguous);
            self.ahead = kept;
            self.contiguous = other.contiguous;
            while self.ahead.remove(&self.contiguous) {
                self.contiguous += 1;
            }
        } else {
            already += other.contiguous;
        }
        for sequence in &other.ahead {
            if !self.insert(*sequence) {
                already += 1;
            }
        }
        already
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves in-order and out-of-order inserts are both counted once and repeats are reported as
    // duplicates, by inserting a shuffled range with repeats.
    #[test]
    fn sequence_set_counts_duplicates() {
        let mut set = SequenceSet::new();
        for sequence in [0, 1, 3, 2, 5, 5, 4, 1] {
            set.insert(sequence);
        }
        assert_eq!(set.len(), 6);
        assert!(!set.insert(3));
        assert!(set.insert(9));
        assert!(set.contains(9) && !set.contains(8));
        assert_eq!(set.len(), 7);
    }

    // Proves missing_from counts exactly the acknowledged sequences a consumer never saw, for
    // runs, gaps and out-of-order tails, by comparing against a brute-force count.
    #[test]
    fn missing_from_matches_brute_force() {
        let acked_members: Vec<u64> = (0..100).chain([120, 130, 131]).collect();
        let consumed_cases: Vec<Vec<u64>> = vec![
            (0..100).chain([120, 130, 131]).collect(),
            (0..50).collect(),
            (0..40).chain(60..100).chain([131, 200]).collect(),
            vec![],
            (10..200).collect(),
        ];
        let mut acked = SequenceSet::new();
        for sequence in &acked_members {
            acked.insert(*sequence);
        }
        for consumed_members in consumed_cases {
            let mut consumed = SequenceSet::new();
            for sequence in &consumed_members {
                consumed.insert(*sequence);
            }
            let expected = acked_members
                .iter()
                .filter(|s| !consumed_members.contains(s))
                .count() as u64;
            assert_eq!(
                acked.missing_from(&consumed),
                expected,
                "consumed {consumed_members:?}"
            );
        }
    }

    // Proves union_with merges two consumers' sets and counts the overlap as duplicates, by
    // merging overlapping ranges.
    #[test]
    fn union_counts_overlap() {
        let mut first = SequenceSet::new();
        let mut second = SequenceSet::new();
        for sequence in (0..10).chain([15, 20]) {
            first.insert(sequence);
        }
        for sequence in (0..18).chain([25]) {
            second.insert(sequence);
        }
        let already = first.union_with(&second);
        assert_eq!(already, 11);
        assert_eq!(first.len(), 20);
        for sequence in (0..18).chain([20, 25]) {
            assert!(first.contains(sequence));
        }
    }
}
