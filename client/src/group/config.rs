//! Settings of a group member ([`GroupConsumer`](super::GroupConsumer)), with Kafka's
//! consumer defaults.

use crate::error::ClientError;

/// Where a member starts reading a partition its group has no committed offset for (Kafka's
/// `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// The first offset the partition still holds.
    Earliest,
    /// The end: only records appended from now on.
    Latest,
    /// Fail the poll with [`ClientError::NoCommittedOffset`].
    None,
}

/// A partition assignment strategy; the group's leader member runs the one the group agreed
/// on (the first in every member's list that all support).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `range`: per topic, consecutive partitions to each member in member-id order.
    Range,
    /// Kafka's `roundrobin`: every subscribed partition in turn to the next member.
    RoundRobin,
    /// Kafka's `cooperative-sticky` (KIP-429): members keep what they own where balance
    /// allows; a partition moves in two rebalances (revoked by its owner first, then assigned),
    /// so the others keep consuming through a rebalance.
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name members announce (Kafka's assignor names, so Kafka consumers and
    /// Sluice consumers can share a group).
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor named `name`.
    pub fn from_name(name: &str) -> Option<Assignor> {
        [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::CooperativeSticky,
        ]
        .into_iter()
        .find(|assignor| assignor.name() == name)
    }

    /// Whether members keep their partitions through a rebalance (KIP-429) rather than giving
    /// all of them up first.
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }
}

/// Group-member settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConsumerConfig {
    /// The group.
    pub group_id: String,
    /// A static member's `group.instance.id` (KIP-345): a restart within the session timeout
    /// takes the member's place back without a rebalance.
    pub group_instance_id: Option<String>,
    /// The client id (the start of the member id the coordinator gives).
    pub client_id: String,
    /// The member is removed when the coordinator hears nothing from it for this long, ms.
    pub session_timeout_ms: u64,
    /// How often the member heartbeats, ms (at most a third of the session timeout).
    pub heartbeat_interval_ms: u64,
    /// How long a rebalance waits for this member to rejoin, ms.
    pub rebalance_timeout_ms: u64,
    /// Assignors in preference order.
    pub assignors: Vec<Assignor>,
    /// Where to start without a committed offset.
    pub auto_offset_reset: AutoOffsetReset,
    /// Commit the positions of what `poll` returned every `auto_commit_interval_ms`, before
    /// giving partitions up in a rebalance, and on `close`.
    pub enable_auto_commit: bool,
    /// Interval of automatic commits, ms.
    pub auto_commit_interval_ms: u64,
}

impl GroupConsumerConfig {
    /// Kafka's consumer defaults for `group_id`: 45 s session, 3 s heartbeat, 5 min
    /// rebalance timeout, range then cooperative-sticky, earliest, auto commit every 5 s.
    pub fn new(group_id: impl Into<String>) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group_id: group_id.into(),
            group_instance_id: None,
            client_id: "sluice-consumer".to_string(),
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            rebalance_timeout_ms: 300_000,
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            auto_offset_reset: AutoOffsetReset::Earliest,
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ClientError> {
        let problem = if self.group_id.is_empty() {
            Some("group_id must not be empty".to_string())
        } else if self.assignors.is_empty() {
            Some("assignors must name at least one assignor".to_string())
        } else if self.heartbeat_interval_ms == 0
            || self.heartbeat_interval_ms.saturating_mul(3) > self.session_timeout_ms
        {
            Some(format!(
                "heartbeat_interval_ms ({}) must be positive and at most a third of session_timeout_ms ({})",
                self.heartbeat_interval_ms, self.session_timeout_ms
            ))
        } else if i32::try_from(self.session_timeout_ms).is_err()
            || i32::try_from(self.rebalance_timeout_ms).is_err()
            || self.rebalance_timeout_ms == 0
        {
            Some("session_timeout_ms and rebalance_timeout_ms must be in (0, 2^31) ms".to_string())
        } else if self.enable_auto_commit && self.auto_commit_interval_ms == 0 {
            Some("auto_commit_interval_ms must be positive".to_string())
        } else {
            None
        };
        match problem {
            Some(reason) => Err(ClientError::Config { reason }),
            None => Ok(()),
        }
    }
}
