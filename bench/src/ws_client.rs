//! What the bench's two sets of WebSocket client connections share: `subscriber`
//! (fanout, idle, chat) and `resume_conns` (resume) differ in what the 101, a welcome
//! and a data frame mean to them, not in how bytes come and go. Here: where they
//! connect to, the start of a connection from its source address, the upgrade
//! request, the writes, and the read path: reads into the thread's one buffer, the
//! upgrade answer, frames located from their headers alone, pings answered with pongs,
//! a close frame ending the connection. A connection keeps bytes only for a head or
//! frame cut by a read boundary. A set hands its connections over through [`WsConns`].
//!
//! permessage-deflate (`--deflate`, the `deflate` module): the upgrade request offers
//! it, the 101's answer decides how the connection inflates, and a compressed message
//! (RSV1) reaches its set inflated, as one [`Frame`] with the bytes it took on the
//! wire. Plain frames take the path they took before: their reserved bits are checked,
//! nothing else.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::deflate::{self, Inflate, Recent};
use crate::poller::{write_out, Poller, HUP, READ, WRITE};
use crate::sock::{self, Fd};
use shardcast::ws::frame::{self as wsframe, Head, RSV1};

/// Largest frame accepted from a server; beyond it the connection is dropped.
const MAX_FRAME: u64 = 16 << 20;
/// Largest upgrade answer head.
const MAX_HEAD: usize = 16 << 10;
/// Size of the read buffer.
const READ_BUF: usize = 256 << 10;
/// An inflate buffer larger than this is given back after use.
const INFLATED_KEEP: usize = 1 << 20;

thread_local! {
    /// The read buffer of the connections of this thread (a worker's epoll thread).
    static RBUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
    /// Where this thread's compressed messages are inflated (connections with context
    /// takeover), one at a time.
    static INFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The last messages this thread inflated without context takeover.
    static RECENT: RefCell<Recent> = RefCell::new(Recent::default());
}

/// Where and how a set of connections connects.
#[derive(Clone, Debug)]
pub struct Dial {
    pub dst: SocketAddrV4,
    /// Host header value.
    pub host: String,
    /// Path and query of the (first) upgrade request.
    pub path: String,
    /// Source addresses, taken in turn (none: the system's choice).
    pub sources: Vec<Ipv4Addr>,
    pub count: usize,
    /// Handshakes in progress at once.
    pub concurrency: usize,
    /// The `Sec-WebSocket-Extensions` offer of the upgrade request (`--deflate`).
    pub deflate: Option<String>,
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Idle,
    Connecting,
    Upgrading,
    /// Upgraded; the welcome is the next data frame (`resume_conns`).
    Welcome,
    Open,
    Done,
}

/// The transport side of one connection: its socket, its state, its buffers.
#[derive(Default)]
pub struct Link {
    pub fd: Option<Fd>,
    pub state: State,
    /// Unconsumed input (an incomplete head or frame).
    pub pending: Vec<u8>,
    /// Unsent output (upgrade request, pongs, client frames).
    pub out: Vec<u8>,
    /// Writability is asked of the poller.
    pub want_write: bool,
    /// permessage-deflate was agreed: how this connection's messages inflate.
    pub inflate: Option<Inflate>,
    /// A compressed message whose last fragment has not come yet.
    pub fragments: Option<Box<Fragments>>,
}

/// The fragments of a compressed message so far.
pub struct Fragments {
    /// The first frame's header.
    head: Head,
    compressed: Vec<u8>,
    /// Bytes on the wire so far, headers included.
    wire: u64,
}

/// A whole frame, or a compressed message inflated, as a connection set gets it.
pub struct Frame<'a> {
    /// Its header as it came (a compressed message: its first frame's, RSV1 set, `fin`
    /// set, `payload_len` the compressed length of that frame).
    pub head: Head,
    /// The payload: inflated when the message came compressed.
    pub payload: &'a [u8],
    /// Bytes the message took on the wire: frame headers and payloads as received.
    pub wire: u64,
    /// It came compressed (RSV1).
    pub compressed: bool,
}

impl Link {
    /// Closes the socket and drops the buffers; false when the link was done already.
    pub fn close(&mut self) -> bool {
        if self.state == State::Done {
            return false;
        }
        *self = Link {
            state: State::Done,
            ..Link::default()
        };
        true
    }
}

/// Whether a connection goes on after what it received.
pub enum Outcome {
    Keep,
    Close(String),
}

/// A set of connections, indexed from 0 (the index is the epoll token).
pub trait WsConns {
    fn link(&mut self, i: usize) -> &mut Link;
    /// Where and how the set connects (its extension offer, if any).
    fn dial(&self) -> &Dial;
    /// Queues the upgrade request of connection `i` (connected) on its link.
    fn queue_request(&mut self, i: usize);
    /// The 101 arrived on connection `i`: the link is to leave `Upgrading`.
    fn upgraded(&mut self, i: usize, now: u64);
    /// A whole frame (or compressed message) arrived on connection `i`.
    fn frame(&mut self, i: usize, frame: Frame<'_>, now: u64) -> Outcome;
    /// Connection `i` failed or ended, for the reason `why`.
    fn close(&mut self, i: usize, why: String);
}

/// The upgrade request to `path` at `host`, offering the extensions `offer` says.
pub fn upgrade_request(path: &str, host: &str, offer: Option<&str>) -> Vec<u8> {
    let extensions = offer
        .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {extensions}\r\n"
    )
    .into_bytes()
}

/// Starts connection `i` as `dial` says, from its source address, registered with
/// `poller` under token `i`; then `link` holds the socket and is connecting.
pub fn connect(link: &mut Link, poller: &Poller, dial: &Dial, i: usize) -> io::Result<()> {
    let src = (!dial.sources.is_empty()).then(|| dial.sources[i % dial.sources.len()]);
    let fd = sock::connect(dial.dst, src)?;
    poller.add(fd.raw(), i as u64, READ | WRITE)?;
    link.fd = Some(fd);
    link.state = State::Connecting;
    link.want_write = true;
    Ok(())
}

/// Handles one readiness event of connection `i`: the end of its connect (then the
/// upgrade request goes out), writes, reads; returns the bytes read.
pub fn handle(conns: &mut impl WsConns, poller: &Poller, i: usize, bits: u32) -> u64 {
    match conns.link(i).state {
        State::Idle | State::Done => 0,
        State::Connecting => {
            match connected(conns.link(i), bits) {
                Ok(true) => {
                    conns.link(i).state = State::Upgrading;
                    conns.queue_request(i);
                    flush(conns, poller, i);
                }
                Ok(false) => {}
                Err(why) => conns.close(i, why),
            }
            0
        }
        State::Upgrading | State::Welcome | State::Open => {
            if bits & WRITE != 0 {
                flush(conns, poller, i);
            }
            if bits & (READ | HUP) != 0 {
                read(conns, poller, i)
            } else {
                0
            }
        }
    }
}

/// How a connecting connection's event ended its connect: Ok(true) connected, Ok(false)
/// not yet, Err(why) failed.
fn connected(link: &Link, bits: u32) -> Result<bool, String> {
    let Some(fd) = link.fd.as_ref() else {
        return Ok(false);
    };
    match sock::take_error(fd) {
        Ok(()) => Ok(bits & (WRITE | HUP) != 0),
        Err(e) => Err(format!("connect: {e}")),
    }
}

/// Writes what connection `i` has queued; a failed write closes it.
pub fn flush(conns: &mut impl WsConns, poller: &Poller, i: usize) {
    let l = conns.link(i);
    let Some(fd) = l.fd.as_ref() else { return };
    if let Err(why) = write_out(poller, fd, i as u64, &mut l.out, &mut l.want_write) {
        conns.close(i, why);
    }
}

/// Reads until the socket of connection `i` is drained (through the thread's buffer),
/// handling what came; returns the bytes read.
fn read(conns: &mut impl WsConns, poller: &Poller, i: usize) -> u64 {
    RBUF.with_borrow_mut(|rbuf| read_into(conns, poller, i, rbuf))
}

fn read_into(conns: &mut impl WsConns, poller: &Poller, i: usize, rbuf: &mut [u8]) -> u64 {
    let mut total = 0;
    while let Some(fd) = conns.link(i).fd.as_ref() {
        match sock::read(fd, rbuf) {
            Ok(0) => {
                conns.close(i, "closed by the server".into());
                break;
            }
            Ok(n) => {
                total += n as u64;
                let now = crate::clock::mono_ns();
                if let Outcome::Close(why) = on_data(conns, i, &rbuf[..n], now) {
                    conns.close(i, why);
                    break;
                }
                if !conns.link(i).out.is_empty() {
                    flush(conns, poller, i);
                }
                if n < rbuf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                conns.close(i, format!("read: {e}"));
                break;
            }
        }
    }
    total
}

/// Consumes `data` after what connection `i` kept; keeps what is left.
fn on_data(conns: &mut impl WsConns, i: usize, data: &[u8], now: u64) -> Outcome {
    let mut buf = std::mem::take(&mut conns.link(i).pending);
    let outcome = if buf.is_empty() {
        let (used, outcome) = process(conns, i, data, now);
        buf.extend_from_slice(&data[used..]);
        outcome
    } else {
        buf.extend_from_slice(data);
        let (used, outcome) = process(conns, i, &buf, now);
        buf.drain(..used);
        if buf.is_empty() && buf.capacity() > 4096 {
            buf = Vec::new();
        }
        outcome
    };
    conns.link(i).pending = buf;
    outcome
}

/// Consumes what it can of `data` (the upgrade answer if awaited, then whole frames);
/// returns the bytes used.
fn process(conns: &mut impl WsConns, i: usize, data: &[u8], now: u64) -> (usize, Outcome) {
    let mut pos = 0;
    if conns.link(i).state == State::Upgrading {
        match upgrade_answer(data) {
            Ok(Some((n, extensions))) => {
                pos = n;
                let agreed =
                    deflate::read_answer(extensions.as_deref(), conns.dial().deflate.as_deref());
                match agreed {
                    Ok(agreed) => {
                        conns.link(i).inflate = agreed.as_ref().map(Inflate::for_agreement)
                    }
                    Err(e) => return (n, Outcome::Close(e.to_string())),
                }
                conns.upgraded(i, now);
            }
            Ok(None) => return (0, Outcome::Keep),
            Err((n, why)) => return (n, Outcome::Close(why)),
        }
    }
    while let Some(head) = wsframe::parse_head(&data[pos..]) {
        let len = head.frame_len();
        if len > MAX_FRAME {
            return (pos, Outcome::Close(format!("frame of {len} bytes")));
        }
        let len = len as usize;
        if data.len() - pos < len {
            break;
        }
        let payload = &data[pos + head.header_len..pos + len];
        pos += len;
        if let Outcome::Close(why) = deliver(conns, i, head, payload, now) {
            return (pos, Outcome::Close(why));
        }
    }
    (pos, Outcome::Keep)
}

/// Hands the frame `head` + `payload` of connection `i` to its set: as it is when it is
/// plain, inflated when it ends a compressed message, kept when it begins or continues
/// one.
fn deliver(conns: &mut impl WsConns, i: usize, head: Head, payload: &[u8], now: u64) -> Outcome {
    let wire = head.frame_len();
    let control = head.opcode & 0x08 != 0;
    // The common case: a plain frame outside a compressed message.
    if head.rsv == 0 && (control || conns.link(i).fragments.is_none()) {
        let frame = Frame {
            head,
            payload,
            wire,
            compressed: false,
        };
        return conns.frame(i, frame, now);
    }
    let link = conns.link(i);
    match (head.opcode, head.rsv, link.fragments.take()) {
        (_, rsv, _) if rsv & !RSV1 != 0 || (control && rsv != 0) => Outcome::Close(format!(
            "reserved bits {rsv:#04x} on a frame of opcode {}",
            head.opcode
        )),
        (_, RSV1, _) if link.inflate.is_none() => {
            Outcome::Close("a compressed frame (RSV1) without permessage-deflate".into())
        }
        // RSV1 is set on a message's first frame only (RFC 7692 §6.1).
        (wsframe::OP_CONT, RSV1, _) => Outcome::Close("RSV1 on a continuation frame".into()),
        // What is left: the next fragment of a compressed message (rsv 0), or the first
        // frame of a compressed message (RSV1).
        (wsframe::OP_CONT, _, Some(mut f)) => {
            f.compressed.extend_from_slice(payload);
            f.wire += wire;
            if f.compressed.len() as u64 > MAX_FRAME {
                return Outcome::Close("a compressed message of more than 16 MiB".into());
            }
            if !head.fin {
                conns.link(i).fragments = Some(f);
                return Outcome::Keep;
            }
            let head = Head {
                fin: true,
                ..f.head
            };
            inflated(conns, i, head, &f.compressed, f.wire, now)
        }
        (_, _, Some(_)) => Outcome::Close("a new message inside a compressed one".into()),
        (_, _, None) if !head.fin => {
            link.fragments = Some(Box::new(Fragments {
                head,
                compressed: payload.to_vec(),
                wire,
            }));
            Outcome::Keep
        }
        (_, _, None) => inflated(conns, i, head, payload, wire, now),
    }
}

/// Inflates the compressed message `compressed` of connection `i` (first header
/// `head`, `wire` bytes on the wire) and hands it to its set: without context takeover
/// through the thread's recent messages (a push inflated once for all the thread's
/// connections), else with the connection's own inflater.
fn inflated(
    conns: &mut impl WsConns,
    i: usize,
    head: Head,
    compressed: &[u8],
    wire: u64,
    now: u64,
) -> Outcome {
    let limit = MAX_FRAME as usize;
    let deliver = |conns: &mut _, r: Result<&[u8], deflate::InflateError>| match r {
        Ok(payload) => {
            let frame = Frame {
                head,
                payload,
                wire,
                compressed: true,
            };
            WsConns::frame(conns, i, frame, now)
        }
        Err(e) => Outcome::Close(e.to_string()),
    };
    if let Some(Inflate::PerMessage) = conns.link(i).inflate {
        return RECENT.with_borrow_mut(|recent| deliver(conns, recent.inflate(compressed, limit)));
    }
    let mut out = INFLATED.take();
    out.clear();
    let r = match conns.link(i).inflate.as_mut() {
        Some(inflate) => inflate.inflate(compressed, limit, &mut out),
        None => Ok(()),
    };
    let outcome = deliver(conns, r.map(|()| &out[..]));
    if out.capacity() <= INFLATED_KEEP {
        INFLATED.set(out);
    }
    outcome
}

/// The length of the 101 answer a connection's input begins with and its
/// `Sec-WebSocket-Extensions` (every line, joined with `,`); None while incomplete.
type Answer = Option<(usize, Option<String>)>;

/// The 101 answer `data` begins with; Err: the bytes it used and why the connection
/// closes.
fn upgrade_answer(data: &[u8]) -> Result<Answer, (usize, String)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) if resp.code == Some(101) => {
            let mut extensions: Option<String> = None;
            for h in resp.headers.iter() {
                if !h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
                    continue;
                }
                let Ok(value) = std::str::from_utf8(h.value) else {
                    return Err((n, "a Sec-WebSocket-Extensions answer not in UTF-8".into()));
                };
                match &mut extensions {
                    Some(all) => {
                        all.push_str(", ");
                        all.push_str(value);
                    }
                    None => extensions = Some(value.to_string()),
                }
            }
            Ok(Some((n, extensions)))
        }
        Ok(httparse::Status::Complete(n)) => {
            let first = String::from_utf8_lossy(&data[..n.min(80)]);
            let line = first.lines().next().unwrap_or("");
            Err((n, format!("upgrade refused: {line}")))
        }
        Ok(httparse::Status::Partial) if data.len() <= MAX_HEAD => Ok(None),
        Ok(httparse::Status::Partial) => Err((0, "upgrade answer too large".into())),
        Err(e) => Err((0, format!("bad upgrade answer: {e}"))),
    }
}

/// What a frame other than a data frame does: a ping is answered with a pong (queued
/// on `out`), a close frame ends the connection, the rest is ignored.
pub fn control(opcode: u8, payload: &[u8], out: &mut Vec<u8>) -> Outcome {
    match opcode {
        wsframe::OP_PING => {
            wsframe::client_frame(out, wsframe::OP_PONG, payload, [0; 4]);
            Outcome::Keep
        }
        wsframe::OP_CLOSE => {
            let code = payload
                .get(..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]).to_string())
                .unwrap_or_else(|| "-".into());
            Outcome::Close(format!("close frame {code} from the server"))
        }
        _ => Outcome::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// One open connection whose frames go to `control`, as the sets' do; data frames
    /// are kept with their wire size and whether they came compressed.
    struct One {
        dial: Dial,
        link: Link,
        data: Vec<(Vec<u8>, u64, bool)>,
        upgraded: bool,
    }

    impl One {
        fn new(offer: Option<&str>) -> One {
            One {
                dial: Dial {
                    dst: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
                    host: "h".into(),
                    path: "/".into(),
                    sources: Vec::new(),
                    count: 1,
                    concurrency: 1,
                    deflate: offer.map(str::to_string),
                },
                link: Link::default(),
                data: Vec::new(),
                upgraded: false,
            }
        }

        /// Open, as the answer `extensions` to its offer left it.
        fn open(offer: Option<&str>, extensions: Option<&str>) -> One {
            let mut c = One::new(offer);
            c.link.state = State::Upgrading;
            let mut answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                              Connection: Upgrade\r\n"
                .to_string();
            if let Some(e) = extensions {
                answer.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
            }
            answer.push_str("\r\n");
            assert!(matches!(
                on_data(&mut c, 0, answer.as_bytes(), 0),
                Outcome::Keep
            ));
            assert!(c.upgraded);
            c
        }

        /// Feeds `wire` cut at `cut`; the outcome of the last part.
        fn feed(&mut self, wire: &[u8], cut: usize) -> Outcome {
            let first = on_data(self, 0, &wire[..cut], 0);
            if let Outcome::Close(_) = first {
                return first;
            }
            on_data(self, 0, &wire[cut..], 0)
        }
    }

    impl WsConns for One {
        fn link(&mut self, _: usize) -> &mut Link {
            &mut self.link
        }
        fn dial(&self) -> &Dial {
            &self.dial
        }
        fn queue_request(&mut self, _: usize) {}
        fn upgraded(&mut self, _: usize, _: u64) {
            self.upgraded = true;
            self.link.state = State::Open;
        }
        fn frame(&mut self, _: usize, f: Frame<'_>, _: u64) -> Outcome {
            match f.head.opcode {
                wsframe::OP_TEXT | wsframe::OP_CONT => {
                    self.data.push((f.payload.to_vec(), f.wire, f.compressed));
                    Outcome::Keep
                }
                op => control(op, f.payload, &mut self.link.out),
            }
        }
        fn close(&mut self, _: usize, _: String) {}
    }

    /// A server frame: FIN as asked, `first` the opcode and RSV bits.
    fn server_frame(fin: bool, first: u8, payload: &[u8]) -> Vec<u8> {
        let frame = wsframe::server_frame(
            first | if fin { 0x80 } else { 0 },
            shardcast::json::Part::Raw(payload),
        );
        let mut v = frame.to_vec();
        if !fin {
            v[0] &= !0x80;
        }
        v
    }

    /// `msg` deflated as a server without context takeover sends it.
    fn deflated(msg: &[u8]) -> Vec<u8> {
        let mut z = Compress::new(Compression::new(2), false);
        let mut out = Vec::with_capacity(msg.len() + 64);
        z.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
        out.truncate(out.len() - deflate::TAIL.len());
        out
    }

    const SHARDCAST: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn the_offer_goes_into_the_upgrade_request() {
        let plain = String::from_utf8(upgrade_request("/ws", "h:1", None)).unwrap();
        assert!(!plain.contains("Extensions"));
        assert!(plain.ends_with("Version: 13\r\n\r\n"));
        let offer = upgrade_request("/ws", "h:1", Some(deflate::BROWSER_OFFER));
        let offer = String::from_utf8(offer).unwrap();
        assert!(offer.ends_with(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ));
    }

    #[test]
    fn the_answer_sets_how_a_connection_inflates() {
        let c = One::open(Some(deflate::BROWSER_OFFER), Some(SHARDCAST));
        assert!(matches!(c.link.inflate, Some(Inflate::PerMessage)));
        let c = One::open(Some(deflate::BROWSER_OFFER), Some("permessage-deflate"));
        assert!(matches!(c.link.inflate, Some(Inflate::Takeover(None))));
        let c = One::open(Some(deflate::BROWSER_OFFER), None);
        assert!(c.link.inflate.is_none());
        let c = One::open(None, None);
        assert!(c.link.inflate.is_none());
        // An extension nobody offered fails the connection.
        let mut c = One::new(None);
        c.link.state = State::Upgrading;
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: {SHARDCAST}\r\n\r\n"
        );
        assert!(matches!(
            on_data(&mut c, 0, answer.as_bytes(), 0),
            Outcome::Close(_)
        ));
        assert!(!c.upgraded);
    }

    /// A compressed frame as shardcast sends it (its own encoder), a plain one and a
    /// fragmented compressed message: each reaches the set inflated, with the bytes it
    /// took on the wire, however the reads cut them.
    #[test]
    fn compressed_messages_arrive_inflated_with_their_wire_size() {
        let body = crate::json_body::JsonBody::new(1000, 1).unwrap().text(42);
        let push = shardcast::ws::deflate::compressed_text(body.as_bytes(), 256, 15)
            .expect("a kilobyte of JSON shrinks")
            .to_vec();
        let plain = server_frame(true, wsframe::OP_TEXT, b"hello");
        let c2 = deflated(body.as_bytes());
        let (a, b) = c2.split_at(c2.len() / 3);
        let first = server_frame(false, RSV1 | wsframe::OP_TEXT, a);
        let ping = wsframe::ping_frame(b"p").to_vec();
        let last = server_frame(true, wsframe::OP_CONT, b);
        let wire = [
            push.clone(),
            plain.clone(),
            first.clone(),
            ping,
            last.clone(),
        ]
        .concat();
        for cut in [
            0,
            1,
            3,
            push.len(),
            push.len() + 2,
            wire.len() - 3,
            wire.len(),
        ] {
            let mut c = One::open(Some(deflate::BROWSER_OFFER), Some(SHARDCAST));
            assert!(matches!(c.feed(&wire, cut), Outcome::Keep), "cut at {cut}");
            assert_eq!(c.data.len(), 3, "cut at {cut}");
            assert_eq!(
                c.data[0],
                (body.clone().into_bytes(), push.len() as u64, true)
            );
            assert!(
                push.len() < body.len() * 2 / 3,
                "{} of {}",
                push.len(),
                body.len()
            );
            assert_eq!(c.data[1], (b"hello".to_vec(), plain.len() as u64, false));
            let whole = (first.len() + last.len()) as u64;
            assert_eq!(c.data[2], (body.clone().into_bytes(), whole, true));
            assert_eq!(crate::marker::find(&c.data[2].0), Some(42));
            assert!(c.link.fragments.is_none() && c.link.pending.is_empty());
            assert_eq!(c.link.out.len(), 7, "the ping was answered in the middle");
        }
    }

    #[test]
    fn compressed_frames_the_connection_did_not_agree_to_close_it() {
        let c1 = deflated(b"hello hello hello");
        let rsv1 = server_frame(true, RSV1 | wsframe::OP_TEXT, &c1);
        let mut c = One::open(None, None);
        assert!(matches!(c.feed(&rsv1, 0), Outcome::Close(_)));
        let mut c = One::open(Some(deflate::BROWSER_OFFER), None);
        assert!(matches!(c.feed(&rsv1, 0), Outcome::Close(_)));
        // Agreed: RSV2, RSV1 on a continuation or a control frame, corrupt data.
        let agreed = || One::open(Some(deflate::BROWSER_OFFER), Some(SHARDCAST));
        for bad in [
            server_frame(true, 0x20 | wsframe::OP_TEXT, b"x"),
            server_frame(true, RSV1 | wsframe::OP_CONT, &c1),
            server_frame(true, RSV1 | wsframe::OP_PING, b""),
            server_frame(true, RSV1 | wsframe::OP_TEXT, &[0xff; 8]),
            [
                server_frame(false, RSV1 | wsframe::OP_TEXT, &c1),
                server_frame(true, wsframe::OP_TEXT, b"x"),
            ]
            .concat(),
        ] {
            let mut c = agreed();
            assert!(matches!(c.feed(&bad, 0), Outcome::Close(_)), "{bad:02x?}");
        }
        let mut c = agreed();
        assert!(matches!(c.feed(&rsv1, 0), Outcome::Keep));
        assert_eq!(c.data[0].0, b"hello hello hello");
    }

    /// The pong echoes the ping's payload byte for byte (the node's 16-byte place),
    /// however the reads cut the frames.
    #[test]
    fn a_pong_echoes_its_ping_exactly() {
        let place: Vec<u8> = (0..16u8).map(|b| b.wrapping_mul(37) ^ 0x80).collect();
        let mut wire = wsframe::text_frame(&[b'x'; 300]).to_vec();
        wire.extend_from_slice(&wsframe::ping_frame(&place));
        wire.extend_from_slice(&wsframe::ping_frame(b""));
        for cut in [1, 2, 303, 305, 310, wire.len() - 1] {
            let mut c = One::new(None);
            c.link.state = State::Open;
            for part in [&wire[..cut], &wire[cut..]] {
                assert!(matches!(on_data(&mut c, 0, part, 0), Outcome::Keep));
            }
            assert_eq!(c.data.len(), 1);
            assert!(c.link.pending.is_empty());
            let out = &c.link.out;
            let head = wsframe::parse_head(out).unwrap();
            assert_eq!((head.opcode, head.masked), (wsframe::OP_PONG, true));
            let key = &out[head.header_len - 4..head.header_len];
            let mut echoed = out[head.header_len..head.frame_len() as usize].to_vec();
            wsframe::apply_mask(&mut echoed, key.try_into().unwrap());
            assert_eq!(echoed, place, "cut at {cut}");
            let rest = &out[head.frame_len() as usize..];
            let empty = wsframe::parse_head(rest).unwrap();
            assert_eq!((empty.opcode, empty.payload_len), (wsframe::OP_PONG, 0));
            assert_eq!(rest.len(), empty.frame_len() as usize);
        }
    }
}
