//! A pool of keep-alive HTTP/1.1 client connections with pipelining, driven by epoll:
//! it issues `total` requests (built on demand, so a publisher can stamp each with the
//! time it is sent), at most `depth` outstanding per connection, optionally paced at a
//! fixed rate, and records each answer's latency and whether it was a success.
//!
//! With `fresh`, every request gets a connection of its own, closed after its answer,
//! as a PHP SDK call does: the request is stamped with the time its connect started,
//! so its latency (and the publish → receive latency) includes the connect.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::clock::mono_ns;
use crate::histogram::Histogram;
use crate::poller::{write_out, Poller, HUP, READ, WRITE};
use crate::sock::{self, Fd};

/// Builds request number `i` (at time `now`) into the buffer.
pub type MakeRequest = Box<dyn FnMut(u64, u64, &mut Vec<u8>) + Send>;
/// Judges an answer: (status, body) → success.
pub type Judge = Box<dyn FnMut(u16, &[u8]) -> bool + Send>;

const MAX_RECONNECTS: u32 = 20;
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub dst: SocketAddrV4,
    pub src: Option<Ipv4Addr>,
    pub connections: usize,
    /// Requests outstanding per connection (1 = no pipelining).
    pub depth: usize,
    pub total: u64,
    /// Requests per second; None = as fast as answered.
    pub rate: Option<f64>,
    /// Epoll tokens of this pool are `token_base + connection index`.
    pub token_base: u64,
    /// A new connection per request (depth 1), closed after the answer.
    pub fresh: bool,
}

struct HConn {
    fd: Option<Fd>,
    connected: bool,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// Send time of each request awaiting its answer.
    inflight: VecDeque<u64>,
    want_write: bool,
    /// When the current connection's connect started.
    opened_ns: u64,
    reconnects: u32,
    dead: bool,
}

pub struct Pool {
    cfg: PoolConfig,
    conns: Vec<HConn>,
    make: MakeRequest,
    judge: Judge,
    next: u64,
    rr: usize,
    start_ns: u64,
    rbuf: Vec<u8>,
    pub answered: u64,
    pub succeeded: u64,
    /// Requests without an answer (connection lost or refused).
    pub lost: u64,
    pub latency: Histogram,
    pub first_send_ns: u64,
    pub last_answer_ns: u64,
    pub errors: Vec<(String, u64)>,
}

enum Body {
    Complete(usize, Vec<u8>),
    Incomplete,
}

impl Pool {
    pub fn new(cfg: PoolConfig, make: MakeRequest, judge: Judge) -> Pool {
        let conns = (0..cfg.connections.max(1))
            .map(|_| HConn {
                fd: None,
                connected: false,
                out: Vec::new(),
                inbuf: Vec::new(),
                inflight: VecDeque::new(),
                want_write: false,
                opened_ns: 0,
                reconnects: 0,
                dead: false,
            })
            .collect();
        Pool {
            cfg,
            conns,
            make,
            judge,
            next: 0,
            rr: 0,
            start_ns: 0,
            rbuf: vec![0; 64 << 10],
            answered: 0,
            succeeded: 0,
            lost: 0,
            latency: Histogram::new(),
            first_send_ns: 0,
            last_answer_ns: 0,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, what: String) {
        if let Some(e) = self.errors.iter_mut().find(|(w, _)| *w == what) {
            e.1 += 1;
        } else if self.errors.len() < 8 {
            self.errors.push((what, 1));
        }
    }

    pub fn owns(&self, token: u64) -> bool {
        token >= self.cfg.token_base && token < self.cfg.token_base + self.conns.len() as u64
    }

    pub fn done(&self) -> bool {
        self.answered + self.lost >= self.cfg.total
    }

    /// Opens the connections.
    pub fn start(&mut self, poller: &Poller) {
        self.start_ns = mono_ns();
        for i in 0..self.conns.len() {
            self.connect(poller, i);
        }
        self.check_all_dead();
    }

    fn connect(&mut self, poller: &Poller, i: usize) {
        let token = self.cfg.token_base + i as u64;
        let r = sock::connect(self.cfg.dst, self.cfg.src)
            .and_then(|fd| poller.add(fd.raw(), token, READ | WRITE).map(|_| fd));
        let c = &mut self.conns[i];
        c.opened_ns = mono_ns();
        match r {
            Ok(fd) => {
                c.fd = Some(fd);
                c.connected = false;
                c.want_write = true;
            }
            Err(e) => {
                c.dead = true;
                self.error(format!("connect: {e}"));
            }
        }
    }

    /// Every connection dead with requests left: they are lost.
    fn check_all_dead(&mut self) {
        if self.conns.iter().all(|c| c.dead) && self.next < self.cfg.total {
            self.lost += self.cfg.total - self.next;
            self.next = self.cfg.total;
        }
    }

    /// Milliseconds until the next paced request is due (-1: no timer needed).
    pub fn timeout_ms(&self, now: u64) -> i32 {
        match self.cfg.rate {
            Some(rate) if self.next < self.cfg.total && self.start_ns != 0 => {
                let due = self.start_ns + (self.next as f64 * 1e9 / rate) as u64;
                (due.saturating_sub(now) / 1_000_000).min(1000) as i32
            }
            _ => -1,
        }
    }

    /// Issues the requests that are due and fit in the windows.
    pub fn pump(&mut self, poller: &Poller, now: u64) {
        let allowed = match self.cfg.rate {
            Some(rate) => {
                let elapsed = now.saturating_sub(self.start_ns) as f64 / 1e9;
                ((elapsed * rate) as u64 + 1).min(self.cfg.total)
            }
            None => self.cfg.total,
        };
        let n = self.conns.len();
        let depth = if self.cfg.fresh { 1 } else { self.cfg.depth };
        let mut idle_rounds = 0;
        while self.next < allowed && idle_rounds < n {
            let i = self.rr % n;
            self.rr = self.rr.wrapping_add(1);
            let c = &mut self.conns[i];
            if !c.connected || c.fd.is_none() || c.inflight.len() >= depth {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            let t = if self.cfg.fresh {
                c.opened_ns
            } else {
                mono_ns()
            };
            if self.first_send_ns == 0 {
                self.first_send_ns = t;
            }
            (self.make)(self.next, t, &mut c.out);
            c.inflight.push_back(t);
            self.next += 1;
            if c.inflight.len() >= depth || self.next >= allowed {
                self.flush(poller, i);
            }
        }
        for i in 0..n {
            if !self.conns[i].out.is_empty() && !self.conns[i].want_write {
                self.flush(poller, i);
            }
        }
    }

    pub fn handle(&mut self, poller: &Poller, token: u64, bits: u32) {
        let i = (token - self.cfg.token_base) as usize;
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        let Some(fd) = c.fd.as_ref() else { return };
        if !c.connected {
            if bits & (WRITE | HUP) == 0 {
                return;
            }
            if let Err(e) = sock::take_error(fd) {
                self.drop_conn(poller, i, format!("connect: {e}"));
                return;
            }
            c.connected = true;
        }
        if bits & WRITE != 0 {
            self.flush(poller, i);
        }
        if bits & (READ | HUP) != 0 {
            self.read(poller, i);
        }
    }

    fn flush(&mut self, poller: &Poller, i: usize) {
        let token = self.cfg.token_base + i as u64;
        let c = &mut self.conns[i];
        if !c.connected {
            return;
        }
        let Some(fd) = c.fd.as_ref() else { return };
        if let Err(why) = write_out(poller, fd, token, &mut c.out, &mut c.want_write) {
            self.drop_conn(poller, i, why);
        }
    }

    fn read(&mut self, poller: &Poller, i: usize) {
        loop {
            let c = &mut self.conns[i];
            let Some(fd) = c.fd.as_ref() else { return };
            match sock::read(fd, &mut self.rbuf) {
                Ok(0) => {
                    self.drop_conn(poller, i, "connection closed by the server".into());
                    return;
                }
                Ok(n) => {
                    c.inbuf.extend_from_slice(&self.rbuf[..n]);
                    if let Err(why) = self.parse_answers(i) {
                        self.drop_conn(poller, i, why);
                        return;
                    }
                    if self.cfg.fresh && self.conns[i].inflight.is_empty() {
                        self.renew(poller, i);
                        return;
                    }
                    if n < self.rbuf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_conn(poller, i, format!("read: {e}"));
                    return;
                }
            }
        }
    }

    /// Consumes complete answers; Err closes the connection.
    fn parse_answers(&mut self, i: usize) -> Result<(), String> {
        let mut used = 0;
        let mut close_after = false;
        let result = loop {
            let c = &mut self.conns[i];
            let buf = &c.inbuf[used..];
            if buf.is_empty() || close_after {
                break Ok(());
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let head_len = match resp.parse(buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE => break Ok(()),
                Ok(httparse::Status::Partial) => break Err("answer head too large".into()),
                Err(e) => break Err(format!("bad answer: {e}")),
            };
            let status = resp.code.unwrap_or(0);
            let mut length = None;
            let mut chunked = false;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok());
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = h
                        .value
                        .windows(7)
                        .any(|w| w.eq_ignore_ascii_case(b"chunked"));
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close_after = h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
                }
            }
            let rest = &buf[head_len..];
            let body = if chunked {
                match decode_chunked(rest) {
                    Ok(b) => b,
                    Err(e) => break Err(e),
                }
            } else if let Some(n) = length {
                if rest.len() >= n {
                    Body::Complete(n, rest[..n].to_vec())
                } else if n > MAX_RESPONSE {
                    break Err("answer too large".into());
                } else {
                    Body::Incomplete
                }
            } else if status < 200 || status == 204 || status == 304 {
                Body::Complete(0, Vec::new())
            } else {
                break Err("answer without length (not supported)".into());
            };
            let Body::Complete(body_len, body) = body else {
                break Ok(());
            };
            if status < 200 {
                used += head_len + body_len;
                continue;
            }
            let Some(sent) = c.inflight.pop_front() else {
                break Err("an answer to no request".into());
            };
            used += head_len + body_len;
            let now = mono_ns();
            self.latency.record(now.saturating_sub(sent));
            self.last_answer_ns = now;
            self.answered += 1;
            if (self.judge)(status, &body) {
                self.succeeded += 1;
            } else {
                let text = String::from_utf8_lossy(&body[..body.len().min(100)]).into_owned();
                self.error(format!("HTTP {status}: {text}"));
            }
        };
        self.conns[i].inbuf.drain(..used);
        match result {
            Ok(()) if close_after => Err("server asked to close".into()),
            r => r,
        }
    }

    /// Closes connection `i`; its unanswered requests are lost; reconnects while work remains.
    fn drop_conn(&mut self, poller: &Poller, i: usize, why: String) {
        let c = &mut self.conns[i];
        let lost = c.inflight.len() as u64;
        c.fd = None;
        c.connected = false;
        c.inflight.clear();
        c.inbuf.clear();
        c.out.clear();
        c.want_write = false;
        self.lost += lost;
        if lost > 0 || why != "server asked to close" {
            self.error(why);
        }
        if self.next < self.cfg.total && self.conns[i].reconnects < MAX_RECONNECTS {
            self.conns[i].reconnects += 1;
            self.connect(poller, i);
        } else {
            self.conns[i].dead = true;
        }
        self.check_all_dead();
    }

    /// `fresh`: closes connection `i` after its answer and opens the next one while
    /// requests remain.
    fn renew(&mut self, poller: &Poller, i: usize) {
        let c = &mut self.conns[i];
        c.fd = None;
        c.connected = false;
        c.inbuf.clear();
        c.out.clear();
        c.want_write = false;
        if self.next < self.cfg.total {
            self.connect(poller, i);
        }
        self.check_all_dead();
    }

    pub fn report(&self) -> PoolReport {
        PoolReport {
            sent: self.next,
            answered: self.answered,
            succeeded: self.succeeded,
            lost: self.lost,
            first_send_ns: self.first_send_ns,
            last_answer_ns: self.last_answer_ns,
            errors: self.errors.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PoolReport {
    pub sent: u64,
    pub answered: u64,
    pub succeeded: u64,
    pub lost: u64,
    pub first_send_ns: u64,
    pub last_answer_ns: u64,
    pub errors: Vec<(String, u64)>,
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn decode_chunked(b: &[u8]) -> Result<Body, String> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let Some(eol) = find_crlf(b, pos) else {
            return Ok(Body::Incomplete);
        };
        let line = std::str::from_utf8(&b[pos..eol]).map_err(|_| "bad chunk size".to_string())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size".to_string())?;
        pos = eol + 2;
        if size == 0 {
            loop {
                let Some(eol) = find_crlf(b, pos) else {
                    return Ok(Body::Incomplete);
                };
                if eol == pos {
                    return Ok(Body::Complete(pos + 2, body));
                }
                pos = eol + 2;
            }
        }
        if size > MAX_RESPONSE {
            return Err("chunk too large".into());
        }
        if b.len() < pos + size + 2 {
            return Ok(Body::Incomplete);
        }
        body.extend_from_slice(&b[pos..pos + size]);
        pos += size + 2;
    }
}

/// Runs a pool on the current thread until every request is answered or lost, or
/// `deadline_ns` passes (the rest then count as lost).
pub fn run(mut pool: Pool, deadline_ns: u64) -> io::Result<Pool> {
    let mut poller = Poller::new()?;
    let mut events = Vec::new();
    pool.start(&poller);
    loop {
        let now = mono_ns();
        pool.pump(&poller, now);
        if pool.done() {
            break;
        }
        if now >= deadline_ns {
            pool.lost = pool.cfg.total - pool.answered;
            pool.error("deadline passed".into());
            break;
        }
        let t = pool.timeout_ms(now);
        let t = if t < 0 { 100 } else { t.min(100) };
        poller.wait(&mut events, t)?;
        for &(token, bits) in &events {
            if pool.owns(token) {
                pool.handle(&poller, token, bits);
            }
        }
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        match decode_chunked(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT").unwrap() {
            Body::Complete(n, body) => {
                assert_eq!(body, b"abcde");
                assert_eq!(n, 24);
            }
            Body::Incomplete => panic!("complete"),
        }
        assert!(matches!(
            decode_chunked(b"3\r\nab").unwrap(),
            Body::Incomplete
        ));
        assert!(decode_chunked(b"zz\r\n").is_err());
    }
}
