//! Encoding responses: size prefix, response header, body (kafka-protocol's encoders for every
//! API but Fetch, which [`crate::fetch`] writes as payload parts).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use crate::error::KafkaError;
use crate::frame::SIZE_PREFIX_BYTES;
use crate::header::{put_response_header, response_header_len, RequestHeader};
use crate::versions::{api_name, ApiTable};

/// The ApiVersions version a broker answers in when the client asked for one it does not
/// know: v0, which every client can read (KIP-511).
const API_VERSIONS_FALLBACK_VERSION: i16 = 0;

/// Encodes `body` as the response to `header`: size prefix, response header of the version
/// the API and version call for, body.
pub fn encode_response<R: Encodable>(
    header: &RequestHeader,
    body: &R,
) -> Result<Bytes, KafkaError> {
    encode_at(
        header,
        header.api_version,
        header.response_header_version(),
        body,
    )
}

fn encode_at<R: Encodable>(
    header: &RequestHeader,
    version: i16,
    header_version: i16,
    body: &R,
) -> Result<Bytes, KafkaError> {
    let failed = |reason: String| KafkaError::Encode {
        api: api_name(header.api),
        version,
        reason,
    };
    let body_bytes = body
        .compute_size(version)
        .map_err(|error| failed(error.to_string()))?;
    let size = response_header_len(header_version) + body_bytes;
    let prefix = i32::try_from(size).map_err(|_| failed(format!("{size} bytes")))?;
    let mut out = BytesMut::with_capacity(SIZE_PREFIX_BYTES + size);
    out.put_i32(prefix);
    put_response_header(&mut out, header.correlation_id, header_version);
    body.encode(&mut out, version)
        .map_err(|error| failed(error.to_string()))?;
    debug_assert_eq!(out.len(), SIZE_PREFIX_BYTES + size);
    Ok(out.freeze())
}

/// The ApiVersions answer listing `table`, with `error_code`.
pub fn api_versions_body(table: &ApiTable, error_code: i16) -> ApiVersionsResponse {
    let api_keys = table
        .apis()
        .iter()
        .map(|support| {
            ApiVersion::default()
                .with_api_key(support.key as i16)
                .with_min_version(support.min)
                .with_max_version(support.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
        .with_finalized_features_epoch(-1)
}

/// The answer to an ApiVersions request of a version this broker does not know:
/// UNSUPPORTED_VERSION in a v0 response listing what it does support, so the client can retry
/// with a version both know.
pub fn api_versions_unsupported(
    header: &RequestHeader,
    table: &ApiTable,
) -> Result<Bytes, KafkaError> {
    let body = api_versions_body(table, ResponseError::UnsupportedVersion.code());
    encode_at(header, API_VERSIONS_FALLBACK_VERSION, 0, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Decodable;

    fn header(version: i16) -> RequestHeader {
        RequestHeader {
            api: ApiKey::ApiVersions,
            api_version: version,
            correlation_id: 5,
            client_id: None,
        }
    }

    // Proves the ApiVersions answer at every version decodes back to exactly the table's
    // APIs and ranges, behind a size prefix that counts every following byte and a v0 header.
    #[test]
    fn api_versions_round_trip() {
        let table = ApiTable::core();
        for version in 0..=4 {
            let mut wire =
                encode_response(&header(version), &api_versions_body(&table, 0)).unwrap();
            assert_eq!(wire.get_i32() as usize, wire.len());
            assert_eq!(wire.get_i32(), 5);
            let decoded = ApiVersionsResponse::decode(&mut wire, version).unwrap();
            assert_eq!(decoded.api_keys.len(), table.apis().len());
            for (got, want) in decoded.api_keys.iter().zip(table.apis()) {
                assert_eq!(got.api_key, want.key as i16);
                assert_eq!((got.min_version, got.max_version), (want.min, want.max));
            }
        }
    }

    // Proves an unknown ApiVersions version is answered in v0 with UNSUPPORTED_VERSION and the
    // supported list, as KIP-511 asks.
    #[test]
    fn unknown_api_versions_version_answers_v0() {
        let mut wire = api_versions_unsupported(&header(99), &ApiTable::core()).unwrap();
        assert_eq!(wire.get_i32() as usize, wire.len());
        assert_eq!(wire.get_i32(), 5);
        let decoded = ApiVersionsResponse::decode(&mut wire, 0).unwrap();
        assert_eq!(decoded.error_code, ResponseError::UnsupportedVersion.code());
        assert!(!decoded.api_keys.is_empty());
    }
}
