//! Session resume (docs/api.md §8), with raw sockets so that a drop is a real TCP reset:
//! pushes of every kind sent in the gap arrive after the resume, in order, byte for byte,
//! with the same clientId and no notices or webhooks; frames written but not read are
//! replayed from `last`; expiry sends the offline notices and the disconnect once; an
//! overflowing buffer says `recovered:false`; tokens that cannot be honoured give new
//! connections; a half-open session is taken over; goodbyes are final; token mode; a
//! resume landing on another core than its session's.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    api::{assert_message_id, expect_ok},
    node::Node,
    raw_frames::{raw_ws_handshake, read_raw_frame, write_raw_frame},
    raw_ws::Raw,
    receiver::{Hook, Receiver},
    ws::{assert_notice, is_notice},
    QUIET, SYS_A, SYS_B, WAIT,
};

const ON: &str = "[ws]\nresume_window = \"20s\"\nping_interval = \"1s\"\n";

fn send(node: &Node, route: &str, body: Value) -> String {
    let data = node.call(SYS_A, &format!("/api/{route}"), body);
    assert_message_id(&data["messageId"])
}

/// `n` pushes to `id` ("m0", "m1", …), one request after another; their messageIds.
fn pushes(node: &Node, id: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            send(
                node,
                "send_to_client",
                json!({"clientId": id, "msg": format!("m{i}")}),
            )
        })
        .collect()
}

/// `shardcast_resumes_total{result}` now.
fn resumes(node: &Node, result: &str) -> f64 {
    let m = node.metrics();
    m.sum_where("shardcast_resumes_total", &[("result", result)])
}

fn info(node: &Node, client_id: &str) -> Value {
    node.call(
        SYS_A,
        "/api/get_client_info",
        json!({ "clientId": client_id }),
    )
}

/// Waits until the node has detached `client_id` (it saw the drop).
fn wait_detached(node: &Node, client_id: &str) {
    let deadline = Instant::now() + WAIT;
    while info(node, client_id)["detached"] != json!(true) {
        assert!(
            Instant::now() < deadline,
            "{client_id} not detached: {}",
            info(node, client_id)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pushes_of_every_kind_sent_in_the_gap_arrive_after_the_resume_in_order() {
    let receiver = Receiver::ok();
    let hook = format!("[webhook]\nurl = \"{}\"\n", receiver.url("/hook"));
    let node = Node::start(&format!("{ON}{hook}"));
    let mut a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    let mut observer = node.ws(SYS_A);
    node.bind(SYS_A, &id, "room", "alice", "{\"k\":1}");
    node.bind(SYS_A, &observer.client_id, "room", "", "");
    a.drain(QUIET);
    let before = send(
        &node,
        "send_to_client",
        json!({"clientId": id, "msg": "before"}),
    );
    let got = a.ids(1);
    assert_eq!(got, std::slice::from_ref(&before));
    observer.drain(QUIET);
    receiver.wait_for("the connect", |e| e.iter().any(|e| e["event"] == "connect"));

    let resume = a.resume_query(SYS_A, &before);
    a.reset();
    wait_detached(&node, &id);
    assert!(
        node.is_online(SYS_A, &id),
        "a detached connection is online"
    );
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "room"}));
    assert!(list.to_string().contains(&id), "still listed: {list}");
    let sent = vec![
        send(
            &node,
            "send_to_client",
            json!({"clientId": id, "msg": "client"}),
        ),
        send(
            &node,
            "send_to_group",
            json!({"groupName": "room", "msg": "group"}),
        ),
        send(
            &node,
            "send_to_user",
            json!({"userId": "alice", "msg": "user"}),
        ),
        send(&node, "send_to_system", json!({"msg": "system"})),
    ];

    let mut back = Raw::open(&node, &resume);
    let w = &back.welcome["data"];
    assert_eq!(w["clientId"], json!(id), "the same clientId: {w}");
    assert_eq!(
        (w["resumed"].clone(), w["recovered"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(back.ids(4), sent, "every push of the gap, in order");
    back.expect_silence(QUIET);
    let after = send(
        &node,
        "send_to_group",
        json!({"groupName": "room", "msg": "after"}),
    );
    assert_eq!(back.ids(1), [after]);
    assert_eq!(info(&node, &id).get("detached"), None, "attached again");

    let seen = observer.drain(QUIET);
    assert!(
        !seen.iter().any(is_notice),
        "no notice for the group: {seen:?}"
    );
    std::thread::sleep(QUIET);
    let events: Vec<Value> = receiver.hooks().iter().map(Hook::json).collect();
    let of_a: Vec<&Value> = events
        .iter()
        .filter(|e| e["clientId"] == json!(id))
        .collect();
    assert_eq!(
        of_a.len(),
        1,
        "only the first connect, no disconnect: {of_a:?}"
    );
    assert_eq!(resumes(&node, "resumed"), 1.0);
}

#[test]
fn frames_written_but_not_read_are_replayed_from_last() {
    let node = Node::start(ON);
    let mut a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    let sent: Vec<String> = pushes(&node, &id, 5);
    // The client processed the first two; three more are in its socket, unread.
    assert_eq!(a.ids(2), sent[..2]);
    let resume = a.resume_query(SYS_A, &sent[1]);
    a.reset();
    wait_detached(&node, &id);

    let mut back = Raw::open(&node, &resume);
    assert_eq!(back.welcome["data"]["recovered"], json!(true));
    let first = back.next_raw(WAIT).expect("a replayed frame");
    let expected = format!(
        "{{\"messageId\":\"{}\",\"sendUserId\":\"\",\"code\":0,\"msg\":\"m2\"",
        sent[2]
    );
    assert!(
        String::from_utf8_lossy(&first).starts_with(&expected),
        "byte for byte as first sent: {}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(back.ids(2), sent[3..]);
    back.expect_silence(QUIET);

    // `last` empty: everything kept is replayed, and nothing was lost.
    let resume = back.resume_query(SYS_A, "");
    back.reset();
    wait_detached(&node, &id);
    let mut again = Raw::open(&node, &resume);
    assert_eq!(again.welcome["data"]["recovered"], json!(true));
    assert_eq!(again.ids(5), sent);
}

#[test]
fn expiry_sends_the_offline_notice_and_the_disconnect_once() {
    let receiver = Receiver::ok();
    let node = Node::start(&format!(
        "[ws]\nresume_window = \"1s\"\nping_interval = \"1s\"\n[webhook]\nurl = \"{}\"\n",
        receiver.url("/hook")
    ));
    let a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    let mut observer = node.ws(SYS_A);
    node.bind(SYS_A, &id, "room", "alice", "");
    node.bind(SYS_A, &observer.client_id, "room", "", "");
    send(
        &node,
        "send_to_group",
        json!({"groupName": "room", "msg": "kept"}),
    );
    observer.drain(QUIET);
    let resume = a.resume_query(SYS_A, "");
    let dropped = Instant::now();
    a.reset();
    wait_detached(&node, &id);
    assert!(!observer
        .drain(Duration::from_millis(500))
        .iter()
        .any(is_notice));

    let notice = observer.expect_json_where(WAIT, is_notice);
    assert!(
        dropped.elapsed() >= Duration::from_secs(1),
        "not before the window ends"
    );
    assert_notice(&notice, 1002, &id, "alice", "");
    observer.expect_silence(QUIET);
    let events = receiver.wait_for("the disconnect", |e| {
        e.iter()
            .any(|e| e["event"] == "disconnect" && e["clientId"] == json!(id))
    });
    let disconnects: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "disconnect" && e["clientId"] == json!(id))
        .collect();
    assert_eq!(disconnects.len(), 1, "{disconnects:?}");
    let reason = disconnects[0]["reason"].as_str().unwrap_or("");
    assert!(
        ["client_closed", "error"].contains(&reason),
        "the drop's reason: {reason}"
    );
    assert!(!node.is_online(SYS_A, &id));
    let m = node.metrics();
    assert_eq!(m.sum("shardcast_resume_expired_total"), 1.0);
    // Its own online notice, the observer's and the group push were kept; dropped now.
    assert_eq!(m.sum("shardcast_resume_frames_dropped_total"), 3.0);

    let late = Raw::open(&node, &resume);
    let w = &late.welcome["data"];
    assert_eq!(w["resumed"], json!(false), "expired: a new connection: {w}");
    assert_ne!(w["clientId"], json!(id));
}

#[test]
fn an_overflowing_buffer_keeps_the_newest_frames_and_says_so() {
    let node = Node::start(&format!("{ON}resume_buffer_bytes = 2000\n"));
    let a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    let resume = a.resume_query(SYS_A, "");
    a.reset();
    wait_detached(&node, &id);
    let sent: Vec<String> = pushes(&node, &id, 50);
    let mut back = Raw::open(&node, &resume);
    assert_eq!(back.welcome["data"]["resumed"], json!(true));
    assert_eq!(back.welcome["data"]["recovered"], json!(false));
    let mut got = Vec::new();
    while let Some(f) = back.next(QUIET) {
        got.push(assert_message_id(&f["messageId"]));
    }
    assert!(!got.is_empty() && got.len() < 50, "{} kept", got.len());
    assert_eq!(got, sent[50 - got.len()..], "the newest, in order");
    let dropped = node.metric("shardcast_resume_frames_dropped_total");
    assert_eq!(dropped as usize, 50 - got.len());
}

#[test]
fn tokens_that_cannot_be_honoured_give_new_connections() {
    let node = Node::start(ON);
    let a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let (id, token) = (a.client_id(), a.token());
    assert!(token.starts_with("0."), "the node id (0) in clear: {token}");
    a.reset();
    wait_detached(&node, &id);
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let cases = [
        (format!("systemId={SYS_A}&resume={forged}"), SYS_A),
        (format!("systemId={SYS_A}&resume=junk"), SYS_A),
        (format!("systemId={SYS_B}&resume={token}"), SYS_B),
    ];
    for (query, system) in cases {
        let c = Raw::open(&node, &query);
        let w = &c.welcome["data"];
        assert_eq!(w["resumed"], json!(false), "{query}: {w}");
        assert_ne!(w["clientId"], json!(id), "{query}");
        assert!(w["resumeToken"].is_string());
        let cid = c.client_id();
        let data = node.call(system, "/api/is_online", json!({ "clientId": cid }));
        assert_eq!(data["online"], json!(true), "a working new connection");
    }
    assert!(
        info(&node, &id)["detached"] == json!(true),
        "the session is untouched"
    );
    // The genuine token still works. The token it resumed with stands until the
    // client shows it got the new one (its welcome may have been lost): a retry with
    // it comes back as the same connection, the silent socket taken over.
    let back = Raw::open(&node, &format!("systemId={SYS_A}&resume={token}"));
    assert_eq!(back.welcome["data"]["resumed"], json!(true));
    assert_ne!(back.token(), token, "a new token with every welcome");
    let mut retry = Raw::open(&node, &format!("systemId={SYS_A}&resume={token}"));
    assert_eq!(
        retry.welcome["data"]["resumed"],
        json!(true),
        "a lost welcome"
    );
    assert_eq!(retry.client_id(), id);
    drop(back);
    // Once a frame came on the new socket, the old token is spent.
    write_raw_frame(&mut retry.stream, 1, b"ping");
    assert_eq!(retry.next_raw(WAIT).as_deref(), Some(&b"pong"[..]));
    let reuse = Raw::open(&node, &format!("systemId={SYS_A}&resume={token}"));
    assert_eq!(
        reuse.welcome["data"]["resumed"],
        json!(false),
        "an old token is spent"
    );
    assert_eq!(resumes(&node, "invalid"), 3.0);
    assert_eq!(resumes(&node, "unknown"), 1.0);
}

#[test]
fn a_half_open_session_is_taken_over_without_notices() {
    let node = Node::start(ON);
    let mut old = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = old.client_id();
    let mut observer = node.ws(SYS_A);
    node.bind(SYS_A, &id, "room", "", "");
    node.bind(SYS_A, &observer.client_id, "room", "", "");
    observer.drain(QUIET);
    old.drain(QUIET);
    let m1 = send(
        &node,
        "send_to_client",
        json!({"clientId": id, "msg": "one"}),
    );
    assert_eq!(old.ids(1), std::slice::from_ref(&m1));

    // The old socket is still attached (the node saw no drop): the resume takes over.
    let mut new = Raw::open(&node, &old.resume_query(SYS_A, &m1));
    assert_eq!(new.welcome["data"]["resumed"], json!(true));
    assert_eq!(new.client_id(), id);
    assert!(old.closed_within(WAIT), "the half-open socket is closed");
    let m2 = send(
        &node,
        "send_to_group",
        json!({"groupName": "room", "msg": "two"}),
    );
    assert_eq!(new.ids(1), [m2]);
    let seen = observer.drain(QUIET);
    assert!(!seen.iter().any(is_notice), "no notices: {seen:?}");
}

#[test]
fn goodbyes_end_the_session_at_once() {
    let node = Node::start(ON);
    let mut observer = node.ws(SYS_A);
    node.bind(SYS_A, &observer.client_id, "room", "", "");
    // A close frame from the client.
    let mut a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    node.bind(SYS_A, &id, "room", "", "");
    observer.drain(QUIET);
    let resume = a.resume_query(SYS_A, "");
    write_raw_frame(&mut a.stream, 8, &1000u16.to_be_bytes());
    let notice = observer.expect_json_where(WAIT, is_notice);
    assert_notice(&notice, 1002, &id, "", "");
    assert!(!node.is_online(SYS_A, &id));
    let c = Raw::open(&node, &resume);
    assert_eq!(c.welcome["data"]["resumed"], json!(false));
    // close_client.
    let b = Raw::open(&node, &format!("systemId={SYS_A}"));
    let bid = b.client_id();
    let resume = b.resume_query(SYS_A, "");
    expect_ok(node.api(
        "/api/close_client",
        Some(SYS_A),
        &json!({"clientId": bid}).to_string(),
    ));
    assert!(!node.is_online(SYS_A, &bid));
    let c = Raw::open(&node, &resume);
    assert_eq!(c.welcome["data"]["resumed"], json!(false));
}

#[test]
fn with_resume_off_a_drop_ends_the_connection_and_welcomes_carry_no_token() {
    let node = Node::start("");
    let a = Raw::open(&node, &format!("systemId={SYS_A}"));
    assert_eq!(a.welcome["data"].get("resumeToken"), None, "{}", a.welcome);
    let id = a.client_id();
    a.reset();
    node.wait_offline(SYS_A, &id, WAIT);
}

#[test]
fn token_mode_a_resume_needs_a_connect_token_of_the_sessions_user() {
    let admin = "admin-token-0123456789";
    let node = Node::start(&format!(
        "{ON}[api]\nauth = \"token\"\nadmin_token = \"{admin}\"\nconnect_token = \"required\"\nsystems = []\n"
    ));
    let registered = expect_ok(node.api_with_headers(
        "/api/register",
        &[("AdminToken", admin)],
        &json!({ "systemId": "tok" }).to_string(),
    ));
    let secret = registered["token"].as_str().expect("secret");
    let exp = crate::support::now_unix() + 60;
    let mint = |user: &str| shardcast::api::connect_token::mint(user, exp, secret).expect("token");
    let carol = mint("carol");
    let a = Raw::open(&node, &format!("systemId=tok&token={carol}"));
    let id = a.client_id();
    let resume = a.resume_query("tok", "");
    a.reset();
    // The resume token alone is no credential, nor with another user's token.
    let alone = Raw::try_open(&node, &resume);
    assert_eq!(alone.err().map(|v| v["code"].clone()), Some(json!(-1001)));
    let dave = mint("dave");
    let other = Raw::open(&node, &format!("{resume}&token={dave}"));
    assert_eq!(other.welcome["data"]["resumed"], json!(false));
    assert_ne!(other.client_id(), id);
    let back = Raw::open(&node, &format!("{resume}&token={carol}"));
    assert_eq!(
        back.welcome["data"]["resumed"],
        json!(true),
        "{}",
        back.welcome
    );
    assert_eq!(back.client_id(), id);
    // A resume that cannot be honoured is a new connection, which needs a connect token.
    let refused = Raw::try_open(&node, "systemId=tok&resume=0.forged");
    assert_eq!(refused.err().map(|v| v["code"].clone()), Some(json!(-1001)));
    let fresh = Raw::open(
        &node,
        &format!("systemId=tok&resume=0.forged&token={carol}"),
    );
    assert_eq!(fresh.welcome["data"]["resumed"], json!(false));
}

#[test]
fn resumes_land_on_any_core_and_find_their_session() {
    // Two cores: a resume is accepted by whichever core the kernel picks, and half of
    // them pick the other one (16 in a row on the owner: 1 in 65,536).
    let node = Node::start(ON);
    let clients: Vec<Raw> = (0..16)
        .map(|_| Raw::open(&node, &format!("systemId={SYS_A}")))
        .collect();
    let mut sessions = Vec::new();
    for c in clients {
        let id = c.client_id();
        sessions.push((id.clone(), c.resume_query(SYS_A, "")));
        c.reset();
        wait_detached(&node, &id);
    }
    let sent: Vec<String> = sessions
        .iter()
        .map(|(id, _)| {
            send(
                &node,
                "send_to_client",
                json!({"clientId": id, "msg": "gap"}),
            )
        })
        .collect();
    for ((id, query), mid) in sessions.iter().zip(sent) {
        let mut back = Raw::open(&node, query);
        assert_eq!(back.client_id(), *id);
        assert_eq!(back.welcome["data"]["resumed"], json!(true));
        assert_eq!(back.ids(1), [mid]);
        let after = send(
            &node,
            "send_to_client",
            json!({"clientId": id, "msg": "after"}),
        );
        assert_eq!(
            back.ids(1),
            [after],
            "the moved socket is read and written by its core"
        );
    }
    let handoffs = node.metric("shardcast_resume_handoffs_total");
    assert!(handoffs > 0.0, "no resume was accepted by the other core");
}

#[test]
fn a_drop_found_by_a_write_detaches_too() {
    a_drop_found_by_a_write_detaches_too_with("");
    // A queue bound this small makes most of the pushes after the reset find the
    // connection marked to close by a failed write and not yet detached: they are kept all
    // the same (the replay log takes every fan-out, whatever becomes of its queues).
    a_drop_found_by_a_write_detaches_too_with("send_queue_bytes = 200\n");
}

/// The recipe: a member of a group reads p0 and resets; at once a keep-alive
/// connection pipelines 400 sends to its group; the resume from p0 gets all 400.
#[test]
fn pipelined_group_sends_after_a_reset_are_all_replayed() {
    let node = Node::start(&format!(
        "[server]\nworkers = 1\n{ON}send_queue_bytes = 200\nnotices = false\n"
    ));
    let mut a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    node.bind(SYS_A, &id, "g", "", "");
    let p0 = send(
        &node,
        "send_to_group",
        json!({"groupName": "g", "msg": "p0"}),
    );
    assert_eq!(a.ids(1), std::slice::from_ref(&p0));
    let resume = a.resume_query(SYS_A, &p0);
    a.reset();
    let mut http = crate::support::http::HttpConn::connect(node.addr());
    let body = json!({"groupName": "g", "msg": "x"}).to_string();
    let headers = [("SystemId", SYS_A)];
    let request = http.format_request("POST", "/api/send_to_group", &headers, body.as_bytes());
    let all: Vec<u8> = (0..400).flat_map(|_| request.clone()).collect();
    http.send_raw(&all);
    let sent: Vec<String> = (0..400)
        .map(|_| {
            let r = http.read_response(WAIT).expect("an answer");
            assert_message_id(&r.json()["data"]["messageId"])
        })
        .collect();
    wait_detached(&node, &id);
    let mut back = Raw::open(&node, &resume);
    assert_eq!(back.welcome["data"]["recovered"], json!(true));
    assert_eq!(back.ids(400), sent);
    back.expect_silence(QUIET);
}

fn a_drop_found_by_a_write_detaches_too_with(extra: &str) {
    // Pushes right after the reset: the node may learn of the drop from a failed write
    // (the connection is marked to close, then detached) rather than from a read.
    let node = Node::start(&format!("{ON}{extra}"));
    let a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    let resume = a.resume_query(SYS_A, "");
    a.reset();
    let sent: Vec<String> = pushes(&node, &id, 20);
    wait_detached(&node, &id);
    let mut back = Raw::open(&node, &resume);
    assert_eq!(back.welcome["data"]["resumed"], json!(true));
    assert_eq!(back.welcome["data"]["recovered"], json!(true));
    assert_eq!(back.ids(20), sent);
    let after = send(
        &node,
        "send_to_client",
        json!({"clientId": id, "msg": "after"}),
    );
    assert_eq!(back.ids(1), [after], "the session takes new frames");
}

/// A resume finding the session's socket attached probes it with a ping: one that
/// answers keeps its session (the resume is a new connection); a silent one is
/// taken over (`a_half_open_session_is_taken_over_without_notices`).
#[test]
fn a_copied_token_does_not_take_over_a_socket_that_answers() {
    let node = Node::start(&format!("{ON}takeover_probe = \"500ms\"\n"));
    let mut a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    let copied = a.resume_query(SYS_A, "");
    let before = send(
        &node,
        "send_to_client",
        json!({"clientId": id, "msg": "mine"}),
    );
    assert_eq!(a.ids(1), [before]);
    // The owner answers every ping with its pong, as browsers do.
    let answering = std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some((9, payload)) = read_raw_frame(&mut a.stream, QUIET) {
                write_raw_frame(&mut a.stream, 10, &payload);
                return a;
            }
        }
        panic!("no probe came");
    });
    let thief = Raw::open(&node, &copied);
    let w = &thief.welcome["data"];
    assert_eq!(w["resumed"], json!(false), "{w}");
    assert_ne!(thief.client_id(), id);
    let mut a = answering.join().expect("owner thread");
    assert_eq!(resumes(&node, "refused"), 1.0);
    assert_ne!(info(&node, &id)["detached"], json!(true));
    let after = send(
        &node,
        "send_to_client",
        json!({"clientId": id, "msg": "still mine"}),
    );
    assert_eq!(a.ids(1), [after], "the owner keeps its session");
}

/// Detached sessions hold no `server.max_connections` place; `ws.max_detached`
/// bounds them, the oldest ending first with its offline notice and disconnect.
#[test]
fn detached_sessions_hold_no_places_and_the_oldest_ends_past_max_detached() {
    let receiver = Receiver::ok();
    let node = Node::start(&format!(
        "[server]\nworkers = 1\nmax_connections = 3\n{ON}max_detached = 2\n[webhook]\nurl = \"{}\"\n",
        receiver.url("/hook")
    ));
    let mut observer = node.ws(SYS_A);
    node.bind(SYS_A, &observer.client_id, "room", "", "");
    let mut dropped = Vec::new();
    for _ in 0..3 {
        let a = Raw::open(&node, &format!("systemId={SYS_A}"));
        let id = a.client_id();
        node.bind(SYS_A, &id, "room", "", "");
        let resume = a.resume_query(SYS_A, "");
        a.reset();
        wait_detached(&node, &id);
        dropped.push((id, resume));
    }
    // Three drops with two places left for sockets: each new socket found one.
    let mut extra: Vec<Raw> = (0..2)
        .map(|_| Raw::open(&node, &format!("systemId={SYS_A}")))
        .collect();
    let mut full = std::net::TcpStream::connect(node.addr()).expect("connect");
    let path = format!("/ws?systemId={SYS_A}");
    let (status, _) = raw_ws_handshake(&mut full, node.addr(), &path, "");
    assert_eq!(status, 503, "max_connections counts sockets");
    // They say goodbye (dropped, they would detach too), and give their places back.
    for r in &mut extra {
        write_raw_frame(&mut r.stream, 8, &1000u16.to_be_bytes());
        assert!(r.closed_within(WAIT));
    }
    // The first of the three ended when the third detached; the other two wait.
    let (first, _) = &dropped[0];
    assert!(!node.is_online(SYS_A, first), "the oldest ended");
    let offline = observer.expect_json_where(WAIT, |f| {
        is_notice(f) && f.to_string().contains(first.as_str()) && f["code"] == json!(1002)
    });
    assert_notice(&offline, 1002, first, "", "");
    receiver.wait_for("its disconnect", |e| {
        e.iter()
            .any(|e| e["event"] == "disconnect" && e["clientId"] == json!(first))
    });
    for (id, resume) in &dropped[1..] {
        assert_eq!(info(&node, id)["detached"], json!(true));
        let back = Raw::open(&node, resume);
        assert_eq!(back.welcome["data"]["resumed"], json!(true), "{id}");
    }
}

/// docs/api.md §10: a resume replays each missed push in the form its new socket agreed
/// to — here a connection without deflate comes back offering it, and the 2 KB push it
/// missed arrives compressed; a small one plain.
#[test]
fn a_resume_replays_in_the_form_its_new_socket_agreed_to() {
    use crate::support::deflate::DeflateClient;
    let node = Node::start(ON);
    let mut a = Raw::open(&node, &format!("systemId={SYS_A}"));
    let id = a.client_id();
    let before = send(
        &node,
        "send_to_client",
        json!({"clientId": id, "msg": "before"}),
    );
    assert_eq!(a.ids(1), std::slice::from_ref(&before));
    let resume = a.resume_query(SYS_A, &before);
    a.reset();
    wait_detached(&node, &id);
    let big = json!({"rows": vec!["the same row of a report, again"; 80]});
    let missed = [
        send(
            &node,
            "send_to_client",
            json!({"clientId": id, "data": big}),
        ),
        send(
            &node,
            "send_to_client",
            json!({"clientId": id, "msg": "small"}),
        ),
    ];
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut back = DeflateClient::connect_query(&node, &resume, offer);
    assert!(back.agreed.is_some(), "deflate not agreed on the resume");
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let (_, compressed, payload) = back.next_message(WAIT).expect("the replay");
        let v: Value = serde_json::from_slice(&payload).expect("JSON");
        if let Some(mid) = v["messageId"]
            .as_str()
            .filter(|m| missed.contains(&m.to_string()))
        {
            got.push((mid.to_string(), compressed, v));
        }
    }
    assert_eq!(got[0].0, missed[0]);
    assert!(
        got[0].1,
        "the 2 KB push was replayed plain to a deflate socket"
    );
    assert_eq!(got[0].2["data"], big);
    assert_eq!((got[1].0.as_str(), got[1].1), (missed[1].as_str(), false));
}
