//! What the core keeps for resumes as it works (docs/api.md §8.1): each
//! fan-out into the replay log once, a frame for one connection with a
//! note in its session, group and user changes that entries depend on,
//! pongs that move a connection's place, and the pruning of what every
//! connection has shown it got (`replay` has the why).

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::index::Audience;
use super::replay::log::To;
use super::replay::place::Place;
use super::replay::session::What;
use super::Core;
use crate::op::ConnAddr;
use crate::ws::message::frame_message_id;
use crate::ws::Push;

/// A connection holding more than this share of `ws.resume_buffer_bytes` in
/// frames of its own is asked for an acknowledgement at once.
const ASK_SHARE: usize = 8;

impl Core {
    /// Appends a fan-out's frame to the replay log when it is a push or
    /// notice and resume is on; its messageId then.
    pub(super) fn log_fan_out(&mut self, audience: Audience<'_>, frame: &Push) -> Option<u64> {
        if !self.resume_on() {
            return None;
        }
        let id = frame_message_id(&frame.plain)?;
        let to = match audience {
            Audience::System(s) => To::System(self.shared_name(s)),
            Audience::Group(s, g) => To::Group(self.shared_name(s), Rc::from(g)),
            Audience::User(s, u) => To::User(self.shared_name(s), Rc::from(u)),
        };
        self.append(to, frame.clone());
        Some(id.0)
    }

    /// Keeps a push or notice addressed to the connection at `addr` alone,
    /// under its `ws.resume_buffer_bytes`. True when the caller should queue
    /// a ping right after the frame: the connection holds more of its own
    /// frames than [`ASK_SHARE`] of that bound, and no such ping is out —
    /// its pong releases them within a round trip instead of a
    /// `ws.ping_interval`.
    pub(super) fn keep_own(&mut self, addr: ConnAddr, frame: &Push) -> bool {
        if !self.resume_on() {
            return false;
        }
        let Some(id) = frame_message_id(&frame.plain) else {
            return false;
        };
        let seq = self.append(To::Conn(addr), frame.clone());
        self.note_newest(addr, Some(id.0));
        let limit = self.node.config.ws.resume_buffer_bytes;
        let Some(conn) = self.conns.get_mut(addr) else {
            return false;
        };
        let attached = conn.stream.is_some();
        let session = conn.session.get_or_insert_with(Box::default);
        let over = session.own(seq, frame.held(), limit);
        let ask = attached && session.ask_for_ack(limit / ASK_SHARE);
        if !attached {
            self.metrics().resume_frames_dropped(over.len());
        }
        if !over.is_empty() {
            for seq in over {
                self.replay.log.hollow(seq);
            }
            self.note_kept();
        }
        ask
    }

    /// `id` is the newest push or notice addressed to the connection.
    pub(super) fn note_newest(&mut self, addr: ConnAddr, id: Option<u64>) {
        if let (Some(conn), Some(id)) = (self.conns.get_mut(addr), id) {
            conn.newest_id = id;
        }
    }

    fn append(&mut self, to: To, frame: Push) -> u64 {
        let (seq, dropped) = self.replay.log.append(to, frame);
        if dropped > 0 {
            let m = self.metrics();
            m.resume_bound_dropped.fetch_add(dropped as u64, Relaxed);
        }
        self.note_kept();
        seq
    }

    fn note_kept(&self) {
        let bytes = self.replay.log.bytes() as u64;
        self.metrics().resume_kept_bytes.store(bytes, Relaxed);
    }

    /// The registry's copy of a system's name (no allocation per entry).
    fn shared_name(&self, system: &str) -> Rc<str> {
        match self.systems.get_key_value(system) {
            Some((key, _)) => key.clone(),
            None => Rc::from(system),
        }
    }

    /// Notes a change of the connection's groups or user, if an entry it
    /// has not acknowledged depends on it.
    pub(super) fn note_change(&mut self, addr: ConnAddr, what: What) {
        let head = self.replay.log.head();
        if !self.resume_on() || self.replay.places.get(addr.slot).acked >= head {
            return;
        }
        if let Some(conn) = self.conns.get_mut(addr) {
            let session = conn.session.get_or_insert_with(Box::default);
            session.change(head, what);
        }
    }

    /// A pong from the connection: when it echoes one of our pings, the
    /// client got everything queued before that ping — its own frames
    /// leave the log, and a session with nothing else goes.
    pub(super) fn on_pong(&mut self, addr: ConnAddr, payload: &[u8]) {
        let head = self.replay.log.head();
        let place = self.replay.places.get_mut(addr.slot);
        if !place.on_pong(payload, head) {
            return;
        }
        let acked = place.acked;
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        let Some(session) = conn.session.as_mut() else {
            return;
        };
        let done = session.ack(acked);
        if session.is_spent() {
            conn.session = None;
        }
        for seq in done {
            self.replay.log.hollow(seq);
        }
        self.note_kept();
    }

    /// The ping for the connection at `addr`: with resume on, it carries
    /// the connection's place (`replay::place`).
    pub(super) fn ping(&self, addr: ConnAddr) -> Bytes {
        if !self.resume_on() {
            return Bytes::from_static(crate::ws::frame::PING_FRAME);
        }
        let head = self.replay.log.head();
        let newest = self.conns.get(addr).map_or(0, |c| c.newest_id);
        Place::ping(head, newest)
    }

    /// Drops the entries every connection of the core has acknowledged
    /// (`oldest`: the least acknowledged place among them, from the sweep).
    pub(super) fn prune_log(&mut self, oldest: u64) {
        self.replay.log.prune_through(oldest);
        self.note_kept();
    }
}
