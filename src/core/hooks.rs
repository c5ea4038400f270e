//! Webhook events of the connections a core owns (docs/api.md §2.2): `connect`
//! once the connection is routable, `disconnect` from `close_conn` (the one
//! place a connection ends, so exactly once), `message` for forwarded
//! client messages.
//!
//! The core only builds the event and hands it to the webhook thread's
//! queue, which never blocks: a slow or dead receiver costs a core nothing
//! but a dropped event once the queue is full.

use std::sync::Arc;

use crate::clock::unix_millis;
use crate::config::AuthMode;
use crate::webhook::{Endpoint, Event, EventKind, Refused};

use super::conn::Conn;
use super::Core;

impl Core {
    /// Queues `kind` for `conn`. None when the node has no webhook for the
    /// connection's system.
    pub(super) fn emit(&self, conn: &Conn, kind: EventKind) -> Option<Result<(), Refused>> {
        let webhooks = self.node.webhooks.as_ref()?;
        let endpoint = self.endpoint(&conn.system)?;
        let event = Event {
            endpoint,
            kind,
            system_id: conn.system.to_string(),
            client_id: conn.client_id.to_string(),
            user_id: conn.user_id.to_string(),
            groups: conn.groups.iter().map(|g| g.to_string()).collect(),
            time_ms: unix_millis(),
        };
        Some(webhooks.submit(event))
    }

    /// Where `system`'s events go and how they are signed: in token mode
    /// the system's own `webhookUrl` (else `webhook.url`) with its secret;
    /// in open mode `webhook.url` unsigned.
    fn endpoint(&self, system: &str) -> Option<Arc<Endpoint>> {
        let config = &self.node.config;
        let global = Some(config.webhook.url.as_str()).filter(|u| !u.is_empty());
        let (url, secret) = match config.api.auth {
            AuthMode::Open => (global?, None),
            AuthMode::Token => {
                let entry = self.system(system)?;
                let own = entry.webhook_url.as_deref().filter(|u| !u.is_empty());
                (own.or(global)?, entry.secret.clone())
            }
        };
        Some(Arc::new(Endpoint {
            url: url.to_owned(),
            secret,
        }))
    }
}
