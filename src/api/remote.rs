//! Reaching connections and nodes beyond this core: the owning core of this
//! node by mailbox, another node by its link, each with the deadline of
//! `cluster.request_timeout` so that no answer ever hangs.

use std::sync::Arc;
use std::time::Instant;

use super::error::ApiError;
use crate::cluster::frame::{ConnStatus, Frame, InfoResult, Target as WireTarget};
use crate::cluster::Answer;
use crate::core::mailbox::{reply_channel, ClientInfo, ConnError, ConnOp, CoreMsg, Reply};
use crate::core::{Core, CoreRef};

/// Where a clientId of this system lives, or that it cannot be live.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Local {
        core: u8,
        slot: u32,
        gen: u32,
    },
    Remote {
        node: u16,
        core: u8,
        slot: u32,
        gen: u32,
    },
    /// Well-formed and of this system, but of a node or a run of a node
    /// that is not (or no longer) in the cluster: offline.
    Gone,
}

/// What became of a per-connection operation.
pub enum Outcome {
    Done(Option<ClientInfo>),
    Offline,
    Invalid,
    /// The owning node is in the cluster but did not answer in time.
    Unreachable,
}

pub async fn resolve(core: &CoreRef, system: &str, text: &str) -> Result<Target, ApiError> {
    let (id, node) = {
        let c = core.borrow();
        let id = c
            .node
            .codec
            .decode(text, system)
            .map_err(|_| ApiError::InvalidClientId)?;
        (id, c.node.clone())
    };
    if id.node == node.node_id {
        let here = id.epoch == node.epoch && (id.core as usize) < node.workers();
        return Ok(if here {
            Target::Local {
                core: id.core,
                slot: id.slot,
                gen: id.generation,
            }
        } else {
            Target::Gone
        });
    }
    let known = |core: &CoreRef| {
        let c = core.borrow();
        c.cluster
            .as_ref()
            .and_then(|cl| cl.peers.get(&id.node).cloned())
    };
    let mut peer = known(core);
    let checked = |core: &CoreRef| {
        let mut c = core.borrow_mut();
        c.cluster
            .as_mut()
            .is_none_or(|cl| cl.recently_unknown(id.node))
    };
    if peer.is_none() && !checked(core) {
        // An id from a node we have not seen: re-read membership first.
        let Some(m) = node.membership.clone() else {
            return Ok(Target::Gone);
        };
        m.refresh().await;
        core.borrow_mut().set_peers(node.peers());
        peer = known(core);
    }
    Ok(match peer {
        Some(p) if p.started as u32 == id.epoch && id.core < p.cores => Target::Remote {
            node: id.node,
            core: id.core,
            slot: id.slot,
            gen: id.generation,
        },
        _ => Target::Gone,
    })
}

async fn recv<T>(rx: flume::Receiver<T>) -> Result<T, ApiError> {
    rx.recv_async().await.map_err(|_| ApiError::Busy)
}

/// Sends a request to a peer and waits (bounded) for its answer. A peer
/// whose first link is still being set up (it has just joined) is waited
/// for within the same deadline; one whose link broke is not.
pub async fn call(core: &CoreRef, node: u16, make: impl FnOnce(u64) -> Frame) -> Option<Answer> {
    let sent = Instant::now();
    let limit = core
        .borrow()
        .cluster
        .as_ref()
        .map(|cl| cl.request_timeout)?;
    while !has_link(core, node) {
        if sent.elapsed() >= limit || !is_peer(core, node) {
            return None;
        }
        monoio::time::sleep(LINK_WAIT_STEP).await;
    }
    let rx = {
        let mut c = core.borrow_mut();
        let rx = c.request(node, make);
        c.flush();
        rx
    }?;
    await_answer(core, rx, sent).await
}

/// How often a request waiting for a link looks again.
const LINK_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(5);

fn has_link(core: &CoreRef, node: u16) -> bool {
    core.borrow()
        .cluster
        .as_ref()
        .is_some_and(|cl| cl.outbound.contains_key(&node))
}

/// A peer in etcd whose link has not failed yet: worth waiting for.
fn is_peer(core: &CoreRef, node: u16) -> bool {
    core.borrow()
        .cluster
        .as_ref()
        .is_some_and(|cl| cl.peers.contains_key(&node) && !cl.broken.contains(&node))
}

async fn await_answer(
    core: &CoreRef,
    rx: flume::Receiver<Answer>,
    sent: Instant,
) -> Option<Answer> {
    let limit = core
        .borrow()
        .cluster
        .as_ref()
        .map(|cl| cl.request_timeout)?;
    let left = limit.saturating_sub(sent.elapsed());
    match monoio::time::timeout(left, rx.recv_async()).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(_)) => None,
        Err(_) => {
            core.borrow().metrics().link_timeout();
            None
        }
    }
}

/// Runs `op` on the connection wherever it lives.
pub async fn conn_op(
    core: &CoreRef,
    system: &Arc<str>,
    target: Target,
    op: ConnOp,
) -> Result<Outcome, ApiError> {
    match target {
        Target::Gone => Ok(Outcome::Offline),
        Target::Local {
            core: owner,
            slot,
            gen,
        } => {
            let (tx, rx) = reply_channel();
            let msg = CoreMsg::Conn {
                slot,
                generation: gen,
                system: system.clone(),
                op,
                reply: Some(tx),
            };
            Core::route(core, owner, msg).map_err(|_| ApiError::Busy)?;
            Ok(match recv(rx).await? {
                Ok(info) => Outcome::Done(info),
                Err(ConnError::Offline) => Outcome::Offline,
                Err(ConnError::Invalid) => Outcome::Invalid,
            })
        }
        Target::Remote {
            node,
            core: c,
            slot,
            gen,
        } => {
            let sys = system.to_string();
            let answer = call(core, node, move |req| op_frame(req, c, slot, gen, sys, op)).await;
            Ok(match answer {
                Some(Answer::Done(ConnStatus::Ok)) => Outcome::Done(None),
                Some(Answer::Info(InfoResult::Info(info))) => Outcome::Done(Some(info.into())),
                Some(Answer::Done(ConnStatus::Offline) | Answer::Info(InfoResult::Offline)) => {
                    Outcome::Offline
                }
                Some(Answer::Done(ConnStatus::Invalid) | Answer::Info(InfoResult::Invalid)) => {
                    Outcome::Invalid
                }
                _ => Outcome::Unreachable,
            })
        }
    }
}

fn op_frame(req: u64, core: u8, slot: u32, gen: u32, system: String, op: ConnOp) -> Frame {
    match op {
        ConnOp::Deliver(frame) => Frame::Deliver {
            req,
            core,
            slot,
            gen,
            system,
            frame: frame.to_vec(),
        },
        ConnOp::Bind {
            group,
            user_id,
            extend,
        } => Frame::Bind {
            req,
            core,
            slot,
            gen,
            system,
            group: group.to_string(),
            user_id,
            extend,
        },
        ConnOp::Unbind(group) => Frame::Unbind {
            req,
            core,
            slot,
            gen,
            system,
            group: group.to_string(),
        },
        ConnOp::Close => Frame::Close {
            req,
            core,
            slot,
            gen,
            system,
        },
        ConnOp::Info => Frame::Info {
            req,
            core,
            slot,
            gen,
            system,
        },
    }
}

/// Answers of every core of this node and of every peer node. `partial`
/// when a peer did not answer within the deadline.
pub struct Gathered<T> {
    pub local: Vec<T>,
    pub remote: Vec<Answer>,
    pub partial: bool,
}

pub async fn gather<T>(
    core: &CoreRef,
    local: impl Fn(Reply<T>) -> CoreMsg,
    remote: impl Fn(u64) -> Frame,
) -> Result<Gathered<T>, ApiError> {
    let sent = Instant::now();
    let (mut waiting, mut partial) = (Vec::new(), false);
    {
        let mut c = core.borrow_mut();
        let peers: Vec<u16> = c
            .cluster
            .as_ref()
            .map(|cl| cl.peers.keys().copied().collect())
            .unwrap_or_default();
        for node in peers {
            match c.request(node, &remote) {
                Some(rx) => waiting.push(rx),
                None => partial = true,
            }
        }
        c.flush();
    }
    let local = Core::gather_local(core, local)
        .await
        .map_err(|_| ApiError::Busy)?;
    let mut answers = Vec::with_capacity(waiting.len());
    for rx in waiting {
        match await_answer(core, rx, sent).await {
            Some(a) => answers.push(a),
            None => partial = true,
        }
    }
    Ok(Gathered {
        local,
        remote: answers,
        partial,
    })
}

/// Sends one frame to every core of this node and once to every peer
/// node. Returns true when a peer could not be reached.
pub fn broadcast(
    core: &CoreRef,
    local: impl Fn() -> CoreMsg,
    remote: Frame,
) -> Result<bool, ApiError> {
    Core::broadcast(core, local).map_err(|_| ApiError::Busy)?;
    let missed = core.borrow_mut().peer_broadcast(&remote);
    Ok(missed > 0)
}

/// Delivers one frame to many connections: one message per owning core,
/// one request per owning (node, core). Returns (online, partial).
pub async fn deliver_many(
    core: &CoreRef,
    system: &Arc<str>,
    targets: Vec<Target>,
    frame: bytes::Bytes,
) -> Result<(usize, bool), ApiError> {
    let mut local: std::collections::BTreeMap<u8, Vec<(u32, u32)>> = Default::default();
    let mut remote: std::collections::BTreeMap<(u16, u8), Vec<WireTarget>> = Default::default();
    let mut seen = hashbrown::HashSet::with_capacity(targets.len());
    for t in targets.into_iter().filter(|t| seen.insert(*t)) {
        match t {
            Target::Local { core, slot, gen } => local.entry(core).or_default().push((slot, gen)),
            Target::Remote {
                node,
                core,
                slot,
                gen,
            } => remote
                .entry((node, core))
                .or_default()
                .push(WireTarget { slot, gen }),
            Target::Gone => {}
        }
    }
    let mut pending = Vec::new();
    for (c, targets) in local {
        let (reply, rx) = reply_channel();
        let msg = CoreMsg::Many {
            system: system.clone(),
            targets,
            frame: frame.clone(),
            reply,
        };
        Core::route(core, c, msg).map_err(|_| ApiError::Busy)?;
        pending.push(rx);
    }
    let (mut online, mut partial) = (0, false);
    let mut calls = Vec::new();
    let sent = Instant::now();
    {
        let mut c = core.borrow_mut();
        for ((node, owner), targets) in remote {
            let sys = system.to_string();
            let payload = frame.to_vec();
            match c.request(node, move |req| Frame::DeliverMany {
                req,
                core: owner,
                system: sys,
                targets,
                frame: payload,
            }) {
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
        match await_answer(core, rx, sent).await {
            Some(Answer::Count(n)) => online += n as usize,
            _ => partial = true,
        }
    }
    Ok((online, partial))
}
