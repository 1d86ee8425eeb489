//! `cleaner-offset-checkpoint`: how far a log was cleaned, and when the cleanings that kept
//! tombstones ran, in the partition's own directory.
//!
//! Layout (the checkpoint text format of `crate::checkpoint`): a version line (0), a count
//! line, then one line holding the cleaned offset (every offset below it has been cleaned at
//! least once; Kafka's first dirty offset), then one "end_offset cleaned_at_ms" line per
//! tombstone round.
//!
//! A tombstone round records a cleaning that kept tombstones below its end offset. A
//! tombstone may go once the first round that covered it is `delete_retention_ms` old, which
//! is Kafka's promise (KIP-534): a tombstone stays at least `delete.retention.ms` after the
//! cleaning that removed the older records of its key. Kafka stamps that moment into the
//! batch; we keep it here so cleaned batches keep their original attributes and timestamps.

use std::path::Path;

use crate::{checkpoint, config::LogConfig};

/// File name of the cleaner checkpoint. Its presence also says the log may have offset gaps
/// (it is written before the first cleaned segment is swapped in).
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Most tombstone rounds kept; older ones are merged (conservatively: tombstones then stay
/// longer, never shorter).
pub(crate) const TOMBSTONE_ROUNDS_MAX: usize = 64;

/// One cleaning that kept tombstones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TombstoneRound {
    /// Tombstones below this offset were covered by the round.
    pub end_offset: i64,
    /// Wall clock of the round.
    pub cleaned_at_ms: i64,
}

/// The content of `cleaner-offset-checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    /// Every offset below this has been cleaned at least once.
    pub cleaned_offset: i64,
    /// Rounds that kept tombstones, oldest first, end offsets increasing.
    pub tombstone_rounds: Vec<TombstoneRound>,
}

impl CleanerCheckpoint {
    /// Tombstones below the returned offset are old enough to remove at `now_ms`: the end of
    /// the newest round that is `delete_retention_ms` old (`i64::MIN` when none is).
    pub(crate) fn tombstone_horizon(&self, now_ms: i64, delete_retention_ms: u64) -> i64 {
        let retention_ms = i64::try_from(delete_retention_ms).unwrap_or(i64::MAX);
        self.tombstone_rounds
            .iter()
            .filter(|round| now_ms.saturating_sub(round.cleaned_at_ms) >= retention_ms)
            .map(|round| round.end_offset)
            .max()
            .unwrap_or(i64::MIN)
    }

    /// True when a round has expired, so a cleaning would remove tombstones.
    pub(crate) fn tombstones_expired(&self, now_ms: i64, delete_retention_ms: u64) -> bool {
        self.tombstone_horizon(now_ms, delete_retention_ms) > i64::MIN
    }

    /// The checkpoint after a cleaning at `now_ms` that cleaned everything below
    /// `cleaned_offset`, removed the tombstones below `horizon`, and kept tombstones up to
    /// `kept_tombstone_max` (`None` when it kept none).
    pub(crate) fn after_round(
        &self,
        cleaned_offset: i64,
        horizon: i64,
        kept_tombstone_max: Option<i64>,
        now_ms: i64,
    ) -> CleanerCheckpoint {
        // Expired rounds are spent: every tombstone they covered is gone now.
        let mut rounds: Vec<TombstoneRound> = self
            .tombstone_rounds
            .iter()
            .copied()
            .filter(|round| round.end_offset > horizon)
            .collect();
        let covered = rounds.last().map_or(i64::MIN, |round| round.end_offset);
        if kept_tombstone_max.is_some_and(|offset| offset >= covered) {
            rounds.push(TombstoneRound {
                end_offset: cleaned_offset.max(covered),
                cleaned_at_ms: now_ms,
            });
        }
        while rounds.len() > TOMBSTONE_ROUNDS_MAX {
            // The second round is newer and covers more: its tombstones wait longer anyway.
            rounds.remove(0);
        }
        CleanerCheckpoint {
            cleaned_offset,
            tombstone_rounds: rounds,
        }
    }

    /// The file's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut lines = vec![self.cleaned_offset.to_string()];
        lines.extend(
            self.tombstone_rounds
                .iter()
                .map(|round| format!("{} {}", round.end_offset, round.cleaned_at_ms)),
        );
        checkpoint::encode(&lines)
    }

    /// Reads the checkpoint of `dir`: `Ok(None)` when there is none.
    pub(crate) fn read(dir: &Path) -> std::io::Result<Option<CleanerCheckpoint>> {
        let Some(entries) = checkpoint::read_entries(&dir.join(CLEANER_CHECKPOINT_FILE))? else {
            return Ok(None);
        };
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let (first, rest) = entries
            .split_first()
            .ok_or_else(|| invalid("the cleaned offset line is missing"))?;
        let [cleaned_offset] = first.as_slice() else {
            return Err(invalid("the cleaned offset line must hold one number"));
        };
        let mut tombstone_rounds = Vec::with_capacity(rest.len());
        for entry in rest {
            let [end_offset, cleaned_at_ms] = entry.as_slice() else {
                return Err(invalid("a tombstone round line must hold two numbers"));
            };
            tombstone_rounds.push(TombstoneRound {
                end_offset: *end_offset,
                cleaned_at_ms: *cleaned_at_ms,
            });
        }
        Ok(Some(CleanerCheckpoint {
            cleaned_offset: *cleaned_offset,
            tombstone_rounds,
        }))
    }
}

/// What a log knows about its cleaning. Lives in the log (one executor).
#[derive(Debug, Clone, Default)]
pub(crate) struct CleaningState {
    /// Batches may start past the offset expected of them: the log is compacted, or was
    /// cleaned before (its policy may have changed since, but the gaps stay).
    pub gaps_allowed: bool,
    /// The checkpoint as last read or written; `None` before the first cleaning (or when the
    /// file was unreadable: everything then counts as dirty and tombstones restart their wait).
    pub checkpoint: Option<CleanerCheckpoint>,
}

impl CleaningState {
    /// Loads the state of the log in `dir`.
    pub(crate) fn load(dir: &Path, config: &LogConfig) -> CleaningState {
        let present = dir.join(CLEANER_CHECKPOINT_FILE).exists();
        let checkpoint = match CleanerCheckpoint::read(dir) {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "ignoring unreadable cleaner checkpoint: the whole log counts as dirty");
                None
            }
        };
        CleaningState {
            gaps_allowed: config.cleanup_policy.compacts() || present,
            checkpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the checkpoint round-trips through its file and refuses malformed lines.
    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(CleanerCheckpoint::read(dir.path()).unwrap(), None);
        let written = CleanerCheckpoint {
            cleaned_offset: 420,
            tombstone_rounds: vec![
                TombstoneRound {
                    end_offset: 100,
                    cleaned_at_ms: 5,
                },
                TombstoneRound {
                    end_offset: 420,
                    cleaned_at_ms: 9,
                },
            ],
        };
        let path = dir.path().join(CLEANER_CHECKPOINT_FILE);
        std::fs::write(&path, written.encode()).unwrap();
        assert_eq!(CleanerCheckpoint::read(dir.path()).unwrap(), Some(written));
        std::fs::write(&path, "0\n2\n5\n1 2 3\n").unwrap();
        assert!(CleanerCheckpoint::read(dir.path()).is_err());
    }

    // Proves a tombstone becomes removable only once the round that covered it is
    // delete_retention_ms old, and that spent rounds are dropped while new ones are added.
    #[test]
    fn tombstone_rounds_expire_in_order() {
        let start = CleanerCheckpoint::default();
        let first = start.after_round(100, i64::MIN, Some(50), 1_000);
        assert_eq!(first.tombstone_horizon(1_500, 1_000), i64::MIN);
        assert!(!first.tombstones_expired(1_999, 1_000));
        let second = first.after_round(200, i64::MIN, Some(150), 1_500);
        assert_eq!(second.tombstone_rounds.len(), 2);
        assert_eq!(second.tombstone_horizon(2_000, 1_000), 100);
        assert_eq!(second.tombstone_horizon(2_500, 1_000), 200);
        // A round at 2_000 removes the tombstones below 100 and keeps those of the second.
        let third = second.after_round(200, 100, Some(150), 2_000);
        assert_eq!(
            third.tombstone_rounds,
            vec![TombstoneRound {
                end_offset: 200,
                cleaned_at_ms: 1_500
            }]
        );
        // A round that kept no tombstone past the covered range adds nothing.
        let fourth = third.after_round(300, 100, Some(120), 2_100);
        assert_eq!(fourth.tombstone_rounds.len(), 1);
        assert_eq!(fourth.cleaned_offset, 300);
        let mut many = CleanerCheckpoint::default();
        for round in 0..(TOMBSTONE_ROUNDS_MAX as i64 + 10) {
            many = many.after_round(round * 10 + 10, i64::MIN, Some(round * 10), round);
        }
        assert_eq!(many.tombstone_rounds.len(), TOMBSTONE_ROUNDS_MAX);
    }
}
