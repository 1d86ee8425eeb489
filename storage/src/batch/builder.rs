//! Building v2 batches: what producers (the native client, the load generator, tests) use.

use bytes::{BufMut, BytesMut};

use super::codec::compress;
use super::crc::{crc32c, crc32c_append, crc32c_join};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{
    prefetch, write_crc, BatchError, Compression, BATCH_HEADER_BYTES, CRC_COVERED_START,
    LOG_OVERHEAD_BYTES, MAGIC_V2,
};

/// Producer id, epoch and sequence of a batch from a non-idempotent producer.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;
/// Partition leader epoch of a batch no leader has stamped yet.
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Largest length one record field may have: lengths travel as i32 varints.
const FIELD_BYTES_MAX: usize = i32::MAX as usize;
/// An uncompressed batch's records are checksummed in steps of at least this many bytes as they
/// are pushed, while they are still in the CPU's cache (a 1 MiB batch checksummed only once it
/// is full has mostly left it). At least the `crc32c` crate's 24 KiB three-way block, and well
/// within a 48 KiB L1 data cache.
const RECORDS_CRC_STEP_BYTES: usize = 32 * 1024;
/// How far past the end of the records a push asks the cache for the lines it writes. A batch
/// buffer is memory no one touched lately: every line a record's copy first writes has to be
/// fetched before the store can complete, and the copy, then whatever reads the stores it
/// just made, waits for that. Asked for two 1 KiB records ahead, the lines arrive while the
/// records before them are written: the load generator's core spent 10 % less per GB at max
/// rate (benches/RESULTS.md, tenth record).
const PREFETCH_WRITE_AHEAD_BYTES: usize = 2048;
/// Size of a cache line, the prefetch's step.
const CACHE_LINE_BYTES: usize = 64;

/// Accumulates records and encodes them as one Kafka v2 batch (create-time timestamps, offsets
/// 0..n relative to a base offset of 0 that the leader overwrites on append).
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// Room for the batch header, then the encoded records, uncompressed. Records are encoded
    /// straight into their final place, so an uncompressed batch is built without copying.
    records: BytesMut,
    /// CRC-32C of `records[BATCH_HEADER_BYTES..records_crc_end]`: the records checksummed so
    /// far (uncompressed batches only).
    records_crc: u32,
    records_crc_end: usize,
    records_count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Size of the first field that could not be encoded, reported by `build`.
    oversized_bytes: Option<usize>,
}

impl BatchBuilder {
    /// A builder for batches compressed with `compression` (any of Kafka's codecs).
    pub fn new(compression: Compression) -> Self {
        BatchBuilder::with_capacity(compression, 0)
    }

    /// A builder whose buffer holds `capacity_bytes` of batch before it grows; producers pass
    /// their batch size so filling a batch never reallocates (and copies) it.
    pub fn with_capacity(compression: Compression, capacity_bytes: usize) -> Self {
        let mut records = BytesMut::with_capacity(capacity_bytes.max(BATCH_HEADER_BYTES));
        records.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            compression,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            records,
            records_crc: 0,
            records_crc_end: BATCH_HEADER_BYTES,
            records_count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            oversized_bytes: None,
        }
    }

    /// Marks the batch as coming from an idempotent producer.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Appends one record. A field too long for the format (over `i32::MAX` bytes) is not
    /// encoded and makes `build` fail with `TooLarge`.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let value_parts = value.as_ref().map(std::slice::from_ref);
        self.push_parts(timestamp_ms, key, value_parts, headers);
    }

    /// [`push`](Self::push) for a value given as pieces (say, a header and a body), encoded as
    /// their concatenation: each piece is copied once, straight into the batch, so the caller
    /// needs no buffer to assemble the value first.
    pub fn push_parts(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[&[u8]]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let header_fields = headers
            .iter()
            .flat_map(|(key, value)| [Some(key.as_bytes()), *value]);
        let longest = [key.map(<[u8]>::len), value.map(parts_len)]
            .into_iter()
            .chain(header_fields.map(|field| field.map(<[u8]>::len)))
            .flatten()
            .chain([headers.len()])
            .max()
            .unwrap_or(0);
        if longest > FIELD_BYTES_MAX || self.records_count >= FIELD_BYTES_MAX {
            self.oversized_bytes.get_or_insert(longest);
            return;
        }
        if self.records_count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        // Both casts are in range: checked against FIELD_BYTES_MAX above.
        let offset_delta = self.records_count as i32;
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let body_bytes = body_len(timestamp_delta, offset_delta, key, value, headers);
        if body_bytes > FIELD_BYTES_MAX {
            self.oversized_bytes.get_or_insert(body_bytes);
            return;
        }
        self.prefetch_ahead(body_bytes);
        // In range: checked just above.
        put_varint(&mut self.records, body_bytes as i32);
        self.encode_body(timestamp_delta, offset_delta, key, value, headers);
        self.records_count += 1;
        self.checksum_records(RECORDS_CRC_STEP_BYTES);
    }

    /// Asks the cache for the lines a push of `bytes` will write `PREFETCH_WRITE_AHEAD_BYTES`
    /// from now (those within the buffer's free capacity), so each line is already in the
    /// cache when the copy into it comes.
    fn prefetch_ahead(&mut self, bytes: usize) {
        let spare = self.records.spare_capacity_mut();
        let lines = (PREFETCH_WRITE_AHEAD_BYTES..PREFETCH_WRITE_AHEAD_BYTES + bytes)
            .step_by(CACHE_LINE_BYTES)
            .take_while(|at| *at < spare.len());
        for at in lines {
            prefetch(spare, at);
        }
    }

    /// Adds the records pushed since the last step to `records_crc` once they are at least
    /// `step_bytes`. Compressed batches are checksummed after compression instead.
    fn checksum_records(&mut self, step_bytes: usize) {
        let pending = &self.records[self.records_crc_end..];
        if self.compression != Compression::None || pending.len() < step_bytes {
            return;
        }
        self.records_crc = crc32c_append(self.records_crc, pending);
        self.records_crc_end = self.records.len();
    }

    /// Encodes a record's body (everything after its length) at the end of `records`.
    fn encode_body(
        &mut self,
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[&[u8]]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let body = &mut self.records;
        body.put_i8(0);
        put_varlong(body, timestamp_delta);
        put_varint(body, offset_delta);
        put_nullable(body, key);
        put_nullable_parts(body, value);
        put_varint(body, headers.len() as i32);
        for (header_key, header_value) in headers {
            put_nullable(body, Some(header_key.as_bytes()));
            put_nullable(body, *header_value);
        }
    }

    /// Records pushed so far.
    pub fn records_count(&self) -> usize {
        self.records_count
    }

    /// Size of the batch if it were built uncompressed: header plus encoded records. Producers
    /// use it to cap batches before compression.
    pub fn uncompressed_bytes(&self) -> usize {
        self.records.len()
    }

    /// True when no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.records_count == 0
    }

    /// Builds the batch: base offset 0, leader epoch -1, producer id/epoch/sequence -1 unless
    /// set, CRC computed, max timestamp the largest pushed. Uncompressed, the batch is the
    /// builder's own buffer (no copy).
    pub fn build(mut self) -> Result<BytesMut, BatchError> {
        self.check_buildable()?;
        if self.compression == Compression::None {
            let records = self.finish_records_crc();
            return self.build_uncompressed(Some(records));
        }
        let mut out = BytesMut::new();
        self.encode_into(&mut out, true)?;
        Ok(out)
    }

    /// `build` without the CRC (left 0), with the CRC of everything after the header: for a
    /// batch whose CRC-covered header fields are written later anyway, as an idempotent
    /// producer's are by [`stamp_producer_with`](super::stamp_producer_with), which then only
    /// checksums the header and joins the two, so the records are checksummed once. Such a batch
    /// is invalid until stamped.
    pub fn build_unsealed(mut self) -> Result<(BytesMut, RecordsCrc), BatchError> {
        self.check_buildable()?;
        if self.compression == Compression::None {
            let records = self.finish_records_crc();
            return Ok((self.build_uncompressed(None)?, records));
        }
        let mut out = BytesMut::new();
        self.encode_into(&mut out, false)?;
        let records = RecordsCrc {
            crc: crc32c(&out[BATCH_HEADER_BYTES..]),
            len: out.len() - BATCH_HEADER_BYTES,
        };
        Ok((out, records))
    }

    /// The CRC of all the records, after checksumming the last step.
    fn finish_records_crc(&mut self) -> RecordsCrc {
        self.checksum_records(0);
        RecordsCrc {
            crc: self.records_crc,
            len: self.records.len() - BATCH_HEADER_BYTES,
        }
    }

    /// The uncompressed batch: the builder's own buffer with its header written, sealed with
    /// `records` (the CRC of everything after the header) when given.
    fn build_uncompressed(mut self, records: Option<RecordsCrc>) -> Result<BytesMut, BatchError> {
        let batch_length = self.batch_length(self.records.len())?;
        let mut batch = std::mem::take(&mut self.records);
        self.put_header(&mut &mut batch[..BATCH_HEADER_BYTES], batch_length);
        if let Some(records) = records {
            let crc = records.seal(&batch);
            write_crc(&mut batch, crc);
        }
        Ok(batch)
    }

    /// Appends the batch to `out` and returns the bytes written. On error `out` is unchanged.
    pub fn build_into(self, out: &mut BytesMut) -> Result<usize, BatchError> {
        self.encode_into(out, true)
    }

    fn encode_into(self, out: &mut BytesMut, seal: bool) -> Result<usize, BatchError> {
        self.check_buildable()?;
        let compressed;
        let payload: &[u8] = match self.compression {
            Compression::None => &self.records[BATCH_HEADER_BYTES..],
            codec => {
                compressed = compress(codec, &self.records[BATCH_HEADER_BYTES..])?;
                &compressed
            }
        };
        let total = BATCH_HEADER_BYTES + payload.len();
        let batch_length = self.batch_length(total)?;
        let start = out.len();
        out.reserve(total);
        self.put_header(out, batch_length);
        out.put_slice(payload);
        if seal {
            let batch = &mut out[start..];
            let crc = crc32c(&batch[CRC_COVERED_START..]);
            write_crc(batch, crc);
            debug_assert!(super::validate_batch(batch, usize::MAX).is_ok());
        }
        Ok(total)
    }

    /// Fails when a pushed field was too long or nothing was pushed.
    fn check_buildable(&self) -> Result<(), BatchError> {
        if let Some(bytes) = self.oversized_bytes {
            return Err(BatchError::TooLarge {
                bytes,
                max: FIELD_BYTES_MAX,
            });
        }
        if self.is_empty() {
            return Err(BatchError::EmptyBatch);
        }
        Ok(())
    }

    /// The batchLength field of a batch of `total` bytes.
    fn batch_length(&self, total: usize) -> Result<i32, BatchError> {
        i32::try_from(total - LOG_OVERHEAD_BYTES).map_err(|_| BatchError::TooLarge {
            bytes: total,
            max: FIELD_BYTES_MAX,
        })
    }

    /// Writes the 61-byte header with a zero CRC, which `build_into` fills in afterwards.
    fn put_header(&self, out: &mut impl BufMut, batch_length: i32) {
        // records_count is below FIELD_BYTES_MAX (push refuses more) and above 0 (checked).
        let records_count = self.records_count as i32;
        out.put_i64(0);
        out.put_i32(batch_length);
        out.put_i32(NO_PARTITION_LEADER_EPOCH);
        out.put_i8(MAGIC_V2);
        out.put_u32(0);
        out.put_i16(self.compression.code());
        out.put_i32(records_count - 1);
        out.put_i64(self.base_timestamp);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(records_count);
    }
}

/// Encoded size of a record body (everything after its length varint).
fn body_len(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[&[u8]]>,
    headers: &[(&str, Option<&[u8]>)],
) -> usize {
    let header_bytes: usize = headers
        .iter()
        .map(|(header_key, header_value)| {
            nullable_len(Some(header_key.as_bytes())) + nullable_len(*header_value)
        })
        .sum();
    1 + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable_len(key)
        + value.map_or(varint_len(-1), |parts| {
            let bytes = parts_len(parts);
            varint_len(bytes as i32) + bytes
        })
        + varint_len(headers.len() as i32)
        + header_bytes
}

/// Encoded size of a nullable byte string whose length fits an i32.
fn nullable_len(value: Option<&[u8]>) -> usize {
    match value {
        None => varint_len(-1),
        Some(bytes) => varint_len(bytes.len() as i32) + bytes.len(),
    }
}

/// Total bytes of a value given as pieces.
fn parts_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|part| part.len()).sum()
}

/// Appends a nullable byte string given as pieces: varint length of their concatenation (-1
/// for null), then each piece. Callers have checked the length fits an i32.
fn put_nullable_parts(out: &mut impl BufMut, value: Option<&[&[u8]]>) {
    match value {
        None => put_varint(out, -1),
        Some(parts) => {
            put_varint(out, parts_len(parts) as i32);
            for part in parts {
                out.put_slice(part);
            }
        }
    }
}

/// Appends a nullable byte string: varint length (-1 for null) then the bytes. Callers have
/// checked the length fits an i32.
fn put_nullable(out: &mut impl BufMut, value: Option<&[u8]>) {
    match value {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.put_slice(bytes);
        }
    }
}

/// The CRC-32C of everything after a batch's header (the records, or their compressed form) and
/// its length: what the batch's CRC needs besides the header's CRC-covered fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsCrc {
    crc: u32,
    len: usize,
}

impl RecordsCrc {
    /// Bytes after the header that the CRC covers.
    pub(crate) fn len(self) -> usize {
        self.len
    }

    /// The CRC of the batch at the start of `batch`, from its header's CRC-covered fields and
    /// these records.
    pub(crate) fn seal(self, batch: &[u8]) -> u32 {
        let header = crc32c::crc32c(&batch[CRC_COVERED_START..BATCH_HEADER_BYTES]);
        crc32c_join(header, self.crc, self.len)
    }
}
