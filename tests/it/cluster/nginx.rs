//! The locations of the shipped `conf/nginx-cluster.example.conf` beyond `/ws` (which
//! `resume.rs` runs): the JavaScript client and the console reach a node, and a body
//! over `api.max_body` is answered with the node's JSON 413, not nginx's HTML page.

use crate::support::{http::HttpConn, node::Node};
use serde_json::json;

use super::resume::start_nginx;

#[test]
fn the_shipped_nginx_config_serves_the_client_the_console_and_the_413_of_the_api() {
    // One node is enough: the example's upstreams keep the servers present.
    let node = Node::start("[console]\nenabled = true\n");
    let nginx = start_nginx(&[node.addr().to_string()]);
    let mut via = HttpConn::connect(&nginx.addr);

    let js = via.request("GET", "/shardcast.js", &[], b"");
    assert_eq!(js.status, 200, "/shardcast.js through nginx");
    assert_eq!(js.body, node.get("/shardcast.js").body);

    let page = via.request("GET", "/", &[], b"");
    assert_eq!(page.status, 200, "the console through nginx");
    assert_eq!(page.body, node.get("/").body);
    let stats = via.request("GET", "/console/stats", &[], b"");
    assert_eq!(stats.status, 200, "{}", stats.text());
    assert!(stats.json().is_object(), "{}", stats.text());

    let sent = via.request(
        "POST",
        "/api/send_to_system",
        &[("SystemId", crate::support::SYS_A)],
        br#"{"msg":"through nginx"}"#,
    );
    assert_eq!(sent.status, 200);
    assert_eq!(sent.json()["code"], json!(0), "{}", sent.text());

    // Over api.max_body (1 MiB): the node's own answer, as nginx gives it.
    let big = format!("{{\"msg\":\"{}\"}}", "x".repeat(1_200_000));
    let direct = HttpConn::connect(node.addr()).request(
        "POST",
        "/api/send_to_system",
        &[("SystemId", crate::support::SYS_A)],
        big.as_bytes(),
    );
    assert_eq!(direct.status, 413);
    let mut via = HttpConn::connect(&nginx.addr);
    let proxied = via.request(
        "POST",
        "/api/send_to_system",
        &[("SystemId", crate::support::SYS_A)],
        big.as_bytes(),
    );
    assert_eq!(proxied.status, 413, "{}", proxied.text());
    assert_eq!(proxied.json(), direct.json(), "{}", proxied.text());
    assert!(
        proxied
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{:?}",
        proxied.headers
    );
}
