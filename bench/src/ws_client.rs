//! What the bench's two sets of WebSocket client connections share: `subscriber`
//! (fanout, idle, chat) and `resume_conns` (resume) differ in what the 101, a welcome
//! and a data frame mean to them, not in how bytes come and go. Here: where they
//! connect to, the start of a connection from its source address, the upgrade
//! request, the writes, and the read path: reads into the thread's one buffer, the
//! upgrade answer, frames located from their headers alone, pings answered with pongs,
//! a close frame ending the connection. A connection keeps bytes only for a head or
//! frame cut by a read boundary. A set hands its connections over through [`WsConns`].

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::poller::{write_out, Poller, HUP, READ, WRITE};
use crate::sock::{self, Fd};
use shardcast::ws::frame::{self as wsframe, Head};

/// Largest frame accepted from a server; beyond it the connection is dropped.
const MAX_FRAME: u64 = 16 << 20;
/// Largest upgrade answer head.
const MAX_HEAD: usize = 16 << 10;
/// Size of the read buffer.
const READ_BUF: usize = 256 << 10;

thread_local! {
    /// The read buffer of the connections of this thread (a worker's epoll thread).
    static RBUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
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
    /// Queues the upgrade request of connection `i` (connected) on its link.
    fn queue_request(&mut self, i: usize);
    /// The 101 arrived on connection `i`: the link is to leave `Upgrading`.
    fn upgraded(&mut self, i: usize, now: u64);
    /// A whole frame arrived on connection `i`.
    fn frame(&mut self, i: usize, head: Head, payload: &[u8], now: u64) -> Outcome;
    /// Connection `i` failed or ended, for the reason `why`.
    fn close(&mut self, i: usize, why: String);
}

/// The upgrade request to `path` at `host`.
pub fn upgrade_request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
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
            Ok(Some(n)) => {
                pos = n;
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
        if let Outcome::Close(why) = conns.frame(i, head, payload, now) {
            return (pos, Outcome::Close(why));
        }
    }
    (pos, Outcome::Keep)
}

/// The length of the 101 answer `data` begins with (None: not complete yet); Err: the
/// bytes it used and why the connection closes.
fn upgrade_answer(data: &[u8]) -> Result<Option<usize>, (usize, String)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) if resp.code == Some(101) => Ok(Some(n)),
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

    /// One open connection whose frames go to `control`, as the sets' do.
    #[derive(Default)]
    struct One {
        link: Link,
        data: usize,
    }

    impl WsConns for One {
        fn link(&mut self, _: usize) -> &mut Link {
            &mut self.link
        }
        fn queue_request(&mut self, _: usize) {}
        fn upgraded(&mut self, _: usize, _: u64) {}
        fn frame(&mut self, _: usize, head: Head, payload: &[u8], _: u64) -> Outcome {
            match head.opcode {
                wsframe::OP_TEXT => {
                    self.data += 1;
                    Outcome::Keep
                }
                op => control(op, payload, &mut self.link.out),
            }
        }
        fn close(&mut self, _: usize, _: String) {}
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
            let mut c = One::default();
            c.link.state = State::Open;
            for part in [&wire[..cut], &wire[cut..]] {
                assert!(matches!(on_data(&mut c, 0, part, 0), Outcome::Keep));
            }
            assert_eq!(c.data, 1);
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
