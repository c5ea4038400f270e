//! The links of this core: one it dialled to each peer (it carries this
//! core's requests) and those peers dialled to it, each with its socket,
//! its sealer and its output buffer.
//!
//! A frame to send is archived once into a reused buffer and sealed into
//! the output buffer of each link it goes on (every link has its own keys
//! and counter). The buffers are written by the core's `flush`, one write
//! per link per batch, like WebSocket pushes; a link whose socket is full
//! gets a writer task that waits for it to drain. A link's buffer is
//! bounded: past it, frames are dropped and counted.

use std::os::fd::AsRawFd;
use std::rc::Rc;

use hashbrown::HashMap;
use monoio::net::TcpStream;
use rkyv::util::AlignedVec;

use super::LINK_QUEUE_BYTES;
use crate::cluster::frame::{self, Frame};
use crate::cluster::link;
use crate::cluster::seal::{self, Sealer};
use crate::cluster::PeerTable;
use crate::core::slots::Slots;
use crate::core::Core;
use crate::op::ConnAddr;
use crate::socket;

/// A link's place in the core's link slab.
pub(in crate::core) type LinkKey = ConnAddr;

/// One link's socket and output buffer.
struct LinkIo {
    /// The peer's node id (known after the handshake).
    node: u16,
    stream: Rc<TcpStream>,
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

/// This core's links.
#[derive(Default)]
pub(super) struct Links {
    slab: Slots<LinkIo>,
    /// Key of this core's established link to each peer.
    outbound: HashMap<u16, LinkKey>,
    /// Links with sealed frames not written yet.
    dirty: Vec<LinkKey>,
    /// The archive of the frame being sent, reused across frames.
    body: AlignedVec,
}

impl Links {
    /// This core's established link to `node`.
    pub(super) fn outbound(&self, node: u16) -> Option<LinkKey> {
        self.outbound.get(&node).copied()
    }

    /// The sockets of this core's links to peers not in `table`.
    pub(super) fn outbound_to_departed<'a>(
        &'a self,
        table: &'a PeerTable,
    ) -> impl Iterator<Item = &'a Rc<TcpStream>> + 'a {
        self.outbound
            .iter()
            .filter(|(node, _)| !table.contains_key(*node))
            .filter_map(|(_, key)| self.slab.get(*key).map(|l| &l.stream))
    }

    /// Puts link `key` on the list `write_links` writes.
    fn mark_dirty(&mut self, key: LinkKey) {
        if let Some(io) = self.slab.get_mut(key) {
            if !io.dirty {
                io.dirty = true;
                self.dirty.push(key);
            }
        }
    }
}

impl Core {
    /// Adds an established link to `node`; `outbound`: this core dialled it,
    /// and what was held for the peer is sealed into it first, in order.
    pub(in crate::core) fn add_link(
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
        let key = p.links.slab.insert(io)?;
        if !outbound {
            return Some(key);
        }
        p.links.outbound.insert(node, key);
        // What was sent to the peer while its link was coming up goes first,
        // in order.
        let limit = p.request_timeout;
        if let Some(held) = p.held.take(node) {
            for body in held.fresh(limit) {
                self.link_send_body(key, &body);
            }
        }
        Some(key)
    }

    /// Removes link `key` (it ended); the requests it carried are failed.
    pub(in crate::core) fn remove_link(&mut self, key: LinkKey) {
        let Some(p) = self.peers.as_mut() else {
            return;
        };
        let Some(io) = p.links.slab.remove(key) else {
            return;
        };
        if io.outbound && p.links.outbound.get(&io.node) == Some(&key) {
            p.links.outbound.remove(&io.node);
            // Requests on this link will not be answered: fail them now.
            p.requests.fail_peer(io.node);
        }
    }

    /// Closes link `key` from our side (its reader then ends it).
    pub(in crate::core) fn close_link(&self, key: LinkKey) {
        if let Some(io) = self.peers.as_ref().and_then(|p| p.links.slab.get(key)) {
            link::close(&io.stream);
        }
    }

    /// Queues `f` on one link; false when it was dropped.
    pub(in crate::core) fn link_send(&mut self, key: LinkKey, f: &Frame) -> bool {
        self.with_archive(f, |c, body| c.link_send_body(key, body))
    }

    /// Archives `f` into the reused buffer and gives it to `send`; false
    /// when it cannot be archived or `send` dropped it.
    pub(super) fn with_archive(
        &mut self,
        f: &Frame,
        send: impl FnOnce(&mut Core, &[u8]) -> bool,
    ) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        let mut body = std::mem::take(&mut p.links.body);
        let sent = frame::encode_body(f, &mut body).is_ok() && send(self, &body);
        if let Some(p) = self.peers.as_mut() {
            p.links.body = body;
        }
        sent
    }

    /// Seals the archived frame `body` into link `key`'s queue; false when
    /// it was dropped (queue full, or the link can seal no more and is closed).
    fn link_send_body(&mut self, key: LinkKey, body: &[u8]) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        let Some(io) = p.links.slab.get_mut(key) else {
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
        p.links.mark_dirty(key);
        self.node.metrics.core(self.id as usize).link_out(wire);
        true
    }

    /// Sends the frame `make` builds once to every peer node on this core's
    /// links (built only when there are peers: standalone it costs
    /// nothing); a peer whose link is still coming up gets it held. A peer
    /// that cannot be reached (link broken, or queue full) misses it.
    pub(in crate::core) fn peer_broadcast(&mut self, make: impl FnOnce() -> Frame) {
        let Some(p) = self.peers.as_mut() else {
            return;
        };
        if p.view.table.is_empty() {
            return;
        }
        let targets: Vec<(u16, Option<LinkKey>)> = p
            .view
            .table
            .keys()
            .map(|n| (*n, p.links.outbound(*n)))
            .collect();
        self.with_archive(&make(), |c, body| {
            for (node, link) in targets {
                match link {
                    Some(key) => {
                        c.link_send_body(key, body);
                    }
                    None => {
                        let worth = c
                            .peers
                            .as_ref()
                            .is_some_and(|p| p.view.worth_waiting_for(node, p.request_timeout));
                        if worth {
                            c.hold_body(node, body);
                        }
                    }
                }
            }
            true
        });
    }

    /// The peers of this core's view (none standalone).
    pub(in crate::core) fn peer_nodes(&self) -> Vec<u16> {
        self.peers
            .as_ref()
            .map(|p| p.view.nodes())
            .unwrap_or_default()
    }

    /// Writes every link with queued frames (part of `flush`).
    pub(in crate::core) fn write_links(&mut self) {
        let Some(p) = self.peers.as_mut() else {
            return;
        };
        for key in std::mem::take(&mut p.links.dirty) {
            let Some(io) = p.links.slab.get_mut(key) else {
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
    let Some(io) = p.links.slab.get_mut(key) else {
        return;
    };
    io.write_waiting = false;
    if !ok {
        link::close(&io.stream);
        return;
    }
    p.links.mark_dirty(key);
    c.flush();
}
