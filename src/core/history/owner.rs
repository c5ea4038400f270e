//! The owner core of streams, once it holds the stream a request is for
//! (`moves` decides that): numbers each push, keeps it, fans it out to
//! every core of its node and to every peer node, answers reads on the
//! path of the pushes, and answers pages.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::super::Core;
use super::{Key, Pending};
use crate::api::error::ApiError;
use crate::clock::unix_millis as unix_ms;
use crate::cluster::frame::Frame;
use crate::config::HistoryRule;
use crate::history::stream::Stream;
use crate::history::streams::{new_epoch, Dropped};
use crate::mailbox::{CoreMsg, Reply, ReplyRx};
use crate::op::{Ask, HandedStream, Page, PageEntry, Position, Reader, Unstamped};
use crate::ws::message::{stream_push_frame, StreamAt};
use crate::ws::MessageId;

/// How often a core drops what its streams' ttl and `history.meta_ttl`
/// let go.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Core {
    /// Serves a request for a stream this core holds (or makes now).
    pub(super) fn serve(&mut self, key: Key, pending: Pending) {
        match pending {
            Pending::Stamp { message, reply } => self.stamp(key, message, reply),
            Pending::Read { ask, reader } => self.read_stream(key, ask, reader),
            Pending::Page {
                since,
                limit,
                reply,
            } => {
                let _ = reply.send(self.page(&key.0, &key.1, since, limit));
            }
        }
    }

    /// Numbers, keeps and sends a push to a history group of this core;
    /// answers partial once every peer node took it (or did not in time).
    fn stamp(
        &mut self,
        (system, group): Key,
        message: Unstamped,
        reply: Reply<Result<bool, ApiError>>,
    ) {
        let Some(rule) = self.node.config.history.rule(&group).cloned() else {
            let _ = reply.send(Err(ApiError::NoHistory));
            return;
        };
        if self.any_core_busy() {
            let _ = reply.send(Err(ApiError::Busy));
            return;
        }
        let (node, id) = (self.node.clone(), usize::from(self.id));
        let encode = |offset, epoch: &str| {
            let at = StreamAt {
                group: &group,
                offset,
                epoch,
            };
            let m = &message;
            let message_id = MessageId(m.message_id);
            let frame = stream_push_frame(message_id, &m.send_user_id, m.code, &m.msg, &m.data, at);
            node.encode(frame, id)
        };
        let now = unix_ms();
        let key = (&*system, &*group);
        let (push, _, dropped) = self.history.streams.stamp(key, &rule, now, encode);
        self.note_history(dropped);
        let group_send = || CoreMsg::Group {
            system: system.clone(),
            group: group.clone(),
            frame: push.clone(),
            stream: true,
        };
        // The other cores' mailboxes have the push before the caller has its
        // answer: its next send, to any group, comes after it on every core.
        self.tell_other_cores(group_send);
        self.send_outboxes();
        let (waiting, partial) = self.ask_peers(&|req| Frame::Group {
            req,
            system: system.to_string(),
            group: group.to_string(),
            frame: push.clone(),
            stream: true,
        });
        self.answer_when_taken(reply, waiting, partial);
        // This core's own members last: nothing else runs here before them,
        // and the caller need not wait for them.
        self.handle(group_send());
    }

    /// Answers a stamped send now, or once every peer node in `waiting`
    /// took it (partial when one did not in time).
    fn answer_when_taken(
        &self,
        reply: Reply<Result<bool, ApiError>>,
        waiting: Vec<ReplyRx<Frame>>,
        partial: bool,
    ) {
        if waiting.is_empty() {
            let _ = reply.send(Ok(partial));
            return;
        }
        let Some(core) = self.this.upgrade() else {
            return;
        };
        let sent = Instant::now();
        monoio::spawn(async move {
            let partial = partial | !super::super::send::all_taken(&core, waiting, sent).await;
            let _ = reply.send(Ok(partial));
        });
    }

    /// Answers a read of (system, group) for `reader`, behind every push of
    /// the stream this core sent it before (a stream read before its first
    /// push is made, so that its epoch is known from the start).
    pub(super) fn read_stream(&mut self, (system, group): Key, ask: Ask, reader: Reader) {
        let (frames, position) = match self.node.config.history.rule(&group).cloned() {
            Some(rule) => {
                let stream = self.stream_for_read(&system, &group, &rule);
                stream.read(&ask)
            }
            // A read that raced a change of configuration.
            None => (Vec::new(), Position::default()),
        };
        if position.recovered {
            self.metrics().history_recovered.fetch_add(1, Relaxed);
        } else {
            self.metrics().history_not_recovered.fetch_add(1, Relaxed);
        }
        if reader.node == self.node.node_id {
            let msg = CoreMsg::Replay {
                addr: reader.addr,
                system,
                group,
                frames,
                position,
            };
            if reader.core == self.id {
                self.handle(msg);
            } else {
                self.post(reader.core, msg);
            }
            return;
        }
        self.peer_send(
            reader.node,
            &Frame::Replay {
                core: reader.core,
                addr: reader.addr,
                system: system.to_string(),
                group: group.to_string(),
                frames,
                position,
            },
        );
    }

    /// The stream (system, group) of this core, made if it has none.
    fn stream_for_read(&mut self, system: &str, group: &str, rule: &HistoryRule) -> &Stream {
        if self.history.streams.get(system, group).is_none() {
            let ttl = rule.ttl.as_millis() as u64;
            let stream = Stream::new(new_epoch(), rule.size, ttl, unix_ms());
            self.history.streams.insert(system, group, stream);
            self.note_history(Dropped::default());
        }
        self.history
            .streams
            .get(system, group)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// Takes in a stream handed over by its previous owner (a draining node
    /// pushing it, or the answer to a claim). One already here with a
    /// numbering at least as far stays (it went on without the handover).
    pub(super) fn adopt(&mut self, (system, group): &Key, handed: HandedStream) {
        let Some(rule) = self.node.config.history.rule(group) else {
            return;
        };
        let newer = self.history.streams.get(system, group);
        if newer.is_some_and(|s| s.top >= handed.top) {
            return;
        }
        let ttl = rule.ttl.as_millis() as u64;
        let stream = Stream::handed_over(handed, rule.size, ttl, unix_ms());
        self.history.streams.insert(system, group, stream);
        self.note_history(Dropped::default());
    }

    /// A page of (system, group)'s history; an empty page of a new epoch
    /// when this core has no such stream.
    pub(in crate::core) fn page(
        &self,
        system: &str,
        group: &str,
        since: Option<(u64, String)>,
        limit: u32,
    ) -> Page {
        let Some(stream) = self.history.streams.get(system, group) else {
            return Page::default();
        };
        let since = since.as_ref().map(|(o, e)| (*o, e.as_str()));
        let kept = stream.page(since, limit as usize);
        Page {
            epoch: stream.epoch.clone(),
            offset: stream.top,
            messages: kept
                .into_iter()
                .map(|k| PageEntry {
                    offset: k.offset,
                    at_ms: k.at_ms,
                    frame: k.push.plain.clone(),
                })
                .collect(),
        }
    }

    /// Drops pushes past their rule's ttl and streams past
    /// `history.meta_ttl`: at most once a second (the core's housekeeping
    /// tick may be faster).
    pub fn sweep_history(&mut self) {
        if self.history.swept.elapsed() < SWEEP_EVERY {
            return;
        }
        self.history.swept = Instant::now();
        let meta_ttl = self.node.config.history.meta_ttl.as_millis() as u64;
        let dropped = self.history.streams.sweep(unix_ms(), meta_ttl);
        self.note_history(dropped);
        self.forget_moved();
    }

    /// The gauges after a change, and what the bound dropped.
    pub(super) fn note_history(&self, dropped: Dropped) {
        let m = self.metrics();
        let streams = &self.history.streams;
        m.history_streams.store(streams.count() as u64, Relaxed);
        m.history_kept_bytes.store(streams.bytes() as u64, Relaxed);
        if dropped.bound > 0 {
            m.history_bound_dropped
                .fetch_add(dropped.bound as u64, Relaxed);
        }
    }
}
