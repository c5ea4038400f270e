//! What a core does with a frame that arrived on one of its links: a
//! peer's request is handed to the owning core of this node (the same
//! mailbox message an API call here would send) and answered on the same
//! link; an answer goes to the request waiting for it.

use std::sync::Arc;

use super::peers::LinkKey;
use super::{Core, CoreRef};
use crate::cluster::frame::Frame;
use crate::mailbox::{reply_channel, CoreMsg, Reply};
use crate::op::ConnOutcome;

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
                on_owner(this, key, core, msg, answer, ConnOutcome::Offline);
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
                on_owner(this, key, core, msg, count, 0);
            }
            Frame::Group {
                system,
                group,
                frame,
            } => {
                let (system, group) = (Arc::<str>::from(system), Arc::<str>::from(group));
                let _ = Core::to_every_core(this, || CoreMsg::Group {
                    system: system.clone(),
                    group: group.clone(),
                    frame: frame.clone(),
                });
            }
            Frame::System { system, frame } => {
                let system = Arc::<str>::from(system);
                let _ = Core::to_every_core(this, || CoreMsg::System {
                    system: system.clone(),
                    frame: frame.clone(),
                });
            }
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
                answer_gather(this, key, ask, move |counts: Vec<usize>| Frame::Count {
                    req,
                    n: counts.into_iter().sum::<usize>() as u64,
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
                answer_gather(this, key, ask, move |parts: Vec<Vec<_>>| Frame::Clients {
                    req,
                    clients: parts.into_iter().flatten().collect(),
                });
            }
            Frame::GroupList { req, system } => {
                let system = Arc::<str>::from(system);
                let ask = move |reply| CoreMsg::GroupList {
                    system: system.clone(),
                    reply,
                };
                answer_gather(this, key, ask, move |parts: Vec<Vec<_>>| Frame::Groups {
                    req,
                    groups: parts.into_iter().flatten().collect(),
                });
            }
            Frame::ConnDone { req, .. }
            | Frame::Count { req, .. }
            | Frame::Clients { req, .. }
            | Frame::Groups { req, .. } => this.borrow_mut().answered(req, f),
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

/// Hands `msg` to core `owner` of this node and answers on the link when it
/// replies. A core index this node does not have, or a refused hand-over,
/// answers `fallback` at once.
fn on_owner<T: 'static>(
    this: &CoreRef,
    key: LinkKey,
    owner: u8,
    msg: impl FnOnce(Reply<T>) -> CoreMsg,
    answer: impl FnOnce(T) -> Frame + 'static,
    fallback: T,
) {
    let (tx, rx) = reply_channel();
    let cores = this.borrow().node.cores();
    if (owner as usize) >= cores || Core::to_core(this, owner, msg(tx)).is_err() {
        this.borrow_mut().link_send(key, &answer(fallback));
        return;
    }
    if let Ok(v) = rx.try_recv() {
        // The operation already ran on this core.
        this.borrow_mut().link_send(key, &answer(v));
        return;
    }
    let core = this.clone();
    monoio::spawn(async move {
        if let Ok(v) = rx.recv_async().await {
            let mut c = core.borrow_mut();
            c.link_send(key, &answer(v));
            c.flush();
        }
    });
}

/// Asks every core of this node, then answers on the link.
fn answer_gather<T: 'static>(
    this: &CoreRef,
    key: LinkKey,
    ask: impl Fn(Reply<T>) -> CoreMsg + 'static,
    answer: impl FnOnce(Vec<T>) -> Frame + 'static,
) {
    let core = this.clone();
    monoio::spawn(async move {
        if let Ok(parts) = Core::ask_every_core(&core, ask).await {
            let mut c = core.borrow_mut();
            c.link_send(key, &answer(parts));
            c.flush();
        }
    });
}
