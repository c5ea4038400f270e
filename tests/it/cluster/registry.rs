//! The tenant registry of a cluster (docs/api.md §4 "Cluster rules", `/api/register`): a
//! registration made on one node is visible on every node within 1 s, an id can be
//! registered once cluster-wide (also when two nodes race for it), and it lives in etcd,
//! not in a node's data directory.
//!
//! Assumptions where the contract is silent:
//! - "Visible" means both a WebSocket connect with that systemId and an API call with it
//!   as `SystemId` are accepted; calls made before the 1 s are up may still be refused with
//!   `系统ID无效`.

use crate::api::auth_token::{connect_token, expect_token_refusal, tcall, ws_path, ADMIN};
use crate::support::{
    api::{api_timed, expect_err, expect_ok, message_id_of, Answer},
    cluster::{
        cluster_config, open_entry, start_cluster, Cluster, ClusterNode, Etcd, CLUSTER_SECRET,
    },
    node::Node,
    now_unix,
    receiver::Receiver,
    ws::{expect_message, try_ws, Client},
    QUIET, SYS_A, WAIT,
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

/// The secret of `system` as the cluster stores it in etcd (docs/cluster.md, "Keys"),
/// opened with the cluster secret. None when the entry has no secret.
fn stored_secret(etcd: &Etcd, system: &str) -> Option<String> {
    let entry = open_entry(CLUSTER_SECRET, system, &etcd.system_entry(system));
    entry["secret"].as_str().map(String::from)
}

/// A system registered while the cluster ran in open mode has no secret. When the nodes
/// come back in token mode — both at once — it gets one secret, stored in etcd, that
/// every node uses: a connect token or `Token` made with an empty key is refused on
/// both nodes, and the stored secret is accepted on both.
#[test]
fn a_system_from_open_mode_gets_one_secret_cluster_wide_in_token_mode() {
    let mut c = start_cluster(2);
    expect_ok(c[0].api("/api/register", None, "{\"systemId\":\"legacy\"}"));
    assert_eq!(
        stored_secret(&c.etcd, "legacy"),
        None,
        "open mode: no secret"
    );

    let token_mode =
        "[api]\nauth = \"token\"\n".to_string() + &format!("admin_token = \"{ADMIN}\"\n");
    let configs: Vec<String> = c
        .nodes
        .iter()
        .map(|n| cluster_config(&c.etcd, n.cluster_port, &token_mode))
        .collect();
    std::thread::scope(|s| {
        for (node, config) in c.nodes.iter_mut().zip(&configs) {
            s.spawn(move || node.restart_with(config));
        }
    });

    let secret = stored_secret(&c.etcd, "legacy")
        .unwrap_or_else(|| panic!("no secret given in etcd:\n{}", c.etcd.dump()));
    let logs: String = c.nodes.iter().map(|n| n.log()).collect();
    assert!(
        logs.contains("legacy") && logs.contains("had no secret"),
        "the new secret is not reported:\n{logs}"
    );
    assert!(!logs.contains(&secret), "the secret must never be logged");

    let exp = now_unix() + 600;
    let mut clients = Vec::new();
    for n in &c.nodes {
        expect_token_refusal(n, &ws_path("legacy", &connect_token("", "mallory", exp)));
        expect_err(
            n.api_with_headers(
                "/api/get_group_list",
                &[("SystemId", "legacy"), ("Token", "")],
                "{}",
            ),
            401,
            "token无效",
        );
        tcall(n, "legacy", &secret, "/api/get_group_list", json!({}));
        let path = ws_path("legacy", &connect_token(&secret, "alice", exp));
        clients.push(Client::welcome(n.ws_connect(&path)));
    }
    // Across nodes with the same secret: node 1 reaches the client of node 2.
    let d = tcall(
        &c[0],
        "legacy",
        &secret,
        "/api/send_to_client",
        json!({"clientId": clients[1].client_id, "msg": "same secret"}),
    );
    assert_eq!(d["online"], json!(true), "{d}");
    expect_message(&mut clients[1], &message_id_of(&d), WAIT);
}

/// Registers `system` on `node` in token mode, with its own `webhookUrl` if given;
/// returns its secret (the answer's `token`).
fn register_with_token(node: &Node, system: &str, webhook_url: Option<&str>) -> String {
    let body = json!({"systemId": system, "webhookUrl": webhook_url});
    let d = expect_ok(node.api_with_headers(
        "/api/register",
        &[("AdminToken", ADMIN)],
        &body.to_string(),
    ));
    d["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token-mode register without a token: {d}"))
        .to_string()
}

/// Someone who can write to etcd and holds tenant A's secret copies A's stored entry
/// into tenant B's key (docs/cluster.md "Keys"). Before entries were
/// sealed to their system id, that made A's Token work as B (and B's own be refused),
/// and sent B's webhook events to the receiver A had registered. Now the copy does not
/// open at B's key: every node ignores it and keeps B's entry, counts it in
/// `shardcast_registry_entries_rejected_total` and logs it once, with the key.
#[test]
fn an_entry_copied_to_another_systems_key_is_ignored_and_counted() {
    let attacker = Receiver::ok();
    // Token mode (the harness's mesh check sends without a Token: not used here).
    let token_mode = format!("[api]\nauth = \"token\"\nadmin_token = \"{ADMIN}\"\n");
    let etcd = Etcd::start();
    let nodes = (0..2)
        .map(|_| ClusterNode::start(&etcd, &token_mode))
        .collect();
    let c = Cluster { nodes, etcd };
    let secret_a = register_with_token(&c[0], "tenant-a", Some(&attacker.url("/a")));
    let secret_b = register_with_token(&c[1], "tenant-b", None);
    let (a, b) = (("tenant-a", &secret_a), ("tenant-b", &secret_b));
    let works = |n: &Node, (sys, secret): (&str, &String)| {
        n.api_with_headers(
            "/api/get_group_list",
            &[("SystemId", sys), ("Token", secret)],
            "{}",
        )
    };
    let deadline = Instant::now() + VISIBLE_WITHIN;
    for n in &c.nodes {
        while works(n, a).0 != 200 || works(n, b).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "a system is unknown to {}",
                n.addr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    c.etcd
        .put_system_entry("tenant-b", &c.etcd.system_entry("tenant-a"));
    std::thread::sleep(VISIBLE_WITHIN);

    for n in &c.nodes {
        expect_err(works(n, ("tenant-b", &secret_a)), 401, "token无效");
        expect_ok(works(n, b));
        expect_ok(works(n, a));
    }
    // B's events still go where B's entry says (nowhere), not to A's receiver.
    let mut clients: Vec<Client> = c.nodes.iter().map(|n| n.ws("tenant-b")).collect();
    let mut probe = c[0].ws("tenant-a");
    attacker.wait_for("tenant-a's own connect", |events| {
        events
            .iter()
            .any(|e| e["clientId"] == json!(probe.client_id))
    });
    std::thread::sleep(QUIET);
    let leaked: Vec<_> = attacker
        .events()
        .into_iter()
        .filter(|e| e["systemId"] != json!("tenant-a"))
        .collect();
    assert!(
        leaked.is_empty(),
        "tenant-b's events reached A's receiver: {leaked:?}"
    );

    let key = format!("{}systems/tenant-b", c.etcd.cluster_prefix());
    for n in &c.nodes {
        let rejected = n.metrics().sum("shardcast_registry_entries_rejected_total");
        assert_eq!(rejected, 1.0, "{}", n.addr());
        let log = n.log();
        let logged = log
            .lines()
            .filter(|l| l.contains("ignoring an invalid registry entry") && l.contains(&key))
            .count();
        assert_eq!(
            logged, 1,
            "the rejection is logged once with its key:\n{log}"
        );
    }
    for cl in clients.iter_mut().chain([&mut probe]) {
        cl.close_cleanly();
    }
}
