//! Corrupt frames on an authenticated peer link (docs/cluster.md, sealed frames: "a
//! length over the limit, a frame that fails to open or a failed validation closes the
//! link with a logged reason; it never panics").
//!
//! Two nodes. A test-only fake peer dials node 1's cluster port claiming node 2's id
//! (membership lists node 2 at 127.0.0.1, where the fake peer dials from) and performs a
//! VALID handshake — it knows the test cluster's name and secret: Hello → Challenge →
//! Proof → Welcome, the node's Welcome proof checked — derives the link's keys, and
//! proves the link works (a sealed Ping → Pong; a valid sealed `System` frame reaches node
//! 1's client). Then, each on a fresh authenticated link, it sends a corrupt frame:
//! - a sealed `Ping` with a flipped byte;
//! - a sealed `System` push with a flipped byte in its encrypted payload (it must not be
//!   delivered);
//! - a header announcing a body over the 64 MiB limit;
//! - garbage that fails validation, correctly sealed (only a holder of the secret can).
//!
//! Node 1 must close that connection within 2 s, stay up (`/healthz`), and pushes between
//! node 1 and node 2 must keep working before, during and after (a pusher runs
//! throughout; every acknowledged push arrives exactly once). The link between the real
//! nodes must not be affected at all: no reconnect is counted on either node.

use crate::support::{
    api::{message_id_of, try_api, HANG},
    cluster::{start_cluster, CALL_LIMIT, CLUSTER_SECRET},
    http::{try_get, wait_eof},
    node::Node,
    raw_frames::{garbage, push_ws_frame},
    ws::{expect_message, WsEvent},
    StopOnDrop, QUIET, SYS_A, WAIT,
};
use bytes::BytesMut;
use rkyv::util::AlignedVec;
use serde_json::{json, Value};
use shardcast::cluster::frame::{self, Frame, FrameError, MAX_BODY, PROTOCOL_VERSION};
use shardcast::cluster::handshake::{self, Side, Transcript};
use shardcast::cluster::seal::{Opener, Sealer};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// What a node logs (at warn) when it drops a link for a bad frame
/// (src/core/peer_links.rs), with `peer=<node>` and `error=<SealError or FrameError>`
/// (their texts: src/cluster/seal.rs, src/cluster/frame.rs).
const DROPPED_LINK: &str = "dropped a link: bad frame";

fn encode(f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode(f, &mut out).expect("encode");
    out.to_vec()
}

/// The fake peer's side of one link.
struct FakePeer {
    stream: TcpStream,
    buf: Vec<u8>,
    sealer: Option<Sealer>,
    opener: Option<Opener>,
}

impl FakePeer {
    /// Dials `addr` and runs the dialler's side of the handshake as node `me`; checks the
    /// acceptor's proof (and that it is node `expect`), and keeps the link's keys.
    fn connect(addr: &str, cluster: &str, me: u16, expect: u16) -> FakePeer {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        let mut p = FakePeer {
            stream,
            buf: Vec::new(),
            sealer: None,
            opener: None,
        };
        let a = handshake::nonce().expect("a random nonce");
        p.send(&encode(&Frame::Hello {
            version: PROTOCOL_VERSION,
            cluster: cluster.to_string(),
            node: me,
            core: 0,
            nonce: a,
        }));
        let b = match p.read_frame(WAIT) {
            Ok(Frame::Challenge { nonce }) => nonce,
            other => panic!("fake peer: expected a Challenge, got {other:?}"),
        };
        let t = Transcript {
            cluster,
            dialler: me,
            acceptor: expect,
            a,
            b,
        };
        let mac = handshake::proof(CLUSTER_SECRET, Side::Dialler, &t);
        p.send(&encode(&Frame::Proof { mac }));
        match p.read_frame(WAIT) {
            Ok(Frame::Welcome { node, mac }) => {
                assert_eq!(
                    node, expect,
                    "Welcome from node {node}, expected node {expect}"
                );
                assert!(
                    handshake::verify(CLUSTER_SECRET, Side::Acceptor, &t, &mac),
                    "node {node}'s Welcome proof does not verify"
                );
            }
            other => panic!("fake peer: expected a Welcome, got {other:?}"),
        }
        p.sealer = Some(Sealer::new(&handshake::key(
            CLUSTER_SECRET,
            Side::Dialler,
            &t,
        )));
        p.opener = Some(Opener::new(&handshake::key(
            CLUSTER_SECRET,
            Side::Acceptor,
            &t,
        )));
        p
    }

    /// `body` sealed as the next frame of this link.
    fn seal_body(&mut self, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let sealer = self.sealer.as_mut().expect("after the handshake");
        sealer.seal(body, &mut out).expect("seal");
        out.to_vec()
    }

    /// `f` sealed as the next frame of this link.
    fn seal(&mut self, f: &Frame) -> Vec<u8> {
        let mut body = AlignedVec::new();
        frame::encode_body(f, &mut body).expect("encode");
        self.seal_body(&body)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("fake peer: write: {e}"));
    }

    /// Writes, ignoring an error (the node may already have closed the link).
    fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// The next frame from the node: CRC-framed during the handshake, sealed after it.
    fn read_frame(&mut self, timeout: Duration) -> Result<Frame, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let next = match self.opener.as_mut() {
                None => frame::decode(&self.buf).map_err(|e| e.to_string()),
                Some(o) => match o.open(&mut self.buf) {
                    Ok(Some((body, n))) => frame::decode_body(body, &mut AlignedVec::new())
                        .map(|f| Some((f, n)))
                        .map_err(|e| e.to_string()),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e.to_string()),
                },
            };
            match next {
                Ok(Some((f, n))) => {
                    self.buf.drain(..n);
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("bad frame from the node: {e}")),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut tmp = [0u8; 4096];
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err("the node closed the link".into()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Ping → Pong: the link is up and served.
    fn ping(&mut self, t: u64) {
        let ping = self.seal(&Frame::Ping { t });
        self.send(&ping);
        loop {
            match self.read_frame(WAIT) {
                Ok(Frame::Pong { t: back }) if back == t => return,
                Ok(Frame::Ping { t }) => {
                    let pong = self.seal(&Frame::Pong { t });
                    self.send(&pong)
                }
                // The answer to a push it sent.
                Ok(Frame::Taken { .. }) => {}
                Ok(other) => panic!("fake peer: expected Pong {t}, got {other:?}"),
                Err(e) => panic!("fake peer: no Pong {t}: {e}"),
            }
        }
    }
}

/// `garbage` of `n` bytes (from the seed on) that the frame decoder rejects as invalid.
fn invalid_body(n: usize) -> Vec<u8> {
    for seed in 0x0bad_f00d_u64.. {
        let body = garbage(seed, n);
        if matches!(
            frame::decode_body(&body, &mut AlignedVec::new()),
            Err(FrameError::Invalid(_))
        ) {
            return body;
        }
    }
    unreachable!()
}

/// `line` without its ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits (at most `timeout`) for the `n`-th (0-based) line of `node`'s log that reports a
/// link dropped for a bad frame; Ok(it, colours stripped) when it names the node id the
/// fake peer claimed and `reason`, else Err(why).
fn logged_drop(
    node: &Node,
    n: usize,
    peer: u16,
    reason: &str,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let line = loop {
        let log = node.log();
        if let Some(l) = log.lines().filter(|l| l.contains(DROPPED_LINK)).nth(n) {
            break strip_ansi(l);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no {}. {DROPPED_LINK:?} line in node 1's log within {timeout:?}",
                n + 1
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let peer = format!("peer={peer}");
    let error = format!("error={reason}");
    if line.contains(&peer) && line.contains(&error) {
        Ok(line)
    } else {
        Err(format!(
            "expected {peer} and {error:?} in the log line {line:?}"
        ))
    }
}

fn reconnects(node: &Node) -> f64 {
    node.metric("shardcast_link_reconnects_total")
}

/// What became of one corrupt frame.
struct Case {
    what: &'static str,
    /// When node 1 closed the link, after the frame was sent.
    closed: Option<Duration>,
    /// Node 1's `/healthz` answered "ok" afterwards.
    healthy: bool,
    /// The log line reporting the dropped link, or why there is none.
    logged: Result<String, String>,
}

/// One push of the background pusher.
struct Push {
    to: usize,
    acked: Option<String>,
    took: Duration,
    answer: String,
}

#[test]
fn corrupt_frames_from_an_authenticated_peer_close_only_that_link() {
    let c = start_cluster(2);
    let (n1, n2) = (&c[0], &c[1]);
    let cluster = c.etcd.cluster_name().to_string();
    let mut clients = [n1.ws(SYS_A), n2.ws(SYS_A)];
    let n1_id = n1.call(
        SYS_A,
        "/api/get_client_info",
        json!({ "clientId": clients[0].client_id }),
    )["node"]
        .as_u64()
        .expect("node of get_client_info") as u16;
    let n2_id = n2.call(
        SYS_A,
        "/api/get_client_info",
        json!({ "clientId": clients[1].client_id }),
    )["node"]
        .as_u64()
        .expect("node of get_client_info") as u16;

    // Before: pushes both ways.
    for (from, to) in [(0, 1), (1, 0)] {
        let d = c[from].send_to_client(SYS_A, &clients[to].client_id, "before", json!(0));
        assert_eq!(d["online"], json!(true), "{d}");
        expect_message(&mut clients[to], &message_id_of(&d), WAIT);
    }
    let reconnects_before = [reconnects(n1), reconnects(n2)];

    let stop = AtomicBool::new(false);
    let targets = [clients[0].client_id.clone(), clients[1].client_id.clone()];
    let valid_mid = "00000000f00dface";
    let corrupt_mid = "00000000deadbeef";
    let mut results: Vec<Case> = Vec::new();

    let (pushes, frames) = std::thread::scope(|s| {
        let _stop_on_panic = StopOnDrop(&stop);
        let readers: Vec<_> = clients
            .iter_mut()
            .map(|cl| {
                let stop = &stop;
                s.spawn(move || {
                    let mut frames: Vec<Value> = Vec::new();
                    let mut quiet_since: Option<Instant> = None;
                    loop {
                        if stop.load(Ordering::SeqCst)
                            && quiet_since.get_or_insert_with(Instant::now).elapsed()
                                >= Duration::from_millis(1000)
                        {
                            return frames;
                        }
                        match cl.next_event(Duration::from_millis(100)) {
                            WsEvent::Text(t) => {
                                frames.push(serde_json::from_str(t.trim_end()).unwrap());
                                quiet_since = None;
                            }
                            WsEvent::Timeout | WsEvent::Ping | WsEvent::Pong => {}
                            other => panic!("client {}: connection ended: {other:?}", cl.client_id),
                        }
                    }
                })
            })
            .collect();
        // During: node 1 → node 2's client and node 2 → node 1's client, alternately.
        let pusher = s.spawn(|| {
            let mut pushes = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let (from, to) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
                let body = json!({"clientId": targets[to], "msg": "during", "data": i});
                let sent = Instant::now();
                let r = try_api(&c[from], "/api/send_to_client", Some(SYS_A), &body, HANG);
                let took = sent.elapsed();
                let (acked, answer) = match r {
                    Ok(a) => (
                        (a.is_ok() && a.body["data"]["online"] == json!(true))
                            .then(|| message_id_of(&a.body["data"])),
                        format!("HTTP {}: {}", a.status, a.body),
                    ),
                    Err(e) => (None, e),
                };
                pushes.push(Push {
                    to,
                    acked,
                    took,
                    answer,
                });
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            pushes
        });

        // The fake peer is a real member of the link mesh as far as node 1 can tell.
        let target = n1.cluster_addr();
        let mut p = FakePeer::connect(&target, &cluster, n2_id, n1_id);
        p.ping(1);
        let valid = p.seal(&Frame::System {
            req: 1,
            system: SYS_A.to_string(),
            frame: push_ws_frame(valid_mid, "fake-valid"),
        });
        p.send(&valid);
        p.ping(2);
        drop(p);

        // The corrupt frames, each on a fresh authenticated link (after one Ping, so each
        // is sealed as the link's second frame).
        let flipped = |p: &mut FakePeer, f: &Frame, at: fn(usize) -> usize| {
            let mut bytes = p.seal(f);
            let i = at(bytes.len());
            bytes[i] ^= 0x01;
            bytes
        };
        let opens = "sealed frame failed to open (altered, injected, replayed or out of order)";
        type Make = Box<dyn Fn(&mut FakePeer) -> Vec<u8>>;
        let cases: [(&str, Make, String); 4] = [
            (
                "a sealed Ping with a flipped byte",
                Box::new(move |p| flipped(p, &Frame::Ping { t: 3 }, |n| n - 1)),
                opens.to_string(),
            ),
            (
                "a sealed System push with a flipped byte in its payload",
                Box::new(move |p| {
                    let f = Frame::System {
                        req: 1,
                        system: SYS_A.to_string(),
                        frame: push_ws_frame(corrupt_mid, "fake-corrupt"),
                    };
                    flipped(p, &f, |n| n / 2)
                }),
                opens.to_string(),
            ),
            (
                "a length over the 64 MiB limit",
                Box::new(|_| {
                    let mut b = ((MAX_BODY + 1) as u32).to_le_bytes().to_vec();
                    b.extend_from_slice(&garbage(0x5eed, 1024));
                    b
                }),
                format!(
                    "sealed frame body of {} bytes exceeds the limit",
                    MAX_BODY + 1
                ),
            ),
            (
                "garbage sealed correctly",
                Box::new(|p| p.seal_body(&invalid_body(256))),
                "frame body failed validation: ".to_string(),
            ),
        ];
        for (k, (what, make, reason)) in cases.iter().enumerate() {
            let mut p = FakePeer::connect(&target, &cluster, n2_id, n1_id);
            p.ping(10 + k as u64);
            let bytes = make(&mut p);
            let sent = Instant::now();
            p.send_lossy(&bytes);
            let closed = wait_eof(&mut p.stream, CLOSE_LIMIT).map(|_| sent.elapsed());
            let h = try_get(n1.addr(), "/healthz", Duration::from_secs(2));
            let healthy = h.is_ok_and(|r| r.status == 200 && r.text().trim() == "ok");
            let logged = logged_drop(n1, k, n2_id, reason, WAIT);
            eprintln!(
                "[link-corrupt] {what}: link closed by node 1 {}; /healthz {}; logged: {}",
                closed
                    .map(|d| format!("after {:.3}s", d.as_secs_f64()))
                    .unwrap_or_else(|| format!("NOT within {CLOSE_LIMIT:?}")),
                if healthy { "ok" } else { "FAILED" },
                match &logged {
                    Ok(line) => line.as_str(),
                    Err(why) => why.as_str(),
                }
            );
            results.push(Case {
                what,
                closed,
                healthy,
                logged,
            });
            std::thread::sleep(Duration::from_millis(200));
        }
        // A little more traffic after the last one, then stop.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let pushes = pusher.join().expect("pusher");
        let frames: Vec<Vec<Value>> = readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect();
        (pushes, frames)
    });

    // ---- figures ----
    let reconnects_after = [reconnects(n1), reconnects(n2)];
    let slowest = pushes.iter().map(|p| p.took).max().unwrap_or_default();
    let unacked: Vec<&String> = pushes
        .iter()
        .filter(|p| p.acked.is_none())
        .map(|p| &p.answer)
        .collect();
    eprintln!(
        "[link-corrupt] pushes between node 1 and node 2 during the attack: {} sent, {} not \
         acknowledged, slowest {:.1} ms; shardcast_link_reconnects_total node 1 {} -> {}, \
         node 2 {} -> {}",
        pushes.len(),
        unacked.len(),
        slowest.as_secs_f64() * 1e3,
        reconnects_before[0],
        reconnects_after[0],
        reconnects_before[1],
        reconnects_after[1]
    );
    let mut problems: Vec<String> = Vec::new();
    for (k, got) in frames.iter().enumerate() {
        let expected: Vec<&str> = pushes
            .iter()
            .filter(|p| p.to == k)
            .filter_map(|p| p.acked.as_deref())
            .collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut corrupt_delivered = 0;
        let mut valid_fake = 0;
        let mut unexpected = Vec::new();
        for f in got {
            let mid = f["messageId"].as_str().unwrap_or("");
            *seen.entry(mid).or_default() += 1;
            if mid == corrupt_mid || f["msg"].as_str().is_some_and(|m| m.contains("orrupt")) {
                corrupt_delivered += 1;
            } else if mid == valid_mid {
                valid_fake += 1;
            } else if !expected.contains(&mid) {
                unexpected.push(f.to_string());
            }
        }
        let missing = expected.iter().filter(|m| !seen.contains_key(**m)).count();
        let dups = expected.iter().filter(|m| seen.get(**m) > Some(&1)).count();
        eprintln!(
            "[link-corrupt] client on node {}: {} acknowledged pushes, {missing} missing, \
             {dups} duplicated, {} unexpected; the fake peer's valid push received {valid_fake} \
             time(s), its corrupted push {corrupt_delivered} time(s)",
            k + 1,
            expected.len(),
            unexpected.len()
        );
        if missing + dups > 0 || !unexpected.is_empty() {
            problems.push(format!(
                "client on node {}: {missing} missing, {dups} duplicated, unexpected {:?}",
                k + 1,
                unexpected.iter().take(3).collect::<Vec<_>>()
            ));
        }
        if corrupt_delivered > 0 {
            problems.push(format!(
                "client on node {}: a push from a frame that failed to open was delivered",
                k + 1
            ));
        }
        let want_valid = usize::from(k == 0);
        if valid_fake != want_valid {
            problems.push(format!(
                "client on node {}: the fake peer's valid System push arrived {valid_fake} \
                 times, expected {want_valid} (it goes to node 1's clients only)",
                k + 1
            ));
        }
    }

    // ---- assertions ----
    for Case {
        what,
        closed,
        healthy,
        logged,
    } in &results
    {
        assert!(
            closed.is_some(),
            "{what}: node 1 kept the link open for {CLOSE_LIMIT:?}"
        );
        assert!(healthy, "{what}: node 1's /healthz failed afterwards");
        // docs/cluster.md: the link is closed "with a logged reason".
        if let Err(why) = logged {
            panic!("{what}: the reason is not logged: {why}");
        }
    }
    assert!(n1.alive() && n2.alive(), "a node died");
    assert!(
        unacked.is_empty(),
        "pushes between node 1 and node 2 failed during the attack: {:?}",
        unacked.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        slowest <= CALL_LIMIT,
        "a push between the real nodes took {slowest:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        reconnects_after, reconnects_before,
        "the link between the real nodes was broken (shardcast_link_reconnects_total)"
    );
    // After: pushes both ways, and a send_to_system reaches both.
    for (from, to) in [(0, 1), (1, 0)] {
        let d = c[from].send_to_client(SYS_A, &clients[to].client_id, "after", json!(1));
        assert_eq!(d, json!({"messageId": message_id_of(&d), "online": true}));
        expect_message(&mut clients[to], &message_id_of(&d), WAIT);
    }
    let d = n2.call(SYS_A, "/api/send_to_system", json!({"msg": "all"}));
    assert_eq!(d, json!({ "messageId": message_id_of(&d) }));
    for cl in clients.iter_mut() {
        expect_message(cl, &message_id_of(&d), WAIT);
        cl.expect_silence(QUIET);
    }
}
