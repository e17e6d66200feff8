//! Percentiles of wall times.

use std::time::Duration;

use serde::Serialize;

/// Wall-time percentiles, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no samples: there is nothing to summarize.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let max = *sorted.last()?;
        Some(Summary {
            p50: percentile(&sorted, 50).as_secs_f64(),
            p90: percentile(&sorted, 90).as_secs_f64(),
            p99: percentile(&sorted, 99).as_secs_f64(),
            max: max.as_secs_f64(),
        })
    }
}

/// The nearest-rank percentile of non-empty `sorted`: a sample that was measured, never an
/// interpolation between two, which few samples would make meaningless.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The lower median of `values`: a value that was measured; None for none.
pub(super) fn lower_median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_medians() {
        assert_eq!(lower_median(vec![3, 1, 2]), Some(2));
        assert_eq!(lower_median(vec![4, 1, 3, 2]), Some(2));
        assert_eq!(lower_median(vec![]), None);
    }

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank() {
        let sorted = ms(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        assert_eq!(percentile(&sorted, 50), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 90), Duration::from_millis(90));
        assert_eq!(percentile(&sorted, 100), Duration::from_millis(100));
        assert_eq!(percentile(&sorted, 1), Duration::from_millis(10));
        let five = ms(&[1, 2, 3, 4, 5]);
        assert_eq!(percentile(&five, 50), Duration::from_millis(3));
        assert_eq!(percentile(&five, 90), Duration::from_millis(5));
    }

    #[test]
    fn summary_sorts_its_samples() {
        let summary = Summary::of(&ms(&[500, 100, 300, 200, 400])).unwrap();
        assert_eq!(summary, Summary { p50: 0.3, p90: 0.5, p99: 0.5, max: 0.5 });
        let one = Summary::of(&ms(&[250])).unwrap();
        assert_eq!(one, Summary { p50: 0.25, p90: 0.25, p99: 0.25, max: 0.25 });
        assert_eq!(Summary::of(&[]), None);
    }
}
