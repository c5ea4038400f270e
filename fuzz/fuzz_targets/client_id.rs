//! clientId decoding of arbitrary strings, with a fixed AES-128 key.
//!
//! Any string a client or API caller sends is decoded; it must never panic,
//! and a string that decodes must be the canonical encoding of the id it
//! decodes to (re-encoding gives back the same string), so that one
//! connection has exactly one valid id text per system. Random strings almost
//! never decode, so the input is also read as the fields of an id, which is
//! encoded and must round-trip and be refused for another system.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::client_id::{ClientId, ClientIdCodec, ENCODED_LEN, MAX_GENERATION, MAX_SLOT};

/// The key the seeds in `fuzz/seeds/client_id` were encoded with.
const KEY: &[u8; 16] = b"shardcast-fuzz-k";
const SYSTEM: &str = "demo";
const OTHER_SYSTEM: &str = "other-system";

fn check_decoded(codec: &ClientIdCodec, text: &str, system: &str) {
    if let Ok(id) = codec.decode(text, system) {
        assert_eq!(text.len(), ENCODED_LEN);
        assert!(id.slot <= MAX_SLOT && id.generation <= MAX_GENERATION);
        assert_eq!(codec.encode(&id, system), text, "non-canonical id {id:?}");
    }
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fuzz_target!(|data: &[u8]| {
    let codec = ClientIdCodec::new(KEY).expect("16-byte key");

    let text = String::from_utf8_lossy(data);
    check_decoded(&codec, &text, SYSTEM);
    check_decoded(&codec, &text, OTHER_SYSTEM);
    // The same text with surrounding whitespace removed.
    check_decoded(&codec, text.trim(), SYSTEM);

    // The input as the fields of an id: encode, then decode.
    if data.len() >= 15 {
        let id = ClientId {
            node: u16::from_be_bytes([data[0], data[1]]),
            core: data[2],
            slot: u32_at(data, 3) & MAX_SLOT,
            generation: u32_at(data, 7) & MAX_GENERATION,
            epoch: u32_at(data, 11),
        };
        let encoded = codec.encode(&id, SYSTEM);
        assert_eq!(encoded.len(), ENCODED_LEN);
        assert!(encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(codec.decode(&encoded, SYSTEM), Ok(id));
        assert!(codec.decode(&encoded, OTHER_SYSTEM).is_err());
    }
});
