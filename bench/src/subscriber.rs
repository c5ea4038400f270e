//! Many WebSocket subscriber connections driven by one thread through epoll.
//!
//! Each connection: non-blocking connect (from a source address), the upgrade request,
//! the 101 answer, then frames; how their bytes come and go (frames located from their
//! headers alone, pings answered with pongs so that long holds survive the server's
//! idle timeout, one read buffer per thread) is `ws_client`'s, shared with the
//! connections of `resume`. Here, what the frames mean: a data frame's payload is
//! searched for the send-time marker, never parsed as JSON (a compressed one once
//! `ws_client` has inflated it; the bytes it took on the wire are counted). The first
//! frame is the welcome when one is expected (its clientId is kept when asked).

use crate::envelope::code_is_zero;
use crate::histogram::Histogram;
use crate::ipc::ReadyReport;
use crate::marker;
use crate::poller::Poller;
use crate::receive_log::ReceiveLog;
use crate::report::tally;
use crate::setup::{Conns, Opening};
use crate::ws_client::{self, Dial, Frame, Link, Outcome, State, WsConns};
use shardcast::ws::frame as wsframe;

#[derive(Clone, Debug)]
pub struct SubConfig {
    pub dial: Dial,
    /// Ready at the first frame (shardcast's welcome) rather than at the 101.
    pub want_welcome: bool,
    /// Keep each welcome's clientId.
    pub capture_ids: bool,
    /// Marked frames are acks of client messages (`chat`): count those whose code is
    /// not 0 as refused.
    pub acks: bool,
}

#[derive(Default)]
struct Conn {
    /// The link goes from `Upgrading` to `Open` (never `Welcome`).
    link: Link,
    ready: bool,
    started_ns: u64,
}

/// What the connections saw. Traffic counters are reset when measuring starts.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// What opening the connections counted (given in the ready report).
    pub opening: Opening,
    /// Closed by the server (or the network) after being ready.
    pub dropped: u64,
    /// Data frames carrying a marker, and their latency.
    pub marked: u64,
    /// Marked acks refused (code not 0), when `acks` is set.
    pub refused: u64,
    pub latency: Histogram,
    pub first_rx_ns: u64,
    pub last_rx_ns: u64,
    /// Other data frames (welcome excluded): notices and the like.
    pub other: u64,
    pub pings: u64,
    pub bytes_in: u64,
    /// Wire bytes of the marked frames (headers and payloads as received).
    pub wire_bytes: u64,
    /// Marked frames that came compressed.
    pub compressed: u64,
    /// Time of the last data frame of any kind.
    pub last_frame_ns: u64,
    /// A few error texts with their counts.
    pub errors: Vec<(String, u64)>,
}

impl Stats {
    pub fn reset_traffic(&mut self) {
        self.marked = 0;
        self.refused = 0;
        self.latency = Histogram::new();
        self.first_rx_ns = 0;
        self.last_rx_ns = 0;
        self.other = 0;
        self.bytes_in = 0;
        self.wire_bytes = 0;
        self.compressed = 0;
    }
}

pub struct Subscribers {
    cfg: SubConfig,
    conns: Vec<Conn>,
    next: usize,
    in_flight: usize,
    request: Vec<u8>,
    pub stats: Stats,
    pub client_ids: Vec<String>,
    pub receive_log: Option<ReceiveLog>,
}

impl Subscribers {
    pub fn new(cfg: SubConfig) -> Subscribers {
        let request =
            ws_client::upgrade_request(&cfg.dial.path, &cfg.dial.host, cfg.dial.deflate.as_deref());
        let conns = (0..cfg.dial.count).map(|_| Conn::default()).collect();
        Subscribers {
            cfg,
            conns,
            next: 0,
            in_flight: 0,
            request,
            stats: Stats::default(),
            client_ids: Vec::new(),
            receive_log: None,
        }
    }

    fn welcome(&mut self, i: usize, payload: &[u8], now: u64) -> Outcome {
        const KEY: &[u8] = b"\"clientId\":\"";
        let id = payload
            .windows(KEY.len())
            .position(|w| w == KEY)
            .and_then(|p| {
                let rest = &payload[p + KEY.len()..];
                let end = rest.iter().position(|&b| b == b'"')?;
                std::str::from_utf8(&rest[..end]).ok()
            });
        match id {
            Some(id) => {
                if self.cfg.capture_ids {
                    self.client_ids.push(id.to_string());
                }
                self.mark_ready(i, now);
                Outcome::Keep
            }
            None => {
                let text = String::from_utf8_lossy(&payload[..payload.len().min(120)]);
                Outcome::Close(format!("refused: {text}"))
            }
        }
    }

    fn mark_ready(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        c.ready = true;
        self.in_flight -= 1;
        self.stats.opening.ready(c.started_ns, now);
    }

    /// Connections of this set, whatever their state.
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    /// Queues `frames` (complete client frames) on connection `i` and writes what the
    /// socket takes. False when the connection is not open and ready.
    pub fn send(&mut self, poller: &Poller, i: usize, frames: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(i) else {
            return false;
        };
        if !c.ready || c.link.state != State::Open || c.link.fd.is_none() {
            return false;
        }
        c.link.out.extend_from_slice(frames);
        ws_client::flush(self, poller, i);
        true
    }

    /// Connections currently open.
    pub fn open_now(&self) -> u64 {
        self.stats.opening.opened - self.stats.dropped
    }

    /// Closes every connection (without counting them as dropped).
    pub fn close_all(&mut self) {
        for c in &mut self.conns {
            c.link.close();
        }
    }
}

impl Conns for Subscribers {
    /// Starts connections while fewer than `concurrency` handshakes are in progress.
    fn start_more(&mut self, poller: &Poller, now: u64) {
        while self.next < self.conns.len() && self.in_flight < self.cfg.dial.concurrency {
            let i = self.next;
            self.next += 1;
            self.stats.opening.start(now);
            let c = &mut self.conns[i];
            c.started_ns = now;
            match ws_client::connect(&mut c.link, poller, &self.cfg.dial, i) {
                Ok(()) => self.in_flight += 1,
                Err(e) => {
                    c.link.state = State::Done;
                    self.stats.opening.failed += 1;
                    tally(&mut self.stats.errors, format!("connect: {e}"));
                }
            }
        }
    }

    /// Every connection has been tried and is either ready or failed.
    fn all_resolved(&self) -> bool {
        self.next == self.conns.len() && self.in_flight == 0
    }

    /// Handles one readiness event for connection `token`.
    fn handle(&mut self, poller: &Poller, token: u64, bits: u32) {
        if (token as usize) < self.conns.len() {
            self.stats.bytes_in += ws_client::handle(self, poller, token as usize, bits);
        }
    }

    fn client_ids(&self) -> Vec<String> {
        self.client_ids.clone()
    }

    fn last_frame_ns(&self) -> u64 {
        self.stats.last_frame_ns
    }

    fn errors(&mut self) -> &mut Vec<(String, u64)> {
        &mut self.stats.errors
    }

    fn ready_report(&self) -> ReadyReport {
        self.stats
            .opening
            .report(self.stats.other, &self.stats.errors)
    }
}

impl WsConns for Subscribers {
    fn link(&mut self, i: usize) -> &mut Link {
        &mut self.conns[i].link
    }

    fn dial(&self) -> &Dial {
        &self.cfg.dial
    }

    fn queue_request(&mut self, i: usize) {
        self.conns[i].link.out.extend_from_slice(&self.request);
    }

    fn upgraded(&mut self, i: usize, now: u64) {
        self.conns[i].link.state = State::Open;
        if self.conns[i].link.inflate.is_some() {
            self.stats.opening.deflate_agreed += 1;
        }
        if !self.cfg.want_welcome {
            self.mark_ready(i, now);
        }
    }

    fn frame(&mut self, i: usize, f: Frame<'_>, now: u64) -> Outcome {
        let (head, payload) = (f.head, f.payload);
        match head.opcode {
            wsframe::OP_TEXT | wsframe::OP_BINARY | wsframe::OP_CONT => {
                self.stats.last_frame_ns = now;
                if self.cfg.want_welcome && !self.conns[i].ready {
                    return self.welcome(i, payload, now);
                }
                match (!head.masked).then(|| marker::find(payload)).flatten() {
                    Some(sent) => {
                        self.stats.marked += 1;
                        self.stats.wire_bytes += f.wire;
                        self.stats.compressed += u64::from(f.compressed);
                        if self.cfg.acks && !code_is_zero(payload) {
                            self.stats.refused += 1;
                        }
                        self.stats.latency.record(now.saturating_sub(sent));
                        if let Some(log) = &mut self.receive_log {
                            log.record(sent, now, i);
                        }
                        if self.stats.first_rx_ns == 0 {
                            self.stats.first_rx_ns = now;
                        }
                        self.stats.last_rx_ns = now;
                    }
                    None if head.fin => self.stats.other += 1,
                    None => {}
                }
                Outcome::Keep
            }
            op => {
                if op == wsframe::OP_PING {
                    self.stats.pings += 1;
                }
                ws_client::control(op, payload, &mut self.conns[i].link.out)
            }
        }
    }

    fn close(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if !c.link.close() {
            return;
        }
        if c.ready {
            self.stats.dropped += 1;
        } else {
            self.in_flight -= 1;
            self.stats.opening.failed += 1;
        }
        tally(&mut self.stats.errors, why);
    }
}
