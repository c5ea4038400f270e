//! Where a stream lives and how an API call reaches it: the owner node by
//! rendezvous hashing over the live members this core knows (itself
//! included; standalone, itself), the owner core by a hash over that
//! node's cores (the owner node picks it: nodes may have different core
//! counts).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::super::{send, Core, CoreRef};
use crate::api::body::Message;
use crate::api::error::ApiError;
use crate::cluster::frame::Frame;
use crate::history::owner::{owner_core, owner_node};
use crate::mailbox::{reply_channel, CoreMsg};
use crate::op::{Page, Unstamped};
use crate::ws::MessageId;

/// Where a stream lives, as seen from one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A core of this node.
    Here(u8),
    /// Another node.
    Node(u16),
}

impl Core {
    /// Whether a `history.groups` rule covers `group`.
    pub fn keeps_history(&self, group: &str) -> bool {
        self.node.config.history.rule(group).is_some()
    }

    /// The owner of (system, group).
    /// A draining node leaves itself out: its streams are on their way to
    /// their next owners.
    pub fn stream_owner(&self, system: &str, group: &str) -> Owner {
        let this = self.node.node_id;
        let mut nodes = self.peer_nodes();
        if !self.node.is_draining() || nodes.is_empty() {
            nodes.push(this);
        }
        match owner_node(system, group, nodes) {
            Some(n) if n != this => Owner::Node(n),
            _ => Owner::Here(owner_core(system, group, self.node.cores())),
        }
    }
}

/// A send to a group, as the API route and a client message make it:
/// through the stream's owner when the group keeps history, else encoded
/// here and sent to every core and node. Partial when a node missed it.
pub async fn to_group(
    core: &CoreRef,
    system: &Arc<str>,
    group: &str,
    message: &Message,
    id: MessageId,
) -> Result<bool, ApiError> {
    if core.borrow().keeps_history(group) {
        return to_stream(core, system, group, message.unstamped(id)).await;
    }
    let push = core.borrow().encode(message.frame(id));
    send::to_group(core, system, group, push).await
}

/// A push to a history group: numbered, kept and fanned out by its owner.
/// Partial when a node did not take it; Busy (503) when the owner could not
/// (a core over its mailbox bound, or no answer in time): then it was not
/// sent at all, or not known to be.
pub async fn to_stream(
    core: &CoreRef,
    system: &Arc<str>,
    group: &str,
    message: Unstamped,
) -> Result<bool, ApiError> {
    let owner = core.borrow().stream_owner(system, group);
    match owner {
        Owner::Here(c) => {
            let (reply, rx) = reply_channel();
            let msg = CoreMsg::Stamp {
                system: system.clone(),
                group: Arc::from(group),
                message,
                reply,
                hops: 0,
            };
            Core::to_core(core, c, msg).map_err(|_| ApiError::Busy)?;
            rx.await.map_err(|_| ApiError::Busy)?
        }
        Owner::Node(node) => {
            core.borrow()
                .metrics()
                .history_forwarded
                .fetch_add(1, Relaxed);
            let stamp = |req| Frame::Stamp {
                req,
                system: system.to_string(),
                group: group.to_owned(),
                message,
                hops: 0,
            };
            match Core::call(core, node, stamp).await {
                Some(Frame::Stamped { partial, .. }) => Ok(partial),
                _ => Err(ApiError::Busy),
            }
        }
    }
}

/// `/api/get_group_history` of a stream, from its owner.
pub async fn page(
    core: &CoreRef,
    system: &Arc<str>,
    group: &str,
    since: Option<(u64, String)>,
    limit: u32,
) -> Result<Page, ApiError> {
    let owner = core.borrow().stream_owner(system, group);
    match owner {
        Owner::Here(c) => {
            let (reply, rx) = reply_channel();
            let msg = CoreMsg::Page {
                system: system.clone(),
                group: Arc::from(group),
                since,
                limit,
                reply,
                hops: 0,
            };
            Core::to_core(core, c, msg).map_err(|_| ApiError::Busy)?;
            rx.await.map_err(|_| ApiError::Busy)
        }
        Owner::Node(node) => {
            let ask = |req| Frame::Page {
                req,
                system: system.to_string(),
                group: group.to_owned(),
                since,
                limit,
                hops: 0,
            };
            match Core::call(core, node, ask).await {
                Some(Frame::Paged { page, .. }) => Ok(page),
                _ => Err(ApiError::Busy),
            }
        }
    }
}
