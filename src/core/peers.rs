//! This core's share of the cluster: its view of the peers, its links to
//! them (one it dialled per peer, plus those peers dialled to it), the
//! requests it waits on, and the buffered writing of frames.
//!
//! Frames to send are archived once into a reused buffer, sealed into each
//! link's output buffer (every link has its own keys and counter) and
//! written by the core's `flush`, one write per batch, like WebSocket
//! pushes. A peer's answer comes back on the link that carried the request,
//! to the core that sent it, so no state is shared between cores.
//!
//! A peer that has just joined (or joined again: a node that re-registered
//! after losing its lease) has no link from this core for the first moments.
//! Frames for it are held, in order, and sealed into its link as soon as the
//! link is up; a held frame older than `cluster.request_timeout` is dropped
//! (its request has timed out by then). Only a peer whose link broke, or
//! failed to come up, after that first moment fails at once.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use monoio::net::TcpStream;
use rkyv::util::AlignedVec;

use super::slots::Slots;
use super::{Core, CoreRef};
use crate::cluster::frame::{self, Frame};
use crate::cluster::link::{self, Credentials};
use crate::cluster::seal::{self, Sealer};
use crate::cluster::PeerTable;
use crate::mailbox::{reply_channel, Reply};
use crate::op::ConnAddr;
use crate::socket;

/// Bytes queued on one link before frames are dropped.
const LINK_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// How long a node id not found in etcd is remembered as unknown.
const UNKNOWN_TTL: Duration = Duration::from_secs(1);

/// A link's place in the core's link slab.
pub(super) type LinkKey = ConnAddr;

/// One link's socket and output buffer.
pub(super) struct LinkIo {
    /// The peer's node id (known after the handshake).
    node: u16,
    pub(super) stream: Rc<TcpStream>,
    /// Sealed frames not written yet: a partial write never copies the
    /// backlog again.
    out: socket::SendBacklog,
    /// Seals the frames this side sends on the link.
    sealer: Sealer,
    dirty: bool,
    write_waiting: bool,
    /// This core dialled it (it carries this core's requests).
    outbound: bool,
}

/// A request waiting for its answer frame.
struct Pending {
    node: u16,
    reply: Reply<Frame>,
    sent: Instant,
}

/// Archived frames for a peer whose link is not up yet, oldest first, each
/// with the moment it was sent.
#[derive(Default)]
struct Held {
    frames: VecDeque<(Instant, Bytes)>,
    bytes: usize,
}

impl Held {
    /// Drops the frames held longer than `limit`.
    fn expire(&mut self, limit: Duration) {
        while let Some((t, body)) = self.frames.front() {
            if t.elapsed() < limit {
                break;
            }
            self.bytes -= body.len();
            self.frames.pop_front();
        }
    }
}

/// One core's share of the cluster.
pub(super) struct Peers {
    pub(super) creds: Rc<Credentials>,
    pub(super) request_timeout: Duration,
    pub(super) table: Arc<PeerTable>,
    pub(super) links: Slots<LinkIo>,
    /// Key of this core's established link to each peer.
    outbound: HashMap<u16, LinkKey>,
    /// Peers a dialling task is responsible for, with the sender that
    /// wakes the task to dial at once (the peer joined again).
    pub(super) maintained: HashMap<u16, flume::Sender<()>>,
    /// Peers whose link broke or failed to come up and is not up again.
    broken: HashSet<u16>,
    /// When each peer last joined this core's view (appeared, or came back
    /// with a new record): within `request_timeout` of it, a peer without a
    /// link is waited for even if a dial has failed.
    joined: HashMap<u16, Instant>,
    /// Frames for peers whose link is not up yet.
    held: HashMap<u16, Held>,
    pending: HashMap<u64, Pending>,
    next_req: u64,
    dirty: Vec<LinkKey>,
    /// The archive of the frame being sent, reused across frames.
    body: AlignedVec,
    /// Nodes recently looked up in etcd and not found: ids of departed
    /// nodes are answered offline without asking etcd again each time.
    unknown: HashMap<u16, Instant>,
}

impl Peers {
    pub(super) fn new(
        creds: Credentials,
        request_timeout: Duration,
        table: Arc<PeerTable>,
    ) -> Self {
        Self {
            creds: Rc::new(creds),
            request_timeout,
            table,
            links: Slots::default(),
            outbound: HashMap::new(),
            maintained: HashMap::new(),
            broken: HashSet::new(),
            joined: HashMap::new(),
            held: HashMap::new(),
            pending: HashMap::new(),
            next_req: 1,
            dirty: Vec::new(),
            body: AlignedVec::new(),
            unknown: HashMap::new(),
        }
    }

    /// Whether `node` was looked up and not found within the last second;
    /// records a new lookup when not.
    pub(super) fn recently_unknown(&mut self, node: u16) -> bool {
        let now = Instant::now();
        match self.unknown.get(&node) {
            Some(t) if now.duration_since(*t) < UNKNOWN_TTL => true,
            _ => {
                self.unknown
                    .retain(|_, t| now.duration_since(*t) < UNKNOWN_TTL);
                self.unknown.insert(node, now);
                false
            }
        }
    }

    /// Answers nobody will claim: their requester timed out and left; and
    /// held frames whose link did not come up in time.
    pub(super) fn expire_pending(&mut self) {
        let limit = self.request_timeout * 2;
        self.pending.retain(|_, p| p.sent.elapsed() < limit);
        let limit = self.request_timeout;
        self.held.retain(|_, h| {
            h.expire(limit);
            !h.frames.is_empty()
        });
    }

    /// Whether `node` joined this core's view less than a request timeout ago.
    pub(super) fn just_joined(&self, node: u16) -> bool {
        self.joined
            .get(&node)
            .is_some_and(|t| t.elapsed() < self.request_timeout)
    }

    /// A peer in etcd whose link has not failed yet, or that has only just
    /// joined: worth waiting for.
    fn worth_waiting_for(&self, node: u16) -> bool {
        self.table.contains_key(&node) && (!self.broken.contains(&node) || self.just_joined(node))
    }

    /// Records whether this core's link to `node` has broken (or failed to
    /// come up) since it was last up. A broken peer that has not just joined
    /// fails its requests at once: those held for it are dropped (their
    /// callers see a missing answer now rather than at the deadline).
    pub(super) fn mark_broken(&mut self, node: u16, broken: bool) {
        if !broken {
            self.broken.remove(&node);
            return;
        }
        self.broken.insert(node);
        if !self.just_joined(node) && self.held.remove(&node).is_some() {
            // No link to `node` exists now: every request waiting on it was held.
            self.pending.retain(|_, r| r.node != node);
        }
    }
}

impl Core {
    /// Adopts a new view of the peers: starts a dialling task for each new
    /// peer, closes links to peers that left and fails their requests. A
    /// peer that joins (again) is no longer taken as broken, and its
    /// dialling task dials at once: a node that re-registered after an etcd
    /// outage gets every core's link back without waiting out a backoff.
    pub fn set_peers(&mut self, table: Arc<PeerTable>) {
        let Some(p) = self.peers.as_mut() else {
            return;
        };
        for (node, key) in p.outbound.iter() {
            if !table.contains_key(node) {
                if let Some(l) = p.links.get(*key) {
                    link::close(&l.stream);
                }
            }
        }
        p.pending.retain(|_, r| table.contains_key(&r.node));
        p.broken.retain(|n| table.contains_key(n));
        p.held.retain(|n, _| table.contains_key(n));
        p.joined.retain(|n, _| table.contains_key(n));
        let now = Instant::now();
        let mut new = Vec::new();
        for (node, peer) in table.iter() {
            let known = p.maintained.contains_key(node) && p.table.get(node) == Some(peer);
            if known {
                continue;
            }
            p.joined.insert(*node, now);
            p.broken.remove(node);
            match p.maintained.get(node) {
                // Wake it; a wake-up already pending is as good.
                Some(kick) => drop(kick.try_send(())),
                None => {
                    let (kick, woken) = flume::bounded(1);
                    p.maintained.insert(*node, kick);
                    new.push((*node, woken));
                }
            }
        }
        p.table = table;
        for (node, woken) in new {
            monoio::spawn(super::peer_links::maintain(self.this.clone(), node, woken));
        }
    }

    /// Expires requests nobody waits for any more (heartbeat).
    pub fn expire_pending(&mut self) {
        if let Some(p) = self.peers.as_mut() {
            p.expire_pending();
        }
    }

    pub(super) fn add_link(
        &mut self,
        node: u16,
        stream: Rc<TcpStream>,
        outbound: bool,
        sealer: Sealer,
    ) -> Option<LinkKey> {
        let p = self.peers.as_mut()?;
        let io = LinkIo {
            node,
            stream,
            out: socket::SendBacklog::default(),
            sealer,
            dirty: false,
            write_waiting: false,
            outbound,
        };
        let key = p.links.insert(io)?;
        if !outbound {
            return Some(key);
        }
        p.outbound.insert(node, key);
        // What was sent to the peer while its link was coming up goes first,
        // in order.
        let limit = p.request_timeout;
        if let Some(held) = p.held.remove(&node) {
            for (t, body) in held.frames {
                if t.elapsed() < limit {
                    self.link_send_body(key, &body);
                }
            }
        }
        Some(key)
    }

    pub(super) fn remove_link(&mut self, key: LinkKey) {
        let Some(p) = self.peers.as_mut() else {
            return;
        };
        let Some(io) = p.links.remove(key) else {
            return;
        };
        if io.outbound && p.outbound.get(&io.node) == Some(&key) {
            p.outbound.remove(&io.node);
            // Requests on this link will not be answered: fail them now.
            p.pending.retain(|_, r| r.node != io.node);
        }
    }

    /// Closes link `key` from our side (its reader then ends it).
    pub(super) fn close_link(&self, key: LinkKey) {
        if let Some(io) = self.peers.as_ref().and_then(|p| p.links.get(key)) {
            link::close(&io.stream);
        }
    }

    /// Sends a request to `node` on this core's link, or holds it until the
    /// link is up when the peer is worth waiting for. None when it cannot be
    /// sent: the peer is unknown, or its link broke and it has not just
    /// joined, or the queue is full.
    pub(super) fn request(
        &mut self,
        node: u16,
        make: impl FnOnce(u64) -> Frame,
    ) -> Option<flume::Receiver<Frame>> {
        let p = self.peers.as_mut()?;
        let link = p.outbound.get(&node).copied();
        if link.is_none() && !p.worth_waiting_for(node) {
            return None;
        }
        let req = p.next_req;
        p.next_req += 1;
        let (reply, rx) = reply_channel();
        let sent = Instant::now();
        p.pending.insert(req, Pending { node, reply, sent });
        let queued = match link {
            Some(key) => self.link_send(key, &make(req)),
            None => self.hold(node, &make(req)),
        };
        if queued {
            return Some(rx);
        }
        if let Some(p) = self.peers.as_mut() {
            p.pending.remove(&req);
        }
        None
    }

    /// Hands an answer frame to the request `req` waits on, if it still does.
    pub(super) fn answered(&mut self, req: u64, answer: Frame) {
        if let Some(p) = self.peers.as_mut().and_then(|p| p.pending.remove(&req)) {
            let _ = p.reply.send(answer);
        }
    }

    /// Queues `f` on one link; false when it was dropped.
    pub(super) fn link_send(&mut self, key: LinkKey, f: &Frame) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        let mut body = std::mem::take(&mut p.body);
        let sent = frame::encode_body(f, &mut body).is_ok() && self.link_send_body(key, &body);
        if let Some(p) = self.peers.as_mut() {
            p.body = body;
        }
        sent
    }

    /// Holds `f` for `node` until its link is up; false when it was dropped.
    fn hold(&mut self, node: u16, f: &Frame) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        let mut body = std::mem::take(&mut p.body);
        let held = frame::encode_body(f, &mut body).is_ok() && self.hold_body(node, &body);
        if let Some(p) = self.peers.as_mut() {
            p.body = body;
        }
        held
    }

    /// Holds a copy of the archived frame `body` for `node`; false when it
    /// was dropped (the held frames would pass the link queue's bound).
    fn hold_body(&mut self, node: u16, body: &[u8]) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        let limit = p.request_timeout;
        let held = p.held.entry(node).or_default();
        held.expire(limit);
        if held.bytes + body.len() > LINK_QUEUE_BYTES {
            self.node.metrics.core(self.id as usize).link_drop();
            return false;
        }
        held.frames
            .push_back((Instant::now(), Bytes::copy_from_slice(body)));
        held.bytes += body.len();
        true
    }

    /// Seals the archived frame `body` into link `key`'s queue; false when
    /// it was dropped (queue full, or the link can seal no more and is closed).
    fn link_send_body(&mut self, key: LinkKey, body: &[u8]) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        let Some(io) = p.links.get_mut(key) else {
            return false;
        };
        let wire = seal::HEADER_LEN + body.len() + seal::TAG_LEN;
        if io.out.len() + wire > LINK_QUEUE_BYTES {
            self.node.metrics.core(self.id as usize).link_drop();
            return false;
        }
        if io.sealer.seal(body, io.out.buffer()).is_err() {
            link::close(&io.stream);
            return false;
        }
        if !io.dirty {
            io.dirty = true;
            p.dirty.push(key);
        }
        self.node.metrics.core(self.id as usize).link_out(wire);
        true
    }

    /// Sends the frame `make` builds once to every peer node on this core's
    /// links (built only when there are peers: standalone it costs
    /// nothing); a peer whose link is still coming up gets it held. A peer
    /// that cannot be reached (link broken, or queue full) misses it.
    pub(super) fn peer_broadcast(&mut self, make: impl FnOnce() -> Frame) {
        let Some(p) = self.peers.as_mut() else {
            return;
        };
        if p.table.is_empty() {
            return;
        }
        let targets: Vec<(u16, Option<LinkKey>)> = p
            .table
            .keys()
            .map(|n| (*n, p.outbound.get(n).copied()))
            .collect();
        let mut body = std::mem::take(&mut p.body);
        if frame::encode_body(&make(), &mut body).is_ok() {
            for (node, link) in targets {
                match link {
                    Some(key) => {
                        self.link_send_body(key, &body);
                    }
                    None => {
                        let worth = self
                            .peers
                            .as_ref()
                            .is_some_and(|p| p.worth_waiting_for(node));
                        if worth {
                            self.hold_body(node, &body);
                        }
                    }
                }
            }
        }
        if let Some(p) = self.peers.as_mut() {
            p.body = body;
        }
    }

    /// The peers of this core's view (none standalone).
    pub(super) fn peer_nodes(&self) -> Vec<u16> {
        self.peers
            .as_ref()
            .map(|p| p.table.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Writes every link with queued frames (part of `flush`).
    pub(super) fn flush_links(&mut self) {
        let Some(p) = self.peers.as_mut() else {
            return;
        };
        for key in std::mem::take(&mut p.dirty) {
            let Some(io) = p.links.get_mut(key) else {
                continue;
            };
            io.dirty = false;
            if io.write_waiting || io.out.is_empty() {
                continue;
            }
            match io.out.write_to(io.stream.as_raw_fd()) {
                Ok(_) => {}
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                    link::close(&io.stream);
                    continue;
                }
                Err(_) => {}
            }
            if !io.out.is_empty() {
                io.write_waiting = true;
                monoio::spawn(link_writer(self.this.clone(), key, io.stream.clone()));
            }
        }
    }

    /// Sends a request to a peer and waits (bounded) for its answer. A peer
    /// whose link is still being set up (it has just joined) is waited for
    /// within the same deadline (the request is held); one whose link broke
    /// is not.
    pub async fn call(this: &CoreRef, node: u16, make: impl FnOnce(u64) -> Frame) -> Option<Frame> {
        let sent = Instant::now();
        let rx = {
            let mut c = this.borrow_mut();
            let rx = c.request(node, make);
            c.flush();
            rx
        }?;
        Self::await_answer(this, rx, sent).await
    }

    /// Waits for the answer to a request sent at `sent`, until the request
    /// timeout has passed since then.
    pub(super) async fn await_answer(
        this: &CoreRef,
        rx: flume::Receiver<Frame>,
        sent: Instant,
    ) -> Option<Frame> {
        let limit = this.borrow().peers.as_ref()?.request_timeout;
        let left = limit.saturating_sub(sent.elapsed());
        match monoio::time::timeout(left, rx.recv_async()).await {
            Ok(Ok(answer)) => {
                this.borrow()
                    .metrics()
                    .link_request_duration(sent.elapsed());
                Some(answer)
            }
            Ok(Err(_)) => None,
            Err(_) => {
                this.borrow().metrics().link_timeout();
                None
            }
        }
    }
}

/// Waits for a link's socket to drain, then writes the rest.
async fn link_writer(
    core: std::rc::Weak<std::cell::RefCell<Core>>,
    key: LinkKey,
    stream: Rc<TcpStream>,
) {
    let ok = stream.writable(false).await.is_ok();
    let Some(core) = core.upgrade() else { return };
    let mut c = core.borrow_mut();
    let Some(p) = c.peers.as_mut() else { return };
    let Some(io) = p.links.get_mut(key) else {
        return;
    };
    io.write_waiting = false;
    if !ok {
        link::close(&io.stream);
        return;
    }
    if !io.dirty {
        io.dirty = true;
        p.dirty.push(key);
    }
    c.flush();
}
