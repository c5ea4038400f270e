//! What a connection sends us: bytes read into the core's scratch buffer,
//! fed to the connection's WebSocket codec (through its inflating path when
//! the connection negotiated permessage-deflate), and the messages that
//! come out (pings answered, client messages handed to `chat`, closes
//! honoured, echoes compressed when they can be).

use std::ops::ControlFlow;
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
use crate::metrics::CoreMetrics;
use crate::op::ConnAddr;
use crate::socket;
use crate::ws::deflate::{compressed_frame, Deflate, InboundError, Piece};
use crate::ws::frame::{parse_head, OP_BINARY, OP_TEXT};
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
            // A client may `recover` a group's history whatever the policy.
            ClientSendPolicy::Off if self.node.config.history.groups.is_empty() => Mode::Discard,
            _ => Mode::Collect,
        };
        let mut messages = std::mem::take(&mut self.reader.messages);
        let mut pong = None;
        let mut r = OneRead {
            mode,
            messages: &mut messages,
            pong: &mut pong,
            deflate: None,
            metrics: self.node.metrics.core(usize::from(self.id)),
        };
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
                r.deflate = conn.out.deflate.map(|d| (d, ws.compression_min_size));
                let end = match conn.out.deflate {
                    None => {
                        codec.note(io.input);
                        read_messages(&mut codec.ws, &mut io, &mut r)
                    }
                    Some(_) => read_deflated(codec, &mut io, ws.max_client_message, &mut r),
                };
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

/// Why and how a connection must close, if it must.
type End = Option<(CloseReason, Option<u16>)>;

/// What one read of a connection does with the messages it finds.
struct OneRead<'a> {
    mode: Mode,
    /// Text messages to handle as client messages.
    messages: &'a mut Vec<tungstenite::Utf8Bytes>,
    /// The payload of the newest pong.
    pong: &'a mut Option<tungstenite::Bytes>,
    /// The connection's permessage-deflate and `ws.compression_min_size`:
    /// echoes go back compressed.
    deflate: Option<(Deflate, usize)>,
    metrics: &'a CoreMetrics,
}

/// Drains complete messages out of the codec (all of them: it is at rest
/// afterwards when the input ended on a message boundary).
fn read_messages(ws: &mut WebSocketContext, io: &mut WsIo<'_>, r: &mut OneRead<'_>) -> End {
    let echo = r.mode == Mode::Echo;
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
                *r.pong = Some(payload);
                continue;
            }
            Message::Text(t) if echo => Message::Text(t),
            Message::Binary(b) if echo => Message::Binary(b),
            Message::Text(t) if t.as_str() == "ping" => Message::text("pong"),
            Message::Text(t) if r.mode == Mode::Collect => {
                r.messages.push(t);
                continue;
            }
            // Under "off" client messages are read and discarded, as
            // go-websocket does; binary frames always are.
            _ => continue,
        };
        if r.echo_compressed(&reply, io.output) {
            continue;
        }
        if let Err(e) = ws.write(io, reply) {
            return Some(close_for(&e));
        }
    }
}

impl OneRead<'_> {
    /// Writes an echo compressed, when the connection has deflate and it
    /// shrinks (docs/api.md §10); false when it is to go plain.
    fn echo_compressed(&self, reply: &Message, output: &mut Vec<u8>) -> bool {
        let (Mode::Echo, Some((deflate, min_size))) = (self.mode, self.deflate) else {
            return false;
        };
        let (opcode, payload) = match reply {
            Message::Text(t) => (OP_TEXT, t.as_bytes()),
            Message::Binary(b) => (OP_BINARY, &b[..]),
            _ => return false,
        };
        let bits = deflate.window_bits();
        let Some(frame) = compressed_frame(opcode, payload, min_size, bits) else {
            return false;
        };
        let head = parse_head(&frame).map_or(0, |h| h.header_len);
        self.metrics.compressed(payload.len(), frame.len() - head);
        output.extend_from_slice(&frame);
        true
    }
}

/// [`read_messages`] for a connection with permessage-deflate: what tungstenite
/// is to read comes through the codec's inflating path, piece by piece.
fn read_deflated(codec: &mut Codec, io: &mut WsIo<'_>, limit: usize, r: &mut OneRead<'_>) -> End {
    let mut end = None;
    let output = &mut *io.output;
    let fed = codec.feed_deflated(io.input, limit, &mut |ws, piece| {
        if let Piece::Inflated {
            compressed,
            inflated,
            ..
        } = piece
        {
            r.metrics.inflated(compressed, inflated);
        }
        let mut io = WsIo {
            input: piece.bytes(),
            output: &mut *output,
        };
        end = read_messages(ws, &mut io, r);
        match end {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    });
    match fed {
        Ok(_) => end,
        Err(e) => {
            r.metrics.inbound_failed(&e);
            Some(close_for_inbound(&e))
        }
    }
}

/// The close reason and code for a compressed message that cannot be read.
fn close_for_inbound(e: &InboundError) -> (CloseReason, Option<u16>) {
    match e {
        InboundError::TooLarge => (CloseReason::TooLarge, Some(1009)),
        InboundError::Corrupt => (CloseReason::Error, Some(1007)),
        InboundError::Protocol(_) => (CloseReason::Error, Some(1002)),
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
