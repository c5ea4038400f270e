//! Group and connection routes of the push API (docs/api.md §4): bind_to_group (userId /
//! extend replacement rules), unbind_from_group, get_online_list (with and without
//! withInfo), get_group_list, is_online, get_client_info and close_client.

use crate::support::{
    api::group_counts, node::Node, now_unix, sorted, sorted_strings, QUIET, SYS_A, WAIT,
};
use serde_json::json;

fn info(node: &Node, id: &str) -> serde_json::Value {
    node.call(SYS_A, "/api/get_client_info", json!({ "clientId": id }))
}

#[test]
fn bind_sets_user_and_extend_and_empty_values_keep_the_old_ones() {
    let node = Node::start("");
    let c = node.ws(SYS_A);
    let id = c.client_id.clone();

    node.bind(SYS_A, &id, "g1", "u1", "e1");
    let i = info(&node, &id);
    assert_eq!(i["userId"], json!("u1"), "{i}");
    assert_eq!(i["extend"], json!("e1"), "{i}");
    assert_eq!(sorted_strings(&i["groups"]), vec!["g1"]);

    // Empty userId / extend (what the PHP SDK sends by default) leave them as they are.
    node.bind(SYS_A, &id, "g2", "", "");
    let i = info(&node, &id);
    assert_eq!(
        i["userId"],
        json!("u1"),
        "empty userId must keep the old: {i}"
    );
    assert_eq!(
        i["extend"],
        json!("e1"),
        "empty extend must keep the old: {i}"
    );
    assert_eq!(sorted_strings(&i["groups"]), vec!["g1", "g2"]);

    // Absent fields leave them too; a non-empty one replaces.
    node.call(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": id, "groupName": "g3", "extend": "e2"}),
    );
    let i = info(&node, &id);
    assert_eq!(i["userId"], json!("u1"), "{i}");
    assert_eq!(i["extend"], json!("e2"), "{i}");

    node.call(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": id, "groupName": "g1", "userId": "u2"}),
    );
    let i = info(&node, &id);
    assert_eq!(i["userId"], json!("u2"), "{i}");
    assert_eq!(i["extend"], json!("e2"), "{i}");
    assert_eq!(sorted_strings(&i["groups"]), vec!["g1", "g2", "g3"]);

    // The new userId routes send_to_user; the old one no longer does.
    let d = node.call(SYS_A, "/api/send_to_user", json!({"userId": "u2"}));
    assert_eq!(d["online"], json!(1), "{d}");
    let d = node.call(SYS_A, "/api/send_to_user", json!({"userId": "u1"}));
    assert_eq!(d["online"], json!(0), "{d}");
}

#[test]
fn unbind_removes_the_connection_from_the_group() {
    let node = Node::start("");
    let mut stay = node.ws(SYS_A);
    let mut leave = node.ws(SYS_A);
    node.bind(SYS_A, &stay.client_id, "room", "", "");
    node.bind(SYS_A, &leave.client_id, "room", "", "");
    node.bind(SYS_A, &leave.client_id, "other", "", "");
    stay.drain(WAIT);
    leave.drain(WAIT);

    node.unbind(SYS_A, &leave.client_id, "room");
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "room"}));
    assert_eq!(list["count"], json!(1), "{list}");
    assert_eq!(list["list"], json!([stay.client_id]), "{list}");
    let i = info(&node, &leave.client_id);
    assert_eq!(sorted_strings(&i["groups"]), vec!["other"], "{i}");

    // Group sends no longer reach it.
    stay.drain(WAIT);
    node.call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "room", "msg": "r"}),
    );
    assert_eq!(stay.expect_json(WAIT)["msg"], json!("r"));
    leave.expect_silence(QUIET);

    // Unbinding a group it is not in is harmless.
    node.unbind(SYS_A, &leave.client_id, "never-joined");
}

#[test]
fn online_list_of_an_empty_group_is_an_empty_array() {
    let node = Node::start("");
    let list = node.call(
        SYS_A,
        "/api/get_online_list",
        json!({"groupName": "nobody-here"}),
    );
    assert_eq!(list["count"], json!(0), "{list}");
    assert_eq!(
        list["list"],
        json!([]),
        "list must be [], never null: {list}"
    );

    // A group whose last member left is empty too.
    let c = node.ws(SYS_A);
    node.bind(SYS_A, &c.client_id, "brief", "", "");
    node.unbind(SYS_A, &c.client_id, "brief");
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "brief"}));
    assert_eq!(list["count"], json!(0), "{list}");
    assert_eq!(list["list"], json!([]), "{list}");
}

#[test]
fn online_list_names_members_and_with_info_describes_them() {
    let node = Node::start("");
    let t0 = now_unix();
    let c1 = node.ws(SYS_A);
    let c2 = node.ws(SYS_A);
    let _c3 = node.ws(SYS_A);
    let t1 = now_unix();
    node.bind(SYS_A, &c1.client_id, "room", "alice", "ext-1");
    node.bind(SYS_A, &c2.client_id, "room", "", "");

    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "room"}));
    assert_eq!(list["count"], json!(2), "{list}");
    assert_eq!(
        sorted_strings(&list["list"]),
        sorted(vec![c1.client_id.clone(), c2.client_id.clone()])
    );

    let list = node.call(
        SYS_A,
        "/api/get_online_list",
        json!({"groupName": "room", "withInfo": true}),
    );
    assert_eq!(list["count"], json!(2), "{list}");
    let clients = list["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("withInfo answer without clients array: {list}"));
    assert_eq!(clients.len(), 2, "{list}");
    for cl in clients {
        let id = cl["clientId"].as_str().unwrap();
        let (user, ext) = if id == c1.client_id {
            ("alice", "ext-1")
        } else {
            assert_eq!(id, c2.client_id);
            ("", "")
        };
        assert_eq!(cl["userId"], json!(user), "{cl}");
        assert_eq!(cl["extend"], json!(ext), "{cl}");
        let ct = cl["connectTime"]
            .as_u64()
            .unwrap_or_else(|| panic!("connectTime not unix seconds: {cl}"));
        assert!(
            t0 <= ct && ct <= t1 + 1,
            "connectTime {ct} not in [{t0},{t1}]"
        );
    }

    // withInfo false: no clients details needed, same list.
    let list = node.call(
        SYS_A,
        "/api/get_online_list",
        json!({"groupName": "room", "withInfo": false}),
    );
    assert_eq!(list["count"], json!(2), "{list}");
}

#[test]
fn group_list_counts_members_per_group() {
    let node = Node::start("");
    let empty = node.call(SYS_A, "/api/get_group_list", json!({}));
    assert_eq!(empty["count"], json!(0), "{empty}");
    assert_eq!(empty["list"], json!([]), "{empty}");

    let c1 = node.ws(SYS_A);
    let c2 = node.ws(SYS_A);
    node.bind(SYS_A, &c1.client_id, "big", "", "");
    node.bind(SYS_A, &c2.client_id, "big", "", "");
    node.bind(SYS_A, &c2.client_id, "small", "", "");

    let data = node.call(SYS_A, "/api/get_group_list", json!({}));
    assert_eq!(data["count"], json!(2), "{data}");
    let counts = group_counts(&data);
    assert_eq!(counts.get("big"), Some(&2), "{data}");
    assert_eq!(counts.get("small"), Some(&1), "{data}");

    // A group emptied by unbind disappears (or counts 0).
    node.unbind(SYS_A, &c2.client_id, "small");
    let data = node.call(SYS_A, "/api/get_group_list", json!({}));
    let counts = group_counts(&data);
    assert!(
        counts.get("small").copied().unwrap_or(0) == 0,
        "emptied group still has members: {data}"
    );
    assert_eq!(counts.get("big"), Some(&2), "{data}");
}

#[test]
fn is_online_follows_the_connection() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let id = c.client_id.clone();
    let d = node.call(SYS_A, "/api/is_online", json!({ "clientId": id }));
    assert_eq!(d, json!({"online": true}));
    c.close_cleanly();
    node.wait_offline(SYS_A, &id, WAIT);
    let d = node.call(SYS_A, "/api/is_online", json!({ "clientId": id }));
    assert_eq!(d, json!({"online": false}));
}

#[test]
fn client_info_has_the_full_shape() {
    let node = Node::start("");
    let t0 = now_unix();
    let c = node.ws(SYS_A);
    let t1 = now_unix();
    node.bind(SYS_A, &c.client_id, "ga", "user-7", "{\"role\":\"admin\"}");
    node.bind(SYS_A, &c.client_id, "gb", "", "");

    let i = info(&node, &c.client_id);
    assert_eq!(i["online"], json!(true), "{i}");
    assert_eq!(i["userId"], json!("user-7"), "{i}");
    assert_eq!(i["extend"], json!("{\"role\":\"admin\"}"), "{i}");
    assert_eq!(sorted_strings(&i["groups"]), vec!["ga", "gb"]);
    let ct = i["connectTime"]
        .as_u64()
        .unwrap_or_else(|| panic!("connectTime not unix seconds: {i}"));
    assert!(
        t0 <= ct && ct <= t1 + 1,
        "connectTime {ct} not in [{t0},{t1}]"
    );
    assert!(
        i["node"].is_u64(),
        "node must be the node id (a number): {i}"
    );

    // A fresh connection: no user, no extend, no groups ([] not null).
    let fresh = node.ws(SYS_A);
    let i = info(&node, &fresh.client_id);
    assert_eq!(i["userId"], json!(""), "{i}");
    assert_eq!(i["extend"], json!(""), "{i}");
    assert_eq!(i["groups"], json!([]), "{i}");
}

#[test]
fn close_client_sends_close_1000_and_the_connection_goes_offline() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let id = c.client_id.clone();
    node.bind(SYS_A, &id, "room", "", "");
    c.drain(WAIT);

    let d = node.call(SYS_A, "/api/close_client", json!({ "clientId": id }));
    assert_eq!(d, json!({}), "close_client data");
    assert_eq!(c.expect_close(WAIT), 1000, "close code of close_client");
    node.wait_offline(SYS_A, &id, WAIT);
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "room"}));
    assert_eq!(list["count"], json!(0), "{list}");

    // Closing it again: it is offline now.
    node.call_err(
        SYS_A,
        "/api/close_client",
        json!({ "clientId": id }),
        200,
        "客户端不在线",
    );
}
