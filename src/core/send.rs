//! Sends and operations that reach connections wherever they live: this
//! core, another core of this node (one mailbox message per core), another
//! node (one frame per peer), each with the deadline of
//! `cluster.request_timeout` so that no answer ever hangs.
//!
//! A push is encoded once by the caller; the same `Bytes` goes to every
//! core and, inside one frame, to every peer node. The HTTP routes and
//! client messages both send through here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::ws::Push;

use super::locate::Location;
use super::{Core, CoreRef};
use crate::api::error::ApiError;
use crate::cluster::frame::Frame;
use crate::mailbox::{reply_channel, CoreMsg, Reply, ReplyRx};
use crate::op::{ConnAddr, ConnOp, ConnOutcome};

/// Runs `op` on the connection wherever it lives. `None`: its node is in
/// the cluster but did not answer in time.
pub async fn conn_op(
    core: &CoreRef,
    system: &Arc<str>,
    location: Location,
    op: ConnOp,
) -> Result<Option<ConnOutcome>, ApiError> {
    match location {
        Location::Gone => Ok(Some(ConnOutcome::Offline)),
        Location::Local { core: owner, addr } => {
            let (tx, rx) = reply_channel();
            let msg = CoreMsg::Conn {
                addr,
                system: system.clone(),
                op,
                reply: Some(tx),
            };
            Core::to_core(core, owner, msg).map_err(|_| ApiError::Busy)?;
            Ok(Some(recv(rx).await?))
        }
        Location::Remote {
            node,
            core: owner,
            addr,
        } => {
            let system = system.to_string();
            let frame = move |req| Frame::Conn {
                req,
                core: owner,
                addr,
                system,
                op,
            };
            Ok(match Core::call(core, node, frame).await {
                Some(Frame::ConnDone { outcome, .. }) => Some(outcome),
                _ => None,
            })
        }
    }
}

async fn recv<T>(rx: ReplyRx<T>) -> Result<T, ApiError> {
    rx.await.map_err(|_| ApiError::Busy)
}

/// Answers of every core of this node and of every peer node. `partial`
/// when a peer did not answer within the deadline.
pub struct Gathered<T> {
    pub local: Vec<T>,
    pub remote: Vec<Frame>,
    pub partial: bool,
}

/// Asks every core of this node (`local`) and every peer node (`remote`).
pub async fn gather<T>(
    core: &CoreRef,
    local: impl Fn(Reply<T>) -> CoreMsg,
    remote: impl Fn(u64) -> Frame,
) -> Result<Gathered<T>, ApiError> {
    let sent = Instant::now();
    let cores = core.borrow().node.cores() as u8;
    Core::admit(core, 0..cores).map_err(|_| ApiError::Busy)?;
    let (waiting, mut partial) = ask_peers(core, &remote);
    let local = Core::ask_admitted(core, local)
        .await
        .map_err(|_| ApiError::Busy)?;
    let mut answers = Vec::with_capacity(waiting.len());
    for rx in waiting {
        match Core::await_answer(core, rx, sent).await {
            Some(Frame::Refused { .. }) | None => partial = true,
            Some(a) => answers.push(a),
        }
    }
    Ok(Gathered {
        local,
        remote: answers,
        partial,
    })
}

impl Core {
    /// Sends the request `remote` builds to every peer node: the answers to
    /// wait for, and whether a peer could not be sent it. Standalone it
    /// sends and flushes nothing.
    pub(super) fn ask_peers(
        &mut self,
        remote: &impl Fn(u64) -> Frame,
    ) -> (Vec<ReplyRx<Frame>>, bool) {
        let nodes = self.peer_nodes();
        if nodes.is_empty() {
            return (Vec::new(), false);
        }
        let (mut waiting, mut partial) = (Vec::new(), false);
        for node in nodes {
            match self.request(node, remote) {
                Some(rx) => waiting.push(rx),
                None => partial = true,
            }
        }
        self.flush_later();
        (waiting, partial)
    }
}

fn ask_peers(core: &CoreRef, remote: &impl Fn(u64) -> Frame) -> (Vec<ReplyRx<Frame>>, bool) {
    core.borrow_mut().ask_peers(remote)
}

/// Whether every peer answered [`Frame::Taken`] to the requests sent at
/// `sent` (a refusal, or no answer in time, is not taken).
pub(super) async fn all_taken(core: &CoreRef, waiting: Vec<ReplyRx<Frame>>, sent: Instant) -> bool {
    let mut taken = true;
    for rx in waiting {
        let answer = Core::await_answer(core, rx, sent).await;
        taken &= matches!(answer, Some(Frame::Taken { .. }));
    }
    taken
}

/// Sends one message to every core of this node and one request to every
/// peer node. Returns true when a peer did not take it: not reachable,
/// refused by a busy core (`Frame::Refused`), or no answer in time.
pub async fn broadcast(
    core: &CoreRef,
    local: impl Fn() -> CoreMsg,
    remote: impl Fn(u64) -> Frame,
) -> Result<bool, ApiError> {
    let sent = Instant::now();
    Core::to_every_core(core, local).map_err(|_| ApiError::Busy)?;
    let (waiting, partial) = ask_peers(core, &remote);
    Ok(partial | !all_taken(core, waiting, sent).await)
}

/// Delivers one frame to many connections: one message per owning core,
/// one request per owning (node, core); each connection once. Returns
/// (online, partial).
pub async fn deliver_many(
    core: &CoreRef,
    system: &Arc<str>,
    targets: Vec<Location>,
    frame: Push,
) -> Result<(usize, bool), ApiError> {
    let mut local: BTreeMap<u8, Vec<ConnAddr>> = Default::default();
    let mut remote: BTreeMap<(u16, u8), Vec<ConnAddr>> = Default::default();
    let mut seen = hashbrown::HashSet::with_capacity(targets.len());
    for t in targets.into_iter().filter(|t| seen.insert(*t)) {
        match t {
            Location::Local { core, addr } => local.entry(core).or_default().push(addr),
            Location::Remote { node, core, addr } => {
                remote.entry((node, core)).or_default().push(addr)
            }
            Location::Gone => {}
        }
    }
    Core::admit(core, local.keys().copied()).map_err(|_| ApiError::Busy)?;
    let mut pending = Vec::new();
    for (c, targets) in local {
        let (reply, rx) = reply_channel();
        let msg = CoreMsg::Many {
            system: system.clone(),
            targets,
            frame: frame.clone(),
            reply,
        };
        Core::to_core_admitted(core, c, msg);
        pending.push(rx);
    }
    let (mut online, mut partial) = (0, false);
    let mut calls = Vec::new();
    let sent = Instant::now();
    {
        let mut c = core.borrow_mut();
        for ((node, owner), targets) in remote {
            let system = system.to_string();
            let frame = frame.clone();
            let request = move |req| Frame::DeliverMany {
                req,
                core: owner,
                system,
                targets,
                frame,
            };
            match c.request(node, request) {
                Some(rx) => calls.push(rx),
                None => partial = true,
            }
        }
        c.flush();
    }
    for rx in pending {
        online += recv(rx).await?;
    }
    for rx in calls {
        match Core::await_answer(core, rx, sent).await {
            Some(Frame::Count { n, .. }) => online += n as usize,
            _ => partial = true,
        }
    }
    Ok((online, partial))
}

/// A push to one clientId, wherever it lives: (online, partial).
pub async fn to_client(
    core: &CoreRef,
    system: &Arc<str>,
    client_id: &str,
    frame: Push,
) -> Result<(bool, bool), ApiError> {
    reach(core, system, client_id, ConnOp::Deliver(frame)).await
}

/// Runs `op` on the connection of `client_id` and tells whether it found
/// it: (online, partial). An id of another system is an error.
pub async fn reach(
    core: &CoreRef,
    system: &Arc<str>,
    client_id: &str,
    op: ConnOp,
) -> Result<(bool, bool), ApiError> {
    let location = super::locate::locate(core, system, client_id).await?;
    match conn_op(core, system, location, op).await? {
        Some(ConnOutcome::Done | ConnOutcome::Info(_) | ConnOutcome::Bound(_)) => Ok((true, false)),
        Some(ConnOutcome::Offline) => Ok((false, false)),
        Some(ConnOutcome::Invalid) => Err(ApiError::InvalidClientId),
        Some(ConnOutcome::TooManyGroups) => Err(ApiError::TooManyGroups),
        None => Ok((false, true)),
    }
}

/// A push to a group on every core and node: partial.
pub async fn to_group(
    core: &CoreRef,
    system: &Arc<str>,
    group: &str,
    frame: Push,
) -> Result<bool, ApiError> {
    let wire = |req| Frame::Group {
        req,
        system: system.to_string(),
        group: group.to_owned(),
        frame: frame.clone(),
        stream: false,
    };
    let shared: Arc<str> = Arc::from(group);
    let local = || CoreMsg::Group {
        system: system.clone(),
        group: shared.clone(),
        frame: frame.clone(),
        stream: false,
    };
    broadcast(core, local, wire).await
}

/// A push to every connection of a system, cluster-wide: partial.
pub async fn to_system(core: &CoreRef, system: &Arc<str>, frame: Push) -> Result<bool, ApiError> {
    let wire = |req| Frame::System {
        req,
        system: system.to_string(),
        frame: frame.clone(),
    };
    let local = || CoreMsg::System {
        system: system.clone(),
        frame: frame.clone(),
    };
    broadcast(core, local, wire).await
}

/// A push to every connection of a userId on every core and node:
/// (connections reached, partial).
pub async fn to_user(
    core: &CoreRef,
    system: &Arc<str>,
    user: &str,
    frame: Push,
) -> Result<(u64, bool), ApiError> {
    let shared: Arc<str> = Arc::from(user);
    let local = |reply| CoreMsg::User {
        system: system.clone(),
        user: shared.clone(),
        frame: frame.clone(),
        reply,
    };
    let remote = |req| Frame::User {
        req,
        system: system.to_string(),
        user: user.to_owned(),
        frame: frame.clone(),
    };
    let g = gather(core, local, remote).await?;
    let far: u64 = g
        .remote
        .iter()
        .map(|a| {
            if let Frame::Count { n, .. } = a {
                *n
            } else {
                0
            }
        })
        .sum();
    Ok((g.local.iter().sum::<usize>() as u64 + far, g.partial))
}
