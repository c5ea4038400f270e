//! The JSON messages the node sends to WebSocket clients (docs/api.md §2):
//! pushes, online/offline notices, the welcome, the -1001 refusal and the
//! ack of a client message — each a complete text frame in one `Bytes`.
//!
//! A push to N connections is encoded once and the same `Bytes` is cloned
//! to every recipient, so these include their RFC 6455 header.

use bytes::Bytes;

use super::frame;
use super::message_id::MessageId;
use crate::json::{hex16, with_envelope, Int, Part};

/// The push frame: `{"messageId","sendUserId","code","msg","data"}` in this
/// order; `data_raw_json` (valid JSON) is embedded as is.
pub fn push_frame(
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
        Part::Raw(b""),
    )
}

/// Where a push stands in its group's stream (docs/api.md §9).
#[derive(Debug, Clone, Copy)]
pub struct StreamAt<'a> {
    pub group: &'a str,
    pub offset: u64,
    pub epoch: &'a str,
}

/// The push frame of a group with history: [`push_frame`]'s fields, then
/// `"groupName","offset","epoch"`.
pub fn stream_push_frame(
    id: MessageId,
    send_user_id: &str,
    code: i64,
    msg: &str,
    data_raw_json: &str,
    at: StreamAt,
) -> Bytes {
    let offset = Int::new(at.offset as i64);
    let tail = [
        Part::Raw(b",\"groupName\":"),
        Part::Str(at.group.as_bytes()),
        Part::Raw(b",\"offset\":"),
        Part::Raw(offset.as_bytes()),
        Part::Raw(b",\"epoch\":"),
        Part::Str(at.epoch.as_bytes()),
    ];
    let data = Part::Raw(data_raw_json.as_bytes());
    push(Some(id), send_user_id, code, msg, data, Part::Seq(&tail))
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
    let inner = crate::json::to_vec(Part::Seq(&fields));
    let (code, msg) = if online {
        (1001, "客户端上线")
    } else {
        (1002, "客户端下线")
    };
    push(Some(id), "", code, msg, Part::Str(&inner), Part::Raw(b""))
}

/// What the welcome says besides the clientId (docs/api.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Welcome<'a> {
    /// Resume off: the clientId only.
    Plain,
    /// A new connection with its resume token; `asked`: a resume was asked
    /// for and could not be honoured (`"resumed":false`).
    New { token: &'a str, asked: bool },
    /// The session came back: `"resumed":true` and whether nothing after
    /// the client's `last` was lost.
    Resumed { token: &'a str, recovered: bool },
}

/// The first frame of a connection:
/// `{"code":0,"msg":"success","data":{"clientId":…}}`, with
/// `"resumeToken"`, `"resumed"` and `"recovered"` as `welcome` says, then
/// `"clientSend"`: the node's `ws.client_send` (`off`, `group`, `all`,
/// `webhook`), so that a client knows at once whether its messages are
/// routed (docs/api.md §2).
pub fn welcome_frame(client_id: &str, welcome: Welcome, client_send: &str) -> Bytes {
    let flag = |b: bool| Part::Raw(if b { b"true" } else { b"false" });
    let mut data = vec![
        Part::Raw(b"{\"clientId\":"),
        Part::Str(client_id.as_bytes()),
    ];
    match welcome {
        Welcome::Plain => {}
        Welcome::New { token, asked } => {
            data.extend([Part::Raw(b",\"resumeToken\":"), Part::Str(token.as_bytes())]);
            if asked {
                data.push(Part::Raw(b",\"resumed\":false"));
            }
        }
        Welcome::Resumed { token, recovered } => data.extend([
            Part::Raw(b",\"resumeToken\":"),
            Part::Str(token.as_bytes()),
            Part::Raw(b",\"resumed\":true,\"recovered\":"),
            flag(recovered),
        ]),
    }
    data.extend([
        Part::Raw(b",\"clientSend\":"),
        Part::Str(client_send.as_bytes()),
        Part::Raw(b"}"),
    ]);
    with_envelope(0, "success", Part::Seq(&data), frame::text)
}

/// The messageId of a push or notice frame (what a client names as `last`
/// when it resumes); None for every other frame (welcome, ack, ping, pong,
/// close). Pushes and notices, and only they, begin `{"messageId":"`.
pub fn frame_message_id(frame: &[u8]) -> Option<MessageId> {
    const PREFIX: &[u8] = b"{\"messageId\":\"";
    let start = match *frame.get(1)? {
        126 => 4,
        127 => 10,
        n if n < 126 => 2,
        _ => return None,
    };
    let rest = frame.get(start..)?.strip_prefix(PREFIX)?;
    let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
    MessageId::parse(hex)
}

/// The answer to a client's `recover` (docs/api.md §9), after its replay:
/// `{"code":0,"msg":"recovered","data":{"groupName","recovered","offset",
/// "epoch"}}`; when the stream's owner did not answer, `code` -1, the
/// reason as `msg`, and `data` `{"groupName","recovered":false}`.
pub fn recovered_frame(outcome: Result<(bool, StreamAt), (&str, &str)>) -> Bytes {
    let flag = |b: bool| Part::Raw(if b { b"true" } else { b"false" });
    match outcome {
        Ok((recovered, at)) => {
            let offset = Int::new(at.offset as i64);
            let data = [
                Part::Raw(b"{\"groupName\":"),
                Part::Str(at.group.as_bytes()),
                Part::Raw(b",\"recovered\":"),
                flag(recovered),
                Part::Raw(b",\"offset\":"),
                Part::Raw(offset.as_bytes()),
                Part::Raw(b",\"epoch\":"),
                Part::Str(at.epoch.as_bytes()),
                Part::Raw(b"}"),
            ];
            with_envelope(0, "recovered", Part::Seq(&data), frame::text)
        }
        Err((group, why)) => {
            let data = [
                Part::Raw(b"{\"groupName\":"),
                Part::Str(group.as_bytes()),
                Part::Raw(b",\"recovered\":false}"),
            ];
            with_envelope(-1, why, Part::Seq(&data), frame::text)
        }
    }
}

/// The -1001 frame sent before closing a refused connection with 1008.
pub fn refusal_frame(msg: &str) -> Bytes {
    push(None, "", -1001, msg, Part::Raw(b"[]"), Part::Raw(b""))
}

/// The answer to a client message (docs/api.md §2.1):
/// `{"type":"ack","reqId":<as sent>,"code":…,"msg":…,"messageId":…}`;
/// `id: None` writes `"messageId":""`. `req_id_raw` must be valid JSON.
pub fn ack_frame(req_id_raw: &str, code: i64, msg: &str, id: Option<MessageId>) -> Bytes {
    let hex = id.map(|id| hex16(id.0));
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
    frame::text(Part::Seq(&parts))
}

/// `{"messageId":…,"sendUserId":…,"code":…,"msg":…,"data":…}` as a frame;
/// `id: None` writes `"messageId":""`.
/// A push or notice frame; `tail`: fields after `data`.
fn push(
    id: Option<MessageId>,
    send_user_id: &str,
    code: i64,
    msg: &str,
    data: Part,
    tail: Part,
) -> Bytes {
    let hex = id.map(|id| hex16(id.0));
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
        tail,
        Part::Raw(b"}"),
    ];
    frame::text(Part::Seq(&parts))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// Checks the frame header (FIN + text, unmasked, minimal length form)
    /// and returns the payload.
    pub(crate) fn payload(frame: &[u8]) -> &[u8] {
        let head = frame::parse_head(frame).expect("a complete header");
        assert!(head.fin && head.opcode == frame::OP_TEXT && !head.masked);
        let min_header = match head.payload_len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        assert_eq!(head.header_len, min_header, "length in its shortest form");
        assert_eq!(head.frame_len(), frame.len() as u64);
        &frame[head.header_len..]
    }

    pub(crate) fn text(frame: &[u8]) -> &str {
        std::str::from_utf8(payload(frame)).unwrap()
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
    fn push_frame_field_order_and_values() {
        let frame = push_frame(MessageId(0xff), "u1", -5, "hi", r#"{"a":[1, 2]}"#);
        let expected = r#"{"messageId":"00000000000000ff","sendUserId":"u1","code":-5,"msg":"hi","data":{"a":[1, 2]}}"#;
        assert_eq!(text(&frame), expected);
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
            let frame = push_frame(MessageId(1), "", 0, "", raw);
            let text = text(&frame);
            assert!(text.ends_with(&format!(r#","data":{raw}}}"#)), "{text}");
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["data"], serde_json::from_str::<Value>(raw).unwrap());
        }
    }

    #[test]
    fn push_frame_round_trips_awkward_strings() {
        let nasty = "q\"b\\s/\u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c}é中🎉";
        for code in [i64::MIN, -1, 0, 7, i64::MAX] {
            let frame = push_frame(MessageId(9), nasty, code, nasty, "1");
            let v: Value = serde_json::from_slice(payload(&frame)).unwrap();
            assert_eq!(
                (v["sendUserId"].as_str(), v["msg"].as_str()),
                (Some(nasty), Some(nasty))
            );
            assert_eq!(v["code"].as_i64(), Some(code));
        }
    }

    #[test]
    fn push_frame_headers_at_the_boundaries() {
        let base = payload(&push_frame(MessageId(0), "", 0, "", "0")).len();
        for target in [125, 126, 65535, 65536] {
            let msg = "a".repeat(target - base);
            let frame = push_frame(MessageId(0), "", 0, &msg, "0");
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
        }
        let empty = notice_frame(MessageId(0), true, "c", "", "");
        let expected = r#""data":"{\"clientId\":\"c\",\"extend\":\"\",\"userId\":\"\"}"}"#;
        assert!(text(&empty).ends_with(expected), "{}", text(&empty));
    }

    #[test]
    fn welcome_and_refusal_frames() {
        let welcome = welcome_frame("AbC-_9", Welcome::Plain, "off");
        assert_eq!(
            text(&welcome),
            r#"{"code":0,"msg":"success","data":{"clientId":"AbC-_9","clientSend":"off"}}"#
        );
        let refusal = refusal_frame("系统ID无效");
        let expected =
            r#"{"messageId":"","sendUserId":"","code":-1001,"msg":"系统ID无效","data":[]}"#;
        assert_eq!(text(&refusal), expected);
    }

    #[test]
    fn welcome_with_resume_fields() {
        let new = welcome_frame(
            "c",
            Welcome::New {
                token: "1.t",
                asked: false,
            },
            "group",
        );
        let expected = r#"{"code":0,"msg":"success","data":{"clientId":"c","resumeToken":"1.t","clientSend":"group"}}"#;
        assert_eq!(text(&new), expected);
        let refused = welcome_frame(
            "c",
            Welcome::New {
                token: "1.t",
                asked: true,
            },
            "all",
        );
        let expected = r#""resumeToken":"1.t","resumed":false,"clientSend":"all"}}"#;
        assert!(text(&refused).ends_with(expected));
        let back = welcome_frame(
            "c",
            Welcome::Resumed {
                token: "1.u",
                recovered: false,
            },
            "webhook",
        );
        let expected =
            r#""resumeToken":"1.u","resumed":true,"recovered":false,"clientSend":"webhook"}}"#;
        assert!(text(&back).ends_with(expected), "{}", text(&back));
    }

    #[test]
    fn message_id_is_read_off_pushes_and_notices_only() {
        let id = MessageId(0x0123_4567_89ab_cdef);
        assert_eq!(frame_message_id(&push_frame(id, "", 0, "", "1")), Some(id));
        let big = push_frame(id, "", 0, "", &format!("\"{}\"", "x".repeat(70_000)));
        assert_eq!(frame_message_id(&big), Some(id), "8-byte length form");
        let mid = push_frame(id, "", 0, "", &format!("\"{}\"", "x".repeat(300)));
        assert_eq!(frame_message_id(&mid), Some(id), "2-byte length form");
        assert_eq!(
            frame_message_id(&notice_frame(id, true, "c", "", "")),
            Some(id)
        );
        let others = [
            welcome_frame("c", Welcome::Plain, "off"),
            refusal_frame("no"),
            ack_frame("1", 0, "ok", Some(id)),
            frame::text_frame(b"pong"),
            frame::close_frame(1000),
        ];
        for f in others {
            assert_eq!(frame_message_id(&f), None);
        }
    }
}
