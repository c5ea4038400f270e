//! A core's links to other nodes: keeping them up, sending requests and
//! answering the requests peers send us.
//!
//! Outbound: one dialling task per peer keeps this core's link to it alive
//! (reconnecting with backoff while the peer is in etcd). Inbound: links
//! accepted on the cluster port carry peers' requests to this node; the
//! answer goes back on the same link. Frames are queued on the link and
//! written by `flush`, like WebSocket pushes.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use super::mailbox::{reply_channel, ClientInfo, ConnError, ConnOp, ConnResult, CoreMsg, Reply};
use super::{Core, CoreRef};
use crate::cluster::frame::{
    self, ClientInfoWire, ConnStatus, Frame, GroupCount, InfoResult, Target,
};
use crate::cluster::link::{self, LinkError, LinkIo, LINK_QUEUE_BYTES};
use crate::cluster::{Answer, PeerTable, Pending};
use crate::socket;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Core {
    /// Adopts a new view of the peers: starts a dialling task for each new
    /// peer, closes links to peers that left and fails their requests.
    pub fn set_peers(&mut self, peers: Arc<PeerTable>) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        for (node, key) in cl.outbound.iter() {
            if !peers.contains_key(node) {
                if let Some(l) = cl.links.get(key.0, key.1) {
                    link::close(&l.stream);
                }
            }
        }
        cl.pending.retain(|_, p| peers.contains_key(&p.node));
        cl.broken.retain(|n| peers.contains_key(n));
        cl.peers = peers;
        let new: Vec<u16> = cl
            .peers
            .keys()
            .copied()
            .filter(|n| cl.maintained.insert(*n))
            .collect();
        for node in new {
            monoio::spawn(maintain(self.this.clone(), node));
        }
    }

    fn add_link(&mut self, node: u16, stream: Rc<TcpStream>, outbound: bool) -> Option<(u32, u32)> {
        let cl = self.cluster.as_mut()?;
        let io = LinkIo {
            node,
            stream,
            out: BytesMut::new(),
            dirty: false,
            write_waiting: false,
            outbound,
        };
        let key = cl.links.insert(io)?;
        if outbound {
            cl.outbound.insert(node, key);
        }
        Some(key)
    }

    fn remove_link(&mut self, key: (u32, u32)) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let Some(io) = cl.links.remove(key.0, key.1) else {
            return;
        };
        if io.outbound && cl.outbound.get(&io.node) == Some(&key) {
            cl.outbound.remove(&io.node);
            // Requests on this link will not be answered: fail them now.
            cl.pending.retain(|_, p| p.node != io.node);
        }
    }

    /// Sends a request to `node` on this core's link. None when the node has
    /// no established link (down, handshaking, or unknown).
    pub fn request(
        &mut self,
        node: u16,
        make: impl FnOnce(u64) -> Frame,
    ) -> Option<flume::Receiver<Answer>> {
        let cl = self.cluster.as_mut()?;
        let key = *cl.outbound.get(&node)?;
        let req = cl.next_req;
        cl.next_req += 1;
        let (reply, rx) = reply_channel();
        cl.pending.insert(
            req,
            Pending {
                node,
                reply,
                sent: Instant::now(),
            },
        );
        if self.link_send(key, &make(req)) {
            return Some(rx);
        }
        if let Some(cl) = self.cluster.as_mut() {
            cl.pending.remove(&req);
        }
        None
    }

    /// Queues `f` on one link; false when it was dropped.
    pub fn link_send(&mut self, key: (u32, u32), f: &Frame) -> bool {
        let mut buf = BytesMut::new();
        if frame::encode(f, &mut buf).is_err() {
            return false;
        }
        self.link_send_encoded(key, &buf)
    }

    fn link_send_encoded(&mut self, key: (u32, u32), encoded: &[u8]) -> bool {
        let Some(cl) = self.cluster.as_mut() else {
            return false;
        };
        let Some(io) = cl.links.get_mut(key.0, key.1) else {
            return false;
        };
        if io.out.len() + encoded.len() > LINK_QUEUE_BYTES {
            self.node.metrics.core(self.id as usize).link_drop();
            return false;
        }
        io.out.extend_from_slice(encoded);
        if !io.dirty {
            io.dirty = true;
            cl.dirty.push(key);
        }
        self.node
            .metrics
            .core(self.id as usize)
            .link_out(encoded.len());
        true
    }

    /// Sends `f` once to every peer node on this core's links. Returns how
    /// many known peers could not be reached (no established link).
    pub fn peer_broadcast(&mut self, f: &Frame) -> usize {
        let Some(cl) = self.cluster.as_ref() else {
            return 0;
        };
        if cl.peers.is_empty() {
            return 0;
        }
        let targets: Vec<Option<(u32, u32)>> = cl
            .peers
            .keys()
            .map(|n| cl.outbound.get(n).copied())
            .collect();
        let mut buf = BytesMut::new();
        if frame::encode(f, &mut buf).is_err() {
            return targets.len();
        }
        targets
            .into_iter()
            .filter(|t| !t.is_some_and(|key| self.link_send_encoded(key, &buf)))
            .count()
    }

    /// Writes every link with queued frames (part of `flush`).
    pub(super) fn flush_links(&mut self) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        for key in std::mem::take(&mut cl.dirty) {
            let Some(io) = cl.links.get_mut(key.0, key.1) else {
                continue;
            };
            io.dirty = false;
            if io.write_waiting || io.out.is_empty() {
                continue;
            }
            let chunk = io.out.split().freeze();
            let mut queue = std::collections::VecDeque::from([chunk]);
            match socket::send_queue(io.stream.as_raw_fd(), &mut queue) {
                Ok(_) | Err(_) if queue.is_empty() => {}
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => link::close(&io.stream),
                _ => {
                    let rest = queue.pop_front().unwrap_or_default();
                    let mut unsent = BytesMut::from(&rest[..]);
                    unsent.extend_from_slice(&io.out);
                    io.out = unsent;
                    io.write_waiting = true;
                    monoio::spawn(link_writer(self.this.clone(), key, io.stream.clone()));
                }
            }
        }
    }

    /// Handles one frame that arrived on link `key`.
    pub fn on_link_frame(this: &CoreRef, key: (u32, u32), f: Frame) {
        match f {
            Frame::Deliver {
                req,
                core,
                slot,
                gen,
                system,
                frame,
            } => {
                let op = ConnOp::Deliver(Bytes::from(frame));
                conn_request(this, key, core, slot, gen, &system, op, move |r| {
                    done(req, r)
                });
            }
            Frame::Bind {
                req,
                core,
                slot,
                gen,
                system,
                group,
                user_id,
                extend,
            } => {
                let op = ConnOp::Bind {
                    group: Arc::from(group),
                    user_id,
                    extend,
                };
                conn_request(this, key, core, slot, gen, &system, op, move |r| {
                    done(req, r)
                });
            }
            Frame::Unbind {
                req,
                core,
                slot,
                gen,
                system,
                group,
            } => {
                let op = ConnOp::Unbind(Arc::from(group));
                conn_request(this, key, core, slot, gen, &system, op, move |r| {
                    done(req, r)
                });
            }
            Frame::Close {
                req,
                core,
                slot,
                gen,
                system,
            } => {
                conn_request(
                    this,
                    key,
                    core,
                    slot,
                    gen,
                    &system,
                    ConnOp::Close,
                    move |r| done(req, r),
                );
            }
            Frame::Info {
                req,
                core,
                slot,
                gen,
                system,
            } => {
                conn_request(
                    this,
                    key,
                    core,
                    slot,
                    gen,
                    &system,
                    ConnOp::Info,
                    move |r| info_reply(req, r),
                );
            }
            Frame::DeliverMany {
                req,
                core,
                system,
                targets,
                frame,
            } => {
                deliver_many(this, key, req, core, system, targets, Bytes::from(frame));
            }
            Frame::Group {
                system,
                group,
                frame,
            } => {
                let (system, group, frame) = (
                    Arc::from(system),
                    Arc::<str>::from(group),
                    Bytes::from(frame),
                );
                let _ = Core::broadcast(this, || CoreMsg::Group {
                    system: Arc::clone(&system),
                    group: group.clone(),
                    frame: frame.clone(),
                });
            }
            Frame::System { system, frame } => {
                let (system, frame) = (Arc::<str>::from(system), Bytes::from(frame));
                let _ = Core::broadcast(this, || CoreMsg::System {
                    system: system.clone(),
                    frame: frame.clone(),
                });
            }
            Frame::User {
                req,
                system,
                user,
                frame,
            } => {
                let (system, user, frame) = (
                    Arc::<str>::from(system),
                    Arc::<str>::from(user),
                    Bytes::from(frame),
                );
                answer_gather(
                    this,
                    key,
                    move |reply| CoreMsg::User {
                        system: system.clone(),
                        user: user.clone(),
                        frame: frame.clone(),
                        reply,
                    },
                    move |counts: Vec<usize>| Frame::Count {
                        req,
                        n: counts.into_iter().sum::<usize>() as u64,
                    },
                );
            }
            Frame::OnlineList {
                req,
                system,
                group,
                with_info,
            } => {
                let (system, group) = (Arc::<str>::from(system), Arc::<str>::from(group));
                answer_gather(
                    this,
                    key,
                    move |reply| CoreMsg::OnlineList {
                        system: system.clone(),
                        group: group.clone(),
                        with_info,
                        reply,
                    },
                    move |parts: Vec<Vec<ClientInfo>>| Frame::Clients {
                        req,
                        clients: parts
                            .into_iter()
                            .flatten()
                            .map(ClientInfoWire::from)
                            .collect(),
                    },
                );
            }
            Frame::GroupList { req, system } => {
                let system = Arc::<str>::from(system);
                answer_gather(
                    this,
                    key,
                    move |reply| CoreMsg::GroupList {
                        system: system.clone(),
                        reply,
                    },
                    move |parts: Vec<Vec<(String, usize)>>| Frame::Groups {
                        req,
                        groups: parts
                            .into_iter()
                            .flatten()
                            .map(|(group, n)| GroupCount {
                                group,
                                count: n as u64,
                            })
                            .collect(),
                    },
                );
            }
            Frame::Done { req, status } => answered(this, req, Answer::Done(status)),
            Frame::Count { req, n } => answered(this, req, Answer::Count(n)),
            Frame::InfoReply { req, result } => answered(this, req, Answer::Info(result)),
            Frame::Clients { req, clients } => answered(this, req, Answer::Clients(clients)),
            Frame::Groups { req, groups } => answered(this, req, Answer::Groups(groups)),
            Frame::Ping { t } => {
                this.borrow_mut().link_send(key, &Frame::Pong { t });
            }
            Frame::Pong { .. } => {}
            Frame::Goodbye
            | Frame::Hello { .. }
            | Frame::Challenge { .. }
            | Frame::Proof { .. }
            | Frame::Welcome { .. } => {
                if let Some(io) = this
                    .borrow()
                    .cluster
                    .as_ref()
                    .and_then(|cl| cl.links.get(key.0, key.1))
                {
                    link::close(&io.stream);
                }
            }
        }
    }
}

fn answered(this: &CoreRef, req: u64, answer: Answer) {
    let pending = this
        .borrow_mut()
        .cluster
        .as_mut()
        .and_then(|cl| cl.pending.remove(&req));
    if let Some(p) = pending {
        let _ = p.reply.send(answer);
    }
}

fn status(r: &ConnResult) -> ConnStatus {
    match r {
        Ok(_) => ConnStatus::Ok,
        Err(ConnError::Offline) => ConnStatus::Offline,
        Err(ConnError::Invalid) => ConnStatus::Invalid,
    }
}

fn done(req: u64, r: ConnResult) -> Frame {
    Frame::Done {
        req,
        status: status(&r),
    }
}

fn info_reply(req: u64, r: ConnResult) -> Frame {
    let result = match r {
        Ok(Some(info)) => InfoResult::Info(info.into()),
        Ok(None) | Err(ConnError::Offline) => InfoResult::Offline,
        Err(ConnError::Invalid) => InfoResult::Invalid,
    };
    Frame::InfoReply { req, result }
}

/// Runs a per-connection operation a peer asked for on the owning core and
/// answers on the link.
#[allow(clippy::too_many_arguments)]
fn conn_request(
    this: &CoreRef,
    key: (u32, u32),
    core: u8,
    slot: u32,
    gen: u32,
    system: &str,
    op: ConnOp,
    answer: impl FnOnce(ConnResult) -> Frame + 'static,
) {
    let system = Arc::from(system);
    let msg = move |reply| CoreMsg::Conn {
        slot,
        generation: gen,
        system,
        op,
        reply: Some(reply),
    };
    on_owner(this, key, core, msg, answer, Err(ConnError::Offline));
}

#[allow(clippy::too_many_arguments)]
fn deliver_many(
    this: &CoreRef,
    key: (u32, u32),
    req: u64,
    core: u8,
    system: String,
    targets: Vec<Target>,
    frame: Bytes,
) {
    let targets = targets.into_iter().map(|t| (t.slot, t.gen)).collect();
    let msg = move |reply| CoreMsg::Many {
        system: Arc::from(system),
        targets,
        frame,
        reply,
    };
    let count = move |n: usize| Frame::Count { req, n: n as u64 };
    on_owner(this, key, core, msg, count, 0);
}

/// Hands `msg` to core `owner` of this node and answers on the link when it
/// replies. A core index this node does not have, or a refused hand-over,
/// answers `fallback` at once.
fn on_owner<T: 'static>(
    this: &CoreRef,
    key: (u32, u32),
    owner: u8,
    msg: impl FnOnce(Reply<T>) -> CoreMsg,
    answer: impl FnOnce(T) -> Frame + 'static,
    fallback: T,
) {
    let (tx, rx) = reply_channel();
    let workers = this.borrow().node.workers();
    if (owner as usize) >= workers || Core::route(this, owner, msg(tx)).is_err() {
        this.borrow_mut().link_send(key, &answer(fallback));
        return;
    }
    answer_when(this, key, rx, answer);
}

/// Sends `answer(value)` on the link once `rx` yields — at once when the
/// operation already ran on this core.
fn answer_when<T: 'static>(
    this: &CoreRef,
    key: (u32, u32),
    rx: flume::Receiver<T>,
    answer: impl FnOnce(T) -> Frame + 'static,
) {
    if let Ok(v) = rx.try_recv() {
        this.borrow_mut().link_send(key, &answer(v));
        return;
    }
    let core = this.clone();
    monoio::spawn(async move {
        if let Ok(v) = rx.recv_async().await {
            let mut c = core.borrow_mut();
            c.link_send(key, &answer(v));
            c.flush();
        }
    });
}

/// Asks every local core, then answers on the link.
fn answer_gather<T: 'static>(
    this: &CoreRef,
    key: (u32, u32),
    make: impl Fn(Reply<T>) -> CoreMsg + 'static,
    answer: impl FnOnce(Vec<T>) -> Frame + 'static,
) {
    let core = this.clone();
    monoio::spawn(async move {
        if let Ok(parts) = Core::gather_local(&core, make).await {
            let mut c = core.borrow_mut();
            c.link_send(key, &answer(parts));
            c.flush();
        }
    });
}

/// Waits for a link's socket to drain, then writes the rest.
async fn link_writer(
    core: std::rc::Weak<std::cell::RefCell<Core>>,
    key: (u32, u32),
    stream: Rc<TcpStream>,
) {
    let ok = stream.writable(false).await.is_ok();
    let Some(core) = core.upgrade() else { return };
    let mut c = core.borrow_mut();
    let Some(cl) = c.cluster.as_mut() else { return };
    let Some(io) = cl.links.get_mut(key.0, key.1) else {
        return;
    };
    io.write_waiting = false;
    if !ok {
        link::close(&io.stream);
        return;
    }
    if !io.dirty {
        io.dirty = true;
        cl.dirty.push(key);
    }
    c.flush();
}

/// Keeps this core's link to `node` up while the node is a peer.
async fn maintain(this: std::rc::Weak<std::cell::RefCell<Core>>, node: u16) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(core) = this.upgrade() else { return };
        let target = {
            let mut c = core.borrow_mut();
            let Some(cl) = c.cluster.as_mut() else { return };
            match cl.peers.get(&node) {
                Some(p) => (p.addr.clone(), cl.creds.clone(), cl.request_timeout),
                None => {
                    cl.maintained.remove(&node);
                    return;
                }
            }
        };
        let (addr, creds, limit) = target;
        match link::dial(&addr, &creds, node, limit).await {
            Ok((stream, rest)) => {
                backoff = BACKOFF_MIN;
                let stream = Rc::new(stream);
                let key = core.borrow_mut().add_link(node, stream.clone(), true);
                if let Some(key) = key {
                    tracing::info!(peer = node, %addr, "link up");
                    mark_broken(&core, node, false);
                    let why = link::run(core.clone(), stream.clone(), key, rest).await;
                    core.borrow_mut().remove_link(key);
                    tracing::info!(peer = node, reason = %why, "link down");
                }
            }
            Err(e) if backoff >= BACKOFF_MAX => {
                tracing::warn!(peer = node, %addr, error = %e, "link dial keeps failing")
            }
            Err(e) => tracing::debug!(peer = node, %addr, error = %e, "link dial failed"),
        }
        mark_broken(&core, node, true);
        core.borrow().metrics().link_reconnect();
        drop(core);
        monoio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Records whether this core's link to `node` has broken (or failed to
/// come up) since it was last up: requests to such a peer fail at once
/// instead of waiting for a link that may never come.
fn mark_broken(core: &CoreRef, node: u16, broken: bool) {
    if let Some(cl) = core.borrow_mut().cluster.as_mut() {
        if broken {
            cl.broken.insert(node);
        } else {
            cl.broken.remove(&node);
        }
    }
}

/// Authenticates a connection accepted on the cluster port and runs it as
/// a link.
pub(super) async fn serve_link(core: CoreRef, stream: TcpStream, addr: std::net::SocketAddr) {
    let (creds, limit) = match core.borrow().cluster.as_ref() {
        Some(cl) => (cl.creds.clone(), cl.request_timeout),
        None => return,
    };
    match link::accept(&stream, &creds, limit).await {
        Ok((node, rest)) => {
            let stream = Rc::new(stream);
            let key = core.borrow_mut().add_link(node, stream.clone(), false);
            if let Some(key) = key {
                let why = link::run(core.clone(), stream.clone(), key, rest).await;
                core.borrow_mut().remove_link(key);
                match why {
                    LinkError::Frame(e) => {
                        tracing::warn!(peer = node, %addr, error = %e, "dropped a link: bad frame")
                    }
                    why => tracing::debug!(peer = node, reason = %why, "inbound link closed"),
                }
            }
        }
        Err(e) => tracing::warn!(%addr, error = %e, "refused a cluster link"),
    }
}

impl From<ClientInfo> for ClientInfoWire {
    fn from(c: ClientInfo) -> Self {
        ClientInfoWire {
            client_id: c.client_id,
            user_id: c.user_id,
            extend: c.extend,
            groups: c.groups,
            connect_time: c.connect_time,
        }
    }
}

impl From<ClientInfoWire> for ClientInfo {
    fn from(c: ClientInfoWire) -> Self {
        ClientInfo {
            client_id: c.client_id,
            user_id: c.user_id,
            extend: c.extend,
            groups: c.groups,
            connect_time: c.connect_time,
        }
    }
}
