//! A connection's WebSocket codec, held only while a message is partly
//! received.
//!
//! tungstenite's `WebSocketContext` is a few hundred bytes plus its read
//! buffer, and an idle connection does not need one: between two messages
//! a connection's codec is in the same state as a fresh one (nothing
//! buffered, no frame or fragmented message begun, pongs already written).
//! So the core keeps one codec and lends it to every read; when the bytes
//! read end on a message boundary — nearly always — it stays the core's.
//! Only a connection whose input stops inside a frame or a fragmented
//! message takes a codec of its own (boxed in `Conn`) until the message
//! is complete. `Boundary` follows the framing to tell which case it is;
//! a stream it misreads is one tungstenite refuses, and the connection
//! closes with its codec.
//!
//! On a connection with permessage-deflate, what is read goes through the
//! codec's `Inbound` first (`ws::deflate::inbound`), which hands tungstenite
//! the plain frames as they came and each compressed message inflated; the
//! codec is at rest only when both are.

use std::ops::ControlFlow;

use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use crate::config::WsConfig;
use crate::ws::deflate::{Inbound, InboundError, Piece};

/// tungstenite's read buffer: small, because the spare codec of a core is
/// lent for one read at a time; client messages are small anyway.
const WS_READ_BUFFER: usize = 256;

/// The codec settings of every connection.
pub fn ws_config(ws: &WsConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(ws.max_client_message))
        .max_frame_size(Some(ws.max_client_message))
}

pub struct Codec {
    pub ws: WebSocketContext,
    boundary: Boundary,
    inbound: Inbound,
}

impl Codec {
    pub fn new(config: WebSocketConfig) -> Self {
        Self {
            ws: WebSocketContext::new(Role::Server, Some(config)),
            boundary: Boundary::default(),
            inbound: Inbound::default(),
        }
    }

    /// Follows the framing of bytes about to be fed to `ws`.
    pub fn note(&mut self, input: &[u8]) {
        self.boundary.feed(input);
    }

    /// Reads `input` of a connection with permessage-deflate: `read` gets
    /// `ws` and each piece for it, in order (plain bytes as they came, a
    /// compressed message inflated; `limit` is `ws.max_client_message`),
    /// noted first; it breaks to stop.
    pub fn feed_deflated(
        &mut self,
        input: &[u8],
        limit: usize,
        read: &mut dyn FnMut(&mut WebSocketContext, Piece<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, InboundError> {
        let Self {
            ws,
            boundary,
            inbound,
        } = self;
        inbound.feed(input, limit, &mut |piece| {
            boundary.feed(piece.bytes());
            read(ws, piece)
        })
    }

    /// Everything noted ended a message: once `ws` has read them all, it
    /// holds nothing a fresh codec does not.
    pub fn at_rest(&self) -> bool {
        self.boundary.at_rest() && self.inbound.at_rest()
    }
}

/// Where a client's byte stream is in its framing (RFC 6455 §5.2).
#[derive(Default)]
struct Boundary {
    /// The header read so far (at most 2 + 8 length + 4 mask bytes).
    head: [u8; 14],
    head_len: u8,
    /// Payload bytes of the current frame not seen yet.
    payload_left: u64,
    /// A text or binary message began without FIN: continuations follow.
    fragmented: bool,
}

impl Boundary {
    fn feed(&mut self, mut input: &[u8]) {
        while let Some((&byte, rest)) = input.split_first() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                self.payload_left -= n as u64;
                input = &input[n..];
                continue;
            }
            self.head[usize::from(self.head_len)] = byte;
            self.head_len += 1;
            input = rest;
            if self.header_len() == Some(usize::from(self.head_len)) {
                self.end_header();
            }
        }
    }

    /// The whole header's length, once its first two bytes are known.
    fn header_len(&self) -> Option<usize> {
        if self.head_len < 2 {
            return None;
        }
        let b1 = self.head[1];
        let extended = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        Some(2 + extended + mask)
    }

    fn end_header(&mut self) {
        let h = &self.head;
        let len = match h[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        let fin = h[0] & 0x80 != 0;
        match h[0] & 0x0f {
            // Text or binary: a message without FIN goes on in continuations.
            1 | 2 => self.fragmented = !fin,
            // Continuation: FIN ends the message.
            0 if fin => self.fragmented = false,
            // Control frames may come between fragments and change nothing.
            _ => {}
        }
        self.payload_left = len;
        self.head_len = 0;
    }

    fn at_rest(&self) -> bool {
        self.head_len == 0 && self.payload_left == 0 && !self.fragmented
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame with `len` payload bytes of `x`.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![u8::from(fin) << 7 | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0; 4]); // a zero mask: the payload reads as sent
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    /// Feeds `stream` cut at `cut`, returning whether each part ended at rest.
    fn rests(stream: &[u8], cut: usize) -> (bool, bool) {
        let mut b = Boundary::default();
        b.feed(&stream[..cut]);
        let first = b.at_rest();
        b.feed(&stream[cut..]);
        (first, b.at_rest())
    }

    #[test]
    fn whole_frames_end_at_rest_and_every_cut_inside_does_not() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let f = frame(true, 1, len);
            assert_eq!(rests(&f, f.len()), (true, true), "len {len}");
            for cut in 1..f.len().min(20) {
                assert_eq!(rests(&f, cut), (false, true), "len {len} cut {cut}");
            }
            assert_eq!(rests(&f, f.len() - 1), (false, true), "len {len}");
        }
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut s = frame(true, 1, 10);
        s.extend(frame(true, 9, 0));
        s.extend(frame(true, 2, 200));
        let mut b = Boundary::default();
        b.feed(&s);
        assert!(b.at_rest());
    }

    #[test]
    fn a_fragmented_message_is_at_rest_only_after_its_last_fragment() {
        let mut b = Boundary::default();
        b.feed(&frame(false, 1, 3));
        assert!(!b.at_rest());
        b.feed(&frame(true, 9, 2));
        assert!(!b.at_rest(), "a ping between fragments");
        b.feed(&frame(false, 0, 3));
        assert!(!b.at_rest());
        b.feed(&frame(true, 0, 3));
        assert!(b.at_rest());
    }

    #[test]
    fn a_context_at_rest_reads_like_a_fresh_one() {
        let cfg = ws_config(&WsConfig::default());
        let mut lent = Codec::new(cfg);
        let mut out = Vec::new();
        let read_all = |codec: &mut Codec, bytes: &[u8], out: &mut Vec<u8>| {
            codec.note(bytes);
            let mut io = super::super::WsIo {
                input: bytes,
                output: out,
            };
            let mut got = Vec::new();
            loop {
                match codec.ws.read(&mut io) {
                    Ok(m) => got.push(m),
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock =>
                    {
                        return got
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        };
        let mut ping = frame(true, 9, 0);
        ping.extend(frame(true, 1, 4));
        assert_eq!(read_all(&mut lent, &ping, &mut out).len(), 2);
        assert!(lent.at_rest());
        assert!(!out.is_empty(), "the pong is written before the read ends");
        let text = frame(true, 1, 7);
        let msgs = read_all(&mut lent, &text, &mut out);
        assert_eq!(msgs, vec![tungstenite::Message::text("xxxxxxx")]);
    }
}
