//! The WebSocket connections of a `resume` worker, on one epoll thread: opened with a
//! welcome that must carry a resume token (its clientId and token kept), frames read
//! until the drop (each connection remembers the messageId of the last push or notice
//! it processed), dropped with a TCP reset, then reconnected with
//! `resume=<token>&last=<that messageId>`: the welcome must say `resumed:true`, the
//! same clientId and `recovered:true`, and the frames after it must be exactly the
//! pushes sent after `last`, in order. A reconnect is complete at its last missed frame.
//!
//! Frames are located from their headers (how bytes come and go is `ws_client`'s,
//! shared with the subscribers of the other runs); only welcomes are parsed as JSON, a
//! push's messageId is read from its first bytes (`{"messageId":"<16 hex>"`).

use serde_json::Value;

use crate::histogram::Histogram;
use crate::ipc::ReadyReport;
use crate::poller::Poller;
use crate::report::tally;
use crate::setup::{Conns, Opening};
use crate::sock;
use crate::ws_client::{self, upgrade_request, Dial, Frame, Link, Outcome, State, WsConns};
use shardcast::ws::frame as wsframe;

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
    /// Its concurrency: handshakes in progress at once when connecting.
    pub dial: Dial,
    /// Reconnects in progress at once when resuming (0: all at once).
    pub resume_concurrency: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connect,
    Resume,
}

#[derive(Default)]
struct Conn {
    link: Link,
    started_ns: u64,
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
    /// What opening the connections counted (given in the ready report).
    pub opening: Opening,
    /// Closed by the server (or the network) after the welcome.
    pub closed: u64,
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

pub struct ResumeConns {
    cfg: ConnsConfig,
    conns: Vec<Conn>,
    phase: Phase,
    next: usize,
    in_flight: usize,
    request: Vec<u8>,
    /// Resume: every push sent since the connections opened, in order.
    ids: Vec<MsgId>,
    pub connect: ConnectStats,
    pub resume: ResumeStats,
}

impl ResumeConns {
    pub fn new(cfg: ConnsConfig) -> ResumeConns {
        let request = upgrade_request(&cfg.dial.path, &cfg.dial.host, cfg.dial.deflate.as_deref());
        let conns = (0..cfg.dial.count).map(|_| Conn::default()).collect();
        ResumeConns {
            cfg,
            conns,
            phase: Phase::Connect,
            next: 0,
            in_flight: 0,
            request,
            ids: Vec::new(),
            connect: ConnectStats::default(),
            resume: ResumeStats::default(),
        }
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
            if let Some(fd) = c.link.fd.as_ref() {
                let _ = sock::set_linger_zero(fd);
                n += 1;
                c.dropped = true;
            }
            c.open = false;
            c.link = Link::default();
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

    fn start(&mut self, poller: &Poller, i: usize, now: u64) {
        match self.phase {
            Phase::Connect => self.connect.opening.start(now),
            Phase::Resume => {
                let r = &mut self.resume;
                r.attempted += 1;
                if r.first_start_ns == 0 {
                    r.first_start_ns = now;
                }
                r.last_start_ns = now;
            }
        }
        let c = &mut self.conns[i];
        c.started_ns = now;
        c.resolved = false;
        self.in_flight += 1;
        if let Err(e) = ws_client::connect(&mut c.link, poller, &self.cfg.dial, i) {
            self.close(i, format!("connect: {e}"));
        }
    }

    /// A text or binary frame: the welcome, a push or notice.
    fn data(&mut self, i: usize, payload: &[u8], now: u64) -> Outcome {
        if self.conns[i].link.state == State::Welcome {
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
                        None => "a frame without a messageId before the last missed push".into(),
                    })
                }
            }
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
        c.link.state = State::Open;
        c.open = true;
        self.in_flight -= 1;
        self.connect.opening.ready(c.started_ns, now);
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
        c.link.state = State::Open;
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

    /// Resume: every reconnect still in progress, or not started, fails ("timed out").
    pub fn expire(&mut self) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.dropped && !c.resolved && c.link.state != State::Idle {
                self.close(i, "timed out".into());
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
            c.link.close();
        }
    }
}

impl Conns for ResumeConns {
    /// Starts connections while fewer than the phase's concurrency are in progress.
    fn start_more(&mut self, poller: &Poller, now: u64) {
        let limit = match self.phase {
            Phase::Connect => self.cfg.dial.concurrency.max(1),
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

    /// Every connection of the phase has been tried and is resolved.
    fn all_resolved(&self) -> bool {
        self.next == self.conns.len() && self.in_flight == 0
    }

    /// Handles one readiness event for connection `token`.
    fn handle(&mut self, poller: &Poller, token: u64, bits: u32) {
        if (token as usize) < self.conns.len() {
            ws_client::handle(self, poller, token as usize, bits);
        }
    }

    /// The clientIds of the open connections.
    fn client_ids(&self) -> Vec<String> {
        self.conns
            .iter()
            .filter(|c| c.open)
            .map(|c| c.client_id.clone())
            .collect()
    }

    fn last_frame_ns(&self) -> u64 {
        self.connect.last_frame_ns
    }

    fn errors(&mut self) -> &mut Vec<(String, u64)> {
        &mut self.connect.errors
    }

    fn ready_report(&self) -> ReadyReport {
        let st = &self.connect;
        st.opening.report(st.pushes + st.other, &st.errors)
    }
}

impl WsConns for ResumeConns {
    fn link(&mut self, i: usize) -> &mut Link {
        &mut self.conns[i].link
    }

    fn dial(&self) -> &Dial {
        &self.cfg.dial
    }

    fn queue_request(&mut self, i: usize) {
        let c = &mut self.conns[i];
        match self.phase {
            Phase::Connect => c.link.out.extend_from_slice(&self.request),
            Phase::Resume => c.link.out.extend_from_slice(&upgrade_request(
                &resume_path(&self.cfg.dial.path, &c.token, c.last.as_ref()),
                &self.cfg.dial.host,
                self.cfg.dial.deflate.as_deref(),
            )),
        }
    }

    fn upgraded(&mut self, i: usize, _now: u64) {
        self.conns[i].link.state = State::Welcome;
    }

    fn frame(&mut self, i: usize, f: Frame<'_>, now: u64) -> Outcome {
        match f.head.opcode {
            wsframe::OP_TEXT | wsframe::OP_BINARY => self.data(i, f.payload, now),
            op => ws_client::control(op, f.payload, &mut self.conns[i].link.out),
        }
    }

    /// Connection `i` failed or was closed: counted once, as the phase counts.
    fn close(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if !c.link.close() {
            return;
        }
        match self.phase {
            Phase::Connect if c.open => {
                c.open = false;
                self.connect.closed += 1;
                tally(&mut self.connect.errors, why);
            }
            Phase::Connect => {
                self.in_flight -= 1;
                self.connect.opening.failed += 1;
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
