use proptest::prelude::*;

use super::*;

const PRODUCER: i64 = 7;
const EXPIRATION_MS: u64 = 1_000;

fn batch(epoch: i16, first_sequence: i32, records: i32) -> ProducerBatch {
    ProducerBatch {
        producer_id: PRODUCER,
        epoch,
        first_sequence,
        last_sequence: sequence_plus(first_sequence, records - 1),
        max_timestamp: 100,
    }
}

/// Checks one batch at `offset` and, when accepted, records it: what a leader append does.
fn append(
    state: &mut ProducerStateManager,
    batch: ProducerBatch,
    offset: i64,
) -> Result<AppendDecision, ProducerStateError> {
    let records = i64::from(sequence_distance(batch.first_sequence, batch.last_sequence)) + 1;
    let last_offset = offset + records - 1;
    let decision = state.check_append(&[(batch, offset, last_offset)])?;
    if decision == AppendDecision::Append {
        state.record(&batch, offset, last_offset);
    }
    Ok(decision)
}

fn sequence_distance(first: i32, last: i32) -> i32 {
    if last >= first {
        last - first
    } else {
        (i32::MAX - first) + last + 1
    }
}

#[test]
fn a_duplicate_of_a_retained_batch_gets_its_original_offsets() {
    // Proves a retry of any of the last 5 batches is answered with its first offsets: appends 5
    // batches, then replays each.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    for index in 0..5 {
        let decision = append(&mut state, batch(0, index * 10, 10), i64::from(index) * 10);
        assert_eq!(decision, Ok(AppendDecision::Append));
    }
    for index in 0..5 {
        let decision = append(&mut state, batch(0, index * 10, 10), 999);
        let first_offset = i64::from(index) * 10;
        assert_eq!(
            decision,
            Ok(AppendDecision::Duplicate {
                first_offset,
                last_offset: first_offset + 9
            })
        );
    }
}

#[test]
fn the_window_holds_five_batches() {
    // Proves only the last 5 batches are retained: after a 6th, a retry of the 1st is out of
    // order (not silently appended, not called a duplicate).
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    for index in 0..6 {
        append(&mut state, batch(0, index, 1), i64::from(index)).expect("in sequence");
    }
    assert_eq!(
        state.entry(PRODUCER).map(|entry| entry.batches.len()),
        Some(5)
    );
    assert_eq!(
        append(&mut state, batch(0, 0, 1), 6),
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: PRODUCER,
            epoch: 0,
            expected: 6,
            found: 0
        })
    );
    assert!(matches!(
        append(&mut state, batch(0, 1, 1), 6),
        Ok(AppendDecision::Duplicate {
            first_offset: 1,
            ..
        })
    ));
}

#[test]
fn a_gap_is_out_of_order_and_changes_nothing() {
    // Proves a batch that skips sequences is refused and leaves the state as it was, so the
    // batch that fills the gap is still accepted.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    append(&mut state, batch(0, 0, 3), 0).expect("first batch");
    let before = state.clone();
    assert_eq!(
        append(&mut state, batch(0, 5, 1), 3),
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: PRODUCER,
            epoch: 0,
            expected: 3,
            found: 5
        })
    );
    assert_eq!(state, before);
    assert_eq!(
        append(&mut state, batch(0, 3, 2), 3),
        Ok(AppendDecision::Append)
    );
}

#[test]
fn a_partial_overlap_is_not_a_duplicate() {
    // Proves only an exact sequence range counts as a duplicate: a batch overlapping a
    // retained one is out of order.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    append(&mut state, batch(0, 0, 4), 0).expect("first batch");
    assert!(matches!(
        append(&mut state, batch(0, 0, 2), 4),
        Err(ProducerStateError::OutOfOrderSequence { .. })
    ));
}

#[test]
fn an_old_epoch_is_fenced_and_a_bump_restarts_at_zero() {
    // Proves epoch rules: a newer epoch must start at sequence 0 and resets the window; the
    // older epoch is then refused as INVALID_PRODUCER_EPOCH, even for a former duplicate.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    append(&mut state, batch(0, 0, 5), 0).expect("epoch 0");
    assert!(matches!(
        append(&mut state, batch(1, 5, 1), 5),
        Err(ProducerStateError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(
        append(&mut state, batch(1, 0, 1), 5),
        Ok(AppendDecision::Append)
    );
    assert_eq!(
        state.entry(PRODUCER).map(|entry| entry.batches.len()),
        Some(1)
    );
    assert_eq!(
        append(&mut state, batch(0, 0, 5), 6),
        Err(ProducerStateError::InvalidProducerEpoch {
            producer_id: PRODUCER,
            epoch: 0,
            current: 1
        })
    );
}

#[test]
fn sequences_wrap_after_i32_max() {
    // Proves the wrap-around: a batch ending at i32::MAX is followed by one starting at 0, and
    // a batch spanning the wrap has its last sequence counted from 0.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    let mut entry = ProducerEntry::new(0, 100);
    entry.push(&batch(0, i32::MAX - 9, 5), 0, 4);
    state.load([(PRODUCER, entry)]);
    let spanning = batch(0, i32::MAX - 4, 10);
    assert_eq!(spanning.last_sequence, 4);
    assert_eq!(append(&mut state, spanning, 5), Ok(AppendDecision::Append));
    assert_eq!(
        append(&mut state, batch(0, 5, 1), 15),
        Ok(AppendDecision::Append)
    );
    assert!(matches!(
        append(&mut state, spanning, 99),
        Ok(AppendDecision::Duplicate {
            first_offset: 5,
            last_offset: 14
        })
    ));
    assert_eq!(next_sequence(i32::MAX), 0);
}

#[test]
fn an_unknown_producer_must_start_at_zero() {
    // Proves a producer with no state may only start a sequence: a batch at 7 after expiry is
    // UNKNOWN_PRODUCER_ID, one at 0 is accepted.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    append(&mut state, batch(0, 0, 7), 0).expect("first batch");
    assert_eq!(state.remove_expired(100 + 1_000), 0, "not yet expired");
    assert_eq!(state.remove_expired(100 + 1_001), 1);
    assert_eq!(
        append(&mut state, batch(0, 7, 1), 7),
        Err(ProducerStateError::UnknownProducerId {
            producer_id: PRODUCER,
            found: 7
        })
    );
    assert_eq!(
        append(&mut state, batch(0, 0, 1), 7),
        Ok(AppendDecision::Append)
    );
}

#[test]
fn an_append_mixing_duplicates_and_new_batches_is_refused() {
    // Proves one append cannot be half duplicate: nothing is appended and nothing recorded.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    append(&mut state, batch(0, 0, 1), 0).expect("first batch");
    let mixed = [(batch(0, 0, 1), 1, 1), (batch(0, 1, 1), 2, 2)];
    assert_eq!(
        state.check_append(&mixed),
        Err(ProducerStateError::PartialDuplicate {
            producer_id: PRODUCER
        })
    );
    let in_order = [(batch(0, 1, 1), 1, 1), (batch(0, 2, 1), 2, 2)];
    assert_eq!(state.check_append(&in_order), Ok(AppendDecision::Append));
}

#[test]
fn truncation_drops_batches_past_the_new_end() {
    // Proves truncate_to keeps a producer's batches below the offset, so a retry of a batch the
    // truncation removed is appended again (not answered with offsets that no longer exist).
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    append(&mut state, batch(0, 0, 2), 0).expect("first");
    append(&mut state, batch(0, 2, 2), 2).expect("second");
    state.truncate_to(2);
    assert_eq!(
        append(&mut state, batch(0, 2, 2), 2),
        Ok(AppendDecision::Append)
    );
    state.truncate_to(0);
    assert!(state.is_empty());
}

#[test]
fn a_corrupt_snapshot_is_refused() {
    // Proves a snapshot with a flipped byte or cut short is refused, never loaded half.
    let mut state = ProducerStateManager::new(EXPIRATION_MS);
    append(&mut state, batch(0, 0, 2), 0).expect("first");
    let bytes = encode_snapshot(&state);
    let mut flipped = bytes.clone();
    flipped[12] ^= 1;
    assert!(matches!(
        decode_snapshot(&flipped),
        Err(SnapshotError::CrcMismatch { .. })
    ));
    assert!(decode_snapshot(&bytes[..bytes.len() - 1]).is_err());
    assert!(decode_snapshot(&bytes).is_ok());
}

/// One thing an idempotent client does next, for the property test.
#[derive(Debug, Clone)]
enum Step {
    /// Send the next batch of this many records.
    Send(i32),
    /// Retry the batch sent this many batches ago (0 = the newest).
    Retry(usize),
    /// Bump the epoch (sequences restart at 0).
    BumpEpoch,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1..20i32).prop_map(Step::Send),
        3 => (0..8usize).prop_map(Step::Retry),
        1 => Just(Step::BumpEpoch),
    ]
}

proptest! {
    #[test]
    fn retries_never_duplicate_and_snapshots_round_trip(
        steps in proptest::collection::vec(step(), 1..200),
        start_sequence in prop_oneof![Just(0i32), Just(i32::MAX - 30)],
    ) {
        // Proves, for any mix of sends, retries and epoch bumps, that every batch is appended
        // exactly once in send order, that a retry inside the window gets its original offsets
        // and one outside it is refused, and that the state survives a snapshot round trip.
        let mut state = ProducerStateManager::new(EXPIRATION_MS);
        // Start near the wrap by loading a producer whose last batch ends just before it.
        let mut epoch = 0i16;
        let mut next = start_sequence;
        if start_sequence != 0 {
            let mut entry = ProducerEntry::new(epoch, 100);
            entry.push(&batch(epoch, start_sequence - 1, 1), 0, 0);
            state.load([(PRODUCER, entry)]);
        }
        let mut log_end = 1i64;
        // (epoch, batch, offsets) of every batch sent, in send order.
        let mut sent: Vec<(i16, ProducerBatch, i64, i64)> = Vec::new();
        let mut appended = Vec::new();
        for step in steps {
            match step {
                Step::Send(records) => {
                    let sending = batch(epoch, next, records);
                    let decision = append(&mut state, sending, log_end);
                    prop_assert_eq!(decision, Ok(AppendDecision::Append));
                    let last = log_end + i64::from(records) - 1;
                    sent.push((epoch, sending, log_end, last));
                    appended.push((sending.first_sequence, log_end));
                    log_end = last + 1;
                    next = next_sequence(sending.last_sequence);
                }
                Step::Retry(back) => {
                    let Some(&(sent_epoch, retried, first, last)) =
                        sent.iter().rev().nth(back) else { continue };
                    let same_epoch_after = sent.iter().rev().take(back + 1)
                        .filter(|(e, ..)| *e == sent_epoch).count();
                    // The broker knows the epoch of the newest batch sent, not the client's.
                    let broker_epoch = sent.last().map_or(0, |(e, ..)| *e);
                    let decision = append(&mut state, retried, log_end);
                    if sent_epoch != broker_epoch {
                        let fenced = matches!(
                            decision, Err(ProducerStateError::InvalidProducerEpoch { .. }));
                        prop_assert!(fenced);
                    } else if same_epoch_after <= PRODUCER_BATCHES_RETAINED {
                        prop_assert_eq!(decision, Ok(AppendDecision::Duplicate {
                            first_offset: first, last_offset: last }));
                    } else {
                        let refused = matches!(
                            decision, Err(ProducerStateError::OutOfOrderSequence { .. }));
                        prop_assert!(refused);
                    }
                }
                Step::BumpEpoch => {
                    epoch += 1;
                    next = 0;
                }
            }
            let decoded = decode_snapshot(&encode_snapshot(&state));
            let mut restored = ProducerStateManager::new(EXPIRATION_MS);
            restored.load(decoded.expect("own snapshot decodes"));
            prop_assert_eq!(&restored, &state);
        }
        let offsets: Vec<i64> = appended.iter().map(|(_, offset)| *offset).collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(offsets, sorted, "every batch appended once, in send order");
    }
}
