//! Many WebSocket subscriber connections driven by one thread through epoll.
//!
//! Each connection: non-blocking connect (from a source address), the upgrade request,
//! the 101 answer, then frames. A frame is located from its header alone; a data frame's
//! payload is searched for the send-time marker, never parsed as JSON. The first frame
//! is the welcome when one is expected (its clientId is kept when asked). Pings are
//! answered with pongs so that long holds survive the server's idle timeout. Input is
//! read into one per-thread buffer; a connection keeps bytes only for a frame cut by a
//! read boundary.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::histogram::Histogram;
use crate::marker;
use crate::poller::{write_out, Poller, HUP, READ, WRITE};
use crate::sock::{self, Fd};
use shardcast::ws::frame::{self as wsframe, Head};

/// Largest frame accepted from a server; beyond it the connection is dropped.
const MAX_FRAME: u64 = 16 << 20;
/// Largest upgrade answer head.
const MAX_HEAD: usize = 16 << 10;
const READ_BUF: usize = 256 << 10;

#[derive(Clone, Debug)]
pub struct SubConfig {
    pub dst: SocketAddrV4,
    /// Host header value.
    pub host: String,
    /// Path and query of the upgrade request.
    pub path: String,
    pub sources: Vec<Ipv4Addr>,
    pub count: usize,
    /// Handshakes in progress at once.
    pub concurrency: usize,
    /// Ready at the first frame (shardcast's welcome) rather than at the 101.
    pub want_welcome: bool,
    /// Keep each welcome's clientId.
    pub capture_ids: bool,
    /// Marked frames are acks of client messages (`chat`): count those whose code is
    /// not 0 as refused.
    pub acks: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Upgrading,
    Open,
    Done,
}

struct Conn {
    fd: Option<Fd>,
    state: State,
    ready: bool,
    started_ns: u64,
    /// Unconsumed input (an incomplete head or frame).
    pending: Vec<u8>,
    /// Unsent output (upgrade request, pongs).
    out: Vec<u8>,
    want_write: bool,
}

/// What the connections saw. Traffic counters are reset when measuring starts.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub opened: u64,
    pub failed: u64,
    /// Closed by the server (or the network) after being ready.
    pub dropped: u64,
    pub handshake: Histogram,
    pub first_start_ns: u64,
    pub last_ready_ns: u64,
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
    /// Time of the last data frame of any kind.
    pub last_frame_ns: u64,
    /// A few error texts with their counts.
    pub errors: Vec<(String, u64)>,
}

impl Stats {
    fn error(&mut self, what: String) {
        if let Some(e) = self.errors.iter_mut().find(|(w, _)| *w == what) {
            e.1 += 1;
        } else if self.errors.len() < 8 {
            self.errors.push((what, 1));
        } else if let Some(e) = self.errors.last_mut() {
            e.1 += 1;
        }
    }

    pub fn reset_traffic(&mut self) {
        self.marked = 0;
        self.refused = 0;
        self.latency = Histogram::new();
        self.first_rx_ns = 0;
        self.last_rx_ns = 0;
        self.other = 0;
        self.bytes_in = 0;
    }
}

pub struct Subscribers {
    cfg: SubConfig,
    conns: Vec<Conn>,
    next: usize,
    in_flight: usize,
    request: Vec<u8>,
    rbuf: Vec<u8>,
    pub stats: Stats,
    pub client_ids: Vec<String>,
}

enum Outcome {
    Keep,
    Close(String),
}

impl Subscribers {
    pub fn new(cfg: SubConfig) -> Subscribers {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            cfg.path, cfg.host
        )
        .into_bytes();
        let conns = (0..cfg.count)
            .map(|_| Conn {
                fd: None,
                state: State::Idle,
                ready: false,
                started_ns: 0,
                pending: Vec::new(),
                out: Vec::new(),
                want_write: false,
            })
            .collect();
        Subscribers {
            cfg,
            conns,
            next: 0,
            in_flight: 0,
            request,
            rbuf: vec![0; READ_BUF],
            stats: Stats::default(),
            client_ids: Vec::new(),
        }
    }

    /// Every connection has been tried and is either ready or failed.
    pub fn all_resolved(&self) -> bool {
        self.next == self.conns.len() && self.in_flight == 0
    }

    /// Starts connections while fewer than `concurrency` handshakes are in progress.
    pub fn start_more(&mut self, poller: &Poller, now: u64) {
        while self.next < self.conns.len() && self.in_flight < self.cfg.concurrency {
            let i = self.next;
            self.next += 1;
            if self.stats.first_start_ns == 0 {
                self.stats.first_start_ns = now;
            }
            let src = if self.cfg.sources.is_empty() {
                None
            } else {
                Some(self.cfg.sources[i % self.cfg.sources.len()])
            };
            let c = &mut self.conns[i];
            c.started_ns = now;
            let r = sock::connect(self.cfg.dst, src)
                .and_then(|fd| poller.add(fd.raw(), i as u64, READ | WRITE).map(|_| fd));
            match r {
                Ok(fd) => {
                    c.fd = Some(fd);
                    c.state = State::Connecting;
                    c.want_write = true;
                    self.in_flight += 1;
                }
                Err(e) => {
                    c.state = State::Done;
                    self.stats.failed += 1;
                    self.stats.error(format!("connect: {e}"));
                }
            }
        }
    }

    /// Handles one readiness event for connection `token`.
    pub fn handle(&mut self, poller: &Poller, token: u64, bits: u32) {
        let i = token as usize;
        let Some(c) = self.conns.get(i) else { return };
        match c.state {
            State::Idle | State::Done => {}
            State::Connecting => {
                let Some(fd) = c.fd.as_ref() else { return };
                match sock::take_error(fd) {
                    Ok(()) if bits & (WRITE | HUP) != 0 => {
                        let c = &mut self.conns[i];
                        c.state = State::Upgrading;
                        c.out.extend_from_slice(&self.request);
                        self.flush(poller, i);
                    }
                    Ok(()) => {}
                    Err(e) => self.close(i, format!("connect: {e}")),
                }
            }
            State::Upgrading | State::Open => {
                if bits & WRITE != 0 {
                    self.flush(poller, i);
                }
                if bits & (READ | HUP) != 0 {
                    self.read(poller, i);
                }
            }
        }
    }

    fn flush(&mut self, poller: &Poller, i: usize) {
        let c = &mut self.conns[i];
        let Some(fd) = c.fd.as_ref() else { return };
        if let Err(why) = write_out(poller, fd, i as u64, &mut c.out, &mut c.want_write) {
            self.close(i, why);
        }
    }

    fn read(&mut self, poller: &Poller, i: usize) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        while let Some(fd) = self.conns[i].fd.as_ref() {
            match sock::read(fd, &mut rbuf) {
                Ok(0) => {
                    self.close(i, "closed by the server".into());
                    break;
                }
                Ok(n) => {
                    let now = crate::clock::mono_ns();
                    self.stats.bytes_in += n as u64;
                    if let Outcome::Close(why) = self.on_data(i, &rbuf[..n], now) {
                        self.close(i, why);
                        break;
                    }
                    if !self.conns[i].out.is_empty() {
                        self.flush(poller, i);
                    }
                    if n < rbuf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(i, format!("read: {e}"));
                    break;
                }
            }
        }
        self.rbuf = rbuf;
    }

    fn on_data(&mut self, i: usize, data: &[u8], now: u64) -> Outcome {
        let c = &mut self.conns[i];
        if c.pending.is_empty() {
            let (used, outcome) = self.process(i, data, now);
            let c = &mut self.conns[i];
            if used < data.len() {
                c.pending.extend_from_slice(&data[used..]);
            }
            outcome
        } else {
            c.pending.extend_from_slice(data);
            let buf = std::mem::take(&mut c.pending);
            let (used, outcome) = self.process(i, &buf, now);
            let c = &mut self.conns[i];
            c.pending = buf;
            c.pending.drain(..used);
            if c.pending.is_empty() && c.pending.capacity() > 4096 {
                c.pending = Vec::new();
            }
            outcome
        }
    }

    /// Consumes what it can of `data`; returns the bytes used.
    fn process(&mut self, i: usize, data: &[u8], now: u64) -> (usize, Outcome) {
        let mut pos = 0;
        if self.conns[i].state == State::Upgrading {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(data) {
                Ok(httparse::Status::Complete(n)) => {
                    if resp.code != Some(101) {
                        let first = String::from_utf8_lossy(&data[..n.min(80)]);
                        let line = first.lines().next().unwrap_or("").to_string();
                        return (n, Outcome::Close(format!("upgrade refused: {line}")));
                    }
                    pos = n;
                    self.conns[i].state = State::Open;
                    if !self.cfg.want_welcome {
                        self.mark_ready(i, now);
                    }
                }
                Ok(httparse::Status::Partial) if data.len() <= MAX_HEAD => {
                    return (0, Outcome::Keep)
                }
                Ok(httparse::Status::Partial) => {
                    return (0, Outcome::Close("upgrade answer too large".into()))
                }
                Err(e) => return (0, Outcome::Close(format!("bad upgrade answer: {e}"))),
            }
        }
        while let Some(head) = wsframe::parse_head(&data[pos..]) {
            let len = head.frame_len();
            if len > MAX_FRAME {
                return (pos, Outcome::Close(format!("frame of {len} bytes")));
            }
            let len = len as usize;
            if data.len() - pos < len {
                break;
            }
            let payload = &data[pos + head.header_len..pos + len];
            pos += len;
            if let Outcome::Close(why) = self.frame(i, head, payload, now) {
                return (pos, Outcome::Close(why));
            }
        }
        (pos, Outcome::Keep)
    }

    fn frame(&mut self, i: usize, head: Head, payload: &[u8], now: u64) -> Outcome {
        match head.opcode {
            wsframe::OP_TEXT | wsframe::OP_BINARY | wsframe::OP_CONT => {
                self.stats.last_frame_ns = now;
                if self.cfg.want_welcome && !self.conns[i].ready {
                    return self.welcome(i, payload, now);
                }
                match (!head.masked).then(|| marker::find(payload)).flatten() {
                    Some(sent) => {
                        self.stats.marked += 1;
                        if self.cfg.acks && !crate::api::code_is_zero(payload) {
                            self.stats.refused += 1;
                        }
                        self.stats.latency.record(now.saturating_sub(sent));
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
            wsframe::OP_PING => {
                self.stats.pings += 1;
                wsframe::client_frame(&mut self.conns[i].out, wsframe::OP_PONG, payload, [0; 4]);
                Outcome::Keep
            }
            wsframe::OP_CLOSE => {
                let code = payload
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]).to_string())
                    .unwrap_or_else(|| "-".into());
                Outcome::Close(format!("close frame {code} from the server"))
            }
            _ => Outcome::Keep,
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
        self.stats.opened += 1;
        self.stats
            .handshake
            .record(now.saturating_sub(c.started_ns));
        self.stats.last_ready_ns = self.stats.last_ready_ns.max(now);
    }

    fn close(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if c.state == State::Done {
            return;
        }
        c.state = State::Done;
        c.fd = None;
        c.pending = Vec::new();
        c.out = Vec::new();
        if c.ready {
            self.stats.dropped += 1;
        } else {
            self.in_flight -= 1;
            self.stats.failed += 1;
        }
        self.stats.error(why);
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
        if !c.ready || c.state != State::Open || c.fd.is_none() {
            return false;
        }
        c.out.extend_from_slice(frames);
        self.flush(poller, i);
        true
    }

    /// Connections currently open.
    pub fn open_now(&self) -> u64 {
        self.stats.opened - self.stats.dropped
    }

    /// Closes every connection (without counting them as dropped).
    pub fn close_all(&mut self) {
        for c in &mut self.conns {
            c.fd = None;
            c.state = State::Done;
        }
    }
}
