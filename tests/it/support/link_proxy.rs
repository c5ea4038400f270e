//! A byte relay on the path of cluster links, as an attacker on the nodes' network would
//! run it: it listens on a loopback port of its own (which a test advertises in etcd) and
//! forwards every connection to an upstream node's cluster port, copying bytes both ways.
//! It knows no secret; it reads only the length prefixes of the four handshake frames
//! (Hello and Proof one way, Challenge and Welcome the other), to know when a link is
//! established. Armed with one `Tamper`, it alters the dialler → acceptor stream of the
//! first established link that gets to it, once.
//!
//! `hold_upstream` makes it keep the upstream connection open when the dialler closes its
//! side (a relay holding on to a link a node accepted).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a `Replay` records the stream before sending the recording again.
const REPLAY_WINDOW: Duration = Duration::from_millis(300);

/// What an armed proxy does to one established link.
#[derive(Clone, Debug)]
pub enum Tamper {
    /// Flips one bit in the middle of the next bytes the dialler sends.
    Flip,
    /// Writes these bytes to the acceptor at once (at a frame boundary of an idle link).
    Inject(Vec<u8>),
    /// Forwards what the dialler sends next for `REPLAY_WINDOW`, then sends it again.
    Replay,
}

#[derive(Default)]
struct Shared {
    upstream: Mutex<Option<String>>,
    tamper: Mutex<Option<Tamper>>,
    fired: AtomicUsize,
    welcomes: AtomicUsize,
    stop: AtomicBool,
    hold_upstream: AtomicBool,
}

pub struct LinkProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl LinkProxy {
    pub fn start() -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, s));
        LinkProxy { port, shared }
    }

    /// The address to advertise in place of the upstream's.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where connections go (connections that arrive earlier wait for it).
    pub fn set_upstream(&self, addr: &str) {
        *self.shared.upstream.lock().unwrap() = Some(addr.to_string());
    }

    pub fn hold_upstream(&self) {
        self.shared.hold_upstream.store(true, Ordering::SeqCst);
    }

    pub fn arm(&self, t: Tamper) {
        *self.shared.tamper.lock().unwrap() = Some(t);
    }

    /// How many armed tampers were carried out.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// Waits (at most `timeout`) until `n` tampers were carried out.
    pub fn wait_fired(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.fired() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Welcome frames the upstream sent on relayed connections (links it accepted).
    pub fn welcomes(&self) -> usize {
        self.shared.welcomes.load(Ordering::SeqCst)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((down, _)) => {
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

/// Counts the complete CRC-framed handshake frames (`u32 len | u32 crc | body`) in `buf`,
/// up to `max`; the bytes they take.
fn handshake_frames(buf: &[u8], max: usize) -> (usize, usize) {
    let (mut n, mut pos) = (0, 0);
    while n < max && buf.len() >= pos + 8 {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        if buf.len() < pos + 8 + len {
            break;
        }
        pos += 8 + len;
        n += 1;
    }
    (n, pos)
}

fn relay(down: TcpStream, shared: Arc<Shared>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        if let Some(a) = shared.upstream.lock().unwrap().clone() {
            break a;
        }
        if Instant::now() >= deadline || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let Ok(up) = TcpStream::connect(&addr) else {
        return;
    };
    let _ = (down.set_nodelay(true), up.set_nodelay(true));
    // Set once the acceptor has sent Challenge and Welcome.
    let welcomed = Arc::new(AtomicBool::new(false));
    let (d2, u2, s2, w2) = (
        down.try_clone().unwrap(),
        up.try_clone().unwrap(),
        shared.clone(),
        welcomed.clone(),
    );
    std::thread::spawn(move || upstream_to_dialler(u2, d2, s2, w2));
    dialler_to_upstream(down, up, shared, welcomed);
}

/// Acceptor → dialler: plain copying, watching for the Welcome.
fn upstream_to_dialler(
    mut up: TcpStream,
    mut down: TcpStream,
    shared: Arc<Shared>,
    welcomed: Arc<AtomicBool>,
) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !welcomed.load(Ordering::SeqCst) {
                    seen.extend_from_slice(&buf[..n]);
                    if handshake_frames(&seen, 2).0 == 2 {
                        shared.welcomes.fetch_add(1, Ordering::SeqCst);
                        welcomed.store(true, Ordering::SeqCst);
                    }
                }
                let _ = down.write_all(&buf[..n]);
            }
        }
    }
    let _ = down.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
}

/// Dialler → acceptor: copying, and the armed tamper once the link is established.
fn dialler_to_upstream(
    mut down: TcpStream,
    mut up: TcpStream,
    shared: Arc<Shared>,
    welcomed: Arc<AtomicBool>,
) {
    down.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut hello_and_proof = Vec::new();
    let mut sent_handshake = false;
    let mut buf = [0u8; 65536];
    let established = |sent: bool| sent && welcomed.load(Ordering::SeqCst);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match down.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut chunk = buf[..n].to_vec();
                if !sent_handshake {
                    hello_and_proof.extend_from_slice(&chunk);
                    sent_handshake = handshake_frames(&hello_and_proof, 2).0 == 2;
                } else if established(sent_handshake) {
                    let t = {
                        let mut armed = shared.tamper.lock().unwrap();
                        match *armed {
                            Some(Tamper::Flip) | Some(Tamper::Replay) => armed.take(),
                            _ => None,
                        }
                    };
                    match t {
                        Some(Tamper::Flip) => {
                            let at = chunk.len() / 2;
                            chunk[at] ^= 0x20;
                            shared.fired.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(Tamper::Replay) => {
                            if up.write_all(&chunk).is_err() {
                                break;
                            }
                            let mut recorded = chunk.clone();
                            let until = Instant::now() + REPLAY_WINDOW;
                            while Instant::now() < until {
                                match down.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        recorded.extend_from_slice(&buf[..n]);
                                        let _ = up.write_all(&buf[..n]);
                                    }
                                    Err(_) => {}
                                }
                            }
                            chunk = recorded;
                            shared.fired.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                }
                if up.write_all(&chunk).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !established(sent_handshake) {
                    continue;
                }
                let t = {
                    let mut armed = shared.tamper.lock().unwrap();
                    match *armed {
                        Some(Tamper::Inject(_)) => armed.take(),
                        _ => None,
                    }
                };
                if let Some(Tamper::Inject(bytes)) = t {
                    let _ = up.write_all(&bytes);
                    shared.fired.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(_) => break,
        }
    }
    if shared.hold_upstream.load(Ordering::SeqCst) {
        // The dialler is gone; keep the accepted link open and usable for an injection.
        let _ = down.shutdown(Shutdown::Both);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
            if welcomed.load(Ordering::SeqCst) {
                let t = {
                    let mut armed = shared.tamper.lock().unwrap();
                    match *armed {
                        Some(Tamper::Inject(_)) => armed.take(),
                        _ => None,
                    }
                };
                if let Some(Tamper::Inject(bytes)) = t {
                    let _ = up.write_all(&bytes);
                    shared.fired.fetch_add(1, Ordering::SeqCst);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = up.shutdown(Shutdown::Both);
    let _ = down.shutdown(Shutdown::Both);
}
