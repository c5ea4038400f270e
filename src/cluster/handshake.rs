//! Authentication of a link between two nodes, and the keys that seal it.
//!
//! The dialling side sends `Hello` (version, cluster name, node, core,
//! nonce A); the accepting side checks version, cluster and the claimed node
//! id, and answers only a random `Challenge` (nonce B); the dialler proves it
//! holds `cluster.secret` with an HMAC over the [`Transcript`] (`Proof`);
//! only then does the acceptor prove itself (`Welcome`). A peer without the
//! secret, from another cluster or speaking another version learns nothing
//! but a nonce.
//!
//! Why the transcript names both node ids: a proof that covered only the
//! dialler's id could be relayed. Someone who can write to etcd (but lacks
//! the secret) registers a fake node address; a real node dials it, and the
//! fake relays the real node's Hello and Proof to a third node, which then
//! holds an authenticated link for the relay. The dialler's proof names the
//! node it meant to reach, so the third node, which checks the proof against
//! its own id, refuses it.
//!
//! Every MAC and key is HMAC-SHA256 under the secret with its own label, so
//! one side's proof cannot be replayed as the other's, and no proof (sent in
//! clear) reveals anything about a key. Both nonces make every proof and key
//! fresh per link.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub type Nonce = [u8; 16];
pub type Tag = [u8; 32];
/// An AES-256 key sealing one direction of one link.
pub type Key = [u8; 32];

/// Which side of the link a proof or a direction of frames comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Dialler,
    Acceptor,
}

/// What one handshake agreed on: every proof and key covers all of it.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    pub cluster: &'a str,
    /// The node id the dialler claims in its Hello.
    pub dialler: u16,
    /// The node id the dialler meant to reach (and the acceptor is).
    pub acceptor: u16,
    /// The dialler's nonce (Hello).
    pub a: Nonce,
    /// The acceptor's nonce (Challenge).
    pub b: Nonce,
}

/// HMAC-SHA256(secret, label | u32 LE cluster length | cluster | A | B |
/// u16 LE dialler | u16 LE acceptor).
fn mac(secret: &str, label: &[u8], t: &Transcript) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return [0; 32],
    };
    mac.update(label);
    mac.update(&(t.cluster.len() as u32).to_le_bytes());
    mac.update(t.cluster.as_bytes());
    mac.update(&t.a);
    mac.update(&t.b);
    mac.update(&t.dialler.to_le_bytes());
    mac.update(&t.acceptor.to_le_bytes());
    mac.finalize().into_bytes().into()
}

/// The proof `side` sends for the handshake `t`.
pub fn proof(secret: &str, side: Side, t: &Transcript) -> Tag {
    let label: &[u8] = match side {
        Side::Dialler => b"shardcast link dialler v2",
        Side::Acceptor => b"shardcast link acceptor v2",
    };
    mac(secret, label, t)
}

/// Constant-time check of a received proof.
pub fn verify(secret: &str, side: Side, t: &Transcript, tag: &Tag) -> bool {
    bool::from(proof(secret, side, t).ct_eq(tag))
}

/// The key sealing the frames that `sender` sends on the link of `t`.
pub fn key(secret: &str, sender: Side, t: &Transcript) -> Key {
    let label: &[u8] = match sender {
        Side::Dialler => b"shardcast link key from dialler v2",
        Side::Acceptor => b"shardcast link key from acceptor v2",
    };
    mac(secret, label, t)
}

/// The random source failed, or gave what no working one gives: there is
/// no nonce, and the link must not be made.
#[derive(Debug, thiserror::Error)]
#[error("no randomness for the handshake nonce: {0}")]
pub struct NoRandomness(String);

/// A fresh nonce from the operating system's random source.
///
/// A link whose nonce is not random has keys and proofs that repeat from
/// one handshake to the next (a proof recorded once could be replayed, two
/// links could be sealed with one key and nonce sequence), so a failing
/// source refuses the link rather than going on with zeros.
pub fn nonce() -> Result<Nonce, NoRandomness> {
    nonce_from(|n| getrandom::getrandom(n).map_err(|e| e.to_string()))
}

/// A nonce filled by `fill`: its error, or an all-zero result (2^-128 by
/// chance, far likelier a source that did nothing), is [`NoRandomness`].
pub fn nonce_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), String>,
) -> Result<Nonce, NoRandomness> {
    let mut n = [0u8; 16];
    fill(&mut n).map_err(NoRandomness)?;
    if n == [0; 16] {
        return Err(NoRandomness("the source gave all zeros".into()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(cluster: &str, dialler: u16, acceptor: u16, a: Nonce, b: Nonce) -> Transcript<'_> {
        Transcript {
            cluster,
            dialler,
            acceptor,
            a,
            b,
        }
    }

    #[test]
    fn proofs_verify_only_with_the_same_inputs() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let good = t("c", 7, 9, a, b);
        let tag = proof("s3cret", Side::Dialler, &good);
        assert!(verify("s3cret", Side::Dialler, &good, &tag));
        assert!(!verify("other", Side::Dialler, &good, &tag));
        assert!(
            !verify("s3cret", Side::Acceptor, &good, &tag),
            "sides differ"
        );
        for other in [
            t("d", 7, 9, a, b),
            t("c", 7, 9, b, a),
            t("c", 8, 9, a, b),
            t("c", 7, 8, a, b),
            t("c", 9, 7, a, b),
        ] {
            assert!(!verify("s3cret", Side::Dialler, &other, &tag), "{other:?}");
        }
    }

    #[test]
    fn keys_differ_per_direction_and_from_the_proofs() {
        let tr = t("c", 1, 2, [3; 16], [4; 16]);
        let (d, a) = (key("s", Side::Dialler, &tr), key("s", Side::Acceptor, &tr));
        assert_ne!(d, a);
        assert_ne!(d, proof("s", Side::Dialler, &tr));
        assert_ne!(a, proof("s", Side::Acceptor, &tr));
        assert_ne!(d, key("s", Side::Dialler, &t("c", 1, 2, [3; 16], [5; 16])));
        assert_ne!(d, key("x", Side::Dialler, &tr));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce().expect("random"), nonce().expect("random"));
    }

    #[test]
    fn a_failing_random_source_gives_no_nonce() {
        let failed = nonce_from(|_| Err("getrandom: unavailable".into()));
        let err = failed.expect_err("a failed source must give no nonce");
        assert!(err.to_string().contains("unavailable"), "{err}");
        // A source that reports success and leaves the buffer as it was.
        assert!(nonce_from(|_| Ok(())).is_err(), "all zeros");
        let n = nonce_from(|n| {
            n.fill(7);
            Ok(())
        });
        assert_eq!(n.expect("filled"), [7; 16]);
    }
}
