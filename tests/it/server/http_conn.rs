//! HTTP/1.1 connection handling on the shared port (docs/api.md §4, §5): keep-alive,
//! pipelining (responses in order, pushes in order), `Connection: close`, malformed
//! requests (garbage → 400, head over 16 KiB → 431, a stalled request → 408 within
//! `api.request_timeout`) closing only their own connection, the idle keep-alive
//! timeout, and the operations routes `/healthz`, `/readyz`, `/metrics`.

use crate::support::{
    api::{expect_err, expect_ok},
    metrics::Metrics,
    node::Node,
    SYS_A, SYS_B, WAIT,
};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let node = Node::start("");
    let mut h = node.http();
    let local = h.stream.local_addr().unwrap();
    for i in 0..5 {
        let r = h.request("POST", "/api/get_group_list", &[("SystemId", SYS_A)], b"{}");
        assert_eq!(r.status, 200, "request {i}");
        assert!(
            !r.closes(),
            "request {i}: server asked to close a keep-alive connection"
        );
        expect_ok((r.status, r.json()));
        let r = h.request("GET", "/healthz", &[], b"");
        assert_eq!(r.status, 200);
        assert!(!r.closes());
    }
    assert_eq!(
        h.stream.local_addr().unwrap(),
        local,
        "same TCP connection throughout"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let node = Node::start("");
    let mut h = node.http();
    let mut bytes = h.format_request("POST", "/api/get_group_list", &[("SystemId", SYS_A)], b"{}");
    bytes.extend(h.format_request("GET", "/healthz", &[], b""));
    bytes.extend(h.format_request("POST", "/api/no_such_route", &[("SystemId", SYS_A)], b"{}"));
    h.send_raw(&bytes);

    let r1 = h.read_response(WAIT).expect("first response");
    assert_eq!(r1.status, 200);
    assert_eq!(expect_ok((r1.status, r1.json()))["count"], json!(0));
    let r2 = h.read_response(WAIT).expect("second response");
    assert_eq!(r2.status, 200);
    assert_eq!(r2.text().trim(), "ok");
    let r3 = h.read_response(WAIT).expect("third response");
    expect_err((r3.status, r3.json()), 404, "接口不存在");

    // The connection is still usable.
    let r = h.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn pipelined_pushes_arrive_in_order() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let mut h = node.http();
    let mut bytes = Vec::new();
    for i in 0..10 {
        let body = json!({"clientId": c.client_id, "msg": "p", "data": i}).to_string();
        bytes.extend(h.format_request(
            "POST",
            "/api/send_to_client",
            &[("SystemId", SYS_A)],
            body.as_bytes(),
        ));
    }
    h.send_raw(&bytes);
    let mut mids = Vec::new();
    for _ in 0..10 {
        let r = h.read_response(WAIT).expect("pipelined response");
        let d = expect_ok((r.status, r.json()));
        assert_eq!(d["online"], json!(true));
        mids.push(d["messageId"].clone());
    }
    for (i, mid) in mids.iter().enumerate() {
        let f = c.expect_json(WAIT);
        assert_eq!(f["data"], json!(i), "push order");
        assert_eq!(&f["messageId"], mid, "answers in request order");
    }
}

#[test]
fn connection_close_is_honoured() {
    let node = Node::start("");
    let mut h = node.http();
    let bytes = h.format_request(
        "POST",
        "/api/get_group_list",
        &[("SystemId", SYS_A), ("Connection", "close")],
        b"{}",
    );
    h.send_raw(&bytes);
    let r = h.read_response(WAIT).expect("response");
    expect_ok((r.status, r.json()));
    assert!(
        h.wait_closed(Duration::from_secs(2)),
        "connection left open after Connection: close"
    );
}

#[test]
fn garbage_gets_400_and_a_closed_connection() {
    let node = Node::start("");
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        &b"\x00\x01\x02\x03\xff\xfe garbage\r\n\r\n"[..],
        &b"GET /healthz HTTP/9.9.9 extra\r\n\r\n"[..],
    ] {
        let mut h = node.http();
        h.send_raw(garbage);
        let r = h.read_response(WAIT).expect("a 400 response");
        assert_eq!(r.status, 400, "for {:?}", String::from_utf8_lossy(garbage));
        assert!(
            h.wait_closed(Duration::from_secs(2)),
            "connection left open after a 400"
        );
    }
    // Others are unaffected.
    assert_eq!(node.get("/healthz").status, 200);
}

/// A request line or header line ending in LF without CR is malformed (docs/api.md
/// §7.1): 400 and the connection closed, as for garbage, wherever the bare LF is.
#[test]
fn a_line_ending_without_cr_gets_400_and_a_closed_connection() {
    let node = Node::start("");
    let post = format!(
        "POST /api/send_to_system HTTP/1.1\r\nHost: x\r\nSystemId: {SYS_A}\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    for request in [
        &b"GET /healthz HTTP/1.1\n\n"[..],
        &b"GET /healthz HTTP/1.1\nHost: x\r\n\r\n"[..],
        &b"GET /healthz HTTP/1.1\r\nHost: x\n\r\n"[..],
        &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\n"[..],
        post.as_bytes(),
    ] {
        let mut h = node.http();
        h.send_raw(request);
        let r = h.read_response(WAIT).expect("a 400 response");
        assert_eq!(r.status, 400, "for {:?}", String::from_utf8_lossy(request));
        assert!(
            h.wait_closed(Duration::from_secs(2)),
            "connection left open after a 400"
        );
    }
    // The same requests with CRLF are served.
    let mut h = node.http();
    h.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.read_response(WAIT).expect("an answer").status, 200);
    let mut h = node.http();
    h.send_raw(post.replace("\n", "\r\n").replace("\r\r", "\r").as_bytes());
    let r = h.read_response(WAIT).expect("an answer");
    expect_ok((r.status, r.json()));
}

#[test]
fn a_head_over_16_kib_gets_431_and_a_closed_connection() {
    let node = Node::start("");
    let mut h = node.http();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        node.addr(),
        "a".repeat(17 * 1024)
    );
    h.send_raw(req.as_bytes());
    let r = h.read_response(WAIT).expect("a 431 response");
    assert_eq!(r.status, 431);
    assert!(h.wait_closed(Duration::from_secs(2)));

    // Many headers adding up to more than 16 KiB.
    let mut h = node.http();
    let mut req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", node.addr());
    for i in 0..200 {
        req.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(100)));
    }
    req.push_str("\r\n");
    h.send_raw(req.as_bytes());
    let r = h.read_response(WAIT).expect("a 431 response");
    assert_eq!(r.status, 431);
    assert!(h.wait_closed(Duration::from_secs(2)));

    // A head just under the limit is fine.
    let r = node.http().request(
        "GET",
        "/healthz",
        &[("X-Fill", &"c".repeat(12 * 1024))],
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_stalled_request_gets_408_and_does_not_affect_others() {
    let node = Node::start("[api]\nrequest_timeout = \"1s\"\n");

    // Half a head.
    let mut stalled = node.http();
    stalled.send_raw(
        format!(
            "POST /api/is_online HTTP/1.1\r\nHost: {}\r\nSystemId: ",
            node.addr()
        )
        .as_bytes(),
    );
    let start = Instant::now();
    // Meanwhile, other connections are served: while the stalled request is still
    // waiting for its 408 (a server that waits on the stalled request first would
    // answer it before this call).
    let d = node.call(SYS_A, "/api/get_group_list", json!({}));
    assert_eq!(d["count"], json!(0));
    let served_in = start.elapsed();
    let mut peek = [0u8; 1];
    stalled.stream.set_nonblocking(true).unwrap();
    let pending = stalled.stream.peek(&mut peek);
    stalled.stream.set_nonblocking(false).unwrap();
    assert!(
        matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "other connections were served only after the stalled request was answered \
         ({served_in:?}; the stalled connection: {pending:?})"
    );

    let r = stalled
        .read_response(Duration::from_secs(4))
        .expect("a 408 response");
    let elapsed = start.elapsed();
    assert_eq!(r.status, 408);
    assert!(
        elapsed >= Duration::from_millis(800),
        "408 after {elapsed:?}, before request_timeout"
    );
    assert!(
        elapsed <= Duration::from_secs(2),
        "408 after {elapsed:?}, later than request_timeout + 1 s"
    );
    assert!(stalled.wait_closed(Duration::from_secs(2)));

    // A complete head whose body stalls.
    let mut stalled = node.http();
    stalled.send_raw(
        format!(
            "POST /api/is_online HTTP/1.1\r\nHost: {}\r\nSystemId: {SYS_A}\r\nContent-Length: 100\r\n\r\n{{\"cli",
            node.addr()
        )
        .as_bytes(),
    );
    let start = Instant::now();
    let r = stalled
        .read_response(Duration::from_secs(4))
        .expect("a 408 response");
    assert_eq!(r.status, 408);
    assert!(
        start.elapsed() <= Duration::from_secs(2),
        "408 after {:?}",
        start.elapsed()
    );
    assert!(stalled.wait_closed(Duration::from_secs(2)));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let node = Node::start("[api]\nkeepalive_timeout = \"1s\"\n");
    let mut h = node.http();
    let r = h.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    let start = Instant::now();
    assert!(
        h.wait_closed(Duration::from_secs(4)),
        "idle keep-alive connection never closed"
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(800),
        "closed after {elapsed:?}"
    );
    assert!(
        elapsed <= Duration::from_millis(2500),
        "closed after {elapsed:?}"
    );
}

#[test]
fn operations_routes() {
    let node = Node::start("");
    let r = node.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.text().trim(), "ok");

    let r = node.get("/readyz");
    assert_eq!(r.status, 200);

    let _c1 = node.ws(SYS_A);
    let _c2 = node.ws(SYS_B);
    let r = node.get("/metrics");
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or("").to_ascii_lowercase();
    assert!(ct.starts_with("text/plain"), "metrics Content-Type {ct:?}");
    let m = Metrics::parse(&r.text());
    assert_eq!(
        m.sum("shardcast_connections"),
        2.0,
        "shardcast_connections with two clients:\n{m}"
    );
    assert_eq!(
        m.sum("shardcast_connections_accepted_total"),
        2.0,
        "shardcast_connections_accepted_total after two clients:\n{m}"
    );
}
