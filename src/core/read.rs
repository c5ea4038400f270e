//! What a connection sends us: bytes read into the core's scratch buffer,
//! fed to the connection's WebSocket codec, and the messages that come out
//! (pings answered, client messages handed to `chat`, closes honoured).

use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::Bytes;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::{WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::conn::codec::Codec;
use super::conn::reader::Readiness;
use super::conn::WsIo;
use super::Core;
use crate::config::ClientSendPolicy;
use crate::op::ConnAddr;
use crate::socket;
use crate::ws::CloseReason;

/// Size of the per-core buffer every WebSocket read lands in.
const SCRATCH_BYTES: usize = 64 * 1024;

/// What reading the core's connections needs: the epoll instance its reader
/// task waits on, the count of sockets not dropped yet, and the buffers and
/// codec lent to each read.
pub(super) struct Reader {
    /// The epoll instance of this core's connections (`conn::reader`).
    pub(super) readiness: Rc<Readiness>,
    /// WebSocket sockets not dropped yet: open connections and closed ones
    /// still lingering.
    pub(super) sockets: usize,
    scratch: Vec<u8>,
    /// The WebSocket codec lent to each read (`conn::codec`), and the
    /// settings of a new one.
    codec: Codec,
    ws_config: WebSocketConfig,
    /// Client messages read from one connection, handled after the read.
    messages: Vec<tungstenite::Utf8Bytes>,
    /// What the codec writes (pongs, close answers, echoes) during a read.
    ws_out: Vec<u8>,
}

impl Reader {
    pub(super) fn new(ws_config: WebSocketConfig) -> std::io::Result<Self> {
        Ok(Reader {
            readiness: Rc::new(Readiness::new()?),
            sockets: 0,
            scratch: vec![0; SCRATCH_BYTES],
            codec: Codec::new(ws_config),
            ws_config,
            messages: Vec::new(),
            ws_out: Vec::new(),
        })
    }
}

impl Core {
    /// Feeds bytes read from the socket to the connection's WebSocket codec
    /// and acts on every complete message.
    pub fn on_ws_input(&mut self, addr: ConnAddr, len: usize) {
        let now_ms = self.clock_ms();
        let input = std::mem::take(&mut self.reader.scratch);
        let mut output = std::mem::take(&mut self.reader.ws_out);
        let ws = &self.node.config.ws;
        let mode = match ws.client_send {
            _ if ws.echo => Mode::Echo,
            ClientSendPolicy::Off => Mode::Discard,
            _ => Mode::Collect,
        };
        let mut messages = std::mem::take(&mut self.reader.messages);
        let mut pong = None;
        let end = match self.conns.get_mut(addr) {
            Some(conn) => {
                conn.last_rx_ms = now_ms;
                let mut io = WsIo {
                    input: &input[..len],
                    output: &mut output,
                };
                // The connection's own codec if a message is partly in it,
                // else the core's, which must go back to the core at rest.
                let own = conn.codec.is_some();
                let codec = match conn.codec.as_deref_mut() {
                    Some(c) => c,
                    None => &mut self.reader.codec,
                };
                codec.note(io.input);
                let end = read_messages(&mut codec.ws, &mut io, mode, &mut messages, &mut pong);
                let at_rest = codec.at_rest();
                match (end.is_some(), own, at_rest) {
                    // Closing: a lent codec may be mid-message or closed.
                    (true, false, _) => self.reader.codec = Codec::new(self.reader.ws_config),
                    (false, true, true) => conn.codec = None,
                    (false, false, false) => {
                        let fresh = Codec::new(self.reader.ws_config);
                        conn.codec =
                            Some(Box::new(std::mem::replace(&mut self.reader.codec, fresh)));
                    }
                    _ => {}
                }
                end
            }
            None => None,
        };
        if !output.is_empty() {
            self.enqueue(addr, Bytes::copy_from_slice(&output));
            output.clear();
        }
        if self.resume_on() {
            // Anything from the client shows it got the welcome of its resume
            // (read first: most reads find nothing to clear).
            if self.replay.places.get(addr.slot).unconfirmed {
                self.replay.places.get_mut(addr.slot).unconfirmed = false;
            }
            if let Some(payload) = pong {
                self.on_pong(addr, &payload);
            }
        }
        for text in messages.drain(..) {
            self.client_message(addr, text.as_str());
        }
        self.reader.messages = messages;
        if let Some((reason, code)) = end {
            self.close_conn(addr, reason, code);
        }
        self.reader.scratch = input;
        self.reader.ws_out = output;
    }

    /// Reads what a ready connection sent (one `recv` into the scratch
    /// buffer) and acts on it; end of stream or an error closes it.
    pub fn read_conn(&mut self, addr: ConnAddr) {
        let Some(stream) = self.conns.get(addr).and_then(|c| c.stream.as_ref()) else {
            return;
        };
        let fd = stream.as_raw_fd();
        match socket::recv(fd, &mut self.reader.scratch) {
            Ok(0) => self.close_conn(addr, CloseReason::ClientClosed, None),
            Ok(n) => self.on_ws_input(addr, n),
            Err(e) if would_block(&e) => {}
            Err(_) => self.close_conn(addr, CloseReason::Error, None),
        }
    }

    /// Feeds bytes that arrived with the upgrade request.
    pub fn feed(&mut self, addr: ConnAddr, data: &[u8]) {
        let size = self.reader.scratch.len();
        for chunk in data.chunks(size) {
            self.reader.scratch[..chunk.len()].copy_from_slice(chunk);
            self.on_ws_input(addr, chunk.len());
        }
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

/// What becomes of the text messages a client sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `ws.echo`: sent back unchanged.
    Echo,
    /// `ws.client_send = "off"`: read and discarded (`ping` is answered).
    Discard,
    /// Kept for `client_message` (`ping` is answered).
    Collect,
}

/// Drains complete messages out of the codec (all of them: it is at rest
/// afterwards when the input ended on a message boundary); text messages to handle as
/// client messages go to `messages`, the payload of the newest pong to `pong`.
/// Returns why and how the connection must close, if it must.
fn read_messages(
    ws: &mut WebSocketContext,
    io: &mut WsIo<'_>,
    mode: Mode,
    messages: &mut Vec<tungstenite::Utf8Bytes>,
    pong: &mut Option<tungstenite::Bytes>,
) -> Option<(CloseReason, Option<u16>)> {
    let echo = mode == Mode::Echo;
    loop {
        let msg = match ws.read(io) {
            Ok(m) => m,
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) => return Some(close_for(&e)),
        };
        let reply = match msg {
            // The client started the close handshake. tungstenite's own reply
            // would go out with no flush before the socket is shut; answer
            // through `close_conn` instead, which sends what is queued (echoes
            // included), then the close frame, then half-closes. The code is
            // echoed (tungstenite already turned a code not allowed on the
            // wire into 1002); a close without a code gets 1000.
            Message::Close(frame) => {
                let code = frame.map_or(1000, |f| u16::from(f.code));
                return Some((CloseReason::ClientClosed, Some(code)));
            }
            Message::Pong(payload) => {
                *pong = Some(payload);
                continue;
            }
            Message::Text(t) if echo => Message::Text(t),
            Message::Binary(b) if echo => Message::Binary(b),
            Message::Text(t) if t.as_str() == "ping" => Message::text("pong"),
            Message::Text(t) if mode == Mode::Collect => {
                messages.push(t);
                continue;
            }
            // Under "off" client messages are read and discarded, as
            // go-websocket does; binary frames always are.
            _ => continue,
        };
        if let Err(e) = ws.write(io, reply) {
            return Some(close_for(&e));
        }
    }
}

/// The close reason and code for a codec error.
fn close_for(e: &WsError) -> (CloseReason, Option<u16>) {
    match e {
        // Not expected: read_messages stops at the client's close frame.
        WsError::ConnectionClosed | WsError::AlreadyClosed => (CloseReason::ClientClosed, None),
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            (CloseReason::TooLarge, Some(1009))
        }
        WsError::Utf8(_) => (CloseReason::Error, Some(1007)),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            (CloseReason::ClientClosed, None)
        }
        WsError::Protocol(_) | WsError::Capacity(_) => (CloseReason::Error, Some(1002)),
        _ => (CloseReason::Error, None),
    }
}
