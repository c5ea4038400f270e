//! Session resume (docs/api.md §8, §8.1): a connection that drops without a
//! goodbye is detached, not ended, and a client that comes back with its
//! resume token gets the same connection, with what it missed.
//!
//! Detached, a connection keeps its slot — so its clientId, its groups, its
//! userId and extend — and stays in the index: sends reach it, lists show
//! it, and the core's replay log (`replay`) keeps what is sent to it. Its
//! socket is gone (the descriptor is closed at once, so a crowd of dropped
//! clients does not hold the node's descriptors) and so is its place under
//! `server.max_connections`; `ws.max_detached` bounds how many wait. The
//! heartbeat ends it for real once `ws.resume_window` has passed, with the
//! reason of the drop: notices and the disconnect webhook go out then.
//!
//! A resume names its session's core. The core that accepted the socket
//! hands it to that core (`CoreMsg::Resume`); the owner checks the token
//! is the session's newest (or the one before, while the client has not
//! shown it got the newer: a lost welcome), probes an old socket that is
//! still attached (one that answers keeps its session), attaches the new
//! socket and writes the welcome and the frames after the client's `last`,
//! byte for byte, before anything new.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use monoio::net::TcpStream;

use super::lifecycle::refuse;
use super::replay::{replay, Member, Replayed};
use super::{Core, CoreRef};
use crate::api::error::ApiError;
use crate::config::AuthMode;
use crate::mailbox::{CoreMsg, Handoff, ResumeRequest};
use crate::metrics::ResumeResult;
use crate::op::ConnAddr;
use crate::socket;
use crate::ws::message::Welcome;
use crate::ws::{CloseReason, Last};

/// Where a genuine resume token's session lives.
pub struct ResumeTarget {
    pub core: u8,
    pub addr: ConnAddr,
    pub seq: u16,
}

/// What a resume finds of its session.
enum Found {
    /// Nothing it may have: gone, superseded, or not its user's.
    Nothing(ResumeResult),
    /// Detached: attach at once.
    Detached,
    /// Its old socket is still attached (half-open, or alive).
    Attached(Rc<TcpStream>),
}

impl Core {
    /// Whether dropped connections are kept for a resume.
    pub fn resume_on(&self) -> bool {
        !self.node.config.ws.resume_window.is_zero()
    }

    /// Where the session `token` names lives, if this node issued the
    /// token for `system` in this run; None for anything else.
    pub fn resume_target(&self, system: &str, token: &str) -> Option<ResumeTarget> {
        let node = &self.node;
        let claim = node.resume.verify(token, system)?;
        let id = node.codec.decode(claim.client_id, system).ok()?;
        let ours = claim.node == node.node_id && id.node == node.node_id;
        let this_run = id.epoch == node.epoch && usize::from(id.core) < node.cores();
        (ours && this_run).then_some(ResumeTarget {
            core: id.core,
            addr: ConnAddr {
                slot: id.slot,
                gen: id.generation,
            },
            seq: claim.seq,
        })
    }

    /// Takes a resume with a genuine token, accepted on this core: attaches
    /// the socket here, or hands it to the core that owns the session.
    pub fn take_resume(this: &CoreRef, stream: Rc<TcpStream>, core: u8, req: ResumeRequest) {
        if core == this.borrow().id {
            this.borrow_mut().resume(stream, req);
            return;
        }
        // The descriptor moves: a duplicate goes to the owner, this core's
        // copy is dropped (and deregistered from this runtime) by the caller.
        let dup = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        let mut c = this.borrow_mut();
        if dup < 0 {
            c.node.release_connection();
            return;
        }
        // SAFETY: `dup` is a new descriptor that nothing else owns.
        let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) };
        c.metrics().resume_handoffs.fetch_add(1, Relaxed);
        let handoff = Handoff {
            socket,
            request: req,
        };
        c.post(core, CoreMsg::Resume(Box::new(handoff)));
        c.flush();
    }

    /// A socket another core accepted for a session of this one.
    pub(super) fn resume_handed_over(&mut self, handoff: Handoff) {
        let Handoff { socket, request } = handoff;
        // SAFETY: the descriptor is a connected TCP socket this core now owns.
        let std = unsafe { std::net::TcpStream::from_raw_fd(socket.into_raw_fd()) };
        match TcpStream::from_std(std) {
            Ok(stream) => self.resume(Rc::new(stream), request),
            Err(_) => self.node.release_connection(),
        }
    }

    /// Attaches `stream` to the session `req` names — after probing an old
    /// socket still attached — or opens a new connection for it
    /// (`"resumed":false`) if its connect token allows one, else refuses it.
    fn resume(&mut self, stream: Rc<TcpStream>, req: ResumeRequest) {
        match self.find(&req) {
            Found::Attached(old) => self.probe(old, stream, req),
            _ => self.attach_or_open(stream, req),
        }
    }

    /// What the resume `req` finds of its session now.
    fn find(&self, req: &ResumeRequest) -> Found {
        let Some(conn) = self.conns.get(req.addr) else {
            return Found::Nothing(ResumeResult::Unknown);
        };
        let place = self.replay.places.get(req.addr.slot);
        let newest = conn.resume_seq == req.seq;
        let before_lost_welcome = place.unconfirmed && req.seq.wrapping_add(1) == conn.resume_seq;
        if conn.to_close || *conn.system != *req.system || !(newest || before_lost_welcome) {
            return Found::Nothing(ResumeResult::Unknown);
        }
        let token_mode = self.node.config.api.auth == AuthMode::Token;
        if token_mode && !credited(req, &conn.user_id) {
            return Found::Nothing(ResumeResult::Invalid);
        }
        match &conn.stream {
            Some(old) => Found::Attached(old.clone()),
            None => Found::Detached,
        }
    }

    /// The session's old socket is attached: ping it and give it
    /// `ws.takeover_probe` to answer. One that answers keeps its session
    /// (the resume becomes a new connection); a silent one is taken over.
    fn probe(&mut self, old: Rc<TcpStream>, stream: Rc<TcpStream>, req: ResumeRequest) {
        let addr = req.addr;
        let Some(before) = self.conns.get(addr).map(|c| c.last_rx_ms) else {
            return self.attach_or_open(stream, req);
        };
        let ping = self.ping(addr);
        self.enqueue(addr, ping);
        self.flush();
        let (Some(this), wait) = (self.this.upgrade(), self.node.config.ws.takeover_probe) else {
            return;
        };
        monoio::spawn(async move {
            monoio::time::sleep(wait).await;
            let mut c = this.borrow_mut();
            let answered = c.conns.get(addr).is_some_and(|conn| {
                let same = conn.stream.as_ref().is_some_and(|s| Rc::ptr_eq(s, &old));
                same && conn.last_rx_ms != before
            });
            if answered {
                c.metrics().resume(ResumeResult::Refused);
                let addr = c.open_instead(stream, &req);
                c.feed_rest(addr, &req);
                c.flush();
                return;
            }
            match c.find(&req) {
                // Another resume attached a socket meanwhile: that one is probed too.
                Found::Attached(now) if !Rc::ptr_eq(&now, &old) => c.probe(now, stream, req),
                _ => c.attach_or_open(stream, req),
            }
        });
    }

    /// Attaches `stream` to its session if it may have it, else opens a new
    /// connection instead.
    fn attach_or_open(&mut self, stream: Rc<TcpStream>, req: ResumeRequest) {
        let addr = match self.find(&req) {
            Found::Nothing(result) => {
                self.metrics().resume(result);
                self.open_instead(stream, &req)
            }
            _ => {
                self.metrics().resume(ResumeResult::Resumed);
                self.reattach(&stream, &req)
            }
        };
        self.feed_rest(addr, &req);
        self.flush();
    }

    /// Feeds the bytes that came after the upgrade request to the
    /// connection the resume became.
    fn feed_rest(&mut self, addr: Option<ConnAddr>, req: &ResumeRequest) {
        if let Some(addr) = addr.filter(|_| !req.rest.is_empty()) {
            self.feed(addr, &req.rest);
        }
    }

    fn open_instead(&mut self, stream: Rc<TcpStream>, req: &ResumeRequest) -> Option<ConnAddr> {
        let answer = req.answer.clone();
        let opened = req.fallback.clone().and_then(|user| {
            let deflate = req.deflate;
            self.open_conn(
                stream.clone(),
                &req.system,
                &user,
                answer.clone(),
                deflate,
                true,
            )
            .ok_or(ApiError::Busy)
        });
        match opened {
            Ok(addr) => Some(addr),
            Err(e) => {
                self.node.release_connection();
                let msg = e.message(self.node.config.api.lang);
                monoio::spawn(async move { refuse(&stream, answer, &msg).await });
                None
            }
        }
    }

    /// The session, with its old socket (if any) closed without a word,
    /// `stream` attached, the welcome and the frames after `last` queued
    /// and written. `stream` keeps the place it took under
    /// `server.max_connections`; an old socket gives its own back.
    fn reattach(&mut self, stream: &Rc<TcpStream>, req: &ResumeRequest) -> Option<ConnAddr> {
        let addr = req.addr;
        let replayed = self.replay_of(addr, req.last)?;
        let conn = self.conns.get(addr)?;
        let seq = req.seq.wrapping_add(1);
        let (system, client_id) = (conn.system.clone(), conn.client_id.clone());
        let recovered = replayed.recovered;
        let welcome = self.welcome(&system, &client_id, seq, |token| Welcome::Resumed {
            token,
            recovered,
        });
        if self.reader.readiness.add(stream.as_raw_fd(), addr).is_err() {
            self.node.release_connection();
            return None;
        }
        self.replay.places.get_mut(addr.slot).unconfirmed = true;
        let now_ms = self.clock_ms();
        let conn = self.conns.get_mut(addr)?;
        let old = conn.attach(stream.clone());
        if let Some(s) = conn.session.as_mut() {
            s.detached = None;
            if s.is_spent() {
                conn.session = None;
            }
        }
        conn.resume_seq = seq;
        conn.codec = None;
        let had_deflate = std::mem::replace(&mut conn.out.deflate, req.deflate).is_some();
        conn.write_waiting = false;
        conn.last_rx_ms = now_ms;
        conn.out.clear();
        conn.out.push(req.answer.clone());
        conn.out.push(welcome);
        let replayed_n = replayed.frames.len() as u64;
        let deflate = conn.out.deflate;
        for f in replayed.frames {
            conn.out.push(f.for_socket(deflate).clone());
        }
        match old {
            Some(old) => {
                self.drop_socket(&old);
                self.node.release_connection();
            }
            None => {
                self.metrics().detached.fetch_sub(1, Relaxed);
            }
        }
        self.reader.sockets += 1;
        let m = self.metrics();
        m.pushed.fetch_add(replayed_n + 1, Relaxed);
        m.deflate_connection(had_deflate, req.deflate.is_some());
        self.write_conn(addr);
        Some(addr)
    }

    /// A connection dropped without a goodbye: its socket and its place
    /// under `server.max_connections` go, its session stays for
    /// `ws.resume_window` — or until `ws.max_detached` ends it.
    pub(super) fn detach(&mut self, addr: ConnAddr, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        let Some(stream) = conn.detach() else {
            return;
        };
        conn.out.clear();
        conn.out.release_if_empty();
        conn.codec = None;
        conn.write_waiting = false;
        // A write error marks a connection to close; the `close_marked` that
        // closes it lands here.
        conn.to_close = false;
        let since = Instant::now();
        let session = conn.session.get_or_insert_with(Box::default);
        session.detached = Some((since, reason));
        self.drop_socket(&stream);
        self.node.release_connection();
        self.metrics().detached.fetch_add(1, Relaxed);
        self.replay.detached.push_back((addr, since));
        self.bound_detached();
    }

    /// Ends the oldest detached sessions past this core's share of
    /// `ws.max_detached`.
    fn bound_detached(&mut self) {
        let cores = self.node.cores().max(1);
        let bound = self.node.config.ws.max_detached.div_ceil(cores) as u64;
        while self.metrics().detached.load(Relaxed) > bound {
            let Some((addr, since)) = self.replay.detached.pop_front() else {
                return;
            };
            if let Some((at, reason)) = self.detached_since(addr) {
                if at == since {
                    self.metrics().resume_expired(self.missed(addr));
                    self.end_conn(addr, reason, None);
                }
            }
        }
        // Entries of sessions that came back or ended: dropped once they
        // outnumber the detached ones.
        let live = self.metrics().detached.load(Relaxed) as usize;
        if self.replay.detached.len() > 2 * live + 64 {
            let mut list = std::mem::take(&mut self.replay.detached);
            list.retain(|(addr, since)| self.detached_since(*addr).map(|d| d.0) == Some(*since));
            self.replay.detached = list;
        }
    }

    fn detached_since(&self, addr: ConnAddr) -> Option<(Instant, CloseReason)> {
        let session = self.conns.get(addr)?.session.as_deref()?;
        session.detached
    }

    /// What a resume of the connection at `addr` from `last` gets now.
    fn replay_of(&self, addr: ConnAddr, last: Last) -> Option<Replayed> {
        let conn = self.conns.get(addr)?;
        let member = Member {
            addr,
            system: &conn.system,
            groups: &conn.groups,
            user: &conn.user_id,
            session: conn.session.as_deref(),
        };
        let place = self.replay.places.get(addr.slot);
        Some(replay(&self.replay.log, &place, &member, last))
    }

    /// The frames a detached connection missed and will now never get.
    fn missed(&self, addr: ConnAddr) -> usize {
        self.replay_of(addr, Last::Nothing)
            .map_or(0, |r| r.frames.len())
    }

    /// Stops reading a connection's socket and shuts it; the descriptor
    /// closes with the last handle (a writer task may hold one a moment).
    fn drop_socket(&mut self, stream: &Rc<TcpStream>) {
        let fd = stream.as_raw_fd();
        self.reader.readiness.remove(fd);
        socket::shutdown(fd, libc::SHUT_RDWR);
        self.reader.sockets -= 1;
    }

    /// Ends a detached connection whose window has passed, with the reason
    /// it dropped for.
    pub(super) fn expire_if_due(&mut self, addr: ConnAddr, now: Instant) {
        let window = self.node.config.ws.resume_window;
        let Some((since, reason)) = self.detached_since(addr) else {
            return;
        };
        if now.duration_since(since) < window {
            return;
        }
        self.metrics().resume_expired(self.missed(addr));
        self.end_conn(addr, reason, None);
    }
}

/// Token mode: whether the resume `req` brings the session's credential — a
/// connect token of its user; a session without a user, opened without a
/// token where none is required, needs none to come back either.
fn credited(req: &ResumeRequest, user: &str) -> bool {
    match &req.token_user {
        Some(u) => u == user,
        None => user.is_empty() && req.fallback.is_ok(),
    }
}
