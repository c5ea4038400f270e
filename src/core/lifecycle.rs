//! A connection's life on its core: opened once its id routes to it,
//! closed in one place (so notices and the disconnect webhook go out
//! exactly once), and the heartbeat sweep that pings and expires them.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpStream;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use super::conn::{Conn, ConnSignal};
use super::Core;
use crate::client_id::ClientId;
use crate::node::unix_seconds;
use crate::op::ConnAddr;
use crate::webhook::EventKind;
use crate::ws::frame::PING_FRAME;
use crate::ws::message::{notice_frame, welcome_frame};
use crate::ws::CloseReason;

/// How long a closed connection's socket is kept to read the client's
/// close reply and let our last bytes leave before the descriptor closes.
pub const LINGER: Duration = Duration::from_secs(2);

/// tungstenite's read buffer per connection: small, because an idle
/// connection keeps it (docs/architecture.md, idle memory); client messages
/// are small anyway.
const WS_READ_BUFFER: usize = 256;

impl Core {
    /// Registers a new WebSocket connection; its welcome frame is queued only
    /// now that the id routes to it. None when no slot is left.
    pub fn open_conn(
        &mut self,
        stream: Rc<TcpStream>,
        system: &str,
        user_id: &str,
    ) -> Option<(ConnAddr, Rc<ConnSignal>)> {
        let addr = self.conns.vacant()?;
        let id = ClientId {
            node: self.node.node_id,
            core: self.id,
            slot: addr.slot,
            generation: addr.gen,
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
        let welcome = (!ws_cfg.echo).then(|| welcome_frame(&client_id));
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
            doomed: false,
        };
        self.conns.insert(conn)?;
        self.index.add_conn(&system, addr.slot);
        if !user_id.is_empty() {
            self.index
                .set_user(&system, "", &Rc::from(user_id), addr.slot);
        }
        let m = self.metrics();
        m.connections.fetch_add(1, Relaxed);
        m.accepted.fetch_add(1, Relaxed);
        if let Some(w) = welcome {
            self.enqueue(addr, w);
        }
        if let Some(conn) = self.conns.get(addr) {
            self.emit(conn, EventKind::Connect);
        }
        Some((addr, signal))
    }

    /// Ends a connection: it leaves the slab and the index at once (so it is
    /// offline from now on), gets `code` as a close frame when given, its
    /// groups get the offline notice once, and its reader task is told to
    /// linger and stop.
    pub fn close_conn(&mut self, addr: ConnAddr, reason: CloseReason, code: Option<u16>) {
        let Some(mut conn) = self.conns.remove(addr) else {
            return;
        };
        self.index
            .remove_conn(&conn.system, addr.slot, &conn.groups, &conn.user_id);
        self.node.release_connection();
        let m = self.metrics();
        m.connections.fetch_sub(1, Relaxed);
        m.closed(reason);
        conn.signal.detach();
        self.finish_writes(&mut conn, code);
        let reason = reason.as_str();
        self.emit(&conn, EventKind::Disconnect { reason });
        if !self.node.config.ws.notices {
            return;
        }
        for group in &conn.groups {
            let id = self.ids.next();
            let frame = notice_frame(id, false, &conn.client_id, &conn.user_id, &conn.extend);
            self.group_notice(&conn.system, group, frame);
        }
    }

    /// One heartbeat tick: closes the connections silent for
    /// `idle_timeout`, and pings the share of connections whose turn it is —
    /// `turn` of `turns` (slot `s` is pinged on the ticks where
    /// `s % turns == turn`), so that every connection is pinged once per
    /// `ping_interval` and a tick writes to a `1/turns` share of them, never
    /// to all at once. Walks the slab in place, copying no keys.
    pub fn sweep(&mut self, turn: u32, turns: u32) {
        let idle = self.node.config.ws.idle_timeout;
        let ping = !self.node.config.ws.echo;
        let turns = turns.max(1);
        let now = Instant::now();
        for slot in 0..self.conns.slot_count() {
            let Some((addr, conn)) = self.conns.at(slot) else {
                continue;
            };
            if now.duration_since(conn.last_rx) >= idle {
                self.close_conn(addr, CloseReason::IdleTimeout, Some(1001));
            } else if ping && slot % turns == turn % turns {
                self.enqueue(addr, Bytes::from_static(PING_FRAME));
            }
        }
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
