//! The listening sockets every core shares by SO_REUSEPORT.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each core's listener.
const BACKLOG: i32 = 4096;

/// Fails when another process already listens on `addr`. SO_REUSEPORT
/// would otherwise let a second shardcast share the port silently and
/// split the traffic with the first; a plain bind still sees the conflict.
pub fn ensure_port_free(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// A listening socket on `addr` that the other cores may bind too
/// (SO_REUSEPORT: the kernel spreads connections across them). Its
/// TCP_NODELAY is inherited by every socket it accepts (Linux copies it),
/// which saves a `setsockopt` per connection. With TCP_DEFER_ACCEPT a
/// connection is handed to `accept` once its first bytes (the HTTP request)
/// are there, so one wake-up of the core accepts, reads and answers it
/// rather than two; every client of this port speaks first.
pub fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    defer_accept(&socket, DEFER_ACCEPT_SECS)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// How long the kernel holds a connection that has sent nothing before
/// handing it to `accept` all the same (TCP_DEFER_ACCEPT, in seconds).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

fn defer_accept(socket: &Socket, secs: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket we own, with a c_int of the right size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        listener.set_nonblocking(false).expect("blocking");
        let (accepted, _) = listener.accept().expect("accept");
        assert!(accepted.nodelay().expect("nodelay"));
    }
}
