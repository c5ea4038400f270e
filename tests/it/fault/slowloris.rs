//! Slowloris (docs/api.md §5 "a request not complete within `api.request_timeout` of its
//! first byte gets a 408 and a closed connection; it never affects other connections",
//! docs/api.md §6 `api.keepalive_timeout`).
//!
//! With `request_timeout = keepalive_timeout = 1s`: 200 connections dribble a request
//! head one byte every 200 ms and 200 connect and say nothing, all at once. Meanwhile a
//! healthy WebSocket client gets a `send_to_client` push every 50 ms through a healthy
//! keep-alive API connection. Every slow connection must be answered 408 (or closed)
//! within its timeout + 1 s, every silent one closed within `keepalive_timeout` + 2 s
//! (the kernel hands a connection that has sent nothing to the node after up to 1 s,
//! docs/api.md §6 `api.keepalive_timeout`);
//! the healthy client must lose no push and the API must keep answering.

use crate::support::{api::expect_ok, node::Node, StopOnDrop, SYS_A, WAIT};
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SLOW: usize = 200;
const SILENT: usize = 200;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the kernel holds a connection that sends nothing before the node sees it
/// (TCP_DEFER_ACCEPT on the listener).
const DEFERRED: Duration = Duration::from_secs(1);
/// What the server is allowed beyond its timeout.
const GRACE: Duration = Duration::from_secs(1);
const BYTE_EVERY: Duration = Duration::from_millis(200);
const PUSH_EVERY: Duration = Duration::from_millis(50);
/// A refused connection is closed (EOF) at the latest after the refusal linger (1 s);
/// watched this long after its first byte / its connect.
const EOF_WATCH: Duration = Duration::from_millis(3500);
/// How long the attack keeps its connections in flight.
const ATTACK: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Dribbles a request head.
    Slow,
    /// Connects and sends nothing.
    Silent,
}

struct Attacker {
    kind: Kind,
    stream: TcpStream,
    /// First byte written (slow) or connected (silent).
    since: Instant,
    next_write: Instant,
    written: usize,
    response: Vec<u8>,
    /// When the server answered (its status) — a 408 is expected for the slow ones.
    answered: Option<(Duration, u16)>,
    /// When the connection ended (EOF, reset, or a write refused).
    ended: Option<Duration>,
    /// A fresh connection of the same kind has taken its place.
    replaced: bool,
}

impl Attacker {
    /// When the server first showed it gave up on this connection.
    fn closed_after(&self) -> Option<Duration> {
        match (self.answered.map(|a| a.0), self.ended) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) => a.or(e),
        }
    }

    fn limit(&self) -> Duration {
        match self.kind {
            Kind::Slow => REQUEST_TIMEOUT + GRACE,
            Kind::Silent => KEEPALIVE_TIMEOUT + DEFERRED + GRACE,
        }
    }

    /// One non-blocking look at the socket (and, for a slow one, the next byte if due).
    fn poll(&mut self, head: &[u8], now: Instant) {
        if self.ended.is_some() {
            return;
        }
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.ended = Some(now - self.since);
                    return;
                }
                Ok(n) => {
                    self.response.extend_from_slice(&buf[..n]);
                    if self.answered.is_none() {
                        if let Some(status) = status_of(&self.response) {
                            self.answered = Some((now - self.since, status));
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.ended = Some(now - self.since);
                    return;
                }
            }
        }
        // A slow client keeps dribbling until it is told off.
        if self.kind == Kind::Slow && self.answered.is_none() && now >= self.next_write {
            match self.stream.write(&head[self.written..self.written + 1]) {
                Ok(_) => self.written += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => self.ended = Some(now - self.since),
            }
            self.next_write += BYTE_EVERY;
        }
    }
}

/// The status of a response once its status line is complete.
fn status_of(resp: &[u8]) -> Option<u16> {
    let end = resp.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&resp[..end]);
    Some(line.split(' ').nth(1)?.parse().unwrap_or(0))
}

fn max_of(v: impl Iterator<Item = Duration>) -> Duration {
    v.max().unwrap_or_default()
}

#[test]
fn slowloris_and_silent_connections_are_cut_and_the_healthy_client_loses_nothing() {
    let node = Node::start(&format!(
        "[api]\nrequest_timeout = \"{}ms\"\nkeepalive_timeout = \"{}ms\"\n",
        REQUEST_TIMEOUT.as_millis(),
        KEEPALIVE_TIMEOUT.as_millis()
    ));
    let client = node.ws(SYS_A);
    let client_id = client.client_id.clone();
    // A head that can never complete at 5 bytes per second (and stays under 16 KiB).
    let head = format!(
        "POST /api/send_to_client HTTP/1.1\r\nHost: {}\r\nSystemId: {SYS_A}\r\nX-Slow: {}",
        node.addr(),
        "s".repeat(8 * 1024)
    )
    .into_bytes();

    let stop = AtomicBool::new(false);
    let total = AtomicUsize::new(0); // 0 = not known yet

    std::thread::scope(|s| {
        let _stop_on_panic = StopOnDrop(&stop);
        // The healthy WebSocket client: every push, in order.
        let reader = s.spawn(|| {
            let mut client = client;
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut next = 0usize;
            loop {
                let t = total.load(Ordering::SeqCst);
                if (t != 0 && next >= t) || Instant::now() >= deadline {
                    return (next, client);
                }
                let Some(v) = client.recv_json(Duration::from_millis(100)) else {
                    continue;
                };
                assert_eq!(v["msg"], json!("tick"), "healthy client: unexpected {v}");
                assert_eq!(
                    v["sendUserId"],
                    json!(next.to_string()),
                    "healthy client: push lost or out of order"
                );
                next += 1;
            }
        });

        // The healthy API connection: one push every 50 ms, each timed.
        let pusher = s.spawn(|| {
            let mut http = node.http();
            let local = http.stream.local_addr().unwrap();
            let mut latencies = Vec::new();
            let mut next_at = Instant::now();
            let mut seq = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let body = json!({"clientId": client_id, "msg": "tick",
                                  "sendUserId": seq.to_string(), "data": seq});
                let t0 = Instant::now();
                let d = expect_ok(http.api("/api/send_to_client", Some(SYS_A), &body.to_string()));
                latencies.push(t0.elapsed());
                assert_eq!(d["online"], json!(true), "push {seq}: {d}");
                seq += 1;
                next_at += PUSH_EVERY;
                std::thread::sleep(next_at.saturating_duration_since(Instant::now()));
            }
            let same_conn = http.stream.local_addr().unwrap() == local;
            (seq, latencies, same_conn)
        });

        // Let the healthy traffic run a moment, then attack: 400 connections in flight,
        // each one replaced by a fresh one of its kind as soon as the server cuts it,
        // for ATTACK.
        std::thread::sleep(Duration::from_millis(300));
        let attack_start = Instant::now();
        let open_attacker = |kind: Kind| {
            let stream = TcpStream::connect(node.addr())
                .unwrap_or_else(|e| panic!("attacker: connect: {e}"));
            stream.set_nonblocking(true).unwrap();
            let now = Instant::now();
            let mut a = Attacker {
                kind,
                stream,
                since: now,
                next_write: now,
                written: 0,
                response: Vec::new(),
                answered: None,
                ended: None,
                replaced: false,
            };
            a.poll(&head, now); // a slow one writes its first byte now
            a
        };
        let mut attackers: Vec<Attacker> = (0..SLOW + SILENT)
            .map(|i| open_attacker(if i % 2 == 0 { Kind::Slow } else { Kind::Silent }))
            .collect();
        let connected_in = attack_start.elapsed();

        // Watch them until every one has ended (or was watched long enough).
        loop {
            let now = Instant::now();
            let mut fresh = Vec::new();
            for a in attackers.iter_mut() {
                a.poll(&head, now);
                if a.closed_after().is_some() && !a.replaced && now - attack_start < ATTACK {
                    a.replaced = true;
                    fresh.push(open_attacker(a.kind));
                }
            }
            attackers.append(&mut fresh);
            let watching = attackers
                .iter()
                .any(|a| a.ended.is_none() && now - a.since < EOF_WATCH);
            if !watching {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let attack_took = attack_start.elapsed();
        // The healthy traffic goes on a little after the attack.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let (sent, latencies, same_conn) = pusher.join().expect("pusher thread");
        total.store(sent.max(1), Ordering::SeqCst);
        let (received, client) = reader.join().expect("reader thread");

        // ---- figures ----
        let slow: Vec<&Attacker> = attackers.iter().filter(|a| a.kind == Kind::Slow).collect();
        let silent: Vec<&Attacker> = attackers
            .iter()
            .filter(|a| a.kind == Kind::Silent)
            .collect();
        let closed_max = |v: &[&Attacker]| max_of(v.iter().filter_map(|a| a.closed_after()));
        let ended_max = |v: &[&Attacker]| max_of(v.iter().filter_map(|a| a.ended));
        let closed_min = |v: &[&Attacker]| {
            v.iter()
                .filter_map(|a| a.closed_after())
                .min()
                .unwrap_or_default()
        };
        let slow_408 = slow
            .iter()
            .filter(|a| matches!(a.answered, Some((_, 408))))
            .count();
        let slow_other: Vec<String> = slow
            .iter()
            .filter_map(|a| a.answered.filter(|(_, st)| *st != 408))
            .map(|(_, st)| st.to_string())
            .collect();
        let silent_answered = silent.iter().filter(|a| a.answered.is_some()).count();
        let max_latency = max_of(latencies.iter().copied());
        let mut sorted_lat = latencies.clone();
        sorted_lat.sort();
        let p99 = sorted_lat
            .get(sorted_lat.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        let metrics = node.metrics();
        let http_408 = metrics.sum_where("shardcast_http_errors_total", &[("status", "408")]);
        eprintln!(
            "[slowloris] {SLOW} slow (1 byte / {} ms) + {SILENT} silent connections kept in \
             flight for {:.1}s ({} slow and {} silent in all; the first {} opened in {:.3}s); \
             request_timeout = keepalive_timeout = {:.1}s",
            BYTE_EVERY.as_millis(),
            ATTACK.as_secs_f64(),
            slow.len(),
            silent.len(),
            SLOW + SILENT,
            connected_in.as_secs_f64(),
            REQUEST_TIMEOUT.as_secs_f64()
        );
        eprintln!(
            "[slowloris] slow: {slow_408}/{} answered 408 (other answers: {slow_other:?}); \
             closed {:.3}s..{:.3}s (min..max) after the first byte, TCP end max {:.3}s, \
             {} still open",
            slow.len(),
            closed_min(&slow).as_secs_f64(),
            closed_max(&slow).as_secs_f64(),
            ended_max(&slow).as_secs_f64(),
            slow.iter().filter(|a| a.closed_after().is_none()).count()
        );
        eprintln!(
            "[slowloris] silent: closed {:.3}s..{:.3}s (min..max) after the connect, \
             {silent_answered} got an answer, {} still open",
            closed_min(&silent).as_secs_f64(),
            closed_max(&silent).as_secs_f64(),
            silent.iter().filter(|a| a.closed_after().is_none()).count()
        );
        eprintln!(
            "[slowloris] attack watched for {:.3}s; healthy pushes: {sent} sent, {received} \
             received, {} lost; API latency max {:.1} ms, p99 {:.1} ms over {} calls; \
             same keep-alive connection throughout: {same_conn}; \
             shardcast_http_errors_total{{status=\"408\"}} {}",
            attack_took.as_secs_f64(),
            sent.saturating_sub(received),
            max_latency.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            latencies.len(),
            http_408
        );

        // ---- assertions ----
        for (i, a) in attackers.iter().enumerate() {
            let closed = a.closed_after().unwrap_or_else(|| {
                panic!(
                    "{:?} connection {i} was never closed nor answered by the server \
                     (watched {:.1}s; wrote {} bytes)",
                    a.kind,
                    EOF_WATCH.as_secs_f64(),
                    a.written
                )
            });
            assert!(
                closed <= a.limit(),
                "{:?} connection {i} closed only after {:.3}s, limit {:.3}s",
                a.kind,
                closed.as_secs_f64(),
                a.limit().as_secs_f64()
            );
        }
        assert_eq!(
            slow_408,
            slow.len(),
            "every slow request head must be answered 408 (others: {slow_other:?})"
        );
        assert!(
            http_408 >= slow_408 as f64,
            "shardcast_http_errors_total{{status=\"408\"}} = {http_408}, but {slow_408} \
             requests were answered 408"
        );
        assert!(
            sent >= 40,
            "the healthy pusher made only {sent} calls during the attack"
        );
        assert_eq!(
            received,
            sent,
            "the healthy client lost {} of {sent} pushes",
            sent - received.min(sent)
        );
        assert!(
            same_conn,
            "the healthy keep-alive API connection was closed"
        );
        assert!(
            max_latency < REQUEST_TIMEOUT,
            "an API call on the healthy connection took {:.3}s during the attack",
            max_latency.as_secs_f64()
        );

        // The node is fine afterwards, and so is the healthy client.
        let h = node.get("/healthz");
        assert_eq!((h.status, h.text().trim()), (200, "ok"));
        assert!(node.is_online(SYS_A, &client_id));
        let mut client = client;
        let d = node.send_to_client(SYS_A, &client_id, "after", json!(1));
        assert_eq!(d["online"], json!(true));
        let v = client.expect_json(WAIT);
        assert_eq!(v["msg"], json!("after"), "{v}");
    });
}
