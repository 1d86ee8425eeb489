//! Retry decisions, free of I/O and clocks: the caller passes the time and the randomness in, so
//! every rule is tested deterministically.
//!
//! - [`Backoff`]: exponential backoff with a cap and jitter (Kafka's `retry.backoff.ms` and
//!   `retry.backoff.max.ms`, KIP-580), so clients that failed together do not retry in lockstep.
//! - [`produce_retry`]: whether a produce batch that failed is sent again, and when. Retriable
//!   errors (leadership moves, lost connections, timeouts, not enough replicas) are retried after
//!   a metadata refresh and a backoff for as long as the batch is younger than the producer's
//!   `delivery_timeout_ms` (Kafka's `delivery.timeout.ms`); anything else fails the batch.
//! - [`PartitionRetry`]: a consumer's per-partition state: a retriable fetch failure holds the
//!   partition back for a backoff and never fails the poll; other errors do.
//!
//! Retrying keeps a partition's order because the producer requeues a failed batch in front of
//! the newer ones (see `accumulator`). Idempotent producers (several requests in flight,
//! sequence numbers) extend these rules with `idempotence::classify`; they do not replace them.

use std::time::{Duration, Instant};

use crate::error::ClientError;

/// Part of a backoff that jitter may take away: a delay is drawn from
/// [(1 - JITTER_FRACTION) * d, d], as Kafka's clients do.
pub(crate) const JITTER_FRACTION: f64 = 0.2;

/// Exponential backoff: `base_ms` before the first retry, doubled for each further one, capped
/// at `max_ms`, minus up to `JITTER_FRACTION` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Wait before the first retry, in milliseconds.
    pub(crate) base_ms: u64,
    /// Longest wait, in milliseconds, however many retries came before.
    pub(crate) max_ms: u64,
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first). `jitter` is a random number in
    /// [0, 1): 0 gives the full delay, values near 1 take `JITTER_FRACTION` of it away.
    pub(crate) fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 1_u64 << attempt.min(32);
        let full_ms = self
            .base_ms
            .saturating_mul(factor)
            .min(self.max_ms.max(self.base_ms));
        let jitter = jitter.clamp(0.0, 1.0);
        // The product is at most `full_ms`, so the cast back loses nothing but the fraction.
        let taken_ms = (full_ms as f64 * JITTER_FRACTION * jitter) as u64;
        Duration::from_millis(full_ms - taken_ms.min(full_ms))
    }
}

/// What to do with a produce batch whose send failed.
#[derive(Debug)]
pub(crate) enum RetryDecision {
    /// Send it again, not before this instant (after a metadata refresh).
    RetryAt(Instant),
    /// Fail its records with this error.
    Fail(ClientError),
}

/// One failed produce batch, as the retry rule sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailedBatch<'a> {
    /// Its topic.
    pub(crate) topic: &'a str,
    /// Its partition.
    pub(crate) partition: i32,
    /// Sends that failed before this one.
    pub(crate) attempts: u32,
    /// When its first record was added: the delivery timeout counts from here.
    pub(crate) created_at: Instant,
}

/// The producer's retry bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProduceRetryPolicy {
    /// From the batch's first record to its last retry.
    pub(crate) delivery_timeout: Duration,
    /// Retries of one batch, at most.
    pub(crate) retries_max: u32,
    /// Waits between retries.
    pub(crate) backoff: Backoff,
}

/// Decides whether a batch whose send failed with `error` at `now` is retried: only retriable
/// errors are, at most `retries_max` times, and only while the retry would start before the
/// batch's delivery deadline (`created_at + delivery_timeout`). A batch given up for its
/// deadline fails with `DeliveryTimeout`, which names the last error; one out of retries fails
/// with the error itself.
pub(crate) fn produce_retry(
    batch: FailedBatch<'_>,
    error: &ClientError,
    now: Instant,
    policy: ProduceRetryPolicy,
    jitter: f64,
) -> RetryDecision {
    if !error.is_retriable() || batch.attempts >= policy.retries_max {
        return RetryDecision::Fail(error.duplicate());
    }
    let (delivery_timeout, backoff) = (policy.delivery_timeout, policy.backoff);
    let deadline = batch.created_at + delivery_timeout;
    let retry_at = now + backoff.delay(batch.attempts, jitter);
    if retry_at >= deadline {
        return RetryDecision::Fail(delivery_timeout_error(batch, error.to_string(), now));
    }
    RetryDecision::RetryAt(retry_at)
}

/// The error of a batch whose delivery timeout passed at `now`, naming what failed it last.
pub(crate) fn delivery_timeout_error(
    batch: FailedBatch<'_>,
    last_error: String,
    now: Instant,
) -> ClientError {
    ClientError::DeliveryTimeout {
        topic: batch.topic.to_string(),
        partition: batch.partition,
        elapsed_ms: u64::try_from(now.duration_since(batch.created_at).as_millis())
            .unwrap_or(u64::MAX),
        attempts: batch.attempts + 1,
        last_error,
    }
}

/// A consumer's retry state for one assigned partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PartitionRetry {
    /// Fetches that failed in a row with a retriable error.
    pub(crate) failures: u32,
    /// Not fetched again before this instant.
    pub(crate) not_before: Option<Instant>,
}

impl PartitionRetry {
    /// True when the partition may be fetched at `now`.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|not_before| not_before <= now)
    }

    /// A fetch of the partition succeeded: forget earlier failures.
    pub(crate) fn succeeded(&mut self) {
        *self = PartitionRetry::default();
    }

    /// A fetch of the partition failed at `now`. A retriable error holds the partition back
    /// for a backoff (the caller refreshes metadata meanwhile) and is never passed on, however
    /// long it lasts: a consumer outlives leader failovers, as Kafka's does. Any other error is
    /// returned, to fail the poll.
    pub(crate) fn failed(
        &mut self,
        error: ClientError,
        now: Instant,
        backoff: Backoff,
        jitter: f64,
    ) -> Result<(), ClientError> {
        if !error.is_retriable() {
            return Err(error);
        }
        self.not_before = Some(now + backoff.delay(self.failures, jitter));
        self.failures = self.failures.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::api::ErrorCode;

    const BACKOFF: Backoff = Backoff {
        base_ms: 100,
        max_ms: 1_000,
    };

    fn policy(delivery_timeout: Duration) -> ProduceRetryPolicy {
        ProduceRetryPolicy {
            delivery_timeout,
            retries_max: u32::MAX,
            backoff: BACKOFF,
        }
    }

    fn not_leader() -> ClientError {
        ClientError::Broker {
            code: ErrorCode::NotLeaderOrFollower,
            message: "produce t-0".into(),
        }
    }

    fn batch(attempts: u32, created_at: Instant) -> FailedBatch<'static> {
        FailedBatch {
            topic: "t",
            partition: 0,
            attempts,
            created_at,
        }
    }

    // Proves the backoff doubles per attempt from its base, stops at its cap (even for huge
    // attempt numbers), and that jitter only shortens a delay, by at most JITTER_FRACTION.
    #[test]
    fn backoff_doubles_caps_and_jitters_down() {
        let delays: Vec<u64> = (0..6)
            .map(|attempt| BACKOFF.delay(attempt, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(BACKOFF.delay(u32::MAX, 0.0), Duration::from_millis(1_000));
        let jittered = BACKOFF.delay(2, 0.999_999).as_millis() as u64;
        assert!((320..=400).contains(&jittered), "{jittered}");
        let tiny_cap = Backoff {
            base_ms: 50,
            max_ms: 10,
        };
        assert_eq!(tiny_cap.delay(3, 0.0), Duration::from_millis(50));
    }

    // Proves a retriable error is retried after the backoff while the delivery deadline allows,
    // and fails with DeliveryTimeout (naming the partition, the attempts and the last error)
    // once the retry would start at or after the deadline.
    #[test]
    fn produce_retries_until_the_delivery_timeout() {
        let created = Instant::now();
        let timeout = Duration::from_secs(120);
        let early = created + Duration::from_secs(10);
        match produce_retry(
            batch(0, created),
            &not_leader(),
            early,
            policy(timeout),
            0.0,
        ) {
            RetryDecision::RetryAt(at) => assert_eq!(at, early + Duration::from_millis(100)),
            other => panic!("expected a retry, got {other:?}"),
        }
        // A thousand failures later the backoff is capped, and the deadline still allows one.
        let later = created + Duration::from_secs(118);
        match produce_retry(
            batch(1_000, created),
            &not_leader(),
            later,
            policy(timeout),
            0.0,
        ) {
            RetryDecision::RetryAt(at) => assert_eq!(at, later + Duration::from_secs(1)),
            other => panic!("expected a retry, got {other:?}"),
        }
        let late = created + Duration::from_millis(119_500);
        match produce_retry(batch(7, created), &not_leader(), late, policy(timeout), 0.0) {
            RetryDecision::Fail(ClientError::DeliveryTimeout {
                topic,
                partition,
                elapsed_ms,
                attempts,
                last_error,
            }) => {
                assert_eq!((topic.as_str(), partition, attempts), ("t", 0, 8));
                assert_eq!(elapsed_ms, 119_500);
                assert!(last_error.contains("NotLeaderOrFollower"), "{last_error}");
            }
            other => panic!("expected a delivery timeout, got {other:?}"),
        }
    }

    // Proves non-retriable errors fail at once, whatever time is left, that lost connections
    // and timeouts count as retriable, and that a batch out of retries fails with its error.
    #[test]
    fn produce_fails_fatal_errors_at_once_and_retries_connection_errors() {
        let created = Instant::now();
        let timeout = Duration::from_secs(120);
        let too_large = ClientError::Broker {
            code: ErrorCode::MessageTooLarge,
            message: "produce t-0".into(),
        };
        match produce_retry(batch(0, created), &too_large, created, policy(timeout), 0.0) {
            RetryDecision::Fail(ClientError::Broker { code, .. }) => {
                assert_eq!(code, ErrorCode::MessageTooLarge)
            }
            other => panic!("expected the broker's error, got {other:?}"),
        }
        let lost = ClientError::ConnectionLost {
            addr: "b:1".into(),
            reason: "reset".into(),
        };
        let refused = ClientError::Connect {
            addr: "b:1".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let timed_out = ClientError::Timeout {
            op: "produce".into(),
        };
        for error in [lost, refused, timed_out] {
            let decision = produce_retry(batch(3, created), &error, created, policy(timeout), 0.5);
            assert!(
                matches!(decision, RetryDecision::RetryAt(_)),
                "{error} must be retried: {decision:?}"
            );
        }
        let no_retries = ProduceRetryPolicy {
            retries_max: 3,
            ..policy(timeout)
        };
        match produce_retry(batch(3, created), &not_leader(), created, no_retries, 0.0) {
            RetryDecision::Fail(ClientError::Broker { code, .. }) => {
                assert_eq!(code, ErrorCode::NotLeaderOrFollower)
            }
            other => panic!("out of retries must fail with the error, got {other:?}"),
        }
    }

    // Proves a consumer partition is held back after each retriable failure for a growing
    // backoff, never fails however many failures come, is ready again once the backoff passed,
    // forgets its failures on success, and passes non-retriable errors on.
    #[test]
    fn consumer_partitions_back_off_and_never_fail_on_retriable_errors() {
        let start = Instant::now();
        let mut retry = PartitionRetry::default();
        assert!(retry.ready(start));
        let mut now = start;
        for failure in 0..50_u32 {
            retry.failed(not_leader(), now, BACKOFF, 0.0).unwrap();
            let wait = BACKOFF.delay(failure, 0.0);
            assert!(!retry.ready(now + wait - Duration::from_millis(1)));
            assert!(retry.ready(now + wait));
            now += wait;
        }
        assert_eq!(retry.failures, 50);
        retry.succeeded();
        assert_eq!(retry, PartitionRetry::default());
        let out_of_range = ClientError::OffsetOutOfRange {
            topic: "t".into(),
            partition: 0,
            offset: 9,
            log_start_offset: 0,
            log_end_offset: 5,
        };
        assert!(matches!(
            retry.failed(out_of_range, now, BACKOFF, 0.0),
            Err(ClientError::OffsetOutOfRange { .. })
        ));
    }
}
