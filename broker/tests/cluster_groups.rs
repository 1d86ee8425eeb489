//! Consumer groups on the 3-broker etcd cluster (real processes): `__consumer_offsets` is
//! created replicated, three `sluice consume --group` members split a 12-partition topic and
//! print every message once, and committed offsets survive a SIGKILL of the group's
//! coordinator (the leader of its `__consumer_offsets` partition).
#![allow(clippy::unwrap_used)]

mod common;
mod e2e_support;
mod group_support;
mod support_cluster;

use std::collections::BTreeSet;

use e2e_support::sluice_ok;
use group_support::*;
use sluice_group::{partition_for_group, CONSUMER_OFFSETS_TOPIC};
use support_cluster::*;

/// Partitions of `__consumer_offsets` in these clusters.
const OFFSETS_PARTITIONS: i32 = 3;

fn spec() -> ClusterSpec {
    ClusterSpec {
        extra_flags: [
            "--offsets-topic-partitions",
            "3",
            "--initial-rebalance-delay-ms",
            "500",
            "--session-timeout-ms-min",
            "1000",
        ]
        .iter()
        .map(|flag| flag.to_string())
        .collect(),
        ..ClusterSpec::default()
    }
}

fn bootstrap(cluster: &Cluster, ids: &[i32]) -> String {
    ids.iter()
        .map(|id| cluster.node(*id).native_addr())
        .collect::<Vec<_>>()
        .join(",")
}

// Proves groups work across the cluster and survive a coordinator failover: three members split
// a 12-partition topic (replication factor 3) 4/4/4 and print every message exactly once, with
// LAG 0 after; `__consumer_offsets` has replication factor 3; then one member prints and
// commits 500 of 1,500 new messages, the broker leading the group's `__consumer_offsets`
// partition is SIGKILLed, a new leader takes over, and a new member of the group prints exactly
// the other 1,000 (nothing committed is read again, nothing is skipped).
#[test]
fn groups_split_the_topic_and_offsets_survive_a_coordinator_kill() {
    let mut cluster = Cluster::start(spec());
    cluster.create_topic("orders", 12, 3, &[("min.insync.replicas", "2")]);
    let all = bootstrap(&cluster, &cluster.ids());
    let members: Vec<Member> = (0..3)
        .map(|_| Member::start(&all, "orders", "billing", &["--timeout-ms", "5000"]))
        .collect();
    wait_stable(&all, "billing", 3, 12);
    let offsets = cluster.partition(CONSUMER_OFFSETS_TOPIC, 0);
    assert_eq!(
        offsets.replicas.len(),
        3,
        "__consumer_offsets is replicated: {offsets:?}"
    );
    let produced = produce(&all, "orders", "first", 1_200);
    let printed: Vec<String> = members
        .into_iter()
        .flat_map(|member| values(&member.finish()))
        .collect();
    assert_eq!(printed.len(), produced.len(), "no message printed twice");
    assert_eq!(printed.into_iter().collect::<BTreeSet<_>>(), produced);
    let (_, rows) = describe_rows(&all, "billing");
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|row| row[5] == "0"), "LAG 0: {rows:?}");

    let more = produce(&all, "orders", "second", 1_500);
    let part = Member::start(&all, "orders", "billing", &["--count", "500"]).finish();
    assert_eq!(part.len(), 500);
    let coordinator_partition = partition_for_group("billing", OFFSETS_PARTITIONS);
    let coordinator = cluster
        .partition(CONSUMER_OFFSETS_TOPIC, coordinator_partition)
        .leader;
    cluster.kill(coordinator);
    cluster.wait_partition(
        CONSUMER_OFFSETS_TOPIC,
        coordinator_partition,
        "a new coordinator",
        |meta| meta.leader >= 0 && meta.leader != coordinator,
    );
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != coordinator)
        .collect();
    let survivors = bootstrap(&cluster, &survivors);
    let rest = Member::start(&survivors, "orders", "billing", &["--timeout-ms", "5000"]).finish();
    let part: BTreeSet<String> = values(&part).into_iter().collect();
    let rest_values = values(&rest);
    assert_eq!(rest_values.len(), 1_000, "exactly what was not committed");
    let rest: BTreeSet<String> = rest_values.into_iter().collect();
    assert!(part.is_disjoint(&rest), "nothing committed is read again");
    assert_eq!(part.union(&rest).cloned().collect::<BTreeSet<_>>(), more);
    let _ = sluice_ok(&["group", "list", "--bootstrap", &survivors], b"");
}
