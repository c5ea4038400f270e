//! The send routes of the push API (docs/api.md §2, §4): send_to_client, send_to_clients,
//! send_to_group, send_to_user and send_to_system — success shapes, the push frame
//! (field order, `data` passed through unchanged), defaults of the message fields,
//! who receives what, and sends to connections that have gone (`online:false`).

use crate::support::{api::assert_message_id, node::Node, QUIET, SYS_A, SYS_B, WAIT};
use serde_json::{json, Value};

/// Positions of the five keys in a raw push frame; asserts they appear in contract order.
fn assert_field_order(raw: &str) {
    let keys = ["messageId", "sendUserId", "code", "msg", "data"];
    let pos: Vec<usize> = keys
        .iter()
        .map(|k| {
            raw.find(&format!("\"{k}\""))
                .unwrap_or_else(|| panic!("frame without {k}: {raw}"))
        })
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "push frame fields not in order messageId, sendUserId, code, msg, data: {raw}"
    );
}

fn parse(raw: &str) -> Value {
    serde_json::from_str(raw.trim_end_matches('\n')).unwrap()
}

#[test]
fn send_to_client_delivers_the_push_frame_in_contract_order() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);

    let data = node.call(
        SYS_A,
        "/api/send_to_client",
        json!({"clientId": c.client_id, "sendUserId": "boss", "code": 7, "msg": "hello", "data": "plain text"}),
    );
    assert_eq!(data["online"], json!(true), "{data}");
    let mid = assert_message_id(&data["messageId"]);
    assert_eq!(
        data.as_object().unwrap().len(),
        2,
        "send_to_client data has exactly messageId and online: {data}"
    );

    let raw = c.recv_text(WAIT).expect("push frame");
    assert_field_order(&raw);
    assert_eq!(
        parse(&raw),
        json!({"messageId": mid, "sendUserId": "boss", "code": 7, "msg": "hello", "data": "plain text"})
    );
    c.expect_silence(QUIET);
}

#[test]
fn push_data_is_passed_through_as_sent() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let cases = [
        json!("a string"),
        json!("{\"looks\":\"like json\"}"),
        json!({"k": "v", "n": [1, 2, 3], "o": {"deep": true}}),
        json!([1, "two", null]),
        json!(42),
        json!(-1.5),
        json!(true),
        json!(null),
        json!(""),
        json!("中文 ünïcödé \"quoted\" \\ back"),
    ];
    for d in cases {
        let r = node.send_to_client(SYS_A, &c.client_id, "m", d.clone());
        let raw = c.recv_text(WAIT).expect("push frame");
        assert_field_order(&raw);
        let f = parse(&raw);
        assert_eq!(f["messageId"], r["messageId"]);
        assert_eq!(
            f["data"], d,
            "data must arrive exactly as sent (a string stays a string): {raw}"
        );
    }
}

#[test]
fn message_fields_default_to_empty_and_zero() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let r = node.call(
        SYS_A,
        "/api/send_to_client",
        json!({"clientId": c.client_id}),
    );
    let f = c.expect_json(WAIT);
    assert_eq!(
        f,
        json!({"messageId": r["messageId"], "sendUserId": "", "code": 0, "msg": "", "data": ""})
    );
}

#[test]
fn message_ids_are_distinct_per_send() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let r = node.send_to_client(SYS_A, &c.client_id, "m", json!(i));
        let mid = assert_message_id(&r["messageId"]);
        assert!(seen.insert(mid.clone()), "messageId {mid} reused");
        let f = c.expect_json(WAIT);
        assert_eq!(f["messageId"], json!(mid));
        assert_eq!(f["data"], json!(i), "pushes arrive in order");
    }
}

#[test]
fn api_answers_are_json_utf8() {
    let node = Node::start("");
    let mut http = node.http();
    let resp = http.request("POST", "/api/get_group_list", &[("SystemId", SYS_A)], b"{}");
    assert_eq!(resp.status, 200);
    let ct = resp
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert_eq!(
        ct.replace(' ', ""),
        "application/json;charset=utf-8",
        "Content-Type of an API answer"
    );
    // An error answer too.
    let resp = http.request("POST", "/api/is_online", &[], b"{}");
    let ct = resp
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        ct.starts_with("application/json"),
        "error Content-Type {ct:?}"
    );
}

#[test]
fn send_to_clients_counts_online_and_delivers_duplicates_once() {
    let node = Node::start("");
    let mut c1 = node.ws(SYS_A);
    let mut c2 = node.ws(SYS_A);
    let mut c3 = node.ws(SYS_A);
    let gone = node.gone_client_id(SYS_A);

    let ids = json!([c1.client_id, c2.client_id, c2.client_id, c3.client_id, gone]);
    let data = node.call(
        SYS_A,
        "/api/send_to_clients",
        json!({"clientIds": ids, "sendUserId": "s", "code": 3, "msg": "batch", "data": {"x": 1}}),
    );
    assert_eq!(
        data["online"],
        json!(3),
        "three distinct live recipients: {data}"
    );
    let mid = assert_message_id(&data["messageId"]);
    for c in [&mut c1, &mut c2, &mut c3] {
        let f = c.expect_json(WAIT);
        assert_eq!(
            f,
            json!({"messageId": mid, "sendUserId": "s", "code": 3, "msg": "batch", "data": {"x": 1}})
        );
    }
    for c in [&mut c1, &mut c2, &mut c3] {
        c.expect_silence(QUIET);
    }
}

#[test]
fn send_to_clients_with_one_invalid_id_sends_nothing() {
    let node = Node::start("");
    let mut c1 = node.ws(SYS_A);
    let other = node.ws(SYS_B);
    node.call_err(
        SYS_A,
        "/api/send_to_clients",
        json!({"clientIds": [c1.client_id, "garbage"], "msg": "x"}),
        200,
        "无效的clientId",
    );
    node.call_err(
        SYS_A,
        "/api/send_to_clients",
        json!({"clientIds": [c1.client_id, other.client_id], "msg": "x"}),
        200,
        "无效的clientId",
    );
    c1.expect_silence(QUIET);
}

#[test]
fn send_to_group_reaches_its_members_only() {
    let node = Node::start("");
    let mut m1 = node.ws(SYS_A);
    let mut m2 = node.ws(SYS_A);
    let mut outsider = node.ws(SYS_A);
    node.bind(SYS_A, &m1.client_id, "room", "", "");
    node.bind(SYS_A, &m2.client_id, "room", "", "");
    m1.drain(WAIT);
    m2.drain(WAIT);

    let data = node.call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "room", "sendUserId": "u", "code": 5, "msg": "to room", "data": "hi"}),
    );
    let mid = assert_message_id(&data["messageId"]);
    for m in [&mut m1, &mut m2] {
        let raw = m.recv_text(WAIT).expect("group push");
        assert_field_order(&raw);
        assert_eq!(
            parse(&raw),
            json!({"messageId": mid, "sendUserId": "u", "code": 5, "msg": "to room", "data": "hi"})
        );
        m.expect_silence(QUIET);
    }
    outsider.expect_silence(QUIET);

    // A group nobody is in: success, nothing delivered.
    let data = node.call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "empty-room", "msg": "nobody"}),
    );
    assert_message_id(&data["messageId"]);
    m1.expect_silence(QUIET);
}

#[test]
fn send_to_user_reaches_every_connection_of_that_user() {
    let node = Node::start("");
    let mut a1 = node.ws(SYS_A);
    let mut a2 = node.ws(SYS_A);
    let mut b = node.ws(SYS_A);
    node.bind(SYS_A, &a1.client_id, "g1", "alice", "");
    node.bind(SYS_A, &a2.client_id, "g2", "alice", "");
    node.bind(SYS_A, &b.client_id, "g3", "bob", "");
    for c in [&mut a1, &mut a2, &mut b] {
        c.drain(WAIT);
    }

    let data = node.call(
        SYS_A,
        "/api/send_to_user",
        json!({"userId": "alice", "msg": "for alice", "data": [1]}),
    );
    assert_eq!(data["online"], json!(2), "connections reached: {data}");
    let mid = assert_message_id(&data["messageId"]);
    for c in [&mut a1, &mut a2] {
        let f = c.expect_json(WAIT);
        assert_eq!(f["messageId"], json!(mid));
        assert_eq!(f["msg"], json!("for alice"));
        assert_eq!(f["data"], json!([1]));
        c.expect_silence(QUIET);
    }
    b.expect_silence(QUIET);

    let data = node.call(SYS_A, "/api/send_to_user", json!({"userId": "nobody"}));
    assert_eq!(data["online"], json!(0), "{data}");
    assert_message_id(&data["messageId"]);
}

#[test]
fn send_to_system_reaches_all_of_that_system_and_no_other() {
    let node = Node::start("");
    let mut a1 = node.ws(SYS_A);
    let mut a2 = node.ws(SYS_A);
    let mut b1 = node.ws(SYS_B);
    node.bind(SYS_A, &a2.client_id, "some-group", "u2", "");
    a2.drain(WAIT);

    let data = node.call(
        SYS_A,
        "/api/send_to_system",
        json!({"msg": "everyone", "data": {"all": true}}),
    );
    let mid = assert_message_id(&data["messageId"]);
    for c in [&mut a1, &mut a2] {
        let f = c.expect_json(WAIT);
        assert_eq!(
            f,
            json!({"messageId": mid, "sendUserId": "", "code": 0, "msg": "everyone", "data": {"all": true}})
        );
        c.expect_silence(QUIET);
    }
    b1.expect_silence(QUIET);
}

#[test]
fn send_to_a_gone_connection_is_success_with_online_false() {
    let node = Node::start("");
    let gone = node.gone_client_id(SYS_A);
    let data = node.call(
        SYS_A,
        "/api/send_to_client",
        json!({"clientId": gone, "msg": "late"}),
    );
    assert_eq!(data["online"], json!(false), "{data}");
    assert_message_id(&data["messageId"]);

    let data = node.call(SYS_A, "/api/send_to_clients", json!({"clientIds": [gone]}));
    assert_eq!(data["online"], json!(0), "{data}");

    // A connection dropped without a close frame is gone too.
    let c = node.ws(SYS_A);
    let id = c.client_id.clone();
    c.drop_abruptly();
    node.wait_offline(SYS_A, &id, WAIT);
    let data = node.call(SYS_A, "/api/send_to_client", json!({"clientId": id}));
    assert_eq!(data["online"], json!(false), "{data}");
}

/// Pushes of requests made one after another — each sent once the previous one was
/// answered, on connections the kernel spreads over the cores — reach a connection in
/// that order, whether a request's core holds the connection or hands the push to the
/// core that does.
#[test]
fn pushes_of_requests_made_one_after_another_arrive_in_that_order() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    node.bind(SYS_A, &c.client_id, "room", "ann", "");
    c.drain(QUIET);
    let mut sent = Vec::new();
    for i in 0..60 {
        let (route, body) = match i % 3 {
            0 => (
                "send_to_group",
                json!({"groupName": "room", "msg": format!("{i}")}),
            ),
            1 => (
                "send_to_user",
                json!({"userId": "ann", "msg": format!("{i}")}),
            ),
            _ => ("send_to_system", json!({"msg": format!("{i}")})),
        };
        // A new HTTP connection per request: it may land on either core.
        let data = node.call(SYS_A, &format!("/api/{route}"), body);
        sent.push(assert_message_id(&data["messageId"]));
    }
    let got: Vec<String> = (0..sent.len())
        .map(|_| assert_message_id(&c.expect_json(WAIT)["messageId"]))
        .collect();
    assert_eq!(got, sent);
}
