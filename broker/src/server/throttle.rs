//! The reassignment throttle (sans-IO): replicas a reassignment adds on this broker catch up
//! within `reassignment_throttle_bytes_per_second`, so copying a partition to a new broker
//! does not starve producers and ordinary followers of disk and network.
//!
//! Each shard holds one [`TokenBucket`] with an equal share of the broker's rate. A throttled
//! partition (see [`is_throttled`]) is left out of a fetch round while its shard's bucket is
//! empty, asks for no more bytes than the bucket holds, and the bytes it receives are charged
//! (a whole batch larger than the tokens drives the bucket below zero, which the following
//! rounds wait out). ISR members and ordinary followers never touch the bucket.
//!
//! The clock is injected (`now`), so the bucket is tested without sleeping.

use std::time::{Duration, Instant};

use sluice_shard::ReplicaInfo;

/// How many seconds' worth of rate the bucket holds at most, in milliseconds: the largest
/// burst a throttled replica may fetch after a pause.
pub const THROTTLE_BURST_MS: u64 = 1_000;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Whether broker `node_id`'s replica of a partition described by `info` catches up under the
/// reassignment throttle: a reassignment is adding it and it is not in the ISR yet. Once it
/// joined the ISR it replicates like any member (the high watermark and acks=all wait for it).
pub fn is_throttled(info: &ReplicaInfo, node_id: i32) -> bool {
    info.adding.contains(&node_id) && !info.isr.contains(&node_id)
}

/// The share of `rate_bytes_per_second` (0: unlimited) one of `shard_count` shards gets;
/// `None` when unlimited. Never 0 for a set rate, so a tiny rate still makes progress.
pub fn shard_rate_bytes_per_second(rate_bytes_per_second: u64, shard_count: u32) -> Option<u64> {
    (rate_bytes_per_second > 0)
        .then(|| (rate_bytes_per_second / u64::from(shard_count.max(1))).max(1))
}

/// A token bucket of bytes, refilled at a fixed rate up to [`THROTTLE_BURST_MS`] of it.
#[derive(Debug)]
pub struct TokenBucket {
    rate_bytes_per_second: u64,
    capacity_bytes: i64,
    /// Below zero after a charge larger than what was available.
    tokens_bytes: i64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_bytes_per_second` (at least 1).
    pub fn new(rate_bytes_per_second: u64, now: Instant) -> TokenBucket {
        let rate_bytes_per_second = rate_bytes_per_second.max(1);
        let capacity = u128::from(rate_bytes_per_second) * u128::from(THROTTLE_BURST_MS) / 1_000;
        let capacity_bytes = i64::try_from(capacity).unwrap_or(i64::MAX).max(1);
        TokenBucket {
            rate_bytes_per_second,
            capacity_bytes,
            tokens_bytes: capacity_bytes,
            refilled_at: now,
        }
    }

    /// Adds the tokens earned since the last refill. Only whole bytes are added and the clock
    /// advances by exactly the time they took, so no fraction is lost between calls.
    fn refill(&mut self, now: Instant) {
        if self.tokens_bytes >= self.capacity_bytes {
            self.refilled_at = now.max(self.refilled_at);
            return;
        }
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let rate = u128::from(self.rate_bytes_per_second);
        let earned = elapsed.as_nanos() * rate / NANOS_PER_SECOND;
        let room =
            u128::try_from(self.capacity_bytes.saturating_sub(self.tokens_bytes)).unwrap_or(0);
        if earned >= room {
            self.tokens_bytes = self.capacity_bytes;
            self.refilled_at = now;
            return;
        }
        // earned < room <= 2 * i64::MAX, so it fits.
        self.tokens_bytes += i64::try_from(earned).unwrap_or(i64::MAX);
        let spent_nanos = earned * NANOS_PER_SECOND / rate;
        self.refilled_at += Duration::from_nanos(u64::try_from(spent_nanos).unwrap_or(u64::MAX));
    }

    /// Bytes that may be fetched now (0 while the bucket is empty or in debt).
    pub fn available_bytes(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.tokens_bytes).unwrap_or(0)
    }

    /// Takes `bytes` out of the bucket (received; it may go below zero).
    pub fn charge(&mut self, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.tokens_bytes = self.tokens_bytes.saturating_sub(bytes);
    }

    /// When at least one byte is available: `now` if it is already.
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens_bytes > 0 {
            return now;
        }
        let missing = u128::from(self.tokens_bytes.unsigned_abs()) + 1;
        let rate = u128::from(self.rate_bytes_per_second);
        let nanos = (missing * NANOS_PER_SECOND).div_ceil(rate);
        self.refilled_at + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Estimated bytes a replica still lacks: the records between its log end and the leader's,
/// at the average size of the records it holds. `None` while it holds no record to measure.
pub fn bytes_remaining_estimate(
    leader_log_end_offset: i64,
    log_start_offset: i64,
    log_end_offset: i64,
    log_size_bytes: u64,
) -> Option<u64> {
    let held = u128::try_from(log_end_offset.saturating_sub(log_start_offset)).ok()?;
    if held == 0 {
        return None;
    }
    let missing = u128::try_from(leader_log_end_offset.saturating_sub(log_end_offset)).unwrap_or(0);
    let estimate = missing * u128::from(log_size_bytes) / held;
    Some(u64::try_from(estimate).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a full bucket gives its burst, refuses once spent, refills at the rate (no
    // fraction lost over many small steps), caps at one burst, and that a charge beyond the
    // tokens is a debt the reported ready time waits out.
    #[test]
    fn bucket_refills_at_its_rate_and_carries_debt() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1_000, start);
        assert_eq!(
            bucket.available_bytes(start),
            1_000,
            "starts with one burst"
        );
        bucket.charge(1_000);
        assert_eq!(bucket.available_bytes(start), 0);
        assert_eq!(bucket.ready_at(start), start + Duration::from_millis(1));
        let mut now = start;
        for _ in 0..1_000 {
            now += Duration::from_micros(300);
            bucket.available_bytes(now);
        }
        assert_eq!(bucket.available_bytes(now), 300, "300 ms at 1000 B/s");
        let later = now + Duration::from_secs(60);
        assert_eq!(bucket.available_bytes(later), 1_000, "capped at the burst");
        bucket.charge(3_000);
        assert_eq!(bucket.available_bytes(later), 0, "in debt");
        assert_eq!(
            bucket.ready_at(later),
            later + Duration::from_millis(2_001),
            "2000 bytes of debt plus one byte at 1000 B/s"
        );
        let after_debt = later + Duration::from_millis(2_500);
        assert_eq!(bucket.available_bytes(after_debt), 500);
        assert_eq!(bucket.ready_at(after_debt), after_debt);
    }

    // Proves each shard gets an equal, never zero, share of a set rate and none of an
    // unlimited one.
    #[test]
    fn shards_share_the_rate() {
        assert_eq!(shard_rate_bytes_per_second(0, 4), None);
        assert_eq!(shard_rate_bytes_per_second(262_144, 2), Some(131_072));
        assert_eq!(shard_rate_bytes_per_second(3, 4), Some(1));
        assert_eq!(shard_rate_bytes_per_second(10, 0), Some(10));
    }

    fn info(replicas: &[i32], isr: &[i32], adding: &[i32]) -> ReplicaInfo {
        ReplicaInfo {
            leader: replicas[0],
            leader_epoch: 1,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            version: 1,
            min_insync_replicas: 1,
            broker_epochs: Vec::new(),
            adding: adding.to_vec(),
        }
    }

    // Proves only a replica a reassignment adds and that is not yet in the ISR is throttled:
    // ordinary followers, ISR members and an added replica that joined the ISR are not.
    #[test]
    fn only_added_replicas_outside_the_isr_are_throttled() {
        let moving = info(&[1, 2, 3], &[1, 2], &[3]);
        assert!(is_throttled(&moving, 3), "added, catching up");
        assert!(!is_throttled(&moving, 2), "ordinary follower in the ISR");
        let lagging = info(&[1, 2, 3], &[1], &[3]);
        assert!(
            !is_throttled(&lagging, 2),
            "ordinary follower out of the ISR"
        );
        let joined = info(&[1, 2, 3], &[1, 2, 3], &[3]);
        assert!(!is_throttled(&joined, 3), "added and caught up");
        let still = info(&[1, 2], &[1], &[]);
        assert!(!is_throttled(&still, 2), "no reassignment");
    }

    // Proves the estimate scales the missing records by the replica's average record size
    // and is unknown for an empty replica.
    #[test]
    fn bytes_remaining_scale_missing_records() {
        assert_eq!(
            bytes_remaining_estimate(1_000, 0, 250, 25_000),
            Some(75_000)
        );
        assert_eq!(bytes_remaining_estimate(1_000, 500, 1_000, 5_000), Some(0));
        assert_eq!(bytes_remaining_estimate(1_000, 100, 100, 0), None);
        assert_eq!(
            bytes_remaining_estimate(900, 0, 1_000, 10_000),
            Some(0),
            "ahead of the leader's answer"
        );
    }
}
