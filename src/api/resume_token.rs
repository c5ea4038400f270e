//! Resume tokens (docs/api.md §8): what a client presents to come back as
//! the connection it was.
//!
//! `<node>.<clientId>.<seq>.<mac>` where `mac` = the first 16 bytes of
//! HMAC-SHA256 under a key derived from 32 random bytes the node draws when
//! it starts (a session does not outlive its node's run, nor does its
//! token), over the node id, the system id, the clientId and `seq`, in
//! base64url. The node id leads in
//! clear so that a proxy can route a resume to its node; the clientId says
//! where the session lives (its core, slot and generation) and, sealed with
//! the system, whose it is; `seq` counts the welcomes of the session, so a
//! token stops working once a newer one was handed out.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC kept in a token.
const MAC_BYTES: usize = 16;
/// What the resume key is derived for, so it differs from any other use of
/// the crypto key.
const LABEL: &[u8] = b"shardcast resume token v1";

/// Issues and checks the resume tokens of one node. Read-only after
/// construction: one instance is shared by every core.
pub struct ResumeTokens {
    key: [u8; 32],
}

/// What a genuine token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeClaim<'a> {
    pub node: u16,
    pub client_id: &'a str,
    pub seq: u16,
}

impl ResumeTokens {
    /// `secret`: random bytes drawn for this run of the node.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = mac_with(secret);
        mac.update(LABEL);
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        Self { key }
    }

    /// The token of `client_id` (of `system`) at its `seq`th welcome.
    pub fn issue(&self, node: u16, system: &str, client_id: &str, seq: u16) -> String {
        let mac = URL_SAFE_NO_PAD.encode(self.mac(node, system, client_id, seq));
        format!("{node}.{client_id}.{seq}.{mac}")
    }

    /// What `token` names, if this node issued it for `system`; None for
    /// anything else (malformed, forged, another system's, or not written
    /// as `issue` writes it: one session token has one text).
    pub fn verify<'a>(&self, token: &'a str, system: &str) -> Option<ResumeClaim<'a>> {
        let mut parts = token.splitn(4, '.');
        let node = decimal(parts.next()?)?;
        let client_id = parts.next()?;
        let seq = decimal(parts.next()?)?;
        let mac = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        let mut check = mac_with(&self.key);
        feed(&mut check, node, system, client_id, seq);
        check.verify_truncated_left(&mac).ok()?;
        (mac.len() == MAC_BYTES).then_some(ResumeClaim {
            node,
            client_id,
            seq,
        })
    }

    fn mac(&self, node: u16, system: &str, client_id: &str, seq: u16) -> [u8; MAC_BYTES] {
        let mut mac = mac_with(&self.key);
        feed(&mut mac, node, system, client_id, seq);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }
}

/// A number as `issue` writes it: digits only, no sign, no leading zero.
/// (`str::parse` also takes "+7" and "007", which a proxy routing on the
/// node id in clear would read as other nodes.)
fn decimal(text: &str) -> Option<u16> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn mac_with(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC key of any size"))
}

/// Length-prefixed fields: no two (system, clientId) pairs feed the same bytes.
fn feed(mac: &mut Hmac<Sha256>, node: u16, system: &str, client_id: &str, seq: u16) {
    mac.update(&node.to_be_bytes());
    mac.update(&(system.len() as u32).to_be_bytes());
    mac.update(system.as_bytes());
    mac.update(&(client_id.len() as u32).to_be_bytes());
    mac.update(client_id.as_bytes());
    mac.update(&seq.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn a_token_names_its_connection_and_starts_with_the_node() {
        let t = ResumeTokens::new(&[7; 16]);
        let token = t.issue(513, "sys", CID, 9);
        assert!(token.starts_with("513."), "{token}");
        assert!(token.len() <= 128);
        let claim = t.verify(&token, "sys").expect("genuine");
        assert_eq!(
            claim,
            ResumeClaim {
                node: 513,
                client_id: CID,
                seq: 9
            }
        );
    }

    #[test]
    fn forged_foreign_or_other_keys_tokens_are_refused() {
        let t = ResumeTokens::new(&[7; 16]);
        let token = t.issue(1, "sys", CID, 0);
        assert!(t.verify(&token, "other").is_none(), "another system");
        assert!(ResumeTokens::new(&[8; 16]).verify(&token, "sys").is_none());
        let bumped = token.replacen(".0.", ".1.", 1);
        assert!(t.verify(&bumped, "sys").is_none(), "seq altered");
        let moved = token.replacen("1.", "2.", 1);
        assert!(t.verify(&moved, "sys").is_none(), "node altered");
        let short = &token[..token.len() - 2];
        assert!(t.verify(short, "sys").is_none(), "truncated mac");
        for junk in ["", ".", "1.x.0.", "x.y.z.w", "1..0.AAAA"] {
            assert!(t.verify(junk, "sys").is_none(), "{junk}");
        }
    }

    #[test]
    fn a_token_has_one_text_numbers_written_otherwise_are_refused() {
        let t = ResumeTokens::new(&[7; 16]);
        let token = t.issue(7, "sys", CID, 3);
        let mac = token.rsplit('.').next().expect("mac");
        for other in [
            format!("+7.{CID}.3.{mac}"),
            format!("07.{CID}.3.{mac}"),
            format!("7.{CID}.+3.{mac}"),
            format!("7.{CID}.03.{mac}"),
        ] {
            assert!(t.verify(&other, "sys").is_none(), "{other}");
        }
        assert!(t.verify(&token, "sys").is_some());
        let zero = t.issue(0, "sys", CID, 0);
        assert!(t.verify(&zero, "sys").is_some(), "{zero}");
    }

    /// The format is stable across releases (a node restarted on a new
    /// version keeps honouring the tokens its peers issued), and the fuzz
    /// seeds in `fuzz/seeds/resume_token` were written with it.
    #[test]
    fn a_known_token() {
        let t = ResumeTokens::new(b"shardcast-fuzz-k");
        assert_eq!(
            t.issue(1, "demo", CID, 0),
            "1.AAAAAAAAAAAAAAAAAAAAAA.0.upcRV8a1V48NBPD_xjB24Q"
        );
    }
}
