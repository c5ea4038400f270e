//! Just enough of RFC 6455 for a load generator: the header of a server frame (where
//! it ends, how long its payload is) and the few client frames it sends (pong, close),
//! masked with a zero key so the payload is written as is.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub fin: bool,
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
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as u64, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if masked {
        header_len += 4;
        if buf.len() < header_len {
            return None;
        }
    }
    Some(Head {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        header_len,
        payload_len: len,
        masked,
    })
}

/// Appends a masked client frame (zero mask key) to `out`.
pub fn client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
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
        client_frame(&mut f, OP_PONG, b"abc");
        assert_eq!(f, [0x8a, 0x83, 0, 0, 0, 0, b'a', b'b', b'c']);
        let h = parse_head(&f).unwrap();
        assert!(h.masked);
        assert_eq!(h.frame_len(), 9);
    }
}
