//! Kafka's consumer protocol (protocol type "consumer"): the subscription a member sends as its
//! JoinGroup metadata and the assignment the leader hands out in SyncGroup, byte for byte as
//! Kafka's `ConsumerProtocol` writes them, so Kafka consumers and Sluice's native consumers
//! read each other's bytes. The coordinator reads them only to describe groups and to refuse
//! deleting the offsets of a subscribed topic.
//!
//! - Subscription: int16 version; topics (array of string); user data (nullable bytes); from v1
//!   owned partitions (array of topic string, partitions int32 array); from v2 generation id
//!   int32; from v3 rack id (nullable string). Written as v3.
//! - Assignment: int16 version; assigned partitions (array of topic, partitions); user data
//!   (nullable bytes). Written as v3 (the same fields as v0).
//!
//! A newer version than this build knows is read by its known fields, ignoring the rest, as
//! Kafka's own clients do.

use crate::error::RecordError;
use crate::wire::{Reader, Writer};

/// The protocol type of consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The consumer protocol version written.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// Partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions {
    /// The topic.
    pub topic: String,
    /// The partitions.
    pub partitions: Vec<i32>,
}

/// A consumer's JoinGroup metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// Assignor-specific data.
    pub user_data: Option<Vec<u8>>,
    /// The partitions it owns now (cooperative rebalancing, KIP-429).
    pub owned_partitions: Vec<TopicPartitions>,
    /// The generation its owned partitions are from, -1 when unknown.
    pub generation_id: i32,
    /// Its rack.
    pub rack_id: Option<String>,
}

/// A consumer's assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The partitions assigned.
    pub partitions: Vec<TopicPartitions>,
    /// Assignor-specific data.
    pub user_data: Option<Vec<u8>>,
}

fn write_topic_partitions(writer: &mut Writer, topics: &[TopicPartitions]) {
    writer.count(topics.len());
    for topic in topics {
        writer.string(&topic.topic);
        writer.count(topic.partitions.len());
        for partition in &topic.partitions {
            writer.i32(*partition);
        }
    }
}

fn read_topic_partitions(reader: &mut Reader<'_>) -> Result<Vec<TopicPartitions>, RecordError> {
    let count = reader.count("topic partitions", 6)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let topic = reader.string("topic")?;
        let partitions_count = reader.count("partitions", 4)?;
        let mut partitions = Vec::with_capacity(partitions_count);
        for _ in 0..partitions_count {
            partitions.push(reader.i32("partition")?);
        }
        topics.push(TopicPartitions { topic, partitions });
    }
    Ok(topics)
}

impl Subscription {
    /// The bytes (version 3).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_capacity(64);
        writer.i16(CONSUMER_PROTOCOL_VERSION);
        writer.count(self.topics.len());
        for topic in &self.topics {
            writer.string(topic);
        }
        writer.nullable_bytes(self.user_data.as_deref());
        write_topic_partitions(&mut writer, &self.owned_partitions);
        writer.i32(self.generation_id);
        writer.nullable_string(self.rack_id.as_deref());
        writer.finish()
    }

    /// Reads a subscription of any version.
    pub fn decode(bytes: &[u8]) -> Result<Subscription, RecordError> {
        const RECORD: &str = "ConsumerProtocolSubscription";
        let mut reader = Reader::new(bytes, RECORD);
        let version = reader.i16("version")?;
        if version < 0 {
            return Err(RecordError::UnsupportedVersion {
                record: RECORD,
                version,
            });
        }
        let count = reader.count("topics", 2)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(reader.string("topic")?);
        }
        let mut subscription = Subscription {
            topics,
            user_data: reader.nullable_bytes("user data")?,
            generation_id: -1,
            ..Subscription::default()
        };
        if version >= 1 && !reader.is_empty() {
            subscription.owned_partitions = read_topic_partitions(&mut reader)?;
        }
        if version >= 2 && !reader.is_empty() {
            subscription.generation_id = reader.i32("generation id")?;
        }
        if version >= 3 && !reader.is_empty() {
            subscription.rack_id = reader.nullable_string("rack id")?;
        }
        Ok(subscription)
    }
}

impl Assignment {
    /// The bytes (version 3).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_capacity(64);
        writer.i16(CONSUMER_PROTOCOL_VERSION);
        write_topic_partitions(&mut writer, &self.partitions);
        writer.nullable_bytes(self.user_data.as_deref());
        writer.finish()
    }

    /// Reads an assignment of any version. Empty bytes are an empty assignment (what the
    /// coordinator hands a member the leader left out).
    pub fn decode(bytes: &[u8]) -> Result<Assignment, RecordError> {
        const RECORD: &str = "ConsumerProtocolAssignment";
        if bytes.is_empty() {
            return Ok(Assignment::default());
        }
        let mut reader = Reader::new(bytes, RECORD);
        let version = reader.i16("version")?;
        if version < 0 {
            return Err(RecordError::UnsupportedVersion {
                record: RECORD,
                version,
            });
        }
        let partitions = read_topic_partitions(&mut reader)?;
        let user_data = if reader.is_empty() {
            None
        } else {
            reader.nullable_bytes("user data")?
        };
        Ok(Assignment {
            partitions,
            user_data,
        })
    }

    /// Every (topic, partition) assigned.
    pub fn topic_partitions(&self) -> impl Iterator<Item = (&str, i32)> {
        self.partitions.iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic.topic.as_str(), *partition))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a v0 subscription as old Kafka clients write it (topics and user data only) is
    // read, and that a v3 subscription round-trips with owned partitions and generation.
    #[test]
    fn subscriptions_read_every_version() {
        let v0 = [0, 0, 0, 0, 0, 1, 0, 1, b't', 255, 255, 255, 255];
        let old = Subscription::decode(&v0).unwrap();
        assert_eq!(old.topics, vec!["t".to_string()]);
        assert_eq!(old.generation_id, -1);
        let subscription = Subscription {
            topics: vec!["a".to_string(), "b".to_string()],
            user_data: Some(vec![9]),
            owned_partitions: vec![TopicPartitions {
                topic: "a".to_string(),
                partitions: vec![0, 2],
            }],
            generation_id: 5,
            rack_id: None,
        };
        assert_eq!(
            Subscription::decode(&subscription.encode()).unwrap(),
            subscription
        );
    }

    // Proves an assignment round-trips, empty bytes read as an empty assignment, and truncated
    // bytes are refused.
    #[test]
    fn assignments_round_trip() {
        let assignment = Assignment {
            partitions: vec![TopicPartitions {
                topic: "t".to_string(),
                partitions: vec![1, 3],
            }],
            user_data: None,
        };
        let bytes = assignment.encode();
        assert_eq!(Assignment::decode(&bytes).unwrap(), assignment);
        assert_eq!(
            assignment.topic_partitions().collect::<Vec<_>>(),
            vec![("t", 1), ("t", 3)]
        );
        assert_eq!(Assignment::decode(&[]).unwrap(), Assignment::default());
        assert!(Assignment::decode(&bytes[..bytes.len() - 6]).is_err());
    }
}
