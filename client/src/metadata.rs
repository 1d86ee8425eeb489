//! The client's copy of the cluster metadata and the routing it implies: which address serves
//! each partition. Pure state, no I/O.

use std::collections::HashMap;

use sluice_net::api::ErrorCode;
use sluice_net::messages::{BrokerMeta, MetadataResponse, TopicMeta};

use crate::error::ClientError;
use crate::FastMap;

/// Brokers and topics as last reported by the cluster. Lives on the client's executor.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    brokers: HashMap<i32, BrokerMeta>,
    topics: FastMap<String, TopicMeta>,
    /// Leaders named by NotLeaderOrFollower answers: (topic, partition) -> (the named leader,
    /// the cached leader it replaced). A hint wins over the cached leader until the metadata
    /// changes its mind about the partition's leader (metadata still naming the replaced
    /// leader is older than the broker that named the new one), or drops the named broker.
    leader_hints: FastMap<(String, i32), LeaderHint>,
    shard_aware: bool,
}

/// A leader named by a NotLeaderOrFollower answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaderHint {
    /// The broker the answer named.
    leader: i32,
    /// The leader the metadata named when the answer came.
    replaced: i32,
}

/// `host:port`, with IPv6 hosts bracketed so the string parses back as a socket address.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl MetadataCache {
    /// An empty cache; with `shard_aware`, partitions route to their shard's own port.
    pub(crate) fn new(shard_aware: bool) -> Self {
        MetadataCache {
            shard_aware,
            ..MetadataCache::default()
        }
    }

    /// Takes in a metadata response. Brokers are replaced (the response lists every live
    /// broker); topics it lists are replaced, and with `full` (a request for all topics) topics
    /// it does not list are forgotten, so deleted topics disappear.
    pub(crate) fn update(&mut self, response: &MetadataResponse, full: bool) {
        self.brokers = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id, broker.clone()))
            .collect();
        if full {
            self.topics.clear();
        }
        for topic in &response.topics {
            if topic.error == ErrorCode::None.code() {
                self.topics.insert(topic.name.clone(), topic.clone());
            } else {
                self.topics.remove(&topic.name);
            }
        }
        let (brokers, topics) = (&self.brokers, &self.topics);
        self.leader_hints.retain(|(topic, partition), hint| {
            let leader = topics
                .get(topic)
                .and_then(|meta| meta.partitions.iter().find(|p| p.partition == *partition))
                .map(|meta| meta.leader);
            leader == Some(hint.replaced) && brokers.contains_key(&hint.leader)
        });
    }

    /// The topic's metadata, if known.
    #[cfg(test)]
    pub(crate) fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// The topic's partition count, if known.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<i32> {
        self.topics
            .get(topic)
            .map(|meta| i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX))
    }

    /// Records that a broker answered NotLeaderOrFollower naming `leader` as the partition's
    /// leader. Until the metadata names another leader than the cached one, the partition
    /// routes to that broker's native port (which forwards to the owning shard: the shard on
    /// the new leader is not known yet). A leader missing from the broker list is ignored; the
    /// leader the metadata already names drops any hint.
    pub(crate) fn note_leader(&mut self, topic: &str, partition: i32, leader: i32) {
        let Some(cached) = self
            .topics
            .get(topic)
            .and_then(|meta| meta.partitions.iter().find(|p| p.partition == partition))
            .map(|meta| meta.leader)
        else {
            return;
        };
        let key = (topic.to_string(), partition);
        if cached == leader {
            // A broker named the leader the metadata names: any earlier hint was wrong.
            self.leader_hints.remove(&key);
            return;
        }
        if !self.brokers.contains_key(&leader) {
            return;
        }
        let hint = LeaderHint {
            leader,
            replaced: cached,
        };
        self.leader_hints.insert(key, hint);
    }

    /// The `host:port` serving `topic`/`partition`: a hinted leader's native port (see
    /// `note_leader`); else the leader's port of the owning shard when shard-aware (and the
    /// broker lists that shard), else the leader's native port. Errors: unknown topic or
    /// partition, or no leader right now (retriable).
    pub(crate) fn route(&self, topic: &str, partition: i32) -> Result<String, ClientError> {
        let meta = self
            .topics
            .get(topic)
            .ok_or_else(|| ClientError::UnknownTopic(topic.to_string()))?;
        let partition_meta = meta
            .partitions
            .iter()
            .find(|candidate| candidate.partition == partition)
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        // Hints are rare (only after a NotLeaderOrFollower answer): no key is built without one.
        let hinted = (!self.leader_hints.is_empty())
            .then(|| self.leader_hints.get(&(topic.to_string(), partition)))
            .flatten()
            .and_then(|hint| self.brokers.get(&hint.leader));
        if let Some(leader) = hinted {
            return Ok(host_port(&leader.host, leader.port));
        }
        let leader = self.brokers.get(&partition_meta.leader);
        let Some(leader) = leader.filter(|_| partition_meta.error == ErrorCode::None.code()) else {
            return Err(ClientError::Broker {
                code: ErrorCode::LeaderNotAvailable,
                message: format!(
                    "{topic}-{partition} has no live leader in the metadata (leader {})",
                    partition_meta.leader
                ),
            });
        };
        let shard_port = usize::try_from(partition_meta.shard)
            .ok()
            .and_then(|shard| leader.shard_ports.get(shard))
            .filter(|_| self.shard_aware);
        Ok(host_port(
            &leader.host,
            shard_port.copied().unwrap_or(leader.port),
        ))
    }

    /// Every known broker's native `host:port`, lowest node id first.
    pub(crate) fn broker_addresses(&self) -> Vec<String> {
        let mut brokers: Vec<&BrokerMeta> = self.brokers.values().collect();
        brokers.sort_by_key(|broker| broker.node_id);
        brokers
            .into_iter()
            .map(|broker| host_port(&broker.host, broker.port))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::messages::PartitionMeta;

    fn response() -> MetadataResponse {
        let partition = |index: i32, leader: i32, shard: u32| PartitionMeta {
            partition: index,
            error: 0,
            leader,
            leader_epoch: 0,
            replicas: vec![leader],
            isr: vec![leader],
            shard,
        };
        MetadataResponse {
            brokers: vec![BrokerMeta {
                node_id: 1,
                host: "10.0.0.1".into(),
                port: 9192,
                shard_ports: vec![9193, 9194],
            }],
            controller_id: 1,
            cluster_id: "c".into(),
            topics: vec![TopicMeta {
                name: "t".into(),
                error: 0,
                partitions: vec![partition(0, 1, 0), partition(1, 1, 1), partition(2, 7, 0)],
                configs: vec![],
            }],
        }
    }

    // Proves partitions route to their owning shard's port when shard-aware, to the broker's
    // native port otherwise, and that a leader missing from the broker list is retriable.
    #[test]
    fn routes_follow_shards_and_leaders() {
        let mut cache = MetadataCache::new(true);
        cache.update(&response(), true);
        assert_eq!(cache.route("t", 0).unwrap(), "10.0.0.1:9193");
        assert_eq!(cache.route("t", 1).unwrap(), "10.0.0.1:9194");
        let no_leader = cache.route("t", 2).unwrap_err();
        assert!(no_leader.is_retriable(), "{no_leader}");
        assert!(matches!(
            cache.route("t", 3),
            Err(ClientError::UnknownPartition { .. })
        ));
        assert!(matches!(
            cache.route("u", 0),
            Err(ClientError::UnknownTopic(_))
        ));
        assert_eq!(cache.partition_count("t"), Some(3));

        let mut plain = MetadataCache::new(false);
        plain.update(&response(), true);
        assert_eq!(plain.route("t", 1).unwrap(), "10.0.0.1:9192");
        assert_eq!(plain.broker_addresses(), vec!["10.0.0.1:9192".to_string()]);
    }

    // Proves a leader named by NotLeaderOrFollower routes the partition to that broker's native
    // port while the metadata still names the leader it replaced (stale metadata), and not
    // once the metadata names another leader; hints naming an unknown broker or the cached
    // leader change nothing.
    #[test]
    fn leader_hints_route_until_the_next_metadata() {
        let mut with_two = response();
        with_two.brokers.push(BrokerMeta {
            node_id: 2,
            host: "10.0.0.2".into(),
            port: 9292,
            shard_ports: vec![9293, 9294],
        });
        let mut cache = MetadataCache::new(true);
        cache.update(&with_two, true);
        cache.note_leader("t", 0, 9);
        cache.note_leader("t", 1, 1);
        assert_eq!(cache.route("t", 0).unwrap(), "10.0.0.1:9193");
        assert_eq!(cache.route("t", 1).unwrap(), "10.0.0.1:9194");
        cache.note_leader("t", 0, 2);
        assert_eq!(cache.route("t", 0).unwrap(), "10.0.0.2:9292");
        assert_eq!(cache.route("t", 1).unwrap(), "10.0.0.1:9194");
        cache.note_leader("t", 0, 1);
        assert_eq!(
            cache.route("t", 0).unwrap(),
            "10.0.0.1:9193",
            "naming the cached leader drops the hint"
        );
        cache.note_leader("t", 0, 2);
        cache.update(&with_two, true);
        assert_eq!(
            cache.route("t", 0).unwrap(),
            "10.0.0.2:9292",
            "stale metadata must not undo the hint"
        );
        let mut moved = with_two.clone();
        moved.topics[0].partitions[0].leader = 2;
        moved.topics[0].partitions[0].shard = 1;
        cache.update(&moved, false);
        assert_eq!(
            cache.route("t", 0).unwrap(),
            "10.0.0.2:9294",
            "metadata caught up"
        );
        cache.note_leader("t", 0, 1);
        assert_eq!(cache.route("t", 0).unwrap(), "10.0.0.1:9192");
        let mut without_one = moved.clone();
        without_one.brokers.retain(|broker| broker.node_id != 1);
        cache.update(&without_one, true);
        assert_eq!(
            cache.route("t", 0).unwrap(),
            "10.0.0.2:9294",
            "a hint naming a broker that left is dropped"
        );
    }

    // Proves a full refresh forgets deleted topics while a partial one keeps the others, and
    // that a topic reported with an error is dropped.
    #[test]
    fn updates_replace_topics() {
        let mut cache = MetadataCache::new(true);
        cache.update(&response(), true);
        let mut partial = response();
        partial.topics[0].name = "other".into();
        cache.update(&partial, false);
        assert!(cache.topic("t").is_some() && cache.topic("other").is_some());
        partial.topics[0].error = ErrorCode::UnknownTopicOrPartition.code();
        cache.update(&partial, false);
        assert!(cache.topic("other").is_none());
        let mut empty = response();
        empty.topics.clear();
        cache.update(&empty, true);
        assert!(cache.topic("t").is_none());
        assert_eq!(host_port("::1", 5), "[::1]:5");
    }
}
