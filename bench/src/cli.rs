//! The command line: every subcommand and its arguments, as clap parses them. It sits
//! below the runs: each takes its own `…Args` from here and they share `ConnArgs`,
//! `PublishArgs`, `Rate` and `Mode`, so that no module needs the crate root (main only
//! dispatches).

use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::procstat;

/// The command line (`shardcast-bench --help`).
#[derive(Parser)]
#[command(
    name = "shardcast-bench",
    version,
    about = "Load generator for shardcast and other WebSocket push servers",
    after_help = "Every subcommand prints a human summary, or with --json one JSON object."
)]
pub struct Cli {
    /// Print one JSON object with the results instead of the summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// A name for this run, copied into the JSON output (used by `compare`).
    #[arg(long, global = true)]
    pub label: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Open idle WebSocket connections: connect rate, handshake latency, server memory per
    /// connection (and after pushes to them, with --traffic).
    Idle(IdleArgs),
    /// Fan messages out to shardcast subscribers through the HTTP API: delivery rate and latency.
    Fanout(FanoutArgs),
    /// Request rate and latency of the HTTP API (keep-alive).
    Api(ApiArgs),
    /// Client messages from N WebSocket clients (ws.client_send): ack rate and latency, and
    /// what the server's /metrics counted meanwhile (webhook deliveries).
    Chat(ChatArgs),
    /// Session resume (docs/api.md §8): N clients drop with a TCP reset, M pushes are sent
    /// in the gap, all N reconnect at once with their resume tokens: resumes/s, latency to
    /// the last missed frame, failures, server CPU over the burst.
    Resume(ResumeArgs),
    /// Fan-out against another server: WebSocket subscribe URL, HTTP POST publish URL (nchan).
    Generic(GenericArgs),
    /// Compare the JSON results of several runs (grouped by --label): medians and ratios.
    Compare(CompareArgs),
    /// Internal: a worker process of a multi-process run.
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Connection placement, shared by the subcommands that open subscribers.
#[derive(Args, Clone, Debug)]
pub struct ConnArgs {
    /// Processes holding the connections (default: as many as the open-file limit needs).
    #[arg(long)]
    pub procs: Option<usize>,
    /// Source addresses: `auto` (127.0.0.2-127.0.0.40 for a loopback target), `none`,
    /// or ranges/addresses such as 127.0.0.2-127.0.0.40,127.0.0.50.
    #[arg(long, default_value = "auto")]
    pub sources: String,
    /// WebSocket handshakes in progress at once, per process.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Server pid(s) to observe (CPU, VmRSS), comma-separated; their child processes
    /// are included (give nginx's master pid).
    #[arg(long, value_parser = parse_pids)]
    pub server_pid: Option<Pids>,
    /// Give up when the connections are not all open after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub setup_timeout: u64,
    /// Write one line per marked frame received (send ns, receive ns, connection) to
    /// PATH.N for worker process N (`scripts/receive_log.py` summarises them).
    #[arg(long, value_name = "PATH")]
    pub receive_log: Option<String>,
    /// Offer permessage-deflate in every upgrade request: without a value as browsers
    /// do (`permessage-deflate; client_max_window_bits`), or the
    /// `Sec-WebSocket-Extensions` value given. Compressed messages are inflated (one
    /// inflater per thread when the server agreed to server_no_context_takeover, one
    /// per connection otherwise) and the wire bytes per delivery reported.
    #[arg(long, value_name = "OFFER", num_args = 0..=1,
          default_missing_value = crate::deflate::BROWSER_OFFER)]
    pub deflate: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Pids(pub Vec<u32>);

fn parse_json_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    match n >= crate::json_body::MIN {
        true => Ok(n),
        false => Err(crate::json_body::TooSmall(n).to_string()),
    }
}

fn parse_pids(s: &str) -> Result<Pids, String> {
    procstat::parse_pids(s).map(Pids)
}

impl ConnArgs {
    pub fn server(&self) -> procstat::Server {
        procstat::Server::new(self.server_pid.clone().unwrap_or_default().0)
    }
}

/// How messages are published.
#[derive(Args, Clone, Debug)]
pub struct PublishArgs {
    /// Messages to publish.
    #[arg(long, default_value_t = 50)]
    pub messages: u64,
    /// Payload bytes per message (the send-time marker included, at least 22).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Publish a JSON object of exactly BYTES bytes (an order event: customer, items,
    /// prices, a note; the marker in its first field) instead of --payload's marker and
    /// filler, which deflates to nearly nothing. The same body for every server:
    /// shardcast gets it as the JSON value of `data`, `generic` in place of {payload}.
    #[arg(long, value_name = "BYTES", value_parser = parse_json_size)]
    pub payload_json: Option<usize>,
    /// Messages per second, or `max` (as fast as the server accepts them).
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// Publisher HTTP connections (keep-alive).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Requests in flight per publisher connection (HTTP pipelining; 1 = none).
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// A new HTTP connection per publish, closed after its answer, as the PHP SDK
    /// makes them (implies --depth 1; latencies include the connect).
    #[arg(long)]
    pub new_connection_per_request: bool,
    /// After the last publish answer, stop waiting once no message arrived for this long (ms).
    #[arg(long, default_value_t = 3000)]
    pub drain_timeout: u64,
    /// Pause between "all subscribed" and the first publish (ms).
    #[arg(long, default_value_t = 300)]
    pub settle: u64,
}

#[derive(Clone, Copy, Debug)]
pub enum Rate {
    Max,
    PerSec(f64),
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSec(r)),
            _ => Err(format!("{s:?}: want a positive number or `max`")),
        }
    }
}

impl Rate {
    pub fn per_sec(self) -> Option<f64> {
        match self {
            Rate::Max => None,
            Rate::PerSec(r) => Some(r),
        }
    }
}

#[derive(Args, Debug)]
pub struct IdleArgs {
    /// WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:7800/ws?systemId=demo")]
    pub url: String,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold the connections open after measuring.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// Ready at the 101 answer rather than at the first frame (servers without a welcome).
    #[arg(long)]
    pub no_welcome: bool,
    /// Wait this long (ms) after the last connection before reading the server's RSS.
    #[arg(long, default_value_t = 1000)]
    pub settle: u64,
    /// Then push through shardcast's HTTP API (at the URL's host, its systemId), one
    /// request in flight: `client:COUNT:BYTES` (COUNT send_to_client of BYTES of data to
    /// every connection) or `system:COUNT:BYTES` (COUNT send_to_system); the server's
    /// RSS growth per connection and its replay log are read --after-ms past the last
    /// frame.
    #[arg(long, value_name = "KIND:COUNT:BYTES")]
    pub traffic: Option<Traffic>,
    /// With --traffic: wait this long (ms) after the last frame before reading the
    /// server (two ws.ping_intervals let every connection answer a ping sent after it).
    #[arg(long, default_value_t = 5000)]
    pub after_ms: u64,
    #[command(flatten)]
    pub conns: ConnArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// send_to_group to a group every subscriber joined (bind_to_group).
    Group,
    /// send_to_system: every connection of the system.
    System,
    /// send_to_client: each message to one subscriber, round-robin.
    Client,
}

#[derive(Args, Debug)]
pub struct FanoutArgs {
    /// HTTP API base URL.
    #[arg(long, default_value = "http://127.0.0.1:7800")]
    pub api: String,
    /// WebSocket URL (default: <api>/ws?systemId=<system> as ws://).
    #[arg(long)]
    pub url: Option<String>,
    /// System id (header SystemId).
    #[arg(long, default_value = "demo")]
    pub system: String,
    /// Group joined by the subscribers in group mode.
    #[arg(long, default_value = "bench")]
    pub group: String,
    #[arg(long, value_enum, default_value_t = Mode::Group)]
    pub mode: Mode,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub conns: ConnArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Route {
    /// is_online of a well-formed but unknown clientId (answers code -1): parse, auth, id check.
    IsOnline,
    /// send_to_system with a small message: every subscriber of the system receives it.
    SendToSystem,
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// HTTP API base URL.
    #[arg(long, default_value = "http://127.0.0.1:7800")]
    pub api: String,
    /// System id (header SystemId).
    #[arg(long, default_value = "demo")]
    pub system: String,
    #[arg(long, value_enum, default_value_t = Route::IsOnline)]
    pub route: Route,
    /// Requests in all.
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Requests in flight per connection (HTTP pipelining; 1 = none).
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Client threads sharing the connections.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Server pid(s) to observe, comma-separated.
    #[arg(long, value_parser = parse_pids)]
    pub server_pid: Option<Pids>,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:7800/ws?systemId=demo")]
    pub url: String,
    /// Client connections.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Messages per second from all clients together, or `max` (as fast as the window
    /// allows).
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// Messages awaiting their ack, per client (on average: the clients share
    /// window × clients).
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// The messages are send_to_group to this group.
    #[arg(long, default_value = "bench")]
    pub group: String,
    /// The messages' `data` (sent as a JSON string).
    #[arg(long, default_value = "x")]
    pub data: String,
    /// After sending stops, stop waiting once no ack arrived for this long (ms).
    #[arg(long, default_value_t = 3000)]
    pub drain_timeout: u64,
    /// Metrics page read when the measuring window opens and when sending stops: a URL,
    /// `auto` (http://<host of --url>/metrics) or `none`.
    #[arg(long, default_value = "auto")]
    pub metrics: String,
    /// Series of the metrics page to report (repeatable).
    #[arg(long = "metric", default_values = [
        "shardcast_webhook_delivered_total",
        "shardcast_webhook_dropped_total",
        "shardcast_webhook_retries_total",
        "shardcast_webhook_queued",
    ])]
    pub metric: Vec<String>,
    /// Seconds from the start of sending to the opening of the metrics window (which
    /// closes when sending stops): lets queues and rates settle.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    #[command(flatten)]
    pub conns: ConnArgs,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// HTTP API base URL (pushes; its /metrics tells when the drops were seen).
    #[arg(long, default_value = "http://127.0.0.1:7800")]
    pub api: String,
    /// WebSocket URL (default: <api>/ws?systemId=<system> as ws://); the resume
    /// parameters are appended to it.
    #[arg(long)]
    pub url: Option<String>,
    /// System id (header SystemId).
    #[arg(long, default_value = "demo")]
    pub system: String,
    /// Clients (WebSocket connections) dropped and resumed.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Pushes (send_to_system) sent in the gap: the frames each resume must recover.
    #[arg(long, default_value_t = 5)]
    pub messages: usize,
    /// Pushes sent and processed before the drop; the last one's messageId is each
    /// client's `last` (0: `last` is empty).
    #[arg(long, default_value_t = 1)]
    pub before: usize,
    /// Bind every client to this group before the drop (each bind sends online notices
    /// to the members already in it unless the node has ws.notices = false).
    #[arg(long)]
    pub group: Option<String>,
    /// Reconnects in progress at once, per process (0: all at once).
    #[arg(long, default_value_t = 0)]
    pub reconnect_concurrency: usize,
    /// Seconds to wait for the server to count every dropped client as detached.
    #[arg(long, default_value_t = 60.0)]
    pub detach_timeout: f64,
    /// Seconds after which a reconnect not yet complete is a failure.
    #[arg(long, default_value_t = 60.0)]
    pub resume_timeout: f64,
    /// Pause between the last gap push and the reconnect burst (ms).
    #[arg(long, default_value_t = 300)]
    pub settle: u64,
    /// The server's metrics page: a URL, or `auto` (<api>/metrics).
    #[arg(long, default_value = "auto")]
    pub metrics: String,
    #[command(flatten)]
    pub conns: ConnArgs,
}

#[derive(Args, Debug)]
pub struct GenericArgs {
    /// WebSocket URL the subscribers connect to (e.g. ws://127.0.0.1:8080/sub/bench).
    #[arg(long)]
    pub subscribe: String,
    /// HTTP URL messages are POSTed to (e.g. http://127.0.0.1:8080/pub/bench).
    #[arg(long)]
    pub publish: String,
    /// Request body; `{payload}` is replaced by the payload (marker + padding).
    #[arg(long, default_value = "{payload}")]
    pub body: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Subscribers are ready at their first frame rather than at the 101 answer.
    #[arg(long)]
    pub welcome: bool,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[command(flatten)]
    pub publish_args: PublishArgs,
    #[command(flatten)]
    pub conns: ConnArgs,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Files holding JSON results (one object per line) of `idle` and `fanout`/`generic`
    /// runs made with --json --label NAME.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// The label ratios are relative to (default: the last label seen).
    #[arg(long)]
    pub baseline: Option<String>,
}

/// `--traffic client:COUNT:BYTES` (COUNT send_to_client to every connection) or
/// `system:COUNT:BYTES` (COUNT send_to_system), each with BYTES of `data`.
#[derive(Clone, Copy, Debug)]
pub struct Traffic {
    pub mode: Mode,
    pub count: u64,
    pub bytes: usize,
}

impl FromStr for Traffic {
    type Err = String;
    fn from_str(s: &str) -> Result<Traffic, String> {
        let bad = || format!("{s:?}: want client:COUNT:BYTES or system:COUNT:BYTES");
        let mut parts = s.split(':');
        let mode = match parts.next() {
            Some("client") => Mode::Client,
            Some("system") => Mode::System,
            _ => return Err(bad()),
        };
        let count = parts.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let bytes = parts.next().and_then(|b| b.parse().ok()).ok_or_else(bad)?;
        if parts.next().is_some() || count == 0 {
            return Err(bad());
        }
        Ok(Traffic { mode, count, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_traffic() {
        let t: Traffic = "client:4:60000".parse().unwrap();
        assert_eq!((t.mode, t.count, t.bytes), (Mode::Client, 4, 60000));
        let t: Traffic = "system:2500:40".parse().unwrap();
        assert_eq!((t.mode, t.count, t.bytes), (Mode::System, 2500, 40));
        for bad in [
            "group:1:1",
            "client:4",
            "client:0:5",
            "system:1:2:3",
            "client:x:1",
        ] {
            assert!(bad.parse::<Traffic>().is_err(), "{bad}");
        }
    }
}
