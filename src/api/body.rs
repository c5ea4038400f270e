//! Request bodies of the `/api/*` routes (docs/api.md §4).
//!
//! Checking a body is split into three steps because §5 orders the failures:
//! a malformed body (400) beats authentication, which beats a missing
//! required field, which beats a field over its limit. The router calls
//! [`Body::decode`], then its own `SystemId`/`Token` checks, then
//! [`Body::check_required`], then [`Body::check_limits`].
//!
//! Decoding is lenient where the PHP SDK needs it and strict elsewhere:
//! unknown fields are ignored (the SDK sends extras), `null` means "absent",
//! an empty body is `{}`; but a known field of the wrong type (`"code":"1"`)
//! is a 400, like go-websocket's `encoding/json` answered.
//!
//! `data` is kept as the caller's raw JSON text ([`RawValue`]) so that a push
//! embeds it byte for byte without re-serialising it. serde's
//! `#[serde(flatten)]` buffers values in a form `RawValue` cannot be read
//! from, so the send bodies do not flatten [`Message`]: `send_body!` declares
//! the message fields in each body's wire struct and moves them into the
//! public `message` field.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::error::{ApiError, Field};
use crate::config::forbidden_in_id;
use crate::op::{Ask, Unstamped};
use crate::ws::message::push_frame;
use crate::ws::MessageId;

/// Longest `systemId` / `clientId` (bytes).
pub const MAX_ID: usize = 128;
/// Longest `groupName` (bytes).
pub const MAX_NAME: usize = 256;
/// Longest `userId`, `extend`, `sendUserId` and `webhookUrl` (bytes).
pub const MAX_TEXT: usize = 1024;

/// The configurable limits (`api.max_message`, `api.max_batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Longest `data`, as raw JSON text in bytes.
    pub max_message: usize,
    /// Most entries in `clientIds` (duplicates included).
    pub max_batch: usize,
}

impl From<&crate::config::ApiConfig> for BodyLimits {
    /// The limits a node is configured with.
    fn from(api: &crate::config::ApiConfig) -> Self {
        BodyLimits {
            max_message: api.max_message,
            max_batch: api.max_batch,
        }
    }
}

impl Default for BodyLimits {
    /// The defaults of docs/api.md §6.
    fn default() -> Self {
        BodyLimits {
            max_message: 65536,
            max_batch: 1000,
        }
    }
}

/// A request body: decoded, then checked for required fields, then limits.
pub trait Body: Sized + DeserializeOwned {
    /// Parses a JSON object; any JSON or field-type error is `BadRequest`.
    /// An empty body is `{}`.
    fn decode(body: &[u8]) -> Result<Self, ApiError> {
        decode_object(body)
    }

    /// `FieldRequired` for the first required field (in field order) that is
    /// missing or empty.
    fn check_required(&self) -> Result<(), ApiError>;

    /// `FieldTooLong` for the first field (in field order) over its limit or,
    /// for ids and names, holding a control character.
    fn check_limits(&self, limits: &BodyLimits) -> Result<(), ApiError>;
}

/// The common message fields of the send routes.
#[derive(Debug, Clone)]
pub struct Message {
    pub send_user_id: String,
    pub code: i64,
    pub msg: String,
    /// Exactly the JSON text the caller sent (`""` when absent; an explicit
    /// `null` stays `null`).
    pub data: Box<RawValue>,
}

impl Message {
    /// `sendUserId` and `data` limits, and `msg`, which counts toward
    /// `api.max_message` with `data` (so that the push frame is bounded);
    /// also used for client messages (§2.1).
    pub fn check_limits(&self, limits: &BodyLimits) -> Result<(), ApiError> {
        within(Field::SendUserId, &self.send_user_id, MAX_TEXT)?;
        let data = self.data.get().len();
        within(Field::Data, self.data.get(), limits.max_message)?;
        too_long_if(self.msg.len() > limits.max_message - data, Field::Msg)
    }

    /// The message on its way to its stream's owner, which numbers it and
    /// encodes its frame (docs/api.md §9).
    pub fn unstamped(&self, id: MessageId) -> Unstamped {
        Unstamped {
            message_id: id.0,
            send_user_id: self.send_user_id.clone(),
            code: self.code,
            msg: self.msg.clone(),
            data: self.data.get().to_owned(),
        }
    }

    /// The push frame every recipient of this message gets.
    pub fn frame(&self, id: MessageId) -> Bytes {
        push_frame(
            id,
            &self.send_user_id,
            self.code,
            &self.msg,
            self.data.get(),
        )
    }
}

impl<'de> Deserialize<'de> for Message {
    /// The message fields of a JSON object, other keys ignored.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SendToSystem::deserialize(d).map(|body| body.message)
    }
}

/// A send body: its own fields plus the [`Message`] fields, without flatten.
macro_rules! send_body {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
            pub message: Message,
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Wire {
                    $(#[serde(default, deserialize_with = "nullable")] $field: $ty,)*
                    #[serde(default, deserialize_with = "nullable")]
                    send_user_id: String,
                    #[serde(default, deserialize_with = "nullable")]
                    code: i64,
                    #[serde(default, deserialize_with = "nullable")]
                    msg: String,
                    #[serde(default = "empty_string_json")]
                    data: Box<RawValue>,
                }
                let wire = Wire::deserialize(d)?;
                let message = Message {
                    send_user_id: wire.send_user_id,
                    code: wire.code,
                    msg: wire.msg,
                    data: wire.data,
                };
                Ok($name { $($field: wire.$field,)* message })
            }
        }
    };
}

/// A body without message fields; every field optional on the wire.
macro_rules! plain_body {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fdoc])* #[serde(default, deserialize_with = "nullable")] pub $field: $ty,)*
        }
    };
}

send_body!(
    /// `/api/send_to_client`
    SendToClient { client_id: String }
);
send_body!(
    /// `/api/send_to_clients`
    SendToClients { client_ids: Vec<String> }
);
send_body!(
    /// `/api/send_to_group`
    SendToGroup { group_name: String }
);
send_body!(
    /// `/api/send_to_user`
    SendToUser { user_id: String }
);
send_body!(
    /// `/api/send_to_system`
    SendToSystem {}
);

/// `/api/register`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    #[serde(default, deserialize_with = "nullable")]
    pub system_id: String,
    /// `None` when absent, `null` or `""` (a form left empty sets nothing).
    #[serde(default, deserialize_with = "non_empty")]
    pub webhook_url: Option<String>,
}

plain_body!(
    /// `/api/bind_to_group`; an empty `userId`/`extend` leaves the value as is.
    /// `history` (the newest N pushes) or `since` (every push after it; it
    /// wins when both are given) replay the group's history first
    /// (docs/api.md §9).
    BindToGroup {
        client_id: String,
        group_name: String,
        user_id: String,
        extend: String,
        history: Option<u32>,
        since: Option<Since>,
    }
);
plain_body!(
    /// `/api/get_group_history`: the oldest `limit` pushes after `since`,
    /// or without it the newest `limit` (all kept when `limit` is absent).
    GetGroupHistory { group_name: String, since: Option<Since>, limit: Option<u32> }
);

/// A position in a group's stream (docs/api.md §9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Since {
    pub offset: u64,
    pub epoch: String,
}

impl BindToGroup {
    /// The history read this bind asks for, if any.
    pub fn ask(&self) -> Option<Ask> {
        match (&self.since, self.history) {
            (Some(s), _) => Some(Ask::Since {
                offset: s.offset,
                epoch: s.epoch.clone(),
            }),
            (None, Some(n)) => Some(Ask::Last(n)),
            (None, None) => None,
        }
    }
}
plain_body!(
    /// `/api/unbind_from_group`
    UnbindFromGroup { client_id: String, group_name: String }
);
plain_body!(
    /// `/api/get_online_list`
    GetOnlineList { group_name: String, with_info: bool }
);
plain_body!(
    /// `/api/get_group_list`
    GetGroupList {}
);
plain_body!(
    /// `/api/is_online`, `/api/get_client_info`, `/api/close_client`
    ClientRef { client_id: String }
);

impl Body for Register {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::SystemId, &self.system_id)
    }

    fn check_limits(&self, _: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::SystemId, &self.system_id, MAX_ID)?;
        // Control characters here could split the webhook request's headers.
        self.webhook_url
            .as_deref()
            .map_or(Ok(()), |url| clean(Field::WebhookUrl, url, MAX_TEXT))
    }
}

impl Body for SendToClient {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::ClientId, &self.client_id)
    }

    fn check_limits(&self, limits: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::ClientId, &self.client_id, MAX_ID)?;
        self.message.check_limits(limits)
    }
}

impl Body for SendToClients {
    fn check_required(&self) -> Result<(), ApiError> {
        required_if(self.client_ids.is_empty(), Field::ClientIds)
    }

    fn check_limits(&self, limits: &BodyLimits) -> Result<(), ApiError> {
        too_long_if(self.client_ids.len() > limits.max_batch, Field::ClientIds)?;
        for id in &self.client_ids {
            clean(Field::ClientIds, id, MAX_ID)?;
        }
        self.message.check_limits(limits)
    }
}

impl Body for SendToGroup {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::GroupName, &self.group_name)
    }

    fn check_limits(&self, limits: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::GroupName, &self.group_name, MAX_NAME)?;
        self.message.check_limits(limits)
    }
}

impl Body for SendToUser {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::UserId, &self.user_id)
    }

    fn check_limits(&self, limits: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::UserId, &self.user_id, MAX_TEXT)?;
        self.message.check_limits(limits)
    }
}

impl Body for SendToSystem {
    fn check_required(&self) -> Result<(), ApiError> {
        Ok(())
    }

    fn check_limits(&self, limits: &BodyLimits) -> Result<(), ApiError> {
        self.message.check_limits(limits)
    }
}

impl Body for BindToGroup {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::ClientId, &self.client_id)?;
        required(Field::GroupName, &self.group_name)
    }

    fn check_limits(&self, _: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::ClientId, &self.client_id, MAX_ID)?;
        clean(Field::GroupName, &self.group_name, MAX_NAME)?;
        clean(Field::UserId, &self.user_id, MAX_TEXT)?;
        within(Field::Extend, &self.extend, MAX_TEXT)
    }
}

impl Body for GetGroupHistory {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::GroupName, &self.group_name)
    }

    fn check_limits(&self, _: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::GroupName, &self.group_name, MAX_NAME)
    }
}

/// A group name given alone (a client's `recover`): required, and under
/// the limits of every route's `groupName`.
pub fn group_name(name: &str) -> Result<(), ApiError> {
    required(Field::GroupName, name)?;
    clean(Field::GroupName, name, MAX_NAME)
}

impl Body for UnbindFromGroup {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::ClientId, &self.client_id)?;
        required(Field::GroupName, &self.group_name)
    }

    fn check_limits(&self, _: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::ClientId, &self.client_id, MAX_ID)?;
        clean(Field::GroupName, &self.group_name, MAX_NAME)
    }
}

impl Body for GetOnlineList {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::GroupName, &self.group_name)
    }

    fn check_limits(&self, _: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::GroupName, &self.group_name, MAX_NAME)
    }
}

impl Body for GetGroupList {
    fn check_required(&self) -> Result<(), ApiError> {
        Ok(())
    }

    fn check_limits(&self, _: &BodyLimits) -> Result<(), ApiError> {
        Ok(())
    }
}

impl Body for ClientRef {
    fn check_required(&self) -> Result<(), ApiError> {
        required(Field::ClientId, &self.client_id)
    }

    fn check_limits(&self, _: &BodyLimits) -> Result<(), ApiError> {
        clean(Field::ClientId, &self.client_id, MAX_ID)
    }
}

/// Parses `body` as one JSON object (empty = `{}`).
///
/// serde_json would also fill a struct from a JSON array (`["id"]`), so the
/// first significant byte must open an object.
fn decode_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(ApiError::BadRequest);
    }
    serde_json::from_slice(body).map_err(|_| ApiError::BadRequest)
}

/// A field where `null` means the same as absent: its default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// An optional string where `null` and `""` both mean absent.
fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d).map(|s| s.filter(|s| !s.is_empty()))
}

/// The default `data`: the JSON string `""`.
fn empty_string_json() -> Box<RawValue> {
    // `""` is valid JSON, so the fallback is never taken; it keeps this total.
    RawValue::from_string("\"\"".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

fn required(field: Field, value: &str) -> Result<(), ApiError> {
    required_if(value.is_empty(), field)
}

fn required_if(missing: bool, field: Field) -> Result<(), ApiError> {
    if missing {
        return Err(ApiError::FieldRequired(field));
    }
    Ok(())
}

/// At most `max` bytes.
fn within(field: Field, value: &str, max: usize) -> Result<(), ApiError> {
    too_long_if(value.len() > max, field)
}

/// At most `max` bytes and no character [`forbidden_in_id`] refuses (C0 and
/// C1 controls, DEL, U+2028/U+2029, bidi embeddings, overrides and
/// isolates): ids and names end up in logs, keys and headers.
fn clean(field: Field, value: &str, max: usize) -> Result<(), ApiError> {
    within(field, value, max)?;
    too_long_if(value.chars().any(forbidden_in_id), field)
}

/// A userId from outside the API (a connect token's) checked as the API
/// checks the `userId` it is given: at most 1024 bytes, no character
/// [`forbidden_in_id`] refuses. Empty passes, as an empty `userId` does.
pub fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    clean(Field::UserId, user_id, MAX_TEXT)
}

fn too_long_if(over: bool, field: Field) -> Result<(), ApiError> {
    if over {
        return Err(ApiError::FieldTooLong(field));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_message_becomes_its_push_frame() {
        let m = SendToSystem::decode(
            br#"{"sendUserId":"u1","code":-5,"msg":"hi","data":{"a":[1, 2]}}"#,
        )
        .unwrap()
        .message;
        let expected = r#"{"messageId":"00000000000000ff","sendUserId":"u1","code":-5,"msg":"hi","data":{"a":[1, 2]}}"#;
        assert_eq!(
            crate::ws::message::tests::text(&m.frame(MessageId(0xff))),
            expected
        );
        let empty = SendToSystem::decode(b"{}").unwrap().message;
        let v: Value = serde_json::from_slice(crate::ws::message::tests::payload(
            &empty.frame(MessageId(1)),
        ))
        .unwrap();
        assert_eq!(v["data"], "", "default data is the empty string");
        assert_eq!((v["code"].as_i64(), v["msg"].as_str()), (Some(0), Some("")));
    }

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    /// decode + check_required + check_limits, as the router chains them.
    fn full<T: Body>(body: &[u8], limits: &BodyLimits) -> Result<T, ApiError> {
        let parsed = T::decode(body)?;
        parsed.check_required()?;
        parsed.check_limits(limits)?;
        Ok(parsed)
    }

    fn check<T: Body>(body: Value) -> Result<T, ApiError> {
        full(&bytes(body), &BodyLimits::default())
    }

    #[test]
    fn message_defaults() {
        for body in [
            &b""[..],
            b"{}",
            b" {} \n",
            br#"{"sendUserId":null,"code":null,"msg":null}"#,
        ] {
            let m = SendToSystem::decode(body).unwrap().message;
            assert_eq!(
                (m.send_user_id.as_str(), m.code, m.msg.as_str()),
                ("", 0, "")
            );
            assert_eq!(m.data.get(), r#""""#);
        }
    }

    #[test]
    fn message_fields_are_read() {
        let body = br#"{"groupName":"g","sendUserId":"u","code":-7,"msg":"hi","data":1}"#;
        let b = SendToGroup::decode(body).unwrap();
        assert_eq!(b.group_name, "g");
        let m = b.message;
        assert_eq!(
            (m.send_user_id.as_str(), m.code, m.msg.as_str()),
            ("u", -7, "hi")
        );
        assert_eq!(m.data.get(), "1");
    }

    #[test]
    fn data_is_kept_raw() {
        let kinds = [
            r#""a\"b\u00e9\n/""#,
            r#""""#,
            r#"{"x": [1, 2.50, {"y":null}]}"#,
            "[ ]",
            "12.50",
            "-3e7",
            "true",
            "false",
            "null",
        ];
        for raw in kinds {
            let body = format!(r#"{{"clientId":"c","data":{raw}}}"#);
            let b = SendToClient::decode(body.as_bytes()).unwrap();
            assert_eq!(b.message.data.get(), raw);
        }
    }

    #[test]
    fn message_deserializes_on_its_own() {
        let m: Message = serde_json::from_str(r#"{"type":"x","msg":"m","data":[1]}"#).unwrap();
        assert_eq!((m.msg.as_str(), m.data.get()), ("m", "[1]"));
    }

    fn refused<T: Body>(body: &[u8]) {
        let err = T::decode(body).err();
        assert_eq!(
            err,
            Some(ApiError::BadRequest),
            "{}",
            String::from_utf8_lossy(body)
        );
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        refused::<SendToSystem>(br#"{"code":"1"}"#);
        refused::<SendToSystem>(br#"{"code":1.5}"#);
        refused::<SendToSystem>(br#"{"code":1.0}"#);
        refused::<SendToSystem>(br#"{"code":9223372036854775808}"#);
        refused::<SendToSystem>(br#"{"msg":[]}"#);
        refused::<SendToSystem>(br#"{"sendUserId":1}"#);
        refused::<SendToClients>(br#"{"clientIds":"x"}"#);
        refused::<SendToClients>(br#"{"clientIds":[1]}"#);
        refused::<SendToClients>(br#"{"clientIds":[null]}"#);
        refused::<GetOnlineList>(br#"{"withInfo":"yes"}"#);
        refused::<GetOnlineList>(br#"{"withInfo":1}"#);
        refused::<ClientRef>(br#"{"clientId":5}"#);
        refused::<Register>(br#"{"webhookUrl":{}}"#);
        refused::<BindToGroup>(br#"{"extend":false}"#);
    }

    #[test]
    fn code_accepts_the_whole_i64_range() {
        for code in [i64::MIN, -1, 0, i64::MAX] {
            let body = format!(r#"{{"code":{code}}}"#);
            assert_eq!(
                SendToSystem::decode(body.as_bytes()).unwrap().message.code,
                code
            );
        }
    }

    #[test]
    fn non_objects_are_bad_requests() {
        let bodies: [&[u8]; 12] = [
            b"{",
            b"abc",
            b" ",
            b"[]",
            br#"["c"]"#,
            b"\"x\"",
            b"1",
            b"null",
            b"{} x",
            b"{}{}",
            b"{\"clientId\":\"\xff\"}",
            br#"{"clientId":"a","clientId":"b"}"#,
        ];
        for body in bodies {
            refused::<ClientRef>(body);
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let body = format!(r#"{{"data":{}}}"#, "[".repeat(100_000));
        refused::<SendToSystem>(body.as_bytes());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let b = ClientRef::decode(br#"{"foo":{"bar":[1,{}]},"clientId":"a","code":"x"}"#);
        assert_eq!(
            b,
            Ok(ClientRef {
                client_id: "a".into()
            })
        );
        // A field of another route, with a type that route would refuse.
        let g = SendToGroup::decode(br#"{"groupName":"g","clientIds":"x","withInfo":3}"#);
        assert_eq!(g.unwrap().group_name, "g");
        assert!(GetGroupList::decode(br#"{"x":1}"#).is_ok());
    }

    #[test]
    fn optional_fields() {
        let r = Register::decode(br#"{"systemId":"s"}"#).unwrap();
        assert_eq!(r.webhook_url, None);
        for url in ["null", r#""""#] {
            let body = format!(r#"{{"systemId":"s","webhookUrl":{url}}}"#);
            assert_eq!(Register::decode(body.as_bytes()).unwrap().webhook_url, None);
        }
        let r = Register::decode(br#"{"webhookUrl":"http://h/x"}"#).unwrap();
        assert_eq!(r.webhook_url.as_deref(), Some("http://h/x"));
        let o = GetOnlineList::decode(br#"{"groupName":"g","withInfo":true}"#).unwrap();
        assert!(o.with_info);
        assert!(
            !GetOnlineList::decode(br#"{"withInfo":null}"#)
                .unwrap()
                .with_info
        );
        let c = SendToClients::decode(br#"{"clientIds":null}"#).unwrap();
        assert!(c.client_ids.is_empty());
    }

    fn missing<T: Body>(body: Value, field: Field) {
        let err = check::<T>(body.clone()).err();
        assert_eq!(err, Some(ApiError::FieldRequired(field)), "{body}");
    }

    #[test]
    fn required_fields_in_order() {
        missing::<Register>(json!({}), Field::SystemId);
        missing::<Register>(json!({"systemId":"","webhookUrl":"x"}), Field::SystemId);
        missing::<SendToClient>(json!({"data":1}), Field::ClientId);
        missing::<SendToClients>(json!({}), Field::ClientIds);
        missing::<SendToClients>(json!({"clientIds":[]}), Field::ClientIds);
        missing::<SendToGroup>(json!({"groupName":""}), Field::GroupName);
        missing::<SendToUser>(json!({"userId":null}), Field::UserId);
        missing::<BindToGroup>(json!({}), Field::ClientId);
        missing::<BindToGroup>(json!({"groupName":"g"}), Field::ClientId);
        missing::<BindToGroup>(json!({"clientId":"c"}), Field::GroupName);
        missing::<UnbindFromGroup>(json!({"groupName":"g"}), Field::ClientId);
        missing::<UnbindFromGroup>(json!({"clientId":"c"}), Field::GroupName);
        missing::<GetOnlineList>(json!({"withInfo":true}), Field::GroupName);
        missing::<ClientRef>(json!({"clientId":""}), Field::ClientId);
    }

    #[test]
    fn bodies_without_required_fields_pass() {
        assert!(check::<SendToSystem>(json!({})).is_ok());
        assert!(check::<GetGroupList>(json!({})).is_ok());
        let bind =
            check::<BindToGroup>(json!({"clientId":"c","groupName":"g","userId":"","extend":""}));
        assert_eq!(bind.unwrap().user_id, "");
        assert!(check::<SendToClients>(json!({"clientIds":[""]})).is_ok());
    }

    /// `value` of `max` bytes passes, `max + 1` bytes is `FieldTooLong(field)`.
    fn boundary<T: Body>(make: impl Fn(&str) -> Value, field: Field, max: usize) {
        let too_long = Some(ApiError::FieldTooLong(field));
        assert!(
            check::<T>(make(&"a".repeat(max))).is_ok(),
            "{field:?} at {max}"
        );
        assert_eq!(check::<T>(make(&"a".repeat(max + 1))).err(), too_long);
        // Bytes, not characters: "é" is two bytes.
        assert!(check::<T>(make(&"é".repeat(max / 2))).is_ok());
        assert_eq!(
            check::<T>(make(&format!("a{}", "é".repeat(max / 2)))).err(),
            too_long
        );
    }

    /// Control characters (C0, DEL, C1), line and paragraph separators and
    /// bidi controls make an id or name `FieldTooLong(field)`.
    fn control<T: Body>(make: impl Fn(&str) -> Value, field: Field) {
        let c0 = ["a\u{0}", "\u{1f}b", "a\nb", "\t", "x\u{7f}"];
        let c1 = ["\u{80}", "a\u{85}b", "\u{9f}"];
        let separators = ["a\u{2028}", "\u{2029}b"];
        let bidi = [
            "\u{202a}",
            "\u{202b}",
            "\u{202c}",
            "\u{202d}",
            "txt.\u{202e}exe",
            "\u{2066}",
            "\u{2067}",
            "\u{2068}",
            "\u{2069}",
        ];
        for bad in c0.iter().chain(&c1).chain(&separators).chain(&bidi) {
            let err = check::<T>(make(bad)).err();
            assert_eq!(err, Some(ApiError::FieldTooLong(field)), "{bad:?}");
        }
        // Printable text around the refused ranges, and ids as the PHP SDK sends them.
        let fine = [
            "a b~é\u{a0}",
            "\u{2027}\u{202f}\u{2065}\u{206a}",
            "用户-42",
            "shop_system.v2",
            "IqciBxdye96luRSraidpMQ",
        ];
        for good in fine {
            assert!(check::<T>(make(good)).is_ok(), "{good:?}");
        }
    }

    fn clean_field<T: Body>(make: impl Fn(&str) -> Value, field: Field, max: usize) {
        boundary::<T>(&make, field, max);
        control::<T>(&make, field);
    }

    #[test]
    fn id_and_name_limits() {
        clean_field::<Register>(|v| json!({"systemId":v}), Field::SystemId, 128);
        clean_field::<Register>(
            |v| json!({"systemId":"s","webhookUrl":v}),
            Field::WebhookUrl,
            1024,
        );
        clean_field::<SendToClient>(|v| json!({"clientId":v}), Field::ClientId, 128);
        clean_field::<SendToClients>(|v| json!({"clientIds":["a",v]}), Field::ClientIds, 128);
        clean_field::<SendToGroup>(|v| json!({"groupName":v}), Field::GroupName, 256);
        clean_field::<SendToUser>(|v| json!({"userId":v}), Field::UserId, 1024);
        clean_field::<ClientRef>(|v| json!({"clientId":v}), Field::ClientId, 128);
        clean_field::<UnbindFromGroup>(
            |v| json!({"clientId":v,"groupName":"g"}),
            Field::ClientId,
            128,
        );
        clean_field::<UnbindFromGroup>(
            |v| json!({"clientId":"c","groupName":v}),
            Field::GroupName,
            256,
        );
        clean_field::<GetOnlineList>(|v| json!({"groupName":v}), Field::GroupName, 256);
        let bind = |c: &str, g: &str, u: &str, e: &str| json!({"clientId":c,"groupName":g,"userId":u,"extend":e});
        clean_field::<BindToGroup>(|v| bind(v, "g", "", ""), Field::ClientId, 128);
        clean_field::<BindToGroup>(|v| bind("c", v, "", ""), Field::GroupName, 256);
        clean_field::<BindToGroup>(|v| bind("c", "g", v, ""), Field::UserId, 1024);
        boundary::<BindToGroup>(|v| bind("c", "g", "", v), Field::Extend, 1024);
        assert!(check::<BindToGroup>(bind("c", "g", "", "a\nb\u{7f}")).is_ok());
    }

    #[test]
    fn message_limits_on_every_send_route() {
        let routes: [fn(Value) -> Result<(), ApiError>; 5] = [
            |m| check::<SendToClient>(with(m, "clientId", json!("c"))).map(drop),
            |m| check::<SendToClients>(with(m, "clientIds", json!(["c"]))).map(drop),
            |m| check::<SendToGroup>(with(m, "groupName", json!("g"))).map(drop),
            |m| check::<SendToUser>(with(m, "userId", json!("u"))).map(drop),
            |m| check::<SendToSystem>(m).map(drop),
        ];
        let long = |f| Err(ApiError::FieldTooLong(f));
        // `data` counted as raw text: the quotes are part of it.
        let data = |n: usize| json!("a".repeat(n - 2));
        for route in routes {
            assert_eq!(route(json!({"sendUserId":"a".repeat(1024)})), Ok(()));
            assert_eq!(
                route(json!({"sendUserId":"a".repeat(1025)})),
                long(Field::SendUserId)
            );
            assert_eq!(route(json!({"sendUserId":"a\nb","msg":"\u{1}"})), Ok(()));
            assert_eq!(route(json!({"data":data(65536)})), Ok(()));
            assert_eq!(route(json!({"data":data(65537)})), long(Field::Data));
        }
    }

    fn with(mut body: Value, key: &str, value: Value) -> Value {
        body[key] = value;
        body
    }

    #[test]
    fn data_limit_counts_raw_text() {
        let limits = BodyLimits {
            max_message: 16,
            max_batch: 3,
        };
        let data = |raw: &str| format!(r#"{{"groupName":"g","data":{raw}}}"#);
        let exact = format!(r#""{}""#, "a".repeat(14));
        assert!(full::<SendToGroup>(data(&exact).as_bytes(), &limits).is_ok());
        let over = format!(r#""{}""#, "a".repeat(15));
        let err = full::<SendToGroup>(data(&over).as_bytes(), &limits).err();
        assert_eq!(err, Some(ApiError::FieldTooLong(Field::Data)));
        // Escapes count as sent: 16 bytes of text for a 3-character string.
        let escaped = r#""\u0041\u0042\n""#;
        assert_eq!(escaped.len(), 16);
        assert!(full::<SendToGroup>(data(escaped).as_bytes(), &limits).is_ok());
        assert!(full::<SendToGroup>(data("[1, 2, 3, 4, 5, 6]").as_bytes(), &limits).is_err());
    }

    #[test]
    fn batch_limit_counts_duplicates() {
        let limits = BodyLimits {
            max_message: 16,
            max_batch: 3,
        };
        let ok = bytes(json!({"clientIds":["a","a","b"]}));
        assert_eq!(
            full::<SendToClients>(&ok, &limits)
                .unwrap()
                .client_ids
                .len(),
            3
        );
        let over = bytes(json!({"clientIds":["a","a","b","c"]}));
        let err = full::<SendToClients>(&over, &limits).err();
        assert_eq!(err, Some(ApiError::FieldTooLong(Field::ClientIds)));
    }

    #[test]
    fn errors_come_in_contract_order() {
        let long = |f| Some(ApiError::FieldTooLong(f));
        // Required beats limits.
        missing::<BindToGroup>(
            json!({"clientId":"","groupName":"x".repeat(300)}),
            Field::ClientId,
        );
        // Field order within limits.
        let body = json!({"clientId":"c\n", "groupName":"x".repeat(300)});
        assert_eq!(check::<BindToGroup>(body).err(), long(Field::ClientId));
        // The route's own field before the message fields.
        let body = json!({"userId":"u\n", "sendUserId":"x".repeat(2000)});
        assert_eq!(check::<SendToUser>(body).err(), long(Field::UserId));
        // Batch size before the entries.
        let ids: Vec<String> = (0..1001).map(|i| format!("{i}\n")).collect();
        assert_eq!(
            check::<SendToClients>(json!({"clientIds":ids})).err(),
            long(Field::ClientIds)
        );
    }

    #[test]
    fn default_data_is_an_empty_json_string() {
        assert_eq!(empty_string_json().get(), r#""""#);
        assert_eq!(
            BodyLimits::default(),
            BodyLimits {
                max_message: 65536,
                max_batch: 1000
            }
        );
    }
}
