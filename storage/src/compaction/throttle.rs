//! The cleaner's I/O budget (Kafka's `Throttler`): bytes read and written are counted over a
//! short window, and the cleaner sleeps whenever it ran ahead of its bytes-per-second rate.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

/// Length of the measuring window: long enough to average out single large reads, short
/// enough that a burst never runs far ahead of the budget.
const WINDOW_MS: u64 = 300;

/// A bytes-per-second budget shared by one shard's cleaner. Lives on that shard only.
#[derive(Debug)]
pub(crate) struct IoThrottle {
    bytes_per_second_max: u64,
    window_start: Cell<Instant>,
    window_bytes: Cell<u64>,
}

impl IoThrottle {
    pub(crate) fn new(bytes_per_second_max: u64) -> IoThrottle {
        IoThrottle {
            bytes_per_second_max: bytes_per_second_max.max(1),
            window_start: Cell::new(Instant::now()),
            window_bytes: Cell::new(0),
        }
    }

    /// How long to pause after `bytes` more at `now`, so the window's rate stays within the
    /// budget; starts a new window when the current one is over.
    pub(crate) fn charge(&self, bytes: u64, now: Instant) -> Duration {
        let spent = self.window_bytes.get().saturating_add(bytes);
        self.window_bytes.set(spent);
        let elapsed = now.saturating_duration_since(self.window_start.get());
        let allowed_nanos =
            u128::from(spent) * 1_000_000_000 / u128::from(self.bytes_per_second_max);
        let allowed = Duration::from_nanos(u64::try_from(allowed_nanos).unwrap_or(u64::MAX));
        let pause = allowed.saturating_sub(elapsed);
        if elapsed + pause >= Duration::from_millis(WINDOW_MS) {
            self.window_start.set(now + pause);
            self.window_bytes.set(0);
        }
        pause
    }

    /// Counts `bytes` of cleaner I/O and sleeps as long as the budget requires.
    pub(crate) async fn consume(&self, bytes: u64) {
        let pause = self.charge(bytes, Instant::now());
        if !pause.is_zero() {
            glommio::timer::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the throttle asks for the pause that brings the rate back to the budget, and none
    // while the cleaner stays under it.
    #[test]
    fn pauses_bring_the_rate_to_the_budget() {
        let throttle = IoThrottle::new(1_000_000);
        let start = throttle.window_start.get();
        assert_eq!(throttle.charge(1_000, start), Duration::from_millis(1));
        assert_eq!(
            throttle.charge(99_000, start + Duration::from_millis(100)),
            Duration::ZERO
        );
        // 400 kB within the first 100 ms at 1 MB/s: 300 ms of pause are due.
        let pause = throttle.charge(300_000, start + Duration::from_millis(100));
        assert_eq!(pause, Duration::from_millis(300));
        // The window restarted after the pause: the next small charge needs no wait.
        assert_eq!(
            throttle.charge(10, start + Duration::from_millis(500)),
            Duration::ZERO
        );
    }
}
