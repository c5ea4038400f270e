//! Webhooks (docs/api.md §2.2) against a real HTTP receiver started by each test: `connect`
//! and `disconnect` (exactly once, with the reason of each way a connection ends),
//! `message` under `ws.client_send = "webhook"`, signatures in token mode, a retry after
//! a 500, the queue bound, delivery on shutdown, and pushes unaffected by a receiver that
//! never answers.
//!
//! Assumptions where the contract is silent:
//! - Under `"webhook"` the forwarded `data` is the client's frame as a JSON object, its
//!   `type` and `reqId` included.
//! - A system with no webhook at all (token mode, no `webhookUrl`, no `webhook.url`)
//!   refuses forwarded client messages with `客户端无权发送`: nobody upstream would hear them.

use crate::support::{
    api::expect_ok,
    node::Node,
    now_unix,
    raw_frames::write_raw_frame,
    raw_ws::Raw,
    receiver::{Hook, Receiver},
    ws::Client,
    QUIET, SYS_A, WAIT,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{Duration, Instant};
use tungstenite::Message;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn webhook_node(receiver: &Receiver, extra: &str) -> Node {
    Node::start(&format!(
        "[webhook]\nurl = \"{}\"\nretries = 3\ntimeout = \"2s\"\n{extra}",
        receiver.url("/hook")
    ))
}

fn reasons(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "disconnect")
        .map(|e| e["reason"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Waits for exactly one `disconnect` of `client_id` and returns its reason; also checks
/// that no second one follows.
fn single_disconnect(receiver: &Receiver, client_id: &str) -> String {
    receiver.events_of(client_id, 2);
    std::thread::sleep(QUIET);
    let events: Vec<Value> = receiver
        .hooks()
        .iter()
        .map(Hook::json)
        .filter(|e| e["clientId"] == client_id)
        .collect();
    let r = reasons(&events);
    assert_eq!(
        r.len(),
        1,
        "exactly one disconnect for {client_id}: {events:#?}"
    );
    assert_eq!(events[0]["event"], "connect", "connect first: {events:#?}");
    r[0].clone()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn send_text(c: &mut Client, text: &str) {
    c.socket.send(Message::text(text)).expect("send");
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn connect_and_disconnect_carry_the_connection_and_its_groups() {
    let receiver = Receiver::ok();
    let node = webhook_node(&receiver, "");
    let mut c = node.ws(SYS_A);
    let connect = receiver.events_of(&c.client_id, 1);
    let e = &connect[0];
    assert_eq!(e["event"], "connect");
    assert_eq!(e["systemId"], SYS_A);
    assert_eq!(
        (e["userId"].clone(), e["groups"].clone()),
        (json!(""), json!([]))
    );
    let now_ms = now_unix() as i64 * 1000;
    let t = e["time"].as_i64().expect("time in ms");
    assert!((t - now_ms).abs() < 10_000, "time {t} vs now {now_ms}");
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        ["event", "eventId", "systemId", "clientId", "userId", "groups", "time"]
    );

    node.bind(SYS_A, &c.client_id, "g1", "u1", "");
    node.bind(SYS_A, &c.client_id, "g2", "u1", "");
    c.close_cleanly();
    assert_eq!(single_disconnect(&receiver, &c.client_id), "client_closed");
    let events = receiver.events_of(&c.client_id, 2);
    let d = &events[1];
    assert_eq!(
        (d["userId"].clone(), d["groups"].clone()),
        (json!("u1"), json!(["g1", "g2"]))
    );
    let hook = &receiver.hooks()[0];
    assert_eq!(hook.path, "/hook");
    assert!(hook
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    assert_eq!(
        hook.header("x-shardcast-signature"),
        None,
        "open mode is unsigned"
    );
}

#[test]
fn every_way_a_connection_ends_has_its_reason_exactly_once() {
    let receiver = Receiver::ok();
    let node = webhook_node(
        &receiver,
        "[ws]\nmax_client_message = 1024\nsend_queue_bytes = 65536",
    );

    let abrupt = node.ws(SYS_A);
    let abrupt_id = abrupt.client_id.clone();
    drop(abrupt);
    assert_eq!(single_disconnect(&receiver, &abrupt_id), "client_closed");

    // A TCP reset (RST, not FIN) is a socket error (docs/api.md §2, the table of closes).
    let reset = Raw::open(&node, &format!("systemId={SYS_A}"));
    let reset_id = reset.client_id();
    reset.reset();
    assert_eq!(single_disconnect(&receiver, &reset_id), "error");

    let closed = node.ws(SYS_A);
    node.call(
        SYS_A,
        "/api/close_client",
        json!({"clientId": closed.client_id}),
    );
    assert_eq!(
        single_disconnect(&receiver, &closed.client_id),
        "closed_by_api"
    );

    let mut big = node.ws(SYS_A);
    send_text(&mut big, &"x".repeat(4096));
    assert_eq!(big.expect_close(WAIT), 1009);
    assert_eq!(single_disconnect(&receiver, &big.client_id), "too_large");

    let mut bad = node.ws(SYS_A);
    // A frame with the reserved opcode 3.
    write_raw_frame(bad.socket.get_mut(), 0x3, b"");
    bad.wait_closed(WAIT);
    assert_eq!(single_disconnect(&receiver, &bad.client_id), "error");

    // A client that stops reading while pushes pile up (the kernel buffers take MiBs first).
    let slow = node.ws(SYS_A);
    let data = "y".repeat(60_000);
    for _ in 0..300 {
        let (status, v) = node.api(
            "/api/send_to_client",
            Some(SYS_A),
            &json!({"clientId": slow.client_id, "data": data}).to_string(),
        );
        if status != 200 || v["data"]["online"] == false {
            break;
        }
    }
    assert_eq!(
        single_disconnect(&receiver, &slow.client_id),
        "slow_consumer"
    );
}

#[test]
fn idle_connections_end_with_idle_timeout() {
    let receiver = Receiver::ok();
    let node = webhook_node(
        &receiver,
        "[ws]\nping_interval = \"10s\"\nidle_timeout = \"1s\"",
    );
    let silent = node.ws(SYS_A);
    assert_eq!(
        single_disconnect(&receiver, &silent.client_id),
        "idle_timeout"
    );
}

#[test]
fn shutdown_disconnects_are_delivered_before_exit() {
    let receiver = Receiver::ok();
    let mut node = webhook_node(&receiver, "");
    let clients: Vec<Client> = (0..20).map(|_| node.ws(SYS_A)).collect();
    let ids: Vec<String> = clients.iter().map(|c| c.client_id.clone()).collect();
    receiver.wait_for_each("connect", &ids);
    node.sigterm();
    let status = node.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}");
    let events: Vec<Value> = receiver.hooks().iter().map(Hook::json).collect();
    for c in &clients {
        let r: Vec<String> = reasons(
            &events
                .iter()
                .filter(|e| e["clientId"] == json!(c.client_id))
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(r, ["shutdown"], "{}: {events:#?}", c.client_id);
    }
}

#[test]
fn client_messages_are_forwarded_under_the_webhook_policy() {
    let receiver = Receiver::ok();
    let node = webhook_node(&receiver, "[ws]\nclient_send = \"webhook\"");
    let mut c = node.ws(SYS_A);
    let mut peer = node.ws(SYS_A);
    node.bind(SYS_A, &c.client_id, "room", "alice", "");
    node.bind(SYS_A, &peer.client_id, "room", "bob", "");
    c.drain(QUIET);
    peer.drain(QUIET);
    let msg = json!({"type":"send_to_group","groupName":"room","msg":"m","data":{"k":[1,2]},"reqId":"r9"});
    send_text(&mut c, &msg.to_string());
    let ack = c.expect_json_where(WAIT, |v| v["type"] == "ack");
    assert_eq!(
        ack,
        json!({"type":"ack","reqId":"r9","code":0,"msg":"success","messageId":""})
    );
    send_text(&mut c, "not json");
    send_text(&mut c, "ping");
    assert_eq!(c.recv_text(WAIT).as_deref(), Some("pong"));
    let events = receiver.events_of(&c.client_id, 2);
    let forwarded: Vec<&Value> = events.iter().filter(|e| e["event"] == "message").collect();
    assert_eq!(forwarded.len(), 1, "{events:#?}");
    let m = forwarded[0];
    assert_eq!(m["data"], msg, "data is the client's message object");
    assert_eq!(
        (m["userId"].clone(), m["groups"].clone()),
        (json!("alice"), json!(["room"]))
    );
    peer.expect_silence(QUIET);
    std::thread::sleep(QUIET);
    let again = receiver
        .hooks()
        .iter()
        .filter(|h| h.json()["event"] == "message")
        .count();
    assert_eq!(again, 1, "only docs/api.md §2.1 messages are forwarded");
}

const ADMIN: &str = "admin-secret-for-webhook-tests";

fn register(node: &Node, body: Value) -> String {
    let d = expect_ok(node.api_with_headers(
        "/api/register",
        &[("AdminToken", ADMIN)],
        &body.to_string(),
    ));
    d["token"].as_str().expect("secret").to_string()
}

#[test]
fn token_mode_signs_with_the_system_secret_and_honours_its_webhook_url() {
    let global = Receiver::ok();
    let own = Receiver::ok();
    let node = webhook_node(
        &global,
        &format!("[api]\nauth = \"token\"\nadmin_token = \"{ADMIN}\"\nsystems = []"),
    );
    let plain = register(&node, json!({"systemId": "plain"}));
    let special = register(
        &node,
        json!({"systemId": "special", "webhookUrl": own.url("/own")}),
    );
    let a = node.ws("plain");
    let b = node.ws("special");
    global.events_of(&a.client_id, 1);
    own.events_of(&b.client_id, 1);
    for (receiver, secret, path) in [(&global, &plain, "/hook"), (&own, &special, "/own")] {
        let hooks = receiver.hooks();
        assert_eq!(
            hooks.len(),
            1,
            "each system's events go to its own URL only"
        );
        let h = &hooks[0];
        assert_eq!(h.path, path);
        let expected = format!("sha256={}", sign(secret, &h.body));
        assert_eq!(h.header("x-shardcast-signature"), Some(expected.as_str()));
    }
}

#[test]
fn a_failed_delivery_is_retried() {
    let receiver = Receiver::start(|n| Some(if n == 0 { 500 } else { 200 }));
    let node = webhook_node(&receiver, "");
    let c = node.ws(SYS_A);
    let events = receiver.events_of(&c.client_id, 2);
    assert_eq!(
        events[0], events[1],
        "the same event, sent again after the 500"
    );
    assert_eq!(events[0]["event"], "connect");
    assert!(is_event_id(&events[0]["eventId"]), "{}", events[0]);
    // The receiver has the second request before the node has its answer and counts
    // the delivery: wait for that count, then check both.
    node.wait_metric(
        "shardcast_webhook_delivered_total",
        WAIT,
        "one delivery",
        |n| n >= 1.0,
    );
    let metrics = node.metrics();
    let delivered = metrics.sum("shardcast_webhook_delivered_total");
    let retried = metrics.sum("shardcast_webhook_retries_total");
    assert_eq!((delivered, retried), (1.0, 1.0), "{metrics}");
}

/// An `eventId`: 32 lowercase hex digits.
fn is_event_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Delivery is at-least-once (docs/api.md §2.2): a receiver that answers after
/// `webhook.timeout` has handled the event all the same, and gets it again; both
/// carry the same `eventId`, by which it tells the repeat. Each event has an id of its
/// own.
#[test]
fn a_late_answer_brings_the_event_again_with_the_same_event_id() {
    let receiver = Receiver::start(|n| {
        if n == 0 {
            // Past the node's timeout (500 ms): the node gives up and retries.
            std::thread::sleep(Duration::from_millis(1200));
        }
        Some(204)
    });
    let node = Node::start(&format!(
        "[webhook]\nurl = \"{}\"\nretries = 3\ntimeout = \"500ms\"\n",
        receiver.url("/hook")
    ));
    let mut c = node.ws(SYS_A);
    let events = receiver.events_of(&c.client_id, 2);
    let first = &events[0];
    assert_eq!(first["event"], "connect", "{events:#?}");
    assert!(is_event_id(&first["eventId"]), "{first}");
    c.close_cleanly();
    let events = receiver.wait_for_each("disconnect", &[c.client_id.clone()]);
    // The connect, then the same connect again (more than once, should a retry wait
    // for the receiver long enough to time out as well), then the disconnect.
    let (connects, rest) = events.split_at(events.len() - 1);
    assert!(connects.len() >= 2, "{events:#?}");
    for again in connects {
        assert_eq!(
            again, first,
            "the same event, sent again after a late answer"
        );
    }
    let disconnect = &rest[0];
    assert_eq!(disconnect["event"], "disconnect", "{events:#?}");
    assert!(is_event_id(&disconnect["eventId"]), "{disconnect}");
    assert_ne!(
        disconnect["eventId"], first["eventId"],
        "each event has an id of its own"
    );
}

#[test]
fn a_hung_receiver_delays_no_push_and_overflow_is_counted() {
    // A push or a connect waiting for the hung receiver would take `webhook.timeout`
    // (5 s); anything under half of it was not held up by the webhook.
    const HELD_UP: Duration = Duration::from_millis(2500);
    let receiver = Receiver::start(|_| None);
    let node = webhook_node(&receiver, "[webhook]\nqueue = 50\ntimeout = \"5s\"");
    let started = Instant::now();
    let mut slowest_connect = Duration::ZERO;
    let mut clients: Vec<Client> = (0..100)
        .map(|_| {
            let t = Instant::now();
            let c = node.ws(SYS_A);
            slowest_connect = slowest_connect.max(t.elapsed());
            c
        })
        .collect();
    let connecting = started.elapsed();
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        for c in clients.iter_mut() {
            let sent = Instant::now();
            node.send_to_client(SYS_A, &c.client_id, "push", json!(round));
            let got = c.expect_json_where(WAIT, |v| v["msg"] == "push");
            assert_eq!(got["data"], round);
            slowest = slowest.max(sent.elapsed());
        }
    }
    eprintln!(
        "100 connects in {connecting:?} (slowest {slowest_connect:?}); slowest push round \
         trip {slowest:?}"
    );
    assert!(
        slowest_connect < HELD_UP,
        "a connect took {slowest_connect:?}"
    );
    assert!(slowest < HELD_UP, "slowest push {slowest:?}");
    // 100 connect events for a queue of 50 behind a receiver that never answers: the
    // one system holds at most half of it.
    node.wait_metric(
        "shardcast_webhook_dropped_total",
        WAIT,
        "at least 75 (100 connects, a system's share of a queue of 50 is 25)",
        |n| n >= 75.0,
    );
}
