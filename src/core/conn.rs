//! One WebSocket connection as its owning core holds it.
//!
//! The core's slab owns this state; the connection's reader task holds only
//! the stream and a `ConnSignal`. Outgoing bytes are a queue of `Bytes`
//! (a push is the same `Bytes` for every recipient), bounded by
//! `ws.send_queue_bytes`, written by the core with one `sendmsg` per drain.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use monoio::net::TcpStream;
use tungstenite::protocol::WebSocketContext;

use super::out_queue::OutQueue;
use super::rate::TokenBucket;

/// Shared between the core (which may close the connection) and the
/// connection's reader task (which must then stop reading and linger).
#[derive(Default)]
pub struct ConnSignal {
    detached: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl ConnSignal {
    pub fn detach(&self) {
        self.detached.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn is_detached(&self) -> bool {
        self.detached.get()
    }

    pub fn register(&self, waker: &Waker) {
        self.waker.set(Some(waker.clone()));
    }
}

pub struct Conn {
    pub stream: Rc<TcpStream>,
    pub signal: Rc<ConnSignal>,
    pub system: Rc<str>,
    pub client_id: Box<str>,
    pub user_id: Rc<str>,
    pub extend: Box<str>,
    pub groups: Vec<Rc<str>>,
    pub connect_time: u64,
    pub ws: WebSocketContext,
    pub out: OutQueue,
    /// Last time anything arrived from the client.
    pub last_rx: Instant,
    /// Client messages allowed (`ws.client_send_rate`).
    pub bucket: TokenBucket,
    /// Listed in the core's dirty list, waiting for a flush.
    pub dirty: bool,
    /// The socket buffer is full; a writer task waits for writability.
    pub write_waiting: bool,
}

/// Bytes handed to tungstenite and what it writes back (pongs, close
/// replies, echoes): tungstenite is used as a sans-IO codec.
pub struct WsIo<'a> {
    pub input: &'a [u8],
    pub output: &'a mut Vec<u8>,
}

impl io::Read for WsIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl io::Write for WsIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A close frame (server → client, unmasked) with `code`.
pub fn close_frame(code: u16) -> Bytes {
    let [hi, lo] = code.to_be_bytes();
    Bytes::copy_from_slice(&[0x88, 0x02, hi, lo])
}

/// A protocol ping with no payload.
pub const PING_FRAME: &[u8] = &[0x89, 0x00];

/// Why a connection ended (the names are those of the webhook `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    ClosedByApi,
    IdleTimeout,
    SlowConsumer,
    TooLarge,
    Shutdown,
    NodeLost,
    Error,
}

impl CloseReason {
    pub const ALL: [CloseReason; 8] = [
        Self::ClientClosed,
        Self::ClosedByApi,
        Self::IdleTimeout,
        Self::SlowConsumer,
        Self::TooLarge,
        Self::Shutdown,
        Self::NodeLost,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ClosedByApi => "closed_by_api",
            Self::IdleTimeout => "idle_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::TooLarge => "too_large",
            Self::Shutdown => "shutdown",
            Self::NodeLost => "node_lost",
            Self::Error => "error",
        }
    }

    /// The close frame sent before the socket closes, if any: a slow
    /// consumer's queue is full and a broken socket cannot take one.
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::ClosedByApi => Some(1000),
            Self::IdleTimeout | Self::Shutdown | Self::NodeLost => Some(1001),
            Self::TooLarge => Some(1009),
            Self::ClientClosed | Self::SlowConsumer | Self::Error => None,
        }
    }
}
