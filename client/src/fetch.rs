//! Turning one partition's fetched bytes into records or whole batches. Pure functions over
//! bytes, no I/O.

use std::rc::Rc;

use bytes::Bytes;
use sluice_net::messages::FetchResponse;
use sluice_net::received_payload_parts;
use sluice_storage::batch::{
    for_each_record_shared, for_each_record_view, BatchError, BatchHeader, BatchIter, PartsCheck,
    RecordView, RECORD_BYTES_MIN,
};

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
    /// The position that was fetched: records before it were returned by an earlier poll
    /// ([`FetchedBatches::for_each_record`] skips them).
    pub from_offset: i64,
    /// The partition's position after these batches: the next offset a poll fetches.
    pub next_offset: i64,
}

impl FetchedBatches {
    /// Hands `each` every user record at or after `from_offset`, in offset order, read in
    /// place: keys, values and headers borrow the fetched bytes (a compressed batch is
    /// decompressed once into memory the views borrow while `each` runs). Control batches
    /// hold no user records and are skipped. On an error, the records before the bad one were
    /// already handed over.
    pub fn for_each_record(&self, mut each: impl FnMut(RecordView<'_>)) -> Result<(), ClientError> {
        for span in batch_spans(&self.records) {
            let (header, range) = span?;
            if !has_records_from(&header, self.from_offset) {
                continue;
            }
            for_each_record_view(&self.records[range], |record| {
                if record.offset >= self.from_offset {
                    each(record);
                }
            })?;
        }
        Ok(())
    }
}

/// Checks the CRCs of a fetch response's batches while the response arrives, each socket
/// read's bytes while they are still in the cache: a response of many megabytes checked once it
/// is whole is checked at memory speed. Fed the response frame's received prefix (see
/// `FrameObserver`); what it could not vouch for gets the full check in [`whole_batches`].
#[derive(Debug)]
pub(crate) struct FetchCheck {
    /// Each partition's records.
    parts: PartsCheck,
}

impl FetchCheck {
    /// A check of one response whose batches are at most `batch_bytes_max` bytes each.
    pub(crate) fn new(batch_bytes_max: usize) -> Self {
        FetchCheck {
            parts: PartsCheck::new(batch_bytes_max),
        }
    }

    /// Checks what `frame` (the response frame's bytes so far, prefix included) adds.
    pub(crate) fn observe(&mut self, frame: &[u8]) {
        self.parts.feed(frame, |frame| {
            received_payload_parts(frame, |response: FetchResponse| {
                let partitions = response.partitions.iter();
                partitions
                    .map(|partition| partition.records_bytes as usize)
                    .collect()
            })
        });
    }

    /// Per partition, in the response's order, the length of the prefix of its records whose
    /// batches were checked as they arrived.
    pub(crate) fn verified_bytes(&self) -> Vec<usize> {
        self.parts.verified_bytes()
    }
}

/// The whole batches at the start of `payload` and the offset after the last of them. A batch
/// cut off by the fetch size limit at the end is left for the next fetch; a corrupt batch is an
/// error, as is a payload without one whole batch (the broker always sends at least one). The
/// batches within the first `crc_verified_bytes` (a [`FetchCheck`]'s) skip their CRC, which
/// was matched as they arrived.
pub(crate) fn whole_batches(
    payload: &Bytes,
    position: i64,
    batch_bytes_max: usize,
    crc_verified_bytes: usize,
) -> Result<(Bytes, i64), ClientError> {
    let mut next_position = position;
    let mut whole_bytes = 0;
    for batch in BatchIter::new(payload, batch_bytes_max).crc_verified_before(crc_verified_bytes) {
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

/// The header and byte range of each batch in `batches` (whole, validated batches, as
/// `whole_batches` returns them). `whole_batches` checked every batch (CRC included); only the
/// boundaries are needed here, and they are still bounds-checked.
fn batch_spans(
    batches: &Bytes,
) -> impl Iterator<Item = Result<(BatchHeader, std::ops::Range<usize>), BatchError>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= batches.len() {
            return None;
        }
        let span = BatchHeader::parse(&batches[start..]).and_then(|header| {
            let end = start + header.total_bytes();
            if end > batches.len() {
                return Err(BatchError::Truncated {
                    needed: header.total_bytes(),
                    available: batches.len() - start,
                });
            }
            Ok((header, start..end))
        });
        // After an error the walk stops: the bytes past a bad header have no known boundary.
        start = span.as_ref().map_or(batches.len(), |(_, range)| range.end);
        Some(span)
    })
}

/// Whether the batch under `header` holds user records at or after `position` (a control
/// batch holds none).
fn has_records_from(header: &BatchHeader, position: i64) -> bool {
    header.last_offset() >= position && !header.is_control()
}

/// How many records [`decode_into`] may add for `batches` at or after `position`: the record
/// counts their headers declare (at most what their bytes can hold uncompressed), so the
/// caller's list is allocated once rather than doubling, and copying itself, as it fills.
pub(crate) fn records_bound(batches: &Bytes, position: i64) -> usize {
    batch_spans(batches)
        .map_while(Result::ok)
        .filter(|(header, _)| has_records_from(header, position))
        .map(|(header, range)| {
            let declared = usize::try_from(header.records_count).unwrap_or(0);
            declared.min(range.len() / RECORD_BYTES_MIN)
        })
        .sum()
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
    for span in batch_spans(batches) {
        let (header, range) = span?;
        if !has_records_from(&header, position) {
            continue;
        }
        for_each_record_shared(&batches.slice(range), |record| {
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
        let (batches, next) = whole_batches(&payload, 11, usize::MAX, 0).unwrap();
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
        // The list is sized from the headers: every record of a batch reaching the position.
        assert_eq!(records_bound(&batches, 11), 5);
        assert_eq!(records_bound(&batches, 13), 2);
        assert_eq!(records_bound(&batches, 15), 0);
    }

    // Proves reading fetched batches in place hands over the same records as decoding them,
    // from the position on: nothing before it, nothing twice, in offset order.
    #[test]
    fn batches_read_in_place_match_the_decoded_records() {
        let payload = two_batches();
        let (records, next_offset) = whole_batches(&payload, 11, usize::MAX, 0).unwrap();
        let topic: Rc<str> = Rc::from("t");
        for from_offset in [10, 11, 13, 14, 15] {
            let fetched = FetchedBatches {
                topic: Rc::clone(&topic),
                partition: 4,
                high_watermark: 15,
                records: records.clone(),
                from_offset,
                next_offset,
            };
            let mut viewed = Vec::new();
            fetched
                .for_each_record(|record| {
                    let headers: Vec<(String, Option<Bytes>)> = record
                        .headers()
                        .map(|(key, value)| (key.to_string(), value.map(Bytes::copy_from_slice)))
                        .collect();
                    viewed.push(ConsumerRecord {
                        topic: Rc::clone(&topic),
                        partition: 4,
                        offset: record.offset,
                        timestamp_ms: record.timestamp,
                        key: record.key.map(Bytes::copy_from_slice),
                        value: record.value.map(Bytes::copy_from_slice),
                        headers,
                    });
                })
                .unwrap();
            let decoded = decode_from(&topic, 4, &records, from_offset).unwrap();
            assert_eq!(viewed, decoded, "from offset {from_offset}");
            assert_eq!(viewed.len(), (15 - from_offset) as usize);
        }
    }

    // Proves a batch cut off at the end of the fetch is left for the next fetch: the position
    // stops after the last whole batch and the returned bytes hold only whole batches.
    #[test]
    fn partial_trailing_batch_is_left_for_next_fetch() {
        let payload = two_batches();
        let cut = payload.slice(..payload.len() - 5);
        let (batches, next) = whole_batches(&cut, 10, usize::MAX, 0).unwrap();
        assert_eq!(next, 13);
        let topic: Rc<str> = Rc::from("t");
        assert_eq!(decode_from(&topic, 0, &batches, 10).unwrap().len(), 3);
        let empty = whole_batches(&Bytes::new(), 42, usize::MAX, 0).unwrap();
        assert_eq!(empty, (Bytes::new(), 42));
    }

    /// A Fetch response frame whose partitions hold `payloads`, payloads included.
    fn fetch_frame(payloads: &[&[u8]]) -> BytesMut {
        use sluice_net::messages::FetchPartitionResult;
        use sluice_net::{encode_frame, FrameHeader};
        let partitions = (0..payloads.len())
            .map(|partition| FetchPartitionResult {
                topic: "t".to_string(),
                partition: partition as i32,
                error: 0,
                high_watermark: 15,
                log_start_offset: 0,
                log_end_offset: 15,
                records_bytes: payloads[partition].len() as u32,
                current_leader: -1,
            })
            .collect();
        let header = FrameHeader::request(sluice_net::ApiKey::Fetch, 0, 7).response();
        let payload_bytes = payloads.iter().map(|payload| payload.len()).sum();
        let mut frame = BytesMut::new();
        encode_frame(
            &mut frame,
            header,
            &FetchResponse { partitions },
            payload_bytes,
        )
        .unwrap();
        for payload in payloads {
            frame.extend_from_slice(payload);
        }
        frame
    }

    // Proves a FetchCheck fed a response in pieces vouches for every whole batch of a sound
    // partition and stops before a corrupt batch, which whole_batches, told what was vouched
    // for, still reports; bytes past the frame change nothing.
    #[test]
    fn fetch_check_vouches_while_the_response_arrives() {
        let sound = two_batches();
        let first_batch = BatchHeader::parse(&sound).unwrap().total_bytes();
        let mut corrupt = BytesMut::from(&sound[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let mut frame = fetch_frame(&[&sound, &corrupt]);
        let frame_bytes = frame.len();
        frame.extend_from_slice(&[0xab; 100]);
        let mut check = FetchCheck::new(usize::MAX);
        for received in (1..frame.len())
            .step_by(37)
            .chain([frame_bytes, frame.len()])
        {
            check.observe(&frame[..received]);
        }
        assert_eq!(check.verified_bytes(), vec![sound.len(), first_batch]);
        let corrupt = corrupt.freeze();
        assert!(matches!(
            whole_batches(&corrupt, 10, usize::MAX, first_batch),
            Err(ClientError::Batch(BatchError::CrcMismatch { .. }))
        ));
        let (batches, next) = whole_batches(&sound, 10, usize::MAX, sound.len()).unwrap();
        assert_eq!((batches.len(), next), (sound.len(), 15));
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
            whole_batches(&corrupt, 10, usize::MAX, 0),
            Err(ClientError::Batch(BatchError::CrcMismatch { .. }))
        ));
        let partial = two_batches().slice(..30);
        assert!(whole_batches(&partial, 10, usize::MAX, 0).is_err());
    }
}
