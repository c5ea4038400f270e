//! What a core does to the connections it owns: deliveries, group changes,
//! closes, reads from the socket and the heartbeat sweep.
//!
//! Writes are batched: `enqueue` only appends to a connection's queue and
//! marks it dirty; `flush` (called once per mailbox batch, API call or read)
//! writes every dirty queue with one `sendmsg` each.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpStream;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::conn::{close_frame, CloseReason, Conn, ConnSignal, WsIo, PING_FRAME};
use super::mailbox::{ClientInfo, ConnError, ConnOp, ConnResult, CoreMsg};
use super::Core;
use crate::client_id::ClientId;
use crate::cluster::frame::Frame;
use crate::config::ClientSendPolicy;
use crate::node::unix_seconds;
use crate::push;
use crate::socket;
use crate::webhook::EventKind;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;

/// How long a closed connection's socket is kept to read the client's
/// close reply and let our last bytes leave before the descriptor closes.
pub const LINGER: Duration = Duration::from_secs(2);

/// tungstenite's read buffer per connection: small, because an idle
/// connection keeps it (DESIGN §6.4); client messages are small anyway.
const WS_READ_BUFFER: usize = 256;

impl Core {
    pub(super) fn handle(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Conn {
                slot,
                generation,
                system,
                op,
                reply,
            } => {
                let result = self.conn_op(slot, generation, &system, op);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            CoreMsg::Many {
                system,
                targets,
                frame,
                reply,
            } => {
                let online = targets
                    .iter()
                    .filter(|(s, g)| self.deliver(*s, *g, &system, &frame).is_ok())
                    .count();
                let _ = reply.send(online);
            }
            CoreMsg::Group {
                system,
                group,
                frame,
            } => {
                let slots: Vec<u32> = self.index.group(&system, &group).collect();
                self.fan_out(&slots, &frame);
            }
            CoreMsg::User {
                system,
                user,
                frame,
                reply,
            } => {
                let slots: Vec<u32> = self.index.user(&system, &user).collect();
                self.fan_out(&slots, &frame);
                let _ = reply.send(slots.len());
            }
            CoreMsg::System { system, frame } => {
                let slots: Vec<u32> = self.index.system(&system).collect();
                self.fan_out(&slots, &frame);
            }
            CoreMsg::OnlineList {
                system,
                group,
                with_info,
                reply,
            } => {
                let _ = reply.send(self.online_list(&system, &group, with_info));
            }
            CoreMsg::GroupList { system, reply } => {
                let counts = self.index.group_counts(&system);
                let _ = reply.send(counts.map(|(g, n)| (g.to_owned(), n)).collect());
            }
            CoreMsg::SystemAdded { id, entry, reply } => {
                self.systems.insert(Box::from(id.as_ref()), entry);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            CoreMsg::Peers(peers) => self.set_peers(peers),
            CoreMsg::NodeLost => self.close_all(CloseReason::NodeLost),
            CoreMsg::Shutdown => self.shutdown.fire(),
        }
    }

    /// Queues `frame` on every slot. The slot list is collected first so the
    /// index is not borrowed while a slow consumer is being removed from it.
    fn fan_out(&mut self, slots: &[u32], frame: &Bytes) {
        for &slot in slots {
            if let Some((generation, _)) = self.conns.at_mut(slot) {
                self.enqueue(slot, generation, frame.clone());
            }
        }
    }

    fn deliver(&mut self, slot: u32, gen: u32, system: &str, frame: &Bytes) -> ConnResult {
        self.owned(slot, gen, system)?;
        self.enqueue(slot, gen, frame.clone());
        Ok(None)
    }

    /// The connection (slot, gen) if it is live and belongs to `system`.
    fn owned(&mut self, slot: u32, gen: u32, system: &str) -> Result<&mut Conn, ConnError> {
        let conn = self.conns.get_mut(slot, gen).ok_or(ConnError::Offline)?;
        if &*conn.system != system {
            return Err(ConnError::Invalid);
        }
        Ok(conn)
    }

    fn conn_op(&mut self, slot: u32, gen: u32, system: &str, op: ConnOp) -> ConnResult {
        match op {
            ConnOp::Deliver(frame) => self.deliver(slot, gen, system, &frame),
            ConnOp::Bind {
                group,
                user_id,
                extend,
            } => self.bind(slot, gen, system, group, user_id, extend),
            ConnOp::Unbind(group) => self.unbind(slot, gen, system, &group),
            ConnOp::Close => {
                self.owned(slot, gen, system)?;
                self.close_conn(slot, gen, CloseReason::ClosedByApi, Some(1000));
                Ok(None)
            }
            ConnOp::Info => {
                let conn = self.owned(slot, gen, system)?;
                Ok(Some(info(conn)))
            }
        }
    }

    fn bind(
        &mut self,
        slot: u32,
        gen: u32,
        system: &str,
        group: Arc<str>,
        user_id: String,
        extend: String,
    ) -> ConnResult {
        let conn = self.owned(slot, gen, system)?;
        if !extend.is_empty() {
            conn.extend = extend.into();
        }
        if !user_id.is_empty() && *conn.user_id != *user_id {
            let new: Rc<str> = Rc::from(user_id);
            let old = std::mem::replace(&mut conn.user_id, new.clone());
            self.index.set_user(system, &old, &new, slot);
        }
        let group: Rc<str> = Rc::from(group.as_ref());
        if self.index.join(system, &group, slot) {
            let conn = self.owned(slot, gen, system)?;
            conn.groups.push(group.clone());
            let frame = self.notice(slot, gen, true);
            self.group_notice(system, &group, frame);
        }
        Ok(None)
    }

    fn unbind(&mut self, slot: u32, gen: u32, system: &str, group: &str) -> ConnResult {
        let conn = self.owned(slot, gen, system)?;
        conn.groups.retain(|g| &**g != group);
        if self.index.leave(system, group, slot) {
            let frame = self.notice(slot, gen, false);
            self.group_notice(system, group, frame);
        }
        Ok(None)
    }

    /// The online/offline notice of (slot, gen), encoded once.
    fn notice(&mut self, slot: u32, gen: u32, online: bool) -> Bytes {
        let id = self.ids.next();
        match self.conns.get(slot, gen) {
            Some(c) => push::notice_frame(id, online, &c.client_id, &c.user_id, &c.extend),
            None => Bytes::new(),
        }
    }

    /// Sends `frame` to the members of `group` on every core and every
    /// peer node, once.
    fn group_notice(&mut self, system: &str, group: &str, frame: Bytes) {
        self.peer_broadcast(&Frame::Group {
            system: system.to_owned(),
            group: group.to_owned(),
            frame: frame.to_vec(),
        });
        let (system, group): (Arc<str>, Arc<str>) = (Arc::from(system), Arc::from(group));
        self.broadcast_from_inside(|| CoreMsg::Group {
            system: system.clone(),
            group: group.clone(),
            frame: frame.clone(),
        });
    }

    fn online_list(&self, system: &str, group: &str, with_info: bool) -> Vec<ClientInfo> {
        let members = self.index.group(system, group);
        members
            .filter_map(|slot| self.conns_at(slot))
            .map(|c| {
                if with_info {
                    info(c)
                } else {
                    ClientInfo {
                        client_id: c.client_id.to_string(),
                        user_id: String::new(),
                        extend: String::new(),
                        groups: Vec::new(),
                        connect_time: 0,
                    }
                }
            })
            .collect()
    }

    fn conns_at(&self, slot: u32) -> Option<&Conn> {
        self.conns.at(slot).map(|(_, c)| c)
    }

    /// Appends `frame` to the connection's queue. A connection whose queue
    /// would pass `ws.send_queue_bytes` even after writing what its socket
    /// takes now is closed as a slow consumer: only bytes the client is not
    /// reading count, not a burst this core has not written yet. A frame on
    /// an empty queue always fits (`api.max_message` bounds it).
    pub fn enqueue(&mut self, slot: u32, gen: u32, frame: Bytes) {
        if self.over_limit(slot, gen, frame.len()) {
            self.flush_conn(slot, gen);
            if self.over_limit(slot, gen, frame.len()) {
                let queued = self.conns.get(slot, gen).map_or(0, |c| c.out.len());
                let dropped = queued as u64 + 1;
                self.metrics().dropped.fetch_add(dropped, Relaxed);
                self.close_conn(slot, gen, CloseReason::SlowConsumer, None);
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(slot, gen) else {
            return;
        };
        conn.out.push(frame);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push((slot, gen));
        }
        self.metrics().pushed.fetch_add(1, Relaxed);
    }

    fn over_limit(&self, slot: u32, gen: u32, len: usize) -> bool {
        let limit = self.node.config.ws.send_queue_bytes;
        self.conns
            .get(slot, gen)
            .is_some_and(|c| c.out.would_exceed(len, limit))
    }

    /// Writes every dirty connection's and link's queue, one `sendmsg` each.
    pub fn flush(&mut self) {
        self.flush_links();
        let mut dirty = std::mem::take(&mut self.dirty);
        for &(slot, gen) in &dirty {
            self.flush_conn(slot, gen);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush_conn(&mut self, slot: u32, gen: u32) {
        let Some(conn) = self.conns.get_mut(slot, gen) else {
            return;
        };
        conn.dirty = false;
        if conn.write_waiting {
            return;
        }
        let fd = conn.stream.as_raw_fd();
        loop {
            match conn.out.write_to(fd) {
                Ok(_) => {
                    if conn.out.is_empty() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    conn.write_waiting = true;
                    let stream = conn.stream.clone();
                    self.spawn_writer(slot, gen, stream);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close_conn(slot, gen, CloseReason::Error, None);
                    return;
                }
            }
        }
    }

    /// Waits for the socket to drain, then writes the rest of the queue.
    fn spawn_writer(&self, slot: u32, gen: u32, stream: Rc<TcpStream>) {
        let this = self.this.clone();
        monoio::spawn(async move {
            let ok = stream.writable(false).await.is_ok();
            let Some(this) = this.upgrade() else { return };
            let mut core = this.borrow_mut();
            let Some(conn) = core.conns.get_mut(slot, gen) else {
                return;
            };
            conn.write_waiting = false;
            if ok {
                core.flush_conn(slot, gen);
            } else {
                core.close_conn(slot, gen, CloseReason::Error, None);
            }
        });
    }

    /// Registers a new WebSocket connection; its welcome frame is queued only
    /// now that the id routes to it. None when no slot is left.
    pub fn open_conn(
        &mut self,
        stream: Rc<TcpStream>,
        system: &str,
        user_id: &str,
    ) -> Option<(u32, u32, Rc<ConnSignal>)> {
        let (slot, generation) = self.conns.vacant()?;
        let id = ClientId {
            node: self.node.node_id,
            core: self.id,
            slot,
            generation,
            epoch: self.node.epoch,
        };
        let client_id = self.node.codec.encode(&id, system);
        let signal = Rc::new(ConnSignal::default());
        let system: Rc<str> = Rc::from(system);
        let ws_cfg = &self.node.config.ws;
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(ws_cfg.max_client_message))
            .max_frame_size(Some(ws_cfg.max_client_message));
        let welcome = (!ws_cfg.echo).then(|| push::welcome_frame(&client_id));
        let conn = Conn {
            stream,
            signal: signal.clone(),
            system: system.clone(),
            client_id: client_id.into(),
            user_id: Rc::from(user_id),
            extend: Box::from(""),
            groups: Vec::new(),
            connect_time: unix_seconds(),
            ws: WebSocketContext::new(Role::Server, Some(config)),
            out: Default::default(),
            last_rx: Instant::now(),
            bucket: Default::default(),
            dirty: false,
            write_waiting: false,
        };
        self.conns.insert(conn)?;
        self.index.add_conn(&system, slot);
        if !user_id.is_empty() {
            self.index.set_user(&system, "", &Rc::from(user_id), slot);
        }
        let m = self.metrics();
        m.connections.fetch_add(1, Relaxed);
        m.accepted.fetch_add(1, Relaxed);
        if let Some(w) = welcome {
            self.enqueue(slot, generation, w);
        }
        if let Some(conn) = self.conns.get(slot, generation) {
            self.emit(conn, EventKind::Connect);
        }
        Some((slot, generation, signal))
    }

    /// Ends a connection: it leaves the slab and the index at once (so it is
    /// offline from now on), gets `code` as a close frame when given, its
    /// groups get the offline notice once, and its reader task is told to
    /// linger and stop.
    pub fn close_conn(&mut self, slot: u32, gen: u32, reason: CloseReason, code: Option<u16>) {
        let Some(mut conn) = self.conns.remove(slot, gen) else {
            return;
        };
        self.index
            .remove_conn(&conn.system, slot, &conn.groups, &conn.user_id);
        self.node.release_connection();
        let m = self.metrics();
        m.connections.fetch_sub(1, Relaxed);
        m.closed(reason);
        conn.signal.detach();
        self.finish_writes(&mut conn, code);
        let reason = reason.as_str();
        self.emit(&conn, EventKind::Disconnect { reason });
        for group in &conn.groups {
            let id = self.ids.next();
            let frame = push::notice_frame(id, false, &conn.client_id, &conn.user_id, &conn.extend);
            self.group_notice(&conn.system, group, frame);
        }
    }

    /// Sends what is still queued plus the close frame, then half-closes.
    /// A slow consumer or broken socket (no code) is shut down at once.
    fn finish_writes(&mut self, conn: &mut Conn, code: Option<u16>) {
        let fd = conn.stream.as_raw_fd();
        let Some(code) = code else {
            socket::shutdown(fd, libc::SHUT_RDWR);
            return;
        };
        conn.out.push(close_frame(code));
        let stream = conn.stream.clone();
        let mut rest = std::mem::take(&mut conn.out);
        monoio::spawn(async move {
            let drain = async {
                while !rest.is_empty() {
                    match rest.write_to(fd) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if stream.writable(false).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            };
            let _ = monoio::time::timeout(LINGER, drain).await;
            socket::shutdown(fd, libc::SHUT_WR);
        });
    }

    /// Feeds bytes read from the socket to the connection's WebSocket codec
    /// and acts on every complete message.
    pub fn on_ws_input(&mut self, slot: u32, gen: u32, len: usize) {
        let input = std::mem::take(&mut self.scratch);
        let mut output = std::mem::take(&mut self.ws_out);
        let ws = &self.node.config.ws;
        let mode = match ws.client_send {
            _ if ws.echo => Mode::Echo,
            ClientSendPolicy::Off => Mode::Discard,
            _ => Mode::Collect,
        };
        let mut inbox = std::mem::take(&mut self.inbox);
        let end = match self.conns.get_mut(slot, gen) {
            Some(conn) => {
                conn.last_rx = Instant::now();
                let mut io = WsIo {
                    input: &input[..len],
                    output: &mut output,
                };
                read_messages(conn, &mut io, mode, &mut inbox)
            }
            None => None,
        };
        if !output.is_empty() {
            self.enqueue(slot, gen, Bytes::copy_from_slice(&output));
            output.clear();
        }
        for text in inbox.drain(..) {
            self.client_message(slot, gen, text.as_str());
        }
        self.inbox = inbox;
        if let Some((reason, code)) = end {
            self.close_conn(slot, gen, reason, code);
        }
        self.scratch = input;
        self.ws_out = output;
    }

    /// Feeds bytes that arrived with the upgrade request.
    pub fn feed(&mut self, slot: u32, gen: u32, data: &[u8]) {
        let size = self.scratch.len();
        for chunk in data.chunks(size) {
            self.scratch[..chunk.len()].copy_from_slice(chunk);
            self.on_ws_input(slot, gen, chunk.len());
        }
    }

    /// Reads from the socket of (slot, gen) into the core's scratch buffer.
    pub fn recv(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<usize> {
        socket::recv(fd, &mut self.scratch)
    }

    /// Heartbeat: closes connections silent for `idle_timeout`, and pings
    /// every connection when `ping_due`.
    pub fn sweep(&mut self, ping_due: bool) {
        let idle = self.node.config.ws.idle_timeout;
        let now = Instant::now();
        for (slot, gen) in self.conns.keys() {
            let silent = self
                .conns
                .get(slot, gen)
                .is_some_and(|c| now.duration_since(c.last_rx) >= idle);
            if silent {
                self.close_conn(slot, gen, CloseReason::IdleTimeout, Some(1001));
            } else if ping_due && !self.node.config.ws.echo {
                self.enqueue(slot, gen, Bytes::from_static(PING_FRAME));
            }
        }
        self.flush();
    }

    /// Closes every connection with 1001 (shutdown, or the node's identity
    /// in the cluster was lost).
    pub fn close_all(&mut self, reason: CloseReason) {
        for (slot, gen) in self.conns.keys() {
            self.close_conn(slot, gen, reason, reason.close_code());
        }
        self.flush();
    }
}

fn info(c: &Conn) -> ClientInfo {
    ClientInfo {
        client_id: c.client_id.to_string(),
        user_id: c.user_id.to_string(),
        extend: c.extend.to_string(),
        groups: c.groups.iter().map(|g| g.to_string()).collect(),
        connect_time: c.connect_time,
    }
}

/// What becomes of the text messages a client sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `ws.echo`: sent back unchanged.
    Echo,
    /// `ws.client_send = "off"`: read and discarded (`ping` is answered).
    Discard,
    /// Kept for `client_message` (`ping` is answered).
    Collect,
}

/// Drains complete messages out of the codec; text messages to handle as
/// client messages go to `inbox`. Returns why and how the connection must
/// close, if it must.
fn read_messages(
    conn: &mut Conn,
    io: &mut WsIo<'_>,
    mode: Mode,
    inbox: &mut Vec<tungstenite::Utf8Bytes>,
) -> Option<(CloseReason, Option<u16>)> {
    let echo = mode == Mode::Echo;
    loop {
        let msg = match conn.ws.read(io) {
            Ok(m) => m,
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) => return Some(close_for(&e)),
        };
        let reply = match msg {
            // The client started the close handshake. tungstenite's own reply
            // would go out with no flush before the socket is shut; answer
            // through `close_conn` instead, which sends what is queued (echoes
            // included), then the close frame, then half-closes. The code is
            // echoed (tungstenite already turned a code not allowed on the
            // wire into 1002); a close without a code gets 1000.
            Message::Close(frame) => {
                let code = frame.map_or(1000, |f| u16::from(f.code));
                return Some((CloseReason::ClientClosed, Some(code)));
            }
            Message::Text(t) if echo => Message::Text(t),
            Message::Binary(b) if echo => Message::Binary(b),
            Message::Text(t) if t.as_str() == "ping" => Message::text("pong"),
            Message::Text(t) if mode == Mode::Collect => {
                inbox.push(t);
                continue;
            }
            // Under "off" client messages are read and discarded, as
            // go-websocket does; binary frames always are.
            _ => continue,
        };
        if let Err(e) = conn.ws.write(io, reply) {
            return Some(close_for(&e));
        }
    }
}

/// The close reason and code for a codec error.
fn close_for(e: &WsError) -> (CloseReason, Option<u16>) {
    match e {
        // Not expected: read_messages stops at the client's close frame.
        WsError::ConnectionClosed | WsError::AlreadyClosed => (CloseReason::ClientClosed, None),
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            (CloseReason::TooLarge, Some(1009))
        }
        WsError::Utf8(_) => (CloseReason::Error, Some(1007)),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            (CloseReason::ClientClosed, None)
        }
        WsError::Protocol(_) | WsError::Capacity(_) => (CloseReason::Error, Some(1002)),
        _ => (CloseReason::Error, None),
    }
}
