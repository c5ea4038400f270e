//! One function per route. Each turns a validated body into sends and
//! operations through `core::send` (which reach this core, the other cores
//! and the other nodes) and shapes the answer (docs/api.md §4). A push is
//! encoded once here; the same `Bytes` travels to every core, and inside
//! one frame to every peer node.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::api::{limits, prepare};
use crate::api::auth::secret_matches;
use crate::api::body::{
    BindToGroup, Body, ClientRef, GetGroupHistory, GetGroupList, GetOnlineList, Message, Register,
    SendToClient, SendToClients, SendToGroup, SendToSystem, SendToUser, UnbindFromGroup,
};
use crate::api::error::ApiError;
use crate::api::route::Route;
use crate::cluster::frame::Frame;
use crate::cluster::membership::RegisterError;
use crate::config::AuthMode;
use crate::core::history::route;
use crate::core::locate::{locate, Location};
use crate::core::send;
use crate::core::{Core, CoreRef};
use crate::http::request::Request;
use crate::mailbox::CoreMsg;
use crate::op::{ClientInfo, ConnOp, ConnOutcome, PageEntry};
use crate::registry::{new_secret, RegistryError, SystemEntry};
use crate::ws::{MessageId, Push};

type Answered = Result<String, ApiError>;

pub async fn dispatch(core: &CoreRef, route: Route, req: &Request) -> Answered {
    match route {
        Route::Register => register(core, req).await,
        Route::SendToClient => send_to_client(core, prepare(core, req)?).await,
        Route::SendToClients => send_to_clients(core, prepare(core, req)?).await,
        Route::SendToGroup => send_to_group(core, prepare(core, req)?).await,
        Route::SendToUser => send_to_user(core, prepare(core, req)?).await,
        Route::SendToSystem => send_to_system(core, prepare(core, req)?).await,
        Route::BindToGroup => bind(core, prepare(core, req)?).await,
        Route::UnbindFromGroup => unbind(core, prepare(core, req)?).await,
        Route::GetOnlineList => online_list(core, prepare(core, req)?).await,
        Route::GetGroupList => group_list(core, prepare::<GetGroupList>(core, req)?.0).await,
        Route::IsOnline => is_online(core, prepare(core, req)?).await,
        Route::GetClientInfo => client_info(core, prepare(core, req)?).await,
        Route::CloseClient => close(core, prepare(core, req)?).await,
        Route::GetGroupHistory => group_history(core, prepare(core, req)?).await,
    }
}

/// `data` as JSON text, with `"partial":true` added when a node was left out.
fn shaped(mut data: Value, partial: bool) -> String {
    if partial {
        if let Value::Object(map) = &mut data {
            map.insert("partial".into(), Value::Bool(true));
        }
    }
    data.to_string()
}

fn next_id(core: &CoreRef) -> MessageId {
    core.borrow_mut().ids.next()
}

/// The push every recipient of `message` gets, encoded once.
fn push_of(core: &CoreRef, message: &Message, id: MessageId) -> Push {
    core.borrow().encode(message.frame(id))
}

/// `{"messageId"}` with `"online"` and `"partial"` as a send answers.
fn sent(id: MessageId, online: Option<Value>, partial: bool) -> String {
    let mut data = json!({ "messageId": id.to_string() });
    if let (Some(online), Value::Object(map)) = (online, &mut data) {
        map.insert("online".into(), online);
    }
    shaped(data, partial)
}

/// A per-connection operation that needs the connection online.
async fn live_op(
    core: &CoreRef,
    system: &Arc<str>,
    client_id: &str,
    op: ConnOp,
) -> Result<ConnOutcome, ApiError> {
    let location = locate(core, system, client_id).await?;
    match send::conn_op(core, system, location, op).await? {
        Some(ConnOutcome::Offline) => Err(ApiError::ClientOffline),
        Some(ConnOutcome::Invalid) => Err(ApiError::InvalidClientId),
        Some(ConnOutcome::TooManyGroups) => Err(ApiError::TooManyGroups),
        Some(done) => Ok(done),
        None => Err(ApiError::Busy),
    }
}

async fn send_to_client(core: &CoreRef, (system, b): (Arc<str>, SendToClient)) -> Answered {
    let id = next_id(core);
    let frame = push_of(core, &b.message, id);
    let (online, partial) = send::to_client(core, &system, &b.client_id, frame).await?;
    Ok(sent(id, Some(json!(online)), partial))
}

async fn send_to_clients(core: &CoreRef, (system, b): (Arc<str>, SendToClients)) -> Answered {
    let mut targets = Vec::with_capacity(b.client_ids.len());
    for text in &b.client_ids {
        targets.push(locate(core, &system, text).await?);
    }
    let id = next_id(core);
    let frame = push_of(core, &b.message, id);
    let (online, partial) = send::deliver_many(core, &system, targets, frame).await?;
    Ok(sent(id, Some(json!(online)), partial))
}

async fn send_to_group(core: &CoreRef, (system, b): (Arc<str>, SendToGroup)) -> Answered {
    let id = next_id(core);
    let partial = route::to_group(core, &system, &b.group_name, &b.message, id).await?;
    Ok(sent(id, None, partial))
}

/// Whether a `history.groups` rule covers `group` (docs/api.md §9).
fn has_history(core: &CoreRef, group: &str) -> bool {
    core.borrow().keeps_history(group)
}

async fn send_to_system(core: &CoreRef, (system, b): (Arc<str>, SendToSystem)) -> Answered {
    let id = next_id(core);
    let partial = send::to_system(core, &system, push_of(core, &b.message, id)).await?;
    Ok(sent(id, None, partial))
}

async fn send_to_user(core: &CoreRef, (system, b): (Arc<str>, SendToUser)) -> Answered {
    let id = next_id(core);
    let frame = push_of(core, &b.message, id);
    let (online, partial) = send::to_user(core, &system, &b.user_id, frame).await?;
    Ok(sent(id, Some(json!(online)), partial))
}

async fn bind(core: &CoreRef, (system, b): (Arc<str>, BindToGroup)) -> Answered {
    let history = b.ask();
    if history.is_some() && !has_history(core, &b.group_name) {
        return Err(ApiError::NoHistory);
    }
    let op = ConnOp::Bind {
        group: b.group_name,
        user_id: b.user_id,
        extend: b.extend,
        history,
    };
    match live_op(core, &system, &b.client_id, op).await? {
        ConnOutcome::Bound(p) => Ok(json!({
            "recovered": p.recovered,
            "offset": p.offset,
            "epoch": p.epoch,
        })
        .to_string()),
        _ => Ok("[]".into()),
    }
}

async fn group_history(core: &CoreRef, (system, b): (Arc<str>, GetGroupHistory)) -> Answered {
    if !has_history(core, &b.group_name) {
        return Err(ApiError::NoHistory);
    }
    let since = b.since.map(|s| (s.offset, s.epoch));
    let limit = b.limit.unwrap_or(u32::MAX);
    let page = route::page(core, &system, &b.group_name, since, limit).await?;
    let messages: Vec<Value> = page.messages.iter().map(page_entry).collect();
    Ok(json!({ "epoch": page.epoch, "offset": page.offset, "messages": messages }).to_string())
}

/// One kept push as `/api/get_group_history` lists it: its fields read back
/// out of its frame, `time` in unix seconds.
fn page_entry(e: &PageEntry) -> Value {
    let payload = crate::ws::frame::parse_head(&e.frame)
        .and_then(|h| e.frame.get(h.header_len..))
        .and_then(|p| serde_json::from_slice::<Map<String, Value>>(p).ok())
        .unwrap_or_default();
    let field = |k: &str| payload.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "offset": e.offset,
        "messageId": field("messageId"),
        "sendUserId": field("sendUserId"),
        "msg": field("msg"),
        "data": field("data"),
        "time": e.at_ms / 1000,
    })
}

async fn unbind(core: &CoreRef, (system, b): (Arc<str>, UnbindFromGroup)) -> Answered {
    live_op(
        core,
        &system,
        &b.client_id,
        ConnOp::Unbind {
            group: b.group_name,
        },
    )
    .await?;
    Ok("[]".into())
}

async fn close(core: &CoreRef, (system, b): (Arc<str>, ClientRef)) -> Answered {
    live_op(core, &system, &b.client_id, ConnOp::Close).await?;
    Ok("{}".into())
}

async fn client_info(core: &CoreRef, (system, b): (Arc<str>, ClientRef)) -> Answered {
    let location = locate(core, &system, &b.client_id).await?;
    let owner = match location {
        Location::Remote { node, .. } => node,
        _ => core.borrow().node.node_id,
    };
    let info = match send::conn_op(core, &system, location, ConnOp::Info).await? {
        Some(ConnOutcome::Info(info)) => info,
        Some(
            ConnOutcome::Done
            | ConnOutcome::Offline
            | ConnOutcome::TooManyGroups
            | ConnOutcome::Bound(_),
        ) => return Err(ApiError::ClientOffline),
        Some(ConnOutcome::Invalid) => return Err(ApiError::InvalidClientId),
        None => return Err(ApiError::Busy),
    };
    let mut answer = json!({
        "online": true,
        "userId": info.user_id,
        "extend": info.extend,
        "groups": info.groups,
        "connectTime": info.connect_time,
        "node": owner,
    });
    if info.detached {
        answer["detached"] = true.into();
    }
    Ok(answer.to_string())
}

async fn is_online(core: &CoreRef, (system, b): (Arc<str>, ClientRef)) -> Answered {
    let (online, partial) = send::reach(core, &system, &b.client_id, ConnOp::Info).await?;
    Ok(shaped(json!({ "online": online }), partial))
}

async fn online_list(core: &CoreRef, (system, b): (Arc<str>, GetOnlineList)) -> Answered {
    let group: Arc<str> = Arc::from(b.group_name.as_str());
    let with_info = b.with_info;
    let local = |reply| CoreMsg::OnlineList {
        system: system.clone(),
        group: group.clone(),
        with_info,
        reply,
    };
    let remote = |req| Frame::OnlineList {
        req,
        system: system.to_string(),
        group: b.group_name.clone(),
        with_info,
    };
    let g = send::gather(core, local, remote).await?;
    let far = g.remote.into_iter().flat_map(|a| match a {
        Frame::Clients { clients, .. } => clients,
        _ => Vec::new(),
    });
    let clients: Vec<ClientInfo> = g.local.into_iter().flatten().chain(far).collect();
    let list: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    let mut data = Map::new();
    data.insert("count".into(), json!(list.len()));
    data.insert("list".into(), json!(list));
    if with_info {
        let detail: Vec<Value> = clients
            .iter()
            .map(|c| json!({ "clientId": c.client_id, "userId": c.user_id, "extend": c.extend, "connectTime": c.connect_time }))
            .collect();
        data.insert("clients".into(), Value::Array(detail));
    }
    Ok(shaped(Value::Object(data), g.partial))
}

async fn group_list(core: &CoreRef, system: Arc<str>) -> Answered {
    let local = |reply| CoreMsg::GroupList {
        system: system.clone(),
        reply,
    };
    let remote = |req| Frame::GroupList {
        req,
        system: system.to_string(),
    };
    let g = send::gather(core, local, remote).await?;
    let far = g.remote.into_iter().flat_map(|a| match a {
        Frame::Groups { groups, .. } => groups,
        _ => Vec::new(),
    });
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for gc in g.local.into_iter().flatten().chain(far) {
        *counts.entry(gc.group).or_default() += gc.count;
    }
    let list: Vec<Value> = counts
        .iter()
        .map(|(g, n)| json!({ "groupName": g, "count": n }))
        .collect();
    Ok(shaped(
        json!({ "count": list.len(), "list": list }),
        g.partial,
    ))
}

/// `/api/register`: needs no `SystemId`; in token mode it needs the
/// `AdminToken` and answers the new system's secret. Cluster mode stores
/// the system in etcd (create-if-absent); standalone, in the data dir.
async fn register(core: &CoreRef, req: &Request) -> Answered {
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
    {
        let c = core.borrow();
        let max = c.node.config.api.max_systems;
        if c.systems.len() >= max && !c.systems.contains_key(b.system_id.as_str()) {
            return Err(ApiError::TooManySystems);
        }
    }
    let secret = if token_mode {
        Some(new_secret().map_err(|_| ApiError::Busy)?)
    } else {
        None
    };
    let entry = SystemEntry {
        secret,
        webhook_url,
    };
    store(core, &b.system_id, entry.clone()).await?;
    let id: Arc<str> = Arc::from(b.system_id);
    Core::ask_every_core(core, |reply| CoreMsg::SystemAdded {
        id: id.clone(),
        entry: entry.clone(),
        reply: Some(reply),
    })
    .await
    .map_err(|_| ApiError::Busy)?;
    Ok(match entry.secret {
        Some(token) => json!({ "token": token }).to_string(),
        None => "[]".into(),
    })
}

async fn store(core: &CoreRef, id: &str, entry: SystemEntry) -> Result<(), ApiError> {
    let node = core.borrow().node.clone();
    if let Some(m) = &node.membership {
        return m.register(id, entry).await.map_err(|e| match e {
            RegisterError::Taken => ApiError::SystemIdTaken,
            RegisterError::Unavailable(why) => {
                tracing::warn!(error = %crate::logtext::esc(&why), "register: etcd unavailable");
                ApiError::StoreUnavailable
            }
        });
    }
    let registry = node.registry.as_ref().ok_or(ApiError::Busy)?;
    registry.register(id, entry).await.map_err(|e| match e {
        RegistryError::Taken => ApiError::SystemIdTaken,
        e => {
            tracing::error!(error = %e, "registry write failed");
            ApiError::Busy
        }
    })
}
