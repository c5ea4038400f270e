//! Bytes sent to WebSocket clients (API.md §2) and the API envelopes (§4).
//!
//! A push to N connections is encoded once and the same [`Bytes`] is cloned
//! to every recipient, so the frames here include their RFC 6455 header. A
//! frame is built in one allocation: its payload is described as a list of
//! `Part`s whose exact encoded length is known before anything is written,
//! the buffer is reserved once with room for the longest header, the payload
//! is written after that room, and the header — computed from the length
//! actually written, so it can never disagree with the payload — goes in
//! front of it.
//!
//! JSON strings are escaped exactly as serde_json escapes them; `data` is
//! embedded as the caller's raw JSON text (a string stays a string).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::api::body::Message;
use crate::api::error::ApiError;
use crate::config::Lang;

/// The id every recipient of one push sees; 16 lowercase hex digits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Bits of the per-core counter; the core number takes the 8 bits above.
const COUNTER_BITS: u32 = 56;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// Message ids of one core: `splitmix64_mix((core << 56 | counter) ^ node_key)`.
///
/// Why this is unique within a node: the input space is partitioned, core
/// `c` only ever uses inputs whose top 8 bits are `c`, so two cores (or one
/// core at two counter values) never share an input; XOR with the node-wide
/// key and the splitmix64 finaliser are both bijections on `u64`, so
/// distinct inputs give distinct ids. A core repeats an id only after 2^56
/// ids (two thousand years at a million pushes a second). Seeding each core
/// with its own random value instead would only make collisions unlikely.
///
/// Across nodes (and restarts) uniqueness is probabilistic: each node draws
/// `node_key` at random, so ids of two nodes collide only by chance. The
/// finaliser spreads the bits, so ids do not reveal the push count or core.
#[derive(Debug, Clone)]
pub struct MessageIdGen {
    key: u64,
    core: u64,
    counter: u64,
}

impl MessageIdGen {
    /// `node_key`: 64 random bits drawn once per node start, shared by its
    /// cores; `core`: this worker's index, distinct per core of the node.
    pub fn new(node_key: u64, core: u8) -> Self {
        MessageIdGen {
            key: node_key,
            core: u64::from(core) << COUNTER_BITS,
            counter: 0,
        }
    }

    /// The next id; never fails (an infinite source, hence not an Iterator).
    #[expect(clippy::should_implement_trait, reason = "infallible, no Option")]
    pub fn next(&mut self) -> MessageId {
        let input = self.core | (self.counter & COUNTER_MASK);
        self.counter = self.counter.wrapping_add(1);
        MessageId(splitmix64_mix(input ^ self.key))
    }
}

/// The splitmix64 output function: xor-shifts and odd multiplications, each
/// invertible, so the whole is a bijection.
fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Longest server frame header: 2 bytes + 64-bit length.
const MAX_HEADER: usize = 10;

/// An RFC 6455 server text frame header (FIN, opcode 1, unmasked).
struct Header {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl Header {
    fn text(payload_len: usize) -> Self {
        let mut bytes = [0u8; MAX_HEADER];
        bytes[0] = 0x81;
        let len = match u16::try_from(payload_len) {
            Ok(n @ 0..=125) => {
                bytes[1] = n as u8;
                2
            }
            Ok(n) => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&n.to_be_bytes());
                4
            }
            Err(_) => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
                10
            }
        };
        Header { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends the header of a text frame carrying `payload_len` bytes.
pub fn ws_text_header(payload_len: usize, out: &mut BytesMut) {
    out.extend_from_slice(Header::text(payload_len).as_bytes());
}

/// One text frame holding `payload`.
pub fn text_frame(payload: &[u8]) -> Bytes {
    frame(Part::Raw(payload))
}

/// The push frame of §2 for an API message.
pub fn push_frame(id: MessageId, message: &Message) -> Bytes {
    let data = Part::Raw(message.data.get().as_bytes());
    push(
        Some(id),
        &message.send_user_id,
        message.code,
        &message.msg,
        data,
    )
}

/// The push frame from its parts; `data_raw_json` must be valid JSON.
pub fn push_frame_parts(
    id: MessageId,
    send_user_id: &str,
    code: i64,
    msg: &str,
    data_raw_json: &str,
) -> Bytes {
    push(
        Some(id),
        send_user_id,
        code,
        msg,
        Part::Raw(data_raw_json.as_bytes()),
    )
}

/// The online (1001) or offline (1002) notice, as go-websocket sends it:
/// `data` is a JSON string holding the object with sorted keys.
pub fn notice_frame(
    id: MessageId,
    online: bool,
    client_id: &str,
    user_id: &str,
    extend: &str,
) -> Bytes {
    let fields = [
        Part::Raw(b"{\"clientId\":"),
        Part::Str(client_id.as_bytes()),
        Part::Raw(b",\"extend\":"),
        Part::Str(extend.as_bytes()),
        Part::Raw(b",\"userId\":"),
        Part::Str(user_id.as_bytes()),
        Part::Raw(b"}"),
    ];
    let inner = to_vec(Part::Seq(&fields));
    let (code, msg) = if online {
        (1001, "客户端上线")
    } else {
        (1002, "客户端下线")
    };
    push(Some(id), "", code, msg, Part::Str(&inner))
}

/// The first frame of a connection: `{"code":0,"msg":"success","data":{"clientId":…}}`.
pub fn welcome_frame(client_id: &str) -> Bytes {
    let data = [
        Part::Raw(b"{\"clientId\":"),
        Part::Str(client_id.as_bytes()),
        Part::Raw(b"}"),
    ];
    with_envelope(0, "success", Part::Seq(&data), frame)
}

/// The -1001 frame sent before closing a refused connection with 1008.
pub fn refusal_frame(msg: &str) -> Bytes {
    push(None, "", -1001, msg, Part::Raw(b"[]"))
}

/// The answer to a client message (API.md §2.1):
/// `{"type":"ack","reqId":<as sent>,"code":…,"msg":…,"messageId":…}`;
/// `id: None` writes `"messageId":""`. `req_id_raw` must be valid JSON.
pub fn ack_frame(req_id_raw: &str, code: i64, msg: &str, id: Option<MessageId>) -> Bytes {
    let hex = id.map(hex16);
    let code = Int::new(code);
    let parts = [
        Part::Raw(b"{\"type\":\"ack\",\"reqId\":"),
        Part::Raw(req_id_raw.as_bytes()),
        Part::Raw(b",\"code\":"),
        Part::Raw(code.as_bytes()),
        Part::Raw(b",\"msg\":"),
        Part::Str(msg.as_bytes()),
        Part::Raw(b",\"messageId\":\""),
        Part::Raw(hex.as_ref().map_or(&[], |h| &h[..])),
        Part::Raw(b"\"}"),
    ];
    frame(Part::Seq(&parts))
}

/// A success answer: `{"code":0,"msg":"success","data":<data_json>}`.
pub fn ok_envelope(data_json: &str) -> Vec<u8> {
    with_envelope(0, "success", Part::Raw(data_json.as_bytes()), to_vec)
}

/// A failure answer: `{"code":-1,"msg":<text in lang>,"data":[]}`.
pub fn error_envelope(err: &ApiError, lang: Lang) -> Vec<u8> {
    with_envelope(-1, &err.message(lang), Part::Raw(b"[]"), to_vec)
}

/// `{"messageId":…,"sendUserId":…,"code":…,"msg":…,"data":…}` as a frame;
/// `id: None` writes `"messageId":""`.
fn push(id: Option<MessageId>, send_user_id: &str, code: i64, msg: &str, data: Part) -> Bytes {
    with_push(id, send_user_id, code, msg, data, frame)
}

/// Hands the parts of a push payload to `finish`.
fn with_push<R>(
    id: Option<MessageId>,
    send_user_id: &str,
    code: i64,
    msg: &str,
    data: Part,
    finish: impl FnOnce(Part) -> R,
) -> R {
    let hex = id.map(hex16);
    let code = Int::new(code);
    let parts = [
        Part::Raw(b"{\"messageId\":\""),
        Part::Raw(hex.as_ref().map_or(&[], |h| &h[..])),
        Part::Raw(b"\",\"sendUserId\":"),
        Part::Str(send_user_id.as_bytes()),
        Part::Raw(b",\"code\":"),
        Part::Raw(code.as_bytes()),
        Part::Raw(b",\"msg\":"),
        Part::Str(msg.as_bytes()),
        Part::Raw(b",\"data\":"),
        data,
        Part::Raw(b"}"),
    ];
    finish(Part::Seq(&parts))
}

/// Hands `{"code":…,"msg":…,"data":…}` to `finish` (to a frame or a Vec).
fn with_envelope<R>(code: i64, msg: &str, data: Part, finish: impl FnOnce(Part) -> R) -> R {
    let code = Int::new(code);
    let parts = [
        Part::Raw(b"{\"code\":"),
        Part::Raw(code.as_bytes()),
        Part::Raw(b",\"msg\":"),
        Part::Str(msg.as_bytes()),
        Part::Raw(b",\"data\":"),
        data,
        Part::Raw(b"}"),
    ];
    finish(Part::Seq(&parts))
}

/// A piece of a JSON text whose encoded length is known before writing.
#[derive(Clone, Copy)]
enum Part<'a> {
    /// Written as is (literals, numbers, raw JSON).
    Raw(&'a [u8]),
    /// Written as a quoted, escaped JSON string.
    Str(&'a [u8]),
    Seq(&'a [Part<'a>]),
}

impl Part<'_> {
    fn len(self) -> usize {
        match self {
            Part::Raw(raw) => raw.len(),
            Part::Str(text) => 2 + text.iter().map(|&b| escaped_len(b)).sum::<usize>(),
            Part::Seq(parts) => parts.iter().map(|p| p.len()).sum(),
        }
    }

    fn put<B: BufMut>(self, out: &mut B) {
        match self {
            Part::Raw(raw) => out.put_slice(raw),
            Part::Str(text) => put_json_str(out, text),
            Part::Seq(parts) => parts.iter().for_each(|p| p.put(out)),
        }
    }
}

/// `payload` as one text frame, in one exactly sized buffer.
fn frame(payload: Part) -> Bytes {
    let mut buf = BytesMut::with_capacity(MAX_HEADER + payload.len());
    buf.put_bytes(0, MAX_HEADER);
    payload.put(&mut buf);
    let header = Header::text(buf.len() - MAX_HEADER);
    let start = MAX_HEADER - header.len;
    buf[start..MAX_HEADER].copy_from_slice(header.as_bytes());
    buf.advance(start);
    buf.freeze()
}

fn to_vec(payload: Part) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    payload.put(&mut out);
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex16(id: MessageId) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = HEX[(id.0 >> (60 - 4 * i) & 0xf) as usize];
    }
    out
}

/// An `i64` in decimal, formatted on the stack.
struct Int {
    digits: [u8; 20],
    start: usize,
}

impl Int {
    fn new(value: i64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = value.unsigned_abs();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if value < 0 {
            start -= 1;
            digits[start] = b'-';
        }
        Int { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// serde_json's short escape for `b`, if it has one.
fn short_escape(b: u8) -> Option<u8> {
    match b {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        0x08 => Some(b'b'),
        0x0c => Some(b'f'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        b'\t' => Some(b't'),
        _ => None,
    }
}

/// Bytes `b` takes inside a JSON string: 1, 2 (`\n`) or 6 (`\u001f`).
fn escaped_len(b: u8) -> usize {
    match (short_escape(b), b < 0x20) {
        (Some(_), _) => 2,
        (None, true) => 6,
        (None, false) => 1,
    }
}

/// `text` (UTF-8) as a quoted JSON string; unescaped runs are copied whole.
fn put_json_str<B: BufMut>(out: &mut B, text: &[u8]) {
    out.put_u8(b'"');
    let mut run = 0;
    for (i, &b) in text.iter().enumerate() {
        if escaped_len(b) == 1 {
            continue;
        }
        out.put_slice(&text[run..i]);
        match short_escape(b) {
            Some(c) => out.put_slice(&[b'\\', c]),
            None => out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
        }
        run = i + 1;
    }
    out.put_slice(&text[run..]);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body::{Body, SendToSystem};
    use serde_json::Value;
    use std::collections::HashSet;

    /// Checks the frame header (FIN + text, unmasked, minimal length form)
    /// and returns the payload.
    fn payload(frame: &[u8]) -> &[u8] {
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame[1] & 0x80, 0, "server frames are unmasked");
        let (len, header) = match frame[1] {
            126 => (u64::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()), 10),
            n => (u64::from(n), 2),
        };
        let min_header = match len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        assert_eq!(header, min_header, "length in its shortest form");
        assert_eq!(frame.len() - header, len as usize);
        &frame[header..]
    }

    fn text(frame: &[u8]) -> &str {
        std::str::from_utf8(payload(frame)).unwrap()
    }

    fn message(body: &str) -> Message {
        SendToSystem::decode(body.as_bytes()).unwrap().message
    }

    #[test]
    fn ack_echoes_the_req_id_and_carries_the_message_id() {
        let ok = ack_frame("\"r-1\"", 0, "success", Some(MessageId(0xab)));
        assert_eq!(
            text(&ok),
            r#"{"type":"ack","reqId":"r-1","code":0,"msg":"success","messageId":"00000000000000ab"}"#
        );
        let refused = ack_frame("7", -1, "发送\"过快\"", None);
        let v: Value = serde_json::from_slice(payload(&refused)).unwrap();
        assert_eq!(v["reqId"], 7);
        assert_eq!(v["msg"], "发送\"过快\"");
        assert_eq!(v["messageId"], "");
    }

    #[test]
    fn message_id_is_16_lowercase_hex() {
        assert_eq!(MessageId(0xab).to_string(), "00000000000000ab");
        assert_eq!(MessageId(u64::MAX).to_string(), "ffffffffffffffff");
        assert_eq!(
            MessageId(0x0123_4567_89AB_CDEF).to_string(),
            "0123456789abcdef"
        );
        let mut gen = MessageIdGen::new(42, 3);
        for _ in 0..1000 {
            let id = gen.next();
            assert_eq!(hex16(id), id.to_string().as_bytes());
        }
    }

    #[test]
    fn ids_of_one_generator_are_distinct() {
        let mut gen = MessageIdGen::new(0x5eed, 0);
        let ids: HashSet<MessageId> = (0..1_000_000).map(|_| gen.next()).collect();
        assert_eq!(ids.len(), 1_000_000);
    }

    #[test]
    fn counter_wraps_within_its_core() {
        let mut gen = MessageIdGen::new(7, 255);
        let first = gen.next();
        gen.counter = COUNTER_MASK;
        let last = gen.next();
        assert_ne!(first, last);
        assert_eq!(gen.next(), first, "wraps to counter 0 of the same core");
    }

    #[test]
    fn ids_of_two_cores_do_not_collide() {
        let key = 0x0123_4567_89ab_cdef;
        let (mut a, mut b) = (MessageIdGen::new(key, 0), MessageIdGen::new(key, 1));
        let ids: HashSet<MessageId> = (0..100_000).flat_map(|_| [a.next(), b.next()]).collect();
        assert_eq!(ids.len(), 200_000);
    }

    #[test]
    fn mixer_is_a_bijection_on_a_sample() {
        // Inverse of the finaliser; if it undoes `mix`, no two inputs collide.
        fn unmix(mut z: u64) -> u64 {
            z ^= z >> 31 ^ z >> 62;
            z = z.wrapping_mul(0x3196_42b2_d24d_8ec3);
            z ^= z >> 27 ^ z >> 54;
            z = z.wrapping_mul(0x96de_1b17_3f11_9089);
            z ^ z >> 30 ^ z >> 60
        }
        for x in [0, 1, 42, u64::MAX, 1 << 56, 0xdead_beef_cafe_f00d] {
            assert_eq!(unmix(splitmix64_mix(x)), x);
        }
    }

    #[test]
    fn header_lengths() {
        for (len, head) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = text_frame(&vec![b'x'; len]);
            assert_eq!(frame.len(), head + len);
            assert_eq!(payload(&frame).len(), len);
            let mut out = BytesMut::new();
            ws_text_header(len, &mut out);
            assert_eq!(&out[..], &frame[..head]);
        }
        let mut out = BytesMut::new();
        ws_text_header(65536, &mut out);
        assert_eq!(&out[..], [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        out.clear();
        ws_text_header(300, &mut out);
        assert_eq!(&out[..], [0x81, 126, 1, 44]);
    }

    #[test]
    fn push_frame_field_order_and_values() {
        let m = message(r#"{"sendUserId":"u1","code":-5,"msg":"hi","data":{"a":[1, 2]}}"#);
        let frame = push_frame(MessageId(0xff), &m);
        let expected = r#"{"messageId":"00000000000000ff","sendUserId":"u1","code":-5,"msg":"hi","data":{"a":[1, 2]}}"#;
        assert_eq!(text(&frame), expected);
        let v: Value = serde_json::from_slice(payload(&frame)).unwrap();
        assert_eq!(v["data"]["a"][1], 2);
        assert_eq!(
            frame,
            push_frame_parts(MessageId(0xff), "u1", -5, "hi", r#"{"a":[1, 2]}"#)
        );
    }

    #[test]
    fn push_frame_embeds_every_json_kind() {
        let kinds = [
            r#""x\"y\u00e9""#,
            r#""""#,
            r#"{"k":{}}"#,
            "[1,[]]",
            "-1.5e3",
            "0",
            "true",
            "false",
            "null",
        ];
        for raw in kinds {
            let m = message(&format!(r#"{{"data":{raw}}}"#));
            let frame = push_frame(MessageId(1), &m);
            let text = text(&frame);
            assert!(text.ends_with(&format!(r#","data":{raw}}}"#)), "{text}");
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["data"], serde_json::from_str::<Value>(raw).unwrap());
        }
        let frame = push_frame(MessageId(1), &message("{}"));
        let v: Value = serde_json::from_slice(payload(&frame)).unwrap();
        assert_eq!(v["data"], "", "default data is the empty string");
        assert_eq!((v["code"].as_i64(), v["msg"].as_str()), (Some(0), Some("")));
    }

    #[test]
    fn push_frame_round_trips_awkward_strings() {
        let nasty = "q\"b\\s/\u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c}é中🎉";
        for code in [i64::MIN, -1, 0, 7, i64::MAX] {
            let frame = push_frame_parts(MessageId(9), nasty, code, nasty, "1");
            let v: Value = serde_json::from_slice(payload(&frame)).unwrap();
            assert_eq!(
                (v["sendUserId"].as_str(), v["msg"].as_str()),
                (Some(nasty), Some(nasty))
            );
            assert_eq!(v["code"].as_i64(), Some(code));
        }
    }

    #[test]
    fn escaping_matches_serde_json() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        samples.extend(["", "plain", "é\u{80}\u{2028}🎉", "a\"b\\c\nd\u{1}e"].map(String::from));
        for s in samples {
            let mut out = Vec::new();
            put_json_str(&mut out, s.as_bytes());
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
            assert_eq!(Part::Str(s.as_bytes()).len(), out.len(), "{s:?}");
        }
    }

    /// The length reserved for a payload is the length written (no regrowth).
    fn exact(payload: Part) -> Vec<u8> {
        let out = to_vec(payload);
        assert_eq!(payload.len(), out.len());
        out
    }

    #[test]
    fn payloads_are_sized_exactly() {
        let nasty = "\n\"\u{0}\u{1f}é🎉\\";
        for (id, code) in [
            (None, 0),
            (Some(MessageId(u64::MAX)), i64::MIN),
            (Some(MessageId(0)), 12),
        ] {
            let raw = with_push(id, nasty, code, nasty, Part::Raw(b"[1]"), exact);
            let frame = push(id, nasty, code, nasty, Part::Raw(b"[1]"));
            assert_eq!(raw, payload(&frame));
            with_push(id, "", code, "", Part::Str(nasty.as_bytes()), exact);
            with_envelope(code, nasty, Part::Raw(b"{}"), exact);
        }
    }

    #[test]
    fn push_frame_headers_at_the_boundaries() {
        let base = payload(&push_frame_parts(MessageId(0), "", 0, "", "0")).len();
        for target in [125, 126, 65535, 65536] {
            let msg = "a".repeat(target - base);
            let frame = push_frame_parts(MessageId(0), "", 0, &msg, "0");
            assert_eq!(payload(&frame).len(), target);
            let v: Value = serde_json::from_slice(payload(&frame)).unwrap();
            assert_eq!(v["msg"].as_str().map(str::len), Some(target - base));
        }
    }

    #[test]
    fn notice_frames() {
        for (online, code, msg) in [(true, 1001, "客户端上线"), (false, 1002, "客户端下线")]
        {
            let frame = notice_frame(MessageId(0x10), online, "cid", "u\"1", "e\\x");
            let v: Value = serde_json::from_slice(payload(&frame)).unwrap();
            assert_eq!(v["messageId"], "0000000000000010");
            assert_eq!(
                (v["sendUserId"].as_str(), v["code"].as_i64()),
                (Some(""), Some(code))
            );
            assert_eq!(v["msg"], msg);
            let inner = v["data"].as_str().expect("data is a JSON string");
            assert_eq!(
                inner,
                r#"{"clientId":"cid","extend":"e\\x","userId":"u\"1"}"#
            );
            let obj: Value = serde_json::from_str(inner).unwrap();
            assert_eq!(
                obj,
                serde_json::json!({"clientId":"cid","extend":"e\\x","userId":"u\"1"})
            );
        }
        let empty = notice_frame(MessageId(0), true, "c", "", "");
        let expected = r#""data":"{\"clientId\":\"c\",\"extend\":\"\",\"userId\":\"\"}"}"#;
        assert!(text(&empty).ends_with(expected), "{}", text(&empty));
    }

    #[test]
    fn welcome_and_refusal_frames() {
        let welcome = welcome_frame("AbC-_9");
        assert_eq!(
            text(&welcome),
            r#"{"code":0,"msg":"success","data":{"clientId":"AbC-_9"}}"#
        );
        let refusal = refusal_frame("系统ID无效");
        let expected =
            r#"{"messageId":"","sendUserId":"","code":-1001,"msg":"系统ID无效","data":[]}"#;
        assert_eq!(text(&refusal), expected);
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            ok_envelope("[]"),
            br#"{"code":0,"msg":"success","data":[]}"#
        );
        let ok = ok_envelope(r#"{"messageId":"00000000000000ff","online":true}"#);
        let v: Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["data"]["online"], true);
        let zh = error_envelope(&ApiError::ClientOffline, Lang::Zh);
        assert_eq!(
            String::from_utf8(zh).unwrap(),
            r#"{"code":-1,"msg":"客户端不在线","data":[]}"#
        );
        let err = crate::api::error::ApiError::FieldRequired(crate::api::error::Field::GroupName);
        let en = error_envelope(&err, Lang::En);
        assert_eq!(
            en,
            br#"{"code":-1,"msg":"GroupName is required","data":[]}"#
        );
    }
}
