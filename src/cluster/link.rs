//! The transport of a link between two nodes: dial, accept, the handshake
//! of `handshake.rs`, and the reader that turns bytes into frames.
//!
//! Every core dials one link to every live peer and accepts links on the
//! shared cluster port (docs/cluster.md). What a frame means, and the
//! buffered writing of frames, belong to the core that owns the link: this
//! file knows sockets and frames only, and hands each decoded frame to a
//! closure.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use monoio::net::TcpStream;
use rkyv::util::AlignedVec;

use super::frame::{self, Frame, FrameError, PROTOCOL_VERSION};
use super::handshake::{self, Side};
use crate::socket;
use std::os::fd::AsRawFd;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("peer closed the connection")]
    Closed,
    #[error("handshake timed out")]
    Timeout,
    #[error("handshake refused: {0}")]
    Refused(&'static str),
}

/// What both sides of a handshake need to know.
pub struct Credentials {
    pub cluster: String,
    pub secret: String,
    pub node: u16,
    pub core: u8,
}

/// Largest handshake frame. Before a peer has proven the secret it may not
/// make us buffer more than this (the general limit is 64 MiB).
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

/// Dials `addr` and authenticates as `me` to the node `expect`. Returns the
/// stream and any bytes read past the handshake.
pub async fn dial(
    addr: &str,
    me: &Credentials,
    expect: u16,
    limit: Duration,
) -> Result<(TcpStream, BytesMut), LinkError> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (mut buf, mut scratch) = (BytesMut::new(), AlignedVec::new());
        let a = handshake::nonce();
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
        let mac = handshake::proof(&me.secret, Side::Dialler, &me.cluster, &a, &b, me.node);
        write_frame(&stream, &Frame::Proof { mac }).await?;
        let Frame::Welcome { node, mac } = read_frame(&stream, &mut buf, &mut scratch).await?
        else {
            return Err(LinkError::Refused("expected a welcome"));
        };
        if node != expect
            || !handshake::verify(&me.secret, Side::Acceptor, &me.cluster, &a, &b, node, &mac)
        {
            return Err(LinkError::Refused(
                "peer failed to prove the cluster secret",
            ));
        }
        Ok((stream, buf))
    };
    monoio::time::timeout(limit, attempt)
        .await
        .map_err(|_| LinkError::Timeout)?
}

/// Runs the acceptor's side of the handshake. Returns the peer's node id and
/// any bytes read past the handshake.
pub async fn accept(
    stream: &TcpStream,
    me: &Credentials,
    limit: Duration,
) -> Result<(u16, BytesMut), LinkError> {
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
        let b = handshake::nonce();
        write_frame(stream, &Frame::Challenge { nonce: b }).await?;
        let Frame::Proof { mac } = read_frame(stream, &mut buf, &mut scratch).await? else {
            return Err(LinkError::Refused("expected a proof"));
        };
        if !handshake::verify(&me.secret, Side::Dialler, &me.cluster, &a, &b, node, &mac) {
            return Err(LinkError::Refused("wrong cluster secret"));
        }
        let mac = handshake::proof(&me.secret, Side::Acceptor, &me.cluster, &a, &b, me.node);
        write_frame(stream, &Frame::Welcome { node: me.node, mac }).await?;
        Ok((node, buf))
    };
    monoio::time::timeout(limit, attempt)
        .await
        .map_err(|_| LinkError::Timeout)?
}

/// Reads frames from an established link and hands each to `on_frame`
/// (with its size on the wire), calling `after_batch` once the bytes of one
/// read are used up, until the link breaks, is closed, or a frame is invalid.
pub async fn read_frames(
    stream: Rc<TcpStream>,
    mut buf: BytesMut,
    mut on_frame: impl FnMut(Frame, usize),
    mut after_batch: impl FnMut(),
) -> LinkError {
    let mut scratch = AlignedVec::new();
    loop {
        loop {
            match frame::decode_with(&buf, &mut scratch) {
                Ok(Some((f, n))) => {
                    buf.advance(n);
                    on_frame(f, n);
                }
                Ok(None) => break,
                Err(e) => return e.into(),
            }
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

    /// Accepts one link as node 2 (secret `theirs`) and dials it as node 1
    /// (secret `ours`); returns what each side's handshake gave.
    fn handshake(ours: &str, theirs: &str) -> (Result<u16, String>, Result<(), String>) {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let (ours, theirs) = (ours.to_owned(), theirs.to_owned());
        rt.block_on(async move {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let limit = Duration::from_secs(2);
            let acceptor = monoio::spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let accepted = accept(&stream, &creds(2, &theirs), limit).await;
                accepted.map(|(node, _)| node).map_err(|e| e.to_string())
            });
            let dialled = dial(&addr, &creds(1, &ours), 2, limit).await;
            let accepted = acceptor.await;
            (accepted, dialled.map(drop).map_err(|e| e.to_string()))
        })
    }

    #[test]
    fn a_handshake_with_the_secret_links_two_nodes() {
        let (accepted, dialled) = handshake("s", "s");
        assert_eq!(accepted, Ok(1), "the acceptor learns the dialler's node id");
        assert_eq!(dialled, Ok(()));
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        let (accepted, dialled) = handshake("s", "other");
        assert_eq!(
            accepted,
            Err("handshake refused: wrong cluster secret".into())
        );
        assert!(dialled.is_err(), "the dialler gets no welcome: {dialled:?}");
    }

    #[test]
    fn frames_written_on_a_socket_are_read_back_in_order() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let seen = rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let writer = monoio::spawn(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                for t in 0..100 {
                    write_frame(&stream, &Frame::Ping { t })
                        .await
                        .expect("write");
                }
                write_frame(&stream, &Frame::Goodbye).await.expect("write");
            });
            let (stream, _) = listener.accept().await.expect("accept");
            let seen = RefCell::new(Vec::new());
            let batches = RefCell::new(0);
            let why = read_frames(
                Rc::new(stream),
                BytesMut::new(),
                |f, n| {
                    assert!(n >= HEADER_BYTES);
                    seen.borrow_mut().push(f);
                },
                || *batches.borrow_mut() += 1,
            )
            .await;
            writer.await;
            assert!(matches!(why, LinkError::Closed), "{why}");
            assert!(*batches.borrow() >= 1);
            seen.into_inner()
        });
        let mut want: Vec<Frame> = (0..100).map(|t| Frame::Ping { t }).collect();
        want.push(Frame::Goodbye);
        assert_eq!(seen, want);
    }

    const HEADER_BYTES: usize = frame::HEADER_LEN;
}
