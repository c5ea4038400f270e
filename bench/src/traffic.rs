//! `idle --traffic`: once the connections are open, pushes through shardcast's HTTP API
//! (`send_to_client` to every connection, or `send_to_system`) over one keep-alive
//! connection with one request in flight, each carrying a marked JSON string as its
//! `data`; the connections count the frames (and answer the server's pings meanwhile),
//! and the run waits `--after-ms` past the last frame before the server is read again:
//! its memory, and what its replay log still keeps (`/metrics`).

use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::Serialize;

use crate::cli::{ConnArgs, Mode, Traffic};
use crate::clock::{mono_ns, secs_between};
use crate::fanout::{expected_frames, publish_and_count, shardcast_publisher, Body};
use crate::fleet::Fleet;
use crate::http_client::{Pool, PoolConfig};
use crate::ipc::ReadyReport;
use crate::procstat::rss_growth;
use crate::url::Url;
use crate::{metrics, report};

/// After the publisher is done, a worker stops waiting for frames after this long
/// without one.
pub const DRAIN_MS: u64 = 10_000;

/// The `/metrics` series read after the traffic (summed over the workers).
const KEPT: &str = "shardcast_resume_kept_bytes";
const BOUND_DROPPED: &str = "shardcast_resume_bound_dropped_total";

/// What the traffic did and what the server kept after it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrafficReport {
    pub traffic: String,
    pub requests: u64,
    pub accepted: u64,
    pub lost: u64,
    pub expected: u64,
    pub received: u64,
    /// Connections closed meanwhile.
    pub dropped: u64,
    /// First request → last frame received.
    pub secs: f64,
    /// How long after the last frame the server was read.
    pub after_secs: f64,
    /// The server's VmRSS before the first request, once every worker had its frames
    /// (or gave up), and `after_secs` past the last frame.
    pub server_rss_before: Option<u64>,
    pub server_rss_at_last_frame: Option<u64>,
    pub server_rss_after: Option<u64>,
    /// (RSS after − before) / connections open.
    pub bytes_per_connection: Option<f64>,
    /// `shardcast_resume_kept_bytes` and `shardcast_resume_bound_dropped_total`, summed
    /// over the workers, read after the server's memory.
    pub resume_kept_bytes: Option<f64>,
    pub resume_bound_dropped: Option<f64>,
    pub errors: Vec<(String, u64)>,
}

/// What `t` sends, for the report.
fn describe(t: Traffic) -> String {
    let bytes = t.bytes.max(crate::marker::MARKER_LEN);
    match t.mode {
        Mode::Client => format!(
            "{} × send_to_client of {bytes} B to every connection",
            t.count
        ),
        _ => format!("{} × send_to_system of {bytes} B", report::int(t.count)),
    }
}

/// `systemId` of a shardcast WebSocket URL's query.
fn system_of(path: &str) -> Option<&str> {
    let query = path.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("systemId="))
        .filter(|s| !s.is_empty())
}

/// Sends `t` to the `readies`' connections (at `url`'s node), waits until they got it
/// all (or gave up) and `after_ms` past the last frame, reading the server's memory
/// before, at the end and after.
pub fn run(
    fleet: &Fleet,
    readies: &[ReadyReport],
    t: Traffic,
    url: &Url,
    conns: &ConnArgs,
    after_ms: u64,
) -> anyhow::Result<TrafficReport> {
    let system = system_of(&url.path)
        .ok_or_else(|| anyhow!("--traffic: the URL has no systemId= in its query"))?;
    let api = Url::parse(&format!("http://{}/", url.authority), true)?;
    let client_mode = t.mode == Mode::Client;
    let ids: u64 = readies.iter().map(|r| r.client_ids.len() as u64).sum();
    let requests = if client_mode { t.count * ids } else { t.count };
    if requests == 0 {
        bail!("--traffic: no connection to send to");
    }
    let (expected, client_ids) = expected_frames(readies, requests, client_mode);
    let (make, judge) =
        shardcast_publisher(&api, system, "", t.mode, Body::Filler(t.bytes), client_ids);
    let src = crate::sources::parse(&conns.sources, api.is_loopback())?
        .last()
        .copied();
    let server = conns.server();
    let before = server.sample();
    let pool = Pool::new(
        PoolConfig {
            dst: api.addr,
            src,
            connections: 1,
            depth: 1,
            total: requests,
            rate: None,
            token_base: 0,
            fresh: false,
        },
        make,
        judge,
    );
    let (pool, results) = publish_and_count(fleet, &expected, pool, DRAIN_MS)?;
    let at_last_frame = server.sample();
    let p = pool.report();
    let mut r = TrafficReport {
        traffic: describe(t),
        requests: p.sent,
        accepted: p.succeeded,
        lost: p.lost,
        expected: expected.iter().sum(),
        errors: p.errors.clone(),
        ..TrafficReport::default()
    };
    let mut last_rx = 0;
    for w in &results {
        r.received += w.received;
        r.dropped += w.dropped;
        last_rx = last_rx.max(w.last_rx_ns);
        report::merge_errors(&mut r.errors, &w.errors);
    }
    if last_rx > p.first_send_ns && p.first_send_ns > 0 {
        r.secs = secs_between(p.first_send_ns, last_rx);
    }
    let from = if last_rx > 0 { last_rx } else { mono_ns() };
    let until = from + after_ms * 1_000_000;
    let now = mono_ns();
    if until > now {
        std::thread::sleep(Duration::from_nanos(until - now));
    }
    r.after_secs = secs_between(from, mono_ns());
    let after = server.sample();
    let opened = readies.iter().map(|w| w.opened).sum();
    r.server_rss_before = before.map(|s| s.rss);
    r.server_rss_at_last_frame = at_last_frame.map(|s| s.rss);
    r.server_rss_after = after.map(|s| s.rss);
    r.bytes_per_connection = rss_growth(before, after, opened);
    Ok(r)
}

impl TrafficReport {
    /// Reads the replay log's series of `url`'s node (left empty when it cannot be read).
    pub fn read_metrics(&mut self, url: &Url) {
        let page = Url::parse(&format!("http://{}/metrics", url.authority), true)
            .and_then(|u| metrics::scrape(&u));
        match page {
            Ok(m) => {
                self.resume_kept_bytes = m.get(KEPT);
                self.resume_bound_dropped = m.get(BOUND_DROPPED);
            }
            Err(e) => report::tally(&mut self.errors, format!("{e:#}")),
        }
    }

    /// The human summary's lines.
    pub fn print(&self) {
        println!(
            "  traffic     {}: {} requests ({} accepted, {} lost); {} of {} frames received \
             in {:.2} s{}",
            self.traffic,
            report::int(self.requests),
            report::int(self.accepted),
            report::int(self.lost),
            report::int(self.received),
            report::int(self.expected),
            self.secs,
            if self.dropped > 0 {
                format!("; {} connections dropped", report::int(self.dropped))
            } else {
                String::new()
            }
        );
        if let (Some(b), Some(l), Some(a), Some(pc)) = (
            self.server_rss_before,
            self.server_rss_at_last_frame,
            self.server_rss_after,
            self.bytes_per_connection,
        ) {
            println!(
                "  server RSS  {} → {} at the last frame → {} {:.2} s past it: {} per connection",
                report::bytes(b as f64),
                report::bytes(l as f64),
                report::bytes(a as f64),
                self.after_secs,
                report::bytes(pc)
            );
        }
        let or_dash = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".into(), f);
        println!(
            "  replay log  {KEPT} {}, {BOUND_DROPPED} {}",
            or_dash(self.resume_kept_bytes, &report::bytes),
            or_dash(self.resume_bound_dropped, &|v| report::int(v as u64))
        );
        report::print_errors(&self.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_of_the_query() {
        assert_eq!(system_of("/ws?systemId=bench"), Some("bench"));
        assert_eq!(system_of("/ws?a=1&systemId=x&b=2"), Some("x"));
        assert_eq!(system_of("/ws"), None);
        assert_eq!(system_of("/ws?systemId="), None);
    }
}
