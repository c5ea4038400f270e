//! Tenant isolation (docs/api.md §3, §4): a clientId of system A used with `SystemId` B
//! is an invalid clientId on every per-client route, and B's group / user / system sends,
//! notices, online lists and group lists never see A's connections or A's groups that
//! share a name with B's.

use crate::support::{api::group_counts, node::Node, ws::assert_notice, QUIET, SYS_A, SYS_B, WAIT};
use serde_json::json;

#[test]
fn a_client_id_of_another_system_is_invalid_on_every_per_client_route() {
    let node = Node::start("");
    let mut a = node.ws(SYS_A);
    let mut b = node.ws(SYS_B);
    let aid = a.client_id.clone();

    for (path, body) in [
        ("/api/send_to_client", json!({"clientId": aid, "msg": "x"})),
        (
            "/api/send_to_clients",
            json!({"clientIds": [aid], "msg": "x"}),
        ),
        (
            "/api/send_to_clients",
            json!({"clientIds": [b.client_id, aid], "msg": "x"}),
        ),
        (
            "/api/bind_to_group",
            json!({"clientId": aid, "groupName": "room", "userId": "u"}),
        ),
        (
            "/api/unbind_from_group",
            json!({"clientId": aid, "groupName": "room"}),
        ),
        ("/api/is_online", json!({ "clientId": aid })),
        ("/api/get_client_info", json!({ "clientId": aid })),
        ("/api/close_client", json!({ "clientId": aid })),
    ] {
        node.call_err(SYS_B, path, body, 200, "无效的clientId");
    }
    // A's connection was not touched: still online, nothing received, no group, no user.
    a.expect_silence(QUIET);
    b.expect_silence(QUIET);
    let i = node.call(SYS_A, "/api/get_client_info", json!({ "clientId": aid }));
    assert_eq!(i["online"], json!(true), "{i}");
    assert_eq!(i["groups"], json!([]), "{i}");
    assert_eq!(i["userId"], json!(""), "{i}");
}

#[test]
fn group_user_and_system_sends_stay_within_their_system() {
    let node = Node::start("");
    let mut a1 = node.ws(SYS_A);
    let mut a2 = node.ws(SYS_A);
    let mut b1 = node.ws(SYS_B);

    node.bind(SYS_A, &a1.client_id, "room", "same-user", "");
    a1.drain(WAIT);
    // B's bind to a group of the same name notifies B's members only.
    node.bind(SYS_B, &b1.client_id, "room", "same-user", "");
    let n = b1.expect_json(WAIT);
    assert_notice(&n, 1001, &b1.client_id, "same-user", "");
    a1.expect_silence(QUIET);

    let d = node.call(
        SYS_B,
        "/api/send_to_group",
        json!({"groupName": "room", "msg": "g"}),
    );
    assert_eq!(b1.expect_json(WAIT)["messageId"], d["messageId"]);

    let d = node.call(
        SYS_B,
        "/api/send_to_user",
        json!({"userId": "same-user", "msg": "u"}),
    );
    assert_eq!(d["online"], json!(1), "{d}");
    assert_eq!(b1.expect_json(WAIT)["messageId"], d["messageId"]);

    let d = node.call(SYS_B, "/api/send_to_system", json!({"msg": "s"}));
    assert_eq!(b1.expect_json(WAIT)["messageId"], d["messageId"]);

    a1.expect_silence(QUIET);
    a2.expect_silence(QUIET);
    b1.expect_silence(QUIET);

    // Lists.
    node.bind(SYS_A, &a2.client_id, "only-in-a", "", "");
    let list = node.call(
        SYS_B,
        "/api/get_online_list",
        json!({"groupName": "room", "withInfo": true}),
    );
    assert_eq!(list["count"], json!(1), "{list}");
    assert_eq!(list["list"], json!([b1.client_id]), "{list}");
    let groups = node.call(SYS_B, "/api/get_group_list", json!({}));
    assert_eq!(groups["count"], json!(1), "{groups}");
    assert_eq!(
        group_counts(&groups).into_iter().collect::<Vec<_>>(),
        vec![("room".to_string(), 1)],
        "{groups}"
    );
    let list = node.call(
        SYS_B,
        "/api/get_online_list",
        json!({"groupName": "only-in-a"}),
    );
    assert_eq!(list["count"], json!(0), "{list}");

    // And A sees only its own.
    let groups = node.call(SYS_A, "/api/get_group_list", json!({}));
    let counts = group_counts(&groups);
    assert_eq!(counts.get("room"), Some(&1), "{groups}");
    assert_eq!(counts.get("only-in-a"), Some(&1), "{groups}");

    // B's offline notice (close) stays in B.
    a1.drain(WAIT);
    let mut b2 = node.ws(SYS_B);
    node.bind(SYS_B, &b2.client_id, "room", "", "");
    b1.drain(WAIT);
    b2.drain(WAIT);
    node.call(
        SYS_B,
        "/api/close_client",
        json!({"clientId": b2.client_id}),
    );
    assert_eq!(b2.expect_close(WAIT), 1000);
    assert_notice(&b1.expect_json(WAIT), 1002, &b2.client_id, "", "");
    a1.expect_silence(QUIET);
}
