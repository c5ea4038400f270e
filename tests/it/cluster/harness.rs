//! Checks of the cluster harness itself (tests/it/support/cluster.rs), independent of the
//! node's cluster mode: the private etcd starts, answers, pauses, resumes and dies with
//! its guard; the cluster config the harness writes is one the binary accepts.

use crate::support::{
    api::message_id_of,
    cluster::{cluster_config, Etcd},
    node::{build_config, free_port, process_state, run_binary, Node},
    ws::expect_message,
    SYS_A, WAIT,
};
use std::time::{Duration, Instant};

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
