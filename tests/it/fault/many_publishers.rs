//! Several publishers with one request in flight each — how business systems publish —
//! while every core hands pushes to the other's mailbox: every subscriber gets every
//! push, and afterwards the node is idle and small. A mailbox whose receive future
//! queued its wake-up again on every poll (flume's `recv_async` while the core also
//! took mail before each API request) made a core spin at 100 % and grow until the
//! kernel killed the node.

use crate::support::{
    http::HttpConn,
    node::{cpu_seconds, rss_kib, shipped_resume, Node},
    ws::Client,
    SYS_A, WAIT,
};
use serde_json::json;
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 300;
const PUBLISHERS: usize = 8;
const EACH: usize = 120;

#[test]
fn eight_publishers_one_request_in_flight_each_reach_everyone_and_leave_the_node_idle() {
    eight_publishers_with("");
}

/// The same with resume on, as the shipped config runs: the replay log keeps each
/// push once for the core, not once per subscriber.
#[test]
fn eight_publishers_with_the_shipped_config_leave_the_node_small() {
    eight_publishers_with(&format!("[ws]\n{}", shipped_resume()));
}

fn eight_publishers_with(config: &str) {
    let node = Node::start(config);
    let mut subscribers: Vec<Client> = (0..SUBSCRIBERS).map(|_| node.ws(SYS_A)).collect();
    let rss_before = rss_kib(node.pid());
    std::thread::scope(|s| {
        for p in 0..PUBLISHERS {
            let addr = node.addr().to_string();
            s.spawn(move || {
                // One keep-alive connection per publisher, one request in flight.
                let mut http = HttpConn::connect(&addr);
                for i in 0..EACH {
                    let body = json!({"msg": format!("{p}-{i}")}).to_string();
                    let (status, v) = http.api("/api/send_to_system", Some(SYS_A), &body);
                    assert_eq!(status, 200, "publisher {p}, push {i}: {v}");
                    assert_eq!(v["code"], 0, "publisher {p}, push {i}: {v}");
                }
            });
        }
    });
    for (n, sub) in subscribers.iter_mut().enumerate() {
        let mut next = [0usize; PUBLISHERS];
        for _ in 0..PUBLISHERS * EACH {
            let push = sub.expect_json(WAIT);
            let msg = push["msg"].as_str().unwrap_or_default().to_string();
            let (p, i) = msg.split_once('-').expect("publisher-index");
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(
                i, next[p],
                "subscriber {n}: publisher {p}'s pushes out of order"
            );
            next[p] += 1;
        }
    }
    // Idle afterwards: a core spinning on its mailbox uses a whole CPU.
    let cpu0 = cpu_seconds(node.pid());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let busy = (cpu_seconds(node.pid()) - cpu0) / t0.elapsed().as_secs_f64();
    assert!(
        busy < 0.3,
        "the idle node used {:.0} % of a CPU",
        busy * 100.0
    );
    let grown_mib = rss_kib(node.pid()).saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 64, "the node grew by {grown_mib} MiB");
}
