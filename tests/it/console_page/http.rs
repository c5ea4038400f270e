//! The console (docs/api.md §2.3): `GET /` serves the built-in page as HTML when
//! `console.enabled`, and `/console/stats` gives the live figures it shows.
//! (The page itself is driven in a real browser by `console_browser.rs`.)

use crate::support::{node::Node, ws::Client, SYS_A, WAIT};
use serde_json::json;
use std::time::{Duration, Instant};

const CONSOLE: &str = "[console]\nenabled = true";

#[test]
fn page_is_served_as_html_when_enabled() {
    let node = Node::start(CONSOLE);
    let r = node.get("/");
    assert_eq!(r.status, 200);
    let ctype = r.header("content-type").unwrap_or_default().to_string();
    assert!(ctype.starts_with("text/html"), "content type {ctype}");
    let page = r.text();
    assert!(
        page.contains("<html") && page.contains("shardcast"),
        "{page}"
    );
}

#[test]
fn stats_count_connections_per_core_and_pushes() {
    let node = Node::start(CONSOLE);
    let before = node.get("/console/stats").json();
    assert_eq!(before["connections"], json!(0), "{before}");
    assert_eq!(
        before["cores"].as_array().map(Vec::len),
        Some(2),
        "{before}"
    );
    assert_eq!(before["auth"], json!("open"));
    assert_eq!(before["clientSend"], json!("off"));
    let members = &before["cluster"]["members"];
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{before}");
    assert_eq!(members[0]["self"], json!(true));

    let mut clients: Vec<Client> = (0..4).map(|_| node.ws(SYS_A)).collect();
    for c in &clients {
        node.send_to_client(SYS_A, &c.client_id, "hi", json!("x"));
    }
    for c in &mut clients {
        c.expect_json(WAIT);
    }
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let s = node.get("/console/stats").json();
        if s["pushes"].as_u64() >= Some(4) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(after["connections"], json!(4), "{after}");
    let per_core: u64 = after["cores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["connections"].as_u64())
        .sum();
    assert_eq!(per_core, 4, "{after}");
    // Welcome frames count as pushes too; at least the four sends.
    assert!(after["pushes"].as_u64() >= Some(4), "{after}");
}

#[test]
fn disabled_console_is_an_unknown_path() {
    let node = Node::start("");
    for path in ["/", "/console/stats"] {
        let r = node.get(path);
        assert_eq!(r.status, 404, "GET {path} with the console off");
        assert_eq!(r.json()["msg"], json!("接口不存在"));
    }
}
