//! This core's share of the cluster, one concern per file:
//!
//! - `view`: which peers this core knows (the membership table it was last
//!   given), which of them it keeps a dialling task for, which have just
//!   joined or have a broken link, and which node ids it recently looked
//!   up in vain. It decides whether a peer without a link is worth waiting
//!   for.
//! - `requests`: the requests this core sent and waits on, by number, so
//!   that an answer frame finds its asker; and the bounded wait for it.
//! - `held`: frames for a peer whose link is not up yet. A peer that has
//!   just joined (or joined again: a node that re-registered after losing
//!   its lease) has no link from this core for the first moments; frames
//!   for it are held, in order, and sealed into its link as soon as it is
//!   up. A held frame older than `cluster.request_timeout` is dropped (its
//!   request has timed out by then). Only a peer whose link broke, or
//!   failed to come up, after that first moment fails at once.
//! - `links`: the links themselves (one this core dialled per peer, plus
//!   those peers dialled to it): their sockets and output buffers. Frames
//!   to send are archived once into a reused buffer and sealed into each
//!   link's output buffer (every link has its own keys and counter), then
//!   written by the core's `flush`, one write per batch, like WebSocket
//!   pushes.
//!
//! This file composes them (`Peers`) and holds what touches several: a new
//! view, a link that breaks, the expiry sweep. A peer's answer comes back
//! on the link that carried the request, to the core that sent it, so no
//! state is shared between cores.

mod held;
mod links;
mod requests;
mod view;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Core;
use crate::cluster::link::{self, Credentials};
use crate::cluster::PeerTable;

pub(super) use links::LinkKey;

/// Bytes queued for one peer (on its link, or held for it) before frames
/// are dropped.
const LINK_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// One core's share of the cluster.
pub(super) struct Peers {
    pub(super) creds: Rc<Credentials>,
    pub(super) request_timeout: Duration,
    pub(super) view: view::View,
    requests: requests::Requests,
    held: held::Held,
    links: links::Links,
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
            view: view::View::new(table),
            requests: requests::Requests::default(),
            held: held::Held::default(),
            links: links::Links::default(),
        }
    }

    /// Whether `node` joined this core's view less than a request timeout ago.
    pub(super) fn just_joined(&self, node: u16) -> bool {
        self.view.just_joined(node, self.request_timeout)
    }

    /// Forgets the requests nobody waits for any more (their askers timed
    /// out and left), and drops held frames whose link did not come up in
    /// time.
    fn expire_pending(&mut self) {
        self.requests.expire(self.request_timeout * 2);
        self.held.expire(self.request_timeout);
    }

    /// Records whether this core's link to `node` has broken (or failed to
    /// come up) since it was last up. A broken peer that has not just joined
    /// fails its requests at once: those held for it are dropped (their
    /// callers see a missing answer now rather than at the deadline).
    pub(super) fn mark_broken(&mut self, node: u16, broken: bool) {
        self.view.set_broken(node, broken);
        if broken && !self.just_joined(node) && self.held.drop_peer(node) {
            // No link to `node` exists now: every request waiting on it was held.
            self.requests.fail_peer(node);
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
        for stream in p.links.outbound_to_departed(&table) {
            link::close(stream);
        }
        p.requests.keep_peers(&table);
        p.held.keep_peers(&table);
        let new = p.view.adopt(table, Instant::now());
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
}
