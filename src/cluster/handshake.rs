//! Authentication of a link between two nodes.
//!
//! The dialling side sends `Hello` (version, cluster name, node, core,
//! nonce A); the accepting side checks version and cluster and answers only
//! a random `Challenge` (nonce B); the dialler proves it holds
//! `cluster.secret` with an HMAC over both nonces (`Proof`); only then does
//! the acceptor prove itself (`Welcome`). A peer without the secret, from
//! another cluster or speaking another version learns nothing but a nonce.
//! The two MACs use different labels so one side's proof cannot be replayed
//! as the other's.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub type Nonce = [u8; 16];
pub type Tag = [u8; 32];

/// Which side of the link a proof comes from.
#[derive(Clone, Copy)]
pub enum Side {
    Dialler,
    Acceptor,
}

/// HMAC-SHA256(secret, label | cluster | nonce A | nonce B | node).
pub fn proof(secret: &str, side: Side, cluster: &str, a: &Nonce, b: &Nonce, node: u16) -> Tag {
    let label: &[u8] = match side {
        Side::Dialler => b"shardcast link dialler v1",
        Side::Acceptor => b"shardcast link acceptor v1",
    };
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return [0; 32],
    };
    mac.update(label);
    mac.update(&(cluster.len() as u32).to_le_bytes());
    mac.update(cluster.as_bytes());
    mac.update(a);
    mac.update(b);
    mac.update(&node.to_le_bytes());
    mac.finalize().into_bytes().into()
}

/// Constant-time check of a received proof.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    secret: &str,
    side: Side,
    cluster: &str,
    a: &Nonce,
    b: &Nonce,
    node: u16,
    tag: &Tag,
) -> bool {
    bool::from(proof(secret, side, cluster, a, b, node).ct_eq(tag))
}

pub fn nonce() -> Nonce {
    let mut n = [0u8; 16];
    // On failure the nonce stays zero; the handshake still needs the secret.
    let _ = getrandom::getrandom(&mut n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_inputs() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let t = proof("s3cret", Side::Dialler, "c", &a, &b, 7);
        assert!(verify("s3cret", Side::Dialler, "c", &a, &b, 7, &t));
        assert!(!verify("other", Side::Dialler, "c", &a, &b, 7, &t));
        assert!(
            !verify("s3cret", Side::Acceptor, "c", &a, &b, 7, &t),
            "sides differ"
        );
        assert!(!verify("s3cret", Side::Dialler, "d", &a, &b, 7, &t));
        assert!(!verify("s3cret", Side::Dialler, "c", &b, &a, 7, &t));
        assert!(!verify("s3cret", Side::Dialler, "c", &a, &b, 8, &t));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }
}
