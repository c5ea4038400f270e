//! One WebSocket connection, as its owning core holds it: the one home of
//! a connection's state (`Conn`), its outgoing queue (`out_queue`) and its
//! reader task (`session`).
//!
//! The core's slab owns this state; the connection's reader task holds only
//! the stream and a `ConnSignal`. Outgoing bytes are a queue of `Bytes`
//! (a push is the same `Bytes` for every recipient), bounded by
//! `ws.send_queue_bytes`, written by the core with one `sendmsg` per drain.

pub mod out_queue;
pub mod session;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use monoio::net::TcpStream;
use tungstenite::protocol::WebSocketContext;

use super::rate::TokenBucket;
use out_queue::OutQueue;

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
    /// To be closed once the fan-out under way is over (`write.rs`).
    pub doomed: bool,
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
