//! One WebSocket connection, as its owning core holds it: the one home of
//! a connection's state (`Conn`), its codec while a message is partly
//! received (`codec`) and its outgoing queue (`out_queue`); and the reading
//! of a core's connections (`reader`).
//!
//! The core's slab owns this state; a connection has no task of its own
//! while it is open (one reader task per core waits for all of them). An
//! idle connection holds no codec, no queue capacity and no copy of its
//! system's name (docs/architecture.md, performance rule 4). Outgoing bytes are a queue
//! of `Bytes` (a push is the same `Bytes` for every recipient), bounded by
//! `ws.send_queue_bytes`, written by the core with one call per drain.

pub mod codec;
pub mod out_queue;
pub mod reader;

use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use monoio::net::TcpStream;

use super::rate::TokenBucket;
use super::replay::session::Session;
use codec::Codec;
use out_queue::OutQueue;

/// The fields are in the order they are laid out (`repr(C)`), by cache
/// line (a `Conn` takes one of mimalloc's 192-byte blocks, which start on a
/// 64-byte boundary: see the size test below): the first line holds
/// everything a fan-out and a write touch — the queue with its socket's
/// descriptor, the dirty mark, the flags and the newest id — so that a
/// delivery reads and writes one line of the connection, not three, and
/// finds its socket without following a pointer.
#[repr(C)]
pub struct Conn {
    // Line 1: what every delivery touches.
    /// Its outgoing frames, the descriptor they are written to (set with
    /// `stream` by `attach`/`detach`) and — in the queue's padding, as a
    /// `Conn` has no byte to spare — whether its socket negotiated
    /// permessage-deflate (`out.deflate`).
    pub out: OutQueue,
    /// The messageId of the newest push or notice addressed to it (0:
    /// none), for the pings that carry its place (`replay::place`): here,
    /// on the line a fan-out touches anyway, not in a table beside them.
    pub newest_id: u64,
    /// Listed in the core's dirty list, waiting for a flush: since when, on
    /// the core's microsecond clock (`Core::clock_us`), the queue has held
    /// a frame not written (`shardcast_write_wait_seconds`).
    pub dirty_since: Option<NonZeroU32>,
    /// The socket buffer is full; a writer task waits for writability.
    pub write_waiting: bool,
    /// To be closed once the fan-out under way is over (`write.rs`).
    pub to_close: bool,
    /// Welcomes this session has had: a resume token names the newest.
    pub resume_seq: u16,
    // Line 2.
    /// None while detached (docs/api.md §8): the socket is gone, the
    /// session waits for a resume. Set by `attach` and `detach` only.
    pub stream: Option<Rc<TcpStream>>,
    pub system: Rc<str>,
    pub client_id: Box<str>,
    pub user_id: Rc<str>,
    /// The codec of a message partly received; between messages the
    /// connection borrows its core's (`codec`).
    pub codec: Option<Box<Codec>>,
    // Line 3.
    pub extend: Box<str>,
    /// Exactly as many as it joined, no spare room (`join`, `leave`).
    pub groups: Box<[Rc<str>]>,
    /// What a resume needs of it besides its place in the replay log, and
    /// the detached state (`replay::session`); None when there is nothing
    /// of the kind, and always with resume off.
    pub session: Option<Box<Session>>,
    /// Client messages allowed (`ws.client_send_rate`).
    pub bucket: TokenBucket,
    /// Unix seconds (u32: until 2106; the slab entry stays in its class).
    pub connect_time: u32,
    /// Last time anything arrived from the client, on the core's
    /// millisecond clock (`Core::clock_ms`).
    pub last_rx_ms: u32,
}

impl Conn {
    /// Gives the connection its socket (its queue is written to it from
    /// now on); returns the one it had.
    pub fn attach(&mut self, stream: Rc<TcpStream>) -> Option<Rc<TcpStream>> {
        self.out.set_socket(stream.as_raw_fd());
        self.stream.replace(stream)
    }

    /// Takes its socket away: detached or ended, it is written to no more.
    pub fn detach(&mut self) -> Option<Rc<TcpStream>> {
        self.out.set_socket(-1);
        self.stream.take()
    }

    /// Adds `group` to its groups.
    pub fn join(&mut self, group: Rc<str>) {
        let mut groups = std::mem::take(&mut self.groups).into_vec();
        groups.push(group);
        self.groups = groups.into_boxed_slice();
    }

    /// Removes its `i`th group; returns it.
    pub fn leave(&mut self, i: usize) -> Rc<str> {
        let mut groups = std::mem::take(&mut self.groups).into_vec();
        let left = groups.remove(i);
        self.groups = groups.into_boxed_slice();
        left
    }
}

/// Bytes handed to tungstenite and what it writes back (pongs, close
/// replies, echoes): tungstenite is used as a sans-IO codec.
pub struct WsIo<'a> {
    pub input: &'a [u8],
    pub output: &'a mut Vec<u8>,
}

impl io::Read for WsIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl io::Write for WsIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// A connection's slab entry is one allocation of this size. Up to 184
    /// bytes it takes one of mimalloc's 192-byte blocks, which start on a
    /// 64-byte boundary; 192 bytes took a 224-byte block on a 32-byte
    /// boundary (the aligned entry point, through which the `mimalloc`
    /// crate makes every allocation, puts them in the class above): 32
    /// bytes more per connection (idle memory per connection,
    /// docs/architecture.md), and a first line split over two.
    #[test]
    fn a_connection_fits_in_184_bytes() {
        assert!(std::mem::size_of::<super::Conn>() <= 184);
    }

    /// What a fan-out and a write touch lies in the first 64 bytes.
    #[test]
    fn what_a_delivery_touches_is_in_the_first_line() {
        use super::{Conn, NonZeroU32, OutQueue};
        use std::mem::{offset_of, size_of};
        let ends = [
            offset_of!(Conn, out) + size_of::<OutQueue>(),
            offset_of!(Conn, newest_id) + size_of::<u64>(),
            offset_of!(Conn, dirty_since) + size_of::<Option<NonZeroU32>>(),
            offset_of!(Conn, write_waiting) + 1,
            offset_of!(Conn, to_close) + 1,
        ];
        assert!(ends.iter().all(|&end| end <= 64), "{ends:?}");
    }
}
