//! Idempotent-produce bookkeeping, free of I/O: a producer's identity (producer id and epoch),
//! each partition's next sequence number, and what an answer to a stamped batch means.
//!
//! - A batch gets the partition's next base sequence when it is first drained for sending
//!   ([`PartitionSequences::stamp_next`]); a retry keeps it. Sequences wrap from `i32::MAX` to 0,
//!   as Kafka's do.
//! - Every stamped batch also gets an ordinal, increasing per partition and never wrapping, so
//!   "was this batch sent before that one" never depends on sequence wrap-around.
//! - [`classify`] turns a broker answer to a stamped batch into what the producer does:
//!   complete it (also for a duplicate, which the broker answers with the original offsets and
//!   no error), retry it, reset the partition's sequences under a new producer id, or fail the
//!   whole producer (fenced).
//!
//! **Invariant:** a partition's stamped, unanswered batches (in flight or waiting to be resent)
//! carry consecutive sequences of one identity, in ordinal order.

use sluice_net::api::ErrorCode;
use sluice_storage::batch::{stamp_producer, stamp_producer_with, BatchError, RecordsCrc};

/// A producer id and its epoch, from InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    /// The producer id.
    pub(crate) producer_id: i64,
    /// The producer epoch.
    pub(crate) epoch: i16,
}

/// The producer fields given to one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchStamp {
    /// Whose sequences these are.
    pub(crate) identity: ProducerIdentity,
    /// Sequence of the batch's first record.
    pub(crate) base_sequence: i32,
    /// Position of the batch among the partition's stamped batches (sent order).
    pub(crate) ordinal: u64,
}

impl BatchStamp {
    /// Writes the stamp into the batch header of `bytes` and recomputes its CRC: from the header
    /// and `records` (the CRC of what follows the header) when known, else over the whole batch.
    pub(crate) fn write(
        &self,
        bytes: &mut [u8],
        records: Option<RecordsCrc>,
    ) -> Result<(), BatchError> {
        let (producer_id, epoch) = (self.identity.producer_id, self.identity.epoch);
        match records {
            Some(records) => {
                stamp_producer_with(bytes, producer_id, epoch, self.base_sequence, records)
            }
            None => stamp_producer(bytes, producer_id, epoch, self.base_sequence),
        }
    }
}

/// The sequence number `records` after `sequence`, wrapping past `i32::MAX` to 0.
pub(crate) fn sequence_after(sequence: i32, records: u32) -> i32 {
    let modulus = i64::from(i32::MAX) + 1;
    let next = (i64::from(sequence) + i64::from(records)) % modulus;
    // `next` is in 0..=i32::MAX by construction.
    i32::try_from(next).unwrap_or(0)
}

/// One partition's sequence state.
#[derive(Debug, Default)]
pub(crate) struct PartitionSequences {
    /// The identity the partition's sequences belong to; `None` until its first batch.
    identity: Option<ProducerIdentity>,
    /// Base sequence of the next batch stamped.
    next_sequence: i32,
    /// Ordinal of the next batch stamped.
    next_ordinal: u64,
    /// The broker lost (or never had) this partition's sequence state: nothing more is sent
    /// until the partition has a new identity.
    reset_pending: bool,
}

impl PartitionSequences {
    /// Stamps a batch of `records` records: the partition's next sequence under its identity
    /// (taking `current` for a partition that has none yet).
    pub(crate) fn stamp_next(&mut self, current: ProducerIdentity, records: u32) -> BatchStamp {
        let identity = *self.identity.get_or_insert(current);
        let stamp = BatchStamp {
            identity,
            base_sequence: self.next_sequence,
            ordinal: self.next_ordinal,
        };
        self.next_sequence = sequence_after(self.next_sequence, records);
        self.next_ordinal += 1;
        stamp
    }

    /// The broker does not know the partition's sequences any more: stop sending until
    /// `reset` gives it a new identity.
    pub(crate) fn require_reset(&mut self) {
        self.reset_pending = true;
    }

    /// True while the partition waits for a new identity.
    pub(crate) fn reset_pending(&self) -> bool {
        self.reset_pending
    }

    /// Starts the partition's sequences again at 0 under `identity`. The caller restamps the
    /// partition's unanswered batches (none may be in flight).
    pub(crate) fn reset(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
        self.next_sequence = 0;
        self.reset_pending = false;
    }
}

/// What the producer does with a stamped batch the broker answered with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceVerdict {
    /// Not a sequence error: the ordinary retry rules apply.
    Ordinary,
    /// The batch arrived before a predecessor that is being resent: send it again after it.
    RetryAfterPredecessor,
    /// Nothing before the batch is pending, yet the broker does not accept its sequence: it
    /// lost the partition's producer state (expiry, truncation) or a predecessor failed for
    /// good. Resend under a new identity, sequences from 0 (KIP-360).
    ResetSequences,
    /// The producer was fenced by a newer epoch: fatal for the producer.
    Fenced,
}

/// The verdict on a stamped batch answered with `code`; `predecessor_pending` says whether an
/// earlier stamped batch of the same partition and identity is still unanswered (in flight or
/// waiting to be resent).
pub(crate) fn classify(code: i16, predecessor_pending: bool) -> SequenceVerdict {
    match ErrorCode::from_i16(code) {
        Some(ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId) => {
            if predecessor_pending {
                SequenceVerdict::RetryAfterPredecessor
            } else {
                SequenceVerdict::ResetSequences
            }
        }
        Some(ErrorCode::InvalidProducerEpoch) => SequenceVerdict::Fenced,
        _ => SequenceVerdict::Ordinary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::{validate_batch, BatchBuilder, BatchHeader, Compression};

    const FIRST: ProducerIdentity = ProducerIdentity {
        producer_id: 7,
        epoch: 0,
    };
    const SECOND: ProducerIdentity = ProducerIdentity {
        producer_id: 8,
        epoch: 0,
    };

    // Proves sequences advance by each batch's record count, wrap from i32::MAX to 0 as
    // Kafka's do, and that ordinals keep increasing across the wrap.
    #[test]
    fn sequences_advance_by_records_and_wrap() {
        let mut sequences = PartitionSequences::default();
        let first = sequences.stamp_next(FIRST, 3);
        let second = sequences.stamp_next(FIRST, 2);
        assert_eq!((first.base_sequence, second.base_sequence), (0, 3));
        assert_eq!((first.ordinal, second.ordinal), (0, 1));
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
        sequences.next_sequence = i32::MAX - 1;
        let near_end = sequences.stamp_next(FIRST, 4);
        let wrapped = sequences.stamp_next(FIRST, 1);
        assert_eq!(
            (near_end.base_sequence, wrapped.base_sequence),
            (i32::MAX - 1, 2)
        );
        assert!(wrapped.ordinal > near_end.ordinal);
    }

    // Proves a partition keeps the identity it started with when the producer's current one
    // changes, and that a reset moves it to the new identity with sequences from 0.
    #[test]
    fn reset_restarts_sequences_under_the_new_identity() {
        let mut sequences = PartitionSequences::default();
        sequences.stamp_next(FIRST, 10);
        let kept = sequences.stamp_next(SECOND, 1);
        assert_eq!((kept.identity, kept.base_sequence), (FIRST, 10));
        sequences.require_reset();
        assert!(sequences.reset_pending());
        sequences.reset(SECOND);
        assert!(!sequences.reset_pending());
        let restarted = sequences.stamp_next(FIRST, 1);
        assert_eq!((restarted.identity, restarted.base_sequence), (SECOND, 0));
        assert_eq!(restarted.ordinal, 2);
    }

    // Proves the verdicts: sequence errors behind a pending predecessor are retried, without
    // one they reset the sequences, an old epoch is fatal, anything else follows the ordinary
    // retry rules.
    #[test]
    fn classify_sequence_errors() {
        let out_of_order = ErrorCode::OutOfOrderSequenceNumber.code();
        let unknown = ErrorCode::UnknownProducerId.code();
        for code in [out_of_order, unknown] {
            assert_eq!(classify(code, true), SequenceVerdict::RetryAfterPredecessor);
            assert_eq!(classify(code, false), SequenceVerdict::ResetSequences);
        }
        let fenced = ErrorCode::InvalidProducerEpoch.code();
        assert_eq!(classify(fenced, false), SequenceVerdict::Fenced);
        let not_leader = ErrorCode::NotLeaderOrFollower.code();
        assert_eq!(classify(not_leader, true), SequenceVerdict::Ordinary);
    }

    // Proves a stamp rewrites the producer fields of a built batch and leaves it valid (the
    // CRC is recomputed), so the broker accepts it: a sealed batch stamped by a pass over it,
    // an unsealed one from the records' CRC its build returned.
    #[test]
    fn stamp_writes_header_fields_and_keeps_the_crc_valid() {
        let fill = |compression| {
            let mut builder = BatchBuilder::new(compression);
            builder.push(1, Some(b"k"), Some(b"v"), &[]);
            builder.push(2, None, Some(b"w"), &[]);
            builder
        };
        let sealed = fill(Compression::Zstd).build().unwrap();
        let (unsealed, records) = fill(Compression::None).build_unsealed().unwrap();
        for (bytes, records) in [(sealed, None), (unsealed, Some(records))] {
            let mut bytes = bytes.to_vec();
            let stamp = BatchStamp {
                identity: FIRST,
                base_sequence: 41,
                ordinal: 0,
            };
            stamp.write(&mut bytes, records).unwrap();
            let header: BatchHeader = validate_batch(&bytes, 1 << 20).unwrap();
            assert_eq!(header.producer_id, 7);
            assert_eq!(header.producer_epoch, 0);
            assert_eq!(header.base_sequence, 41);
            assert_eq!(header.records_count, 2);
        }
    }
}
