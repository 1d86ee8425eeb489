//! Request and response headers.
//!
//! A request header is v1 (`api_key i16, api_version i16, correlation_id i32, client_id
//! nullable string`) or v2 (v1 plus a tagged-field section), chosen by the API and version:
//! v2 exactly for the flexible versions of each API. The client id stays a classic string
//! even in v2. A response header is v0 (`correlation_id i32`) or v1 (plus a tagged-field
//! section); ApiVersions always answers with v0 so that a client can read the answer before it
//! knows which versions the broker speaks.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::error::KafkaError;
use crate::wire::{put_no_tagged_fields, Reader};

/// Bytes of the fixed part of every request header: api key, version, correlation id.
pub const REQUEST_HEADER_FIXED_BYTES: usize = 8;

/// The parsed header of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The API.
    pub api: ApiKey,
    /// The API version the body is encoded in.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The client's self-declared id (for logs).
    pub client_id: Option<String>,
}

impl RequestHeader {
    /// The response header version for this request's API and version.
    pub fn response_header_version(&self) -> i16 {
        self.api.response_header_version(self.api_version)
    }
}

/// The correlation id of a request, if its fixed header is there: lets the caller log which
/// request failed even when the rest of the header is bad.
pub fn peek_correlation_id(request: &[u8]) -> Option<i32> {
    let bytes = request.get(4..8)?;
    Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Splits a request (without its size prefix) into its header and its body. The body is the
/// rest of the same buffer (no copy).
pub fn split_request(mut request: BytesMut) -> Result<(RequestHeader, BytesMut), KafkaError> {
    let mut reader = Reader::new(&request);
    let truncated = KafkaError::BadHeader {
        what: "request header is shorter than its fixed fields",
    };
    let api_key = reader.i16("api key").map_err(|_| truncated)?;
    let api_version = reader
        .i16("api version")
        .map_err(|_| KafkaError::BadHeader {
            what: "request header is shorter than its fixed fields",
        })?;
    let correlation_id = reader
        .i32("correlation id")
        .map_err(|_| KafkaError::BadHeader {
            what: "request header is shorter than its fixed fields",
        })?;
    let api = ApiKey::try_from(api_key).map_err(|()| KafkaError::UnknownApi {
        api_key,
        correlation_id,
    })?;
    let header_version = api.request_header_version(api_version);
    let client_id = if header_version >= 1 {
        reader
            .nullable_string(false, "client id is truncated")
            .map_err(|what| KafkaError::BadHeader { what })?
            .map(str::to_string)
    } else {
        None
    };
    if header_version >= 2 {
        reader
            .skip_tagged_fields()
            .map_err(|what| KafkaError::BadHeader { what })?;
    }
    let header_bytes = reader.position();
    let body = request.split_off(header_bytes);
    Ok((
        RequestHeader {
            api,
            api_version,
            correlation_id,
            client_id,
        },
        body,
    ))
}

/// Appends a response header of `version` (0 or 1) for `correlation_id`.
pub fn put_response_header(out: &mut BytesMut, correlation_id: i32, version: i16) {
    out.put_i32(correlation_id);
    if version >= 1 {
        put_no_tagged_fields(out);
    }
}

/// Bytes a response header of `version` takes.
pub fn response_header_len(version: i16) -> usize {
    if version >= 1 {
        5
    } else {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::RequestHeader as CodecHeader;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded(api: ApiKey, version: i16, client_id: Option<&str>) -> BytesMut {
        let header = CodecHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(client_id.map(|id| StrBytes::from_string(id.to_string())));
        let mut out = BytesMut::new();
        header
            .encode(&mut out, api.request_header_version(version))
            .unwrap();
        out.extend_from_slice(b"BODY");
        out
    }

    // Proves v1 and v2 headers written by the kafka-protocol codec split into the same fields,
    // with the body left exactly as it followed the header.
    #[test]
    fn splits_v1_and_v2_headers() {
        for (api, version) in [
            (ApiKey::Produce, 8),
            (ApiKey::Produce, 9),
            (ApiKey::ApiVersions, 3),
        ] {
            for client_id in [None, Some("kcat")] {
                let (header, body) = split_request(encoded(api, version, client_id)).unwrap();
                assert_eq!(header.api, api);
                assert_eq!(header.api_version, version);
                assert_eq!(header.correlation_id, 77);
                assert_eq!(header.client_id.as_deref(), client_id);
                assert_eq!(body.freeze(), Bytes::from_static(b"BODY"));
            }
        }
    }

    // Proves short headers and unknown API keys are refused with the reason, never a panic.
    #[test]
    fn refuses_short_headers_and_unknown_apis() {
        assert!(matches!(
            split_request(BytesMut::from(&[0u8, 3, 0][..])),
            Err(KafkaError::BadHeader { .. })
        ));
        let unknown = BytesMut::from(&[0x7f, 0x00, 0, 0, 0, 0, 0, 9][..]);
        assert!(matches!(
            split_request(unknown),
            Err(KafkaError::UnknownApi {
                api_key: 0x7f00,
                correlation_id: 9
            })
        ));
        // A client id announcing more bytes than follow.
        let bad = BytesMut::from(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 50, b'x'][..]);
        assert!(matches!(
            split_request(bad),
            Err(KafkaError::BadHeader { .. })
        ));
    }
}
