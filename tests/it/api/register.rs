//! `/api/register` in open mode (docs/api.md §4, §5): a new system answers `[]` and is
//! usable at once for WebSocket connections and API calls; registering an existing id
//! (from the config or the API) fails with `该系统ID已被注册`; a `webhookUrl` in open mode is
//! refused with `无权设置WebhookUrl` and creates nothing. (Persistence: see lifecycle.rs.)

use crate::support::{
    api::{expect_err, expect_ok},
    node::Node,
    SYS_B, WAIT,
};
use serde_json::json;

#[test]
fn register_creates_a_usable_system() {
    let node = Node::start("");
    let d = expect_ok(node.api("/api/register", None, "{\"systemId\":\"sys-new\"}"));
    assert_eq!(d, json!([]), "open-mode register data");

    let mut c = node.ws("sys-new");
    let r = node.send_to_client("sys-new", &c.client_id, "welcome aboard", json!({"n": 1}));
    assert_eq!(r["online"], json!(true));
    let f = c.expect_json(WAIT);
    assert_eq!(f["msg"], json!("welcome aboard"));
    assert_eq!(f["data"], json!({"n": 1}));
    let d = node.call("sys-new", "/api/get_group_list", json!({}));
    assert_eq!(d["count"], json!(0));
}

#[test]
fn registering_an_existing_id_fails() {
    let node = Node::start("");
    expect_err(
        node.api("/api/register", None, "{\"systemId\":\"sys-a\"}"),
        200,
        "该系统ID已被注册",
    );
    expect_ok(node.api("/api/register", None, "{\"systemId\":\"twice\"}"));
    expect_err(
        node.api("/api/register", None, "{\"systemId\":\"twice\"}"),
        200,
        "该系统ID已被注册",
    );
    // A SystemId header on register is irrelevant.
    expect_err(
        node.api("/api/register", Some(SYS_B), "{\"systemId\":\"twice\"}"),
        200,
        "该系统ID已被注册",
    );
}

#[test]
fn webhook_url_at_register_is_refused_in_open_mode() {
    let node = Node::start("");
    expect_err(
        node.api(
            "/api/register",
            None,
            "{\"systemId\":\"hooked\",\"webhookUrl\":\"http://127.0.0.1:9/hook\"}",
        ),
        200,
        "无权设置WebhookUrl",
    );
    // Nothing was created.
    expect_err(
        node.api("/api/get_group_list", Some("hooked"), "{}"),
        200,
        "系统ID无效",
    );
    expect_ok(node.api("/api/register", None, "{\"systemId\":\"hooked\"}"));
}
