//! HTTP limits of docs/api.md §7: answers a client does not read are held up to
//! `api.max_pending_answers` bytes (no further request of it is read meanwhile) and the
//! connection is closed when they stay unread for `api.request_timeout`; at most
//! `api.max_http_connections` HTTP connections are open at once, one more gets 503
//! `服务繁忙` (WebSockets do not count). Each hit is counted in
//! `shardcast_limit_hits_total{limit}`, and other clients are served throughout.

use crate::support::{
    node::{rss_kib, shipped_resume, Node},
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
    std::thread::sleep(Duration::from_millis(300));
    let grown_mib = rss_kib(node.pid()).saturating_sub(before) / 1024;
    assert!(grown_mib < 32, "the node grew by {grown_mib} MiB");
    // Meanwhile others are served.
    let d = node.call(SYS_A, "/api/get_group_list", json!({}));
    assert_eq!(d["count"], json!(0));
    // Unread for longer than request_timeout: closed.
    std::thread::sleep(Duration::from_secs(2));
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
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => {}
            }
        };
        assert!(closed, "not closed: {got} B of answers read");
    }
    assert!(limit_hits(&node, "api.max_pending_answers") >= 8.0);
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
