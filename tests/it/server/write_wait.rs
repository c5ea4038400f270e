//! `shardcast_write_wait_seconds` (docs/api.md §4): a core times each connection queue
//! it writes out — from the first frame queued on it to the write that sent it — so an
//! operator sees how far behind each core's writing is. Each queue written is one
//! observation, in seconds, in the series of its core.

use std::time::Instant;

use crate::support::{node::Node, ws::Client, SYS_A, WAIT};
use serde_json::json;

const COUNT: &str = "shardcast_write_wait_seconds_count";
const SUM: &str = "shardcast_write_wait_seconds_sum";

/// This core's count of timed writes, per core.
fn per_core_counts(node: &Node) -> [f64; 2] {
    let m = node.metrics();
    ["0", "1"].map(|w| m.try_sum_where(COUNT, &[("worker", w)]).unwrap_or(0.0))
}

/// Clients until at least one lives on each of the two cores (per the per-core
/// connections gauge).
fn clients_on_both_cores(node: &Node) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(node.ws(SYS_A));
        let m = node.metrics();
        let on = |w: &str| m.sum_where("shardcast_connections", &[("worker", w)]) > 0.0;
        if clients.len() >= 8 && on("0") && on("1") {
            return clients;
        }
    }
    panic!("64 connections and not one on each core");
}

#[test]
fn every_queue_written_out_is_timed_once_in_seconds() {
    let node = Node::start("");
    let mut clients = clients_on_both_cores(&node);
    let n = clients.len() as f64;
    let before = node.metrics();
    let (count0, sum0) = (before.sum(COUNT), before.sum(SUM));
    let cores0 = per_core_counts(&node);

    let started = Instant::now();
    for i in 0..3 {
        node.call(
            SYS_A,
            "/api/send_to_system",
            json!({ "data": format!("m{i}") }),
        );
    }
    for c in &mut clients {
        for i in 0..3 {
            let push = c.expect_json(WAIT);
            assert_eq!(push["data"], json!(format!("m{i}")), "{push}");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();

    // Three pushes to n clients: at least one write per client, at most one per push.
    let count =
        node.wait_metric(COUNT, WAIT, "a timed write per client", |v| v >= count0 + n) - count0;
    assert!(
        count <= 3.0 * n,
        "{count} writes timed for 3 pushes to {n} clients"
    );
    // Each core timed the writes to its own clients, in its own series.
    let cores = per_core_counts(&node);
    for core in 0..2 {
        assert!(
            cores[core] > cores0[core],
            "core {core} timed no write: {cores0:?} → {cores:?}"
        );
    }
    let sum = node.metrics().sum(SUM) - sum0;
    assert!(
        sum > 0.0 && sum <= count * elapsed,
        "{count} waits summing to {sum} s, each within the {elapsed} s the pushes took"
    );
}
