//! Frames held for a peer whose link from this core is not up yet: a peer
//! that has just joined (or joined again) gets no link for the first
//! moments, and what is sent to it meanwhile waits here, in order, to be
//! sealed into the link as soon as it is up (`Core::add_link`). A frame
//! held longer than `cluster.request_timeout` is dropped: its request has
//! timed out by then. The bound of a link's queue bounds what one peer may
//! have held.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;

use super::LINK_QUEUE_BYTES;
use crate::cluster::frame::Frame;
use crate::cluster::PeerTable;
use crate::core::Core;

/// Archived frames held for each peer whose link is not up yet.
#[derive(Default)]
pub(super) struct Held {
    peers: HashMap<u16, Frames>,
}

/// One peer's held frames, oldest first, each with the moment it was sent.
#[derive(Default)]
pub(super) struct Frames {
    frames: VecDeque<(Instant, Bytes)>,
    bytes: usize,
}

impl Frames {
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

    /// The frames held less than `limit`, oldest first.
    pub(super) fn fresh(self, limit: Duration) -> impl Iterator<Item = Bytes> {
        self.frames
            .into_iter()
            .filter(move |(t, _)| t.elapsed() < limit)
            .map(|(_, body)| body)
    }
}

impl Held {
    /// Holds a copy of the archived frame `body` for `node`, after dropping
    /// what was held longer than `limit`; false when the frames held would
    /// pass the link queue's bound (then `body` is dropped).
    fn push(&mut self, node: u16, body: &[u8], limit: Duration) -> bool {
        let held = self.peers.entry(node).or_default();
        held.expire(limit);
        if held.bytes + body.len() > LINK_QUEUE_BYTES {
            return false;
        }
        held.frames
            .push_back((Instant::now(), Bytes::copy_from_slice(body)));
        held.bytes += body.len();
        true
    }

    /// Takes what is held for `node` (its link is up).
    pub(super) fn take(&mut self, node: u16) -> Option<Frames> {
        self.peers.remove(&node)
    }

    /// Drops what is held for `node`; whether anything was.
    pub(super) fn drop_peer(&mut self, node: u16) -> bool {
        self.peers.remove(&node).is_some()
    }

    /// Drops what is held for peers not in `table`.
    pub(super) fn keep_peers(&mut self, table: &PeerTable) {
        self.peers.retain(|n, _| table.contains_key(n));
    }

    /// Drops the frames held longer than `limit`.
    pub(super) fn expire(&mut self, limit: Duration) {
        self.peers.retain(|_, h| {
            h.expire(limit);
            !h.frames.is_empty()
        });
    }
}

impl Core {
    /// Holds `f` for `node` until its link is up; false when it was dropped.
    pub(super) fn hold(&mut self, node: u16, f: &Frame) -> bool {
        self.with_archive(f, |c, body| c.hold_body(node, body))
    }

    /// Holds a copy of the archived frame `body` for `node`; false when it
    /// was dropped (the held frames would pass the link queue's bound).
    pub(super) fn hold_body(&mut self, node: u16, body: &[u8]) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        if p.held.push(node, body, p.request_timeout) {
            return true;
        }
        self.node.metrics.core(self.id as usize).link_drop();
        false
    }
}
