//! Raw sockets and hand-made bytes, for tests that must control the socket completely:
//! WebSocket upgrades written by hand, WebSocket frames written and read on raw sockets
//! (with the library's RFC 6455 codec, `shardcast::ws::frame`, the one place frame bytes
//! are written), sockets with odd options (a small receive buffer, a reset on close),
//! and garbage for the cluster port.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::time::Duration;

use serde_json::Value;
use shardcast::ws::frame;

use super::node::Node;
use super::WAIT;

// ---------------------------------------------------------------------------
// Hand-made upgrades
// ---------------------------------------------------------------------------

/// The RFC 6455 sample key and its accept value.
pub const SAMPLE_WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Sends a hand-written upgrade request on `stream` and reads the response head byte by
/// byte (so no frame after it is consumed). Returns (status, head text).
pub fn raw_ws_handshake(
    stream: &mut TcpStream,
    host: &str,
    path_and_query: &str,
    extra_headers: &str,
) -> (u16, String) {
    let req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_WS_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    raw_upgrade(stream, &req)
}

/// Sends `request` and reads the response head byte by byte. Returns (status, head).
pub fn raw_upgrade(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut b) {
            Ok(1) => head.push(b[0]),
            Ok(_) => panic!(
                "connection closed during the upgrade: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Err(e) => panic!(
                "reading the upgrade response: {e}; got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
        assert!(head.len() < 64 * 1024, "upgrade response head too long");
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad upgrade response: {text:?}"));
    (status, text)
}

/// Value of a header in a raw response head (case-insensitive name).
pub fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A raw WebSocket client of `system_id` on `node`: connected (with a receive buffer of
/// `rcvbuf` bytes when given, see `connect_small_rcvbuf`), upgraded, its welcome read.
/// Returns the socket and the clientId; nothing more is read from it.
pub fn raw_client(node: &Node, system_id: &str, rcvbuf: Option<i32>) -> (TcpStream, String) {
    let s = match rcvbuf {
        Some(n) => connect_small_rcvbuf(node.socket_addr(), n),
        None => TcpStream::connect(node.addr()).unwrap_or_else(|e| panic!("connect: {e}")),
    };
    raw_client_on(s, node, system_id)
}

/// Like `raw_client`, on a connection to `node` the caller made.
pub fn raw_client_on(mut s: TcpStream, node: &Node, system_id: &str) -> (TcpStream, String) {
    let path = format!("/ws?systemId={system_id}");
    let (st, head) = raw_ws_handshake(&mut s, node.addr(), &path, "");
    assert_eq!(st, 101, "raw client upgrade: {head}");
    let (op, welcome) = read_raw_frame(&mut s, WAIT).expect("welcome of a raw client");
    assert_eq!(op, 1, "the welcome is a text frame");
    let w: Value = serde_json::from_slice(&welcome).unwrap();
    let id = w["data"]["clientId"]
        .as_str()
        .unwrap_or_else(|| panic!("raw client welcome: {w}"))
        .to_string();
    (s, id)
}

// ---------------------------------------------------------------------------
// Hand-made WebSocket frames
// ---------------------------------------------------------------------------

/// Reads one server frame from a raw socket (fragments not joined):
/// (opcode, payload). None on timeout, EOF or error.
pub fn read_raw_frame(stream: &mut TcpStream, timeout: Duration) -> Option<(u8, Vec<u8>)> {
    read_raw_frame_head(stream, timeout).map(|(head, payload)| (head.opcode, payload))
}

/// Reads one server frame from a raw socket: its header (RSV bits included) and its
/// payload, unmasked. None on timeout, EOF or error.
pub fn read_raw_frame_head(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Option<(frame::Head, Vec<u8>)> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut header = Vec::with_capacity(14);
    let head = loop {
        if let Some(head) = frame::parse_head(&header) {
            break head;
        }
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).ok()?;
        header.push(b[0]);
    };
    let mut payload = vec![0u8; usize::try_from(head.payload_len).ok()?];
    stream.read_exact(&mut payload).ok()?;
    if head.masked {
        let key = &header[head.header_len - 4..head.header_len];
        frame::apply_mask(&mut payload, [key[0], key[1], key[2], key[3]]);
    }
    Some((head, payload))
}

/// Writes one masked client frame (FIN set) on a raw socket. `opcode` is put in as
/// given, so reserved opcodes can be sent too.
pub fn write_raw_frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let mut f = Vec::with_capacity(payload.len() + 14);
    frame::client_frame(&mut f, opcode, payload, [0x12, 0x34, 0x56, 0x78]);
    stream.write_all(&f).unwrap();
}

/// The server's WebSocket text frame carrying a push with `message_id` and `msg` (what
/// a cluster `System` frame carries).
pub fn push_ws_frame(message_id: &str, msg: &str) -> shardcast::ws::Push {
    let json = format!(
        "{{\"messageId\":\"{message_id}\",\"sendUserId\":\"\",\"code\":0,\"msg\":\"{msg}\",\"data\":\"\"}}"
    );
    shardcast::ws::Push::plain(frame::text_frame(json.as_bytes()))
}

// ---------------------------------------------------------------------------
// Sockets with odd options
// ---------------------------------------------------------------------------

/// Makes the next close of `stream` send a RST.
pub fn set_linger_zero(stream: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized option value.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt(SO_LINGER)");
}

/// A TCP connection to `addr` whose receive buffer was set to `rcvbuf` bytes before
/// connecting (so the advertised window stays small).
pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: i32) -> TcpStream {
    connect_sized(addr, rcvbuf, None)
}

/// Like `connect_small_rcvbuf`, with the segment size (`TCP_MAXSEG`) set too when
/// `mss` is given: a network's (1460 bytes) rather than loopback's 64 KiB, for a
/// connection that should behave like a client's across a network.
pub fn connect_sized(addr: SocketAddr, rcvbuf: i32, mss: Option<i32>) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 address expected: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor we own; on success it is handed to
    // TcpStream, which then owns and closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket(): {}", io::Error::last_os_error());
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf, "SO_RCVBUF");
        if let Some(mss) = mss {
            set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, mss, "TCP_MAXSEG");
        }
        let ip: Ipv4Addr = *v4.ip();
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r != 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            panic!("connect {addr}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// `setsockopt` of an integer option on a socket of ours; panics, naming `what`, when
/// it fails.
fn set_int_option(fd: i32, level: libc::c_int, name: libc::c_int, value: i32, what: &str) {
    let v: libc::c_int = value;
    // SAFETY: a valid socket fd and a correctly sized option value.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt({what}): {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------
// Raw bytes for the cluster port
// ---------------------------------------------------------------------------

/// `n` pseudo-random bytes from a fixed `seed` (xorshift64*): reproducible garbage.
pub fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Connects to `addr` and writes `bytes` (a write error — the peer closed early — is
/// ignored); returns the stream for `wait_eof`.
pub fn write_raw(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.write_all(bytes);
    let _ = s.flush();
    s
}
