//! Group history on a standalone node (docs/api.md §9): pushes to a history group carry
//! their place in the group's stream, a late joiner reads the last ones, a member
//! recovers a gap, pushes sent while a replay is under way arrive once and in order,
//! `/api/get_group_history` pages, and a restart starts a new epoch. (Across nodes:
//! `cluster/history.rs`.)

use crate::support::{node::Node, ws::Client, QUIET, SYS_A, WAIT};
use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Rooms keep their last 5 pushes; `other:` groups keep none.
const ROOMS: &str = "[history]\ngroups = [{ prefix = \"room:\", size = 5, ttl = \"10m\" }]";

fn send(node: &Node, group: &str, n: u64) -> Value {
    node.call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": group, "msg": "m", "data": {"n": n}}),
    )
}

fn bind_with(node: &Node, c: &Client, group: &str, extra: Value) -> Value {
    let mut body = json!({"clientId": c.client_id, "groupName": group});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    node.call(SYS_A, "/api/bind_to_group", body)
}

/// The next push of the stream of `group` (notices and other frames skipped).
fn next_push(c: &mut Client, group: &str) -> Value {
    c.expect_json_where(WAIT, |v| {
        v["groupName"] == group && v.get("offset").is_some()
    })
}

/// The `data.n` of the next `count` pushes of `group`, with their offsets.
fn pushes(c: &mut Client, group: &str, count: usize) -> Vec<(u64, u64)> {
    (0..count)
        .map(|_| {
            let p = next_push(c, group);
            (
                p["offset"].as_u64().unwrap(),
                p["data"]["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn pushes_carry_their_place_and_a_late_joiner_reads_the_last_ones() {
    let node = Node::start(ROOMS);
    let mut early = node.ws(SYS_A);
    node.bind(SYS_A, &early.client_id, "room:1", "", "");
    early.drain(QUIET);
    let mut ids = Vec::new();
    for n in 1..=8 {
        ids.push(send(&node, "room:1", n)["messageId"].clone());
    }
    let seen: Vec<Value> = (0..8).map(|_| next_push(&mut early, "room:1")).collect();
    let epoch = seen[0]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 16, "{}", seen[0]);
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(p["offset"], i as u64 + 1, "{p}");
        assert_eq!(p["epoch"], epoch.as_str());
        assert_eq!(p["messageId"], ids[i], "{p}");
        assert_eq!(
            (p["code"].clone(), p["msg"].clone()),
            (json!(0), json!("m"))
        );
    }

    let mut late = node.ws(SYS_A);
    let answer = bind_with(&node, &late, "room:1", json!({"history": 3}));
    assert_eq!(
        answer,
        json!({"recovered": true, "offset": 8, "epoch": epoch})
    );
    assert_eq!(pushes(&mut late, "room:1", 3), [(6, 6), (7, 7), (8, 8)]);
    send(&node, "room:1", 9);
    assert_eq!(pushes(&mut late, "room:1", 1), [(9, 9)]);
    assert_eq!(pushes(&mut early, "room:1", 1), [(9, 9)]);

    // More than is kept: what is kept, and recovered:false.
    let mut greedy = node.ws(SYS_A);
    let answer = bind_with(&node, &greedy, "room:1", json!({"history": 50}));
    assert_eq!(answer["recovered"], false);
    let offsets: Vec<u64> = pushes(&mut greedy, "room:1", 5)
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(offsets, [5, 6, 7, 8, 9]);
    greedy.expect_silence(QUIET);

    // A group without history: its pushes carry no place, and reads say so.
    node.bind(SYS_A, &early.client_id, "other:1", "", "");
    early.drain(QUIET);
    send(&node, "other:1", 1);
    let plain = early.expect_json_where(WAIT, |v| v["data"]["n"] == 1);
    assert!(
        plain.get("offset").is_none() && plain.get("groupName").is_none(),
        "{plain}"
    );
    let body = json!({"clientId": early.client_id, "groupName": "other:1", "history": 2});
    node.call_err(SYS_A, "/api/bind_to_group", body, 200, "该分组未开启历史");
    let body = json!({"groupName": "other:1"});
    node.call_err(
        SYS_A,
        "/api/get_group_history",
        body,
        200,
        "该分组未开启历史",
    );
}

#[test]
fn a_new_connection_binding_since_its_last_offset_gets_exactly_the_gap() {
    let node = Node::start(ROOMS);
    let mut first = node.ws(SYS_A);
    node.bind(SYS_A, &first.client_id, "room:gap", "", "");
    for n in 1..=2 {
        send(&node, "room:gap", n);
    }
    let got = pushes(&mut first, "room:gap", 2);
    let epoch = next_epoch(&node, "room:gap");
    first.close_cleanly();
    for n in 3..=6 {
        send(&node, "room:gap", n);
    }
    let mut again = node.ws(SYS_A);
    let since = json!({"since": {"offset": got[1].0, "epoch": epoch}});
    let answer = bind_with(&node, &again, "room:gap", since);
    assert_eq!(
        answer,
        json!({"recovered": true, "offset": 6, "epoch": epoch})
    );
    assert_eq!(
        pushes(&mut again, "room:gap", 4),
        [(3, 3), (4, 4), (5, 5), (6, 6)]
    );
    again.expect_silence(QUIET);

    // An epoch the stream never had: what is kept, recovered:false.
    let mut stranger = node.ws(SYS_A);
    let since = json!({"since": {"offset": 5, "epoch": "0000000000000000"}});
    let answer = bind_with(&node, &stranger, "room:gap", since);
    assert_eq!(answer["recovered"], false);
    assert_eq!(pushes(&mut stranger, "room:gap", 5).len(), 5);
}

/// The stream's epoch, as `/api/get_group_history` tells it.
fn next_epoch(node: &Node, group: &str) -> String {
    let page = node.call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": group, "limit": 0}),
    );
    page["epoch"].as_str().unwrap().to_owned()
}

#[test]
fn a_member_recovers_with_a_client_message_whatever_the_send_policy() {
    // The shipped policy ("off") and resume on: a recover is still read.
    let node = Node::start(&format!(
        "{ROOMS}\n[ws]\nclient_send = \"off\"\nresume_window = \"30s\""
    ));
    let mut c = node.ws(SYS_A);
    node.bind(SYS_A, &c.client_id, "room:r", "", "");
    for n in 1..=4 {
        send(&node, "room:r", n);
    }
    assert_eq!(pushes(&mut c, "room:r", 4).len(), 4);
    let epoch = next_epoch(&node, "room:r");
    let recover = json!({"type": "recover", "groupName": "room:r", "offset": 2, "epoch": epoch});
    c.socket.send(Message::text(recover.to_string())).unwrap();
    assert_eq!(pushes(&mut c, "room:r", 2), [(3, 3), (4, 4)]);
    let done = c.expect_json(WAIT);
    assert_eq!(
        done,
        json!({"code": 0, "msg": "recovered",
               "data": {"groupName": "room:r", "recovered": true, "offset": 4, "epoch": epoch}})
    );
    // Not a member: refused, nothing replayed.
    let recover = json!({"type": "recover", "groupName": "room:x", "offset": 0, "epoch": epoch, "reqId": "r1"});
    c.socket.send(Message::text(recover.to_string())).unwrap();
    let refused = c.expect_json(WAIT);
    assert_eq!(
        (refused["type"].clone(), refused["code"].clone()),
        (json!("ack"), json!(-1)),
        "{refused}"
    );
    c.expect_silence(QUIET);
}

#[test]
fn get_group_history_pages_the_kept_pushes_with_their_fields() {
    let node = Node::start(ROOMS);
    let mut ids = Vec::new();
    for n in 1..=7 {
        ids.push(send(&node, "room:p", n)["messageId"].clone());
    }
    let page = node.call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": "room:p", "limit": 2}),
    );
    let epoch = page["epoch"].clone();
    assert_eq!(page["offset"], 7);
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{page}");
    let newest = &messages[1];
    assert_eq!(newest["offset"], 7);
    assert_eq!(newest["messageId"], ids[6]);
    assert_eq!(newest["data"], json!({"n": 7}));
    assert_eq!(
        (newest["msg"].clone(), newest["sendUserId"].clone()),
        (json!("m"), json!(""))
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        newest["time"].as_u64().unwrap().abs_diff(now) < 60,
        "{newest}"
    );

    let since = json!({"groupName": "room:p", "since": {"offset": 3, "epoch": epoch}, "limit": 2});
    let offsets = |page: &Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        offsets(&node.call(SYS_A, "/api/get_group_history", since)),
        [4, 5]
    );
    let all = node.call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": "room:p"}),
    );
    assert_eq!(offsets(&all), [3, 4, 5, 6, 7], "size 5 keeps the newest 5");
    let none = node.call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": "room:never"}),
    );
    assert_eq!((none["offset"].clone(), offsets(&none)), (json!(0), vec![]));
}

/// Several publishers on their own connections (so on both cores) send without pause
/// while clients join with a replay: every client sees one run of offsets, none doubled,
/// none skipped, from where its read started to the last push.
#[test]
fn pushes_sent_during_replays_arrive_once_and_in_offset_order() {
    let node =
        Node::start("[history]\ngroups = [{ prefix = \"room:\", size = 10000, ttl = \"10m\" }]");
    const PER_PUBLISHER: u64 = 150;
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let addr = node.addr().to_owned();
            thread::spawn(move || {
                let mut conn = crate::support::http::HttpConn::connect(&addr);
                for n in 0..PER_PUBLISHER {
                    let body = json!({"groupName": "room:busy", "data": {"n": p * 1000 + n}});
                    let (status, _) =
                        conn.api("/api/send_to_group", Some(SYS_A), &body.to_string());
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    let mut readers = Vec::new();
    for i in 0..6 {
        thread::sleep(Duration::from_millis(20));
        let c = node.ws(SYS_A);
        let ask = if i % 2 == 0 {
            json!({"history": 10000})
        } else {
            json!({"history": 3})
        };
        let answer = bind_with(&node, &c, "room:busy", ask);
        readers.push((c, answer));
    }
    for p in publishers {
        p.join().expect("publisher");
    }
    let total = 3 * PER_PUBLISHER;
    let tops: Vec<u64> = readers
        .iter()
        .map(|(_, a)| a["offset"].as_u64().unwrap())
        .collect();
    let mid_stream = tops.iter().filter(|t| (1..total).contains(*t)).count();
    assert!(
        mid_stream >= 2,
        "readers must join while pushes flow: tops {tops:?}"
    );
    for (mut c, answer) in readers {
        let top = answer["offset"].as_u64().unwrap();
        let mut offsets = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while offsets.last() != Some(&total) && Instant::now() < deadline {
            offsets.push(next_push(&mut c, "room:busy")["offset"].as_u64().unwrap());
        }
        let first = offsets[0];
        let expected: Vec<u64> = (first..=total).collect();
        assert_eq!(offsets, expected, "a reader whose bind answered {answer}");
        assert!(
            first <= top.max(1),
            "the replay starts at or before the top it answered"
        );
        let late = c.drain(QUIET);
        assert!(
            late.iter().all(|v| v.get("offset").is_none()),
            "after the last push: {late:?}"
        );
    }
}

#[test]
fn a_restart_starts_a_new_epoch_and_an_old_position_is_not_recovered() {
    let mut node = Node::start(ROOMS);
    send(&node, "room:e", 1);
    let before = next_epoch(&node, "room:e");
    node.restart();
    let mut c = node.ws(SYS_A);
    let since = json!({"since": {"offset": 1, "epoch": before}});
    let answer = bind_with(&node, &c, "room:e", since);
    assert_eq!(answer["recovered"], false);
    assert_eq!(answer["offset"], 0);
    assert_ne!(answer["epoch"], before.as_str());
    send(&node, "room:e", 2);
    let p = next_push(&mut c, "room:e");
    assert_eq!(
        (p["offset"].clone(), p["epoch"].clone()),
        (json!(1), answer["epoch"].clone())
    );
}

/// `history.max_bytes` reached: the oldest pushes of the largest stream go, a quiet
/// room keeps its history, the kept bytes stay under the bound, and a read that needed
/// what went says `recovered:false`.
#[test]
fn at_max_bytes_the_largest_stream_gives_up_its_oldest_pushes() {
    const MAX: u64 = 64 * 1024;
    let node = Node::start(&format!(
        "[server]\nworkers = 1\n[history]\nmax_bytes = {MAX}\n\
         groups = [{{ prefix = \"room:\", size = 1000, ttl = \"10m\" }}]"
    ));
    for n in 1..=3 {
        send(&node, "room:quiet", n);
    }
    let big = "x".repeat(1000);
    for n in 1..=200 {
        let body = json!({"groupName": "room:busy", "msg": "m", "data": {"n": n, "pad": big}});
        node.call(SYS_A, "/api/send_to_group", body);
    }
    let page = |g: &str| node.call(SYS_A, "/api/get_group_history", json!({"groupName": g}));
    let quiet = page("room:quiet");
    assert_eq!(quiet["messages"].as_array().unwrap().len(), 3, "{quiet}");
    let busy = page("room:busy");
    let kept = busy["messages"].as_array().unwrap();
    assert!(kept.len() < 64 && kept.len() > 20, "{} kept", kept.len());
    assert_eq!(kept.last().unwrap()["offset"], 200, "the newest stay");
    let kept_bytes = node.metric("shardcast_history_kept_bytes");
    assert!(kept_bytes > 0.0 && kept_bytes <= MAX as f64, "{kept_bytes}");
    assert!(node.metric("shardcast_history_bound_dropped_total") >= (200 - 64) as f64);
    let c = node.ws(SYS_A);
    let epoch = busy["epoch"].clone();
    let answer = bind_with(
        &node,
        &c,
        "room:busy",
        json!({"since": {"offset": 1, "epoch": epoch}}),
    );
    assert_eq!(answer["recovered"], false);
}

/// A rule's `ttl`: pushes older than it are no longer kept, but the stream's numbering
/// and epoch stay (`history.meta_ttl`), so a read says `recovered:false` and the next
/// push goes on from the same offset.
#[test]
fn pushes_past_their_ttl_are_dropped_and_the_numbering_goes_on() {
    let node =
        Node::start("[history]\ngroups = [{ prefix = \"room:\", size = 100, ttl = \"1s\" }]");
    for n in 1..=3 {
        send(&node, "room:t", n);
    }
    let before = node.call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": "room:t"}),
    );
    assert_eq!(before["messages"].as_array().unwrap().len(), 3);
    thread::sleep(Duration::from_millis(2600));
    let after = node.call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": "room:t"}),
    );
    assert_eq!(
        (after["offset"].clone(), after["epoch"].clone()),
        (json!(3), before["epoch"].clone())
    );
    assert_eq!(after["messages"], json!([]), "{after}");
    let mut c = node.ws(SYS_A);
    let answer = bind_with(
        &node,
        &c,
        "room:t",
        json!({"since": {"offset": 1, "epoch": before["epoch"]}}),
    );
    assert_eq!(answer["recovered"], false);
    send(&node, "room:t", 4);
    assert_eq!(pushes(&mut c, "room:t", 1), [(4, 4)]);
}

/// A bind with `history` is answered as soon as the replay is queued, whichever core
/// owns the stream: the read it sends to the owner leaves at once, not at the core's
/// next housekeeping tick (a second, here) — before, about half of such binds waited
/// for that tick.
#[test]
fn binds_with_history_are_answered_without_waiting_for_a_tick() {
    let node = Node::start(&format!(
        "{ROOMS}\n[ws]\nping_interval = \"60s\"\nidle_timeout = \"120s\""
    ));
    let clients: Vec<Client> = (0..30).map(|_| node.ws(SYS_A)).collect();
    let mut http = crate::support::http::HttpConn::connect(node.addr());
    let mut slow = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let body = json!({"clientId": c.client_id, "groupName": format!("room:{i}"), "history": 5});
        let started = Instant::now();
        let (status, v) = http.api("/api/bind_to_group", Some(SYS_A), &body.to_string());
        assert_eq!((status, v["code"].clone()), (200, json!(0)), "{v}");
        if started.elapsed() > Duration::from_millis(500) {
            slow.push(started.elapsed());
        }
    }
    assert!(slow.len() < 3, "binds that waited over 500 ms: {slow:?}");
}
