//! HTTP limits of docs/api.md §7: answers a client does not read are held up to
//! `api.max_pending_answers` bytes (no further request of it is read meanwhile) and the
//! connection is closed when they stay unread for `api.request_timeout`; at most
//! `api.max_http_connections` HTTP connections are open at once: at the limit the
//! longest-idle keep-alive connection is closed to admit a new one, and only when none is
//! idle does one more get 503 `服务繁忙`. WebSockets do not count, not even while they
//! upgrade: with the limit held, WebSockets still connect (§7). Each hit is counted in
//! `shardcast_limit_hits_total{limit}`, and other clients are served throughout.

use crate::support::{
    http::HttpConn,
    node::{rss_kib, shipped_resume, Node},
    raw_frames::raw_ws_handshake,
    raw_ws::is_closed,
    SYS_A, WAIT,
};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn limit_hits(node: &Node, key: &str) -> f64 {
    node.metrics()
        .sum_where("shardcast_limit_hits_total", &[("limit", key)])
}

#[test]
fn pipelined_answers_nobody_reads_are_bounded_and_time_out() {
    pipelined_answers_with("");
}

#[test]
fn pipelined_answers_nobody_reads_are_bounded_with_the_shipped_config() {
    pipelined_answers_with(&format!("[ws]\n{}", shipped_resume()));
}

fn pipelined_answers_with(extra: &str) {
    let node = Node::start(&format!(
        "[console]\nenabled = true\n[api]\nrequest_timeout = \"1s\"\nmax_pending_answers = 65536\n{extra}"
    ));
    let before = rss_kib(node.pid());
    // Eight connections pipelining the console page (tens of KiB each) and never
    // reading: 8 × 20,000 answers would be gigabytes if the node kept them.
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    let hogs: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(node.addr()).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let _ = s.write_all(&request); // the node stops reading: may not all fit
            s
        })
        .collect();
    // Meanwhile others are served.
    let d = node.call(SYS_A, "/api/get_group_list", json!({}));
    assert_eq!(d["count"], json!(0));
    // The node's memory, sampled until each hog is cut for leaving its answers unread
    // longer than request_timeout (a limit hit each), stays bounded throughout.
    let cut_by = Instant::now() + WAIT + Duration::from_secs(1);
    let mut peak = before;
    while limit_hits(&node, "api.max_pending_answers") < 8.0 {
        peak = peak.max(rss_kib(node.pid()));
        assert!(Instant::now() < cut_by, "the hogs were not all cut");
        std::thread::sleep(Duration::from_millis(20));
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(grown_mib < 32, "the node grew by {grown_mib} MiB");
    let deadline = Instant::now() + WAIT;
    for mut s in hogs {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) if Instant::now() > deadline => break false,
                Ok(0) => break true,
                Ok(n) => got += n,
                Err(e) if is_closed(&e) => break true,
                Err(_) => {}
            }
        };
        assert!(closed, "not closed: {got} B of answers read");
    }
}

#[test]
fn http_connections_over_the_limit_get_503_and_websockets_do_not_count() {
    let node = Node::start("[api]\nmax_http_connections = 3\n");
    // WebSockets pass through the HTTP reader but do not keep a place.
    let _ws: Vec<_> = (0..3).map(|_| node.ws(SYS_A)).collect();
    let mut held: Vec<_> = (0..3).map(|_| node.http()).collect();
    for h in held.iter_mut() {
        let r = h.request("GET", "/healthz", &[], b"");
        assert_eq!(r.status, 200);
        // A request in progress: the connection is not idle, so it is not closed to make
        // room (an idle one would be: the next test).
        h.send_raw(b"GET /healthz HTTP/1.1\r\n");
    }
    // Refusals take no place and give none back: the limit stays exact however many
    // there are (a refusal once gave back a place it never took, and the count wrapped).
    for _ in 0..5 {
        let mut extra = node.http();
        let r = extra.request("POST", "/api/get_group_list", &[("SystemId", SYS_A)], b"{}");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["msg"], json!("服务繁忙"));
        assert!(r.closes(), "the refused connection is closed");
    }
    // A place freed is a place taken again.
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut h = node.http();
        let r = h.request("GET", "/healthz", &[], b"");
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {}", r.status);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every place given back: /metrics (an HTTP connection too) gets one again.
    drop(held);
    let deadline = Instant::now() + WAIT;
    while node.get("/metrics").status != 200 {
        assert!(Instant::now() < deadline, "places not given back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(limit_hits(&node, "api.max_http_connections") >= 5.0);
}

/// What `api.max_http_connections` held by idle keep-alive connections does (docs/api.md
/// §7): WebSocket upgrades are not HTTP connections, so 60 of them connect while 40 idle
/// connections hold a limit of 40 (all 60 were answered 503 before), and close none of
/// them; a new API caller is served, and to admit it one idle connection (the longest
/// idle of its core) is closed: it reads EOF, the others stay open.
#[test]
fn idle_connections_at_the_limit_lock_out_neither_websockets_nor_callers() {
    const LIMIT: usize = 40;
    let node = Node::start(&format!("[api]\nmax_http_connections = {LIMIT}\n"));
    let mut idle: Vec<HttpConn> = (0..LIMIT)
        .map(|_| {
            let mut h = node.http();
            assert_eq!(h.request("GET", "/healthz", &[], b"").status, 200);
            h
        })
        .collect();
    // Each of them holds a place and asks nothing more.
    std::thread::sleep(Duration::from_millis(200));

    // (a) WebSockets connect, and take no idle connection's place.
    let mut refused = Vec::new();
    let sockets: Vec<TcpStream> = (0..60)
        .map(|i| {
            let mut s = TcpStream::connect(node.addr()).unwrap();
            let path = format!("/ws?systemId={SYS_A}");
            let (status, head) = raw_ws_handshake(&mut s, node.addr(), &path, "");
            if status != 101 {
                refused.push((i, status, head));
            }
            s
        })
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 60 WebSockets refused with the HTTP limit held by idle connections: {:?}",
        refused.len(),
        refused.first()
    );
    let closed = closed_among(&mut idle, Duration::from_millis(300));
    assert!(
        closed.is_empty(),
        "WebSockets closed idle connections {closed:?}"
    );

    // (b) A new API caller is served; one idle connection was closed to admit it.
    let mut caller = node.http();
    let r = caller.request("POST", "/api/get_group_list", &[("SystemId", SYS_A)], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["code"], json!(0), "{}", r.text());
    let closed = closed_among(&mut idle, Duration::from_millis(500));
    assert_eq!(closed.len(), 1, "idle connections closed: {closed:?}");
    // The caller keeps its connection: its next request is served on it.
    let r = caller.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    assert!(!r.closes());
    assert!(limit_hits(&node, "api.max_http_connections") >= 1.0);
    // The WebSockets are open (the node counts them).
    assert!(node.metric("shardcast_connections") >= 60.0);
    drop(sockets);
}

/// Indices of the connections of `conns` that read EOF (or a reset) after `after`; the
/// others are left open, nothing read from them.
fn closed_among(conns: &mut [HttpConn], after: Duration) -> Vec<usize> {
    std::thread::sleep(after);
    let mut closed = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        c.stream.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        match c.stream.peek(&mut peek) {
            Ok(0) => closed.push(i),
            Ok(_) => panic!("idle connection {i} was sent something"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => closed.push(i),
        }
        c.stream.set_nonblocking(false).unwrap();
    }
    closed
}
