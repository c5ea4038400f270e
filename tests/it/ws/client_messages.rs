//! Client messages (docs/api.md §2.1) on a standalone node: each `ws.client_send` policy,
//! each message type, acks and refusals, the server-set `sendUserId`, and the rate
//! limit. (Across nodes: `cluster_chat.rs`; the `webhook` policy: `webhooks.rs`.)
//!
//! Assumptions where the contract is silent:
//! - A `send_to_client` to a well-formed id of the sender's system that is offline is
//!   acked with code 0, as `/api/send_to_client` answers success with `online:false`.
//! - Under `"group"` a refused type is refused before its fields are looked at; a group
//!   the sender has not joined is refused after them.

use crate::support::{
    api::{assert_message_id, is_message_id},
    node::Node,
    ws::Client,
    QUIET, SYS_A, SYS_B, WAIT,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tungstenite::Message;

fn node(policy: &str, rate: u32) -> Node {
    Node::start(&format!(
        "[ws]\nclient_send = \"{policy}\"\nclient_send_rate = {rate}"
    ))
}

fn send(c: &mut Client, msg: Value) {
    c.socket
        .send(Message::text(msg.to_string()))
        .expect("send a client message");
}

/// The next ack frame (other frames skipped).
fn ack(c: &mut Client) -> Value {
    c.expect_json_where(WAIT, |v| v["type"] == "ack")
}

fn assert_refused(a: &Value, req_id: &str, msg: &str) {
    assert_eq!(
        a,
        &json!({"type":"ack","reqId":req_id,"code":-1,"msg":msg,"messageId":""})
    );
}

/// The next push carrying `msg` (notices skipped).
fn push_with(c: &mut Client, msg: &str) -> Value {
    c.expect_json_where(WAIT, |v| v["msg"] == msg)
}

/// Two clients of SYS_A bound to `room` as alice and bob, notices drained.
fn pair(node: &Node) -> (Client, Client) {
    let mut a = node.ws(SYS_A);
    let mut b = node.ws(SYS_A);
    node.bind(SYS_A, &a.client_id, "room", "alice", "");
    node.bind(SYS_A, &b.client_id, "room", "bob", "");
    a.drain(QUIET);
    b.drain(QUIET);
    (a, b)
}

#[test]
fn off_discards_client_messages_without_an_ack_and_still_answers_ping() {
    let node = node("off", 20);
    let (mut a, mut b) = pair(&node);
    send(
        &mut a,
        json!({"type":"send_to_group","groupName":"room","msg":"m","reqId":"1"}),
    );
    a.socket.send(Message::text("ping")).unwrap();
    assert_eq!(a.recv_text(WAIT).as_deref(), Some("pong"));
    a.expect_silence(QUIET);
    b.expect_silence(Duration::from_millis(100));
}

/// The welcome tells the client the policy (`data.clientSend`, docs/api.md §2), with
/// resume off and on, so that a client refuses to send at once where nothing would be
/// routed (the JavaScript client does: docs/js-client.md).
#[test]
fn the_welcome_tells_the_client_send_policy() {
    for policy in ["off", "group", "all", "webhook"] {
        for resume in ["0s", "30s"] {
            let node = Node::start(&format!(
                "[ws]\nclient_send = \"{policy}\"\nresume_window = \"{resume}\"\n\
                 [webhook]\nurl = \"http://127.0.0.1:9/\"\n"
            ));
            let mut c = Client {
                client_id: String::new(),
                socket: node.ws_connect(&format!("/ws?systemId={SYS_A}")),
            };
            let w = c.expect_json(WAIT);
            assert_eq!(w["data"]["clientSend"], json!(policy), "{w}");
            let keys: Vec<&str> = w["data"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            let expected: &[&str] = match resume {
                "0s" => &["clientId", "clientSend"],
                _ => &["clientId", "resumeToken", "clientSend"],
            };
            assert_eq!(keys, expected, "{w}");
        }
    }
}

#[test]
fn group_message_reaches_every_member_once_with_the_senders_identity() {
    let node = node("group", 20);
    let (mut a, mut b) = pair(&node);
    let mut outsider = node.ws(SYS_A);
    send(
        &mut a,
        json!({"type":"send_to_group","groupName":"room","code":7,"msg":"hello",
               "data":{"text":"hi"},"sendUserId":"admin","reqId":"r1"}),
    );
    // The sender's own copy and its ack may come in either order.
    let at_sender = a.drain(WAIT);
    let acks: Vec<&Value> = at_sender.iter().filter(|v| v["type"] == "ack").collect();
    assert_eq!(acks.len(), 1, "{at_sender:?}");
    let acked = acks[0];
    assert_eq!(acked["reqId"], "r1");
    assert_eq!(
        (acked["code"].clone(), acked["msg"].clone()),
        (json!(0), json!("success"))
    );
    let id = assert_message_id(&acked["messageId"]);
    let expected =
        json!({"messageId":id,"sendUserId":"alice","code":7,"msg":"hello","data":{"text":"hi"}});
    let own: Vec<&Value> = at_sender.iter().filter(|v| v["msg"] == "hello").collect();
    assert_eq!(own, [&expected], "the sender gets its group message once");
    assert_eq!(push_with(&mut b, "hello"), expected);
    b.expect_silence(QUIET);
    outsider.expect_silence(Duration::from_millis(100));
}

#[test]
fn group_policy_refuses_other_types_and_groups_not_joined() {
    let node = node("group", 20);
    let (mut a, b) = pair(&node);
    let forbidden = "客户端无权发送";
    send(
        &mut a,
        json!({"type":"send_to_user","userId":"bob","reqId":"u"}),
    );
    assert_refused(&ack(&mut a), "u", forbidden);
    send(
        &mut a,
        json!({"type":"send_to_client","clientId":b.client_id,"reqId":"c"}),
    );
    assert_refused(&ack(&mut a), "c", forbidden);
    send(
        &mut a,
        json!({"type":"send_to_group","groupName":"elsewhere","reqId":"g"}),
    );
    assert_refused(&ack(&mut a), "g", forbidden);
    send(&mut a, json!({"type":"send_to_group","reqId":"missing"}));
    assert_refused(&ack(&mut a), "missing", "GroupName为必填字段");
}

#[test]
fn all_policy_sends_to_users_and_clients_of_the_own_system() {
    let node = node("all", 20);
    let (mut a, mut b) = pair(&node);
    let mut b2 = node.ws(SYS_A);
    node.bind(SYS_A, &b2.client_id, "other", "bob", "");
    b2.drain(QUIET);

    send(
        &mut a,
        json!({"type":"send_to_user","userId":"bob","msg":"to-bob","data":"x","reqId":1}),
    );
    let acked = ack(&mut a);
    assert_eq!(
        (acked["reqId"].clone(), acked["code"].clone()),
        (json!(1), json!(0))
    );
    let id = assert_message_id(&acked["messageId"]);
    for c in [&mut b, &mut b2] {
        let got = push_with(c, "to-bob");
        assert_eq!(
            (got["messageId"].as_str(), got["sendUserId"].as_str()),
            (Some(id.as_str()), Some("alice"))
        );
        assert_eq!(got["data"], "x");
    }

    send(
        &mut b,
        json!({"type":"send_to_client","clientId":a.client_id,"msg":"direct","reqId":"d"}),
    );
    let acked = ack(&mut b);
    assert_eq!(acked["code"], 0);
    let got = push_with(&mut a, "direct");
    assert_eq!(got["sendUserId"], "bob");
    assert_eq!(got["messageId"], acked["messageId"]);
    a.expect_silence(QUIET);
}

#[test]
fn a_client_without_a_user_id_sends_as_its_client_id() {
    let node = node("all", 20);
    let mut anon = node.ws(SYS_A);
    let mut peer = node.ws(SYS_A);
    send(
        &mut anon,
        json!({"type":"send_to_client","clientId":peer.client_id,"msg":"anon","sendUserId":"boss"}),
    );
    assert_eq!(
        ack(&mut anon)["reqId"],
        "",
        "absent reqId is echoed as \"\""
    );
    let got = push_with(&mut peer, "anon");
    assert_eq!(got["sendUserId"], json!(anon.client_id));
}

#[test]
fn bad_targets_get_the_api_refusals() {
    let node = node("all", 20);
    let mut a = node.ws(SYS_A);
    let foreign = node.ws(SYS_B);
    send(
        &mut a,
        json!({"type":"send_to_client","clientId":foreign.client_id,"reqId":"x"}),
    );
    assert_refused(&ack(&mut a), "x", "无效的clientId");
    send(
        &mut a,
        json!({"type":"send_to_client","clientId":"garbage","reqId":"y"}),
    );
    assert_refused(&ack(&mut a), "y", "无效的clientId");
    send(
        &mut a,
        json!({"type":"send_to_user","userId":"","reqId":"z"}),
    );
    assert_refused(&ack(&mut a), "z", "UserId为必填字段");
    send(
        &mut a,
        json!({"type":"send_to_user","userId":["not","a","string"],"reqId":"t"}),
    );
    assert_refused(&ack(&mut a), "t", "请求参数格式错误");
    // An offline but well-formed client of the own system: delivered to nobody.
    let gone = node.gone_client_id(SYS_A);
    send(
        &mut a,
        json!({"type":"send_to_client","clientId":gone,"reqId":"g"}),
    );
    let acked = ack(&mut a);
    assert_eq!(acked["code"], 0);
    assert!(is_message_id(acked["messageId"].as_str().unwrap_or("")));
}

#[test]
fn frames_that_are_not_client_messages_are_discarded_silently() {
    let node = node("all", 20);
    let (mut a, mut b) = pair(&node);
    for text in [
        "hello",
        "[1,2]",
        "{\"type\":\"send_to_everyone\",\"reqId\":\"u\"}",
        "{\"groupName\":\"room\"}",
        "{\"type\":\"send_to_group\"",
    ] {
        a.socket.send(Message::text(text)).unwrap();
    }
    a.socket.send(Message::binary(&b"{}"[..])).unwrap();
    a.expect_silence(QUIET);
    b.expect_silence(Duration::from_millis(100));
    assert!(node.is_online(SYS_A, &a.client_id));
}

#[test]
fn rate_limit_refuses_messages_over_the_bucket_and_refills() {
    const RATE: u32 = 3;
    let node = node("group", RATE);
    let (mut a, mut b) = pair(&node);
    let burst_start = Instant::now();
    for i in 0..8 {
        send(
            &mut a,
            json!({"type":"send_to_group","groupName":"room","msg":"burst","reqId":i}),
        );
    }
    let acks: Vec<Value> = (0..8).map(|_| ack(&mut a)).collect();
    let burst_took = burst_start.elapsed();
    let ok = acks.iter().filter(|v| v["code"] == 0).count();
    let slow = acks.iter().filter(|v| v["msg"] == "发送过于频繁").count();
    // A full bucket of RATE tokens, plus what refilled (RATE per second) while the burst
    // was being handled (on a busy machine that may be more than a moment).
    let refilled = (burst_took.as_secs_f64() * f64::from(RATE)).ceil() as usize;
    assert!(
        (RATE as usize..=RATE as usize + refilled.max(1)).contains(&ok),
        "{RATE} tokens (+{} refilled in {burst_took:?}): {acks:?}",
        refilled.max(1)
    );
    assert_eq!(ok + slow, 8, "{acks:?}");
    let delivered = b
        .drain(QUIET)
        .iter()
        .filter(|v| v["msg"] == "burst")
        .count();
    assert_eq!(delivered, ok, "only accepted messages are delivered");
    // The bucket refills: a message is accepted again within a second or so (polled,
    // every refusal being the rate refusal).
    let deadline = Instant::now() + Duration::from_secs(1) + WAIT;
    let mut refused = 0;
    loop {
        send(
            &mut a,
            json!({"type":"send_to_group","groupName":"room","msg":"later","reqId":"l"}),
        );
        let acked = ack(&mut a);
        if acked["code"] == 0 {
            break;
        }
        assert_refused(&acked, "l", "发送过于频繁");
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "the bucket did not refill: {refused} refusals since the burst"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(push_with(&mut b, "later")["sendUserId"], "alice");
}

#[test]
fn refusals_follow_api_lang() {
    let node = Node::start("[ws]\nclient_send = \"group\"\n[api]\nlang = \"en\"");
    let mut a = node.ws(SYS_A);
    send(
        &mut a,
        json!({"type":"send_to_user","userId":"x","reqId":"e"}),
    );
    assert_refused(&ack(&mut a), "e", "client may not send");
}
