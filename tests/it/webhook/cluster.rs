//! Webhooks in a cluster (docs/api.md §2.2): when a node loses its place in the cluster
//! (its node id is taken by another record while its lease was gone) it closes every
//! connection, and each gets exactly one `disconnect` with reason `node_lost`.

use crate::support::{
    cluster::{Cluster, Etcd},
    receiver::Receiver,
    ws::Client,
    QUIET, SYS_A,
};
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

/// Revokes the lease of the only node record and puts another node's record under its
/// id, as if a second process had taken the id while the first was away.
fn take_node_id(etcd: &Etcd) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let prefix = format!("{}nodes/", etcd.cluster_prefix());
    let mut end = prefix.clone().into_bytes();
    *end.last_mut().unwrap() += 1;
    let range = json!({"key": b64.encode(&prefix), "range_end": b64.encode(&end)});
    let kvs = etcd.post("/v3/kv/range", range)["kvs"].clone();
    let kv = &kvs[0];
    let key = kv["key"].as_str().expect("node key").to_string();
    let lease = kv["lease"]
        .as_str()
        .expect("node record has a lease")
        .to_string();
    let record = b64.decode(kv["value"].as_str().unwrap()).unwrap();
    let mut impostor: Value = serde_json::from_slice(&record).expect("node record is JSON");
    impostor["addr"] = json!("127.0.0.1:1");
    let value = b64.encode(impostor.to_string());
    etcd.post("/v3/lease/revoke", json!({ "ID": lease }));
    etcd.post("/v3/kv/put", json!({ "key": key, "value": value }));
}

#[test]
fn a_lost_node_reports_node_lost_once_per_connection() {
    let receiver = Receiver::ok();
    let extra = format!("[webhook]\nurl = \"{}\"", receiver.url("/hook"));
    let cluster = Cluster::start_with(1, &extra);
    let mut clients: Vec<Client> = (0..3).map(|_| cluster[0].ws(SYS_A)).collect();
    // The receiver also hears the harness's own probe clients (`wait_mesh`): only this
    // test's clients are looked at.
    let ids: Vec<String> = clients.iter().map(|c| c.client_id.clone()).collect();
    receiver.wait_for_each("connect", &ids);

    take_node_id(&cluster.etcd);
    for c in &mut clients {
        assert_eq!(c.expect_close(Duration::from_secs(10)), 1001);
    }
    receiver.wait_for_each("disconnect", &ids);
    // Nothing more (a second disconnect) may follow.
    std::thread::sleep(QUIET);
    let events: Vec<Value> = receiver
        .events()
        .into_iter()
        .filter(|e| ids.iter().any(|id| e["clientId"] == json!(id)))
        .collect();
    for c in &clients {
        let reasons: Vec<&Value> = events
            .iter()
            .filter(|e| e["clientId"] == json!(c.client_id) && e["event"] == "disconnect")
            .map(|e| &e["reason"])
            .collect();
        assert_eq!(reasons, [&json!("node_lost")], "{events:#?}");
    }
}
