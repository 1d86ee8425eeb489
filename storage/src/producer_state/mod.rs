//! Idempotent-producer state of one partition: per producer id its epoch and the sequence
//! ranges and offsets of its last `PRODUCER_BATCHES_RETAINED` batches, and the sequence check
//! Kafka's brokers run on every leader append (see Kafka's `ProducerStateManager` and
//! `ProducerAppendInfo`, whose rules these are).
//!
//! Sans-IO: the log feeds it batch headers (`ProducerBatch`) and the clock (`now_ms`), and
//! persists its snapshots (`snapshot.rs` encodes them); nothing here touches a file.
//!
//! The rules a leader applies to a batch of producer P with epoch E and sequences F..=L:
//! - P unknown: accepted when F is 0 (a new producer); otherwise UNKNOWN_PRODUCER_ID, because
//!   the state that would tell a retry from a gap is gone (expired, or removed with the log).
//! - E older than P's epoch: INVALID_PRODUCER_EPOCH (the producer was fenced).
//! - E newer: the epoch was bumped and sequences restart, so F must be 0.
//! - E equal: a batch with exactly F..=L among the retained ones is a duplicate, answered with
//!   its original offsets and not appended; otherwise F must follow the newest batch's L
//!   (after `i32::MAX` comes 0), else OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! Followers and recovery `record` batches without checking them: the leader checked them.
//!
//! **Invariant:** a producer's retained batches have strictly increasing offsets and
//! consecutive sequences (modulo the wrap), all in its current epoch.

pub(crate) mod files;
mod snapshot;

use std::collections::{HashMap, VecDeque};

pub use files::ProducerRebuild;
pub use snapshot::{decode_snapshot, encode_snapshot, SnapshotError};

use crate::batch::BatchHeader;

/// Batches kept per producer for duplicate detection: Kafka's clients keep at most 5 requests
/// in flight per partition, so a retry is always of one of the last 5 batches.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;
/// How long a producer's state is kept after its newest batch's timestamp (Kafka's
/// `producer.id.expiration.ms` default: one day).
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 86_400_000;
/// The producer id of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

/// The sequence number after `sequence` (Kafka wraps from `i32::MAX` to 0).
pub fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The sequence number `delta` after `sequence`, wrapping past `i32::MAX` to 0.
pub fn sequence_plus(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

/// The producer fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer id (never `NO_PRODUCER_ID`).
    pub producer_id: i64,
    /// The producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// The batch's max timestamp, which expiry counts from.
    pub max_timestamp: i64,
}

impl ProducerBatch {
    /// The producer fields of a batch, or `None` for a batch without a producer id (written
    /// without idempotence) or a control batch (transaction markers carry no data sequence).
    pub fn from_header(header: &BatchHeader) -> Option<ProducerBatch> {
        if header.producer_id < 0 || header.is_control() {
            return None;
        }
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: sequence_plus(header.base_sequence, header.last_offset_delta.max(0)),
            max_timestamp: header.max_timestamp,
        })
    }
}

/// Sequences and offsets of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRange {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
}

/// What the broker knows about one producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The newest epoch seen.
    pub epoch: i16,
    /// The last batches of that epoch, oldest first, at most `PRODUCER_BATCHES_RETAINED`.
    pub batches: VecDeque<BatchRange>,
    /// Max timestamp of the newest batch: the state expires `expiration_ms` after it.
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn new(epoch: i16, last_timestamp: i64) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
            last_timestamp,
        }
    }

    fn duplicate_of(&self, batch: &ProducerBatch) -> Option<BatchRange> {
        self.batches
            .iter()
            .find(|range| {
                range.first_sequence == batch.first_sequence
                    && range.last_sequence == batch.last_sequence
            })
            .copied()
    }

    fn push(&mut self, batch: &ProducerBatch, first_offset: i64, last_offset: i64) {
        if batch.epoch != self.epoch {
            self.epoch = batch.epoch;
            self.batches.clear();
        }
        if self.batches.len() == PRODUCER_BATCHES_RETAINED {
            self.batches.pop_front();
        }
        self.batches.push_back(BatchRange {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            first_offset,
            last_offset,
        });
        self.last_timestamp = self.last_timestamp.max(batch.max_timestamp);
    }
}

/// Why a producer's batch is refused; nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    /// The batch's epoch is older than the producer's: a newer instance fenced this one.
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The producer's current epoch on this partition.
        current: i16,
    },
    /// The batch does not follow the producer's last batch (a gap, or an old batch outside the
    /// retained window).
    #[error("producer {producer_id} epoch {epoch}: expected sequence {expected}, got {found}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The sequence the next batch must start with.
        expected: i32,
        /// The batch's first sequence.
        found: i32,
    },
    /// The partition has no state for the producer and the batch does not start a new one.
    #[error(
        "producer {producer_id} is unknown here and its batch starts at sequence {found}, not 0"
    )]
    UnknownProducerId {
        /// The producer id.
        producer_id: i64,
        /// The batch's first sequence.
        found: i32,
    },
    /// One append held both duplicates and new batches (a client sends one batch per partition
    /// per request, so this is a malformed request).
    #[error("an append mixes duplicate batches of producer {producer_id} with new ones")]
    PartialDuplicate {
        /// The producer whose batch was a duplicate.
        producer_id: i64,
    },
}

/// What the check decided for an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendDecision {
    /// Append the batches.
    Append,
    /// Every batch was appended before: answer with these original offsets, append nothing.
    Duplicate {
        /// Offset of the first record of the first batch, as first appended.
        first_offset: i64,
        /// Offset of the last record of the last batch, as first appended.
        last_offset: i64,
    },
}

/// The producer state of one partition replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    expiration_ms: u64,
}

impl ProducerStateManager {
    /// Empty state whose producers expire `expiration_ms` after their newest batch.
    pub fn new(expiration_ms: u64) -> ProducerStateManager {
        ProducerStateManager {
            producers: HashMap::new(),
            expiration_ms,
        }
    }

    /// Number of producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state of one producer.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks the batches of one leader append (with the offsets they will get) in order,
    /// against the state and against each other, without changing the state.
    pub fn check_append(
        &self,
        batches: &[(ProducerBatch, i64, i64)],
    ) -> Result<AppendDecision, ProducerStateError> {
        // Batches of one append are checked against the state as the earlier ones leave it.
        let mut scratch: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut duplicate: Option<(i64, i64, i64)> = None;
        let mut appended: Option<i64> = None;
        for (batch, first_offset, last_offset) in batches {
            let entry = scratch
                .get(&batch.producer_id)
                .or_else(|| self.producers.get(&batch.producer_id));
            match check_batch(entry, batch)? {
                Some(range) => {
                    let (first, _, _) = duplicate.unwrap_or((range.first_offset, 0, 0));
                    duplicate = Some((first, range.last_offset, batch.producer_id));
                }
                None => {
                    appended = Some(batch.producer_id);
                    let mut updated = entry
                        .cloned()
                        .unwrap_or_else(|| ProducerEntry::new(batch.epoch, batch.max_timestamp));
                    updated.push(batch, *first_offset, *last_offset);
                    scratch.insert(batch.producer_id, updated);
                }
            }
        }
        match (duplicate, appended) {
            (None, _) => Ok(AppendDecision::Append),
            (Some((_, _, producer_id)), Some(_)) => {
                Err(ProducerStateError::PartialDuplicate { producer_id })
            }
            (Some((first_offset, last_offset, _)), None) => Ok(AppendDecision::Duplicate {
                first_offset,
                last_offset,
            }),
        }
    }

    /// Records an appended batch that got offsets `first_offset..=last_offset` (leader after
    /// its check, follower and recovery as they are).
    pub fn record(&mut self, batch: &ProducerBatch, first_offset: i64, last_offset: i64) {
        self.producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry::new(batch.epoch, batch.max_timestamp))
            .push(batch, first_offset, last_offset);
    }

    /// Records every producer batch of a header list (offsets from the headers).
    pub fn record_headers<'a>(&mut self, headers: impl IntoIterator<Item = &'a BatchHeader>) {
        for header in headers {
            if let Some(batch) = ProducerBatch::from_header(header) {
                self.record(&batch, header.base_offset, header.last_offset());
            }
        }
    }

    /// Forgets producers whose newest batch is older than the expiration; returns how many.
    pub fn remove_expired(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let expiration_ms = i64::try_from(self.expiration_ms).unwrap_or(i64::MAX);
        self.producers
            .retain(|_, entry| entry.last_timestamp.saturating_add(expiration_ms) >= now_ms);
        before - self.producers.len()
    }

    /// Drops every batch at or past `offset` (the log was truncated there): a producer keeps
    /// only its batches below it, and one with none left is forgotten. Exact for batches still
    /// retained; a producer whose retained batches all went is rebuilt from the log by the
    /// caller when that matters.
    pub fn truncate_to(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|range| range.last_offset < offset);
            !entry.batches.is_empty()
        });
    }

    /// Forgets every producer.
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// Every producer, for snapshots.
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// Replaces the producers with those of a snapshot.
    pub fn load(&mut self, producers: impl IntoIterator<Item = (i64, ProducerEntry)>) {
        self.producers = producers.into_iter().collect();
    }
}

/// One batch against one producer's state: `Some(range)` for a duplicate of `range`, `None` to
/// append, or why it is refused.
fn check_batch(
    entry: Option<&ProducerEntry>,
    batch: &ProducerBatch,
) -> Result<Option<BatchRange>, ProducerStateError> {
    let Some(entry) = entry else {
        if batch.first_sequence == 0 {
            return Ok(None);
        }
        return Err(ProducerStateError::UnknownProducerId {
            producer_id: batch.producer_id,
            found: batch.first_sequence,
        });
    };
    if batch.epoch < entry.epoch {
        return Err(ProducerStateError::InvalidProducerEpoch {
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            current: entry.epoch,
        });
    }
    if batch.epoch > entry.epoch {
        if batch.first_sequence == 0 {
            return Ok(None);
        }
        return Err(ProducerStateError::OutOfOrderSequence {
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            expected: 0,
            found: batch.first_sequence,
        });
    }
    if let Some(range) = entry.duplicate_of(batch) {
        return Ok(Some(range));
    }
    let expected = entry
        .batches
        .back()
        .map_or(0, |last| next_sequence(last.last_sequence));
    if batch.first_sequence == expected {
        Ok(None)
    } else {
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            expected,
            found: batch.first_sequence,
        })
    }
}

#[cfg(test)]
mod tests;
