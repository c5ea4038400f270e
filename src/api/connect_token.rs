//! Connect tokens (docs/api.md §2): `base64url(payload) "." base64url(mac)` where
//! mac = HMAC-SHA256 keyed with the system secret (its 32 ASCII characters)
//! over the payload bytes, and payload = `{"userId":"…","exp":<unix s>}`.
//! The business system mints them; the node only verifies, in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    user_id: String,
    exp: u64,
}

/// The userId of a valid, unexpired token. A system without a secret has
/// no valid token: an HMAC keyed with nothing proves nothing.
pub fn verify(token: &str, secret: &str, now: u64) -> Option<String> {
    if secret.is_empty() {
        return None;
    }
    let (payload, mac) = token.split_once('.')?;
    let payload = decode(payload)?;
    let mac = decode(mac)?;
    let mut check = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    check.update(&payload);
    check.verify_slice(&mac).ok()?;
    let claims: Payload = serde_json::from_slice(&payload).ok()?;
    (claims.exp > now).then_some(claims.user_id)
}

/// base64url with or without padding.
fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// Mints a token (used by tests and by operators' scripts through the docs).
pub fn mint(user_id: &str, exp: u64, secret: &str) -> Option<String> {
    let payload = serde_json::json!({ "userId": user_id, "exp": exp }).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    Some(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_token_yields_user() {
        let t = mint("alice", 2_000, SECRET).expect("mint");
        assert_eq!(verify(&t, SECRET, 1_000).as_deref(), Some("alice"));
    }

    #[test]
    fn padding_is_accepted() {
        let t = mint("bob", 2_000, SECRET).expect("mint");
        let (p, m) = t.split_once('.').expect("dot");
        let padded = format!("{p}{}.{m}=", "=".repeat((4 - p.len() % 4) % 4));
        assert_eq!(verify(&padded, SECRET, 1_000).as_deref(), Some("bob"));
    }

    #[test]
    fn an_empty_key_never_verifies() {
        let forged = mint("anyone", 2_000, "").expect("mint");
        assert_eq!(verify(&forged, "", 1_000), None);
    }

    #[test]
    fn expired_wrong_key_and_garbage_are_refused() {
        let t = mint("alice", 2_000, SECRET).expect("mint");
        assert_eq!(verify(&t, SECRET, 2_000), None);
        assert_eq!(verify(&t, "ffffffffffffffffffffffffffffffff", 1_000), None);
        assert_eq!(verify("nodot", SECRET, 0), None);
        assert_eq!(verify("a.b", SECRET, 0), None);
        let (p, _) = t.split_once('.').expect("dot");
        assert_eq!(verify(&format!("{p}.AAAA"), SECRET, 0), None);
    }
}
