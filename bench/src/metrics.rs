//! A server's Prometheus text page (shardcast's `/metrics`) read over plain HTTP, and
//! how chosen series moved between two readings.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::clock::{mono_ns, secs_between};
use crate::url::Url;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One reading: the time it was answered and every sample as (series, value); a
/// series is its name with its labels as written.
pub struct Reading {
    pub at_ns: u64,
    pub samples: Vec<(String, f64)>,
}

impl Reading {
    /// The sample of `series` as written; a bare name with no such sample sums the
    /// samples of that metric over all its labels (e.g. every `reason`).
    pub fn get(&self, series: &str) -> Option<f64> {
        if let Some(&(_, v)) = self.samples.iter().find(|(s, _)| s == series) {
            return Some(v);
        }
        let labelled = |s: &str| {
            s.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{'))
        };
        self.samples
            .iter()
            .filter(|(s, _)| labelled(s))
            .map(|&(_, v)| v)
            .reduce(|a, b| a + b)
    }
}

/// GETs the page (HTTP/1.0, one connection per reading).
pub fn scrape(url: &Url) -> anyhow::Result<Reading> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(url.addr), TIMEOUT)
        .with_context(|| format!("metrics: cannot connect to {}", url.authority))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {} HTTP/1.0\r\nHost: {}\r\n\r\n",
        url.path, url.authority
    )?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .context("metrics: reading the answer")?;
    let at_ns = mono_ns();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("metrics: answer without a body"))?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("metrics: {status:?}");
    }
    Ok(Reading {
        at_ns,
        samples: parse(body),
    })
}

/// The samples of a text exposition: `series value [timestamp]` lines.
fn parse(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            // Labels may hold spaces: the series ends at the last `}` if any.
            let end = l
                .rfind('}')
                .map_or_else(|| l.find(' ').unwrap_or(l.len()), |p| p + 1);
            let value = l[end..].split_whitespace().next()?.parse().ok()?;
            Some((l[..end].to_string(), value))
        })
        .collect()
}

/// How one series moved between two readings.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub series: String,
    pub start: Option<f64>,
    pub end: Option<f64>,
    /// end − start, and that per second (meaningful for counters).
    pub delta: Option<f64>,
    pub per_sec: Option<f64>,
}

/// The changes of `series` from `a` to `b`, and the seconds between the readings.
pub fn changes(a: &Reading, b: &Reading, series: &[String]) -> (f64, Vec<Change>) {
    let secs = secs_between(a.at_ns, b.at_ns);
    let out = series
        .iter()
        .map(|s| {
            let (start, end) = (a.get(s), b.get(s));
            let delta = start.zip(end).map(|(x, y)| y - x);
            Change {
                series: s.clone(),
                start,
                end,
                delta,
                per_sec: delta.filter(|_| secs > 0.0).map(|d| d / secs),
            }
        })
        .collect();
    (secs, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_exposition() {
        let page = "# HELP a x\n# TYPE a counter\na 12\nb{k=\"v w\"} 3.5 1700000000\n\nc NaN\n";
        let s = parse(page);
        assert_eq!(s[0], ("a".to_string(), 12.0));
        assert_eq!(s[1], ("b{k=\"v w\"}".to_string(), 3.5));
        assert!(s[2].1.is_nan());
        let reading = |at_ns: u64, v: f64| Reading {
            at_ns,
            samples: vec![("a".into(), v)],
        };
        let (r0, r1) = (reading(0, 10.0), reading(2_000_000_000, 40.0));
        let (secs, ch) = changes(&r0, &r1, &["a".into(), "zz".into()]);
        assert_eq!(secs, 2.0);
        assert_eq!(ch[0].delta, Some(30.0));
        assert_eq!(ch[0].per_sec, Some(15.0));
        assert_eq!(ch[1].delta, None);
        let labelled = Reading {
            at_ns: 0,
            samples: parse("d{r=\"x\"} 2\nd{r=\"y\"} 3\ndd 7\n"),
        };
        assert_eq!(labelled.get("d"), Some(5.0));
        assert_eq!(labelled.get("d{r=\"y\"}"), Some(3.0));
        assert_eq!(labelled.get("e"), None);
    }
}
