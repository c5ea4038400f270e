//! The WebSocket endpoint (docs/api.md §2): the welcome frame and clientId form, an API
//! call made the instant the welcome is read reaches the client (race check, 50 rounds),
//! heartbeat (protocol pings, idle timeout of a silent socket, a pong-answering client
//! stays), text `ping` → `pong`, other client messages discarded, oversize client message
//! → close 1009, refusals without / with an unknown systemId (-1001 frame + close 1008),
//! case-insensitive upgrade headers, and no extension negotiated with `ws.compression`
//! off (permessage-deflate itself: `deflate.rs`).

use crate::support::{
    api::{expect_ok, is_client_id_form},
    http::wait_eof,
    metrics::Metrics,
    node::Node,
    raw_frames::{
        head_header, raw_upgrade, raw_ws_handshake, read_raw_frame, SAMPLE_WS_ACCEPT, SAMPLE_WS_KEY,
    },
    ws::{assert_notice, Client, WsEvent},
    QUIET, SYS_A, SYS_B, WAIT,
};
use serde_json::json;
use std::collections::HashSet;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

const HEARTBEAT: &str = "[ws]\nping_interval = \"200ms\"\nidle_timeout = \"1s\"\n";

#[test]
fn welcome_frame_shape_and_distinct_client_ids() {
    let node = Node::start("");
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let mut c = Client {
            client_id: String::new(),
            socket: node.ws_connect(&format!("/ws?systemId={SYS_A}")),
        };
        let w = c.expect_json(WAIT);
        let id = w["data"]["clientId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            w,
            json!({"code": 0, "msg": "success", "data": {"clientId": id, "clientSend": "off"}})
        );
        assert!(
            is_client_id_form(&id),
            "clientId is 22 base64url chars: {id:?}"
        );
        assert!(ids.insert(id.clone()), "clientId {id} given twice");
    }
    // Ids of other systems are distinct too.
    let b = node.ws(SYS_B);
    assert!(ids.insert(b.client_id.clone()));
}

#[test]
fn api_call_right_after_the_welcome_reaches_the_client() {
    let node = Node::start("");
    for round in 0..50 {
        let mut c = node.ws(SYS_A);
        if round % 2 == 0 {
            let d =
                node.send_to_client(SYS_A, &c.client_id, &format!("round {round}"), json!(round));
            assert_eq!(
                d["online"],
                json!(true),
                "round {round}: just-welcomed client offline"
            );
            let f = c.expect_json(Duration::from_secs(3));
            assert_eq!(f["msg"], json!(format!("round {round}")), "round {round}");
            assert_eq!(f["messageId"], d["messageId"]);
        } else {
            node.bind(SYS_A, &c.client_id, &format!("g{round}"), "u", "");
            let n = c.expect_json(Duration::from_secs(3));
            assert_notice(&n, 1001, &c.client_id, "u", "");
        }
    }
}

#[test]
fn protocol_pings_are_sent_every_ping_interval() {
    let node = Node::start(HEARTBEAT);
    let mut c = node.ws(SYS_A);
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        match c.next_event(Duration::from_millis(100)) {
            WsEvent::Ping => pings += 1,
            WsEvent::Timeout | WsEvent::Pong => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        pings >= 3,
        "only {pings} pings in 1.5 s with ping_interval 200ms"
    );
}

/// The pings of a core go out in turns across the ping interval, not all in one
/// run: 40 clients, ping_interval 1 s, a heartbeat tick of 250 ms (a quarter of the
/// shorter period) — each client is pinged about once a second, and the first pings
/// of the clients fall on several ticks spread over most of the interval.
#[test]
fn pings_are_spread_over_the_ping_interval() {
    let node = Node::start("[ws]\nping_interval = \"1s\"\nidle_timeout = \"30s\"\n");
    let clients: Vec<Client> = (0..40).map(|_| node.ws(SYS_A)).collect();
    let start = Instant::now();
    let watch = Duration::from_millis(2600);
    let pings: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                s.spawn(move || {
                    let mut seen = Vec::new();
                    while start.elapsed() < watch {
                        match c.next_event(Duration::from_millis(50)) {
                            WsEvent::Ping => seen.push(start.elapsed()),
                            WsEvent::Timeout | WsEvent::Pong => {}
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, p) in pings.iter().enumerate() {
        assert!(
            (2..=3).contains(&p.len()),
            "client {i}: {} pings in {watch:?} with ping_interval 1s: {p:?}",
            p.len()
        );
    }
    let firsts: Vec<Duration> = pings.iter().map(|p| p[0]).collect();
    let spread = *firsts.iter().max().unwrap() - *firsts.iter().min().unwrap();
    assert!(
        spread >= Duration::from_millis(400),
        "first pings of 40 clients within {spread:?}: not spread over the interval ({firsts:?})"
    );
}

#[test]
fn a_client_answering_pings_stays_connected() {
    let node = Node::start(HEARTBEAT);
    let mut c = node.ws(SYS_A);
    // tungstenite answers every ping while we read: 2.5 idle_timeouts pass.
    c.expect_silence(Duration::from_millis(2500));
    assert!(node.is_online(SYS_A, &c.client_id));
    node.send_to_client(SYS_A, &c.client_id, "still here", json!(1));
    assert_eq!(c.expect_json(WAIT)["msg"], json!("still here"));
}

#[test]
fn a_silent_connection_is_closed_after_idle_timeout() {
    let node = Node::start(HEARTBEAT);
    let mut s = TcpStream::connect(node.addr()).unwrap();
    let (status, _) = raw_ws_handshake(&mut s, node.addr(), &format!("/ws?systemId={SYS_A}"), "");
    assert_eq!(status, 101);
    let start = Instant::now();
    let (op, payload) = read_raw_frame(&mut s, WAIT).expect("welcome frame");
    assert_eq!(op, 1, "welcome is a text frame");
    let w: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let id = w["data"]["clientId"].as_str().unwrap().to_string();

    // Never answer anything: the server must drop us within idle_timeout + 1 s.
    let closed = wait_eof(&mut s, Duration::from_secs(4));
    let elapsed = start.elapsed();
    assert!(closed.is_some(), "silent connection still open after 4 s");
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}, before idle_timeout (1 s)"
    );
    assert!(
        elapsed <= Duration::from_secs(2),
        "closed after {elapsed:?}, later than idle_timeout + 1 s"
    );
    node.wait_offline(SYS_A, &id, WAIT);
}

#[test]
fn text_ping_is_answered_with_text_pong() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    for _ in 0..3 {
        c.send_text("ping");
        let t = c.recv_text(WAIT).expect("pong");
        assert_eq!(t.trim_end_matches('\n'), "pong");
    }
    c.expect_silence(QUIET);
}

#[test]
fn other_client_messages_are_discarded() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    c.send_text("hello server");
    c.send_text("{\"type\":\"no_such_type\",\"reqId\":\"1\"}");
    c.send_text("PING");
    c.socket
        .send(Message::binary(vec![1u8, 2, 3]))
        .expect("send binary");
    c.expect_silence(QUIET);
    node.send_to_client(SYS_A, &c.client_id, "after", json!(null));
    assert_eq!(c.expect_json(WAIT)["msg"], json!("after"));
}

#[test]
fn an_oversize_client_message_closes_with_1009() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    // At the limit (8192 bytes): fine.
    c.send_text(&"a".repeat(8192));
    c.send_text("ping");
    assert_eq!(c.recv_text(WAIT).expect("pong").trim_end(), "pong");

    let id = c.client_id.clone();
    c.send_text(&"a".repeat(9000));
    assert_eq!(
        c.expect_close(WAIT),
        1009,
        "close code for a too-large message"
    );
    node.wait_offline(SYS_A, &id, WAIT);
}

#[test]
fn an_oversize_limit_is_configurable() {
    let node = Node::start("[ws]\nmax_client_message = 100\n");
    let mut c = node.ws(SYS_A);
    c.send_text(&"b".repeat(100));
    c.send_text("ping");
    assert_eq!(c.recv_text(WAIT).expect("pong").trim_end(), "pong");
    c.send_text(&"b".repeat(101));
    assert_eq!(c.expect_close(WAIT), 1009);
}

fn expect_refusal(node: &Node, path: &str, msg: &str) {
    let mut c = Client {
        client_id: String::new(),
        socket: node.ws_connect(path),
    };
    let f = c.expect_json(WAIT);
    assert_eq!(
        f,
        json!({"messageId": "", "sendUserId": "", "code": -1001, "msg": msg, "data": []}),
        "refusal frame on {path}"
    );
    assert_eq!(c.expect_close(WAIT), 1008, "refusal close code on {path}");
}

#[test]
fn connecting_without_a_system_id_is_refused() {
    let node = Node::start("");
    expect_refusal(&node, "/ws", "系统ID不能为空");
    expect_refusal(&node, "/ws?systemId=", "系统ID不能为空");
    expect_refusal(&node, "/ws?other=1", "系统ID不能为空");
}

#[test]
fn connecting_with_an_unknown_system_id_is_refused() {
    let node = Node::start("");
    let counts = |m: &Metrics| {
        (
            m.sum("shardcast_connections"),
            m.sum("shardcast_connections_accepted_total"),
        )
    };
    assert_eq!(counts(&node.metrics()), (0.0, 0.0), "a fresh node");
    expect_refusal(&node, "/ws?systemId=no-such-system", "系统ID无效");
    expect_refusal(&node, "/ws", "系统ID不能为空");
    // A refused connection is not counted: neither open nor accepted.
    let m = node.metrics();
    assert_eq!(
        counts(&m),
        (0.0, 0.0),
        "(shardcast_connections, shardcast_connections_accepted_total) after two refused \
         connections:\n{m}"
    );
    // … while a welcomed one is (so the figures above are live).
    let c = node.ws(SYS_A);
    assert_eq!(counts(&node.metrics()), (1.0, 1.0), "after one welcome");
    let d = node.send_to_client(SYS_A, &c.client_id, "hi", json!(1));
    assert_eq!(d["online"], json!(true), "{d}");
}

#[test]
fn upgrade_headers_are_case_insensitive() {
    let node = Node::start("");
    let mut s = TcpStream::connect(node.addr()).unwrap();
    let req = format!(
        "GET /ws?systemId={SYS_A} HTTP/1.1\r\nhost: {}\r\nUPGRADE: WebSocket\r\n\
         connection: keep-alive, Upgrade\r\nsec-websocket-key: {SAMPLE_WS_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        node.addr()
    );
    let (status, head) = raw_upgrade(&mut s, &req);
    assert_eq!(status, 101, "{head}");
    assert_eq!(
        head_header(&head, "sec-websocket-accept"),
        Some(SAMPLE_WS_ACCEPT),
        "{head}"
    );
    let (op, payload) = read_raw_frame(&mut s, WAIT).expect("welcome");
    assert_eq!(op, 1);
    let w: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(w["code"], json!(0), "{w}");
}

/// With `ws.compression = false` a node answers as v1 did: no extension, plain frames.
#[test]
fn no_extension_is_negotiated_with_compression_off() {
    let node = Node::start("[ws]\ncompression = false\n");
    let mut s = TcpStream::connect(node.addr()).unwrap();
    let (status, head) = raw_ws_handshake(
        &mut s,
        node.addr(),
        &format!("/ws?systemId={SYS_A}"),
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    assert_eq!(status, 101, "{head}");
    assert_eq!(
        head_header(&head, "sec-websocket-accept"),
        Some(SAMPLE_WS_ACCEPT)
    );
    assert!(
        head_header(&head, "sec-websocket-extensions").is_none(),
        "no extension may be negotiated: {head}"
    );
    // Frames are plain (RSV1 clear) text.
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut s, &mut first).unwrap();
    assert_eq!(first[0] & 0x70, 0, "RSV bits set on the welcome frame");
    assert_eq!(first[0] & 0x0f, 1, "welcome is a text frame");
}

#[test]
fn client_messages_do_not_disturb_pushes_in_both_directions() {
    // A client that keeps talking (pings) while pushes arrive receives every push in order.
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let mut http = node.http();
    for i in 0..30 {
        c.send_text("ping");
        let (st, v) = http.api(
            "/api/send_to_client",
            Some(SYS_A),
            &json!({"clientId": c.client_id, "msg": "n", "data": i}).to_string(),
        );
        expect_ok((st, v));
    }
    let mut pongs = 0;
    let mut next = 0;
    while pongs < 30 || next < 30 {
        let t = c.recv_text(WAIT).expect("frame");
        if t.trim_end() == "pong" {
            pongs += 1;
        } else {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["data"], json!(next), "pushes in order");
            next += 1;
        }
    }
    c.expect_silence(QUIET);
}

/// `ws.echo` (conformance testing, docs/api.md §6; the comment in conf/shardcast.toml
/// says the same): no welcome and no protocol pings, every client message echoed
/// unchanged — and the notices and pushes of API calls still arrive.
#[test]
fn echo_mode_sends_no_welcome_but_notices_and_pushes_still_arrive() {
    // No welcome, so the clientId comes from the connect webhook.
    let receiver = crate::support::receiver::Receiver::ok();
    let node = Node::start(&format!(
        "[ws]\necho = true\nping_interval = \"200ms\"\n[webhook]\nurl = \"{}\"\n",
        receiver.url("/hook")
    ));
    let mut c = Client {
        client_id: String::new(),
        socket: node.ws_connect(&format!("/ws?systemId={SYS_A}")),
    };
    let connect = receiver.wait_for("a connect", |ev| ev.iter().any(|e| e["event"] == "connect"));
    c.client_id = connect[0]["clientId"].as_str().unwrap().to_string();
    // Nothing unsolicited: no welcome, no ping (a few ping intervals).
    match c.next_event(Duration::from_millis(700)) {
        WsEvent::Timeout => {}
        other => panic!("echo mode sent {other:?} unasked"),
    }
    c.send_text("hello");
    assert_eq!(c.recv_text(WAIT).as_deref(), Some("hello"), "echoed");
    node.bind(SYS_A, &c.client_id, "g", "u1", "");
    assert_notice(&c.expect_json(WAIT), 1001, &c.client_id, "u1", "");
    node.send_to_client(SYS_A, &c.client_id, "pushed", json!(1));
    assert_eq!(c.expect_json(WAIT)["msg"], json!("pushed"));
}

/// The README's welcome example has the fields, in order, of the welcome a node
/// running the shipped config (session resume on, `ws.client_send = "off"`) sends.
#[test]
fn the_readme_welcome_is_the_welcome_of_the_shipped_config() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let at = readme
        .find("With the shipped config the welcome frame is")
        .expect("the welcome in the README");
    let example = readme[at..].split('`').nth(1).expect("the example");
    let example: serde_json::Value = serde_json::from_str(example).expect("JSON");
    let node = Node::start(&format!("[ws]\n{}", crate::support::node::shipped_resume()));
    let mut c = Client {
        client_id: String::new(),
        socket: node.ws_connect(&format!("/ws?systemId={SYS_A}")),
    };
    let welcome = c.expect_json(WAIT);
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.extend(
            v["data"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| format!("data.{k}")),
        );
        keys
    };
    assert_eq!(
        keys(&welcome),
        keys(&example),
        "{welcome} vs the README's {example}"
    );
    assert_eq!(welcome["data"]["clientSend"], example["data"]["clientSend"]);
}
