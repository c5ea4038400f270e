//! Places under `api.max_http_connections`, and each core's idle keep-alive
//! connections, the longest idle of which gives its place to a newcomer
//! when the node is at the limit (docs/api.md §7.1).
//!
//! The count is the node's (one atomic, `Node::reserve_http`); what is idle
//! is each core's own ([`HttpConns`], made by the core thread and lent to
//! every connection it accepts): an ordered map from the moment a
//! connection went idle to its [`Slot`], touched by that core's tasks only,
//! so no lock and nothing shared between cores. A connection is idle while
//! it waits for its next request with nothing of it read and no answer
//! unwritten. At the limit a newcomer that needs a place takes the oldest
//! idle one of its core: that connection is told to close (it does, the
//! next time its task runs) and its place passes to the newcomer as it is,
//! never given back and taken again, so no other core can take it in
//! between. A core with no idle connection refuses (503), even when
//! another core has one: looking there would mean sharing.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::node::Node;

/// One core's HTTP connections that are idle, oldest first.
#[derive(Default)]
pub struct HttpConns {
    /// Ticket of the next connection to go idle (an order, not a time).
    next: Cell<u64>,
    idle: RefCell<BTreeMap<u64, Rc<Slot>>>,
}

/// What a connection and its core know of it: whether it is idle (under
/// which ticket) and whether its place was taken from it.
#[derive(Default)]
struct Slot {
    idle_since: Cell<Option<u64>>,
    evicted: Cell<bool>,
    /// The connection's task, waiting for its next request.
    waker: RefCell<Option<Waker>>,
}

impl HttpConns {
    /// Closes this core's longest-idle connection and hands its place on;
    /// false when none is idle.
    fn evict_oldest(&self) -> bool {
        let Some((_, slot)) = self.idle.borrow_mut().pop_first() else {
            return false;
        };
        slot.idle_since.set(None);
        slot.evicted.set(true);
        if let Some(waker) = slot.waker.borrow_mut().take() {
            waker.wake();
        }
        true
    }
}

/// A connection's place among the node's `api.max_http_connections`, for
/// as long as it speaks HTTP (a WebSocket counts toward
/// `server.max_connections` instead). Given back on drop, unless it was
/// taken for a newcomer.
pub(super) struct HttpPlace {
    node: Arc<Node>,
    conns: Rc<HttpConns>,
    slot: Rc<Slot>,
}

impl HttpPlace {
    /// A free place; None at the limit.
    pub(super) fn take(node: &Arc<Node>, conns: &Rc<HttpConns>) -> Option<HttpPlace> {
        // `then`, not `then_some`: a place built and dropped on refusal
        // would give back a place it never took.
        node.reserve_http().then(|| Self::new(node, conns))
    }

    /// The place of this core's longest-idle connection, which is closed.
    pub(super) fn evict(node: &Arc<Node>, conns: &Rc<HttpConns>) -> Option<HttpPlace> {
        conns.evict_oldest().then(|| Self::new(node, conns))
    }

    fn new(node: &Arc<Node>, conns: &Rc<HttpConns>) -> HttpPlace {
        HttpPlace {
            node: node.clone(),
            conns: conns.clone(),
            slot: Rc::default(),
        }
    }

    /// The connection waits for its next request with nothing of it read:
    /// it may be closed for a newcomer from now on.
    pub(super) fn idle(&self) {
        if self.slot.idle_since.get().is_some() || self.slot.evicted.get() {
            return;
        }
        let ticket = self.conns.next.get();
        self.conns.next.set(ticket + 1);
        self.slot.idle_since.set(Some(ticket));
        self.conns
            .idle
            .borrow_mut()
            .insert(ticket, self.slot.clone());
    }

    /// The connection is busy again (bytes of a request came).
    pub(super) fn busy(&self) {
        if let Some(ticket) = self.slot.idle_since.take() {
            self.conns.idle.borrow_mut().remove(&ticket);
        }
        self.slot.waker.borrow_mut().take();
    }

    /// Whether the place was taken for a newcomer: the connection closes.
    pub(super) fn is_evicted(&self) -> bool {
        self.slot.evicted.get()
    }

    /// Ready once the place has been taken for a newcomer.
    pub(super) fn evicted(&self) -> Evicted<'_> {
        Evicted(&self.slot)
    }
}

impl Drop for HttpPlace {
    fn drop(&mut self) {
        self.busy();
        if !self.slot.evicted.get() {
            self.node.release_http();
        }
    }
}

/// See [`HttpPlace::evicted`].
pub(super) struct Evicted<'a>(&'a Slot);

impl Future for Evicted<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.evicted.get() {
            return Poll::Ready(());
        }
        let mut waker = self.0.waker.borrow_mut();
        match waker.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
