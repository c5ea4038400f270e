//! The clientId: where a connection lives, sealed in one AES block.
//!
//! Any core of any node must route a clientId without a lookup, so the id
//! carries its own route: node, core, slot and the slot's generation. It is
//! encrypted (AES-128/192/256, one block, base64url without padding = 22 chars)
//! so clients cannot forge or enumerate ids, and it carries a check value
//! derived from the owning system's id, so an id presented with another
//! system's credentials fails to decode at once — tenant isolation needs no
//! lookup either.
//!
//! Plaintext layout (big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version (1) |
//! | 1..3 | node id |
//! | 3 | core index |
//! | 4..7 | slot (24 bits) |
//! | 7..10 | slot generation (24 bits) |
//! | 10..14 | epoch: the owning process's start, unix seconds |
//! | 14..16 | check: hash of the system id |
//!
//! Uniqueness: a (slot, generation) pair is never handed out twice by one
//! process (a slot whose generation would wrap is retired), and the epoch
//! separates processes, so ids are not reused while the key stays the same.

use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Length of an encoded clientId.
pub const ENCODED_LEN: usize = 22;
/// Slots and generations are 24-bit fields.
pub const MAX_SLOT: u32 = (1 << 24) - 1;
pub const MAX_GENERATION: u32 = (1 << 24) - 1;

const VERSION: u8 = 1;

/// The route a clientId encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId {
    pub node: u16,
    pub core: u8,
    pub slot: u32,
    pub generation: u32,
    pub epoch: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    #[error("clientId is not 22 base64url characters")]
    Malformed,
    #[error("clientId does not belong to this system or cluster")]
    Forged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("crypto key must be 16, 24 or 32 bytes")]
pub struct KeyLengthError;

enum Cipher {
    Aes128(Box<Aes128>),
    /// A go-websocket CryptoKey of 24 characters (`server.crypto_key`).
    Aes192(Box<Aes192>),
    Aes256(Box<Aes256>),
}

/// Encrypts and decrypts clientIds with the cluster's key. Read-only after
/// construction, so one instance is shared by every core.
pub struct ClientIdCodec {
    cipher: Cipher,
}

impl ClientIdCodec {
    /// `key` is 16 bytes (AES-128), 24 (AES-192) or 32 (AES-256).
    pub fn new(key: &[u8]) -> Result<Self, KeyLengthError> {
        let cipher = match key.len() {
            16 => Cipher::Aes128(Box::new(
                Aes128::new_from_slice(key).map_err(|_| KeyLengthError)?,
            )),
            24 => Cipher::Aes192(Box::new(
                Aes192::new_from_slice(key).map_err(|_| KeyLengthError)?,
            )),
            32 => Cipher::Aes256(Box::new(
                Aes256::new_from_slice(key).map_err(|_| KeyLengthError)?,
            )),
            _ => return Err(KeyLengthError),
        };
        Ok(Self { cipher })
    }

    pub fn encode(&self, id: &ClientId, system: &str) -> String {
        let mut block = Array::from(plaintext(id, system));
        match &self.cipher {
            Cipher::Aes128(c) => c.encrypt_block(&mut block),
            Cipher::Aes192(c) => c.encrypt_block(&mut block),
            Cipher::Aes256(c) => c.encrypt_block(&mut block),
        }
        URL_SAFE_NO_PAD.encode(block.as_slice())
    }

    /// Decodes `text` as an id of `system`. Any string that was not produced
    /// by `encode` with this key and this system is rejected (up to the
    /// 2^-24 chance of a random block passing the version and check bytes).
    pub fn decode(&self, text: &str, system: &str) -> Result<ClientId, ClientIdError> {
        let bytes = text.as_bytes();
        if bytes.len() != ENCODED_LEN {
            return Err(ClientIdError::Malformed);
        }
        let mut raw = [0u8; 16];
        match URL_SAFE_NO_PAD.decode_slice(bytes, &mut raw) {
            Ok(16) => {}
            _ => return Err(ClientIdError::Malformed),
        }
        let mut block = Array::from(raw);
        match &self.cipher {
            Cipher::Aes128(c) => c.decrypt_block(&mut block),
            Cipher::Aes192(c) => c.decrypt_block(&mut block),
            Cipher::Aes256(c) => c.decrypt_block(&mut block),
        }
        parse_plaintext(&block.0, system)
    }
}

fn plaintext(id: &ClientId, system: &str) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = VERSION;
    p[1..3].copy_from_slice(&id.node.to_be_bytes());
    p[3] = id.core;
    p[4..7].copy_from_slice(&id.slot.to_be_bytes()[1..]);
    p[7..10].copy_from_slice(&id.generation.to_be_bytes()[1..]);
    p[10..14].copy_from_slice(&id.epoch.to_be_bytes());
    p[14..16].copy_from_slice(&system_check(system).to_be_bytes());
    p
}

fn parse_plaintext(p: &[u8; 16], system: &str) -> Result<ClientId, ClientIdError> {
    let check = u16::from_be_bytes([p[14], p[15]]);
    if p[0] != VERSION || check != system_check(system) {
        return Err(ClientIdError::Forged);
    }
    Ok(ClientId {
        node: u16::from_be_bytes([p[1], p[2]]),
        core: p[3],
        slot: u32::from_be_bytes([0, p[4], p[5], p[6]]),
        generation: u32::from_be_bytes([0, p[7], p[8], p[9]]),
        epoch: u32::from_be_bytes([p[10], p[11], p[12], p[13]]),
    })
}

/// FNV-1a over the system id, folded to 16 bits. Not a MAC: the block is
/// encrypted, so the attacker cannot aim at a value; it only has to tell
/// systems apart.
fn system_check(system: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in system.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> ClientIdCodec {
        ClientIdCodec::new(&[7u8; 16]).expect("16-byte key")
    }

    fn sample() -> ClientId {
        ClientId {
            node: 513,
            core: 3,
            slot: MAX_SLOT,
            generation: 0x00ab_cdef,
            epoch: 1_790_000_000,
        }
    }

    #[test]
    fn round_trip_every_key_size() {
        for key in [&[1u8; 16][..], &[3u8; 24][..], &[2u8; 32][..]] {
            let c = ClientIdCodec::new(key).expect("key");
            let text = c.encode(&sample(), "demo");
            assert_eq!(text.len(), ENCODED_LEN);
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(c.decode(&text, "demo"), Ok(sample()));
        }
    }

    #[test]
    fn bad_key_length_is_an_error() {
        for len in [0, 8, 15, 17, 31, 33, 64] {
            assert!(ClientIdCodec::new(&vec![0u8; len]).is_err(), "{len}");
        }
    }

    #[test]
    fn another_system_is_rejected() {
        let c = codec();
        let text = c.encode(&sample(), "sys-a");
        assert_eq!(c.decode(&text, "sys-b"), Err(ClientIdError::Forged));
    }

    #[test]
    fn another_key_is_rejected() {
        let text = codec().encode(&sample(), "demo");
        let other = ClientIdCodec::new(&[8u8; 16]).expect("key");
        assert!(other.decode(&text, "demo").is_err());
    }

    #[test]
    fn truncated_and_garbage_ids_are_rejected() {
        let c = codec();
        let text = c.encode(&sample(), "demo");
        for n in 0..text.len() {
            assert_eq!(c.decode(&text[..n], "demo"), Err(ClientIdError::Malformed));
        }
        assert!(c.decode("!!!!!!!!!!!!!!!!!!!!!!", "demo").is_err());
        assert!(c.decode("ÄÄÄÄÄÄÄÄÄÄÄ", "demo").is_err());
        assert!(c.decode(&format!("{text}A"), "demo").is_err());
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let c = codec();
        let text = c.encode(&sample(), "demo");
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in 0..text.len() {
            for &ch in alphabet {
                let mut forged = text.clone().into_bytes();
                if forged[i] == ch {
                    continue;
                }
                forged[i] = ch;
                let forged = String::from_utf8(forged).expect("ascii");
                // Non-canonical trailing bits are Malformed; everything else
                // decrypts to noise that fails the version/check bytes.
                assert!(c.decode(&forged, "demo").is_err(), "{forged}");
            }
        }
    }

    #[test]
    fn random_blocks_rarely_pass() {
        let c = codec();
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut passed = 0;
        for _ in 0..200_000 {
            let mut raw = [0u8; 16];
            for chunk in raw.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes());
            }
            if c.decode(&URL_SAFE_NO_PAD.encode(raw), "demo").is_ok() {
                passed += 1;
            }
        }
        // Expected 200_000 / 2^24 ≈ 0.01.
        assert!(passed <= 2, "{passed} random ids decoded");
    }

    #[test]
    fn stale_generation_decodes_to_a_distinct_id() {
        let c = codec();
        let old = sample();
        let new = ClientId {
            generation: old.generation + 1,
            ..old
        };
        let decoded = c.decode(&c.encode(&old, "demo"), "demo").expect("decodes");
        assert_ne!(decoded, new, "a stale id must not name the new connection");
    }
}
