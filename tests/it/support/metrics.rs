//! `/metrics` (Prometheus text format) parsed into samples. Metric names are matched
//! exactly — `shardcast_connections` is not a prefix of
//! `shardcast_connections_accepted_total` — and a metric a test asks for must be present:
//! a renamed or missing metric fails the test instead of reading as 0.

use std::fmt;
use std::time::{Duration, Instant};

use super::node::Node;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// One scrape of `/metrics`.
pub struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses Prometheus text: comment lines skipped; a sample is the metric name, then
    /// `{labels}` or a space, then the value.
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("metrics line without a value: {line:?}"));
            let name = &line[..name_end];
            let (labels, rest) = if line[name_end..].starts_with('{') {
                let close = line[name_end..]
                    .find('}')
                    .unwrap_or_else(|| panic!("unterminated labels: {line:?}"));
                (
                    parse_labels(&line[name_end + 1..name_end + close]),
                    &line[name_end + close + 1..],
                )
            } else {
                (Vec::new(), &line[name_end..])
            };
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("metrics line without a number: {line:?}"));
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// The sum of every sample of the metric named exactly `name`, or None when it has
    /// none.
    pub fn try_sum(&self, name: &str) -> Option<f64> {
        self.try_sum_where(name, &[])
    }

    /// The sum of every sample of the metric named exactly `name` (all label sets);
    /// panics when the metric is absent.
    pub fn sum(&self, name: &str) -> f64 {
        self.sum_where(name, &[])
    }

    /// The sum of the samples of `name` that carry every label of `labels`; panics when
    /// there is none.
    pub fn sum_where(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.try_sum_where(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample of metric {name} with labels {labels:?} in /metrics:\n{}",
                self.text
            )
        })
    }

    /// The sum of the samples of `name` that carry every label of `labels`, or None
    /// when there is none.
    pub fn try_sum_where(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            let has_all = labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v));
            if has_all {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `k="v",k2="v2"` (no escaped quotes inside values; shardcast's labels have none).
fn parse_labels(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .unwrap_or_else(|| panic!("bad label {p:?} in {{{s}}}"));
            (k.trim().to_string(), v.trim().trim_matches('"').to_string())
        })
        .collect()
}

impl Node {
    /// A scrape of `GET /metrics` (asserts HTTP 200).
    pub fn metrics(&self) -> Metrics {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics");
        Metrics::parse(&r.text())
    }

    /// The sum of the samples of `name` now; panics when the metric is absent.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics().sum(name)
    }

    /// Polls `/metrics` until the sum of `name` satisfies `ok`; that sum. Panics when the
    /// metric is absent, or naming `what` when `ok` does not hold within `timeout`.
    pub fn wait_metric(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            let v = m.sum(name);
            if ok(v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name} = {v} after {timeout:?}, expected {what}:\n{m}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn metric_names_are_matched_exactly_and_must_be_present() {
    let m = Metrics::parse(
        "# HELP shardcast_connections Open WebSocket connections.\n\
         # TYPE shardcast_connections gauge\n\
         shardcast_connections{worker=\"0\"} 2\n\
         shardcast_connections{worker=\"1\"} 1\n\
         shardcast_connections_accepted_total{worker=\"0\"} 7\n\
         shardcast_slow_consumers_closed_total 4\n\
         shardcast_http_errors_total{status=\"400\"} 1\n\
         shardcast_http_errors_total{status=\"408\"} 5\n",
    );
    assert_eq!(m.sum("shardcast_connections"), 3.0);
    assert_eq!(m.sum("shardcast_connections_accepted_total"), 7.0);
    assert_eq!(m.sum("shardcast_slow_consumers_closed_total"), 4.0);
    assert_eq!(
        m.sum_where("shardcast_http_errors_total", &[("status", "408")]),
        5.0
    );
    assert_eq!(m.try_sum("shardcast_connection"), None);
    assert_eq!(m.try_sum("shardcast_connections_accepted"), None);
    let absent = std::panic::catch_unwind(|| m.sum("shardcast_renamed_total"));
    assert!(absent.is_err(), "an absent metric must fail, not read as 0");
}
