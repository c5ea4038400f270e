//! A connection's life on its core: opened once its id routes to it,
//! ended in one place (so notices and the disconnect webhook go out
//! exactly once) or detached for a resume (`resume.rs`), and the heartbeat
//! sweep that pings and expires them.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpStream;

use super::conn::out_queue::OutQueue;
use super::conn::reader::{linger, LINGER_BYTES};
use super::conn::Conn;
use super::replay::place::Place;
use super::Core;
use crate::client_id::ClientId;
use crate::clock::unix_seconds;
use crate::op::ConnAddr;
use crate::socket;
use crate::webhook::EventKind;
use crate::ws::deflate::Deflate;
use crate::ws::frame::close_frame;
use crate::ws::message::{notice_frame, refusal_frame, welcome_frame, Welcome};
use crate::ws::CloseReason;

thread_local! {
    /// The userId of connections without one, shared by all of them (a core
    /// is one thread).
    static NO_USER: Rc<str> = Rc::from("");
}

/// How long a closed connection's socket is kept to read the client's
/// close reply and let our last bytes leave before the descriptor closes.
pub const LINGER: Duration = Duration::from_secs(2);

impl Core {
    /// Registers a new WebSocket connection and writes `answer` (the 101,
    /// which agreed to `deflate` if it is Some) and its welcome frame in
    /// one `sendmsg`: the welcome goes out only now that the id routes to
    /// it, and nothing can be queued between the two. None when no slot is
    /// left (nothing written then).
    pub fn open_conn(
        &mut self,
        stream: Rc<TcpStream>,
        system: &str,
        user_id: &str,
        answer: Bytes,
        deflate: Option<Deflate>,
        resume_asked: bool,
    ) -> Option<ConnAddr> {
        let addr = self.conns.vacant()?;
        let id = ClientId {
            node: self.node.node_id,
            core: self.id,
            slot: addr.slot,
            generation: addr.gen,
            epoch: self.node.epoch,
        };
        let client_id = self.node.codec.encode(&id, system);
        // Shared with the registry's key: no copy per connection.
        let system: Rc<str> = match self.systems.get_key_value(system) {
            Some((key, _)) => key.clone(),
            None => Rc::from(system),
        };
        let user: Rc<str> = if user_id.is_empty() {
            NO_USER.with(Rc::clone)
        } else {
            Rc::from(user_id)
        };
        let mut out = OutQueue::default();
        out.deflate = deflate;
        out.push(answer);
        let welcome = !self.node.config.ws.echo;
        if welcome {
            let asked = resume_asked;
            out.push(self.welcome(&system, &client_id, 0, |token| Welcome::New {
                token,
                asked,
            }));
        }
        let fd = stream.as_raw_fd();
        let mut conn = Conn {
            stream: None,
            system: system.clone(),
            client_id: client_id.into(),
            user_id: user.clone(),
            extend: Box::from(""),
            groups: Box::default(),
            connect_time: u32::try_from(unix_seconds()).unwrap_or(u32::MAX),
            newest_id: 0,
            codec: None,
            out,
            last_rx_ms: self.clock_ms(),
            bucket: Default::default(),
            dirty_since: None,
            write_waiting: false,
            to_close: false,
            resume_seq: 0,
            session: None,
        };
        conn.attach(stream);
        self.conns.insert(conn)?;
        if self.reader.readiness.add(fd, addr).is_err() {
            self.conns.remove(addr);
            return None;
        }
        self.reader.sockets += 1;
        if self.resume_on() {
            let head = self.replay.log.head();
            *self.replay.places.get_mut(addr.slot) = Place::new(head);
        }
        self.index.add_conn(&system, addr.slot);
        if !user.is_empty() {
            self.index.set_user(&system, "", &user, addr.slot);
        }
        let m = self.metrics();
        m.connections.fetch_add(1, Relaxed);
        m.accepted.fetch_add(1, Relaxed);
        m.deflate_connection(false, deflate.is_some());
        if welcome {
            m.pushed.fetch_add(1, Relaxed);
        }
        if let Some(conn) = self.conns.get(addr) {
            self.emit(conn, EventKind::Connect);
        }
        self.write_conn(addr);
        if let Some(conn) = self.conns.get_mut(addr) {
            // Written: an idle connection keeps no queue.
            conn.out.release_if_empty();
        }
        Some(addr)
    }

    /// The welcome of a connection's `seq`th welcome: with resume on, it
    /// carries a new resume token and what `how` says about it.
    pub(super) fn welcome(
        &self,
        system: &str,
        client_id: &str,
        seq: u16,
        how: impl FnOnce(&str) -> Welcome,
    ) -> Bytes {
        let client_send = self.node.config.ws.client_send.as_str();
        if !self.resume_on() {
            return welcome_frame(client_id, Welcome::Plain, client_send);
        }
        let node = self.node.node_id;
        let token = self.node.resume.issue(node, system, client_id, seq);
        welcome_frame(client_id, how(&token), client_send)
    }

    /// Ends a connection, or detaches it when it dropped without a goodbye
    /// and resume is on (`resume.rs`).
    pub fn close_conn(&mut self, addr: ConnAddr, reason: CloseReason, code: Option<u16>) {
        if self.resume_on() && reason.detaches(code) {
            self.detach(addr, reason);
        } else {
            self.end_conn(addr, reason, code);
        }
    }

    /// Ends a connection for good: it leaves the slab and the index at once
    /// (so it is offline from now on), gets `code` as a close frame when
    /// given, its groups get the offline notice once, and its socket (if it
    /// still has one) lingers a while before it is dropped.
    pub(super) fn end_conn(&mut self, addr: ConnAddr, reason: CloseReason, code: Option<u16>) {
        let Some(mut conn) = self.conns.remove(addr) else {
            return;
        };
        self.index
            .remove_conn(&conn.system, addr.slot, &conn.groups, &conn.user_id);
        let m = self.metrics();
        m.connections.fetch_sub(1, Relaxed);
        m.deflate_connection(conn.out.deflate.is_some(), false);
        m.closed(reason);
        match conn.detach() {
            Some(stream) => {
                // A detached connection gave its place back when it detached.
                self.node.release_connection();
                self.reader.readiness.remove(stream.as_raw_fd());
                if let Some(core) = self.this.upgrade() {
                    monoio::spawn(linger(core, stream.clone()));
                }
                self.finish_writes(&mut conn, &stream, code);
            }
            None => {
                self.metrics().detached.fetch_sub(1, Relaxed);
            }
        }
        let reason = reason.as_str();
        self.emit(&conn, EventKind::Disconnect { reason });
        if !self.node.config.ws.notices {
            return;
        }
        for group in &conn.groups {
            let id = self.ids.next();
            let frame = notice_frame(id, false, &conn.client_id, &conn.user_id, &conn.extend);
            let push = self.encode(frame);
            self.group_notice(&conn.system, group, push);
        }
    }

    /// One heartbeat tick: closes the connections silent for
    /// `idle_timeout`, and pings share `share` of `shares` (slot `s` is in
    /// share `s % shares`; the ticks take the shares in order), so that
    /// every connection is pinged once per `ping_interval` and a tick
    /// writes to one share of them, never to all at once. Walks the slab in place, copying no keys; on the way
    /// it finds the least acknowledged place, before which the replay log
    /// holds nothing anyone needs.
    pub fn sweep(&mut self, share: u32, shares: u32) {
        let idle_ms = self.node.config.ws.idle_timeout.as_millis().min(1 << 31) as u32;
        let now_ms = self.clock_ms();
        let ping = !self.node.config.ws.echo;
        let shares = shares.max(1);
        let now = Instant::now();
        let mut oldest = self.replay.log.head();
        for slot in 0..self.conns.slot_count() {
            let Some((addr, conn)) = self.conns.at_mut(slot) else {
                continue;
            };
            oldest = oldest.min(self.replay.places.get(slot).acked);
            if conn.stream.is_none() {
                self.expire_if_due(addr, now);
                continue;
            }
            conn.out.release_if_unused();
            if now_ms.wrapping_sub(conn.last_rx_ms) >= idle_ms {
                self.close_conn(addr, CloseReason::IdleTimeout, Some(1001));
            } else if ping && slot % shares == share % shares {
                let frame = self.ping(addr);
                self.enqueue(addr, frame);
            }
        }
        self.prune_log(oldest);
        self.flush();
    }

    /// Closes every connection with 1001 (shutdown, or the node's identity
    /// in the cluster was lost).
    pub fn close_all(&mut self, reason: CloseReason) {
        for addr in self.conns.keys() {
            self.close_conn(addr, reason, reason.close_code());
        }
        self.flush();
    }
}

/// Writes `answer` (the 101), the -1001 refusal frame with `msg` and close
/// 1008 in one write, then lingers a short while: a refused WebSocket
/// client hears why, as go-websocket tells it.
pub async fn refuse(stream: &Rc<TcpStream>, answer: Bytes, msg: &str) {
    let mut frames = bytes::BytesMut::from(&answer[..]);
    frames.extend_from_slice(&refusal_frame(msg));
    frames.extend_from_slice(&close_frame(1008));
    if socket::write_all(stream, frames.freeze()).await.is_ok() {
        socket::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
        socket::linger(stream, LINGER_BYTES, LINGER).await;
    }
}
