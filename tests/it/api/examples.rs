//! The curl examples of docs/api.md §4 ("Examples") and of the README ("The HTTP
//! API"), run as the documents have them (the blocks are read from the files; only the
//! address and the clientId are filled in) against a node with system `demo` and one
//! client of it: every answer is a success, and the client gets what each send sends —
//! the group and user sends included, since the examples bind it first.

use crate::support::{docs, node::Node, ws::Client, WAIT};
use serde_json::{json, Value};
use std::process::Command;

/// The first ```sh block of `file` after `heading` that starts with `A=`.
fn curl_block(file: &str, heading: &str) -> String {
    docs::block(file, heading, "```sh\nA=")
}

/// Runs `block` with the node's address and `client_id` put in; each answer as JSON.
fn run(block: &str, node: &Node, client_id: &str) -> Vec<Value> {
    let script = block
        .replace("127.0.0.1:7800", node.addr())
        .replace("<clientId>", client_id);
    // One answer per line (curl -s prints the body alone).
    let script = format!("set -eu\ncurl() {{ command curl \"$@\"; echo; }}\n{script}\n");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run bash");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the example failed ({}):\n{script}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}\n{text}")))
        .collect()
}

fn assert_all_ok(answers: &[Value], n: usize) {
    assert_eq!(answers.len(), n, "{answers:#?}");
    for a in answers {
        assert_eq!(a["code"], json!(0), "an example failed: {a}");
    }
}

fn demo_node() -> Node {
    Node::start("[api]\nsystems = [\"demo\"]\n")
}

#[test]
fn the_api_curl_examples_run_as_written() {
    let node = demo_node();
    let mut c = node.ws("demo");
    let answers = run(
        &curl_block("docs/api.md", "### Examples"),
        &node,
        &c.client_id,
    );
    assert_all_ok(&answers, 13);
    let members = &answers[2]["data"];
    assert_eq!(members["list"], json!([c.client_id]), "{members}");
    let notice = c.expect_json(WAIT);
    assert_eq!(notice["code"], json!(1001), "the join notice: {notice}");
    let pushes: Vec<Value> = (0..5).map(|_| c.expect_json(WAIT)).collect();
    let got: Vec<(Value, Value, Value)> = pushes
        .iter()
        .map(|p| (p["code"].clone(), p["msg"].clone(), p["data"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!(0), json!("hi"), json!({"n": 1})),
            (json!(0), json!(""), json!("plain string")),
            (json!(0), json!(""), json!("hello room")),
            (json!(7), json!(""), json!([1, 2, 3])),
            (json!(0), json!("maintenance at 22:00"), json!("")),
        ],
        "{pushes:#?}"
    );
    assert_eq!(answers[9]["data"], json!({"online": true}));
    assert_eq!(answers[10]["data"]["userId"], json!("alice"));
    assert_eq!(c.expect_close(WAIT), 1000, "close_client");
}

#[test]
fn the_readme_curl_examples_run_as_written() {
    let node = demo_node();
    let mut c: Client = node.ws("demo");
    let answers = run(
        &curl_block("README.md", "### The HTTP API"),
        &node,
        &c.client_id,
    );
    assert_all_ok(&answers, 4);
    assert_eq!(c.expect_json(WAIT)["msg"], json!("hi"));
    assert_eq!(c.expect_json(WAIT)["code"], json!(1001));
    assert_eq!(c.expect_json(WAIT)["data"], json!("hello room"));
    assert_eq!(answers[3]["data"]["count"], json!(1));
}
