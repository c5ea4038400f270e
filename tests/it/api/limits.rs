//! The limits of docs/api.md §7 that API answers report: groups per connection
//! (`api.max_groups_per_client`), registered systems (`api.max_systems`) and `msg`,
//! which counts toward `api.max_message` with `data`. Each refusal is a clear error,
//! leaves things as they were, and is counted in `shardcast_limit_hits_total{limit}`.

use crate::support::{
    api::{expect_err, expect_ok},
    node::Node,
    SYS_A, WAIT,
};
use serde_json::json;

fn limit_hits(node: &Node, key: &str) -> f64 {
    node.metrics()
        .sum_where("shardcast_limit_hits_total", &[("limit", key)])
}

#[test]
fn a_connection_in_max_groups_stays_as_it_was() {
    let node = Node::start("[api]\nmax_groups_per_client = 3\n");
    let mut c = node.ws(SYS_A);
    let id = c.client_id.clone();
    for g in ["g1", "g2", "g3"] {
        node.bind(SYS_A, &id, g, "", "");
    }
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": id, "groupName": "g4", "userId": "u"}),
        200,
        "分组数量超出限制",
    );
    // Binding again to a group it is in is not a new group.
    node.bind(SYS_A, &id, "g2", "", "");
    let info = node.call(SYS_A, "/api/get_client_info", json!({ "clientId": id }));
    assert_eq!(info["groups"].as_array().map(Vec::len), Some(3), "{info}");
    assert_eq!(
        info["userId"],
        json!(""),
        "the refused bind changed nothing: {info}"
    );
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "g4"}));
    assert_eq!(list["count"], json!(0), "{list}");
    assert_eq!(limit_hits(&node, "api.max_groups_per_client"), 1.0);
    // Leaving one makes room for another.
    node.unbind(SYS_A, &id, "g1");
    node.bind(SYS_A, &id, "g4", "", "");
    node.call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "g4", "data": "in"}),
    );
    let v = c.expect_json_where(WAIT, |v| v["data"] == json!("in"));
    assert_eq!(v["code"], json!(0));
}

#[test]
fn msg_counts_toward_max_message_with_data() {
    let node = Node::start("[api]\nmax_message = 64\n");
    let c = node.ws(SYS_A);
    let data = "d".repeat(30); // 32 bytes as JSON text
    let ok = json!({"clientId": c.client_id, "msg": "m".repeat(32), "data": data});
    node.call(SYS_A, "/api/send_to_client", ok);
    let over = json!({"clientId": c.client_id, "msg": "m".repeat(33), "data": data});
    node.call_err(SYS_A, "/api/send_to_client", over, 200, "Msg超出限制");
    let long = json!({"groupName": "g", "msg": "m".repeat(65)});
    node.call_err(SYS_A, "/api/send_to_group", long, 200, "Msg超出限制");
    assert_eq!(limit_hits(&node, "api.max_message"), 2.0);
}

#[test]
fn register_past_max_systems_is_refused() {
    // SYS_A and SYS_B come from the config: one more fits.
    let node = Node::start("[api]\nmax_systems = 3\n");
    expect_ok(node.api("/api/register", None, "{\"systemId\":\"third\"}"));
    expect_err(
        node.api("/api/register", None, "{\"systemId\":\"fourth\"}"),
        200,
        "系统数量超出限制",
    );
    expect_err(
        node.api("/api/register", None, "{\"systemId\":\"third\"}"),
        200,
        "该系统ID已被注册",
    );
    assert_eq!(limit_hits(&node, "api.max_systems"), 1.0);
    let err = Node::try_start("[api]\nmax_systems = 1\n", &[]).err();
    let err = err.expect("more api.systems than api.max_systems is a config error");
    assert!(err.contains("api.max_systems"), "{err}");
}
