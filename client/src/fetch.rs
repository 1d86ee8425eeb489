//! Turning one partition's fetched bytes into records or whole batches. Pure functions over
//! bytes, no I/O.

use std::rc::Rc;

use bytes::Bytes;
use sluice_storage::batch::{for_each_record_shared, BatchError, BatchHeader, BatchIter};

use crate::error::ClientError;

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic (shared by every record of the topic).
    pub topic: Rc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp, in Unix milliseconds.
    pub timestamp_ms: i64,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Record headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Whole batches fetched from one partition, undecoded, for consumers that process batches
/// themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatches {
    /// The topic.
    pub topic: Rc<str>,
    /// The partition.
    pub partition: i32,
    /// The partition's high watermark when the fetch was answered.
    pub high_watermark: i64,
    /// Concatenated whole Kafka v2 batches, CRC-checked. The first batch may start before the
    /// position that was fetched.
    pub records: Bytes,
}

/// The whole batches at the start of `payload` and the offset after the last of them. A batch
/// cut off by the fetch size limit at the end is left for the next fetch; a corrupt batch is an
/// error, as is a payload without one whole batch (the broker always sends at least one).
pub(crate) fn whole_batches(
    payload: &Bytes,
    position: i64,
    batch_bytes_max: usize,
) -> Result<(Bytes, i64), ClientError> {
    let mut next_position = position;
    let mut whole_bytes = 0;
    for batch in BatchIter::new(payload, batch_bytes_max) {
        match batch {
            Ok((header, _)) => {
                next_position = next_position.max(header.last_offset() + 1);
                whole_bytes += header.total_bytes();
            }
            Err(BatchError::Truncated { .. } | BatchError::TooShort { .. }) if whole_bytes > 0 => {
                break
            }
            Err(error) => return Err(ClientError::Batch(error)),
        }
    }
    Ok((payload.slice(..whole_bytes), next_position))
}

/// Decodes the records of `batches` (whole, validated batches, as `whole_batches` returns
/// them) at or after `position`, in offset order, onto the end of `out`. Control batches carry
/// no user records and are skipped. On an error `out` may hold some of the records: the caller
/// drops it.
pub(crate) fn decode_into(
    topic: &Rc<str>,
    partition: i32,
    batches: &Bytes,
    position: i64,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), ClientError> {
    let mut start = 0;
    while start < batches.len() {
        // `whole_batches` validated every batch (CRC included); only the boundaries are
        // needed here, and they are still bounds-checked.
        let header = BatchHeader::parse(&batches[start..])?;
        let end = start + header.total_bytes();
        if end > batches.len() {
            return Err(BatchError::Truncated {
                needed: header.total_bytes(),
                available: batches.len() - start,
            }
            .into());
        }
        let bytes = batches.slice(start..end);
        start = end;
        if header.last_offset() < position || header.is_control() {
            continue;
        }
        for_each_record_shared(&bytes, |record| {
            if record.offset >= position {
                out.push(ConsumerRecord {
                    topic: Rc::clone(topic),
                    partition,
                    offset: record.offset,
                    timestamp_ms: record.timestamp,
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|header| (header.key, header.value))
                        .collect(),
                });
            }
        })?;
    }
    Ok(())
}

/// [`decode_into`] a new list.
#[cfg(test)]
fn decode_from(
    topic: &Rc<str>,
    partition: i32,
    batches: &Bytes,
    position: i64,
) -> Result<Vec<ConsumerRecord>, ClientError> {
    let mut records = Vec::new();
    decode_into(topic, partition, batches, position, &mut records)?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sluice_storage::batch::{stamp, BatchBuilder, Compression};

    /// Two batches at offsets 10..13 and 13..15 (values "v10".."v14"), concatenated.
    fn two_batches() -> Bytes {
        let mut out = BytesMut::new();
        for (base, count) in [(10_i64, 3_i64), (13, 2)] {
            let mut builder = BatchBuilder::new(Compression::Zstd);
            for offset in base..base + count {
                let value = format!("v{offset}");
                builder.push(
                    1_000 + offset,
                    Some(b"k"),
                    Some(value.as_bytes()),
                    &[("h", Some(b"x"))],
                );
            }
            let mut batch = builder.build().unwrap();
            stamp(&mut batch, base, 0).unwrap();
            out.extend_from_slice(&batch);
        }
        out.freeze()
    }

    // Proves records before the position in the first batch are skipped and the rest come back
    // in offset order with their keys, values, timestamps and headers.
    #[test]
    fn records_before_position_are_skipped() {
        let payload = two_batches();
        let (batches, next) = whole_batches(&payload, 11, usize::MAX).unwrap();
        assert_eq!(next, 15);
        let topic: Rc<str> = Rc::from("t");
        let records = decode_from(&topic, 4, &batches, 11).unwrap();
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, vec![11, 12, 13, 14]);
        assert_eq!(records[0].value.as_deref(), Some(&b"v11"[..]));
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[0].timestamp_ms, 1_011);
        assert_eq!(
            records[0].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"x")))]
        );
        assert_eq!(records[0].partition, 4);
    }

    // Proves a batch cut off at the end of the fetch is left for the next fetch: the position
    // stops after the last whole batch and the returned bytes hold only whole batches.
    #[test]
    fn partial_trailing_batch_is_left_for_next_fetch() {
        let payload = two_batches();
        let cut = payload.slice(..payload.len() - 5);
        let (batches, next) = whole_batches(&cut, 10, usize::MAX).unwrap();
        assert_eq!(next, 13);
        let topic: Rc<str> = Rc::from("t");
        assert_eq!(decode_from(&topic, 0, &batches, 10).unwrap().len(), 3);
        let empty = whole_batches(&Bytes::new(), 42, usize::MAX).unwrap();
        assert_eq!(empty, (Bytes::new(), 42));
    }

    // Proves a corrupt batch is reported, not silently skipped, and a payload with no whole
    // batch is an error rather than an endless empty fetch.
    #[test]
    fn corrupt_or_partial_only_payload_is_an_error() {
        let mut corrupt = BytesMut::from(&two_batches()[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let corrupt = corrupt.freeze();
        assert!(matches!(
            whole_batches(&corrupt, 10, usize::MAX),
            Err(ClientError::Batch(BatchError::CrcMismatch { .. }))
        ));
        let partial = two_batches().slice(..30);
        assert!(whole_batches(&partial, 10, usize::MAX).is_err());
    }
}
