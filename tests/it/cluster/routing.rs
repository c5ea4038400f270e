//! Cluster routing (docs/api.md §3, §4): any node routes any clientId — sends to a
//! client, a list, a group, a user and a whole system reach the connections on every node
//! exactly once; group queries are cluster-wide; bind / unbind / close / info / is_online
//! work on a connection held by another node, with their notices delivered across nodes
//! once.
//!
//! Assumptions where the contract is silent:
//! - `partial` appears only in an answer that left a node out; with every node up the
//!   answers have exactly the shapes of the docs/api.md §4 table (no `partial` key at all).
//! - `get_group_list`'s `count` is the number of groups listed (as the standalone suite
//!   assumes).
//! - `get_client_info`'s `node` is the same number whichever node answers, and differs
//!   between the nodes of a cluster.
//! - The unbound client itself gets no offline notice ("sends the offline notice to the
//!   remaining members").
//! - A notice goes to the members the group has when it lands on their node: a client
//!   joining within the transit time of an earlier notice may get it as well, so the tests
//!   leave `SETTLE` (100 ms) between a bind and the next change of the same group.

use crate::support::{
    api::{api_timed, assert_not_partial, is_client_id_form, message_id_of},
    change_char,
    cluster::{start_cluster, SETTLE},
    node::Node,
    now_unix, sorted, sorted_strings,
    ws::{assert_notice, expect_message, is_notice, Client},
    QUIET, SYS_A, SYS_B, WAIT,
};
use serde_json::{json, Value};
use std::time::Duration;

/// A short look for frames already on their way (after a longer wait elsewhere).
const BRIEF: Duration = Duration::from_millis(50);

fn ids(clients: &[Client]) -> Vec<String> {
    clients.iter().map(|c| c.client_id.clone()).collect()
}

/// Asserts the raw text of a push frame has the docs/api.md §2 fields in order.
fn assert_push_field_order(text: &str) {
    let keys = [
        "\"messageId\"",
        "\"sendUserId\"",
        "\"code\"",
        "\"msg\"",
        "\"data\"",
    ];
    let pos: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(k)
                .unwrap_or_else(|| panic!("push frame without {k}: {text}"))
        })
        .collect();
    assert!(
        text.starts_with("{\"messageId\"") && pos.windows(2).all(|w| w[0] < w[1]),
        "push frame fields out of order: {text}"
    );
}

#[test]
fn send_to_client_reaches_a_client_on_another_node() {
    let c = start_cluster(3);
    let (n1, n2, n3) = (&c[0], &c[1], &c[2]);
    let mut x = n2.ws(SYS_A);
    assert!(
        is_client_id_form(&x.client_id),
        "clientId is not 22 base64url characters: {:?}",
        x.client_id
    );

    // The API call on node 1, the client on node 2.
    let body = json!({
        "clientId": x.client_id, "sendUserId": "biz", "code": 7, "msg": "hello",
        "data": {"k": [1, 2]}
    });
    let ans = api_timed(n1, "/api/send_to_client", Some(SYS_A), &body);
    eprintln!(
        "[cluster] cross-node send_to_client answered in {:.1} ms",
        ans.took.as_secs_f64() * 1000.0
    );
    let d = ans.ok();
    let mid = message_id_of(&d);
    assert_eq!(d, json!({"messageId": mid, "online": true}), "send answer");
    let text = x
        .recv_text(WAIT)
        .expect("the cross-node push did not arrive");
    assert_push_field_order(&text);
    let frame: Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(
        frame,
        json!({"messageId": mid, "sendUserId": "biz", "code": 7, "msg": "hello",
               "data": {"k": [1, 2]}})
    );

    // From node 3 as well; a JSON string stays a JSON string.
    let d = n3.send_to_client(SYS_A, &x.client_id, "s", json!("plain text"));
    let mid = message_id_of(&d);
    assert_eq!(d, json!({"messageId": mid, "online": true}));
    let f = expect_message(&mut x, &mid, WAIT);
    assert_eq!(f["data"], json!("plain text"), "{f}");
    x.expect_silence(QUIET);

    // send_to_clients with ids of three nodes (one twice), issued on node 2.
    let mut y = n1.ws(SYS_A);
    let mut z = n3.ws(SYS_A);
    let d = n2.call(
        SYS_A,
        "/api/send_to_clients",
        json!({"clientIds": [x.client_id, y.client_id, z.client_id, x.client_id],
               "msg": "batch"}),
    );
    let mid = message_id_of(&d);
    assert_eq!(d, json!({"messageId": mid, "online": 3}), "send_to_clients");
    for cl in [&mut x, &mut y, &mut z] {
        let f = expect_message(cl, &mid, WAIT);
        assert_eq!(f["msg"], json!("batch"));
        cl.expect_silence(QUIET);
    }

    // A gone connection of node 2, asked on node 1: offline, not partial, not invalid.
    let gone = n2.gone_client_id(SYS_A);
    let d = n1.send_to_client(SYS_A, &gone, "late", json!(1));
    assert_eq!(
        d,
        json!({"messageId": message_id_of(&d), "online": false}),
        "send to a gone remote client"
    );
    assert_eq!(
        n3.call(SYS_A, "/api/is_online", json!({ "clientId": gone })),
        json!({"online": false})
    );
}

#[test]
fn a_group_spread_over_three_nodes() {
    let c = start_cluster(3);
    let nodes = [&c[0], &c[1], &c[2]];
    let mut m: Vec<Client> = nodes.iter().map(|n| n.ws(SYS_A)).collect();
    let ids = ids(&m);

    // Member i (on node i+1) is bound through the API of node i+2: never its owner.
    for i in 0..3 {
        let via = nodes[(i + 1) % 3];
        let (user, extend) = (format!("u{i}"), format!("e{i}"));
        via.bind(SYS_A, &ids[i], "g", &user, &extend);
        // Every member so far, the joiner included, gets the online notice once.
        for (j, member) in m.iter_mut().enumerate().take(i + 1) {
            let f = member.expect_json(WAIT);
            assert!(
                is_notice(&f),
                "member {j}: expected the notice of {i}, got {f}"
            );
            assert_notice(&f, 1001, &ids[i], &user, &extend);
        }
        std::thread::sleep(SETTLE);
    }
    for member in m.iter_mut() {
        member.expect_silence(QUIET);
    }

    // A group send issued on node 1 reaches each member once.
    let d = nodes[0].call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "g", "msg": "to-g", "data": {"n": 1}}),
    );
    let mid = message_id_of(&d);
    assert_eq!(d, json!({ "messageId": mid }), "send_to_group answer");
    for member in m.iter_mut() {
        let f = expect_message(member, &mid, WAIT);
        assert_eq!((&f["msg"], &f["data"]), (&json!("to-g"), &json!({"n": 1})));
        member.expect_silence(QUIET);
    }

    // Cluster-wide queries agree on every node.
    for (k, n) in nodes.iter().enumerate() {
        let list = n.call(SYS_A, "/api/get_online_list", json!({"groupName": "g"}));
        assert_eq!(
            list["count"],
            json!(3),
            "online list on node {}: {list}",
            k + 1
        );
        assert_eq!(sorted_strings(&list["list"]), sorted(ids.clone()), "{list}");
        assert_not_partial(&list, "get_online_list");
        assert_eq!(list.as_object().unwrap().len(), 2, "keys: {list}");

        let groups = n.call(SYS_A, "/api/get_group_list", json!({}));
        assert_eq!(
            groups,
            json!({"count": 1, "list": [{"groupName": "g", "count": 3}]}),
            "group list on node {}",
            k + 1
        );
    }
    let t_now = now_unix();
    let list = nodes[2].call(
        SYS_A,
        "/api/get_online_list",
        json!({"groupName": "g", "withInfo": true}),
    );
    let clients = list["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("withInfo without clients: {list}"));
    assert_eq!(clients.len(), 3, "{list}");
    for cl in clients {
        let id = cl["clientId"].as_str().unwrap();
        let i = ids.iter().position(|x| x == id).expect("unknown clientId");
        assert_eq!(cl["userId"], json!(format!("u{i}")), "{cl}");
        assert_eq!(cl["extend"], json!(format!("e{i}")), "{cl}");
        let t = cl["connectTime"].as_u64().expect("connectTime");
        assert!(
            t + 60 >= t_now && t <= t_now + 1,
            "connectTime {t} vs now {t_now}"
        );
    }
    // Another system's view of the same group name is empty.
    let other = nodes[1].call(SYS_B, "/api/get_online_list", json!({"groupName": "g"}));
    assert_eq!(other, json!({"count": 0, "list": []}));
}

#[test]
fn send_to_user_and_send_to_system_reach_every_node_of_the_system_only() {
    let c = start_cluster(3);
    let nodes = [&c[0], &c[1], &c[2]];

    // userId u1 of SYS_A: one connection on nodes 1 and 3, two on node 2. The userId is
    // set by a bind (to a group of its own) issued on another node.
    let mut users: Vec<Client> = Vec::new();
    for (k, owner) in [0usize, 1, 1, 2].into_iter().enumerate() {
        let mut cl = nodes[owner].ws(SYS_A);
        let group = format!("solo{k}");
        nodes[(owner + 1) % 3].bind(SYS_A, &cl.client_id, &group, "u1", "");
        assert_notice(&cl.expect_json(WAIT), 1001, &cl.client_id.clone(), "u1", "");
        users.push(cl);
    }
    // Another user and an anonymous connection of SYS_A.
    let mut u2 = nodes[1].ws(SYS_A);
    nodes[0].bind(SYS_A, &u2.client_id, "other", "u2", "");
    assert_notice(&u2.expect_json(WAIT), 1001, &u2.client_id.clone(), "u2", "");
    let mut anon = nodes[2].ws(SYS_A);
    // SYS_B twins on every node: same userId, same group names.
    let mut twins: Vec<Client> = Vec::new();
    for (k, owner) in [0usize, 1, 1, 2].into_iter().enumerate() {
        let mut cl = nodes[owner].ws(SYS_B);
        nodes[(owner + 2) % 3].bind(SYS_B, &cl.client_id, &format!("solo{k}"), "u1", "");
        assert_notice(&cl.expect_json(WAIT), 1001, &cl.client_id.clone(), "u1", "");
        twins.push(cl);
    }

    // send_to_user issued on node 1: every connection of u1, on all nodes.
    let d = nodes[0].call(
        SYS_A,
        "/api/send_to_user",
        json!({"userId": "u1", "msg": "to-u1"}),
    );
    let mid = message_id_of(&d);
    assert_eq!(d, json!({"messageId": mid, "online": 4}), "send_to_user");
    for u in users.iter_mut() {
        assert_eq!(expect_message(u, &mid, WAIT)["msg"], json!("to-u1"));
    }
    // The same from node 3 (holding one of them).
    let d = nodes[2].call(SYS_A, "/api/send_to_user", json!({"userId": "u1"}));
    let mid2 = message_id_of(&d);
    assert_eq!(d, json!({"messageId": mid2, "online": 4}), "send_to_user");
    for u in users.iter_mut() {
        expect_message(u, &mid2, WAIT);
        u.expect_silence(QUIET);
    }
    u2.expect_silence(QUIET);
    anon.expect_silence(BRIEF);
    for t in twins.iter_mut() {
        t.expect_silence(BRIEF);
    }

    // A user with no connection anywhere.
    let d = nodes[1].call(SYS_A, "/api/send_to_user", json!({"userId": "nobody"}));
    assert_eq!(d, json!({"messageId": message_id_of(&d), "online": 0}));

    // send_to_system issued on node 2: every SYS_A connection of every node, once.
    let d = nodes[1].call(
        SYS_A,
        "/api/send_to_system",
        json!({"msg": "to-all", "data": [1]}),
    );
    let mid = message_id_of(&d);
    assert_eq!(d, json!({ "messageId": mid }), "send_to_system");
    for cl in users.iter_mut().chain([&mut u2, &mut anon]) {
        let f = expect_message(cl, &mid, WAIT);
        assert_eq!((&f["msg"], &f["data"]), (&json!("to-all"), &json!([1])));
        cl.expect_silence(QUIET);
    }
    for t in twins.iter_mut() {
        t.expect_silence(BRIEF);
    }

    // SYS_B's send_to_system reaches its four connections only.
    let d = nodes[2].call(SYS_B, "/api/send_to_system", json!({"msg": "b-all"}));
    let mid = message_id_of(&d);
    for t in twins.iter_mut() {
        expect_message(t, &mid, WAIT);
        t.expect_silence(QUIET);
    }
    // A group name of both systems: only SYS_A's member (on node 2) gets SYS_A's send.
    let d = nodes[0].call(SYS_A, "/api/send_to_group", json!({"groupName": "solo1"}));
    let mid = message_id_of(&d);
    expect_message(&mut users[1], &mid, WAIT);
    for cl in users.iter_mut().chain([&mut u2, &mut anon]) {
        cl.expect_silence(QUIET);
    }
    for t in twins.iter_mut() {
        t.expect_silence(BRIEF);
    }
}

#[test]
fn a_client_on_node_3_is_managed_through_node_1() {
    let c = start_cluster(3);
    let (n1, n2, n3) = (&c[0], &c[1], &c[2]);
    let t0 = now_unix();
    let mut m1 = n1.ws(SYS_A);
    let mut m2 = n2.ws(SYS_A);
    let mut x = n3.ws(SYS_A);
    let xid = x.client_id.clone();
    let (id1, id2) = (m1.client_id.clone(), m2.client_id.clone());

    n2.bind(SYS_A, &id1, "g", "um1", "");
    assert_notice(&m1.expect_json(WAIT), 1001, &id1, "um1", "");
    std::thread::sleep(SETTLE);
    n1.bind(SYS_A, &id2, "g", "um2", "");
    for m in [&mut m1, &mut m2] {
        assert_notice(&m.expect_json(WAIT), 1001, &id2, "um2", "");
    }
    std::thread::sleep(SETTLE);

    // bind_to_group of the remote client, issued on node 1.
    let d = n1.call(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": xid, "groupName": "g", "userId": "ux", "extend": "ex"}),
    );
    assert_eq!(d, json!([]), "bind answer");
    for m in [&mut m1, &mut m2, &mut x] {
        assert_notice(&m.expect_json(WAIT), 1001, &xid, "ux", "ex");
        m.expect_silence(QUIET);
    }

    // is_online and get_client_info of the remote client.
    assert_eq!(
        n1.call(SYS_A, "/api/is_online", json!({ "clientId": xid })),
        json!({"online": true})
    );
    let info = n1.call(SYS_A, "/api/get_client_info", json!({ "clientId": xid }));
    let mut keys: Vec<&String> = info.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "connectTime",
            "extend",
            "groups",
            "node",
            "online",
            "userId"
        ],
        "get_client_info keys: {info}"
    );
    assert_eq!(info["online"], json!(true));
    assert_eq!(
        (&info["userId"], &info["extend"]),
        (&json!("ux"), &json!("ex"))
    );
    assert_eq!(info["groups"], json!(["g"]));
    let ct = info["connectTime"].as_u64().expect("connectTime");
    assert!(
        ct + 2 >= t0 && ct <= now_unix() + 1,
        "connectTime {ct}, t0 {t0}"
    );
    let node_of = |via: &Node, id: &str| -> u64 {
        let i = via.call(SYS_A, "/api/get_client_info", json!({ "clientId": id }));
        i["node"]
            .as_u64()
            .unwrap_or_else(|| panic!("node is not a number: {i}"))
    };
    let node3 = info["node"].as_u64().expect("node is a number");
    // The owner's own answer names the same node; nodes 1 and 2 have other ids.
    assert_eq!(node_of(n3, &xid), node3, "node of x as node 3 tells it");
    assert_eq!(node_of(n2, &xid), node3, "node of x as node 2 tells it");
    let node1 = node_of(n3, &id1);
    let node2 = node_of(n1, &id2);
    assert!(
        node1 != node2 && node2 != node3 && node1 != node3,
        "node ids not distinct: {node1} {node2} {node3}"
    );

    // unbind through node 1: the remaining members (nodes 1 and 2) get the notice once.
    n1.unbind(SYS_A, &xid, "g");
    for m in [&mut m1, &mut m2] {
        assert_notice(&m.expect_json(WAIT), 1002, &xid, "ux", "ex");
        m.expect_silence(QUIET);
    }
    x.expect_silence(BRIEF);
    let info = n1.call(SYS_A, "/api/get_client_info", json!({ "clientId": xid }));
    assert_eq!(info["groups"], json!([]), "{info}");

    // bind again through node 2 with empty userId/extend: the old values stay.
    n2.bind(SYS_A, &xid, "g", "", "");
    for m in [&mut m1, &mut m2, &mut x] {
        assert_notice(&m.expect_json(WAIT), 1001, &xid, "ux", "ex");
        m.expect_silence(QUIET);
    }

    // close_client through node 1.
    let d = n1.call(SYS_A, "/api/close_client", json!({ "clientId": xid }));
    assert_eq!(d, json!({}), "close_client answer");
    assert_eq!(x.expect_close(WAIT), 1000, "close code");
    for m in [&mut m1, &mut m2] {
        assert_notice(&m.expect_json(WAIT), 1002, &xid, "ux", "ex");
        m.expect_silence(QUIET);
    }
    n1.wait_offline(SYS_A, &xid, Duration::from_secs(2));
    for n in [n2, n3] {
        assert!(!n.is_online(SYS_A, &xid), "closed client still online");
    }
    for (path, body) in [
        ("/api/close_client", json!({ "clientId": xid })),
        ("/api/get_client_info", json!({ "clientId": xid })),
        (
            "/api/unbind_from_group",
            json!({"clientId": xid, "groupName": "g"}),
        ),
        (
            "/api/bind_to_group",
            json!({"clientId": xid, "groupName": "g"}),
        ),
    ] {
        n1.call_err(SYS_A, path, body, 200, "客户端不在线");
    }
    let d = n1.send_to_client(SYS_A, &xid, "after", json!(""));
    assert_eq!(d, json!({"messageId": message_id_of(&d), "online": false}));
    let list = n2.call(SYS_A, "/api/get_online_list", json!({"groupName": "g"}));
    assert_eq!(
        sorted_strings(&list["list"]),
        sorted(vec![id1, id2]),
        "{list}"
    );

    // Validity is decided the same way for remote ids: a forged id, and a live id of
    // another system (held by node 3), are invalid on node 1.
    let b = n3.ws(SYS_B);
    for bad in [change_char(&xid, 5), b.client_id.clone()] {
        n1.call_err(
            SYS_A,
            "/api/get_client_info",
            json!({ "clientId": bad }),
            200,
            "无效的clientId",
        );
        n1.call_err(
            SYS_A,
            "/api/send_to_client",
            json!({ "clientId": bad }),
            200,
            "无效的clientId",
        );
    }
    m1.expect_silence(QUIET);
}

/// A go-websocket `CryptoKey` taken as it is written there (README, "How it differs
/// from go-websocket"): a 24-character string is the AES-192 key itself, on every node
/// alike, so a clientId issued by one node routes through the other. Each node's log
/// says the key is not hex.
#[test]
fn a_go_websocket_crypto_key_routes_across_nodes() {
    let key = "Adba723b7fe06819Adba723b";
    let c = crate::support::cluster::Cluster::start_with(
        2,
        &format!("[server]\ncrypto_key = \"{key}\"\n"),
    );
    let mut far = c[1].ws(SYS_A);
    let d = c[0].send_to_client(SYS_A, &far.client_id, "across", json!(1));
    assert_eq!(d["online"], json!(true), "{d}");
    assert_eq!(far.expect_json(WAIT)["msg"], json!("across"));
    for n in &c.nodes {
        assert!(
            n.log().contains("server.crypto_key is not hex"),
            "{}",
            n.log()
        );
    }
}
