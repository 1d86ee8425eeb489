//! InitProducerId on the Kafka port: an idempotent producer's id and epoch, from the same
//! cluster-unique blocks the native protocol hands out (see `server/handlers.rs`).
//!
//! As in Kafka, a producer without a transactional id gets a new id with epoch 0 on every
//! call, including the KIP-360 call that names its current id and epoch after an
//! UNKNOWN_PRODUCER_ID or OUT_OF_ORDER_SEQUENCE_NUMBER: the client then restarts its sequences
//! from 0 under the new id, which the partitions accept as a new producer. A transactional id
//! is refused (transactions are not implemented): Kafka clients only send one after
//! FindCoordinator for a transaction coordinator, which we do not serve either.

use sluice_kafka::kafka_protocol::messages::ProducerId;
use sluice_kafka::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use sluice_kafka::RequestHeader;
use sluice_net::api::ErrorCode;

use super::dispatch::{respond, Answer};
use crate::server::{handlers, ShardServer};

/// Handles one InitProducerId request.
pub async fn init(
    server: &ShardServer,
    header: &RequestHeader,
    request: &InitProducerIdRequest,
) -> Answer {
    let native = sluice_net::messages::InitProducerIdRequest {
        transactional_id: request.transactional_id.as_ref().map(|id| id.to_string()),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
    };
    let answer = handlers::init_producer_id(server, native).await;
    if let Some(message) = &answer.message {
        tracing::debug!(%message, "InitProducerId refused on the Kafka port");
    }
    let response = InitProducerIdResponse::default()
        .with_error_code(answer.error)
        .with_producer_id(ProducerId(answer.producer_id))
        .with_producer_epoch(answer.producer_epoch);
    respond(header, &response, answer.error != ErrorCode::None.code())
}
