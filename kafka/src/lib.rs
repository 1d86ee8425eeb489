//! Sluice's Kafka wire-protocol front end, with no I/O and no knowledge of shards: framing,
//! headers, request decoding, response encoding, and our own zero-copy Fetch response encoder.
//!
//! - [`frame`]: [`RequestDecoder`], size-prefixed requests bounded before allocation.
//! - [`header`]: request header v1/v2 and response header v0/v1 by API and version.
//! - [`versions`]: [`ApiTable`], exactly the APIs and versions implemented (what ApiVersions
//!   advertises).
//! - [`request`]: [`decode_request`] into [`Request`]; kafka-protocol's generated codecs for
//!   every API but Produce.
//! - [`produce`]: our Produce decoder, whose record batches are writable views of the receive
//!   buffer (CRC-checked and appended as they came by the broker).
//! - [`fetch`]: [`FetchResponseBuilder`], per-partition headers interleaved with record file
//!   ranges or tail-cache memory ([`sluice_net::PayloadPart`]).
//! - [`response`]: size prefix, header and body of every other response; ApiVersions.
//! - [`fuzz`]: the request-decoder fuzz entry, also replayed over its seed corpus by tests.
//!
//! Record data passes through as opaque bytes: nothing here decodes or recompresses a batch.

pub mod error;
pub mod fetch;
pub mod frame;
pub mod fuzz;
pub mod header;
pub mod produce;
pub mod request;
pub mod response;
pub mod versions;
pub mod wire;

pub use error::KafkaError;
pub use fetch::{FetchPartitionAnswer, FetchResponseBuilder};
pub use frame::{RequestDecoder, SIZE_PREFIX_BYTES};
pub use header::{split_request, RequestHeader};
pub use kafka_protocol;
pub use produce::{ProducePartition, ProduceRequest, ProduceTopic};
pub use request::{check_supported, decode_request, GroupRequest, Request};
pub use response::{api_versions_body, api_versions_unsupported, encode_response};
pub use versions::{api_name, ApiSupport, ApiTable};
