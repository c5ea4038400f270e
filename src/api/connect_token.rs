//! Connect tokens (docs/api.md §2): `base64url(payload) "." base64url(mac)` where
//! mac = HMAC-SHA256 keyed with the system secret (its 32 ASCII characters)
//! over the payload bytes, and payload = `{"userId":"…","exp":<unix s>}`.
//! The business system mints them; the node only verifies, in constant time.
//!
//! A token is refused when its `exp` lies further ahead than
//! `api.connect_token_max_ttl` (a token that never expires is a credential
//! that cannot be taken back), and when its userId fails the check the API
//! applies to a `userId` ([`check_user_id`]): a token is no way around it.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::body::check_user_id;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    user_id: String,
    exp: u64,
}

/// The userId of a valid, unexpired token. A system without a secret has
/// no valid token: an HMAC keyed with nothing proves nothing. `now` is in
/// unix seconds; a token whose `exp` is more than `max_ttl` (whole seconds)
/// after `now` is refused, unless `max_ttl` is zero (no limit). A userId
/// the API would refuse (over 1024 bytes, a control, line-separator or bidi
/// character) makes the token invalid.
pub fn verify(token: &str, secret: &str, now: u64, max_ttl: Duration) -> Option<String> {
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
    let latest = if max_ttl.is_zero() {
        u64::MAX
    } else {
        now.saturating_add(max_ttl.as_secs())
    };
    if claims.exp <= now || claims.exp > latest {
        return None;
    }
    check_user_id(&claims.user_id).ok()?;
    Some(claims.user_id)
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
    /// The default `api.connect_token_max_ttl`.
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn verify(token: &str, secret: &str, now: u64) -> Option<String> {
        super::verify(token, secret, now, DAY)
    }

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

    #[test]
    fn an_exp_beyond_the_max_ttl_is_refused() {
        let now = 1_700_000_000;
        let forever = mint("alice", u64::MAX, SECRET).expect("mint");
        assert_eq!(verify(&forever, SECRET, now), None, "exp = 2^64-1");
        let at_limit = mint("alice", now + 86_400, SECRET).expect("mint");
        assert_eq!(verify(&at_limit, SECRET, now).as_deref(), Some("alice"));
        let past_limit = mint("alice", now + 86_401, SECRET).expect("mint");
        assert_eq!(verify(&past_limit, SECRET, now), None);
        let hour = Duration::from_secs(3600);
        assert_eq!(super::verify(&at_limit, SECRET, now, hour), None);
        // "0s": no limit.
        let none = Duration::ZERO;
        assert_eq!(
            super::verify(&forever, SECRET, now, none).as_deref(),
            Some("alice")
        );
        // A clock near the end of time does not wrap the bound.
        assert_eq!(
            super::verify(&forever, SECRET, u64::MAX - 5, DAY).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn a_user_id_the_api_would_refuse_is_refused() {
        for bad in [
            "a\nb".to_string(),
            "\u{85}".to_string(),
            "admin\u{202e}".to_string(),
            "\u{2028}".to_string(),
            "x".repeat(1025),
        ] {
            let t = mint(&bad, 2_000, SECRET).expect("mint");
            assert_eq!(verify(&t, SECRET, 1_000), None, "{bad:?}");
        }
        for good in ["x".repeat(1024), "用户42".to_string(), String::new()] {
            let t = mint(&good, 2_000, SECRET).expect("mint");
            assert_eq!(verify(&t, SECRET, 1_000), Some(good));
        }
    }
}
