//! The client's error type.

use sluice_net::api::ErrorCode;
use sluice_net::NetError;
use sluice_storage::batch::BatchError;

/// Everything a client operation can fail with. Each variant names what was being done, so a
/// message printed to a user says which broker, topic or partition was involved.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A frame or control body could not be encoded or decoded.
    #[error("native protocol error: {0}")]
    Net(#[from] NetError),

    /// The broker answered with an error code.
    #[error("broker error {code:?} ({code}): {message}")]
    Broker {
        /// The error code from the response.
        code: ErrorCode,
        /// What the client asked for and the broker's message, when it sent one.
        message: String,
    },

    /// The broker answered with an error code this build does not know.
    #[error("broker returned unknown error code {code}: {message}")]
    UnknownErrorCode {
        /// The raw code from the response.
        code: i16,
        /// What the client asked for.
        message: String,
    },

    /// An operation did not finish within its timeout.
    #[error("timed out: {op}")]
    Timeout {
        /// What timed out, with the broker address when there is one.
        op: String,
    },

    /// The topic is not in the cluster's metadata.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),

    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
    },

    /// A TCP connection to a broker could not be opened. The message names the address; the
    /// operating system's reason is the error's `source` (printed by `{:#}` in anyhow).
    #[error("cannot connect to broker at {addr}")]
    Connect {
        /// The `host:port` that was tried.
        addr: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// An established connection failed (closed by the broker, reset, or a protocol violation);
    /// every request in flight on it fails with this error.
    #[error("connection to broker at {addr} lost: {reason}")]
    ConnectionLost {
        /// The broker's `host:port`.
        addr: String,
        /// What happened.
        reason: String,
    },

    /// The client, producer or consumer was closed (or dropped) before the operation finished.
    #[error("the client was closed")]
    Closed,

    /// A record batch could not be built or a fetched batch could not be decoded.
    #[error("record batch error: {0}")]
    Batch(#[from] BatchError),

    /// A response does not match its request (a missing partition, a payload shorter than its
    /// declared lengths, a wrong api).
    #[error("invalid response to {op}: {reason}")]
    InvalidResponse {
        /// The request the response belongs to.
        op: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// One record is larger than the producer can ever send.
    #[error("record of {bytes} bytes exceeds the limit of {max} bytes ({limit})")]
    RecordTooLarge {
        /// Estimated encoded size of the record.
        bytes: usize,
        /// The bound it exceeds.
        max: usize,
        /// Which setting sets that bound.
        limit: &'static str,
    },

    /// A consumer's position is outside the partition's log (deleted by retention, or past the
    /// end). Positions are left unchanged; `seek` to recover.
    #[error(
        "offset {offset} of {topic}-{partition} is out of range (log start {log_start_offset}, \
         log end {log_end_offset})"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The position that was fetched.
        offset: i64,
        /// The first offset the partition still holds.
        log_start_offset: i64,
        /// The offset the next appended record will get.
        log_end_offset: i64,
    },

    /// A produce batch was not acknowledged within the producer's `delivery_timeout_ms`: its
    /// sends kept failing with retriable errors (the last one is named), or it waited that long
    /// to be sent. The broker may still have appended it (a send whose answer was lost).
    #[error(
        "delivery to {topic}-{partition} timed out after {elapsed_ms} ms and {attempts} \
         attempt(s); last error: {last_error}"
    )]
    DeliveryTimeout {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Time since the batch was created, in milliseconds.
        elapsed_ms: u64,
        /// Sends tried.
        attempts: u32,
        /// The error of the last send (or why the batch was never sent).
        last_error: String,
    },

    /// A failure copied from another error for each record of a failed batch (see
    /// `duplicate`); the message is the original error's.
    #[error("{reason}")]
    Failed {
        /// The original error's message.
        reason: String,
    },

    /// The configuration or an argument is invalid.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },

    /// An offset commit was refused because the group rebalanced meanwhile (this member's
    /// generation is over); the member rejoins, and the partitions' new owners resume from
    /// the last commit that succeeded.
    #[error("commit of group {group} failed: {reason}")]
    CommitFailed {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },

    /// A partition assigned to a group member has no committed offset and
    /// `auto_offset_reset` is `none`.
    #[error("group {group} has no committed offset for {topic}-{partition} and auto_offset_reset is none")]
    NoCommittedOffset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
}

impl ClientError {
    /// True when the same operation may succeed if retried later, after refreshing metadata:
    /// leadership moves, a topic that was just created, timeouts and lost connections. Retrying a
    /// produce after a timeout or a lost connection may write its records twice, because the
    /// broker may have appended them before the failure (until idempotence lands).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => code.is_retriable(),
            ClientError::Timeout { .. }
            | ClientError::UnknownTopic(_)
            | ClientError::Connect { .. }
            | ClientError::ConnectionLost { .. } => true,
            _ => false,
        }
    }

    /// A broker error from a raw wire code, with `context` naming the request.
    pub(crate) fn from_code(code: i16, context: impl Into<String>) -> ClientError {
        match ErrorCode::from_i16(code) {
            Some(code) => ClientError::Broker {
                code,
                message: context.into(),
            },
            None => ClientError::UnknownErrorCode {
                code,
                message: context.into(),
            },
        }
    }

    /// A copy of this error for every record of a failed batch. Variants holding errors that are
    /// not `Clone` (I/O, codec) are copied as their message, keeping their retriability.
    pub(crate) fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Broker { code, message } => ClientError::Broker {
                code: *code,
                message: message.clone(),
            },
            ClientError::UnknownErrorCode { code, message } => ClientError::UnknownErrorCode {
                code: *code,
                message: message.clone(),
            },
            ClientError::Timeout { op } => ClientError::Timeout { op: op.clone() },
            ClientError::UnknownTopic(topic) => ClientError::UnknownTopic(topic.clone()),
            ClientError::UnknownPartition { topic, partition } => ClientError::UnknownPartition {
                topic: topic.clone(),
                partition: *partition,
            },
            ClientError::Connect { addr, source } => ClientError::ConnectionLost {
                addr: addr.clone(),
                reason: format!("cannot connect: {source}"),
            },
            ClientError::ConnectionLost { addr, reason } => ClientError::ConnectionLost {
                addr: addr.clone(),
                reason: reason.clone(),
            },
            ClientError::Closed => ClientError::Closed,
            ClientError::RecordTooLarge { bytes, max, limit } => ClientError::RecordTooLarge {
                bytes: *bytes,
                max: *max,
                limit,
            },
            ClientError::OffsetOutOfRange {
                topic,
                partition,
                offset,
                log_start_offset,
                log_end_offset,
            } => ClientError::OffsetOutOfRange {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                log_start_offset: *log_start_offset,
                log_end_offset: *log_end_offset,
            },
            ClientError::Config { reason } => ClientError::Config {
                reason: reason.clone(),
            },
            ClientError::CommitFailed { .. }
            | ClientError::NoCommittedOffset { .. }
            | ClientError::DeliveryTimeout { .. } => self.duplicate_group_or_delivery(),
            ClientError::InvalidResponse { op, reason } => ClientError::InvalidResponse {
                op,
                reason: reason.clone(),
            },
            ClientError::Net(_) | ClientError::Batch(_) | ClientError::Failed { .. } => {
                ClientError::Failed {
                    reason: self.to_string(),
                }
            }
        }
    }

    /// [`Self::duplicate`] for the group and delivery-timeout variants.
    fn duplicate_group_or_delivery(&self) -> ClientError {
        match self {
            ClientError::CommitFailed { group, reason } => ClientError::CommitFailed {
                group: group.clone(),
                reason: reason.clone(),
            },
            ClientError::NoCommittedOffset {
                group,
                topic,
                partition,
            } => ClientError::NoCommittedOffset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
            },
            ClientError::DeliveryTimeout {
                topic,
                partition,
                elapsed_ms,
                attempts,
                last_error,
            } => ClientError::DeliveryTimeout {
                topic: topic.clone(),
                partition: *partition,
                elapsed_ms: *elapsed_ms,
                attempts: *attempts,
                last_error: last_error.clone(),
            },
            other => ClientError::Failed {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(code: ErrorCode) -> ClientError {
        ClientError::Broker {
            code,
            message: "produce t-0".into(),
        }
    }

    // Proves the retry classification: leadership changes, a topic not yet known, timeouts
    // and connection failures are retried; refusals that would fail again are not.
    #[test]
    fn retriable_classification() {
        for code in [
            ErrorCode::NotLeaderOrFollower,
            ErrorCode::LeaderNotAvailable,
            ErrorCode::UnknownTopicOrPartition,
            ErrorCode::RequestTimedOut,
            ErrorCode::NotEnoughReplicas,
        ] {
            assert!(broker(code).is_retriable(), "{code:?} should be retriable");
        }
        for code in [
            ErrorCode::MessageTooLarge,
            ErrorCode::InvalidTopic,
            ErrorCode::TopicAlreadyExists,
            ErrorCode::InvalidRequiredAcks,
            ErrorCode::OffsetOutOfRange,
        ] {
            assert!(
                !broker(code).is_retriable(),
                "{code:?} should not be retriable"
            );
        }
        let lost = ClientError::ConnectionLost {
            addr: "b:1".into(),
            reason: "reset".into(),
        };
        assert!(lost.is_retriable());
        assert!(ClientError::Timeout { op: "fetch".into() }.is_retriable());
        assert!(ClientError::UnknownTopic("t".into()).is_retriable());
        let refused = ClientError::Connect {
            addr: "b:1".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(refused.is_retriable());
        assert!(!ClientError::Closed.is_retriable());
        assert!(!ClientError::UnknownErrorCode {
            code: 999,
            message: String::new()
        }
        .is_retriable());
        assert!(!ClientError::from_code(999, "x").is_retriable());
    }

    // Proves a batch failure copied to each record keeps its kind and retriability, and that
    // errors holding non-cloneable sources keep their message.
    #[test]
    fn duplicate_keeps_kind_and_message() {
        let copy = broker(ErrorCode::NotLeaderOrFollower).duplicate();
        assert!(matches!(
            copy,
            ClientError::Broker {
                code: ErrorCode::NotLeaderOrFollower,
                ..
            }
        ));
        let refused = ClientError::Connect {
            addr: "b:1".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let copy = refused.duplicate();
        assert!(copy.is_retriable());
        assert!(copy.to_string().contains("b:1"));
        let batch = ClientError::Batch(BatchError::EmptyBatch).duplicate();
        assert_eq!(
            batch.to_string(),
            ClientError::Batch(BatchError::EmptyBatch).to_string()
        );
    }
}
