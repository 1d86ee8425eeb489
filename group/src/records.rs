//! The records of `__consumer_offsets`, byte-compatible with Kafka's classic formats so Kafka's
//! tools (`kafka-console-consumer --formatter OffsetsMessageFormatter`, the GroupMetadataManager
//! loader) read them:
//!
//! - key: int16 version, then by version: 0 and 1 are an offset commit key (group string, topic
//!   string, partition int32; we write 1 as Kafka does), 2 a group metadata key (group string).
//!   Newer key versions (KIP-848's consumer-group records) are skipped on load.
//! - offset commit value (OffsetCommitValue): int16 version; we write version 3: offset int64,
//!   leader epoch int32, metadata string, commit timestamp int64. Versions 0 to 3 are read.
//! - group metadata value (GroupMetadataValue): int16 version; we write version 3: protocol
//!   type string, generation int32, protocol nullable string, leader nullable string, current
//!   state timestamp int64, then members: member id, group instance id (nullable), client id,
//!   client host, rebalance timeout int32, session timeout int32, subscription bytes,
//!   assignment bytes. Versions 0 to 3 are read.
//! - a null value (tombstone) deletes the key: an offset, or a whole group's metadata.

use crate::error::RecordError;
use crate::wire::{Reader, Writer};

/// The key version of an offset commit as Kafka writes it.
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// The key version of a group's metadata.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// The offset commit value version written.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// The group metadata value version written.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// One record to append to `__consumer_offsets`: a key and a value, or a tombstone (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsRecord {
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded value, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

/// A decoded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsKey {
    /// The committed offset of (group, topic, partition).
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A group's metadata.
    Group {
        /// The group.
        group: String,
    },
    /// A key version this build does not use (newer record types): skipped on load.
    Other {
        /// The version found.
        version: i16,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The offset of the next record to read.
    pub offset: i64,
    /// The leader epoch of the last record read, -1 when unknown.
    pub leader_epoch: i32,
    /// Free-form metadata.
    pub metadata: String,
    /// When the commit was made, Unix ms.
    pub commit_timestamp_ms: i64,
}

/// One member as a group's metadata stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// The member id.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// Its rebalance timeout, ms.
    pub rebalance_timeout_ms: i32,
    /// Its session timeout, ms.
    pub session_timeout_ms: i32,
    /// Its metadata for the group's protocol.
    pub subscription: Vec<u8>,
    /// Its assignment.
    pub assignment: Vec<u8>,
}

/// A group's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// The protocol type ("" for a group that only stores offsets).
    pub protocol_type: String,
    /// The generation.
    pub generation: i32,
    /// The selected protocol.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the group entered its state, Unix ms (-1 when unknown).
    pub current_state_timestamp_ms: i64,
    /// The members with their assignments.
    pub members: Vec<MemberValue>,
}

/// The key of (group, topic, partition)'s committed offset.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut writer = Writer::with_capacity(10 + group.len() + topic.len());
    writer.i16(OFFSET_COMMIT_KEY_VERSION);
    writer.string(group);
    writer.string(topic);
    writer.i32(partition);
    writer.finish()
}

/// The key of a group's metadata.
pub fn group_key(group: &str) -> Vec<u8> {
    let mut writer = Writer::with_capacity(4 + group.len());
    writer.i16(GROUP_METADATA_KEY_VERSION);
    writer.string(group);
    writer.finish()
}

/// An offset commit value (version 3).
pub fn encode_offset_value(value: &OffsetValue) -> Vec<u8> {
    let mut writer = Writer::with_capacity(26 + value.metadata.len());
    writer.i16(OFFSET_COMMIT_VALUE_VERSION);
    writer.i64(value.offset);
    writer.i32(value.leader_epoch);
    writer.string(&value.metadata);
    writer.i64(value.commit_timestamp_ms);
    writer.finish()
}

/// A group metadata value (version 3).
pub fn encode_group_value(value: &GroupValue) -> Vec<u8> {
    let members_bytes: usize = value
        .members
        .iter()
        .map(|member| {
            32 + member.member_id.len()
                + member.client_id.len()
                + member.client_host.len()
                + member.group_instance_id.as_ref().map_or(0, String::len)
                + member.subscription.len()
                + member.assignment.len()
        })
        .sum();
    let mut writer = Writer::with_capacity(64 + value.protocol_type.len() + members_bytes);
    writer.i16(GROUP_METADATA_VALUE_VERSION);
    writer.string(&value.protocol_type);
    writer.i32(value.generation);
    writer.nullable_string(value.protocol.as_deref());
    writer.nullable_string(value.leader.as_deref());
    writer.i64(value.current_state_timestamp_ms);
    writer.count(value.members.len());
    for member in &value.members {
        writer.string(&member.member_id);
        writer.nullable_string(member.group_instance_id.as_deref());
        writer.string(&member.client_id);
        writer.string(&member.client_host);
        writer.i32(member.rebalance_timeout_ms);
        writer.i32(member.session_timeout_ms);
        writer.bytes(&member.subscription);
        writer.bytes(&member.assignment);
    }
    writer.finish()
}

/// Decodes a key.
pub fn decode_key(bytes: &[u8]) -> Result<OffsetsKey, RecordError> {
    let mut reader = Reader::new(bytes, "__consumer_offsets key");
    let version = reader.i16("version")?;
    match version {
        0 | 1 => Ok(OffsetsKey::Offset {
            group: reader.string("group")?,
            topic: reader.string("topic")?,
            partition: reader.i32("partition")?,
        }),
        2 => Ok(OffsetsKey::Group {
            group: reader.string("group")?,
        }),
        version => Ok(OffsetsKey::Other { version }),
    }
}

/// Decodes an offset commit value of version 0 to 3.
pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, RecordError> {
    const RECORD: &str = "OffsetCommitValue";
    let mut reader = Reader::new(bytes, RECORD);
    let version = reader.i16("version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            record: RECORD,
            version,
        });
    }
    let offset = reader.i64("offset")?;
    let leader_epoch = if version >= 3 {
        reader.i32("leader epoch")?
    } else {
        -1
    };
    let metadata = reader.string("metadata")?;
    let commit_timestamp_ms = reader.i64("commit timestamp")?;
    if version == 1 {
        reader.i64("expire timestamp")?;
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

/// Decodes a group metadata value of version 0 to 3.
pub fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, RecordError> {
    const RECORD: &str = "GroupMetadataValue";
    let mut reader = Reader::new(bytes, RECORD);
    let version = reader.i16("version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            record: RECORD,
            version,
        });
    }
    let protocol_type = reader.string("protocol type")?;
    let generation = reader.i32("generation")?;
    let protocol = reader.nullable_string("protocol")?;
    let leader = reader.nullable_string("leader")?;
    let current_state_timestamp_ms = if version >= 2 {
        reader.i64("current state timestamp")?
    } else {
        -1
    };
    // A member takes at least its strings' lengths, two timeouts and two byte lengths.
    let count = reader.count("members", 2 * 3 + 4 * 2)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(decode_member(&mut reader, version)?);
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

fn decode_member(reader: &mut Reader<'_>, version: i16) -> Result<MemberValue, RecordError> {
    let member_id = reader.string("member id")?;
    let group_instance_id = if version >= 3 {
        reader.nullable_string("group instance id")?
    } else {
        None
    };
    let client_id = reader.string("client id")?;
    let client_host = reader.string("client host")?;
    let rebalance_timeout_ms = if version >= 1 {
        reader.i32("rebalance timeout")?
    } else {
        -1
    };
    let session_timeout_ms = reader.i32("session timeout")?;
    let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
        session_timeout_ms
    } else {
        rebalance_timeout_ms
    };
    Ok(MemberValue {
        member_id,
        group_instance_id,
        client_id,
        client_host,
        rebalance_timeout_ms,
        session_timeout_ms,
        subscription: reader.bytes("subscription")?,
        assignment: reader.bytes("assignment")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves an offset commit key and value are Kafka's bytes exactly: a hand-built encoding of
    // OffsetCommitKey v1 and OffsetCommitValue v3 (the layout Kafka's schema defines) matches.
    #[test]
    fn offset_records_match_kafka_bytes() {
        let key = offset_key("g", "t", 7);
        assert_eq!(key, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        let value = encode_offset_value(&OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".to_string(),
            commit_timestamp_ms: 1_000,
        });
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&42i64.to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, b'm']);
        expected.extend_from_slice(&1_000i64.to_be_bytes());
        assert_eq!(value, expected);
        assert_eq!(
            decode_key(&key).unwrap(),
            OffsetsKey::Offset {
                group: "g".to_string(),
                topic: "t".to_string(),
                partition: 7
            }
        );
        assert_eq!(decode_offset_value(&value).unwrap().offset, 42);
    }

    // Proves older value versions Kafka may have written are read: v1 (with the expire
    // timestamp Kafka dropped later) and v0, both without a leader epoch.
    #[test]
    fn old_offset_value_versions_are_read() {
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.extend_from_slice(&[0, 0]);
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&6i64.to_be_bytes());
        let value = decode_offset_value(&v1).unwrap();
        assert_eq!(
            (value.offset, value.leader_epoch, value.commit_timestamp_ms),
            (9, -1, 5)
        );
        let mut v0 = vec![0, 0];
        v0.extend_from_slice(&9i64.to_be_bytes());
        v0.extend_from_slice(&[0, 0]);
        v0.extend_from_slice(&5i64.to_be_bytes());
        assert_eq!(decode_offset_value(&v0).unwrap().offset, 9);
        let v9 = [0, 9, 0, 0];
        assert!(matches!(
            decode_offset_value(&v9),
            Err(RecordError::UnsupportedVersion { version: 9, .. })
        ));
    }

    // Proves a group's metadata round-trips through its encoding, and that the encoding starts
    // with Kafka's GroupMetadataValue v3 header fields in Kafka's order.
    #[test]
    fn group_metadata_round_trips() {
        let value = GroupValue {
            protocol_type: "consumer".to_string(),
            generation: 4,
            protocol: Some("range".to_string()),
            leader: Some("m-1".to_string()),
            current_state_timestamp_ms: 77,
            members: vec![MemberValue {
                member_id: "m-1".to_string(),
                group_instance_id: Some("i-1".to_string()),
                client_id: "c".to_string(),
                client_host: "/127.0.0.1".to_string(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: vec![1, 2],
                assignment: vec![3],
            }],
        };
        let bytes = encode_group_value(&value);
        assert_eq!(&bytes[..4], &[0, 3, 0, 8]);
        assert_eq!(&bytes[4..12], b"consumer");
        assert_eq!(decode_group_value(&bytes).unwrap(), value);
        assert_eq!(
            decode_key(&group_key("g")).unwrap(),
            OffsetsKey::Group {
                group: "g".to_string()
            }
        );
    }

    // Proves truncated or hostile bytes give an error naming the field, never a panic or a
    // huge allocation, and that unknown key versions are reported for skipping.
    #[test]
    fn bad_records_are_refused() {
        let bytes = encode_group_value(&GroupValue {
            protocol_type: "consumer".to_string(),
            generation: 1,
            protocol: None,
            leader: None,
            current_state_timestamp_ms: -1,
            members: Vec::new(),
        });
        for cut in 0..bytes.len() {
            assert!(decode_group_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = bytes[..bytes.len() - 4].to_vec();
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_group_value(&huge).is_err());
        assert_eq!(
            decode_key(&[0, 5, 1, 2]).unwrap(),
            OffsetsKey::Other { version: 5 }
        );
        assert!(decode_key(&[0, 1, 0, 9, b'x']).is_err());
    }
}
