//! Ownership moves without loss when they are planned (docs/api.md §9).
//!
//! A request reaches the core its sender believes owns the stream. When
//! this core does not hold the stream:
//! - it gave the stream away (a claim, or its own drain): it follows it, to
//!   the node it gave it to;
//! - its view names another owner: it forwards the request there (a view
//!   that changed at another pace than the sender's);
//! - it is the owner: the stream may live at its previous owner — the
//!   owner by the view without this node, which is where it was before
//!   this node joined. The core claims it from there; requests for it wait,
//!   in order, until the answer (the stream, which leaves the previous
//!   owner, or none: a new stream, a new epoch) or the request timeout.
//!
//! A node drained with SIGTERM gives every stream it holds to its next
//! owner (the view without it) and waits for each to be taken before it
//! leaves the cluster, so the numbering goes on there. A node that dies
//! gives nothing: its streams start again under a new epoch at their next
//! owner, and a read of an old position says `recovered:false`.
//!
//! Forwarding is bounded (`MAX_HOPS`): views that disagree for a moment
//! end in a new stream rather than a loop.

use std::time::{Duration, Instant};

use super::super::{Core, CoreRef};
use super::route::Owner;
use super::{Key, Pending};
use crate::api::error::ApiError;
use crate::cluster::frame::Frame;
use crate::history::owner::owner_node;
use crate::history::streams::Dropped;
use crate::op::HandedStream;

/// Most times a request for a stream is forwarded.
const MAX_HOPS: u8 = 2;
/// How long a core follows a stream it gave away.
const MOVED_KEPT: Duration = Duration::from_secs(600);

enum Decision {
    Forward(u16),
    Claim(u16),
    Make,
}

impl Core {
    /// A request for the stream `key`, forwarded `hops` times so far.
    pub(in crate::core) fn for_stream(&mut self, key: Key, pending: Pending, hops: u8) {
        if self.history.streams.get(&key.0, &key.1).is_some() {
            return self.serve(key, pending);
        }
        if let Some(waiting) = self.history.claims.get_mut(&key) {
            return waiting.push(pending);
        }
        match self.decide(&key, hops) {
            Decision::Forward(node) => self.pass_on(node, key, pending, hops + 1),
            Decision::Claim(previous) => self.claim(previous, key, pending),
            Decision::Make => self.serve(key, pending),
        }
    }

    fn decide(&self, key: &Key, hops: u8) -> Decision {
        let followed = self.history.moved.get(key);
        if let Some((node, at)) = followed.filter(|_| hops < MAX_HOPS) {
            if at.elapsed() < MOVED_KEPT {
                return Decision::Forward(*node);
            }
        }
        match self.stream_owner(&key.0, &key.1) {
            Owner::Node(n) if hops < MAX_HOPS => Decision::Forward(n),
            _ => match owner_node(&key.0, &key.1, self.peer_nodes()) {
                Some(previous) => Decision::Claim(previous),
                None => Decision::Make,
            },
        }
    }

    /// Sends a request on to `node`; an answer comes back to its asker.
    fn pass_on(&mut self, node: u16, (system, group): Key, pending: Pending, hops: u8) {
        let (system, group) = (system.to_string(), group.to_string());
        match pending {
            Pending::Read { ask, reader } => {
                let read = Frame::Read {
                    system,
                    group,
                    ask,
                    reader,
                    hops,
                };
                // Unsent, the reader's wait ends at its deadline.
                if self.peer_send(node, &read) {
                    self.write_links();
                }
            }
            Pending::Stamp { message, reply } => {
                let stamp = |req| Frame::Stamp {
                    req,
                    system,
                    group,
                    message,
                    hops,
                };
                self.relay(node, stamp, move |answer| {
                    let _ = reply.send(match answer {
                        Some(Frame::Stamped { partial, .. }) => Ok(partial),
                        _ => Err(ApiError::Busy),
                    });
                });
            }
            Pending::Page {
                since,
                limit,
                reply,
            } => {
                let page = |req| Frame::Page {
                    req,
                    system,
                    group,
                    since,
                    limit,
                    hops,
                };
                self.relay(node, page, move |answer| {
                    if let Some(Frame::Paged { page, .. }) = answer {
                        let _ = reply.send(page);
                    }
                });
            }
        }
    }

    /// Sends the request `make` builds to `node` and gives its answer (None:
    /// none in time) to `then`, from a task of this core.
    fn relay(
        &mut self,
        node: u16,
        make: impl FnOnce(u64) -> Frame,
        then: impl FnOnce(Option<Frame>) + 'static,
    ) {
        let sent = Instant::now();
        let (Some(rx), Some(core)) = (self.request(node, make), self.this.upgrade()) else {
            return then(None);
        };
        // Someone waits: the request leaves now, not at the next flush (this
        // may run inside the API call the flush would follow).
        self.write_links();
        monoio::spawn(async move { then(Core::await_answer(&core, rx, sent).await) });
    }

    /// Asks the previous owner for the stream; `pending` and what follows
    /// wait for the answer.
    fn claim(&mut self, previous: u16, key: Key, pending: Pending) {
        self.history.claims.insert(key.clone(), vec![pending]);
        let (system, group, by) = (key.0.to_string(), key.1.to_string(), self.node.node_id);
        let claim = move |req| Frame::Claim {
            req,
            system,
            group,
            by,
        };
        let this = self.this.clone();
        self.relay(previous, claim, move |answer| {
            let Some(core) = this.upgrade() else {
                return;
            };
            let handed = match answer {
                Some(Frame::Handed { stream, .. }) => stream,
                _ => None,
            };
            let mut c = core.borrow_mut();
            c.claimed(key, handed);
            c.flush();
        });
    }

    /// The answer to a claim: the stream taken in (if it came), then the
    /// requests that waited for it, in order.
    fn claimed(&mut self, key: Key, handed: Option<HandedStream>) {
        if let Some(stream) = handed {
            self.adopt(&key, stream);
        }
        for pending in self.history.claims.remove(&key).unwrap_or_default() {
            self.serve(key.clone(), pending);
        }
    }

    /// Node `by` claims the stream `key`: it leaves this core, which
    /// follows it there from now on.
    pub(in crate::core) fn give(&mut self, key: Key, by: u16) -> Option<HandedStream> {
        let stream = self.history.streams.remove(&key.0, &key.1)?;
        self.history.moved.insert(key, (by, Instant::now()));
        self.note_history(Dropped::default());
        Some(stream.hand_over())
    }

    /// A stream pushed here by its draining owner; requests that waited
    /// for a claim of it are served.
    pub(in crate::core) fn adopted(&mut self, key: Key, stream: HandedStream) {
        self.adopt(&key, stream);
        if let Some(waiting) = self.history.claims.remove(&key) {
            for pending in waiting {
                self.serve(key.clone(), pending);
            }
        }
    }

    /// Forgets the streams given away long enough ago.
    pub(super) fn forget_moved(&mut self) {
        self.history
            .moved
            .retain(|_, (_, at)| at.elapsed() < MOVED_KEPT);
    }
}

/// A draining node's core gives every stream it holds to its next owner
/// (the owner by the view without this node) and waits, within the request
/// timeout, for each to be taken. Standalone it has no one to give them to.
pub async fn hand_over_all(core: &CoreRef) {
    let sent = Instant::now();
    let waiting = {
        let mut c = core.borrow_mut();
        let mut waiting = Vec::new();
        for (system, group) in c.history.streams.keys() {
            let Some(next) = owner_node(&system, &group, c.peer_nodes()) else {
                continue;
            };
            let key: Key = (system.as_str().into(), group.as_str().into());
            let Some(stream) = c.give(key, next) else {
                continue;
            };
            let handover = |req| Frame::Handover {
                req,
                system,
                group,
                stream,
            };
            waiting.extend(c.request(next, handover));
        }
        c.flush();
        waiting
    };
    for rx in waiting {
        Core::await_answer(core, rx, sent).await;
    }
}
