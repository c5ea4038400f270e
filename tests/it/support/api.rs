//! The push API on top of the HTTP client: calls on a `Node` (with the success / error
//! envelope checked), the envelope and messageId assertions, and API calls with a hard
//! limit on the wait for the answer and the measured duration (`try_api`, `api_timed`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{HttpConn, HttpResponse};
use super::node::Node;
use super::ws::Client;
use super::WAIT;

/// How long `api_timed` waits for an answer at most before calling it a hang.
pub const HANG: Duration = Duration::from_secs(5);

impl Node {
    /// A new HTTP connection to the node.
    pub fn http(&self) -> HttpConn {
        HttpConn::connect(self.addr())
    }

    /// POST `path` with optional `SystemId` header and `body`; (HTTP status, JSON body).
    pub fn api(&self, path: &str, system_id: Option<&str>, body: &str) -> (u16, Value) {
        self.http().api(path, system_id, body)
    }

    /// POST `path` with the given headers and `body`; (HTTP status, JSON body).
    pub fn api_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let resp = self.http().request("POST", path, headers, body.as_bytes());
        let v = resp.json();
        (resp.status, v)
    }

    /// A successful call on `system_id` (asserts the success envelope); its `data`.
    pub fn call(&self, system_id: &str, path: &str, body: Value) -> Value {
        expect_ok(self.api(path, Some(system_id), &body.to_string()))
    }

    /// A call on `system_id` that must fail with `status` and `msg`.
    pub fn call_err(&self, system_id: &str, path: &str, body: Value, status: u16, msg: &str) {
        expect_err(
            self.api(path, Some(system_id), &body.to_string()),
            status,
            msg,
        );
    }

    /// GET `path` on a fresh connection.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.http().request("GET", path, &[], b"")
    }

    // ---- convenience API wrappers (open mode) --------------------------

    pub fn send_to_client(&self, sys: &str, client_id: &str, msg: &str, data: Value) -> Value {
        self.call(
            sys,
            "/api/send_to_client",
            json!({"clientId": client_id, "msg": msg, "data": data}),
        )
    }

    pub fn bind(&self, sys: &str, client_id: &str, group: &str, user_id: &str, extend: &str) {
        let data = self.call(
            sys,
            "/api/bind_to_group",
            json!({"clientId": client_id, "groupName": group, "userId": user_id, "extend": extend}),
        );
        assert_eq!(data, json!([]), "bind_to_group data");
    }

    pub fn unbind(&self, sys: &str, client_id: &str, group: &str) {
        let data = self.call(
            sys,
            "/api/unbind_from_group",
            json!({"clientId": client_id, "groupName": group}),
        );
        assert_eq!(data, json!([]), "unbind_from_group data");
    }

    pub fn is_online(&self, sys: &str, client_id: &str) -> bool {
        let data = self.call(sys, "/api/is_online", json!({ "clientId": client_id }));
        data["online"]
            .as_bool()
            .unwrap_or_else(|| panic!("is_online data without bool online: {data}"))
    }

    /// Polls `is_online` until it is false; panics after `timeout`.
    pub fn wait_offline(&self, sys: &str, client_id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_online(sys, client_id) {
            assert!(
                Instant::now() < deadline,
                "{client_id} still online after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A WebSocket connection whose client is gone: connected, closed by the client, and
    /// seen offline by the API. Returns its (well-formed) clientId.
    pub fn gone_client_id(&self, system_id: &str) -> String {
        let mut c: Client = self.ws(system_id);
        let id = c.client_id.clone();
        c.close_cleanly();
        self.wait_offline(system_id, &id, WAIT);
        id
    }
}

/// Calls written at once by `pipelined` before their answers are read: their answers
/// (about 120 bytes each) stay under the node's default `api.max_pending_answers`
/// (64 KiB), past which it stops reading the connection — a writer that is not reading
/// would then wait on full socket buffers (small under TCP memory pressure) until the
/// node closes the connection for answers left unread.
const PIPELINED: usize = 256;

/// API calls of `system` written on `conn` pipelined, [`PIPELINED`] at a time, each a
/// POST of (path, body), and their answers read in order: (status, JSON body) each. Ten
/// thousand calls take a moment this way, minutes one after another.
pub fn pipelined<'a>(
    conn: &mut HttpConn,
    system: &str,
    calls: impl IntoIterator<Item = (&'a str, Value)>,
) -> Vec<(u16, Value)> {
    let mut answers = Vec::new();
    let mut calls = calls.into_iter().peekable();
    while calls.peek().is_some() {
        let mut bytes = Vec::new();
        let mut n = 0;
        for (path, body) in calls.by_ref().take(PIPELINED) {
            let body = body.to_string();
            bytes.extend(conn.format_request(
                "POST",
                path,
                &[("SystemId", system)],
                body.as_bytes(),
            ));
            n += 1;
        }
        conn.send_raw(&bytes);
        for i in 0..n {
            let r = conn
                .read_response(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("pipelined call {} of a round of {n}: {e}", i + 1));
            answers.push((r.status, r.json()));
        }
    }
    answers
}

// ---------------------------------------------------------------------------
// API envelope assertions
// ---------------------------------------------------------------------------

/// Asserts `{"code":0,"msg":"success","data":…}` with HTTP 200; returns `data`.
pub fn expect_ok(resp: (u16, Value)) -> Value {
    let (status, v) = resp;
    assert_eq!(status, 200, "expected HTTP 200, got {status}: {v}");
    assert_eq!(v["code"], json!(0), "expected code 0: {v}");
    assert_eq!(v["msg"], json!("success"), "expected msg success: {v}");
    assert!(v.get("data").is_some(), "success without data: {v}");
    v["data"].clone()
}

/// Asserts `{"code":-1,"msg":msg}` with HTTP `status`.
pub fn expect_err(resp: (u16, Value), status: u16, msg: &str) {
    let (st, v) = resp;
    assert_eq!(
        (st, v["code"].clone(), v["msg"].clone()),
        (status, json!(-1), json!(msg)),
        "expected HTTP {status} code -1 msg {msg:?}, got HTTP {st}: {v}"
    );
}

pub fn is_message_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Asserts `v` is a messageId (16 lowercase hex characters); returns it.
pub fn assert_message_id(v: &Value) -> String {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("messageId not a string: {v}"));
    assert!(is_message_id(s), "messageId is not 16 lowercase hex: {s:?}");
    s.to_string()
}

/// `s` is 22 characters of base64url (the clientId form of docs/api.md §3).
pub fn is_client_id_form(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The message id of a send answer.
pub fn message_id_of(data: &Value) -> String {
    assert_message_id(&data["messageId"])
}

/// `{groupName: count}` of a get_group_list answer.
pub fn group_counts(data: &Value) -> BTreeMap<String, u64> {
    data["list"]
        .as_array()
        .unwrap_or_else(|| panic!("group list is not an array: {data}"))
        .iter()
        .map(|g| {
            (
                g["groupName"].as_str().unwrap().to_string(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Timed API calls
// ---------------------------------------------------------------------------

/// One API answer with its timing.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// When the request was about to be sent.
    pub sent_at: Instant,
    /// From `sent_at` to the complete answer.
    pub took: Duration,
}

impl Answer {
    /// The success envelope's `data` (asserts HTTP 200, code 0, msg success).
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected HTTP 200: {}", self.body);
        assert_eq!(
            self.body["code"],
            json!(0),
            "expected code 0: {}",
            self.body
        );
        assert_eq!(
            self.body["msg"],
            json!("success"),
            "expected success: {}",
            self.body
        );
        self.body["data"].clone()
    }

    pub fn is_ok(&self) -> bool {
        self.status == 200 && self.body["code"] == json!(0)
    }

    /// Whether this is the failure `{"code":-1,"msg":msg}` with HTTP `status`.
    pub fn is_err(&self, status: u16, msg: &str) -> bool {
        self.status == status && self.body["code"] == json!(-1) && self.body["msg"] == json!(msg)
    }

    /// `data.partial == true`.
    pub fn partial(&self) -> bool {
        self.body["data"]["partial"] == json!(true)
    }

    /// Asserts the answer came within `limit`.
    pub fn within(&self, limit: Duration, what: &str) -> &Answer {
        assert!(
            self.took <= limit,
            "{what}: answered after {:.3}s, limit {:.3}s: {}",
            self.took.as_secs_f64(),
            limit.as_secs_f64(),
            self.body
        );
        self
    }
}

/// POST `path` on a fresh connection; Err when the node gives no complete answer within
/// `limit` (a node that refuses the connection makes it panic).
pub fn try_api(
    node: &Node,
    path: &str,
    system_id: Option<&str>,
    body: &Value,
    limit: Duration,
) -> Result<Answer, String> {
    let sent_at = Instant::now();
    let mut conn = HttpConn::connect(node.addr());
    let headers: Vec<(&str, &str)> = system_id.map(|s| ("SystemId", s)).into_iter().collect();
    let bytes = conn.format_request("POST", path, &headers, body.to_string().as_bytes());
    conn.try_send_raw(&bytes).map_err(|e| e.to_string())?;
    let resp = conn.read_response(limit)?;
    let took = sent_at.elapsed();
    let body = serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "HTTP {} body is not JSON ({e}): {:?}",
            resp.status,
            resp.text()
        )
    })?;
    Ok(Answer {
        status: resp.status,
        body,
        sent_at,
        took,
    })
}

/// POST `path` and measure it; panics when no answer arrives within `HANG` (5 s).
pub fn api_timed(node: &Node, path: &str, system_id: Option<&str>, body: &Value) -> Answer {
    try_api(node, path, system_id, body, HANG)
        .unwrap_or_else(|e| panic!("POST {path} {body} on {}: {e}", node.addr()))
}

/// Asserts `data` has no `partial` key (an answer that left no node out).
pub fn assert_not_partial(data: &Value, what: &str) {
    assert!(
        data.get("partial").is_none(),
        "{what}: every node is up, yet the answer carries partial: {data}"
    );
}
