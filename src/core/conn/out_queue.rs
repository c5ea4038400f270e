//! A connection's outgoing frames.
//!
//! A push is one `Bytes` shared by every recipient, so queueing it is a
//! reference-count increment and a slot in this queue — no copy, and no
//! allocation once the queue has its capacity. The byte count is what
//! `ws.send_queue_bytes` bounds; writing takes as many frames as one
//! `sendmsg` accepts.
//!
//! An idle connection keeps no queue: the capacity is given back once the
//! queue is empty and nothing was queued since the previous heartbeat
//! tick (`release_if_unused`), so a connection that is pushed to keeps it
//! and a fan-out does not allocate per recipient.
//!
//! The queue also says what its frames may be: plain, or compressed within
//! the window the connection's permessage-deflate agreed to (`deflate`,
//! docs/api.md §10), and where they go: the descriptor of the socket it is
//! written to (`fd`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;

use crate::socket;
use crate::ws::deflate::Deflate;

pub struct OutQueue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The descriptor of the socket the queue is written to (-1: none, the
    /// connection is detached): the connection's `stream`, whose
    /// descriptor sits behind two allocations (the `Rc` and monoio's shared
    /// descriptor), two more cache lines for every write to reach; here it
    /// is in the line a write reads the queue in. `Conn::attach` and
    /// `Conn::detach` keep the two together.
    fd: RawFd,
    /// Frames were pushed since the last `release_if_unused`.
    used: bool,
    /// The connection's socket negotiated permessage-deflate: its messages
    /// are read through the codec's inflating path, and frames to it may be
    /// compressed with a window of at most `window_bits`. Here, in the
    /// padding after `used`, because a `Conn` has no byte left.
    pub deflate: Option<Deflate>,
}

impl Default for OutQueue {
    fn default() -> Self {
        OutQueue {
            frames: VecDeque::new(),
            bytes: 0,
            fd: -1,
            used: false,
            deflate: None,
        }
    }
}

impl OutQueue {
    /// The queue of a socket: writes go to `fd` (-1: none).
    pub fn set_socket(&mut self, fd: RawFd) {
        self.fd = fd;
    }

    /// Whether the queue has a socket to be written to.
    pub fn has_socket(&self) -> bool {
        self.fd >= 0
    }

    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.used = true;
    }

    /// Gives the capacity back when the queue is empty and was not pushed
    /// to since the previous call.
    pub fn release_if_unused(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.release_if_empty();
        }
    }

    /// Gives the capacity back when the queue is empty.
    pub fn release_if_empty(&mut self) {
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
    }

    /// Whether `len` more bytes would pass `limit`. An empty queue takes a
    /// frame of any size: the bound is on what piles up, not on one frame.
    pub fn would_exceed(&self, len: usize, limit: usize) -> bool {
        self.bytes > 0 && self.bytes + len > limit
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest frame, the next to be written.
    pub fn front(&self) -> Option<&Bytes> {
        self.frames.front()
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops every frame, keeping the capacity.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// One non-blocking write to its socket of as much as it takes
    /// (`socket::send_queue`).
    pub fn write(&mut self) -> io::Result<usize> {
        let n = socket::send_queue(self.fd, &mut self.frames)?;
        self.bytes -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_applies_to_what_piles_up() {
        let mut q = OutQueue::default();
        assert!(
            !q.would_exceed(10_000, 100),
            "an empty queue takes any frame"
        );
        q.push(Bytes::from_static(&[0; 60]));
        assert!(!q.would_exceed(40, 100));
        assert!(q.would_exceed(41, 100));
        q.clear();
        assert!(q.is_empty());
        assert!(!q.would_exceed(41, 100));
    }

    #[test]
    fn capacity_is_released_after_an_unused_tick() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"x"));
        q.clear();
        q.release_if_unused();
        assert!(q.frames.capacity() > 0, "pushed to since the last tick");
        q.release_if_unused();
        assert_eq!(q.frames.capacity(), 0);
        q.push(Bytes::from_static(b"x"));
        q.release_if_empty();
        assert!(q.frames.capacity() > 0, "not empty");
    }

    #[test]
    fn writes_to_a_socket_and_counts_bytes() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        use std::os::fd::AsRawFd;
        let mut q = OutQueue::default();
        assert!(!q.has_socket());
        q.set_socket(a.as_raw_fd());
        q.push(Bytes::from_static(b"hello "));
        q.push(Bytes::from_static(b"world"));
        assert_eq!(q.write().expect("write"), 11);
        assert!(q.is_empty());
        assert!(!q.would_exceed(1, 1));
        let mut buf = [0u8; 16];
        let n = std::io::Read::read(&mut &b, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"hello world");
    }
}
