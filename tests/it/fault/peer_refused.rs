//! Requests from a peer that a busy core cannot take (docs/api.md §7.1, "Peer
//! frames"; docs/cluster.md, "Frames"): the receiving node answers them `Refused` at
//! once and counts them, and the node that took the API call says `"partial":true` —
//! not a silent loss, not a wait for its deadline. Notices from a peer are never
//! refused.
//!
//! Node 1 runs one core, so every request it sends node 2 travels on one link, read by
//! one core of node 2 (found from node 2's per-core link counters). Node 2's other core
//! is held stopped and its mailbox filled until node 2 refuses its own sends: the core
//! reading the link can then hand node 1's pushes to no core.

use super::stalled_core::{a_client_on_each_core, fill_mailbox};
use crate::support::{
    cluster::{Cluster, ClusterNode, REQUEST_TIMEOUT},
    http::HttpConn,
    metrics::Metrics,
    stall::{http_conn_on_running_core, CoreStop},
    ws::{assert_notice, Client},
    QUIET, SYS_A, WAIT,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ROOM: &str = "room";

/// Node 2's metrics, read on `conn` (a fresh connection might land on the stopped core).
fn metrics_on(conn: &mut HttpConn) -> Metrics {
    let r = conn.request("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "GET /metrics");
    Metrics::parse(&r.text())
}

fn refused_total(conn: &mut HttpConn) -> f64 {
    metrics_on(conn)
        .try_sum("shardcast_link_requests_refused_total")
        .unwrap_or(0.0)
}

/// The core of `far` that reads `near`'s link: the one whose link frame counter rises
/// while `near` (one core, so one link) asks `far` for its online list.
fn reading_core(near: &ClusterNode, far: &ClusterNode) -> usize {
    let frames_in = || {
        let m = far.metrics();
        [0, 1].map(|k| {
            let k = k.to_string();
            m.sum_where("shardcast_link_frames_in_total", &[("worker", k.as_str())])
        })
    };
    let before = frames_in();
    for _ in 0..5 {
        let body = json!({"groupName": ROOM}).to_string();
        let (status, v) = near.api("/api/get_online_list", Some(SYS_A), &body);
        assert_eq!(status, 200, "get_online_list: {v}");
    }
    let after = frames_in();
    let rose = [after[0] - before[0], after[1] - before[1]];
    assert!(
        (rose[0] == 0.0) != (rose[1] == 0.0),
        "node 1's requests were read by both or neither core of node 2: {rose:?}"
    );
    usize::from(rose[1] > 0.0)
}

/// An API call on node 1; (answer's data, how long it took). Asserts 200.
fn call_near(near: &ClusterNode, path: &str, body: Value) -> (Value, Duration) {
    let t = Instant::now();
    let (status, v) = near.api(path, Some(SYS_A), &body.to_string());
    assert_eq!(status, 200, "{path} on node 1: {v}");
    (v["data"].clone(), t.elapsed())
}

#[test]
fn a_peer_refuses_what_its_full_core_cannot_take_and_the_origin_says_partial() {
    let c = Cluster::start_each(&["[server]\nworkers = 1", ""]);
    let (near, far) = (&c[0], &c[1]);
    let reader = reading_core(near, far);
    let [m0, m1] = a_client_on_each_core(far);
    let (mut on_reader, mut on_stopped) = if reader == 0 { (m0, m1) } else { (m1, m0) };
    let mut local = near.ws(SYS_A);
    for m in [&on_reader, &on_stopped, &local] {
        near.bind(SYS_A, &m.client_id, ROOM, "", "");
    }
    for m in [&mut on_reader, &mut on_stopped, &mut local] {
        m.drain(QUIET);
    }

    let mut stop = CoreStop::new(far.pid(), 1 - reader);
    let mut api_far = http_conn_on_running_core(far);
    let admitted = fill_mailbox(&mut api_far);
    eprintln!("[peer refused] node 2 refused its own sends after {admitted}");
    let refused_before = refused_total(&mut api_far);

    // Pushes from node 1: answered at once with partial, delivered on node 1, not on
    // node 2 (taken by no core there, the one reading the link included).
    for (path, body) in [
        (
            "/api/send_to_group",
            json!({"groupName": ROOM, "data": "refused-group"}),
        ),
        ("/api/send_to_system", json!({"data": "refused-system"})),
    ] {
        let (data, took) = call_near(near, path, body);
        assert_eq!(data["partial"], json!(true), "{path}: {data}");
        assert!(
            took < REQUEST_TIMEOUT,
            "{path} took {took:?}: node 2's refusal was not answered, the deadline was"
        );
        assert!(local.recv_json(WAIT).is_some(), "{path}: node 1's member");
    }
    on_reader.expect_silence(QUIET);
    let (data, _) = call_near(near, "/api/get_online_list", json!({"groupName": ROOM}));
    assert_eq!(data["partial"], json!(true), "online list: {data}");
    let refused = refused_total(&mut api_far) - refused_before;
    assert!(
        refused >= 3.0,
        "node 2 counted {refused} refused requests, expected the 3 above"
    );

    // A notice from node 1 is never refused: a member joining on node 1 is announced
    // on node 2 at once.
    let joiner = near.ws(SYS_A);
    near.bind(SYS_A, &joiner.client_id, ROOM, "", "");
    let notice = on_reader
        .recv_json(WAIT)
        .expect("node 2's member got no online notice from node 1");
    assert_notice(&notice, 1001, &joiner.client_id, "", "");

    // Once the core runs again, node 1's pushes are taken whole.
    stop.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (data, _) = call_near(
            near,
            "/api/send_to_group",
            json!({"groupName": ROOM, "data": "after"}),
        );
        if data.get("partial").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 still refuses: {data}");
        std::thread::sleep(Duration::from_millis(50));
    }
    expect_data(&mut on_reader, "after");
    expect_data(&mut on_stopped, "after");
}

/// Reads `c` until a push with `data` arrives; a refused push on the way fails.
fn expect_data(c: &mut Client, data: &str) {
    loop {
        let v = c
            .recv_json(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{}: no push {data:?}", c.client_id));
        let got = v["data"].as_str().unwrap_or_default();
        assert!(!got.starts_with("refused"), "a refused push arrived: {v}");
        if got == data {
            return;
        }
    }
}
