//! The transport of a link between two nodes: dial, accept, the handshake
//! of `handshake.rs`, and the reader that opens sealed frames (`seal.rs`).
//!
//! Every core dials one link to every live peer and accepts links on the
//! shared cluster port (docs/cluster.md). What a frame means, whether a
//! claimed node id is a member, and the buffered writing of frames belong to
//! the core that owns the link: this file knows sockets and frames only,
//! asks a closure whether to admit a claimed node, and hands each opened
//! frame to a closure.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use monoio::net::TcpStream;
use rkyv::util::AlignedVec;

use super::frame::{self, Frame, FrameError, PROTOCOL_VERSION};
use super::handshake::{self, Side, Transcript};
use super::seal::{Opener, SealError, Sealer};
use crate::socket;
use std::os::fd::AsRawFd;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error("peer closed the connection")]
    Closed,
    #[error("handshake timed out")]
    Timeout,
    #[error("handshake refused: {0}")]
    Refused(&'static str),
    /// No nonce could be drawn: the link is not made (logged as an error
    /// where it happens).
    #[error("{0}")]
    NoRandomness(#[from] handshake::NoRandomness),
}

/// What both sides of a handshake need to know.
pub struct Credentials {
    pub cluster: String,
    pub secret: String,
    pub node: u16,
    pub core: u8,
}

/// What a completed handshake gives one side: the peer, the bytes read past
/// the handshake, and the sealing of both directions of this link.
pub struct Linked {
    pub node: u16,
    pub rest: BytesMut,
    pub sealer: Sealer,
    pub opener: Opener,
}

impl Linked {
    /// Keys for `me`'s side of the link the transcript `t` describes.
    fn new(secret: &str, me: Side, t: &Transcript, rest: BytesMut) -> Self {
        let (peer, node) = match me {
            Side::Dialler => (Side::Acceptor, t.acceptor),
            Side::Acceptor => (Side::Dialler, t.dialler),
        };
        Self {
            node,
            rest,
            sealer: Sealer::new(&handshake::key(secret, me, t)),
            opener: Opener::new(&handshake::key(secret, peer, t)),
        }
    }
}

/// Largest handshake frame. Before a peer has proven the secret it may not
/// make us buffer more than this (the general limit is `frame::MAX_BODY`).
const HANDSHAKE_MAX: usize = 4096;

/// Reads one handshake frame, waiting for more bytes as needed.
async fn read_frame(
    stream: &TcpStream,
    buf: &mut BytesMut,
    scratch: &mut AlignedVec,
) -> Result<Frame, LinkError> {
    loop {
        if let Some(len) = buf.get(..4) {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if len > HANDSHAKE_MAX {
                return Err(LinkError::Refused("handshake frame too large"));
            }
        }
        if let Some((f, n)) = frame::decode_with(buf, scratch)? {
            buf.advance(n);
            return Ok(f);
        }
        if socket::read_some(stream, buf).await? == 0 {
            return Err(LinkError::Closed);
        }
    }
}

async fn write_frame(stream: &TcpStream, f: &Frame) -> Result<(), LinkError> {
    let mut out = BytesMut::new();
    frame::encode(f, &mut out)?;
    socket::write_all(stream, out.freeze()).await?;
    Ok(())
}

/// A nonce for this side of a handshake, or the link is refused: a random
/// source that fails is an error of this host, logged at once as one (the
/// caller's log of the failed dial or accept may be only a debug line).
fn fresh_nonce() -> Result<handshake::Nonce, LinkError> {
    handshake::nonce().map_err(|e| {
        tracing::error!(error = %e, "cluster link refused: no random nonce");
        LinkError::from(e)
    })
}

/// Dials `addr` and authenticates as `me` to the node `expect`: the proof
/// names `expect`, so it is worthless to any other node.
pub async fn dial(
    addr: &str,
    me: &Credentials,
    expect: u16,
    limit: Duration,
) -> Result<(TcpStream, Linked), LinkError> {
    let attempt = async {
        let a = fresh_nonce()?;
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (mut buf, mut scratch) = (BytesMut::new(), AlignedVec::new());
        write_frame(
            &stream,
            &Frame::Hello {
                version: PROTOCOL_VERSION,
                cluster: me.cluster.clone(),
                node: me.node,
                core: me.core,
                nonce: a,
            },
        )
        .await?;
        let Frame::Challenge { nonce: b } = read_frame(&stream, &mut buf, &mut scratch).await?
        else {
            return Err(LinkError::Refused("expected a challenge"));
        };
        let t = Transcript {
            cluster: &me.cluster,
            dialler: me.node,
            acceptor: expect,
            a,
            b,
        };
        let mac = handshake::proof(&me.secret, Side::Dialler, &t);
        write_frame(&stream, &Frame::Proof { mac }).await?;
        let Frame::Welcome { node, mac } = read_frame(&stream, &mut buf, &mut scratch).await?
        else {
            return Err(LinkError::Refused("expected a welcome"));
        };
        if node != expect || !handshake::verify(&me.secret, Side::Acceptor, &t, &mac) {
            return Err(LinkError::Refused(
                "peer failed to prove the cluster secret",
            ));
        }
        let linked = Linked::new(&me.secret, Side::Dialler, &t, buf);
        Ok((stream, linked))
    };
    monoio::time::timeout(limit, attempt)
        .await
        .map_err(|_| LinkError::Timeout)?
}

/// Runs the acceptor's side of the handshake. `admit` says whether the node
/// id a Hello claims may dial us (membership lists it at the connection's
/// address); it is asked before anything but a refusal is sent, and may take
/// its time (within `limit`, which bounds the whole handshake).
pub async fn accept<A>(
    stream: &TcpStream,
    me: &Credentials,
    limit: Duration,
    admit: impl FnOnce(u16) -> A,
) -> Result<Linked, LinkError>
where
    A: std::future::Future<Output = Result<(), &'static str>>,
{
    let attempt = async {
        let (mut buf, mut scratch) = (BytesMut::new(), AlignedVec::new());
        let Frame::Hello {
            version,
            cluster,
            node,
            nonce: a,
            ..
        } = read_frame(stream, &mut buf, &mut scratch).await?
        else {
            return Err(LinkError::Refused("expected a hello"));
        };
        if version != PROTOCOL_VERSION {
            return Err(LinkError::Refused("protocol version differs"));
        }
        if cluster != me.cluster {
            return Err(LinkError::Refused("another cluster"));
        }
        if node == me.node {
            return Err(LinkError::Refused("hello claims this node's own id"));
        }
        admit(node).await.map_err(LinkError::Refused)?;
        let b = fresh_nonce()?;
        write_frame(stream, &Frame::Challenge { nonce: b }).await?;
        let Frame::Proof { mac } = read_frame(stream, &mut buf, &mut scratch).await? else {
            return Err(LinkError::Refused("expected a proof"));
        };
        let t = Transcript {
            cluster: &me.cluster,
            dialler: node,
            acceptor: me.node,
            a,
            b,
        };
        if !handshake::verify(&me.secret, Side::Dialler, &t, &mac) {
            return Err(LinkError::Refused(
                "wrong proof: another cluster secret, or meant for another node",
            ));
        }
        let mac = handshake::proof(&me.secret, Side::Acceptor, &t);
        write_frame(stream, &Frame::Welcome { node: me.node, mac }).await?;
        Ok(Linked::new(&me.secret, Side::Acceptor, &t, buf))
    };
    monoio::time::timeout(limit, attempt)
        .await
        .map_err(|_| LinkError::Timeout)?
}

/// Reads sealed frames from an established link, opening each in place with
/// `opener`, and hands each to `on_frame` (with its size on the wire),
/// calling `after_batch` once the bytes of one read are used up, until the
/// link breaks, is closed, or a frame fails to open or to validate.
pub async fn read_frames(
    stream: Rc<TcpStream>,
    mut buf: BytesMut,
    mut opener: Opener,
    mut on_frame: impl FnMut(Frame, usize),
    mut after_batch: impl FnMut(),
) -> LinkError {
    let mut scratch = AlignedVec::new();
    loop {
        loop {
            let (f, n) = match opener.open(&mut buf) {
                Ok(Some((body, n))) => match frame::decode_body(body, &mut scratch) {
                    Ok(f) => (f, n),
                    Err(e) => return e.into(),
                },
                Ok(None) => break,
                Err(e) => return e.into(),
            };
            buf.advance(n);
            on_frame(f, n);
        }
        after_batch();
        match socket::read_some(&stream, &mut buf).await {
            Ok(0) => return LinkError::Closed,
            Ok(_) => {}
            Err(e) => return e.into(),
        }
    }
}

/// Ends a link from our side: the reader sees end of stream and returns.
pub fn close(stream: &TcpStream) {
    socket::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR);
}

#[cfg(test)]
mod tests {
    //! The transport on its own, with no core: two ends on loopback.

    use super::*;
    use std::cell::RefCell;

    fn creds(node: u16, secret: &str) -> Credentials {
        Credentials {
            cluster: "c".into(),
            secret: secret.into(),
            node,
            core: 0,
        }
    }

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    type Ends = (Result<Linked, String>, Result<(TcpStream, Linked), String>);

    /// Accepts one link as node 2 (secret `theirs`, admitting what `admit`
    /// admits) and dials it as node `me` (secret `ours`) meaning to reach
    /// node `expect`; returns what each side's handshake gave.
    fn handshake_with(
        me: u16,
        ours: &str,
        expect: u16,
        theirs: &str,
        admit: fn(u16) -> Result<(), &'static str>,
        then: impl FnOnce(Ends) + 'static,
    ) {
        let (ours, theirs) = (ours.to_owned(), theirs.to_owned());
        runtime().block_on(async move {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let limit = Duration::from_secs(2);
            let acceptor = monoio::spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let admit = |n| std::future::ready(admit(n));
                let r = accept(&stream, &creds(2, &theirs), limit, admit).await;
                r.map_err(|e| e.to_string())
            });
            let dialled = dial(&addr, &creds(me, &ours), expect, limit).await;
            let accepted = acceptor.await;
            then((accepted, dialled.map_err(|e| e.to_string())));
        })
    }

    fn anyone(_: u16) -> Result<(), &'static str> {
        Ok(())
    }

    #[test]
    fn a_handshake_with_the_secret_links_two_nodes_with_matching_keys() {
        handshake_with(1, "s", 2, "s", anyone, |(accepted, dialled)| {
            let mut accepted = accepted.expect("accepted");
            let (_, mut dialled) = dialled.expect("dialled");
            assert_eq!(
                accepted.node, 1,
                "the acceptor learns the dialler's node id"
            );
            assert_eq!(dialled.node, 2);
            for (from, to) in [
                (&mut dialled.sealer, &mut accepted.opener),
                (&mut accepted.sealer, &mut dialled.opener),
            ] {
                let mut wire = BytesMut::new();
                from.seal(b"frame", &mut wire).expect("seal");
                let (body, _) = to.open(&mut wire).expect("opens").expect("complete");
                assert_eq!(body, b"frame");
            }
            // The two directions have different keys.
            let mut wire = BytesMut::new();
            dialled.sealer.seal(b"x", &mut wire).expect("seal");
            assert!(dialled.opener.open(&mut wire).is_err());
        });
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        handshake_with(1, "s", 2, "other", anyone, |(accepted, dialled)| {
            assert_eq!(
                accepted.err().as_deref(),
                Some("handshake refused: wrong proof: another cluster secret, or meant for another node")
            );
            assert!(dialled.is_err(), "the dialler gets no welcome");
        });
    }

    #[test]
    fn a_proof_meant_for_another_node_is_refused() {
        // Node 1 meant to reach node 3; a relay handed its handshake to node 2.
        handshake_with(1, "s", 3, "s", anyone, |(accepted, dialled)| {
            assert_eq!(
                accepted.err().as_deref(),
                Some("handshake refused: wrong proof: another cluster secret, or meant for another node")
            );
            assert!(dialled.is_err());
        });
    }

    #[test]
    fn a_hello_claiming_the_acceptors_own_id_or_a_non_member_is_refused() {
        handshake_with(2, "s", 2, "s", anyone, |(accepted, dialled)| {
            assert_eq!(
                accepted.err().as_deref(),
                Some("handshake refused: hello claims this node's own id")
            );
            assert!(dialled.is_err());
        });
        handshake_with(
            1,
            "s",
            2,
            "s",
            |_| Err("not a member"),
            |(accepted, dialled)| {
                assert_eq!(
                    accepted.err().as_deref(),
                    Some("handshake refused: not a member")
                );
                assert!(dialled.is_err());
            },
        );
    }

    /// Sealed frames `t` = 0..100 and a Goodbye, written by one side and
    /// read by the other; the reader's answer and what it saw.
    fn read_back(corrupt: Option<usize>) -> (LinkError, Vec<Frame>) {
        runtime().block_on(async move {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let key = [5u8; 32];
            let writer = monoio::spawn(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let (mut sealer, mut body, mut out) =
                    (Sealer::new(&key), AlignedVec::new(), BytesMut::new());
                let frames = (0..100).map(|t| Frame::Ping { t }).chain([Frame::Goodbye]);
                for f in frames {
                    frame::encode_body(&f, &mut body).expect("encode");
                    sealer.seal(&body, &mut out).expect("seal");
                }
                if let Some(at) = corrupt {
                    out[at] ^= 0x40;
                }
                socket::write_all(&stream, out.freeze())
                    .await
                    .expect("write");
            });
            let (stream, _) = listener.accept().await.expect("accept");
            let seen = RefCell::new(Vec::new());
            let batches = RefCell::new(0);
            let why = read_frames(
                Rc::new(stream),
                BytesMut::new(),
                Opener::new(&key),
                |f, n| {
                    assert!(n > crate::cluster::seal::HEADER_LEN + crate::cluster::seal::TAG_LEN);
                    seen.borrow_mut().push(f);
                },
                || *batches.borrow_mut() += 1,
            )
            .await;
            writer.await;
            assert!(*batches.borrow() >= 1);
            (why, seen.into_inner())
        })
    }

    #[test]
    fn sealed_frames_written_on_a_socket_are_read_back_in_order() {
        let (why, seen) = read_back(None);
        assert!(matches!(why, LinkError::Closed), "{why}");
        let mut want: Vec<Frame> = (0..100).map(|t| Frame::Ping { t }).collect();
        want.push(Frame::Goodbye);
        assert_eq!(seen, want);
    }

    #[test]
    fn a_flipped_byte_ends_the_reader_after_the_frames_before_it() {
        // Each sealed Ping is the same size; byte 10 of the 5th one.
        let mut body = AlignedVec::new();
        frame::encode_body(&Frame::Ping { t: 0 }, &mut body).expect("encode");
        let size = crate::cluster::seal::HEADER_LEN + body.len() + crate::cluster::seal::TAG_LEN;
        let (why, seen) = read_back(Some(4 * size + 10));
        assert!(matches!(why, LinkError::Seal(SealError::Open)), "{why}");
        assert_eq!(seen, (0..4).map(|t| Frame::Ping { t }).collect::<Vec<_>>());
    }
}
