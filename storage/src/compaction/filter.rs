//! Rewriting one batch with only the records a cleaning keeps (Kafka's
//! `MemoryRecords.filterTo`), as plain byte work with no I/O.
//!
//! A rewritten batch keeps everything of the original that a reader or a producer relies on:
//! base offset, last offset delta (so the batch still ends where it ended, and an idempotent
//! producer's last sequence is unchanged), partition leader epoch, attributes (codec,
//! timestamp type, transactional and control bits), base timestamp, producer id, epoch and
//! base sequence. Each kept record keeps its offset and timestamp. Only `recordsCount`, the
//! records, the CRC and, for create-time batches, `maxTimestamp` (the newest kept record)
//! change. Kept records are re-encoded with the batch's own codec; a codec we cannot encode
//! keeps the batch whole (correct, merely less compact).

use bytes::BufMut;

use crate::batch::{
    decode_records, refresh_crc,
    varint::{put_varint, put_varlong},
    BatchHeader, Compression, Record, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2, ZSTD_LEVEL,
};

/// Attribute bits 0-2: the codec (Kafka's layout, as in `crate::batch`).
const CODEC_BITS: i16 = 0x07;

/// What becomes of one batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// Every record stays (or the batch cannot be rewritten): the original bytes are kept.
    Unchanged,
    /// No record stays and nothing needs the batch: it is left out.
    Dropped,
    /// The batch rebuilt with the records that stay (possibly none: an empty batch kept for
    /// its offsets or its producer).
    Rewritten(Vec<u8>),
}

/// The result of filtering one batch.
#[derive(Debug)]
pub(crate) struct FilterOutcome {
    pub filtered: Filtered,
    /// Records left out.
    pub records_removed: u64,
    /// Offset of the newest tombstone that stays, if any.
    pub kept_tombstone_max: Option<i64>,
    /// The records could not be decoded (a codec this build does not decode, or records that
    /// never parsed): the batch was kept whole.
    pub undecodable: bool,
}

impl FilterOutcome {
    fn unchanged(kept_tombstone_max: Option<i64>, undecodable: bool) -> FilterOutcome {
        FilterOutcome {
            filtered: Filtered::Unchanged,
            records_removed: 0,
            kept_tombstone_max,
            undecodable,
        }
    }
}

/// Filters the validated batch `batch` (header `header`): `retain` decides each record.
/// A batch left with no record is kept as an empty batch when `keep_if_emptied` (it carries
/// the segment's last offsets, or its producer's latest sequence), otherwise dropped.
pub(crate) fn filter_batch(
    batch: &[u8],
    header: &BatchHeader,
    keep_if_emptied: bool,
    mut retain: impl FnMut(&Record) -> bool,
) -> FilterOutcome {
    let records = match decode_records(batch) {
        Ok(records) => records,
        Err(_) => return FilterOutcome::unchanged(None, true),
    };
    let total = records.len();
    let kept: Vec<&Record> = records.iter().filter(|record| retain(record)).collect();
    let removed = (total - kept.len()) as u64;
    let tombstone_max = |records: &mut dyn Iterator<Item = &Record>| {
        records
            .filter(|record| record.value.is_none())
            .map(|record| record.offset)
            .max()
    };
    if removed == 0 {
        return FilterOutcome::unchanged(tombstone_max(&mut records.iter()), false);
    }
    if kept.is_empty() {
        return FilterOutcome {
            filtered: if keep_if_emptied {
                Filtered::Rewritten(empty_batch(header))
            } else {
                Filtered::Dropped
            },
            records_removed: removed,
            kept_tombstone_max: None,
            undecodable: false,
        };
    }
    match rebuild(header, &kept) {
        Some(bytes) => FilterOutcome {
            filtered: Filtered::Rewritten(bytes),
            records_removed: removed,
            kept_tombstone_max: tombstone_max(&mut kept.iter().copied()),
            undecodable: false,
        },
        None => FilterOutcome::unchanged(tombstone_max(&mut records.iter()), false),
    }
}

/// A batch with no records spanning the original's offsets (Kafka's `writeEmptyHeader`): no
/// codec, both timestamps the original's max timestamp, every other field kept.
pub(crate) fn empty_batch(header: &BatchHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES);
    let rebuilt = BatchHeader {
        attributes: header.attributes & !CODEC_BITS,
        base_timestamp: header.max_timestamp,
        records_count: 0,
        ..*header
    };
    put_header(&mut out, &rebuilt, BATCH_HEADER_BYTES);
    finish_crc(out)
}

/// The batch rebuilt with `kept` records (at least one), or `None` when its codec cannot be
/// encoded here.
fn rebuild(header: &BatchHeader, kept: &[&Record]) -> Option<Vec<u8>> {
    let codec = header.compression().ok()?;
    let mut records = Vec::new();
    let mut scratch = Vec::new();
    for record in kept {
        encode_record(&mut records, &mut scratch, header, record)?;
    }
    let payload = match codec {
        Compression::None => records,
        Compression::Zstd => zstd::bulk::compress(&records, ZSTD_LEVEL).ok()?,
        Compression::Gzip | Compression::Snappy | Compression::Lz4 => return None,
    };
    let max_timestamp = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        kept.iter().map(|record| record.timestamp).max()?
    };
    let rebuilt = BatchHeader {
        max_timestamp,
        records_count: i32::try_from(kept.len()).ok()?,
        ..*header
    };
    let total = BATCH_HEADER_BYTES + payload.len();
    let mut out = Vec::with_capacity(total);
    put_header(&mut out, &rebuilt, total);
    out.extend_from_slice(&payload);
    Some(finish_crc(out))
}

/// Writes the 61-byte header of a batch of `total` bytes with a zero CRC.
fn put_header(out: &mut Vec<u8>, header: &BatchHeader, total: usize) {
    let batch_length = i32::try_from(total - LOG_OVERHEAD_BYTES).unwrap_or(i32::MAX);
    out.put_i64(header.base_offset);
    out.put_i32(batch_length);
    out.put_i32(header.partition_leader_epoch);
    out.put_i8(MAGIC_V2);
    out.put_u32(0);
    out.put_i16(header.attributes);
    out.put_i32(header.last_offset_delta);
    out.put_i64(header.base_timestamp);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    out.put_i32(header.records_count);
}

/// Computes and stores the CRC of the batch in `out`.
fn finish_crc(mut out: Vec<u8>) -> Vec<u8> {
    // The batch was just built whole, so its header parses and its length fits.
    let refreshed = refresh_crc(&mut out);
    debug_assert!(refreshed.is_ok(), "a rebuilt batch must be whole");
    out
}

/// Appends one record with its original offset delta and timestamp. `None` when a field does
/// not fit the format (it did in the original, so this means a bug upstream).
fn encode_record(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    header: &BatchHeader,
    record: &Record,
) -> Option<()> {
    scratch.clear();
    let offset_delta = i32::try_from(record.offset.checked_sub(header.base_offset)?).ok()?;
    // Log-append-time records all read as the batch's max timestamp whatever their delta, so
    // the delta is written as zero (the decoded record does not carry the original one).
    let timestamp_delta = if header.is_log_append_time() {
        0
    } else {
        record.timestamp.wrapping_sub(header.base_timestamp)
    };
    scratch.put_i8(0);
    put_varlong(scratch, timestamp_delta);
    put_varint(scratch, offset_delta);
    put_nullable(scratch, record.key.as_deref())?;
    put_nullable(scratch, record.value.as_deref())?;
    put_varint(scratch, i32::try_from(record.headers.len()).ok()?);
    for record_header in &record.headers {
        put_nullable(scratch, Some(record_header.key.as_bytes()))?;
        put_nullable(scratch, record_header.value.as_deref())?;
    }
    put_varint(out, i32::try_from(scratch.len()).ok()?);
    out.extend_from_slice(scratch);
    Some(())
}

fn put_nullable(out: &mut Vec<u8>, value: Option<&[u8]>) -> Option<()> {
    match value {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, i32::try_from(bytes.len()).ok()?);
            out.extend_from_slice(bytes);
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{stamp, validate_batch, BatchBuilder};

    /// A stamped batch at base offset 100 with keys k0..k4 (k3 a tombstone) and a header.
    fn sample(codec: Compression) -> Vec<u8> {
        let mut builder = BatchBuilder::new(codec).with_producer(7, 2, 40);
        for index in 0..5u8 {
            let key = [b'k', b'0' + index];
            let value = (index != 3).then(|| vec![index; 30]);
            let header_value = [index];
            builder.push(
                1_000 + i64::from(index) * 10,
                Some(&key),
                value.as_deref(),
                &[("h", Some(&header_value))],
            );
        }
        let mut batch = builder.build().unwrap();
        stamp(&mut batch, 100, 4).unwrap();
        batch.to_vec()
    }

    // Proves a rewritten batch (none and zstd) keeps base offset, last offset, epoch,
    // attributes, producer fields and every kept record exactly, and has a valid CRC.
    #[test]
    fn rewrite_keeps_offsets_producer_and_records() {
        for codec in [Compression::None, Compression::Zstd] {
            let batch = sample(codec);
            let header = validate_batch(&batch, usize::MAX).unwrap();
            let original = decode_records(&batch).unwrap();
            let outcome = filter_batch(&batch, &header, false, |record| record.offset % 2 == 1);
            let Filtered::Rewritten(bytes) = outcome.filtered else {
                panic!("{codec:?}: expected a rewrite");
            };
            assert_eq!(outcome.records_removed, 3);
            assert_eq!(outcome.kept_tombstone_max, Some(103));
            let rewritten = validate_batch(&bytes, usize::MAX).unwrap();
            assert_eq!(rewritten.base_offset, 100);
            assert_eq!(rewritten.last_offset(), header.last_offset());
            assert_eq!(rewritten.partition_leader_epoch, 4);
            assert_eq!(rewritten.attributes, header.attributes);
            assert_eq!(rewritten.base_timestamp, header.base_timestamp);
            assert_eq!(rewritten.max_timestamp, 1_030);
            assert_eq!((rewritten.producer_id, rewritten.producer_epoch), (7, 2));
            assert_eq!(rewritten.base_sequence, 40);
            assert_eq!(rewritten.records_count, 2);
            let kept: Vec<Record> = original
                .into_iter()
                .filter(|record| record.offset % 2 == 1)
                .collect();
            assert_eq!(decode_records(&bytes).unwrap(), kept);
        }
    }

    // Proves the three other outcomes: all kept leaves the bytes alone, none kept drops the
    // batch, and none kept with keep_if_emptied leaves an empty batch over the same offsets.
    #[test]
    fn unchanged_dropped_and_emptied() {
        let batch = sample(Compression::Zstd);
        let header = validate_batch(&batch, usize::MAX).unwrap();
        let all = filter_batch(&batch, &header, false, |_| true);
        assert_eq!(all.filtered, Filtered::Unchanged);
        assert_eq!(all.kept_tombstone_max, Some(103));
        let none = filter_batch(&batch, &header, false, |_| false);
        assert_eq!(none.filtered, Filtered::Dropped);
        assert_eq!(none.records_removed, 5);
        let emptied = filter_batch(&batch, &header, true, |_| false);
        let Filtered::Rewritten(bytes) = emptied.filtered else {
            panic!("expected an empty batch");
        };
        let empty = validate_batch(&bytes, usize::MAX).unwrap();
        assert_eq!(bytes.len(), BATCH_HEADER_BYTES);
        assert_eq!(empty.base_offset, 100);
        assert_eq!(empty.last_offset(), 104);
        assert_eq!(empty.records_count, 0);
        assert_eq!(empty.compression().unwrap(), Compression::None);
        assert_eq!(empty.producer_id, 7);
        assert!(decode_records(&bytes).unwrap().is_empty());
    }

    // Proves a batch whose records cannot be decoded is kept whole and reported.
    #[test]
    fn undecodable_batch_is_kept() {
        let mut batch = sample(Compression::None);
        // Corrupt a record length inside the records (then fix the CRC) so decoding fails.
        batch[BATCH_HEADER_BYTES] = 0x7f;
        refresh_crc(&mut batch).unwrap();
        let header = validate_batch(&batch, usize::MAX).unwrap();
        let outcome = filter_batch(&batch, &header, false, |_| false);
        assert_eq!(outcome.filtered, Filtered::Unchanged);
        assert!(outcome.undecodable);
    }
}
