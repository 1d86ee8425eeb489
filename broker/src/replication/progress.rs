//! Bytes left of the reassignments in progress, for the ListPartitionReassignments answer (and
//! so `sluice cluster info` and `topic reassign --wait`).
//!
//! Only the broker a replica is added on knows how far it is (its replica fetcher estimates it
//! and publishes `sluice_reassignment_partition_bytes_remaining` in its `/metrics`), so the
//! control thread answering the list reads the admin endpoint of every broker with an added
//! replica still catching up: one HTTP GET per such broker per answer, each bounded by
//! [`PROGRESS_READ_TIMEOUT_MS`] and [`PROGRESS_RESPONSE_BYTES_MAX`], all of them together by
//! [`PROGRESS_READ_DEADLINE_MS`]. Nothing is written to etcd. A broker that cannot be read (no
//! admin endpoint, down, slow) or has not measured its replica yet makes the partition's bytes
//! left unknown (-1), never wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use sluice_shard::metrics::REASSIGNMENT_PARTITION_BYTES_REMAINING;

use crate::cluster::reassign::ReassignmentStatus;
use crate::cluster::ClusterState;

/// Longest one broker's `/metrics` read may take (connect, send, read), milliseconds.
pub const PROGRESS_READ_TIMEOUT_MS: u64 = 500;

/// Longest all the reads of one answer may take together, milliseconds; brokers not read by
/// then count as unknown.
pub const PROGRESS_READ_DEADLINE_MS: u64 = 2_000;

/// Largest `/metrics` answer read from one broker, bytes.
pub const PROGRESS_RESPONSE_BYTES_MAX: u64 = 8 << 20;

/// Bytes left per (topic, partition) as one broker reports them for its added replicas.
pub type BrokerProgress = BTreeMap<(String, i32), u64>;

/// The replicas of `status` whose bytes left count: added and not in the ISR yet.
pub fn reporting_replicas(status: &ReassignmentStatus) -> impl Iterator<Item = i32> + '_ {
    status
        .adding
        .iter()
        .copied()
        .filter(|replica| status.catching_up.contains(replica))
}

/// Bytes left of one move: the sum over its added replicas still catching up of what their
/// brokers report; 0 when none is catching up; -1 when any of them did not report.
pub fn bytes_remaining(
    status: &ReassignmentStatus,
    reports: &BTreeMap<i32, BrokerProgress>,
) -> i64 {
    let key = (status.topic.clone(), status.partition);
    let mut total = 0i64;
    for replica in reporting_replicas(status) {
        let Some(bytes) = reports.get(&replica).and_then(|report| report.get(&key)) else {
            return -1;
        };
        total = total.saturating_add(i64::try_from(*bytes).unwrap_or(i64::MAX));
    }
    total
}

/// Reads the progress reports of `brokers` from their admin endpoints (see the module
/// documentation for the bounds); a broker that could not be read is left out.
pub fn read_reports(state: &ClusterState, brokers: BTreeSet<i32>) -> BTreeMap<i32, BrokerProgress> {
    let deadline = Instant::now() + Duration::from_millis(PROGRESS_READ_DEADLINE_MS);
    let mut reports = BTreeMap::new();
    for broker in brokers {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(addr) = state
            .brokers
            .get(&broker)
            .and_then(|info| info.admin_addr.as_deref())
        else {
            continue;
        };
        let timeout = left.min(Duration::from_millis(PROGRESS_READ_TIMEOUT_MS));
        match read_metrics(addr, timeout) {
            Ok(text) => {
                reports.insert(broker, parse_progress(&text));
            }
            Err(error) => {
                tracing::debug!(broker, addr, %error, "cannot read a broker's reassignment progress");
            }
        }
    }
    reports
}

/// `GET /metrics` from `addr`, the body as text.
fn read_metrics(addr: &str, timeout: Duration) -> std::io::Result<String> {
    let socket_addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "resolves to no address")
    })?;
    let mut stream = TcpStream::connect_timeout(&socket_addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream
        .take(PROGRESS_RESPONSE_BYTES_MAX)
        .read_to_string(&mut response)?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(body.to_string())
}

/// The per-partition bytes left in a broker's Prometheus text.
pub fn parse_progress(metrics: &str) -> BrokerProgress {
    let prefix = format!("{REASSIGNMENT_PARTITION_BYTES_REMAINING}{{topic=\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (topic, rest) = rest.split_once("\",partition=\"")?;
            let (partition, value) = rest.split_once("\"} ")?;
            Some((
                (topic.to_string(), partition.parse().ok()?),
                value.trim().parse().ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(adding: &[i32], catching_up: &[i32]) -> ReassignmentStatus {
        ReassignmentStatus {
            topic: "t".into(),
            partition: 3,
            replicas: vec![1, 2, 4, 5],
            target: vec![4, 5],
            adding: adding.to_vec(),
            removing: vec![1, 2],
            catching_up: catching_up.to_vec(),
            leader: 1,
        }
    }

    // Proves the progress lines of a broker's metrics are read back per partition (other
    // families and malformed lines ignored), and a move's bytes left sum its added replicas
    // still catching up: unknown when one did not report, 0 when all caught up.
    #[test]
    fn bytes_left_sum_the_reports_of_catching_up_replicas() {
        let text = format!(
            "# HELP x\n{name}{{topic=\"t\",partition=\"3\"}} 1000\n{name}{{topic=\"u\",partition=\"0\"}} 7\n\
             sluice_reassignment_bytes_remaining{{shard=\"0\"}} 1007\n{name}{{topic=\"t\",partition=\"x\"}} 5\n",
            name = REASSIGNMENT_PARTITION_BYTES_REMAINING
        );
        let four = parse_progress(&text);
        assert_eq!(
            four,
            [(("t".to_string(), 3), 1000), (("u".to_string(), 0), 7)].into()
        );
        let five: BrokerProgress = [(("t".to_string(), 3), 24)].into();
        let reports: BTreeMap<i32, BrokerProgress> = [(4, four), (5, five)].into();
        assert_eq!(bytes_remaining(&status(&[4, 5], &[4, 5]), &reports), 1024);
        assert_eq!(bytes_remaining(&status(&[4, 5], &[4]), &reports), 1000);
        assert_eq!(bytes_remaining(&status(&[4, 5], &[]), &reports), 0);
        let only_four: BTreeMap<i32, BrokerProgress> = [(4, reports[&4].clone())].into();
        assert_eq!(bytes_remaining(&status(&[4, 5], &[4, 5]), &only_four), -1);
    }
}
