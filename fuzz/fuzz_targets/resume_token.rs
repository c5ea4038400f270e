//! Resume tokens (docs/api.md §8) from arbitrary strings, with a fixed key.
//!
//! Any `resume=` a client sends is verified; it must never panic, and a token
//! that verifies must be exactly the text `issue` writes for what it names
//! (one session token, one text: a proxy routes on the node id in clear) and
//! must not verify for another system. Random strings almost never carry a
//! valid MAC, so the input is also read as the fields of a token, which is
//! issued and must verify, and stop verifying once any one byte changes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::api::resume_token::ResumeTokens;

/// The key the seeds in `fuzz/seeds/resume_token` were issued with.
const KEY: &[u8; 16] = b"shardcast-fuzz-k";
const SYSTEM: &str = "demo";
const OTHER_SYSTEM: &str = "other-system";

fuzz_target!(|data: &[u8]| {
    let tokens = ResumeTokens::new(KEY);

    let text = String::from_utf8_lossy(data);
    if let Some(claim) = tokens.verify(&text, SYSTEM) {
        let issued = tokens.issue(claim.node, SYSTEM, claim.client_id, claim.seq);
        assert_eq!(issued, text, "a verified token not in its one text");
        assert!(tokens.verify(&text, OTHER_SYSTEM).is_none());
    }

    // The input as the fields of a token: node, seq, a byte to flip, a clientId.
    if data.len() >= 5 {
        let node = u16::from_be_bytes([data[0], data[1]]);
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let client_id: String = String::from_utf8_lossy(&data[5..])
            .chars()
            .filter(|c| *c != '.')
            .collect();
        let token = tokens.issue(node, SYSTEM, &client_id, seq);
        let claim = tokens.verify(&token, SYSTEM).expect("an issued token verifies");
        assert_eq!((claim.node, claim.client_id, claim.seq), (node, client_id.as_str(), seq));
        assert!(tokens.verify(&token, OTHER_SYSTEM).is_none());
        let mut bytes = token.into_bytes();
        let at = usize::from(data[4]) % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        if let Ok(changed) = String::from_utf8(bytes) {
            assert!(tokens.verify(&changed, SYSTEM).is_none(), "{changed} verified");
        }
    }
});
