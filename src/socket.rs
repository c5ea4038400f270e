//! Readiness-based socket I/O on top of monoio.
//!
//! monoio's completion-based `read` needs a buffer owned by every pending
//! read, so an idle WebSocket would pin a read buffer for its whole life.
//! Instead we wait for readiness (`readable`/`writable`, a poll op with no
//! buffer) and then do the non-blocking syscall ourselves into a buffer the
//! caller lends for that moment only — the per-core scratch buffer for
//! WebSockets. The same works under io_uring and the epoll fallback, and a
//! dropped wait loses no data (the poll consumes nothing).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use bytes::{Buf, Bytes, BytesMut};
use monoio::net::TcpStream;

/// Largest number of buffers handed to one `sendmsg`.
const MAX_IOVECS: usize = 64;

/// One non-blocking `recv` into `buf`. `Ok(0)` is end of stream;
/// `WouldBlock` means wait for readiness.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes as much of `queue` as the socket takes in one call, removing what
/// was written. Returns the bytes written; `WouldBlock` when none fit. A
/// queue of one buffer goes out with `send`, which spares the kernel the
/// copy of a message header and an iovec array that `sendmsg` makes; more
/// go out with one `sendmsg` of up to [`MAX_IOVECS`].
pub fn send_queue(fd: RawFd, queue: &mut std::collections::VecDeque<Bytes>) -> io::Result<usize> {
    if let (1, Some(only)) = (queue.len(), queue.front()) {
        let n = send(fd, only)?;
        consume(queue, n);
        return Ok(n);
    }
    let mut iov: [libc::iovec; MAX_IOVECS] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOVECS];
    let mut count = 0;
    for (slot, chunk) in iov.iter_mut().zip(queue.iter()) {
        slot.iov_base = chunk.as_ptr() as *mut libc::c_void;
        slot.iov_len = chunk.len();
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: an all-zero msghdr is valid; iov points at `count` live iovecs
    // whose buffers are kept alive by `queue` for the duration of the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = count as _;
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    consume(queue, n as usize);
    Ok(n as usize)
}

/// One non-blocking `send` of `buf`; the bytes written.
fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable region of buf.len() bytes.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Bytes waiting to be written to a socket (a cluster link's sealed frames),
/// appended at the back and written from the front without ever being
/// copied again: appended bytes gather in `buffer`; a write freezes that
/// buffer into one chunk behind the chunks not written yet and hands them
/// all to one `sendmsg`; a partial write leaves the rest of its chunk in
/// place, advanced past what was written, and the chunks behind it
/// untouched. Writing a backlog of B bytes in pieces costs O(B) copies in
/// all, not O(B) per piece.
#[derive(Default)]
pub struct SendBacklog {
    /// Bytes appended since the last write.
    buffer: BytesMut,
    /// Chunks taken from `buffer` that the socket has not taken whole yet.
    unsent: std::collections::VecDeque<Bytes>,
    /// Bytes in `unsent`.
    unsent_bytes: usize,
}

impl SendBacklog {
    /// Where new bytes are appended.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Bytes not written yet.
    pub fn len(&self) -> usize {
        self.unsent_bytes + self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the next write starts with: the rest of the oldest chunk
    /// not written whole, else what was appended since the last write.
    pub fn front(&self) -> &[u8] {
        self.unsent.front().map_or(&self.buffer[..], |c| &c[..])
    }

    /// Writes as much as the socket takes in one `sendmsg`; returns the
    /// bytes written (`WouldBlock` when none fit). What it does not take
    /// stays queued, uncopied, for the next call.
    pub fn write_to(&mut self, fd: RawFd) -> io::Result<usize> {
        if !self.buffer.is_empty() {
            self.unsent_bytes += self.buffer.len();
            self.unsent.push_back(self.buffer.split().freeze());
        }
        let n = send_queue(fd, &mut self.unsent)?;
        self.unsent_bytes -= n;
        Ok(n)
    }
}

fn consume(queue: &mut std::collections::VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
}

/// Reads whatever is available into the spare capacity of `buf`, waiting
/// for readiness when nothing is. `Ok(0)` is end of stream.
pub async fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    loop {
        let len = buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: recv writes only initialised bytes, and we only extend the
        // length by what it reports written.
        let spare =
            unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) };
        match recv(stream.as_raw_fd(), spare) {
            Ok(n) => {
                unsafe { buf.set_len(len + n) };
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable(false).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `data`, waiting for writability as needed.
pub async fn write_all(stream: &TcpStream, data: Bytes) -> io::Result<()> {
    let mut queue = std::collections::VecDeque::from([data]);
    while !queue.is_empty() {
        match send_queue(stream.as_raw_fd(), &mut queue) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable(false).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads and discards until the peer closes, `limit` bytes have passed or
/// `timeout` expires. Closing a socket with unread input makes the kernel
/// send a reset, which can destroy the last answer we wrote (a 413, a close
/// frame) before the peer reads it; lingering lets it arrive.
pub async fn linger(stream: &TcpStream, limit: usize, timeout: std::time::Duration) {
    let mut buf = BytesMut::with_capacity(4096);
    let drain = async {
        let mut seen = 0;
        while seen < limit {
            match read_some(stream, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen += n,
            }
            buf.clear();
        }
    };
    let _ = monoio::time::timeout(timeout, drain).await;
}

/// `shutdown(2)`; errors (an already reset socket) are of no interest.
pub fn shutdown(fd: RawFd, how: libc::c_int) {
    // SAFETY: plain syscall on a descriptor we own.
    unsafe { libc::shutdown(fd, how) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn consume_advances_across_chunks() {
        let mut q: VecDeque<Bytes> = [Bytes::from_static(b"abc"), Bytes::from_static(b"defg")]
            .into_iter()
            .collect();
        consume(&mut q, 5);
        assert_eq!(q.len(), 1);
        assert_eq!(&q[0][..], b"fg");
        consume(&mut q, 2);
        assert!(q.is_empty());
    }

    fn set_buffer(fd: RawFd, option: libc::c_int, bytes: libc::c_int) {
        // SAFETY: setsockopt on a socket we own, with a c_int of the right size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "setsockopt: {}", io::Error::last_os_error());
    }

    /// A link's backlog written to a real socket with small buffers, a
    /// piece at a time as the peer reads: each write starts where the last
    /// one stopped, in the very bytes that were appended (the backlog is
    /// never copied again, so writing it in pieces costs no more than
    /// writing it once), frames appended meanwhile wait behind it untouched,
    /// and the peer receives every byte once, in order.
    #[test]
    fn a_partial_write_resumes_the_backlog_in_place() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let tx = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("dial");
        let (mut rx, _) = listener.accept().expect("accept");
        set_buffer(tx.as_raw_fd(), libc::SO_SNDBUF, 4096);
        set_buffer(rx.as_raw_fd(), libc::SO_RCVBUF, 4096);

        tx.set_nodelay(true).expect("nodelay");

        // 32 frames of 4 KiB, each its own byte: more than the socket takes.
        let mut backlog = SendBacklog::default();
        let mut sent = Vec::new();
        for i in 0..32u8 {
            let frame = vec![i; 4 * 1024];
            backlog.buffer().extend_from_slice(&frame);
            sent.extend_from_slice(&frame);
        }
        let first_len = backlog.len();
        let first = backlog.front().as_ptr();
        let taken = backlog.write_to(tx.as_raw_fd()).expect("first write");
        assert!(
            taken > 0 && taken < first_len,
            "took {taken} of {first_len}"
        );

        // A frame appended after the partial write goes behind the backlog.
        let late = vec![0xeeu8; 4 * 1024];
        backlog.buffer().extend_from_slice(&late);
        sent.extend_from_slice(&late);
        let second = backlog.buffer().as_ptr();

        let mut written = taken;
        let mut received = Vec::new();
        let mut buf = vec![0u8; 8 * 1024];
        while received.len() < sent.len() {
            if !backlog.is_empty() {
                // The next write starts in the appended bytes themselves, at
                // the offset written so far: nothing was copied.
                let expected = if written < first_len {
                    first.wrapping_add(written)
                } else {
                    second.wrapping_add(written - first_len)
                };
                assert_eq!(backlog.front().as_ptr(), expected, "the backlog was copied");
                assert_eq!(backlog.len(), sent.len() - written);
                match backlog.write_to(tx.as_raw_fd()) {
                    Ok(n) => written += n,
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
                }
            }
            let n = rx.read(&mut buf).expect("read");
            assert!(n > 0, "closed early");
            received.extend_from_slice(&buf[..n]);
        }
        assert!(backlog.is_empty());
        assert_eq!(written, sent.len());
        assert!(
            received == sent,
            "the bytes arrived changed or out of order"
        );
    }
}
