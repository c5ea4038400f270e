//! Inter-node wire format: one [`Frame`] per rkyv archive, CRC-checked and
//! length-prefixed during the handshake, sealed after it (`seal.rs`).
//!
//! Why not gRPC or HTTP/2: every core keeps one persistent TCP link to every
//! peer node and streams small pushes over it; a request/response framework
//! would add per-call overhead, its own connection management and a second
//! serialisation layer for no gain. Instead each frame on the wire is
//!
//! ```text
//! u32 LE body length | u32 LE crc32(body) | body
//! ```
//!
//! where `body` is the rkyv archive of one [`Frame`]. The length is checked
//! against [`MAX_BODY`] as soon as the header has arrived, the CRC catches
//! corruption cheaply, and the body is validated with bytecheck before any
//! field is read, so a hostile or broken peer gets an error (and the link is
//! closed by the caller), never a panic or undefined behaviour.
//!
//! That CRC framing carries the four handshake frames only. After the
//! handshake the body of every frame ([`encode_body`], [`decode_body`]) is
//! sealed with AES-GCM instead (`seal.rs`), whose tag replaces the CRC.
//!
//! rkyv needs its input aligned, so each body is first copied into an aligned
//! scratch buffer; [`decode_with`] and [`decode_body`] let the link's reader
//! reuse one, and [`encode_body`] lets a writer reuse one.
//!
//! Everything here is a pure function over byte slices: no sockets, no
//! clocks, no global state. That keeps the codec easy to fuzz and to bench.

use bytes::{BufMut, BytesMut};
use rkyv::rancor::BoxedError;
use rkyv::util::AlignedVec;

use crate::op::{
    Ask, ClientInfo, ConnAddr, ConnOp, ConnOutcome, GroupCount, HandedStream, Page, Position,
    Reader, Unstamped,
};
use crate::ws::Push;

/// Version carried in [`Frame::Hello`]; peers with a different one are refused.
pub const PROTOCOL_VERSION: u16 = 7;
/// Largest body accepted (an online-list reply of a huge group is the biggest legitimate frame).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Bytes before the body: length and CRC, both `u32` little-endian.
pub const HEADER_LEN: usize = 8;

/// One message on an inter-node link.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    // Handshake. nonce = 16 random bytes, mac = HMAC-SHA256 (computed by the caller).
    /// First frame of the connecting side.
    Hello {
        version: u16,
        cluster: String,
        node: u16,
        core: u8,
        nonce: [u8; 16],
    },
    /// The accepting side's nonce.
    Challenge { nonce: [u8; 16] },
    /// The connecting side's proof of the shared secret.
    Proof { mac: [u8; 32] },
    /// The accepting side's proof; the link is up after this.
    Welcome { node: u16, mac: [u8; 32] },

    /// An operation on one connection of core `core` of the receiving node;
    /// answered by [`Frame::ConnDone`].
    Conn {
        req: u64,
        core: u8,
        addr: ConnAddr,
        system: String,
        op: ConnOp,
    },

    // Pushes. `frame` is the pre-encoded WebSocket frame (header + JSON) delivered as-is.
    /// Push to several connections of one core; answered by [`Frame::Count`].
    DeliverMany {
        req: u64,
        core: u8,
        system: String,
        targets: Vec<ConnAddr>,
        frame: Push,
    },
    /// Push to every member of a group on the receiving node; answered by
    /// [`Frame::Taken`] or [`Frame::Refused`]. `stream`: a push its stream's
    /// owner numbered (docs/api.md §9), which a member recovering that
    /// stream skips (its replay holds it).
    Group {
        req: u64,
        system: String,
        group: String,
        frame: Push,
        stream: bool,
    },
    /// Push to every connection of a user on the receiving node; answered
    /// by [`Frame::Count`].
    User {
        req: u64,
        system: String,
        user: String,
        frame: Push,
    },
    /// Push to every connection of a system on the receiving node; answered
    /// by [`Frame::Taken`] or [`Frame::Refused`].
    System {
        req: u64,
        system: String,
        frame: Push,
    },
    /// An online/offline notice for the members of a group on the receiving
    /// node: never refused, so never answered.
    Notice {
        system: String,
        group: String,
        frame: Push,
    },

    // Group history (docs/api.md §9), on the owner node of a stream.
    /// A push to a history group for the receiving node, its owner, to
    /// number and fan out; answered by [`Frame::Stamped`] or
    /// [`Frame::Refused`].
    Stamp {
        req: u64,
        system: String,
        group: String,
        message: Unstamped,
        /// Times it was forwarded (an owner that has moved forwards it on).
        hops: u8,
    },
    /// A read of a stream for the connection `reader`; answered, on the
    /// owner core's own link (the path of the stream's pushes), by
    /// [`Frame::Replay`].
    Read {
        system: String,
        group: String,
        ask: Ask,
        reader: Reader,
        hops: u8,
    },
    /// The pushes a [`Frame::Read`] asked for, for core `core` of the
    /// receiving node.
    Replay {
        core: u8,
        addr: ConnAddr,
        system: String,
        group: String,
        frames: Vec<Push>,
        position: Position,
    },
    /// `/api/get_group_history` on the owner; answered by [`Frame::Paged`].
    Page {
        req: u64,
        system: String,
        group: String,
        since: Option<(u64, String)>,
        limit: u32,
        hops: u8,
    },
    /// The stream's new owner `by` asks the previous one for it; answered
    /// by [`Frame::Handed`] (the stream, which leaves the previous owner,
    /// or none).
    Claim {
        req: u64,
        system: String,
        group: String,
        by: u16,
    },
    /// A draining owner gives a stream to its next owner; answered by
    /// [`Frame::Taken`].
    Handover {
        req: u64,
        system: String,
        group: String,
        stream: HandedStream,
    },

    // Queries answered by the whole receiving node.
    /// Count (or list, `with_info`) a group's members on the receiving node.
    OnlineList {
        req: u64,
        system: String,
        group: String,
        with_info: bool,
    },
    /// Every group of a system with its member count on the receiving node.
    GroupList { req: u64, system: String },

    // Replies, matched to the request by `req`.
    /// Outcome of [`Frame::Conn`].
    ConnDone { req: u64, outcome: ConnOutcome },
    /// A count (connections a push reached).
    Count { req: u64, n: u64 },
    /// Every core of the receiving node took a [`Frame::Group`] or
    /// [`Frame::System`] push.
    Taken { req: u64 },
    /// The receiving node refused the request: a core it needed was over its
    /// mailbox bound. The origin answers as if the node had not answered.
    Refused { req: u64 },
    /// Answer to [`Frame::OnlineList`].
    Clients { req: u64, clients: Vec<ClientInfo> },
    /// Answer to [`Frame::GroupList`].
    Groups { req: u64, groups: Vec<GroupCount> },
    /// Answer to [`Frame::Stamp`]: numbered and sent; `partial` when a
    /// node did not take it.
    Stamped { req: u64, partial: bool },
    /// Answer to [`Frame::Page`].
    Paged { req: u64, page: Page },
    /// Answer to [`Frame::Claim`].
    Handed {
        req: u64,
        stream: Option<HandedStream>,
    },

    // Link upkeep.
    /// Liveness probe; `t` is echoed back.
    Ping { t: u64 },
    /// Answer to [`Frame::Ping`].
    Pong { t: u64 },
    /// Orderly close of the link.
    Goodbye,
}

/// Why bytes from a peer are not a frame; any of these closes the link.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame body of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("frame body failed validation: {0}")]
    Invalid(String),
}

/// Appends one encoded frame (header + body) to `out`.
///
/// Encoding cannot fail for these types; if rkyv reports an error anyway it
/// is returned as [`FrameError::Invalid`]. A body over [`MAX_BODY`] (which
/// the peer would refuse) is [`FrameError::TooLong`]. On error `out` is left
/// unchanged.
pub fn encode(frame: &Frame, out: &mut BytesMut) -> Result<(), FrameError> {
    let body = rkyv::to_bytes::<BoxedError>(frame).map_err(invalid)?;
    let len = checked_len(body.len())?;
    out.reserve(HEADER_LEN + body.len());
    out.put_u32_le(len);
    out.put_u32_le(crc32fast::hash(&body));
    out.extend_from_slice(&body);
    Ok(())
}

/// Archives `frame` into `body` (cleared first, its allocation reused): the
/// body of a sealed frame. A body over [`MAX_BODY`] is
/// [`FrameError::TooLong`].
pub fn encode_body(frame: &Frame, body: &mut AlignedVec) -> Result<(), FrameError> {
    let mut buf = std::mem::take(body);
    buf.clear();
    *body = rkyv::api::high::to_bytes_in::<_, BoxedError>(frame, buf).map_err(invalid)?;
    checked_len(body.len()).map(drop)
}

/// Looks at the start of `buf`: `Ok(None)` while the frame is incomplete,
/// `Ok(Some((frame, consumed)))` when complete and valid. A length over
/// [`MAX_BODY`] is an error as soon as the header is there.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    decode_with(buf, &mut AlignedVec::new())
}

/// Same as [`decode`] with a caller-supplied aligned scratch buffer reused
/// across calls, to avoid an allocation per frame.
pub fn decode_with(
    buf: &[u8],
    scratch: &mut AlignedVec,
) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(body) = split_body(buf)? else {
        return Ok(None);
    };
    let frame = decode_body(body, scratch)?;
    Ok(Some((frame, HEADER_LEN + body.len())))
}

/// The CRC-checked body at the start of `buf`, or `None` if it has not fully arrived.
fn split_body(buf: &[u8]) -> Result<Option<&[u8]>, FrameError> {
    let Some((&[l0, l1, l2, l3, c0, c1, c2, c3], rest)) = buf.split_first_chunk::<HEADER_LEN>()
    else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_le_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
    if len > MAX_BODY {
        return Err(FrameError::TooLong(len));
    }
    let Some(body) = rest.get(..len) else {
        return Ok(None);
    };
    if crc32fast::hash(body) != u32::from_le_bytes([c0, c1, c2, c3]) {
        return Err(FrameError::Checksum);
    }
    Ok(Some(body))
}

/// Validates `body` (after copying it into the aligned `scratch`) and
/// deserializes it: the frame of an opened sealed frame, or of a CRC-checked one.
pub fn decode_body(body: &[u8], scratch: &mut AlignedVec) -> Result<Frame, FrameError> {
    scratch.clear();
    scratch.extend_from_slice(body);
    let archived =
        rkyv::access::<ArchivedFrame, BoxedError>(scratch.as_slice()).map_err(invalid)?;
    rkyv::deserialize::<Frame, BoxedError>(archived).map_err(invalid)
}

/// `body` behind a correct header (its length and CRC), whatever the body
/// holds: for tests and the fuzzer, which need bytes that pass the CRC.
/// A body over [`MAX_BODY`] gets the length the decoder refuses.
pub fn wrap_body(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// The body length as it goes in the header, refusing what a peer would refuse.
fn checked_len(len: usize) -> Result<u32, FrameError> {
    match u32::try_from(len) {
        Ok(n) if len <= MAX_BODY => Ok(n),
        _ => Err(FrameError::TooLong(len)),
    }
}

fn invalid(e: BoxedError) -> FrameError {
    FrameError::Invalid(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{HandedPush, PageEntry};
    use bytes::Bytes;

    /// docs/cluster.md names the protocol version this code speaks.
    #[test]
    fn the_cluster_doc_names_this_protocol_version() {
        let doc = include_str!("../../docs/cluster.md");
        for said in [
            format!("## Frames (protocol version {PROTOCOL_VERSION})"),
            format!("this one speaks {PROTOCOL_VERSION} "),
            format!("own ({PROTOCOL_VERSION}, `PROTOCOL_VERSION`"),
        ] {
            assert!(doc.contains(&said), "docs/cluster.md lacks {said:?}");
        }
    }

    fn info(n: u8) -> ClientInfo {
        ClientInfo {
            client_id: format!("client-{n}"),
            user_id: format!("user-{n}"),
            extend: "{\"k\":\"v\"}".into(),
            groups: vec!["a".into(), String::new(), "ünïcødé".into()],
            connect_time: u64::MAX - u64::from(n),
            detached: n % 2 == 0,
        }
    }

    fn conn(req: u64, core: u8, slot: u32, gen: u32, op: ConnOp) -> Frame {
        Frame::Conn {
            req,
            core,
            addr: ConnAddr { slot, gen },
            system: if req == 0 {
                String::new()
            } else {
                "sys".into()
            },
            op,
        }
    }

    /// One or more samples of every variant, with empty and extreme values.
    pub(crate) fn samples() -> Vec<Frame> {
        let s = |x: &str| x.to_string();
        let b = |x: &[u8]| Push {
            plain: Bytes::copy_from_slice(x),
            deflated: Bytes::copy_from_slice(&x[..x.len() / 2]),
        };
        vec![
            Frame::Hello {
                version: PROTOCOL_VERSION,
                cluster: s("prod"),
                node: u16::MAX,
                core: u8::MAX,
                nonce: [0xAB; 16],
            },
            Frame::Hello {
                version: 0,
                cluster: String::new(),
                node: 0,
                core: 0,
                nonce: [0; 16],
            },
            Frame::Challenge { nonce: [7; 16] },
            Frame::Proof { mac: [0xFF; 32] },
            Frame::Welcome {
                node: 3,
                mac: [1; 32],
            },
            conn(
                u64::MAX,
                u8::MAX,
                u32::MAX,
                u32::MAX,
                ConnOp::Deliver(b(&[0x81, 2, b'{', b'}'])),
            ),
            conn(0, 0, 0, 0, ConnOp::Deliver(Push::default())),
            conn(
                1,
                4,
                77,
                8,
                ConnOp::Bind {
                    group: s("g"),
                    user_id: s("u"),
                    extend: s("e"),
                    history: Some(Ask::Since {
                        offset: 1,
                        epoch: s("e"),
                    }),
                },
            ),
            conn(
                0,
                0,
                0,
                0,
                ConnOp::Bind {
                    group: String::new(),
                    user_id: String::new(),
                    extend: String::new(),
                    history: None,
                },
            ),
            conn(2, 1, 3, 4, ConnOp::Unbind { group: s("g") }),
            conn(3, 1, 3, 4, ConnOp::Close),
            conn(4, 1, 3, 4, ConnOp::Info),
            Frame::DeliverMany {
                req: 9,
                core: 2,
                system: s("sys"),
                targets: vec![
                    ConnAddr { slot: 1, gen: 2 },
                    ConnAddr {
                        slot: u32::MAX,
                        gen: u32::MAX,
                    },
                ],
                frame: b(&[0; 300]),
            },
            Frame::DeliverMany {
                req: 0,
                core: 0,
                system: String::new(),
                targets: Vec::new(),
                frame: Push::default(),
            },
            Frame::Group {
                req: 20,
                system: s("sys"),
                group: s("room-1"),
                frame: b(b"hello"),
                stream: true,
            },
            Frame::Group {
                req: 0,
                system: String::new(),
                group: String::new(),
                frame: Push::default(),
                stream: false,
            },
            Frame::Stamp {
                req: 21,
                system: s("sys"),
                group: s("room:1"),
                message: Unstamped {
                    message_id: u64::MAX,
                    send_user_id: s("u"),
                    code: -3,
                    msg: s("m"),
                    data: s("{\"a\":[1]}"),
                },
                hops: 1,
            },
            Frame::Read {
                system: s("sys"),
                group: s("room:1"),
                ask: Ask::Since {
                    offset: 7,
                    epoch: s("00ff00ff00ff00ff"),
                },
                reader: Reader {
                    node: 3,
                    core: 1,
                    addr: ConnAddr { slot: 9, gen: 2 },
                },
                hops: 0,
            },
            Frame::Read {
                system: s("sys"),
                group: s("room:1"),
                ask: Ask::Last(50),
                reader: Reader {
                    node: 0,
                    core: 0,
                    addr: ConnAddr { slot: 0, gen: 0 },
                },
                hops: 2,
            },
            Frame::Replay {
                core: 1,
                addr: ConnAddr { slot: 9, gen: 2 },
                system: s("sys"),
                group: s("room:1"),
                frames: vec![b(b"one"), Push::default()],
                position: Position {
                    recovered: true,
                    offset: 8,
                    epoch: s("e"),
                },
            },
            Frame::Page {
                req: 22,
                system: s("sys"),
                group: s("room:1"),
                since: Some((3, s("e"))),
                limit: 10,
                hops: 0,
            },
            Frame::Claim {
                req: 23,
                system: s("sys"),
                group: s("room:1"),
                by: 4,
            },
            Frame::Handover {
                req: 24,
                system: s("sys"),
                group: s("room:1"),
                stream: HandedStream {
                    epoch: s("e"),
                    top: 9,
                    last_ms: 1,
                    kept: vec![HandedPush {
                        offset: 9,
                        at_ms: 1,
                        push: b(b"nine"),
                    }],
                },
            },
            Frame::Handed {
                req: 23,
                stream: None,
            },
            Frame::Stamped {
                req: 21,
                partial: true,
            },
            Frame::Paged {
                req: 22,
                page: Page {
                    epoch: s("e"),
                    offset: 4,
                    messages: vec![PageEntry {
                        offset: 4,
                        at_ms: 1_700_000_000_000,
                        frame: Bytes::from_static(b"frame"),
                    }],
                },
            },
            Frame::User {
                req: 5,
                system: s("sys"),
                user: s("alice"),
                frame: b(&[1, 2, 3]),
            },
            Frame::System {
                req: u64::MAX,
                system: s("sys"),
                frame: b(&[9; 1000]),
            },
            Frame::Notice {
                system: s("sys"),
                group: s("room-1"),
                frame: b(b"notice"),
            },
            Frame::Notice {
                system: String::new(),
                group: String::new(),
                frame: Push::default(),
            },
            Frame::OnlineList {
                req: 6,
                system: s("sys"),
                group: s("g"),
                with_info: true,
            },
            Frame::OnlineList {
                req: 7,
                system: String::new(),
                group: String::new(),
                with_info: false,
            },
            Frame::GroupList {
                req: 8,
                system: s("sys"),
            },
            Frame::ConnDone {
                req: 10,
                outcome: ConnOutcome::Done,
            },
            Frame::ConnDone {
                req: 11,
                outcome: ConnOutcome::Offline,
            },
            Frame::ConnDone {
                req: 12,
                outcome: ConnOutcome::Invalid,
            },
            Frame::ConnDone {
                req: 14,
                outcome: ConnOutcome::Info(info(1)),
            },
            Frame::Count {
                req: 13,
                n: u64::MAX,
            },
            Frame::Taken { req: 21 },
            Frame::Refused { req: u64::MAX },
            Frame::Clients {
                req: 17,
                clients: vec![info(2), info(3)],
            },
            Frame::Clients {
                req: 18,
                clients: Vec::new(),
            },
            Frame::Groups {
                req: 19,
                groups: vec![
                    GroupCount {
                        group: s("g"),
                        count: u64::MAX,
                    },
                    GroupCount {
                        group: String::new(),
                        count: 0,
                    },
                ],
            },
            Frame::Groups {
                req: 20,
                groups: Vec::new(),
            },
            Frame::Ping { t: u64::MAX },
            Frame::Pong { t: 0 },
            Frame::Goodbye,
        ]
    }

    fn encode_all(frames: &[Frame]) -> BytesMut {
        let mut out = BytesMut::new();
        for f in frames {
            encode(f, &mut out).expect("encode");
        }
        out
    }

    /// Decodes frames from the start of `buf` until incomplete; returns them and the bytes used.
    fn decode_all(buf: &[u8]) -> Result<(Vec<Frame>, usize), FrameError> {
        let mut scratch = AlignedVec::new();
        let (mut frames, mut pos) = (Vec::new(), 0);
        while let Some((f, used)) = decode_with(&buf[pos..], &mut scratch)? {
            frames.push(f);
            pos += used;
        }
        Ok((frames, pos))
    }

    fn wrap(body: &[u8]) -> Vec<u8> {
        wrap_body(body)
    }

    /// The seeds of `fuzz/fuzz_targets/link_frame.rs`: every sample as a
    /// body (mode byte 0) and as a raw stream (mode byte 1), and all of
    /// them back to back.
    #[test]
    #[ignore = "writes fuzz/seeds/link_frame; run by hand after a frame change"]
    fn write_link_frame_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/link_frame");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, f) in samples().iter().enumerate() {
            let wire = encode_all(std::slice::from_ref(f));
            let name = format!("{i:02}_{:?}", f)
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>();
            let mut body = vec![0u8];
            body.extend_from_slice(&wire[HEADER_LEN..]);
            std::fs::write(dir.join(format!("body_{name}")), body).unwrap();
            let mut raw = vec![1u8];
            raw.extend_from_slice(&wire);
            std::fs::write(dir.join(format!("raw_{name}")), raw).unwrap();
        }
        let mut all = vec![1u8];
        all.extend_from_slice(&encode_all(&samples()));
        std::fs::write(dir.join("raw_stream_of_all"), all).unwrap();
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn every_variant_round_trips_back_to_back() {
        let frames = samples();
        let buf = encode_all(&frames);
        let (decoded, used) = decode_all(&buf).expect("decode");
        assert_eq!(decoded, frames);
        assert_eq!(used, buf.len());
    }

    #[test]
    fn single_frame_decode_reports_consumed_bytes() {
        for f in samples() {
            let buf = encode_all(std::slice::from_ref(&f));
            assert_eq!(decode(&buf), Ok(Some((f, buf.len()))));
        }
    }

    #[test]
    fn every_truncation_is_incomplete_never_an_error() {
        let frames = samples();
        let buf = encode_all(&frames);
        for cut in 0..buf.len() {
            let (decoded, used) = decode_all(&buf[..cut]).expect("prefix must not error");
            assert_eq!(decoded[..], frames[..decoded.len()]);
            assert!(decoded.len() < frames.len() && used <= cut);
        }
    }

    #[test]
    fn corrupted_crc_is_checksum_error() {
        let mut buf = encode_all(&[Frame::Ping { t: 42 }]);
        buf[4] ^= 1;
        assert_eq!(decode(&buf), Err(FrameError::Checksum));
    }

    #[test]
    fn flipped_body_byte_without_new_crc_is_checksum_error() {
        let mut buf = encode_all(&[Frame::Group {
            req: 1,
            system: "s".into(),
            group: "g".into(),
            frame: Push::plain(Bytes::from_static(&[1])),
            stream: false,
        }]);
        let last = buf.len() - 1;
        buf[last] ^= 0x40;
        assert_eq!(decode(&buf), Err(FrameError::Checksum));
    }

    #[test]
    fn flipped_body_bits_with_valid_crc_never_panic() {
        let sample = conn(
            1,
            2,
            3,
            4,
            ConnOp::Bind {
                group: "group".into(),
                user_id: "user".into(),
                extend: "extend".into(),
                history: Some(Ask::Last(5)),
            },
        );
        let body = encode_all(&[sample])[HEADER_LEN..].to_vec();
        for pos in 0..body.len() {
            for mask in [0x01, 0x02, 0x10, 0x80, 0xFF] {
                let mut bad = body.clone();
                bad[pos] ^= mask;
                let buf = wrap(&bad);
                match decode(&buf) {
                    Ok(Some((_, used))) => assert_eq!(used, buf.len()),
                    Err(FrameError::Invalid(msg)) => assert!(!msg.is_empty()),
                    other => panic!("unexpected {other:?} at byte {pos} mask {mask:#x}"),
                }
            }
        }
    }

    #[test]
    fn validation_errors_carry_a_message() {
        let Err(FrameError::Invalid(msg)) = decode(&wrap(&[0xFF; 16])) else {
            panic!("garbage body must be invalid");
        };
        assert!(!msg.is_empty());
        assert!(matches!(decode(&wrap(&[])), Err(FrameError::Invalid(_))));
    }

    #[test]
    fn oversized_length_fails_as_soon_as_header_is_present() {
        for len in [MAX_BODY as u32 + 1, u32::MAX] {
            let mut header = len.to_le_bytes().to_vec();
            header.extend_from_slice(&[0; 4]);
            assert_eq!(decode(&header[..HEADER_LEN - 1]), Ok(None));
            assert_eq!(decode(&header), Err(FrameError::TooLong(len as usize)));
        }
    }

    #[test]
    fn max_length_header_waits_for_body() {
        let mut header = (MAX_BODY as u32).to_le_bytes().to_vec();
        header.extend_from_slice(&[0; 4]);
        assert_eq!(decode(&header), Ok(None));
    }

    #[test]
    fn encode_refuses_bodies_the_peer_would_refuse() {
        let huge = Frame::System {
            req: 1,
            system: String::new(),
            frame: Push::plain(Bytes::from(vec![0; MAX_BODY])),
        };
        let mut out = BytesMut::new();
        assert!(matches!(encode(&huge, &mut out), Err(FrameError::TooLong(n)) if n > MAX_BODY));
        assert!(out.is_empty());
        assert_eq!(checked_len(MAX_BODY), Ok(MAX_BODY as u32));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut scratch = AlignedVec::new();
        for i in 0..20_000 {
            let n = rng.below(200);
            let body = rng.bytes(n);
            let buf = if i % 2 == 0 { wrap(&body) } else { body };
            let _ = decode_with(&buf, &mut scratch);
        }
    }

    #[test]
    fn random_bodies_spliced_into_real_frames_never_panic() {
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        let bodies: Vec<Vec<u8>> = samples()
            .iter()
            .map(|f| encode_all(std::slice::from_ref(f))[HEADER_LEN..].to_vec())
            .collect();
        for _ in 0..5_000 {
            let mut body = bodies[rng.below(bodies.len())].clone();
            for _ in 0..=rng.below(4) {
                let pos = rng.below(body.len());
                body[pos] = rng.next() as u8;
            }
            if let Ok(Some((_, used))) = decode(&wrap(&body)) {
                assert_eq!(used, HEADER_LEN + body.len());
            }
        }
    }

    #[test]
    fn bodies_round_trip_and_match_the_crc_framing() {
        let (mut body, mut scratch) = (AlignedVec::new(), AlignedVec::new());
        for f in samples() {
            encode_body(&f, &mut body).expect("encode_body");
            assert_eq!(decode_body(&body, &mut scratch), Ok(f.clone()));
            let framed = encode_all(std::slice::from_ref(&f));
            assert_eq!(&framed[HEADER_LEN..], body.as_slice());
        }
        let big = Frame::System {
            req: 1,
            system: "s".into(),
            frame: Push::plain(Bytes::from(vec![7; 1 << 16])),
        };
        encode_body(&big, &mut body).expect("big");
        let cap = body.capacity();
        encode_body(&Frame::Goodbye, &mut body).expect("small");
        assert_eq!(body.capacity(), cap, "the allocation is reused");
    }

    #[test]
    fn decode_with_reuses_scratch() {
        let big = encode_all(&[Frame::System {
            req: 1,
            system: "s".into(),
            frame: Push::plain(Bytes::from(vec![7; 1 << 20])),
        }]);
        let small = encode_all(&samples());
        let mut scratch = AlignedVec::new();
        assert!(decode_with(&big, &mut scratch).expect("big").is_some());
        let cap = scratch.capacity();
        assert!(cap >= big.len() - HEADER_LEN);
        for _ in 0..3 {
            let mut pos = 0;
            while let Some((_, used)) = decode_with(&small[pos..], &mut scratch).expect("small") {
                pos += used;
            }
            assert!(decode_with(&big, &mut scratch).expect("big").is_some());
            assert_eq!(scratch.capacity(), cap);
        }
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            FrameError::TooLong(9).to_string(),
            "frame body of 9 bytes exceeds the limit"
        );
        assert_eq!(FrameError::Checksum.to_string(), "frame checksum mismatch");
        assert_eq!(
            FrameError::Invalid("x".into()).to_string(),
            "frame body failed validation: x"
        );
    }
}
