//! `X-Shardcast-Signature`: lets the receiver check that an event comes from
//! shardcast and was not altered (token mode only; docs/api.md §2.2).

use std::fmt::Write;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(super) const HEADER: &str = "x-shardcast-signature";

/// `sha256=<lowercase hex HMAC-SHA256 of body>`, keyed with the system
/// secret's ASCII bytes.
pub(super) fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in mac.finalize().into_bytes() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
