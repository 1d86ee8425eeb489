//! Rate control without coordinated omission.
//!
//! A fixed-rate producer has a schedule of intended send times, evenly spaced from the start of
//! the run. Latency is measured from the intended time, not from when the send actually
//! happened: when the producer, the client or the broker stalls, the messages that should have
//! gone out during the stall are sent late and their latency includes the wait. Measuring from
//! the actual send time would hide the stall (the "coordinated omission" Gil Tene describes),
//! because the load generator would simply have stopped offering load while the system was slow.
//!
//! The pacer is free of I/O: the producer loop feeds it the current time and it answers "send
//! now, as if at time T" or "wait until T".

/// Nanoseconds in one second.
const NS_PER_S: f64 = 1e9;

/// When each message of one producer is meant to be sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSchedule {
    start_ns: u64,
    /// Nanoseconds between intended sends; `None` means as fast as possible.
    interval_ns: Option<f64>,
}

impl RateSchedule {
    /// A schedule of `rate_per_s` messages per second starting at `start_ns`, shifted by
    /// `stagger` (0.0..1.0) of one interval so that the producers of a run do not all send at the
    /// same instant. A rate of 0 (or less) means as fast as possible.
    pub fn fixed(rate_per_s: f64, start_ns: u64, stagger: f64) -> RateSchedule {
        if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
            return RateSchedule::max_rate(start_ns);
        }
        let interval_ns = NS_PER_S / rate_per_s;
        let offset_ns = (stagger.clamp(0.0, 1.0) * interval_ns) as u64;
        RateSchedule {
            start_ns: start_ns + offset_ns,
            interval_ns: Some(interval_ns),
        }
    }

    /// No schedule: every message is intended at the moment the producer is ready to send it.
    pub fn max_rate(start_ns: u64) -> RateSchedule {
        RateSchedule {
            start_ns,
            interval_ns: None,
        }
    }

    /// Intended send time of message `index` (ns since the run's epoch); for max rate, the start.
    pub fn intended_ns(&self, index: u64) -> u64 {
        match self.interval_ns {
            Some(interval_ns) => self.start_ns + (index as f64 * interval_ns) as u64,
            None => self.start_ns,
        }
    }

    /// Whether the schedule has a fixed rate.
    pub fn is_fixed_rate(&self) -> bool {
        self.interval_ns.is_some()
    }
}

/// What the producer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Send message `index` now; its latency counts from `intended_ns`.
    SendNow {
        /// Position of the message in the producer's schedule.
        index: u64,
        /// When it was meant to be sent (ns since the run's epoch).
        intended_ns: u64,
    },
    /// Nothing is due before `until_ns`.
    WaitUntil {
        /// When the next message is due (ns since the run's epoch).
        until_ns: u64,
    },
}

/// Walks a [`RateSchedule`] as time passes.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: RateSchedule,
    next_index: u64,
}

impl Pacer {
    /// A pacer at the start of `schedule`.
    pub fn new(schedule: RateSchedule) -> Pacer {
        Pacer {
            schedule,
            next_index: 0,
        }
    }

    /// Given the current time, says whether the next message is due. A producer that fell behind
    /// (a stall) gets `SendNow` for every overdue message in turn, each with its own intended time,
    /// so the stall shows as latency.
    pub fn poll(&mut self, now_ns: u64) -> Pace {
        let intended_ns = if self.schedule.is_fixed_rate() {
            self.schedule.intended_ns(self.next_index)
        } else {
            now_ns
        };
        if intended_ns > now_ns {
            return Pace::WaitUntil {
                until_ns: intended_ns,
            };
        }
        let index = self.next_index;
        self.next_index += 1;
        Pace::SendNow { index, intended_ns }
    }

    /// Messages handed out so far.
    pub fn sent(&self) -> u64 {
        self.next_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::LatencyHistogram;

    // Proves intended send times are evenly spaced at the requested rate from the (staggered)
    // start, by reading the first thousand times of a 1000 msg/s schedule.
    #[test]
    fn intended_times_are_evenly_spaced() {
        let schedule = RateSchedule::fixed(1_000.0, 5_000, 0.5);
        assert_eq!(schedule.intended_ns(0), 5_000 + 500_000);
        for index in 0..1_000 {
            assert_eq!(
                schedule.intended_ns(index + 1) - schedule.intended_ns(index),
                1_000_000
            );
        }
        let mut pacer = Pacer::new(schedule);
        assert_eq!(pacer.poll(0), Pace::WaitUntil { until_ns: 505_000 });
        assert_eq!(
            pacer.poll(505_000),
            Pace::SendNow {
                index: 0,
                intended_ns: 505_000
            }
        );
        assert_eq!(
            pacer.poll(505_001),
            Pace::WaitUntil {
                until_ns: 1_505_000
            }
        );
        assert_eq!(pacer.sent(), 1);
    }

    /// Drives a pacer over `messages` messages with a fake clock: each send takes `service_ns`,
    /// and before message `stall_at` the clock jumps by `stall_ns`. Returns the latencies
    /// measured from intended times and, for contrast, from actual send times.
    fn drive(
        messages: u64,
        service_ns: u64,
        stall_at: u64,
        stall_ns: u64,
    ) -> (LatencyHistogram, LatencyHistogram) {
        let mut pacer = Pacer::new(RateSchedule::fixed(1_000.0, 0, 0.0));
        let (mut corrected, mut naive) = (LatencyHistogram::new(), LatencyHistogram::new());
        let mut now_ns = 0;
        while pacer.sent() < messages {
            if pacer.sent() == stall_at {
                now_ns += stall_ns;
            }
            match pacer.poll(now_ns) {
                Pace::WaitUntil { until_ns } => now_ns = until_ns,
                Pace::SendNow { intended_ns, .. } => {
                    let acked_ns = now_ns + service_ns;
                    corrected.record_span_ns(intended_ns, acked_ns);
                    naive.record_span_ns(now_ns, acked_ns);
                }
            }
        }
        (corrected, naive)
    }

    // Proves coordinated-omission correction: a 200 ms stall in a 1000 msg/s run shows up as
    // latency up to 200 ms for the ~200 messages that were due during it, while timing from the
    // actual send would report only the 1 ms service time. Driven with a fake clock.
    #[test]
    fn stall_shows_as_latency() {
        let (steady, _) = drive(2_000, 1_000_000, u64::MAX, 0);
        assert!(
            steady.summary().max_ms <= 1.01,
            "steady max {}",
            steady.summary().max_ms
        );
        let (corrected, naive) = drive(2_000, 1_000_000, 1_000, 200_000_000);
        let summary = corrected.summary();
        assert_eq!(summary.count, 2_000);
        assert!(
            summary.max_ms >= 200.0 && summary.max_ms <= 202.0,
            "max {}",
            summary.max_ms
        );
        assert!(
            summary.p95_ms >= 90.0,
            "p95 {} should reflect the stall",
            summary.p95_ms
        );
        assert!(
            naive.summary().max_ms <= 1.01,
            "naive timing hides the stall"
        );
    }

    // Proves max-rate pacing never waits and uses the moment of sending as the intended time.
    #[test]
    fn max_rate_sends_at_once() {
        let mut pacer = Pacer::new(RateSchedule::fixed(0.0, 10, 0.3));
        assert_eq!(
            pacer.poll(77),
            Pace::SendNow {
                index: 0,
                intended_ns: 77
            }
        );
        assert_eq!(
            pacer.poll(78),
            Pace::SendNow {
                index: 1,
                intended_ns: 78
            }
        );
    }
}
