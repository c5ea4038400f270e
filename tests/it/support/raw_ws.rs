//! A raw WebSocket client for the resume tests (docs/api.md §8): what its welcome said
//! (clientId, resume token), its frames read by hand, and a real TCP reset to drop it.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::assert_message_id;
use super::node::Node;
use super::raw_frames::{raw_ws_handshake, read_raw_frame, set_linger_zero};
use super::WAIT;

/// A raw WebSocket client: what its welcome said, and its socket.
pub struct Raw {
    pub stream: TcpStream,
    pub welcome: Value,
}

impl Raw {
    /// Upgrades `/ws?<query>`; Err(first frame) when it is a refusal.
    pub fn try_open(node: &Node, query: &str) -> Result<Raw, Value> {
        Raw::try_open_at(node.addr(), query)
    }

    /// Like `try_open`, at `addr` (a proxy, say).
    pub fn try_open_at(addr: &str, query: &str) -> Result<Raw, Value> {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let (status, head) = raw_ws_handshake(&mut stream, addr, &format!("/ws?{query}"), "");
        assert_eq!(status, 101, "upgrade: {head}");
        let mut raw = Raw {
            stream,
            welcome: Value::Null,
        };
        let first = raw.next(WAIT).expect("a first frame after the 101");
        if first["code"] != json!(0) {
            return Err(first);
        }
        raw.welcome = first;
        Ok(raw)
    }

    pub fn open(node: &Node, query: &str) -> Raw {
        Raw::open_at(node.addr(), query)
    }

    pub fn open_at(addr: &str, query: &str) -> Raw {
        Raw::try_open_at(addr, query).unwrap_or_else(|v| panic!("refused: {v}"))
    }

    pub fn client_id(&self) -> String {
        self.welcome["data"]["clientId"]
            .as_str()
            .expect("clientId")
            .to_string()
    }

    pub fn token(&self) -> String {
        let t = self.welcome["data"]["resumeToken"].as_str();
        t.unwrap_or_else(|| panic!("no resumeToken: {}", self.welcome))
            .to_string()
    }

    /// `systemId=<system>&resume=<token>&last=<last>`.
    pub fn resume_query(&self, system: &str, last: &str) -> String {
        format!("systemId={system}&resume={}&last={last}", self.token())
    }

    /// The next text frame as JSON (pings skipped); None on timeout or end.
    pub fn next(&mut self, timeout: Duration) -> Option<Value> {
        self.next_raw(timeout)
            .map(|t| serde_json::from_slice(&t).expect("JSON frame"))
    }

    /// The next text frame's bytes (pings skipped).
    pub fn next_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (op, payload) =
                read_raw_frame(&mut self.stream, left.max(Duration::from_millis(1)))?;
            match op {
                1 => return Some(payload),
                9 | 10 => {}
                other => panic!("unexpected opcode {other}"),
            }
        }
    }

    /// The messageIds of the next `n` frames.
    pub fn ids(&mut self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let f = self
                    .next(WAIT)
                    .unwrap_or_else(|| panic!("frame {i} of {n} missing"));
                assert_message_id(&f["messageId"])
            })
            .collect()
    }

    /// Reads whatever arrives within `d` (notices of binds, say).
    pub fn drain(&mut self, d: Duration) {
        while self.next(d).is_some() {}
    }

    pub fn expect_silence(&mut self, d: Duration) {
        if let Some(f) = self.next(d) {
            panic!("expected nothing, got {f}");
        }
    }

    /// Drops the connection with a TCP reset: no close frame, no FIN.
    pub fn reset(self) {
        set_linger_zero(&self.stream);
    }

    /// Whether the node closed the socket (EOF, reset or abort) within `timeout`.
    /// Bytes that arrive meanwhile are read and dropped; a read that times out is
    /// not a close.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Err(e) if is_closed(&e) => return true,
                Ok(_) | Err(_) => {}
            }
        }
    }
}

/// A read error that means the peer closed the connection, not a timeout.
pub fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}
