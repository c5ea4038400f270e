//! The requests this core sent to peers and waits on. Each gets a number
//! (`req`) that its answer frame carries back, on the link that carried
//! the request, to this core; the number finds the asker's reply channel.
//! Every wait is bounded by `cluster.request_timeout`; a request whose
//! peer left, or whose link broke, is failed at once (its reply channel is
//! dropped: the asker sees no answer).

use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::cluster::frame::Frame;
use crate::cluster::PeerTable;
use crate::core::{Core, CoreRef};
use crate::mailbox::{reply_channel, Reply, ReplyRx};

/// A request waiting for its answer frame.
struct Pending {
    node: u16,
    reply: Reply<Frame>,
    sent: Instant,
}

/// The requests waiting for an answer, by number.
pub(super) struct Requests {
    pending: HashMap<u64, Pending>,
    next_req: u64,
}

impl Default for Requests {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            next_req: 1,
        }
    }
}

impl Requests {
    /// A new request to `node`: its number and where its answer arrives.
    fn open(&mut self, node: u16) -> (u64, ReplyRx<Frame>) {
        let req = self.next_req;
        self.next_req += 1;
        let (reply, rx) = reply_channel();
        let sent = Instant::now();
        self.pending.insert(req, Pending { node, reply, sent });
        (req, rx)
    }

    /// Fails the requests to `node`: they will not be answered.
    pub(super) fn fail_peer(&mut self, node: u16) {
        self.pending.retain(|_, r| r.node != node);
    }

    /// Fails the requests to peers not in `table`.
    pub(super) fn keep_peers(&mut self, table: &PeerTable) {
        self.pending.retain(|_, r| table.contains_key(&r.node));
    }

    /// Forgets the requests sent longer than `limit` ago: their askers
    /// have stopped waiting.
    pub(super) fn expire(&mut self, limit: Duration) {
        self.pending.retain(|_, p| p.sent.elapsed() < limit);
    }
}

impl Core {
    /// Sends a request to `node` on this core's link, or holds it until the
    /// link is up when the peer is worth waiting for. None when it cannot be
    /// sent: the peer is unknown, or its link broke and it has not just
    /// joined, or the queue is full.
    pub(in crate::core) fn request(
        &mut self,
        node: u16,
        make: impl FnOnce(u64) -> Frame,
    ) -> Option<ReplyRx<Frame>> {
        let p = self.peers.as_mut()?;
        let link = p.links.outbound(node);
        if link.is_none() && !p.view.worth_waiting_for(node, p.request_timeout) {
            return None;
        }
        let (req, rx) = p.requests.open(node);
        let queued = match link {
            Some(key) => self.link_send(key, &make(req)),
            None => self.hold(node, &make(req)),
        };
        if queued {
            return Some(rx);
        }
        if let Some(p) = self.peers.as_mut() {
            p.requests.pending.remove(&req);
        }
        None
    }

    /// Sends `f`, which nobody answers, to `node` on this core's link (held
    /// while the link comes up, like a request); false when it cannot be.
    pub(in crate::core) fn peer_send(&mut self, node: u16, f: &Frame) -> bool {
        let Some(p) = self.peers.as_mut() else {
            return false;
        };
        match p.links.outbound(node) {
            Some(key) => self.link_send(key, f),
            None if p.view.worth_waiting_for(node, p.request_timeout) => self.hold(node, f),
            None => false,
        }
    }

    /// Hands an answer frame to the request `req` waits on, if it still does.
    pub(in crate::core) fn answered(&mut self, req: u64, answer: Frame) {
        let pending = self
            .peers
            .as_mut()
            .and_then(|p| p.requests.pending.remove(&req));
        if let Some(p) = pending {
            let _ = p.reply.send(answer);
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
    pub(in crate::core) async fn await_answer(
        this: &CoreRef,
        rx: ReplyRx<Frame>,
        sent: Instant,
    ) -> Option<Frame> {
        let limit = this.borrow().peers.as_ref()?.request_timeout;
        let left = limit.saturating_sub(sent.elapsed());
        match monoio::time::timeout(left, rx).await {
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
