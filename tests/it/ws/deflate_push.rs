//! Pushes compressed once (docs/api.md §10): a push or notice is deflated where it is
//! encoded, and every recipient gets the form its socket agreed to — compressed for a
//! connection with permessage-deflate (full window), plain for one without it or with a
//! smaller window, plain for everyone under `ws.compression_min_size` — with one
//! compression per push whatever the number of recipients. Over a link the same
//! compressed bytes travel: a push that entered another node arrives compressed.

use serde_json::{json, Value};
use shardcast::ws::frame::OP_TEXT;

use crate::support::cluster::Cluster;
use crate::support::deflate::DeflateClient;
use crate::support::node::Node;
use crate::support::{SYS_A, WAIT};

const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A `data` value of about `n` bytes that deflates well.
fn order(n: usize) -> Value {
    let item = json!({"sku":"SKU-00042","name":"Widget","qty":3,"price":19.99});
    json!({"type": "order.updated", "items": vec![item; n / 60 + 1]})
}

/// The next push on `c` (the welcome skipped): whether it came compressed, and its JSON.
fn next_push(c: &mut DeflateClient) -> (bool, Value) {
    loop {
        let (op, compressed, payload) = c.next_message(WAIT).expect("a message");
        assert_eq!(op, OP_TEXT);
        let v: Value = serde_json::from_slice(&payload).expect("JSON");
        if v.get("messageId").is_some() && v["code"] == json!(0) && v["data"].is_object() {
            return (compressed, v);
        }
    }
}

fn deflate_counters(node: &Node) -> (f64, f64) {
    let m = node.metrics();
    (
        m.sum("shardcast_deflate_outbound_messages_total"),
        m.sum_where(
            "shardcast_deflate_pushes_plain_total",
            &[("reason", "small")],
        ),
    )
}

#[test]
fn a_push_is_compressed_once_and_each_socket_gets_the_form_it_agreed_to() {
    let node = Node::start("");
    let mut full = DeflateClient::offering(&node, SYS_A, OFFER);
    let mut narrow =
        DeflateClient::offering(&node, SYS_A, "permessage-deflate; server_max_window_bits=9");
    let mut plain = node.ws(SYS_A);
    let (compressed0, small0) = deflate_counters(&node);

    let data = order(2000);
    let id = node.call(SYS_A, "/api/send_to_system", json!({ "data": data }))["messageId"].clone();
    let (c, v) = next_push(&mut full);
    assert!(c, "the full-window deflate client got it plain");
    assert_eq!((&v["messageId"], &v["data"]), (&id, &data));
    let (c, v) = next_push(&mut narrow);
    assert!(!c, "a 9-bit window client got the 15-bit form");
    assert_eq!(v["data"], data);
    let v = plain.expect_json(WAIT);
    assert_eq!(v["data"], data);

    // Small: plain for everyone.
    node.call(SYS_A, "/api/send_to_system", json!({ "data": {"n": 1} }));
    let (c, v) = next_push(&mut full);
    assert!(!c, "a push under compression_min_size came compressed");
    assert_eq!(v["data"], json!({"n": 1}));

    // One compression for three recipients; one push left plain for being small.
    let (compressed, small) = deflate_counters(&node);
    assert_eq!(compressed - compressed0, 1.0, "compressions");
    assert_eq!(small - small0, 1.0, "pushes left plain as small");
}

#[test]
fn with_compression_off_nothing_is_compressed() {
    let node = Node::start("[ws]\ncompression = false\n");
    let mut c = DeflateClient::offering(&node, SYS_A, OFFER);
    assert_eq!(c.agreed, None, "deflate agreed with ws.compression off");
    node.call(SYS_A, "/api/send_to_system", json!({ "data": order(2000) }));
    let (compressed, _) = next_push(&mut c);
    assert!(!compressed);
}

#[test]
fn a_push_from_another_node_arrives_compressed_and_notices_too() {
    let c = Cluster::start(2);
    let mut far = DeflateClient::offering(&c[1], SYS_A, OFFER);
    let far_id = welcome_client_id(&mut far);
    let data = order(3000);
    c[0].call(SYS_A, "/api/send_to_system", json!({ "data": data }));
    let (compressed, v) = next_push(&mut far);
    assert!(
        compressed,
        "the push crossed the link and lost its compressed form"
    );
    assert_eq!(v["data"], data);
    // Only node 1 compressed it: node 2 sent the bytes it was given.
    let (on_near, _) = deflate_counters(&c[0]);
    let (on_far, _) = deflate_counters(&c[1]);
    assert!(
        on_near >= 1.0 && on_far == 0.0,
        "compressed on node 1: {on_near}, on node 2: {on_far}"
    );

    // A member's offline notice with a 1 KB extend, sent by node 1, arrives compressed.
    let member = c[0].ws(SYS_A);
    let extend = "x".repeat(1024);
    c[0].bind(SYS_A, &member.client_id, "room", "", &extend);
    c[1].bind(SYS_A, &far_id, "room", "", "");
    drop(member);
    let (compressed, notice) = loop {
        let (op, compressed, payload) = far.next_message(WAIT).expect("the offline notice");
        assert_eq!(op, OP_TEXT);
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if v["code"] == json!(1002) {
            break (compressed, v);
        }
    };
    assert!(compressed, "{notice}");
}

/// The clientId the welcome (the first message on `c`) gives.
fn welcome_client_id(c: &mut DeflateClient) -> String {
    let (_, _, payload) = c.next_message(WAIT).expect("the welcome");
    let v: Value = serde_json::from_slice(&payload).expect("JSON");
    v["data"]["clientId"]
        .as_str()
        .unwrap_or_else(|| panic!("not a welcome: {v}"))
        .to_string()
}
