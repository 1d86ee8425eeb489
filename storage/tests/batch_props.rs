//! Property and known-answer tests for the Kafka RecordBatch v2 codec (storage/src/batch.rs).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sluice_storage::batch::{
    crc_of, decode_records, for_each_record_view, refresh_crc, stamp, stamp_producer,
    stamp_producer_with, validate_batch, BatchBuilder, BatchError, BatchHeader, BatchIter,
    Compression, Record, RecordHeader, RecordsCrc, StreamCheck, BATCH_HEADER_BYTES,
    CRC_COVERED_START, DECOMPRESSED_BYTES_MAX, LOG_OVERHEAD_BYTES, MAGIC_V2,
};

/// Size limit handed to validate_batch when the test is not about the limit.
const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Byte positions of header fields the tests edit by hand.
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORDS_COUNT_AT: usize = 57;

/// A record as a producer hands it to the builder.
#[derive(Debug, Clone)]
struct InputRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn nullable_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(Vec::new())),
        proptest::collection::vec(any::<u8>(), 1..48).prop_map(Some),
        // Repetitive values so zstd actually compresses something.
        (any::<u8>(), 1..300usize).prop_map(|(byte, len)| Some(vec![byte; len])),
    ]
}

fn input_record() -> impl Strategy<Value = InputRecord> {
    let timestamp = prop_oneof![1_600_000_000_000i64..1_800_000_000_000, any::<i64>()];
    let header = ("\\PC{0,8}", nullable_bytes());
    (
        timestamp,
        nullable_bytes(),
        nullable_bytes(),
        proptest::collection::vec(header, 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| InputRecord {
            timestamp,
            key,
            value,
            headers,
        })
}

fn input_records() -> impl Strategy<Value = Vec<InputRecord>> {
    proptest::collection::vec(input_record(), 1..12)
}

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Zstd)]
}

fn fill(builder: &mut BatchBuilder, records: &[InputRecord]) {
    for record in records {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
            .collect();
        builder.push(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
    }
}

fn build(compression: Compression, records: &[InputRecord]) -> BytesMut {
    let mut builder = BatchBuilder::new(compression);
    fill(&mut builder, records);
    builder.build().expect("builder accepts generated records")
}

fn build_unsealed(compression: Compression, records: &[InputRecord]) -> (BytesMut, RecordsCrc) {
    let mut builder = BatchBuilder::new(compression);
    fill(&mut builder, records);
    builder
        .build_unsealed()
        .expect("builder accepts generated records")
}

/// `value` cut into pieces at the `cuts` positions (sorted; repeats give empty pieces).
fn cut<'a>(value: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut positions: Vec<usize> = cuts.iter().map(|cut| cut.index(value.len() + 1)).collect();
    positions.sort_unstable();
    let mut pieces = Vec::with_capacity(positions.len() + 1);
    let mut start = 0;
    for position in positions {
        pieces.push(&value[start..position]);
        start = position;
    }
    pieces.push(&value[start..]);
    pieces
}

/// The records decode_records must return for `records` built at `base_offset`.
fn expected(records: &[InputRecord], base_offset: i64) -> Vec<Record> {
    records
        .iter()
        .zip(0..)
        .map(|(record, index)| Record {
            offset: base_offset + index,
            timestamp: record.timestamp,
            key: record.key.clone().map(Bytes::from),
            value: record.value.clone().map(Bytes::from),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| RecordHeader {
                    key: key.clone(),
                    value: value.clone().map(Bytes::from),
                })
                .collect(),
        })
        .collect()
}

/// The records of `batch` read in place (`for_each_record_view`), each view made owned.
fn viewed(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let mut out = Vec::new();
    for_each_record_view(batch, |view| out.push(view.copied()))?;
    Ok(out)
}

fn put_i32(batch: &mut [u8], at: usize, value: i32) {
    batch[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

fn put_i16(batch: &mut [u8], at: usize, value: i16) {
    batch[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // Proves records survive build -> validate -> decode unchanged (null vs empty kept, headers
    // in order) and the header carries the spec's defaults, counts and max timestamp.
    #[test]
    fn build_validate_decode_round_trips(
        records in input_records(),
        compression in codec(),
        producer in proptest::option::of((0i64..1 << 40, 0i16..100, 0i32..1 << 20)),
    ) {
        let mut builder = BatchBuilder::new(compression);
        if let Some((id, epoch, sequence)) = producer {
            builder = builder.with_producer(id, epoch, sequence);
        }
        fill(&mut builder, &records);
        prop_assert_eq!(builder.records_count(), records.len());
        prop_assert!(!builder.is_empty());
        let estimate = builder.uncompressed_bytes();
        let batch = builder.build().unwrap();
        if compression == Compression::None {
            prop_assert_eq!(estimate, batch.len());
        }

        let header = validate_batch(&batch, BATCH_BYTES_MAX).unwrap();
        let (id, epoch, sequence) = producer.unwrap_or((-1, -1, -1));
        prop_assert_eq!(header.total_bytes(), batch.len());
        prop_assert_eq!(header.base_offset, 0);
        prop_assert_eq!(header.partition_leader_epoch, -1);
        prop_assert_eq!(header.magic, MAGIC_V2);
        prop_assert_eq!(header.crc, crc_of(&batch).unwrap());
        prop_assert_eq!(header.compression().unwrap(), compression);
        prop_assert!(!header.is_control() && !header.is_transactional());
        prop_assert_eq!(header.records_count as usize, records.len());
        prop_assert_eq!(header.last_offset_delta as usize, records.len() - 1);
        prop_assert_eq!(header.last_offset(), records.len() as i64 - 1);
        prop_assert_eq!(header.base_timestamp, records[0].timestamp);
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        prop_assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (id, epoch, sequence));
        prop_assert_eq!(decode_records(&batch).unwrap(), expected(&records, 0));
        prop_assert_eq!(viewed(&batch).unwrap(), expected(&records, 0));
    }

    // Proves a value pushed as pieces (cut at arbitrary points, empty pieces included) builds
    // the very batch its concatenation builds.
    #[test]
    fn pushing_a_value_in_pieces_builds_the_same_batch(
        records in input_records(),
        compression in codec(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut pieces_builder = BatchBuilder::new(compression);
        for record in &records {
            let headers: Vec<(&str, Option<&[u8]>)> = record
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_deref()))
                .collect();
            let pieces = record.value.as_deref().map(|value| cut(value, &cuts));
            pieces_builder.push_parts(
                record.timestamp,
                record.key.as_deref(),
                pieces.as_deref(),
                &headers,
            );
        }
        let pieces_batch = pieces_builder.build().unwrap();
        prop_assert_eq!(pieces_batch, build(compression, &records));
    }

    // Proves stamp() rewrites only base offset and leader epoch: the CRC stays valid and the
    // decoded offsets move to the new base while everything else is unchanged.
    #[test]
    fn stamp_keeps_crc_valid(
        records in input_records(),
        compression in codec(),
        base_offset in 0i64..1 << 50,
        epoch in any::<i32>(),
    ) {
        let mut batch = build(compression, &records);
        let before = validate_batch(&batch, BATCH_BYTES_MAX).unwrap();
        stamp(&mut batch, base_offset, epoch).unwrap();
        let after = validate_batch(&batch, BATCH_BYTES_MAX).unwrap();
        prop_assert_eq!(after.base_offset, base_offset);
        prop_assert_eq!(after.partition_leader_epoch, epoch);
        prop_assert_eq!(after.crc, before.crc);
        prop_assert_eq!(after.last_offset(), base_offset + records.len() as i64 - 1);
        prop_assert_eq!(decode_records(&batch).unwrap(), expected(&records, base_offset));
    }

    // Proves stamp_producer_with seals a batch built unsealed (no CRC, as an idempotent
    // producer builds them) from the records' CRC the build returned: the stamped batch
    // validates, byte for byte the same as stamp_producer's over the whole batch, for any
    // records, codec and producer fields, stamped twice (a sequence reset restamps). The
    // unsealed batch itself is refused.
    #[test]
    fn stamp_producer_seals_an_unsealed_batch(
        records in input_records(),
        compression in codec(),
        stamps in proptest::collection::vec((any::<i64>(), any::<i16>(), any::<i32>()), 1..3),
    ) {
        let (mut batch, records_crc) = build_unsealed(compression, &records);
        prop_assert!(validate_batch(&batch, BATCH_BYTES_MAX).is_err());
        for (producer_id, epoch, sequence) in stamps {
            let mut whole = batch.clone();
            stamp_producer(&mut whole, producer_id, epoch, sequence).unwrap();
            stamp_producer_with(&mut batch, producer_id, epoch, sequence, records_crc).unwrap();
            prop_assert_eq!(&batch, &whole);
            let header = validate_batch(&batch, BATCH_BYTES_MAX).unwrap();
            prop_assert_eq!(header.crc, crc_of(&batch).unwrap());
            prop_assert_eq!(header.producer_id, producer_id);
            prop_assert_eq!(header.producer_epoch, epoch);
            prop_assert_eq!(header.base_sequence, sequence);
        }
        prop_assert_eq!(decode_records(&batch).unwrap(), expected(&records, 0));
    }

    // Proves an uncompressed batch large enough to be checksummed in several steps while it is
    // filled (values of up to 40 KiB, batches up to about 1 MiB) gets the CRC of the whole
    // batch, sealed by build or stamped after build_unsealed, and that a records CRC is refused
    // for a batch of another length.
    #[test]
    fn records_checksummed_in_steps_give_the_whole_batch_crc(
        values in proptest::collection::vec((any::<u8>(), 0..40_000usize), 1..40),
        seed in any::<u8>(),
        stamp_fields in (any::<i64>(), any::<i16>(), any::<i32>()),
    ) {
        let fill_big = |builder: &mut BatchBuilder| {
            for (index, (first, len)) in values.iter().enumerate() {
                let value: Vec<u8> =
                    (0..*len).map(|i| first.wrapping_add((i * 31 + index) as u8) ^ seed).collect();
                builder.push(1_700_000_000_000 + index as i64, None, Some(&value), &[]);
            }
        };
        let mut sealed = BatchBuilder::new(Compression::None);
        fill_big(&mut sealed);
        let mut sealed = sealed.build().unwrap();
        let header = validate_batch(&sealed, BATCH_BYTES_MAX).unwrap();
        prop_assert_eq!(header.crc, refresh_crc(&mut sealed).unwrap());

        let mut unsealed = BatchBuilder::new(Compression::None);
        fill_big(&mut unsealed);
        let (mut batch, records_crc) = unsealed.build_unsealed().unwrap();
        let (producer_id, epoch, sequence) = stamp_fields;
        let mut whole = batch.clone();
        stamp_producer(&mut whole, producer_id, epoch, sequence).unwrap();
        let mut longer = batch.clone();
        stamp_producer_with(&mut batch, producer_id, epoch, sequence, records_crc).unwrap();
        prop_assert_eq!(&batch, &whole);

        longer.extend_from_slice(b"x");
        let longer_len = longer.len() as i32 - LOG_OVERHEAD_BYTES as i32;
        longer[8..12].copy_from_slice(&longer_len.to_be_bytes());
        let refused = stamp_producer_with(&mut longer, producer_id, epoch, sequence, records_crc);
        prop_assert!(matches!(refused, Err(BatchError::Corrupt { .. })), "{:?}", refused);
    }

    // Proves any single corrupted byte from the CRC field to the end of the batch is reported as
    // a CRC mismatch by validate_batch and by BatchIter, which stops at position 0.
    #[test]
    fn single_byte_corruption_is_detected(
        records in input_records(),
        compression in codec(),
        index in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut batch = build(compression, &records);
        let at = CRC_COVERED_START - 4 + index.index(batch.len() - (CRC_COVERED_START - 4));
        batch[at] ^= flip;
        let result = validate_batch(&batch, BATCH_BYTES_MAX);
        prop_assert!(matches!(result, Err(BatchError::CrcMismatch { .. })), "byte {} gave {:?}", at, result);
        let mut iter = BatchIter::new(&batch, BATCH_BYTES_MAX);
        let first = iter.next();
        prop_assert!(matches!(first, Some(Err(BatchError::CrcMismatch { .. }))), "iter gave {:?}", first);
        prop_assert!(iter.next().is_none());
        prop_assert_eq!(iter.position(), 0);
    }

    // Proves a batch cut at every possible length is reported as TooShort (inside the header) or
    // Truncated (inside the records) by validate, decode and BatchIter, never a panic.
    #[test]
    fn truncation_is_reported_at_every_position(
        records in input_records(),
        compression in codec(),
    ) {
        let batch = build(compression, &records);
        for cut in 0..batch.len() {
            let part = &batch[..cut];
            let result = validate_batch(part, BATCH_BYTES_MAX);
            if cut < BATCH_HEADER_BYTES {
                let ok = matches!(result, Err(BatchError::TooShort { needed: 61, available }) if available == cut);
                prop_assert!(ok, "cut {} gave {:?}", cut, result);
                let decoded = decode_records(part);
                prop_assert!(matches!(decoded, Err(BatchError::TooShort { .. })), "decode gave {:?}", decoded);
            } else {
                let ok = matches!(result, Err(BatchError::Truncated { needed, available }) if needed == batch.len() && available == cut);
                prop_assert!(ok, "cut {} gave {:?}", cut, result);
                let decoded = decode_records(part);
                prop_assert!(matches!(decoded, Err(BatchError::Truncated { .. })), "decode gave {:?}", decoded);
            }
            let mut iter = BatchIter::new(part, BATCH_BYTES_MAX);
            if cut == 0 {
                prop_assert!(iter.next().is_none());
            } else {
                prop_assert!(matches!(iter.next(), Some(Err(_))));
                prop_assert!(iter.next().is_none());
            }
            prop_assert_eq!(iter.position(), 0);
        }
    }

    // Proves BatchIter walks a log-like buffer of stamped batches in order, each slice equal to
    // the batch appended, positions at the boundaries, offsets contiguous across batches; and a
    // torn tail yields one error at the last good boundary.
    #[test]
    fn iter_yields_concatenated_batches_in_order(
        batches in proptest::collection::vec((input_records(), codec()), 1..6),
        tail_cut in any::<proptest::sample::Index>(),
    ) {
        let mut log = Vec::new();
        let mut appended = Vec::new();
        let mut next_offset = 0i64;
        for (records, compression) in &batches {
            let mut batch = build(*compression, records);
            stamp(&mut batch, next_offset, 7).unwrap();
            next_offset += records.len() as i64;
            log.extend_from_slice(&batch);
            appended.push(batch);
        }
        let mut iter = BatchIter::new(&log, BATCH_BYTES_MAX);
        let mut position = 0;
        let mut expected_offset = 0i64;
        for original in &appended {
            let (header, slice) = iter.next().unwrap().unwrap();
            prop_assert_eq!(slice, &original[..]);
            prop_assert_eq!(header.base_offset, expected_offset);
            position += original.len();
            prop_assert_eq!(iter.position(), position);
            for record in decode_records(slice).unwrap() {
                prop_assert_eq!(record.offset, expected_offset);
                expected_offset += 1;
            }
        }
        prop_assert!(iter.next().is_none());
        prop_assert_eq!(iter.position(), log.len());

        // A torn write: only part of one more batch reached the buffer.
        let torn = &appended[0][..1 + tail_cut.index(appended[0].len() - 1)];
        log.extend_from_slice(torn);
        let mut iter = BatchIter::new(&log, BATCH_BYTES_MAX);
        let good = iter.by_ref().take_while(Result::is_ok).count();
        prop_assert_eq!(good, appended.len());
        prop_assert!(iter.next().is_none());
        prop_assert_eq!(iter.position(), position);
    }

    // Proves a StreamCheck fed a growing prefix in arbitrary pieces vouches for exactly the
    // whole batches of the stream (never a torn tail), stops before a batch with a flipped byte,
    // and that BatchIter, told what it verified, still reports that batch's CRC mismatch.
    #[test]
    fn stream_check_vouches_for_exactly_the_sound_whole_batches(
        batches in proptest::collection::vec((input_records(), codec()), 1..6),
        tail_cut in any::<proptest::sample::Index>(),
        pieces in proptest::collection::vec(1..400usize, 1..40),
        flip in proptest::option::of((any::<proptest::sample::Index>(), any::<proptest::sample::Index>())),
    ) {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (records, compression) in &batches {
            stream.extend_from_slice(&build(*compression, records));
            ends.push(stream.len());
        }
        let whole = stream.len();
        let torn = build(batches[0].1, &batches[0].0);
        stream.extend_from_slice(&torn[..tail_cut.index(torn.len())]);
        let mut sound = ends.clone();
        if let Some((which, at)) = flip {
            let batch = which.index(ends.len());
            let start = if batch == 0 { 0 } else { ends[batch - 1] };
            stream[start + CRC_COVERED_START + at.index(ends[batch] - start - CRC_COVERED_START)] ^= 0x20;
            sound.truncate(batch);
        }
        let mut check = StreamCheck::new(stream.len(), BATCH_BYTES_MAX);
        let mut received = 0;
        for piece in pieces.iter().cycle() {
            received = (received + piece).min(stream.len());
            check.feed(&stream[..received]);
            let vouched = sound.iter().copied().rev().find(|&end| end <= received).unwrap_or(0);
            prop_assert!(check.verified_bytes() <= vouched);
            if received == stream.len() {
                break;
            }
        }
        prop_assert_eq!(check.verified_bytes(), sound.last().copied().unwrap_or(0));
        let results: Vec<_> = BatchIter::new(&stream[..whole], BATCH_BYTES_MAX)
            .crc_verified_before(check.verified_bytes())
            .collect();
        prop_assert_eq!(results.iter().take_while(|result| result.is_ok()).count(), sound.len());
        if sound.len() < ends.len() {
            let is_crc_mismatch = matches!(results.last(), Some(Err(BatchError::CrcMismatch { .. })));
            prop_assert!(is_crc_mismatch);
        }
    }
}

/// CRC-32C computed bit by bit from the Castagnoli polynomial (reflected 0x82F63B78), independent
/// of the crc32c crate the codec uses.
fn reference_crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A two-record batch written out field by field from the Kafka protocol documentation.
#[rustfmt::skip]
const HAND_BUILT_BATCH: [u8; 81] = [
    0, 0, 0, 0, 0, 0, 0, 0,             // baseOffset 0
    0, 0, 0, 69,                        // batchLength: 81 - 12
    0xff, 0xff, 0xff, 0xff,             // partitionLeaderEpoch -1
    2,                                  // magic
    0x41, 0x5c, 0x67, 0xf9,             // crc (CRC-32C of bytes 21..81)
    0, 0,                               // attributes: no codec, create time
    0, 0, 0, 1,                         // lastOffsetDelta 1
    0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // baseTimestamp 1_700_000_000_000
    0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05, // maxTimestamp 1_700_000_000_005
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producerId -1
    0xff, 0xff,                         // producerEpoch -1
    0xff, 0xff, 0xff, 0xff,             // baseSequence -1
    0, 0, 0, 2,                         // recordsCount 2
    // Record 0: length 12, attributes 0, timestampDelta 0, offsetDelta 0, key "k",
    // value "v1", one header "h" with a null value. Varints are zig-zag: 12 -> 0x18.
    0x18, 0x00, 0x00, 0x00, 0x02, b'k', 0x04, b'v', b'1', 0x02, 0x02, b'h', 0x01,
    // Record 1: length 6, attributes 0, timestampDelta 5, offsetDelta 1, null key,
    // empty value, no headers.
    0x0c, 0x00, 0x0a, 0x02, 0x01, 0x00, 0x00,
];

// Proves the independent CRC-32C reference is right (the standard check value) and agrees
// with the CRC written into the hand-built vector.
#[test]
fn reference_crc_matches_check_value_and_vector() {
    assert_eq!(reference_crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(
        reference_crc32c(&HAND_BUILT_BATCH[CRC_COVERED_START..]),
        0x415c_67f9
    );
    assert_eq!(crc_of(&HAND_BUILT_BATCH).unwrap(), 0x415c_67f9);
}

// Proves a batch written byte by byte from the spec parses to the spec's field values and
// decodes to its two records (null key, empty value, null header value included).
#[test]
fn known_answer_batch_parses_to_spec_fields() {
    let header = validate_batch(&HAND_BUILT_BATCH, BATCH_BYTES_MAX).unwrap();
    let expected_header = BatchHeader {
        base_offset: 0,
        batch_length: 69,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0x415c_67f9,
        attributes: 0,
        last_offset_delta: 1,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_005,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: 2,
    };
    assert_eq!(header, expected_header);
    assert_eq!(header.total_bytes(), 81);
    assert_eq!(header.compression().unwrap(), Compression::None);
    let records = decode_records(&HAND_BUILT_BATCH).unwrap();
    let expected_records = vec![
        Record {
            offset: 0,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v1")),
            headers: vec![RecordHeader {
                key: "h".to_string(),
                value: None,
            }],
        },
        Record {
            offset: 1,
            timestamp: 1_700_000_000_005,
            key: None,
            value: Some(Bytes::new()),
            headers: vec![],
        },
    ];
    assert_eq!(records, expected_records);
}

// Proves the builder emits exactly the spec's bytes for the same two records.
#[test]
fn builder_output_matches_hand_built_bytes() {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(1_700_000_000_000, Some(b"k"), Some(b"v1"), &[("h", None)]);
    builder.push(1_700_000_000_005, None, Some(b""), &[]);
    assert_eq!(&builder.build().unwrap()[..], &HAND_BUILT_BATCH[..]);
}

// Proves build_into appends after existing bytes, returns the bytes it wrote, and leaves the
// buffer untouched when it fails.
#[test]
fn build_into_appends_and_reports_length() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let mut builder = BatchBuilder::new(Compression::Zstd);
    builder.push(5, Some(b"key"), Some(&[7u8; 1000]), &[]);
    let written = builder.build_into(&mut out).unwrap();
    assert_eq!(out.len(), 6 + written);
    assert_eq!(&out[..6], b"prefix");
    let header = validate_batch(&out[6..], BATCH_BYTES_MAX).unwrap();
    assert_eq!(header.total_bytes(), written);
    assert!(written < 1000, "zstd did not compress 1000 equal bytes");

    // A failed build (here: nothing pushed) leaves the buffer as it was.
    let before = out.len();
    assert!(BatchBuilder::new(Compression::Gzip)
        .build_into(&mut out)
        .is_err());
    assert_eq!(out.len(), before);
}

// Proves an empty builder refuses to build instead of emitting a batch with no records.
#[test]
fn empty_builder_refuses_to_build() {
    let builder = BatchBuilder::new(Compression::None);
    assert!(builder.is_empty());
    assert!(matches!(builder.build(), Err(BatchError::EmptyBatch)));
}

// Proves header-level problems are named: old magic, short length, oversize, unknown codec,
// negative counts (the latter with a repaired CRC so the field check itself is reached).
#[test]
fn header_errors_name_the_problem() {
    let mut old_format = HAND_BUILT_BATCH;
    old_format[16] = 1;
    assert!(matches!(
        BatchHeader::parse(&old_format),
        Err(BatchError::BadMagic(1))
    ));

    let mut short_length = HAND_BUILT_BATCH;
    put_i32(&mut short_length, 8, 48);
    assert!(matches!(
        validate_batch(&short_length, BATCH_BYTES_MAX),
        Err(BatchError::BadLength(48))
    ));

    let too_large = validate_batch(&HAND_BUILT_BATCH, 80);
    assert!(matches!(
        too_large,
        Err(BatchError::TooLarge { bytes: 81, max: 80 })
    ));

    let mut unknown_codec = HAND_BUILT_BATCH;
    put_i16(&mut unknown_codec, ATTRIBUTES_AT, 5);
    refresh_crc(&mut unknown_codec).unwrap();
    assert!(matches!(
        validate_batch(&unknown_codec, BATCH_BYTES_MAX),
        Err(BatchError::UnknownCompression(5))
    ));

    for at in [RECORDS_COUNT_AT, LAST_OFFSET_DELTA_AT] {
        let mut negative = HAND_BUILT_BATCH;
        put_i32(&mut negative, at, -2);
        refresh_crc(&mut negative).unwrap();
        assert!(matches!(
            validate_batch(&negative, BATCH_BYTES_MAX),
            Err(BatchError::Corrupt { .. })
        ));
    }
}

// Proves the attribute bits are read as the spec places them.
#[test]
fn attribute_bits_are_decoded() {
    let mut batch = HAND_BUILT_BATCH;
    put_i16(&mut batch, ATTRIBUTES_AT, 0x30 | 3);
    let header = BatchHeader::parse(&batch).unwrap();
    assert!(header.is_control() && header.is_transactional());
    assert_eq!(header.compression().unwrap(), Compression::Lz4);
    assert!(!header.is_log_append_time());
}

// Proves a batch whose codec bits say lz4 but whose records are not an lz4 frame validates
// (the CRC covers whatever bytes are there) but fails to decode with a compression error
// rather than misreading the bytes.
#[test]
fn mislabelled_codec_validates_but_does_not_decode() {
    let mut batch = HAND_BUILT_BATCH;
    put_i16(&mut batch, ATTRIBUTES_AT, Compression::Lz4.code());
    refresh_crc(&mut batch).unwrap();
    assert!(validate_batch(&batch, BATCH_BYTES_MAX).is_ok());
    assert!(matches!(
        decode_records(&batch),
        Err(BatchError::Compression { .. })
    ));
}

// Proves batches built with every Kafka codec validate and decode to the records pushed, keys,
// values, headers and timestamps included.
#[test]
fn every_codec_builds_and_decodes() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut builder = BatchBuilder::new(codec);
        for index in 0..50u8 {
            let value = vec![index; 300];
            builder.push(
                1_000 + i64::from(index),
                Some(&[index]),
                Some(&value),
                &[("h", Some(b"v"))],
            );
        }
        let batch = builder.build().unwrap();
        let header = validate_batch(&batch, BATCH_BYTES_MAX).unwrap();
        assert_eq!(header.compression().unwrap(), codec);
        let records = decode_records(&batch).unwrap();
        assert_eq!(records.len(), 50, "{codec:?}");
        for (index, record) in records.iter().enumerate() {
            assert_eq!(record.offset, index as i64);
            assert_eq!(record.timestamp, 1_000 + index as i64);
            assert_eq!(record.key.as_deref(), Some(&[index as u8][..]));
            assert_eq!(record.value.as_deref(), Some(&vec![index as u8; 300][..]));
            assert_eq!(record.headers[0].key, "h");
        }
    }
}

// Proves decode refuses a recordsCount that disagrees with the records present, in both
// directions, instead of returning a partial or padded list.
#[test]
fn record_count_mismatch_is_rejected() {
    for declared in [1, 3, i32::MAX] {
        let mut batch = HAND_BUILT_BATCH;
        put_i32(&mut batch, RECORDS_COUNT_AT, declared);
        refresh_crc(&mut batch).unwrap();
        assert!(validate_batch(&batch, BATCH_BYTES_MAX).is_ok());
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::RecordCountMismatch { declared: d, .. }) if d == declared
        ));
    }
}

// Proves a log-append-time batch reports every record at the batch's max timestamp, as Kafka
// consumers expect.
#[test]
fn log_append_time_uses_max_timestamp() {
    let mut batch = HAND_BUILT_BATCH;
    put_i16(&mut batch, ATTRIBUTES_AT, 0x08);
    refresh_crc(&mut batch).unwrap();
    let records = decode_records(&batch).unwrap();
    assert!(records.iter().all(|r| r.timestamp == 1_700_000_000_005));
}

// Proves a zstd batch that inflates past DECOMPRESSED_BYTES_MAX is refused with a named error
// instead of being decompressed without bound.
#[test]
fn zstd_decompression_is_bounded() {
    let bomb = zstd::bulk::compress(&vec![0u8; DECOMPRESSED_BYTES_MAX + 1], 1).unwrap();
    let mut batch = HAND_BUILT_BATCH[..BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(&bomb);
    let batch_length = i32::try_from(batch.len() - LOG_OVERHEAD_BYTES).unwrap();
    put_i32(&mut batch, 8, batch_length);
    put_i16(&mut batch, ATTRIBUTES_AT, Compression::Zstd.code());
    refresh_crc(&mut batch).unwrap();
    assert!(validate_batch(&batch, BATCH_BYTES_MAX).is_ok());
    assert!(matches!(
        decode_records(&batch),
        Err(BatchError::DecompressedTooLarge {
            max: DECOMPRESSED_BYTES_MAX
        })
    ));
}

// Proves corrupt zstd bytes surface as a compression error, not a panic or garbage records.
#[test]
fn corrupt_zstd_payload_is_an_error() {
    let mut batch = build(
        Compression::Zstd,
        &[InputRecord {
            timestamp: 1,
            key: None,
            value: Some(vec![9; 200]),
            headers: vec![],
        }],
    );
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    batch[BATCH_HEADER_BYTES] ^= 0xff;
    refresh_crc(&mut batch).unwrap();
    assert!(matches!(
        decode_records(&batch),
        Err(BatchError::Compression { .. })
    ));
}
