//! Our own Produce request decoder (v3 to v12), so the record batches of each partition come
//! out as writable views of the receive buffer: the broker checks their CRC, stamps offsets in
//! place and appends them as they came, without a copy between the socket and the log (the
//! generated decoder would hand out shared, read-only slices).
//!
//! Layout (v9+ flexible: compact strings, arrays and bytes, and a tagged-field section after
//! each structure):
//!
//! ```text
//! transactional_id  nullable string
//! acks              i16
//! timeout_ms        i32
//! topic_data        [ name string
//!                     partition_data [ index i32, records nullable bytes ] ]
//! ```

use bytes::{Buf, BytesMut};

use crate::wire::{Reader, WireResult};

/// First Produce version with flexible encodings.
const FIRST_FLEXIBLE_VERSION: i16 = 9;

/// One partition's records in a Produce request.
#[derive(Debug, PartialEq, Eq)]
pub struct ProducePartition {
    /// The partition index.
    pub index: i32,
    /// The record batches as sent (`None` when the client sent null).
    pub records: Option<BytesMut>,
}

/// One topic of a Produce request.
#[derive(Debug, PartialEq, Eq)]
pub struct ProduceTopic {
    /// The topic name.
    pub name: String,
    /// Its partitions, in request order.
    pub partitions: Vec<ProducePartition>,
}

/// A decoded Produce request.
#[derive(Debug, PartialEq, Eq)]
pub struct ProduceRequest {
    /// Set by transactional producers.
    pub transactional_id: Option<String>,
    /// 0, 1 or -1 (anything else is answered INVALID_REQUIRED_ACKS).
    pub acks: i16,
    /// How long an acks=-1 request may wait for replication, ms.
    pub timeout_ms: i32,
    /// The topics, in request order.
    pub topics: Vec<ProduceTopic>,
}

impl ProduceRequest {
    /// Partitions in the request.
    pub fn partition_count(&self) -> usize {
        self.topics.iter().map(|topic| topic.partitions.len()).sum()
    }
}

/// A partition index and where its records sit in the body (`None`: null records).
type PartitionLayout = (i32, Option<std::ops::Range<usize>>);

/// Where each partition's records sit in the body: decoded from a borrowed view first, then
/// cut out of the owned buffer.
struct Layout {
    transactional_id: Option<String>,
    acks: i16,
    timeout_ms: i32,
    topics: Vec<(String, Vec<PartitionLayout>)>,
}

/// Decodes a Produce request body of `version` (3 to 12).
pub fn decode_produce(body: BytesMut, version: i16) -> WireResult<ProduceRequest> {
    let layout = read_layout(&body, version)?;
    // The records ranges are increasing and disjoint: cut them out front to back.
    let mut rest = body;
    let mut consumed = 0usize;
    let mut topics = Vec::with_capacity(layout.topics.len());
    for (name, partitions) in layout.topics {
        let mut decoded = Vec::with_capacity(partitions.len());
        for (index, range) in partitions {
            let records = range.map(|range| {
                rest.advance(range.start - consumed);
                consumed = range.end;
                rest.split_to(range.end - range.start)
            });
            decoded.push(ProducePartition { index, records });
        }
        topics.push(ProduceTopic {
            name,
            partitions: decoded,
        });
    }
    Ok(ProduceRequest {
        transactional_id: layout.transactional_id,
        acks: layout.acks,
        timeout_ms: layout.timeout_ms,
        topics,
    })
}

fn read_layout(body: &[u8], version: i16) -> WireResult<Layout> {
    let compact = version >= FIRST_FLEXIBLE_VERSION;
    let mut reader = Reader::new(body);
    let transactional_id = reader
        .nullable_string(compact, "transactional id is truncated")?
        .map(str::to_string);
    let acks = reader.i16("acks is truncated")?;
    let timeout_ms = reader.i32("timeout is truncated")?;
    let topic_count = reader
        .array_length(compact, "topic count exceeds the request")?
        .ok_or("topic array is null")?;
    let mut topics = Vec::with_capacity(topic_count);
    for _ in 0..topic_count {
        let name = reader
            .string(compact, "topic name is truncated")?
            .to_string();
        let partition_count = reader
            .array_length(compact, "partition count exceeds the request")?
            .ok_or("partition array is null")?;
        let mut partitions = Vec::with_capacity(partition_count);
        for _ in 0..partition_count {
            let index = reader.i32("partition index is truncated")?;
            let records = match reader.bytes_length(compact, "records exceed the request")? {
                None => None,
                Some(length) => {
                    let start = reader.position();
                    reader.take(length, "records exceed the request")?;
                    Some(start..start + length)
                }
            };
            if compact {
                reader.skip_tagged_fields()?;
            }
            partitions.push((index, records));
        }
        if compact {
            reader.skip_tagged_fields()?;
        }
        topics.push((name, partitions));
    }
    if compact {
        reader.skip_tagged_fields()?;
    }
    Ok(Layout {
        transactional_id,
        acks,
        timeout_ms,
        topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest as CodecRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn codec_request(records: &[Option<&'static [u8]>]) -> CodecRequest {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(index, records)| {
                PartitionProduceData::default()
                    .with_index(index as i32)
                    .with_records(records.map(Bytes::from_static))
            })
            .collect();
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(partitions);
        let other = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("audit")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(3)
                .with_records(Some(Bytes::from_static(b"zz")))]);
        CodecRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1500)
            .with_topic_data(vec![topic, other])
    }

    // Proves every version from 3 to 12 written by the kafka-protocol codec decodes to the
    // same acks, timeout, topics, partitions and record bytes (null records included).
    #[test]
    fn decodes_what_the_codec_encodes_at_every_version() {
        let request = codec_request(&[Some(b"batch-zero"), None, Some(b"")]);
        for version in 3..=12 {
            let mut body = BytesMut::new();
            request.encode(&mut body, version).unwrap();
            let decoded = decode_produce(body, version).unwrap();
            assert_eq!(decoded.acks, -1, "v{version}");
            assert_eq!(decoded.timeout_ms, 1500);
            assert_eq!(decoded.transactional_id, None);
            assert_eq!(decoded.partition_count(), 4);
            let orders = &decoded.topics[0];
            assert_eq!(orders.name, "orders");
            assert_eq!(
                orders.partitions[0].records.as_deref(),
                Some(&b"batch-zero"[..])
            );
            assert_eq!(orders.partitions[1].records, None);
            assert_eq!(orders.partitions[2].records.as_deref(), Some(&b""[..]));
            assert_eq!(decoded.topics[1].partitions[0].index, 3);
            assert_eq!(
                decoded.topics[1].partitions[0].records.as_deref(),
                Some(&b"zz"[..])
            );
        }
    }

    // Proves a truncated body or an array count beyond the bytes is refused with a reason at
    // every cut point, never a panic.
    #[test]
    fn refuses_truncated_bodies() {
        let mut body = BytesMut::new();
        codec_request(&[Some(b"batch")])
            .encode(&mut body, 9)
            .unwrap();
        for cut in 0..body.len() {
            assert!(
                decode_produce(BytesMut::from(&body[..cut]), 9).is_err(),
                "cut {cut}"
            );
        }
        let huge_count =
            BytesMut::from(&[0xff, 0xff, 0, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(decode_produce(huge_count, 8).is_err());
    }
}
