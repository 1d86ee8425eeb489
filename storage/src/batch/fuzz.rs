//! The fuzz entry point: runs every decoder on arbitrary bytes and asserts the invariants that
//! hold whatever the input. It lives in the library (not behind `cfg(test)`) so the cargo-fuzz
//! target and the stable replay test call the same code.

use super::{
    decode_records, for_each_record_view, refresh_crc, stamp, validate_batch, BatchBuilder,
    BatchError, BatchHeader, BatchIter, Compression, Record, BATCH_HEADER_BYTES, BATCH_LENGTH_AT,
    BATCH_LENGTH_MIN_BYTES, MAGIC_AT, MAGIC_V2, PARTITION_LEADER_EPOCH_AT,
};

/// Batch size limit used while fuzzing: large enough for anything a fuzzer builds, small enough
/// that the size check is exercised by mutated length fields.
const FUZZ_BATCH_BYTES_MAX: usize = 1024 * 1024;

/// The fuzz entry: runs parse/validate/iter/decode on arbitrary bytes and asserts invariants
/// (never panics; a batch that validates re-validates after stamp(); BatchIter positions only
/// ever advance to batch boundaries). A panic here is a bug in the codec.
pub fn fuzz_one(data: &[u8]) {
    check_all(data);
    // A fuzzer cannot forge a CRC-32C, so almost every mutation would stop at the CRC check.
    // Running everything again on a copy with its CRC recomputed lets mutations reach the
    // field checks and the record decoder.
    let mut repaired = data.to_vec();
    if refresh_crc(&mut repaired).is_ok() {
        let result = validate_batch(&repaired, FUZZ_BATCH_BYTES_MAX);
        assert!(
            !matches!(result, Err(BatchError::CrcMismatch { .. })),
            "a batch with a freshly computed CRC failed the CRC check"
        );
        check_all(&repaired);
    }
}

fn check_all(data: &[u8]) {
    check_parse(data);
    check_validate(data);
    check_iter(data);
    // decode_records does not need a valid CRC, so arbitrary bytes reach it directly too.
    let decoded = decode_records(data);
    if let Ok(records) = &decoded {
        let header = BatchHeader::parse(data).expect("decoded batch has a parsable header");
        assert_eq!(records.len(), header.records_count as usize);
    }
    check_views(data, decoded.ok());
}

/// Reading in place agrees with decoding: the same records (offsets, timestamps, keys, values,
/// headers) when decoding succeeds, an error when it fails.
fn check_views(data: &[u8], decoded: Option<Vec<Record>>) {
    let mut viewed = Vec::new();
    let walked = for_each_record_view(data, |view| viewed.push(view.copied()));
    match decoded {
        Some(records) => {
            assert!(walked.is_ok(), "a batch that decodes is read in place too");
            assert_eq!(viewed, records);
        }
        None => assert!(
            walked.is_err(),
            "a batch that does not decode is not read in place"
        ),
    }
}

/// A parsed header obeys the limits parse promises and reads only the first 61 bytes.
fn check_parse(data: &[u8]) {
    let Ok(header) = BatchHeader::parse(data) else {
        return;
    };
    assert_eq!(header.magic, MAGIC_V2);
    assert!(header.batch_length >= BATCH_LENGTH_MIN_BYTES);
    assert!(header.total_bytes() >= BATCH_HEADER_BYTES);
    assert_eq!(header.compression().is_ok(), header.attributes & 0x07 <= 4);
    let header_only =
        BatchHeader::parse(&data[..BATCH_HEADER_BYTES]).expect("header re-parses alone");
    assert_eq!(header_only, header);
}

/// A batch that validates lies inside the buffer and the limit, survives stamping, and decodes
/// consistently.
fn check_validate(data: &[u8]) {
    let Ok(header) = validate_batch(data, FUZZ_BATCH_BYTES_MAX) else {
        return;
    };
    let total = header.total_bytes();
    assert!(total <= data.len() && total <= FUZZ_BATCH_BYTES_MAX);
    assert_eq!(
        BatchHeader::parse(data).expect("validated header parses"),
        header
    );
    let batch = &data[..total];
    assert_eq!(
        validate_batch(batch, total).expect("batch validates on its own"),
        header
    );
    let stamped = check_stamp(batch, &header);
    check_decode(batch, &stamped, &header);
}

/// Stamping changes exactly the two stamped fields and keeps the batch valid.
fn check_stamp(batch: &[u8], header: &BatchHeader) -> Vec<u8> {
    let base_offset = header.base_offset ^ 0x0123_4567_89ab_cdef;
    let epoch = !header.partition_leader_epoch;
    let mut stamped = batch.to_vec();
    stamp(&mut stamped, base_offset, epoch).expect("a valid batch can be stamped");
    let restamped = validate_batch(&stamped, batch.len()).expect("a stamped batch still validates");
    let expected = BatchHeader {
        base_offset,
        partition_leader_epoch: epoch,
        ..*header
    };
    assert_eq!(restamped, expected);
    assert_eq!(
        stamped[BATCH_LENGTH_AT..PARTITION_LEADER_EPOCH_AT],
        batch[BATCH_LENGTH_AT..PARTITION_LEADER_EPOCH_AT]
    );
    assert_eq!(stamped[MAGIC_AT..], batch[MAGIC_AT..]);
    stamped
}

/// Decoding succeeds or fails the same way before and after stamping; decoded records match the
/// header and survive a rebuild.
fn check_decode(batch: &[u8], stamped: &[u8], header: &BatchHeader) {
    let decoded = decode_records(batch);
    let restamped = decode_records(stamped);
    let records = match (decoded, restamped) {
        (Ok(records), Ok(restamped)) => {
            let shift = BatchHeader::parse(stamped)
                .expect("stamped parses")
                .base_offset
                .wrapping_sub(header.base_offset);
            let shifted: Vec<Record> = records
                .iter()
                .map(|record| Record {
                    offset: record.offset.wrapping_add(shift),
                    ..record.clone()
                })
                .collect();
            assert_eq!(
                shifted, restamped,
                "stamping changed more than record offsets"
            );
            records
        }
        // Every codec decodes, so a failure is the batch's own: it must fail the same way
        // before and after stamping (checked by the arm below when only one fails).
        (Err(_), Err(_)) => return,
        (before, after) => panic!("stamping changed decodability: {before:?} vs {after:?}"),
    };
    assert_eq!(records.len(), header.records_count as usize);
    check_rebuild(&records);
}

/// Re-encoding decoded records with the builder and decoding again gives back the same keys,
/// values, headers and timestamps, at offsets 0..n.
fn check_rebuild(records: &[Record]) {
    if records.is_empty() {
        return;
    }
    let mut builder = BatchBuilder::new(Compression::None);
    for record in records {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|header| (header.key.as_str(), header.value.as_deref()))
            .collect();
        builder.push(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
    }
    let rebuilt = builder.build().expect("decoded records rebuild");
    validate_batch(&rebuilt, usize::MAX).expect("rebuilt batch validates");
    let again = decode_records(&rebuilt).expect("rebuilt batch decodes");
    let expected: Vec<Record> = records
        .iter()
        .zip(0..)
        .map(|(record, offset)| Record {
            offset,
            ..record.clone()
        })
        .collect();
    assert_eq!(
        again, expected,
        "decode -> build -> decode changed the records"
    );
}

/// BatchIter yields contiguous, individually valid batches from position 0, advances only to
/// batch boundaries, reports at most one error, and is fused afterwards.
fn check_iter(data: &[u8]) {
    let mut iter = BatchIter::new(data, FUZZ_BATCH_BYTES_MAX);
    let mut boundary = 0;
    let mut failed = false;
    while let Some(item) = iter.next() {
        assert!(!failed, "BatchIter yielded after an error");
        match item {
            Ok((header, batch)) => {
                assert!(std::ptr::eq(batch.as_ptr(), data[boundary..].as_ptr()));
                assert_eq!(batch.len(), header.total_bytes());
                assert_eq!(
                    validate_batch(batch, FUZZ_BATCH_BYTES_MAX).expect("yielded batch validates"),
                    header
                );
                boundary += batch.len();
            }
            Err(_) => {
                assert!(validate_batch(&data[boundary..], FUZZ_BATCH_BYTES_MAX).is_err());
                failed = true;
            }
        }
        assert_eq!(iter.position(), boundary);
    }
    assert!(
        failed || boundary == data.len(),
        "BatchIter stopped early without an error"
    );
    assert!(iter.next().is_none(), "BatchIter is not fused");
    assert_eq!(iter.position(), boundary);
}
