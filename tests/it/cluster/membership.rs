//! Membership (docs/api.md §4 "Cluster rules"; docs/cluster.md, membership): a SIGKILLed
//! node is gone from every peer's view within `lease_ttl` + 1 s and nothing hangs
//! meanwhile; a SIGTERMed node is dropped at once; a node joining a running cluster
//! receives its pushes.
//!
//! Test settings: `lease_ttl = 2s`, `request_timeout = 1s`, so every call must answer
//! within 1.5 s (`CALL_LIMIT`) and the view must be clean 3 s after a SIGKILL.
//!
//! Assumptions where the contract is silent:
//! - While a dead node is still in etcd, answers may or may not carry `partial: true`
//!   (its link may already be known broken); they never list members of the dead node
//!   (no node can answer for them) and sends to its clients answer `online: false`.
//!   A request sent once the view must be clean (`lease_ttl` + 1 s after the kill)
//!   answers with exactly the docs/api.md §4 shape: no `partial` key, no dead member.
//! - `is_online` of a killed node's client may still answer `true` only until it first
//!   answers `false`; it never flips back.
//! - "Dropped at once" after SIGTERM: requests sent 1 s after the signal see a clean view.
//! - A node joining is visible to every peer within 1 s of its `/readyz` 200 (the bound
//!   the contract gives for registrations; polled, with `CALL_LIMIT` more for a busy
//!   machine); a peer handed a clientId of a node it has not seen re-reads membership
//!   first (docs/api.md §4), so bind through node 1 works at once.
//! - Between two binds to one group the tests leave `SETTLE` (100 ms): a client joining
//!   while an earlier notice is in transit may receive it (see `SETTLE`).

use crate::support::{
    api::{api_timed, assert_not_partial, message_id_of},
    cluster::{start_cluster, CALL_LIMIT, LEASE_TTL, SETTLE},
    node::Node,
    sorted_strings,
    ws::{assert_notice, expect_message, expect_messages, is_notice, Client},
    QUIET, SYS_A, WAIT,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Binds each client to `group` through its own node, in order, reading the online
/// notices (every member so far gets each one once).
fn bind_in_order(group: &str, members: &mut [(&Node, &mut Client)]) {
    for i in 0..members.len() {
        let id = members[i].1.client_id.clone();
        members[i].0.bind(SYS_A, &id, group, "", "");
        for (_, c) in members.iter_mut().take(i + 1) {
            assert_notice(&c.expect_json(WAIT), 1001, &id, "", "");
        }
        std::thread::sleep(SETTLE);
    }
    for (_, c) in members.iter_mut() {
        c.expect_silence(QUIET);
    }
}

/// How soon every peer must know a node that joined (after its `/readyz` 200).
const JOIN_VISIBLE: Duration = Duration::from_secs(1);

fn id_set(v: &Value) -> BTreeSet<String> {
    sorted_strings(v).into_iter().collect()
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

#[test]
fn a_killed_node_leaves_the_view_within_lease_ttl_and_nothing_hangs() {
    let c = start_cluster(3);
    let (n1, n2, n3) = (&c[0], &c[1], &c[2]);
    let mut a = n1.ws(SYS_A);
    let mut b = n2.ws(SYS_A);
    let mut d = n3.ws(SYS_A);
    bind_in_order(
        "g",
        &mut [(&n1.node, &mut a), (&n2.node, &mut b), (&n3.node, &mut d)],
    );
    let dead = d.client_id.clone();
    let live: BTreeSet<String> = [a.client_id.clone(), b.client_id.clone()].into();
    let list = n2.call(SYS_A, "/api/get_online_list", json!({"groupName": "g"}));
    assert_eq!(list["count"], json!(3), "{list}");

    n3.kill9();
    let killed = Instant::now();
    let clean_from = killed + LEASE_TTL + Duration::from_secs(1);
    let stop_at = clean_from + Duration::from_millis(700);

    let mut group_sends: Vec<String> = Vec::new();
    let mut first_false: Option<Duration> = None;
    let mut first_clean: [Option<Duration>; 4] = [None; 4];
    let mut slowest = Duration::ZERO;
    let mut polls = 0;
    let mut clean_polls = 0;
    while Instant::now() < stop_at || clean_polls < 2 {
        assert!(
            Instant::now() < clean_from + Duration::from_secs(6),
            "the view never became clean"
        );
        polls += 1;

        // is_online of the dead node's client, asked on node 1.
        let ans = api_timed(
            n1,
            "/api/is_online",
            Some(SYS_A),
            &json!({"clientId": dead}),
        );
        ans.within(CALL_LIMIT, "is_online of a dead node's client");
        slowest = slowest.max(ans.took);
        let data = ans.ok();
        let online = data["online"].as_bool().unwrap_or_else(|| panic!("{data}"));
        if online {
            assert!(first_false.is_none(), "is_online went back to true: {data}");
        } else if first_false.is_none() {
            first_false = Some(ans.sent_at.duration_since(killed) + ans.took);
        }
        let clean = data == json!({"online": false});
        if ans.sent_at >= clean_from {
            assert!(
                clean,
                "is_online {} after the kill: {data}",
                secs(ans.sent_at - killed)
            );
        } else if data.get("partial").is_some() {
            assert!(!online && ans.partial(), "is_online: {data}");
        }
        if clean && first_clean[0].is_none() {
            first_clean[0] = Some(ans.sent_at - killed);
        }

        // The online list of the group, asked on node 2.
        let ans = api_timed(
            n2,
            "/api/get_online_list",
            Some(SYS_A),
            &json!({"groupName": "g"}),
        );
        ans.within(CALL_LIMIT, "get_online_list with a dead member node");
        slowest = slowest.max(ans.took);
        let data = ans.ok();
        assert_eq!(id_set(&data["list"]), live, "online list: {data}");
        assert_eq!(data["count"], json!(2), "online list: {data}");
        let clean = data.get("partial").is_none();
        if ans.sent_at >= clean_from {
            assert!(
                clean,
                "online list {} after the kill: {data}",
                secs(ans.sent_at - killed)
            );
        } else if !clean {
            assert!(ans.partial(), "{data}");
        }
        if clean && first_clean[1].is_none() {
            first_clean[1] = Some(ans.sent_at - killed);
        }

        // A send to the dead node's client, issued on node 1.
        let ans = api_timed(
            n1,
            "/api/send_to_client",
            Some(SYS_A),
            &json!({"clientId": dead, "msg": "into the void"}),
        );
        ans.within(CALL_LIMIT, "send_to_client to a dead node's client");
        slowest = slowest.max(ans.took);
        let data = ans.ok();
        let mid = message_id_of(&data);
        assert_eq!(data["online"], json!(false), "{data}");
        let clean = data == json!({"messageId": mid, "online": false});
        if ans.sent_at >= clean_from {
            assert!(
                clean,
                "send {} after the kill: {data}",
                secs(ans.sent_at - killed)
            );
        } else if !clean {
            assert!(ans.partial(), "{data}");
        }
        if clean && first_clean[2].is_none() {
            first_clean[2] = Some(ans.sent_at - killed);
        }

        // A group send issued on node 1: the live members get it.
        let ans = api_timed(
            n1,
            "/api/send_to_group",
            Some(SYS_A),
            &json!({"groupName": "g", "msg": format!("poll {polls}")}),
        );
        ans.within(CALL_LIMIT, "send_to_group with a dead member node");
        slowest = slowest.max(ans.took);
        let data = ans.ok();
        let mid = message_id_of(&data);
        group_sends.push(mid.clone());
        let clean = data == json!({ "messageId": mid });
        if ans.sent_at >= clean_from {
            assert!(
                clean,
                "group send {} after the kill: {data}",
                secs(ans.sent_at - killed)
            );
        } else if !clean {
            assert!(ans.partial(), "{data}");
        }
        if clean && first_clean[3].is_none() {
            first_clean[3] = Some(ans.sent_at - killed);
        }

        if Instant::now() >= clean_from {
            clean_polls += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let fmt = |d: Option<Duration>| d.map(secs).unwrap_or_else(|| "never".into());
    eprintln!(
        "[cluster] SIGKILL: is_online false after {}; clean answers (request sent at) \
         is_online {}, online list {}, send_to_client {}, send_to_group {}; \
         slowest call {}; {polls} polls (limit: clean from {})",
        fmt(first_false),
        fmt(first_clean[0]),
        fmt(first_clean[1]),
        fmt(first_clean[2]),
        fmt(first_clean[3]),
        secs(slowest),
        secs(LEASE_TTL + Duration::from_secs(1)),
    );
    let went_false = first_false.expect("is_online never answered false");
    assert!(
        went_false <= LEASE_TTL + Duration::from_secs(1) + CALL_LIMIT,
        "is_online false only after {}",
        secs(went_false)
    );

    // The live members got every group send exactly once, and no offline notice for the
    // dead node's client (its groups died with it).
    for cl in [&mut a, &mut b] {
        let frames = expect_messages(cl, &group_sends, WAIT);
        assert!(frames.iter().all(|f| !is_notice(f)), "{frames:?}");
    }
    // The group list has forgotten the dead member too.
    let groups = n1.call(SYS_A, "/api/get_group_list", json!({}));
    assert_eq!(
        groups,
        json!({"count": 1, "list": [{"groupName": "g", "count": 2}]})
    );
}

#[test]
fn a_node_joining_a_running_cluster_receives_its_pushes() {
    let mut c = start_cluster(3);
    let pids: Vec<i32> = c.nodes.iter().map(|n| n.pid()).collect();
    let mut old: Vec<Client> = c.nodes.iter().map(|n| n.ws(SYS_A)).collect();
    {
        let (n1, n2, n3) = (&c[0], &c[1], &c[2]);
        let (o1, rest) = old.split_at_mut(1);
        let (o2, o3) = rest.split_at_mut(1);
        bind_in_order(
            "g",
            &mut [
                (&n1.node, &mut o1[0]),
                (&n2.node, &mut o2[0]),
                (&n3.node, &mut o3[0]),
            ],
        );
    }

    let i4 = c.add_node("");
    let ready = Instant::now();
    let (n1, n2, n3, n4) = (&c[0], &c[1], &c[2], &c[i4]);
    let mut newbie = n4.ws(SYS_A);
    let nid = newbie.client_id.clone();

    // Node 1 has perhaps not seen node 4 yet (nor linked to it): a clientId of an
    // unknown node makes it re-read membership (docs/api.md §4), and the welcome is
    // sent only once the connection is routable (docs/api.md §2), so this bind works
    // at once — no 503 meanwhile.
    let d = n1.call(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": nid, "groupName": "g", "userId": "new", "extend": ""}),
    );
    assert_eq!(d, json!([]));
    for cl in old.iter_mut().chain([&mut newbie]) {
        assert_notice(&cl.expect_json(WAIT), 1001, &nid, "new", "");
    }

    // send_to_group and send_to_system issued on node 1 reach all four members once.
    let d = n1.call(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "g", "msg": "g4"}),
    );
    let gmid = message_id_of(&d);
    assert_eq!(d, json!({ "messageId": gmid }), "group send");
    let d = n1.call(SYS_A, "/api/send_to_system", json!({"msg": "s4"}));
    let smid = message_id_of(&d);
    assert_eq!(d, json!({ "messageId": smid }), "system send");
    // Each call is a connection of its own, perhaps on another core of node 1 and
    // so on another link to node 4: the two pushes may arrive in either order.
    expect_messages(&mut newbie, &[gmid.clone(), smid.clone()], WAIT);
    eprintln!(
        "[cluster] node 4 reached by node 1's pushes {} after it was ready",
        secs(ready.elapsed())
    );
    for cl in old.iter_mut() {
        expect_messages(cl, &[gmid.clone(), smid.clone()], WAIT);
    }

    // Nodes 2 and 3 must know node 4 as well, within 1 s of its readiness: polled with
    // group sends from each until node 4's member gets one (`CALL_LIMIT` more allowed for
    // a busy machine). Every old member gets every send once; node 4's member gets each
    // send at most once, none from before node k knew node 4.
    let known_by = ready + JOIN_VISIBLE + CALL_LIMIT;
    for (k, n) in [(2, n2), (3, n3)] {
        let mut sent: Vec<String> = Vec::new();
        let mut got: BTreeSet<String> = BTreeSet::new();
        let reached_after = loop {
            let d = n.call(
                SYS_A,
                "/api/send_to_group",
                json!({"groupName": "g", "msg": format!("from node {k}, try {}", sent.len())}),
            );
            let mid = message_id_of(&d);
            assert_eq!(d, json!({ "messageId": mid }), "group send on node {k}");
            for cl in old.iter_mut() {
                expect_message(cl, &mid, WAIT);
            }
            sent.push(mid);
            if let Some(v) = newbie.recv_json(Duration::from_millis(200)) {
                let m = v["messageId"].as_str().unwrap_or("").to_string();
                assert!(sent.contains(&m), "node 4's member got {v}");
                got.insert(m);
                break ready.elapsed();
            }
            assert!(
                Instant::now() < known_by,
                "node {k}'s group sends do not reach node 4's member {} after it was ready",
                secs(ready.elapsed())
            );
        };
        for v in newbie.drain(QUIET) {
            let m = v["messageId"].as_str().unwrap_or("").to_string();
            assert!(sent.contains(&m), "node 4's member got {v}");
            assert!(got.insert(m), "node 4's member got a send twice: {v}");
        }
        eprintln!(
            "[cluster] node {k}'s group sends reach node 4 {} after it was ready \
             ({} tries)",
            secs(reached_after),
            sent.len()
        );
    }
    for cl in old.iter_mut().chain([&mut newbie]) {
        cl.expect_silence(QUIET);
    }
    for (k, n) in [n1, n2, n3, n4].into_iter().enumerate() {
        let list = n.call(SYS_A, "/api/get_online_list", json!({"groupName": "g"}));
        assert_eq!(
            list["count"],
            json!(4),
            "online list on node {}: {list}",
            k + 1
        );
        assert_not_partial(&list, "get_online_list");
    }
    // A push from node 4 to a client of node 1.
    let d = n4.send_to_client(SYS_A, &old[0].client_id, "from 4", json!(4));
    assert_eq!(d["online"], json!(true));
    expect_message(&mut old[0], &message_id_of(&d), WAIT);

    // Nobody was restarted.
    let now: Vec<i32> = c.nodes[..3].iter().map(|n| n.pid()).collect();
    assert_eq!(now, pids, "the running nodes were restarted");
    assert!(c.nodes[..3].iter().all(|n| n.alive()));
}

#[test]
fn a_terminated_node_is_dropped_by_its_peers_at_once() {
    let mut c = start_cluster(3);
    let (n1, n2, n3) = (&c[0], &c[1], &c[2]);
    let mut a = n1.ws(SYS_A);
    let mut b = n2.ws(SYS_A);
    let mut x = n3.ws(SYS_A);
    bind_in_order(
        "g",
        &mut [(&n1.node, &mut a), (&n2.node, &mut b), (&n3.node, &mut x)],
    );
    let xid = x.client_id.clone();
    let live: BTreeSet<String> = [a.client_id.clone(), b.client_id.clone()].into();

    // The terminated node's client is read on its own thread (close 1001 of
    // docs/api.md §2).
    let reader = std::thread::spawn(move || x.expect_close(Duration::from_secs(10)));
    n3.sigterm();
    let termed = Instant::now();
    let clean_from = termed + Duration::from_secs(1);
    let mut first_false = [None, None];
    let mut first_clean_list = None;
    while Instant::now() < clean_from + Duration::from_millis(500) {
        for (k, n) in [n1, n2].into_iter().enumerate() {
            let ans = api_timed(n, "/api/is_online", Some(SYS_A), &json!({"clientId": xid}));
            ans.within(CALL_LIMIT, "is_online of a terminating node's client");
            let data = ans.ok();
            if ans.sent_at >= clean_from {
                assert_eq!(
                    data,
                    json!({"online": false}),
                    "is_online on node {} {} after SIGTERM",
                    k + 1,
                    secs(ans.sent_at - termed)
                );
            }
            if data["online"] == json!(false) && first_false[k].is_none() {
                first_false[k] = Some(ans.sent_at - termed);
            }
        }
        let ans = api_timed(
            n1,
            "/api/get_online_list",
            Some(SYS_A),
            &json!({"groupName": "g"}),
        );
        ans.within(CALL_LIMIT, "get_online_list while a node terminates");
        let data = ans.ok();
        let clean = data.get("partial").is_none() && id_set(&data["list"]) == live;
        if ans.sent_at >= clean_from {
            assert!(
                clean,
                "online list {} after SIGTERM: {data}",
                secs(ans.sent_at - termed)
            );
            assert_eq!(data["count"], json!(2), "{data}");
        }
        if clean && first_clean_list.is_none() {
            first_clean_list = Some(ans.sent_at - termed);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let fmt = |d: Option<Duration>| d.map(secs).unwrap_or_else(|| "never".into());
    eprintln!(
        "[cluster] SIGTERM: is_online false on node 1 after {}, on node 2 after {}; \
         clean online list after {}",
        fmt(first_false[0]),
        fmt(first_false[1]),
        fmt(first_clean_list)
    );
    assert_eq!(
        reader.join().unwrap(),
        1001,
        "close code of a node's shutdown"
    );
    // Whether the drain sends offline notices for its clients is not settled by the
    // contract; at most one per member, and nothing else, may have arrived.
    for cl in [&mut a, &mut b] {
        let frames = cl.drain(QUIET);
        assert!(frames.len() <= 1, "{frames:?}");
        for f in &frames {
            assert_notice(f, 1002, &xid, "", "");
        }
    }
    // The survivors still serve each other, with no partial answers.
    for n in [n1, n2] {
        let d = n.call(
            SYS_A,
            "/api/send_to_group",
            json!({"groupName": "g", "msg": "after"}),
        );
        let mid = message_id_of(&d);
        assert_eq!(d, json!({ "messageId": mid }), "group send after SIGTERM");
        for cl in [&mut a, &mut b] {
            expect_message(cl, &mid, WAIT);
            cl.expect_silence(QUIET);
        }
    }
    let st = c[2].wait_exit(Duration::from_secs(12));
    assert!(st.success(), "SIGTERM exit status {st}");
}
