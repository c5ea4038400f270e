//! The Grafana dashboard shipped in `conf/grafana-dashboard.json` graphs what a node
//! exports: every metric name its queries use is a series of a live node's `/metrics`
//! (histograms with their `_bucket`, `_sum` and `_count`), and the histograms count
//! what happened (API requests, fan-outs).

use crate::support::{metrics::Metrics, node::Node, SYS_A};
use serde_json::{json, Value};

/// The metric names in a PromQL expression: words starting with `shardcast_` or
/// `process_`.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("shardcast_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

fn exported(metrics: &str, name: &str) -> bool {
    metrics.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
    })
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // With a webhook URL, so that the webhook series exist too.
    let node = Node::start("[webhook]\nurl = \"http://127.0.0.1:9/hook\"\n");
    let c = node.ws(SYS_A);
    node.call(SYS_A, "/api/send_to_system", json!({"data": "x"}));
    node.call(SYS_A, "/api/is_online", json!({"clientId": c.client_id}));
    let metrics = node.http().request("GET", "/metrics", &[], b"").text();

    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            names.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    names.extend(metric_names(
        dashboard["templating"]["list"][1]["query"]
            .as_str()
            .unwrap_or(""),
    ));
    assert!(names.len() >= 15, "too few queries: {names:?}");
    let missing: Vec<_> = names.iter().filter(|n| !exported(&metrics, n)).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{metrics}");

    let m = Metrics::parse(&metrics);
    let api = "shardcast_api_request_duration_seconds_count";
    assert_eq!(m.sum_where(api, &[("route", "is_online")]), 1.0, "{m}");
    assert!(
        m.sum("shardcast_fanout_duration_seconds_count") >= 1.0,
        "{m}"
    );
    assert!(m.sum("shardcast_write_wait_seconds_count") >= 1.0, "{m}");
    assert!(exported(&metrics, "shardcast_build_info"));
}
