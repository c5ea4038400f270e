//! Behaviour under load (docs/api.md §6 `ws.send_queue_bytes`; docs/architecture.md, the
//! data path): a consumer that stops reading is closed as a slow consumer (counted in
//! `shardcast_slow_consumers_closed_total`, one offline notice) while a healthy member of
//! the same group receives every message in order; 500 connections on 2 workers get
//! distinct clientIds, all receive one send_to_system, and are counted in
//! `shardcast_connections`.

use crate::support::{
    api::{assert_message_id, expect_ok},
    http::wait_eof,
    node::Node,
    raw_frames::raw_client,
    SYS_A, WAIT,
};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MSG_BYTES: usize = 2048;
const MIN_PUSHES: usize = 2000;
const MAX_PUSHES: usize = 8000;
const BATCH: usize = 500;

#[test]
fn a_slow_consumer_is_closed_and_the_others_get_everything() {
    let node = Node::start("[ws]\nsend_queue_bytes = 65536\n");
    let healthy = node.ws(SYS_A);
    let healthy_id = healthy.client_id.clone();

    // The slow one: a small receive window, and it never reads after the welcome.
    let (mut slow, slow_id) = raw_client(&node, SYS_A, Some(4096));

    node.bind(SYS_A, &slow_id, "feed", "slowpoke", "");
    node.bind(SYS_A, &healthy_id, "feed", "", "");

    // The healthy client reads on its own thread.
    let total = Arc::new(AtomicUsize::new(0)); // 0 = not known yet
    let reader = {
        let total = Arc::clone(&total);
        let slow_id = slow_id.clone();
        let mut healthy = healthy;
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(18);
            let mut next = 0usize;
            let mut slow_offline_notices = 0;
            loop {
                let t = total.load(Ordering::SeqCst);
                if t != 0 && next >= t {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "healthy client received only {next} of the pushes"
                );
                let Some(v) = healthy.recv_json(Duration::from_millis(200)) else {
                    continue;
                };
                if v["msg"] == json!("bulk") {
                    assert_eq!(
                        v["sendUserId"],
                        json!(next.to_string()),
                        "healthy client: push lost or out of order"
                    );
                    next += 1;
                } else if v["code"] == json!(1002)
                    && v["data"].as_str().unwrap_or("").contains(&slow_id)
                {
                    slow_offline_notices += 1;
                }
            }
            (healthy, next, slow_offline_notices)
        })
    };

    let mut http = node.http();
    let data = "x".repeat(MSG_BYTES);
    let mut sent = 0usize;
    let start = Instant::now();
    while sent < MAX_PUSHES {
        for _ in 0..BATCH {
            let body = json!({"groupName": "feed", "msg": "bulk", "sendUserId": sent.to_string(), "data": data});
            let (status, v) = http.api("/api/send_to_group", Some(SYS_A), &body.to_string());
            expect_ok((status, v));
            sent += 1;
        }
        if sent >= MIN_PUSHES && !node.is_online(SYS_A, &slow_id) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "pushing {sent} messages took too long"
        );
    }
    total.store(sent, Ordering::SeqCst);

    let (mut healthy, received, mut notices) = reader.join().expect("healthy reader");
    assert_eq!(received, sent, "healthy client must receive every push");

    // The slow consumer was closed …
    node.wait_offline(SYS_A, &slow_id, Duration::from_secs(5));
    assert!(
        wait_eof(&mut slow, Duration::from_secs(5)).is_some(),
        "the slow consumer's socket was not closed"
    );
    // … with one offline notice to its group …
    for v in healthy.drain(Duration::from_secs(2)) {
        if v["code"] == json!(1002) && v["data"].as_str().unwrap_or("").contains(&slow_id) {
            notices += 1;
        }
    }
    assert_eq!(notices, 1, "offline notices for the slow consumer");
    // … and counted.
    let metrics = node.metrics();
    assert_eq!(
        metrics.sum("shardcast_slow_consumers_closed_total"),
        1.0,
        "shardcast_slow_consumers_closed_total after one slow consumer:\n{metrics}"
    );

    // The healthy one is still fine.
    assert!(node.is_online(SYS_A, &healthy_id));
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "feed"}));
    assert_eq!(list["list"], json!([healthy_id]), "{list}");
}

#[test]
fn five_hundred_connections_get_distinct_ids_and_one_system_push() {
    let node = Node::start("");
    let mut clients = Vec::with_capacity(500);
    let mut ids = HashSet::new();
    for _ in 0..500 {
        let c = node.ws(SYS_A);
        assert!(
            ids.insert(c.client_id.clone()),
            "clientId {} given twice",
            c.client_id
        );
        clients.push(c);
    }
    let d = node.call(
        SYS_A,
        "/api/send_to_system",
        json!({"msg": "to all 500", "data": {"n": 500}}),
    );
    let mid = assert_message_id(&d["messageId"]);
    for c in clients.iter_mut() {
        let f = c.expect_json(WAIT);
        assert_eq!(f["messageId"], json!(mid));
        assert_eq!(f["msg"], json!("to all 500"));
    }
    let metrics = node.metrics();
    assert_eq!(
        metrics.sum("shardcast_connections"),
        500.0,
        "shardcast_connections with 500 clients:\n{metrics}"
    );
    for c in clients.iter_mut().take(10) {
        c.expect_silence(Duration::from_millis(50));
    }
}
