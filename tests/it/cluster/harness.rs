//! Checks of the cluster harness itself (tests/it/support/cluster.rs), independent of the
//! node's cluster mode: the private etcd starts, answers, pauses, resumes and dies with
//! its guard; each etcd gets ports no one else gets and a cluster name of its own test;
//! an etcd that exited is reported as such; the cluster config the harness writes is one
//! the binary accepts.

use crate::support::{
    api::message_id_of,
    cluster::{cluster_config, ClusterNode, Etcd},
    node::{build_config, free_port, process_state, run_binary, send_signal, Node},
    ws::expect_message,
    SYS_A, WAIT,
};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// The message of a panic caught by `catch_unwind`.
fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    match e.downcast::<String>() {
        Ok(s) => *s,
        Err(e) => e
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn etcd_starts_pauses_resumes_and_dies_with_its_guard() {
    let etcd = Etcd::start();
    assert!(etcd.healthy(Duration::from_secs(1)), "etcd not healthy");
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    assert!(etcd.keys_under(&etcd.cluster_prefix()).is_empty());

    etcd.pause();
    assert_eq!(process_state(etcd.pid()), Some('T'), "etcd not stopped");
    assert!(
        !etcd.healthy(Duration::from_millis(300)),
        "a paused etcd answered"
    );
    etcd.resume();
    let t = Instant::now();
    while !etcd.healthy(Duration::from_millis(500)) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "etcd did not come back"
        );
    }

    // Two etcds at once get distinct ports and cluster names.
    let other = Etcd::start();
    assert_ne!(other.endpoint(), etcd.endpoint());
    assert_ne!(other.cluster_name(), etcd.cluster_name());

    // Drop kills it, paused or not.
    let pid = etcd.pid();
    etcd.pause();
    drop(etcd);
    assert!(
        process_state(pid).is_none(),
        "etcd {pid} survived its guard"
    );
}

#[test]
fn each_etcd_has_ports_and_a_cluster_name_of_its_own_and_its_exit_is_reported() {
    let a = Etcd::start();
    let b = Etcd::start();
    // Client and peer ports of both, never handed out twice in this process.
    let ports = [a.ports().0, a.ports().1, b.ports().0, b.ports().1];
    assert_eq!(
        ports.iter().collect::<BTreeSet<_>>().len(),
        4,
        "etcd ports handed out twice: {ports:?}"
    );
    for _ in 0..100 {
        let p = free_port();
        assert!(!ports.contains(&p), "port {p} of an etcd handed out again");
    }
    // A cluster name per test (named after it) and per etcd.
    let test = "each_etcd_has_ports_and_a_cluster_name_of_its_own_and_its_exit_is_rep";
    for e in [&a, &b] {
        assert!(
            e.cluster_name().starts_with(&test[..40]),
            "cluster name {:?} does not name its test",
            e.cluster_name()
        );
    }
    assert_ne!(a.cluster_name(), b.cluster_name());

    // An etcd that exits is reported as such, also when a node is started against it.
    assert!(a.running());
    send_signal(a.pid(), libc::SIGKILL);
    let t = Instant::now();
    while a.running() {
        assert!(t.elapsed() < WAIT, "etcd survived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = panic_text(catch_unwind(AssertUnwindSafe(|| a.assert_running())).unwrap_err());
    assert!(why.contains("has exited"), "{why}");
    let started = catch_unwind(AssertUnwindSafe(|| ClusterNode::start(&a, "")));
    let why = match started {
        Ok(_) => panic!("a node started against an etcd that has exited"),
        Err(e) => panic_text(e),
    };
    assert!(why.contains("has exited"), "{why}");
    // The other one is unaffected.
    assert!(b.running() && b.healthy(Duration::from_secs(1)));
}

#[test]
fn the_cluster_config_of_the_harness_is_valid() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let extra = cluster_config(&etcd, free_port(), "[cluster]\nlease_ttl = \"3s\"");
    let text = build_config(&format!("127.0.0.1:{}", free_port()), &data, &extra);
    assert!(text.contains("lease_ttl = \"3s\""), "{text}");
    assert!(!text.contains("lease_ttl = \"2000ms\""), "{text}");
    let path = dir.path().join("shardcast.toml");
    std::fs::write(&path, &text).unwrap();
    let (status, out) = run_binary(
        &["check-config", "-c", path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "check-config refused the harness config ({status:?}):\n{text}\n{out}"
    );
}

#[test]
fn a_standalone_node_starts_next_to_an_etcd() {
    let _etcd = Etcd::start();
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let d = node.send_to_client(SYS_A, &c.client_id, "hi", serde_json::json!(1));
    expect_message(&mut c, &message_id_of(&d), WAIT);
}
