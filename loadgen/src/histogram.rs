//! Latency histograms (HdrHistogram, 1 µs to 60 s, 3 significant digits) and their summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Smallest latency the histograms resolve, in µs.
pub const LATENCY_US_MIN: u64 = 1;
/// Largest latency the histograms hold, in µs (60 s); longer ones are recorded as 60 s.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant decimal digits kept for every value.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Highest percentile on the plotted latency curves (log scale: 0, 90, 99, ... 99.999).
pub const CURVE_PERCENTILE_MAX: f64 = 99.999;
/// Points per decade of the plotted percentile axis.
const CURVE_POINTS_PER_DECADE: u32 = 20;

/// One latency histogram, in µs.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram covering 1 µs .. 60 s with 3 significant digits.
    pub fn new() -> LatencyHistogram {
        // The bounds are constants that satisfy hdrhistogram's rules (low >= 1, high >= 2 * low,
        // sigfig <= 5), so creation cannot fail.
        let inner = Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { inner }
    }

    /// Records a latency in µs, clamped into the histogram's range.
    pub fn record_us(&mut self, latency_us: u64) {
        self.inner
            .saturating_record(latency_us.clamp(LATENCY_US_MIN, LATENCY_US_MAX));
    }

    /// Records the latency from `from_ns` to `to_ns` (ns since the run's epoch); a negative span
    /// (clocks never run backwards here, but a foreign message could carry any value) counts as
    /// the smallest latency.
    pub fn record_span_ns(&mut self, from_ns: u64, to_ns: u64) {
        self.record_us(to_ns.saturating_sub(from_ns) / 1_000);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both histograms have the same constant bounds, so no value of `other` is out of range
        // and addition cannot fail; saturate anyway rather than lose a window's samples.
        if self.inner.add(&other.inner).is_err() {
            for value in other.inner.iter_recorded() {
                let count = value.count_at_value();
                let _ = self
                    .inner
                    .record_n(value.value_iterated_to().min(LATENCY_US_MAX), count);
            }
        }
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// The latency at `percentile` (0..=100), in ms.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.inner.is_empty() {
            return 0.0;
        }
        self.inner.value_at_percentile(percentile) as f64 / 1_000.0
    }

    /// avg, p50 .. p99.99 and max, in ms.
    pub fn summary(&self) -> LatencySummary {
        if self.inner.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.inner.len(),
            avg_ms: self.inner.mean() / 1_000.0,
            p50_ms: self.percentile_ms(50.0),
            p75_ms: self.percentile_ms(75.0),
            p95_ms: self.percentile_ms(95.0),
            p99_ms: self.percentile_ms(99.0),
            p999_ms: self.percentile_ms(99.9),
            p9999_ms: self.percentile_ms(99.99),
            max_ms: self.inner.max() as f64 / 1_000.0,
        }
    }

    /// Latency by percentile from 0 to [`CURVE_PERCENTILE_MAX`], evenly spaced on a log scale of
    /// `1 / (1 - percentile)`, for plotting; empty when there are no samples.
    pub fn percentile_curve(&self) -> Vec<PercentilePoint> {
        if self.inner.is_empty() {
            return Vec::new();
        }
        let decades = -(1.0 - CURVE_PERCENTILE_MAX / 100.0).log10();
        let steps = (decades * f64::from(CURVE_POINTS_PER_DECADE)).round() as u32;
        (0..=steps)
            .map(|step| {
                let x = decades * f64::from(step) / f64::from(steps);
                let percentile = (100.0 * (1.0 - 10f64.powf(-x))).min(CURVE_PERCENTILE_MAX);
                PercentilePoint {
                    percentile,
                    latency_ms: self.percentile_ms(percentile),
                }
            })
            .collect()
    }
}

/// One point of a latency-by-percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at that percentile, in ms.
    pub latency_ms: f64,
}

/// The figures OMB reports for one latency distribution, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        // Three significant digits: values agree to within 0.1 % (plus one unit at the bottom).
        (actual - expected).abs() <= expected * 0.001 + 0.001
    }

    // Proves percentiles, mean and max come out right for known samples, by recording the
    // latencies 1..=10000 µs once each and checking each reported figure.
    #[test]
    fn percentiles_of_known_samples() {
        let mut histogram = LatencyHistogram::new();
        for latency_us in 1..=10_000 {
            histogram.record_us(latency_us);
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 10_000);
        assert!(close(summary.avg_ms, 5.0005), "avg {}", summary.avg_ms);
        assert!(close(summary.p50_ms, 5.0), "p50 {}", summary.p50_ms);
        assert!(close(summary.p75_ms, 7.5), "p75 {}", summary.p75_ms);
        assert!(close(summary.p95_ms, 9.5), "p95 {}", summary.p95_ms);
        assert!(close(summary.p99_ms, 9.9), "p99 {}", summary.p99_ms);
        assert!(close(summary.p999_ms, 9.99), "p99.9 {}", summary.p999_ms);
        assert!(close(summary.max_ms, 10.0), "max {}", summary.max_ms);
    }

    // Proves out-of-range latencies are clamped rather than dropped or panicking, by recording
    // 0 µs and two minutes and reading back min and max.
    #[test]
    fn out_of_range_values_are_clamped() {
        let mut histogram = LatencyHistogram::new();
        histogram.record_us(0);
        histogram.record_us(120_000_000);
        histogram.record_span_ns(5_000, 1_000);
        let summary = histogram.summary();
        assert_eq!(summary.count, 3);
        assert!(close(summary.max_ms, 60_000.0), "max {}", summary.max_ms);
        assert!(close(summary.p50_ms, 0.001), "p50 {}", summary.p50_ms);
    }

    // Proves merging adds samples, by merging two windows and checking count and max.
    #[test]
    fn merge_adds_samples() {
        let mut first = LatencyHistogram::new();
        let mut second = LatencyHistogram::new();
        first.record_us(1_000);
        second.record_us(3_000);
        second.record_us(2_000);
        first.merge(&second);
        let summary = first.summary();
        assert_eq!(summary.count, 3);
        assert!(close(summary.max_ms, 3.0));
        assert!(close(summary.p50_ms, 2.0));
    }

    // Proves the percentile curve spans 0 to 99.999 in increasing order and never decreases in
    // latency, by building it from a spread of samples.
    #[test]
    fn percentile_curve_is_monotonic() {
        let mut histogram = LatencyHistogram::new();
        for latency_us in (1..=100_000).step_by(7) {
            histogram.record_us(latency_us);
        }
        let curve = histogram.percentile_curve();
        assert_eq!(curve.first().map(|p| p.percentile), Some(0.0));
        assert!(close(
            curve.last().map(|p| p.percentile).unwrap(),
            CURVE_PERCENTILE_MAX
        ));
        for pair in curve.windows(2) {
            assert!(pair[1].percentile > pair[0].percentile);
            assert!(pair[1].latency_ms >= pair[0].latency_ms);
        }
        assert!(LatencyHistogram::new().percentile_curve().is_empty());
    }
}
