//! The cluster port (docs/api.md §1; docs/cluster.md, the link handshake and frames):
//! garbage, an absurd length prefix or a bad checksum closes that connection and nothing
//! else; a node without the shared `cluster.secret` gets no link — it cannot push to the
//! cluster's clients and they do not receive anything through it.
//!
//! Someone who can write to etcd but lacks the secret gets no link either: a fake node
//! address that relays a real node's handshake to another node is refused (the proof
//! names the node it was meant for), and so is a Hello claiming a node id that
//! membership does not list, or the acceptor's own. Nor can they write a line into the
//! nodes' logs: a node record whose `addr` carries a line break is ignored and counted,
//! and values from etcd are logged escaped.
//!
//! Assumptions where the contract is silent:
//! - A connection that sends bytes which cannot start a valid handshake is closed by the
//!   node within 5 s (at once for a bad length or checksum; a handshake timeout covers
//!   a length that merely promises more bytes).
//! - A node with the wrong secret still becomes ready (readiness is "joined" = registered
//!   in etcd, docs/api.md §4); its peers see it in etcd and fail its handshake. Towards
//!   its clients, sends answer offline (possibly `partial: true`) or 503 `服务繁忙`,
//!   within `request_timeout` + 0.5 s; bind/close/info answer 503 `服务繁忙`
//!   (docs/api.md §4 "Cluster rules"), and the same holds in the other direction.

use crate::support::{
    api::{api_timed, message_id_of, Answer},
    cluster::{seal_entry, start_cluster, Etcd, CALL_LIMIT},
    http::wait_eof,
    link_proxy::{LinkProxy, Tamper},
    node::Node,
    raw_frames::{garbage, push_ws_frame, write_raw},
    ws::{assert_notice, expect_message, expect_messages, Client},
    QUIET, SYS_A, WAIT,
};
use base64::Engine as _;
use bytes::BytesMut;
use serde_json::json;
use shardcast::cluster::frame::{self, Frame, PROTOCOL_VERSION};
use std::io::Read;
use std::time::{Duration, Instant};

/// A short look for frames already on their way (after a longer wait elsewhere).
const BRIEF: Duration = Duration::from_millis(50);

/// Cross-node pushes both ways between nodes 1 and 2, answered exactly (no `partial`).
fn pushes_work(n1: &Node, n2: &Node, a: &mut Client, b: &mut Client) {
    let d = n1.send_to_client(SYS_A, &b.client_id, "1->2", json!(1));
    assert_eq!(d, json!({"messageId": message_id_of(&d), "online": true}));
    expect_message(b, &message_id_of(&d), WAIT);
    let d = n2.send_to_client(SYS_A, &a.client_id, "2->1", json!(2));
    assert_eq!(d, json!({"messageId": message_id_of(&d), "online": true}));
    expect_message(a, &message_id_of(&d), WAIT);
}

#[test]
fn garbage_on_the_cluster_port_closes_that_connection_only() {
    let c = start_cluster(2);
    let (n1, n2) = (&c[0], &c[1]);
    let mut a = n1.ws(SYS_A);
    let mut b = n2.ws(SYS_A);
    pushes_work(n1, n2, &mut a, &mut b);
    let target = n1.cluster_addr();

    // 1 KiB of (reproducible) random bytes.
    let random = garbage(0x5eed_0001, 1024);
    // A frame header announcing a 4 GiB body (u32::MAX), with some body bytes.
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    huge.extend_from_slice(&garbage(0x5eed_0002, 1016));
    // A small, complete frame whose checksum is wrong.
    let mut bad_crc = 16u32.to_le_bytes().to_vec();
    bad_crc.extend_from_slice(&0x1234_5678_u32.to_le_bytes());
    bad_crc.extend_from_slice(&[0u8; 16]);
    // Bytes that look like HTTP (a port scanner or a misconfigured balancer).
    let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();

    let cases = [
        ("1 KiB of random bytes", random),
        ("a 4 GiB length header", huge),
        ("a frame with a bad checksum", bad_crc),
        ("an HTTP request", http),
    ];
    let mut streams: Vec<_> = cases
        .iter()
        .map(|(what, bytes)| (*what, Instant::now(), write_raw(&target, bytes)))
        .collect();
    for (what, sent, s) in streams.iter_mut() {
        let left = (*sent + Duration::from_secs(5)).saturating_duration_since(Instant::now());
        let closed = wait_eof(s, left);
        assert!(
            closed.is_some(),
            "{what}: the node kept the connection open for 5 s"
        );
        eprintln!(
            "[cluster] {what}: connection closed by the node after {:.3}s",
            sent.elapsed().as_secs_f64()
        );
    }

    // The node is alive and healthy, and the cluster still works both ways.
    assert!(n1.alive(), "node 1 died");
    let h = n1.get("/healthz");
    assert_eq!((h.status, h.text().trim()), (200, "ok"), "healthz");
    pushes_work(n1, n2, &mut a, &mut b);
    let d = n2.call(SYS_A, "/api/send_to_system", json!({"msg": "all"}));
    assert_eq!(d, json!({"messageId": message_id_of(&d)}));
    for x in [&mut a, &mut b] {
        expect_message(x, &message_id_of(&d), WAIT);
        x.expect_silence(QUIET);
    }
    // Many short garbage connections at once do not hurt either.
    let start = Instant::now();
    let mut many: Vec<_> = (0..50u64)
        .map(|i| write_raw(&target, &garbage(i, 64)))
        .collect();
    for (i, s) in many.iter_mut().enumerate() {
        let left = (start + Duration::from_secs(5)).saturating_duration_since(Instant::now());
        assert!(
            wait_eof(s, left).is_some(),
            "garbage connection {i} not closed"
        );
    }
    assert!(n1.alive(), "node 1 died");
    pushes_work(n1, n2, &mut a, &mut b);
}

/// A send to a client unreachable because of a refused link: offline (partial allowed)
/// or 503 `服务繁忙`, within `CALL_LIMIT`.
fn assert_send_refused(ans: &Answer, what: &str) {
    ans.within(CALL_LIMIT, what);
    if ans.status == 503 {
        assert!(ans.is_err(503, "服务繁忙"), "{what}: {}", ans.body);
        return;
    }
    let d = ans.ok();
    assert_eq!(d["online"], json!(false), "{what}: {d}");
    if d.get("partial").is_some() {
        assert!(ans.partial(), "{what}: {d}");
    }
}

#[test]
fn a_node_with_a_wrong_secret_gets_no_link() {
    let mut c = start_cluster(2);
    // A node without the cluster secret cannot open the registry entries sealed with it
    // (docs/cluster.md "Keys"), so it would not even know SYS_A. For the links to be what
    // is tested, SYS_A's entry is replaced by one sealed with the rogue's secret: the
    // rogue opens it, nodes 1 and 2 ignore it and keep the entry they had.
    const ROGUE_SECRET: &str = "not-the-cluster-secret";
    let rogue_entry = seal_entry(ROGUE_SECRET, SYS_A, &json!({}));
    c.etcd.put_system_entry(SYS_A, &rogue_entry);
    let rejected = "shardcast_registry_entries_rejected_total";
    for n in &c.nodes {
        n.wait_metric(rejected, WAIT, "the rogue's entry ignored", |v| v == 1.0);
    }
    let i = c.add_node(&format!("[cluster]\nsecret = \"{ROGUE_SECRET}\""));
    let (n1, n2, rogue) = (&c[0], &c[1], &c[i]);
    let mut a = n1.ws(SYS_A);
    let mut b = n2.ws(SYS_A);
    let mut r = rogue.ws(SYS_A);
    let (aid, rid) = (a.client_id.clone(), r.client_id.clone());
    // a is in "g" (bound on node 1); r joins "g" on its own node.
    n1.bind(SYS_A, &aid, "g", "", "");
    assert_notice(&a.expect_json(WAIT), 1001, &aid, "", "");
    rogue.bind(SYS_A, &rid, "g", "", "");
    assert_notice(&r.expect_json(WAIT), 1001, &rid, "", "");
    // Let the links try (and fail) for a while.
    std::thread::sleep(Duration::from_secs(1));
    a.expect_silence(QUIET); // no online notice of r through a refused link

    // Node 1 → the rogue's client.
    let ans = api_timed(
        n1,
        "/api/send_to_client",
        Some(SYS_A),
        &json!({"clientId": rid, "msg": "leak"}),
    );
    assert_send_refused(&ans, "node 1 → rogue client");
    let ans = api_timed(n1, "/api/is_online", Some(SYS_A), &json!({"clientId": rid}));
    assert_send_refused(&ans, "is_online of the rogue's client");
    for path in ["/api/get_client_info", "/api/close_client"] {
        let ans = api_timed(n1, path, Some(SYS_A), &json!({"clientId": rid}));
        ans.within(CALL_LIMIT, path);
        assert!(
            ans.is_err(503, "服务繁忙"),
            "{path} via node 1: {}",
            ans.body
        );
    }
    let ans = api_timed(
        n1,
        "/api/send_to_system",
        Some(SYS_A),
        &json!({"msg": "system"}),
    );
    ans.within(CALL_LIMIT, "send_to_system with a refused node");
    let mid = message_id_of(&ans.ok());
    let ans = api_timed(
        n1,
        "/api/send_to_group",
        Some(SYS_A),
        &json!({"groupName": "g", "msg": "group"}),
    );
    ans.within(CALL_LIMIT, "send_to_group with a refused node");
    let gmid = message_id_of(&ans.ok());
    expect_messages(&mut a, &[mid.clone(), gmid], WAIT);
    expect_messages(&mut b, &[mid], WAIT);
    let ans = api_timed(
        n1,
        "/api/get_online_list",
        Some(SYS_A),
        &json!({"groupName": "g"}),
    );
    ans.within(CALL_LIMIT, "get_online_list with a refused node");
    let list = ans.ok();
    assert_eq!(list["list"], json!([aid]), "{list}");

    // The rogue → the cluster's clients.
    for to in [&aid, &b.client_id] {
        let ans = api_timed(
            rogue,
            "/api/send_to_client",
            Some(SYS_A),
            &json!({"clientId": to, "msg": "forged"}),
        );
        assert_send_refused(&ans, "rogue → cluster client");
    }
    for (path, body) in [
        (
            "/api/bind_to_group",
            json!({"clientId": aid, "groupName": "evil"}),
        ),
        ("/api/close_client", json!({ "clientId": aid })),
    ] {
        let ans = api_timed(rogue, path, Some(SYS_A), &body);
        ans.within(CALL_LIMIT, path);
        assert!(
            ans.is_err(503, "服务繁忙"),
            "{path} via the rogue: {}",
            ans.body
        );
    }
    for (path, body) in [
        ("/api/send_to_system", json!({"msg": "forged"})),
        (
            "/api/send_to_group",
            json!({"groupName": "g", "msg": "forged"}),
        ),
    ] {
        let ans = api_timed(rogue, path, Some(SYS_A), &body);
        ans.within(CALL_LIMIT, path);
    }
    a.expect_silence(QUIET);
    b.expect_silence(BRIEF);
    // The rogue's own client got only its own node's pushes (the rogue's system and
    // group sends), never anything from node 1.
    for f in r.drain(QUIET) {
        assert_eq!(f["msg"], json!("forged"), "the rogue's client got {f}");
    }
    // A reconnect with backoff must not get through later either.
    std::thread::sleep(Duration::from_millis(1500));
    let ans = api_timed(
        n1,
        "/api/send_to_client",
        Some(SYS_A),
        &json!({"clientId": rid, "msg": "leak"}),
    );
    assert_send_refused(&ans, "node 1 → rogue client, later");
    let ans = api_timed(
        rogue,
        "/api/send_to_client",
        Some(SYS_A),
        &json!({"clientId": aid, "msg": "forged"}),
    );
    assert_send_refused(&ans, "rogue → cluster client, later");
    a.expect_silence(QUIET);
    r.expect_silence(BRIEF);

    // a was neither closed nor re-bound by the rogue.
    assert!(n1.is_online(SYS_A, &aid));
    let info = n2.call(SYS_A, "/api/get_client_info", json!({ "clientId": aid }));
    assert_eq!(info["groups"], json!(["g"]), "{info}");
    // Nodes 1 and 2 still serve each other exactly.
    pushes_work(n1, n2, &mut a, &mut b);
}

/// Puts a node record `nodes/<id>` with `addr` into the test cluster's etcd, as anyone
/// with write access to etcd could (no lease: it stays).
fn register_fake_node(etcd: &Etcd, id: u16, addr: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = format!("{}nodes/{id}", etcd.cluster_prefix());
    let value = json!({"addr": addr, "cores": 1, "version": "0.1.0", "started": 1});
    etcd.post(
        "/v3/kv/put",
        json!({"key": b64.encode(key), "value": b64.encode(value.to_string())}),
    );
}

/// A System push to `SYS_A` in the unsealed frame format, as a relay would inject it.
fn injected_push(msg: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode(
        &Frame::System {
            req: 1,
            system: SYS_A.to_string(),
            frame: push_ws_frame("00000000bad0bad0", msg),
        },
        &mut out,
    )
    .expect("encode");
    out.to_vec()
}

#[test]
fn a_relay_with_etcd_access_but_no_secret_gets_no_link() {
    let c = start_cluster(2);
    let (n1, n2) = (&c[0], &c[1]);
    let mut a = n1.ws(SYS_A);
    let mut b = n2.ws(SYS_A);
    pushes_work(n1, n2, &mut a, &mut b);

    // A fake node 4000 whose address is a relay to node 2: the real nodes dial it (it
    // is in etcd), and the relay hands their handshakes to node 2. Once node 2 welcomes
    // a relayed link, the relay keeps it and injects a push.
    let relay = LinkProxy::start();
    relay.set_upstream(&n2.cluster_addr());
    relay.hold_upstream();
    relay.arm(Tamper::Inject(injected_push("relayed-injection")));
    register_fake_node(&c.etcd, 4000, &relay.addr());
    // Let the nodes dial the fake node a few times (backoff 100, 200, 400, 800 ms).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        relay.welcomes(),
        0,
        "node 2 welcomed a link relayed from a fake node address"
    );
    assert_eq!(relay.fired(), 0, "the relay injected into an accepted link");
    for x in [&mut a, &mut b] {
        let got = x.drain(QUIET);
        assert!(
            got.iter().all(|m| m["msg"] != json!("relayed-injection")),
            "the relay's push was delivered: {got:?}"
        );
    }
    let log = n2.log();
    assert!(
        log.contains("refused a cluster link"),
        "node 2 did not log the refused relay"
    );

    // A Hello claiming a node id membership does not list, or node 2's own id, gets no
    // Challenge: the connection is closed (at once for its own id; for an unlisted one
    // after the acceptor's bounded wait for its view, docs/cluster.md "Handshake").
    let own = n2.call(
        SYS_A,
        "/api/get_client_info",
        json!({"clientId": b.client_id}),
    )["node"]
        .as_u64()
        .expect("node of get_client_info") as u16;
    for (what, claimed) in [("an unlisted node id", 4242u16), ("node 2's own id", own)] {
        let mut hello = BytesMut::new();
        frame::encode(
            &Frame::Hello {
                version: PROTOCOL_VERSION,
                cluster: c.etcd.cluster_name().to_string(),
                node: claimed,
                core: 0,
                nonce: [7; 16],
            },
            &mut hello,
        )
        .expect("encode");
        let mut s = write_raw(&n2.cluster_addr(), &hello);
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "a Hello claiming {what} got an answer ({} bytes): a Challenge",
            answer.len()
        );
    }

    // The real nodes still serve each other exactly.
    assert!(n1.alive() && n2.alive());
    pushes_work(n1, n2, &mut a, &mut b);
}

/// A log line that someone who can write to etcd would like the nodes to write.
const FORGED: &str = "2026-01-01T00:00:00.000000Z ERROR shardcast: forged by an etcd writer";

/// A node record whose `addr` carries a line break and then a log line of the writer's
/// choosing (docs/cluster.md "Keys"). Before node addresses were checked, every node wrote
/// that line into its log as a line of its own (`peer joined … addr=…`). Now such a
/// record is no peer: each node ignores it, counts it in
/// `shardcast_node_records_rejected_total` and logs it once, its key and value escaped.
/// A U+2028 line separator or a U+202E bidi control in the address, and a line break in
/// a system key, reach no log unescaped either.
#[test]
fn a_line_break_in_an_etcd_record_forges_no_log_line() {
    let c = start_cluster(2);
    let (n1, n2) = (&c[0], &c[1]);
    let mut a = n1.ws(SYS_A);
    let mut b = n2.ws(SYS_A);

    register_fake_node(&c.etcd, 4001, &format!("127.0.0.1:9\n{FORGED}"));
    register_fake_node(
        &c.etcd,
        4002,
        &format!("127.0.0.1:9\u{2028}{FORGED}\u{202e}"),
    );
    c.etcd
        .put_system_entry(&format!("evil\n{FORGED}"), "v2:AAAA");
    // Long enough for the watch, a dial of the fake nodes and its first retries.
    std::thread::sleep(Duration::from_millis(1500));

    for n in [n1, n2] {
        let log = n.log();
        let forged: Vec<&str> = log
            .lines()
            .filter(|l| l.trim_start().starts_with(&FORGED[..30]))
            .collect();
        assert!(
            forged.is_empty(),
            "{}: forged log lines {forged:?}",
            n.addr()
        );
        for c in ['\u{2028}', '\u{202e}', '\u{85}', '\r'] {
            assert!(
                !log.contains(c),
                "{}: the log holds {c:?} unescaped",
                n.addr()
            );
        }
        let escaped = format!("127.0.0.1:9\\n{FORGED}");
        let rejected: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ignoring an invalid node record"))
            .collect();
        assert_eq!(rejected.len(), 2, "{}: {rejected:#?}", n.addr());
        assert!(
            rejected
                .iter()
                .any(|l| l.contains("nodes/4001") && l.contains(&escaped)),
            "{}: {rejected:#?}",
            n.addr()
        );
        assert!(
            rejected
                .iter()
                .any(|l| l.contains("nodes/4002") && l.contains("\\u{2028}")),
            "{}: {rejected:#?}",
            n.addr()
        );
        let entry = log
            .lines()
            .filter(|l| l.contains("ignoring an invalid registry entry"))
            .collect::<Vec<_>>();
        assert_eq!(entry.len(), 1, "{}: {entry:#?}", n.addr());
        assert!(entry[0].contains("systems/evil\\n2026"), "{}", entry[0]);
        assert!(
            !log.lines()
                .any(|l| l.contains("peer joined") && l.contains("400")),
            "{}: a record with a bad addr became a peer",
            n.addr()
        );
        let m = n.metrics();
        assert_eq!(m.sum("shardcast_node_records_rejected_total"), 2.0);
        assert_eq!(m.sum("shardcast_registry_entries_rejected_total"), 1.0);
    }
    // The real nodes still serve each other exactly.
    pushes_work(n1, n2, &mut a, &mut b);
}
