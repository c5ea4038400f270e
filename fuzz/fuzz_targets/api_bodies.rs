//! Every `/api/*` body type on arbitrary bytes, and the push frame built
//! from every send body that decodes.
//!
//! The router runs `decode`, then `check_required`, then `check_limits` on
//! the raw request body, so none of them may panic on any input. A send body
//! that decodes is turned into a push frame without re-serialising `data`,
//! so the frame must be a well-formed, minimally sized RFC 6455 text frame
//! whose payload is valid JSON carrying exactly the caller's fields.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;
use shardcast::api::body::{
    BindToGroup, Body, BodyLimits, ClientRef, GetGroupList, GetOnlineList, Message, Register,
    SendToClient, SendToClients, SendToGroup, SendToSystem, SendToUser, UnbindFromGroup,
};
use shardcast::api::client_message::{self, Kind};
use shardcast::ws::message::ack_frame;
use shardcast::ws::MessageId;

/// Small limits as well as the defaults, so the limit paths are reached.
const SMALL: BodyLimits = BodyLimits {
    max_message: 16,
    max_batch: 2,
};

/// decode + check_required + check_limits, as the router chains them.
fn run<T: Body>(data: &[u8]) -> Option<T> {
    let body = T::decode(data).ok()?;
    // A body that decodes is a JSON object (or the empty body). Checked as a
    // RawValue, which validates the grammar but, like the body decoder and
    // JSON itself, puts no range on numbers (`1e999` is JSON; serde_json's
    // Value refuses it). serde_json does not check UTF-8 inside the strings
    // of fields it skips (unknown ones), so such a body decodes though it is
    // not strictly JSON; the skipped field never reaches anything, and Go's
    // encoding/json that the PHP SDK was written against accepted it too.
    // Only UTF-8 bodies must therefore be JSON.
    if !data.is_empty() && std::str::from_utf8(data).is_ok() {
        let raw: &RawValue = serde_json::from_slice(data).expect("decoded body is JSON");
        assert!(raw.get().starts_with('{'), "decoded a non-object body");
    }
    let _ = body.check_required();
    let _ = body.check_limits(&BodyLimits::default());
    let _ = body.check_limits(&SMALL);
    Some(body)
}

/// The payload of a server text frame, after checking its header.
fn frame_payload(frame: &[u8]) -> &[u8] {
    assert_eq!(frame[0], 0x81, "FIN + text opcode");
    let (len, header) = match frame[1] {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => {
            let raw: [u8; 8] = frame[2..10].try_into().expect("8 bytes");
            (usize::try_from(u64::from_be_bytes(raw)).expect("fits"), 10)
        }
        n => (usize::from(n), 2),
    };
    let shortest = match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    assert_eq!(header, shortest, "length not in its shortest form");
    assert_eq!(frame.len(), header + len, "header length disagrees");
    &frame[header..]
}

/// The payload of a push frame, read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Push<'a> {
    message_id: String,
    send_user_id: String,
    code: i64,
    msg: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn check_push(message: &Message, seed: u64) {
    let id = MessageId(seed);
    let frame = message.frame(id);
    let payload = frame_payload(&frame);

    // Parses as JSON, with exactly the caller's fields and `data` embedded
    // byte for byte (a RawValue checks the grammar without limiting number
    // ranges, as a browser's JSON.parse does not either).
    let push: Push = match serde_json::from_slice(payload) {
        Ok(push) => push,
        Err(e) => panic!(
            "push frame payload is not JSON ({e}): {}",
            String::from_utf8_lossy(payload)
        ),
    };
    assert_eq!(push.message_id, id.to_string());
    assert_eq!(push.send_user_id, message.send_user_id);
    assert_eq!(push.code, message.code);
    assert_eq!(push.msg, message.msg);
    assert_eq!(push.data.get(), message.data.get());

    // Field order and escaping are serde_json's, byte for byte (docs/api.md §2).
    let expected = format!(
        r#"{{"messageId":"{id}","sendUserId":{},"code":{},"msg":{},"data":{}}}"#,
        serde_json::to_string(&message.send_user_id).expect("string"),
        message.code,
        serde_json::to_string(&message.msg).expect("string"),
        message.data.get(),
    );
    assert_eq!(payload, expected.as_bytes());
}

fuzz_target!(|data: &[u8]| {
    let seed = data
        .iter()
        .fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));

    if let Some(b) = run::<SendToClient>(data) {
        check_push(&b.message, seed);
    }
    if let Some(b) = run::<SendToClients>(data) {
        check_push(&b.message, seed);
    }
    if let Some(b) = run::<SendToGroup>(data) {
        check_push(&b.message, seed);
    }
    if let Some(b) = run::<SendToUser>(data) {
        check_push(&b.message, seed);
    }
    if let Some(b) = run::<SendToSystem>(data) {
        check_push(&b.message, seed);
    }
    run::<Register>(data);
    run::<BindToGroup>(data);
    run::<UnbindFromGroup>(data);
    run::<GetOnlineList>(data);
    run::<GetGroupList>(data);
    run::<ClientRef>(data);

    // A client message (docs/api.md §2.1) is a bare Message object.
    if let Ok(message) = serde_json::from_slice::<Message>(data) {
        let _ = message.check_limits(&BodyLimits::default());
        check_push(&message, seed);
    }
    check_client_message(data);
});

/// A WebSocket text frame as the core parses it for a client message: the
/// `reqId` echoed into the ack must keep the ack JSON, and a body that
/// decodes goes through the server's `sendUserId` and the route's checks.
fn check_client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(m) = client_message::parse(text) else {
        return;
    };
    let ack = ack_frame(m.req_id.get(), -1, "refused", None);
    let _: &RawValue = serde_json::from_slice(frame_payload(&ack)).expect("ack is JSON");
    if let Ok(mut request) = m.body {
        if request.prepare("sender", &SMALL).is_ok() {
            assert!(m.kind == Kind::Group || request.group().is_none());
        }
        let _ = request.prepare("sender", &BodyLimits::default());
    }
}
