//! Client messages on the core that owns the sender (docs/api.md §2.1).
//!
//! Everything that needs the sender — its rate bucket, its groups, its
//! identity for `sendUserId` — is decided here, synchronously, while the
//! core holds the connection. Only a message that passed goes on, as a
//! small task of this core that routes it exactly like the HTTP route of
//! the same name (this core, other cores by mailbox, other nodes by link)
//! and then queues the ack. A refusal is acked at once.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::api::body::BodyLimits;
use crate::api::client_message::{self, ClientMessage, Kind, Recover, Request};
use crate::api::error::ApiError;
use crate::config::ClientSendPolicy;
use crate::op::Ask;
use crate::op::ConnAddr;
use crate::webhook::EventKind;
use crate::ws::message::{ack_frame, recovered_frame};
use crate::ws::MessageId;

use super::history::{route, Why};
use super::{send, Core, CoreRef};

/// What became of a client message: the ack's messageId (None for a
/// message forwarded to the webhook), or the refusal.
type Acked = Result<Option<MessageId>, ApiError>;

impl Core {
    /// Handles one text message of a connection under a policy other than
    /// `off`. Not a client message: ignored.
    pub(super) fn client_message(&mut self, addr: ConnAddr, text: &str) {
        let Some(ClientMessage { req_id, kind, body }) = client_message::parse(text) else {
            return;
        };
        let ws = &self.node.config.ws;
        let (policy, rate) = (ws.client_send, ws.client_send_rate);
        let now = self.clock_ms();
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        if !conn.bucket.take(now, rate) {
            return self.ack(addr, &req_id, Err(ApiError::ClientSendRate));
        }
        if kind == Kind::Recover {
            return match body.and_then(|b| self.checked(addr, b)) {
                Ok(Request::Recover(r)) => self.client_recover(addr, r),
                Ok(_) => {}
                Err(e) => self.ack(addr, &req_id, Err(e)),
            };
        }
        if policy == ClientSendPolicy::Off {
            // Read only for `recover` (history on): the rest is discarded.
            return;
        }
        if policy == ClientSendPolicy::Webhook {
            let forwarded = self.forward(addr, text).map(|()| None);
            return self.ack(addr, &req_id, forwarded);
        }
        if !kind.permitted(policy) {
            return self.ack(addr, &req_id, Err(ApiError::ClientSendForbidden));
        }
        match body.and_then(|b| self.checked(addr, b)) {
            Ok(request) => self.spawn_send(addr, req_id, request),
            Err(e) => self.ack(addr, &req_id, Err(e)),
        }
    }

    /// The request, with `sendUserId` set to the sender, if its fields and
    /// (for a group) the sender's membership allow it.
    fn checked(&self, addr: ConnAddr, mut request: Request) -> Result<Request, ApiError> {
        let limits = BodyLimits::from(&self.node.config.api);
        let conn = self.conns.get(addr).ok_or(ApiError::ClientOffline)?;
        let sender = if conn.user_id.is_empty() {
            &*conn.client_id
        } else {
            &*conn.user_id
        };
        request.prepare(sender, &limits)?;
        let member = |g: &str| conn.groups.iter().any(|m| &**m == g);
        if request.group().is_some_and(|g| !member(g)) {
            return Err(ApiError::ClientSendForbidden);
        }
        Ok(request)
    }

    /// A member's `recover` (docs/api.md §9): the replay, then `recovered`.
    fn client_recover(&mut self, addr: ConnAddr, r: Recover) {
        let Some(conn) = self.conns.get(addr) else {
            return;
        };
        let system: Arc<str> = Arc::from(&*conn.system);
        if !self.keeps_history(&r.group_name) {
            let text = ApiError::NoHistory.message(self.node.config.api.lang);
            let frame = recovered_frame(Err((&r.group_name, &text)));
            return self.enqueue(addr, frame);
        }
        let ask = Ask::Since {
            offset: r.since.offset,
            epoch: r.since.epoch,
        };
        let group = Arc::from(r.group_name);
        self.recover(addr, (system, group), ask, Why::Recover);
    }

    /// Routes an accepted message from a task of this core, then acks it.
    fn spawn_send(&mut self, addr: ConnAddr, req_id: Box<RawValue>, request: Request) {
        let (Some(core), Some(conn)) = (self.this.upgrade(), self.conns.get(addr)) else {
            return;
        };
        let system: Arc<str> = Arc::from(&*conn.system);
        monoio::spawn(async move {
            let sent = send_message(&core, &system, request).await.map(Some);
            let mut c = core.borrow_mut();
            c.ack(addr, &req_id, sent);
            c.flush();
        });
    }

    /// Queues the `message` webhook event for a client message.
    fn forward(&mut self, addr: ConnAddr, text: &str) -> Result<(), ApiError> {
        let kind = EventKind::Message {
            data: text.to_owned(),
        };
        let conn = self.conns.get(addr).ok_or(ApiError::ClientOffline)?;
        match self.emit(conn, kind) {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(ApiError::Busy),
            // No webhook for this system: nobody upstream to hear it.
            None => Err(ApiError::ClientSendForbidden),
        }
    }

    /// Queues the ack of the message `req_id` to its sender (if still
    /// connected).
    fn ack(&mut self, addr: ConnAddr, req_id: &RawValue, acked: Acked) {
        let frame = match acked {
            Ok(id) => ack_frame(req_id.get(), 0, "success", id),
            Err(e) => {
                let text = e.message(self.node.config.api.lang);
                ack_frame(req_id.get(), -1, &text, None)
            }
        };
        self.enqueue(addr, frame);
    }
}

/// Sends an accepted message exactly like the HTTP route of the same name;
/// the id the recipients' frames carry.
async fn send_message(
    core: &CoreRef,
    system: &Arc<str>,
    request: Request,
) -> Result<MessageId, ApiError> {
    let id = core.borrow_mut().ids.next();
    let message = request.message().ok_or(ApiError::BadRequest)?;
    let frame = || core.borrow().encode(message.frame(id));
    match &request {
        Request::Group(b) => route::to_group(core, system, &b.group_name, message, id)
            .await
            .map(drop),
        Request::User(b) => send::to_user(core, system, &b.user_id, frame())
            .await
            .map(drop),
        Request::Client(b) => send::to_client(core, system, &b.client_id, frame())
            .await
            .map(drop),
        Request::Recover(_) => Err(ApiError::BadRequest),
    }?;
    Ok(id)
}
