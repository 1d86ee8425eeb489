//! Consumer groups on the broker: where each group's coordinator runs, and the runtime around
//! the sans-IO coordinator of `sluice-group`.
//!
//! Where a group lives (Kafka's rule): group G is coordinated by the leader of partition
//! `abs(java_hash(G)) mod N` of the internal topic `__consumer_offsets`, on the shard that owns
//! that partition. The coordinator's state lives on that shard only: no lock, no shared state.
//! Any shard can receive a group request (a Kafka client cannot pick the shard): the request
//! travels to the owning shard as a [`ShardRequest::Group`](sluice_shard::ShardRequest) and
//! the answer comes back the same way. Native clients ask FindCoordinator first and connect to
//! the owning shard's own port, so they never cross cores.
//!
//! Durability: committed offsets and group metadata are records of that partition, appended
//! with acks=all before the request that caused them is answered, so they survive a broker
//! restart and a leader failover. A shard that becomes leader of a partition loads its groups
//! from the log first (COORDINATOR_LOAD_IN_PROGRESS meanwhile); a shard that stops leading it
//! drops them and answers NOT_COORDINATOR, which sends clients to FindCoordinator again.
//!
//! - [`GroupManager`]: one per shard: its coordinators (one [`slot::CoordinatorSlot`] per
//!   partition of `__consumer_offsets` it leads), reconciled with the shard table.
//! - [`config`]: the `[groups]` settings. [`metrics`]: per-shard group metrics and lag.

pub mod config;
pub mod metrics;
pub mod slot;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_group::{
    GroupErrorCode, GroupGauges, GroupRequest, GroupResponse, ListGroupsResponse,
    CONSUMER_OFFSETS_TOPIC,
};
use sluice_shard::{GroupAnswer, GroupService, OffsetQuery, RoleView, Shard, ALL_COORDINATORS};

use config::GroupSettings;
use metrics::{GroupLag, GroupMetrics};
use slot::{CoordinatorSlot, SlotSettings};

/// Most (group, partition) lag entries one shard reports per refresh.
pub const GROUP_LAG_ENTRIES_MAX: usize = 10_000;

/// The coordinators of one shard. Lives on that shard only.
pub struct GroupManager {
    settings: SlotSettings,
    slots: RefCell<BTreeMap<i32, Rc<CoordinatorSlot>>>,
    metrics: Arc<GroupMetrics>,
    /// The topics of the table last reconciled, to notice deleted ones.
    known_topics: RefCell<Option<BTreeSet<String>>>,
    /// A creation of `__consumer_offsets` asked for and not answered yet.
    creating_topic: Cell<bool>,
    /// Partitions of `__consumer_offsets` in the table last reconciled (0: not there yet).
    offsets_partitions_applied: Cell<usize>,
}

impl GroupManager {
    /// The coordinators of one shard (none until the shard table gives it leadership of
    /// partitions of `__consumer_offsets`).
    pub fn new(settings: &GroupSettings, metrics: Arc<GroupMetrics>) -> Rc<GroupManager> {
        Rc::new(GroupManager {
            settings: SlotSettings {
                config: settings.coordinator_config(),
                commit_timeout: Duration::from_millis(settings.offsets_commit_timeout_ms),
            },
            slots: RefCell::new(BTreeMap::new()),
            metrics,
            known_topics: RefCell::new(None),
            creating_topic: Cell::new(false),
            offsets_partitions_applied: Cell::new(0),
        })
    }

    /// This shard's group metrics.
    pub fn metrics(&self) -> &Arc<GroupMetrics> {
        &self.metrics
    }

    /// Makes the coordinators match the table: starts one (loading) for every partition of
    /// `__consumer_offsets` this shard now leads, stops those it no longer leads or whose
    /// leadership changed epoch, and removes the committed offsets of deleted topics.
    pub fn reconcile(&self, shard: &Shard) {
        let (count, led) = led_offsets_partitions(shard);
        self.offsets_partitions_applied.set(count);
        let mut slots = self.slots.borrow_mut();
        let stale: Vec<i32> = slots
            .iter()
            .filter(|(index, slot)| {
                led.get(index)
                    .is_none_or(|partition| partition.generation() != slot.role_generation())
            })
            .map(|(index, _)| *index)
            .collect();
        for index in stale {
            if let Some(slot) = slots.remove(&index) {
                tracing::info!(
                    shard = shard.id().0,
                    partition = index,
                    "no longer coordinating __consumer_offsets partition"
                );
                slot.stop();
            }
        }
        for (index, partition) in led {
            slots.entry(index).or_insert_with(|| {
                tracing::info!(
                    shard = shard.id().0,
                    partition = index,
                    "coordinating __consumer_offsets partition; loading"
                );
                CoordinatorSlot::start(
                    index,
                    partition,
                    self.settings.clone(),
                    self.metrics.clone(),
                )
            });
        }
        self.metrics.coordinators.set(slots.len() as u64);
        drop(slots);
        self.forget_deleted_topics(shard);
    }

    /// Topics present in the previous table and gone from this one lose their committed
    /// offsets, as in Kafka.
    fn forget_deleted_topics(&self, shard: &Shard) {
        let now: BTreeSet<String> =
            shard.with_table(|table| table.topics().map(|(name, _)| name.to_string()).collect());
        let previous = self.known_topics.borrow_mut().replace(now.clone());
        let Some(previous) = previous else {
            return;
        };
        let deleted: Vec<String> = previous.difference(&now).cloned().collect();
        if deleted.is_empty() {
            return;
        }
        for slot in self.slots.borrow().values() {
            slot.delete_topic_offsets(&deleted);
        }
    }

    /// Stops every coordinator (shutdown): waiting requests get NOT_COORDINATOR.
    pub fn stop_all(&self) {
        for (_, slot) in std::mem::take(&mut *self.slots.borrow_mut()) {
            slot.stop();
        }
        self.metrics.coordinators.set(0);
    }

    /// Serves a request for partition `partition` on this shard.
    pub async fn serve_local(&self, partition: i32, request: GroupRequest) -> GroupResponse {
        let slot = self.slots.borrow().get(&partition).cloned();
        match slot {
            Some(slot) => slot.serve(request).await,
            None => self.absent_answer(partition, &request),
        }
    }

    /// The answer for a partition without a coordinator here. NOT_COORDINATOR once this shard
    /// has applied a table with that partition (another shard or broker leads it); before, as
    /// right after `__consumer_offsets` was created and another shard already answered
    /// FindCoordinator with this one, what a loading coordinator answers (mostly
    /// COORDINATOR_LOAD_IN_PROGRESS): the client retries here rather than looking elsewhere.
    fn absent_answer(&self, partition: i32, request: &GroupRequest) -> GroupResponse {
        let applied = usize::try_from(partition)
            .is_ok_and(|index| index < self.offsets_partitions_applied.get());
        if applied {
            request.error_response(GroupErrorCode::NotCoordinator)
        } else {
            slot::loading_answer(request)
        }
    }

    /// ListGroups over every coordinator of this shard.
    pub async fn list_local(&self, request: GroupRequest) -> GroupResponse {
        let slots: Vec<Rc<CoordinatorSlot>> = self.slots.borrow().values().cloned().collect();
        list_over(slots, request).await
    }

    /// Asks for `__consumer_offsets` to be created, once at a time per shard: true when the
    /// caller should send the creation.
    pub fn begin_topic_creation(&self) -> bool {
        !self.creating_topic.replace(true)
    }

    /// The creation asked for was answered.
    pub fn end_topic_creation(&self) {
        self.creating_topic.set(false);
    }

    /// Refreshes the group gauges (summed over this shard's coordinators).
    pub fn refresh_gauges(&self) {
        let mut total = GroupGauges::default();
        for slot in self.slots.borrow().values() {
            let gauges = slot.gauges();
            for (sum, count) in total.groups_by_state.iter_mut().zip(gauges.groups_by_state) {
                *sum += count;
            }
            total.members += gauges.members;
        }
        self.metrics.set_gauges(&total);
    }

    /// Recomputes the lag of every committed offset whose partition this broker leads: high
    /// watermark minus committed offset (partitions led elsewhere are left out).
    pub async fn refresh_lag(&self, shard: &Shard) {
        let slots: Vec<Rc<CoordinatorSlot>> = self.slots.borrow().values().cloned().collect();
        let mut lags = Vec::new();
        for slot in slots {
            for committed in slot.committed_offsets() {
                if lags.len() >= GROUP_LAG_ENTRIES_MAX {
                    break;
                }
                let latest = shard
                    .list_offset(&committed.topic, committed.partition, OffsetQuery::Latest)
                    .await;
                if let Ok(Some(high_watermark)) = latest {
                    lags.push(GroupLag {
                        group_id: committed.group_id,
                        topic: committed.topic,
                        partition: committed.partition,
                        lag_messages: (high_watermark - committed.offset).max(0),
                    });
                }
            }
        }
        self.metrics.set_lag(lags);
    }
}

impl GroupService for GroupManager {
    fn serve(&self, partition: i32, request: GroupRequest) -> GroupAnswer {
        if partition == ALL_COORDINATORS {
            let slots: Vec<Rc<CoordinatorSlot>> = self.slots.borrow().values().cloned().collect();
            return Box::pin(list_over(slots, request));
        }
        let slot = self.slots.borrow().get(&partition).cloned();
        let Some(slot) = slot else {
            let answer = self.absent_answer(partition, &request);
            return Box::pin(async move { answer });
        };
        Box::pin(async move { slot.serve(request).await })
    }
}

/// ListGroups over `slots`, merged (a coordinator still loading contributes nothing).
async fn list_over(slots: Vec<Rc<CoordinatorSlot>>, request: GroupRequest) -> GroupResponse {
    let mut groups = Vec::new();
    for slot in slots {
        if let GroupResponse::ListGroups(answer) = slot.serve(request.clone()).await {
            groups.extend(answer.groups);
        }
    }
    groups.sort_by(|left, right| left.group_id.cmp(&right.group_id));
    GroupResponse::ListGroups(ListGroupsResponse {
        error: GroupErrorCode::None,
        groups,
    })
}

/// The partition count of `__consumer_offsets` in the shard's table (0 before it exists), and
/// the partitions of it this shard owns and leads (single node: every one it owns), by index.
fn led_offsets_partitions(shard: &Shard) -> (usize, BTreeMap<i32, Rc<sluice_shard::Partition>>) {
    let count = shard.with_table(|table| {
        table
            .topic(CONSUMER_OFFSETS_TOPIC)
            .map_or(0, |topic| topic.partition_count())
    });
    let led = (0..count)
        .filter_map(|index| i32::try_from(index).ok())
        .filter_map(|index| {
            let partition = shard.registry().get(CONSUMER_OFFSETS_TOPIC, index)?;
            matches!(
                partition.role(),
                RoleView::Standalone | RoleView::Leader { .. }
            )
            .then_some((index, partition))
        })
        .collect();
    (count, led)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_group::OffsetFetchRequest;

    fn offset_fetch() -> GroupRequest {
        GroupRequest::OffsetFetch(OffsetFetchRequest {
            group_id: "g1".to_string(),
            partitions: None,
        })
    }

    fn error_of(response: &GroupResponse) -> GroupErrorCode {
        match response {
            GroupResponse::OffsetFetch(answer) => answer.error,
            other => panic!("not an OffsetFetch answer: {other:?}"),
        }
    }

    // Proves a shard asked for a partition of a table it has not applied yet (another shard
    // already answered FindCoordinator with it) says LOAD_IN_PROGRESS, so clients retry it,
    // and NOT_COORDINATOR once its table has that partition and no coordinator runs here.
    #[test]
    fn a_partition_without_coordinator_is_loading_until_the_table_has_it() {
        let manager = GroupManager::new(&GroupSettings::default(), Arc::new(GroupMetrics::new(0)));
        let serve = |partition| {
            let answer =
                futures_lite::future::block_on(manager.serve_local(partition, offset_fetch()));
            error_of(&answer)
        };
        assert_eq!(serve(3), GroupErrorCode::CoordinatorLoadInProgress);
        manager.offsets_partitions_applied.set(4);
        assert_eq!(serve(3), GroupErrorCode::NotCoordinator);
        assert_eq!(serve(4), GroupErrorCode::CoordinatorLoadInProgress);
    }
}
