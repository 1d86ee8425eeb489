//! Decoding the records inside a batch.
//!
//! Record layout (after an optional decompression of everything past recordsCount):
//! `length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//! keyLength varint | key | valueLength varint | value | headersCount varint | headers`, each
//! header `keyLength varint | key (UTF-8) | valueLength varint | value`. A length of -1 is null.

use std::borrow::Cow;

use bytes::Bytes;

use super::codec::decompress;
use super::varint::{get_varint, get_varlong, VarintError};
use super::{prefetch, BatchError, BatchHeader, Compression, BATCH_HEADER_BYTES};

/// Upper bound on the decompressed size of one batch's records. Kafka caps a batch at about
/// 1 MiB compressed by default; 64 MiB leaves room for very compressible data while keeping a
/// decompression bomb from taking the broker's memory.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Smallest possible encoded record: one byte each for length, attributes, timestampDelta,
/// offsetDelta, keyLength, valueLength and headersCount.
pub const RECORD_BYTES_MIN: usize = 7;
/// How many records ahead of the one being decoded the cache is asked for the line at that
/// record's end, guessing records the size of this one. A consumer decodes a fetch after all of
/// it arrived, from memory: each record's end (its headers and the next record's start) is a
/// fresh line, a kilobyte or so past the last one, too far apart for the hardware to guess.
const PREFETCH_AHEAD_RECORDS: usize = 4;
/// Smallest possible encoded header: one byte each for keyLength and valueLength.
const HEADER_BYTES_MIN: usize = 2;

/// One decoded record, with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset: the batch's base offset plus the record's offset delta.
    pub offset: i64,
    /// Absolute timestamp in milliseconds (create time, or the log append time for batches
    /// whose timestamp type says so).
    pub timestamp: i64,
    /// Key bytes; `None` is a null key, distinct from an empty one.
    pub key: Option<Bytes>,
    /// Value bytes; `None` is a null value (a tombstone), distinct from an empty one.
    pub value: Option<Bytes>,
    /// Record headers, in order.
    pub headers: Vec<RecordHeader>,
}

/// One record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header key (never null in Kafka).
    pub key: String,
    /// Header value; `None` is null.
    pub value: Option<Bytes>,
}

/// One record read in place: its key, value and headers borrow the batch's bytes (or, for a
/// compressed batch, its decompressed records), so reading one copies nothing and counts no
/// references. What a consumer that looks at each record once and keeps nothing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Absolute offset: the batch's base offset plus the record's offset delta.
    pub offset: i64,
    /// Absolute timestamp in milliseconds, as in [`Record::timestamp`].
    pub timestamp: i64,
    /// Key bytes; `None` is a null key.
    pub key: Option<&'a [u8]>,
    /// Value bytes; `None` is a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The record's headers, already checked: see [`RecordView::headers`].
    headers: HeaderViews<'a>,
}

impl<'a> RecordView<'a> {
    /// The record's headers in order, as (UTF-8 key, nullable value).
    pub fn headers(&self) -> HeaderViews<'a> {
        self.headers
    }

    /// The record as an owned [`Record`], its byte strings copied.
    pub fn copied(self) -> Record {
        self.to_record(Bytes::copy_from_slice)
    }

    /// An owned [`Record`] whose byte strings `bytes_of` makes from the view's slices.
    fn to_record(self, bytes_of: impl Fn(&[u8]) -> Bytes) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(&bytes_of),
            value: self.value.map(&bytes_of),
            headers: self
                .headers
                .map(|(key, value)| RecordHeader {
                    key: key.to_string(),
                    value: value.map(&bytes_of),
                })
                .collect(),
        }
    }
}

/// The headers of a [`RecordView`]: an iterator over bytes the record's reader already checked
/// (every length in bounds, every key UTF-8 and not null).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderViews<'a> {
    bytes: &'a [u8],
    left: usize,
}

impl<'a> Iterator for HeaderViews<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The reader checked these bytes; a failure here cannot happen and ends the walk.
        let key = self.nullable()??;
        let value = self.nullable()?;
        Some((std::str::from_utf8(key).ok()?, value))
    }
}

impl<'a> HeaderViews<'a> {
    /// The next length-prefixed, nullable byte string; `None` if the bytes do not hold one.
    fn nullable(&mut self) -> Option<Option<&'a [u8]>> {
        let (length, used) = get_varint(self.bytes).ok()?;
        let rest = &self.bytes[used..];
        let Ok(length) = usize::try_from(length) else {
            self.bytes = rest;
            return Some(None);
        };
        let (field, rest) = (rest.get(..length)?, &rest[length..]);
        self.bytes = rest;
        Some(Some(field))
    }
}

/// Decodes all records of one validated batch (absolute offsets and timestamps), decompressing
/// any of Kafka's codecs (none, gzip, snappy, lz4, zstd).
/// Every length is bounds-checked; decompressed size is bounded by DECOMPRESSED_BYTES_MAX.
///
/// The CRC is not re-checked here (the caller validated the batch), but nothing in the bytes can
/// make this read out of bounds or allocate more than the input justifies.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let (header, records) =
        records_section(batch, |range| Cow::Borrowed(&batch[range]), Cow::Owned)?;
    collect_records(&header, &records, Bytes::copy_from_slice)
}

/// [`decode_records`] for a batch already in shared memory: the keys, values and headers of an
/// uncompressed batch are slices of `batch` (no copy).
pub fn decode_records_shared(batch: &Bytes) -> Result<Vec<Record>, BatchError> {
    let (header, records) = records_section(batch, |range| batch.slice(range), Bytes::from)?;
    collect_records(&header, &records, |field| records.slice_ref(field))
}

/// [`decode_records_shared`] handing each record to `each` as it is decoded, instead of
/// collecting them: a consumer that keeps records in a list of its own builds no second one.
/// On an error, the records before the bad one were already handed over.
pub fn for_each_record_shared(
    batch: &Bytes,
    mut each: impl FnMut(Record),
) -> Result<(), BatchError> {
    let (header, records) = records_section(batch, |range| batch.slice(range), Bytes::from)?;
    parse_records(&header, &records, |view| {
        each(view.to_record(|field| records.slice_ref(field)));
    })
}

/// [`decode_records`] handing each record to `each` in place, as a [`RecordView`] borrowing
/// the batch (a compressed batch is decompressed once, into memory the views borrow while
/// `each` runs). On an error, the records before the bad one were already handed over.
pub fn for_each_record_view(
    batch: &[u8],
    each: impl FnMut(RecordView<'_>),
) -> Result<(), BatchError> {
    let (header, records) =
        records_section(batch, |range| Cow::Borrowed(&batch[range]), Cow::Owned)?;
    parse_records(&header, &records, each)
}

/// Every record of `records` (the section of a batch under `header`), owned through
/// `bytes_of`.
fn collect_records(
    header: &BatchHeader,
    records: &[u8],
    bytes_of: impl Fn(&[u8]) -> Bytes,
) -> Result<Vec<Record>, BatchError> {
    // Never more than the bytes can hold, whatever the count declares (parse_records refuses
    // such a count, but only after this).
    let declared = usize::try_from(header.records_count).unwrap_or(0);
    let mut out = Vec::with_capacity(declared.min(records.len() / RECORD_BYTES_MIN));
    parse_records(header, records, |view| out.push(view.to_record(&bytes_of)))?;
    Ok(out)
}

/// The batch's header and its records section: an uncompressed batch's made by `in_place`
/// from its byte range in `batch`, a compressed one's by `decompressed` from its records.
fn records_section<T>(
    batch: &[u8],
    in_place: impl FnOnce(std::ops::Range<usize>) -> T,
    decompressed: impl FnOnce(Vec<u8>) -> T,
) -> Result<(BatchHeader, T), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_bytes();
    if total > batch.len() {
        return Err(BatchError::Truncated {
            needed: total,
            available: batch.len(),
        });
    }
    let records = match header.compression()? {
        Compression::None => in_place(BATCH_HEADER_BYTES..total),
        codec => decompressed(decompress(codec, &batch[BATCH_HEADER_BYTES..total])?),
    };
    Ok((header, records))
}

/// Parses exactly `records_count` records filling all of `records`, handing each to `each`.
fn parse_records<'a>(
    header: &BatchHeader,
    records: &'a [u8],
    mut each: impl FnMut(RecordView<'a>),
) -> Result<(), BatchError> {
    let declared = header.records_count;
    let count = usize::try_from(declared).map_err(|_| BatchError::Corrupt {
        what: "recordsCount is negative",
    })?;
    // Every record takes at least RECORD_BYTES_MIN bytes, so a count the bytes cannot hold is
    // rejected before anything is allocated for it.
    let fits = records.len() / RECORD_BYTES_MIN;
    if count > fits {
        return Err(BatchError::RecordCountMismatch {
            declared,
            found: fits,
        });
    }
    let mut reader = RecordReader {
        bytes: records,
        position: 0,
        index: 0,
    };
    while reader.index < count {
        if reader.position == reader.bytes.len() {
            return Err(BatchError::RecordCountMismatch {
                declared,
                found: reader.index,
            });
        }
        each(reader.record(header)?);
        reader.index += 1;
    }
    if reader.position != reader.bytes.len() {
        return Err(BatchError::RecordCountMismatch {
            declared,
            found: count + 1,
        });
    }
    Ok(())
}

/// A cursor over the records section that reports errors with the record index and position.
struct RecordReader<'a> {
    bytes: &'a [u8],
    position: usize,
    index: usize,
}

impl<'a> RecordReader<'a> {
    fn error(&self, what: &'static str) -> BatchError {
        BatchError::BadRecord {
            index: self.index,
            position: self.position,
            what,
        }
    }

    fn varint_error(&self, error: VarintError, field: &'static str) -> BatchError {
        self.error(match error {
            VarintError::Truncated => field,
            VarintError::TooLong => "varint longer than its type allows",
        })
    }

    fn varint(&mut self, end: usize, truncated: &'static str) -> Result<i32, BatchError> {
        let (value, used) = get_varint(&self.bytes[self.position..end])
            .map_err(|error| self.varint_error(error, truncated))?;
        self.position += used;
        Ok(value)
    }

    fn varlong(&mut self, end: usize, truncated: &'static str) -> Result<i64, BatchError> {
        let (value, used) = get_varlong(&self.bytes[self.position..end])
            .map_err(|error| self.varint_error(error, truncated))?;
        self.position += used;
        Ok(value)
    }

    /// Reads a length-prefixed, nullable byte string ending at or before `end`.
    fn nullable(
        &mut self,
        end: usize,
        field: &'static str,
    ) -> Result<Option<&'a [u8]>, BatchError> {
        let length = self.varint(end, field)?;
        if length == -1 {
            return Ok(None);
        }
        let length = usize::try_from(length).map_err(|_| self.error("negative length"))?;
        if length > end - self.position {
            return Err(self.error(field));
        }
        let value = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(Some(value))
    }

    /// Reads one whole record, checking its declared length matches what its fields use.
    fn record(&mut self, header: &BatchHeader) -> Result<RecordView<'a>, BatchError> {
        let all = self.bytes.len();
        let length = self.varint(all, "record length is truncated")?;
        let length = usize::try_from(length).map_err(|_| self.error("negative record length"))?;
        if length > all - self.position {
            return Err(self.error("record extends past the end of the batch"));
        }
        let end = self.position + length;
        if end == self.position {
            return Err(self.error("record is empty"));
        }
        prefetch(self.bytes, end - 1 + PREFETCH_AHEAD_RECORDS * length);
        // The attributes byte is unused in v2 records; Kafka ignores it, and so do we.
        self.position += 1;
        let timestamp_delta = self.varlong(end, "timestampDelta is truncated")?;
        let offset_delta = self.varint(end, "offsetDelta is truncated")?;
        let key = self.nullable(end, "key is truncated")?;
        let value = self.nullable(end, "value is truncated")?;
        let headers = self.headers(end)?;
        if self.position != end {
            return Err(self.error("record length does not match its fields"));
        }
        // Deltas come from the wire, so the sums wrap instead of panicking; Kafka wraps too.
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        Ok(RecordView {
            offset: header.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp,
            key,
            value,
            headers,
        })
    }

    /// Checks the record's headers (lengths, non-null UTF-8 keys) and returns them unparsed.
    fn headers(&mut self, end: usize) -> Result<HeaderViews<'a>, BatchError> {
        let count = self.varint(end, "headersCount is truncated")?;
        let count = usize::try_from(count).map_err(|_| self.error("negative headersCount"))?;
        if count > (end - self.position) / HEADER_BYTES_MIN {
            return Err(self.error("headersCount exceeds the record's bytes"));
        }
        let start = self.position;
        for _ in 0..count {
            let key = self
                .nullable(end, "header key is truncated")?
                .ok_or_else(|| self.error("header key is null"))?;
            std::str::from_utf8(key).map_err(|_| self.error("header key is not UTF-8"))?;
            self.nullable(end, "header value is truncated")?;
        }
        Ok(HeaderViews {
            bytes: &self.bytes[start..self.position],
            left: count,
        })
    }
}
