//! Where a connection stands in its core's replay log, and the pings that
//! move it: a ping carries the log's head and the messageId of the newest
//! push or notice addressed to the connection before it; the pong that echoes
//! it shows the client got everything up to there (RFC 6455: a pong carries
//! its ping's payload). Kept beside the slab, one per slot, so that the
//! connection's own entry stays in its allocation class.

use bytes::Bytes;

use crate::ws::frame::ping_frame;

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Place {
    /// Every entry up to this seq is acknowledged (or older than the
    /// connection).
    pub acked: u64,
    /// The messageId of the newest push or notice acknowledged (0: none).
    pub acked_id: u64,
    /// Resumed, and no frame has come from the client since: the token it
    /// resumed with still stands (its welcome may have been lost).
    pub unconfirmed: bool,
}

impl Place {
    /// A connection opened when the log's head was `head`.
    pub fn new(head: u64) -> Self {
        Place {
            acked: head,
            ..Place::default()
        }
    }

    /// The ping to queue now, with `head` the log's head and `newest_id`
    /// the messageId of the newest push or notice addressed to the
    /// connection (`Conn::newest_id`).
    pub fn ping(head: u64, newest_id: u64) -> Bytes {
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&head.to_be_bytes());
        payload[8..].copy_from_slice(&newest_id.to_be_bytes());
        ping_frame(&payload)
    }

    /// Takes a pong's payload; true when it moved the place forward. A pong
    /// that is not an echo of one of our pings (another size, a seq past
    /// `head` or behind the place) changes nothing.
    pub fn on_pong(&mut self, payload: &[u8], head: u64) -> bool {
        let Some((seq, id)) = parse(payload) else {
            return false;
        };
        if seq > head || seq <= self.acked {
            return false;
        }
        self.acked = seq;
        self.acked_id = id;
        true
    }
}

const PAYLOAD: usize = 16;

fn parse(payload: &[u8]) -> Option<(u64, u64)> {
    let payload: &[u8; PAYLOAD] = payload.try_into().ok()?;
    let (seq, id) = payload.split_at(8);
    Some((
        u64::from_be_bytes(seq.try_into().ok()?),
        u64::from_be_bytes(id.try_into().ok()?),
    ))
}

/// One `Place` per slot of the core's slab.
#[derive(Default)]
pub struct Places(Vec<Place>);

impl Places {
    pub fn get(&self, slot: u32) -> Place {
        self.0.get(slot as usize).copied().unwrap_or_default()
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut Place {
        let i = slot as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, Place::default());
        }
        &mut self.0[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pong_moves_the_place_to_its_pings_head() {
        let mut p = Place::new(3);
        let ping = Place::ping(9, 0xabc);
        assert_eq!(&ping[..2], [0x89, 16]);
        let payload = &ping[2..];
        assert!(!p.on_pong(payload, 8), "a seq past the head is no echo");
        assert!(p.on_pong(payload, 9));
        assert_eq!((p.acked, p.acked_id), (9, 0xabc));
        assert!(!p.on_pong(payload, 9), "not forward");
        assert!(!p.on_pong(b"", 9), "an empty pong");
        assert!(!p.on_pong(&[0; 15], 9));
    }
}
