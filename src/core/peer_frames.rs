//! What a core does with a frame that arrived on one of its links: a
//! peer's request is handed to the owning core of this node (the same
//! mailbox message an API call here would send) and answered on the same
//! link; an answer goes to the request waiting for it.
//!
//! A request a core of this node cannot take (its mailbox is over its
//! bound, docs/api.md §7.1) is answered [`Frame::Refused`] at once and
//! counted (`shardcast_link_requests_refused_total`): the origin then says
//! `"partial":true` (or 503) rather than a silent loss or a wait for its
//! deadline. Notices ([`Frame::Notice`]) are never refused, like this
//! node's own.

use std::sync::Arc;

use super::dispatch::Busy;
use super::peers::LinkKey;
use super::{Core, CoreRef};
use crate::api::error::ApiError;
use crate::cluster::frame::Frame;
use crate::history::owner::owner_core;
use crate::mailbox::{reply_channel, CoreMsg, Reply};
use crate::op::{ConnOutcome, Page};

impl Core {
    /// Handles one frame that arrived on link `key`.
    pub(super) fn on_link_frame(this: &CoreRef, key: LinkKey, f: Frame) {
        match f {
            Frame::Conn {
                req,
                core,
                addr,
                system,
                op,
            } => {
                let system = Arc::from(system);
                let msg = move |reply| CoreMsg::Conn {
                    addr,
                    system,
                    op,
                    reply: Some(reply),
                };
                let answer = move |outcome| Frame::ConnDone { req, outcome };
                on_owner(this, key, req, core, msg, answer, ConnOutcome::Offline);
            }
            Frame::DeliverMany {
                req,
                core,
                system,
                targets,
                frame,
            } => {
                let system = Arc::from(system);
                let msg = move |reply| CoreMsg::Many {
                    system,
                    targets,
                    frame,
                    reply,
                };
                let count = move |n: usize| Frame::Count { req, n: n as u64 };
                on_owner(this, key, req, core, msg, count, 0);
            }
            Frame::Group {
                req,
                system,
                group,
                frame,
                stream,
            } => {
                let (system, group) = (Arc::<str>::from(system), Arc::<str>::from(group));
                let taken = Core::to_every_core(this, || CoreMsg::Group {
                    system: system.clone(),
                    group: group.clone(),
                    frame: frame.clone(),
                    stream,
                });
                answer_taken(this, key, req, taken);
            }
            Frame::Stamp {
                req,
                system,
                group,
                message,
                hops,
            } => {
                let (system, group, owner) = stream_core(this, system, group);
                let msg = move |reply| CoreMsg::Stamp {
                    system,
                    group,
                    message,
                    reply,
                    hops,
                };
                let answer = move |stamped: Result<bool, ApiError>| match stamped {
                    Ok(partial) => Frame::Stamped { req, partial },
                    Err(_) => Frame::Refused { req },
                };
                on_owner(this, key, req, owner, msg, answer, Ok(true));
            }
            Frame::Read {
                system,
                group,
                ask,
                reader,
                hops,
            } => {
                let (system, group, owner) = stream_core(this, system, group);
                let msg = CoreMsg::Read {
                    system,
                    group,
                    ask,
                    reader,
                    hops,
                };
                Core::to_core_admitted(this, owner, msg);
            }
            Frame::Replay {
                core,
                addr,
                system,
                group,
                frames,
                position,
            } => {
                let msg = CoreMsg::Replay {
                    addr,
                    system: system.into(),
                    group: group.into(),
                    frames,
                    position,
                };
                if usize::from(core) < this.borrow().node.cores() {
                    Core::to_core_admitted(this, core, msg);
                }
            }
            Frame::Page {
                req,
                system,
                group,
                since,
                limit,
                hops,
            } => {
                let (system, group, owner) = stream_core(this, system, group);
                let msg = move |reply| CoreMsg::Page {
                    system,
                    group,
                    since,
                    limit,
                    reply,
                    hops,
                };
                let answer = move |page| Frame::Paged { req, page };
                on_owner(this, key, req, owner, msg, answer, Page::default());
            }
            Frame::Claim {
                req,
                system,
                group,
                by,
            } => {
                let (system, group, owner) = stream_core(this, system, group);
                let msg = move |reply| CoreMsg::Claim {
                    system,
                    group,
                    by,
                    reply,
                };
                let answer = move |stream| Frame::Handed { req, stream };
                on_owner(this, key, req, owner, msg, answer, None);
            }
            Frame::Handover {
                req,
                system,
                group,
                stream,
            } => {
                let (system, group, owner) = stream_core(this, system, group);
                let msg = move |reply| CoreMsg::Adopt {
                    system,
                    group,
                    stream,
                    reply,
                };
                on_owner(
                    this,
                    key,
                    req,
                    owner,
                    msg,
                    move |()| Frame::Taken { req },
                    (),
                );
            }
            Frame::System { req, system, frame } => {
                let system = Arc::<str>::from(system);
                let taken = Core::to_every_core(this, || CoreMsg::System {
                    system: system.clone(),
                    frame: frame.clone(),
                });
                answer_taken(this, key, req, taken);
            }
            Frame::Notice {
                system,
                group,
                frame,
            } => this.borrow_mut().tell_group(&system, &group, frame),
            Frame::User {
                req,
                system,
                user,
                frame,
            } => {
                let (system, user) = (Arc::<str>::from(system), Arc::<str>::from(user));
                let ask = move |reply| CoreMsg::User {
                    system: system.clone(),
                    user: user.clone(),
                    frame: frame.clone(),
                    reply,
                };
                answer_gather(this, key, req, ask, move |counts: Vec<usize>| {
                    Frame::Count {
                        req,
                        n: counts.into_iter().sum::<usize>() as u64,
                    }
                });
            }
            Frame::OnlineList {
                req,
                system,
                group,
                with_info,
            } => {
                let (system, group) = (Arc::<str>::from(system), Arc::<str>::from(group));
                let ask = move |reply| CoreMsg::OnlineList {
                    system: system.clone(),
                    group: group.clone(),
                    with_info,
                    reply,
                };
                answer_gather(this, key, req, ask, move |parts: Vec<Vec<_>>| {
                    Frame::Clients {
                        req,
                        clients: parts.into_iter().flatten().collect(),
                    }
                });
            }
            Frame::GroupList { req, system } => {
                let system = Arc::<str>::from(system);
                let ask = move |reply| CoreMsg::GroupList {
                    system: system.clone(),
                    reply,
                };
                answer_gather(this, key, req, ask, move |parts: Vec<Vec<_>>| {
                    Frame::Groups {
                        req,
                        groups: parts.into_iter().flatten().collect(),
                    }
                });
            }
            Frame::ConnDone { req, .. }
            | Frame::Count { req, .. }
            | Frame::Clients { req, .. }
            | Frame::Groups { req, .. }
            | Frame::Stamped { req, .. }
            | Frame::Paged { req, .. }
            | Frame::Handed { req, .. }
            | Frame::Taken { req }
            | Frame::Refused { req } => this.borrow_mut().answered(req, f),
            Frame::Ping { t } => {
                this.borrow_mut().link_send(key, &Frame::Pong { t });
            }
            Frame::Pong { .. } => {}
            Frame::Goodbye
            | Frame::Hello { .. }
            | Frame::Challenge { .. }
            | Frame::Proof { .. }
            | Frame::Welcome { .. } => this.borrow().close_link(key),
        }
    }
}

/// The names of a stream (docs/api.md §9) as a core takes them, and the core
/// of this node that owns it.
fn stream_core(this: &CoreRef, system: String, group: String) -> (Arc<str>, Arc<str>, u8) {
    let owner = owner_core(&system, &group, this.borrow().node.cores());
    (system.into(), group.into(), owner)
}

/// Answers a [`Frame::Group`] or [`Frame::System`] push: taken by every
/// core, or refused by all (`to_every_core` sends to all or none).
fn answer_taken(this: &CoreRef, key: LinkKey, req: u64, taken: Result<(), Busy>) {
    let answer = match taken {
        Ok(()) => Frame::Taken { req },
        Err(Busy) => refused(this, req),
    };
    this.borrow_mut().link_send(key, &answer);
}

/// Counts a refused request and makes its answer.
fn refused(this: &CoreRef, req: u64) -> Frame {
    this.borrow().metrics().link_refused();
    Frame::Refused { req }
}

/// Hands `msg` to core `owner` of this node and answers on the link when it
/// replies. A core index this node does not have answers `fallback`; a
/// hand-over refused by a busy core answers [`Frame::Refused`]; both at once.
fn on_owner<T: 'static>(
    this: &CoreRef,
    key: LinkKey,
    req: u64,
    owner: u8,
    msg: impl FnOnce(Reply<T>) -> CoreMsg,
    answer: impl FnOnce(T) -> Frame + 'static,
    fallback: T,
) {
    let (tx, mut rx) = reply_channel();
    let cores = this.borrow().node.cores();
    if (owner as usize) >= cores {
        this.borrow_mut().link_send(key, &answer(fallback));
        return;
    }
    if Core::to_core(this, owner, msg(tx)).is_err() {
        let no = refused(this, req);
        this.borrow_mut().link_send(key, &no);
        return;
    }
    if let Ok(v) = rx.try_recv() {
        // The operation already ran on this core.
        this.borrow_mut().link_send(key, &answer(v));
        return;
    }
    let core = this.clone();
    monoio::spawn(async move {
        if let Ok(v) = rx.await {
            let mut c = core.borrow_mut();
            c.link_send(key, &answer(v));
            c.flush();
        }
    });
}

/// Asks every core of this node, then answers on the link ([`Frame::Refused`]
/// when a core is over its mailbox bound).
fn answer_gather<T: 'static>(
    this: &CoreRef,
    key: LinkKey,
    req: u64,
    ask: impl Fn(Reply<T>) -> CoreMsg + 'static,
    answer: impl FnOnce(Vec<T>) -> Frame + 'static,
) {
    let core = this.clone();
    monoio::spawn(async move {
        let frame = match Core::ask_every_core(&core, ask).await {
            Ok(parts) => answer(parts),
            Err(Busy) => refused(&core, req),
        };
        let mut c = core.borrow_mut();
        c.link_send(key, &frame);
        c.flush();
    });
}
