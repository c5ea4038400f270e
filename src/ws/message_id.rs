//! Message ids: the id every recipient of one push sees, unique within a
//! node without coordination between its cores.

use std::fmt;

/// The id every recipient of one push sees; 16 lowercase hex digits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl MessageId {
    /// The id written as 16 hex digits (either case), as clients echo it.
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(MessageId)
    }
}

/// The last push or notice a resuming client processed (its `last`,
/// docs/api.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// None yet (`last` empty or absent).
    Nothing,
    Id(MessageId),
    /// Not a messageId: as if it were no longer kept.
    Unreadable,
}

impl Last {
    pub fn parse(text: Option<&str>) -> Self {
        match text.filter(|t| !t.is_empty()) {
            None => Last::Nothing,
            Some(t) => MessageId::parse(t).map_or(Last::Unreadable, Last::Id),
        }
    }
}

/// Bits of the per-core counter; the core number takes the 8 bits above.
const COUNTER_BITS: u32 = 56;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// Message ids of one core: `splitmix64_mix((core << 56 | counter) ^ node_key)`.
///
/// Why this is unique within a node: the input space is partitioned, core
/// `c` only ever uses inputs whose top 8 bits are `c`, so two cores (or one
/// core at two counter values) never share an input; XOR with the node-wide
/// key and the splitmix64 finaliser are both bijections on `u64`, so
/// distinct inputs give distinct ids. A core repeats an id only after 2^56
/// ids (two thousand years at a million pushes a second). Seeding each core
/// with its own random value instead would only make collisions unlikely.
///
/// Across nodes (and restarts) uniqueness is probabilistic: each node draws
/// `node_key` at random, so ids of two nodes collide only by chance. The
/// finaliser spreads the bits, so ids do not reveal the push count or core.
#[derive(Debug, Clone)]
pub struct MessageIdGen {
    key: u64,
    core: u64,
    counter: u64,
}

impl MessageIdGen {
    /// `node_key`: 64 random bits drawn once per node start, shared by its
    /// cores; `core`: this core's index, distinct per core of the node.
    pub fn new(node_key: u64, core: u8) -> Self {
        MessageIdGen {
            key: node_key,
            core: u64::from(core) << COUNTER_BITS,
            counter: 0,
        }
    }

    /// The next id; never fails (an infinite source, hence not an Iterator).
    #[expect(clippy::should_implement_trait, reason = "infallible, no Option")]
    pub fn next(&mut self) -> MessageId {
        let input = self.core | (self.counter & COUNTER_MASK);
        self.counter = self.counter.wrapping_add(1);
        MessageId(splitmix64_mix(input ^ self.key))
    }
}

/// The splitmix64 output function: xor-shifts and odd multiplications, each
/// invertible, so the whole is a bijection.
fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn message_id_is_16_lowercase_hex() {
        assert_eq!(MessageId(0xab).to_string(), "00000000000000ab");
        assert_eq!(MessageId(u64::MAX).to_string(), "ffffffffffffffff");
        assert_eq!(
            MessageId(0x0123_4567_89AB_CDEF).to_string(),
            "0123456789abcdef"
        );
        let mut gen = MessageIdGen::new(42, 3);
        for _ in 0..1000 {
            let id = gen.next();
            assert_eq!(crate::json::hex16(id.0), id.to_string().as_bytes());
        }
    }

    #[test]
    fn ids_of_one_generator_are_distinct() {
        let mut gen = MessageIdGen::new(0x5eed, 0);
        let ids: HashSet<MessageId> = (0..1_000_000).map(|_| gen.next()).collect();
        assert_eq!(ids.len(), 1_000_000);
    }

    #[test]
    fn counter_wraps_within_its_core() {
        let mut gen = MessageIdGen::new(7, 255);
        let first = gen.next();
        gen.counter = COUNTER_MASK;
        let last = gen.next();
        assert_ne!(first, last);
        assert_eq!(gen.next(), first, "wraps to counter 0 of the same core");
    }

    #[test]
    fn ids_of_two_cores_do_not_collide() {
        let key = 0x0123_4567_89ab_cdef;
        let (mut a, mut b) = (MessageIdGen::new(key, 0), MessageIdGen::new(key, 1));
        let ids: HashSet<MessageId> = (0..100_000).flat_map(|_| [a.next(), b.next()]).collect();
        assert_eq!(ids.len(), 200_000);
    }

    #[test]
    fn mixer_is_a_bijection_on_a_sample() {
        // Inverse of the finaliser; if it undoes `mix`, no two inputs collide.
        fn unmix(mut z: u64) -> u64 {
            z ^= z >> 31 ^ z >> 62;
            z = z.wrapping_mul(0x3196_42b2_d24d_8ec3);
            z ^= z >> 27 ^ z >> 54;
            z = z.wrapping_mul(0x96de_1b17_3f11_9089);
            z ^ z >> 30 ^ z >> 60
        }
        for x in [0, 1, 42, u64::MAX, 1 << 56, 0xdead_beef_cafe_f00d] {
            assert_eq!(unmix(splitmix64_mix(x)), x);
        }
    }
}
