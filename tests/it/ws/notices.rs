//! Online / offline notices (docs/api.md §4): bind sends 1001 `客户端上线` to every group member
//! (the joiner included) exactly once, re-binding sends none; unbind sends 1002
//! `客户端下线` to the remaining members; close_client and an abrupt TCP disconnect send
//! one offline notice per group. The notice `data` is a JSON string with sorted keys.
//! With `ws.notices = false` none of them is sent, and groups work the same.

use crate::support::{node::Node, ws::assert_notice, QUIET, SYS_A, WAIT};
use serde_json::json;
use std::time::Duration;

#[test]
fn bind_notice_reaches_every_member_once_including_the_joiner() {
    let node = Node::start("");
    let mut a = node.ws(SYS_A);
    let mut b = node.ws(SYS_A);
    let mut outsider = node.ws(SYS_A);

    node.bind(SYS_A, &a.client_id, "room", "ua", "ea");
    let n = a.expect_json(WAIT);
    assert_notice(&n, 1001, &a.client_id, "ua", "ea");
    a.expect_silence(QUIET);

    node.bind(SYS_A, &b.client_id, "room", "ub", "");
    let bid = b.client_id.clone();
    for c in [&mut a, &mut b] {
        let n = c.expect_json(WAIT);
        assert_notice(&n, 1001, &bid, "ub", "");
        c.expect_silence(QUIET);
    }
    outsider.expect_silence(QUIET);
}

#[test]
fn notice_data_is_a_sorted_json_string() {
    let node = Node::start("");
    let mut a = node.ws(SYS_A);
    node.bind(SYS_A, &a.client_id, "g", "user-1", "some extend");
    let raw = a.recv_text(WAIT).expect("online notice");
    let frame: serde_json::Value = serde_json::from_str(raw.trim_end()).unwrap();
    assert_notice(&frame, 1001, &a.client_id, "user-1", "some extend");
    // The push frame itself keeps the contract field order.
    let order: Vec<usize> = ["messageId", "sendUserId", "code", "msg", "data"]
        .iter()
        .map(|k| raw.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "field order: {raw}");
}

#[test]
fn rebinding_the_same_group_sends_no_notice() {
    let node = Node::start("");
    let mut a = node.ws(SYS_A);
    let mut b = node.ws(SYS_A);
    node.bind(SYS_A, &a.client_id, "room", "", "");
    node.bind(SYS_A, &b.client_id, "room", "", "");
    a.drain(WAIT);
    b.drain(WAIT);

    node.bind(SYS_A, &b.client_id, "room", "", "");
    node.bind(SYS_A, &b.client_id, "room", "new-user", "new-ext");
    a.expect_silence(QUIET);
    b.expect_silence(QUIET);
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "room"}));
    assert_eq!(
        list["count"],
        json!(2),
        "re-binding must not duplicate membership: {list}"
    );
}

#[test]
fn unbind_sends_the_offline_notice_to_the_remaining_members() {
    let node = Node::start("");
    let mut a = node.ws(SYS_A);
    let mut b = node.ws(SYS_A);
    let mut c = node.ws(SYS_A);
    for (cl, u) in [(&a, "ua"), (&b, "ub"), (&c, "uc")] {
        node.bind(SYS_A, &cl.client_id, "room", u, &format!("x-{u}"));
    }
    for cl in [&mut a, &mut b, &mut c] {
        cl.drain(WAIT);
    }

    node.unbind(SYS_A, &c.client_id, "room");
    for cl in [&mut a, &mut b] {
        let n = cl.expect_json(WAIT);
        assert_notice(&n, 1002, &c.client_id, "uc", "x-uc");
        cl.expect_silence(QUIET);
    }
    c.expect_silence(QUIET);
}

#[test]
fn close_client_sends_one_offline_notice_per_group() {
    let node = Node::start("");
    let mut in_g1 = node.ws(SYS_A);
    let mut in_g2 = node.ws(SYS_A);
    let mut closed = node.ws(SYS_A);
    node.bind(SYS_A, &in_g1.client_id, "g1", "", "");
    node.bind(SYS_A, &in_g2.client_id, "g2", "", "");
    node.bind(SYS_A, &closed.client_id, "g1", "uc", "ec");
    node.bind(SYS_A, &closed.client_id, "g2", "", "");
    for cl in [&mut in_g1, &mut in_g2, &mut closed] {
        cl.drain(WAIT);
    }

    node.call(
        SYS_A,
        "/api/close_client",
        json!({"clientId": closed.client_id}),
    );
    assert_eq!(closed.expect_close(WAIT), 1000);
    // Let the close handshake finish, so a second notice (on the TCP close) would show.
    assert!(
        closed.wait_closed(WAIT),
        "connection not closed after close_client"
    );
    for cl in [&mut in_g1, &mut in_g2] {
        let n = cl.expect_json(WAIT);
        assert_notice(&n, 1002, &closed.client_id, "uc", "ec");
        cl.expect_silence(Duration::from_millis(600));
    }
}

#[test]
fn abrupt_disconnect_sends_one_offline_notice() {
    let node = Node::start("");
    let mut watcher = node.ws(SYS_A);
    let fin = node.ws(SYS_A);
    let rst = node.ws(SYS_A);
    node.bind(SYS_A, &watcher.client_id, "room", "", "");
    node.bind(SYS_A, &fin.client_id, "room", "u-fin", "");
    node.bind(SYS_A, &rst.client_id, "room", "u-rst", "e-rst");
    watcher.drain(WAIT);
    let (fin_id, rst_id) = (fin.client_id.clone(), rst.client_id.clone());

    // TCP FIN, no close frame.
    fin.drop_abruptly();
    let n = watcher.expect_json(WAIT);
    assert_notice(&n, 1002, &fin_id, "u-fin", "");
    watcher.expect_silence(QUIET);
    node.wait_offline(SYS_A, &fin_id, WAIT);

    // TCP RST, no close frame.
    rst.reset_abruptly();
    let n = watcher.expect_json(WAIT);
    assert_notice(&n, 1002, &rst_id, "u-rst", "e-rst");
    watcher.expect_silence(Duration::from_millis(600));

    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "room"}));
    assert_eq!(list["list"], json!([watcher.client_id]), "{list}");
}

#[test]
fn client_close_frame_sends_one_offline_notice() {
    let node = Node::start("");
    let mut watcher = node.ws(SYS_A);
    let mut leaving = node.ws(SYS_A);
    node.bind(SYS_A, &watcher.client_id, "room", "", "");
    node.bind(SYS_A, &leaving.client_id, "room", "bye", "");
    watcher.drain(WAIT);
    let id = leaving.client_id.clone();
    leaving.close_cleanly();
    let n = watcher.expect_json(WAIT);
    assert_notice(&n, 1002, &id, "bye", "");
    watcher.expect_silence(Duration::from_millis(600));
}

#[test]
fn with_notices_off_joins_and_leaves_send_nothing_and_groups_still_work() {
    let node = Node::start("[ws]\nnotices = false\n");
    let mut stays = node.ws(SYS_A);
    let mut unbound = node.ws(SYS_A);
    let mut closed = node.ws(SYS_A);
    let gone = node.ws(SYS_A);
    for (c, user) in [
        (&stays, "u1"),
        (&unbound, "u2"),
        (&closed, "u3"),
        (&gone, "u4"),
    ] {
        node.bind(SYS_A, &c.client_id, "room", user, "");
    }
    node.unbind(SYS_A, &unbound.client_id, "room");
    node.call(
        SYS_A,
        "/api/close_client",
        json!({"clientId": closed.client_id}),
    );
    assert_eq!(closed.expect_close(WAIT), 1000);
    let gone_id = gone.client_id.clone();
    gone.drop_abruptly();
    node.wait_offline(SYS_A, &gone_id, WAIT);

    // Nothing of the joins and leaves reached anyone: the first frame the
    // remaining member gets is the group push sent now.
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "room"}));
    assert_eq!(list["list"], json!([stays.client_id]), "{list}");
    let sent = node.call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "room", "msg": "hi"}),
    );
    let frame = stays.expect_json(WAIT);
    assert_eq!(frame["messageId"], sent["messageId"], "got {frame} first");
    assert_eq!(frame["msg"], json!("hi"));
    stays.expect_silence(QUIET);
    unbound.expect_silence(QUIET);
    let info = node.call(
        SYS_A,
        "/api/get_client_info",
        json!({"clientId": stays.client_id}),
    );
    assert_eq!(
        (info["userId"].clone(), info["groups"].clone()),
        (json!("u1"), json!(["room"]))
    );
}
