//! ISR shrink and expand against real processes: followers frozen with SIGSTOP fall out of the
//! ISR, writes needing more in-sync replicas than remain are refused, and the followers come
//! back after SIGCONT.
#![allow(clippy::unwrap_used)]

mod support_cluster;

use sluice_client::{Acks, ClientError};
use sluice_net::ErrorCode;
use support_cluster::*;

const TOPIC: &str = "isr";

// Proves ISR shrink and expand and the min.insync.replicas guard: topic rf 3 with
// min.insync.replicas 2 and replica_lag_time_max_ms 5000; a follower stopped with SIGSTOP drops
// out of the ISR (its session TTL of 30 s outlives the test's stops, so only the leader's lag
// check can remove it) and acks=all still works with two in sync; with both followers stopped
// an acks=all write is refused with NotEnoughReplicas and never appended, while acks=1 works;
// after SIGCONT both return to the ISR, acks=all works again, every acknowledged record is at
// its offset and every replica's log is byte-identical below the high watermark.
#[test]
fn stopped_followers_leave_and_rejoin_the_isr() {
    let spec = ClusterSpec {
        session_ttl_s: 30,
        // Long enough that the follower still running is not dropped for a CPU stall of a few
        // seconds on a loaded machine; the stopped ones are dropped after it.
        replica_lag_time_max_ms: 5_000,
        ..ClusterSpec::default()
    };
    let mut cluster = Cluster::start(spec);
    cluster.create_topic(TOPIC, 1, 3, &[("min.insync.replicas", "2")]);
    let meta = cluster.partition(TOPIC, 0);
    let leader = meta.leader;
    let followers: Vec<i32> = meta
        .replicas
        .iter()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let mut acknowledged = vec![(send(&cluster, Acks::All, 0).unwrap(), 0)];

    cluster.node_mut(followers[0]).stop();
    cluster.wait_isr(TOPIC, 0, &[leader, followers[1]]);
    acknowledged.push((send(&cluster, Acks::All, 1).unwrap(), 1));

    cluster.node_mut(followers[1]).stop();
    cluster.wait_isr(TOPIC, 0, &[leader]);
    match send(&cluster, Acks::All, 2) {
        Err(ClientError::Broker {
            code: ErrorCode::NotEnoughReplicas,
            ..
        }) => {}
        other => panic!("acks=all with an ISR of 1 and min.insync.replicas 2 gave {other:?}"),
    }
    acknowledged.push((send(&cluster, Acks::Leader, 3).unwrap(), 3));

    cluster.node_mut(followers[0]).cont();
    cluster.node_mut(followers[1]).cont();
    cluster.wait_isr(TOPIC, 0, &meta.replicas);
    acknowledged.push((send(&cluster, Acks::All, 4).unwrap(), 4));

    let high_watermark = cluster.assert_replicas_identical(TOPIC, 0, &meta.replicas);
    let consumed = read_partition(cluster.client_config(), TOPIC, 0, high_watermark);
    let values: Vec<_> = consumed.iter().map(|(_, value)| value.clone()).collect();
    assert!(
        !values.contains(&Some(message_value(2))),
        "the refused acks=all record was appended: {consumed:?}"
    );
    for (offset, seq) in acknowledged {
        let found = consumed
            .iter()
            .find(|(consumed_offset, _)| *consumed_offset == offset)
            .map(|(_, value)| value.clone());
        assert_eq!(
            found,
            Some(Some(message_value(seq))),
            "record {seq} acknowledged at offset {offset} is not there"
        );
    }
}

/// Sends message `seq` to the leader with `acks`, without retries.
fn send(cluster: &Cluster, acks: Acks, seq: u64) -> Result<i64, ClientError> {
    send_once(cluster.client_config(), TOPIC, 0, acks, message_value(seq))
}
