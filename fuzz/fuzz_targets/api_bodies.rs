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
use serde_json::Value;
use shardcast::api::body::{
    BindToGroup, Body, BodyLimits, ClientRef, GetGroupList, GetOnlineList, Message, Register,
    SendToClient, SendToClients, SendToGroup, SendToSystem, SendToUser, UnbindFromGroup,
};
use shardcast::push::{push_frame, MessageId};

/// Small limits as well as the defaults, so the limit paths are reached.
const SMALL: BodyLimits = BodyLimits {
    max_message: 16,
    max_batch: 2,
};

/// decode + check_required + check_limits, as the router chains them.
fn run<T: Body>(data: &[u8]) -> Option<T> {
    let body = T::decode(data).ok()?;
    // A body that decodes is a JSON object (or the empty body).
    if !data.is_empty() {
        let value: Value = serde_json::from_slice(data).expect("decoded body is JSON");
        assert!(value.is_object(), "decoded a non-object body");
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

fn check_push(message: &Message, seed: u64) {
    let id = MessageId(seed);
    let frame = push_frame(id, message);
    let payload = frame_payload(&frame);
    let v: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => panic!(
            "push frame payload is not JSON ({e}): {}",
            String::from_utf8_lossy(payload)
        ),
    };
    assert_eq!(v["messageId"].as_str(), Some(id.to_string().as_str()));
    assert_eq!(
        v["sendUserId"].as_str(),
        Some(message.send_user_id.as_str())
    );
    assert_eq!(v["code"].as_i64(), Some(message.code));
    assert_eq!(v["msg"].as_str(), Some(message.msg.as_str()));
    let data: Value = serde_json::from_str(message.data.get()).expect("data is JSON");
    assert_eq!(v["data"], data, "data changed on its way into the frame");
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["messageId", "sendUserId", "code", "msg", "data"]);
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

    // A client message (API.md §2.1) is a bare Message object.
    if let Ok(message) = serde_json::from_slice::<Message>(data) {
        let _ = message.check_limits(&BodyLimits::default());
        check_push(&message, seed);
    }
});
