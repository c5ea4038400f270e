//! Events and their JSON body (docs/api.md §2.2), fields in the documented order.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

/// Where a system's events go.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// The system secret (32 ASCII characters) in token mode: requests are
    /// signed with it. None in open mode: no signature header.
    pub secret: Option<String>,
}

/// Never shows the secret.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self.secret.as_ref().map(|_| "<hidden>");
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("secret", &secret)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Connect,
    Disconnect {
        reason: &'static str,
    },
    /// `data`: the client's frame, the text of a JSON object, embedded
    /// verbatim as `"data"`.
    Message {
        data: String,
    },
}

/// One event of one connection.
#[derive(Debug, Clone)]
pub struct Event {
    pub endpoint: Arc<Endpoint>,
    pub kind: EventKind,
    pub system_id: String,
    pub client_id: String,
    pub user_id: String,
    pub groups: Vec<String>,
    /// Unix time in milliseconds.
    pub time_ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode the webhook event: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// The body as serialized; field order is declaration order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    event: &'static str,
    event_id: &'a str,
    system_id: &'a str,
    client_id: &'a str,
    user_id: &'a str,
    groups: &'a [String],
    time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
}

impl Event {
    /// The request body, with `id` as its `eventId` (the same on every
    /// attempt: the body is encoded once). Fails only when a message's
    /// `data` is not JSON.
    pub(super) fn body(&self, id: &str) -> Result<Vec<u8>, EncodeError> {
        let (event, reason, data) = match &self.kind {
            EventKind::Connect => ("connect", None, None),
            EventKind::Disconnect { reason } => ("disconnect", Some(*reason), None),
            EventKind::Message { data } => ("message", None, Some(serde_json::from_str(data)?)),
        };
        let body = Body {
            event,
            event_id: id,
            system_id: &self.system_id,
            client_id: &self.client_id,
            user_id: &self.user_id,
            groups: &self.groups,
            time: self.time_ms,
            reason,
            data,
        };
        Ok(serde_json::to_vec(&body)?)
    }
}
