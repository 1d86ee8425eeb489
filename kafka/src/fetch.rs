//! Our own Fetch response encoder (v4 to v12). The records of each partition are not copied
//! into the response: they stay a [`PayloadPart`], a file range the connection splices from
//! the log or tail-cache memory, interleaved with the small per-partition headers this encoder
//! writes, exactly as the native protocol sends them. The response's size prefix is computed
//! from the headers and the parts' lengths.
//!
//! Layout (v12 flexible: compact strings, arrays and bytes, tagged-field sections):
//!
//! ```text
//! size i32 | response header | throttle_time_ms i32 | error_code i16 (v7+) | session_id i32 (v7+)
//! responses [ topic string
//!             partitions [ partition_index i32, error_code i16, high_watermark i64,
//!                          last_stable_offset i64, log_start_offset i64 (v5+),
//!                          aborted_transactions nullable [producer_id i64, first_offset i64],
//!                          preferred_read_replica i32 (v11+), records nullable bytes ] ]
//! ```

use bytes::{BufMut, BytesMut};
use sluice_net::PayloadPart;

use crate::frame::SIZE_PREFIX_BYTES;
use crate::header::put_response_header;
use crate::wire::{put_array_length, put_no_tagged_fields, put_string, put_unsigned_varint};

/// First Fetch version with flexible encodings.
const FIRST_FLEXIBLE_VERSION: i16 = 12;
/// First Fetch version with the top-level error code and session id.
const FIRST_SESSION_VERSION: i16 = 7;
/// First Fetch version with the log start offset.
const FIRST_LOG_START_VERSION: i16 = 5;
/// First Fetch version with the preferred read replica.
const FIRST_READ_REPLICA_VERSION: i16 = 11;
/// "No preferred read replica": read from the leader.
const NO_PREFERRED_READ_REPLICA: i32 = -1;

/// What one partition's part of a Fetch response says.
#[derive(Debug, Clone)]
pub struct FetchPartitionAnswer {
    /// The partition index.
    pub partition: i32,
    /// Kafka error code, 0 for none.
    pub error_code: i16,
    /// The partition's high watermark (-1 when unknown).
    pub high_watermark: i64,
    /// The last stable offset: the high watermark, since Sluice has no open transactions.
    pub last_stable_offset: i64,
    /// The partition's log start offset (-1 when unknown).
    pub log_start_offset: i64,
    /// Whole record batches, in parts sent one after the other (none for no records).
    pub records: Vec<PayloadPart>,
}

/// Builds one Fetch response as payload parts.
#[derive(Debug)]
pub struct FetchResponseBuilder {
    version: i16,
    compact: bool,
    read_committed: bool,
    /// Every byte of the response that is not records, with the size prefix first.
    headers: BytesMut,
    /// Records parts and the position in `headers` they follow.
    records: Vec<(usize, PayloadPart)>,
    records_bytes: usize,
}

impl FetchResponseBuilder {
    /// Starts a response of `version` with its top-level fields; `topic_count` topics follow.
    /// `read_committed` answers an empty aborted-transactions list instead of null, as Kafka
    /// does for that isolation level.
    pub fn new(
        correlation_id: i32,
        version: i16,
        error_code: i16,
        session_id: i32,
        topic_count: usize,
        read_committed: bool,
    ) -> Self {
        let compact = version >= FIRST_FLEXIBLE_VERSION;
        let mut headers = BytesMut::with_capacity(256);
        headers.put_i32(0);
        put_response_header(&mut headers, correlation_id, i16::from(compact));
        headers.put_i32(0); // throttle_time_ms: Sluice does not throttle.
        if version >= FIRST_SESSION_VERSION {
            headers.put_i16(error_code);
            headers.put_i32(session_id);
        }
        put_array_length(&mut headers, compact, Some(topic_count));
        FetchResponseBuilder {
            version,
            compact,
            read_committed,
            headers,
            records: Vec::new(),
            records_bytes: 0,
        }
    }

    /// Starts a topic; exactly `partition_count` partitions must follow, then
    /// [`Self::end_topic`].
    pub fn topic(&mut self, name: &str, partition_count: usize) {
        put_string(&mut self.headers, self.compact, name);
        put_array_length(&mut self.headers, self.compact, Some(partition_count));
    }

    /// Adds one partition of the current topic.
    pub fn partition(&mut self, answer: FetchPartitionAnswer) {
        let out = &mut self.headers;
        out.put_i32(answer.partition);
        out.put_i16(answer.error_code);
        out.put_i64(answer.high_watermark);
        out.put_i64(answer.last_stable_offset);
        if self.version >= FIRST_LOG_START_VERSION {
            out.put_i64(answer.log_start_offset);
        }
        let aborted = self.read_committed.then_some(0);
        put_array_length(out, self.compact, aborted);
        if self.version >= FIRST_READ_REPLICA_VERSION {
            out.put_i32(NO_PREFERRED_READ_REPLICA);
        }
        let mut parts = answer.records;
        parts.retain(|part| !part.is_empty());
        let length = PayloadPart::total_len(&parts);
        if self.compact {
            put_unsigned_varint(out, u32::try_from(length + 1).unwrap_or(u32::MAX));
        } else {
            out.put_i32(i32::try_from(length).unwrap_or(i32::MAX));
        }
        self.records_bytes += length;
        let position = out.len();
        self.records
            .extend(parts.into_iter().map(|part| (position, part)));
        if self.compact {
            put_no_tagged_fields(&mut self.headers);
        }
    }

    /// Ends the current topic.
    pub fn end_topic(&mut self) {
        if self.compact {
            put_no_tagged_fields(&mut self.headers);
        }
    }

    /// Bytes of records added so far.
    pub fn records_bytes(&self) -> usize {
        self.records_bytes
    }

    /// The whole response, size prefix first: memory parts of headers interleaved with the
    /// records parts. The caller keeps a response within `i32::MAX` bytes (fetch byte budgets
    /// are i32 fields).
    pub fn finish(mut self) -> Vec<PayloadPart> {
        if self.compact {
            put_no_tagged_fields(&mut self.headers);
        }
        let size = self.headers.len() - SIZE_PREFIX_BYTES + self.records_bytes;
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        self.headers[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
        let headers = self.headers.freeze();
        let mut parts = Vec::with_capacity(self.records.len() * 2 + 1);
        let mut written = 0;
        for (position, records) in self.records {
            if position > written {
                parts.push(PayloadPart::Memory(headers.slice(written..position)));
            }
            parts.push(records);
            written = position;
        }
        if headers.len() > written {
            parts.push(PayloadPart::Memory(headers.slice(written..)));
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, Bytes};
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::rc::Rc;

    fn flatten(parts: &[PayloadPart]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                PayloadPart::Memory(bytes) => out.extend_from_slice(bytes),
                PayloadPart::File {
                    file,
                    position,
                    len,
                } => {
                    let mut file = file.as_ref();
                    file.seek(SeekFrom::Start(*position)).unwrap();
                    let mut chunk = vec![0; *len];
                    file.read_exact(&mut chunk).unwrap();
                    out.extend_from_slice(&chunk);
                }
            }
        }
        out
    }

    fn build(version: i16, file: &Rc<std::fs::File>) -> Vec<PayloadPart> {
        let mut builder = FetchResponseBuilder::new(42, version, 0, 0, 2, false);
        builder.topic("orders", 2);
        builder.partition(FetchPartitionAnswer {
            partition: 0,
            error_code: 0,
            high_watermark: 10,
            last_stable_offset: 10,
            log_start_offset: 2,
            records: vec![PayloadPart::File {
                file: file.clone(),
                position: 3,
                len: 5,
            }],
        });
        builder.partition(FetchPartitionAnswer {
            partition: 1,
            error_code: 1,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: Vec::new(),
        });
        builder.end_topic();
        builder.topic("audit", 1);
        builder.partition(FetchPartitionAnswer {
            partition: 7,
            error_code: 0,
            high_watermark: 4,
            last_stable_offset: 4,
            log_start_offset: 0,
            records: vec![
                PayloadPart::Memory(Bytes::from_static(b"ta")),
                PayloadPart::Memory(Bytes::from_static(b"il")),
            ],
        });
        builder.end_topic();
        builder.finish()
    }

    // Proves the response, file and memory parts flattened (a partition's records in two
    // memory parts, as a tail-cache read spanning two appends), is what the kafka-protocol codec
    // decodes back to the same fields and record bytes, at every version 4 to 12, and that the
    // size prefix counts every byte after itself.
    #[test]
    fn codec_reads_back_every_version() {
        let mut file = tempfile_with(b"...FILE-RECORDS...");
        file.flush().unwrap();
        let file = Rc::new(file);
        for version in 4..=12 {
            let parts = build(version, &file);
            assert!(parts
                .iter()
                .any(|part| matches!(part, PayloadPart::File { .. })));
            let mut wire = Bytes::from(flatten(&parts));
            let size = wire.get_i32() as usize;
            assert_eq!(size, wire.len(), "v{version}");
            assert_eq!(wire.get_i32(), 42);
            if version >= 12 {
                assert_eq!(wire.get_u8(), 0, "response header tagged fields");
            }
            let response = FetchResponse::decode(&mut wire, version).unwrap();
            assert_eq!(wire.len(), 0, "v{version} left bytes undecoded");
            assert_eq!(response.responses.len(), 2);
            let orders = &response.responses[0];
            assert_eq!(orders.topic.0.as_str(), "orders");
            let first = &orders.partitions[0];
            assert_eq!(first.high_watermark, 10);
            assert_eq!(first.records.as_deref(), Some(&b"FILE-"[..]));
            if version >= 5 {
                assert_eq!(first.log_start_offset, 2);
            }
            assert_eq!(orders.partitions[1].error_code, 1);
            assert_eq!(orders.partitions[1].records.as_deref(), Some(&b""[..]));
            let audit = &response.responses[1].partitions[0];
            assert_eq!(audit.partition_index, 7);
            assert_eq!(audit.records.as_deref(), Some(&b"tail"[..]));
        }
    }

    fn tempfile_with(contents: &[u8]) -> std::fs::File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(contents).unwrap();
        file
    }
}
