//! One function per route. Each turns a validated body into messages to
//! the cores that own the connections and shapes their answers (API.md §4).
//! A push is encoded once here and the same `Bytes` travels to every core.

use std::sync::Arc;

use serde_json::{json, Value};

use super::body::{
    BindToGroup, Body, ClientRef, GetGroupList, GetOnlineList, Register, SendToClient,
    SendToClients, SendToGroup, SendToSystem, SendToUser, UnbindFromGroup,
};
use super::error::ApiError;
use super::route::Route;
use super::{limits, prepare, secret_matches};
use crate::config::AuthMode;
use crate::core::mailbox::{
    reply_channel, ClientInfo, ConnError, ConnOp, ConnResult, CoreMsg, Reply,
};
use crate::core::{Core, CoreRef};
use crate::http::request::Request;
use crate::push::{self, MessageId};
use crate::registry::{new_secret, RegistryError, SystemEntry};

type Answer = Result<String, ApiError>;

pub async fn dispatch(core: &CoreRef, route: Route, req: &Request) -> Answer {
    match route {
        Route::Register => register(core, req).await,
        Route::SendToClient => send_to_client(core, prepare(core, req)?).await,
        Route::SendToClients => send_to_clients(core, prepare(core, req)?).await,
        Route::SendToGroup => send_to_group(core, prepare(core, req)?),
        Route::SendToUser => send_to_user(core, prepare(core, req)?).await,
        Route::SendToSystem => send_to_system(core, prepare(core, req)?),
        Route::BindToGroup => bind(core, prepare(core, req)?).await,
        Route::UnbindFromGroup => unbind(core, prepare(core, req)?).await,
        Route::GetOnlineList => online_list(core, prepare(core, req)?).await,
        Route::GetGroupList => group_list(core, prepare::<GetGroupList>(core, req)?.0).await,
        Route::IsOnline => is_online(core, prepare(core, req)?).await,
        Route::GetClientInfo => client_info(core, prepare(core, req)?).await,
        Route::CloseClient => close(core, prepare(core, req)?).await,
    }
}

/// Where a clientId of this system lives, or that it cannot be live.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    At {
        core: u8,
        slot: u32,
        gen: u32,
    },
    /// Well-formed and of this system, but from an earlier run of this node
    /// or a node that is not this one: offline.
    Gone,
}

fn resolve(core: &CoreRef, system: &str, text: &str) -> Result<Target, ApiError> {
    let c = core.borrow();
    let id = c
        .node
        .codec
        .decode(text, system)
        .map_err(|_| ApiError::InvalidClientId)?;
    let here = id.node == c.node.node_id && id.epoch == c.node.epoch;
    if !here || id.core as usize >= c.node.workers() {
        return Ok(Target::Gone);
    }
    Ok(Target::At {
        core: id.core,
        slot: id.slot,
        gen: id.generation,
    })
}

async fn recv<T>(rx: flume::Receiver<T>) -> Result<T, ApiError> {
    rx.recv_async().await.map_err(|_| ApiError::Busy)
}

/// Runs `op` on the connection's owning core.
async fn conn_op(
    core: &CoreRef,
    system: &Arc<str>,
    target: Target,
    op: ConnOp,
) -> Result<ConnResult, ApiError> {
    let Target::At {
        core: owner,
        slot,
        gen,
    } = target
    else {
        return Ok(Err(ConnError::Offline));
    };
    let (tx, rx) = reply_channel();
    let msg = CoreMsg::Conn {
        slot,
        generation: gen,
        system: system.clone(),
        op,
        reply: Some(tx),
    };
    Core::route(core, owner, msg).map_err(|_| ApiError::Busy)?;
    recv(rx).await
}

/// A per-connection operation that needs the connection online.
async fn live_op(
    core: &CoreRef,
    system: &Arc<str>,
    client_id: &str,
    op: ConnOp,
) -> Result<Option<ClientInfo>, ApiError> {
    let target = resolve(core, system, client_id)?;
    match conn_op(core, system, target, op).await? {
        Ok(info) => Ok(info),
        Err(ConnError::Offline) => Err(ApiError::ClientOffline),
        Err(ConnError::Invalid) => Err(ApiError::InvalidClientId),
    }
}

/// Asks every core and collects their answers.
async fn gather<T>(core: &CoreRef, make: impl Fn(Reply<T>) -> CoreMsg) -> Result<Vec<T>, ApiError> {
    let workers = core.borrow().node.workers();
    let mut pending = Vec::with_capacity(workers);
    for c in 0..workers {
        let (tx, rx) = reply_channel();
        Core::route(core, c as u8, make(tx)).map_err(|_| ApiError::Busy)?;
        pending.push(rx);
    }
    let mut answers = Vec::with_capacity(workers);
    for rx in pending {
        answers.push(recv(rx).await?);
    }
    Ok(answers)
}

fn next_id(core: &CoreRef) -> MessageId {
    core.borrow_mut().ids.next()
}

async fn send_to_client(core: &CoreRef, (system, b): (Arc<str>, SendToClient)) -> Answer {
    let target = resolve(core, &system, &b.client_id)?;
    let id = next_id(core);
    let frame = push::push_frame(id, &b.message);
    let online = match conn_op(core, &system, target, ConnOp::Deliver(frame)).await? {
        Ok(_) => true,
        Err(ConnError::Offline) => false,
        Err(ConnError::Invalid) => return Err(ApiError::InvalidClientId),
    };
    Ok(json!({ "messageId": id.to_string(), "online": online }).to_string())
}

async fn send_to_clients(core: &CoreRef, (system, b): (Arc<str>, SendToClients)) -> Answer {
    let mut targets = Vec::with_capacity(b.client_ids.len());
    for text in &b.client_ids {
        targets.push(resolve(core, &system, text)?);
    }
    let mut by_core: Vec<Vec<(u32, u32)>> = vec![Vec::new(); core.borrow().node.workers()];
    let mut seen = hashbrown::HashSet::with_capacity(targets.len());
    for t in targets {
        if let Target::At { core: c, slot, gen } = t {
            if seen.insert(t) {
                by_core[c as usize].push((slot, gen));
            }
        }
    }
    let id = next_id(core);
    let frame = push::push_frame(id, &b.message);
    let mut pending = Vec::new();
    for (c, targets) in by_core
        .into_iter()
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
    {
        let (reply, rx) = reply_channel();
        let msg = CoreMsg::Many {
            system: system.clone(),
            targets,
            frame: frame.clone(),
            reply,
        };
        Core::route(core, c as u8, msg).map_err(|_| ApiError::Busy)?;
        pending.push(rx);
    }
    let mut online = 0;
    for rx in pending {
        online += recv(rx).await?;
    }
    Ok(json!({ "messageId": id.to_string(), "online": online }).to_string())
}

fn send_to_group(core: &CoreRef, (system, b): (Arc<str>, SendToGroup)) -> Answer {
    let id = next_id(core);
    let frame = push::push_frame(id, &b.message);
    let group: Arc<str> = Arc::from(b.group_name);
    Core::broadcast(core, || CoreMsg::Group {
        system: system.clone(),
        group: group.clone(),
        frame: frame.clone(),
    })
    .map_err(|_| ApiError::Busy)?;
    Ok(json!({ "messageId": id.to_string() }).to_string())
}

async fn send_to_user(core: &CoreRef, (system, b): (Arc<str>, SendToUser)) -> Answer {
    let id = next_id(core);
    let frame = push::push_frame(id, &b.message);
    let user: Arc<str> = Arc::from(b.user_id);
    let reached = gather(core, |reply| CoreMsg::User {
        system: system.clone(),
        user: user.clone(),
        frame: frame.clone(),
        reply,
    })
    .await?;
    let online: usize = reached.into_iter().sum();
    Ok(json!({ "messageId": id.to_string(), "online": online }).to_string())
}

fn send_to_system(core: &CoreRef, (system, b): (Arc<str>, SendToSystem)) -> Answer {
    let id = next_id(core);
    let frame = push::push_frame(id, &b.message);
    Core::broadcast(core, || CoreMsg::System {
        system: system.clone(),
        frame: frame.clone(),
    })
    .map_err(|_| ApiError::Busy)?;
    Ok(json!({ "messageId": id.to_string() }).to_string())
}

async fn bind(core: &CoreRef, (system, b): (Arc<str>, BindToGroup)) -> Answer {
    let op = ConnOp::Bind {
        group: Arc::from(b.group_name),
        user_id: b.user_id,
        extend: b.extend,
    };
    live_op(core, &system, &b.client_id, op).await?;
    Ok("[]".into())
}

async fn unbind(core: &CoreRef, (system, b): (Arc<str>, UnbindFromGroup)) -> Answer {
    let op = ConnOp::Unbind(Arc::from(b.group_name));
    live_op(core, &system, &b.client_id, op).await?;
    Ok("[]".into())
}

async fn close(core: &CoreRef, (system, b): (Arc<str>, ClientRef)) -> Answer {
    live_op(core, &system, &b.client_id, ConnOp::Close).await?;
    Ok("{}".into())
}

async fn client_info(core: &CoreRef, (system, b): (Arc<str>, ClientRef)) -> Answer {
    let info = live_op(core, &system, &b.client_id, ConnOp::Info).await?;
    let info = info.ok_or(ApiError::ClientOffline)?;
    let node = core.borrow().node.node_id;
    Ok(json!({
        "online": true,
        "userId": info.user_id,
        "extend": info.extend,
        "groups": info.groups,
        "connectTime": info.connect_time,
        "node": node,
    })
    .to_string())
}

async fn is_online(core: &CoreRef, (system, b): (Arc<str>, ClientRef)) -> Answer {
    let target = resolve(core, &system, &b.client_id)?;
    let online = match conn_op(core, &system, target, ConnOp::Info).await? {
        Ok(_) => true,
        Err(ConnError::Offline) => false,
        Err(ConnError::Invalid) => return Err(ApiError::InvalidClientId),
    };
    Ok(json!({ "online": online }).to_string())
}

async fn online_list(core: &CoreRef, (system, b): (Arc<str>, GetOnlineList)) -> Answer {
    let group: Arc<str> = Arc::from(b.group_name);
    let with_info = b.with_info;
    let parts = gather(core, |reply| CoreMsg::OnlineList {
        system: system.clone(),
        group: group.clone(),
        with_info,
        reply,
    })
    .await?;
    let clients: Vec<ClientInfo> = parts.into_iter().flatten().collect();
    let list: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    let mut data = json!({ "count": list.len(), "list": list });
    if with_info {
        let detail: Vec<Value> = clients
            .iter()
            .map(|c| {
                json!({
                    "clientId": c.client_id,
                    "userId": c.user_id,
                    "extend": c.extend,
                    "connectTime": c.connect_time,
                })
            })
            .collect();
        data["clients"] = Value::Array(detail);
    }
    Ok(data.to_string())
}

async fn group_list(core: &CoreRef, system: Arc<str>) -> Answer {
    let parts = gather(core, |reply| CoreMsg::GroupList {
        system: system.clone(),
        reply,
    })
    .await?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (group, n) in parts.into_iter().flatten() {
        *counts.entry(group).or_default() += n;
    }
    let list: Vec<Value> = counts
        .iter()
        .map(|(g, n)| json!({ "groupName": g, "count": n }))
        .collect();
    Ok(json!({ "count": list.len(), "list": list }).to_string())
}

/// `/api/register`: needs no `SystemId`; in token mode it needs the
/// `AdminToken` and answers the new system's secret.
async fn register(core: &CoreRef, req: &Request) -> Answer {
    let b = Register::decode(&req.body)?;
    let token_mode = core.borrow().node.config.api.auth == AuthMode::Token;
    if token_mode {
        let admin = core.borrow().node.config.api.admin_token.clone();
        if !secret_matches(req.admin_token.as_deref(), &admin) {
            return Err(ApiError::BadToken);
        }
    }
    b.check_required()?;
    let webhook_url = b.webhook_url.clone().filter(|u| !u.is_empty());
    if webhook_url.is_some() && !token_mode {
        return Err(ApiError::WebhookUrlForbidden);
    }
    b.check_limits(&limits(core))?;
    let secret = if token_mode {
        Some(new_secret().map_err(|_| ApiError::Busy)?)
    } else {
        None
    };
    let entry = SystemEntry {
        secret,
        webhook_url,
    };
    store(core, &b.system_id, entry.clone())?;
    let id: Arc<str> = Arc::from(b.system_id);
    gather(core, |reply| CoreMsg::SystemAdded {
        id: id.clone(),
        entry: entry.clone(),
        reply,
    })
    .await?;
    Ok(match entry.secret {
        Some(token) => json!({ "token": token }).to_string(),
        None => "[]".into(),
    })
}

fn store(core: &CoreRef, id: &str, entry: SystemEntry) -> Result<(), ApiError> {
    let node = core.borrow().node.clone();
    let mut registry = node.registry.lock().map_err(|_| ApiError::Busy)?;
    registry.register(id, entry).map_err(|e| match e {
        RegistryError::Taken => ApiError::SystemIdTaken,
        e => {
            tracing::error!(error = %e, "registry write failed");
            ApiError::Busy
        }
    })
}
