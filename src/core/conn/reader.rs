//! Reading a core's WebSocket connections: one task per core, not one per
//! connection.
//!
//! A task per connection, waiting for its socket's readability, would cost
//! every idle connection a task, its future and its poll operation. Instead
//! the sockets of a core's connections are in one epoll
//! instance of the core (`Readiness`, level-triggered, keyed by the
//! connection's address); the core's reader task waits for that instance
//! to be readable — a poll operation like any other, under io_uring or the
//! epoll fallback — takes the ready connections, and for each the core
//! reads into its scratch buffer and feeds the connection's codec. Nothing
//! is read in advance, so a connection owns no buffer.
//!
//! A closed connection leaves the instance at once (`close_conn`) and its
//! socket lingers in a task of its own to let the close handshake finish.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use monoio::net::{TcpStream, UnixStream};

use crate::core::{CoreRef, LINGER};
use crate::op::ConnAddr;
use crate::socket;

/// Most a closing connection reads (and discards) while it lingers.
pub const LINGER_BYTES: usize = 1 << 20;

/// Ready connections taken from the epoll instance at a time; more are
/// taken on the next turn of the reader task.
const BATCH: usize = 256;

/// The epoll instance holding the sockets of a core's WebSocket connections.
pub struct Readiness {
    /// The epoll descriptor, as something monoio can wait on: monoio has no
    /// readiness wait for an arbitrary descriptor, and its `UnixStream` is
    /// a bare descriptor whose `readable` is a poll of it, whatever it is.
    /// No stream method other than `readable` is ever called on it.
    ep: UnixStream,
}

impl Readiness {
    /// A new epoll instance; inside the core's runtime only.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the descriptor is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let ep = UnixStream::from_std(std::os::unix::net::UnixStream::from(owned))?;
        Ok(Self { ep })
    }

    /// Watches `fd` for input (and hang-ups and errors, which a read then
    /// reports), reported as `addr`.
    pub fn add(&self, fd: RawFd, addr: ConnAddr) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: u64::from(addr.slot) << 32 | u64::from(addr.gen),
        };
        self.ctl(libc::EPOLL_CTL_ADD, fd, &mut ev)
    }

    /// Stops watching `fd` (before it closes, or lingers).
    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // An error means it was not watched: nothing to undo.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, &mut ev);
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, ev: &mut libc::epoll_event) -> io::Result<()> {
        // SAFETY: both descriptors are open; `ev` is a valid epoll_event.
        if unsafe { libc::epoll_ctl(self.ep.as_raw_fd(), op, fd, ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The addresses of up to [`BATCH`] ready connections, without waiting.
    fn ready(&self, out: &mut Vec<ConnAddr>) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        // SAFETY: `events` holds BATCH writable entries; timeout 0 never
        // blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.ep.as_raw_fd(),
                events.as_mut_ptr(),
                BATCH as libc::c_int,
                0,
            )
        };
        let n = usize::try_from(n).unwrap_or(0);
        out.extend(events[..n].iter().map(|ev| {
            let key = ev.u64;
            ConnAddr {
                slot: (key >> 32) as u32,
                gen: key as u32,
            }
        }));
    }
}

/// The core's reader task: waits until some connection has input, then has
/// the core read each ready one and writes what that queued.
pub async fn read_ready(core: CoreRef) {
    let readiness = core.borrow().reader.readiness.clone();
    let mut ready = Vec::with_capacity(BATCH);
    loop {
        if let Err(e) = readiness.ep.readable(false).await {
            tracing::warn!(error = %e, "waiting for WebSocket input failed");
            monoio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        readiness.ready(&mut ready);
        let mut c = core.borrow_mut();
        for addr in ready.drain(..) {
            c.read_conn(addr);
        }
        c.flush();
    }
}

/// Keeps the core's count of WebSocket sockets (graceful shutdown waits
/// for it to reach zero) until the lingering socket is dropped.
struct SocketGuard(CoreRef);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.try_borrow_mut() {
            c.reader.sockets -= 1;
        }
    }
}

/// A closed connection's socket: read (and discarded) for a while so that
/// the close handshake can finish, then dropped.
pub async fn linger(core: CoreRef, stream: Rc<TcpStream>) {
    let _guard = SocketGuard(core);
    socket::linger(&stream, LINGER_BYTES, LINGER).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Input on a watched socket wakes the wait and reports its address,
    /// again after it was read (a level-triggered instance seen through
    /// the driver's poll), and not once the socket is removed.
    async fn reports_input_until_removed() {
        let readiness = Readiness::new().expect("epoll instance");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let addr = ConnAddr { slot: 7, gen: 3 };
        readiness.add(server.as_raw_fd(), addr).expect("add");
        let mut ready = Vec::new();
        for round in 0..2 {
            client.write_all(b"x").expect("write");
            let wait = monoio::time::timeout(Duration::from_secs(5), readiness.ep.readable(false));
            assert!(matches!(wait.await, Ok(Ok(()))), "round {round}");
            readiness.ready(&mut ready);
            assert_eq!(std::mem::take(&mut ready), vec![addr], "round {round}");
            let mut buf = [0u8; 8];
            assert_eq!(socket::recv(server.as_raw_fd(), &mut buf).expect("recv"), 1);
        }
        readiness.remove(server.as_raw_fd());
        client.write_all(b"y").expect("write");
        std::thread::sleep(Duration::from_millis(20));
        readiness.ready(&mut ready);
        assert!(ready.is_empty());
    }

    /// A connection read only in part is still reported: the wait does not
    /// hang on input that was already there before it started.
    async fn reports_input_left_unread() {
        let readiness = Readiness::new().expect("epoll instance");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let addr = ConnAddr { slot: 1, gen: 1 };
        readiness.add(server.as_raw_fd(), addr).expect("add");
        client.write_all(&[7u8; 4096]).expect("write");
        let mut ready = Vec::new();
        for round in 0..3 {
            let wait = monoio::time::timeout(Duration::from_secs(2), readiness.ep.readable(false));
            assert!(matches!(wait.await, Ok(Ok(()))), "round {round}");
            readiness.ready(&mut ready);
            assert_eq!(std::mem::take(&mut ready), vec![addr], "round {round}");
            let mut buf = [0u8; 8];
            assert_eq!(socket::recv(server.as_raw_fd(), &mut buf).expect("recv"), 8);
        }
    }

    /// Runs `test` under the epoll driver, and under io_uring where the
    /// kernel has it.
    fn on_both_drivers<F: std::future::Future<Output = ()>>(test: impl Fn() -> F) {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(test());
        if let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
        {
            rt.block_on(test());
        }
    }

    #[test]
    fn input_is_reported_until_removed() {
        on_both_drivers(reports_input_until_removed);
    }

    #[test]
    fn input_left_unread_is_reported_again() {
        on_both_drivers(reports_input_left_unread);
    }
}
