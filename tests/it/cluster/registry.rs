//! The tenant registry of a cluster (docs/api.md §4 "Cluster rules", `/api/register`): a
//! registration made on one node is visible on every node within 1 s, an id can be
//! registered once cluster-wide (also when two nodes race for it), and it lives in etcd,
//! not in a node's data directory.
//!
//! Assumptions where the contract is silent:
//! - "Visible" means both a WebSocket connect with that systemId and an API call with it
//!   as `SystemId` are accepted; calls made before the 1 s are up may still be refused with
//!   `系统ID无效`.

use crate::support::{
    api::{api_timed, expect_err, expect_ok, message_id_of, Answer},
    cluster::start_cluster,
    node::Node,
    ws::{expect_message, try_ws, Client},
    SYS_A, WAIT,
};
use serde_json::json;
use std::time::{Duration, Instant};

const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

/// Polls a WebSocket connect to `node` with `system_id` until it is welcomed; refusals
/// must be `系统ID无效` and stop `VISIBLE_WITHIN` after `since`. Returns the client and the
/// time from `since` to the attempt that succeeded.
fn connect_when_visible(node: &Node, system_id: &str, since: Instant) -> (Client, Duration) {
    loop {
        let attempt = Instant::now();
        match try_ws(node, system_id) {
            Ok(c) => return (c, attempt - since),
            Err(frame) => {
                assert_eq!(frame["msg"], json!("系统ID无效"), "refusal: {frame}");
                assert!(
                    attempt - since < VISIBLE_WITHIN,
                    "{system_id} still unknown to {} {:?} after it was registered",
                    node.addr(),
                    attempt - since
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn a_registration_on_node_1_is_usable_on_the_others_within_a_second() {
    let c = start_cluster(3);
    let (n1, n2, n3) = (&c[0], &c[1], &c[2]);
    let sys = "sys-fresh";

    let ans = api_timed(n1, "/api/register", None, &json!({ "systemId": sys }));
    let registered = Instant::now();
    assert_eq!(ans.ok(), json!([]), "register answer");
    eprintln!(
        "[cluster] register answered in {:.1} ms",
        ans.took.as_secs_f64() * 1000.0
    );

    // A WebSocket on node 2 with the new systemId.
    let (mut client, ws_after) = connect_when_visible(n2, sys, registered);
    eprintln!(
        "[cluster] new system accepted by node 2's /ws {:.1} ms after register",
        ws_after.as_secs_f64() * 1000.0
    );

    // An API call on node 3 with it, aimed at the client on node 2.
    let api_after = loop {
        let attempt = Instant::now();
        let a = api_timed(
            n3,
            "/api/send_to_client",
            Some(sys),
            &json!({"clientId": client.client_id, "msg": "welcome aboard"}),
        );
        if a.is_ok() {
            let d = a.ok();
            assert_eq!(d["online"], json!(true), "{d}");
            expect_message(&mut client, &message_id_of(&d), WAIT);
            break attempt - registered;
        }
        assert!(
            a.is_err(200, "系统ID无效"),
            "unexpected answer: {:?}",
            a.body
        );
        assert!(
            attempt - registered < VISIBLE_WITHIN,
            "node 3's API still refuses {sys} {:?} after it was registered",
            attempt - registered
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "[cluster] new system accepted by node 3's API {:.1} ms after register",
        api_after.as_secs_f64() * 1000.0
    );

    // The id is taken on every node now.
    for n in [n3, n2, n1] {
        expect_err(
            n.api(
                "/api/register",
                None,
                &json!({ "systemId": sys }).to_string(),
            ),
            200,
            "该系统ID已被注册",
        );
    }
    // The configured systems exist once as well.
    expect_err(
        n2.api(
            "/api/register",
            None,
            &json!({ "systemId": SYS_A }).to_string(),
        ),
        200,
        "该系统ID已被注册",
    );
}

#[test]
fn two_nodes_racing_for_one_id_register_it_once() {
    let c = start_cluster(3);
    for round in 0..5 {
        let sys = format!("sys-race-{round}");
        let body = json!({ "systemId": sys });
        let answers: Vec<Answer> = std::thread::scope(|s| {
            let hs: Vec<_> = [&c[1], &c[2], &c[0]]
                .into_iter()
                .map(|n| s.spawn(|| api_timed(n, "/api/register", None, &body)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = answers.iter().filter(|a| a.is_ok()).count();
        let lost = answers
            .iter()
            .filter(|a| a.is_err(200, "该系统ID已被注册"))
            .count();
        assert_eq!(
            (won, lost),
            (1, 2),
            "round {round}: {:?}",
            answers.iter().map(|a| &a.body).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_registration_lives_in_etcd_not_in_the_node() {
    let mut c = start_cluster(1);
    expect_ok(c[0].api("/api/register", None, "{\"systemId\":\"sys-kept\"}"));
    // A brand-new node (empty data directory) of the same cluster knows it.
    let i = c.add_node("");
    let mut cl = c[i].ws("sys-kept");
    expect_err(
        c[i].api("/api/register", None, "{\"systemId\":\"sys-kept\"}"),
        200,
        "该系统ID已被注册",
    );
    // And it survives the first node's restart.
    c[0].restart();
    let d = c[0].send_to_client("sys-kept", &cl.client_id, "still here", json!(1));
    assert_eq!(d["online"], json!(true), "{d}");
    expect_message(&mut cl, &message_id_of(&d), WAIT);
}
