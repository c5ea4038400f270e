//! The JavaScript client (`/shardcast.js`, docs/js-client.md) in headless Chromium,
//! scripted by `tests/console/client.mjs`: imported from another origin, an ack round
//! trip, a reconnect after the node restarts (on the same port) and a refusal that is
//! not retried.

use crate::support::node::Node;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn the_js_client_acks_reconnects_and_reports_refusals() {
    super::browser::require_browser_tools();
    let mut node = Node::start("[ws]\nclient_send = \"all\"\n");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    let mut child = Command::new("node")
        .arg("client.mjs")
        .arg(format!("http://{}", node.addr()))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run node");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut output = String::new();
    for line in stdout.lines() {
        let line = line.expect("a line");
        output.push_str(&line);
        output.push('\n');
        if line == "RESTART" {
            node.restart_in_place();
            writeln!(stdin, "RESTARTED").expect("answer the script");
        }
    }
    let status = child.wait().expect("wait for node");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(status.success(), "the JS client failed:\n{output}{err}");
    for step in [
        "ack round trip ok",
        "RESTART",
        "reconnected as",
        "refusal: ",
        "PASS",
    ] {
        assert!(output.contains(step), "no `{step}`:\n{output}");
    }
}
