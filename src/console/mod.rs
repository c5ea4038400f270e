//! The built-in console (docs/api.md §2.3): one page compiled into the binary and
//! the JSON figures it polls.
//!
//! The page is plain HTML/CSS/JS with no build step, so what is in the
//! repository is what is served. It talks only to the node that served it:
//! the push API and `/ws` on the same origin, and `/console/stats` below.
//! Its connection is the JavaScript client of `/shardcast.js` (`CLIENT_JS`),
//! which it imports as an ES module.
//!
//! `/console/stats` reads the per-core counters that `/metrics` reads (no
//! core is asked anything, so polling it costs the data path nothing).
//! Rates are left to the page: it divides the change of `pushes` between two
//! polls by the time between them.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use crate::clock::unix_seconds;
use crate::node::Node;

/// The page, as served at `GET /`.
pub const PAGE: &str = include_str!("index.html");

/// The JavaScript client, as served at `GET /shardcast.js` (docs/js-client.md).
pub const CLIENT_JS: &str = include_str!("shardcast.js");

/// The body of `GET /console/stats`; `members`: with the cluster members'
/// addresses.
pub fn stats(node: &Node, members: bool) -> String {
    let cores: Vec<Value> = (0..node.cores())
        .map(|i| {
            let m = node.metrics.core(i);
            json!({
                "core": i,
                "connections": m.connections.load(Relaxed),
                "pushes": m.pushed.load(Relaxed),
            })
        })
        .collect();
    let sum = |key: &str| cores.iter().filter_map(|c| c[key].as_u64()).sum::<u64>();
    let cfg = &node.config;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "nodeId": node.node_id,
        "uptimeSecs": unix_seconds().saturating_sub(u64::from(node.epoch)),
        "ready": node.is_ready(),
        "auth": cfg.api.auth,
        "connectToken": cfg.api.connect_token,
        "clientSend": cfg.ws.client_send,
        "clientSendRate": cfg.ws.client_send_rate,
        "connections": sum("connections"),
        "pushes": sum("pushes"),
        "cores": cores,
        "cluster": cluster(node, members),
        "webhook": webhook(node),
    })
    .to_string()
}

/// This node and its peers, by node id; without their addresses unless
/// `addrs` (token mode shows them to the admin only).
fn cluster(node: &Node, addrs: bool) -> Value {
    let cfg = &node.config.cluster;
    let addr = |a: &str| if addrs { json!(a) } else { Value::Null };
    let me = json!({
        "nodeId": node.node_id,
        "addr": addr(&cfg.advertise_addr),
        "cores": node.cores(),
        "self": true,
    });
    let mut members = vec![me];
    members.extend(node.peers().values().map(
        |p| json!({ "nodeId": p.node, "addr": addr(&p.addr), "cores": p.cores, "self": false }),
    ));
    members.sort_by_key(|m| m["nodeId"].as_u64());
    json!({ "enabled": cfg.enabled, "name": cfg.name, "members": members })
}

/// Webhook queue figures, when the node delivers webhooks.
fn webhook(node: &Node) -> Value {
    node.webhooks.as_ref().map_or(Value::Null, |w| {
        let s = w.stats();
        json!({ "queued": s.queued(), "delivered": s.delivered(), "dropped": s.dropped() })
    })
}
