//! `scripts/cluster-demo.sh --no-build --bin <the binary under test>` (README, "Running a
//! cluster"): no set-up, no build — it starts etcd and three nodes from the binary it is
//! given at once, each node serves the console at `/`, a push through node 3 reaches a
//! client of node 1, and so does a push to a room through node 3, with its place in the
//! room's history; SIGTERM to the script stops all of it.
//!
//! The ports come from `SHARDCAST_DEMO_PORT` and `SHARDCAST_DEMO_ETCD_PORT`, in a range
//! below the kernel's ephemeral ports (where `free_port` finds the other tests' ports).

use crate::support::{
    http::{try_get, HttpConn},
    node::bin_path,
    process::Group,
    ws::{ws_connect, Client},
    WAIT,
};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free(ports: &[u16]) -> bool {
    ports
        .iter()
        .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// (node base, etcd client port): base+1..3, base+101..103, etcd and etcd+10 free.
fn demo_ports() -> (u16, u16) {
    let start = 20_000 + (std::process::id() % 400) as u16 * 20;
    for k in 0..200u16 {
        let base = 20_000 + (start - 20_000 + k * 20) % 8_000;
        let etcd = base + 200;
        let ports = [
            base + 1,
            base + 2,
            base + 3,
            base + 101,
            base + 102,
            base + 103,
            etcd,
            etcd + 10,
        ];
        if free(&ports) {
            return (base, etcd);
        }
    }
    panic!("no free block of ports for the demo");
}

#[test]
fn the_cluster_demo_runs_a_built_binary_without_building() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-demo.sh");
    let (base, etcd) = demo_ports();
    let started = Instant::now();
    // A process group: the script and its nodes, killed together if the test ends first.
    let mut child = Group::spawn(
        Command::new("bash")
            .arg(&script)
            .arg("--no-build")
            .arg("--bin")
            .arg(bin_path())
            .env("SHARDCAST_DEMO_PORT", base.to_string())
            .env("SHARDCAST_DEMO_ETCD_PORT", etcd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .expect("run scripts/cluster-demo.sh");
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut output = String::new();
    while !output.contains("press Ctrl-C to stop") {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        match seen.recv_timeout(left) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(_) => {
                panic!("the demo was not up within 30 s (or ended) with --no-build:\n{output}")
            }
        }
    }
    eprintln!("[demo] up after {:?}:\n{output}", started.elapsed());
    assert!(!output.contains("Compiling"), "it built:\n{output}");
    for i in 1..=3 {
        assert!(
            output.contains(&format!("node {i} ready: http://127.0.0.1:{}", base + i)),
            "{output}"
        );
    }

    // A client of node 1, a push through node 3.
    let node1 = format!("127.0.0.1:{}", base + 1);
    let mut c = Client::welcome(ws_connect(&node1, "/ws?systemId=demo"));
    let mut node3 = HttpConn::connect(&format!("127.0.0.1:{}", base + 3));
    let deadline = Instant::now() + WAIT;
    loop {
        // A node learns its peers through the etcd watch a moment after they are ready.
        let body = json!({"clientId": c.client_id, "msg": "across the demo"}).to_string();
        let (status, v) = node3.api("/api/send_to_client", Some("demo"), &body);
        assert_eq!((status, &v["code"]), (200, &json!(0)), "{v}");
        if v["data"]["online"] == json!(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 does not reach node 1: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.expect_json(WAIT)["msg"], json!("across the demo"));

    // Each node's console (two browsers on two nodes share one room).
    for i in 1..=3 {
        let page = try_get(&format!("127.0.0.1:{}", base + i), "/", WAIT)
            .unwrap_or_else(|e| panic!("GET / on node {i}: {e}"));
        assert_eq!(page.status, 200, "GET / on node {i}: the console is off");
        assert!(page.text().contains("shardcast console"), "node {i}");
    }

    // A room keeps history: a push through node 3 reaches node 1's client with its place.
    let bind = json!({"clientId": c.client_id, "groupName": "room1", "history": 10}).to_string();
    let (status, v) = node3.api("/api/bind_to_group", Some("demo"), &bind);
    assert_eq!((status, &v["code"]), (200, &json!(0)), "{v}");
    assert_eq!(v["data"]["offset"], json!(0), "a new room: {v}");
    let push = json!({"groupName": "room1", "sendUserId": "bob", "data": "hello room"}).to_string();
    let (status, v) = node3.api("/api/send_to_group", Some("demo"), &push);
    assert_eq!((status, &v["code"]), (200, &json!(0)), "{v}");
    let p = c.expect_json_where(WAIT, |v| v["data"] == json!("hello room"));
    assert_eq!(
        (&p["groupName"], &p["offset"], &p["sendUserId"]),
        (&json!("room1"), &json!(1), &json!("bob")),
        "{p}"
    );
    assert!(p["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{p}");

    // SIGTERM to the script stops the nodes and etcd.
    // SAFETY: kill(2) on the script, a child we spawned.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the script did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = [base + 1, base + 2, base + 3, etcd];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !free(&all) {
        assert!(
            Instant::now() < deadline,
            "the demo's nodes or etcd still listen after the script stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
