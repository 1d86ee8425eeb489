//! Kafka RecordBatch v2, byte for byte.
//!
//! A batch is a 61-byte big-endian header followed by its records (compressed as one block when
//! the batch has a codec). The broker never recompresses: it checks the header and the CRC-32C,
//! assigns the base offset and stamps the partition leader epoch (both outside the CRC), and
//! writes the client's bytes. Layout of the header:
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            i64
//!      8     4  batchLength           i32   bytes after this field
//!     12     4  partitionLeaderEpoch  i32
//!     16     1  magic                 i8    always 2
//!     17     4  crc                   u32   CRC-32C (Castagnoli) over attributes..end of batch
//!     21     2  attributes            i16   bits 0-2 codec, 3 timestampType, 4 transactional,
//!                                            5 control
//!     23     4  lastOffsetDelta       i32
//!     27     8  baseTimestamp         i64
//!     35     8  maxTimestamp          i64
//!     43     8  producerId            i64
//!     51     2  producerEpoch         i16
//!     53     4  baseSequence          i32
//!     57     4  recordsCount          i32
//!     61        records
//! ```
//!
//! Everything here is plain byte manipulation with no I/O, so it runs on any core and in tests.

mod builder;
mod codec;
mod crc;
mod fuzz;
mod record;
mod stream_check;
pub(crate) mod varint;

pub use builder::{BatchBuilder, RecordsCrc};
pub use codec::{compress, decompress, GZIP_LEVEL, ZSTD_LEVEL};
pub use fuzz::fuzz_one;
pub use record::{
    decode_records, decode_records_shared, for_each_record_shared, for_each_record_view,
    HeaderViews, Record, RecordHeader, RecordView, DECOMPRESSED_BYTES_MAX, RECORD_BYTES_MIN,
};
pub use stream_check::{PartsCheck, PartsLayout, StreamCheck};

/// Asks the cache for the line holding `items[at]`, if there is one; only a hint, with no
/// effect on what is read or written.
pub(crate) fn prefetch<T>(items: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(item) = items.get(at) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of x86_64's baseline, and a prefetch reads nothing and cannot
        // fault (here the address is inside `items` anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(item).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (items, at);
}

use bytes::{Buf, BufMut};

/// Size of the fixed batch header, from baseOffset through recordsCount.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the part of the batch that `batchLength` counts (baseOffset + batchLength).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record format version Sluice reads and writes.
pub const MAGIC_V2: i8 = 2;
/// Smallest legal `batchLength`: the header bytes that follow the length field.
pub const BATCH_LENGTH_MIN_BYTES: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
/// Byte position where the CRC-covered region (attributes..end of batch) starts.
pub const CRC_COVERED_START: usize = 21;

/// Byte positions of the header fields that are read or written individually.
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;

/// Attribute bits, as Kafka defines them.
const CODEC_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records are stored as they are.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing as Kafka's Java client writes it, or one raw block).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard; the native client's default.
    Zstd,
}

impl Compression {
    /// The codec's number in the attribute bits.
    pub fn code(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an attribute code, or `None` for the unassigned codes 5 to 7.
    pub fn from_code(code: i16) -> Option<Compression> {
        match code {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Everything that can be wrong with a batch's bytes, or with building one.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header.
    #[error("record batch header needs {needed} bytes but only {available} are available")]
    TooShort {
        /// Bytes a header needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// The magic byte is not 2 (an old message format, or not a batch at all).
    #[error("record batch has magic {0}, only magic 2 (RecordBatch v2) is supported")]
    BadMagic(i8),
    /// `batchLength` is smaller than the header it must cover.
    #[error("record batch length field is {0}, below the minimum of 49 header bytes")]
    BadLength(i32),
    /// The batch is larger than the configured limit.
    #[error("record batch of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the batch (or of the part that overflowed).
        bytes: usize,
        /// The limit it exceeded.
        max: usize,
    },
    /// The stored CRC does not match the bytes: the batch is corrupt.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC-32C of attributes..end of batch.
        computed: u32,
    },
    /// The buffer ends before the batch its header announces.
    #[error("record batch needs {needed} bytes but the buffer ends after {available}")]
    Truncated {
        /// Total size the header announces.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// Attribute codec bits 5 to 7, which Kafka does not assign.
    #[error("record batch has unknown compression codec {0}")]
    UnknownCompression(i16),
    /// A header field holds a value the format forbids.
    #[error("record batch is corrupt: {what}")]
    Corrupt {
        /// Which field and why.
        what: &'static str,
    },
    /// A record inside the batch is malformed.
    #[error("record {index} is corrupt at byte {position} of the records: {what}")]
    BadRecord {
        /// Index of the record in the batch.
        index: usize,
        /// Byte position inside the (decompressed) records section.
        position: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The number of records does not match `recordsCount`.
    #[error("record batch declares {declared} records but holds {found}")]
    RecordCountMismatch {
        /// `recordsCount` from the header.
        declared: i32,
        /// Records actually present (a lower bound when there were too many).
        found: usize,
    },
    /// Decompressed records would exceed `DECOMPRESSED_BYTES_MAX`.
    #[error("record batch decompresses to more than {max} bytes")]
    DecompressedTooLarge {
        /// The limit.
        max: usize,
    },
    /// The codec failed to compress or decompress.
    #[error("record batch {operation} failed: {source}")]
    Compression {
        /// "zstd compression", "gzip decompression", ...
        operation: &'static str,
        /// The codec's error.
        source: std::io::Error,
    },
    /// `BatchBuilder::build` was called with no records; Kafka has no use for an empty batch.
    #[error("cannot build a record batch with no records")]
    EmptyBatch,
}

/// The fixed 61-byte header of a v2 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record; assigned by the leader on append.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field (whole batch minus `LOG_OVERHEAD_BYTES`).
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch; stamped on append.
    pub partition_leader_epoch: i32,
    /// Format version, always `MAGIC_V2` after a successful parse.
    pub magic: i8,
    /// CRC-32C over attributes..end of batch.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset delta of the last record (also the last sequence delta).
    pub last_offset_delta: i32,
    /// Timestamp of the first record (create time), the base of every timestamp delta.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the log append time).
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 when none.
    pub producer_id: i64,
    /// Idempotent producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC or that the rest of the
    /// batch is present. Checks the header fits, the magic byte, and the minimum length.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        // The magic byte sits at the same position in every Kafka message format, so checking it
        // first names the problem when someone hands us an old v0/v1 message set.
        if buf.len() > MAGIC_AT && buf[MAGIC_AT] as i8 != MAGIC_V2 {
            return Err(BatchError::BadMagic(buf[MAGIC_AT] as i8));
        }
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::TooShort {
                needed: BATCH_HEADER_BYTES,
                available: buf.len(),
            });
        }
        let mut cursor = &buf[..BATCH_HEADER_BYTES];
        let header = BatchHeader {
            base_offset: cursor.get_i64(),
            batch_length: cursor.get_i32(),
            partition_leader_epoch: cursor.get_i32(),
            magic: cursor.get_i8(),
            crc: cursor.get_u32(),
            attributes: cursor.get_i16(),
            last_offset_delta: cursor.get_i32(),
            base_timestamp: cursor.get_i64(),
            max_timestamp: cursor.get_i64(),
            producer_id: cursor.get_i64(),
            producer_epoch: cursor.get_i16(),
            base_sequence: cursor.get_i32(),
            records_count: cursor.get_i32(),
        };
        if header.batch_length < BATCH_LENGTH_MIN_BYTES {
            return Err(BatchError::BadLength(header.batch_length));
        }
        Ok(header)
    }

    /// Size of the whole batch in bytes, header included.
    pub fn total_bytes(&self) -> usize {
        // A parsed header has batch_length >= 49, so the cast cannot lose a sign; a header built
        // by hand with a negative length counts as just its overhead.
        LOG_OVERHEAD_BYTES + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Offset of the last record. Wraps on overflow, as Kafka's arithmetic does, because the
    /// fields come from the wire; the log assigns base offsets that never get near the limit.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The codec named by attribute bits 0-2; codes 5 to 7 are an error.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let code = self.attributes & CODEC_MASK;
        Compression::from_code(code).ok_or(BatchError::UnknownCompression(code))
    }

    /// True for control batches (transaction commit/abort markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True when record timestamps are the log append time (`max_timestamp`), not create time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
}

/// CRC-32C over the CRC-covered region (attributes..end) of the batch at the start of `buf`.
/// Checks the header and that the whole batch is present, but not the stored CRC.
pub fn crc_of(buf: &[u8]) -> Result<u32, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_bytes();
    if total > buf.len() {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    Ok(crc::crc32c(&buf[CRC_COVERED_START..total]))
}

/// Full check of the batch at the start of `buf` (buf may continue past it): header, length fits
/// in buf, total size <= batch_bytes_max, records_count >= 0, last_offset_delta >= 0, known codec,
/// CRC matches.
pub fn validate_batch(buf: &[u8], batch_bytes_max: usize) -> Result<BatchHeader, BatchError> {
    validate_batch_crc(buf, batch_bytes_max, 0)
}

/// [`validate_batch`] of a batch whose first `crc_verified_bytes` a [`StreamCheck`] vouched for:
/// its CRC is computed unless the whole batch lies inside them.
fn validate_batch_crc(
    buf: &[u8],
    batch_bytes_max: usize,
    crc_verified_bytes: usize,
) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_bytes();
    // The size limit is checked before the bytes are required so a reader can reject an
    // oversized batch from its header alone, without buffering it.
    if total > batch_bytes_max {
        return Err(BatchError::TooLarge {
            bytes: total,
            max: batch_bytes_max,
        });
    }
    if total > buf.len() {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    // The CRC comes before the field checks so that a flipped bit anywhere in the covered region
    // is reported as corruption rather than as whatever nonsense value it produced.
    if total > crc_verified_bytes {
        let computed = crc::crc32c(&buf[CRC_COVERED_START..total]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
    }
    check_fields(&header)?;
    Ok(header)
}

/// Header field checks that need no bytes beyond the header.
fn check_fields(header: &BatchHeader) -> Result<(), BatchError> {
    if header.records_count < 0 {
        return Err(BatchError::Corrupt {
            what: "recordsCount is negative",
        });
    }
    if header.last_offset_delta < 0 {
        return Err(BatchError::Corrupt {
            what: "lastOffsetDelta is negative",
        });
    }
    header.compression()?;
    Ok(())
}

/// Overwrites baseOffset and partitionLeaderEpoch (both outside the CRC) in place.
pub fn stamp(
    batch: &mut [u8],
    base_offset: i64,
    partition_leader_epoch: i32,
) -> Result<(), BatchError> {
    BatchHeader::parse(batch)?;
    let mut out = &mut batch[..BATCH_LENGTH_AT];
    out.put_i64(base_offset);
    let mut out = &mut batch[PARTITION_LEADER_EPOCH_AT..MAGIC_AT];
    out.put_i32(partition_leader_epoch);
    Ok(())
}

/// Byte position of the producer id; the producer epoch and base sequence follow it.
const PRODUCER_ID_AT: usize = 43;
/// Byte position just past the base sequence.
const BASE_SEQUENCE_END: usize = 57;

/// Writes an idempotent producer's id, epoch and base sequence into the header of the batch at
/// the start of `batch` (CRC-covered fields) and computes its CRC over the whole batch, so the
/// stored one need not be valid. A producer assigns the sequence when it first sends a built
/// batch, and again after a sequence reset; [`stamp_producer_with`] does the same for a batch
/// whose records' CRC is known.
pub fn stamp_producer(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<(), BatchError> {
    let total = write_producer(batch, producer_id, producer_epoch, base_sequence)?;
    let crc = crc::crc32c(&batch[CRC_COVERED_START..total]);
    write_crc(batch, crc);
    Ok(())
}

/// [`stamp_producer`] for a batch built by
/// [`BatchBuilder::build_unsealed`](builder::BatchBuilder::build_unsealed), with the
/// [`RecordsCrc`] that returned: only the header is checksummed here, and joined with the
/// records' CRC, which the builder computed while the records were still in the cache. Fails
/// when `records` does not match the batch's length.
pub fn stamp_producer_with(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: RecordsCrc,
) -> Result<(), BatchError> {
    let total = write_producer(batch, producer_id, producer_epoch, base_sequence)?;
    if total != BATCH_HEADER_BYTES + records.len() {
        return Err(BatchError::Corrupt {
            what: "the records' CRC belongs to a batch of another length",
        });
    }
    let crc = records.seal(batch);
    write_crc(batch, crc);
    Ok(())
}

/// Writes the producer fields into the header of the batch at the start of `batch`; returns the
/// batch's total length once it is known to be all there.
fn write_producer(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<usize, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_bytes();
    if total > batch.len() {
        return Err(BatchError::Truncated {
            needed: total,
            available: batch.len(),
        });
    }
    let mut out = &mut batch[PRODUCER_ID_AT..BASE_SEQUENCE_END];
    out.put_i64(producer_id);
    out.put_i16(producer_epoch);
    out.put_i32(base_sequence);
    Ok(total)
}

/// Writes `crc` into the CRC field of the header at the start of `batch`.
fn write_crc(batch: &mut [u8], crc: u32) {
    let mut out = &mut batch[CRC_AT..CRC_COVERED_START];
    out.put_u32(crc);
}

/// Recomputes and stores the CRC of the batch at the start of `batch`, for tools and tests that
/// edit CRC-covered bytes on purpose. Returns the new CRC.
pub fn refresh_crc(batch: &mut [u8]) -> Result<u32, BatchError> {
    let crc = crc_of(batch)?;
    write_crc(batch, crc);
    Ok(crc)
}

/// Iterates whole batches in a buffer of concatenated batches, validating each (CRC included);
/// yields Err once and then stops if a batch is bad or the buffer ends mid-batch.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    batch_bytes_max: usize,
    position: usize,
    failed: bool,
    /// Batches that end at or before this position had their CRC matched already.
    crc_verified_bytes: usize,
}

impl<'a> BatchIter<'a> {
    /// Starts at the beginning of `buf`; every batch must be at most `batch_bytes_max` bytes.
    pub fn new(buf: &'a [u8], batch_bytes_max: usize) -> Self {
        BatchIter {
            buf,
            batch_bytes_max,
            position: 0,
            failed: false,
            crc_verified_bytes: 0,
        }
    }

    /// Skips the CRC computation (every other check still runs) for the batches within the
    /// first `verified_bytes` of the buffer: a [`StreamCheck`]'s `verified_bytes` over the same
    /// bytes, whose batches it matched as they arrived.
    pub fn crc_verified_before(mut self, verified_bytes: usize) -> Self {
        self.crc_verified_bytes = verified_bytes;
        self
    }

    /// Bytes consumed so far: always a batch boundary, and after an error the position of the
    /// bad batch (where recovery truncates).
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.position..];
        // Only a batch wholly inside the verified prefix may skip its CRC.
        let verified = self.crc_verified_bytes.saturating_sub(self.position);
        match validate_batch_crc(rest, self.batch_bytes_max, verified) {
            Ok(header) => {
                let batch = &rest[..header.total_bytes()];
                self.position += batch.len();
                Some(Ok((header, batch)))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}
