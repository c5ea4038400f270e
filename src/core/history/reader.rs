//! The core of a connection that reads a stream: it asks the owner, skips
//! the stream's live pushes to that connection until the replay arrives
//! (the replay holds them: it left the owner after them), then queues the
//! replay and says where the stream stands — to the API call that bound
//! the connection, or to the client that sent `recover`.
//!
//! A replay that does not come within `cluster.request_timeout` (its owner
//! left, a link broke) ends the wait: the bind answers 503, the client gets
//! `recovered:false` without a position, and live pushes flow again.

use std::sync::Arc;

use super::super::Core;
use super::route::Owner;
use super::Pending;
use crate::api::error::ApiError;
use crate::cluster::frame::Frame;
use crate::mailbox::{CoreMsg, Reply};
use crate::op::{Ask, ConnAddr, ConnOutcome, Position, Reader};
use crate::ws::message::{recovered_frame, StreamAt};
use crate::ws::Push;

/// Who waits for a replay's position.
pub enum Why {
    /// A bind with `history`/`since`: the API call's answer.
    Bind(Option<Reply<ConnOutcome>>),
    /// The client's `recover` message: a `recovered` frame.
    Recover,
}

struct Recovery {
    id: u64,
    addr: ConnAddr,
    system: Arc<str>,
    group: Arc<str>,
    why: Why,
}

/// The connections of a core waiting for a replay (few at a time: a list).
#[derive(Default)]
pub(super) struct Recoveries {
    waiting: Vec<Recovery>,
    next_id: u64,
}

impl Recoveries {
    /// The oldest recovery `at` matches, taken out (replays of one stream
    /// for one connection answer its reads in the order they were made).
    fn take(&mut self, at: impl Fn(&Recovery) -> bool) -> Option<Recovery> {
        let i = self.waiting.iter().position(at)?;
        Some(self.waiting.remove(i))
    }

    fn has(&self, addr: ConnAddr, group: &str) -> bool {
        self.waiting
            .iter()
            .any(|r| r.addr == addr && *r.group == *group)
    }
}

impl Core {
    /// Reads (system, group) for the connection at `addr`, which is a
    /// member: its live pushes of the stream are skipped until the replay.
    pub(in crate::core) fn recover(
        &mut self,
        addr: ConnAddr,
        (system, group): (Arc<str>, Arc<str>),
        ask: Ask,
        why: Why,
    ) {
        if matches!(why, Why::Recover) && self.history.recoveries.has(addr, &group) {
            // A client's second `recover` while the first is on its way: the
            // first's replay and `recovered` answer both (two would double).
            return;
        }
        let recoveries = &mut self.history.recoveries;
        recoveries.next_id += 1;
        let id = recoveries.next_id;
        recoveries.waiting.push(Recovery {
            id,
            addr,
            system: system.clone(),
            group: group.clone(),
            why,
        });
        self.expire_recovery_later(id);
        let reader = Reader {
            node: self.node.node_id,
            core: self.id,
            addr,
        };
        // A read for another core leaves at once (`CoreMsg::wants_reply`).
        match self.stream_owner(&system, &group) {
            Owner::Here(c) if c == self.id => {
                self.for_stream((system, group), Pending::Read { ask, reader }, 0)
            }
            Owner::Here(c) => self.post(
                c,
                CoreMsg::Read {
                    system,
                    group,
                    ask,
                    reader,
                    hops: 0,
                },
            ),
            Owner::Node(node) => {
                let read = Frame::Read {
                    system: system.to_string(),
                    group: group.to_string(),
                    ask,
                    reader,
                    hops: 0,
                };
                if !self.peer_send(node, &read) {
                    return self.end_recovery(id);
                }
                // Someone waits for the replay: the read leaves now, not at
                // the next flush (the API call that bound the connection may
                // be what this core would flush after).
                self.write_links();
            }
        }
    }

    /// The connections of this core that skip the live pushes of (system,
    /// group): none, nearly always.
    pub(in crate::core) fn recovering(&self, system: &str, group: &str) -> Vec<ConnAddr> {
        let waiting = &self.history.recoveries.waiting;
        if waiting.is_empty() {
            return Vec::new();
        }
        let reading = waiting
            .iter()
            .filter(|r| *r.group == *group && *r.system == *system);
        reading.map(|r| r.addr).collect()
    }

    /// The replay of a read: queued to the connection, then its position
    /// told to whoever waits.
    pub(in crate::core) fn on_replay(
        &mut self,
        addr: ConnAddr,
        (system, group): (Arc<str>, Arc<str>),
        frames: Vec<Push>,
        position: Position,
    ) {
        let same = |r: &Recovery| r.addr == addr && r.group == group && r.system == system;
        let Some(recovery) = self.history.recoveries.take(same) else {
            return;
        };
        for frame in &frames {
            if self.deliver(addr, &system, frame).is_err() {
                break;
            }
        }
        match recovery.why {
            Why::Bind(reply) => {
                if let Some(reply) = reply {
                    let _ = reply.send(ConnOutcome::Bound(position));
                }
            }
            Why::Recover => {
                let at = StreamAt {
                    group: &group,
                    offset: position.offset,
                    epoch: &position.epoch,
                };
                self.enqueue(addr, recovered_frame(Ok((position.recovered, at))));
            }
        }
    }

    /// Ends the recovery `id` unanswered, if it still waits.
    fn end_recovery(&mut self, id: u64) {
        let Some(recovery) = self.history.recoveries.take(|r| r.id == id) else {
            return;
        };
        // A bind's reply dropped unanswered: the API call answers 503.
        if let Why::Recover = recovery.why {
            let busy = ApiError::Busy.message(self.node.config.api.lang);
            let frame = recovered_frame(Err((&recovery.group, &busy)));
            self.enqueue(recovery.addr, frame);
        }
    }

    fn expire_recovery_later(&self, id: u64) {
        let Some(core) = self.this.upgrade() else {
            return;
        };
        let wait = self.node.config.cluster.request_timeout;
        monoio::spawn(async move {
            monoio::time::sleep(wait).await;
            let mut c = core.borrow_mut();
            c.end_recovery(id);
            c.flush();
        });
    }
}
