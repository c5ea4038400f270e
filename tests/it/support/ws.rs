//! The WebSocket client (tungstenite's sync client on a `TcpStream`): `Client` reads the
//! welcome, then frames, pings, closes and silences with deadlines; `expect_message(s)`
//! check what a client receives; `assert_notice` checks the online / offline notices.

use std::collections::HashSet;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::api::assert_message_id;
use super::node::Node;
use super::raw_frames::set_linger_zero;
use super::{QUIET, WAIT};

impl Node {
    /// A WebSocket connection to `/ws?systemId=<system_id>` whose welcome has been read.
    pub fn ws(&self, system_id: &str) -> Client {
        Client::welcome(self.ws_connect(&format!("/ws?systemId={system_id}")))
    }

    /// The WebSocket handshake on `path_and_query`, nothing read after it.
    pub fn ws_connect(&self, path_and_query: &str) -> WebSocket<TcpStream> {
        ws_connect(self.addr(), path_and_query)
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Connects and performs the WebSocket handshake on `path_and_query`.
pub fn ws_connect(addr: &str, path_and_query: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    ws_handshake(stream, addr, path_and_query)
}

/// The WebSocket handshake on `path_and_query` over `stream`, a connection to `addr`
/// made by the caller (with socket options of its own, say).
pub fn ws_handshake(stream: TcpStream, addr: &str, path_and_query: &str) -> WebSocket<TcpStream> {
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("ws://{addr}{path_and_query}");
    match tungstenite::client::client_with_config(url.as_str(), stream, Some(ws_config())) {
        Ok((socket, _resp)) => socket,
        Err(e) => panic!("WebSocket handshake to {url} failed: {e}"),
    }
}

/// One thing read from a WebSocket.
#[derive(Debug)]
pub enum WsEvent {
    Text(String),
    /// A binary frame (the server sends none).
    Binary,
    Ping,
    Pong,
    /// A close frame, with its code (1005 when it carried none).
    Close(u16),
    /// The connection ended without (further) close frame: EOF, reset, or already closed.
    Gone(String),
    Timeout,
}

/// A WebSocket client whose welcome frame has been read.
pub struct Client {
    pub client_id: String,
    pub socket: WebSocket<TcpStream>,
}

impl Client {
    /// Reads the welcome `{"code":0,"msg":"success","data":{"clientId":…}}`.
    pub fn welcome(socket: WebSocket<TcpStream>) -> Client {
        let mut c = Client {
            client_id: String::new(),
            socket,
        };
        let w = c
            .recv_json(WAIT)
            .expect("no welcome frame within 5 s after the handshake");
        assert_eq!(w["code"], json!(0), "welcome code: {w}");
        assert_eq!(w["msg"], json!("success"), "welcome msg: {w}");
        let id = w["data"]["clientId"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without data.clientId: {w}"));
        assert!(!id.is_empty(), "empty clientId in welcome: {w}");
        c.client_id = id.to_string();
        c
    }

    /// A WebSocket connection to `/ws?systemId=<system_id>` whose welcome came within
    /// `timeout` of connecting; None when the upgrade or the welcome did not.
    pub fn try_open(node: &Node, system_id: &str, timeout: Duration) -> Option<Client> {
        let deadline = Instant::now() + timeout;
        let addr = node.addr();
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        let url = format!("ws://{addr}/ws?systemId={system_id}");
        let (socket, _) =
            tungstenite::client::client_with_config(url, stream, Some(ws_config())).ok()?;
        let mut c = Client {
            client_id: String::new(),
            socket,
        };
        let w = c.recv_json(deadline.checked_duration_since(Instant::now())?)?;
        c.client_id = w["data"]["clientId"].as_str()?.to_string();
        Some(c)
    }

    /// Reads one event, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> WsEvent {
        let t = timeout.max(Duration::from_millis(1));
        if let Err(e) = self.socket.get_ref().set_read_timeout(Some(t)) {
            return WsEvent::Gone(e.to_string());
        }
        match self.socket.read() {
            Ok(Message::Text(t)) => WsEvent::Text(t.as_str().to_owned()),
            Ok(Message::Binary(_)) => WsEvent::Binary,
            Ok(Message::Ping(_)) => WsEvent::Ping,
            Ok(Message::Pong(_)) => WsEvent::Pong,
            Ok(Message::Close(f)) => {
                // Let tungstenite send its close reply.
                let _ = self.socket.flush();
                WsEvent::Close(f.map(|f| u16::from(f.code)).unwrap_or(1005))
            }
            Ok(Message::Frame(_)) => WsEvent::Pong,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                WsEvent::Timeout
            }
            Err(e) => WsEvent::Gone(e.to_string()),
        }
    }

    /// The next text frame (pings/pongs skipped) within `timeout`; None on timeout.
    /// Panics if the connection closes or a binary frame arrives.
    pub fn recv_text(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.next_event(deadline - now) {
                WsEvent::Text(t) => return Some(t),
                WsEvent::Ping | WsEvent::Pong => {}
                WsEvent::Timeout => return None,
                other => panic!(
                    "client {}: expected a text frame, got {other:?}",
                    self.client_id
                ),
            }
        }
    }

    /// The next text frame parsed as JSON (a trailing `\n` tolerated); None on timeout.
    pub fn recv_json(&mut self, timeout: Duration) -> Option<Value> {
        self.recv_text(timeout).map(|t| {
            serde_json::from_str(t.trim_end_matches(['\n', '\r']))
                .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t:?}"))
        })
    }

    /// The next JSON frame; panics when none arrives within `timeout`.
    pub fn expect_json(&mut self, timeout: Duration) -> Value {
        let id = self.client_id.clone();
        self.recv_json(timeout)
            .unwrap_or_else(|| panic!("client {id}: no frame within {timeout:?}"))
    }

    /// The next JSON frame satisfying `pred`, skipping others; panics on timeout.
    pub fn expect_json_where(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            match self.recv_json(left) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "client {}: no matching frame within {timeout:?}",
                    self.client_id
                ),
            }
        }
    }

    /// Asserts that no text/binary frame arrives (and the connection stays open) for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.next_event(deadline - now) {
                WsEvent::Ping | WsEvent::Pong => {}
                WsEvent::Timeout => return,
                other => panic!("client {}: expected silence, got {other:?}", self.client_id),
            }
        }
    }

    /// Reads everything that arrives within `d` (text frames only), stopping at a quiet
    /// period of `QUIET`.
    pub fn drain(&mut self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.recv_json(left.min(QUIET)) {
                Some(v) => out.push(v),
                None => return out,
            }
        }
    }

    /// Waits for a close frame (skipping data frames); its code. Panics if the connection
    /// ends without one or nothing comes within `timeout`.
    pub fn expect_close(&mut self, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "client {}: no close frame within {timeout:?}",
                self.client_id
            );
            match self.next_event(left) {
                WsEvent::Close(code) => return code,
                WsEvent::Gone(e) => panic!(
                    "client {}: connection ended without a close frame: {e}",
                    self.client_id
                ),
                WsEvent::Timeout => panic!(
                    "client {}: no close frame within {timeout:?}",
                    self.client_id
                ),
                _ => {}
            }
        }
    }

    /// True when the connection ends (close frame, EOF or reset) within `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.next_event(left) {
                WsEvent::Close(_) | WsEvent::Gone(_) => return true,
                WsEvent::Timeout => return false,
                _ => {}
            }
        }
    }

    /// Sends a WebSocket ping and reads until its pong (skipping what comes before it);
    /// how long that took, None when no pong came within `timeout`.
    pub fn ping_pong(&mut self, timeout: Duration) -> Option<Duration> {
        let sent = Instant::now();
        self.socket
            .send(Message::Ping(b"probe".to_vec().into()))
            .unwrap_or_else(|e| panic!("client {}: ping failed: {e}", self.client_id));
        loop {
            let left = (sent + timeout).checked_duration_since(Instant::now())?;
            match self.next_event(left) {
                WsEvent::Pong => return Some(sent.elapsed()),
                WsEvent::Timeout => return None,
                WsEvent::Close(_) | WsEvent::Gone(_) => {
                    panic!("client {}: closed while waiting for a pong", self.client_id)
                }
                _ => {}
            }
        }
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .unwrap_or_else(|e| panic!("client {}: send failed: {e}", self.client_id));
    }

    /// Sends a close frame (1000) and waits briefly for the server's reply.
    pub fn close_cleanly(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_event(left) {
                WsEvent::Gone(_) | WsEvent::Timeout | WsEvent::Close(_) => return,
                _ => {}
            }
        }
    }

    /// Drops the TCP connection without a close frame (FIN).
    pub fn drop_abruptly(self) {
        let _ = self.socket.get_ref().shutdown(Shutdown::Both);
    }

    /// Drops the TCP connection with a reset (SO_LINGER 0), no close frame.
    pub fn reset_abruptly(self) {
        set_linger_zero(self.socket.get_ref());
    }
}

/// Connects to `/ws?systemId=<system_id>`: Ok(client) on a welcome, Err(first frame) on a
/// refusal (`-1001`).
pub fn try_ws(node: &Node, system_id: &str) -> Result<Client, Value> {
    let mut socket = node.ws_connect(&format!("/ws?systemId={system_id}"));
    socket.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    loop {
        match socket.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str().trim_end())
                    .unwrap_or_else(|e| panic!("first frame is not JSON ({e}): {t:?}"));
                if v["code"] == json!(0) {
                    let id = v["data"]["clientId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("welcome without clientId: {v}"))
                        .to_string();
                    return Ok(Client {
                        client_id: id,
                        socket,
                    });
                }
                return Err(v);
            }
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
            Ok(other) => panic!("unexpected first message {other:?}"),
            Err(e) => panic!("no first frame from {}: {e}", node.addr()),
        }
    }
}

/// Reads frames until one with `message_id` arrives (asserting nothing else arrives
/// first); returns it.
pub fn expect_message(c: &mut Client, message_id: &str, timeout: Duration) -> Value {
    let id = c.client_id.clone();
    let v = c
        .recv_json(timeout)
        .unwrap_or_else(|| panic!("client {id}: message {message_id} did not arrive"));
    assert_eq!(
        v["messageId"],
        json!(message_id),
        "client {id}: expected message {message_id}, got {v}"
    );
    v
}

/// Reads frames until every id of `message_ids` arrived exactly once, then watches for
/// `QUIET` that nothing more comes. Panics on a duplicate, an unexpected frame, or a
/// missing message after `timeout`. Returns the frames in arrival order.
pub fn expect_messages(c: &mut Client, message_ids: &[String], timeout: Duration) -> Vec<Value> {
    let wanted: HashSet<&str> = message_ids.iter().map(|s| s.as_str()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut frames = Vec::new();
    let deadline = Instant::now() + timeout;
    while seen.len() < wanted.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = c.recv_json(left).unwrap_or_else(|| {
            let missing: Vec<&&str> = wanted.iter().filter(|m| !seen.contains(**m)).collect();
            panic!(
                "client {}: {} of {} messages missing after {timeout:?}: {missing:?}",
                c.client_id,
                missing.len(),
                wanted.len()
            )
        });
        let mid = v["messageId"].as_str().unwrap_or("").to_string();
        assert!(
            wanted.contains(mid.as_str()),
            "client {}: unexpected frame {v}",
            c.client_id
        );
        assert!(
            seen.insert(mid),
            "client {}: message delivered twice: {v}",
            c.client_id
        );
        frames.push(v);
    }
    c.expect_silence(QUIET);
    frames
}

// ---------------------------------------------------------------------------
// Notices
// ---------------------------------------------------------------------------

/// Asserts `frame` is the online (1001) or offline (1002) notice of docs/api.md §4 for
/// the given connection: `data` a JSON string with exactly the keys clientId, extend,
/// userId in sorted order.
pub fn assert_notice(frame: &Value, code: i64, client_id: &str, user_id: &str, extend: &str) {
    let msg = match code {
        1001 => "客户端上线",
        1002 => "客户端下线",
        _ => panic!("not a notice code: {code}"),
    };
    assert_eq!(frame["code"], json!(code), "notice code: {frame}");
    assert_eq!(frame["msg"], json!(msg), "notice msg: {frame}");
    assert_eq!(frame["sendUserId"], json!(""), "notice sendUserId: {frame}");
    assert_message_id(&frame["messageId"]);
    let data = frame["data"]
        .as_str()
        .unwrap_or_else(|| panic!("notice data must be a JSON string: {frame}"));
    let parsed: Value = serde_json::from_str(data)
        .unwrap_or_else(|e| panic!("notice data is not JSON text ({e}): {data:?}"));
    assert_eq!(
        parsed,
        json!({"clientId": client_id, "extend": extend, "userId": user_id}),
        "notice data: {data}"
    );
    let p_client = data.find("\"clientId\"").unwrap();
    let p_extend = data.find("\"extend\"").unwrap();
    let p_user = data.find("\"userId\"").unwrap();
    assert!(
        p_client < p_extend && p_extend < p_user,
        "notice data keys not sorted: {data}"
    );
}

pub fn is_notice(v: &Value) -> bool {
    v["code"] == json!(1001) || v["code"] == json!(1002)
}

/// The clientId an offline notice (code 1002) is about; None for any other frame.
pub fn offline_notice_of(text: &str) -> Option<String> {
    if !text.contains("\"code\":1002") {
        return None;
    }
    let v: Value = serde_json::from_str(text.trim_end()).ok()?;
    if v["code"] != json!(1002) {
        return None;
    }
    let data: Value = serde_json::from_str(v["data"].as_str()?).ok()?;
    data["clientId"].as_str().map(str::to_owned)
}
