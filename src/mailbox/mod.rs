//! What cores are told: the message type of every core's mailbox.
//!
//! Each core drains one MPSC mailbox (`channel`) in batches. A message carries
//! everything the receiving core needs — the pre-encoded frame as `Bytes`,
//! names as `Arc<str>` — so the receiver allocates nothing per recipient.
//! Requests that need an answer carry a one-shot `Reply`. The operations on
//! one connection are those of `op`, the same the links carry, so a frame
//! from another node becomes a mailbox message without translation.
//!
//! Which channel is used where, and why:
//! - a core's mailbox: `channel` (this module's own), because every core,
//!   the etcd thread and the signal thread send to it all the time, and
//!   its receiver must register nothing per poll (`channel` says why);
//! - one answer to one request (`Reply`, `reply_channel`: a core's reply to
//!   an API call or to a peer's request, an answer frame from a peer, a
//!   register by the registry thread or by etcd): `tokio::sync::oneshot`.
//!   It is made and dropped per request, so it must be cheap
//!   (`benches/reply.rs`); its receiver is a future that any runtime can
//!   await, and `try_recv` finds an answer that is already there. A sender
//!   dropped unanswered is an answer too: "nobody will answer" (the core
//!   stopped, the peer left, the request expired);
//! - a stream of messages to a task or thread (the commands to the etcd
//!   thread, the jobs of the registry thread, the webhook events, a dial
//!   task's wake-ups): `tokio::sync::mpsc`, awaited by a task of any
//!   runtime or received blocking by a plain thread;
//! - a plain thread waiting with a deadline (the start waiting for the etcd
//!   thread's join, a stop waiting for it to leave, `server::run` waiting
//!   for the core threads): `std::sync::mpsc`, the one with a blocking
//!   receive that times out (tokio's have none).
//!
//! tokio's channels need no tokio runtime: the cores await them inside
//! monoio.

pub mod channel;

use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::api::error::ApiError;
use crate::cluster::membership::ClusterEvent;
use crate::cluster::PeerTable;
use crate::op::{
    Ask, ClientInfo, ConnAddr, ConnOp, ConnOutcome, GroupCount, HandedStream, Page, Position,
    Reader, Unstamped,
};
use crate::registry::SystemEntry;
use crate::ws::deflate::Deflate;
use crate::ws::{Last, Push};

/// The sending end of a core's mailbox: every core, the etcd thread and
/// the signal thread hold one for each core.
pub type MailboxTx = channel::Sender<CoreMsg>;
/// The receiving end of a core's mailbox, held by that core alone.
pub type MailboxRx = channel::Receiver<CoreMsg>;

/// Where the answer to a request goes: one value, once. Dropped unanswered
/// (the core stopped, the request was failed), it tells the asker at once.
pub type Reply<T> = oneshot::Sender<T>;
/// Where the asker waits for that answer.
pub type ReplyRx<T> = oneshot::Receiver<T>;

/// A request's answer channel.
pub fn reply_channel<T>() -> (Reply<T>, ReplyRx<T>) {
    oneshot::channel()
}

pub enum CoreMsg {
    /// One operation on one connection of this core.
    Conn {
        addr: ConnAddr,
        system: Arc<str>,
        op: ConnOp,
        reply: Option<Reply<ConnOutcome>>,
    },
    /// Deliver one frame to several connections of this core; replies with
    /// how many were online.
    Many {
        system: Arc<str>,
        targets: Vec<ConnAddr>,
        frame: Push,
        reply: Reply<usize>,
    },
    /// A push to the members of a group; `stream`: numbered by its
    /// stream's owner (docs/api.md §9), skipped by a member recovering it.
    Group {
        system: Arc<str>,
        group: Arc<str>,
        frame: Push,
        stream: bool,
    },
    /// A push to a history group, for the core that owns its stream to
    /// number, keep and fan out; answers partial, or Busy when a core of
    /// this node is over its mailbox bound (nothing was sent).
    Stamp {
        system: Arc<str>,
        group: Arc<str>,
        message: Unstamped,
        reply: Reply<Result<bool, ApiError>>,
        hops: u8,
    },
    /// A read of a stream owned by this core, for `reader`.
    Read {
        system: Arc<str>,
        group: Arc<str>,
        ask: Ask,
        reader: Reader,
        hops: u8,
    },
    /// The answer to a `Read`, for a connection of this core.
    Replay {
        addr: ConnAddr,
        system: Arc<str>,
        group: Arc<str>,
        frames: Vec<Push>,
        position: Position,
    },
    /// `/api/get_group_history` of a stream owned by this core.
    Page {
        system: Arc<str>,
        group: Arc<str>,
        since: Option<(u64, String)>,
        limit: u32,
        reply: Reply<Page>,
        hops: u8,
    },
    /// Node `by` now owns the stream and asks for it.
    Claim {
        system: Arc<str>,
        group: Arc<str>,
        by: u16,
        reply: Reply<Option<HandedStream>>,
    },
    /// A stream given to this core by its draining owner.
    Adopt {
        system: Arc<str>,
        group: Arc<str>,
        stream: HandedStream,
        reply: Reply<()>,
    },
    User {
        system: Arc<str>,
        user: Arc<str>,
        frame: Push,
        reply: Reply<usize>,
    },
    System {
        system: Arc<str>,
        frame: Push,
    },
    OnlineList {
        system: Arc<str>,
        group: Arc<str>,
        with_info: bool,
        reply: Reply<Vec<ClientInfo>>,
    },
    GroupList {
        system: Arc<str>,
        reply: Reply<Vec<GroupCount>>,
    },
    SystemAdded {
        id: Arc<str>,
        entry: SystemEntry,
        reply: Option<Reply<()>>,
    },
    /// The membership thread's new view of the other nodes.
    Peers(Arc<PeerTable>),
    /// This node lost its identity in etcd: close every connection.
    NodeLost,
    Shutdown,
    /// What one core had for this one since its last flush, in order: one
    /// mailbox hop (and one wake-up) for a whole batch of requests.
    Batch(Vec<CoreMsg>),
    /// A resume accepted by another core for a session of this one
    /// (docs/api.md §8): the socket moves here, the session stays.
    Resume(Box<Handoff>),
}

/// A resume's socket on its way to the core that owns the session.
pub struct Handoff {
    pub socket: OwnedFd,
    pub request: ResumeRequest,
}

/// A resume with a genuine token, for the core that owns the session.
pub struct ResumeRequest {
    pub addr: ConnAddr,
    /// The welcome the token was issued with (`Conn::resume_seq`).
    pub seq: u16,
    pub system: Arc<str>,
    /// The last push or notice the client processed.
    pub last: Last,
    /// The 101 answer, written with the welcome.
    pub answer: Bytes,
    /// What the answer agreed to of permessage-deflate (docs/api.md §10):
    /// the resumed connection takes it, whatever its old socket had.
    pub deflate: Option<Deflate>,
    /// Bytes that came after the upgrade request.
    pub rest: Bytes,
    /// If the session is gone: the userId of a new connection, or why the
    /// client may not have one (its connect token).
    pub fallback: Result<String, ApiError>,
    /// Token mode: the userId of the valid connect token presented with the
    /// resume, if one was (docs/api.md §8.1: the session's user must match).
    pub token_user: Option<String>,
}

impl CoreMsg {
    /// Whether a task waits for this message's answer (it must not wait in
    /// an outbox for the sender's next flush).
    pub fn wants_reply(&self) -> bool {
        match self {
            CoreMsg::Conn { reply, .. } => reply.is_some(),
            CoreMsg::SystemAdded { reply, .. } => reply.is_some(),
            CoreMsg::Many { .. }
            | CoreMsg::User { .. }
            | CoreMsg::OnlineList { .. }
            | CoreMsg::GroupList { .. }
            | CoreMsg::Stamp { .. }
            | CoreMsg::Page { .. }
            | CoreMsg::Claim { .. }
            | CoreMsg::Adopt { .. } => true,
            // A bind or a client waits for the replay this read starts.
            CoreMsg::Read { .. } => true,
            CoreMsg::Batch(msgs) => msgs.iter().any(CoreMsg::wants_reply),
            // Named one by one: a new variant that carries a reply must say
            // so here, not wait silently in an outbox.
            CoreMsg::Group { .. }
            | CoreMsg::Replay { .. }
            | CoreMsg::System { .. }
            | CoreMsg::Peers(_)
            | CoreMsg::NodeLost
            | CoreMsg::Shutdown
            | CoreMsg::Resume(_) => false,
        }
    }

    /// The message with a fan-out's frame copied for the receiving core: its
    /// recipients' clones then count references on a buffer of that core
    /// alone, not on a cache line two cores write per recipient.
    pub fn own_copy(self) -> CoreMsg {
        let copy = |frame: Push| frame.own_copy();
        match self {
            CoreMsg::Many {
                system,
                targets,
                frame,
                reply,
            } => CoreMsg::Many {
                system,
                targets,
                frame: copy(frame),
                reply,
            },
            CoreMsg::Group {
                system,
                group,
                frame,
                stream,
            } => CoreMsg::Group {
                system,
                group,
                frame: copy(frame),
                stream,
            },
            CoreMsg::User {
                system,
                user,
                frame,
                reply,
            } => CoreMsg::User {
                system,
                user,
                frame: copy(frame),
                reply,
            },
            CoreMsg::System { system, frame } => CoreMsg::System {
                system,
                frame: copy(frame),
            },
            other => other,
        }
    }

    /// What a core must hear of a membership event, if anything.
    pub fn from_cluster(event: &ClusterEvent) -> Option<Box<dyn Fn() -> CoreMsg + '_>> {
        let make: Box<dyn Fn() -> CoreMsg + '_> = match event {
            ClusterEvent::Peers(peers) => Box::new(move || CoreMsg::Peers(peers.clone())),
            ClusterEvent::System { id, entry } => {
                let id: Arc<str> = Arc::from(id.as_str());
                Box::new(move || CoreMsg::SystemAdded {
                    id: id.clone(),
                    entry: entry.clone(),
                    reply: None,
                })
            }
            ClusterEvent::NodeLost => Box::new(|| CoreMsg::NodeLost),
            ClusterEvent::Ready(_) => return None,
        };
        Some(make)
    }
}
