//! Latency histograms with Prometheus names and base units (seconds).
//!
//! Each core observes into its own `Histogram` (relaxed atomics on its own
//! cache lines, as every counter of `CoreMetrics`); `/metrics` sums the
//! cores' buckets when it is read. Observing costs a bucket search over a
//! dozen bounds and two atomic adds.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 100 µs to 10 s.
pub const BOUNDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is over every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// Writes the `_bucket`, `_sum` and `_count` series of `name{labels}` for the
/// sum of `parts` (one per core). `labels` is empty or `key="value",…`.
pub fn render<'a>(
    out: &mut String,
    name: &str,
    labels: &str,
    parts: impl Iterator<Item = &'a Histogram> + Clone,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, bound) in BOUNDS.iter().map(Some).chain([None]).enumerate() {
        cumulative += parts
            .clone()
            .map(|h| h.buckets[i].load(Relaxed))
            .sum::<u64>();
        let le = bound.map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        );
    }
    let sum_ns: u64 = parts.map(|h| h.sum_ns.load(Relaxed)).sum();
    let braces = |l: &str| {
        if l.is_empty() {
            String::new()
        } else {
            format!("{{{l}}}")
        }
    };
    let sum = sum_ns as f64 / 1e9;
    let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
    let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_summed_over_parts() {
        let (a, b) = (Histogram::default(), Histogram::default());
        a.observe(Duration::from_micros(50));
        a.observe(Duration::from_millis(3));
        b.observe(Duration::from_secs(60));
        let mut out = String::new();
        render(&mut out, "x_seconds", "route=\"r\"", [&a, &b].into_iter());
        assert!(
            out.contains("x_seconds_bucket{route=\"r\",le=\"0.0001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"r\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"r\",le=\"10\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"r\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{route=\"r\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{route=\"r\"} 60.00305"), "{out}");
        let mut bare = String::new();
        render(&mut bare, "y_seconds", "", [&a].into_iter());
        assert!(bare.contains("y_seconds_bucket{le=\"+Inf\"} 2\n"), "{bare}");
        assert!(bare.contains("y_seconds_count 2\n"), "{bare}");
    }
}
