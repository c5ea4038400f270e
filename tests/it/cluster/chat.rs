//! Client messages across a cluster (docs/api.md §2.1): a group chat whose members sit on
//! two nodes, and 1:1 messages to a userId and a clientId held by the other node, each
//! routed like the HTTP route of the same name and acked to the sender once.

use crate::support::{cluster::Cluster, ws::Client, QUIET, SYS_A, WAIT};
use serde_json::{json, Value};
use tungstenite::Message;

fn send(c: &mut Client, msg: Value) {
    c.socket
        .send(Message::text(msg.to_string()))
        .expect("send a client message");
}

/// The frames `c` gets within `WAIT` (until a quiet spell): (acks, pushes with `msg`).
fn frames(c: &mut Client, msg: &str) -> (Vec<Value>, Vec<Value>) {
    let all = c.drain(WAIT);
    let acks = all.iter().filter(|v| v["type"] == "ack").cloned().collect();
    let pushes = all.iter().filter(|v| v["msg"] == msg).cloned().collect();
    (acks, pushes)
}

#[test]
fn group_chat_spans_two_nodes() {
    let cluster = Cluster::start_with(2, "[ws]\nclient_send = \"all\"");
    let mut alice = cluster[0].ws(SYS_A);
    let mut bob = cluster[1].ws(SYS_A);
    // Bind each through the node that does not hold it.
    cluster[1].bind(SYS_A, &alice.client_id, "room", "alice", "");
    cluster[0].bind(SYS_A, &bob.client_id, "room", "bob", "");
    alice.drain(QUIET);
    bob.drain(QUIET);

    send(
        &mut alice,
        json!({"type":"send_to_group","groupName":"room","msg":"hi all","data":"1","reqId":"g"}),
    );
    let (acks, own) = frames(&mut alice, "hi all");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (acks[0]["reqId"].clone(), acks[0]["code"].clone()),
        (json!("g"), json!(0))
    );
    let id = acks[0]["messageId"].clone();
    let expected = json!({"messageId":id,"sendUserId":"alice","code":0,"msg":"hi all","data":"1"});
    assert_eq!(own.len(), 1, "the sender's own copy, once: {own:?}");
    assert_eq!(own[0], expected);
    let (_, at_bob) = frames(&mut bob, "hi all");
    assert_eq!(at_bob, [expected], "the member on the other node, once");

    send(
        &mut bob,
        json!({"type":"send_to_user","userId":"alice","msg":"dm","reqId":"u"}),
    );
    let (acks, _) = frames(&mut bob, "dm");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["code"], 0, "{acks:?}");
    let (_, at_alice) = frames(&mut alice, "dm");
    assert_eq!(at_alice.len(), 1, "{at_alice:?}");
    assert_eq!(at_alice[0]["sendUserId"], "bob");
    assert_eq!(at_alice[0]["messageId"], acks[0]["messageId"]);

    send(
        &mut alice,
        json!({"type":"send_to_client","clientId":bob.client_id,"msg":"direct","reqId":"c"}),
    );
    let (acks, _) = frames(&mut alice, "direct");
    assert_eq!(acks[0]["code"], 0, "{acks:?}");
    let (_, at_bob) = frames(&mut bob, "direct");
    assert_eq!(at_bob.len(), 1, "{at_bob:?}");
    assert_eq!(at_bob[0]["sendUserId"], "alice");
}
