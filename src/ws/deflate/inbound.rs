//! Compressed client messages, read in front of tungstenite.
//!
//! tungstenite 0.30 has no permessage-deflate and fails any frame with RSV1
//! set. On a connection that negotiated deflate, the bytes read therefore
//! pass through [`Inbound`] first: every frame that is not part of a
//! compressed message (control frames, plain messages, their continuations)
//! goes through as it came — tungstenite then judges it as it would without
//! deflate, RSV bits included — while the frames of a compressed message
//! (RSV1 on its first frame, RFC 7692 §6) are taken out, unmasked and
//! collected; at its last frame the message is inflated (`inflate`) and
//! handed on as one plain, final frame under a zero mask. So tungstenite
//! still does everything else — UTF-8, control frames, the close handshake,
//! `ws.max_client_message` on what it is given — and nothing here answers
//! the client.
//!
//! What a connection holds between reads is its own (a header cut by a
//! read, the frame under way, the compressed bytes of a message not
//! complete); at rest — nothing of the kind — it is empty, as the codec
//! lent by the core requires (`core::conn::codec`). The compressed bytes of
//! one message are bounded by [`compressed_limit`], checked against each
//! frame's declared length before any of its payload is kept.

use std::ops::ControlFlow;

use super::inflate::{inflate, InflateError};
use crate::ws::frame::{self, Head, MAX_CLIENT_HEADER, OP_BINARY, OP_CONT, OP_TEXT, RSV1};

/// Why a connection's input cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// RFC 6455 / 7692 broken (close 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A message larger than `ws.max_client_message`, inflated (close 1009).
    #[error("message too large")]
    TooLarge,
    /// A compressed message that does not inflate (close 1007).
    #[error("invalid compressed data")]
    Corrupt,
}

impl From<InflateError> for InboundError {
    fn from(e: InflateError) -> Self {
        match e {
            InflateError::TooLarge => Self::TooLarge,
            InflateError::Corrupt => Self::Corrupt,
        }
    }
}

/// Most compressed bytes one message may have, for a limit of `limit`
/// bytes inflated: more than any deflate encoder writes for `limit` bytes
/// (stored blocks add 5 bytes per 64 KiB; fixed Huffman codes at worst 9
/// bits per byte), so a message within the limit is never refused for its
/// compressed size, and one past it is refused before it is even kept.
pub fn compressed_limit(limit: usize) -> usize {
    limit.saturating_add(limit / 8).saturating_add(1024)
}

/// A connection's compressed input in progress (see the module doc).
#[derive(Default)]
pub struct Inbound {
    /// The header read so far.
    head: [u8; MAX_CLIENT_HEADER],
    head_len: u8,
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// The current frame belongs to a compressed message.
    taking: bool,
    /// Its mask, and where in the mask its next byte is.
    mask: [u8; 4],
    mask_at: u8,
    /// The current frame is the last of its message.
    fin: bool,
    /// A compressed message under way: its opcode.
    message: Option<u8>,
    /// Its compressed bytes so far.
    bytes: Vec<u8>,
    /// A plain text or binary message began without FIN.
    plain_open: bool,
}

/// What [`Inbound::feed`] hands on for tungstenite to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes as the client sent them.
    Plain(&'a [u8]),
    /// A compressed message, inflated: one final frame under a zero mask,
    /// how many compressed bytes it came from and how many it inflated to.
    Inflated {
        frame: &'a [u8],
        compressed: usize,
        inflated: usize,
    },
}

impl<'a> Piece<'a> {
    /// The bytes for tungstenite.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Piece::Plain(b) => b,
            Piece::Inflated { frame, .. } => frame,
        }
    }
}

/// Where the pieces go: breaks to stop reading (the connection closes).
pub type Sink<'s> = dyn FnMut(Piece<'_>) -> ControlFlow<()> + 's;

impl Inbound {
    /// Nothing held: no header, frame or message under way.
    pub fn at_rest(&self) -> bool {
        self.head_len == 0 && self.left == 0 && self.message.is_none() && !self.plain_open
    }

    /// Reads `input`, handing `sink` every piece tungstenite is to read, in
    /// order: bytes of the input itself, or a whole inflated message as one
    /// frame. `limit` is `ws.max_client_message`, applied to what a message
    /// inflates to. `sink` breaks to stop (the connection is closing); an
    /// error says why the input cannot be read on.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        limit: usize,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, InboundError> {
        while !input.is_empty() {
            let flow = match self.left {
                0 => self.header_byte(&mut input, limit, sink)?,
                _ => self.payload(&mut input, limit, sink)?,
            };
            if flow.is_break() {
                return Ok(flow);
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Takes header bytes; once the header is whole, decides its frame.
    fn header_byte(
        &mut self,
        input: &mut &[u8],
        limit: usize,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, InboundError> {
        let Some((&b, rest)) = input.split_first() else {
            return Ok(ControlFlow::Continue(()));
        };
        *input = rest;
        self.head[usize::from(self.head_len)] = b;
        self.head_len += 1;
        let Some(head) = frame::parse_head(&self.head[..usize::from(self.head_len)]) else {
            return Ok(ControlFlow::Continue(()));
        };
        let len = usize::from(self.head_len);
        if head.header_len != len {
            return Ok(ControlFlow::Continue(()));
        }
        self.head_len = 0;
        self.left = head.payload_len;
        self.fin = head.fin;
        self.taking = self.takes(&head, limit)?;
        if self.taking {
            self.mask.copy_from_slice(&self.head[len - 4..len]);
            self.mask_at = 0;
            return self.end_of_frame_if_empty(limit, sink);
        }
        Ok(sink(Piece::Plain(&self.head[..len])))
    }

    /// Whether the frame of `head` belongs to a compressed message (and
    /// checks what RFC 7692 asks of it); plain frames are tracked enough to
    /// tell which continuations are whose.
    fn takes(&mut self, head: &Head, limit: usize) -> Result<bool, InboundError> {
        let compressed = head.rsv == RSV1;
        let taking = match head.opcode {
            OP_TEXT | OP_BINARY if self.message.is_some() => {
                return Err(InboundError::Protocol(
                    "a new message inside a compressed one",
                ))
            }
            OP_TEXT | OP_BINARY if compressed && self.plain_open => {
                return Err(InboundError::Protocol(
                    "a new message inside a fragmented one",
                ))
            }
            OP_TEXT | OP_BINARY if compressed => {
                self.message = Some(head.opcode);
                true
            }
            OP_TEXT | OP_BINARY => {
                self.plain_open = !head.fin;
                false
            }
            OP_CONT if self.message.is_some() => {
                if head.rsv != 0 {
                    return Err(InboundError::Protocol("RSV bits on a continuation frame"));
                }
                true
            }
            OP_CONT => {
                self.plain_open &= !head.fin;
                false
            }
            _ => false,
        };
        if taking {
            if !head.masked {
                return Err(InboundError::Protocol("an unmasked client frame"));
            }
            let kept = self.bytes.len() as u64;
            if kept.saturating_add(head.payload_len) > compressed_limit(limit) as u64 {
                return Err(InboundError::TooLarge);
            }
        }
        Ok(taking)
    }

    /// Payload bytes of the current frame: passed on, or kept unmasked.
    fn payload(
        &mut self,
        input: &mut &[u8],
        limit: usize,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, InboundError> {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let (now, rest) = input.split_at(n);
        *input = rest;
        self.left -= n as u64;
        if !self.taking {
            return Ok(sink(Piece::Plain(now)));
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(now);
        let at = usize::from(self.mask_at);
        for (i, b) in self.bytes[start..].iter_mut().enumerate() {
            *b ^= self.mask[(at + i) % 4];
        }
        self.mask_at = ((at + n) % 4) as u8;
        self.end_of_frame_if_empty(limit, sink)
    }

    /// At the end of the last frame of a compressed message: inflates it
    /// and hands it on.
    fn end_of_frame_if_empty(
        &mut self,
        limit: usize,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, InboundError> {
        if self.left > 0 || !self.fin {
            return Ok(ControlFlow::Continue(()));
        }
        let Some(opcode) = self.message.take() else {
            return Ok(ControlFlow::Continue(()));
        };
        self.taking = false;
        let compressed = std::mem::take(&mut self.bytes);
        inflated_frame(opcode, &compressed, limit, sink)
    }
}

thread_local! {
    /// The core's buffer for an inflated message and the header before it.
    static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A core's frame buffer larger than this is given back after use.
const FRAME_KEEP: usize = 256 * 1024;

/// Inflates one message and hands it to `sink` as one final frame under a
/// zero mask (room for the longest header is left before the payload; the
/// header goes right in front of it).
fn inflated_frame(
    opcode: u8,
    compressed: &[u8],
    limit: usize,
    sink: &mut Sink,
) -> Result<ControlFlow<()>, InboundError> {
    // Taken out while in use (a fresh one if ever it were not there).
    let taken = FRAME.with(|f| f.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)));
    let mut buf = taken.unwrap_or_default();
    buf.clear();
    buf.resize(MAX_CLIENT_HEADER, 0);
    let result = inflate(compressed, limit, &mut buf).map(|()| {
        let inflated = buf.len() - MAX_CLIENT_HEADER;
        let (head, len) = frame::zero_masked_head(opcode, inflated);
        let start = MAX_CLIENT_HEADER - len;
        buf[start..MAX_CLIENT_HEADER].copy_from_slice(&head[..len]);
        sink(Piece::Inflated {
            frame: &buf[start..],
            compressed: compressed.len(),
            inflated,
        })
    });
    if buf.capacity() <= FRAME_KEEP {
        FRAME.with(|f| {
            if let Ok(mut kept) = f.try_borrow_mut() {
                *kept = buf;
            }
        });
    }
    Ok(result?)
}

#[cfg(test)]
mod tests;
