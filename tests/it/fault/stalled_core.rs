//! A core that stops draining its mailbox (docs/api.md §7; docs/architecture.md,
//! "A `send_to_group`", step 3): one core of a two-core node is held in a ptrace stop
//! (`support::stall`) while the other serves the API. Messages for the stopped core pile
//! up in its mailbox; past the mailbox bound the node answers sends 503 `服务繁忙`.
//!
//! - A send is all-or-nothing across the cores: a 503 means no member anywhere got it
//!   (so a retry never duplicates), a 200 means every member gets it once the core runs
//!   again. The sender's own core is handled first, so a send checked core by core
//!   would reach its members and then be refused for the stopped core.
//! - Group notices (online/offline, never refused) count toward the same bound: a
//!   flood of them fills the stopped core's mailbox and sends are then refused, rather
//!   than the mailbox growing without bound behind notices.
//!
//! In a cluster the same holds for the peers: a refused send is not sent to them.
//!
//! After the stop ends, every test checks that the node drains the backlog and serves.

use crate::support::{
    api::{message_id_of, pipelined},
    cluster::Cluster,
    http::HttpConn,
    node::Node,
    stall::{http_conn_on_running_core, CoreStop},
    ws::{Client, WsEvent},
    StopOnDrop, QUIET, SYS_A, WAIT,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The core held stopped; the API connection lives on the other one (core 0). Core 0
/// comes first when a send walks the cores, so a core-by-core check would hand core 0
/// its part before finding core 1 full.
const STOPPED: usize = 1;
/// Requests written before their answers are read.
const ROUND: usize = 1000;
/// Sends or notices after which a mailbox that never refuses is a failure: well past
/// the bound (65,536 messages, `core/dispatch.rs`).
const CAP: usize = 150_000;
/// How long the stopped core may take to drain its backlog once it runs again.
const DRAIN: Duration = Duration::from_secs(60);
const ROOM: &str = "room";

/// Opens clients of `SYS_A` until one lives on each core (per the per-core
/// `shardcast_connections` gauge); returns them, core 0's first. Extra clients are
/// closed.
pub(super) fn a_client_on_each_core(node: &Node) -> [Client; 2] {
    let mut found: [Option<Client>; 2] = [None, None];
    for _ in 0..64 {
        let before = per_core_connections(node);
        let c = node.ws(SYS_A);
        let after = per_core_connections(node);
        let core = (0..2).find(|&k| after[k] > before[k]);
        match core {
            Some(k) if found[k].is_none() => found[k] = Some(c),
            _ => c.drop_abruptly(),
        }
        if found.iter().all(Option::is_some) {
            let [a, b] = found;
            return [a.unwrap(), b.unwrap()];
        }
    }
    panic!("64 connections and not one on each core");
}

fn per_core_connections(node: &Node) -> [f64; 2] {
    let m = node.metrics();
    [0, 1].map(|k| {
        let k = k.to_string();
        m.sum_where("shardcast_connections", &[("worker", k.as_str())])
    })
}

/// One API call on `conn`: (status, body).
fn call(conn: &mut HttpConn, path: &str, body: Value) -> (u16, Value) {
    conn.api(path, Some(SYS_A), &body.to_string())
}

/// Writes `ROUND` requests, the `i`-th made by `request(i)` as (path, body), then
/// reads their answers; returns their statuses.
fn round(
    conn: &mut HttpConn,
    first: usize,
    request: impl Fn(usize) -> (&'static str, Value),
) -> Vec<u16> {
    let answers = pipelined(conn, SYS_A, (first..first + ROUND).map(request));
    answers.into_iter().map(|(status, _)| status).collect()
}

/// Sends to a group without members on `conn` until the node refuses one (503): they
/// fill the mailbox of a stopped core to its bound. Returns how many were admitted.
pub(super) fn fill_mailbox(conn: &mut HttpConn) -> usize {
    let mut admitted = 0;
    while admitted < CAP {
        let statuses = round(conn, admitted, |i| {
            let body = json!({"groupName": "nobody", "data": i});
            ("/api/send_to_group", body)
        });
        let ok = statuses.iter().take_while(|s| **s == 200).count();
        admitted += ok;
        if ok < ROUND {
            let rest = &statuses[ok..];
            assert!(rest.iter().all(|s| *s == 503), "statuses: {rest:?}");
            return admitted;
        }
    }
    panic!("{admitted} sends queued for a stopped core, none refused");
}

/// `shardcast_api_requests_total{route="send_to_group",result="error"}`, read on `conn`.
fn send_errors(conn: &mut HttpConn) -> f64 {
    let r = conn.request("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "GET /metrics");
    let labels = [("route", "send_to_group"), ("result", "error")];
    crate::support::metrics::Metrics::parse(&r.text())
        .try_sum_where("shardcast_api_requests_total", &labels)
        .unwrap_or(0.0)
}

fn assert_busy(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 503, "{what}: expected 503, got {status} {body}");
    assert_eq!(body["msg"], json!("服务繁忙"), "{what}: {body}");
}

/// Retries a send to `ROOM` every 20 ms while it is refused; returns the messageId of
/// the one admitted. Each attempt carries its own `data` ("after-<n>").
fn send_when_admitted(conn: &mut HttpConn) -> String {
    let deadline = Instant::now() + DRAIN;
    for n in 0.. {
        let (status, body) = call(
            conn,
            "/api/send_to_group",
            json!({"groupName": ROOM, "data": format!("after-{n}")}),
        );
        if status == 200 {
            return message_id_of(&body["data"]);
        }
        assert_busy(status, &body, "a send while the core drains");
        assert!(
            Instant::now() < deadline,
            "the stopped core did not drain its mailbox within {DRAIN:?} of running again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unreachable!()
}

/// Reads `c` until every message of `ids` arrived, asserting that each frame is one of
/// them, arrives once, and that nothing more comes within `QUIET`.
fn expect_exactly(c: &mut Client, ids: &[&str], timeout: Duration) {
    let wanted: HashSet<&str> = ids.iter().copied().collect();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + timeout;
    while seen.len() < wanted.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = c.recv_json(left).unwrap_or_else(|| {
            panic!(
                "client {}: got {seen:?} of {ids:?} within {timeout:?}",
                c.client_id
            )
        });
        let id = v["messageId"].as_str().unwrap_or_default().to_string();
        assert!(
            wanted.contains(id.as_str()),
            "client {}: a frame no admitted send made (a refused send delivered?): {v}",
            c.client_id
        );
        assert!(
            seen.insert(id),
            "client {}: delivered twice: {v}",
            c.client_id
        );
    }
    c.expect_silence(QUIET);
}

#[test]
fn a_send_refused_for_a_full_core_reaches_no_core_and_an_admitted_one_reaches_all() {
    let node = Node::start("");
    refused_sends_go_nowhere(&node, None);
}

/// The same on node 1 of a cluster, with a member on node 2: a refused send is not
/// sent to the peer either, an admitted one reaches it.
#[test]
fn in_a_cluster_a_refused_send_reaches_no_peer_and_an_admitted_one_reaches_all() {
    let c = Cluster::start(2);
    refused_sends_go_nowhere(&c[0], Some(&c[1]));
}

/// Members of `ROOM` on each core of `node` (and one on `peer`), core 1 of `node`
/// stopped, its mailbox filled by sends until they are refused; then sends to the room,
/// the system and the members are each refused whole, and once the core runs again
/// every member gets exactly the admitted sends.
fn refused_sends_go_nowhere(node: &Node, peer: Option<&Node>) {
    let [mut m0, mut m1] = a_client_on_each_core(node);
    let mut far = peer.map(|p| p.ws(SYS_A));
    let mut members: Vec<&mut Client> = vec![&mut m0, &mut m1];
    members.extend(far.as_mut());
    for m in &members {
        node.bind(SYS_A, &m.client_id, ROOM, "", "");
    }
    let ids: Vec<String> = members.iter().map(|m| m.client_id.clone()).collect();
    for m in members {
        m.drain(QUIET);
    }

    let mut stop = CoreStop::new(node.pid(), STOPPED);
    let mut api = http_conn_on_running_core(node);

    // Admitted while the stopped core's mailbox has room: core 0's member (and the
    // peer's) has it now.
    let (status, early) = call(
        &mut api,
        "/api/send_to_group",
        json!({"groupName": ROOM, "data": "early"}),
    );
    assert_eq!(status, 200, "{early}");
    let early = message_id_of(&early["data"]);
    expect_exactly(&mut m0, &[&early], WAIT);
    if let Some(far) = far.as_mut() {
        expect_exactly(far, &[&early], WAIT);
    }

    let admitted = fill_mailbox(&mut api);
    eprintln!("[stalled core] {admitted} sends admitted before the first 503");

    // Now every kind of send that reaches the stopped core is refused whole: core 0
    // (the sender's own, walked first) and the peer must not have got any of it.
    let refused = [
        (
            "/api/send_to_group",
            json!({"groupName": ROOM, "data": "refused-group"}),
        ),
        ("/api/send_to_system", json!({"data": "refused-system"})),
        (
            "/api/send_to_clients",
            json!({"clientIds": ids, "data": "refused-clients"}),
        ),
    ];
    for (path, body) in &refused {
        let (status, answer) = call(&mut api, path, body.clone());
        assert_busy(status, &answer, path);
    }
    m0.expect_silence(QUIET);
    if let Some(far) = far.as_mut() {
        far.expect_silence(QUIET);
    }

    // The core runs again: once its backlog is drained a send is admitted, and each
    // member gets exactly the admitted sends — none of the refused ones.
    stop.resume();
    let after = send_when_admitted(&mut api);
    expect_exactly(&mut m0, &[&after], WAIT);
    if let Some(far) = far.as_mut() {
        expect_exactly(far, &[&after], WAIT);
    }
    expect_exactly(&mut m1, &[&early, &after], DRAIN);
}

#[test]
fn group_notices_count_toward_the_mailbox_bound_and_sends_are_refused_when_it_is_full() {
    let node = Node::start("");
    let [churner, mut m1] = a_client_on_each_core(&node);
    node.bind(SYS_A, &m1.client_id, ROOM, "", "");
    m1.drain(QUIET);
    let churner_id = churner.client_id.clone();

    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop_reader = StopOnDrop(&done);
        // The churner gets its own online notices: read them so it stays connected.
        let reader = s.spawn(|| {
            let mut c = churner;
            while !done.load(Ordering::SeqCst) {
                if let WsEvent::Close(_) | WsEvent::Gone(_) =
                    c.next_event(Duration::from_millis(100))
                {
                    return Some(c.client_id);
                }
            }
            None
        });

        let mut stop = CoreStop::new(node.pid(), STOPPED);
        let mut api = http_conn_on_running_core(&node);
        let errors_before = send_errors(&mut api);

        // Each bind and unbind (alternating: each one joins or leaves) sends a notice to
        // every core of the node: the stopped core's mailbox fills with notices only. A
        // send is probed after each round.
        let churn = |i: usize| {
            let path = if i % 2 == 0 {
                "/api/bind_to_group"
            } else {
                "/api/unbind_from_group"
            };
            (path, json!({"clientId": churner_id, "groupName": "churn"}))
        };
        let mut notices = 0;
        let refused_at = loop {
            assert!(
                notices < CAP,
                "{notices} notices queued for a stopped core and sends still admitted"
            );
            let statuses = round(&mut api, notices, churn);
            assert!(
                statuses.iter().all(|s| *s == 200),
                "notices must never be refused: {:?}",
                statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
            );
            notices += ROUND;
            let probe = format!("probe-{notices}");
            let (status, body) = call(
                &mut api,
                "/api/send_to_group",
                json!({"groupName": ROOM, "data": probe}),
            );
            if status != 200 {
                assert_busy(status, &body, "a send behind a mailbox full of notices");
                break (notices, probe);
            }
        };
        eprintln!(
            "[stalled core] sends refused after {} notices",
            refused_at.0
        );
        assert!(
            send_errors(&mut api) > errors_before,
            "the refusal is not counted in shardcast_api_requests_total{{result=\"error\"}}"
        );
        // Notices are still taken (never lost), sends still refused.
        let (status, body) = call(&mut api, churn(0).0, churn(0).1);
        assert_eq!(status, 200, "a bind while the mailbox is full: {body}");
        let (status, body) = call(
            &mut api,
            "/api/send_to_group",
            json!({"groupName": ROOM, "data": "refused"}),
        );
        assert_busy(status, &body, "a send while the mailbox is full");

        stop.resume();
        let after = send_when_admitted(&mut api);
        // m1 (on the stopped core) gets the probes admitted before the bound and the
        // one after, never a refused one.
        let deadline = Instant::now() + DRAIN;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = m1
                .recv_json(left)
                .unwrap_or_else(|| panic!("member on the stopped core: no {after} after {got:?}"));
            assert!(
                v["data"] != json!("refused") && v["data"] != json!(refused_at.1),
                "a refused send was delivered: {v}"
            );
            let last = v["messageId"] == json!(after);
            got.push(v["data"].clone());
            if last {
                break;
            }
        }
        m1.expect_silence(QUIET);
        done.store(true, Ordering::SeqCst);
        let cut = reader.join().unwrap();
        assert_eq!(cut, None, "the churning client was disconnected");
    });
}
