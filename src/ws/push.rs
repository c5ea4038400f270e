//! A push or notice as it travels: encoded once where it is made, in the
//! two forms a socket may take (docs/api.md §10) — the plain frame every
//! client reads, and the same message deflated for the connections that
//! negotiated permessage-deflate. Both are shared `Bytes`: every core,
//! every link and every recipient holds the same buffers, so a push is
//! compressed once whatever the number of recipients, and no connection
//! keeps compressor state.
//!
//! The deflated form is made with the full window (15 bits, what every
//! browser accepts); a client that asked for a smaller one
//! (`server_max_window_bits`) gets the plain form. It is absent when the
//! payload is under `ws.compression_min_size` or does not shrink.

use bytes::Bytes;

use super::deflate::{compressed_text, Deflate};
use super::frame::parse_head;

/// The window of the shared deflated form.
const SHARED_WINDOW: u8 = 15;

/// One message in the forms a socket may take.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, Default, PartialEq, Eq,
)]
pub struct Push {
    /// The frame as RFC 6455 sends it.
    pub plain: Bytes,
    /// The frame deflated (RSV1 set), or empty: send `plain`.
    pub deflated: Bytes,
}

/// How a push is encoded: `ws.compression` and `ws.compression_min_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub compress: bool,
    pub min_size: usize,
}

impl Push {
    /// A push that has only its plain form.
    pub fn plain(frame: Bytes) -> Push {
        Push {
            plain: frame,
            deflated: Bytes::new(),
        }
    }

    /// The push of the text frame `frame` (a server frame: header and
    /// payload), deflated too when `encoding` says so and it is worth it.
    pub fn encode(frame: Bytes, encoding: Encoding) -> Push {
        let deflated = encoding
            .compress
            .then(|| payload(&frame))
            .flatten()
            .and_then(|p| compressed_text(p, encoding.min_size, SHARED_WINDOW))
            .unwrap_or_default();
        Push {
            plain: frame,
            deflated,
        }
    }

    /// The form for a socket with `deflate` (None: it negotiated none).
    pub fn for_socket(&self, deflate: Option<Deflate>) -> &Bytes {
        match deflate {
            Some(d) if d.window_bits() >= SHARED_WINDOW && !self.deflated.is_empty() => {
                &self.deflated
            }
            _ => &self.plain,
        }
    }

    /// Bytes held by both forms.
    pub fn held(&self) -> usize {
        self.plain.len() + self.deflated.len()
    }

    /// Payload bytes of the plain form and of the deflated one, if any.
    pub fn payload_sizes(&self) -> (usize, Option<usize>) {
        let len = |f: &Bytes| payload(f).map_or(0, <[u8]>::len);
        let deflated = self.is_deflated().then(|| len(&self.deflated));
        (len(&self.plain), deflated)
    }

    /// Whether a deflated form exists.
    pub fn is_deflated(&self) -> bool {
        !self.deflated.is_empty()
    }

    /// The same push in buffers of its own (`CoreMsg::own_copy`).
    pub fn own_copy(&self) -> Push {
        let copy = |b: &Bytes| {
            if b.is_empty() {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(b)
            }
        };
        Push {
            plain: copy(&self.plain),
            deflated: copy(&self.deflated),
        }
    }
}

/// The payload of the unmasked server frame `frame`.
fn payload(frame: &[u8]) -> Option<&[u8]> {
    let head = parse_head(frame)?;
    frame.get(head.header_len..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Part;
    use crate::ws::deflate::inflate::inflate;
    use crate::ws::frame::{server_frame, OP_TEXT, RSV1};

    fn text(n: usize) -> Bytes {
        let json = format!("{{\"data\":\"{}\"}}", "abc,".repeat(n / 4));
        server_frame(0x80 | OP_TEXT, Part::Raw(json.as_bytes()))
    }

    const ON: Encoding = Encoding {
        compress: true,
        min_size: 256,
    };

    #[test]
    fn a_large_push_is_deflated_once_and_inflates_to_the_plain_payload() {
        let frame = text(2000);
        let push = Push::encode(frame.clone(), ON);
        assert!(push.is_deflated());
        assert!(push.deflated.len() < frame.len());
        assert_eq!(push.deflated[0] & RSV1, RSV1);
        let head = parse_head(&push.deflated).unwrap();
        let mut out = Vec::new();
        inflate(&push.deflated[head.header_len..], 1 << 20, &mut out).unwrap();
        assert_eq!(out, payload(&frame).unwrap());
    }

    #[test]
    fn small_pushes_and_compression_off_stay_plain() {
        assert!(!Push::encode(text(100), ON).is_deflated());
        let off = Encoding {
            compress: false,
            ..ON
        };
        assert!(!Push::encode(text(2000), off).is_deflated());
    }

    #[test]
    fn each_socket_gets_the_form_it_can_read() {
        let push = Push::encode(text(2000), ON);
        assert_eq!(push.for_socket(None), &push.plain);
        assert_eq!(push.for_socket(Some(Deflate::DEFAULT)), &push.deflated);
        let small = Push::encode(text(100), ON);
        assert_eq!(small.for_socket(Some(Deflate::DEFAULT)), &small.plain);
    }

    #[test]
    fn an_own_copy_shares_no_buffer() {
        let push = Push::encode(text(2000), ON);
        let copy = push.own_copy();
        assert_eq!(copy, push);
        assert_ne!(copy.plain.as_ptr(), push.plain.as_ptr());
        assert_ne!(copy.deflated.as_ptr(), push.deflated.as_ptr());
    }
}
