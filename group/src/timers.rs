//! The coordinator's deadlines, ordered, so the next one is found in O(log n) however many
//! groups and members there are. Each entity keeps its own deadline; a timer whose entity
//! moved its deadline is removed when it moves, and checked again when it fires.

use std::collections::BTreeSet;

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// A member's session: removed unless it heartbeats.
    Session { group: String, member: String },
    /// A member id handed out with MEMBER_ID_REQUIRED: forgotten unless it rejoins.
    Pending { group: String, member: String },
    /// The end of a join phase, or of the wait for the leader's SyncGroup.
    Phase { group: String },
}

/// Deadlines in ms, ordered.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    entries: BTreeSet<(i64, TimerKey)>,
}

impl Timers {
    /// Sets `key` to fire at `at`, replacing its earlier deadline `previous`.
    pub(crate) fn set(&mut self, key: TimerKey, previous: Option<i64>, at: i64) {
        if let Some(previous) = previous {
            self.entries.remove(&(previous, key.clone()));
        }
        self.entries.insert((at, key));
    }

    /// Removes `key`'s deadline `at`.
    pub(crate) fn cancel(&mut self, key: TimerKey, at: i64) {
        self.entries.remove(&(at, key));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<i64> {
        self.entries.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest deadline at or before `now_ms`.
    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<(i64, TimerKey)> {
        if self.next()? > now_ms {
            return None;
        }
        self.entries.pop_first()
    }

    /// Forgets every deadline.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
