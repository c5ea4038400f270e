//! Counters for `/metrics`, one cache-line-aligned block per core.
//!
//! Each core writes only its own block (relaxed atomics, no sharing on the
//! hot path); `/metrics` sums or lists the blocks when it is read.

pub mod histogram;
pub mod process;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use histogram::Histogram;

use crate::api::error::Limit;
use crate::api::route::Route;
use crate::ws::deflate::InboundError;
use crate::ws::{CloseReason, Push};

/// HTTP statuses counted as protocol-level refusals.
pub const HTTP_ERRORS: [u16; 4] = [400, 408, 413, 431];

#[repr(align(128))]
#[derive(Default)]
pub struct CoreMetrics {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub pushed: AtomicU64,
    pub dropped: AtomicU64,
    link_frames_in: AtomicU64,
    link_bytes_in: AtomicU64,
    link_frames_out: AtomicU64,
    link_bytes_out: AtomicU64,
    link_reconnects: AtomicU64,
    link_drops: AtomicU64,
    link_timeouts: AtomicU64,
    link_open_failures: AtomicU64,
    link_refused: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    api: [[AtomicU64; 2]; Route::ALL.len()],
    http_errors: [AtomicU64; HTTP_ERRORS.len()],
    limit_hits: [AtomicU64; Limit::ALL.len()],
    api_duration: [Histogram; Route::ALL.len()],
    fanout_duration: Histogram,
    write_wait: Histogram,
    link_request_duration: Histogram,
    pub detached: AtomicU64,
    resumes: [AtomicU64; ResumeResult::ALL.len()],
    resume_expired: AtomicU64,
    resume_frames_dropped: AtomicU64,
    /// Bytes held by the core's replay log (docs/api.md §8.1).
    pub resume_kept_bytes: AtomicU64,
    /// Replay log entries dropped by `ws.resume_max_bytes`.
    pub resume_bound_dropped: AtomicU64,
    /// Resumes accepted by this core for a session of another.
    pub resume_handoffs: AtomicU64,
    /// Group history (docs/api.md §9): streams this core owns, the bytes
    /// they keep, pushes dropped by `history.max_bytes`, reads answered
    /// with and without every push asked for, and sends to a stream owned
    /// by another node.
    pub history_streams: AtomicU64,
    pub history_kept_bytes: AtomicU64,
    pub history_bound_dropped: AtomicU64,
    pub history_recovered: AtomicU64,
    pub history_not_recovered: AtomicU64,
    pub history_forwarded: AtomicU64,
    /// Connections that negotiated permessage-deflate (docs/api.md §10).
    deflate_connections: AtomicU64,
    deflate: DeflateCounters,
}

/// What permessage-deflate did (docs/api.md §10), node-wide sums.
#[derive(Default)]
struct DeflateCounters {
    /// Compressed client messages inflated, and their bytes before and after.
    in_messages: AtomicU64,
    in_compressed: AtomicU64,
    in_inflated: AtomicU64,
    /// Connections closed for a compressed message, by [`INBOUND_FAILURES`].
    in_failures: [AtomicU64; INBOUND_FAILURES.len()],
    /// Messages the node sent compressed, and their payload bytes before
    /// and after compression.
    out_messages: AtomicU64,
    out_plain: AtomicU64,
    out_compressed: AtomicU64,
    /// Pushes and notices left plain with compression on, by
    /// [`PLAIN_REASONS`].
    out_left_plain: [AtomicU64; PLAIN_REASONS.len()],
}

/// The `reason` labels of `shardcast_deflate_pushes_plain_total`.
const PLAIN_REASONS: [&str; 2] = ["small", "incompressible"];

/// The `reason` labels of `shardcast_deflate_inbound_failures_total`.
const INBOUND_FAILURES: [&str; 3] = ["too_large", "corrupt", "protocol"];

fn inbound_failure(e: &InboundError) -> usize {
    match e {
        InboundError::TooLarge => 0,
        InboundError::Corrupt => 1,
        InboundError::Protocol(_) => 2,
    }
}

/// What became of a resume (`shardcast_resumes_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeResult {
    /// The session came back.
    Resumed,
    /// A genuine token whose session is gone (expired, ended, or the token
    /// was superseded).
    Unknown,
    /// Not a token of this node and system (forged, another system's,
    /// another node's or an earlier run's), or in token mode without a
    /// connect token of the session's user.
    Invalid,
    /// The session's socket answered the takeover probe: it keeps the
    /// session, the resume became a new connection.
    Refused,
}

impl ResumeResult {
    pub const ALL: [ResumeResult; 4] = [Self::Resumed, Self::Unknown, Self::Invalid, Self::Refused];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resumed => "resumed",
            Self::Unknown => "unknown",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
        }
    }
}

impl CoreMetrics {
    pub fn closed(&self, reason: CloseReason) {
        let i = CloseReason::ALL.iter().position(|r| *r == reason);
        if let Some(i) = i {
            self.closed[i].fetch_add(1, Relaxed);
        }
    }

    pub fn api(&self, route: Route, ok: bool) {
        self.api[route as usize][usize::from(!ok)].fetch_add(1, Relaxed);
    }

    pub fn link_in(&self, bytes: usize) {
        self.link_frames_in.fetch_add(1, Relaxed);
        self.link_bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub fn link_out(&self, bytes: usize) {
        self.link_frames_out.fetch_add(1, Relaxed);
        self.link_bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub fn link_reconnect(&self) {
        self.link_reconnects.fetch_add(1, Relaxed);
    }

    pub fn link_drop(&self) {
        self.link_drops.fetch_add(1, Relaxed);
    }

    /// A frame from a peer failed to open (its link was closed).
    pub fn link_open_failure(&self) {
        self.link_open_failures.fetch_add(1, Relaxed);
    }

    /// A request from a peer refused: a core it needed was over its
    /// mailbox bound.
    pub fn link_refused(&self) {
        self.link_refused.fetch_add(1, Relaxed);
    }

    pub fn link_timeout(&self) {
        self.link_timeouts.fetch_add(1, Relaxed);
    }

    /// How long an API request took, from its parse to its answer.
    pub fn api_duration(&self, route: Route, d: Duration) {
        self.api_duration[route as usize].observe(d);
    }

    /// How long this core took to queue one push on its members.
    pub fn fanout_duration(&self, d: Duration) {
        self.fanout_duration.observe(d);
    }

    /// A connection's queue written out in full, `d` after its first frame
    /// was queued.
    pub fn write_wait(&self, d: Duration) {
        self.write_wait.observe(d);
    }

    /// How long a request to another node took to be answered.
    pub fn link_request_duration(&self, d: Duration) {
        self.link_request_duration.observe(d);
    }

    pub fn resume(&self, result: ResumeResult) {
        self.resumes[result as usize].fetch_add(1, Relaxed);
    }

    /// A detached session ended unresumed, dropping `frames` kept frames.
    pub fn resume_expired(&self, frames: usize) {
        self.resume_expired.fetch_add(1, Relaxed);
        self.resume_frames_dropped(frames);
    }

    /// Frames kept for a detached session that were dropped.
    pub fn resume_frames_dropped(&self, frames: usize) {
        if frames > 0 {
            self.resume_frames_dropped.fetch_add(frames as u64, Relaxed);
        }
    }

    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits[limit as usize].fetch_add(1, Relaxed);
    }

    /// A connection with deflate opened (`false`, `true`), ended (`true`,
    /// `false`), or resumed on a socket that agreed otherwise.
    pub fn deflate_connection(&self, before: bool, after: bool) {
        match (before, after) {
            (false, true) => self.deflate_connections.fetch_add(1, Relaxed),
            (true, false) => self.deflate_connections.fetch_sub(1, Relaxed),
            _ => 0,
        };
    }

    /// A compressed client message of `compressed` bytes inflated to `inflated`.
    pub fn inflated(&self, compressed: usize, inflated: usize) {
        let d = &self.deflate;
        d.in_messages.fetch_add(1, Relaxed);
        d.in_compressed.fetch_add(compressed as u64, Relaxed);
        d.in_inflated.fetch_add(inflated as u64, Relaxed);
    }

    /// A connection closed because of a compressed message.
    pub fn inbound_failed(&self, e: &InboundError) {
        self.deflate.in_failures[inbound_failure(e)].fetch_add(1, Relaxed);
    }

    /// A push or notice encoded with compression on: compressed once
    /// (counted as one message sent compressed), or left plain because it
    /// is under `min_size` or did not shrink.
    pub fn push_encoded(&self, push: &Push, min_size: usize) {
        match push.payload_sizes() {
            (plain, Some(compressed)) => self.compressed(plain, compressed),
            (plain, None) => {
                let reason = usize::from(plain >= min_size);
                self.deflate.out_left_plain[reason].fetch_add(1, Relaxed);
            }
        }
    }

    /// A message of `plain` payload bytes sent as `compressed`.
    pub fn compressed(&self, plain: usize, compressed: usize) {
        let d = &self.deflate;
        d.out_messages.fetch_add(1, Relaxed);
        d.out_plain.fetch_add(plain as u64, Relaxed);
        d.out_compressed.fetch_add(compressed as u64, Relaxed);
    }

    pub fn http_error(&self, status: u16) {
        if let Some(i) = HTTP_ERRORS.iter().position(|s| *s == status) {
            self.http_errors[i].fetch_add(1, Relaxed);
        }
    }
}

/// What the etcd membership thread counts (cluster mode), node-wide: records
/// read from etcd that the node refused (docs/cluster.md, "Keys").
#[derive(Default)]
pub struct MembershipMetrics {
    registry_entries_rejected: AtomicU64,
    node_records_rejected: AtomicU64,
}

impl MembershipMetrics {
    /// A `systems/<id>` entry that did not open or decode was ignored.
    pub fn registry_entry_rejected(&self) {
        self.registry_entries_rejected.fetch_add(1, Relaxed);
    }

    /// A `nodes/<id>` record that did not decode, or whose `addr` is not a
    /// node address, was ignored.
    pub fn node_record_rejected(&self) {
        self.node_records_rejected.fetch_add(1, Relaxed);
    }

    /// Registry entries rejected so far.
    pub fn registry_entries_rejected(&self) -> u64 {
        self.registry_entries_rejected.load(Relaxed)
    }

    /// Node records rejected so far.
    pub fn node_records_rejected(&self) -> u64 {
        self.node_records_rejected.load(Relaxed)
    }

    fn render(&self, out: &mut String) {
        let counters = [
            (
                "shardcast_registry_entries_rejected_total",
                "Registry entries (systems/<id> in etcd) ignored because they did not open under the cluster secret for their system id or did not decode; the node keeps the last good entry.",
                &self.registry_entries_rejected,
            ),
            (
                "shardcast_node_records_rejected_total",
                "Node records (nodes/<id> in etcd) ignored because they did not decode or their addr is not host:port.",
                &self.node_records_rejected,
            ),
        ];
        for (name, help, n) in counters {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", n.load(Relaxed));
        }
    }
}

type Field = fn(&CoreMetrics) -> &AtomicU64;
/// A `stage` label's value and its counter.
type Stage = (&'static str, Field);

/// The counters exposed per core (label `worker`): name, type, help, field.
const PER_CORE: [(&str, &str, &str, Field); 23] = [
    (
        "shardcast_connections",
        "gauge",
        "Open WebSocket connections.",
        |c| &c.connections,
    ),
    (
        "shardcast_deflate_connections",
        "gauge",
        "Connections that negotiated permessage-deflate (counted in shardcast_connections too).",
        |c| &c.deflate_connections,
    ),
    (
        "shardcast_connections_detached",
        "gauge",
        "Connections dropped without a goodbye, kept for a resume (counted in shardcast_connections too).",
        |c| &c.detached,
    ),
    (
        "shardcast_resume_kept_bytes",
        "gauge",
        "Bytes the core's replay log holds for resumes (frames it shares with the fan-out and entries), bounded by ws.resume_max_bytes.",
        |c| &c.resume_kept_bytes,
    ),
    (
        "shardcast_resume_bound_dropped_total",
        "counter",
        "Replay log entries dropped by ws.resume_max_bytes before every connection had them: resumes needing them are not recovered.",
        |c| &c.resume_bound_dropped,
    ),
    (
        "shardcast_history_streams",
        "gauge",
        "Group history streams this core owns (docs/api.md §9).",
        |c| &c.history_streams,
    ),
    (
        "shardcast_history_kept_bytes",
        "gauge",
        "Bytes of pushes this core keeps for group history (frames and entries), bounded by its share of history.max_bytes.",
        |c| &c.history_kept_bytes,
    ),
    (
        "shardcast_history_bound_dropped_total",
        "counter",
        "History pushes dropped by history.max_bytes (the oldest of the largest streams), before their rule's size or ttl.",
        |c| &c.history_bound_dropped,
    ),
    (
        "shardcast_history_recovered_total",
        "counter",
        "History reads (bind with history or since, recover) that got every push they asked for.",
        |c| &c.history_recovered,
    ),
    (
        "shardcast_history_not_recovered_total",
        "counter",
        "History reads that did not get every push they asked for (another epoch, or older than what is kept): recovered:false.",
        |c| &c.history_not_recovered,
    ),
    (
        "shardcast_history_forwarded_total",
        "counter",
        "Sends to a history group that entered this core and went to the stream's owner on another node.",
        |c| &c.history_forwarded,
    ),
    (
        "shardcast_connections_accepted_total",
        "counter",
        "WebSocket connections accepted.",
        |c| &c.accepted,
    ),
    (
        "shardcast_messages_pushed_total",
        "counter",
        "Frames queued to WebSocket clients.",
        |c| &c.pushed,
    ),
    (
        "shardcast_messages_dropped_total",
        "counter",
        "Frames not delivered because their connection was closed as a slow consumer.",
        |c| &c.dropped,
    ),
    (
        "shardcast_link_frames_in_total",
        "counter",
        "Frames received on links from other nodes.",
        |c| &c.link_frames_in,
    ),
    (
        "shardcast_link_bytes_in_total",
        "counter",
        "Bytes received on links from other nodes.",
        |c| &c.link_bytes_in,
    ),
    (
        "shardcast_link_frames_out_total",
        "counter",
        "Frames queued on links to other nodes.",
        |c| &c.link_frames_out,
    ),
    (
        "shardcast_link_bytes_out_total",
        "counter",
        "Bytes queued on links to other nodes.",
        |c| &c.link_bytes_out,
    ),
    (
        "shardcast_link_reconnects_total",
        "counter",
        "Link dial attempts that ended (link lost or refused).",
        |c| &c.link_reconnects,
    ),
    (
        "shardcast_link_queue_drops_total",
        "counter",
        "Frames dropped because a link's queue was full.",
        |c| &c.link_drops,
    ),
    (
        "shardcast_link_request_timeouts_total",
        "counter",
        "Requests to other nodes not answered within cluster.request_timeout.",
        |c| &c.link_timeouts,
    ),
    (
        "shardcast_link_open_failures_total",
        "counter",
        "Frames from other nodes that failed to open (altered, injected, replayed or out of order); each closed its link.",
        |c| &c.link_open_failures,
    ),
    (
        "shardcast_link_requests_refused_total",
        "counter",
        "Requests from other nodes refused because a core of this node was over its mailbox bound; the origin answers partial (or 503).",
        |c| &c.link_refused,
    ),
];

pub struct Metrics {
    cores: Box<[CoreMetrics]>,
    /// Shared with the membership thread (standalone: always zero).
    membership: Arc<MembershipMetrics>,
}

impl Metrics {
    pub fn new(cores: usize, membership: Arc<MembershipMetrics>) -> Self {
        Self {
            cores: (0..cores).map(|_| CoreMetrics::default()).collect(),
            membership,
        }
    }

    pub fn core(&self, id: usize) -> &CoreMetrics {
        &self.cores[id]
    }

    pub fn connections(&self) -> u64 {
        self.cores.iter().map(|c| c.connections.load(Relaxed)).sum()
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        for (name, kind, help, field) in PER_CORE {
            header(&mut out, name, kind, help);
            for (i, c) in self.cores.iter().enumerate() {
                let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", field(c).load(Relaxed));
            }
        }
        header(
            &mut out,
            "shardcast_connections_closed_total",
            "counter",
            "WebSocket connections closed, by reason.",
        );
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            let n = self.sum(|c| &c.closed[i]);
            let _ = writeln!(
                out,
                "shardcast_connections_closed_total{{reason=\"{}\"}} {n}",
                reason.as_str()
            );
        }
        let slow = self.sum(|c| &c.closed[CloseReason::SlowConsumer as usize]);
        header(
            &mut out,
            "shardcast_slow_consumers_closed_total",
            "counter",
            "Connections closed because their send queue passed ws.send_queue_bytes.",
        );
        let _ = writeln!(out, "shardcast_slow_consumers_closed_total {slow}");
        header(
            &mut out,
            "shardcast_api_requests_total",
            "counter",
            "API requests by route and result.",
        );
        for route in Route::ALL {
            for (j, result) in ["ok", "error"].iter().enumerate() {
                let n = self.sum(|c| &c.api[route as usize][j]);
                let _ = writeln!(
                    out,
                    "shardcast_api_requests_total{{route=\"{}\",result=\"{result}\"}} {n}",
                    route.name()
                );
            }
        }
        header(
            &mut out,
            "shardcast_http_errors_total",
            "counter",
            "Malformed, stalled or oversized HTTP requests refused, by status.",
        );
        for (i, status) in HTTP_ERRORS.iter().enumerate() {
            let n = self.sum(|c| &c.http_errors[i]);
            let _ = writeln!(
                out,
                "shardcast_http_errors_total{{status=\"{status}\"}} {n}"
            );
        }
        self.render_histograms(&mut out);
        self.render_resume(&mut out);
        self.render_deflate(&mut out);
        header(
            &mut out,
            "shardcast_limit_hits_total",
            "counter",
            "Requests refused by a limit of docs/api.md §7, by config key.",
        );
        for limit in Limit::ALL {
            let n = self.sum(|c| &c.limit_hits[limit as usize]);
            let key = limit.key();
            let _ = writeln!(out, "shardcast_limit_hits_total{{limit=\"{key}\"}} {n}");
        }
        self.membership.render(&mut out);
        out
    }

    fn render_resume(&self, out: &mut String) {
        header(
            out,
            "shardcast_resumes_total",
            "counter",
            "Resume attempts (docs/api.md §8), by result.",
        );
        for r in ResumeResult::ALL {
            let n = self.sum(|c| &c.resumes[r as usize]);
            let _ = writeln!(
                out,
                "shardcast_resumes_total{{result=\"{}\"}} {n}",
                r.as_str()
            );
        }
        let sums: [(&str, &str, Field); 3] = [
            (
                "shardcast_resume_handoffs_total",
                "Resumes accepted by one core and handed to the core that owns the session.",
                |c| &c.resume_handoffs,
            ),
            (
                "shardcast_resume_expired_total",
                "Detached sessions ended without a resume: their window passed, or ws.max_detached ended the oldest.",
                |c| &c.resume_expired,
            ),
            (
                "shardcast_resume_frames_dropped_total",
                "Frames kept for detached sessions that were dropped (buffer full, or the window ended).",
                |c| &c.resume_frames_dropped,
            ),
        ];
        for (name, help, field) in sums {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", self.sum(field));
        }
    }

    fn render_deflate(&self, out: &mut String) {
        let sums: [(&str, &str, Field); 2] = [
            (
                "shardcast_deflate_inbound_messages_total",
                "Compressed client messages inflated (permessage-deflate).",
                |c| &c.deflate.in_messages,
            ),
            (
                "shardcast_deflate_outbound_messages_total",
                "Messages the node compressed: each push or notice once, whatever its recipients, and each echo.",
                |c| &c.deflate.out_messages,
            ),
        ];
        for (name, help, field) in sums {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", self.sum(field));
        }
        let by_stage: [(&str, &str, [Stage; 2]); 2] = [
            (
                "shardcast_deflate_inbound_bytes_total",
                "Payload bytes of the compressed client messages inflated, as received (compressed) and inflated.",
                [
                    ("compressed", |c| &c.deflate.in_compressed),
                    ("inflated", |c| &c.deflate.in_inflated),
                ],
            ),
            (
                "shardcast_deflate_outbound_bytes_total",
                "Payload bytes of the messages sent compressed, before (plain) and after (compressed) compression.",
                [
                    ("plain", |c| &c.deflate.out_plain),
                    ("compressed", |c| &c.deflate.out_compressed),
                ],
            ),
        ];
        for (name, help, stages) in by_stage {
            header(out, name, "counter", help);
            for (stage, field) in stages {
                let _ = writeln!(out, "{name}{{stage=\"{stage}\"}} {}", self.sum(field));
            }
        }
        let name = "shardcast_deflate_pushes_plain_total";
        header(out, name, "counter", "Pushes and notices sent plain to every recipient although ws.compression is on: small (under ws.compression_min_size) or incompressible (they did not shrink).");
        for (i, reason) in PLAIN_REASONS.iter().enumerate() {
            let n = self.sum(|c| &c.deflate.out_left_plain[i]);
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
        let name = "shardcast_deflate_inbound_failures_total";
        header(out, name, "counter", "Connections closed for a compressed message: too_large (inflated past ws.max_client_message, or compressed past its bound: close 1009), corrupt (not valid deflate: 1007), protocol (RSV bits or framing against RFC 7692: 1002).");
        for (i, reason) in INBOUND_FAILURES.iter().enumerate() {
            let n = self.sum(|c| &c.deflate.in_failures[i]);
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
    }

    fn render_histograms(&self, out: &mut String) {
        let name = "shardcast_api_request_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "API requests by route, parse to answer.",
        );
        for route in Route::ALL {
            let labels = format!("route=\"{}\"", route.name());
            let parts = self.cores.iter().map(|c| &c.api_duration[route as usize]);
            histogram::render(out, name, &labels, parts);
        }
        let name = "shardcast_fanout_duration_seconds";
        let help = "Time a core took to queue one push on its members.";
        header(out, name, "histogram", help);
        histogram::render(out, name, "", self.cores.iter().map(|c| &c.fanout_duration));
        let name = "shardcast_write_wait_seconds";
        let help =
            "Time from a frame queued on a connection with nothing queued to the write that \
                    sent the queue out, by core: how far behind each core's writing is.";
        header(out, name, "histogram", help);
        for (i, c) in self.cores.iter().enumerate() {
            let labels = format!("worker=\"{i}\"");
            histogram::render(out, name, &labels, std::iter::once(&c.write_wait));
        }
        let name = "shardcast_link_request_duration_seconds";
        let help = "Requests to other nodes, sent to answered.";
        header(out, name, "histogram", help);
        let parts = self.cores.iter().map(|c| &c.link_request_duration);
        histogram::render(out, name, "", parts);
        header(out, "shardcast_build_info", "gauge", "The running version.");
        let version = env!("CARGO_PKG_VERSION");
        let _ = writeln!(out, "shardcast_build_info{{version=\"{version}\"}} 1");
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> &AtomicU64) -> u64 {
        self.cores.iter().map(|c| f(c).load(Relaxed)).sum()
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
