//! Sealed link frames: after the handshake every frame body travels
//! encrypted and authenticated with AES-256-GCM.
//!
//! Why: a CRC only catches accidents. Without a MAC, anything that can sit
//! between two nodes (a byte relay on the private network, a fake node
//! address registered in etcd) could read every tenant's pushes, inject
//! frames of its own and replay recorded ones, which the node would deliver
//! again. Each direction of each link has its own key (derived in
//! `handshake.rs` from the secret, both nonces and both node ids) and its own
//! frame counter, which is the GCM nonce. So a frame opens only on the link,
//! in the direction and at the position it was sealed for: an altered,
//! injected, replayed, reordered or dropped frame fails to open, and the
//! caller closes the link.
//!
//! On the wire a sealed frame is
//!
//! ```text
//! u32 LE body length | AES-256-GCM(body) | 16-byte tag
//! ```
//!
//! with the 4-byte length as associated data and the nonce `0u32 ‖ u64 LE
//! counter`; the counter starts at 0 in both directions of every link. The
//! body is the rkyv archive of one frame (`frame.rs`), with no CRC: the tag
//! covers it. Sealing and opening work in place on the caller's buffers, so
//! the hot path allocates nothing per frame.
//!
//! A pure codec over byte slices, like `frame.rs`: fuzzed and unit-tested
//! without sockets.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use bytes::{BufMut, BytesMut};

use super::frame::MAX_BODY;
use super::handshake::Key;

/// Bytes before the sealed body: its length, `u32` little-endian.
pub const HEADER_LEN: usize = 4;
/// Bytes after the sealed body: the GCM tag.
pub const TAG_LEN: usize = 16;

/// Why bytes from a peer (or a frame to send) cannot be sealed or opened;
/// any of these closes the link.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed frame body of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("sealed frame failed to open (altered, injected, replayed or out of order)")]
    Open,
    #[error("link frame counter exhausted")]
    Exhausted,
}

/// One direction of one link: its cipher and the counter of the next frame.
struct Direction {
    cipher: Aes256Gcm,
    counter: u64,
}

impl Direction {
    fn new(key: &Key, counter: u64) -> Self {
        Self {
            cipher: Aes256Gcm::new(&(*key).into()),
            counter,
        }
    }

    /// The GCM nonce of the next frame. The counter never wraps: a nonce
    /// must never be used twice under one key.
    fn nonce(&self) -> Result<Nonce<aes_gcm::aead::consts::U12>, SealError> {
        if self.counter == u64::MAX {
            return Err(SealError::Exhausted);
        }
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.counter.to_le_bytes());
        Ok(n.into())
    }
}

/// Seals the frames one side sends on one link.
pub struct Sealer(Direction);

/// Opens the frames one side receives on one link, in order.
pub struct Opener(Direction);

impl Sealer {
    pub fn new(key: &Key) -> Self {
        Self::at(key, 0)
    }

    /// A sealer whose next frame is number `counter`. A link always starts
    /// at 0; this is for tests and the fuzzer.
    pub fn at(key: &Key, counter: u64) -> Self {
        Self(Direction::new(key, counter))
    }

    /// Appends the sealed frame of `body` to `out` and returns its size on
    /// the wire. On error `out` is unchanged and the counter did not move.
    pub fn seal(&mut self, body: &[u8], out: &mut BytesMut) -> Result<usize, SealError> {
        let len = match u32::try_from(body.len()) {
            Ok(n) if body.len() <= MAX_BODY => n,
            _ => return Err(SealError::TooLong(body.len())),
        };
        let nonce = self.0.nonce()?;
        let start = out.len();
        let wire = HEADER_LEN + body.len() + TAG_LEN;
        out.reserve(wire);
        out.put_u32_le(len);
        out.extend_from_slice(body);
        let Some((head, rest)) = out
            .get_mut(start..)
            .and_then(|s| s.split_first_chunk_mut::<HEADER_LEN>())
        else {
            out.truncate(start);
            return Err(SealError::TooLong(body.len()));
        };
        match self
            .0
            .cipher
            .encrypt_inout_detached(&nonce, &head[..], rest.into())
        {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                self.0.counter += 1;
                Ok(wire)
            }
            Err(_) => {
                out.truncate(start);
                Err(SealError::TooLong(body.len()))
            }
        }
    }
}

impl Opener {
    pub fn new(key: &Key) -> Self {
        Self::at(key, 0)
    }

    /// An opener expecting frame number `counter` next. A link always
    /// starts at 0; this is for tests and the fuzzer.
    pub fn at(key: &Key, counter: u64) -> Self {
        Self(Direction::new(key, counter))
    }

    /// Opens the sealed frame at the start of `buf`, decrypting it in place:
    /// `Ok(None)` while it is incomplete, `Ok(Some((body, consumed)))` once
    /// it is complete and authentic. A length over the limit is an error as
    /// soon as the header has arrived. After an error the link is done: the
    /// buffer's contents are undefined and no later frame will open.
    pub fn open<'a>(&mut self, buf: &'a mut [u8]) -> Result<Option<(&'a [u8], usize)>, SealError> {
        let Some((head, rest)) = buf.split_first_chunk_mut::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = usize::try_from(u32::from_le_bytes(*head)).unwrap_or(usize::MAX);
        if len > MAX_BODY {
            return Err(SealError::TooLong(len));
        }
        let Some(sealed) = rest.get_mut(..len + TAG_LEN) else {
            return Ok(None);
        };
        let (body, tag) = sealed.split_at_mut(len);
        let tag =
            Tag::<aes_gcm::aead::consts::U16>::try_from(&tag[..]).map_err(|_| SealError::Open)?;
        let nonce = self.0.nonce()?;
        self.0
            .cipher
            .decrypt_inout_detached(&nonce, &head[..], body.into(), &tag)
            .map_err(|_| SealError::Open)?;
        self.0.counter += 1;
        Ok(Some((body, HEADER_LEN + len + TAG_LEN)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: Key = [1; 32];
    const K2: Key = [2; 32];

    fn sealed(key: &Key, bodies: &[&[u8]]) -> Vec<u8> {
        let mut s = Sealer::new(key);
        let mut out = BytesMut::new();
        for b in bodies {
            let n = s.seal(b, &mut out).expect("seal");
            assert_eq!(n, HEADER_LEN + b.len() + TAG_LEN);
        }
        out.to_vec()
    }

    /// Opens every frame of `wire` in order; the bodies, or the first error.
    fn open_all(key: &Key, wire: &mut [u8]) -> Result<Vec<Vec<u8>>, SealError> {
        let mut o = Opener::new(key);
        let (mut pos, mut bodies) = (0, Vec::new());
        while let Some((body, used)) = o.open(&mut wire[pos..])? {
            bodies.push(body.to_vec());
            pos += used;
        }
        assert_eq!(pos, wire.len(), "bytes left over");
        Ok(bodies)
    }

    #[test]
    fn seal_then_open_round_trips_in_order() {
        let bodies: [&[u8]; 4] = [b"", b"a", &[7; 1000], b"last"];
        let mut wire = sealed(&K1, &bodies);
        assert!(
            !wire.windows(4).any(|w| w == b"last"),
            "the body is encrypted"
        );
        let got = open_all(&K1, &mut wire).expect("opens");
        assert_eq!(got, bodies.map(<[u8]>::to_vec));
    }

    #[test]
    fn incomplete_frames_wait_for_more_bytes() {
        let wire = sealed(&K1, &[b"hello"]);
        for cut in 0..wire.len() {
            let mut part = wire[..cut].to_vec();
            assert_eq!(Opener::new(&K1).open(&mut part), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn any_flipped_bit_fails_to_open() {
        let wire = sealed(&K1, &[b"a push for a tenant"]);
        for i in 0..wire.len() {
            for bit in [0x01, 0x80] {
                let mut w = wire.clone();
                w[i] ^= bit;
                let r = Opener::new(&K1).open(&mut w);
                assert!(
                    matches!(r, Err(_) | Ok(None)),
                    "byte {i} bit {bit:#x}: {r:?}"
                );
                if i >= HEADER_LEN {
                    assert_eq!(r, Err(SealError::Open), "byte {i}");
                }
            }
        }
    }

    #[test]
    fn wrong_key_replay_reorder_and_drop_fail_to_open() {
        let one = sealed(&K1, &[b"one"]);
        assert_eq!(open_all(&K2, &mut one.clone()), Err(SealError::Open));
        let mut replayed = one.clone();
        replayed.extend_from_slice(&one);
        assert_eq!(open_all(&K1, &mut replayed), Err(SealError::Open));
        let two = sealed(&K1, &[b"one", b"two"]);
        let cut = HEADER_LEN + 3 + TAG_LEN;
        let mut swapped = two[cut..].to_vec();
        swapped.extend_from_slice(&two[..cut]);
        assert_eq!(open_all(&K1, &mut swapped), Err(SealError::Open));
        assert_eq!(
            open_all(&K1, &mut two[cut..].to_vec()),
            Err(SealError::Open),
            "a dropped frame shifts the counter"
        );
    }

    #[test]
    fn lengths_over_the_limit_are_refused_at_once() {
        let mut head = ((MAX_BODY + 1) as u32).to_le_bytes().to_vec();
        assert_eq!(
            Opener::new(&K1).open(&mut head),
            Err(SealError::TooLong(MAX_BODY + 1))
        );
        let mut head = u32::MAX.to_le_bytes().to_vec();
        assert!(matches!(
            Opener::new(&K1).open(&mut head),
            Err(SealError::TooLong(_))
        ));
    }

    #[test]
    fn an_exhausted_counter_refuses_to_seal_or_open() {
        let mut s = Sealer::at(&K1, u64::MAX);
        let mut out = BytesMut::from(&b"kept"[..]);
        assert_eq!(s.seal(b"x", &mut out), Err(SealError::Exhausted));
        assert_eq!(&out[..], b"kept");
        let mut wire = sealed(&K1, &[b"x"]);
        assert_eq!(
            Opener::at(&K1, u64::MAX).open(&mut wire),
            Err(SealError::Exhausted)
        );
        let mut late = BytesMut::new();
        Sealer::at(&K1, u64::MAX - 1)
            .seal(b"y", &mut late)
            .expect("the last counter seals");
        let (body, _) = Opener::at(&K1, u64::MAX - 1)
            .open(&mut late)
            .expect("opens")
            .expect("complete");
        assert_eq!(body, b"y");
    }

    #[test]
    fn sealing_reuses_the_output_buffer() {
        let mut s = Sealer::new(&K1);
        let mut out = BytesMut::with_capacity(4096);
        let cap = out.capacity();
        for _ in 0..100 {
            out.clear();
            s.seal(&[9; 1000], &mut out).expect("seal");
        }
        assert_eq!(out.capacity(), cap);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            SealError::Open.to_string(),
            "sealed frame failed to open (altered, injected, replayed or out of order)"
        );
        assert_eq!(
            SealError::TooLong(9).to_string(),
            "sealed frame body of 9 bytes exceeds the limit"
        );
    }
}
