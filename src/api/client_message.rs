//! Client messages (docs/api.md §2.1): a WebSocket client asks the node to send
//! to a group, a userId or a clientId of its own system.
//!
//! A message is recognised by its `type` alone; anything else a client sends
//! (not JSON, not an object, an unknown `type`) is not a client message and
//! is discarded without an answer, as go-websocket discarded everything.
//! Once recognised, the body is decoded and checked exactly like the HTTP
//! route of the same name, so the refusals carry the same catalogue texts.
//! `sendUserId` is never taken from the client: the owning core overwrites
//! it with the sender's identity before the checks.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::body::{
    group_name, Body, BodyLimits, Message, SendToClient, SendToGroup, SendToUser, Since,
};
use super::error::ApiError;
use crate::config::ClientSendPolicy;

/// A recognised client message: the `reqId` to echo and the decoded body,
/// or why it could not be decoded.
pub struct ClientMessage {
    /// The client's `reqId` as the JSON it sent (`""` when absent).
    pub req_id: Box<RawValue>,
    pub kind: Kind,
    pub body: Result<Request, ApiError>,
}

/// The `type`s: three sends, and `recover` (docs/api.md §9), which any
/// policy allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Group,
    User,
    Client,
    Recover,
}

/// A decoded client message body.
pub enum Request {
    Group(SendToGroup),
    User(SendToUser),
    Client(SendToClient),
    Recover(Recover),
}

/// `{"type":"recover","groupName","offset","epoch"}`: the pushes of a
/// group's stream after a position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recover {
    #[serde(default)]
    pub group_name: String,
    #[serde(flatten)]
    pub since: Since,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "reqId", default)]
    req_id: Option<Box<RawValue>>,
}

/// The client message in `text`, or None when `text` is not one.
pub fn parse(text: &str) -> Option<ClientMessage> {
    let head: Head = serde_json::from_str(text).ok()?;
    let bytes = text.as_bytes();
    let (kind, body) = match head.kind.as_str() {
        "send_to_group" => (Kind::Group, SendToGroup::decode(bytes).map(Request::Group)),
        "send_to_user" => (Kind::User, SendToUser::decode(bytes).map(Request::User)),
        "send_to_client" => (
            Kind::Client,
            SendToClient::decode(bytes).map(Request::Client),
        ),
        "recover" => (
            Kind::Recover,
            serde_json::from_str(text)
                .map(Request::Recover)
                .map_err(|_| ApiError::BadRequest),
        ),
        _ => return None,
    };
    let req_id = head.req_id.unwrap_or_else(empty_string);
    Some(ClientMessage { req_id, kind, body })
}

fn empty_string() -> Box<RawValue> {
    RawValue::from_string("\"\"".into()).unwrap_or_else(|_| unreachable!("valid JSON"))
}

impl Kind {
    /// Whether `policy` lets a client send this type at all (group
    /// membership is checked later, on the decoded body).
    pub fn permitted(self, policy: ClientSendPolicy) -> bool {
        match policy {
            _ if self == Kind::Recover => true,
            ClientSendPolicy::Group => self == Kind::Group,
            ClientSendPolicy::All | ClientSendPolicy::Webhook => true,
            ClientSendPolicy::Off => false,
        }
    }
}

impl Request {
    /// Sets `sendUserId` to the sender's identity, then checks required
    /// fields and limits as the HTTP route does.
    pub fn prepare(&mut self, sender: &str, limits: &BodyLimits) -> Result<(), ApiError> {
        if let Some(m) = self.message_mut() {
            m.send_user_id = sender.to_owned();
        }
        match self {
            Request::Group(b) => check(b, limits),
            Request::User(b) => check(b, limits),
            Request::Client(b) => check(b, limits),
            Request::Recover(r) => group_name(&r.group_name),
        }
    }

    /// The group of a group message or a recover, which the sender must
    /// be a member of.
    pub fn group(&self) -> Option<&str> {
        match self {
            Request::Group(b) => Some(&b.group_name),
            Request::Recover(r) => Some(&r.group_name),
            _ => None,
        }
    }

    fn message_mut(&mut self) -> Option<&mut Message> {
        match self {
            Request::Group(b) => Some(&mut b.message),
            Request::User(b) => Some(&mut b.message),
            Request::Client(b) => Some(&mut b.message),
            Request::Recover(_) => None,
        }
    }

    /// The message fields of a send, as the recipients will get them.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Request::Group(b) => Some(&b.message),
            Request::User(b) => Some(&b.message),
            Request::Client(b) => Some(&b.message),
            Request::Recover(_) => None,
        }
    }
}

fn check(b: &impl Body, limits: &BodyLimits) -> Result<(), ApiError> {
    b.check_required()?;
    b.check_limits(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::Field;

    fn prepared(text: &str, sender: &str) -> Result<Request, ApiError> {
        let m = parse(text).expect("a client message");
        let mut body = m.body?;
        body.prepare(sender, &BodyLimits::default())?;
        Ok(body)
    }

    #[test]
    fn only_objects_with_a_known_type_are_client_messages() {
        for text in [
            "ping",
            "hello",
            "[1]",
            "{}",
            r#"{"type":"send_to_everyone"}"#,
            r#"{"type":7}"#,
            "{\"type\":\"send_to_group\"",
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
        let m = parse(r#"{"type":"send_to_user","userId":"u","reqId":"r1"}"#).unwrap();
        assert_eq!(m.kind, Kind::User);
        assert_eq!(m.req_id.get(), "\"r1\"");
        let m = parse(r#"{"type":"send_to_client","clientId":"c"}"#).unwrap();
        assert_eq!((m.kind, m.req_id.get()), (Kind::Client, "\"\""));
    }

    #[test]
    fn the_sender_replaces_a_spoofed_send_user_id() {
        let text =
            r#"{"type":"send_to_group","groupName":"g","sendUserId":"admin","data":{"a":1}}"#;
        let Ok(Request::Group(b)) = prepared(text, "alice") else {
            panic!("group message")
        };
        assert_eq!(b.message.send_user_id, "alice");
        assert_eq!(b.message.data.get(), r#"{"a":1}"#);
    }

    #[test]
    fn bad_fields_get_the_api_refusals() {
        let missing = prepared(r#"{"type":"send_to_group","data":"x"}"#, "a");
        assert!(matches!(
            missing,
            Err(ApiError::FieldRequired(Field::GroupName))
        ));
        let wrong_type = prepared(r#"{"type":"send_to_user","userId":5}"#, "a");
        assert!(matches!(wrong_type, Err(ApiError::BadRequest)));
        let long = format!(
            r#"{{"type":"send_to_group","groupName":"{}"}}"#,
            "g".repeat(300)
        );
        assert!(matches!(
            prepared(&long, "a"),
            Err(ApiError::FieldTooLong(Field::GroupName))
        ));
    }

    #[test]
    fn policies_permit_types() {
        use ClientSendPolicy::*;
        assert!(Kind::Group.permitted(Group) && !Kind::User.permitted(Group));
        assert!(!Kind::Client.permitted(Group) && Kind::Client.permitted(All));
        assert!(!Kind::Group.permitted(Off) && Kind::User.permitted(Webhook));
    }
}
