//! Session resume (docs/api.md §8): a connection that drops without a
//! goodbye is detached, not ended, and a client that comes back with its
//! resume token gets the same connection, with what it missed.
//!
//! Detached, a connection keeps its slot — so its clientId, its groups, its
//! userId and extend — and stays in the index: sends reach it, lists show
//! it, and its session keeps the push and notice frames sent to it
//! (`conn::session`). Its socket is gone (the descriptor is closed at once,
//! so a crowd of dropped clients does not hold the node's descriptors). The
//! heartbeat ends it for real once `ws.resume_window` has passed, with the
//! reason of the drop: notices and the disconnect webhook go out then.
//!
//! A resume names its session's core. The core that accepted the socket
//! hands it to that core (`CoreMsg::Resume`); the owner keeps the session
//! and attaches the socket to it — taking over from an old socket that is
//! still attached (half-open) — and writes the welcome and the frames after
//! the client's `last`, byte for byte, before anything new.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use monoio::net::TcpStream;

use super::conn::session::Replay;
use super::lifecycle::refuse;
use super::{Core, CoreRef};
use crate::api::error::ApiError;
use crate::mailbox::{CoreMsg, Handoff, ResumeRequest};
use crate::metrics::ResumeResult;
use crate::op::ConnAddr;
use crate::socket;
use crate::ws::message::Welcome;
use crate::ws::CloseReason;

/// Where a genuine resume token's session lives.
pub struct Claim {
    pub core: u8,
    pub addr: ConnAddr,
    pub seq: u16,
}

impl Core {
    /// Whether dropped connections are kept for a resume.
    pub fn resume_on(&self) -> bool {
        !self.node.config.ws.resume_window.is_zero()
    }

    /// Where the session `token` names lives, if this node issued the
    /// token for `system` in this run; None for anything else.
    pub fn claim(&self, system: &str, token: &str) -> Option<Claim> {
        let node = &self.node;
        let claim = node.resume.verify(token, system)?;
        let id = node.codec.decode(claim.client_id, system).ok()?;
        let ours = claim.node == node.node_id && id.node == node.node_id;
        let this_run = id.epoch == node.epoch && usize::from(id.core) < node.cores();
        (ours && this_run).then_some(Claim {
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
        let handoff = Handoff {
            socket,
            request: req,
        };
        c.post(core, CoreMsg::Resume(Box::new(handoff)));
        c.flush();
    }

    /// A socket another core accepted for a session of this one.
    pub(super) fn take_handoff(&mut self, handoff: Handoff) {
        let Handoff { socket, request } = handoff;
        // SAFETY: the descriptor is a connected TCP socket this core now owns.
        let std = unsafe { std::net::TcpStream::from_raw_fd(socket.into_raw_fd()) };
        match TcpStream::from_std(std) {
            Ok(stream) => self.resume(Rc::new(stream), request),
            Err(_) => self.node.release_connection(),
        }
    }

    /// Attaches `stream` to the session `req` names, or — the session is
    /// gone — opens a new connection for it (`"resumed":false`) if its
    /// connect token allows one, else refuses it.
    fn resume(&mut self, stream: Rc<TcpStream>, req: ResumeRequest) {
        let addr = match self.reattach(&stream, &req) {
            Some(addr) => {
                self.metrics().resume(ResumeResult::Resumed);
                // The session holds its place under max_connections already.
                self.node.release_connection();
                Some(addr)
            }
            None => {
                self.metrics().resume(ResumeResult::Unknown);
                self.open_instead(stream, &req)
            }
        };
        if let Some(addr) = addr.filter(|_| !req.rest.is_empty()) {
            self.feed(addr, &req.rest);
        }
        self.flush();
    }

    fn open_instead(&mut self, stream: Rc<TcpStream>, req: &ResumeRequest) -> Option<ConnAddr> {
        let answer = req.answer.clone();
        let opened = req.fallback.clone().and_then(|user| {
            self.open_conn(stream.clone(), &req.system, &user, answer.clone(), true)
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

    /// The session, if it is still here for this token: its old socket (if
    /// any) closed without a word, `stream` attached, the welcome and the
    /// frames after `last` queued and written.
    fn reattach(&mut self, stream: &Rc<TcpStream>, req: &ResumeRequest) -> Option<ConnAddr> {
        let conn = self.conns.get(req.addr)?;
        let current = !conn.doomed && conn.resume_seq == req.seq && *conn.system == *req.system;
        if !current {
            return None;
        }
        let seq = conn.resume_seq.wrapping_add(1);
        let (system, client_id) = (conn.system.clone(), conn.client_id.clone());
        let replay = conn.session.as_ref().map_or(
            Replay {
                frames: Vec::new(),
                recovered: true,
            },
            |s| s.replay(req.last),
        );
        let recovered = replay.recovered;
        let welcome = self.welcome(&system, &client_id, seq, |token| Welcome::Resumed {
            token,
            recovered,
        });
        self.readiness.add(stream.as_raw_fd(), req.addr).ok()?;
        let now_ms = self.clock_ms();
        let conn = self.conns.get_mut(req.addr)?;
        let old = conn.stream.replace(stream.clone());
        if let Some(s) = conn.session.as_mut() {
            s.detached = None;
        }
        conn.resume_seq = seq;
        conn.codec = None;
        conn.write_waiting = false;
        conn.last_rx_ms = now_ms;
        conn.out.clear();
        conn.out.push(req.answer.clone());
        conn.out.push(welcome);
        let replayed = replay.frames.len() as u64;
        replay.frames.into_iter().for_each(|f| conn.out.push(f));
        match old {
            Some(old) => self.drop_socket(&old),
            None => {
                self.metrics().detached.fetch_sub(1, Relaxed);
            }
        }
        self.ws_sockets += 1;
        self.metrics().pushed.fetch_add(replayed + 1, Relaxed);
        self.flush_conn(req.addr);
        Some(req.addr)
    }

    /// A connection dropped without a goodbye: its socket goes, its session
    /// stays for `ws.resume_window`.
    pub(super) fn detach(&mut self, addr: ConnAddr, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        let Some(stream) = conn.stream.take() else {
            return;
        };
        conn.out.clear();
        conn.out.release_if_empty();
        conn.codec = None;
        conn.write_waiting = false;
        // A write error dooms a connection; the reap that closes it lands here.
        conn.doomed = false;
        let session = conn.session.get_or_insert_with(Box::default);
        session.detached = Some((Instant::now(), reason));
        self.drop_socket(&stream);
        self.metrics().detached.fetch_add(1, Relaxed);
    }

    /// Stops reading a connection's socket and shuts it; the descriptor
    /// closes with the last handle (a writer task may hold one a moment).
    fn drop_socket(&mut self, stream: &Rc<TcpStream>) {
        let fd = stream.as_raw_fd();
        self.readiness.remove(fd);
        socket::shutdown(fd, libc::SHUT_RDWR);
        self.ws_sockets -= 1;
    }

    /// Ends a detached connection whose window has passed, with the reason
    /// it dropped for.
    pub(super) fn expire_if_due(&mut self, addr: ConnAddr, now: Instant) {
        let window = self.node.config.ws.resume_window;
        let Some(session) = self.conns.get(addr).and_then(|c| c.session.as_deref()) else {
            return;
        };
        let Some((since, reason)) = session.detached else {
            return;
        };
        if now.duration_since(since) < window {
            return;
        }
        self.metrics().resume_expired(session.len());
        self.end_conn(addr, reason, None);
    }
}
