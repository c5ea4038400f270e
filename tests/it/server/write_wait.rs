//! `shardcast_write_wait_seconds` (docs/api.md §4): a core times each connection queue
//! it writes out — from the first frame queued on it to the write that sent it — so an
//! operator sees how far behind each core's writing is. Each queue written is one
//! observation, in seconds, in the series of its core.

use std::time::Instant;

use crate::support::{node::Node, SYS_A, WAIT};
use serde_json::json;

const COUNT: &str = "shardcast_write_wait_seconds_count";
const SUM: &str = "shardcast_write_wait_seconds_sum";

#[test]
fn every_queue_written_out_is_timed_once_in_seconds() {
    let node = Node::start("");
    let mut clients: Vec<_> = (0..8).map(|_| node.ws(SYS_A)).collect();
    let before = node.metrics();
    let (count0, sum0) = (before.sum(COUNT), before.sum(SUM));

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

    // Three pushes to eight clients: at least one write per client, at most one per push.
    let count = node.wait_metric(COUNT, WAIT, "a timed write per client", |v| {
        v >= count0 + 8.0
    }) - count0;
    assert!(
        count <= 24.0,
        "{count} writes timed for 3 pushes to 8 clients"
    );
    let m = node.metrics();
    for worker in ["0", "1"] {
        assert!(
            m.try_sum_where(COUNT, &[("worker", worker)]).is_some(),
            "no series for core {worker}:\n{m}"
        );
    }
    let sum = m.sum(SUM) - sum0;
    assert!(
        sum > 0.0 && sum <= count * elapsed,
        "{count} waits summing to {sum} s, each within the {elapsed} s the pushes took"
    );
}
