//! Decoding a request body by API and version: Produce with our own zero-copy decoder, every
//! other API with the kafka-protocol crate's generated codecs (flexible versions and tagged
//! fields included).

use bytes::BytesMut;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, ElectLeadersRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, ListPartitionReassignmentsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::Decodable;

use crate::error::KafkaError;
use crate::header::RequestHeader;
use crate::produce::{decode_produce, ProduceRequest};
use crate::versions::{api_name, ApiTable};

/// A decoded request body.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// ApiVersions.
    ApiVersions(ApiVersionsRequest),
    /// Metadata.
    Metadata(MetadataRequest),
    /// Produce (our own decoder: record batches are writable views of the receive buffer).
    Produce(ProduceRequest),
    /// Fetch.
    Fetch(FetchRequest),
    /// ListOffsets.
    ListOffsets(ListOffsetsRequest),
    /// OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    /// CreateTopics.
    CreateTopics(CreateTopicsRequest),
    /// DeleteTopics.
    DeleteTopics(DeleteTopicsRequest),
    /// CreatePartitions.
    CreatePartitions(CreatePartitionsRequest),
    /// DescribeConfigs.
    DescribeConfigs(DescribeConfigsRequest),
    /// IncrementalAlterConfigs.
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    /// DescribeCluster.
    DescribeCluster(DescribeClusterRequest),
    /// InitProducerId.
    InitProducerId(InitProducerIdRequest),
    /// ElectLeaders.
    ElectLeaders(ElectLeadersRequest),
    /// AlterPartitionReassignments.
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    /// ListPartitionReassignments.
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    /// A consumer-group request.
    Group(GroupRequest),
}

/// The classic consumer-group requests, decoded here and handed to the group coordinator.
#[derive(Debug)]
pub enum GroupRequest {
    /// FindCoordinator.
    FindCoordinator(FindCoordinatorRequest),
    /// JoinGroup.
    JoinGroup(JoinGroupRequest),
    /// SyncGroup.
    SyncGroup(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupRequest),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitRequest),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchRequest),
    /// ListGroups.
    ListGroups(ListGroupsRequest),
    /// DescribeGroups.
    DescribeGroups(DescribeGroupsRequest),
    /// DeleteGroups.
    DeleteGroups(DeleteGroupsRequest),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteRequest),
}

/// Checks `header` names an API and version in `table`.
pub fn check_supported(header: &RequestHeader, table: &ApiTable) -> Result<(), KafkaError> {
    let api = api_name(header.api);
    let Some(support) = table.get(header.api) else {
        return Err(KafkaError::UnsupportedApi {
            api,
            api_key: header.api as i16,
        });
    };
    if !(support.min..=support.max).contains(&header.api_version) {
        return Err(KafkaError::UnsupportedVersion {
            api,
            version: header.api_version,
            min: support.min,
            max: support.max,
        });
    }
    Ok(())
}

/// Decodes the body of a request whose API and version `check_supported` accepted.
pub fn decode_request(header: &RequestHeader, body: BytesMut) -> Result<Request, KafkaError> {
    let version = header.api_version;
    let bad_body = |reason: String| KafkaError::BadBody {
        api: api_name(header.api),
        version,
        reason,
    };
    if header.api == ApiKey::Produce {
        return decode_produce(body, version)
            .map(Request::Produce)
            .map_err(|reason| bad_body(reason.to_string()));
    }
    let mut bytes = body.freeze();
    // The generated decoders are fuzzed, but they are third-party code reading untrusted
    // bytes: a panic in one becomes a refused request (this connection closes) instead of a
    // dead shard.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_generated(header.api, &mut bytes, version)
    }));
    match decoded {
        Ok(Ok(Some(request))) => Ok(request),
        Ok(Ok(None)) => Err(KafkaError::UnsupportedApi {
            api: api_name(header.api),
            api_key: header.api as i16,
        }),
        Ok(Err(reason)) => Err(bad_body(reason)),
        Err(_) => Err(KafkaError::DecoderPanicked {
            api: api_name(header.api),
            version,
        }),
    }
}

/// A decoded request, `None` for an API this crate does not decode, or the decoder's reason.
type Decoded = Result<Option<Request>, String>;

fn decode<T: Decodable>(bytes: &mut bytes::Bytes, version: i16) -> Result<T, String> {
    T::decode(bytes, version).map_err(|error| error.to_string())
}

fn decode_generated(api: ApiKey, bytes: &mut bytes::Bytes, version: i16) -> Decoded {
    use GroupRequest as G;
    use Request as R;
    Ok(Some(match api {
        ApiKey::ApiVersions => R::ApiVersions(decode(bytes, version)?),
        ApiKey::Metadata => R::Metadata(decode(bytes, version)?),
        ApiKey::Fetch => R::Fetch(decode(bytes, version)?),
        ApiKey::ListOffsets => R::ListOffsets(decode(bytes, version)?),
        ApiKey::OffsetForLeaderEpoch => R::OffsetForLeaderEpoch(decode(bytes, version)?),
        ApiKey::CreateTopics => R::CreateTopics(decode(bytes, version)?),
        ApiKey::DeleteTopics => R::DeleteTopics(decode(bytes, version)?),
        ApiKey::CreatePartitions => R::CreatePartitions(decode(bytes, version)?),
        ApiKey::DescribeConfigs => R::DescribeConfigs(decode(bytes, version)?),
        ApiKey::IncrementalAlterConfigs => R::IncrementalAlterConfigs(decode(bytes, version)?),
        ApiKey::DescribeCluster => R::DescribeCluster(decode(bytes, version)?),
        ApiKey::InitProducerId => R::InitProducerId(decode(bytes, version)?),
        ApiKey::ElectLeaders => R::ElectLeaders(decode(bytes, version)?),
        ApiKey::AlterPartitionReassignments => {
            R::AlterPartitionReassignments(decode(bytes, version)?)
        }
        ApiKey::ListPartitionReassignments => {
            R::ListPartitionReassignments(decode(bytes, version)?)
        }
        ApiKey::FindCoordinator => R::Group(G::FindCoordinator(decode(bytes, version)?)),
        ApiKey::JoinGroup => R::Group(G::JoinGroup(decode(bytes, version)?)),
        ApiKey::SyncGroup => R::Group(G::SyncGroup(decode(bytes, version)?)),
        ApiKey::Heartbeat => R::Group(G::Heartbeat(decode(bytes, version)?)),
        ApiKey::LeaveGroup => R::Group(G::LeaveGroup(decode(bytes, version)?)),
        ApiKey::OffsetCommit => R::Group(G::OffsetCommit(decode(bytes, version)?)),
        ApiKey::OffsetFetch => R::Group(G::OffsetFetch(decode(bytes, version)?)),
        ApiKey::ListGroups => R::Group(G::ListGroups(decode(bytes, version)?)),
        ApiKey::DescribeGroups => R::Group(G::DescribeGroups(decode(bytes, version)?)),
        ApiKey::DeleteGroups => R::Group(G::DeleteGroups(decode(bytes, version)?)),
        ApiKey::OffsetDelete => R::Group(G::OffsetDelete(decode(bytes, version)?)),
        _ => return Ok(None),
    }))
}
