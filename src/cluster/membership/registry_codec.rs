//! How a system entry is stored in etcd (`systems/<systemId>`).
//!
//! etcd is shared infrastructure. Whoever can read it (operators, backups,
//! other tenants of the same etcd) must not learn a system's secret, which is
//! the API `Token` and signs connect tokens and webhooks; and whoever can
//! write to it without holding `cluster.secret` must not be able to make an
//! entry the nodes accept. So the whole entry — secret, webhook URL, whatever
//! it holds — is sealed with AES-256-GCM under a key derived from the cluster
//! secret, with the system id as associated data:
//!
//! ```text
//! value = "v2:" base64(nonce[12] ‖ AES-256-GCM(JSON entry) ‖ tag[16])
//! key   = HMAC-SHA256(cluster.secret, "shardcast registry key v2")
//! AD    = the system id (UTF-8), the part of the etcd key after `systems/`
//! ```
//!
//! An entry copied to another system's key, edited in any byte, or sealed
//! under another cluster secret does not open, and is rejected: one tenant's
//! secret cannot be made another's, nor a webhook URL pointed elsewhere.
//! Unsealed entries (plain JSON, the secret as one bare AES block bound to
//! nothing: the format of earlier releases) are rejected too: accepting them, even once,
//! would accept exactly the copy this seal exists to refuse. The nonce is 12
//! random bytes per write (a registry sees a few writes per system, far from
//! the birthday bound of random GCM nonces); without randomness nothing is
//! written.
//!
//! An entry that does not open or decode is rejected by the caller, never
//! passed on half-valid.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::registry::SystemEntry;

/// Label of the key derivation; change it (v3) to change the scheme.
const KEY_LABEL: &[u8] = b"shardcast registry key v2";
/// What every sealed value starts with.
const PREFIX: &[u8] = b"v2:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of a secret in hex characters (16 random bytes).
const SECRET_HEX_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("an unsealed entry, as releases before sealed registry entries wrote them")]
    Unsealed,
    #[error("not a sealed registry entry")]
    Malformed,
    #[error(
        "the sealed entry does not open for this system id under the cluster secret \
         (copied from another key, altered, or sealed under another secret)"
    )]
    Open,
    #[error("the opened entry is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("secret is not 32 lowercase hex characters")]
    BadSecret,
    #[error("no random nonce to seal with: {0}")]
    Random(String),
}

/// The entry as sealed: JSON, each field omitted when absent.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook_url: Option<String>,
}

/// Seals and opens registry entries with the cluster's registry key.
pub struct RegistryCodec {
    cipher: Aes256Gcm,
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
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// The bytes to store at `systems/<id>` for `entry`, under a fresh
    /// random nonce.
    pub fn encode(&self, id: &str, entry: &SystemEntry) -> Result<Vec<u8>, CodecError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| CodecError::Random(e.to_string()))?;
        self.seal(id, entry, nonce)
    }

    fn seal(
        &self,
        id: &str,
        entry: &SystemEntry,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, CodecError> {
        if entry.secret.as_deref().is_some_and(|s| !is_secret(s)) {
            return Err(CodecError::BadSecret);
        }
        let stored = Stored {
            secret: entry.secret.clone(),
            webhook_url: entry.webhook_url.clone(),
        };
        let plain = serde_json::to_vec(&stored)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&plain);
        let n: Nonce<U12> = nonce.into();
        let body = &mut sealed[NONCE_LEN..];
        // Only a message or associated data of gigabytes is refused.
        let tag = self
            .cipher
            .encrypt_inout_detached(&n, id.as_bytes(), body.into())
            .map_err(|_| CodecError::Malformed)?;
        sealed.extend_from_slice(&tag);
        let mut out = PREFIX.to_vec();
        out.extend_from_slice(STANDARD.encode(&sealed).as_bytes());
        Ok(out)
    }

    /// The entry stored as `bytes` at `systems/<id>`, if it opens there.
    pub fn decode(&self, id: &str, bytes: &[u8]) -> Result<SystemEntry, CodecError> {
        let Some(text) = bytes.strip_prefix(PREFIX) else {
            return Err(if bytes.trim_ascii_start().starts_with(b"{") {
                CodecError::Unsealed
            } else {
                CodecError::Malformed
            });
        };
        let mut sealed = STANDARD.decode(text).map_err(|_| CodecError::Malformed)?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CodecError::Malformed);
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = Nonce::<U12>::try_from(&nonce[..]).map_err(|_| CodecError::Malformed)?;
        let tag = Tag::<U16>::try_from(&tag[..]).map_err(|_| CodecError::Malformed)?;
        self.cipher
            .decrypt_inout_detached(&nonce, id.as_bytes(), (&mut *body).into(), &tag)
            .map_err(|_| CodecError::Open)?;
        let stored: Stored = serde_json::from_slice(body)?;
        if stored.secret.as_deref().is_some_and(|s| !is_secret(s)) {
            return Err(CodecError::BadSecret);
        }
        Ok(SystemEntry {
            secret: stored.secret,
            webhook_url: stored.webhook_url,
        })
    }
}

/// 32 lowercase hex characters.
fn is_secret(s: &str) -> bool {
    s.len() == SECRET_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff";
    const URL: &str = "http://hook.example/x";

    fn entry(secret: Option<&str>) -> SystemEntry {
        SystemEntry {
            secret: secret.map(String::from),
            webhook_url: Some(URL.into()),
        }
    }

    /// The sealed bytes of a value (nonce ‖ ciphertext ‖ tag).
    fn raw(value: &[u8]) -> Vec<u8> {
        let text = value.strip_prefix(PREFIX).expect("sealed value");
        STANDARD.decode(text).expect("base64")
    }

    fn value(raw: &[u8]) -> Vec<u8> {
        let mut out = PREFIX.to_vec();
        out.extend_from_slice(STANDARD.encode(raw).as_bytes());
        out
    }

    #[test]
    fn round_trip_hides_the_whole_entry() {
        let codec = RegistryCodec::new("cluster secret");
        let bytes = codec.encode("sys-a", &entry(Some(SECRET))).expect("encode");
        let text = String::from_utf8(bytes.clone()).expect("text");
        assert!(text.starts_with("v2:"), "{text}");
        for hidden in [SECRET, "hook.example", "webhookUrl", "secret"] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
        assert_eq!(
            codec.decode("sys-a", &bytes).expect("decode"),
            entry(Some(SECRET))
        );
        let open = SystemEntry::default();
        let bytes = codec.encode("sys-a", &open).expect("encode");
        assert_eq!(codec.decode("sys-a", &bytes).expect("decode"), open);
    }

    #[test]
    fn each_write_has_its_own_nonce() {
        let codec = RegistryCodec::new("k");
        let a = codec.encode("s", &entry(Some(SECRET))).expect("a");
        let b = codec.encode("s", &entry(Some(SECRET))).expect("b");
        assert_ne!(a, b);
        assert_ne!(raw(&a)[..NONCE_LEN], raw(&b)[..NONCE_LEN]);
    }

    #[test]
    fn an_entry_opens_only_at_its_own_system_id() {
        let codec = RegistryCodec::new("k");
        let a = codec.encode("sys-a", &entry(Some(SECRET))).expect("encode");
        for other in ["sys-b", "sys-a ", "SYS-A", "sys-", ""] {
            assert!(
                matches!(codec.decode(other, &a), Err(CodecError::Open)),
                "opened at {other:?}"
            );
        }
        assert!(codec.decode("sys-a", &a).is_ok());
    }

    #[test]
    fn the_key_depends_on_the_cluster_secret() {
        let bytes = RegistryCodec::new("a")
            .encode("s", &entry(Some(SECRET)))
            .expect("encode");
        assert!(matches!(
            RegistryCodec::new("b").decode("s", &bytes),
            Err(CodecError::Open)
        ));
    }

    #[test]
    fn any_altered_byte_fails_to_open() {
        let codec = RegistryCodec::new("k");
        let sealed = raw(&codec.encode("s", &entry(Some(SECRET))).expect("encode"));
        for i in 0..sealed.len() {
            for bit in [0x01, 0x80] {
                let mut altered = sealed.clone();
                altered[i] ^= bit;
                let got = codec.decode("s", &value(&altered));
                assert!(matches!(got, Err(CodecError::Open)), "byte {i}: {got:?}");
            }
        }
        for cut in [0, 1, NONCE_LEN, sealed.len() - 1] {
            assert!(codec.decode("s", &value(&sealed[..cut])).is_err(), "{cut}");
        }
    }

    #[test]
    fn entries_of_earlier_releases_are_rejected() {
        let codec = RegistryCodec::new("k");
        for legacy in [
            &b"{}"[..],
            br#"{"secret":"00112233445566778899aabbccddeeff"}"#,
            br#" {"webhookUrl":"http://x/"}"#,
        ] {
            let got = codec.decode("s", legacy);
            assert!(matches!(got, Err(CodecError::Unsealed)), "{got:?}");
        }
    }

    #[test]
    fn malformed_values_are_rejected() {
        let codec = RegistryCodec::new("k");
        for bad in [
            &b""[..],
            b"v2:",
            b"v2:!!!!",
            b"v2:AAAA",
            b"v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            b"not json",
        ] {
            let got = codec.decode("s", bad);
            assert!(
                matches!(got, Err(CodecError::Malformed)),
                "{}: {got:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn secrets_must_be_32_lowercase_hex_inside_the_seal() {
        let codec = RegistryCodec::new("k");
        for bad in [
            "short",
            "00112233445566778899AABBCCDDEEFF",
            "00112233445566778899aabbccddeeff00",
        ] {
            assert!(matches!(
                codec.encode("s", &entry(Some(bad))),
                Err(CodecError::BadSecret)
            ));
        }
        // Sealed by someone holding the key, yet not a secret.
        let plain = br#"{"secret":"xyz"}"#;
        let mut sealed = [7u8; NONCE_LEN].to_vec();
        sealed.extend_from_slice(plain);
        let nonce: Nonce<U12> = [7u8; NONCE_LEN].into();
        let tag = codec
            .cipher
            .encrypt_inout_detached(&nonce, b"s", (&mut sealed[NONCE_LEN..]).into())
            .expect("seal");
        sealed.extend_from_slice(&tag);
        assert!(matches!(
            codec.decode("s", &value(&sealed)),
            Err(CodecError::BadSecret)
        ));
    }

    #[test]
    fn errors_say_why() {
        assert!(CodecError::Open
            .to_string()
            .contains("copied from another key"));
        assert!(CodecError::Unsealed.to_string().contains("unsealed"));
    }
}
