//! The WebSocket connections of a `resume` worker, on one epoll thread: opened with a
//! welcome that must carry a resume token (its clientId and token kept), frames read
//! until the drop (each connection remembers the messageId of the last push or notice
//! it processed), dropped with a TCP reset, then reconnected with
//! `resume=<token>&last=<that messageId>`: the welcome must say `resumed:true`, the
//! same clientId and `recovered:true`, and the frames after it must be exactly the
//! pushes sent after `last`, in order. A reconnect is complete at its last missed frame.
//!
//! Frames are located from their headers; only welcomes are parsed as JSON, a push's
//! messageId is read from its first bytes (`{"messageId":"<16 hex>"`).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::Value;

use crate::histogram::Histogram;
use crate::poller::{write_out, Poller, HUP, READ, WRITE};
use crate::sock::{self, Fd};
use shardcast::ws::frame::{self as wsframe, Head};

/// Largest frame accepted from a server; beyond it the connection is dropped.
const MAX_FRAME: u64 = 16 << 20;
/// Largest upgrade answer head.
const MAX_HEAD: usize = 16 << 10;
const READ_BUF: usize = 256 << 10;

/// A messageId: 16 hex digits.
pub type MsgId = [u8; 16];

/// The messageId a push or notice frame begins with.
pub fn message_id(payload: &[u8]) -> Option<MsgId> {
    const KEY: &[u8] = b"{\"messageId\":\"";
    let rest = payload.strip_prefix(KEY)?;
    let id: MsgId = rest.get(..16)?.try_into().ok()?;
    (rest.get(16) == Some(&b'"') && id.iter().all(u8::is_ascii_hexdigit)).then_some(id)
}

/// A messageId as given by the API (16 hex digits).
pub fn parse_id(s: &str) -> Option<MsgId> {
    let id: MsgId = s.as_bytes().try_into().ok()?;
    id.iter().all(u8::is_ascii_hexdigit).then_some(id)
}

/// Where the frames kept for a client that processed `last` begin in `ids` (every
/// push sent since it connected, in order): after `last`, or at the start when it
/// processed none of them.
pub fn expected_from(ids: &[MsgId], last: Option<&MsgId>) -> usize {
    last.and_then(|l| ids.iter().position(|x| x == l))
        .map_or(0, |p| p + 1)
}

/// The upgrade path of a resume: `path` with `resume=<token>&last=<last>` appended.
pub fn resume_path(path: &str, token: &str, last: Option<&MsgId>) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let last = last.map_or("", |l| std::str::from_utf8(l).unwrap_or(""));
    format!("{path}{sep}resume={token}&last={last}")
}

/// What a welcome frame said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Welcome {
    pub client_id: String,
    pub token: String,
    pub resumed: Option<bool>,
    pub recovered: Option<bool>,
}

/// Parses a welcome: Err(why) when it is a refusal or not a welcome.
pub fn parse_welcome(payload: &[u8]) -> Result<Welcome, String> {
    let text = || String::from_utf8_lossy(&payload[..payload.len().min(120)]).into_owned();
    let v: Value = serde_json::from_slice(payload).map_err(|_| format!("not JSON: {}", text()))?;
    if v.get("code").and_then(Value::as_i64) != Some(0) {
        return Err(format!("refused: {}", text()));
    }
    let data = &v["data"];
    let Some(client_id) = data.get("clientId").and_then(Value::as_str) else {
        return Err(format!("not a welcome: {}", text()));
    };
    Ok(Welcome {
        client_id: client_id.to_string(),
        token: data
            .get("resumeToken")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        resumed: data.get("resumed").and_then(Value::as_bool),
        recovered: data.get("recovered").and_then(Value::as_bool),
    })
}

#[derive(Clone, Debug)]
pub struct ConnsConfig {
    pub dst: SocketAddrV4,
    /// Host header value.
    pub host: String,
    /// Path and query of the first upgrade request.
    pub path: String,
    pub sources: Vec<Ipv4Addr>,
    pub count: usize,
    /// Handshakes in progress at once when connecting.
    pub concurrency: usize,
    /// Reconnects in progress at once when resuming (0: all at once).
    pub resume_concurrency: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    Connecting,
    Upgrading,
    /// Upgraded; the welcome is the next data frame.
    Welcome,
    Open,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connect,
    Resume,
}

#[derive(Default)]
struct Conn {
    fd: Option<Fd>,
    state: State,
    started_ns: u64,
    /// Unconsumed input (an incomplete head or frame).
    pending: Vec<u8>,
    /// Unsent output (upgrade request, pongs).
    out: Vec<u8>,
    want_write: bool,
    client_id: String,
    token: String,
    /// The messageId of the last push or notice processed.
    last: Option<MsgId>,
    /// Welcomed in the connect phase and open until the drop.
    open: bool,
    /// Reset by the drop: to be resumed.
    dropped: bool,
    /// Resume: the index in the pushes of the next frame expected.
    next_id: usize,
    /// Resume: complete or failed.
    resolved: bool,
}

/// Counts of the connect phase.
#[derive(Clone, Debug, Default)]
pub struct ConnectStats {
    pub opened: u64,
    pub failed: u64,
    /// Closed by the server (or the network) after the welcome.
    pub closed: u64,
    pub handshake: Histogram,
    pub first_start_ns: u64,
    pub last_ready_ns: u64,
    /// Frames with a messageId (pushes and notices) and others, after the welcomes.
    pub pushes: u64,
    pub other: u64,
    pub last_frame_ns: u64,
    pub errors: Vec<(String, u64)>,
}

/// Counts of the resume phase.
#[derive(Clone, Debug, Default)]
pub struct ResumeStats {
    pub attempted: u64,
    pub completed: u64,
    pub failed: u64,
    pub resumed: u64,
    pub same_id: u64,
    pub recovered: u64,
    pub frames: u64,
    pub latency: Histogram,
    pub welcome: Histogram,
    pub first_start_ns: u64,
    pub last_start_ns: u64,
    pub last_done_ns: u64,
    pub errors: Vec<(String, u64)>,
}

fn tally(errors: &mut Vec<(String, u64)>, what: String) {
    if let Some(e) = errors.iter_mut().find(|(w, _)| *w == what) {
        e.1 += 1;
    } else if errors.len() < 8 {
        errors.push((what, 1));
    } else if let Some(e) = errors.last_mut() {
        e.1 += 1;
    }
}

enum Outcome {
    Keep,
    Close(String),
}

pub struct ResumeConns {
    cfg: ConnsConfig,
    conns: Vec<Conn>,
    phase: Phase,
    next: usize,
    in_flight: usize,
    request: Vec<u8>,
    rbuf: Vec<u8>,
    /// Resume: every push sent since the connections opened, in order.
    ids: Vec<MsgId>,
    pub connect: ConnectStats,
    pub resume: ResumeStats,
}

impl ResumeConns {
    pub fn new(cfg: ConnsConfig) -> ResumeConns {
        let request = upgrade_request(&cfg.path, &cfg.host);
        let conns = (0..cfg.count).map(|_| Conn::default()).collect();
        ResumeConns {
            cfg,
            conns,
            phase: Phase::Connect,
            next: 0,
            in_flight: 0,
            request,
            rbuf: vec![0; READ_BUF],
            ids: Vec::new(),
            connect: ConnectStats::default(),
            resume: ResumeStats::default(),
        }
    }

    /// Every connection of the phase has been tried and is resolved.
    pub fn all_resolved(&self) -> bool {
        self.next == self.conns.len() && self.in_flight == 0
    }

    /// The clientIds of the open connections.
    pub fn client_ids(&self) -> Vec<String> {
        self.conns
            .iter()
            .filter(|c| c.open)
            .map(|c| c.client_id.clone())
            .collect()
    }

    /// Open connections whose last processed frame is not `id`.
    pub fn missing(&self, id: &MsgId) -> u64 {
        self.conns
            .iter()
            .filter(|c| c.open && c.last.as_ref() != Some(id))
            .count() as u64
    }

    /// Drops every open connection with a TCP reset; returns how many.
    pub fn reset_all(&mut self) -> u64 {
        let mut n = 0;
        for c in &mut self.conns {
            if !c.open {
                continue;
            }
            if let Some(fd) = c.fd.take() {
                let _ = sock::set_linger_zero(&fd);
                n += 1;
                c.dropped = true;
            }
            c.open = false;
            c.state = State::Idle;
            c.pending = Vec::new();
            c.out = Vec::new();
            c.want_write = false;
        }
        n
    }

    /// Switches to the resume phase: the dropped connections reconnect from the next
    /// `start_more`; `ids` are every push sent since they opened.
    pub fn begin_resume(&mut self, ids: Vec<MsgId>) {
        self.phase = Phase::Resume;
        self.ids = ids;
        self.next = 0;
        self.in_flight = 0;
        self.resume = ResumeStats::default();
    }

    /// Starts connections while fewer than the phase's concurrency are in progress.
    pub fn start_more(&mut self, poller: &Poller, now: u64) {
        let limit = match self.phase {
            Phase::Connect => self.cfg.concurrency.max(1),
            Phase::Resume if self.cfg.resume_concurrency == 0 => usize::MAX,
            Phase::Resume => self.cfg.resume_concurrency,
        };
        while self.next < self.conns.len() && self.in_flight < limit {
            let i = self.next;
            self.next += 1;
            if self.phase == Phase::Resume && !self.conns[i].dropped {
                continue;
            }
            let now = if self.phase == Phase::Resume {
                crate::clock::mono_ns()
            } else {
                now
            };
            self.start(poller, i, now);
        }
    }

    fn start(&mut self, poller: &Poller, i: usize, now: u64) {
        match self.phase {
            Phase::Connect => {
                if self.connect.first_start_ns == 0 {
                    self.connect.first_start_ns = now;
                }
            }
            Phase::Resume => {
                let r = &mut self.resume;
                r.attempted += 1;
                if r.first_start_ns == 0 {
                    r.first_start_ns = now;
                }
                r.last_start_ns = now;
            }
        }
        let src = if self.cfg.sources.is_empty() {
            None
        } else {
            Some(self.cfg.sources[i % self.cfg.sources.len()])
        };
        let c = &mut self.conns[i];
        c.started_ns = now;
        c.resolved = false;
        self.in_flight += 1;
        let r = sock::connect(self.cfg.dst, src)
            .and_then(|fd| poller.add(fd.raw(), i as u64, READ | WRITE).map(|_| fd));
        match r {
            Ok(fd) => {
                c.fd = Some(fd);
                c.state = State::Connecting;
                c.want_write = true;
            }
            Err(e) => self.fail(i, format!("connect: {e}")),
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
                        let request = match self.phase {
                            Phase::Connect => self.request.clone(),
                            Phase::Resume => upgrade_request(
                                &resume_path(&self.cfg.path, &c.token, c.last.as_ref()),
                                &self.cfg.host,
                            ),
                        };
                        let c = &mut self.conns[i];
                        c.state = State::Upgrading;
                        c.out.extend_from_slice(&request);
                        self.flush(poller, i);
                    }
                    Ok(()) => {}
                    Err(e) => self.fail(i, format!("connect: {e}")),
                }
            }
            State::Upgrading | State::Welcome | State::Open => {
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
            self.fail(i, why);
        }
    }

    fn read(&mut self, poller: &Poller, i: usize) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        while let Some(fd) = self.conns[i].fd.as_ref() {
            match sock::read(fd, &mut rbuf) {
                Ok(0) => {
                    self.fail(i, "closed by the server".into());
                    break;
                }
                Ok(n) => {
                    let now = crate::clock::mono_ns();
                    if let Outcome::Close(why) = self.on_data(i, &rbuf[..n], now) {
                        self.fail(i, why);
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
                    self.fail(i, format!("read: {e}"));
                    break;
                }
            }
        }
        self.rbuf = rbuf;
    }

    fn on_data(&mut self, i: usize, data: &[u8], now: u64) -> Outcome {
        let mut buf = std::mem::take(&mut self.conns[i].pending);
        let outcome = if buf.is_empty() {
            let (used, outcome) = self.process(i, data, now);
            buf.extend_from_slice(&data[used..]);
            outcome
        } else {
            buf.extend_from_slice(data);
            let (used, outcome) = self.process(i, &buf, now);
            buf.drain(..used);
            if buf.is_empty() && buf.capacity() > 4096 {
                buf = Vec::new();
            }
            outcome
        };
        self.conns[i].pending = buf;
        outcome
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
                    self.conns[i].state = State::Welcome;
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
            wsframe::OP_TEXT | wsframe::OP_BINARY => {
                if self.conns[i].state == State::Welcome {
                    return match self.phase {
                        Phase::Connect => self.welcome(i, payload, now),
                        Phase::Resume => self.rewelcome(i, payload, now),
                    };
                }
                let id = message_id(payload);
                match self.phase {
                    Phase::Connect => {
                        self.connect.last_frame_ns = now;
                        match id {
                            Some(id) => {
                                self.connect.pushes += 1;
                                self.conns[i].last = Some(id);
                            }
                            None => self.connect.other += 1,
                        }
                        Outcome::Keep
                    }
                    Phase::Resume => {
                        self.resume.frames += 1;
                        let c = &mut self.conns[i];
                        if c.resolved {
                            return Outcome::Keep;
                        }
                        if id.is_some() && id.as_ref() == self.ids.get(c.next_id) {
                            c.next_id += 1;
                            c.last = id;
                            if c.next_id == self.ids.len() {
                                self.complete(i, now);
                            }
                            Outcome::Keep
                        } else {
                            let want = c.next_id;
                            let got = id.and_then(|id| self.ids.iter().position(|x| *x == id));
                            Outcome::Close(match id {
                                Some(_) => format!(
                                    "push {} of the run where push {} was due ({})",
                                    got.map_or("?".into(), |g| g.to_string()),
                                    want,
                                    "pushes counted from 0, the pre-drop ones first"
                                ),
                                None => "a frame without a messageId before the last missed \
                                         push"
                                    .into(),
                            })
                        }
                    }
                }
            }
            wsframe::OP_PING => {
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

    /// The welcome of the first connect: it must carry a resume token.
    fn welcome(&mut self, i: usize, payload: &[u8], now: u64) -> Outcome {
        let w = match parse_welcome(payload) {
            Ok(w) => w,
            Err(why) => return Outcome::Close(why),
        };
        if w.token.is_empty() {
            return Outcome::Close(
                "no resumeToken in the welcome (is the server's ws.resume_window 0?)".into(),
            );
        }
        let c = &mut self.conns[i];
        c.client_id = w.client_id;
        c.token = w.token;
        c.state = State::Open;
        c.open = true;
        self.in_flight -= 1;
        let s = &mut self.connect;
        s.opened += 1;
        s.handshake.record(now.saturating_sub(c.started_ns));
        s.last_ready_ns = s.last_ready_ns.max(now);
        Outcome::Keep
    }

    /// The welcome of a resume: the same session, with nothing lost.
    fn rewelcome(&mut self, i: usize, payload: &[u8], now: u64) -> Outcome {
        let w = match parse_welcome(payload) {
            Ok(w) => w,
            Err(why) => return Outcome::Close(why),
        };
        let c = &self.conns[i];
        self.resume.welcome.record(now.saturating_sub(c.started_ns));
        if w.resumed != Some(true) {
            return Outcome::Close("resumed:false (a new connection instead)".into());
        }
        self.resume.resumed += 1;
        if w.client_id != c.client_id {
            return Outcome::Close("resumed with another clientId".into());
        }
        self.resume.same_id += 1;
        if w.recovered != Some(true) {
            return Outcome::Close("recovered:false (missed frames were lost)".into());
        }
        self.resume.recovered += 1;
        let next_id = expected_from(&self.ids, c.last.as_ref());
        let c = &mut self.conns[i];
        c.token = w.token;
        c.state = State::Open;
        c.next_id = next_id;
        if next_id == self.ids.len() {
            self.complete(i, now);
        }
        Outcome::Keep
    }

    fn complete(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        c.resolved = true;
        self.in_flight -= 1;
        let r = &mut self.resume;
        r.completed += 1;
        r.latency.record(now.saturating_sub(c.started_ns));
        r.last_done_ns = r.last_done_ns.max(now);
    }

    /// Connection `i` failed or was closed: counted once, as the phase counts.
    fn fail(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if c.state == State::Done {
            return;
        }
        c.state = State::Done;
        c.fd = None;
        c.pending = Vec::new();
        c.out = Vec::new();
        match self.phase {
            Phase::Connect if c.open => {
                c.open = false;
                self.connect.closed += 1;
                tally(&mut self.connect.errors, why);
            }
            Phase::Connect => {
                self.in_flight -= 1;
                self.connect.failed += 1;
                tally(&mut self.connect.errors, why);
            }
            Phase::Resume if c.resolved => {}
            Phase::Resume => {
                c.resolved = true;
                self.in_flight -= 1;
                self.resume.failed += 1;
                tally(&mut self.resume.errors, why);
            }
        }
    }

    /// Resume: every reconnect still in progress, or not started, fails ("timed out").
    pub fn expire(&mut self) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.dropped && !c.resolved && c.state != State::Idle {
                self.fail(i, "timed out".into());
            }
        }
        for i in self.next..self.conns.len() {
            if self.conns[i].dropped {
                self.resume.attempted += 1;
                self.resume.failed += 1;
                tally(
                    &mut self.resume.errors,
                    "not started before the timeout".into(),
                );
            }
        }
        self.next = self.conns.len();
    }

    /// Closes every connection.
    pub fn close_all(&mut self) {
        for c in &mut self.conns {
            c.fd = None;
            c.state = State::Done;
        }
    }
}

fn upgrade_request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_of_frames() {
        let push = br#"{"messageId":"3f1c0a9e5b7d2468","sendUserId":"","code":0}"#;
        assert_eq!(message_id(push), Some(*b"3f1c0a9e5b7d2468"));
        assert_eq!(message_id(br#"{"code":0,"msg":"success"}"#), None);
        assert_eq!(
            message_id(br#"{"messageId":"3f1c0a9e5b7d246","x":1}"#),
            None
        );
        assert_eq!(message_id(br#"{"messageId":"3f1c0a9e5b7d24zz"}"#), None);
        assert_eq!(message_id(br#"{"messageId":"""#), None);
        assert_eq!(parse_id("3f1c0a9e5b7d2468"), Some(*b"3f1c0a9e5b7d2468"));
        assert_eq!(parse_id("3f1c"), None);
    }

    #[test]
    fn where_the_missed_frames_begin() {
        let ids = [
            *b"000000000000000a",
            *b"000000000000000b",
            *b"000000000000000c",
        ];
        assert_eq!(expected_from(&ids, None), 0);
        assert_eq!(expected_from(&ids, Some(&ids[0])), 1);
        assert_eq!(expected_from(&ids, Some(&ids[2])), 3);
        // A notice's id (not a push of the run): everything is expected.
        assert_eq!(expected_from(&ids, Some(b"ffffffffffffffff")), 0);
    }

    #[test]
    fn resume_paths() {
        let last = *b"00000000000000ab";
        assert_eq!(
            resume_path("/ws?systemId=demo", "1.abc.1.mac", Some(&last)),
            "/ws?systemId=demo&resume=1.abc.1.mac&last=00000000000000ab"
        );
        assert_eq!(resume_path("/ws", "t", None), "/ws?resume=t&last=");
    }

    #[test]
    fn welcomes() {
        let w = parse_welcome(
            br#"{"code":0,"msg":"success","data":{"clientId":"AbC","resumeToken":"1.AbC.0.x"}}"#,
        )
        .unwrap();
        assert_eq!(
            w,
            Welcome {
                client_id: "AbC".into(),
                token: "1.AbC.0.x".into(),
                resumed: None,
                recovered: None
            }
        );
        let w = parse_welcome(
            br#"{"code":0,"msg":"success","data":{"clientId":"AbC","resumeToken":"1.AbC.1.y","resumed":true,"recovered":false}}"#,
        )
        .unwrap();
        assert_eq!((w.resumed, w.recovered), (Some(true), Some(false)));
        assert!(
            parse_welcome(br#"{"code":0,"msg":"success","data":{"clientId":"AbC"}}"#)
                .unwrap()
                .token
                .is_empty()
        );
        assert!(parse_welcome(br#"{"code":-1,"msg":"no","data":[]}"#)
            .unwrap_err()
            .starts_with("refused"));
        assert!(
            parse_welcome(br#"{"messageId":"3f1c0a9e5b7d2468","code":0,"data":"x"}"#)
                .unwrap_err()
                .starts_with("not a welcome")
        );
    }
}
