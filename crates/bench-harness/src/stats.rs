//! Order statistics over measured samples: the median, minimum and maximum
//! the report shows for each result, and the latency percentiles the
//! request-response clients report.
//!
//! Invariant: no function here panics or returns NaN for an empty input or
//! one holding NaN; an empty input has no statistics (`None`), and NaN
//! samples are ignored.

/// The median, minimum and maximum of a set of repetitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The middle value; the mean of the two middle values for an even count.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Summary {
    /// Summarizes `values`, ignoring NaN; `None` when nothing is left.
    #[must_use]
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            f64::midpoint(sorted[mid - 1], sorted[mid])
        };
        Some(Self { median, min, max })
    }
}

/// The `p`-th percentile (0 to 100) of samples already sorted in ascending
/// order, by the nearest-rank method: the smallest sample such that at least
/// `p` percent of the samples are less than or equal to it. `None` for no
/// samples; `p` is clamped to 0..=100.
#[must_use]
pub fn percentile_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "sample counts are far below 2^52 and the rank is clamped to the slice"
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// Latency percentiles of one client run, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// The median.
    pub p50_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
}

impl Latency {
    /// The percentiles of `samples_ns` (nanoseconds, any order; sorted in
    /// place); `None` for no samples.
    #[must_use]
    pub fn of_nanos(samples_ns: &mut [u64]) -> Option<Self> {
        samples_ns.sort_unstable();
        #[allow(
            clippy::cast_precision_loss,
            reason = "latencies in nanoseconds are far below 2^52"
        )]
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Self {
            p50_us: us(percentile_sorted(samples_ns, 50.0)?),
            p99_us: us(percentile_sorted(samples_ns, 99.0)?),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 10.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 3.5,
                min: 1.0,
                max: 10.0
            }
        );
    }

    #[test]
    fn summary_ignores_nan_and_has_none_for_nothing() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        let s = Summary::of(&[f64::NAN, 5.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 5.0,
                min: 5.0,
                max: 5.0
            }
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&samples, 50.0), Some(50));
        assert_eq!(percentile_sorted(&samples, 99.0), Some(99));
        assert_eq!(percentile_sorted(&samples, 100.0), Some(100));
        assert_eq!(percentile_sorted(&samples, 0.0), Some(1));
        assert_eq!(percentile_sorted(&[7], 99.0), Some(7));
        assert_eq!(percentile_sorted(&[], 50.0), None);
        assert_eq!(percentile_sorted(&samples, 250.0), Some(100));
    }

    #[test]
    fn p99_sees_the_tail() {
        // 98 fast samples and two slow ones: the median stays fast, the
        // 99th percentile lands in the tail.
        let mut samples = vec![20_000u64; 98];
        samples.extend([900_000, 1_000_000]);
        let latency = Latency::of_nanos(&mut samples).unwrap();
        assert!((latency.p50_us - 20.0).abs() < 1e-9);
        assert!((latency.p99_us - 900.0).abs() < 1e-9);
        assert_eq!(Latency::of_nanos(&mut []), None);
    }
}
