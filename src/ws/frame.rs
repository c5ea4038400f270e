//! RFC 6455 frame bytes: the one place WebSocket framing is written.
//!
//! The node sends only unmasked server frames: text frames built in one
//! allocation (the payload is written after room for the longest header,
//! then the header — computed from the length actually written, so it can
//! never disagree with the payload — goes in front), compressed data frames
//! (RSV1, `deflate`), close frames and empty pings. Clients' frames are
//! decoded by tungstenite, behind `deflate::inbound` on connections that
//! negotiated permessage-deflate; [`client_frame`] and [`parse_head`] serve
//! that filter, the load generator and the tests, which speak the protocol
//! by hand.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::json::Part;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The first header byte's FIN bit.
pub const FIN: u8 = 0x80;
/// The first header byte's RSV1 bit: "compressed" under permessage-deflate
/// (RFC 7692 §6).
pub const RSV1: u8 = 0x40;
/// All three reserved bits.
pub const RSV_BITS: u8 = 0x70;

/// Longest frame header without a mask: 2 bytes + 64-bit length.
pub const MAX_HEADER: usize = 10;
/// Longest client frame header: [`MAX_HEADER`] + 4 mask bytes.
pub const MAX_CLIENT_HEADER: usize = MAX_HEADER + 4;

/// A protocol ping with no payload.
pub const PING_FRAME: &[u8] = &[0x80 | OP_PING, 0x00];

/// A frame header: FIN, `opcode`, the length in its shortest form.
struct Header {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl Header {
    /// FIN set, then `first`: the opcode, and RSV bits if any.
    fn new(first: u8, masked: bool, payload_len: usize) -> Self {
        let mut bytes = [0u8; MAX_HEADER];
        bytes[0] = FIN | first;
        let mask = if masked { 0x80 } else { 0 };
        let len = match u16::try_from(payload_len) {
            Ok(n @ 0..=125) => {
                bytes[1] = mask | n as u8;
                2
            }
            Ok(n) => {
                bytes[1] = mask | 126;
                bytes[2..4].copy_from_slice(&n.to_be_bytes());
                4
            }
            Err(_) => {
                bytes[1] = mask | 127;
                bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
                10
            }
        };
        Header { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends the header of a server text frame carrying `payload_len` bytes.
pub fn text_header(payload_len: usize, out: &mut BytesMut) {
    out.extend_from_slice(Header::new(OP_TEXT, false, payload_len).as_bytes());
}

/// A server text frame holding `payload`, in one exactly sized buffer.
pub fn text(payload: Part) -> Bytes {
    server_frame(OP_TEXT, payload)
}

/// A server frame (FIN set) whose first byte is `first` — an opcode, and
/// [`RSV1`] for a compressed message — holding `payload`, in one exactly
/// sized buffer.
pub fn server_frame(first: u8, payload: Part) -> Bytes {
    let mut buf = BytesMut::with_capacity(MAX_HEADER + payload.len());
    buf.put_bytes(0, MAX_HEADER);
    payload.put(&mut buf);
    let header = Header::new(first, false, buf.len() - MAX_HEADER);
    let start = MAX_HEADER - header.len;
    buf[start..MAX_HEADER].copy_from_slice(header.as_bytes());
    buf.advance(start);
    buf.freeze()
}

/// A server text frame holding `payload` bytes.
pub fn text_frame(payload: &[u8]) -> Bytes {
    text(Part::Raw(payload))
}

/// A server ping carrying `payload` (at most 125 bytes: a control frame).
pub fn ping_frame(payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(125)];
    let mut buf = BytesMut::with_capacity(2 + payload.len());
    buf.extend_from_slice(Header::new(OP_PING, false, payload.len()).as_bytes());
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// A server close frame with `code`.
pub fn close_frame(code: u16) -> Bytes {
    let [hi, lo] = code.to_be_bytes();
    Bytes::copy_from_slice(&[0x80 | OP_CLOSE, 0x02, hi, lo])
}

/// Appends a client frame (FIN, `opcode` as given, so reserved ones and
/// RSV bits too) masked with `mask` to `out`. A zero mask writes the
/// payload as is.
pub fn client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    client_fragment(out, FIN | opcode, payload, mask);
}

/// Appends a client frame whose first header byte is `first` as given (FIN
/// clear for a fragment that is not the last), masked with `mask`.
pub fn client_fragment(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    let mut header = Header::new(0, true, payload.len());
    header.bytes[0] = first;
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if mask != [0; 4] {
        apply_mask(&mut out[start..], mask);
    }
}

/// The header of a final client frame of `opcode` carrying `payload_len`
/// bytes under a zero mask (the payload reads as it is): what
/// `deflate::inbound` puts before an inflated message for tungstenite.
/// Returns the header buffer and how many of its bytes are the header.
pub fn zero_masked_head(opcode: u8, payload_len: usize) -> ([u8; MAX_CLIENT_HEADER], usize) {
    let header = Header::new(opcode, true, payload_len);
    let mut bytes = [0u8; MAX_CLIENT_HEADER];
    bytes[..header.len].copy_from_slice(header.as_bytes());
    (bytes, header.len + 4)
}

/// XORs `payload` with the repeated `mask` (masking and unmasking alike).
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// A frame header as read off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub fin: bool,
    /// The reserved bits as they stand in the first byte ([`RSV_BITS`]).
    pub rsv: u8,
    pub opcode: u8,
    /// Bytes of header (including a mask key, if any).
    pub header_len: usize,
    pub payload_len: u64,
    pub masked: bool,
}

impl Head {
    pub fn frame_len(&self) -> u64 {
        (self.header_len as u64).saturating_add(self.payload_len)
    }
}

/// The header at the start of `buf`, or None while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Option<Head> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut header_len) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if masked {
        header_len += 4;
        if buf.len() < header_len {
            return None;
        }
    }
    Some(Head {
        fin: b0 & FIN != 0,
        rsv: b0 & RSV_BITS,
        opcode: b0 & 0x0f,
        header_len,
        payload_len: len,
        masked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_header_lengths() {
        for (len, head) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = text_frame(&vec![b'x'; len]);
            assert_eq!(frame.len(), head + len);
            let h = parse_head(&frame).unwrap();
            assert_eq!((h.opcode, h.masked, h.header_len), (OP_TEXT, false, head));
            assert_eq!(h.frame_len(), frame.len() as u64);
            let mut out = BytesMut::new();
            text_header(len, &mut out);
            assert_eq!(&out[..], &frame[..head]);
        }
        let mut out = BytesMut::new();
        text_header(65536, &mut out);
        assert_eq!(&out[..], [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        out.clear();
        text_header(300, &mut out);
        assert_eq!(&out[..], [0x81, 126, 1, 44]);
    }

    #[test]
    fn client_frames_and_heads() {
        assert_eq!(parse_head(&[0x81]), None);
        let h = parse_head(&[0x81, 5, b'h']).unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.header_len, h.payload_len),
            (true, 1, 2, 5)
        );
        let h = parse_head(&[0x01, 126, 1, 0]).unwrap();
        assert_eq!((h.fin, h.header_len, h.payload_len), (false, 4, 256));
        assert_eq!(parse_head(&[0x82, 127, 0, 0, 0, 0, 0, 1]), None);
        let mut f = Vec::new();
        client_frame(&mut f, OP_PONG, b"abc", [0; 4]);
        assert_eq!(f, [0x8a, 0x83, 0, 0, 0, 0, b'a', b'b', b'c']);
        let mut masked = Vec::new();
        client_frame(&mut masked, OP_TEXT, b"abcde", [1, 2, 3, 4]);
        assert_eq!(&masked[..6], [0x81, 0x85, 1, 2, 3, 4]);
        let mut payload = masked[6..].to_vec();
        apply_mask(&mut payload, [1, 2, 3, 4]);
        assert_eq!(payload, b"abcde");
        let h = parse_head(&f).unwrap();
        assert!(h.masked);
        assert_eq!(h.frame_len(), 9);
        let mut long = Vec::new();
        client_frame(&mut long, OP_TEXT, &[b'y'; 300], [0; 4]);
        assert_eq!(&long[..4], [0x81, 0x80 | 126, 1, 44]);
    }

    #[test]
    fn control_frames() {
        assert_eq!(&close_frame(1001)[..], [0x88, 2, 0x03, 0xe9]);
        assert_eq!(PING_FRAME, [0x89, 0]);
        assert_eq!(&ping_frame(b"ab")[..], [0x89, 2, b'a', b'b']);
    }
}
