//! How a system entry is stored in etcd (`systems/<systemId>`).
//!
//! etcd is shared infrastructure: whoever can read it (operators, backups,
//! other tenants of the same etcd) must not learn a system's secret, because
//! the secret is the API `Token` and signs webhooks. The secret is 16 random
//! bytes, so it is stored as ONE AES-256 block under a key derived from the
//! cluster secret: a single-block pseudo-random permutation of a uniformly
//! random value reveals nothing about it, needs no IV and keeps the value as
//! short as the secret itself. Every node holds the cluster secret and can
//! decrypt; nothing else is needed to share the registry.
//!
//! An entry that does not decode (bad JSON, a secret that is not 32 hex
//! characters) is rejected by the caller, never passed on half-valid.

use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::Aes256;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::registry::SystemEntry;

/// Label of the key derivation; change it (v2) to change the scheme.
const KEY_LABEL: &[u8] = b"shardcast registry key v1";
/// Length of a secret in bytes (one AES block).
const SECRET_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a valid registry entry: {0}")]
    Json(#[from] serde_json::Error),
    #[error("secret is not 32 lowercase hex characters")]
    BadSecret,
}

/// The JSON stored under `systems/<id>`; `secret` is the encrypted block.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook_url: Option<String>,
}

/// Encrypts and decrypts registry entries with the cluster's registry key.
pub struct RegistryCodec {
    cipher: Aes256,
}

impl RegistryCodec {
    /// Derives the registry key: HMAC-SHA256(cluster secret, label).
    pub fn new(cluster_secret: &str) -> Self {
        // HMAC accepts keys of any length; the fallback is unreachable.
        let key: [u8; 32] = match Hmac::<Sha256>::new_from_slice(cluster_secret.as_bytes()) {
            Ok(mac) => mac.chain_update(KEY_LABEL).finalize().into_bytes().into(),
            Err(_) => [0; 32],
        };
        Self {
            cipher: Aes256::new(&Array::from(key)),
        }
    }

    /// The bytes to store for `entry`.
    pub fn encode(&self, entry: &SystemEntry) -> Result<Vec<u8>, CodecError> {
        let secret = match entry.secret.as_deref() {
            Some(s) => Some(self.seal(s)?),
            None => None,
        };
        let stored = Stored {
            secret,
            webhook_url: entry.webhook_url.clone(),
        };
        Ok(serde_json::to_vec(&stored)?)
    }

    /// The entry stored as `bytes`.
    pub fn decode(&self, bytes: &[u8]) -> Result<SystemEntry, CodecError> {
        let stored: Stored = serde_json::from_slice(bytes)?;
        let secret = match stored.secret.as_deref() {
            Some(s) => Some(self.open(s)?),
            None => None,
        };
        Ok(SystemEntry {
            secret,
            webhook_url: stored.webhook_url,
        })
    }

    fn seal(&self, secret: &str) -> Result<String, CodecError> {
        let mut block = Array::from(parse_hex(secret).ok_or(CodecError::BadSecret)?);
        self.cipher.encrypt_block(&mut block);
        Ok(to_hex(&block))
    }

    fn open(&self, sealed: &str) -> Result<String, CodecError> {
        let mut block = Array::from(parse_hex(sealed).ok_or(CodecError::BadSecret)?);
        self.cipher.decrypt_block(&mut block);
        Ok(to_hex(&block))
    }
}

/// 32 lowercase hex characters → 16 bytes.
fn parse_hex(s: &str) -> Option<[u8; SECRET_LEN]> {
    let digits = s.as_bytes();
    if digits.len() != SECRET_LEN * 2 {
        return None;
    }
    let mut out = [0u8; SECRET_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff";

    fn entry(secret: Option<&str>) -> SystemEntry {
        SystemEntry {
            secret: secret.map(String::from),
            webhook_url: Some("http://hook.example/x".into()),
        }
    }

    #[test]
    fn round_trip_hides_the_secret() {
        let codec = RegistryCodec::new("cluster secret");
        let bytes = codec.encode(&entry(Some(SECRET))).expect("encode");
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("\"webhookUrl\""), "{text}");
        assert_eq!(codec.decode(&bytes).expect("decode"), entry(Some(SECRET)));
    }

    #[test]
    fn open_entries_have_no_secret() {
        let codec = RegistryCodec::new("k");
        let bytes = codec.encode(&SystemEntry::default()).expect("encode");
        assert_eq!(bytes, b"{}");
        assert_eq!(codec.decode(b"{}").expect("decode"), SystemEntry::default());
        assert_eq!(
            codec.decode(br#"{"secret":null}"#).expect("decode"),
            SystemEntry::default()
        );
    }

    #[test]
    fn the_key_depends_on_the_cluster_secret() {
        let a = RegistryCodec::new("a").encode(&entry(Some(SECRET)));
        let b = RegistryCodec::new("b").encode(&entry(Some(SECRET)));
        assert_ne!(a.expect("a"), b.expect("b"));
    }

    #[test]
    fn malformed_entries_are_rejected() {
        let codec = RegistryCodec::new("k");
        for bad in [
            &br#"{"secret":"xyz"}"#[..],
            br#"{"secret":"00112233445566778899AABBCCDDEEFF"}"#,
            br#"{"secret":"00112233445566778899aabbccddeeff00"}"#,
            br#"{"secret":5}"#,
            b"not json",
        ] {
            assert!(
                codec.decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(codec.encode(&entry(Some("short"))).is_err());
    }
}
