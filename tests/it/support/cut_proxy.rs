//! A TCP relay in front of a node that a test can cut: the network between a
//! client and the node failing, which neither side can fake from within (a
//! browser's `WebSocket.close()` sends a close frame, a goodbye).
//!
//! It listens on a loopback port of its own and copies bytes both ways between
//! each connection and the upstream address. `cut()` ends every relayed
//! connection at once, without a byte more either way (each side reads the end
//! of the stream: no close frame, no goodbye), and from then on ends every new
//! connection as soon as it is accepted, without reaching the upstream, until
//! `heal()`. `set_upstream` points it at a node that restarted on another port,
//! which its clients never learn. Dropping the proxy stops it and ends what it
//! relays.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    upstream: Mutex<String>,
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every relayed connection, to end them on a cut.
    live: Mutex<Vec<TcpStream>>,
    /// Connections ended at once while cut.
    refused: AtomicUsize,
}

pub struct CutProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl CutProxy {
    /// Relays every connection to `upstream` (`ip:port`).
    pub fn start(upstream: &str) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.to_string()),
            ..Shared::default()
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, s));
        CutProxy { port, shared }
    }

    /// The address clients connect to instead of the upstream's.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where new connections go from now on (a node restarted on another port).
    pub fn set_upstream(&self, upstream: &str) {
        *self.shared.upstream.lock().unwrap() = upstream.to_string();
    }

    /// Ends every relayed connection, and every new one until `heal`.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        end_all(&self.shared);
    }

    /// Relays new connections again.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Connections ended at once because the proxy was cut.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        end_all(&self.shared);
    }
}

fn end_all(shared: &Shared) {
    for s in shared.live.lock().unwrap().drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((down, _)) => {
                if shared.cut.load(Ordering::SeqCst) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                }
                let s = shared.clone();
                std::thread::spawn(move || relay(down, s));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return,
        }
    }
}

fn relay(down: TcpStream, shared: Arc<Shared>) {
    let upstream = shared.upstream.lock().unwrap().clone();
    let Ok(up) = TcpStream::connect(&upstream) else {
        return;
    };
    let _ = (down.set_nonblocking(false), down.set_nodelay(true));
    let _ = up.set_nodelay(true);
    {
        let mut live = shared.live.lock().unwrap();
        // A cut between the accept and now ends this one too.
        if shared.cut.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) {
            let _ = (down.shutdown(Shutdown::Both), up.shutdown(Shutdown::Both));
            return;
        }
        live.push(down.try_clone().expect("clone"));
        live.push(up.try_clone().expect("clone"));
    }
    let (d2, u2) = (
        down.try_clone().expect("clone"),
        up.try_clone().expect("clone"),
    );
    std::thread::spawn(move || copy(u2, d2));
    copy(down, up);
}

/// Copies `from` → `to` until either ends, then ends both.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
